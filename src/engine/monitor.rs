//! The output callback: plays the enhanced signal from the monitor ring.
//!
//! It pops mono samples, copies each to every channel in the device's format, and
//! plays silence (counting an underrun) when the ring has too little. Playback begins
//! once the ring holds a cushion (set by the engine once both streams exist: one input
//! callback's worth of audio plus two output callbacks), so the start is not a string
//! of underruns: the enhanced signal arrives in bursts of the input's callback size.
//! Once the processing thread has put the signal's last sample in the ring (capture
//! ended: the duration was reached, the engine is stopping, the input failed), the ring
//! running dry is the end of the signal, not an underrun: the output plays silence until
//! the engine stops it, without counting.
//! Like the input callback it never allocates, locks, blocks or logs.

use std::sync::atomic::Ordering::{Acquire, Relaxed};
use std::sync::Arc;

use ringbuf::traits::{Consumer, Observer};
use ringbuf::HeapCons;

use super::stats::Shared;
use crate::dsp::convert::FromF32;

const SCRATCH: usize = 4096;

/// State the output callback owns.
pub(crate) struct Monitor {
    ring: HeapCons<f32>,
    channels: usize,
    cushion: usize,
    primed: bool,
    scratch: Vec<f32>,
    shared: Arc<Shared>,
}

impl Monitor {
    pub(crate) fn new(
        ring: HeapCons<f32>,
        channels: usize,
        cushion: usize,
        shared: Arc<Shared>,
    ) -> Self {
        Self {
            ring,
            channels: channels.max(1),
            cushion,
            primed: false,
            scratch: vec![0.0; SCRATCH],
            shared,
        }
    }

    /// Fills one callback's interleaved buffer.
    pub(crate) fn on_data<S: FromF32>(&mut self, out: &mut [S]) {
        let silence = S::from_f32(0.0);
        if !self.primed {
            let cushion = self
                .cushion
                .max(self.shared.monitor_cushion.load(Relaxed) as usize);
            if self.ring.occupied_len() < cushion {
                out.fill(silence);
                return;
            }
            self.primed = true;
        }
        // Read before the ring: if the signal had ended by then, every sample of it was
        // pushed before this callback's pops, and a shortfall is the end, not a gap.
        let ended = self.shared.monitor_ended.load(Acquire);
        let mut short = false;
        for block in out.chunks_mut(SCRATCH * self.channels) {
            let frames = block.len() / self.channels;
            let got = self.ring.pop_slice(&mut self.scratch[..frames]);
            if got < frames {
                short = true;
                self.scratch[got..frames].fill(0.0);
            }
            for (f, v) in block
                .chunks_exact_mut(self.channels)
                .zip(&self.scratch[..frames])
            {
                f.fill(S::from_f32(*v));
            }
        }
        if short && !ended {
            self.shared.underruns.fetch_add(1, Relaxed);
        }
    }

    /// Fills a buffer in cpal's dynamically typed form.
    pub(crate) fn on_raw(&mut self, data: &mut cpal::Data) {
        use cpal::SampleFormat as F;
        match data.sample_format() {
            F::I16 => self.on_data(data.as_slice_mut::<i16>().unwrap_or(&mut [])),
            F::I32 => self.on_data(data.as_slice_mut::<i32>().unwrap_or(&mut [])),
            F::F32 => self.on_data(data.as_slice_mut::<f32>().unwrap_or(&mut [])),
            F::U16 => self.on_data(data.as_slice_mut::<u16>().unwrap_or(&mut [])),
            _ => {}
        }
    }
}
