//! The render-to-capture delay, found by correlating the band envelopes of the two.
//!
//! Every 10 ms block, the log energies of the render and of the capture in
//! [`BANDS`] bands (200 Hz – 6 kHz) are compared at every lag up to the largest
//! delay: the correlation of their fluctuations around each band's running mean,
//! averaged over time while the render is active. Speech envelopes are distinctive
//! enough that the lag of the echo stands out; near-end speech, uncorrelated with the
//! render, only lowers every lag alike. The estimate changes only when another lag has
//! been clearly better for a while, so that double talk does not make it jump.

use realfft::num_complex::Complex32;

/// Bands of the envelopes.
pub(super) const BANDS: usize = 24;
/// First and last bin (50 Hz each at the 960-point transform) of the bands.
const FIRST_BIN: usize = 4;
const LAST_BIN: usize = 120;
/// Slowest averaging of the correlations (per block), about 0.7 s.
const SLOW: f32 = 0.985;
/// Blocks in a row another lag must win before the estimate moves to it.
const HOLD_BLOCKS: u32 = 15;

/// Band energies of one spectrum, as logs.
pub(super) fn band_log_energies(spectrum: &[Complex32], out: &mut [f32; BANDS]) {
    let width = (LAST_BIN - FIRST_BIN) / BANDS;
    for (b, o) in out.iter_mut().enumerate() {
        let start = FIRST_BIN + b * width;
        let e: f32 = spectrum[start..start + width]
            .iter()
            .map(|c| c.norm_sqr())
            .sum();
        *o = (e + 1e-6).ln();
    }
}

/// The delay estimator. See the [module documentation](self).
#[derive(Debug)]
pub(super) struct DelayEstimator {
    lags: usize,
    /// Render envelopes of the last `lags` blocks, newest at `head`.
    render: Vec<[f32; BANDS]>,
    head: usize,
    render_mean: [f32; BANDS],
    capture_mean: [f32; BANDS],
    /// Averaged normalised correlation per lag.
    corr: Vec<f32>,
    /// Active blocks seen (the averaging starts fast).
    seen: u32,
    estimate: Option<usize>,
    candidate: usize,
    candidate_blocks: u32,
}

impl DelayEstimator {
    /// An estimator for delays of `0..lags` blocks.
    pub(super) fn new(lags: usize) -> Self {
        let lags = lags.max(1);
        Self {
            lags,
            render: vec![[0.0; BANDS]; lags],
            head: 0,
            render_mean: [0.0; BANDS],
            capture_mean: [0.0; BANDS],
            corr: vec![0.0; lags],
            seen: 0,
            estimate: None,
            candidate: 0,
            candidate_blocks: 0,
        }
    }

    /// The delay in blocks, once found.
    pub(super) fn estimate(&self) -> Option<usize> {
        self.estimate
    }

    /// Takes one block's band envelopes; `active` says whether the render was loud
    /// enough to learn from. Returns the estimate.
    pub(super) fn update(
        &mut self,
        render: &[f32; BANDS],
        capture: &[f32; BANDS],
        active: bool,
    ) -> Option<usize> {
        self.head = (self.head + 1) % self.lags;
        self.render[self.head] = *render;
        if !active {
            return self.estimate;
        }
        self.seen = self.seen.saturating_add(1);
        let fast = 1.0 - 1.0 / self.seen as f32;
        let a = fast.clamp(0.9, SLOW);
        let m = fast.min(0.99);
        for b in 0..BANDS {
            self.render_mean[b] = m * self.render_mean[b] + (1.0 - m) * render[b];
            self.capture_mean[b] = m * self.capture_mean[b] + (1.0 - m) * capture[b];
        }
        let mut c = [0.0f32; BANDS];
        let mut cn = 0.0;
        for b in 0..BANDS {
            c[b] = capture[b] - self.capture_mean[b];
            cn += c[b] * c[b];
        }
        let cn = cn.sqrt() + 1e-3;
        let mut best = 0;
        for lag in 0..self.lags {
            let r = &self.render[(self.head + self.lags - lag) % self.lags];
            let mut dot = 0.0;
            let mut rn = 0.0;
            for b in 0..BANDS {
                let x = r[b] - self.render_mean[b];
                dot += x * c[b];
                rn += x * x;
            }
            let v = dot / (cn * (rn.sqrt() + 1e-3));
            self.corr[lag] = a * self.corr[lag] + (1.0 - a) * v;
            if self.corr[lag] > self.corr[best] {
                best = lag;
            }
        }
        self.decide(best);
        self.estimate
    }

    fn decide(&mut self, best: usize) {
        // A lag must stand out: clearly above zero and above lags far from it.
        let peak = self.corr[best];
        let elsewhere = self
            .corr
            .iter()
            .enumerate()
            .filter(|(lag, _)| lag.abs_diff(best) > 3)
            .map(|(_, &v)| v)
            .fold(f32::MIN, f32::max);
        if peak < 0.15 || peak < elsewhere + 0.05 {
            self.candidate_blocks = 0;
            return;
        }
        match self.estimate {
            None if self.seen >= 30 => self.estimate = Some(best),
            Some(current) if current.abs_diff(best) > 1 => {
                if self.candidate == best && peak > self.corr[current] + 0.05 {
                    self.candidate_blocks += 1;
                    if self.candidate_blocks >= HOLD_BLOCKS {
                        self.estimate = Some(best);
                        self.candidate_blocks = 0;
                    }
                } else {
                    self.candidate = best;
                    self.candidate_blocks = 0;
                }
            }
            _ => self.candidate_blocks = 0,
        }
    }

    pub(super) fn reset(&mut self) {
        *self = Self::new(self.lags);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn envelope(seed: &mut u32) -> [f32; BANDS] {
        let mut e = [0.0; BANDS];
        for v in &mut e {
            *seed = seed.wrapping_mul(1_664_525).wrapping_add(1_013_904_223);
            *v = (*seed >> 8) as f32 / (1u32 << 24) as f32 * 6.0;
        }
        e
    }

    #[test]
    fn finds_the_lag_of_a_delayed_copy_and_follows_a_change() {
        let mut est = DelayEstimator::new(40);
        let mut seed = 1;
        let history: Vec<[f32; BANDS]> = (0..1200).map(|_| envelope(&mut seed)).collect();
        for t in 0..600 {
            let capture = if t >= 12 {
                history[t - 12]
            } else {
                [0.0; BANDS]
            };
            est.update(&history[t], &capture, true);
        }
        assert_eq!(est.estimate(), Some(12));
        for t in 600..1200 {
            est.update(&history[t], &history[t - 30], true);
        }
        assert_eq!(est.estimate(), Some(30), "the estimate follows a drift");
    }

    #[test]
    fn inactive_render_teaches_nothing() {
        let mut est = DelayEstimator::new(40);
        let mut seed = 7;
        for _ in 0..500 {
            let e = envelope(&mut seed);
            est.update(&e, &e, false);
        }
        assert_eq!(est.estimate(), None);
    }
}
