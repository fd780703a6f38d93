//! The output callback: plays the enhanced signal from the monitor ring, mixed with the
//! player's, and hands what it played to the echo canceller's render input.
//!
//! It pops mono samples, copies each to every channel in the device's format, and
//! plays silence (counting an underrun) when the monitor ring has too little. Playback
//! of the monitor begins once the ring holds a cushion (set by the engine once both
//! streams exist: one input callback's worth of audio plus two output callbacks), so
//! the start is not a string of underruns: the enhanced signal arrives in bursts of the
//! input's callback size. Once the processing thread has put the signal's last sample in
//! the ring (capture ended: the duration was reached, the engine is stopping, the input
//! failed), the ring running dry is the end of the signal, not an underrun: the output
//! plays silence until the engine stops it, without counting.
//!
//! The player's samples (see [`super::player`]) are added to the monitor's, the sum
//! clipped to ±1.0; a player with nothing queued is silence and no underrun (an answer
//! has ended). Exactly the samples written to the device, converted back to `f32`
//! (interleaved, device rate and channels), go into the render ring at that moment.
//! Like the input callback it never allocates, locks, blocks or logs.

use std::sync::atomic::AtomicU64;
use std::sync::atomic::Ordering::{Acquire, Relaxed};
use std::sync::Arc;

use ringbuf::traits::{Consumer, Observer, Producer};
use ringbuf::{HeapCons, HeapProd};

use super::player::PlayerSource;
use super::stats::Shared;
use crate::dsp::convert::{FromF32, PcmSample};
use crate::pipeline::RenderSender;

const SCRATCH: usize = 4096;

/// State the output callback owns.
pub(crate) struct Monitor {
    /// The enhanced signal, when monitoring.
    ring: Option<HeapCons<f32>>,
    player: Option<PlayerSource>,
    render: RenderSender,
    /// A copy of the render signal for the caller ([`super::Engine::render_tap`]).
    tap: Option<(HeapProd<f32>, Arc<AtomicU64>)>,
    channels: usize,
    cushion: usize,
    primed: bool,
    scratch: Vec<f32>,
    player_scratch: Vec<f32>,
    render_scratch: Vec<f32>,
    shared: Arc<Shared>,
}

/// What the output callback plays and where its render goes.
pub(crate) struct OutputParts {
    pub(crate) monitor: Option<HeapCons<f32>>,
    pub(crate) player: Option<PlayerSource>,
    pub(crate) render: RenderSender,
    pub(crate) tap: Option<(HeapProd<f32>, Arc<AtomicU64>)>,
}

impl Monitor {
    pub(crate) fn new(
        parts: OutputParts,
        channels: usize,
        cushion: usize,
        shared: Arc<Shared>,
    ) -> Self {
        let channels = channels.max(1);
        Self {
            ring: parts.monitor,
            player: parts.player,
            render: parts.render,
            tap: parts.tap,
            channels,
            cushion,
            primed: false,
            scratch: vec![0.0; SCRATCH],
            player_scratch: vec![0.0; SCRATCH],
            render_scratch: vec![0.0; SCRATCH * channels],
            shared,
        }
    }

    /// Fills one callback's interleaved buffer.
    pub(crate) fn on_data<S: FromF32 + PcmSample>(&mut self, out: &mut [S]) {
        let mut monitor_on = false;
        let mut ended = false;
        if let Some(ring) = &self.ring {
            if !self.primed {
                let cushion = self
                    .cushion
                    .max(self.shared.monitor_cushion.load(Relaxed) as usize);
                self.primed = ring.occupied_len() >= cushion;
            }
            monitor_on = self.primed;
            // Read before the ring: if the signal had ended by then, every sample of it
            // was pushed before this callback's pops, and a shortfall is the end, not a
            // gap.
            ended = self.shared.monitor_ended.load(Acquire);
        }
        let mut short = false;
        for block in out.chunks_mut(SCRATCH * self.channels) {
            let frames = block.len() / self.channels;
            let mix = &mut self.scratch[..frames];
            mix.fill(0.0);
            if monitor_on {
                if let Some(ring) = self.ring.as_mut() {
                    let got = ring.pop_slice(mix);
                    short |= got < frames;
                }
            }
            if let Some(player) = self.player.as_mut() {
                let p = &mut self.player_scratch[..frames];
                let got = player.pop(p);
                for (m, v) in mix.iter_mut().zip(&p[..got]) {
                    *m = (*m + v).clamp(-1.0, 1.0);
                }
            }
            for (f, v) in block.chunks_exact_mut(self.channels).zip(mix.iter()) {
                f.fill(S::from_f32(*v));
            }
            // What the device got, as the echo canceller must see it.
            let render = &mut self.render_scratch[..frames * self.channels];
            for (r, s) in render.iter_mut().zip(block.iter()) {
                *r = s.to_f32();
            }
            self.render.push(render);
            if let Some((tap, dropped)) = self.tap.as_mut() {
                let n = tap.push_slice(render);
                if n < render.len() {
                    dropped.fetch_add((render.len() - n) as u64, Relaxed);
                }
            }
            // A partial frame at the end (never from a real device) is silence.
            block[frames * self.channels..].fill(S::from_f32(0.0));
        }
        let s = &self.shared;
        s.output_callbacks.fetch_add(1, Relaxed);
        s.output_frames
            .fetch_add((out.len() / self.channels) as u64, Relaxed);
        if short && !ended {
            s.underruns.fetch_add(1, Relaxed);
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
