//! Every stage and every preset reports its latency truthfully: the delay measured by
//! cross-correlating output with input equals `latency()` (exactly at 48 kHz, within
//! one sample across rate changes), and the offline (aligned) output has no delay.

use crate::support::audio::*;
use audioadapter_buffers::direct::InterleavedSlice;
use clearvox::dsp::agc::{Agc, AgcConfig};
use clearvox::dsp::highpass::Highpass;
use clearvox::dsp::rnnoise::Rnnoise;
use clearvox::dsp::spectral_gate::{GateConfig, SpectralGate};
use clearvox::dsp::{Frame, FrameInfo, Stage, FRAME_LEN};
use clearvox::metrics::estimate_delay;
use clearvox::pipeline::enhance;
use clearvox::{Config, Pipeline, Preset};
use rubato::{Fft, FixedSync, Resampler};

/// `x` at another rate, with the resampler's delay removed (rubato's `process_all`).
fn resampled(x: &[f32], from: u32, to: u32) -> Vec<f32> {
    if from == to {
        return x.to_vec();
    }
    let mut r = Fft::<f32>::new(from as usize, to as usize, 1024, 1, FixedSync::Both).unwrap();
    let input = InterleavedSlice::new(x, 1, x.len()).unwrap();
    r.process_all(&input, x.len(), None).unwrap().take_data()
}

fn lag(reference: &[f32], output: &[f32]) -> i64 {
    let d = estimate_delay(reference, output, 20_000);
    assert!(
        d.correlation > 0.5,
        "output does not resemble the input: {d:?}"
    );
    d.lag
}

fn run_stage(stage: &mut dyn Stage, x: &[f32]) -> Vec<f32> {
    let mut y = Vec::with_capacity(x.len());
    let mut info = FrameInfo {
        voice_prob: Some(1.0),
        speech: true,
    };
    for c in x.chunks_exact(FRAME_LEN) {
        let mut f: Frame = c.try_into().unwrap();
        stage.process(&mut f, &mut info);
        y.extend_from_slice(&f);
    }
    y
}

fn clean_speech_48k() -> Vec<f32> {
    let (x, _, ch) = load(&testdata("clean/us_male__cafe__snr5__48k_f32.wav"));
    mono(&x, ch)
}

#[test]
fn highpass_has_no_delay() {
    let x = white_noise(48_000, 0.3, 1);
    let mut hp = Highpass::new(80.0, std::f32::consts::FRAC_1_SQRT_2).unwrap();
    assert_eq!(lag(&x, &run_stage(&mut hp, &x)), hp.latency() as i64);
}

#[test]
fn rnnoise_is_one_frame_late() {
    let x = clean_speech_48k();
    let mut rn = Rnnoise::new();
    assert_eq!(rn.latency(), 480);
    assert_eq!(lag(&x, &run_stage(&mut rn, &x)), 480);
}

#[cfg(feature = "deepfilter")]
#[test]
fn deepfilter_is_the_hop_plus_two_frames_late() {
    let x = clean_speech_48k();
    let mut df = clearvox::dsp::deepfilter::DeepFilter::new(&Default::default()).unwrap();
    assert_eq!(df.latency(), 1440);
    assert_eq!(lag(&x, &run_stage(&mut df, &x)), 1440);
}

#[test]
fn gate_latency_for_every_window_geometry() {
    let noise = white_noise(48_000 * 2, 0.3, 2);
    let speech = clean_speech_48k();
    for (fft_size, hop, low_delay) in [
        (960, 480, false),
        (1920, 480, true),
        (2880, 480, false),
        (1920, 240, true),
        (960, 240, false),
    ] {
        let passthrough = GateConfig {
            fft_size,
            hop,
            low_delay,
            prop_decrease: 0.0,
            low_cut_hz: 0.0,
            ..GateConfig::default()
        };
        let mut g = SpectralGate::new(&passthrough).unwrap();
        let l = g.latency();
        let y = run_stage(&mut g, &noise);
        assert_eq!(lag(&noise, &y), l as i64, "{fft_size}/{hop}/{low_delay}");
        // With nothing removed, the STFT reconstructs the input exactly, delayed.
        for i in fft_size..noise.len() {
            assert!(
                (y[i] - noise[i - l]).abs() < 1e-5,
                "{fft_size}/{hop} sample {i}"
            );
        }
        // Suppressing, on speech, the delay is the same.
        let active = GateConfig {
            prop_decrease: 1.0,
            ..passthrough
        };
        let mut g = SpectralGate::new(&active).unwrap();
        assert_eq!(lag(&speech, &run_stage(&mut g, &speech)), l as i64);
    }
}

#[test]
fn agc_has_no_delay() {
    let x = clean_speech_48k();
    let mut agc = Agc::new(&AgcConfig {
        enabled: true,
        ..AgcConfig::default()
    })
    .unwrap();
    assert_eq!(lag(&x, &run_stage(&mut agc, &x)), 0);
}

/// Clean speech of the test data at each input rate.
const INPUTS: [(&str, u32); 4] = [
    ("clean/us_male__cafe__snr5__48k_f32.wav", 48_000),
    ("clean/gb_female__traffic__snr10__44k1_s24.wav", 44_100),
    ("clean/us_deep__cafe__snr0__16k_s16.wav", 16_000),
    ("clean/rp_female__cafe__snr10__8k_s16.wav", 8_000),
];

fn check_preset(preset: Preset, file: &str, output_rate: Option<u32>) {
    let (x, rate, ch) = load(&testdata(file));
    let x = mono(&x, ch);
    let config = Config {
        output_rate,
        ..preset.config()
    };
    let out_rate = output_rate.unwrap_or(rate);
    let reference = resampled(&x, rate, out_rate);
    let mut p = Pipeline::new(&config, rate, 1).unwrap();
    let mut y = Vec::new();
    p.process(&x, &mut y).unwrap();
    p.flush(&mut y).unwrap();
    let reported = p.latency() as i64;
    let measured = lag(&reference, &y);
    let tolerance = if rate == 48_000 && out_rate == 48_000 {
        0
    } else {
        1
    };
    assert!(
        (measured - reported).abs() <= tolerance,
        "{preset} {rate}->{out_rate}: measured {measured}, reported {reported}"
    );
    // Offline, aligned: no delay, same duration.
    let (aligned, _) = enhance(&config, &x, rate, 1).unwrap();
    assert_eq!(
        aligned.len(),
        reference.len(),
        "{preset} {rate}->{out_rate}"
    );
    let measured = lag(&reference, &aligned);
    assert!(
        measured.abs() <= tolerance,
        "{preset} {rate}->{out_rate}: aligned output is {measured} late"
    );
}

#[test]
fn every_preset_at_every_input_rate() {
    for preset in Preset::ALL {
        for (file, _) in INPUTS {
            check_preset(preset, file, None);
        }
    }
}

#[test]
fn across_rate_changes() {
    for preset in [Preset::VoiceChat, Preset::MaxQuality] {
        check_preset(preset, INPUTS[0].0, Some(16_000));
        check_preset(preset, INPUTS[0].0, Some(24_000));
        check_preset(preset, INPUTS[1].0, Some(48_000));
        check_preset(preset, INPUTS[3].0, Some(48_000));
        check_preset(preset, INPUTS[2].0, Some(44_100));
    }
}

#[test]
fn voice_chat_is_within_20_ms_at_48k() {
    let p = Pipeline::new(&Config::default(), 48_000, 1).unwrap();
    assert!(p.latency() <= 960, "{}", p.latency());
    let stages: usize = p.stage_latencies().iter().map(|(_, l)| l).sum();
    assert_eq!(stages, p.latency());
}

/// The delay of a resampler measured from the phase of a 50 Hz tone, in output samples.
fn tone_delay(r: &mut clearvox::dsp::resample::StreamResampler, from: u32, to: u32) -> f64 {
    let f = 50.0f64;
    let w_in = 2.0 * std::f64::consts::PI * f / from as f64;
    let x: Vec<f32> = (0..from as usize * 2)
        .map(|n| (w_in * n as f64).sin() as f32)
        .collect();
    let mut y = Vec::new();
    r.process(&x, &mut |o| y.extend_from_slice(o)).unwrap();
    let w_out = 2.0 * std::f64::consts::PI * f / to as f64;
    let (mut c, mut s) = (0.0, 0.0);
    for (j, v) in y.iter().enumerate().skip(y.len() / 2).take(to as usize / 2) {
        c += *v as f64 * (w_out * j as f64).cos();
        s += *v as f64 * (w_out * j as f64).sin();
    }
    // y[j] = sin(w (j - d)) = sin(wj) cos(wd) - cos(wj) sin(wd)
    (-c).atan2(s) / w_out
}

#[test]
fn resampler_delay_matrix() {
    use clearvox::dsp::resample::{ResamplerKind, StreamResampler};
    let rates = [
        8_000, 11_025, 16_000, 22_050, 24_000, 44_100, 96_000, 192_000,
    ];
    for kind in [ResamplerKind::Sinc, ResamplerKind::Fft] {
        for &rate in &rates {
            for (from, to) in [(rate, 48_000), (48_000, rate)] {
                let mut r = StreamResampler::new(from, to, kind).unwrap();
                let measured = tone_delay(&mut r, from, to);
                let reported = r.latency_exact();
                assert!(
                    (measured - reported).abs() < 0.05,
                    "{kind:?} {from}->{to}: measured {measured:.3}, reported {reported:.3}"
                );
                assert_eq!(r.latency(), reported.round() as usize);
            }
        }
    }
}

#[test]
fn the_echo_canceller_is_its_suppressors_hop_late() {
    use clearvox::dsp::echo::{EchoCanceller, EchoConfig};
    let x = clean_speech_48k();
    let config = EchoConfig {
        enabled: true,
        ..EchoConfig::default()
    };
    // Without render and with an unrelated one playing (the canceller working).
    for render in [vec![0.0f32; x.len()], white_noise(x.len(), 0.05, 9)] {
        let mut aec = EchoCanceller::new(&config).unwrap();
        assert_eq!(aec.latency(), 240);
        let mut y = Vec::with_capacity(x.len());
        for (c, r) in x
            .chunks_exact(FRAME_LEN)
            .zip(render.chunks_exact(FRAME_LEN))
        {
            let mut f: Frame = c.try_into().unwrap();
            aec.process(&mut f, r.try_into().unwrap());
            y.extend_from_slice(&f);
        }
        assert_eq!(lag(&x, &y), 240);
    }
}

#[test]
fn a_pipeline_with_the_echo_canceller_reports_its_latency() {
    for (file, _) in INPUTS {
        let (x, rate, ch) = load(&testdata(file));
        let x = mono(&x, ch);
        let mut config = Preset::VoiceChat.config();
        config.echo.enabled = true;
        let without = Pipeline::new(&Preset::VoiceChat.config(), rate, 1).unwrap();
        let mut p = Pipeline::new(&config, rate, 1).unwrap();
        let added = p.latency() as f64 - without.latency() as f64;
        assert!(
            (added - 240.0 * f64::from(rate) / 48_000.0).abs() <= 1.0,
            "{file}: the canceller adds {added} samples"
        );
        let mut y = Vec::new();
        p.process(&x, &mut y).unwrap();
        p.flush(&mut y).unwrap();
        let tolerance = if rate == 48_000 { 0 } else { 1 };
        let measured = lag(&x, &y);
        assert!(
            (measured - p.latency() as i64).abs() <= tolerance,
            "{file}: measured {measured}, reported {}",
            p.latency()
        );
    }
}
