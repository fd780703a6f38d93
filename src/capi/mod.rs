//! The C ABI: opaque handles over [`HotSwap`](crate::pipeline::HotSwap) (the pipeline,
//! [`cv_pipeline_new`]) and [`Engine`](crate::engine::Engine) (the live engine,
//! [`cv_engine_new`]), for apps whose native layer is C, Swift, Kotlin/JNI or Dart FFI.
//!
//! Conventions, the same for every function:
//! - Functions return a [`CvStatus`]: `CV_OK` (0) or a negative code; the message of the
//!   latest failure on the calling thread is [`cv_last_error`].
//! - Handles are created by `*_new` functions and freed by the matching `*_free`
//!   (freeing NULL is allowed), when no other call on them is under way.
//! - Threads: each function's documentation says which calls may run beside which.
//!   A pipeline has stream calls (processing, render input, flush, events, reset),
//!   made by one thread at a time, and control calls (configuration, strength, bypass,
//!   queries), made from any thread at any time; an engine is used by one thread at a
//!   time. A call that would break the rule is refused with `CV_ERR_STATE` where the
//!   library can see it.
//! - Real-time: the pipeline's processing, render, event and query calls take no lock
//!   and, after their first call on a thread, do not allocate (DeepFilterNet3's network
//!   excepted); the others may do both and belong on a control thread.
//! - Null pointers and lengths that do not fit are rejected with `CV_ERR_INVALID_ARGUMENT`,
//!   never dereferenced; no panic crosses the boundary (each entry point catches them and
//!   returns `CV_ERR_PANIC`).
//! - Audio is interleaved, `f32` in ±1.0 or `int16_t`, any number of frames per call;
//!   output is mono at the pipeline's output rate.
//!
//! The header `include/clearvox.h` is generated from this module by cbindgen: this file
//! (the status codes, the version, the last error), then `pipeline.rs` (the handle and
//! its control calls), `stream.rs` (its stream calls) and `engine.rs`, in that order;
//! `mailbox.rs` carries configuration changes from control calls to stream calls. This file also holds what every entry point shares: the guard that
//! turns errors and panics into a status, and the checks of pointers and lengths.
//!
//! Every type's documentation has an example of its use from Rust.

// Those examples sit in `#[cfg_attr(any(doc, doctest), doc = ...)]` attributes:
// rustdoc shows and tests them, while cbindgen copies only plain doc comments into
// `include/clearvox.h`, which so keeps no Rust code.

mod mailbox;
mod pipeline;
mod stream;
// Not behind the `device` feature: without it, every engine function is still in the
// library and the header, and answers `CV_ERR_UNSUPPORTED`.
mod engine;

pub use engine::*;
pub use pipeline::*;
pub use stream::*;

use std::cell::RefCell;
use std::ffi::{c_char, CStr};
use std::panic::{catch_unwind, AssertUnwindSafe};

use crate::config::{Config, Preset};

/// The version of this C ABI; it changes when a function's name or signature, a struct,
/// or what a call does in a way a caller can see, does (3: the threading rules, flush
/// keeping a tail that did not fit, overlapping buffers refused, the room needed
/// reported on `CV_ERR_OUTPUT_TOO_SMALL`; 4: the render input of the echo canceller,
/// `cv_pipeline_set_render_format`, `_push_render_f32/_i16` and `_render_stats`).
pub const CV_ABI_VERSION: u32 = 4;

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
    /// The thread's latest failure message, NUL-terminated; empty (no allocation yet)
    /// until the first failure. A success empties it in place, so that successful calls
    /// never touch the heap.
    static LAST_ERROR: RefCell<Vec<u8>> = const { RefCell::new(Vec::new()) };
}

fn set_error(message: &str) {
    let _ = LAST_ERROR.try_with(|e| {
        let mut e = e.borrow_mut();
        e.clear();
        e.extend(message.bytes().map(|b| if b == 0 { b' ' } else { b }));
        e.push(0);
    });
}

/// Empties the last error without allocating (its buffer is kept).
fn clear_error() {
    let _ = LAST_ERROR.try_with(|e| {
        let mut e = e.borrow_mut();
        if !e.is_empty() {
            e.clear();
            e.push(0);
        }
    });
}

/// A failed call: the status it returns and the message [`cv_last_error`] then gives.
struct Failure(CvStatus, String);

/// What the body of an entry point returns; [`entry`] turns it into a [`CvStatus`].
type CvResult<T = ()> = Result<T, Failure>;

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
            clear_error();
            CvStatus::CV_OK
        }
        Ok(Err(Failure(status, message))) => {
            set_error(&message);
            status
        }
        Err(payload) => {
            let what = crate::error::panic_message(payload.as_ref());
            set_error(&format!("internal error: {what}"));
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

/// Whether two buffers share a byte (an empty one shares none). The C caller may pass
/// any two ranges; Rust may not hold a shared and a mutable slice over the same memory.
fn overlap<A, B>(a: *const A, a_len: usize, b: *const B, b_len: usize) -> bool {
    let start_a = a as usize;
    let end_a = start_a.saturating_add(a_len.saturating_mul(std::mem::size_of::<A>()));
    let start_b = b as usize;
    let end_b = start_b.saturating_add(b_len.saturating_mul(std::mem::size_of::<B>()));
    a_len > 0 && b_len > 0 && start_a < end_b && start_b < end_a
}

/// # Safety
/// `p` is NULL or a handle from the matching `*_new`, not used elsewhere during the call.
#[cfg_attr(not(feature = "device"), allow(dead_code))]
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

/// The version of the C ABI this library implements ([`CV_ABI_VERSION`]). Any thread;
/// real-time safe.
#[no_mangle]
pub extern "C" fn cv_abi_version() -> u32 {
    CV_ABI_VERSION
}

/// The message of the latest failure on this thread ("" after a success). The pointer
/// stays valid until the next clearvox call on this thread. Any thread; real-time safe.
#[no_mangle]
pub extern "C" fn cv_last_error() -> *const c_char {
    LAST_ERROR
        .try_with(|e| match e.try_borrow() {
            Ok(e) if !e.is_empty() => e.as_ptr().cast::<c_char>(),
            _ => c"".as_ptr(),
        })
        .unwrap_or(c"".as_ptr())
}
