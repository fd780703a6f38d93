//! The engine's player: a spoken answer (or any mono audio) on its way to the output
//! device, beside the monitor.
//!
//! [`EnginePlayer::play`] runs on the caller's thread: it resamples from the caller's
//! rate to the device's (a new resampler whenever the rate changes) and pushes into a
//! lock-free SPSC ring that the output callback reads. [`EnginePlayer::cancel`] drops
//! what is queued without a lock: it publishes the ring position up to which the
//! callback must discard, and the next callback skips those samples before it plays.
//! Everything the callback does here is popping, skipping and atomic stores.

use std::sync::atomic::Ordering::{Acquire, Relaxed, Release};
use std::sync::Arc;

use ringbuf::traits::{Consumer, Observer, Producer};
use ringbuf::{HeapCons, HeapProd};

use super::stats::Shared;
use crate::dsp::resample::{ResamplerKind, StreamResampler};
use crate::limits::is_supported_sample_rate;
use crate::pipeline::ResponsePlayer;

/// The output callback's end of the player's ring.
pub(crate) struct PlayerSource {
    ring: HeapCons<f32>,
    consumed: u64,
    shared: Arc<Shared>,
}

impl PlayerSource {
    pub(crate) fn new(ring: HeapCons<f32>, shared: Arc<Shared>) -> Self {
        Self {
            ring,
            consumed: 0,
            shared,
        }
    }

    /// Pops up to `out.len()` samples to play (after discarding what a `cancel`
    /// dropped); returns how many. Never blocks, locks or allocates.
    pub(crate) fn pop(&mut self, out: &mut [f32]) -> usize {
        let until = self.shared.player_discard_until.load(Acquire);
        if until > self.consumed {
            let skip = ((until - self.consumed) as usize).min(self.ring.occupied_len());
            self.consumed += self.ring.skip(skip) as u64;
        }
        let got = self.ring.pop_slice(out);
        self.consumed += got as u64;
        self.shared.player_consumed.store(self.consumed, Release);
        got
    }
}

/// The player of a running [`Engine`](super::Engine): mono audio at any rate, played on
/// the engine's output device mixed with the monitor. See [`Engine::player`](super::Engine::player).
///
/// [`play`](ResponsePlayer::play) queues, [`cancel`](ResponsePlayer::cancel) drops what
/// is queued (it is gone from the loudspeaker within one output callback),
/// [`finish`](EnginePlayer::finish) ends an answer. Neither blocks nor locks; `play`
/// allocates only when the rate changes (a new resampler). What is played also goes to
/// the echo canceller's render input, exactly as the device got it.
///
/// The player outlives its session harmlessly: after [`Engine::stop`](super::Engine::stop)
/// it accepts nothing and is not playing.
pub struct EnginePlayer {
    ring: HeapProd<f32>,
    device_rate: u32,
    kind: ResamplerKind,
    resampler: Option<StreamResampler>,
    /// Resampler output still to drop (its delay), so that a sound starts on time.
    skip: usize,
    /// Input samples given to the current resampler, and output samples it queued.
    fed: u64,
    queued: u64,
    /// Samples pushed into the ring since the start.
    pushed: u64,
    shared: Arc<Shared>,
}

impl std::fmt::Debug for EnginePlayer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EnginePlayer")
            .field("device_rate", &self.device_rate)
            .field("rate", &self.resampler.as_ref().map(|r| r.input_rate()))
            .field("queued", &self.queued_samples())
            .field("dropped", &self.dropped())
            .finish_non_exhaustive()
    }
}

impl EnginePlayer {
    pub(crate) fn new(
        ring: HeapProd<f32>,
        device_rate: u32,
        kind: ResamplerKind,
        shared: Arc<Shared>,
    ) -> Self {
        Self {
            ring,
            device_rate,
            kind,
            resampler: None,
            skip: 0,
            fed: 0,
            queued: 0,
            pushed: 0,
            shared,
        }
    }

    /// The output device's rate, Hz: what `play` resamples to.
    pub fn device_rate(&self) -> u32 {
        self.device_rate
    }

    /// Samples (at the device rate) queued and not yet played.
    pub fn queued_samples(&self) -> usize {
        let consumed = self.shared.player_consumed.load(Acquire);
        let discard = self.shared.player_discard_until.load(Relaxed);
        self.pushed.saturating_sub(consumed.max(discard)) as usize
    }

    /// Input samples that `play` could not queue so far (the queue was full, or the
    /// rate was outside the supported range).
    pub fn dropped(&self) -> u64 {
        self.shared.player_dropped.load(Relaxed)
    }

    /// Ends the current answer: plays the last few milliseconds the resampler still
    /// holds (at most one 10 ms chunk and its filter delay; nothing at the device's own
    /// rate), so the answer plays for exactly its duration. Call it when an answer is
    /// complete; the next `play` starts afresh.
    pub fn finish(&mut self) {
        let Some(r) = self.resampler.as_mut() else {
            return;
        };
        let (from, to) = (r.input_rate() as u128, r.output_rate() as u128);
        // The output the whole answer makes: its length at the device rate.
        let total = ((self.fed as u128 * to + from / 2) / from) as u64;
        let zeros = [0.0f32; 256];
        let mut left = total.saturating_sub(self.queued);
        let mut fed_zeros = 0usize;
        let limit = r.chunk_len() + r.latency() * from as usize / to as usize + 2 * 256;
        while left > 0 && fed_zeros < limit {
            let ring = &mut self.ring;
            let skip = &mut self.skip;
            let shared = &self.shared;
            let mut pushed = 0u64;
            let result = r.process(&zeros, &mut |x: &[f32]| {
                let drop = (*skip).min(x.len());
                *skip -= drop;
                let x = &x[drop..];
                let x = &x[..x.len().min(left as usize)];
                let n = ring.push_slice(x);
                left -= x.len() as u64;
                pushed += n as u64;
                if n < x.len() {
                    shared
                        .player_dropped
                        .fetch_add((x.len() - n) as u64, Relaxed);
                }
            });
            self.pushed += pushed;
            if result.is_err() {
                break;
            }
            fed_zeros += zeros.len();
        }
        self.restart();
    }

    /// Whether nothing plays the ring any more (the session ended, the device failed).
    fn gone(&self) -> bool {
        self.shared.player_closed.load(Acquire) || self.shared.monitor_lost.load(Acquire)
    }

    /// Forgets the resampler's state: the next sound starts on a fresh one.
    fn restart(&mut self) {
        if let Some(r) = self.resampler.as_mut() {
            r.reset();
            self.skip = r.latency();
        }
        self.fed = 0;
        self.queued = 0;
    }

    /// Input samples of `len` at `rate` that fit in the ring now.
    fn fitting(&self, len: usize) -> usize {
        let vacant = self.ring.vacant_len();
        match &self.resampler {
            None => len.min(vacant),
            Some(r) => {
                // Whole chunks of input make output; what they make, less the delay
                // still to skip, must fit.
                let by_rate = vacant as u64 * r.input_rate() as u64 / r.output_rate() as u64;
                let mut n = len.min(by_rate as usize);
                while n > 0 && r.output_frames_next(n).saturating_sub(self.skip) > vacant {
                    n = n.saturating_sub(r.chunk_len());
                }
                n
            }
        }
    }
}

impl ResponsePlayer for EnginePlayer {
    /// Queues mono samples at `rate` Hz, resampled here to the device rate; returns how
    /// many were accepted (the rest did not fit and is counted as dropped). A rate
    /// outside 8–192 kHz accepts nothing.
    fn play(&mut self, samples: &[f32], rate: u32) -> usize {
        if self.gone() || samples.is_empty() {
            return 0;
        }
        if !is_supported_sample_rate(rate) {
            self.shared
                .player_dropped
                .fetch_add(samples.len() as u64, Relaxed);
            return 0;
        }
        let current = self
            .resampler
            .as_ref()
            .map_or(self.device_rate, |r| r.input_rate());
        if current != rate {
            // A new rate: end what the old resampler holds, then start a new one.
            self.finish();
            self.resampler = if rate == self.device_rate {
                None
            } else {
                match StreamResampler::new(rate, self.device_rate, self.kind) {
                    Ok(r) => Some(r),
                    Err(_) => {
                        self.shared
                            .player_dropped
                            .fetch_add(samples.len() as u64, Relaxed);
                        return 0;
                    }
                }
            };
            self.restart();
        }
        let n = self.fitting(samples.len());
        if n < samples.len() {
            self.shared
                .player_dropped
                .fetch_add((samples.len() - n) as u64, Relaxed);
        }
        let accepted = &samples[..n];
        let ring = &mut self.ring;
        let shared = &self.shared;
        let mut pushed = 0u64;
        let mut queued = 0u64;
        match self.resampler.as_mut() {
            None => {
                pushed = ring.push_slice(accepted) as u64;
            }
            Some(r) => {
                let skip = &mut self.skip;
                let result = r.process(accepted, &mut |x: &[f32]| {
                    let drop = (*skip).min(x.len());
                    *skip -= drop;
                    let x = &x[drop..];
                    queued += x.len() as u64;
                    let k = ring.push_slice(x);
                    pushed += k as u64;
                    if k < x.len() {
                        shared
                            .player_dropped
                            .fetch_add((x.len() - k) as u64, Relaxed);
                    }
                });
                if result.is_err() {
                    return 0;
                }
                self.fed += n as u64;
                self.queued += queued;
            }
        }
        self.pushed += pushed;
        n
    }

    /// Drops everything queued: the output callback discards it at its next run (no
    /// lock, no wait). What the resampler held is dropped too.
    fn cancel(&mut self) {
        self.shared.player_discard_until.store(self.pushed, Release);
        self.restart();
    }

    /// Whether samples are queued that the device has not taken yet.
    fn is_playing(&self) -> bool {
        !self.gone() && self.queued_samples() > 0
    }
}

/// A copy of everything the engine's output device played, as the echo canceller's
/// render input gets it: interleaved `f32` at the device's rate and channels
/// ([`StreamInfo::monitor_rate`](super::StreamInfo::monitor_rate),
/// [`StreamInfo::monitor_channels`](super::StreamInfo::monitor_channels)), each sample the
/// value the device was given, converted back from its sample format. For an
/// application's own echo canceller, a level meter or a test; from
/// [`Engine::render_tap`](super::Engine::render_tap).
///
/// It is a lock-free ring filled by the output callback: what does not fit when the
/// reader falls behind is dropped (and [`RenderTap::dropped`] counts it).
pub struct RenderTap {
    pub(crate) ring: HeapCons<f32>,
    pub(crate) dropped: Arc<std::sync::atomic::AtomicU64>,
}

impl std::fmt::Debug for RenderTap {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RenderTap")
            .field("queued", &self.ring.occupied_len())
            .field("dropped", &self.dropped())
            .finish()
    }
}

impl RenderTap {
    /// Moves up to `out.len()` queued samples into `out`; returns how many.
    pub fn pop(&mut self, out: &mut [f32]) -> usize {
        self.ring.pop_slice(out)
    }

    /// Everything queued now.
    pub fn take_all(&mut self) -> Vec<f32> {
        let mut v = vec![0.0; self.ring.occupied_len()];
        let n = self.ring.pop_slice(&mut v);
        v.truncate(n);
        v
    }

    /// Samples the output callback could not queue (the tap was full).
    pub fn dropped(&self) -> u64 {
        self.dropped.load(Relaxed)
    }
}
