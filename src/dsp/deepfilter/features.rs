//! The signal processing around DeepFilterNet's networks: the ERB band layout, the two
//! normalised input features, the per-band gains and the complex deep filter.
//!
//! Everything here follows the published DeepFilterNet algorithm (Schröter et al., "DeepFilterNet: Perceptually Motivated Real-Time Speech Enhancement", and its libDF
//! description): the networks were trained on features computed exactly this way, so a
//! different band edge, normalisation constant or time constant is a different (and
//! worse) denoiser, however plausible it looks. All of it works on the spectrum of the
//! model's STFT, which is scaled so that a full-scale sine has a magnitude near 0.5 in
//! its bin ([`WindowPair::vorbis`](crate::dsp::stft::WindowPair::vorbis)).

use realfft::num_complex::Complex32;

/// Initial running mean of the ERB feature, dB, at the lowest and the highest band.
const MEAN_NORM_INIT: [f32; 2] = [-60.0, -90.0];
/// Initial running magnitude of the complex feature, at the lowest and highest bin.
const UNIT_NORM_INIT: [f32; 2] = [0.001, 0.0001];
/// Scale of the mean-normalised ERB feature (dB to the network's unit).
const ERB_FEATURE_SCALE: f32 = 40.0;

/// Converts a frequency to the ERB-rate scale.
fn hz_to_erb(hz: f32) -> f32 {
    9.265 * (hz / (24.7 * 9.265)).ln_1p()
}

/// The inverse of [`hz_to_erb`].
fn erb_to_hz(erb: f32) -> f32 {
    24.7 * 9.265 * ((erb / 9.265).exp() - 1.0)
}

/// Widths, in bins, of `bands` bands equally spaced on the ERB scale from 0 Hz to
/// Nyquist, each at least `min_width` bins wide; together they cover the
/// `fft_size / 2 + 1` bins of a spectrum exactly.
///
/// Returns `None` if no such layout exists (more bands than bins can hold).
pub fn erb_band_widths(
    sample_rate: usize,
    fft_size: usize,
    bands: usize,
    min_width: usize,
) -> Option<Vec<usize>> {
    let bins = fft_size / 2 + 1;
    if bands == 0 || fft_size < 2 || bands * min_width.max(1) > bins {
        return None;
    }
    let bin_hz = sample_rate as f32 / fft_size as f32;
    let erb_high = hz_to_erb((sample_rate / 2) as f32);
    let step = erb_high / bands as f32;
    let mut widths = Vec::with_capacity(bands);
    // The upper edge (in bins) of the previous band as the scale puts it, and how many
    // bins the minimum width has pushed the layout past the scale. The deficit is
    // signed and carries on until the scale catches up, as in DeepFilterNet's own
    // layout: clamping it at zero gives other bands, which the networks were not
    // trained on.
    let (mut previous_edge, mut borrowed) = (0i64, 0i64);
    let min_width = min_width as i64;
    for band in 1..=bands {
        let edge = (erb_to_hz(band as f32 * step) / bin_hz).round() as i64;
        let natural = edge - previous_edge - borrowed;
        let width = if natural < min_width {
            borrowed = min_width - natural;
            min_width
        } else {
            borrowed = 0;
            natural
        };
        widths.push(width as usize);
        previous_edge = edge;
    }
    // The top band also takes the Nyquist bin, and gives back what the minimum widths
    // pushed past it.
    let last = widths.last_mut()?;
    *last += 1;
    let total: usize = widths.iter().sum();
    if total > bins {
        let excess = total - bins;
        let last = widths.last_mut()?;
        if *last <= excess {
            return None;
        }
        *last -= excess;
    }
    (widths.iter().sum::<usize>() == bins).then_some(widths)
}

/// The smoothing coefficient of the feature normalisations: `exp(-hop / (rate × tau))`,
/// rounded to the fewest decimals (at least three) that keep it below 1, as the
/// networks were trained with (0.99 for a 10 ms hop and tau = 1 s).
pub fn norm_alpha(sample_rate: usize, hop: usize, tau_s: f32) -> f32 {
    let exact = (-(hop as f32 / sample_rate as f32) / tau_s).exp();
    for decimals in 3..10 {
        let scale = 10f32.powi(decimals);
        let rounded = (exact * scale).round() / scale;
        if rounded < 1.0 {
            return rounded;
        }
    }
    exact
}

/// Evenly spaced values from `from` to `to`, both included.
fn linspace(from: f32, to: f32, n: usize) -> Vec<f32> {
    match n {
        0 => Vec::new(),
        1 => vec![from],
        _ => (0..n)
            .map(|i| from + (to - from) * i as f32 / (n - 1) as f32)
            .collect(),
    }
}

/// The two inputs of the encoder, computed from each new spectrum with running
/// normalisations.
#[derive(Clone, Debug)]
pub struct FeatureExtractor {
    widths: Vec<usize>,
    alpha: f32,
    erb_mean: Vec<f32>,
    unit_norm: Vec<f32>,
}

impl FeatureExtractor {
    /// An extractor for the band layout `widths` and `df_bins` complex bins.
    pub fn new(widths: Vec<usize>, df_bins: usize, alpha: f32) -> Self {
        let mut this = Self {
            erb_mean: Vec::new(),
            unit_norm: Vec::new(),
            alpha,
            widths,
        };
        this.unit_norm = vec![0.0; df_bins];
        this.reset();
        this
    }

    /// The band widths, bins.
    pub fn widths(&self) -> &[usize] {
        &self.widths
    }

    /// Writes the ERB feature of `spectrum` into `erb` (one value per band): the band's
    /// mean power in dB, minus its running mean, scaled to the network's unit.
    pub fn erb(&mut self, spectrum: &[Complex32], erb: &mut [f32]) {
        let mut start = 0;
        for ((&width, out), mean) in self
            .widths
            .iter()
            .zip(erb.iter_mut())
            .zip(&mut self.erb_mean)
        {
            let k = 1.0 / width as f32;
            let power: f32 = spectrum[start..start + width]
                .iter()
                .map(|x| (x.re * x.re + x.im * x.im) * k)
                .sum();
            start += width;
            let db = (power + 1e-10).log10() * 10.0;
            *mean = db * (1.0 - self.alpha) + *mean * self.alpha;
            *out = (db - *mean) / ERB_FEATURE_SCALE;
        }
    }

    /// Writes the complex feature of the lowest bins of `spectrum` into `re` and `im`:
    /// each bin divided by the square root of its running magnitude.
    pub fn complex(&mut self, spectrum: &[Complex32], re: &mut [f32], im: &mut [f32]) {
        for (((x, norm), r), i) in spectrum
            .iter()
            .zip(&mut self.unit_norm)
            .zip(re.iter_mut())
            .zip(im.iter_mut())
        {
            *norm = x.norm() * (1.0 - self.alpha) + *norm * self.alpha;
            let s = norm.sqrt();
            *r = x.re / s;
            *i = x.im / s;
        }
    }

    /// Back to the initial running statistics.
    pub fn reset(&mut self) {
        let bands = self.widths.len();
        self.erb_mean = linspace(MEAN_NORM_INIT[0], MEAN_NORM_INIT[1], bands);
        let bins = self.unit_norm.len();
        self.unit_norm = linspace(UNIT_NORM_INIT[0], UNIT_NORM_INIT[1], bins);
    }
}

/// Multiplies every bin of `spectrum` by its band's gain.
pub fn apply_band_gains(spectrum: &mut [Complex32], gains: &[f32], widths: &[usize]) {
    let mut start = 0;
    for (&width, &g) in widths.iter().zip(gains) {
        for x in &mut spectrum[start..start + width] {
            *x *= g;
        }
        start += width;
    }
}

/// DeepFilterNet's mask post-filter: deepens the attenuation of bands the mask already
/// attenuates, leaves bands near 1 alone (`beta` 0 does nothing).
pub fn post_filter(gains: &mut [f32], beta: f32) {
    if beta <= 0.0 {
        return;
    }
    for g in gains {
        let m = *g;
        let warped = (m * (std::f32::consts::FRAC_PI_2 * m).sin()).max(1e-12);
        let ratio = m / warped;
        *g = (1.0 + beta) * m / (1.0 + beta * ratio * ratio);
    }
}

/// The complex deep filter: `out[f] = Σ_o frames[o][f] · coefs[f][o]` over the `order`
/// frames oldest first, for the lowest `coefs.len() / (2 order)` bins. `coefs` holds,
/// per bin, `order` complex taps as (re, im) pairs.
pub fn deep_filter<'a>(
    frames: impl Iterator<Item = &'a [Complex32]> + Clone,
    coefs: &[f32],
    order: usize,
    out: &mut [Complex32],
) {
    let bins = coefs.len() / (2 * order);
    for (f, y) in out[..bins].iter_mut().enumerate() {
        let taps = &coefs[f * 2 * order..(f + 1) * 2 * order];
        let mut acc = Complex32::new(0.0, 0.0);
        for (frame, c) in frames.clone().zip(taps.chunks_exact(2)) {
            acc += frame[f] * Complex32::new(c[0], c[1]);
        }
        *y = acc;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_dfn3_band_layout_covers_every_bin_with_at_least_two_per_band() {
        let w = erb_band_widths(48_000, 960, 32, 2).unwrap();
        // DeepFilterNet3's layout, as its own implementation computes it.
        assert_eq!(
            w,
            [
                2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 5, 5, 7, 7, 8, 10, 12, 13, 15, 18, 20, 24,
                28, 31, 37, 42, 50, 56, 67
            ]
        );
        assert_eq!(w.len(), 32);
        assert_eq!(w.iter().sum::<usize>(), 481);
        assert!(w.iter().all(|&b| b >= 2), "{w:?}");
        // Narrow at the bottom, wide at the top.
        assert_eq!(&w[..4], &[2, 2, 2, 2]);
        assert!(w[31] > 30, "{w:?}");
        assert!(erb_band_widths(48_000, 960, 400, 2).is_none());
    }

    #[test]
    fn the_normalisation_coefficient_is_rounded_as_trained() {
        assert_eq!(norm_alpha(48_000, 480, 1.0), 0.99);
        let a = norm_alpha(48_000, 48, 10.0);
        assert_eq!(a, 0.9999);
    }

    #[test]
    fn the_post_filter_deepens_low_gains_and_keeps_unity() {
        let mut g = [1.0, 0.5, 0.1];
        post_filter(&mut g, 0.02);
        assert!((g[0] - 1.0).abs() < 1e-6);
        assert!(g[1] < 0.5 && g[2] < 0.1);
        let mut h = [0.3];
        post_filter(&mut h, 0.0);
        assert_eq!(h, [0.3]);
    }

    #[test]
    fn a_unit_tap_on_the_middle_frame_passes_it_through() {
        let frames: Vec<Vec<Complex32>> = (0..5)
            .map(|t| (0..4).map(|f| Complex32::new(t as f32, f as f32)).collect())
            .collect();
        let order = 5;
        let mut coefs = vec![0.0; 3 * 2 * order];
        for f in 0..3 {
            coefs[f * 2 * order + 2 * 2] = 1.0; // tap 2, real part
        }
        let mut out = vec![Complex32::new(9.0, 9.0); 4];
        deep_filter(frames.iter().map(|v| v.as_slice()), &coefs, order, &mut out);
        for (f, y) in out[..3].iter().enumerate() {
            assert_eq!(*y, Complex32::new(2.0, f as f32));
        }
        assert_eq!(
            out[3],
            Complex32::new(9.0, 9.0),
            "bins above the filter untouched"
        );
    }
}
