//! The C ABI: opaque handles over [`HotSwap`] (the pipeline) and [`Engine`] (the live
//! engine), for apps whose native layer is C, Swift, Kotlin/JNI or Dart FFI.
//!
//! Conventions, the same for every function:
//! - Functions return a [`CvStatus`]: `CV_OK` (0) or a negative code; the message of the
//!   latest failure on the calling thread is [`cv_last_error`].
//! - Handles are created by `*_new` functions and freed by the matching `*_free`
//!   (freeing NULL is allowed). A handle must not be used from two threads at once.
//! - Null pointers and lengths that do not fit are rejected with `CV_ERR_INVALID_ARGUMENT`,
//!   never dereferenced; no panic crosses the boundary (each entry point catches them and
//!   returns `CV_ERR_PANIC`).
//! - Audio is interleaved, `f32` in ±1.0 or `int16_t`, any number of frames per call;
//!   output is mono at the pipeline's output rate.
//!
//! The header `include/clearvox.h` is generated from this file by cbindgen.
//!
//! Every type's documentation has an example of its use from Rust.

// Those examples sit in `#[cfg_attr(any(doc, doctest), doc = ...)]` attributes:
// rustdoc shows and tests them, while cbindgen copies only plain doc comments into
// `include/clearvox.h`, which so keeps no Rust code.

use std::cell::RefCell;
use std::ffi::{c_char, c_void, CStr, CString};
use std::panic::{catch_unwind, AssertUnwindSafe};
#[cfg(feature = "device")]
use std::time::Duration;

use crate::config::{Config, Preset};
use crate::dsp::vad::{VadEvent, VadEventKind};
#[cfg(feature = "device")]
use crate::engine::{Engine, EngineConfig};
#[cfg(feature = "device")]
use crate::pipeline::EnhancedFrame;
use crate::pipeline::HotSwap;

/// The version of this C ABI; it changes when a signature or a struct does.
pub const CV_ABI_VERSION: u32 = 2;

/// What a function did.
#[cfg_attr(
    any(doc, doctest),
    doc = r#"
# Examples

A refused configuration, and the message that says why:

```
use clearvox::capi::{cv_last_error, cv_pipeline_new, CvPipeline, CvStatus};
use std::ffi::CStr;

let mut p: *mut CvPipeline = std::ptr::null_mut();
// SAFETY: the configuration is a NUL-terminated string; `p` is valid for a write.
let status = unsafe { cv_pipeline_new(c"loud".as_ptr(), 48_000, 1, &mut p) };
assert_eq!(status, CvStatus::CV_ERR_CONFIG);
assert!(p.is_null());

// SAFETY: a NUL-terminated string, valid until the next clearvox call on this thread.
let message = unsafe { CStr::from_ptr(cv_last_error()) }.to_str()?;
assert_eq!(
    message,
    "invalid configuration: unknown preset 'loud': \
     choose one of voice-chat, max-quality, low-cpu, bypass"
);
# Ok::<(), Box<dyn std::error::Error>>(())
```
"#
)]
#[allow(non_camel_case_types)]
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CvStatus {
    /// Success.
    CV_OK = 0,
    /// A pointer was NULL, a length did not fit, or a value is out of range.
    CV_ERR_INVALID_ARGUMENT = -1,
    /// The configuration (preset name, TOML/JSON text, rate, channels) was refused.
    CV_ERR_CONFIG = -2,
    /// The output buffer is smaller than the call needs.
    CV_ERR_OUTPUT_TOO_SMALL = -3,
    /// An audio device could not be used.
    CV_ERR_DEVICE = -4,
    /// The call does not fit the handle's state (starting a running engine, ...).
    CV_ERR_STATE = -5,
    /// Processing failed.
    CV_ERR_PROCESSING = -6,
    /// A bug: a panic was caught at the boundary.
    CV_ERR_PANIC = -7,
    /// The function is not in this build (the `device` feature is off).
    CV_ERR_UNSUPPORTED = -8,
}

thread_local! {
    static LAST_ERROR: RefCell<CString> = RefCell::new(CString::default());
}

fn set_error(message: impl Into<String>) {
    let text = message.into().replace('\0', " ");
    LAST_ERROR.with(|e| *e.borrow_mut() = CString::new(text).unwrap_or_default());
}

struct Failure(CvStatus, String);

type CvResult<T = ()> = Result<T, Failure>;

/// An engine error as a status: starting a running engine or stopping a stopped one is
/// a state error, anything else a device error.
#[cfg(feature = "device")]
fn engine_failure(err: crate::engine::EngineError) -> Failure {
    use crate::engine::EngineError;
    let status = match err {
        EngineError::AlreadyRunning | EngineError::NotRunning => CvStatus::CV_ERR_STATE,
        _ => CvStatus::CV_ERR_DEVICE,
    };
    Failure(status, err.to_string())
}

/// What every engine entry point returns in a build without the `device` feature.
#[cfg(not(feature = "device"))]
fn without_device<T>() -> CvResult<T> {
    Err(Failure(
        CvStatus::CV_ERR_UNSUPPORTED,
        "built without the device feature".into(),
    ))
}

fn invalid(what: &str) -> Failure {
    Failure(CvStatus::CV_ERR_INVALID_ARGUMENT, what.to_string())
}

fn config_error(e: impl std::fmt::Display) -> Failure {
    Failure(CvStatus::CV_ERR_CONFIG, e.to_string())
}

/// Runs an entry point: its error becomes a status and the thread's last error; a
/// panic becomes `CV_ERR_PANIC`.
fn entry(f: impl FnOnce() -> CvResult) -> CvStatus {
    match catch_unwind(AssertUnwindSafe(f)) {
        Ok(Ok(())) => {
            set_error("");
            CvStatus::CV_OK
        }
        Ok(Err(Failure(status, message))) => {
            set_error(message);
            status
        }
        Err(payload) => {
            let what = payload
                .downcast_ref::<&str>()
                .map(|s| s.to_string())
                .or_else(|| payload.downcast_ref::<String>().cloned())
                .unwrap_or_else(|| "unknown panic".into());
            set_error(format!("internal error: {what}"));
            CvStatus::CV_ERR_PANIC
        }
    }
}

/// A C string argument as `&str`.
///
/// # Safety
/// `p` is NULL or a NUL-terminated string that stays valid during the call.
unsafe fn text<'a>(p: *const c_char, what: &str) -> CvResult<&'a str> {
    if p.is_null() {
        return Err(invalid(&format!("{what} is NULL")));
    }
    // SAFETY: non-null, NUL-terminated and valid for the call, as the caller promises.
    unsafe { CStr::from_ptr(p) }
        .to_str()
        .map_err(|_| invalid(&format!("{what} is not UTF-8")))
}

/// A slice from a pointer and a length, checking both.
///
/// # Safety
/// `p` points to `len` valid elements, or `len` is 0.
unsafe fn slice<'a, T>(p: *const T, len: usize, what: &str) -> CvResult<&'a [T]> {
    if len == 0 {
        return Ok(&[]);
    }
    if p.is_null() {
        return Err(invalid(&format!("{what} is NULL")));
    }
    if len > isize::MAX as usize / std::mem::size_of::<T>().max(1) {
        return Err(invalid(&format!("{what}: length {len} is impossible")));
    }
    // SAFETY: non-null, `len` elements, as the caller promises.
    Ok(unsafe { std::slice::from_raw_parts(p, len) })
}

/// # Safety
/// As [`slice`], writable and not aliased.
unsafe fn slice_mut<'a, T>(p: *mut T, len: usize, what: &str) -> CvResult<&'a mut [T]> {
    if len == 0 {
        return Ok(&mut []);
    }
    if p.is_null() {
        return Err(invalid(&format!("{what} is NULL")));
    }
    if len > isize::MAX as usize / std::mem::size_of::<T>().max(1) {
        return Err(invalid(&format!("{what}: length {len} is impossible")));
    }
    // SAFETY: non-null, `len` writable elements not aliased, as the caller promises.
    Ok(unsafe { std::slice::from_raw_parts_mut(p, len) })
}

/// # Safety
/// `p` is NULL or a handle from the matching `*_new`, not used elsewhere during the call.
unsafe fn handle<'a, T>(p: *mut T, what: &str) -> CvResult<&'a mut T> {
    // SAFETY: a live handle, used by one thread at a time, as the caller promises.
    unsafe { p.as_mut() }.ok_or_else(|| invalid(&format!("{what} is NULL")))
}

/// Writes through an out-pointer.
///
/// # Safety
/// `p` is NULL or valid for a write of `T`.
unsafe fn put<T>(p: *mut T, value: T, what: &str) -> CvResult {
    if p.is_null() {
        return Err(invalid(&format!("{what} is NULL")));
    }
    // SAFETY: valid for writes, as the caller promises.
    unsafe { p.write(value) };
    Ok(())
}

/// A configuration from a preset name, or TOML/JSON text (a `{` first means JSON).
fn parse_config(s: &str) -> CvResult<Config> {
    let t = s.trim();
    if t.starts_with('{') {
        Config::from_json_str(t).map_err(config_error)
    } else if t.contains('=') || t.contains('[') || t.is_empty() {
        Config::from_toml_str(t).map_err(config_error)
    } else {
        t.parse::<Preset>()
            .map(Preset::config)
            .map_err(config_error)
    }
}

/// The version of the C ABI this library implements ([`CV_ABI_VERSION`]).
#[no_mangle]
pub extern "C" fn cv_abi_version() -> u32 {
    CV_ABI_VERSION
}

/// The message of the latest failure on this thread ("" after a success). The pointer
/// stays valid until the next clearvox call on this thread.
#[no_mangle]
pub extern "C" fn cv_last_error() -> *const c_char {
    LAST_ERROR.with(|e| e.borrow().as_ptr())
}

/// A speech-state change: `kind` 1 = speech started, 2 = speech ended; `position` in
/// samples of the output stream.
#[cfg_attr(
    any(doc, doctest),
    doc = r#"
# Examples

Half a second of silence, then a loud tone, through the `low-cpu` preset (whose
energy detector calls anything well above the noise floor voice):

```
use clearvox::capi::*;

let mut input = vec![0.0f32; 8_000];
input.extend((0..8_000).map(|n| 0.3 * (n as f32 * 0.1).sin()));

let mut p: *mut CvPipeline = std::ptr::null_mut();
// SAFETY: a NUL-terminated configuration; `p` is valid for a write.
let status = unsafe { cv_pipeline_new(c"low-cpu".as_ptr(), 16_000, 1, &mut p) };
assert_eq!(status, CvStatus::CV_OK);

// SAFETY: `p` is a live pipeline.
let mut output = vec![0.0f32; unsafe { cv_pipeline_output_frames_max(p, input.len()) }];
let mut written = 0;
// SAFETY: `input` holds that many mono frames, `output` its length in floats.
let status = unsafe {
    cv_pipeline_process_f32(
        p,
        input.as_ptr(),
        input.len(),
        output.as_mut_ptr(),
        output.len(),
        &mut written,
    )
};
assert_eq!(status, CvStatus::CV_OK);

let mut event = CvVadEvent::default();
let mut has_event = 0;
// SAFETY: `p` is live; both out-pointers are valid for writes.
let status = unsafe { cv_pipeline_next_event(p, &mut event, &mut has_event) };
assert_eq!((status, has_event), (CvStatus::CV_OK, 1));
assert_eq!(event.kind, 1); // speech started
assert!(event.position < 8_000 + 1_000);

// SAFETY: `p` came from `cv_pipeline_new` and is not used afterwards.
unsafe { cv_pipeline_free(p) };
```
"#
)]
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct CvVadEvent {
    /// 1 speech started, 2 speech ended.
    pub kind: u32,
    /// Sample position in the output stream.
    pub position: u64,
}

impl From<VadEvent> for CvVadEvent {
    fn from(e: VadEvent) -> Self {
        Self {
            kind: match e.kind {
                VadEventKind::SpeechStart => 1,
                VadEventKind::SpeechEnd => 2,
            },
            position: e.position,
        }
    }
}

/// An enhancement pipeline (opaque).
#[cfg_attr(
    any(doc, doctest),
    doc = r#"
# Examples

The C ABI called from Rust, as C calls it:

```
use clearvox::capi::{
    cv_pipeline_free, cv_pipeline_new, cv_pipeline_output_frames_max, cv_pipeline_process_f32,
    CvPipeline, CvStatus,
};

let mut p: *mut CvPipeline = std::ptr::null_mut();
// SAFETY: the configuration is a NUL-terminated string; `p` is valid for a write.
let status = unsafe { cv_pipeline_new(c"voice-chat".as_ptr(), 48_000, 2, &mut p) };
assert_eq!(status, CvStatus::CV_OK);

let input = [0.0f32; 2 * 480]; // 10 ms of interleaved stereo
// SAFETY: `p` is a live pipeline.
let mut output = vec![0.0f32; unsafe { cv_pipeline_output_frames_max(p, 480) }];
let mut written = 0;
// SAFETY: `input` holds 480 frames of 2 channels, `output` holds `output.len()` floats,
// `written` is valid for a write, and no other thread uses `p`.
let status = unsafe {
    cv_pipeline_process_f32(p, input.as_ptr(), 480, output.as_mut_ptr(), output.len(), &mut written)
};
assert_eq!(status, CvStatus::CV_OK);
let enhanced = &output[..written]; // mono samples at the output rate

// SAFETY: `p` came from `cv_pipeline_new` and is not used afterwards.
unsafe { cv_pipeline_free(p) };
```
"#
)]
#[derive(Debug)]
pub struct CvPipeline {
    inner: HotSwap,
}

/// Creates a pipeline. `config` is a preset name (`voice-chat`, `max-quality`,
/// `low-cpu`, `bypass`), TOML or JSON text (a preset plus overrides), or NULL for the
/// default. The input is `channels`-channel audio at `input_rate` Hz.
///
/// # Safety
/// `config` is NULL or a NUL-terminated string; `out` is valid for a write.
#[no_mangle]
pub unsafe extern "C" fn cv_pipeline_new(
    config: *const c_char,
    input_rate: u32,
    channels: u32,
    out: *mut *mut CvPipeline,
) -> CvStatus {
    entry(|| {
        if out.is_null() {
            return Err(invalid("out is NULL"));
        }
        let cfg = if config.is_null() {
            Config::default()
        } else {
            // SAFETY: NUL-terminated, as documented.
            parse_config(unsafe { text(config, "config") }?)?
        };
        let inner = HotSwap::new(&cfg, input_rate, channels as usize).map_err(config_error)?;
        let h = Box::into_raw(Box::new(CvPipeline { inner }));
        // SAFETY: checked non-null above; valid for a write as documented.
        unsafe { put(out, h, "out") }
    })
}

/// Frees a pipeline (NULL is allowed).
///
/// # Safety
/// `p` is NULL or a pipeline from `cv_pipeline_new`, not used afterwards.
#[no_mangle]
pub unsafe extern "C" fn cv_pipeline_free(p: *mut CvPipeline) {
    if !p.is_null() {
        // SAFETY: a handle from `Box::into_raw`, freed once, as documented.
        let _ = catch_unwind(AssertUnwindSafe(|| drop(unsafe { Box::from_raw(p) })));
    }
}

/// The maximum possible number of output samples (mono) of a call with `input_frames`
/// frames, in any state: the capacity [`cv_pipeline_process_f32`] and
/// [`cv_pipeline_process_i16`] ask for, so one buffer of this size serves every call of
/// up to `input_frames` frames. 0 for a NULL pipeline.
///
/// # Safety
/// `p` is a live pipeline.
#[no_mangle]
pub unsafe extern "C" fn cv_pipeline_output_frames_max(
    p: *const CvPipeline,
    input_frames: usize,
) -> usize {
    // SAFETY: a live handle, as documented.
    match unsafe { p.as_ref() } {
        Some(p) => p.inner.output_frames_max(input_frames),
        None => 0,
    }
}

/// The pipeline's latency in output samples, and its output rate in Hz.
///
/// # Safety
/// `p` is a live pipeline; the out-pointers are valid for writes (either may be NULL).
#[no_mangle]
pub unsafe extern "C" fn cv_pipeline_info(
    p: *const CvPipeline,
    latency: *mut u32,
    output_rate: *mut u32,
) -> CvStatus {
    entry(|| {
        // SAFETY: a live handle, as documented.
        let p = unsafe { p.as_ref() }.ok_or_else(|| invalid("pipeline is NULL"))?;
        if !latency.is_null() {
            // SAFETY: non-null and valid for a write, as documented.
            unsafe { latency.write(p.inner.latency() as u32) };
        }
        if !output_rate.is_null() {
            // SAFETY: as above.
            unsafe { output_rate.write(p.inner.pipeline().output_rate()) };
        }
        Ok(())
    })
}

/// Processes `frames` interleaved `f32` frames into `output` (capacity in samples); the
/// number of mono samples written goes to `written`. Does not allocate.
///
/// # Safety
/// `input` holds `frames × channels` floats; `output` holds `capacity` floats;
/// `written` is valid for a write.
#[no_mangle]
pub unsafe extern "C" fn cv_pipeline_process_f32(
    p: *mut CvPipeline,
    input: *const f32,
    frames: usize,
    output: *mut f32,
    capacity: usize,
    written: *mut usize,
) -> CvStatus {
    // SAFETY: forwarded with the same contract.
    entry(|| unsafe { process(p, input, frames, output, capacity, written) })
}

/// As [`cv_pipeline_process_f32`], for `int16_t` input.
///
/// # Safety
/// As [`cv_pipeline_process_f32`].
#[no_mangle]
pub unsafe extern "C" fn cv_pipeline_process_i16(
    p: *mut CvPipeline,
    input: *const i16,
    frames: usize,
    output: *mut f32,
    capacity: usize,
    written: *mut usize,
) -> CvStatus {
    // SAFETY: forwarded with the same contract.
    entry(|| unsafe { process(p, input, frames, output, capacity, written) })
}

/// # Safety
/// As [`cv_pipeline_process_f32`].
unsafe fn process<S: crate::dsp::convert::PcmSample>(
    p: *mut CvPipeline,
    input: *const S,
    frames: usize,
    output: *mut f32,
    capacity: usize,
    written: *mut usize,
) -> CvResult {
    // SAFETY (all four): the caller's contract.
    let p = unsafe { handle(p, "pipeline") }?;
    let channels = p.inner.pipeline().channels();
    let len = frames
        .checked_mul(channels)
        .ok_or_else(|| invalid("frames × channels overflows"))?;
    let input = unsafe { slice(input, len, "input") }?;
    let output = unsafe { slice_mut(output, capacity, "output") }?;
    if written.is_null() {
        return Err(invalid("written is NULL"));
    }
    let n = p
        .inner
        .process_into_buffer(input, output)
        .map_err(|e| match e {
            crate::Error::OutputTooSmall { .. } => {
                Failure(CvStatus::CV_ERR_OUTPUT_TOO_SMALL, e.to_string())
            }
            other => Failure(CvStatus::CV_ERR_PROCESSING, other.to_string()),
        })?;
    unsafe { put(written, n, "written") }
}

/// Drains the tail of the stream into `output`. The stream then ends: call
/// [`cv_pipeline_reset`] before processing more.
///
/// # Safety
/// As [`cv_pipeline_process_f32`].
#[no_mangle]
pub unsafe extern "C" fn cv_pipeline_flush(
    p: *mut CvPipeline,
    output: *mut f32,
    capacity: usize,
    written: *mut usize,
) -> CvStatus {
    entry(|| {
        // SAFETY: the caller's contract.
        let p = unsafe { handle(p, "pipeline") }?;
        let output = unsafe { slice_mut(output, capacity, "output") }?;
        let mut tail = Vec::new();
        p.inner
            .flush(&mut tail)
            .map_err(|e| Failure(CvStatus::CV_ERR_PROCESSING, e.to_string()))?;
        if tail.len() > output.len() {
            return Err(Failure(
                CvStatus::CV_ERR_OUTPUT_TOO_SMALL,
                format!(
                    "the tail holds {} samples; the buffer {}",
                    tail.len(),
                    output.len()
                ),
            ));
        }
        output[..tail.len()].copy_from_slice(&tail);
        unsafe { put(written, tail.len(), "written") }
    })
}

/// Takes the oldest pending VAD event: `has_event` is set to 1 and `event` filled, or
/// `has_event` to 0.
///
/// # Safety
/// `p` is a live pipeline; the out-pointers are valid for writes.
#[no_mangle]
pub unsafe extern "C" fn cv_pipeline_next_event(
    p: *mut CvPipeline,
    event: *mut CvVadEvent,
    has_event: *mut u32,
) -> CvStatus {
    entry(|| {
        // SAFETY: the caller's contract.
        let p = unsafe { handle(p, "pipeline") }?;
        if event.is_null() || has_event.is_null() {
            return Err(invalid("event or has_event is NULL"));
        }
        match p.inner.pop_event() {
            Some(e) => unsafe {
                put(event, e.into(), "event")?;
                put(has_event, 1, "has_event")
            },
            None => unsafe { put(has_event, 0, "has_event") },
        }
    })
}

/// Sets the wet/dry mix (0 dry … 1 enhanced), with a 10 ms cross-fade.
///
/// # Safety
/// `p` is a live pipeline.
#[no_mangle]
pub unsafe extern "C" fn cv_pipeline_set_strength(p: *mut CvPipeline, strength: f32) -> CvStatus {
    entry(|| {
        // SAFETY: the caller's contract.
        let p = unsafe { handle(p, "pipeline") }?;
        p.inner
            .set_strength(strength)
            .map_err(|e| invalid(&e.to_string()))
    })
}

/// Switches bypass on (non-zero) or off, with a 10 ms cross-fade; the latency stays.
///
/// # Safety
/// `p` is a live pipeline.
#[no_mangle]
pub unsafe extern "C" fn cv_pipeline_set_bypass(p: *mut CvPipeline, bypass: u32) -> CvStatus {
    entry(|| {
        // SAFETY: the caller's contract.
        let p = unsafe { handle(p, "pipeline") }?;
        p.inner.set_bypass(bypass != 0);
        Ok(())
    })
}

/// Changes the configuration while running (a preset name, TOML or JSON), with a 10 ms
/// cross-fade from the old to the new; input rate, channels and output rate stay. This
/// allocates: call it from a control thread, not an audio callback.
///
/// # Safety
/// `p` is a live pipeline; `config` a NUL-terminated string.
#[no_mangle]
pub unsafe extern "C" fn cv_pipeline_set_config(
    p: *mut CvPipeline,
    config: *const c_char,
) -> CvStatus {
    entry(|| {
        // SAFETY: the caller's contract.
        let p = unsafe { handle(p, "pipeline") }?;
        let cfg = parse_config(unsafe { text(config, "config") }?)?;
        p.inner.set_config(&cfg).map_err(config_error)
    })
}

/// Returns the pipeline to its freshly built state.
///
/// # Safety
/// `p` is a live pipeline.
#[no_mangle]
pub unsafe extern "C" fn cv_pipeline_reset(p: *mut CvPipeline) -> CvStatus {
    entry(|| {
        // SAFETY: the caller's contract.
        unsafe { handle(p, "pipeline") }?.inner.reset();
        Ok(())
    })
}

/// A frame handed to an engine callback: mono samples and the VAD events that came with
/// them (pointers valid during the call only).
#[cfg_attr(
    any(doc, doctest),
    doc = r#"
# Examples

Polling frames into buffers of your own (this needs an audio device):

```no_run
use clearvox::capi::*;
use std::ptr;

let mut e: *mut CvEngine = ptr::null_mut();
// SAFETY: a NULL configuration and NULL options take the defaults; `e` is valid for a write.
assert_eq!(unsafe { cv_engine_new(ptr::null(), ptr::null(), &mut e) }, CvStatus::CV_OK);
// SAFETY: `e` is a live engine.
unsafe {
    cv_engine_enable_polling(e, 64);
    cv_engine_start(e);
}

let mut samples = [0.0f32; 1_920]; // 10 ms at up to 192 kHz
let mut events = [CvVadEvent::default(); 16];
let mut frame = CvFrame {
    samples: ptr::null(),
    len: 0,
    rate: 0,
    position: 0,
    events: ptr::null(),
    n_events: 0,
};
let mut has_frame = 0;
// SAFETY: the buffers are valid for the capacities given, `frame` and `has_frame` for writes.
let status = unsafe {
    cv_engine_poll_frame(
        e, 100, samples.as_mut_ptr(), samples.len(), events.as_mut_ptr(), events.len(),
        &mut frame, &mut has_frame,
    )
};
if status == CvStatus::CV_OK && has_frame == 1 {
    let audio = &samples[..frame.len]; // `frame.samples` points at `samples`
    println!("{} samples at {} Hz from {}", audio.len(), frame.rate, frame.position);
}

// SAFETY: `e` came from `cv_engine_new` and is not used afterwards.
unsafe {
    cv_engine_stop(e);
    cv_engine_free(e);
}
```
"#
)]
#[repr(C)]
#[derive(Debug)]
pub struct CvFrame {
    /// Mono samples in ±1.0.
    pub samples: *const f32,
    /// Number of samples.
    pub len: usize,
    /// Sample rate, Hz.
    pub rate: u32,
    /// Position of the first sample in the output stream.
    pub position: u64,
    /// VAD events.
    pub events: *const CvVadEvent,
    /// Number of events.
    pub n_events: usize,
}

/// Called on the engine's processing thread with each 10 ms frame. It must return
/// quickly and must not call back into the engine.
#[cfg_attr(
    any(doc, doctest),
    doc = r#"
# Examples

A callback that adds up the audio it is given (this needs an audio device):

```no_run
use clearvox::capi::*;
use std::ffi::c_void;
use std::sync::atomic::{AtomicU64, Ordering};

unsafe extern "C" fn on_frame(user: *mut c_void, frame: *const CvFrame) {
    // SAFETY: `user` is the counter registered below, which outlives the engine;
    // `frame` is valid during the call.
    let (counter, frame) = unsafe { (&*(user as *const AtomicU64), &*frame) };
    counter.fetch_add(frame.len as u64, Ordering::Relaxed);
}

static SAMPLES: AtomicU64 = AtomicU64::new(0);
let mut e: *mut CvEngine = std::ptr::null_mut();
// SAFETY: defaults for the configuration and options; `e` is valid for a write. The
// callback and the counter stay valid for as long as the engine runs.
unsafe {
    cv_engine_new(std::ptr::null(), std::ptr::null(), &mut e);
    let user = &SAMPLES as *const AtomicU64 as *mut c_void;
    cv_engine_set_frame_callback(e, Some(on_frame), user);
    cv_engine_start(e);
    std::thread::sleep(std::time::Duration::from_secs(1));
    cv_engine_stop(e);
    cv_engine_free(e);
}
println!("{} samples", SAMPLES.load(Ordering::Relaxed));
```
"#
)]
pub type CvFrameCallback = Option<unsafe extern "C" fn(user: *mut c_void, frame: *const CvFrame)>;

/// What to open for a live engine. Every field may be zero/NULL for the default.
#[cfg_attr(
    any(doc, doctest),
    doc = r#"
# Examples

```no_run
use clearvox::capi::*;

let options = CvEngineOptions {
    input_device: c"USB".as_ptr(), // part of a name, or an index as text
    output_device: std::ptr::null(),
    input_rate: 16_000,
    input_channels: 1,
    input_format: 0,
    buffer_ms: 0.0,
    duration_s: 30.0,
    record_path: c"session.wav".as_ptr(),
};
let mut e: *mut CvEngine = std::ptr::null_mut();
// SAFETY: the strings are NUL-terminated and outlive the call; `e` is valid for a write.
let status = unsafe { cv_engine_new(c"low-cpu".as_ptr(), &options, &mut e) };
assert_eq!(status, CvStatus::CV_OK);
// SAFETY: `e` came from `cv_engine_new` and is not used afterwards.
unsafe { cv_engine_free(e) };
```
"#
)]
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct CvEngineOptions {
    /// Capture device: a name, part of one, or an index as text; NULL: the default.
    pub input_device: *const c_char,
    /// Monitor output device; NULL: no monitoring; "default": the default output.
    pub output_device: *const c_char,
    /// Capture rate, Hz; 0: the device's.
    pub input_rate: u32,
    /// Capture channels; 0: the device's.
    pub input_channels: u32,
    /// Capture sample format: 0 the device's, 1 int16, 2 int32, 3 float, 4 uint16.
    pub input_format: u32,
    /// Requested callback length, ms; 0: the device's.
    pub buffer_ms: f64,
    /// Stop processing after this much captured audio, s (the tail is flushed); 0: no
    /// limit.
    pub duration_s: f64,
    /// Record the enhanced signal to this WAV file; NULL: no recording.
    pub record_path: *const c_char,
}

/// Whether the engine has finished processing (its duration reached, or the device
/// failed): 1 or 0.
///
/// # Safety
/// `e` is a live engine.
#[no_mangle]
pub unsafe extern "C" fn cv_engine_is_finished(e: *const CvEngine) -> u32 {
    #[cfg(feature = "device")]
    {
        // SAFETY: the caller's contract.
        unsafe { e.as_ref() }.is_some_and(|e| e.engine.is_finished()) as u32
    }
    #[cfg(not(feature = "device"))]
    {
        let _ = e;
        0
    }
}

/// Statistics of a live engine.
#[cfg_attr(
    any(doc, doctest),
    doc = r#"
# Examples

```no_run
use clearvox::capi::*;

let mut e: *mut CvEngine = std::ptr::null_mut();
// SAFETY: defaults for the configuration and options; `e` is valid for a write.
unsafe { cv_engine_new(std::ptr::null(), std::ptr::null(), &mut e) };
// SAFETY: `e` is a live engine.
unsafe { cv_engine_start(e) };
std::thread::sleep(std::time::Duration::from_secs(1));

let mut stats = CvEngineStats::default();
// SAFETY: `e` is live and `stats` valid for a write.
if unsafe { cv_engine_stats(e, &mut stats) } == CvStatus::CV_OK {
    println!(
        "{} frames, p99 {} µs, {:.0} ms latency, {} overruns",
        stats.frames_processed, stats.frame_time_p99_us, stats.latency_ms, stats.overruns
    );
}
// SAFETY: `e` came from `cv_engine_new` and is not used afterwards.
unsafe { cv_engine_free(e) };
```
"#
)]
#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub struct CvEngineStats {
    /// Enhanced 10 ms frames produced.
    pub frames_processed: u64,
    /// Input callbacks that found the capture ring full.
    pub overruns: u64,
    /// Monitor callbacks that played silence for want of audio while the signal went on
    /// (the silence after its end, until stop, is not counted).
    pub underruns: u64,
    /// Frames dropped because the polling queue was full.
    pub frames_dropped: u64,
    /// Processing time per frame: median, µs.
    pub frame_time_p50_us: u64,
    /// 99th percentile, µs.
    pub frame_time_p99_us: u64,
    /// Maximum, µs.
    pub frame_time_max_us: u64,
    /// Estimated end-to-end latency, ms.
    pub latency_ms: f64,
    /// Whether capture is running.
    pub running: u32,
}

/// A live engine (opaque).
#[cfg_attr(
    any(doc, doctest),
    doc = r#"
# Examples

Ten seconds from the default microphone, recorded, with the status checked at every
step (this needs an audio device):

```no_run
use clearvox::capi::*;
use std::ffi::CStr;

fn check(status: CvStatus) -> Result<(), String> {
    if status == CvStatus::CV_OK {
        return Ok(());
    }
    // SAFETY: a NUL-terminated string, valid until the next clearvox call on this thread.
    Err(unsafe { CStr::from_ptr(cv_last_error()) }.to_string_lossy().into_owned())
}

let options = CvEngineOptions {
    input_device: std::ptr::null(),
    output_device: std::ptr::null(),
    input_rate: 0,
    input_channels: 0,
    input_format: 0,
    buffer_ms: 0.0,
    duration_s: 10.0,
    record_path: c"take.wav".as_ptr(),
};
let mut e: *mut CvEngine = std::ptr::null_mut();
// SAFETY: every pointer is valid for the call; `e` is used by this thread only and freed
// once at the end.
unsafe {
    check(cv_engine_new(c"voice-chat".as_ptr(), &options, &mut e))?;
    check(cv_engine_start(e))?;
    while cv_engine_is_finished(e) == 0 {
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    check(cv_engine_stop(e))?;
    cv_engine_free(e);
}
# Ok::<(), String>(())
```
"#
)]
#[derive(Debug)]
pub struct CvEngine {
    #[cfg(feature = "device")]
    engine: Engine,
    #[cfg(feature = "device")]
    polling: Option<crate::pipeline::FrameReceiver>,
}

/// Creates a live engine (opens nothing yet). `config` as for [`cv_pipeline_new`];
/// `options` may be NULL for the default devices.
///
/// # Safety
/// `config` is NULL or a NUL-terminated string; `options` NULL or valid; `out` valid for
/// a write.
#[no_mangle]
pub unsafe extern "C" fn cv_engine_new(
    config: *const c_char,
    options: *const CvEngineOptions,
    out: *mut *mut CvEngine,
) -> CvStatus {
    entry(|| {
        #[cfg(not(feature = "device"))]
        {
            let _ = (config, options, out);
            without_device()
        }
        #[cfg(feature = "device")]
        {
            if out.is_null() {
                return Err(invalid("out is NULL"));
            }
            let pipeline = if config.is_null() {
                Config::default()
            } else {
                // SAFETY: the caller's contract.
                parse_config(unsafe { text(config, "config") }?)?
            };
            let mut cfg = EngineConfig {
                pipeline,
                ..EngineConfig::default()
            };
            // SAFETY: NULL or valid, as documented.
            if let Some(o) = unsafe { options.as_ref() } {
                let opt_text = |p: *const c_char, what: &str| -> CvResult<Option<String>> {
                    if p.is_null() {
                        Ok(None)
                    } else {
                        // SAFETY: NUL-terminated, as documented.
                        Ok(Some(unsafe { text(p, what) }?.to_string()))
                    }
                };
                if let Some(s) = opt_text(o.input_device, "input_device")? {
                    cfg.input = s.parse().unwrap_or_default();
                }
                if let Some(s) = opt_text(o.output_device, "output_device")? {
                    cfg.output = Some(s.parse().unwrap_or_default());
                }
                cfg.input_rate = (o.input_rate > 0).then_some(o.input_rate);
                cfg.input_channels = (o.input_channels > 0).then_some(o.input_channels as u16);
                cfg.input_format = match o.input_format {
                    0 => None,
                    1 => Some(crate::engine::DeviceFormat::I16),
                    2 => Some(crate::engine::DeviceFormat::I32),
                    3 => Some(crate::engine::DeviceFormat::F32),
                    4 => Some(crate::engine::DeviceFormat::U16),
                    other => return Err(invalid(&format!("input_format {other}: use 0 to 4"))),
                };
                cfg.buffer_ms = (o.buffer_ms > 0.0).then_some(o.buffer_ms);
                if !(o.duration_s >= 0.0 && o.duration_s.is_finite()) {
                    return Err(invalid("duration_s must be 0 or a positive number"));
                }
                cfg.duration = (o.duration_s > 0.0).then(|| Duration::from_secs_f64(o.duration_s));
                cfg.record = opt_text(o.record_path, "record_path")?.map(Into::into);
            }
            let engine = Engine::new(cfg).map_err(config_error)?;
            let h = Box::into_raw(Box::new(CvEngine {
                engine,
                polling: None,
            }));
            // SAFETY: checked non-null above.
            unsafe { put(out, h, "out") }
        }
    })
}

/// Frees an engine, stopping it first if it runs (NULL is allowed).
///
/// # Safety
/// `e` is NULL or an engine from `cv_engine_new`, not used afterwards.
#[no_mangle]
pub unsafe extern "C" fn cv_engine_free(e: *mut CvEngine) {
    if !e.is_null() {
        // SAFETY: a handle from `Box::into_raw`, freed once, as documented.
        let _ = catch_unwind(AssertUnwindSafe(|| drop(unsafe { Box::from_raw(e) })));
    }
}

#[cfg(feature = "device")]
struct CallbackSink {
    callback: unsafe extern "C" fn(*mut c_void, *const CvFrame),
    user: *mut c_void,
    events: Vec<CvVadEvent>,
}

// SAFETY: the caller of `cv_engine_set_frame_callback` promises that `user` may be used
// from the engine's processing thread.
#[cfg(feature = "device")]
unsafe impl Send for CallbackSink {}

#[cfg(feature = "device")]
impl crate::pipeline::FrameSink for CallbackSink {
    fn frame(&mut self, frame: &EnhancedFrame<'_>) {
        self.events.clear();
        self.events
            .extend(frame.events.iter().map(|e| CvVadEvent::from(*e)));
        let f = CvFrame {
            samples: frame.samples.as_ptr(),
            len: frame.samples.len(),
            rate: frame.rate,
            position: frame.position,
            events: self.events.as_ptr(),
            n_events: self.events.len(),
        };
        // A panic must not unwind into C; the callback is C code and does not panic.
        // SAFETY: the callback and `user` as registered; `f` lives during the call.
        unsafe { (self.callback)(self.user, &f) };
    }
}

/// Hands every enhanced frame to `callback` (on the engine's processing thread) from the
/// next start on. `user` is passed back unchanged and must be usable from that thread.
///
/// # Safety
/// `e` is a live engine; `callback` a valid function; `user` valid as long as the
/// engine may call it.
#[no_mangle]
pub unsafe extern "C" fn cv_engine_set_frame_callback(
    e: *mut CvEngine,
    callback: CvFrameCallback,
    user: *mut c_void,
) -> CvStatus {
    entry(|| {
        #[cfg(not(feature = "device"))]
        {
            let _ = (e, callback, user);
            without_device()
        }
        #[cfg(feature = "device")]
        {
            // SAFETY: the caller's contract.
            let e = unsafe { handle(e, "engine") }?;
            let callback = callback.ok_or_else(|| invalid("callback is NULL"))?;
            e.engine.set_frame_sink(Box::new(CallbackSink {
                callback,
                user,
                events: Vec::with_capacity(64),
            }));
            e.polling = None;
            Ok(())
        }
    })
}

/// Queues frames for [`cv_engine_poll_frame`] instead (pull style, for Dart FFI and the
/// like); a consumer more than `capacity` frames behind loses frames (counted).
///
/// # Safety
/// `e` is a live engine.
#[no_mangle]
pub unsafe extern "C" fn cv_engine_enable_polling(e: *mut CvEngine, capacity: usize) -> CvStatus {
    entry(|| {
        #[cfg(not(feature = "device"))]
        {
            let _ = (e, capacity);
            without_device()
        }
        #[cfg(feature = "device")]
        {
            // SAFETY: the caller's contract.
            let e = unsafe { handle(e, "engine") }?;
            if capacity == 0 {
                return Err(invalid("capacity is 0"));
            }
            e.polling = Some(e.engine.frame_channel(capacity));
            Ok(())
        }
    })
}

/// Takes the next queued frame, waiting up to `timeout_ms`: its samples go to `samples`
/// (capacity `capacity`), its events to `events` (capacity `events_capacity`), and `info`
/// gets the counts, rate and position (`info.samples` and `info.events` are set to the
/// given buffers). `has_frame` is 1 if a frame was taken, else 0.
///
/// # Safety
/// `e` is a live engine with polling enabled; buffers valid for the given capacities;
/// `info` and `has_frame` valid for writes.
#[no_mangle]
pub unsafe extern "C" fn cv_engine_poll_frame(
    e: *mut CvEngine,
    timeout_ms: u32,
    samples: *mut f32,
    capacity: usize,
    events: *mut CvVadEvent,
    events_capacity: usize,
    info: *mut CvFrame,
    has_frame: *mut u32,
) -> CvStatus {
    entry(|| {
        #[cfg(not(feature = "device"))]
        {
            let _ = (
                e,
                timeout_ms,
                samples,
                capacity,
                events,
                events_capacity,
                info,
                has_frame,
            );
            without_device()
        }
        #[cfg(feature = "device")]
        {
            // SAFETY (all): the caller's contract.
            let e = unsafe { handle(e, "engine") }?;
            let out = unsafe { slice_mut(samples, capacity, "samples") }?;
            let ev_out = unsafe { slice_mut(events, events_capacity, "events") }?;
            if info.is_null() || has_frame.is_null() {
                return Err(invalid("info or has_frame is NULL"));
            }
            let rx = e
                .polling
                .as_ref()
                .ok_or_else(|| Failure(CvStatus::CV_ERR_STATE, "polling is not enabled".into()))?;
            let Some(frame) = rx.recv_timeout(Duration::from_millis(timeout_ms as u64)) else {
                return unsafe { put(has_frame, 0, "has_frame") };
            };
            if frame.samples.len() > out.len() || frame.events.len() > ev_out.len() {
                return Err(Failure(
                    CvStatus::CV_ERR_OUTPUT_TOO_SMALL,
                    format!(
                        "the frame has {} samples and {} events; the buffers hold {} and {}",
                        frame.samples.len(),
                        frame.events.len(),
                        out.len(),
                        ev_out.len()
                    ),
                ));
            }
            out[..frame.samples.len()].copy_from_slice(&frame.samples);
            for (o, ev) in ev_out.iter_mut().zip(&frame.events) {
                *o = (*ev).into();
            }
            unsafe {
                put(
                    info,
                    CvFrame {
                        samples,
                        len: frame.samples.len(),
                        rate: frame.rate,
                        position: frame.position,
                        events,
                        n_events: frame.events.len(),
                    },
                    "info",
                )?;
                put(has_frame, 1, "has_frame")
            }
        }
    })
}

/// Opens the devices and starts capture. Nothing is captured before this call.
///
/// # Safety
/// `e` is a live engine.
#[no_mangle]
pub unsafe extern "C" fn cv_engine_start(e: *mut CvEngine) -> CvStatus {
    entry(|| {
        #[cfg(not(feature = "device"))]
        {
            let _ = e;
            without_device()
        }
        #[cfg(feature = "device")]
        {
            // SAFETY: the caller's contract.
            let e = unsafe { handle(e, "engine") }?;
            e.engine.start().map_err(engine_failure)
        }
    })
}

/// Stops capture, flushes the pipeline's tail to the frames and the recording, and
/// releases the devices.
///
/// # Safety
/// `e` is a live engine.
#[no_mangle]
pub unsafe extern "C" fn cv_engine_stop(e: *mut CvEngine) -> CvStatus {
    entry(|| {
        #[cfg(not(feature = "device"))]
        {
            let _ = e;
            without_device()
        }
        #[cfg(feature = "device")]
        {
            // SAFETY: the caller's contract.
            let e = unsafe { handle(e, "engine") }?;
            e.engine.stop().map(|_| ()).map_err(engine_failure)
        }
    })
}

/// The engine's statistics (of the running or the last session).
///
/// # Safety
/// `e` is a live engine; `stats` valid for a write.
#[no_mangle]
pub unsafe extern "C" fn cv_engine_stats(
    e: *const CvEngine,
    stats: *mut CvEngineStats,
) -> CvStatus {
    entry(|| {
        #[cfg(not(feature = "device"))]
        {
            let _ = (e, stats);
            without_device()
        }
        #[cfg(feature = "device")]
        {
            // SAFETY: the caller's contract.
            let e = unsafe { e.as_ref() }.ok_or_else(|| invalid("engine is NULL"))?;
            let s = e.engine.stats();
            let dropped = e.polling.as_ref().map_or(0, |r| r.dropped());
            unsafe {
                put(
                    stats,
                    CvEngineStats {
                        frames_processed: s.frames_processed,
                        overruns: s.overruns,
                        underruns: s.underruns,
                        frames_dropped: dropped,
                        frame_time_p50_us: s.frame_time_p50_us,
                        frame_time_p99_us: s.frame_time_p99_us,
                        frame_time_max_us: s.frame_time_max_us,
                        latency_ms: s.latency_ms,
                        running: e.engine.is_running() as u32,
                    },
                    "stats",
                )
            }
        }
    })
}
