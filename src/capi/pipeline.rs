//! The pipeline through the C ABI: [`CvPipeline`], a [`HotSwap`] behind an opaque
//! handle, and the `cv_pipeline_*` functions, whose processing calls write into buffers
//! the caller owns and sizes with [`cv_pipeline_output_frames_max`].

use std::ffi::c_char;
use std::panic::{catch_unwind, AssertUnwindSafe};

use super::{
    config_error, entry, handle, invalid, parse_config, put, slice, slice_mut, text, CvResult,
    CvStatus, Failure,
};
use crate::config::Config;
use crate::dsp::vad::{VadEvent, VadEventKind};
use crate::pipeline::HotSwap;

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
