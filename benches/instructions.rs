//! Instruction counts of the per-frame work (callgrind, through gungraun): the same
//! stages, resamplers and chains as `benches/pipeline.rs`, each running
//! `COUNT_FRAMES` (100) 10 ms frames of real test audio from a warmed-up state. The
//! setup (reading the audio, building and warming up) is not counted.
//!
//! Deterministic, so it gates CI: `budget-check` compares the counts with the committed
//! baseline (`benches/instructions-baseline.toml`) and fails beyond its tolerance.
//!
//! Needs valgrind and the `gungraun-runner` binary of the same version as the
//! `gungraun` dev-dependency:
//! `cargo bench --bench instructions -- --save-summary=json` writes
//! `target/gungraun/clearvox/instructions/<group>/<bench>/summary.json`.

mod common;

use std::hint::black_box;

use clearvox::dsp::resample::ResamplerKind;
use common::*;
use gungraun::{library_benchmark, library_benchmark_group, main};

fn stage_runner(name: &str) -> StageRunner {
    StageRunner::new(name)
}

fn resample_runner(kind: ResamplerKind, from: u32, to: u32) -> ResampleRunner {
    ResampleRunner::new(kind, from, to)
}

fn chain_runner(name: &str) -> ChainRunner {
    ChainRunner::new(name)
}

#[library_benchmark]
#[bench::echo(args = ("echo"), setup = stage_runner)]
#[bench::highpass(args = ("highpass"), setup = stage_runner)]
#[bench::rnnoise(args = ("rnnoise"), setup = stage_runner)]
#[bench::deepfilter(args = ("deepfilter"), setup = stage_runner)]
#[bench::gate_nonstationary(args = ("gate_nonstationary"), setup = stage_runner)]
#[bench::gate_stationary(args = ("gate_stationary"), setup = stage_runner)]
#[bench::agc_limiter(args = ("agc_limiter"), setup = stage_runner)]
#[bench::vad(args = ("vad"), setup = stage_runner)]
fn stage(mut r: StageRunner) -> StageRunner {
    r.run(black_box(COUNT_FRAMES));
    r
}

#[library_benchmark]
#[bench::sinc_44100_to_48000(args = (ResamplerKind::Sinc, 44_100, 48_000), setup = resample_runner)]
#[bench::sinc_16000_to_48000(args = (ResamplerKind::Sinc, 16_000, 48_000), setup = resample_runner)]
#[bench::sinc_48000_to_16000(args = (ResamplerKind::Sinc, 48_000, 16_000), setup = resample_runner)]
#[bench::sinc_48000_to_24000(args = (ResamplerKind::Sinc, 48_000, 24_000), setup = resample_runner)]
#[bench::fft_44100_to_48000(args = (ResamplerKind::Fft, 44_100, 48_000), setup = resample_runner)]
#[bench::fft_16000_to_48000(args = (ResamplerKind::Fft, 16_000, 48_000), setup = resample_runner)]
#[bench::fft_48000_to_16000(args = (ResamplerKind::Fft, 48_000, 16_000), setup = resample_runner)]
#[bench::fft_48000_to_24000(args = (ResamplerKind::Fft, 48_000, 24_000), setup = resample_runner)]
fn resample(mut r: ResampleRunner) -> ResampleRunner {
    r.run(black_box(COUNT_FRAMES));
    r
}

#[library_benchmark]
#[bench::voice_chat(args = ("voice_chat"), setup = chain_runner)]
#[bench::max_quality(args = ("max_quality"), setup = chain_runner)]
#[bench::low_cpu(args = ("low_cpu"), setup = chain_runner)]
#[bench::bypass(args = ("bypass"), setup = chain_runner)]
#[bench::voice_chat_44k1_in_24k_out(args = ("voice_chat_44k1_in_24k_out"), setup = chain_runner)]
fn chain(mut r: ChainRunner) -> ChainRunner {
    r.run(black_box(COUNT_FRAMES));
    r
}

library_benchmark_group!(name = stages, benchmarks = [stage]);
library_benchmark_group!(name = resamplers, benchmarks = [resample]);
library_benchmark_group!(name = chains, benchmarks = [chain]);

main!(library_benchmark_groups = stages, resamplers, chains);
