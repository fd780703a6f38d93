//! The spectral gate's behaviours, each on controlled signals at 48 kHz: a noise
//! profile from a clip, online learning, the attenuation limit, `prop_decrease`, the
//! freeze during speech, tracking of changing noise, mask smoothing, and the zero-phase
//! low cut.

use crate::support::audio::white_noise;
use clearvox::dsp::spectral_gate::{GateConfig, GateMode, MaskRule, NoiseProfile, SpectralGate};
use clearvox::dsp::{Frame, FrameInfo, Stage, FRAME_LEN};
use realfft::RealFftPlanner;

const SR: f32 = 48_000.0;

fn tone(freq: f32, amp: f32, n: usize) -> Vec<f32> {
    (0..n)
        .map(|i| amp * (2.0 * std::f32::consts::PI * freq * i as f32 / SR).sin())
        .collect()
}

fn add(a: &[f32], b: &[f32]) -> Vec<f32> {
    a.iter().zip(b).map(|(x, y)| x + y).collect()
}

fn run(gate: &mut SpectralGate, x: &[f32], voice_prob: f32) -> Vec<f32> {
    let mut info = FrameInfo {
        voice_prob: Some(voice_prob),
        speech: voice_prob > 0.5,
    };
    let mut y = Vec::with_capacity(x.len());
    for c in x.chunks_exact(FRAME_LEN) {
        let mut f: Frame = c.try_into().unwrap();
        gate.process(&mut f, &mut info);
        y.extend_from_slice(&f);
    }
    y
}

fn power_db(x: &[f32]) -> f32 {
    10.0 * (x.iter().map(|v| v * v).sum::<f32>() / x.len() as f32).log10()
}

/// Amplitude of the `freq` component of `x` (projection on sine and cosine).
fn amplitude(x: &[f32], freq: f32) -> f32 {
    let (mut s, mut c) = (0.0f64, 0.0f64);
    for (i, v) in x.iter().enumerate() {
        let w = 2.0 * std::f64::consts::PI * freq as f64 * i as f64 / SR as f64;
        s += *v as f64 * w.sin();
        c += *v as f64 * w.cos();
    }
    (2.0 * (s * s + c * c).sqrt() / x.len() as f64) as f32
}

fn config(mode: GateMode) -> GateConfig {
    GateConfig {
        mode,
        low_cut_hz: 0.0,
        ..GateConfig::default()
    }
}

const SECOND: usize = 48_000;

#[test]
fn a_profile_from_a_noise_clip_removes_that_noise_and_keeps_the_tone() {
    let cfg = config(GateMode::Stationary);
    let clip = white_noise(2 * SECOND, 0.05, 1);
    let profile = NoiseProfile::from_samples(&clip, &cfg).unwrap();
    let mut gate = SpectralGate::new(&cfg).unwrap();
    gate.set_noise_profile(profile).unwrap();
    // Other noise of the same kind, from the first sample on (no learning time).
    let noise = white_noise(2 * SECOND, 0.05, 2);
    let y = run(&mut gate, &noise, 0.0);
    let removed = power_db(&noise[SECOND..]) - power_db(&y[SECOND..]);
    assert!(removed > 8.0, "removed {removed:.1} dB");
    // A tone well above the noise passes.
    let mut gate = SpectralGate::new(&cfg).unwrap();
    gate.set_noise_profile(NoiseProfile::from_samples(&clip, &cfg).unwrap())
        .unwrap();
    let x = add(&noise, &tone(1_000.0, 0.3, noise.len()));
    let y = run(&mut gate, &x, 1.0);
    let l = gate.latency();
    let kept = amplitude(&y[SECOND + l..], 1_000.0) / amplitude(&x[SECOND..x.len() - l], 1_000.0);
    assert!((0.9..1.05).contains(&kept), "tone kept at {kept:.3}");
}

#[test]
fn the_stationary_profile_is_learned_online_from_non_speech() {
    let mut gate = SpectralGate::new(&config(GateMode::Stationary)).unwrap();
    let noise = white_noise(3 * SECOND, 0.05, 3);
    let y = run(&mut gate, &noise, 0.0);
    let removed = power_db(&noise[2 * SECOND..]) - power_db(&y[2 * SECOND..]);
    assert!(removed > 8.0, "removed {removed:.1} dB");
}

#[test]
fn attenuation_never_exceeds_the_limit() {
    for mode in [GateMode::Stationary, GateMode::Nonstationary] {
        for mask in [MaskRule::Mmse, MaskRule::Sigmoid] {
            for limit in [3.0, 6.0, 10.0, 20.0] {
                let cfg = GateConfig {
                    mask,
                    max_attenuation_db: limit,
                    ..config(mode)
                };
                let mut gate = SpectralGate::new(&cfg).unwrap();
                let noise = white_noise(3 * SECOND, 0.05, 4);
                let y = run(&mut gate, &noise, 0.0);
                let removed = power_db(&noise[SECOND..]) - power_db(&y[SECOND..]);
                assert!(
                    removed <= limit + 0.3,
                    "{mode:?}/{mask:?}: removed {removed:.2} dB with a {limit} dB limit"
                );
                // And it does reach into the limit (the gain rules themselves bottom out
                // around 10-15 dB on steady noise, so larger limits are not reached).
                let floor = 0.6 * limit.min(10.0);
                assert!(
                    removed > floor,
                    "{mode:?}/{mask:?}: removed only {removed:.2} dB of {limit}"
                );
            }
        }
    }
}

#[test]
fn prop_decrease_scales_the_reduction() {
    let removed = |p: f32| {
        let cfg = GateConfig {
            prop_decrease: p,
            ..config(GateMode::Nonstationary)
        };
        let mut gate = SpectralGate::new(&cfg).unwrap();
        let noise = white_noise(3 * SECOND, 0.05, 5);
        let y = run(&mut gate, &noise, 0.0);
        power_db(&noise[SECOND..]) - power_db(&y[SECOND..])
    };
    let (none, half, full) = (removed(0.0), removed(0.5), removed(1.0));
    assert!(none.abs() < 0.05, "prop_decrease 0 removed {none:.2} dB");
    assert!(
        half > 1.0 && half < full - 1.0,
        "half {half:.2} dB, full {full:.2} dB"
    );
}

#[test]
fn the_noise_estimate_freezes_while_the_vad_says_speech() {
    for freeze in [true, false] {
        let cfg = GateConfig {
            freeze_on_speech: freeze,
            ..config(GateMode::Nonstationary)
        };
        let mut gate = SpectralGate::new(&cfg).unwrap();
        run(&mut gate, &white_noise(SECOND, 0.02, 6), 0.0);
        let before: f32 = gate.noise_estimate().iter().sum();
        run(&mut gate, &white_noise(SECOND, 0.08, 7), 0.95);
        let after: f32 = gate.noise_estimate().iter().sum();
        if freeze {
            assert_eq!(before, after, "the estimate moved during speech");
        } else {
            assert!(
                after > before * 4.0,
                "unfrozen, the estimate should follow: {before} -> {after}"
            );
        }
    }
}

#[test]
fn the_nonstationary_tracker_follows_a_louder_noise() {
    let mut gate = SpectralGate::new(&config(GateMode::Nonstationary)).unwrap();
    let quiet = white_noise(SECOND, 0.01, 8);
    let loud = white_noise(3 * SECOND, 0.08, 9);
    run(&mut gate, &quiet, 0.0);
    let y = run(&mut gate, &loud, 0.0);
    let removed = power_db(&loud[2 * SECOND..]) - power_db(&y[2 * SECOND..]);
    assert!(removed > 8.0, "after the step, removed {removed:.1} dB");
}

/// Spread of the output's short-time spectrum over time and frequency: musical noise is
/// isolated spectral peaks, which raise it.
fn spectral_spread(x: &[f32]) -> f32 {
    let n = 960;
    let fft = RealFftPlanner::<f32>::new().plan_fft_forward(n);
    let mut values = Vec::new();
    for frame in x.chunks_exact(n) {
        let mut buf = frame.to_vec();
        let mut spec = fft.make_output_vec();
        fft.process(&mut buf, &mut spec).unwrap();
        values.extend(spec[20..400].iter().map(|c| c.norm_sqr()));
    }
    let mean = values.iter().sum::<f32>() / values.len() as f32;
    let var = values.iter().map(|v| (v - mean).powi(2)).sum::<f32>() / values.len() as f32;
    var.sqrt() / mean
}

#[test]
fn mask_smoothing_tames_musical_noise() {
    let spread = |freq_smooth_hz: f32, time_smooth_ms: f32| {
        let cfg = GateConfig {
            mask: MaskRule::Sigmoid,
            freq_smooth_hz,
            time_smooth_ms,
            max_attenuation_db: 30.0,
            ..config(GateMode::Nonstationary)
        };
        let mut gate = SpectralGate::new(&cfg).unwrap();
        let noise = white_noise(4 * SECOND, 0.05, 10);
        let y = run(&mut gate, &noise, 0.0);
        spectral_spread(&y[SECOND..])
    };
    let raw = spread(0.0, 0.0);
    let freq = spread(300.0, 0.0);
    let both = spread(300.0, 60.0);
    assert!(
        freq < raw * 0.8,
        "frequency smoothing: {raw:.2} -> {freq:.2}"
    );
    assert!(both < freq, "time smoothing: {freq:.2} -> {both:.2}");
}

#[test]
fn the_low_cut_removes_rumble_without_shifting_phase() {
    let cfg = GateConfig {
        prop_decrease: 0.0,
        low_cut_hz: 100.0,
        ..GateConfig::default()
    };
    let mut gate = SpectralGate::new(&cfg).unwrap();
    let n = 2 * SECOND;
    let rumble = tone(40.0, 0.3, n);
    let voice = tone(500.0, 0.3, n);
    let y = run(&mut gate, &add(&rumble, &voice), 0.0);
    let l = gate.latency();
    let rumble_left = amplitude(&y[SECOND + l..], 40.0) / 0.3;
    assert!(rumble_left < 0.1, "40 Hz at {rumble_left:.3}");
    // 500 Hz comes out as it went in, just `latency` samples late: no phase shift.
    let err: f32 = (SECOND..n - l)
        .map(|i| (y[i + l] - voice[i] - rumble[i] * rumble_left).abs())
        .fold(0.0, f32::max);
    assert!(err < 0.02, "500 Hz altered by up to {err:.4}");
}
