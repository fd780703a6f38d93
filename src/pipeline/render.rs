//! The render signal: what the loudspeaker played, on its way to the echo canceller.
//!
//! The echo canceller needs, beside each captured frame, the samples that went to the
//! loudspeaker. They come from another thread (the playback callback) and on another
//! clock, so they travel through a lock-free single-producer ring: [`render_ring`]
//! gives the two ends. The playback side calls [`RenderSender::push`] with exactly the
//! samples it hands to the device, at the moment it does; the processing side calls
//! [`RenderReceiver::drain_into`] before each [`Pipeline::process`], which moves what
//! arrived into the pipeline ([`Pipeline::push_render`]). Neither end blocks, locks or
//! allocates: a full ring drops the newest samples and counts them.
//!
//! Render that has not arrived when a captured frame needs it is silence (counted as
//! an underrun), never a wait; the canceller's delay estimator follows the shift that
//! late render causes.
//!
//! [`ResponsePlayer`] is the other half of the loop: where a conversation backend's
//! spoken answer goes (the live engine's player, a file, a test's recorder).

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use ringbuf::traits::{Consumer, Observer, Producer, Split};
use ringbuf::{HeapCons, HeapProd, HeapRb};

use super::Pipeline;
use crate::error::Result;

/// Samples moved per step of [`RenderReceiver::drain_into`] (a stack buffer).
const DRAIN_CHUNK: usize = 960;

/// A lock-free ring for render samples (interleaved, in the format given to
/// [`Pipeline::set_render_format`]) between a playback thread and the processing
/// thread, `capacity` samples long.
///
/// # Examples
///
/// ```
/// use clearvox::pipeline::render_ring;
/// use clearvox::{Config, Pipeline};
///
/// let config = Config { echo: clearvox::config::EchoConfig { enabled: true, ..Default::default() }, ..Config::default() };
/// let mut pipeline = Pipeline::new(&config, 16_000, 1)?;
/// pipeline.set_render_format(24_000, 1)?;
/// let (mut played, mut heard) = render_ring(24_000);
///
/// // The playback thread: what went to the loudspeaker.
/// let answer = vec![0.1f32; 240];
/// assert_eq!(played.push(&answer), 240);
///
/// // The processing thread: render first, then the capture it may be heard in.
/// heard.drain_into(&mut pipeline)?;
/// let mut out = Vec::new();
/// pipeline.process(&vec![0.0f32; 160], &mut out)?;
/// # Ok::<(), clearvox::Error>(())
/// ```
pub fn render_ring(capacity: usize) -> (RenderSender, RenderReceiver) {
    let (tx, rx) = HeapRb::<f32>::new(capacity.max(1)).split();
    let dropped = Arc::new(AtomicU64::new(0));
    (
        RenderSender {
            tx,
            dropped: dropped.clone(),
        },
        RenderReceiver { rx, dropped },
    )
}

/// The playback thread's end of a [`render_ring`].
pub struct RenderSender {
    tx: HeapProd<f32>,
    dropped: Arc<AtomicU64>,
}

impl RenderSender {
    /// Queues the samples just handed to the loudspeaker; returns how many fit. Never
    /// blocks, locks or allocates (callable from an audio callback); what does not fit
    /// is dropped and counted.
    pub fn push(&mut self, interleaved: &[f32]) -> usize {
        let n = self.tx.push_slice(interleaved);
        if n < interleaved.len() {
            self.dropped
                .fetch_add((interleaved.len() - n) as u64, Ordering::Relaxed);
        }
        n
    }

    /// Samples dropped so far because the ring was full.
    pub fn dropped(&self) -> u64 {
        self.dropped.load(Ordering::Relaxed)
    }
}

impl std::fmt::Debug for RenderSender {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RenderSender")
            .field("queued", &self.tx.occupied_len())
            .field("dropped", &self.dropped())
            .finish()
    }
}

/// The processing thread's end of a [`render_ring`].
pub struct RenderReceiver {
    rx: HeapCons<f32>,
    dropped: Arc<AtomicU64>,
}

impl RenderReceiver {
    /// Moves every queued render sample into `pipeline` (see
    /// [`Pipeline::push_render`]); returns how many. Does not allocate. A sample count
    /// that is not a whole number of render frames leaves the partial frame queued.
    pub fn drain_into(&mut self, pipeline: &mut Pipeline) -> Result<usize> {
        let channels = pipeline.render_channels();
        let whole = DRAIN_CHUNK / channels * channels;
        let mut buf = [0.0f32; DRAIN_CHUNK];
        let mut moved = 0;
        loop {
            let available = self.rx.occupied_len() / channels * channels;
            let n = available.min(whole);
            if n == 0 {
                return Ok(moved);
            }
            let got = self.rx.pop_slice(&mut buf[..n]);
            pipeline.push_render(&buf[..got])?;
            moved += got;
        }
    }

    /// Drops everything queued (after a configuration change of the render format).
    pub fn clear(&mut self) {
        self.rx.clear();
    }

    /// Samples the sender dropped so far because the ring was full.
    pub fn dropped(&self) -> u64 {
        self.dropped.load(Ordering::Relaxed)
    }
}

impl std::fmt::Debug for RenderReceiver {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RenderReceiver")
            .field("queued", &self.rx.occupied_len())
            .field("dropped", &self.dropped())
            .finish()
    }
}

/// Where a conversation backend's spoken answer goes: the live engine's player, a file,
/// a test's recorder. The stream client decodes the answer and calls it from its own
/// thread; an implementation never blocks for long (it queues).
pub trait ResponsePlayer: Send {
    /// Queues mono samples (±1.0) at `rate` Hz to be played; returns how many were
    /// accepted (the rest is dropped: the queue is full).
    fn play(&mut self, samples: &[f32], rate: u32) -> usize;
    /// Drops everything queued and not yet played (the user interrupted: barge-in).
    fn cancel(&mut self);
    /// Whether audio is queued or being played now.
    fn is_playing(&self) -> bool;
}

/// The longest gap in the render, samples at 48 kHz (200 ms), that counts as render
/// arriving late rather than stopping.
const LATE_LIMIT: usize = 9_600;

/// Render samples at 48 kHz waiting for the captured frames they may be heard in: a
/// fixed circular buffer, allocated once. Full, it forgets the oldest samples; short,
/// it hands out silence for what is missing. Both are counted.
pub(super) struct RenderQueue {
    buf: Vec<f32>,
    head: usize,
    len: usize,
    /// Whether any render was ever pushed (before that, missing render is no underrun).
    started: bool,
    /// Silence handed out for missing render since the last push: render that arrives
    /// within [`LATE_LIMIT`] of being due is late, and this much of it is skipped.
    debt: usize,
    underrun_frames: u64,
    overrun_samples: u64,
}

impl RenderQueue {
    pub(super) fn new(capacity: usize) -> Self {
        Self {
            buf: vec![0.0; capacity.max(1)],
            head: 0,
            len: 0,
            started: false,
            debt: 0,
            underrun_frames: 0,
            overrun_samples: 0,
        }
    }

    /// Appends samples, forgetting the oldest when full. After an underrun shorter than
    /// [`LATE_LIMIT`], the samples whose time has passed (as many as the silence handed
    /// out for them) are skipped: the render stays on the capture's clock.
    pub(super) fn push(&mut self, x: &[f32]) {
        self.started = true;
        let late = self.debt.min(x.len());
        self.debt -= late;
        let x = &x[late..];
        let cap = self.buf.len();
        let x = if x.len() > cap {
            self.overrun_samples += (x.len() - cap) as u64;
            &x[x.len() - cap..]
        } else {
            x
        };
        let overflow = (self.len + x.len()).saturating_sub(cap);
        if overflow > 0 {
            self.head = (self.head + overflow) % cap;
            self.len -= overflow;
            self.overrun_samples += overflow as u64;
        }
        let mut tail = (self.head + self.len) % cap;
        for &s in x {
            self.buf[tail] = s;
            tail += 1;
            if tail == cap {
                tail = 0;
            }
        }
        self.len += x.len();
    }

    /// Appends `n` zeros (the alignment of a fresh render path).
    pub(super) fn push_silence(&mut self, n: usize) {
        let started = self.started;
        let zeros = [0.0f32; 256];
        let mut left = n;
        while left > 0 {
            let k = left.min(zeros.len());
            self.push(&zeros[..k]);
            left -= k;
        }
        self.started = started;
    }

    /// Fills `out` with the oldest samples, silence for what is missing.
    pub(super) fn pop_into(&mut self, out: &mut [f32]) {
        let cap = self.buf.len();
        let n = self.len.min(out.len());
        for o in &mut out[..n] {
            *o = self.buf[self.head];
            self.head += 1;
            if self.head == cap {
                self.head = 0;
            }
        }
        self.len -= n;
        out[n..].fill(0.0);
        if n < out.len() && self.started {
            self.underrun_frames += 1;
            self.debt += out.len() - n;
            if self.debt > LATE_LIMIT {
                // Too long for lateness: the render stopped, and what comes next is new.
                self.debt = 0;
                self.started = false;
            }
        }
    }

    /// Samples queued.
    pub(super) fn len(&self) -> usize {
        self.len
    }

    /// Frames that found the render short (silence filled in).
    pub(super) fn underrun_frames(&self) -> u64 {
        self.underrun_frames
    }

    /// Render samples forgotten because too many were queued.
    pub(super) fn overrun_samples(&self) -> u64 {
        self.overrun_samples
    }

    pub(super) fn clear(&mut self) {
        self.head = 0;
        self.len = 0;
        self.started = false;
        self.debt = 0;
        self.underrun_frames = 0;
        self.overrun_samples = 0;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_queue_hands_out_in_order_and_fills_gaps_with_silence() {
        let mut q = RenderQueue::new(8);
        let mut out = [9.0; 3];
        q.pop_into(&mut out);
        assert_eq!(out, [0.0; 3]);
        assert_eq!(q.underrun_frames(), 0, "nothing pushed yet: no underrun");
        q.push(&[1.0, 2.0, 3.0, 4.0]);
        q.pop_into(&mut out);
        assert_eq!(out, [1.0, 2.0, 3.0]);
        q.pop_into(&mut out);
        assert_eq!(out, [4.0, 0.0, 0.0]);
        assert_eq!(q.underrun_frames(), 1);
    }

    #[test]
    fn late_render_skips_what_is_past_and_a_stop_does_not() {
        let mut q = RenderQueue::new(LATE_LIMIT * 4);
        q.push(&[1.0; 4]);
        let mut out = [0.0; 6];
        q.pop_into(&mut out);
        // Two samples were due and missing: the late ones are skipped.
        q.push(&[2.0, 3.0, 4.0, 5.0]);
        let mut two = [0.0; 2];
        q.pop_into(&mut two);
        assert_eq!(two, [4.0, 5.0]);
        // A gap longer than the limit is a stop: the next render is new, none skipped.
        let mut long = vec![0.0; LATE_LIMIT + 10];
        q.pop_into(&mut long);
        q.push(&[6.0, 7.0]);
        q.pop_into(&mut two);
        assert_eq!(two, [6.0, 7.0]);
    }

    #[test]
    fn a_full_queue_forgets_the_oldest() {
        let mut q = RenderQueue::new(4);
        q.push(&[1.0, 2.0, 3.0]);
        q.push(&[4.0, 5.0, 6.0]);
        assert_eq!(q.len(), 4);
        assert_eq!(q.overrun_samples(), 2);
        let mut out = [0.0; 4];
        q.pop_into(&mut out);
        assert_eq!(out, [3.0, 4.0, 5.0, 6.0]);
        q.push(&[1.0; 9]);
        assert_eq!(q.len(), 4);
        assert_eq!(q.overrun_samples(), 7);
    }
}
