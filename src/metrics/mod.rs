//! Objective speech-quality metrics: SNR, SI-SDR, segmental SNR, STOI, and the delay
//! estimation that has to come first.
//!
//! Every claim about quality in this project is a number from this module, measured
//! against a clean reference (see `DESIGN.md`, "Quality"). The definitions follow the
//! development-set scoring harness (`../shared/eval/eval.py`) so that numbers computed
//! here and numbers computed there can be put side by side:
//!
//! * [`si_sdr_db`], [`estimate_delay`] and [`align`] are the harness's definitions;
//! * [`stoi`] reproduces pystoi 0.4.1 (the classic, non-extended measure of Taal et
//!   al. 2011), including its resampler: scores agree to about 1e-14 (see
//!   `tests/dsp/metrics_stoi.rs`).
//!
//! Samples come in as `f32`; all arithmetic is done in `f64`, so that sums over
//! minutes of audio do not lose precision.
//!
//! # Undefined cases
//!
//! Functions returning a bare `f64` never panic. They compare the common length of
//! the two signals (the shorter one's), and return NaN when there is nothing to
//! compare (an empty signal) or when a sample is NaN or infinite, so that a bad value
//! is visible rather than silently replaced. Functions returning [`Result`] report
//! such inputs as a [`MetricError`] instead.
//!
//! # Example
//!
//! ```
//! use clearvox::metrics::{compare, si_sdr_db};
//!
//! let fs = 16_000;
//! let clean: Vec<f32> = (0..3 * fs)
//!     .map(|i| {
//!         let t = i as f32 / fs as f32;
//!         // a 200 Hz tone switched on and off four times a second, like syllables
//!         (2.0 * std::f32::consts::PI * 200.0 * t).sin() * (0.5 + 0.5 * (8.0 * t).sin())
//!     })
//!     .collect();
//! // the same, 10 samples late and a little attenuated
//! let mut late = vec![0.0; 10];
//! late.extend(clean.iter().map(|s| 0.8 * s));
//!
//! assert!(si_sdr_db(&clean, &late[10..]) > 100.0);
//! let c = compare(&clean, &late, fs as u32, 1_000).unwrap();
//! assert_eq!(c.delay_samples, 10);
//! assert!(c.stoi > 0.99);
//! ```

mod stoi;

use realfft::num_complex::Complex;
use realfft::RealFftPlanner;
use serde::Serialize;

pub use self::stoi::stoi;

/// Why a metric could not score a pair of signals.
///
/// The crate's [`Error`](crate::Error) carries it as [`Error::Metric`](crate::Error::Metric),
/// so `?` takes it into a function that returns `clearvox::Result`.
///
/// # Examples
///
/// ```
/// use clearvox::metrics::{stoi, MetricError};
///
/// let reference = vec![0.0f32; 16_000];
/// let err = stoi(&reference, &reference[..8_000], 16_000).unwrap_err();
/// assert_eq!(err, MetricError::LengthMismatch { reference: 16_000, test: 8_000 });
/// assert_eq!(
///     err.to_string(),
///     "the reference has 16000 samples but the test signal has 8000: \
///      align them first (metrics::align)"
/// );
/// ```
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum MetricError {
    /// The metric compares sample by sample, so both signals must have the same length.
    #[error(
        "the reference has {reference} samples but the test signal has {test}: \
         align them first (metrics::align)"
    )]
    LengthMismatch {
        /// Samples in the reference.
        reference: usize,
        /// Samples in the test signal.
        test: usize,
    },

    /// A sample is NaN or infinite, which no score can be computed from.
    #[error(
        "the {signal} signal contains NaN or infinite samples: replace them before \
         scoring (dsp::convert::sanitize)"
    )]
    NonFinite {
        /// `"reference"` or `"test"`.
        signal: &'static str,
    },

    /// STOI correlates envelopes over 384 ms stretches (30 frames of 12.8 ms hop), so
    /// it needs at least that much non-silent reference signal.
    #[error(
        "STOI needs at least {needed} frames (384 ms) of speech after removing silent \
         frames, but the reference gives {frames}: score a longer stretch of speech"
    )]
    TooShort {
        /// STFT frames left after silence removal.
        frames: usize,
        /// Frames needed.
        needed: usize,
    },

    /// The sample rate is outside what clearvox accepts.
    #[error(transparent)]
    Limit(#[from] crate::limits::LimitError),
}

/// Returns an error naming the signal if any sample is NaN or infinite.
fn check_finite(x: &[f32], signal: &'static str) -> Result<(), MetricError> {
    if x.iter().all(|s| s.is_finite()) {
        Ok(())
    } else {
        Err(MetricError::NonFinite { signal })
    }
}

/// The common prefix of two signals, or `None` when a NaN result is due (nothing to
/// compare, or a non-finite sample).
fn common<'a>(a: &'a [f32], b: &'a [f32]) -> Option<(&'a [f32], &'a [f32])> {
    let n = a.len().min(b.len());
    let (a, b) = (&a[..n], &b[..n]);
    if n == 0 || !a.iter().chain(b).all(|s| s.is_finite()) {
        None
    } else {
        Some((a, b))
    }
}

/// Signal-to-noise ratio in dB, taking everything that differs from the reference as
/// noise: `10·log10(Σ reference² / Σ (test − reference)²)`.
///
/// This is the plain, scale-sensitive SNR: a correct but quieter output scores badly.
/// Use [`si_sdr_db`] where gain differences should not count.
///
/// Defined values: an exact copy (no noise at all) gives `+∞`, a silent reference with
/// a non-silent difference gives `−∞` (serialised as `null` in JSON, which has no
/// infinities). Signals of different lengths are compared over the shorter length; an
/// empty signal or a NaN/infinite sample gives NaN.
pub fn snr_db(reference: &[f32], test: &[f32]) -> f64 {
    let Some((r, t)) = common(reference, test) else {
        return f64::NAN;
    };
    let (mut signal, mut noise) = (0.0f64, 0.0f64);
    for (&r, &t) in r.iter().zip(t) {
        let (r, t) = (f64::from(r), f64::from(t));
        signal += r * r;
        noise += (t - r) * (t - r);
    }
    if noise == 0.0 {
        f64::INFINITY
    } else {
        10.0 * (signal / noise).log10()
    }
}

/// Scale-invariant signal-to-distortion ratio in dB (Le Roux et al. 2019), as the
/// development-set harness computes it.
///
/// Both signals are made zero-mean; the reference is scaled by the least-squares gain
/// `α = ⟨test, ref⟩ / ⟨ref, ref⟩` to give the target `α·ref`; everything else is
/// distortion: `10·log10(‖α·ref‖² / ‖test − α·ref‖²)`. The harness adds `1e-12` to each
/// energy, and so does this function, so identical signals give a large finite value
/// (about 120 dB above the signal energy) instead of infinity, and scores match the
/// harness's to ~1e-12 relative.
///
/// Scaling the test signal by any non-zero factor does not change the score, which is
/// why enhancement systems with a different output gain can be ranked with it.
/// Signals of different lengths are compared over the shorter length; an empty signal
/// or a NaN/infinite sample gives NaN.
pub fn si_sdr_db(reference: &[f32], test: &[f32]) -> f64 {
    let Some((r, t)) = common(reference, test) else {
        return f64::NAN;
    };
    let n = r.len() as f64;
    let mean_r = r.iter().map(|&s| f64::from(s)).sum::<f64>() / n;
    let mean_t = t.iter().map(|&s| f64::from(s)).sum::<f64>() / n;
    let (mut rt, mut rr) = (0.0f64, 0.0f64);
    for (&r, &t) in r.iter().zip(t) {
        let (r, t) = (f64::from(r) - mean_r, f64::from(t) - mean_t);
        rt += r * t;
        rr += r * r;
    }
    let alpha = rt / (rr + 1e-12);
    let (mut target, mut noise) = (0.0f64, 0.0f64);
    for (&r, &t) in r.iter().zip(t) {
        let (r, t) = (f64::from(r) - mean_r, f64::from(t) - mean_t);
        let e = alpha * r;
        target += e * e;
        noise += (t - e) * (t - e);
    }
    10.0 * ((target + 1e-12) / (noise + 1e-12)).log10()
}

/// Lowest per-frame SNR counted by [`seg_snr_db`]: a frame drowned in noise counts as
/// −10 dB however bad it is, so that a few such frames do not dominate the mean.
pub const SEG_SNR_MIN_DB: f64 = -10.0;
/// Highest per-frame SNR counted by [`seg_snr_db`]: beyond 35 dB the difference is
/// inaudible, so near-perfect frames should not inflate the mean.
pub const SEG_SNR_MAX_DB: f64 = 35.0;
/// Frames of the reference more than this many dB below its loudest frame are silence
/// and are left out of [`seg_snr_db`] (the same dynamic range STOI uses).
pub const SEG_SNR_SILENCE_DB: f64 = 40.0;

/// Segmental SNR in dB: the mean of per-frame SNRs over the speech frames.
///
/// Frames are 30 ms long (`sample_rate · 30 / 1000` samples, rectangular) with a hop
/// of half a frame; a trailing partial frame is dropped, and a signal shorter than one
/// frame is a single frame. Each frame's SNR (`Σ ref² / Σ (test − ref)²`, in dB) is
/// clamped to [[`SEG_SNR_MIN_DB`], [`SEG_SNR_MAX_DB`]] (a frame without any difference
/// counts as the maximum).
///
/// Silent reference frames are **excluded**: a frame counts only if its reference
/// energy is above zero and no more than [`SEG_SNR_SILENCE_DB`] (40 dB) below the
/// loudest reference frame. Without that rule, the noise in speech pauses (where the
/// reference has no energy) would pin every pause at −10 dB and the score would mostly
/// measure how much of the file is pause.
///
/// Unlike the global [`snr_db`], quiet speech counts as much as loud speech, which is
/// closer to what a listener hears. Signals of different lengths are compared over the
/// shorter length. NaN is returned for an empty signal, a NaN/infinite sample, a zero
/// sample rate, or a reference that is silent throughout.
pub fn seg_snr_db(reference: &[f32], test: &[f32], sample_rate: u32) -> f64 {
    let Some((r, t)) = common(reference, test) else {
        return f64::NAN;
    };
    if sample_rate == 0 {
        return f64::NAN;
    }
    let frame = ((u64::from(sample_rate) * 30 / 1000) as usize).clamp(1, r.len());
    let hop = (frame / 2).max(1);
    let frames: Vec<(f64, f64)> = (0..=r.len() - frame)
        .step_by(hop)
        .map(|start| {
            let (mut signal, mut noise) = (0.0f64, 0.0f64);
            for (&r, &t) in r[start..start + frame].iter().zip(&t[start..start + frame]) {
                let (r, t) = (f64::from(r), f64::from(t));
                signal += r * r;
                noise += (t - r) * (t - r);
            }
            (signal, noise)
        })
        .collect();
    let loudest = frames.iter().map(|f| f.0).fold(0.0f64, f64::max);
    let floor = loudest * 10f64.powf(-SEG_SNR_SILENCE_DB / 10.0);
    let (mut sum, mut count) = (0.0f64, 0usize);
    for &(signal, noise) in &frames {
        if signal > 0.0 && signal >= floor {
            let snr = if noise == 0.0 {
                SEG_SNR_MAX_DB
            } else {
                (10.0 * (signal / noise).log10()).clamp(SEG_SNR_MIN_DB, SEG_SNR_MAX_DB)
            };
            sum += snr;
            count += 1;
        }
    }
    if count == 0 {
        f64::NAN
    } else {
        sum / count as f64
    }
}

/// The delay between a test signal and its reference, found by cross-correlation.
///
/// # Examples
///
/// ```
/// use clearvox::metrics::{align, estimate_delay};
///
/// let reference: Vec<f32> = (0..4_000).map(|n| ((n * n) % 97) as f32 / 97.0 - 0.5).collect();
/// let mut late = vec![0.0f32; 25];
/// late.extend_from_slice(&reference);
///
/// let delay = estimate_delay(&reference, &late, 100);
/// assert_eq!(delay.lag, 25);
/// assert!(delay.correlation > 0.99);
///
/// // Removing the delay lines the two up sample for sample.
/// assert_eq!(align(&late, delay.lag, reference.len()), reference);
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct DelayEstimate {
    /// Samples by which the test signal is late: `test[t + lag] ≈ reference[t]`
    /// (negative when the test signal is early).
    pub lag: i64,
    /// The cross-correlation at `lag`, normalised by the signals' total energies:
    /// `Σ ref[t]·test[t + lag] / √(Σ ref² · Σ test²)`, in [−1, 1]. Near 1 the test
    /// signal is a delayed copy; near −1 it is a delayed copy with inverted polarity
    /// (the lag is found by magnitude, so an inverted output is still aligned); near 0
    /// the signals have little in common and the lag means little.
    pub correlation: f64,
}

/// Estimates how many samples `test` lags behind `reference`, searching lags in
/// `−max_lag..=max_lag` (and within the signals' lengths).
///
/// The lag maximising the magnitude of the cross-correlation `Σ ref[t]·test[t + lag]`
/// wins (ties go to the most negative lag); this is the scoring harness's
/// `estimate_delay`, with the same sign convention. Enhancement systems delay their
/// output (RNNoise by 10 ms, STFT stages by a frame), and every sample-by-sample metric
/// is meaningless until that delay is removed with [`align`].
///
/// The correlation is computed with FFTs over blocks of the reference (overlap-save),
/// so the cost is O(n log max_lag) in time and O(max_lag) in memory: minutes of
/// 48 kHz audio take well under a second with a search range of half a second.
///
/// Defined values: when either signal is empty or silent throughout, nothing can be
/// aligned, and the result is lag 0 with correlation 0. A NaN or infinite sample gives
/// lag 0 with correlation NaN.
pub fn estimate_delay(reference: &[f32], test: &[f32], max_lag: usize) -> DelayEstimate {
    let energy = |x: &[f32]| x.iter().map(|&s| f64::from(s) * f64::from(s)).sum::<f64>();
    let (er, et) = (energy(reference), energy(test));
    if !(er.is_finite() && et.is_finite()) {
        return DelayEstimate {
            lag: 0,
            correlation: f64::NAN,
        };
    }
    if er == 0.0 || et == 0.0 {
        return DelayEstimate {
            lag: 0,
            correlation: 0.0,
        };
    }
    let (nr, nt) = (reference.len(), test.len());
    // Both are non-empty here. Lags beyond either length only see zeros.
    let max_lag = max_lag.min(nr.max(nt)) as i64;
    let lo = (-max_lag).max(1 - nr as i64);
    let hi = max_lag.min(nt as i64 - 1);
    let corr = cross_correlation(reference, test, lo, hi);
    let mut best = 0;
    for (i, c) in corr.iter().enumerate() {
        if c.abs() > corr[best].abs() {
            best = i;
        }
    }
    DelayEstimate {
        lag: lo + best as i64,
        correlation: corr[best] / (er * et).sqrt(),
    }
}

/// Smallest FFT used by [`cross_correlation`]: below this, the per-block overhead
/// outweighs the arithmetic.
const MIN_XCORR_FFT: usize = 4096;

/// `c[k − lo] = Σ_n reference[n] · test[n + k]` for `k` in `lo..=hi` (`lo ≤ 0 ≤ hi`).
///
/// Overlap-save: the reference is cut into blocks of `B` samples; each block is
/// correlated with the stretch of `test` it can reach (`B + hi − lo` samples) through
/// one FFT of size `N ≥ B + hi − lo`, which is large enough that the circular
/// correlation has no wrap-around in the lags kept. The blocks' results add up.
fn cross_correlation(reference: &[f32], test: &[f32], lo: i64, hi: i64) -> Vec<f64> {
    let span = (hi - lo) as usize;
    let n_fft = (2 * (span + 1)).next_power_of_two().max(MIN_XCORR_FFT);
    let block = n_fft - span;
    let mut planner = RealFftPlanner::<f64>::new();
    let forward = planner.plan_fft_forward(n_fft);
    let inverse = planner.plan_fft_inverse(n_fft);
    let mut scratch = forward.make_scratch_vec();
    if inverse.get_scratch_len() > scratch.len() {
        scratch.resize(inverse.get_scratch_len(), Complex::default());
    }
    let mut time = forward.make_input_vec();
    let mut ref_spec = forward.make_output_vec();
    let mut test_spec = forward.make_output_vec();
    let mut acc = vec![0.0f64; span + 1];
    let nt = test.len() as i64;

    for start in (0..reference.len()).step_by(block) {
        let chunk = &reference[start..(start + block).min(reference.len())];
        if chunk.iter().all(|&s| s == 0.0) {
            continue;
        }
        time.fill(0.0);
        for (d, &s) in time.iter_mut().zip(chunk) {
            *d = f64::from(s);
        }
        // Planned sizes match the buffers, so the transforms cannot fail.
        let _ = forward.process_with_scratch(&mut time, &mut ref_spec, &mut scratch);

        // test[start + lo + j] for j in 0..n_fft, zero outside the signal.
        let first = start as i64 + lo;
        let from = first.clamp(0, nt) as usize;
        let to = (first + n_fft as i64).clamp(0, nt) as usize;
        time.fill(0.0);
        let offset = (from as i64 - first) as usize;
        for (d, &s) in time[offset..].iter_mut().zip(&test[from..to]) {
            *d = f64::from(s);
        }
        let _ = forward.process_with_scratch(&mut time, &mut test_spec, &mut scratch);

        for (t, r) in test_spec.iter_mut().zip(&ref_spec) {
            *t *= r.conj();
        }
        // The inverse transform insists on purely real DC and Nyquist bins.
        test_spec[0].im = 0.0;
        if let Some(last) = test_spec.last_mut() {
            last.im = 0.0;
        }
        let _ = inverse.process_with_scratch(&mut test_spec, &mut time, &mut scratch);
        for (a, &c) in acc.iter_mut().zip(&time) {
            *a += c;
        }
    }
    let scale = 1.0 / n_fft as f64;
    acc.iter_mut().for_each(|a| *a *= scale);
    acc
}

/// Shifts `test` by `lag` samples (as found by [`estimate_delay`]) and cuts or
/// zero-pads it to `len` samples: `out[t] = test[t + lag]`, zero where that index is
/// outside `test`.
///
/// With `len` = the reference's length, the result lines up with the reference sample
/// for sample, as the scoring harness's `align` does. Any lag is accepted; one beyond
/// the signal gives silence.
pub fn align(test: &[f32], lag: i64, len: usize) -> Vec<f32> {
    let mut out = vec![0.0f32; len];
    // out[t] = test[t + lag] for t in t0..t1
    let t0 = (-i128::from(lag)).clamp(0, len as i128);
    let t1 = (test.len() as i128 - i128::from(lag)).clamp(t0, len as i128);
    let (t0, t1) = (t0 as usize, t1 as usize);
    if t1 > t0 {
        let s0 = (t0 as i128 + i128::from(lag)) as usize;
        out[t0..t1].copy_from_slice(&test[s0..s0 + (t1 - t0)]);
    }
    out
}

/// The scores of a test signal against its reference, after removing the delay.
///
/// # Examples
///
/// ```
/// use clearvox::metrics::compare;
///
/// let fs = 16_000;
/// // A 200 Hz tone switched on and off four times a second, like syllables.
/// let clean: Vec<f32> = (0..3 * fs)
///     .map(|i| {
///         let t = i as f32 / fs as f32;
///         (2.0 * std::f32::consts::PI * 200.0 * t).sin() * (0.5 + 0.5 * (8.0 * t).sin())
///     })
///     .collect();
/// // The same, 20 samples late and at half the level.
/// let mut test = vec![0.0f32; 20];
/// test.extend(clean.iter().map(|s| 0.5 * s));
///
/// let scores = compare(&clean, &test, fs as u32, 1_000)?;
/// assert_eq!(scores.delay_samples, 20);
/// // The plain SNR counts the lost level as noise; SI-SDR and STOI do not.
/// assert!((scores.snr_db - 6.02).abs() < 0.01);
/// assert!(scores.si_sdr_db > 100.0);
/// assert!(scores.stoi > 0.99);
/// # Ok::<(), clearvox::Error>(())
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Comparison {
    /// Samples by which the test signal was late (negative: early), as removed before
    /// scoring; see [`DelayEstimate::lag`].
    pub delay_samples: i64,
    /// [`snr_db`] of the aligned test signal.
    pub snr_db: f64,
    /// [`si_sdr_db`] of the aligned test signal.
    pub si_sdr_db: f64,
    /// [`seg_snr_db`] of the aligned test signal.
    pub seg_snr_db: f64,
    /// [`stoi`] of the aligned test signal.
    pub stoi: f64,
}

/// Scores `test` against `reference` the way the development-set harness does: the
/// delay is estimated ([`estimate_delay`], within `±max_lag` samples), removed
/// ([`align`] to the reference's length), and then SNR, SI-SDR, segmental SNR and STOI
/// are computed on the aligned pair.
///
/// The test signal may be longer or shorter than the reference (enhancers often add
/// their latency at the end); only the stretch that lines up with the reference counts.
/// Fails if a sample is NaN or infinite, if the sample rate is outside the supported
/// range, or if the reference holds less than 384 ms of speech (see [`stoi`]).
///
/// STOI is computed at the given rate. The harness resamples 48 kHz signals to 16 kHz
/// before STOI; on the development set the two routes differ by less than 3e-5.
pub fn compare(
    reference: &[f32],
    test: &[f32],
    sample_rate: u32,
    max_lag: usize,
) -> Result<Comparison, MetricError> {
    check_finite(reference, "reference")?;
    check_finite(test, "test")?;
    let delay = estimate_delay(reference, test, max_lag);
    let aligned = align(test, delay.lag, reference.len());
    let stoi = stoi(reference, &aligned, sample_rate)?;
    Ok(Comparison {
        delay_samples: delay.lag,
        snr_db: snr_db(reference, &aligned),
        si_sdr_db: si_sdr_db(reference, &aligned),
        seg_snr_db: seg_snr_db(reference, &aligned, sample_rate),
        stoi,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Deterministic noise in [−0.5, 0.5) from a 64-bit LCG.
    fn noise(n: usize, seed: u64) -> Vec<f32> {
        let mut state = seed;
        (0..n)
            .map(|_| {
                state = state
                    .wrapping_mul(6_364_136_223_846_793_005)
                    .wrapping_add(1_442_695_040_888_963_407);
                (state >> 40) as f32 / 16_777_216.0 - 0.5
            })
            .collect()
    }

    /// Speech-like test signal: harmonic tones switched on and off like syllables.
    fn speechy(n: usize, fs: f64) -> Vec<f32> {
        (0..n)
            .map(|i| {
                let t = i as f64 / fs;
                let env = (std::f64::consts::PI * 4.0 * t).sin().max(0.0);
                let f0 = 140.0 + 30.0 * (2.0 * t).sin();
                let s: f64 = (1..6)
                    .map(|h| (2.0 * std::f64::consts::PI * f0 * h as f64 * t).sin() / h as f64)
                    .sum();
                (0.3 * env * env * s) as f32
            })
            .collect()
    }

    fn shifted(x: &[f32], lag: i64) -> Vec<f32> {
        // test[t + lag] = x[t]
        (0..x.len() as i64)
            .map(|t| {
                let s = t - lag;
                if s >= 0 && s < x.len() as i64 {
                    x[s as usize]
                } else {
                    0.0
                }
            })
            .collect()
    }

    #[test]
    fn snr_of_identical_signals_is_infinite() {
        let x = noise(1000, 1);
        assert_eq!(snr_db(&x, &x), f64::INFINITY);
        assert_eq!(snr_db(&[0.0; 10], &[0.0; 10]), f64::INFINITY);
        assert_eq!(snr_db(&[0.0; 10], &[0.1; 10]), f64::NEG_INFINITY);
    }

    #[test]
    fn snr_known_value() {
        let x = noise(1000, 2);
        // noise = 0.1·x: 20 dB
        let y: Vec<f32> = x.iter().map(|s| s * 1.1).collect();
        assert!((snr_db(&x, &y) - 20.0).abs() < 1e-5, "{}", snr_db(&x, &y));
    }

    #[test]
    fn undefined_inputs_give_nan() {
        let x = noise(100, 3);
        let mut bad = x.clone();
        bad[50] = f32::NAN;
        for f in [snr_db, si_sdr_db] {
            assert!(f(&[], &[]).is_nan());
            assert!(f(&x, &[]).is_nan());
            assert!(f(&x, &bad).is_nan());
            assert!(f(&bad, &x).is_nan());
        }
        bad[50] = f32::INFINITY;
        assert!(snr_db(&x, &bad).is_nan());
        assert!(seg_snr_db(&[], &[], 16_000).is_nan());
        assert!(seg_snr_db(&x, &bad, 16_000).is_nan());
        assert!(seg_snr_db(&x, &x, 0).is_nan());
        assert!(seg_snr_db(&[0.0; 1000], &x[..], 16_000).is_nan());
    }

    #[test]
    fn different_lengths_compare_the_common_prefix() {
        let x = noise(1000, 4);
        let y: Vec<f32> = x.iter().map(|s| s * 1.1).collect();
        assert_eq!(snr_db(&x, &y[..600]), snr_db(&x[..600], &y[..600]));
        assert_eq!(si_sdr_db(&x[..700], &y), si_sdr_db(&x[..700], &y[..700]));
        assert_eq!(
            seg_snr_db(&x, &y[..800], 8_000),
            seg_snr_db(&x[..800], &y[..800], 8_000)
        );
    }

    #[test]
    fn si_sdr_is_scale_invariant() {
        let x = speechy(16_000, 16_000.0);
        let n = noise(16_000, 5);
        let y: Vec<f32> = x.iter().zip(&n).map(|(a, b)| a + 0.05 * b).collect();
        let base = si_sdr_db(&x, &y);
        assert!(base.is_finite() && base > 0.0);
        for g in [0.01f32, 0.5, 3.0, -2.0, 100.0] {
            let scaled: Vec<f32> = y.iter().map(|s| s * g).collect();
            let v = si_sdr_db(&x, &scaled);
            assert!((v - base).abs() < 1e-4, "gain {g}: {v} vs {base}");
        }
        // and to a DC offset
        let offset: Vec<f32> = y.iter().map(|s| s + 0.25).collect();
        assert!((si_sdr_db(&x, &offset) - base).abs() < 1e-4);
    }

    #[test]
    fn si_sdr_known_value() {
        // test = ref + orthogonal noise at a quarter of its energy: 6.02 dB
        let x: Vec<f32> = (0..1000)
            .map(|i| if i % 2 == 0 { 1.0 } else { -1.0 })
            .collect();
        let n: Vec<f32> = (0..1000)
            .map(|i| if i % 4 < 2 { 0.5 } else { -0.5 })
            .collect();
        let y: Vec<f32> = x.iter().zip(&n).map(|(a, b)| a + b).collect();
        let want = 10.0 * 4f64.log10();
        assert!((si_sdr_db(&x, &y) - want).abs() < 1e-9);
        // identical signals: large but finite, as in the harness
        let same = si_sdr_db(&x, &x);
        assert!(same.is_finite() && same > 140.0, "{same}");
    }

    #[test]
    fn seg_snr_constant_snr_and_clamping() {
        let fs = 16_000;
        let x = speechy(fs, fs as f64);
        // a copy at 0.9: every frame has SNR 20 dB
        let y: Vec<f32> = x.iter().map(|s| s * 0.9).collect();
        let v = seg_snr_db(&x, &y, fs as u32);
        assert!((v - 20.0).abs() < 1e-3, "{v}");
        assert_eq!(seg_snr_db(&x, &x, fs as u32), SEG_SNR_MAX_DB);
        let inverted: Vec<f32> = x.iter().map(|s| -s).collect();
        assert!((seg_snr_db(&x, &inverted, fs as u32) - (-6.0206)).abs() < 1e-3);
        let loud: Vec<f32> = x.iter().map(|s| s * 100.0).collect();
        assert_eq!(seg_snr_db(&x, &loud, fs as u32), SEG_SNR_MIN_DB);
    }

    #[test]
    fn seg_snr_ignores_silent_reference_frames() {
        let fs = 16_000;
        let mut x = speechy(fs, fs as f64);
        x.extend(vec![0.0; fs]); // one second of silence
        let n = noise(x.len(), 6);
        // a clean copy during speech, loud noise in the pause
        let y: Vec<f32> = x
            .iter()
            .zip(&n)
            .enumerate()
            .map(|(i, (&a, &b))| if i < fs { a * 0.9 } else { b })
            .collect();
        let v = seg_snr_db(&x, &y, fs as u32);
        assert!((v - 20.0).abs() < 0.5, "{v}");
    }

    #[test]
    fn seg_snr_short_signal_is_one_frame() {
        let x = noise(100, 7);
        let y: Vec<f32> = x.iter().map(|s| s * 0.9).collect();
        assert!((seg_snr_db(&x, &y, 48_000) - 20.0).abs() < 1e-3);
    }

    #[test]
    fn delay_found_exactly_for_integer_shifts() {
        let x = speechy(32_000, 16_000.0);
        for lag in [-1234i64, -37, -1, 0, 1, 5, 480, 2000] {
            let y = shifted(&x, lag);
            let d = estimate_delay(&x, &y, 4_000);
            assert_eq!(d.lag, lag);
            assert!(d.correlation > 0.9, "{lag}: {}", d.correlation);
            assert_eq!(align(&y, d.lag, x.len())[3000..28000], x[3000..28000]);
        }
    }

    #[test]
    fn delay_with_unequal_lengths() {
        // a longer output that starts 960 samples late, like an enhancer's
        let x = noise(20_000, 8);
        let mut y = vec![0.0f32; 960];
        y.extend(&x);
        y.extend(vec![0.0f32; 480]);
        let d = estimate_delay(&x, &y, 2_000);
        assert_eq!(d.lag, 960);
        assert!((d.correlation - 1.0).abs() < 1e-9);
        assert_eq!(align(&y, d.lag, x.len()), x);
        // and a shorter one that starts early
        let d = estimate_delay(&x, &x[300..], 2_000);
        assert_eq!(d.lag, -300);
    }

    #[test]
    fn delay_with_noise() {
        let x = speechy(48_000, 16_000.0);
        let n = noise(48_000, 9);
        for lag in [-700i64, 123] {
            let y: Vec<f32> = shifted(&x, lag)
                .iter()
                .zip(&n)
                .map(|(a, b)| a + 1.5 * b)
                .collect();
            let d = estimate_delay(&x, &y, 8_000);
            assert_eq!(d.lag, lag);
            assert!(
                d.correlation > 0.1 && d.correlation < 0.9,
                "{}",
                d.correlation
            );
        }
    }

    #[test]
    fn delay_of_inverted_polarity() {
        let x = noise(30_000, 10);
        let y: Vec<f32> = shifted(&x, 77).iter().map(|s| -0.5 * s).collect();
        let d = estimate_delay(&x, &y, 1_000);
        assert_eq!(d.lag, 77);
        assert!(d.correlation < -0.99, "{}", d.correlation);
    }

    #[test]
    fn delay_search_is_limited_to_max_lag() {
        let x = noise(10_000, 11);
        let y = shifted(&x, 500);
        assert_eq!(estimate_delay(&x, &y, 600).lag, 500);
        assert_ne!(estimate_delay(&x, &y, 400).lag, 500);
        assert!(estimate_delay(&x, &y, 400).lag.abs() <= 400);
        // a huge search range is capped by the signals, not allocated
        assert_eq!(estimate_delay(&x, &y, usize::MAX).lag, 500);
        assert_eq!(estimate_delay(&x, &y, 0).lag, 0);
    }

    #[test]
    fn delay_matches_direct_correlation() {
        // random lengths and lags against an O(n·lags) reference implementation
        let x = noise(3_001, 12);
        let y = noise(2_503, 13);
        let direct = |k: i64| -> f64 {
            (0..x.len() as i64)
                .filter(|&n| n + k >= 0 && n + k < y.len() as i64)
                .map(|n| f64::from(x[n as usize]) * f64::from(y[(n + k) as usize]))
                .sum()
        };
        let corr = cross_correlation(&x, &y, -3_000, 2_502);
        for k in (-3_000i64..=2_502).step_by(7) {
            let c = corr[(k + 3_000) as usize];
            assert!((c - direct(k)).abs() < 1e-9, "{k}: {c} vs {}", direct(k));
        }
        let d = estimate_delay(&x, &y, 10_000);
        let best = (-3_000i64..=2_502)
            .max_by(|&a, &b| direct(a).abs().total_cmp(&direct(b).abs()))
            .unwrap();
        assert_eq!(d.lag, best);
    }

    #[test]
    fn delay_of_degenerate_inputs() {
        let x = noise(100, 14);
        let zero = DelayEstimate {
            lag: 0,
            correlation: 0.0,
        };
        assert_eq!(estimate_delay(&[], &x, 10), zero);
        assert_eq!(estimate_delay(&x, &[], 10), zero);
        assert_eq!(estimate_delay(&x, &[0.0; 100], 10), zero);
        assert_eq!(estimate_delay(&[1.0], &[2.0], 10).lag, 0);
        let mut bad = x.clone();
        bad[3] = f32::NAN;
        let d = estimate_delay(&x, &bad, 10);
        assert_eq!(d.lag, 0);
        assert!(d.correlation.is_nan());
    }

    #[test]
    fn delay_is_fast_on_minutes_of_audio() {
        // two minutes at 48 kHz, 500 ms search range
        let x = noise(48_000 * 120, 15);
        let y = shifted(&x, 4_321);
        let t = std::time::Instant::now();
        let d = estimate_delay(&x, &y, 24_000);
        let took = t.elapsed();
        assert_eq!(d.lag, 4_321);
        assert!(took.as_secs_f64() < 10.0, "{took:?}");
    }

    #[test]
    fn align_shifts_pads_and_truncates() {
        let x = [1.0f32, 2.0, 3.0, 4.0];
        assert_eq!(align(&x, 0, 4), x);
        assert_eq!(align(&x, 1, 4), [2.0, 3.0, 4.0, 0.0]);
        assert_eq!(align(&x, -2, 4), [0.0, 0.0, 1.0, 2.0]);
        assert_eq!(align(&x, 1, 2), [2.0, 3.0]);
        assert_eq!(align(&x, -1, 6), [0.0, 1.0, 2.0, 3.0, 4.0, 0.0]);
        assert_eq!(align(&x, 10, 3), [0.0; 3]);
        assert_eq!(align(&x, -10, 3), [0.0; 3]);
        assert_eq!(align(&x, i64::MAX, 3), [0.0; 3]);
        assert_eq!(align(&x, i64::MIN, 3), [0.0; 3]);
        assert!(align(&[], 5, 0).is_empty());
    }

    #[test]
    fn stoi_of_a_copy_is_one() {
        let x = speechy(48_000, 16_000.0);
        let y: Vec<f32> = x.iter().map(|s| s * 0.3).collect();
        let v = stoi(&x, &y, 16_000).unwrap();
        assert!((v - 1.0).abs() < 1e-6, "{v}");
    }

    #[test]
    fn stoi_drops_with_noise() {
        let x = speechy(48_000, 16_000.0);
        let n = noise(48_000, 16);
        let mut last = 1.0;
        for g in [0.05f32, 0.3, 1.0] {
            let y: Vec<f32> = x.iter().zip(&n).map(|(a, b)| a + g * b).collect();
            let v = stoi(&x, &y, 16_000).unwrap();
            assert!(v < last, "gain {g}: {v}");
            last = v;
        }
    }

    #[test]
    fn stoi_errors() {
        let x = speechy(16_000, 16_000.0);
        let err = |r: Result<f64, MetricError>| match r {
            Err(e) => e,
            other => panic!("expected a metric error, got {other:?}"),
        };
        assert_eq!(
            err(stoi(&x, &x[1..], 16_000)),
            MetricError::LengthMismatch {
                reference: 16_000,
                test: 15_999
            }
        );
        let mut bad = x.clone();
        bad[9] = f32::NAN;
        assert_eq!(
            err(stoi(&x, &bad, 16_000)),
            MetricError::NonFinite { signal: "test" }
        );
        assert_eq!(
            err(stoi(&bad, &x, 16_000)),
            MetricError::NonFinite {
                signal: "reference"
            }
        );
        assert!(matches!(
            err(stoi(&[], &[], 16_000)),
            MetricError::TooShort { frames: 0, .. }
        ));
        // 300 ms: too short for one 384 ms segment
        assert!(matches!(
            err(stoi(&x[..4_800], &x[..4_800], 16_000)),
            MetricError::TooShort { .. }
        ));
        assert!(matches!(
            stoi(&x, &x, 0),
            Err(MetricError::Limit(crate::limits::LimitError::SampleRate {
                rate: 0
            }))
        ));
        assert!(matches!(
            stoi(&x, &x, 1_000_000),
            Err(MetricError::Limit(
                crate::limits::LimitError::SampleRate { .. }
            ))
        ));
        // the message says what is wrong
        let msg = crate::Error::from(MetricError::TooShort {
            frames: 3,
            needed: 30,
        })
        .to_string();
        assert!(msg.contains("384 ms"), "{msg}");
    }

    #[test]
    fn stoi_of_a_silent_reference_is_zero() {
        let n = noise(16_000, 17);
        assert_eq!(stoi(&[0.0; 16_000], &n, 16_000).unwrap(), 0.0);
        assert_eq!(stoi(&[0.0; 16_000], &[0.0; 16_000], 16_000).unwrap(), 0.0);
    }

    #[test]
    fn stoi_at_10k_needs_no_resampling() {
        let x = speechy(20_000, 10_000.0);
        let n = noise(20_000, 18);
        let y: Vec<f32> = x.iter().zip(&n).map(|(a, b)| a + 0.3 * b).collect();
        let v = stoi(&x, &y, 10_000).unwrap();
        assert!(v > 0.3 && v < 1.0, "{v}");
    }

    #[test]
    fn compare_removes_the_delay() {
        let fs = 16_000;
        let x = speechy(3 * fs, fs as f64);
        let n = noise(3 * fs + 400, 19);
        // 10 ms late, 320 samples longer, with a little noise
        let mut y = vec![0.0f32; 160];
        y.extend(&x);
        y.extend(vec![0.0f32; 160]);
        let y: Vec<f32> = y.iter().zip(&n).map(|(a, b)| a + 0.01 * b).collect();
        let c = compare(&x, &y, fs as u32, 800).unwrap();
        assert_eq!(c.delay_samples, 160);
        let aligned = align(&y, 160, x.len());
        assert_eq!(c.snr_db, snr_db(&x, &aligned));
        assert_eq!(c.si_sdr_db, si_sdr_db(&x, &aligned));
        assert_eq!(c.seg_snr_db, seg_snr_db(&x, &aligned, fs as u32));
        assert_eq!(c.stoi, stoi(&x, &aligned, fs as u32).unwrap());
        // (the signal has nothing above 1 kHz, so the noise there costs STOI a lot)
        assert!(c.snr_db > 30.0 && c.stoi > 0.7, "{c:?}");

        let json = serde_json::to_string(&c).unwrap();
        for key in ["delay_samples", "snr_db", "si_sdr_db", "seg_snr_db", "stoi"] {
            assert!(json.contains(key), "{json}");
        }
    }

    #[test]
    fn compare_rejects_bad_input() {
        let x = speechy(16_000, 16_000.0);
        let mut bad = x.clone();
        bad[0] = f32::INFINITY;
        assert!(compare(&x, &bad, 16_000, 100).is_err());
        assert!(compare(&bad, &x, 16_000, 100).is_err());
        assert!(compare(&[], &x, 16_000, 100).is_err());
        assert!(compare(&x, &x, 7, 100).is_err());
        // an empty output is scored as silence, not refused
        let c = compare(&x, &[], 16_000, 100).unwrap();
        assert_eq!(c.delay_samples, 0);
        assert!(c.stoi.abs() < 1e-9, "{c:?}");
    }
}
