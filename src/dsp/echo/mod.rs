//! Acoustic echo cancellation: the loudspeaker's sound (the render signal) taken out
//! of the microphone's (the capture), first in the chain.
//!
//! ```text
//! render ─► delay estimator ─► aligned render history
//!                                   │
//! capture ─────────────────► adaptive linear filter (partitioned, frequency domain)
//!                                   │ error = capture − echo estimate
//!                                   ▼
//!                      residual echo suppressor (per-bin gains, 5 ms STFT)
//!                                   │
//!                                   ▼ to the denoiser
//! ```
//!
//! See [`EchoCanceller`].

mod delay;
mod filter;
mod suppressor;

use std::sync::Arc;

use realfft::num_complex::Complex32;
use realfft::{ComplexToReal, RealFftPlanner, RealToComplex};
use serde::{Deserialize, Serialize};

use super::{Frame, FRAME_LEN};
use crate::error::{Error, Result};
use delay::{band_log_energies, DelayEstimator, BANDS};
use filter::{EchoPath, Which};
use suppressor::{Suppressor, HOP};

/// Transform length of the linear filter: two blocks (overlap-save).
const FFT_LEN: usize = 2 * FRAME_LEN;
const BINS: usize = FFT_LEN / 2 + 1;
/// Partitions kept before the delay estimate's, for the echo's first arrival.
const LEAD_PARTS: usize = 2;
/// Decay per block of the render model: a reverberation time of about 0.6 s.
const MODEL_DECAY: f32 = 0.8;
/// Blocks after the last active render during which the echo can still dominate
/// (a room's reverberation).
const FAR_END_HOLD_BLOCKS: usize = 50;
/// How much of the capture's energy the canceller must be removing (dB, over the last
/// frames) for a frame to count as the far end's alone.
const FAR_END_REMOVED_DB: f32 = 6.0;
/// Blocks of render (2 s) the canceller takes to learn a room; until then, frames
/// while render plays count as the far end's alone.
const LEARNING_BLOCKS: u32 = 200;
/// Mean square (−60 dBFS) below which output heard while the echo may still ring is
/// taken for the echo's tail, not the near end.
const NEAR_END_FLOOR: f32 = 1e-6;
/// Render below this mean square (about −70 dBFS) is silence to the canceller.
const ACTIVE_POWER: f32 = 1e-7;

/// The echo canceller's settings (the `[echo]` table of a configuration).
///
/// Off in every preset: a pipeline with it on takes 5 ms more latency, and it needs a
/// render signal ([`Pipeline::push_render`](crate::Pipeline::push_render)). The CLI
/// turns it on when it has one (`enhance --echo-ref`, `live --play-responses`).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct EchoConfig {
    /// Whether the stage runs.
    pub enabled: bool,
    /// The longest delay between render and capture searched for, ms (device
    /// latencies: 10–300 ms).
    pub max_delay_ms: u32,
    /// The length of the echo path the linear filter models, ms (a room's reverberation
    /// beyond it is left to the suppressor).
    pub tail_ms: u32,
    /// How hard the residual suppressor works, 0 (off) to 2; 1 is the tuned default.
    pub suppression: f32,
}

impl Default for EchoConfig {
    fn default() -> Self {
        Self {
            enabled: false,
            max_delay_ms: 400,
            tail_ms: 250,
            suppression: 1.0,
        }
    }
}

impl EchoConfig {
    /// Checks every value; the error names the field and the allowed range.
    pub fn validate(&self) -> Result<()> {
        if !(20..=1000).contains(&self.max_delay_ms) {
            return Err(Error::Config(format!(
                "echo.max_delay_ms = {}: must be in 20..1000",
                self.max_delay_ms
            )));
        }
        if !(20..=500).contains(&self.tail_ms) {
            return Err(Error::Config(format!(
                "echo.tail_ms = {}: must be in 20..500",
                self.tail_ms
            )));
        }
        if !(0.0..=2.0).contains(&self.suppression) {
            return Err(Error::Config(format!(
                "echo.suppression = {}: must be in 0..2",
                self.suppression
            )));
        }
        Ok(())
    }
}

/// What the echo canceller knows of the echo now.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct EchoStats {
    /// The delay from render to capture it found, samples at 48 kHz (`None` before the
    /// render has been loud enough to find it).
    pub delay: Option<usize>,
    /// Echo return loss enhancement of the linear filter over the last second, dB.
    pub erle_db: f32,
    /// Whether render has been heard recently (the canceller is working).
    pub active: bool,
}

/// The acoustic echo canceller. See the [module documentation](self).
///
/// It takes 48 kHz frames of the capture and of the render (as played, on the
/// capture's clock) and writes the capture without the echo, [`EchoCanceller::latency`]
/// samples late. It never allocates after [`EchoCanceller::new`].
///
/// # Examples
///
/// ```
/// use clearvox::dsp::echo::{EchoCanceller, EchoConfig};
/// use clearvox::dsp::FRAME_LEN;
///
/// let mut aec = EchoCanceller::new(&EchoConfig { enabled: true, ..EchoConfig::default() })?;
/// // A loudspeaker playing noise, heard 5 ms later at half its level.
/// let mut seed = 1u32;
/// let render: Vec<f32> = (0..300 * FRAME_LEN)
///     .map(|_| {
///         seed = seed.wrapping_mul(1_664_525).wrapping_add(1_013_904_223);
///         (seed >> 8) as f32 / (1u32 << 24) as f32 - 0.5
///     })
///     .collect();
/// let mut heard = 0.0;
/// let mut left = 0.0;
/// for (n, block) in render.chunks_exact(FRAME_LEN).enumerate() {
///     let mut capture = [0.0f32; FRAME_LEN];
///     for (i, c) in capture.iter_mut().enumerate() {
///         let t = n * FRAME_LEN + i;
///         *c = if t >= 240 { 0.5 * render[t - 240] } else { 0.0 };
///     }
///     let render_frame: [f32; FRAME_LEN] = block.try_into().expect("whole frames");
///     if n >= 200 {
///         heard += capture.iter().map(|x| x * x).sum::<f32>();
///     }
///     aec.process(&mut capture, &render_frame);
///     if n >= 200 {
///         left += capture.iter().map(|x| x * x).sum::<f32>();
///     }
/// }
/// // After two seconds, the echo is down by more than 30 dB.
/// assert!(10.0 * (heard / left).log10() > 30.0);
/// # Ok::<(), clearvox::Error>(())
/// ```
pub struct EchoCanceller {
    config: EchoConfig,
    fft: Arc<dyn RealToComplex<f32>>,
    ifft: Arc<dyn ComplexToReal<f32>>,
    scratch: Vec<Complex32>,
    time: Vec<f32>,
    render_prev: Frame,
    capture_prev: Frame,
    /// Render spectra of the last blocks, `history_len` of them, newest at `head`.
    history: Vec<Complex32>,
    history_len: usize,
    head: usize,
    /// Blocks since the render was last active.
    quiet_blocks: usize,
    delay: DelayEstimator,
    /// The filter's first partition, blocks after the newest render.
    offset: usize,
    path: EchoPath,
    power: Vec<f32>,
    spectrum: Vec<Complex32>,
    error_spec: Vec<Complex32>,
    fg_echo: Frame,
    fg_error: Frame,
    bg_error: Frame,
    render_bands: [f32; BANDS],
    capture_bands: [f32; BANDS],
    suppressor: Suppressor,
    /// The render's power at the echo's delay with a room's decay, per suppressor bin.
    render_model: Vec<f32>,
    /// Linear ERLE, block energies smoothed over about a second.
    mic_energy: f32,
    error_energy: f32,
    /// Blocks of active render seen since the start (saturating).
    active_blocks: u32,
    /// Energy the whole canceller removed lately, dB.
    removed_db: f32,
    capture_energy: f32,
    output_energy: f32,
}

impl std::fmt::Debug for EchoCanceller {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EchoCanceller")
            .field("config", &self.config)
            .field("stats", &self.stats())
            .finish_non_exhaustive()
    }
}

impl EchoCanceller {
    /// A canceller for 48 kHz frames.
    pub fn new(config: &EchoConfig) -> Result<Self> {
        config.validate()?;
        let mut planner = RealFftPlanner::new();
        let fft = planner.plan_fft_forward(FFT_LEN);
        let ifft = planner.plan_fft_inverse(FFT_LEN);
        let scratch_len = fft.get_scratch_len().max(ifft.get_scratch_len());
        let lags = (config.max_delay_ms as usize * 48).div_ceil(FRAME_LEN);
        let parts = LEAD_PARTS + (config.tail_ms as usize * 48).div_ceil(FRAME_LEN);
        let history_len = lags + parts + 1;
        Ok(Self {
            config: config.clone(),
            scratch: vec![Complex32::default(); scratch_len],
            time: vec![0.0; FFT_LEN],
            render_prev: [0.0; FRAME_LEN],
            capture_prev: [0.0; FRAME_LEN],
            history: vec![Complex32::default(); history_len * BINS],
            history_len,
            head: 0,
            quiet_blocks: usize::MAX / 2,
            delay: DelayEstimator::new(lags),
            offset: 0,
            path: EchoPath::new(parts, BINS),
            power: vec![0.0; BINS],
            spectrum: vec![Complex32::default(); BINS],
            error_spec: vec![Complex32::default(); BINS],
            fg_echo: [0.0; FRAME_LEN],
            fg_error: [0.0; FRAME_LEN],
            bg_error: [0.0; FRAME_LEN],
            render_bands: [0.0; BANDS],
            capture_bands: [0.0; BANDS],
            suppressor: Suppressor::new(&mut planner, config.suppression),
            render_model: vec![0.0; suppressor::BINS],
            mic_energy: 0.0,
            error_energy: 0.0,
            active_blocks: 0,
            removed_db: 0.0,
            capture_energy: 0.0,
            output_energy: 0.0,
            fft,
            ifft,
        })
    }

    /// Short name, for reports and benchmarks.
    pub fn name(&self) -> &'static str {
        "echo"
    }

    /// How many samples the output lags the capture (the suppressor's transform).
    pub fn latency(&self) -> usize {
        suppressor::LATENCY
    }

    /// What the canceller knows of the echo now.
    pub fn stats(&self) -> EchoStats {
        EchoStats {
            delay: self.delay.estimate().map(|d| d * FRAME_LEN),
            erle_db: 10.0 * ((self.mic_energy + 1e-12) / (self.error_energy + 1e-12)).log10(),
            active: self.is_active(),
        }
    }

    /// How much of the current frame is the near end's, as far as the canceller can
    /// tell: 1 when no render was played within the last 500 ms; otherwise 0 during the
    /// first 2 s of render (the room is being learned: a user talking over the first
    /// words of the first answer is not told from its echo) and for output under
    /// −60 dBFS (the echo's tail), falling from 1 to 0 as the share of the
    /// capture's energy it removes rises to 6 dB. A voice
    /// activity detector weighs its voice probability with it, so that it does not
    /// start speech on the assistant's own voice (a false barge-in).
    pub fn near_end_weight(&self) -> f32 {
        if self.quiet_blocks >= FAR_END_HOLD_BLOCKS {
            1.0
        } else if self.active_blocks < LEARNING_BLOCKS {
            // The room is not learned yet: what plays is taken to be all that is heard.
            0.0
        } else if self.output_energy < NEAR_END_FLOOR * FRAME_LEN as f32 {
            // Too faint to be a person talking to the device: the echo's tail.
            0.0
        } else {
            (1.0 - self.removed_db / FAR_END_REMOVED_DB).clamp(0.0, 1.0)
        }
    }

    fn is_active(&self) -> bool {
        self.quiet_blocks < self.history_len
    }

    /// Removes the echo of `render` (the loudspeaker's frame, as it was played) from
    /// `capture`, in place.
    pub fn process(&mut self, capture: &mut Frame, render: &Frame) {
        // The capture this frame's output comes from (the suppressor is late by its
        // latency): the end of the previous frame and the start of this one.
        let late = suppressor::LATENCY;
        let captured: f32 = self.capture_prev[FRAME_LEN - late..]
            .iter()
            .chain(&capture[..FRAME_LEN - late])
            .map(|x| x * x)
            .sum();
        let render_power = render.iter().map(|x| x * x).sum::<f32>() / FRAME_LEN as f32;
        let render_active = render_power > ACTIVE_POWER;
        if render_active {
            self.active_blocks = self.active_blocks.saturating_add(1);
        }
        self.quiet_blocks = if render_active {
            0
        } else {
            self.quiet_blocks.saturating_add(1)
        };
        self.push_render(render);
        if self.is_active() {
            self.cancel_linear(capture, render_active);
        } else {
            self.fg_error = *capture;
            self.fg_echo = [0.0; FRAME_LEN];
            self.capture_prev = *capture;
        }
        self.update_render_model();
        let learn = render_active;
        for h in 0..FRAME_LEN / HOP {
            let span = h * HOP..(h + 1) * HOP;
            self.suppressor.process(
                &self.fg_error[span.clone()],
                &self.fg_echo[span.clone()],
                &self.render_model,
                learn,
                &mut capture[span],
            );
        }
        let output: f32 = capture.iter().map(|x| x * x).sum();
        self.capture_energy = 0.6 * self.capture_energy + 0.4 * captured;
        self.output_energy = 0.6 * self.output_energy + 0.4 * output;
        self.removed_db =
            10.0 * ((self.capture_energy + 1e-9) / (self.output_energy + 1e-9)).log10();
    }

    /// The render's power where its echo arrives: around the estimated delay, or at any
    /// delay before one is known; held with a room's decay.
    fn update_render_model(&mut self) {
        let (first, last) = match self.delay.estimate() {
            Some(d) => (d.saturating_sub(1), d + 1),
            None => (0, self.history_len - 1),
        };
        for m in &mut self.render_model {
            *m *= MODEL_DECAY;
        }
        for blocks in first..=last.min(self.history_len - 1) {
            let x = Self::render_at(&self.history, self.head, self.history_len, blocks);
            for (k, m) in self.render_model.iter_mut().enumerate() {
                // Suppressor bin k spans the linear filter's bins 2k - 1 ..= 2k + 1.
                let lo = (2 * k).saturating_sub(1);
                let hi = (2 * k + 1).min(BINS - 1);
                let p: f32 = x[lo..=hi].iter().map(|c| c.norm_sqr()).sum();
                if p > *m {
                    *m = p;
                }
            }
        }
    }

    /// Transforms the render block into the history.
    fn push_render(&mut self, render: &Frame) {
        self.head = (self.head + 1) % self.history_len;
        self.time[..FRAME_LEN].copy_from_slice(&self.render_prev);
        self.time[FRAME_LEN..].copy_from_slice(render);
        self.render_prev = *render;
        let slot = &mut self.history[self.head * BINS..(self.head + 1) * BINS];
        // Buffers have the plan's lengths: the transform cannot fail.
        let _ = self
            .fft
            .process_with_scratch(&mut self.time, slot, &mut self.scratch);
    }

    /// The render spectrum `blocks` blocks before the newest.
    fn render_at(history: &[Complex32], head: usize, len: usize, blocks: usize) -> &[Complex32] {
        let i = (head + len - blocks % len) % len;
        &history[i * BINS..(i + 1) * BINS]
    }

    fn cancel_linear(&mut self, capture: &Frame, render_active: bool) {
        // The delay, from the envelopes of this block.
        self.time[..FRAME_LEN].copy_from_slice(&self.capture_prev);
        self.time[FRAME_LEN..].copy_from_slice(capture);
        self.capture_prev = *capture;
        let _ =
            self.fft
                .process_with_scratch(&mut self.time, &mut self.spectrum, &mut self.scratch);
        band_log_energies(&self.spectrum, &mut self.capture_bands);
        let newest = Self::render_at(&self.history, self.head, self.history_len, 0);
        band_log_energies(newest, &mut self.render_bands);
        if let Some(d) = self
            .delay
            .update(&self.render_bands, &self.capture_bands, render_active)
        {
            let offset = d.saturating_sub(LEAD_PARTS);
            if offset != self.offset {
                self.path.shift(offset as isize - self.offset as isize);
                self.offset = offset;
            }
        }

        let (history, head, len, offset) =
            (&self.history, self.head, self.history_len, self.offset);
        let render = |p: usize| Self::render_at(history, head, len, offset + p);

        // Render power per bin over the filter's partitions, regularised.
        let parts = self.path.parts();
        let floor = 1e-4 * (FFT_LEN * parts) as f32;
        self.power.fill(floor);
        for p in 0..parts {
            for (s, x) in self.power.iter_mut().zip(render(p)) {
                *s += x.norm_sqr();
            }
        }

        // Both filters' estimates and errors.
        let mic: f32 = capture.iter().map(|x| x * x).sum();
        let mut errors = [0.0f32; 2];
        for (i, which) in [Which::Foreground, Which::Background]
            .into_iter()
            .enumerate()
        {
            self.path.estimate(which, render, &mut self.spectrum);
            self.spectrum[0].im = 0.0;
            self.spectrum[BINS - 1].im = 0.0;
            let _ = self.ifft.process_with_scratch(
                &mut self.spectrum,
                &mut self.time,
                &mut self.scratch,
            );
            let scale = 1.0 / FFT_LEN as f32;
            let (echo_out, error_out) = match which {
                Which::Foreground => (Some(&mut self.fg_echo), &mut self.fg_error),
                Which::Background => (None, &mut self.bg_error),
            };
            let echo = &self.time[FRAME_LEN..];
            for ((o, c), y) in error_out.iter_mut().zip(capture).zip(echo) {
                *o = c - y * scale;
            }
            if let Some(e) = echo_out {
                for (o, y) in e.iter_mut().zip(echo) {
                    *o = y * scale;
                }
            }
            errors[i] = error_out.iter().map(|x| x * x).sum();
        }

        // Adapt the background on its error.
        if render_active {
            self.time[..FRAME_LEN].fill(0.0);
            self.time[FRAME_LEN..].copy_from_slice(&self.bg_error);
            let _ = self.fft.process_with_scratch(
                &mut self.time,
                &mut self.error_spec,
                &mut self.scratch,
            );
            self.path.adapt(render, &self.error_spec, &self.power);
            self.constrain();
        }
        self.path.arbitrate(errors[0], errors[1], mic);
        if render_active {
            self.mic_energy = 0.99 * self.mic_energy + 0.01 * mic;
            self.error_energy = 0.99 * self.error_energy + 0.01 * errors[0];
        }
    }

    /// Keeps one partition's impulse response within its block (the gradient
    /// constraint of overlap-save), a partition per block in turn.
    fn constrain(&mut self) {
        let w = self.path.next_constraint();
        self.spectrum.copy_from_slice(w);
        self.spectrum[0].im = 0.0;
        self.spectrum[BINS - 1].im = 0.0;
        let _ =
            self.ifft
                .process_with_scratch(&mut self.spectrum, &mut self.time, &mut self.scratch);
        let scale = 1.0 / FFT_LEN as f32;
        for t in &mut self.time[..FRAME_LEN] {
            *t *= scale;
        }
        self.time[FRAME_LEN..].fill(0.0);
        let w = self.path.current_constraint();
        let _ = self
            .fft
            .process_with_scratch(&mut self.time, w, &mut self.scratch);
    }

    /// Forgets all signal history.
    pub fn reset(&mut self) {
        self.render_prev = [0.0; FRAME_LEN];
        self.capture_prev = [0.0; FRAME_LEN];
        self.history.fill(Complex32::default());
        self.head = 0;
        self.quiet_blocks = usize::MAX / 2;
        self.delay.reset();
        self.offset = 0;
        self.path.reset();
        self.suppressor.reset();
        self.render_model.fill(0.0);
        self.mic_energy = 0.0;
        self.error_energy = 0.0;
        self.active_blocks = 0;
        self.removed_db = 0.0;
        self.capture_energy = 0.0;
        self.output_energy = 0.0;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn absurd_settings_are_refused_with_the_field_and_its_range() {
        for (config, field) in [
            (
                EchoConfig {
                    max_delay_ms: 0,
                    ..EchoConfig::default()
                },
                "echo.max_delay_ms",
            ),
            (
                EchoConfig {
                    max_delay_ms: u32::MAX,
                    ..EchoConfig::default()
                },
                "echo.max_delay_ms",
            ),
            (
                EchoConfig {
                    tail_ms: 10_000,
                    ..EchoConfig::default()
                },
                "echo.tail_ms",
            ),
            (
                EchoConfig {
                    suppression: f32::NAN,
                    ..EchoConfig::default()
                },
                "echo.suppression",
            ),
            (
                EchoConfig {
                    suppression: -1.0,
                    ..EchoConfig::default()
                },
                "echo.suppression",
            ),
        ] {
            let err = EchoCanceller::new(&config).unwrap_err().to_string();
            assert!(err.contains(field) && err.contains("must be in"), "{err}");
        }
    }
}
