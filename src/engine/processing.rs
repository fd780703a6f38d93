//! The processing thread: takes captured audio from the ring, runs the pipeline, and
//! hands the enhanced signal to the frame sink, the recorder and the monitor ring.
//!
//! It feeds the pipeline 10 ms of input at a time and times each call (the per-frame
//! processing time of the statistics). When asked to stop it takes what is left in the
//! ring, flushes the pipeline's tail to every consumer, and finalises the recording.

use std::sync::atomic::Ordering::{Acquire, Relaxed, Release};
use std::sync::atomic::{AtomicBool, AtomicU64};
use std::sync::mpsc::Sender;
use std::sync::Arc;
use std::time::{Duration, Instant};

use ringbuf::traits::{Consumer, Observer, Producer};
use ringbuf::{HeapCons, HeapProd};

use super::stats::Shared;
use super::{EngineError, EngineEvent};
use crate::dsp::resample::StreamResampler;
use crate::io::WavFileWriter;
use crate::pipeline::{EnhancedFrame, FrameSink, Framer, Pipeline, RenderReceiver};

/// How long the thread sleeps when the ring holds less than a chunk.
const IDLE: Duration = Duration::from_millis(1);

/// Flags between the engine and its processing thread.
#[derive(Default)]
pub(crate) struct Control {
    /// Set by `Engine::stop`: drain, flush, finish.
    pub(crate) stop: AtomicBool,
    /// Set by the thread when it has flushed (stop, duration reached, device error).
    pub(crate) finished: AtomicBool,
}

/// The enhanced signal on its way to the output device.
pub(crate) struct MonitorFeed {
    pub(crate) ring: HeapProd<f32>,
    /// From the pipeline's output rate to the device's, when they differ.
    pub(crate) resampler: Option<StreamResampler>,
}

/// Everything the processing thread owns.
pub(crate) struct Processing {
    pub(crate) ring: HeapCons<f32>,
    pub(crate) pipeline: Pipeline,
    pub(crate) chunk: usize,
    pub(crate) framer: Framer,
    pub(crate) sink: Option<Box<dyn FrameSink>>,
    pub(crate) recorder: Option<WavFileWriter>,
    pub(crate) monitor: Option<MonitorFeed>,
    pub(crate) shared: Arc<Shared>,
    pub(crate) control: Arc<Control>,
    pub(crate) events: Sender<EngineEvent>,
    pub(crate) max_input_frames: Option<u64>,
    /// What the output device played, when one is open.
    pub(crate) render: Option<RenderReceiver>,
    /// Whether the pipeline cancels echo (else the render is discarded unread).
    pub(crate) echo: bool,
}

/// Counts the frames a sink receives (for the statistics) and passes them on.
struct Counting<'a> {
    inner: Option<&'a mut (dyn FrameSink + 'static)>,
    frames: &'a AtomicU64,
}

impl FrameSink for Counting<'_> {
    fn frame(&mut self, frame: &EnhancedFrame<'_>) {
        self.frames.fetch_add(1, Relaxed);
        if let Some(s) = self.inner.as_deref_mut() {
            s.frame(frame);
        }
    }
}

impl Processing {
    /// Runs until stopped, the input budget is used up, or the device fails. However it
    /// ends, the engine learns of it (`finished`, and an event for a failure).
    pub(crate) fn run(mut self) -> Result<(), EngineError> {
        let control = self.control.clone();
        let events = self.events.clone();
        let result = self.work();
        if let Err(e) = &result {
            if !matches!(e, EngineError::DeviceLost { .. }) {
                let _ = events.send(EngineEvent::Failed {
                    message: e.to_string(),
                });
            }
        }
        control.finished.store(true, Release);
        result
    }

    fn work(&mut self) -> Result<(), EngineError> {
        // RNNoise's FFT keeps per-thread plans: create them here, before real audio.
        self.pipeline.warm_up();
        let mut input = vec![0.0f32; self.chunk];
        let mut out = vec![0.0f32; self.pipeline.output_frames_max(self.chunk)];
        let mut consumed = 0u64;
        let mut outcome = Ok(());
        loop {
            // After a device error nothing more arrives: take what the ring holds, then
            // end as if stopped.
            let device_error = self.shared.device_error.load(Acquire);
            let stopping = self.control.stop.load(Acquire) || device_error != 0;
            let available = self.ring.occupied_len();
            self.shared.ring_fill.store(available as u64, Relaxed);
            self.shared
                .ring_fill_max
                .fetch_max(available as u64, Relaxed);
            let budget = self
                .max_input_frames
                .map_or(usize::MAX, |m| m.saturating_sub(consumed) as usize);
            if budget == 0 {
                break;
            }
            let want = self.chunk.min(budget);
            if available >= want || (stopping && available > 0) {
                let n = self.ring.pop_slice(&mut input[..want.min(available)]);
                let started = Instant::now();
                self.feed_render()?;
                let produced = self.pipeline.process_into_buffer(&input[..n], &mut out)?;
                if n == self.chunk {
                    self.shared
                        .processing
                        .record(started.elapsed().as_micros() as u64);
                }
                consumed += n as u64;
                self.shared.input_consumed.store(consumed, Relaxed);
                let power = input[..n].iter().map(|x| x * x).sum::<f32>() / n.max(1) as f32;
                let level = 10.0 * (power + 1e-12).log10();
                self.shared.input_level.store(level.to_bits(), Relaxed);
                self.deliver(&out[..produced])?;
                continue;
            }
            if stopping {
                if device_error != 0 {
                    let message = self
                        .shared
                        .device_error_message
                        .get()
                        .cloned()
                        .unwrap_or_else(|| "device error".into());
                    let _ = self.events.send(EngineEvent::DeviceError {
                        input: true,
                        message: message.clone(),
                    });
                    outcome = Err(EngineError::DeviceLost {
                        kind: "input",
                        message,
                    });
                }
                break;
            }
            std::thread::sleep(IDLE);
        }
        let finish = self.finish();
        self.control.finished.store(true, Release);
        let _ = self.events.send(EngineEvent::Finished);
        // Until told to stop, keep the ring drained so the callback counts no overruns
        // for audio nobody asked for.
        if outcome.is_ok() {
            while !self.control.stop.load(Acquire) {
                self.ring.skip(self.ring.occupied_len());
                if let Some(r) = self.render.as_mut() {
                    r.clear();
                }
                std::thread::sleep(IDLE * 5);
            }
        }
        outcome.and(finish)
    }

    /// Moves what the output played since the last step into the pipeline (the echo
    /// canceller's render input), before the capture it may be heard in; without echo
    /// cancellation it is dropped unread.
    fn feed_render(&mut self) -> Result<(), EngineError> {
        let Some(r) = self.render.as_mut() else {
            return Ok(());
        };
        if self.echo {
            r.drain_into(&mut self.pipeline)?;
            let s = &self.shared;
            s.render_underruns
                .store(self.pipeline.render_underruns(), Relaxed);
            s.render_overruns
                .store(self.pipeline.render_overruns(), Relaxed);
        } else {
            r.clear();
        }
        self.shared.render_dropped.store(r.dropped(), Relaxed);
        Ok(())
    }

    /// Flushes the pipeline's tail to every consumer and finalises the recording.
    fn finish(&mut self) -> Result<(), EngineError> {
        let mut tail = Vec::new();
        self.pipeline.flush(&mut tail)?;
        self.deliver(&tail)?;
        // Everything the monitor will get is in its ring: from here on, a dry ring is the
        // end of the signal (see `Monitor::on_data`).
        self.shared.monitor_ended.store(true, Release);
        let mut counting = Counting {
            inner: self.sink.as_deref_mut(),
            frames: &self.shared.frames_processed,
        };
        self.framer.finish(&mut counting);
        if let Some(s) = self.sink.as_deref_mut() {
            s.finish();
        }
        if let Some(r) = self.recorder.take() {
            r.finish()?;
        }
        Ok(())
    }

    fn deliver(&mut self, out: &[f32]) -> Result<(), EngineError> {
        if self.monitor.is_some() && self.shared.monitor_lost.load(Acquire) {
            // The output device is gone: stop feeding it, keep capturing.
            self.monitor = None;
            let message = self
                .shared
                .device_error_message
                .get()
                .cloned()
                .unwrap_or_else(|| "monitor output failed".into());
            let _ = self.events.send(EngineEvent::DeviceError {
                input: false,
                message,
            });
        }
        while let Some(e) = self.pipeline.pop_event() {
            self.framer.event(e);
        }
        self.shared
            .in_speech
            .store(self.pipeline.in_speech(), Relaxed);
        if out.is_empty() {
            return Ok(());
        }
        let mut counting = Counting {
            inner: self.sink.as_deref_mut(),
            frames: &self.shared.frames_processed,
        };
        self.framer.push(out, &mut counting);
        if let Some(r) = self.recorder.as_mut() {
            r.write(out)?;
        }
        if let Some(m) = self.monitor.as_mut() {
            let shared = &self.shared;
            let ring = &mut m.ring;
            let mut push = |x: &[f32]| {
                let pushed = ring.push_slice(x);
                shared
                    .monitor_dropped
                    .fetch_add((x.len() - pushed) as u64, Relaxed);
            };
            match m.resampler.as_mut() {
                Some(r) => r.process(out, &mut push)?,
                None => push(out),
            }
            self.shared
                .monitor_fill
                .store(m.ring.occupied_len() as u64, Relaxed);
        }
        Ok(())
    }
}
