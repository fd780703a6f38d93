//! Where enhanced audio goes: the [`FrameSink`] trait, 10 ms framing, and a bounded
//! channel for a consumer on another thread.
//!
//! The live engine and the network stream both hand on audio in 10 ms frames with the
//! VAD events that arrived with them. The trait lives here, beside the pipeline, so
//! that producers (the engine) and consumers (the network sink, an app) meet without
//! knowing each other.

use std::cell::RefCell;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{sync_channel, Receiver, SyncSender, TryRecvError, TrySendError};
use std::sync::Arc;
use std::time::Duration;

use crate::dsp::vad::VadEvent;

/// A block of enhanced mono audio and the VAD events that came with it.
///
/// # Examples
///
/// A closure is a [`FrameSink`]:
///
/// ```
/// use clearvox::pipeline::{EnhancedFrame, FrameSink};
///
/// let mut peak = 0.0f32;
/// let mut meter = |frame: &EnhancedFrame<'_>| {
///     peak = frame.samples.iter().fold(peak, |m, x| m.max(x.abs()));
/// };
/// meter.frame(&EnhancedFrame {
///     samples: &[0.1, -0.4, 0.2],
///     rate: 16_000,
///     position: 0,
///     events: &[],
/// });
/// assert_eq!(peak, 0.4);
/// ```
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct EnhancedFrame<'a> {
    /// Mono samples in ±1.0 (10 ms, except possibly the last frame of a stream).
    pub samples: &'a [f32],
    /// Sample rate of `samples`, Hz.
    pub rate: u32,
    /// Index of the first sample in the output stream.
    pub position: u64,
    /// VAD events reported since the previous frame; their positions are in the same
    /// output stream (a `SpeechStart` may point back before this frame: pre-roll).
    pub events: &'a [VadEvent],
}

/// A consumer of enhanced frames.
///
/// Called on the engine's processing thread: an implementation must return quickly
/// and never block (queue the frame, or drop it and count).
///
/// Closures `FnMut(&EnhancedFrame)` are sinks; [`frame_channel`] gives one that queues
/// for another thread.
///
/// # Examples
///
/// A sink of your own, fed by a [`Framer`] from a [`Pipeline`](crate::Pipeline) as the
/// live engine feeds it:
///
/// ```
/// use clearvox::dsp::vad::VadEventKind;
/// use clearvox::pipeline::{EnhancedFrame, FrameSink, Framer};
/// use clearvox::{Config, Pipeline};
///
/// /// Counts the audio and the utterances.
/// #[derive(Default)]
/// struct Tally {
///     samples: usize,
///     utterances: usize,
///     ended: bool,
/// }
///
/// impl FrameSink for Tally {
///     fn frame(&mut self, frame: &EnhancedFrame<'_>) {
///         self.samples += frame.samples.len();
///         self.utterances += frame
///             .events
///             .iter()
///             .filter(|e| e.kind == VadEventKind::SpeechStart)
///             .count();
///     }
///     fn finish(&mut self) {
///         self.ended = true;
///     }
/// }
///
/// let mut pipeline = Pipeline::new(&Config::default(), 16_000, 1)?;
/// let mut framer = Framer::new(pipeline.output_rate());
/// let mut tally = Tally::default();
/// let mut out = Vec::new();
/// for chunk in vec![0.0f32; 16_000].chunks(512) {
///     out.clear();
///     pipeline.process(chunk, &mut out)?;
///     while let Some(event) = pipeline.pop_event() {
///         framer.event(event);
///     }
///     framer.push(&out, &mut tally);
/// }
/// out.clear();
/// pipeline.flush(&mut out)?;
/// framer.push(&out, &mut tally);
/// framer.finish(&mut tally);
/// tally.finish();
///
/// assert_eq!(tally.samples, 16_000 + pipeline.latency());
/// assert_eq!(tally.utterances, 0);
/// # Ok::<(), clearvox::Error>(())
/// ```
pub trait FrameSink: Send {
    /// Takes one frame.
    fn frame(&mut self, frame: &EnhancedFrame<'_>);

    /// The stream has ended; no frame follows.
    fn finish(&mut self) {}
}

impl<F: FnMut(&EnhancedFrame<'_>) + Send> FrameSink for F {
    fn frame(&mut self, frame: &EnhancedFrame<'_>) {
        self(frame)
    }
}

/// Cuts a stream of samples into frames of 10 ms (`rate / 100` samples) and hands
/// them, with the events that arrived meanwhile, to a sink. Buffers are allocated
/// once, in `new`.
///
/// # Examples
///
/// ```
/// use clearvox::dsp::vad::{VadEvent, VadEventKind};
/// use clearvox::pipeline::{EnhancedFrame, Framer};
///
/// let mut framer = Framer::new(16_000);
/// assert_eq!(framer.frame_len(), 160);
///
/// // (position, samples, events) of every frame.
/// let mut frames = Vec::new();
/// let mut sink = |f: &EnhancedFrame<'_>| {
///     frames.push((f.position, f.samples.len(), f.events.len()));
/// };
///
/// framer.event(VadEvent { kind: VadEventKind::SpeechStart, position: 0 });
/// framer.push(&[0.0; 400], &mut sink);
/// framer.finish(&mut sink); // the partial last frame
/// assert_eq!(frames, [(0, 160, 1), (160, 160, 0), (320, 80, 0)]);
/// ```
#[derive(Debug)]
pub struct Framer {
    rate: u32,
    buf: Vec<f32>,
    fill: usize,
    position: u64,
    events: Vec<VadEvent>,
}

/// Events kept for the next frame before the oldest is dropped.
const FRAMER_EVENTS: usize = 64;

impl Framer {
    /// A framer for a stream at `rate` Hz starting at position 0.
    pub fn new(rate: u32) -> Self {
        Self {
            rate,
            buf: vec![0.0; (rate as usize / 100).max(1)],
            fill: 0,
            position: 0,
            events: Vec::with_capacity(FRAMER_EVENTS),
        }
    }

    /// Samples per frame.
    pub fn frame_len(&self) -> usize {
        self.buf.len()
    }

    /// Notes an event; it goes out with the next frame.
    pub fn event(&mut self, event: VadEvent) {
        if self.events.len() == FRAMER_EVENTS {
            self.events.remove(0);
        }
        self.events.push(event);
    }

    /// Adds samples; every completed frame goes to `sink`.
    pub fn push(&mut self, mut samples: &[f32], sink: &mut dyn FrameSink) {
        while !samples.is_empty() {
            let take = (self.buf.len() - self.fill).min(samples.len());
            self.buf[self.fill..self.fill + take].copy_from_slice(&samples[..take]);
            self.fill += take;
            samples = &samples[take..];
            if self.fill == self.buf.len() {
                self.emit(sink);
            }
        }
    }

    /// Hands on a last, partial frame (if any samples or events are pending).
    pub fn finish(&mut self, sink: &mut dyn FrameSink) {
        if self.fill > 0 || !self.events.is_empty() {
            self.emit(sink);
        }
    }

    fn emit(&mut self, sink: &mut dyn FrameSink) {
        sink.frame(&EnhancedFrame {
            samples: &self.buf[..self.fill],
            rate: self.rate,
            position: self.position,
            events: &self.events,
        });
        self.position += self.fill as u64;
        self.fill = 0;
        self.events.clear();
    }
}

/// An enhanced frame with its own storage, for a consumer on another thread.
///
/// # Examples
///
/// ```
/// use clearvox::pipeline::{frame_channel, Framer, OwnedFrame};
///
/// let (mut tx, rx) = frame_channel(4);
/// Framer::new(48_000).push(&[0.5; 960], &mut tx);
///
/// let first: OwnedFrame = rx.try_recv().expect("a frame is waiting");
/// assert_eq!((first.rate, first.position, first.samples.len()), (48_000, 0, 480));
/// let second = rx.try_recv().expect("and another");
/// assert_eq!(second.position, 480);
/// ```
#[derive(Clone, Debug, PartialEq)]
pub struct OwnedFrame {
    /// Mono samples in ±1.0.
    pub samples: Vec<f32>,
    /// Sample rate, Hz.
    pub rate: u32,
    /// Index of the first sample in the output stream.
    pub position: u64,
    /// VAD events that came with the frame.
    pub events: Vec<VadEvent>,
}

/// A bounded channel of frames: the sending half is a [`FrameSink`] that never blocks
/// (a full channel drops the frame and counts it), the receiving half is for any
/// thread.
///
/// # Examples
///
/// ```
/// use clearvox::pipeline::{frame_channel, FrameSink, Framer};
/// use std::time::Duration;
///
/// let (mut tx, rx) = frame_channel(16);
/// let producer = std::thread::spawn(move || {
///     let mut framer = Framer::new(16_000);
///     framer.push(&[0.0; 1_600], &mut tx); // ten 10 ms frames
///     framer.finish(&mut tx);
///     tx.finish(); // the stream ends
/// });
///
/// let frames: Vec<_> = rx.iter_timeout(Duration::from_secs(5)).collect();
/// producer.join().expect("the producer does not panic");
/// assert_eq!(frames.len(), 10);
/// assert_eq!(rx.dropped(), 0);
/// ```
pub fn frame_channel(capacity: usize) -> (ChannelSink, FrameReceiver) {
    let (tx, rx) = sync_channel(capacity.max(1));
    let dropped = Arc::new(AtomicU64::new(0));
    (
        ChannelSink {
            tx: Some(tx),
            dropped: dropped.clone(),
        },
        FrameReceiver {
            rx,
            peeked: RefCell::new(None),
            dropped,
        },
    )
}

/// The sending half of [`frame_channel`]. Copies each frame into an [`OwnedFrame`]
/// (one allocation per frame, on the processing thread, never on the audio callback).
///
/// # Examples
///
/// A consumer that falls behind loses frames, and the receiver counts them:
///
/// ```
/// use clearvox::pipeline::{frame_channel, Framer};
///
/// let (mut tx, rx) = frame_channel(2);
/// Framer::new(16_000).push(&[0.0; 800], &mut tx); // five frames, room for two
/// assert_eq!(rx.dropped(), 3);
/// assert_eq!(rx.try_recv().map(|f| f.position), Some(0));
/// ```
#[derive(Debug)]
pub struct ChannelSink {
    tx: Option<SyncSender<OwnedFrame>>,
    dropped: Arc<AtomicU64>,
}

impl FrameSink for ChannelSink {
    fn frame(&mut self, frame: &EnhancedFrame<'_>) {
        let Some(tx) = &self.tx else { return };
        let owned = OwnedFrame {
            samples: frame.samples.to_vec(),
            rate: frame.rate,
            position: frame.position,
            events: frame.events.to_vec(),
        };
        match tx.try_send(owned) {
            Ok(()) => {}
            Err(TrySendError::Full(_)) => {
                self.dropped.fetch_add(1, Ordering::Relaxed);
            }
            Err(TrySendError::Disconnected(_)) => self.tx = None,
        }
    }

    fn finish(&mut self) {
        // Dropping the sender ends the receiver's iteration.
        self.tx = None;
    }
}

/// The receiving half of [`frame_channel`].
///
/// # Examples
///
/// ```
/// use clearvox::pipeline::{frame_channel, FrameSink, Framer};
///
/// let (mut tx, rx) = frame_channel(4);
/// assert!(rx.try_recv().is_none());
///
/// Framer::new(16_000).push(&[0.0; 160], &mut tx);
/// tx.finish();
/// assert!(!rx.is_finished()); // a frame is still waiting
/// assert!(rx.try_recv().is_some());
/// assert!(rx.is_finished());
/// ```
#[derive(Debug)]
pub struct FrameReceiver {
    rx: Receiver<OwnedFrame>,
    /// A frame [`is_finished`](Self::is_finished) took to look ahead; handed out next.
    peeked: RefCell<Option<OwnedFrame>>,
    dropped: Arc<AtomicU64>,
}

impl FrameReceiver {
    /// The next frame, waiting up to `timeout`; `None` on timeout or once the stream
    /// has ended and every frame was taken.
    pub fn recv_timeout(&self, timeout: Duration) -> Option<OwnedFrame> {
        self.peeked
            .take()
            .or_else(|| self.rx.recv_timeout(timeout).ok())
    }

    /// The next frame if one is waiting.
    pub fn try_recv(&self) -> Option<OwnedFrame> {
        self.peeked.take().or_else(|| self.rx.try_recv().ok())
    }

    /// Whether the stream has ended and every frame has been taken.
    pub fn is_finished(&self) -> bool {
        if self.peeked.borrow().is_some() {
            return false;
        }
        match self.rx.try_recv() {
            Ok(frame) => {
                // Keep it for the next call that takes a frame.
                *self.peeked.borrow_mut() = Some(frame);
                false
            }
            Err(TryRecvError::Empty) => false,
            Err(TryRecvError::Disconnected) => true,
        }
    }

    /// Frames dropped because the consumer was too slow.
    pub fn dropped(&self) -> u64 {
        self.dropped.load(Ordering::Relaxed)
    }

    /// Every remaining frame, waiting for each up to `timeout`.
    pub fn iter_timeout(&self, timeout: Duration) -> impl Iterator<Item = OwnedFrame> + '_ {
        std::iter::from_fn(move || self.recv_timeout(timeout))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dsp::vad::VadEventKind;

    #[test]
    fn framer_cuts_10_ms_frames_and_carries_events() {
        let mut framer = Framer::new(16_000);
        let mut got: Vec<(u64, usize, usize)> = Vec::new();
        let mut sink =
            |f: &EnhancedFrame<'_>| got.push((f.position, f.samples.len(), f.events.len()));
        framer.push(&[0.0; 150], &mut sink);
        framer.event(VadEvent {
            kind: VadEventKind::SpeechStart,
            position: 10,
        });
        framer.push(&[0.0; 200], &mut sink);
        framer.finish(&mut sink);
        // The event arrived before the first frame was complete: it goes out with it.
        assert_eq!(got, [(0, 160, 1), (160, 160, 0), (320, 30, 0)]);
    }

    #[test]
    fn channel_drops_instead_of_blocking() {
        let (mut tx, rx) = frame_channel(2);
        let f = EnhancedFrame {
            samples: &[0.5; 4],
            rate: 8_000,
            position: 0,
            events: &[],
        };
        for _ in 0..5 {
            tx.frame(&f);
        }
        assert_eq!(rx.dropped(), 3);
        assert_eq!(rx.try_recv().map(|f| f.samples), Some(vec![0.5; 4]));
        tx.finish();
        assert!(rx.recv_timeout(Duration::from_millis(10)).is_some());
        assert!(rx.recv_timeout(Duration::from_millis(10)).is_none());
    }
}
