//! Short-time objective intelligibility (STOI), C. H. Taal, R. C. Hendriks, R. Heusdens
//! and J. Jensen, "An Algorithm for Intelligibility Prediction of Time-Frequency
//! Weighted Noisy Speech", IEEE TASLP 19(7), 2011.
//!
//! The measure correlates the temporal envelopes of clean and processed speech in
//! one-third-octave bands over 384 ms stretches; it predicts how much of the speech a
//! listener would understand, and is the standard intelligibility score for enhancement.
//!
//! This implementation follows pystoi 0.4.1 step for step, so that scores computed
//! here agree with the ones the scoring harness reports (to within 1e-14 on the test
//! vectors and the development set):
//!
//! 1. both signals are resampled to 10 kHz with the polyphase FIR resampler pystoi uses
//!    (a Kaiser-windowed sinc designed like Octave's `resample`, applied like scipy's
//!    `resample_poly`);
//! 2. frames of the reference (256-sample Hann, hop 128) more than 40 dB below its
//!    loudest frame are removed from both signals, which are rebuilt by overlap-add;
//! 3. a 512-point STFT of the same framing is grouped into 15 one-third-octave bands
//!    from 150 Hz;
//! 4. for every run of 30 frames (384 ms) and every band, the processed envelope is
//!    scaled to the clean envelope's energy and clipped at 15 dB above it (β = −15 dB
//!    signal-to-distortion floor), and the correlation coefficient of the two envelopes
//!    is taken;
//! 5. the score is the mean of all those correlations.

use realfft::RealFftPlanner;

use super::{check_finite, MetricError};
use crate::limits::check_sample_rate;

/// Rate at which STOI is defined.
const STOI_RATE: u32 = 10_000;
/// Analysis frame (25.6 ms at 10 kHz).
const FRAME_LEN: usize = 256;
/// Frame hop: half a frame.
const HOP: usize = FRAME_LEN / 2;
/// FFT size (the frame zero-padded to twice its length).
const NFFT: usize = 512;
/// One-third-octave bands.
const NUM_BANDS: usize = 15;
/// Centre frequency of the lowest band, Hz.
const MIN_FREQ: f64 = 150.0;
/// Frames per envelope segment (384 ms).
const SEGMENT: usize = 30;
/// Lower signal-to-distortion bound of the clipping, dB.
const BETA_DB: f64 = -15.0;
/// Frames this far below the loudest reference frame are silence, dB.
const DYN_RANGE_DB: f64 = 40.0;
/// Regulariser of the divisions, as in pystoi (numpy's float64 epsilon).
const EPS: f64 = f64::EPSILON;

/// STOI of `test` against the clean `reference`, both at `sample_rate`: a score in
/// about [0, 1] (higher is more intelligible; it can dip slightly below 0 for signals
/// unrelated to the reference).
///
/// Both signals must have the same length and be aligned (see
/// [`compare`](super::compare), which removes the delay first), and the reference must
/// hold at least 384 ms of non-silent signal after resampling to 10 kHz
/// (31 frames kept by the silence detector), else [`MetricError::TooShort`]: pystoi
/// returns a placeholder `1e-5` in that case, which is easy to mistake for a score.
///
/// Any rate in [`MIN_SAMPLE_RATE`](crate::limits::MIN_SAMPLE_RATE)..=
/// [`MAX_SAMPLE_RATE`](crate::limits::MAX_SAMPLE_RATE) works. The resampling
/// filter's length grows with the reduced ratio to 10 kHz: rates sharing a large
/// factor with it (8, 16, 24, 32, 48, 96 kHz) need under 4k taps, 44.1 kHz needs 32k,
/// and a rate with no common factor (say 44 101 Hz) needs millions (up to 14 million,
/// 110 MB, at the top of the range): slower, but still exact.
///
/// Defined values: a reference that is exactly silent throughout scores 0 (as in
/// pystoi: every frame is kept and every correlation is 0). Errors: lengths differ,
/// a NaN/infinite sample, an unsupported sample rate, or too little speech.
pub fn stoi(reference: &[f32], test: &[f32], sample_rate: u32) -> Result<f64, MetricError> {
    if reference.len() != test.len() {
        return Err(MetricError::LengthMismatch {
            reference: reference.len(),
            test: test.len(),
        });
    }
    check_finite(reference, "reference")?;
    check_finite(test, "test")?;
    check_sample_rate(sample_rate)?;

    let (x, y) = if sample_rate == STOI_RATE {
        let widen = |s: &[f32]| s.iter().map(|&v| f64::from(v)).collect::<Vec<f64>>();
        (widen(reference), widen(test))
    } else {
        let resampler = Resampler::new(STOI_RATE, sample_rate);
        (resampler.process(reference), resampler.process(test))
    };
    let window = hann(FRAME_LEN);
    let (x, y) = remove_silent_frames(&x, &y, &window);
    let bands = BandMatrix::new();
    let x_env = band_envelopes(&x, &window, &bands);
    let y_env = band_envelopes(&y, &window, &bands);
    let frames = x_env.len();
    if frames < SEGMENT {
        return Err(MetricError::TooShort {
            frames,
            needed: SEGMENT,
        });
    }
    Ok(mean_correlation(&x_env, &y_env))
}

/// MATLAB's `hanning(n)`, the window pystoi frames with: the symmetric Hann window of
/// `n + 2` points without its two zero end points (a frame wastes no samples on zero
/// weights). Computed with numpy's formula, so that the values match pystoi's to the
/// last bit or so.
fn hann(n: usize) -> Vec<f64> {
    let m = (n + 2) as f64;
    (1..=n)
        .map(|k| {
            // numpy: 0.5 + 0.5·cos(π·j / (m − 1)) for j = 1 − m, 3 − m, …, m − 1
            let j = (2 * k) as f64 + 1.0 - m;
            0.5 + 0.5 * (std::f64::consts::PI * j / (m - 1.0)).cos()
        })
        .collect()
}

/// Start offsets of the frames pystoi takes from a signal of `len` samples: every hop
/// while a whole frame *and at least one more sample* fit (pystoi's
/// `range(0, len - frame, hop)` leaves out a frame ending exactly at the end).
fn frame_starts(len: usize) -> impl Iterator<Item = usize> {
    (0..len.saturating_sub(FRAME_LEN)).step_by(HOP)
}

/// Drops the frames in which the reference is more than [`DYN_RANGE_DB`] below its
/// loudest frame, from both signals, and rebuilds each from its remaining windowed
/// frames by overlap-add. Speech pauses carry no intelligibility; left in, they would
/// let the noise in them dominate the score.
fn remove_silent_frames(x: &[f64], y: &[f64], window: &[f64]) -> (Vec<f64>, Vec<f64>) {
    let energies: Vec<f64> = frame_starts(x.len())
        .map(|start| {
            let norm = x[start..start + FRAME_LEN]
                .iter()
                .zip(window)
                .map(|(s, w)| (w * s) * (w * s))
                .sum::<f64>()
                .sqrt();
            20.0 * (norm + EPS).log10()
        })
        .collect();
    let loudest = energies.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    let kept: Vec<usize> = frame_starts(x.len())
        .zip(&energies)
        .filter(|&(_, &e)| loudest - DYN_RANGE_DB - e < 0.0)
        .map(|(start, _)| start)
        .collect();
    let rebuild = |s: &[f64]| {
        let len = if kept.is_empty() {
            0
        } else {
            (kept.len() - 1) * HOP + FRAME_LEN
        };
        let mut out = vec![0.0f64; len];
        for (i, &start) in kept.iter().enumerate() {
            let frame = &s[start..start + FRAME_LEN];
            for ((o, v), w) in out[i * HOP..].iter_mut().zip(frame).zip(window) {
                *o += w * v;
            }
        }
        out
    };
    (rebuild(x), rebuild(y))
}

/// The one-third-octave band grouping of the FFT bins: band `b` sums the power of bins
/// `lo[b]..hi[b]`.
struct BandMatrix {
    lo: [usize; NUM_BANDS],
    hi: [usize; NUM_BANDS],
}

impl BandMatrix {
    /// Band edges at `150 Hz · 2^((2k ∓ 1)/6)`, each moved to the nearest FFT bin (the
    /// lower one on a tie); a band covers its lower edge bin up to, not including, its
    /// upper edge bin, as in pystoi's `thirdoct`.
    fn new() -> Self {
        let nearest_bin = |freq: f64| -> usize {
            let mut best = 0;
            let mut best_d = f64::INFINITY;
            for k in 0..=NFFT / 2 {
                let f = k as f64 * (f64::from(STOI_RATE) / NFFT as f64);
                let d = (f - freq) * (f - freq);
                if d < best_d {
                    best_d = d;
                    best = k;
                }
            }
            best
        };
        let mut lo = [0; NUM_BANDS];
        let mut hi = [0; NUM_BANDS];
        for k in 0..NUM_BANDS {
            let k2 = 2.0 * k as f64;
            lo[k] = nearest_bin(MIN_FREQ * 2f64.powf((k2 - 1.0) / 6.0));
            hi[k] = nearest_bin(MIN_FREQ * 2f64.powf((k2 + 1.0) / 6.0));
        }
        Self { lo, hi }
    }
}

/// Per STFT frame, the magnitude of each one-third-octave band (square root of the
/// band's power): the envelopes STOI compares.
fn band_envelopes(x: &[f64], window: &[f64], bands: &BandMatrix) -> Vec<[f64; NUM_BANDS]> {
    let fft = RealFftPlanner::<f64>::new().plan_fft_forward(NFFT);
    let mut input = fft.make_input_vec();
    let mut spectrum = fft.make_output_vec();
    let mut scratch = fft.make_scratch_vec();
    let mut power = vec![0.0f64; spectrum.len()];
    frame_starts(x.len())
        .map(|start| {
            input.fill(0.0);
            for ((d, s), w) in input
                .iter_mut()
                .zip(&x[start..start + FRAME_LEN])
                .zip(window)
            {
                *d = w * s;
            }
            // The buffers come from the plan, so the sizes match and this cannot fail.
            let _ = fft.process_with_scratch(&mut input, &mut spectrum, &mut scratch);
            for (p, c) in power.iter_mut().zip(&spectrum) {
                *p = c.norm_sqr();
            }
            let mut env = [0.0f64; NUM_BANDS];
            for (b, e) in env.iter_mut().enumerate() {
                *e = power[bands.lo[b]..bands.hi[b]].iter().sum::<f64>().sqrt();
            }
            env
        })
        .collect()
}

/// Euclidean norm.
fn norm(v: &[f64]) -> f64 {
    v.iter().map(|a| a * a).sum::<f64>().sqrt()
}

/// The mean, over every 30-frame segment and every band, of the correlation between
/// the clean envelope and the normalised, clipped processed envelope (eqs. 3–6 of the
/// paper). `x` has at least [`SEGMENT`] frames.
fn mean_correlation(x: &[[f64; NUM_BANDS]], y: &[[f64; NUM_BANDS]]) -> f64 {
    let clip = 1.0 + 10f64.powf(-BETA_DB / 20.0);
    let segments = x.len() - SEGMENT + 1;
    let mut xs = [0.0f64; SEGMENT];
    let mut ys = [0.0f64; SEGMENT];
    let mut total = 0.0f64;
    for m in 0..segments {
        for b in 0..NUM_BANDS {
            for j in 0..SEGMENT {
                xs[j] = x[m + j][b];
                ys[j] = y[m + j][b];
            }
            // Scale the processed envelope to the clean one's energy, then clip it to
            // at most 15 dB above the clean envelope, so that a few frames of very loud
            // distortion count as bounded damage.
            let gain = norm(&xs) / (norm(&ys) + EPS);
            for (yv, &xv) in ys.iter_mut().zip(&xs) {
                *yv = (*yv * gain).min(xv * clip);
            }
            let x_mean = xs.iter().sum::<f64>() / SEGMENT as f64;
            let y_mean = ys.iter().sum::<f64>() / SEGMENT as f64;
            xs.iter_mut().for_each(|v| *v -= x_mean);
            ys.iter_mut().for_each(|v| *v -= y_mean);
            let (x_norm, y_norm) = (norm(&xs) + EPS, norm(&ys) + EPS);
            total += xs
                .iter()
                .zip(&ys)
                .map(|(a, b)| (a / x_norm) * (b / y_norm))
                .sum::<f64>();
        }
    }
    total / (segments * NUM_BANDS) as f64
}

/// Greatest common divisor.
fn gcd(mut a: u64, mut b: u64) -> u64 {
    while b != 0 {
        (a, b) = (b, a % b);
    }
    a
}

/// Modified Bessel function of the first kind, order 0, by its power series
/// `Σ ((x/2)^k / k!)²`, which converges to full double precision for the Kaiser
/// parameters used here (x ≤ 6) within about 30 terms.
fn bessel_i0(x: f64) -> f64 {
    let q = x * x / 4.0;
    let mut term = 1.0f64;
    let mut sum = 1.0f64;
    let mut k = 1.0f64;
    while term > sum * 1e-18 {
        term *= q / (k * k);
        sum += term;
        k += 1.0;
    }
    sum
}

/// `sin(πx)/(πx)`, 1 at 0.
fn sinc(x: f64) -> f64 {
    if x == 0.0 {
        1.0
    } else {
        let y = std::f64::consts::PI * x;
        y.sin() / y
    }
}

/// The rational-ratio resampler pystoi uses: upsample by `up`, low-pass with a
/// Kaiser-windowed sinc, downsample by `down`, computed in polyphase form (only the
/// products that land on an output sample are formed).
///
/// The filter is designed as Octave's `resample` designs it (pystoi ports that design):
/// cut-off at the lower of the two Nyquist rates, a transition band a tenth of that
/// wide, 60 dB stop-band rejection, the length from Kaiser's formula and unity DC gain.
/// It is applied as scipy's `resample_poly` applies a given filter: centred on its
/// middle tap, zero outside the signal, `ceil(len · up / down)` output samples.
struct Resampler {
    up: usize,
    down: usize,
    /// Half the filter length: the filter is centred on this tap.
    half_len: usize,
    /// Filter taps per polyphase branch (the longest branch; shorter ones are zero-
    /// padded at the front).
    taps: usize,
    /// Branch `p` at `p·taps..(p+1)·taps`: taps `p, p + up, p + 2·up, …` of the filter,
    /// in reverse order, so that each output sample is a forward dot product with a
    /// contiguous stretch of the input.
    branches: Vec<f64>,
}

impl Resampler {
    /// A resampler from `from_rate` to `to_rate` (both non-zero).
    fn new(to_rate: u32, from_rate: u32) -> Self {
        let g = gcd(u64::from(to_rate), u64::from(from_rate));
        let up = (u64::from(to_rate) / g) as usize;
        let down = (u64::from(from_rate) / g) as usize;

        let rejection_db = 60.0f64;
        let cutoff = 1.0 / (2.0 * up.max(down) as f64);
        let roll_off = cutoff / 10.0;
        let half_len = ((rejection_db - 8.0) / (28.714 * roll_off)).ceil() as usize;
        // Kaiser's β for a rejection above 50 dB.
        let beta = 0.1102 * (rejection_db - 8.7);
        let len = 2 * half_len + 1;
        let i0_beta = bessel_i0(beta);
        let alpha = half_len as f64;
        let mut filter: Vec<f64> = (0..len)
            .map(|n| {
                let t = n as f64 - alpha;
                let ideal = 2.0 * up as f64 * cutoff * sinc(2.0 * cutoff * t);
                let r = t / alpha;
                let kaiser = bessel_i0(beta * (1.0 - r * r).sqrt()) / i0_beta;
                kaiser * ideal
            })
            .collect();
        // Unity gain at DC after upsampling: taps sum to 1, times `up` for the zeros
        // the upsampling inserts.
        let sum: f64 = filter.iter().sum();
        filter.iter_mut().for_each(|h| *h = *h / sum * up as f64);

        let taps = len.div_ceil(up);
        let mut branches = vec![0.0f64; up * taps];
        for (p, branch) in branches.chunks_exact_mut(taps).enumerate() {
            for (j, h) in filter.iter().skip(p).step_by(up).enumerate() {
                branch[taps - 1 - j] = *h;
            }
        }
        Self {
            up,
            down,
            half_len,
            taps,
            branches,
        }
    }

    /// Resamples a whole signal.
    fn process(&self, x: &[f32]) -> Vec<f64> {
        let (up, down) = (self.up, self.down);
        let n_out = (x.len() * up).div_ceil(down);
        if n_out == 0 {
            return Vec::new();
        }
        // Output m is the dot product of branch (m·down + half_len) mod up with input
        // samples ending at n = (m·down + half_len) / up. In the padded copy, input n
        // sits at n + taps − 1, so the stretch starts at index n.
        let last_n = ((n_out - 1) * down + self.half_len) / up;
        let pad = self.taps - 1;
        let mut padded = vec![0.0f64; (last_n + self.taps).max(pad + x.len())];
        for (d, &s) in padded[pad..].iter_mut().zip(x) {
            *d = f64::from(s);
        }
        (0..n_out)
            .map(|m| {
                let t = m * down + self.half_len;
                let (n, phase) = (t / up, t % up);
                let branch = &self.branches[phase * self.taps..(phase + 1) * self.taps];
                dot(branch, &padded[n..n + self.taps])
            })
            .collect()
    }
}

/// Dot product with eight independent partial sums, so that the compiler can keep
/// several multiply-adds in flight (a single running sum is bound by the latency of
/// each addition).
fn dot(a: &[f64], b: &[f64]) -> f64 {
    let mut acc = [0.0f64; 8];
    let (ca, cb) = (a.chunks_exact(8), b.chunks_exact(8));
    let tail: f64 = ca
        .remainder()
        .iter()
        .zip(cb.remainder())
        .map(|(x, y)| x * y)
        .sum();
    for (x, y) in ca.zip(cb) {
        for i in 0..8 {
            acc[i] += x[i] * y[i];
        }
    }
    acc.iter().sum::<f64>() + tail
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hann_matches_matlab_hanning() {
        let w = hann(4);
        // MATLAB hanning(4) = 0.5 − 0.5·cos(2πk/5), k = 1..4
        for (k, v) in w.iter().enumerate() {
            let want = 0.5 - 0.5 * (2.0 * std::f64::consts::PI * (k + 1) as f64 / 5.0).cos();
            assert!((v - want).abs() < 1e-15, "{k}: {v} vs {want}");
        }
    }

    #[test]
    fn band_edges_match_pystoi() {
        // pystoi thirdoct(10000, 512, 15, 150): first and last band's bins.
        let b = BandMatrix::new();
        assert_eq!((b.lo[0], b.hi[0]), (7, 9));
        assert_eq!((b.lo[14], b.hi[14]), (174, 219));
        for k in 1..NUM_BANDS {
            assert_eq!(b.lo[k], b.hi[k - 1], "bands are contiguous");
        }
    }

    #[test]
    fn bessel_i0_known_values() {
        assert_eq!(bessel_i0(0.0), 1.0);
        // I0(1) and I0(β of the resampler), reference values from numpy.i0
        assert!((bessel_i0(1.0) / 1.266_065_877_752_008_2 - 1.0).abs() < 1e-15);
        assert!((bessel_i0(5.65326) / 49.048_459_302_582_02 - 1.0).abs() < 1e-15);
    }

    #[test]
    fn resampler_filter_lengths_match_octave_design() {
        // 16 kHz -> 10 kHz: up 5, down 8, L = ceil(52 / (28.714 / 160)) = 290.
        let r = Resampler::new(10_000, 16_000);
        assert_eq!((r.up, r.down, r.half_len), (5, 8, 290));
        // 48 kHz -> 10 kHz: up 5, down 24, L = 870.
        let r = Resampler::new(10_000, 48_000);
        assert_eq!((r.up, r.down, r.half_len), (5, 24, 870));
    }

    #[test]
    fn resampler_keeps_dc_and_low_tones() {
        for rate in [8_000, 16_000, 44_100, 48_000] {
            let r = Resampler::new(10_000, rate);
            let n = rate as usize;
            let dc = r.process(&vec![0.5f32; n]);
            assert_eq!(dc.len(), 10_000);
            // away from the edges the DC gain is 1 (to within the filter's ripple)
            for v in &dc[2_000..8_000] {
                assert!((v - 0.5).abs() < 1e-4, "{rate}: {v}");
            }
            // a 1 kHz tone comes through at its new rate
            let tone: Vec<f32> = (0..n)
                .map(|i| {
                    (2.0 * std::f64::consts::PI * 1000.0 * i as f64 / rate as f64).sin() as f32
                })
                .collect();
            let out = r.process(&tone);
            for (i, v) in out.iter().enumerate().take(8_000).skip(2_000) {
                let want = (2.0 * std::f64::consts::PI * 1000.0 * i as f64 / 10_000.0).sin();
                assert!((v - want).abs() < 2e-3, "{rate} at {i}: {v} vs {want}");
            }
        }
    }

    #[test]
    fn resampler_output_length_is_ceil() {
        let r = Resampler::new(10_000, 48_000);
        assert_eq!(r.process(&[]).len(), 0);
        assert_eq!(r.process(&[1.0]).len(), 1);
        assert_eq!(r.process(&[0.0; 25]).len(), 6);
        let r = Resampler::new(10_000, 8_000);
        assert_eq!(r.process(&[0.0; 3]).len(), 4);
    }

    #[test]
    fn dot_matches_naive_sum() {
        let a: Vec<f64> = (0..37).map(|i| i as f64 * 0.5).collect();
        let b: Vec<f64> = (0..37).map(|i| 1.0 - i as f64 * 0.1).collect();
        let naive: f64 = a.iter().zip(&b).map(|(x, y)| x * y).sum();
        assert!((dot(&a, &b) - naive).abs() < 1e-12);
    }
}
