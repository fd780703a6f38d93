//! The pipeline through the C ABI: [`CvPipeline`], a [`HotSwap`] behind an opaque
//! handle, its creation, its queries and its control calls (configuration, strength,
//! bypass), which any thread may make at any time. The stream calls, whose processing
//! writes into buffers the caller owns and sizes with [`cv_pipeline_output_frames_max`],
//! are in `stream.rs`.

use std::cell::UnsafeCell;
use std::ffi::c_char;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::Ordering::Relaxed;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64};

use super::mailbox::Mailbox;
use super::stream::Stream;
#[cfg(doc)]
use super::stream::{
    cv_pipeline_process_f32, cv_pipeline_process_i16, cv_pipeline_set_render_format,
};
use super::{config_error, entry, invalid, parse_config, put, text, CvResult, CvStatus};
use crate::config::Config;
use crate::dsp::vad::{VadEvent, VadEventKind};
use crate::pipeline::{HotSwap, SwapBuilder};

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
    /// The processing side's state: used by the stream call that holds `busy` alone.
    pub(super) stream: UnsafeCell<Stream>,
    /// Whether a stream call is under way (a second one at the same time is refused).
    pub(super) busy: AtomicBool,
    /// Configuration changes on their way to the stream, and pipelines on their way back.
    pub(super) mailbox: Mailbox,
    /// Builds new pipelines on the control side.
    builder: SwapBuilder,
    /// The latency of the latest configuration, output samples.
    latency: AtomicU32,
    /// The render format (rate and channels, [`render_format`]) that every pipeline of
    /// this handle gets: written under the control lock by the stream call that sets it,
    /// read under that lock by the control call that builds a new pipeline.
    pub(super) render_format: AtomicU64,
    /// The running pipeline's render underruns, as of the latest stream call.
    pub(super) render_underruns: AtomicU64,
    /// The running pipeline's render overruns, as of the latest stream call.
    pub(super) render_overruns: AtomicU64,
}

/// A render format packed for [`CvPipeline::render_format`].
pub(super) fn pack_render_format(rate: u32, channels: u32) -> u64 {
    (u64::from(rate) << 32) | u64::from(channels)
}

/// The render format of a handle: rate in Hz, channels.
fn render_format(p: &CvPipeline) -> (u32, usize) {
    let packed = p.render_format.load(Relaxed);
    ((packed >> 32) as u32, (packed & 0xffff_ffff) as usize)
}

// SAFETY: `stream` is touched only by the stream call that set `busy` (an atomic flag
// taken with Acquire and released with Release), the mailbox is made of atomics and a
// mutex, and the builder is `Sync`: the handle may be used from several threads as the
// functions document.
unsafe impl Sync for CvPipeline {}

impl CvPipeline {
    fn new(config: &Config, input_rate: u32, channels: u32) -> CvResult<Self> {
        let mut hot = HotSwap::new(config, input_rate, channels as usize).map_err(config_error)?;
        hot.park_retired();
        Ok(Self {
            builder: hot.builder(),
            latency: AtomicU32::new(hot.latency() as u32),
            stream: UnsafeCell::new(Stream::new(hot)),
            busy: AtomicBool::new(false),
            mailbox: Mailbox::default(),
            // The pipeline's own default: mono at the input rate.
            render_format: AtomicU64::new(pack_render_format(input_rate, 1)),
            render_underruns: AtomicU64::new(0),
            render_overruns: AtomicU64::new(0),
        })
    }
}

/// A live pipeline from a handle, or the error for a NULL one.
///
/// # Safety
/// `p` is NULL or a live pipeline.
pub(super) unsafe fn pipeline<'a>(p: *const CvPipeline) -> CvResult<&'a CvPipeline> {
    // SAFETY: NULL or live, as the caller promises; only shared references are made.
    unsafe { p.as_ref() }.ok_or_else(|| invalid("pipeline is NULL"))
}

/// Creates a pipeline. `config` is a preset name (`voice-chat`, `max-quality`,
/// `low-cpu`, `bypass`), TOML or JSON text (a preset plus overrides), or NULL for the
/// default. The input is `channels`-channel audio at `input_rate` Hz.
///
/// Threads: any; it allocates.
///
/// # Safety
/// `config` is NULL or a NUL-terminated string; `out` is NULL or valid for a write.
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
        let h = Box::into_raw(Box::new(CvPipeline::new(&cfg, input_rate, channels)?));
        // SAFETY: checked non-null above; valid for a write as documented.
        unsafe { put(out, h, "out") }
    })
}

/// Frees a pipeline (NULL is allowed).
///
/// Threads: any, once no other call on the pipeline is under way; it frees.
///
/// # Safety
/// `p` is NULL or a pipeline from `cv_pipeline_new`, with no call on it under way and
/// none after.
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
/// up to `input_frames` frames. It covers every configuration set so far (it never
/// shrinks): after a configuration change, ask again. 0 for a NULL pipeline.
///
/// Threads: any, beside any call; real-time safe (no lock, no allocation).
///
/// # Safety
/// `p` is NULL or a live pipeline.
#[no_mangle]
pub unsafe extern "C" fn cv_pipeline_output_frames_max(
    p: *const CvPipeline,
    input_frames: usize,
) -> usize {
    // SAFETY: NULL or live, as documented.
    match unsafe { p.as_ref() } {
        Some(p) => p.builder.output_frames_max(input_frames),
        None => 0,
    }
}

/// The latency in output samples of the latest configuration set, and the output rate
/// in Hz.
///
/// Threads: any, beside any call; real-time safe (no lock, no allocation).
///
/// # Safety
/// `p` is NULL or a live pipeline; each out-pointer is NULL or valid for a write.
#[no_mangle]
pub unsafe extern "C" fn cv_pipeline_info(
    p: *const CvPipeline,
    latency: *mut u32,
    output_rate: *mut u32,
) -> CvStatus {
    entry(|| {
        // SAFETY: NULL or live, as documented.
        let p = unsafe { pipeline(p) }?;
        if !latency.is_null() {
            // SAFETY: non-null and valid for a write, as documented.
            unsafe { latency.write(p.latency.load(Relaxed)) };
        }
        if !output_rate.is_null() {
            // SAFETY: as above.
            unsafe { output_rate.write(p.builder.output_rate()) };
        }
        Ok(())
    })
}

/// The render input's counts (see [`cv_pipeline_set_render_format`]), as of the latest
/// stream call: `underruns`, the captured 10 ms frames that found the render short
/// (silence stood in for the missing part), and `overruns`, the render samples (at
/// 48 kHz) forgotten because more than 2 s were queued. Both count from the latest
/// render format, configuration change or reset, and stay 0 while no render is pushed
/// or the configuration has no echo canceller.
///
/// Threads: any, beside any call; real-time safe (no lock, no allocation).
///
/// # Safety
/// `p` is NULL or a live pipeline; each out-pointer is NULL or valid for a write.
#[no_mangle]
pub unsafe extern "C" fn cv_pipeline_render_stats(
    p: *const CvPipeline,
    underruns: *mut u64,
    overruns: *mut u64,
) -> CvStatus {
    entry(|| {
        // SAFETY: NULL or live, as documented.
        let p = unsafe { pipeline(p) }?;
        if !underruns.is_null() {
            // SAFETY: non-null and valid for a write, as documented.
            unsafe { underruns.write(p.render_underruns.load(Relaxed)) };
        }
        if !overruns.is_null() {
            // SAFETY: as above.
            unsafe { overruns.write(p.render_overruns.load(Relaxed)) };
        }
        Ok(())
    })
}

/// Sets the wet/dry mix (0 dry … 1 enhanced), with a 10 ms cross-fade, from the next
/// stream call on.
///
/// Threads: any, beside any call (control calls take a lock among themselves); it may
/// allocate: not for an audio callback.
///
/// # Safety
/// `p` is NULL or a live pipeline.
#[no_mangle]
pub unsafe extern "C" fn cv_pipeline_set_strength(p: *mut CvPipeline, strength: f32) -> CvStatus {
    entry(|| {
        // SAFETY: NULL or live, as documented.
        let p = unsafe { pipeline(p) }?;
        if !(0.0..=1.0).contains(&strength) {
            return Err(invalid(&format!("strength = {strength}: must be in 0..1")));
        }
        let control = p.mailbox.control();
        p.mailbox.post(&control, |c| c.strength = Some(strength));
        Ok(())
    })
}

/// Switches bypass on (non-zero) or off, with a 10 ms cross-fade, from the next stream
/// call on; the latency stays.
///
/// Threads: as [`cv_pipeline_set_strength`].
///
/// # Safety
/// `p` is NULL or a live pipeline.
#[no_mangle]
pub unsafe extern "C" fn cv_pipeline_set_bypass(p: *mut CvPipeline, bypass: u32) -> CvStatus {
    entry(|| {
        // SAFETY: NULL or live, as documented.
        let p = unsafe { pipeline(p) }?;
        let control = p.mailbox.control();
        p.mailbox.post(&control, |c| c.bypass = Some(bypass != 0));
        Ok(())
    })
}

/// Changes the configuration while running (a preset name, TOML or JSON), with a 10 ms
/// cross-fade from the old to the new; input rate, channels, output rate and the render
/// format ([`cv_pipeline_set_render_format`]) stay, and the configuration's strength and
/// bypass replace those set before. It builds the new pipeline here, warmed on the
/// latest 200 ms of input, and hands it over without a lock: the next stream call takes
/// it, without allocating. The new pipeline's echo canceller starts afresh, with the
/// render pushed from then on (during the cross-fade the old pipeline gets none).
///
/// Threads: any, beside any call: the control thread of an app whose audio thread
/// processes. It allocates and takes a lock among control calls: not for an audio
/// callback.
///
/// # Safety
/// `p` is NULL or a live pipeline; `config` NULL or a NUL-terminated string.
#[no_mangle]
pub unsafe extern "C" fn cv_pipeline_set_config(
    p: *mut CvPipeline,
    config: *const c_char,
) -> CvStatus {
    entry(|| {
        // SAFETY: NULL or live, as documented.
        let p = unsafe { pipeline(p) }?;
        // SAFETY: NULL or NUL-terminated, as documented.
        let cfg = parse_config(unsafe { text(config, "config") }?)?;
        let mut next = p.builder.build(&cfg).map_err(config_error)?;
        let latency = next.latency() as u32;
        let control = p.mailbox.control();
        // Under the lock, so that a render format set meanwhile either is read here or
        // finds this pipeline pending and amends it (`cv_pipeline_set_render_format`).
        // This also lines the new pipeline's render up with its capture from here on.
        let (rate, channels) = render_format(p);
        next.set_render_format(rate, channels)
            .map_err(config_error)?;
        p.latency.store(latency, Relaxed);
        p.mailbox.post(&control, |c| {
            c.pipeline = Some(next);
            c.strength = None;
            c.bypass = None;
        });
        Ok(())
    })
}
