//! A causal, streaming short-time Fourier transform with perfect reconstruction.
//!
//! [`StftAnalyzer`] turns each new hop of samples into the spectrum of the last
//! `fft_size` samples; [`StftSynthesizer`] turns (modified) spectra back into hops by
//! weighted overlap-add. With the default square-root Hann pair, analysis followed by
//! synthesis returns the input exactly, `fft_size - hop` samples late.
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
    if hop == 0 || fft_size == 0 || fft_size % 2 != 0 || fft_size % hop != 0 || fft_size < 2 * hop {
        return Err(Error::Config(format!(
            "STFT with fft_size {fft_size} and hop {hop}: fft_size must be even and a multiple \
             of hop, at least twice the hop"
        )));
    }
    Ok(())
}

/// The periodic square-root Hann window scaled so that analysis × synthesis
/// windows overlap-add to exactly 1 at the given hop.
pub fn sqrt_hann(fft_size: usize, hop: usize) -> Vec<f32> {
    // A periodic Hann window sums to fft_size / (2 hop) over its shifts by hop.
    let norm = (2.0 * hop as f64 / fft_size as f64).sqrt();
    (0..fft_size)
        .map(|n| {
            let h = 0.5 - 0.5 * (2.0 * std::f64::consts::PI * n as f64 / fft_size as f64).cos();
            (h.sqrt() * norm) as f32
        })
        .collect()
}

/// Analysis half of the STFT: one spectrum per hop.
pub struct StftAnalyzer {
    fft: Arc<dyn RealToComplex<f32>>,
    window: Vec<f32>,
    history: Vec<f32>,
    frame: Vec<f32>,
    spectrum: Vec<Complex32>,
    scratch: Vec<Complex32>,
    hop: usize,
}

impl StftAnalyzer {
    /// An analyzer of `fft_size`-point frames advancing by `hop` samples.
    pub fn new(planner: &mut RealFftPlanner<f32>, fft_size: usize, hop: usize) -> Result<Self> {
        check_geometry(fft_size, hop)?;
        let fft = planner.plan_fft_forward(fft_size);
        Ok(Self {
            window: sqrt_hann(fft_size, hop),
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
pub struct StftSynthesizer {
    ifft: Arc<dyn ComplexToReal<f32>>,
    window: Vec<f32>,
    overlap: Vec<f32>,
    frame: Vec<f32>,
    scratch: Vec<Complex32>,
    hop: usize,
}

impl StftSynthesizer {
    /// A synthesizer matching [`StftAnalyzer::new`] with the same geometry.
    pub fn new(planner: &mut RealFftPlanner<f32>, fft_size: usize, hop: usize) -> Result<Self> {
        check_geometry(fft_size, hop)?;
        let ifft = planner.plan_fft_inverse(fft_size);
        // Fold realfft's missing 1/N into the synthesis window.
        let scale = 1.0 / fft_size as f32;
        Ok(Self {
            window: sqrt_hann(fft_size, hop).iter().map(|w| w * scale).collect(),
            overlap: vec![0.0; fft_size],
            frame: vec![0.0; fft_size],
            scratch: ifft.make_scratch_vec(),
            ifft,
            hop,
        })
    }

    /// How many samples the synthesized signal lags the analyzed one.
    pub fn latency(&self) -> usize {
        self.overlap.len() - self.hop
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
        output.copy_from_slice(&self.overlap[..self.hop]);
        let n = self.overlap.len();
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

    fn round_trip(fft_size: usize, hop: usize) {
        let mut planner = RealFftPlanner::new();
        let mut a = StftAnalyzer::new(&mut planner, fft_size, hop).unwrap();
        let mut s = StftSynthesizer::new(&mut planner, fft_size, hop).unwrap();
        let x: Vec<f32> = (0..hop * 40)
            .map(|i| ((i * 7919) % 1000) as f32 / 1000.0 - 0.5)
            .collect();
        let mut y = vec![0.0; x.len()];
        for (xi, yi) in x.chunks(hop).zip(y.chunks_mut(hop)) {
            let spec = a.analyze(xi);
            s.synthesize(spec, yi);
        }
        let lat = s.latency();
        assert_eq!(lat, fft_size - hop);
        for i in fft_size..x.len() {
            assert!((y[i] - x[i - lat]).abs() < 1e-5, "{fft_size}/{hop} at {i}");
        }
    }

    #[test]
    fn perfect_reconstruction_at_50_and_75_percent_overlap() {
        round_trip(960, 480);
        round_trip(960, 240);
        round_trip(1920, 480);
    }

    #[test]
    fn rejects_bad_geometry() {
        assert!(check_geometry(960, 0).is_err());
        assert!(check_geometry(960, 700).is_err());
        assert!(check_geometry(961, 31).is_err());
        assert!(check_geometry(480, 480).is_err());
    }
}
