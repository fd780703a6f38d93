//! A causal, streaming short-time Fourier transform with perfect reconstruction.
//!
//! [`StftAnalyzer`] turns each new hop of samples into the spectrum of the last
//! `fft_size` samples; [`StftSynthesizer`] turns (modified) spectra back into hops by
//! weighted overlap-add. Analysis followed by synthesis returns the input exactly,
//! [`WindowPair::latency`] samples late:
//!
//! - [`WindowPair::symmetric`]: square-root Hann for both, latency `fft_size - hop`;
//! - [`WindowPair::low_delay`]: a long analysis window that rises slowly and falls over
//!   one hop, and a synthesis window two hops long, so the frequency resolution of a
//!   long frame comes with a latency of one hop (after Mauler & Martin's low-delay
//!   analysis-synthesis design).
//!
//! Plans come from a [`RealFftPlanner`] and every buffer, scratch included, is
//! allocated once in `new`: the per-hop calls use realfft's `process_with_scratch`
//! and never allocate.

use std::sync::Arc;

use realfft::num_complex::Complex32;
use realfft::{ComplexToReal, RealFftPlanner, RealToComplex};

use crate::error::{Error, Result};

/// Checks an STFT geometry: `hop` divides `fft_size`, with at least 50 % overlap, and
/// `fft_size` even.
pub fn check_geometry(fft_size: usize, hop: usize) -> Result<()> {
    if hop == 0
        || fft_size == 0
        || !fft_size.is_multiple_of(2)
        || !fft_size.is_multiple_of(hop)
        || fft_size < 2 * hop
    {
        return Err(Error::Config(format!(
            "STFT with fft_size {fft_size} and hop {hop}: fft_size must be even and a multiple \
             of hop, at least twice the hop"
        )));
    }
    Ok(())
}

fn hann(n: usize, len: usize) -> f64 {
    0.5 - 0.5 * (2.0 * std::f64::consts::PI * n as f64 / len as f64).cos()
}

/// An analysis/synthesis window pair whose products overlap-add to exactly 1.
///
/// # Examples
///
/// ```
/// use clearvox::dsp::stft::WindowPair;
///
/// let (fft_size, hop) = (1440, 480);
/// let low_delay = WindowPair::low_delay(fft_size, hop)?;
/// let symmetric = WindowPair::symmetric(fft_size, hop)?;
/// assert_eq!(low_delay.latency, 480);
/// assert_eq!(symmetric.latency, 960);
///
/// // Shifted by the hop, the products of the two windows sum to 1.
/// for pair in [&low_delay, &symmetric] {
///     for n in 0..hop {
///         let sum: f32 = (n..fft_size)
///             .step_by(hop)
///             .map(|i| pair.analysis[i] * pair.synthesis[i])
///             .sum();
///         assert!((sum - 1.0).abs() < 1e-5);
///     }
/// }
/// # Ok::<(), clearvox::Error>(())
/// ```
#[derive(Clone, Debug, PartialEq)]
pub struct WindowPair {
    /// Analysis window, `fft_size` long.
    pub analysis: Vec<f32>,
    /// Synthesis window, `fft_size` long (zero where it has no support).
    pub synthesis: Vec<f32>,
    /// Samples by which the synthesized signal lags the analyzed one.
    pub latency: usize,
    /// Hop the pair was designed for.
    pub hop: usize,
}

impl WindowPair {
    /// Square-root periodic Hann for analysis and synthesis, latency `fft_size - hop`.
    pub fn symmetric(fft_size: usize, hop: usize) -> Result<Self> {
        check_geometry(fft_size, hop)?;
        // A periodic Hann window sums to fft_size / (2 hop) over its shifts by hop.
        let norm = (2.0 * hop as f64 / fft_size as f64).sqrt();
        let w: Vec<f32> = (0..fft_size)
            .map(|n| (hann(n, fft_size).sqrt() * norm) as f32)
            .collect();
        Ok(Self {
            analysis: w.clone(),
            synthesis: w,
            latency: fft_size - hop,
            hop,
        })
    }

    /// DeepFilterNet's pair: the Vorbis power-complementary window for analysis and
    /// synthesis, half-overlapping frames (`fft_size = 2 hop`), latency `hop`.
    ///
    /// The analysis side carries DeepFilterNet's spectrum scale `2 hop / fft_size²`, so
    /// that the spectra are the ones its networks were trained on (a full-scale sine
    /// peaks near 0.5); the synthesis side undoes it.
    pub fn vorbis(fft_size: usize, hop: usize) -> Result<Self> {
        check_geometry(fft_size, hop)?;
        if fft_size != 2 * hop {
            return Err(Error::Config(format!(
                "Vorbis STFT with fft_size {fft_size} and hop {hop}: fft_size must be twice the hop"
            )));
        }
        let half = hop as f64;
        let window: Vec<f64> = (0..fft_size)
            .map(|n| {
                let s = (0.5 * std::f64::consts::PI * (n as f64 + 0.5) / half).sin();
                (0.5 * std::f64::consts::PI * s * s).sin()
            })
            .collect();
        let scale = 2.0 * hop as f32 / (fft_size * fft_size) as f32;
        Ok(Self {
            analysis: window.iter().map(|&w| w as f32 * scale).collect(),
            synthesis: window.iter().map(|&w| w as f32 / scale).collect(),
            latency: fft_size - hop,
            hop,
        })
    }

    /// The low-delay pair: latency `hop` whatever `fft_size`.
    ///
    /// The analysis window is the rising half of a Hann window `2 (fft_size - hop)` long
    /// followed by the falling half of one `2 hop` long (square roots of both); the
    /// synthesis window spans the last two hops and is chosen so that the product of
    /// the two is a `2 hop` Hann window there, which overlap-adds to 1.
    pub fn low_delay(fft_size: usize, hop: usize) -> Result<Self> {
        check_geometry(fft_size, hop)?;
        let rise = fft_size - hop;
        let analysis: Vec<f64> = (0..fft_size)
            .map(|n| {
                if n < rise {
                    hann(n, 2 * rise).sqrt()
                } else {
                    hann(n - rise + hop, 2 * hop).sqrt()
                }
            })
            .collect();
        let start = fft_size - 2 * hop;
        let synthesis = (0..fft_size)
            .map(|n| {
                if n < start {
                    return 0.0;
                }
                let product = hann(n - start, 2 * hop);
                if product == 0.0 || analysis[n] == 0.0 {
                    0.0
                } else {
                    (product / analysis[n]) as f32
                }
            })
            .collect();
        Ok(Self {
            analysis: analysis.iter().map(|&w| w as f32).collect(),
            synthesis,
            latency: hop,
            hop,
        })
    }
}

/// Analysis half of the STFT: one spectrum per hop.
///
/// The planner is realfft's: add `realfft` to your dependencies to build one.
///
/// # Examples
///
/// A 440 Hz tone lands in the bin nearest 440 Hz:
///
/// ```
/// use clearvox::dsp::stft::{StftAnalyzer, WindowPair};
/// use realfft::RealFftPlanner;
///
/// let mut planner = RealFftPlanner::new();
/// let mut analyzer = StftAnalyzer::new(&mut planner, &WindowPair::symmetric(1440, 480)?)?;
/// assert_eq!(analyzer.bins(), 721); // 33.3 Hz apart
///
/// let tone: Vec<f32> = (0..1440)
///     .map(|n| (2.0 * std::f32::consts::PI * 440.0 * n as f32 / 48_000.0).sin())
///     .collect();
/// for hop in tone.chunks_exact(480) {
///     analyzer.analyze(hop);
/// }
/// let loudest = (0..analyzer.bins())
///     .max_by(|&a, &b| analyzer.spectrum()[a].norm().total_cmp(&analyzer.spectrum()[b].norm()))
///     .unwrap();
/// assert_eq!(loudest, 13); // 13 × 33.3 Hz = 433 Hz
/// # Ok::<(), clearvox::Error>(())
/// ```
pub struct StftAnalyzer {
    fft: Arc<dyn RealToComplex<f32>>,
    window: Vec<f32>,
    history: Vec<f32>,
    frame: Vec<f32>,
    spectrum: Vec<Complex32>,
    scratch: Vec<Complex32>,
    hop: usize,
}

impl std::fmt::Debug for StftAnalyzer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StftAnalyzer")
            .field("fft_size", &self.window.len())
            .field("hop", &self.hop)
            .finish_non_exhaustive()
    }
}

impl StftAnalyzer {
    /// An analyzer of frames as long as the pair's windows, advancing by its hop.
    pub fn new(planner: &mut RealFftPlanner<f32>, windows: &WindowPair) -> Result<Self> {
        let fft_size = windows.analysis.len();
        let hop = windows.hop;
        check_geometry(fft_size, hop)?;
        let fft = planner.plan_fft_forward(fft_size);
        Ok(Self {
            window: windows.analysis.clone(),
            history: vec![0.0; fft_size],
            frame: vec![0.0; fft_size],
            spectrum: fft.make_output_vec(),
            scratch: fft.make_scratch_vec(),
            fft,
            hop,
        })
    }

    /// Number of bins in a spectrum (`fft_size / 2 + 1`).
    pub fn bins(&self) -> usize {
        self.spectrum.len()
    }

    /// Appends one hop of samples (`input.len() == hop`) and returns the unnormalised
    /// spectrum of the last `fft_size` samples.
    pub fn analyze(&mut self, input: &[f32]) -> &mut [Complex32] {
        debug_assert_eq!(input.len(), self.hop);
        let n = self.history.len();
        self.history.copy_within(self.hop.., 0);
        self.history[n - self.hop..].copy_from_slice(input);
        for ((f, x), w) in self.frame.iter_mut().zip(&self.history).zip(&self.window) {
            *f = x * w;
        }
        // Lengths are fixed at construction, so this cannot fail.
        let _ =
            self.fft
                .process_with_scratch(&mut self.frame, &mut self.spectrum, &mut self.scratch);
        &mut self.spectrum
    }

    /// The spectrum computed by the last [`StftAnalyzer::analyze`].
    pub fn spectrum(&self) -> &[Complex32] {
        &self.spectrum
    }

    /// The spectrum computed by the last [`StftAnalyzer::analyze`], for modification.
    pub fn spectrum_mut(&mut self) -> &mut [Complex32] {
        &mut self.spectrum
    }

    /// Forgets the signal history.
    pub fn reset(&mut self) {
        self.history.fill(0.0);
    }
}

/// Synthesis half of the STFT: one hop of output per spectrum.
///
/// # Examples
///
/// Analysis followed by synthesis gives the input back, [`WindowPair::latency`]
/// samples late; a spectral effect modifies the spectrum in between:
///
/// ```
/// use clearvox::dsp::stft::{StftAnalyzer, StftSynthesizer, WindowPair};
/// use realfft::RealFftPlanner;
///
/// let windows = WindowPair::low_delay(1440, 480)?;
/// let mut planner = RealFftPlanner::new();
/// let mut analyzer = StftAnalyzer::new(&mut planner, &windows)?;
/// let mut synthesizer = StftSynthesizer::new(&mut planner, &windows)?;
///
/// let input: Vec<f32> = (0..4_800).map(|n| (n as f32 * 0.05).sin()).collect();
/// let mut output = vec![0.0f32; input.len()];
/// for (x, y) in input.chunks_exact(480).zip(output.chunks_exact_mut(480)) {
///     let spectrum = analyzer.analyze(x);
///     // ... change `spectrum` here ...
///     synthesizer.synthesize(spectrum, y);
/// }
///
/// let latency = synthesizer.latency();
/// assert_eq!(latency, 480);
/// for (y, x) in output[latency..].iter().zip(&input) {
///     assert!((y - x).abs() < 1e-4);
/// }
/// # Ok::<(), clearvox::Error>(())
/// ```
pub struct StftSynthesizer {
    ifft: Arc<dyn ComplexToReal<f32>>,
    window: Vec<f32>,
    overlap: Vec<f32>,
    frame: Vec<f32>,
    scratch: Vec<Complex32>,
    hop: usize,
    latency: usize,
}

impl std::fmt::Debug for StftSynthesizer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StftSynthesizer")
            .field("fft_size", &self.window.len())
            .field("hop", &self.hop)
            .field("latency", &self.latency)
            .finish_non_exhaustive()
    }
}

impl StftSynthesizer {
    /// A synthesizer for spectra made by an analyzer with the same window pair.
    pub fn new(planner: &mut RealFftPlanner<f32>, windows: &WindowPair) -> Result<Self> {
        let fft_size = windows.synthesis.len();
        let hop = windows.hop;
        check_geometry(fft_size, hop)?;
        let ifft = planner.plan_fft_inverse(fft_size);
        // Fold realfft's missing 1/N into the synthesis window.
        let scale = 1.0 / fft_size as f32;
        Ok(Self {
            latency: windows.latency,
            window: windows.synthesis.iter().map(|w| w * scale).collect(),
            overlap: vec![0.0; fft_size],
            frame: vec![0.0; fft_size],
            scratch: ifft.make_scratch_vec(),
            ifft,
            hop,
        })
    }

    /// How many samples the synthesized signal lags the analyzed one.
    pub fn latency(&self) -> usize {
        self.latency
    }

    /// Inverse-transforms `spectrum` (consumed as scratch), overlap-adds it and writes the
    /// next finished hop into `output` (`output.len() == hop`).
    pub fn synthesize(&mut self, spectrum: &mut [Complex32], output: &mut [f32]) {
        debug_assert_eq!(output.len(), self.hop);
        // A real signal has no imaginary part at DC and Nyquist; realfft rejects one.
        if let Some(dc) = spectrum.first_mut() {
            dc.im = 0.0;
        }
        if let Some(ny) = spectrum.last_mut() {
            ny.im = 0.0;
        }
        let _ = self
            .ifft
            .process_with_scratch(spectrum, &mut self.frame, &mut self.scratch);
        for ((o, x), w) in self.overlap.iter_mut().zip(&self.frame).zip(&self.window) {
            *o += x * w;
        }
        // The finished hop sits `latency` samples before the end of the frame.
        let n = self.overlap.len();
        let at = n - self.latency - self.hop;
        output.copy_from_slice(&self.overlap[at..at + self.hop]);
        self.overlap.copy_within(self.hop.., 0);
        self.overlap[n - self.hop..].fill(0.0);
    }

    /// Forgets the pending overlap.
    pub fn reset(&mut self) {
        self.overlap.fill(0.0);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn round_trip(windows: WindowPair) {
        let fft_size = windows.analysis.len();
        let hop = windows.hop;
        let mut planner = RealFftPlanner::new();
        let mut a = StftAnalyzer::new(&mut planner, &windows).unwrap();
        let mut s = StftSynthesizer::new(&mut planner, &windows).unwrap();
        let x: Vec<f32> = (0..hop * 40)
            .map(|i| ((i * 7919) % 1000) as f32 / 1000.0 - 0.5)
            .collect();
        let mut y = vec![0.0; x.len()];
        for (xi, yi) in x.chunks(hop).zip(y.chunks_mut(hop)) {
            let spec = a.analyze(xi);
            s.synthesize(spec, yi);
        }
        let lat = s.latency();
        for i in fft_size..x.len() {
            assert!((y[i] - x[i - lat]).abs() < 1e-5, "{fft_size}/{hop} at {i}");
        }
    }

    #[test]
    fn perfect_reconstruction_at_50_and_75_percent_overlap() {
        for (n, hop) in [(960, 480), (960, 240), (1920, 480)] {
            let w = WindowPair::symmetric(n, hop).unwrap();
            assert_eq!(w.latency, n - hop);
            round_trip(w);
        }
    }

    #[test]
    fn low_delay_pair_reconstructs_one_hop_late() {
        for (n, hop) in [(960, 480), (1920, 480), (1920, 240), (960, 120)] {
            let w = WindowPair::low_delay(n, hop).unwrap();
            assert_eq!(w.latency, hop);
            round_trip(w);
        }
    }

    #[test]
    fn the_vorbis_pair_reconstructs_one_hop_late() {
        let w = WindowPair::vorbis(960, 480).unwrap();
        assert_eq!(w.latency, 480);
        round_trip(w);
        assert!(WindowPair::vorbis(960, 240).is_err());
    }

    #[test]
    fn rejects_bad_geometry() {
        assert!(check_geometry(960, 0).is_err());
        assert!(check_geometry(960, 700).is_err());
        assert!(check_geometry(961, 31).is_err());
        assert!(check_geometry(480, 480).is_err());
    }
}
