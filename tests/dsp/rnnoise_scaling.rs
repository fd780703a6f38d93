//! RNNoise expects samples in the 16-bit range; fed ±1.0 floats it silently does
//! nothing. A float WAV in ±1.0 must actually be denoised by the RNNoise stage.

use crate::support::audio::*;
use clearvox::dsp::rnnoise::Rnnoise;
use clearvox::dsp::spectral_gate::GateMode;
use clearvox::dsp::{Frame, FRAME_LEN};
use clearvox::pipeline::enhance;
use clearvox::Config;

fn power_db(x: &[f32]) -> f64 {
    10.0 * (x.iter().map(|v| (*v as f64).powi(2)).sum::<f64>() / x.len() as f64).log10()
}

#[test]
fn float_input_in_unit_range_is_denoised() {
    let (x, rate, ch) = load(&testdata("noisy/us_male__cafe__snr5__48k_f32.wav"));
    assert_eq!((rate, ch), (48_000, 1));
    assert!(x.iter().all(|v| v.abs() <= 1.0), "the test file is in ±1.0");
    let mut config = Config::default();
    config.gate.mode = GateMode::Off;
    let (y, _) = enhance(&config, &x, rate, ch).unwrap();
    // The last 0.3 s hold noise alone: RNNoise removes most of it.
    let tail = x.len() - 14_400..x.len();
    let removed = power_db(&x[tail.clone()]) - power_db(&y[tail]);
    // Measured: 13 dB. Unscaled input (the pitfall) removes almost nothing, see below.
    assert!(
        removed > 10.0,
        "RNNoise removed only {removed:.1} dB of noise"
    );
}

#[test]
fn the_stage_scales_to_the_16_bit_range_and_back() {
    // Speech-level input in ±1.0 comes out in ±1.0 (not ×32768, not ÷32768).
    let (x, _, _) = load(&testdata("clean/us_male__cafe__snr5__48k_f32.wav"));
    let mut rn = Rnnoise::new();
    let mut peak_in = 0.0f32;
    let mut peak_out = 0.0f32;
    for c in x.chunks_exact(FRAME_LEN) {
        let mut f: Frame = c.try_into().unwrap();
        peak_in = c.iter().fold(peak_in, |m, v| m.max(v.abs()));
        rn.denoise(&mut f);
        peak_out = f.iter().fold(peak_out, |m, v| m.max(v.abs()));
    }
    let ratio = peak_out / peak_in;
    assert!(
        (0.5..1.5).contains(&ratio),
        "clean speech peak changed by {ratio}"
    );
}

#[test]
fn unscaled_input_is_the_pitfall_this_guards_against() {
    // Straight into nnnoiseless at ±1.0, the same noise passes nearly untouched.
    let (x, _, _) = load(&testdata("noisy/us_male__cafe__snr5__48k_f32.wav"));
    let mut state = nnnoiseless::DenoiseState::new();
    let mut y = Vec::with_capacity(x.len());
    let mut out = [0.0f32; FRAME_LEN];
    for c in x.chunks_exact(FRAME_LEN) {
        state.process_frame(&mut out, c);
        y.extend_from_slice(&out);
    }
    let tail = y.len() - 14_400..y.len();
    let removed = power_db(&x[tail.start - FRAME_LEN..tail.end - FRAME_LEN]) - power_db(&y[tail]);
    assert!(removed < 3.0, "unscaled input lost {removed:.1} dB");
}

/// Finite samples far outside ±1.0 (a float file or a C caller's buffer of garbage)
/// once overflowed RNNoise's spectra to infinities, so that its inverse FFT failed
/// where the FFT library assumes it cannot (undefined behaviour; a panic with debug
/// assertions). The pipeline bounds its input first.
#[test]
fn huge_finite_input_keeps_rnnoise_finite() {
    for rate in [48_000, 44_100] {
        let mut p = clearvox::Pipeline::new(&Config::default(), rate, 1).unwrap();
        let x: Vec<f32> = (0..rate as usize / 10)
            .map(|n| 1.7e22 * (n as f32 * 0.01).sin())
            .collect();
        let mut y = Vec::new();
        p.process(&x, &mut y).unwrap();
        p.flush(&mut y).unwrap();
        assert!(!y.is_empty());
        assert!(
            y.iter().all(|v| v.is_finite()),
            "a non-finite output at {rate} Hz"
        );
    }
}
