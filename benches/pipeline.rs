//! Cost of one 10 ms frame (480 samples at 48 kHz) through each stage and each preset's
//! whole chain, against RNNoise alone, on real test audio.
//!
//! `cargo bench --bench pipeline`; criterion writes `target/criterion/<group>/<bench>/`.

use std::hint::black_box;
use std::path::Path;

use clearvox::dsp::agc::{Agc, AgcConfig};
use clearvox::dsp::resample::{ResamplerKind, StreamResampler};
use clearvox::dsp::rnnoise::Rnnoise;
use clearvox::dsp::spectral_gate::{GateConfig, GateMode, SpectralGate};
use clearvox::dsp::{Frame, FrameInfo, Stage, FRAME_LEN};
use clearvox::io::read_wav_file;
use clearvox::{Config, Pipeline, Preset};
use criterion::{criterion_group, criterion_main, Criterion};

fn audio() -> Vec<f32> {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("testdata/noisy/us_male__cafe__snr5__48k_f32.wav");
    read_wav_file(&path).expect("test data").samples
}

/// Frames of the test file, cycled.
struct Frames {
    x: Vec<f32>,
    at: usize,
}

impl Frames {
    fn next(&mut self) -> Frame {
        if self.at + FRAME_LEN > self.x.len() {
            self.at = 0;
        }
        let f: Frame = self.x[self.at..self.at + FRAME_LEN].try_into().unwrap();
        self.at += FRAME_LEN;
        f
    }
}

fn stage_bench(c: &mut Criterion, name: &str, mut stage: impl Stage) {
    let mut frames = Frames { x: audio(), at: 0 };
    let mut info = FrameInfo {
        voice_prob: Some(0.5),
        speech: true,
    };
    c.bench_function(name, |b| {
        b.iter(|| {
            let mut f = frames.next();
            stage.process(&mut f, &mut info);
            black_box(f);
        })
    });
}

fn stages(c: &mut Criterion) {
    stage_bench(c, "stage/rnnoise", Rnnoise::new());
    for mode in [GateMode::Nonstationary, GateMode::Stationary] {
        let cfg = GateConfig {
            mode,
            ..GateConfig::default()
        };
        let name = format!("stage/gate_{mode:?}").to_lowercase();
        stage_bench(c, &name, SpectralGate::new(&cfg).unwrap());
    }
    for fft_size in [960, 1440, 1920] {
        let cfg = GateConfig {
            fft_size,
            ..GateConfig::default()
        };
        stage_bench(
            c,
            &format!("stage/gate_fft{fft_size}"),
            SpectralGate::new(&cfg).unwrap(),
        );
    }
    let agc = AgcConfig {
        enabled: true,
        ..AgcConfig::default()
    };
    stage_bench(c, "stage/agc_limiter", Agc::new(&agc).unwrap());
}

fn chains(c: &mut Criterion) {
    let x = audio();
    for (name, config, rate) in [
        ("chain/voice_chat", Preset::VoiceChat.config(), 48_000),
        ("chain/max_quality", Preset::MaxQuality.config(), 48_000),
        ("chain/low_cpu", Preset::LowCpu.config(), 48_000),
        ("chain/bypass", Preset::Bypass.config(), 48_000),
        (
            "chain/voice_chat_44k1_in_24k_out",
            Config {
                output_rate: Some(24_000),
                ..Preset::VoiceChat.config()
            },
            44_100,
        ),
    ] {
        let mut p = Pipeline::new(&config, rate, 1).unwrap();
        p.warm_up();
        let chunk = rate as usize / 100;
        let mut out = vec![0.0; p.output_len_max(chunk) + FRAME_LEN];
        let mut at = 0;
        c.bench_function(name, |b| {
            b.iter(|| {
                if at + chunk > x.len() {
                    at = 0;
                }
                let n = p.process_into_buffer(&x[at..at + chunk], &mut out).unwrap();
                at += chunk;
                black_box(n);
            })
        });
    }
}

fn resamplers(c: &mut Criterion) {
    let x = audio();
    for kind in [ResamplerKind::Sinc, ResamplerKind::Fft] {
        for (from, to) in [
            (44_100, 48_000),
            (16_000, 48_000),
            (48_000, 16_000),
            (48_000, 24_000),
        ] {
            let mut r = StreamResampler::new(from, to, kind).unwrap();
            let chunk = from as usize / 100;
            let mut at = 0;
            let name = format!("resample/{kind:?}_{from}_to_{to}").to_lowercase();
            c.bench_function(&name, |b| {
                b.iter(|| {
                    if at + chunk > x.len() {
                        at = 0;
                    }
                    let mut n = 0;
                    r.process(&x[at..at + chunk], &mut |o| n += o.len())
                        .unwrap();
                    at += chunk;
                    black_box(n);
                })
            });
        }
    }
}

criterion_group!(benches, stages, chains, resamplers);
criterion_main!(benches);
