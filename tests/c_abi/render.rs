//! The render input of the echo canceller through the C ABI: the same output as the
//! Rust `Pipeline` given the same render, the documented refusals, and a render format
//! that outlives configuration changes.

use std::ffi::CStr;
use std::ptr::{null, null_mut};

use clearvox::capi::*;
use clearvox::{Config, Pipeline};

use crate::last_error;
use crate::support::audio::{load, random_chunks, testdata};

/// voice-chat with the echo canceller.
const ECHO: &CStr = cr#"{"preset":"voice-chat","echo":{"enabled":true}}"#;
/// low-cpu with the echo canceller.
const ECHO_LOW_CPU: &CStr = cr#"{"preset":"low-cpu","echo":{"enabled":true}}"#;

fn new_pipeline(config: &CStr, rate: u32, channels: u32) -> *mut CvPipeline {
    let mut p = null_mut();
    // SAFETY: a NUL-terminated configuration and a valid out-pointer.
    let status = unsafe { cv_pipeline_new(config.as_ptr(), rate, channels, &mut p) };
    assert_eq!(status, CvStatus::CV_OK, "{}", last_error());
    p
}

fn to_i16(x: &[f32]) -> Vec<i16> {
    x.iter().map(|v| (v * 32_767.0).round() as i16).collect()
}

/// A talk over a loudspeaker: the capture (16 kHz mono) is a noisy talker plus the
/// echo of the render (8 kHz stereo, another talker, its right channel at half level),
/// 30 ms late.
fn room() -> (Vec<f32>, Vec<f32>) {
    let (near, rate, ch) = load(&testdata("noisy/us_deep__hum__snr5__16k_s16.wav"));
    assert_eq!((rate, ch), (16_000, 1));
    let (far, rate, ch) = load(&testdata("clean/rp_female__cafe__snr10__8k_s16.wav"));
    assert_eq!((rate, ch), (8_000, 1));
    let frames = (near.len() / 2).min(far.len());
    let render: Vec<f32> = far[..frames].iter().flat_map(|&s| [s, 0.5 * s]).collect();
    let delay = 480;
    let capture = (0..2 * frames)
        .map(|n| {
            let echo = if n >= delay {
                far[(n - delay) / 2]
            } else {
                0.0
            };
            near[n] + 0.3 * echo
        })
        .collect();
    (capture, render)
}

/// Render frames (at 8 kHz) that cover the first `capture_frames` at 16 kHz.
fn render_until(capture_frames: usize) -> usize {
    capture_frames / 2
}

/// What the Rust pipeline makes of the room: render pushed before each chunk of
/// capture (as `f32` and as `int16_t` in turn), then the whole stream flushed.
fn rust_reference(capture: &[f32], render: &[f32], sizes: &[usize]) -> (Vec<f32>, u64, u64) {
    let config = Config::from_json_str(ECHO.to_str().unwrap()).unwrap();
    let mut p = Pipeline::new(&config, 16_000, 1).unwrap();
    p.set_render_format(8_000, 2).unwrap();
    let render_i16 = to_i16(render);
    let mut y = Vec::new();
    let (mut at, mut pushed) = (0, 0);
    for (k, &n) in sizes.iter().enumerate() {
        let until = render_until(at + n);
        if k % 2 == 0 {
            p.push_render(&render[2 * pushed..2 * until]).unwrap();
        } else {
            p.push_render(&render_i16[2 * pushed..2 * until]).unwrap();
        }
        pushed = until;
        p.process(&capture[at..at + n], &mut y).unwrap();
        at += n;
    }
    p.flush(&mut y).unwrap();
    (y, p.render_underruns(), p.render_overruns())
}

/// The same through the C ABI (without render when `with_render` is false).
fn through_the_abi(
    capture: &[f32],
    render: &[f32],
    sizes: &[usize],
    with_render: bool,
) -> (Vec<f32>, u64, u64) {
    let p = new_pipeline(ECHO, 16_000, 1);
    let render_i16 = to_i16(render);
    // SAFETY (every call): a live pipeline, buffers of the stated lengths.
    unsafe {
        assert_eq!(
            cv_pipeline_set_render_format(p, 8_000, 2),
            CvStatus::CV_OK,
            "{}",
            last_error()
        );
        let max = sizes.iter().copied().max().unwrap_or(1);
        let cap = cv_pipeline_output_frames_max(p, max);
        let mut buf = vec![0.0f32; cap];
        let mut y = Vec::new();
        let (mut at, mut pushed) = (0, 0);
        for (k, &n) in sizes.iter().enumerate() {
            let until = render_until(at + n);
            if with_render {
                let status = if k % 2 == 0 {
                    cv_pipeline_push_render_f32(p, render[2 * pushed..].as_ptr(), until - pushed)
                } else {
                    cv_pipeline_push_render_i16(
                        p,
                        render_i16[2 * pushed..].as_ptr(),
                        until - pushed,
                    )
                };
                assert_eq!(status, CvStatus::CV_OK, "{}", last_error());
            }
            pushed = until;
            let mut written = 0;
            let status = cv_pipeline_process_f32(
                p,
                capture[at..].as_ptr(),
                n,
                buf.as_mut_ptr(),
                cap,
                &mut written,
            );
            assert_eq!(status, CvStatus::CV_OK, "{}", last_error());
            y.extend_from_slice(&buf[..written]);
            at += n;
        }
        let mut tail = vec![0.0f32; 1 << 16];
        let mut written = 0;
        assert_eq!(
            cv_pipeline_flush(p, tail.as_mut_ptr(), tail.len(), &mut written),
            CvStatus::CV_OK
        );
        y.extend_from_slice(&tail[..written]);
        let (mut under, mut over) = (u64::MAX, u64::MAX);
        assert_eq!(
            cv_pipeline_render_stats(p, &mut under, &mut over),
            CvStatus::CV_OK
        );
        cv_pipeline_free(p);
        (y, under, over)
    }
}

#[test]
fn render_pushed_through_the_abi_gives_the_rust_result_bit_for_bit() {
    let (capture, render) = room();
    let sizes = random_chunks(capture.len(), 1_500, 11);
    let (rust, rust_under, rust_over) = rust_reference(&capture, &render, &sizes);
    let (c, c_under, c_over) = through_the_abi(&capture, &render, &sizes, true);
    assert_eq!(c.len(), rust.len());
    let first = c
        .iter()
        .zip(&rust)
        .position(|(a, b)| a.to_bits() != b.to_bits());
    assert_eq!(first, None, "first differing sample");
    assert_eq!((c_under, c_over), (rust_under, rust_over));
    // The render was used: without it the canceller leaves the echo in.
    let (without, under, over) = through_the_abi(&capture, &render, &sizes, false);
    assert_eq!(without.len(), c.len());
    assert_ne!(without, c, "the render changed nothing");
    assert_eq!((under, over), (0, 0), "no render, no counts");
}

#[test]
fn bad_render_arguments_are_refused_with_the_documented_status() {
    let p = new_pipeline(ECHO, 48_000, 1);
    let render = [0.1f32; 64];
    let render_i16 = [100i16; 64];
    // SAFETY (every call): the arguments are valid or the NULLs and bad values under
    // test, which the ABI promises to reject.
    unsafe {
        // NULL handles.
        assert_eq!(
            cv_pipeline_set_render_format(null_mut(), 48_000, 1),
            CvStatus::CV_ERR_INVALID_ARGUMENT
        );
        assert!(
            last_error().contains("pipeline is NULL"),
            "{}",
            last_error()
        );
        assert_eq!(
            cv_pipeline_push_render_f32(null_mut(), render.as_ptr(), 4),
            CvStatus::CV_ERR_INVALID_ARGUMENT
        );
        assert_eq!(
            cv_pipeline_push_render_i16(null_mut(), render_i16.as_ptr(), 4),
            CvStatus::CV_ERR_INVALID_ARGUMENT
        );
        assert_eq!(
            cv_pipeline_render_stats(null(), null_mut(), null_mut()),
            CvStatus::CV_ERR_INVALID_ARGUMENT
        );
        // Rates and channel counts the pipeline does not take.
        assert_eq!(
            cv_pipeline_set_render_format(p, 0, 2),
            CvStatus::CV_ERR_CONFIG
        );
        assert!(last_error().contains("sample rate 0"), "{}", last_error());
        assert_eq!(
            cv_pipeline_set_render_format(p, 768_000, 2),
            CvStatus::CV_ERR_CONFIG
        );
        assert!(last_error().contains("768000"), "{}", last_error());
        for channels in [0, 9, u32::MAX] {
            assert_eq!(
                cv_pipeline_set_render_format(p, 48_000, channels),
                CvStatus::CV_ERR_CONFIG,
                "{channels} channels"
            );
            assert!(last_error().contains("channel"), "{}", last_error());
        }
        // NULL render with frames, and a frame count whose samples overflow.
        assert_eq!(cv_pipeline_set_render_format(p, 24_000, 2), CvStatus::CV_OK);
        assert_eq!(last_error(), "");
        assert_eq!(
            cv_pipeline_push_render_f32(p, null(), 10),
            CvStatus::CV_ERR_INVALID_ARGUMENT
        );
        assert!(last_error().contains("render is NULL"), "{}", last_error());
        assert_eq!(
            cv_pipeline_push_render_i16(p, null(), 10),
            CvStatus::CV_ERR_INVALID_ARGUMENT
        );
        assert_eq!(
            cv_pipeline_push_render_f32(p, render.as_ptr(), usize::MAX),
            CvStatus::CV_ERR_INVALID_ARGUMENT
        );
        assert!(last_error().contains("overflows"), "{}", last_error());
        assert_eq!(
            cv_pipeline_push_render_f32(p, render.as_ptr(), usize::MAX / 4),
            CvStatus::CV_ERR_INVALID_ARGUMENT
        );
        // No frames, NULL or not; whole frames of the format set last (the refused
        // formats above left it alone).
        assert_eq!(cv_pipeline_push_render_f32(p, null(), 0), CvStatus::CV_OK);
        assert_eq!(
            cv_pipeline_push_render_f32(p, render.as_ptr(), 32),
            CvStatus::CV_OK
        );
        assert_eq!(
            cv_pipeline_push_render_i16(p, render_i16.as_ptr(), 32),
            CvStatus::CV_OK
        );
        // Out-pointers of the query may be NULL.
        assert_eq!(
            cv_pipeline_render_stats(p, null_mut(), null_mut()),
            CvStatus::CV_OK
        );
        cv_pipeline_free(p);

        // Without an echo canceller, render is checked and ignored.
        let q = new_pipeline(c"voice-chat", 16_000, 1);
        assert_eq!(
            cv_pipeline_push_render_f32(q, render.as_ptr(), 64),
            CvStatus::CV_OK
        );
        assert_eq!(
            cv_pipeline_push_render_f32(q, null(), 64),
            CvStatus::CV_ERR_INVALID_ARGUMENT
        );
        cv_pipeline_free(q);
    }
}

/// Streams 3 s through `p` (48 kHz mono capture) in 10 ms steps, pushing 16 kHz stereo
/// render 200 ms ahead of it, and returns the render counts.
fn stream_with_stereo_render(p: *mut CvPipeline) -> (u64, u64) {
    let capture: Vec<f32> = (0..480).map(|n| 0.2 * (n as f32 * 0.05).sin()).collect();
    let render: Vec<f32> = (0..2 * 160)
        .map(|n| 0.3 * ((n / 2) as f32 * 0.3).sin())
        .collect();
    // SAFETY (every call): a live pipeline, buffers of the stated lengths.
    unsafe {
        let cap = cv_pipeline_output_frames_max(p, capture.len());
        let mut out = vec![0.0f32; cap];
        for _ in 0..20 {
            assert_eq!(
                cv_pipeline_push_render_f32(p, render.as_ptr(), 160),
                CvStatus::CV_OK
            );
        }
        for _ in 0..300 {
            assert_eq!(
                cv_pipeline_push_render_f32(p, render.as_ptr(), 160),
                CvStatus::CV_OK,
                "{}",
                last_error()
            );
            let mut written = 0;
            let status = cv_pipeline_process_f32(
                p,
                capture.as_ptr(),
                capture.len(),
                out.as_mut_ptr(),
                cap,
                &mut written,
            );
            assert_eq!(status, CvStatus::CV_OK, "{}", last_error());
        }
        let (mut under, mut over) = (u64::MAX, u64::MAX);
        assert_eq!(
            cv_pipeline_render_stats(p, &mut under, &mut over),
            CvStatus::CV_OK
        );
        (under, over)
    }
}

#[test]
fn the_render_format_outlives_configuration_changes() {
    // SAFETY (every call): live pipelines and NUL-terminated configurations.
    unsafe {
        // The format set before a change is the new pipeline's.
        let p = new_pipeline(c"voice-chat", 48_000, 1);
        assert_eq!(cv_pipeline_set_render_format(p, 16_000, 2), CvStatus::CV_OK);
        assert_eq!(
            cv_pipeline_set_config(p, ECHO_LOW_CPU.as_ptr()),
            CvStatus::CV_OK
        );
        assert_eq!(stream_with_stereo_render(p), (0, 0));
        // And the next one's, and it survives a reset.
        assert_eq!(cv_pipeline_set_config(p, ECHO.as_ptr()), CvStatus::CV_OK);
        assert_eq!(cv_pipeline_reset(p), CvStatus::CV_OK);
        assert_eq!(stream_with_stereo_render(p), (0, 0));
        cv_pipeline_free(p);

        // A format set while a change waits for the stream is the waiting pipeline's.
        let q = new_pipeline(c"voice-chat", 48_000, 1);
        assert_eq!(
            cv_pipeline_set_config(q, ECHO_LOW_CPU.as_ptr()),
            CvStatus::CV_OK
        );
        assert_eq!(cv_pipeline_set_render_format(q, 16_000, 2), CvStatus::CV_OK);
        assert_eq!(stream_with_stereo_render(q), (0, 0));
        cv_pipeline_free(q);

        // What the counts show of a format that is not the render's: stereo 16 kHz
        // taken for mono 48 kHz is a third short, frame after frame.
        let r = new_pipeline(ECHO, 48_000, 1);
        let (under, _) = stream_with_stereo_render(r);
        assert!(under > 100, "{under} underruns");
        cv_pipeline_free(r);
    }
}

/// What the C example does with a render file, in Rust: its chunk sizes (the same
/// generator), the render up to the end of each chunk pushed first.
fn c_example_reference(capture: &[f32], render: &[f32]) -> Vec<f32> {
    let config = Config::from_json_str(ECHO.to_str().unwrap()).unwrap();
    let mut p = Pipeline::new(&config, 16_000, 1).unwrap();
    p.set_render_format(8_000, 2).unwrap();
    let render_frames = render.len() / 2;
    let (mut at, mut render_at, mut seed) = (0usize, 0usize, 12_345u32);
    let mut y = Vec::new();
    while at < capture.len() {
        seed = seed.wrapping_mul(1_103_515_245).wrapping_add(12_345);
        let n = (1 + (seed >> 8) % 4_096) as usize;
        let n = n.min(capture.len() - at);
        let until = (((at + n) as u64 * 8_000 / 16_000) as usize).min(render_frames);
        if until > render_at {
            p.push_render(&render[2 * render_at..2 * until]).unwrap();
            render_at = until;
        }
        p.process(&capture[at..at + n], &mut y).unwrap();
        at += n;
    }
    p.flush(&mut y).unwrap();
    y
}

#[test]
fn the_c_example_with_render_gives_the_rust_result_bit_for_bit() {
    let dir = tempfile::tempdir().unwrap();
    let exe = crate::compile_c_example(dir.path());
    let (capture, render) = room();
    let (input, far, output) = (
        dir.path().join("in.f32"),
        dir.path().join("render.f32"),
        dir.path().join("out.f32"),
    );
    crate::write_f32(&input, &capture);
    crate::write_f32(&far, &render);
    let out = std::process::Command::new(&exe)
        .arg(&input)
        .args(["16000", "1"])
        .arg(&output)
        .arg(ECHO.to_str().unwrap())
        .arg(&far)
        .args(["8000", "2"])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.contains("render: "), "{stdout}");
    let c = crate::read_f32(&output);
    let rust = c_example_reference(&capture, &render);
    assert_eq!(c.len(), rust.len());
    let first = c
        .iter()
        .zip(&rust)
        .position(|(a, b)| a.to_bits() != b.to_bits());
    assert_eq!(first, None, "first differing sample");
}
