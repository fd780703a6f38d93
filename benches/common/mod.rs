//! The per-frame work both benchmark harnesses measure: the criterion benches
//! (`benches/pipeline.rs`, wall-clock time) and the instruction-count benches
//! (`benches/instructions.rs`, callgrind through gungraun). Keeping it in one place
//! means the two measure exactly the same thing under the same names.
//!
//! Every runner works on real test audio (speech in café babble or traffic from
//! `testdata/noisy/`), cycled, and starts from a warmed-up state: [`WARM_FRAMES`] frames
//! have gone through it before anything is measured, so the noise trackers have settled
//! and nnnoiseless has built its per-thread FFT plans.
#![allow(dead_code)]

use std::hint::black_box;
use std::path::Path;

use clearvox::dsp::agc::{Agc, AgcConfig};
use clearvox::dsp::echo::{EchoCanceller, EchoConfig};
use clearvox::dsp::highpass::Highpass;
use clearvox::dsp::resample::{ResamplerKind, StreamResampler};
use clearvox::dsp::rnnoise::Rnnoise;
use clearvox::dsp::spectral_gate::{GateConfig, GateMode, SpectralGate};
use clearvox::dsp::vad::{EnergyVoiceDetector, VadConfig, VadStateMachine};
use clearvox::dsp::{Frame, FrameInfo, Stage, FRAME_LEN};
use clearvox::io::read_wav_file;
use clearvox::{Config, Pipeline, Preset};

/// 10 ms frames run through a runner before it is measured.
pub const WARM_FRAMES: usize = 50;
/// 10 ms frames per instruction-count benchmark (one second of audio).
pub const COUNT_FRAMES: usize = 100;

/// The speech-in-noise file at each rate the benches use.
fn file_for_rate(rate: u32) -> &'static str {
    match rate {
        44_100 => "noisy/gb_female__traffic__snr10__44k1_s24.wav",
        16_000 => "noisy/us_deep__cafe__snr0__16k_s16.wav",
        8_000 => "noisy/rp_female__cafe__snr10__8k_s16.wav",
        _ => "noisy/us_male__cafe__snr5__48k_f32.wav",
    }
}

/// Mono speech in noise at `rate` Hz (one of 8, 16, 44.1 and 48 kHz), about 4 s.
pub fn audio(rate: u32) -> Vec<f32> {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("testdata")
        .join(file_for_rate(rate));
    let a = read_wav_file(&path).expect("test data");
    assert_eq!(a.spec.sample_rate, rate, "{}", path.display());
    let ch = a.spec.channels as usize;
    a.samples
        .chunks_exact(ch)
        .map(|f| f.iter().sum::<f32>() / ch as f32)
        .collect()
}

/// `seconds` of the 48 kHz test audio, the file repeated: the offline benchmark's input.
pub fn long_audio(seconds: usize) -> Vec<f32> {
    let x = audio(48_000);
    x.iter().copied().cycle().take(seconds * 48_000).collect()
}

/// Chunks of a signal, cycled forever.
pub struct Cycle {
    x: Vec<f32>,
    at: usize,
    len: usize,
}

impl Cycle {
    pub fn new(x: Vec<f32>, len: usize) -> Self {
        Self { x, at: 0, len }
    }

    #[inline]
    pub fn next(&mut self) -> &[f32] {
        if self.at + self.len > self.x.len() {
            self.at = 0;
        }
        let c = &self.x[self.at..self.at + self.len];
        self.at += self.len;
        c
    }
}

/// The VAD on its own: the energy detector (the voice probability of chains without
/// RNNoise) and the state machine's hysteresis, onset and hangover.
pub struct Vad {
    energy: EnergyVoiceDetector,
    machine: VadStateMachine,
}

impl Stage for Vad {
    fn name(&self) -> &'static str {
        "vad"
    }

    fn process(&mut self, frame: &mut Frame, info: &mut FrameInfo) {
        let p = self.energy.probability(frame);
        info.voice_prob = Some(p);
        black_box(self.machine.update(p));
        info.speech = self.machine.in_speech();
    }

    fn latency(&self) -> usize {
        0
    }

    fn reset(&mut self) {
        self.energy.reset();
        self.machine.reset();
    }
}

/// The echo canceller on its own, while the loudspeaker plays: the frame is the
/// render, and the capture is the previous frame at half level (an echo 10 ms late),
/// so that the delay estimator, both filters, their adaptation and the suppressor all
/// work.
pub struct Echo {
    canceller: EchoCanceller,
    previous: Frame,
}

impl Stage for Echo {
    fn name(&self) -> &'static str {
        "echo"
    }

    fn process(&mut self, frame: &mut Frame, _info: &mut FrameInfo) {
        let render = *frame;
        for (c, p) in frame.iter_mut().zip(&self.previous) {
            *c = 0.5 * p;
        }
        self.previous = render;
        self.canceller.process(frame, &render);
    }

    fn latency(&self) -> usize {
        self.canceller.latency()
    }

    fn reset(&mut self) {
        self.canceller.reset();
        self.previous = [0.0; FRAME_LEN];
    }
}

/// The per-frame stages, by bench name (`stage/<name>`).
pub const STAGES: [&str; 8] = [
    "echo",
    "highpass",
    "rnnoise",
    "deepfilter",
    "gate_nonstationary",
    "gate_stationary",
    "agc_limiter",
    "vad",
];

/// A stage, built as the presets build it.
pub fn stage(name: &str) -> Box<dyn Stage> {
    let gate = |mode| {
        let cfg = GateConfig {
            mode,
            ..GateConfig::default()
        };
        Box::new(SpectralGate::new(&cfg).unwrap()) as Box<dyn Stage>
    };
    match name {
        "echo" => Box::new(Echo {
            canceller: EchoCanceller::new(&EchoConfig {
                enabled: true,
                ..EchoConfig::default()
            })
            .unwrap(),
            previous: [0.0; FRAME_LEN],
        }),
        "highpass" => Box::new(Highpass::new(80.0, std::f32::consts::FRAC_1_SQRT_2).unwrap()),
        "rnnoise" => Box::new(Rnnoise::new()),
        "deepfilter" => Box::new(
            clearvox::dsp::deepfilter::DeepFilter::new(&Default::default())
                .expect("the built-in DeepFilterNet3 model"),
        ),
        "gate_nonstationary" => gate(GateMode::Nonstationary),
        "gate_stationary" => gate(GateMode::Stationary),
        // The AGC adapting (speech frames) and the limiter after it.
        "agc_limiter" => Box::new(
            Agc::new(&AgcConfig {
                enabled: true,
                ..AgcConfig::default()
            })
            .unwrap(),
        ),
        "vad" => Box::new(Vad {
            energy: EnergyVoiceDetector::new(),
            machine: VadStateMachine::new(&VadConfig::default()).unwrap(),
        }),
        other => panic!("no stage {other}"),
    }
}

/// One stage fed frames of the 48 kHz test audio.
pub struct StageRunner {
    stage: Box<dyn Stage>,
    input: Cycle,
    info: FrameInfo,
}

impl StageRunner {
    /// The stage `name`, warmed up.
    pub fn new(name: &str) -> Self {
        let mut r = Self {
            stage: stage(name),
            input: Cycle::new(audio(48_000), FRAME_LEN),
            // A voiced frame that is not confident enough to freeze the noise trackers.
            info: FrameInfo {
                voice_prob: Some(0.5),
                speech: true,
            },
        };
        r.run(WARM_FRAMES);
        r
    }

    /// Runs `frames` frames through the stage.
    #[inline]
    pub fn run(&mut self, frames: usize) {
        for _ in 0..frames {
            let mut f: Frame = self.input.next().try_into().unwrap();
            self.stage.process(&mut f, &mut self.info);
            black_box(&f);
        }
    }
}

/// The resampler pairs, each in both kinds (`resample/<kind>_<from>_to_<to>`).
pub const RESAMPLE_PAIRS: [(u32, u32); 4] = [
    (44_100, 48_000),
    (16_000, 48_000),
    (48_000, 16_000),
    (48_000, 24_000),
];

/// The bench name of a resampler.
pub fn resampler_name(kind: ResamplerKind, from: u32, to: u32) -> String {
    format!("{kind:?}_{from}_to_{to}").to_lowercase()
}

/// A streaming resampler fed 10 ms chunks of test audio at its input rate.
pub struct ResampleRunner {
    r: StreamResampler,
    input: Cycle,
}

impl ResampleRunner {
    /// The resampler, warmed up.
    pub fn new(kind: ResamplerKind, from: u32, to: u32) -> Self {
        let mut r = Self {
            r: StreamResampler::new(from, to, kind).unwrap(),
            input: Cycle::new(audio(from), from as usize / 100),
        };
        r.run(WARM_FRAMES);
        r
    }

    /// Runs `frames` 10 ms chunks through the resampler.
    #[inline]
    pub fn run(&mut self, frames: usize) {
        for _ in 0..frames {
            let mut n = 0;
            self.r
                .process(self.input.next(), &mut |o| n += black_box(o).len())
                .unwrap();
            black_box(n);
        }
    }
}

/// The whole chains (`chain/<name>`): each preset at 48 kHz, and the default preset
/// with rate conversion on both sides (44.1 kHz in, 24 kHz out, as for OpenAI).
pub const CHAINS: [&str; 5] = [
    "voice_chat",
    "max_quality",
    "low_cpu",
    "bypass",
    "voice_chat_44k1_in_24k_out",
];

/// The configuration and input rate of a chain bench.
pub fn chain_config(name: &str) -> (Config, u32) {
    match name {
        "voice_chat" => (Preset::VoiceChat.config(), 48_000),
        "max_quality" => (Preset::MaxQuality.config(), 48_000),
        "low_cpu" => (Preset::LowCpu.config(), 48_000),
        "bypass" => (Preset::Bypass.config(), 48_000),
        "voice_chat_44k1_in_24k_out" => (
            Config {
                output_rate: Some(24_000),
                ..Preset::VoiceChat.config()
            },
            44_100,
        ),
        other => panic!("no chain {other}"),
    }
}

/// A whole pipeline fed 10 ms chunks through its real-time, non-allocating entry point.
pub struct ChainRunner {
    p: Pipeline,
    input: Cycle,
    out: Vec<f32>,
}

impl ChainRunner {
    /// The chain `name`, warmed up.
    pub fn new(name: &str) -> Self {
        let (config, rate) = chain_config(name);
        let mut p = Pipeline::new(&config, rate, 1).unwrap();
        p.warm_up();
        let chunk = rate as usize / 100;
        let mut r = Self {
            out: vec![0.0; p.output_frames_max(chunk)],
            p,
            input: Cycle::new(audio(rate), chunk),
        };
        r.run(WARM_FRAMES);
        r
    }

    /// Runs `frames` 10 ms chunks through the pipeline.
    #[inline]
    pub fn run(&mut self, frames: usize) {
        for _ in 0..frames {
            let n = self
                .p
                .process_into_buffer(self.input.next(), &mut self.out)
                .unwrap();
            black_box(&self.out[..n]);
        }
    }
}
