//! The residual echo suppressor: per-bin gains on a short-time spectrum of the linear
//! filter's output, where the echo the filter left is estimated to dominate.
//!
//! What the linear filter leaves is mostly proportional to its own echo estimate: a
//! filter that cancels 15 dB leaves about 1/30 of the estimate's power in each bin,
//! more where the loudspeaker distorts or the room's reverberation outlasts the filter.
//! That ratio (the *leak*) is tracked per bin as the lowest error-to-estimate power
//! ratio seen lately: in moments without near-end speech the error is all leak, and
//! near-end speech only ever raises the ratio. The residual echo is then the leak times
//! the echo estimate, or the previous residual decaying as a room's reverberation does,
//! whichever is larger; each bin's gain is a Wiener-like `1 - overdrive · residual /
//! error`, floored, and smoothed so that it opens at once for the near end and closes
//! over a few milliseconds.
//!
//! The transform is short (10 ms window, 5 ms hop, square-root Hann windows summing to
//! one), so the suppressor delays the signal by 5 ms: [`LATENCY`].

use std::sync::Arc;

use realfft::num_complex::Complex32;
use realfft::{ComplexToReal, RealFftPlanner, RealToComplex};

use crate::dsp::FRAME_LEN;

/// Hop of the suppressor's transform, samples.
pub(super) const HOP: usize = FRAME_LEN / 2;
/// Window length.
const WINDOW: usize = 2 * HOP;
pub(super) const BINS: usize = WINDOW / 2 + 1;
/// The delay the suppressor adds, samples.
pub(super) const LATENCY: usize = WINDOW - HOP;
/// Step of the running medians per hop (about 13 dB a second at most).
const MEDIAN_STEP: f32 = 1.015;
/// Bins (100 Hz each) where the near end's voice is looked for, and how much more than
/// the echo explains an error bin must hold to count as the near end's.
const NEAR_FIRST_BIN: usize = 3;
const NEAR_LAST_BIN: usize = 40;
const NEAR_RATIO: f32 = 3.0;
/// Hops the near end counts as talking after it was last seen (150 ms).
const NEAR_HANGOVER_HOPS: u32 = 30;
/// How much harder the suppressor works while only the far end talks.
const FAR_ONLY_OVERDRIVE: f32 = 2.0;
/// Decay of the residual per hop: a reverberation of RT60 ≈ 0.3 s.
const TAIL_DECAY: f32 = 0.83;

/// The suppressor. See the [module documentation](self).
pub(super) struct Suppressor {
    fft: Arc<dyn RealToComplex<f32>>,
    ifft: Arc<dyn ComplexToReal<f32>>,
    window: Vec<f32>,
    error_hist: Vec<f32>,
    echo_hist: Vec<f32>,
    frame: Vec<f32>,
    error_spec: Vec<Complex32>,
    echo_spec: Vec<Complex32>,
    scratch: Vec<Complex32>,
    ola: Vec<f32>,
    error_power: Vec<f32>,
    echo_power: Vec<f32>,
    leak: Vec<f32>,
    /// The lower envelopes of the leak and of the path gain: the residual estimate while
    /// the near end talks, when over-estimating it would cost the user's voice.
    leak_low: Vec<f32>,
    path_gain_low: Vec<f32>,
    /// Error power per unit of the render model: the whole echo path's gain where the
    /// linear filter has not converged (yet).
    path_gain: Vec<f32>,
    model_power: Vec<f32>,
    residual: Vec<f32>,
    gain: Vec<f32>,
    /// Hops left in which the near end counts as talking.
    near_hops: u32,
    overdrive: f32,
    floor: f32,
}

impl std::fmt::Debug for Suppressor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Suppressor")
            .field("overdrive", &self.overdrive)
            .field("floor", &self.floor)
            .finish_non_exhaustive()
    }
}

impl Suppressor {
    /// A suppressor of the given strength (0 = off, 1 = default, 2 = strongest).
    pub(super) fn new(planner: &mut RealFftPlanner<f32>, strength: f32) -> Self {
        let fft = planner.plan_fft_forward(WINDOW);
        let ifft = planner.plan_fft_inverse(WINDOW);
        let scratch_len = fft.get_scratch_len().max(ifft.get_scratch_len());
        let window = (0..WINDOW)
            .map(|n| (std::f32::consts::PI * (n as f32 + 0.5) / WINDOW as f32).sin())
            .collect();
        Self {
            fft,
            ifft,
            window,
            error_hist: vec![0.0; WINDOW],
            echo_hist: vec![0.0; WINDOW],
            frame: vec![0.0; WINDOW],
            error_spec: vec![Complex32::default(); BINS],
            echo_spec: vec![Complex32::default(); BINS],
            scratch: vec![Complex32::default(); scratch_len],
            ola: vec![0.0; WINDOW],
            error_power: vec![0.0; BINS],
            echo_power: vec![0.0; BINS],
            leak: vec![1.0; BINS],
            path_gain: vec![0.0; BINS],
            leak_low: vec![1.0; BINS],
            path_gain_low: vec![0.0; BINS],
            model_power: vec![0.0; BINS],
            residual: vec![0.0; BINS],
            gain: vec![1.0; BINS],
            near_hops: 0,
            overdrive: 2.0 * strength,
            floor: if strength > 0.0 {
                crate::dsp::db_to_gain(-30.0 * strength)
            } else {
                1.0
            },
        }
    }

    /// Suppresses one hop: `error` is the linear filter's output, `echo` its echo
    /// estimate, both [`HOP`] samples; writes [`HOP`] samples, [`LATENCY`] late.
    ///
    /// `model` is the render's power at the echo's delay, with a room's decay, per bin
    /// (any scale): the suppressor learns the echo path's gain over it.
    pub(super) fn process(
        &mut self,
        error: &[f32],
        echo: &[f32],
        model: &[f32],
        learn: bool,
        out: &mut [f32],
    ) {
        self.error_hist.copy_within(HOP.., 0);
        self.error_hist[HOP..].copy_from_slice(error);
        self.echo_hist.copy_within(HOP.., 0);
        self.echo_hist[HOP..].copy_from_slice(echo);
        self.transform(true);
        self.transform(false);
        self.update_gains(model, learn);
        for (c, g) in self.error_spec.iter_mut().zip(&self.gain) {
            *c *= *g;
        }
        self.error_spec[0].im = 0.0;
        self.error_spec[BINS - 1].im = 0.0;
        // The spectrum is finite and its edges are real: the inverse cannot fail.
        let _ = self.ifft.process_with_scratch(
            &mut self.error_spec,
            &mut self.frame,
            &mut self.scratch,
        );
        let scale = 1.0 / WINDOW as f32;
        for ((o, f), w) in self.ola.iter_mut().zip(&self.frame).zip(&self.window) {
            *o += f * w * scale;
        }
        out.copy_from_slice(&self.ola[..HOP]);
        self.ola.copy_within(HOP.., 0);
        self.ola[HOP..].fill(0.0);
    }

    fn transform(&mut self, error: bool) {
        let (hist, spec) = if error {
            (&self.error_hist, &mut self.error_spec)
        } else {
            (&self.echo_hist, &mut self.echo_spec)
        };
        for ((f, x), w) in self.frame.iter_mut().zip(hist).zip(&self.window) {
            *f = x * w;
        }
        // Buffers have the plan's lengths: the transform cannot fail.
        let _ = self
            .fft
            .process_with_scratch(&mut self.frame, spec, &mut self.scratch);
    }

    #[allow(clippy::needless_range_loop)] // eight arrays indexed by the same bin
    fn update_gains(&mut self, model: &[f32], learn: bool) {
        if self.overdrive == 0.0 {
            return;
        }
        // First the residual the echo model explains, and whether the error holds more
        // than that in many bins: the near end talking.
        let mut loud = 0;
        for k in 0..BINS {
            let pe = self.error_spec[k].norm_sqr();
            let py = self.echo_spec[k].norm_sqr();
            self.error_power[k] = 0.6 * self.error_power[k] + 0.4 * pe;
            self.echo_power[k] = 0.6 * self.echo_power[k] + 0.4 * py;
            self.model_power[k] = 0.6 * self.model_power[k] + 0.4 * model[k];
            let explained =
                (self.leak[k] * self.echo_power[k]).max(self.path_gain[k] * self.model_power[k]);
            if (NEAR_FIRST_BIN..NEAR_LAST_BIN).contains(&k)
                && self.error_power[k] > NEAR_RATIO * explained + 1e-9
            {
                loud += 1;
            }
        }
        if loud * 4 > NEAR_LAST_BIN - NEAR_FIRST_BIN {
            self.near_hops = NEAR_HANGOVER_HOPS;
        } else {
            self.near_hops = self.near_hops.saturating_sub(1);
        }
        let near = self.near_hops > 0;
        let overdrive = if near {
            self.overdrive
        } else {
            FAR_ONLY_OVERDRIVE * self.overdrive
        };
        for k in 0..BINS {
            if learn && self.echo_power[k] > 1e-6 {
                let ratio = (self.error_power[k] / self.echo_power[k]).min(1.0);
                self.leak_low[k] = track_min(self.leak_low[k], ratio);
                if !near {
                    self.leak[k] = track_median(self.leak[k], ratio, MEDIAN_STEP).min(1.0);
                }
            }
            if learn && self.model_power[k] > 1e-9 {
                let ratio = self.error_power[k] / self.model_power[k];
                if self.path_gain[k] == 0.0 {
                    self.path_gain[k] = ratio;
                    self.path_gain_low[k] = ratio;
                } else {
                    self.path_gain_low[k] = track_min(self.path_gain_low[k], ratio);
                    if !near {
                        self.path_gain[k] = track_median(self.path_gain[k], ratio, MEDIAN_STEP);
                    }
                }
            }
            let pe = self.error_spec[k].norm_sqr();
            let py = self.echo_spec[k].norm_sqr();
            let (leak, path_gain) = if near {
                (self.leak_low[k], self.path_gain_low[k])
            } else {
                (self.leak[k], self.path_gain[k])
            };
            let residual = (leak * py)
                .max(path_gain * model[k])
                .max(TAIL_DECAY * self.residual[k]);
            self.residual[k] = residual;
            let g = (1.0 - overdrive * residual / (pe + 1e-9)).clamp(self.floor, 1.0);
            self.gain[k] = if g > self.gain[k] {
                g
            } else {
                0.4 * self.gain[k] + 0.6 * g
            };
        }
    }

    pub(super) fn reset(&mut self) {
        self.error_hist.fill(0.0);
        self.echo_hist.fill(0.0);
        self.ola.fill(0.0);
        self.error_power.fill(0.0);
        self.echo_power.fill(0.0);
        self.leak.fill(1.0);
        self.path_gain.fill(0.0);
        self.leak_low.fill(1.0);
        self.path_gain_low.fill(0.0);
        self.model_power.fill(0.0);
        self.residual.fill(0.0);
        self.gain.fill(1.0);
        self.near_hops = 0;
    }
}

/// A running minimum that forgets: follows a lower value at once (half way), drifts up
/// slowly (about 3.5 dB a second at 200 updates a second).
fn track_min(current: f32, value: f32) -> f32 {
    if value < current {
        0.5 * current + 0.5 * value
    } else {
        current * 1.004
    }
}

/// A running median: a step up when the value is above, a step down when below, so
/// that it settles where half the values are on each side.
fn track_median(current: f32, value: f32, step: f32) -> f32 {
    if value > current {
        current * step
    } else {
        current / step
    }
}
