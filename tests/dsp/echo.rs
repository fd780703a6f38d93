//! The echo canceller in the pipeline, on a synthetic room: a voice played by a
//! loudspeaker (the render), heard by the microphone after a delay and through
//! reflections, with or without the user talking. Each test states what it would see
//! without the canceller, so that it can fail.

use clearvox::config::{Denoiser, EchoConfig};
use clearvox::dsp::spectral_gate::GateMode;
use clearvox::dsp::vad::VadEventKind;
use clearvox::pipeline::{enhance_with_render, RenderFeeder};
use clearvox::{Aligner, Config, Pipeline, Preset};

use crate::support::audio::*;
use crate::support::testdata;

const RATE: u32 = 48_000;

/// The assistant's voice: the committed 48 kHz voice, `repeats` times over.
fn far_voice(repeats: usize) -> Vec<f32> {
    let (x, rate, ch) = load(&testdata("clean/voices/us_male__48k_s16.wav"));
    assert_eq!((rate, ch), (RATE, 1));
    x.repeat(repeats)
}

/// The user: the committed 44.1 kHz voice at 48 kHz.
fn user_voice() -> Vec<f32> {
    let (near, rate, _) = load(&testdata("clean/voices/gb_female__44k1_s16.wav"));
    resampled(&near, rate, RATE)
}

/// `x` at another rate (the bypass preset's resampling).
fn resampled(x: &[f32], from: u32, to: u32) -> Vec<f32> {
    let config = Config {
        output_rate: Some(to),
        ..Preset::Bypass.config()
    };
    clearvox::pipeline::enhance(&config, x, from, 1)
        .expect("resampling")
        .0
}

/// A room: the direct sound after `delay_ms`, then 40 reflections over 150 ms decaying
/// by 30 dB (fixed pseudo-random positions and signs).
fn room(far: &[f32], delay_ms: usize, gain: f32) -> Vec<f32> {
    let delay = delay_ms * 48;
    let mut taps = vec![(delay, gain)];
    let mut seed = 12_345u32;
    for i in 0..40 {
        seed = seed.wrapping_mul(1_664_525).wrapping_add(1_013_904_223);
        let at = delay + 48 + (seed as usize >> 8) % (150 * 48);
        let decay = 10f32.powf(-1.5 * (at - delay) as f32 / (150.0 * 48.0));
        let sign = if i % 2 == 0 { 1.0 } else { -1.0 };
        taps.push((at, sign * 0.3 * gain * decay));
    }
    let mut out = vec![0.0f32; far.len()];
    for (at, g) in taps {
        for (o, x) in out[at.min(far.len())..].iter_mut().zip(far) {
            *o += g * x;
        }
    }
    out
}

fn canceller_only() -> Config {
    let mut config = Preset::LowCpu.config();
    config.denoiser = Denoiser::Off;
    config.gate.mode = GateMode::Off;
    config.echo = EchoConfig {
        enabled: true,
        ..EchoConfig::default()
    };
    config
}

fn power(x: &[f32]) -> f64 {
    x.iter().map(|&v| f64::from(v) * f64::from(v)).sum::<f64>() / x.len().max(1) as f64
}

fn erle_db(mic: &[f32], out: &[f32]) -> f64 {
    10.0 * (power(mic) / power(out).max(1e-20)).log10()
}

#[test]
fn the_echo_of_a_voice_is_cancelled_by_20_db_once_converged() {
    let far = far_voice(3);
    let mic = room(&far, 120, 0.5);
    let (out, _) = enhance_with_render(&canceller_only(), &mic, RATE, 1, &far, RATE, 1)
        .expect("the canceller runs");
    assert_eq!(out.len(), mic.len());
    let from = 4 * RATE as usize;
    let erle = erle_db(&mic[from..], &out[from..]);
    eprintln!("ERLE after 4 s: {erle:.1} dB");
    assert!(erle > 20.0, "ERLE {erle:.1} dB");
    // Without the render, nothing is cancelled.
    let (plain, _) = clearvox::pipeline::enhance(&canceller_only(), &mic, RATE, 1).expect("runs");
    assert!(erle_db(&mic[from..], &plain[from..]) < 1.0);
}

#[test]
fn the_user_alone_passes_untouched_and_double_talk_keeps_the_user() {
    let far = far_voice(3);
    let near48 = user_voice();
    let echo = room(&far, 60, 0.5);
    // The user talks over the assistant's last four seconds, then alone.
    let start = 8 * RATE as usize;
    let mut mic = echo.clone();
    mic.extend(vec![0.0; near48.len()]);
    let mut far_long = far.clone();
    far_long.extend(vec![0.0; near48.len()]);
    for (i, &v) in near48.iter().enumerate() {
        mic[start + i] += v;
        mic[far.len() + i] += v;
    }
    let (out, _) = enhance_with_render(&canceller_only(), &mic, RATE, 1, &far_long, RATE, 1)
        .expect("the canceller runs");
    // Double talk: the user is more intelligible in the output than in the microphone.
    let seg = start..start + near48.len();
    let stoi = |x: &[f32]| clearvox::metrics::stoi(&near48, x, RATE).expect("STOI");
    let (stoi_mic, stoi_out) = (stoi(&mic[seg.clone()]), stoi(&out[seg]));
    eprintln!("double talk: STOI {stoi_mic:.3} in the microphone, {stoi_out:.3} out");
    assert!(
        stoi_out > stoi_mic + 0.05,
        "STOI {stoi_mic:.3} -> {stoi_out:.3}"
    );
    // The user alone, after the assistant stopped (its room has died down): within 1 dB.
    let alone = far.len() + RATE as usize / 2..far.len() + near48.len();
    let change = 10.0 * (power(&out[alone.clone()]) / power(&mic[alone])).log10();
    assert!(
        change.abs() < 1.0,
        "the user alone changed by {change:.2} dB"
    );
}

#[test]
fn streaming_equals_offline_with_render_in_any_chunking() {
    let far = far_voice(1);
    let mic = room(&far, 40, 0.4);
    // Capture at 16 kHz, render at 24 kHz stereo: both resampled.
    let mic16 = resampled(&mic, RATE, 16_000);
    let far24: Vec<f32> = resampled(&far, RATE, 24_000)
        .iter()
        .flat_map(|&v| [v, v])
        .collect();
    let config = Config {
        echo: EchoConfig {
            enabled: true,
            ..EchoConfig::default()
        },
        ..Preset::VoiceChat.config()
    };
    let (whole, _) =
        enhance_with_render(&config, &mic16, 16_000, 1, &far24, 24_000, 2).expect("runs");
    for sizes in [vec![1usize, 7, 160], vec![333], vec![1600, 5]] {
        let mut pipeline = Pipeline::new(&config, 16_000, 1).expect("valid");
        pipeline.set_render_format(24_000, 2).expect("valid");
        let mut aligner = Aligner::new(pipeline);
        let mut feeder = RenderFeeder::new(&far24, 24_000, 2, 16_000);
        let mut out = Vec::new();
        let mut at = 0;
        for n in chunks(mic16.len(), &sizes) {
            feeder.feed(aligner.pipeline_mut(), n).expect("render");
            aligner
                .process(&mic16[at..at + n], &mut out)
                .expect("capture");
            at += n;
        }
        aligner.finish(&mut out).expect("flush");
        assert_eq!(out, whole, "chunks {sizes:?}");
    }
}

#[test]
fn render_faults_neither_stall_nor_panic_and_cancellation_recovers_within_2_s() {
    let far = far_voice(4);
    let mic = room(&far, 100, 0.5);
    let mut pipeline = Pipeline::new(&canceller_only(), RATE, 1).expect("valid");
    let mut aligner_out = Vec::new();
    let step = 480;
    let (stop_at, restart_at, late_at, rate_at) = (3 * RATE, 5 * RATE, 8 * RATE, 11 * RATE);
    let mut resampled = false;
    let mut late: Vec<f32> = Vec::new();
    let mut at = 0usize;
    while at + step <= mic.len() {
        let t = at as u32;
        let render = &far[at..at + step];
        if (stop_at..restart_at).contains(&t) {
            // The render stops: nothing pushed at all.
        } else if (late_at..late_at + RATE / 10).contains(&t) {
            // Late: held back 100 ms, then all at once.
            late.extend_from_slice(render);
        } else if t >= rate_at {
            if !resampled {
                pipeline.set_render_format(16_000, 1).expect("valid");
                resampled = true;
            }
            let r16: Vec<f32> = render.iter().step_by(3).copied().collect();
            pipeline.push_render(&r16).expect("render");
        } else {
            if !late.is_empty() {
                pipeline.push_render(&late).expect("render");
                late.clear();
            }
            pipeline.push_render(render).expect("render");
        }
        pipeline
            .process(&mic[at..at + step], &mut aligner_out)
            .expect("capture never stalls");
        at += step;
    }
    assert!(pipeline.render_underruns() > 0, "the stop was seen");
    let lat = pipeline.latency();
    let out = &aligner_out[lat..];
    let window = |from: u32| {
        let a = from as usize;
        let b = (a + RATE as usize).min(out.len());
        erle_db(&mic[a..b], &out[a..b])
    };
    for (what, fault) in [
        ("restart", restart_at),
        ("late render", late_at + RATE / 10),
    ] {
        let erle = window(fault + 2 * RATE);
        eprintln!("{what}: ERLE {erle:.1} dB 2 s after");
        assert!(erle > 10.0, "{what}: ERLE {erle:.1} dB 2 s after");
    }
    // At another rate (16 kHz, band-limited to 8 kHz): cancellation resumes too.
    let erle = window(rate_at + 2 * RATE);
    eprintln!("render at 16 kHz: ERLE {erle:.1} dB 2 s after");
    assert!(erle > 6.0, "render at 16 kHz: ERLE {erle:.1} dB 2 s after");
}

/// Speech starts the VAD declares on `mic`, per minute.
fn speech_starts_per_minute(config: &Config, mic: &[f32], far: &[f32]) -> f64 {
    let (_, events) = enhance_with_render(config, mic, RATE, 1, far, RATE, 1).expect("runs");
    let at: Vec<String> = events
        .iter()
        .filter(|e| e.kind == VadEventKind::SpeechStart)
        .map(|e| format!("{:.2} s", e.position as f64 / f64::from(RATE)))
        .collect();
    eprintln!("speech starts with the canceller at {at:?}");
    let starts = events
        .iter()
        .filter(|e| e.kind == VadEventKind::SpeechStart)
        .count();
    starts as f64 * 60.0 / (mic.len() as f64 / f64::from(RATE))
}

#[test]
fn the_vad_does_not_start_on_the_assistants_echo_alone() {
    // A minute of the assistant talking, alone.
    let far = far_voice(15);
    let mic = room(&far, 80, 0.7);
    let mut off = Preset::VoiceChat.config();
    off.echo.enabled = false;
    // Without the canceller (its render ignored) the echo is speech to the VAD.
    let (_, events) = clearvox::pipeline::enhance(&off, &mic, RATE, 1).expect("runs");
    let without = events
        .iter()
        .filter(|e| e.kind == VadEventKind::SpeechStart)
        .count();
    assert!(
        without >= 2,
        "{without} speech starts without the canceller"
    );
    let with = speech_starts_per_minute(&Preset::VoiceChat.config(), &mic, &far);
    eprintln!("speech starts on echo alone: {without} without the canceller, {with:.1}/min with");
    assert!(with <= 1.0, "{with:.1} false barge-ins per minute");

    // The user talking over the assistant (a real barge-in) still starts speech.
    let user = user_voice();
    let at = 30 * RATE as usize;
    let mut barge = mic.clone();
    for (m, u) in barge[at..].iter_mut().zip(&user) {
        *m += u;
    }
    let (_, events) =
        enhance_with_render(&Preset::VoiceChat.config(), &barge, RATE, 1, &far, RATE, 1)
            .expect("runs");
    let heard = events.iter().any(|e| {
        e.kind == VadEventKind::SpeechStart
            && (at as u64..at as u64 + RATE as u64).contains(&e.position)
    });
    assert!(
        heard,
        "the user's barge-in at 30 s was not heard: {events:?}"
    );
}
