//! After warm-up on the thread that runs it, the pipeline's real-time path does not
//! touch the heap: a counting global allocator sees no allocation, reallocation or
//! free on this thread while `process_into_buffer` runs, for every preset on RNNoise or
//! no denoiser, with rate conversion on both sides and odd chunk sizes.
//!
//! The DeepFilterNet denoiser is the exception, and a measured one: tract allocates the
//! tensors of every network call. Its heap operations per 10 ms frame are counted here
//! and held to a bound, so that a change which makes it worse is seen. The live engine
//! runs the pipeline on its processing thread, never in an audio callback, so the
//! callbacks stay allocation-free either way (`tests/engine/scripted_device.rs`).
//!
//! The counting allocator is this test binary's global allocator (`tests/dsp/main.rs`); it
//! counts per thread, so the other tests running meanwhile are not counted here.

use clearvox::config::Denoiser;
use clearvox::{Config, Pipeline, Preset};
use counting_alloc::count_on_this_thread;

use crate::support::audio::*;

/// Heap operations (allocations and frees) on the processing thread per 10 ms frame
/// of DeepFilterNet, at most. Measured with tract 0.23: 2,075 (about 1,040 blocks
/// allocated and freed per frame, by the three networks' per-call tensors and the GRU
/// loops); the bound leaves 20 % for allocator and library changes.
const DEEPFILTER_HEAP_OPS_PER_FRAME: f64 = 2_500.0;

fn check(config: &Config, file: &str) {
    let (ops, frames) = heap_ops_while_processing(config, file);
    if config.denoiser == Denoiser::DeepFilter {
        let per_frame = ops as f64 / frames as f64;
        assert!(
            per_frame <= DEEPFILTER_HEAP_OPS_PER_FRAME,
            "{:?} {file}: {per_frame:.1} heap operations per frame",
            config.preset
        );
    } else {
        assert_eq!(ops, 0, "{:?} {file}: {ops} heap operations", config.preset);
    }
}

/// Heap operations while a pipeline processes `file` in odd chunks, and the number of
/// 10 ms frames that took.
fn heap_ops_while_processing(config: &Config, file: &str) -> (u64, u64) {
    let (x, rate, ch) = load(&testdata(file));
    let sizes = random_chunks(x.len() / ch, 2_000, 3);
    let config = config.clone();
    // A fresh thread, as the live engine's processing thread would be.
    std::thread::spawn(move || {
        let mut p = Pipeline::new(&config, rate, ch).expect("the configuration is valid");
        p.warm_up();
        let mut out = vec![0.0f32; p.output_frames_max(4_096)];
        let (produced, counts) = count_on_this_thread(|| {
            let mut at = 0;
            let mut produced = 0;
            for &n in &sizes {
                let need = p.output_frames_next(n);
                assert!(need <= out.len());
                produced += p
                    .process_into_buffer(&x[at * ch..(at + n) * ch], &mut out)
                    .expect("processing a chunk");
                at += n;
            }
            produced
        });
        assert!(produced > 0);
        let frames = (x.len() / ch) as u64 * 48_000 / rate as u64 / 480;
        (counts.total(), frames)
    })
    .join()
    .expect("the processing thread does not panic")
}

#[test]
fn heap_operations_per_frame_of_deepfilternet_are_bounded() {
    let config = Config {
        denoiser: Denoiser::DeepFilter,
        ..Config::default()
    };
    let (ops, frames) =
        heap_ops_while_processing(&config, "noisy/us_male__cafe__snr5__48k_f32.wav");
    let per_frame = ops as f64 / frames as f64;
    eprintln!("DeepFilterNet: {ops} heap operations in {frames} frames, {per_frame:.1} per frame");
    assert!(
        per_frame > 0.0,
        "tract stopped allocating: tighten this test to zero"
    );
    assert!(
        per_frame <= DEEPFILTER_HEAP_OPS_PER_FRAME,
        "{per_frame:.1} per frame"
    );
}

#[test]
fn every_preset_processes_without_touching_the_heap() {
    for p in Preset::ALL {
        check(&p.config(), "noisy/us_male__cafe__snr5__48k_f32.wav");
    }
}

#[test]
fn with_rate_conversion_on_both_sides() {
    for p in [Preset::VoiceChat, Preset::MaxQuality, Preset::LowCpu] {
        let config = Config {
            output_rate: Some(16_000),
            ..p.config()
        };
        check(&config, "noisy/gb_female__traffic__snr10__44k1_s24.wav");
    }
}

#[test]
fn with_every_optional_stage_on() {
    let mut config = Config::default();
    config.highpass.enabled = true;
    config.agc.enabled = true;
    config.strength = 0.7;
    config.atten_limit_db = Some(12.0);
    check(&config, "noisy/us_deep__keyboard__snr0__16k_s16.wav");
}

#[test]
fn the_counter_sees_allocations() {
    let ((), counts) = count_on_this_thread(|| {
        let v: Vec<u8> = std::hint::black_box(Vec::with_capacity(10));
        drop(v);
    });
    assert_eq!(counts.total(), 2);
}
