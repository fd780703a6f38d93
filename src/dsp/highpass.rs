//! A second-order Butterworth high-pass against rumble and DC.
//!
//! Off by default: nnnoiseless already high-passes its input, and a causal high-pass
//! shifts the phase of the low end, which costs SI-SDR (measured in the README). It is
//! there for chains without RNNoise and for inputs with strong rumble or DC offset.

use super::{Frame, FrameInfo, Stage, SAMPLE_RATE};
use crate::error::{Error, Result};

/// Biquad high-pass (transposed direct form II), designed with the bilinear transform.
///
/// # Examples
///
/// ```
/// use clearvox::dsp::highpass::Highpass;
///
/// let mut highpass = Highpass::new(80.0, std::f32::consts::FRAC_1_SQRT_2)?;
///
/// // A DC offset is gone within a few milliseconds.
/// let mut samples = vec![0.5f32; 4_800];
/// highpass.filter(&mut samples);
/// assert!(samples[4_799].abs() < 1e-3);
///
/// // The cutoff must be well below the Nyquist frequency of 48 kHz.
/// let err = Highpass::new(20_000.0, 0.7).unwrap_err();
/// assert!(err.to_string().contains("cutoff must be in 0..12000 Hz"));
/// # Ok::<(), clearvox::Error>(())
/// ```
#[derive(Clone, Debug)]
pub struct Highpass {
    b: [f32; 3],
    a: [f32; 2],
    z: [f32; 2],
}

impl Highpass {
    /// A high-pass at `cutoff_hz` (−3 dB) with quality factor `q` (0.7071 = Butterworth).
    pub fn new(cutoff_hz: f32, q: f32) -> Result<Self> {
        let nyquist = SAMPLE_RATE as f32 / 2.0;
        if !(cutoff_hz > 0.0 && cutoff_hz < nyquist / 2.0 && q > 0.1 && q < 10.0) {
            return Err(Error::Config(format!(
                "high-pass cutoff {cutoff_hz} Hz / q {q}: cutoff must be in 0..{} Hz and q in 0.1..10",
                nyquist / 2.0
            )));
        }
        let w0 = 2.0 * std::f64::consts::PI * cutoff_hz as f64 / SAMPLE_RATE as f64;
        let alpha = w0.sin() / (2.0 * q as f64);
        let cos = w0.cos();
        let a0 = 1.0 + alpha;
        let b0 = (1.0 + cos) / 2.0 / a0;
        Ok(Self {
            b: [b0 as f32, (-(1.0 + cos) / a0) as f32, b0 as f32],
            a: [(-2.0 * cos / a0) as f32, ((1.0 - alpha) / a0) as f32],
            z: [0.0; 2],
        })
    }

    /// Filters `samples` in place.
    pub fn filter(&mut self, samples: &mut [f32]) {
        let [b0, b1, b2] = self.b;
        let [a1, a2] = self.a;
        let [mut z1, mut z2] = self.z;
        for x in samples.iter_mut() {
            let y = b0 * *x + z1;
            z1 = b1 * *x - a1 * y + z2;
            z2 = b2 * *x - a2 * y;
            *x = y;
        }
        self.z = [z1, z2];
    }
}

impl Stage for Highpass {
    fn name(&self) -> &'static str {
        "highpass"
    }

    fn process(&mut self, frame: &mut Frame, _info: &mut FrameInfo) {
        self.filter(frame);
    }

    fn latency(&self) -> usize {
        0
    }

    fn reset(&mut self) {
        self.z = [0.0; 2];
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn gain_at(freq: f32) -> f32 {
        let mut hp = Highpass::new(80.0, std::f32::consts::FRAC_1_SQRT_2).unwrap();
        let n = 48_000;
        let mut x: Vec<f32> = (0..n)
            .map(|i| (2.0 * std::f32::consts::PI * freq * i as f32 / 48_000.0).sin())
            .collect();
        hp.filter(&mut x);
        let tail = &x[n / 2..];
        (tail.iter().map(|v| v * v).sum::<f32>() / tail.len() as f32 * 2.0).sqrt()
    }

    #[test]
    fn butterworth_response() {
        assert!((gain_at(80.0) - std::f32::consts::FRAC_1_SQRT_2).abs() < 0.01);
        assert!(gain_at(20.0) < 0.07);
        assert!((gain_at(1000.0) - 1.0).abs() < 0.01);
    }

    #[test]
    fn removes_dc() {
        let mut hp = Highpass::new(80.0, std::f32::consts::FRAC_1_SQRT_2).unwrap();
        let mut x = vec![0.5f32; 48_000];
        hp.filter(&mut x);
        assert!(x[47_999].abs() < 1e-4);
    }

    #[test]
    fn rejects_bad_parameters() {
        assert!(Highpass::new(0.0, 0.7).is_err());
        assert!(Highpass::new(20_000.0, 0.7).is_err());
        assert!(Highpass::new(80.0, 0.0).is_err());
    }
}
