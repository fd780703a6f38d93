//! The input callback: the only code that runs on the audio device's thread for capture.
//!
//! It converts the device's samples to `f32`, reduces them to one channel into a
//! buffer allocated before the stream starts, and pushes them into a lock-free SPSC
//! ring. It never allocates, locks, blocks or logs: a full ring is counted as an
//! overrun (the audio that did not fit is dropped) in atomic counters. Resampling and
//! everything else happen on the processing thread.

use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;

use ringbuf::traits::Producer;
use ringbuf::HeapProd;

use super::stats::Shared;
use crate::dsp::convert::{Downmixer, PcmSample};

/// Frames converted per step; a larger callback is handled in several steps.
pub(crate) const SCRATCH_FRAMES: usize = 4096;

/// State the input callback owns.
pub(crate) struct Capture {
    ring: HeapProd<f32>,
    downmix: Downmixer,
    scratch: Vec<f32>,
    shared: Arc<Shared>,
}

impl Capture {
    pub(crate) fn new(ring: HeapProd<f32>, downmix: Downmixer, shared: Arc<Shared>) -> Self {
        Self {
            ring,
            downmix,
            scratch: vec![0.0; SCRATCH_FRAMES],
            shared,
        }
    }

    /// Handles one callback's interleaved samples.
    pub(crate) fn on_data<S: PcmSample>(&mut self, data: &[S]) {
        let channels = self.downmix.channels();
        let frames = data.len() / channels;
        let mut dropped = 0usize;
        for chunk in data.chunks(SCRATCH_FRAMES * channels) {
            let n = self.downmix.process(chunk, &mut self.scratch);
            let pushed = self.ring.push_slice(&self.scratch[..n]);
            dropped += n - pushed;
        }
        let s = &self.shared;
        s.callbacks.fetch_add(1, Relaxed);
        s.captured_frames.fetch_add(frames as u64, Relaxed);
        s.max_callback_frames.fetch_max(frames as u64, Relaxed);
        if dropped > 0 {
            s.overruns.fetch_add(1, Relaxed);
            s.overrun_frames.fetch_add(dropped as u64, Relaxed);
        }
    }

    /// Handles a callback in cpal's dynamically typed form.
    pub(crate) fn on_raw(&mut self, data: &cpal::Data) {
        use cpal::SampleFormat as F;
        match data.sample_format() {
            F::I16 => self.on_data(data.as_slice::<i16>().unwrap_or(&[])),
            F::I32 => self.on_data(data.as_slice::<i32>().unwrap_or(&[])),
            F::F32 => self.on_data(data.as_slice::<f32>().unwrap_or(&[])),
            F::U16 => self.on_data(data.as_slice::<u16>().unwrap_or(&[])),
            // The stream was opened in one of the formats above; anything else is
            // ignored rather than misread.
            _ => {}
        }
    }
}
