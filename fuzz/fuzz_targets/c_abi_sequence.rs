//! Sequences of C ABI calls on two pipeline handles, as a C caller may make them:
//! create (presets, TOML, JSON, NULL, nonsense; odd rates and channel counts), process
//! `f32` and `int16_t` audio of fuzzed lengths and values (NaN and infinities included)
//! into buffers of fuzzed sizes, change the configuration, strength and bypass, flush
//! into buffers of fuzzed sizes, read events, reset, free, and call all of it on NULL.
//! Every pointer passed is honest about its length. No call may panic (the boundary
//! would return `CV_ERR_PANIC`); a written count never exceeds the buffer; output is
//! finite; a failure's message is one line.
#![no_main]

use std::ffi::{CStr, CString};
use std::ptr;

use clearvox::capi::*;
use clearvox::limits::MAX_CHANNELS;
use libfuzzer_sys::fuzz_target;

/// Reads the fuzzer's bytes as the arguments of the calls.
struct Bytes<'a>(&'a [u8]);

impl Bytes<'_> {
    fn u8(&mut self) -> u8 {
        match self.0.split_first() {
            Some((&b, rest)) => {
                self.0 = rest;
                b
            }
            None => 0,
        }
    }
    fn u16(&mut self) -> u16 {
        u16::from_le_bytes([self.u8(), self.u8()])
    }
    fn u32(&mut self) -> u32 {
        u32::from_le_bytes([self.u8(), self.u8(), self.u8(), self.u8()])
    }
    fn f32(&mut self) -> f32 {
        match self.u8() % 8 {
            0 => f32::NAN,
            1 => f32::INFINITY,
            2 => f32::NEG_INFINITY,
            3 => f32::from_bits(self.u32()),
            4 => 0.0,
            _ => f32::from(self.u16() as i16) / 32768.0,
        }
    }
    fn text(&mut self) -> CString {
        let len = usize::from(self.u8() % 64).min(self.0.len());
        let (head, rest) = self.0.split_at(len);
        self.0 = rest;
        CString::new(
            head.iter()
                .map(|&b| if b == 0 { b' ' } else { b })
                .collect::<Vec<_>>(),
        )
        .expect("no NUL")
    }
    fn done(&self) -> bool {
        self.0.is_empty()
    }
}

const CONFIGS: &[&str] = &[
    "voice-chat",
    "max-quality",
    "low-cpu",
    "bypass",
    "",
    "loud",
    "output_rate = 16000",
    "output_rate = 8000\nresampler = \"linear\"",
    "strength = 0.5\nbypass = true",
    "[gate]\nmax_attenuation_db = 30.0",
    "{\"preset\": \"low-cpu\", \"output_rate\": 48000}",
    "{\"atten_limit_db\": 6}",
    "{\"strength\": 2}",
    "denoiser = \"deepfilter\"",
    "{",
];

const RATES: &[u32] = &[
    48_000,
    16_000,
    8_000,
    44_100,
    24_000,
    0,
    1,
    7_999,
    192_000,
    u32::MAX,
];

/// Most frames one call gets, and all the calls of one input together.
const MAX_FRAMES: usize = 4_800;
const BUDGET_FRAMES: usize = 48_000;

fn check(status: CvStatus) {
    assert_ne!(status, CvStatus::CV_ERR_PANIC, "a panic at the C boundary");
    // SAFETY: a NUL-terminated string valid until the next call on this thread.
    let message = unsafe { CStr::from_ptr(cv_last_error()) }
        .to_str()
        .expect("the last error is UTF-8");
    if status == CvStatus::CV_OK {
        assert!(message.is_empty(), "{message}");
    } else {
        assert!(
            !message.is_empty() && !message.contains('\n'),
            "{message:?}"
        );
    }
}

fn config_arg(b: &mut Bytes, keep: &mut Option<CString>) -> *const std::ffi::c_char {
    let pick = b.u8();
    *keep = match pick % 20 {
        n if (n as usize) < CONFIGS.len() => {
            Some(CString::new(CONFIGS[n as usize]).expect("no NUL"))
        }
        18 => None,
        _ => Some(b.text()),
    };
    keep.as_ref().map_or(ptr::null(), |c| c.as_ptr())
}

fuzz_target!(|input: &[u8]| {
    let mut b = Bytes(input);
    let mut handles: [*mut CvPipeline; 2] = [ptr::null_mut(); 2];
    let mut budget = BUDGET_FRAMES;
    let mut calls = 0;
    while !b.done() && calls < 64 {
        calls += 1;
        let op = b.u8();
        let slot = usize::from(op >> 7);
        let h = handles[slot];
        match op % 12 {
            0 => {
                let mut keep = None;
                let config = config_arg(&mut b, &mut keep);
                let rate = match b.u8() {
                    n if usize::from(n) < RATES.len() => RATES[usize::from(n)],
                    n if n >= 250 => b.u32(),
                    _ => 48_000,
                };
                let channels = match b.u8() % 8 {
                    0 => 0,
                    7 => b.u32(),
                    n => u32::from(n),
                };
                // SAFETY: the old handle came from cv_pipeline_new and is not used again.
                unsafe { cv_pipeline_free(h) };
                handles[slot] = ptr::null_mut();
                let mut out: *mut CvPipeline = ptr::null_mut();
                // SAFETY: a NUL-terminated configuration or NULL; `out` is writable.
                let status = unsafe { cv_pipeline_new(config, rate, channels, &mut out) };
                check(status);
                assert_eq!(status == CvStatus::CV_OK, !out.is_null());
                handles[slot] = out;
            }
            op @ (1 | 2) => {
                let frames = usize::from(b.u16()) % (MAX_FRAMES + 1);
                let frames = frames.min(budget);
                budget -= frames;
                // The input is sized for the most channels a pipeline takes
                // (clearvox::limits::MAX_CHANNELS), whatever the handle has.
                // SAFETY: NULL or a live handle.
                let need = unsafe { cv_pipeline_output_frames_max(h, frames) };
                let capacity = match b.u8() % 4 {
                    0 => need.saturating_sub(usize::from(b.u8())),
                    1 => 0,
                    _ => need,
                };
                let mut output = vec![0.0f32; capacity];
                let mut written = usize::MAX;
                let status = if op == 1 {
                    let fill = b.f32();
                    let step = b.f32();
                    let input: Vec<f32> = (0..frames * MAX_CHANNELS)
                        .map(|n| {
                            if n % 97 == 0 {
                                step
                            } else {
                                fill * (n as f32 * 0.01).sin()
                            }
                        })
                        .collect();
                    // SAFETY: `input` holds `frames` frames of up to MAX_CHANNELS channels, `output`
                    // `capacity` floats; `written` is writable.
                    unsafe {
                        cv_pipeline_process_f32(
                            h,
                            input.as_ptr(),
                            frames,
                            output.as_mut_ptr(),
                            capacity,
                            &mut written,
                        )
                    }
                } else {
                    let amp = b.u16() as i16;
                    let input: Vec<i16> = (0..frames * MAX_CHANNELS)
                        .map(|n| if n % 2 == 0 { amp } else { amp.wrapping_neg() })
                        .collect();
                    // SAFETY: as above.
                    unsafe {
                        cv_pipeline_process_i16(
                            h,
                            input.as_ptr(),
                            frames,
                            output.as_mut_ptr(),
                            capacity,
                            &mut written,
                        )
                    }
                };
                check(status);
                if status == CvStatus::CV_OK {
                    assert!(written <= capacity, "{written} written into {capacity}");
                    assert!(
                        output[..written].iter().all(|s| s.is_finite()),
                        "non-finite output"
                    );
                } else if status == CvStatus::CV_ERR_OUTPUT_TOO_SMALL {
                    assert!(
                        capacity < need,
                        "{capacity} refused though {need} was said to do"
                    );
                }
            }
            3 => {
                let capacity = match b.u8() % 3 {
                    0 => 0,
                    1 => usize::from(b.u16()),
                    _ => usize::from(b.u8()),
                };
                let mut output = vec![0.0f32; capacity];
                let mut written = usize::MAX;
                // SAFETY: `output` holds `capacity` floats.
                let status =
                    unsafe { cv_pipeline_flush(h, output.as_mut_ptr(), capacity, &mut written) };
                check(status);
                if status == CvStatus::CV_OK {
                    assert!(written <= capacity);
                    assert!(
                        output[..written].iter().all(|s| s.is_finite()),
                        "non-finite tail"
                    );
                }
            }
            4 => {
                let mut keep = None;
                let config = config_arg(&mut b, &mut keep);
                // SAFETY: NULL or a live handle; NULL or a NUL-terminated configuration.
                check(unsafe { cv_pipeline_set_config(h, config) });
            }
            5 => check(unsafe { cv_pipeline_reset(h) }),
            6 => {
                // SAFETY: from cv_pipeline_new (or NULL), not used again.
                unsafe { cv_pipeline_free(h) };
                handles[slot] = ptr::null_mut();
            }
            7 => {
                let strength = b.f32();
                // SAFETY: NULL or a live handle.
                check(unsafe { cv_pipeline_set_strength(h, strength) });
            }
            8 => check(unsafe { cv_pipeline_set_bypass(h, b.u32()) }),
            9 => {
                for _ in 0..64 {
                    let mut event = CvVadEvent::default();
                    let mut has = 0;
                    // SAFETY: writable out-pointers.
                    let status = unsafe { cv_pipeline_next_event(h, &mut event, &mut has) };
                    check(status);
                    if status != CvStatus::CV_OK || has == 0 {
                        break;
                    }
                    assert!(event.kind == 1 || event.kind == 2);
                }
            }
            10 => {
                let (mut latency, mut rate) = (0, 0);
                // SAFETY: NULL or a live handle; writable out-pointers.
                check(unsafe { cv_pipeline_info(h, &mut latency, &mut rate) });
            }
            _ => {
                // The other handle's audio into this one: two live handles at once.
                let frames = usize::from(b.u8());
                // SAFETY: NULL or a live handle.
                let need = unsafe { cv_pipeline_output_frames_max(h, frames) };
                let mut output = vec![0.0f32; need];
                let input = vec![0.25f32; frames * MAX_CHANNELS];
                let mut written = 0;
                // SAFETY: as in the process calls.
                check(unsafe {
                    cv_pipeline_process_f32(
                        h,
                        input.as_ptr(),
                        frames,
                        output.as_mut_ptr(),
                        need,
                        &mut written,
                    )
                });
            }
        }
    }
    for h in handles {
        // SAFETY: from cv_pipeline_new (or NULL), not used again.
        unsafe { cv_pipeline_free(h) };
    }
});
