//! The C ABI used as C callers misuse it: one handle shared by a processing thread and a
//! control thread, a flush into a buffer that is too small, input and output buffers
//! that overlap.

use std::ffi::{CStr, CString};
use std::process::Command;
use std::ptr::{null, null_mut};
use std::sync::atomic::{AtomicBool, Ordering};

use clearvox::capi::*;

use crate::last_error;

/// A pipeline handle that the test moves to a second thread (the C ABI allows it).
#[derive(Clone, Copy)]
struct Shared(*mut CvPipeline);
// SAFETY: the C ABI documents which calls may run on which threads; the test keeps to it.
unsafe impl Send for Shared {}
// SAFETY: as above.
unsafe impl Sync for Shared {}

impl Shared {
    /// The handle (a method, so that a closure captures the whole `Shared`).
    fn ptr(&self) -> *mut CvPipeline {
        self.0
    }
}

fn new_pipeline(config: &CStr, rate: u32, channels: u32) -> *mut CvPipeline {
    let mut p = null_mut();
    // SAFETY: a NUL-terminated configuration and a valid out-pointer.
    let status = unsafe { cv_pipeline_new(config.as_ptr(), rate, channels, &mut p) };
    assert_eq!(status, CvStatus::CV_OK, "{}", last_error());
    p
}

fn tone(n: usize, rate: f32) -> Vec<f32> {
    (0..n)
        .map(|i| 0.3 * (i as f32 * 2.0 * std::f32::consts::PI * 300.0 / rate).sin())
        .collect()
}

/// Runs the named test of this binary in a child process: a heap corrupted by a data
/// race kills the process, and the parent then reports it as a failure instead of dying
/// with it.
fn in_child_process(test: &str) {
    let exe = std::env::current_exe().expect("the test binary's path");
    let out = Command::new(exe)
        .args([
            test,
            "--exact",
            "--ignored",
            "--nocapture",
            "--test-threads=1",
        ])
        .output()
        .expect("running the test binary again");
    assert!(
        out.status.success(),
        "{test} failed in its child process ({}):\n{}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn a_control_thread_changes_the_configuration_while_another_processes() {
    in_child_process("misuse::process_and_set_config_on_two_threads");
}

/// The documented use: the audio thread pushes render and processes 10 ms chunks while
/// a control thread changes the configuration, strength and bypass, a few thousand
/// calls in all (and tries stream calls of its own, taking an event or setting the
/// render format, which are done or refused, never run beside the other's).
#[test]
#[ignore = "run in a child process by the test above"]
fn process_and_set_config_on_two_threads() {
    const CHANGES: usize = 600;
    let p = Shared(new_pipeline(c"voice-chat", 48_000, 1));
    let done = AtomicBool::new(false);
    let configs = [
        c"low-cpu",
        c"bypass",
        c"voice-chat",
        c"max-quality",
        cr#"{"preset":"low-cpu","echo":{"enabled":true}}"#,
    ];
    std::thread::scope(|s| {
        let audio = s.spawn(|| {
            let input = tone(480, 48_000.0);
            // 10 ms of render in either format the control thread sets (160 frames of
            // 16 kHz stereo, or 480 of 48 kHz mono).
            let render = tone(480, 16_000.0);
            // SAFETY: a live pipeline.
            let cap = unsafe { cv_pipeline_output_frames_max(p.ptr(), input.len()) };
            let mut out = vec![0.0f32; cap];
            let (mut calls, mut samples, mut refused) = (0u64, 0usize, 0u64);
            while !done.load(Ordering::Acquire) || calls < 100 {
                // SAFETY: as below; `render` holds 480 floats.
                let status = unsafe { cv_pipeline_push_render_f32(p.ptr(), render.as_ptr(), 160) };
                if status == CvStatus::CV_ERR_STATE {
                    refused += 1;
                    continue;
                }
                assert_eq!(status, CvStatus::CV_OK, "{}", last_error());
                let mut written = 0;
                // SAFETY: valid buffers of the stated lengths; only this thread makes
                // stream calls on `p`.
                let status = unsafe {
                    cv_pipeline_process_f32(
                        p.ptr(),
                        input.as_ptr(),
                        input.len(),
                        out.as_mut_ptr(),
                        out.len(),
                        &mut written,
                    )
                };
                // Refused while the other thread's stream call runs, else done.
                if status == CvStatus::CV_ERR_STATE {
                    refused += 1;
                    continue;
                }
                assert_eq!(status, CvStatus::CV_OK, "{}", last_error());
                assert!(out[..written].iter().all(|v| v.is_finite()));
                calls += 1;
                samples += written;
            }
            (calls, samples, refused)
        });
        for i in 0..CHANGES {
            // SAFETY: a live pipeline and NUL-terminated configurations; these calls
            // are documented to run beside the stream calls of another thread.
            unsafe {
                let config = configs[i % configs.len()];
                assert_eq!(
                    cv_pipeline_set_config(p.ptr(), config.as_ptr()),
                    CvStatus::CV_OK,
                    "{}",
                    last_error()
                );
                assert_eq!(
                    cv_pipeline_set_strength(p.ptr(), (i % 11) as f32 / 10.0),
                    CvStatus::CV_OK
                );
                assert_eq!(
                    cv_pipeline_set_bypass(p.ptr(), (i % 3 == 0) as u32),
                    CvStatus::CV_OK
                );
                // A stream call beside the audio thread's: done, or refused as such.
                let (mut event, mut has) = (CvVadEvent::default(), 0u32);
                let status = cv_pipeline_next_event(p.ptr(), &mut event, &mut has);
                assert!(
                    status == CvStatus::CV_OK || status == CvStatus::CV_ERR_STATE,
                    "{status:?}"
                );
                let (mut latency, mut rate) = (0u32, 0u32);
                assert_eq!(
                    cv_pipeline_info(p.ptr(), &mut latency, &mut rate),
                    CvStatus::CV_OK
                );
                assert_eq!(rate, 48_000);
                // Another stream call, which the waiting configuration must follow.
                if i % 5 == 2 {
                    let (rate, channels) = if i % 2 == 0 { (16_000, 2) } else { (48_000, 1) };
                    let status = cv_pipeline_set_render_format(p.ptr(), rate, channels);
                    assert!(
                        status == CvStatus::CV_OK || status == CvStatus::CV_ERR_STATE,
                        "{status:?}"
                    );
                }
                let mut underruns = 0;
                assert_eq!(
                    cv_pipeline_render_stats(p.ptr(), &mut underruns, null_mut()),
                    CvStatus::CV_OK
                );
            }
        }
        done.store(true, Ordering::Release);
        let (calls, samples, refused) = audio.join().expect("the audio thread does not panic");
        eprintln!(
            "{CHANGES} changes beside {calls} process calls ({samples} samples, \
             {refused} refused while the control thread made a stream call)"
        );
        assert!(samples > 0);
    });
    // The last change holds.
    let last = configs[(CHANGES - 1) % configs.len()];
    let fresh = new_pipeline(last, 48_000, 1);
    // SAFETY: the threads are done; both pipelines are live and freed once.
    unsafe {
        let (mut latency, mut expected) = (0u32, 1u32);
        assert_eq!(
            cv_pipeline_info(p.0, &mut latency, null_mut()),
            CvStatus::CV_OK
        );
        assert_eq!(
            cv_pipeline_info(fresh, &mut expected, null_mut()),
            CvStatus::CV_OK
        );
        assert_eq!(latency, expected);
        cv_pipeline_free(fresh);
        cv_pipeline_free(p.0);
    }
}

/// Processes `x` in 1,000-frame chunks and flushes with `flush_capacity` samples of room
/// (if the first flush is refused, a second one has room for everything).
fn stream_with_flush(x: &[f32], flush_capacity: usize) -> (Vec<f32>, Vec<f32>) {
    let p = new_pipeline(c"voice-chat", 16_000, 1);
    // SAFETY: a live pipeline, buffers of the stated lengths.
    unsafe {
        let cap = cv_pipeline_output_frames_max(p, 1_000);
        let mut buf = vec![0.0f32; cap];
        let mut y = Vec::new();
        for chunk in x.chunks(1_000) {
            let mut written = 0;
            let status = cv_pipeline_process_f32(
                p,
                chunk.as_ptr(),
                chunk.len(),
                buf.as_mut_ptr(),
                cap,
                &mut written,
            );
            assert_eq!(status, CvStatus::CV_OK, "{}", last_error());
            y.extend_from_slice(&buf[..written]);
        }
        let mut tail = vec![0.0f32; flush_capacity];
        let mut written = 0;
        let mut status = cv_pipeline_flush(p, tail.as_mut_ptr(), tail.len(), &mut written);
        if status == CvStatus::CV_ERR_OUTPUT_TOO_SMALL {
            assert!(last_error().contains("tail"), "{}", last_error());
            tail = vec![0.0f32; 100_000];
            status = cv_pipeline_flush(p, tail.as_mut_ptr(), tail.len(), &mut written);
        }
        assert_eq!(status, CvStatus::CV_OK, "{}", last_error());
        tail.truncate(written);
        cv_pipeline_free(p);
        (y, tail)
    }
}

#[test]
fn a_flush_refused_for_want_of_room_keeps_the_tail_for_the_next() {
    let x = tone(16_000, 16_000.0);
    let (body, whole) = stream_with_flush(&x, 100_000);
    assert!(whole.len() > 100, "a tail of {} samples", whole.len());
    let (body_again, retried) = stream_with_flush(&x, 10);
    assert_eq!(body, body_again);
    assert_eq!(retried.len(), whole.len(), "the tail after a refused flush");
    assert_eq!(retried, whole);
}

/// What processing `x` (mono, 48 kHz) gives with separate buffers.
fn out_of_place(x: &[f32]) -> Vec<f32> {
    let p = new_pipeline(c"low-cpu", 48_000, 1);
    // SAFETY: a live pipeline, buffers of the stated lengths.
    unsafe {
        let mut out = vec![0.0f32; cv_pipeline_output_frames_max(p, x.len())];
        let mut written = 0;
        let status = cv_pipeline_process_f32(
            p,
            x.as_ptr(),
            x.len(),
            out.as_mut_ptr(),
            out.len(),
            &mut written,
        );
        assert_eq!(status, CvStatus::CV_OK, "{}", last_error());
        cv_pipeline_free(p);
        out.truncate(written);
        out
    }
}

#[test]
fn overlapping_input_and_output_are_refused() {
    let x = tone(4_800, 48_000.0);
    let expected = out_of_place(&x);
    let p = new_pipeline(c"low-cpu", 48_000, 1);
    // SAFETY: every range below lies inside `buf`; the ABI must refuse the overlapping
    // ones before it reads or writes anything.
    unsafe {
        let cap = cv_pipeline_output_frames_max(p, x.len());
        let mut buf = vec![0.0f32; 2 * cap + x.len()];
        let base = buf.as_mut_ptr();
        let mut written = 0;
        // The same buffer, the output starting inside the input, and the input
        // starting inside the output.
        for (input_at, output_at) in [(0, 0), (0, 100), (100, 0), (cap - 1, 0)] {
            buf[input_at..input_at + x.len()].copy_from_slice(&x);
            let status = cv_pipeline_process_f32(
                p,
                base.add(input_at),
                x.len(),
                base.add(output_at),
                cap,
                &mut written,
            );
            assert_eq!(
                status,
                CvStatus::CV_ERR_INVALID_ARGUMENT,
                "input at {input_at}, output at {output_at}"
            );
            assert!(last_error().contains("overlap"), "{}", last_error());
        }
        // 16-bit input in the bytes of the output buffer.
        let as_i16 = base.add(10).cast::<i16>();
        let status = cv_pipeline_process_i16(p, as_i16, 100, base, cap, &mut written);
        assert_eq!(status, CvStatus::CV_ERR_INVALID_ARGUMENT);
        assert!(last_error().contains("overlap"), "{}", last_error());

        // Side by side without overlap: the output right after the input is fine, and
        // equals processing with separate buffers (the refusals changed nothing).
        buf[..x.len()].copy_from_slice(&x);
        let status =
            cv_pipeline_process_f32(p, base, x.len(), base.add(x.len()), cap, &mut written);
        assert_eq!(status, CvStatus::CV_OK, "{}", last_error());
        assert_eq!(&buf[x.len()..x.len() + written], &expected[..]);
        cv_pipeline_free(p);
    }
}

#[test]
fn calls_in_any_order_and_with_any_lengths_answer_with_a_status() {
    let p = new_pipeline(c"voice-chat", 48_000, 2);
    let config = CString::new("low-cpu").unwrap();
    // SAFETY: NULLs, zero and huge lengths and out-of-order calls, which the ABI promises
    // to answer with a status; the buffers passed are valid for the lengths stated.
    unsafe {
        let mut out = [0.0f32; 16];
        let mut written = 0;
        let mut has = 0u32;
        let mut event = CvVadEvent::default();
        // Flush, reset and events before any audio; a flush twice.
        assert_eq!(
            cv_pipeline_flush(p, out.as_mut_ptr(), 16, &mut written),
            CvStatus::CV_ERR_OUTPUT_TOO_SMALL
        );
        assert!(written > 16, "the needed room is reported: {written}");
        assert_eq!(cv_pipeline_reset(p), CvStatus::CV_OK);
        assert_eq!(
            cv_pipeline_next_event(p, &mut event, &mut has),
            CvStatus::CV_OK
        );
        // No frames at all, with NULL buffers.
        assert_eq!(
            cv_pipeline_process_f32(p, null(), 0, null_mut(), 0, &mut written),
            CvStatus::CV_OK
        );
        assert_eq!(written, 0);
        // Huge lengths.
        for frames in [usize::MAX, usize::MAX / 2, isize::MAX as usize / 4] {
            assert_eq!(
                cv_pipeline_process_f32(
                    p,
                    out.as_ptr(),
                    frames,
                    out.as_mut_ptr().add(8),
                    8,
                    &mut written
                ),
                CvStatus::CV_ERR_INVALID_ARGUMENT,
                "{frames} frames"
            );
        }
        assert!(cv_pipeline_output_frames_max(p, usize::MAX) >= 16);
        assert_eq!(cv_pipeline_output_frames_max(null(), 10), 0);
        // A flush with NULL output and a capacity.
        assert_eq!(
            cv_pipeline_flush(p, null_mut(), 10, &mut written),
            CvStatus::CV_ERR_INVALID_ARGUMENT
        );
        assert_eq!(
            cv_pipeline_flush(p, out.as_mut_ptr(), 16, null_mut()),
            CvStatus::CV_ERR_INVALID_ARGUMENT
        );
        // Configuration changes after a flush, then processing after a reset.
        assert_eq!(cv_pipeline_set_config(p, config.as_ptr()), CvStatus::CV_OK);
        assert_eq!(
            cv_pipeline_set_strength(p, f32::NAN),
            CvStatus::CV_ERR_INVALID_ARGUMENT
        );
        assert_eq!(cv_pipeline_reset(p), CvStatus::CV_OK);
        let input = [0.0f32; 2 * 4];
        assert_eq!(
            cv_pipeline_process_f32(p, input.as_ptr(), 4, out.as_mut_ptr(), 0, &mut written),
            CvStatus::CV_ERR_OUTPUT_TOO_SMALL
        );
        assert!(written > 0, "the needed room is reported");
        cv_pipeline_free(p);
    }
}

#[cfg(feature = "device")]
#[test]
fn polling_into_overlapping_buffers_is_refused() {
    let mut e = null_mut();
    // SAFETY: defaults for the configuration and options (nothing is opened before
    // start); the buffers are valid for the capacities given; `e` is freed once.
    unsafe {
        assert_eq!(cv_engine_new(null(), null(), &mut e), CvStatus::CV_OK);
        assert_eq!(cv_engine_enable_polling(e, 4), CvStatus::CV_OK);
        let mut buf = [0.0f32; 64];
        let mut info = std::mem::zeroed::<CvFrame>();
        let mut has = 0u32;
        // Events written over the samples.
        let events = buf.as_mut_ptr().add(8).cast::<CvVadEvent>();
        let status = cv_engine_poll_frame(
            e,
            0,
            buf.as_mut_ptr(),
            buf.len(),
            events,
            4,
            &mut info,
            &mut has,
        );
        assert_eq!(status, CvStatus::CV_ERR_INVALID_ARGUMENT);
        assert!(last_error().contains("overlap"), "{}", last_error());
        cv_engine_free(e);
    }
}
