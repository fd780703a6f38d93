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

/// The C ABI's stream calls on the thread that runs them, after one call to warm it
/// up: processing (`f32` and `int16_t` input, odd chunk sizes), events, the last error
/// and the read-only queries touch no heap, nor does taking over a configuration
/// change made meanwhile, its cross-fade or the retirement of the old pipeline.
#[cfg(feature = "capi")]
#[test]
fn the_c_abi_processes_without_touching_the_heap() {
    use clearvox::capi::*;
    use std::ptr::null_mut;

    struct Handle(*mut CvPipeline);
    // SAFETY: the handle is used by one thread at a time.
    unsafe impl Send for Handle {}

    let (x, rate, ch) = load(&testdata("noisy/us_male__cafe__snr5__48k_f32.wav"));
    let as_i16: Vec<i16> = x.iter().map(|v| (v * 32_767.0) as i16).collect();
    let sizes = random_chunks(x.len() / ch, 2_000, 5);
    let mut p = null_mut();
    // SAFETY: a NUL-terminated configuration and a valid out-pointer.
    let status = unsafe { cv_pipeline_new(c"voice-chat".as_ptr(), rate, ch as u32, &mut p) };
    assert_eq!(status, CvStatus::CV_OK);
    let handle = Handle(p);
    let ops = std::thread::spawn(move || {
        let p = handle;
        // SAFETY (every call): a live pipeline, buffers of the stated lengths, used by
        // this thread alone.
        let cap = unsafe { cv_pipeline_output_frames_max(p.0, 2_000) };
        let mut out = vec![0.0f32; cap];
        let run = |range: std::ops::Range<usize>, out: &mut [f32]| {
            let mut at: usize = sizes[..range.start].iter().sum();
            for (k, &n) in sizes[range].iter().enumerate() {
                let mut written = 0;
                let status = unsafe {
                    if k % 2 == 0 {
                        cv_pipeline_process_f32(
                            p.0,
                            x[at * ch..].as_ptr(),
                            n,
                            out.as_mut_ptr(),
                            cap,
                            &mut written,
                        )
                    } else {
                        cv_pipeline_process_i16(
                            p.0,
                            as_i16[at * ch..].as_ptr(),
                            n,
                            out.as_mut_ptr(),
                            cap,
                            &mut written,
                        )
                    }
                };
                assert_eq!(status, CvStatus::CV_OK);
                assert!(unsafe { *cv_last_error() } == 0);
                let mut event = CvVadEvent::default();
                let mut has = 0;
                while unsafe { cv_pipeline_next_event(p.0, &mut event, &mut has) }
                    == CvStatus::CV_OK
                    && has == 1
                {}
                let (mut latency, mut rate) = (0, 0);
                assert_eq!(
                    unsafe { cv_pipeline_info(p.0, &mut latency, &mut rate) },
                    CvStatus::CV_OK
                );
                assert!(unsafe { cv_pipeline_output_frames_max(p.0, n) } <= cap);
                at += n;
            }
        };
        let third = sizes.len() / 3;
        // Warm-up: the first calls on this thread create what lasts (RNNoise's FFT
        // plans, the thread's error message).
        run(0..2, &mut out);
        let ((), before) = count_on_this_thread(|| run(2..third, &mut out));
        // A configuration change (made here, outside the count, as a control thread
        // would), taken over by the next stream call and cross-faded.
        unsafe {
            assert_eq!(
                cv_pipeline_set_config(p.0, c"low-cpu".as_ptr()),
                CvStatus::CV_OK
            );
            assert_eq!(cv_pipeline_set_strength(p.0, 0.5), CvStatus::CV_OK);
        }
        let ((), after) = count_on_this_thread(|| run(third..sizes.len(), &mut out));
        unsafe { cv_pipeline_free(p.0) };
        (before.total(), after.total())
    })
    .join()
    .expect("the processing thread does not panic");
    assert_eq!(
        ops,
        (0, 0),
        "heap operations before and after a configuration change"
    );
}

/// The render input of the echo canceller through the C ABI, on the thread that
/// processes, after one call to warm it up: pushing render (`f32` and `int16_t`, 24 kHz
/// stereo beside 48 kHz capture, in step with odd chunk sizes), processing with the
/// canceller at work and the render counts touch no heap, before and after a
/// configuration change that keeps the render format.
#[cfg(feature = "capi")]
#[test]
fn the_c_abi_render_input_and_processing_do_not_touch_the_heap() {
    use clearvox::capi::*;
    use std::ptr::null_mut;

    struct Handle(*mut CvPipeline);
    // SAFETY: the handle is used by one thread at a time.
    unsafe impl Send for Handle {}

    let (x, rate, ch) = load(&testdata("noisy/us_male__cafe__snr5__48k_f32.wav"));
    assert_eq!(ch, 1);
    // The loudspeaker: stereo noise at 24 kHz, one render frame per two captured.
    let far = white_noise(x.len() / 2, 0.2, 7);
    let render: Vec<f32> = far.iter().flat_map(|&s| [s, -s]).collect();
    let render_i16: Vec<i16> = render.iter().map(|v| (v * 32_767.0) as i16).collect();
    let sizes = random_chunks(x.len(), 2_000, 9);
    let mut p = null_mut();
    let echo = cr#"{"preset":"voice-chat","echo":{"enabled":true}}"#;
    // SAFETY: a NUL-terminated configuration and a valid out-pointer.
    let status = unsafe { cv_pipeline_new(echo.as_ptr(), rate, 1, &mut p) };
    assert_eq!(status, CvStatus::CV_OK);
    let handle = Handle(p);
    let ops = std::thread::spawn(move || {
        let p = handle;
        // SAFETY (every call): a live pipeline, buffers of the stated lengths, used by
        // this thread alone.
        assert_eq!(
            unsafe { cv_pipeline_set_render_format(p.0, 24_000, 2) },
            CvStatus::CV_OK
        );
        let cap = unsafe { cv_pipeline_output_frames_max(p.0, 2_000) };
        let mut out = vec![0.0f32; cap];
        let run = |range: std::ops::Range<usize>, out: &mut [f32]| {
            let mut at: usize = sizes[..range.start].iter().sum();
            for (k, &n) in sizes[range].iter().enumerate() {
                let (from, to) = (at / 2, (at + n) / 2);
                let status = unsafe {
                    if k % 2 == 0 {
                        cv_pipeline_push_render_f32(p.0, render[2 * from..].as_ptr(), to - from)
                    } else {
                        cv_pipeline_push_render_i16(p.0, render_i16[2 * from..].as_ptr(), to - from)
                    }
                };
                assert_eq!(status, CvStatus::CV_OK);
                let mut written = 0;
                let status = unsafe {
                    cv_pipeline_process_f32(
                        p.0,
                        x[at..].as_ptr(),
                        n,
                        out.as_mut_ptr(),
                        cap,
                        &mut written,
                    )
                };
                assert_eq!(status, CvStatus::CV_OK);
                let (mut under, mut over) = (0, 0);
                assert_eq!(
                    unsafe { cv_pipeline_render_stats(p.0, &mut under, &mut over) },
                    CvStatus::CV_OK
                );
                assert!(unsafe { *cv_last_error() } == 0);
                at += n;
            }
        };
        let third = sizes.len() / 3;
        run(0..2, &mut out);
        let ((), before) = count_on_this_thread(|| run(2..third, &mut out));
        // A configuration change (outside the count, as a control thread would make
        // it), taken over by the next stream call with the render format kept.
        unsafe {
            let next = cr#"{"preset":"low-cpu","echo":{"enabled":true}}"#;
            assert_eq!(cv_pipeline_set_config(p.0, next.as_ptr()), CvStatus::CV_OK);
        }
        let ((), after) = count_on_this_thread(|| run(third..sizes.len(), &mut out));
        unsafe { cv_pipeline_free(p.0) };
        (before.total(), after.total())
    })
    .join()
    .expect("the processing thread does not panic");
    assert_eq!(
        ops,
        (0, 0),
        "heap operations before and after a configuration change"
    );
}
