//! The live engine through the C ABI: [`CvEngine`], an [`Engine`](crate::engine::Engine)
//! behind an opaque handle, and the `cv_engine_*` functions, with frames pushed to a C
//! callback or pulled by polling. Without the `device` feature the functions stay, so
//! that one header serves every build, and answer `CV_ERR_UNSUPPORTED`.

use std::ffi::{c_char, c_void};
use std::panic::{catch_unwind, AssertUnwindSafe};
#[cfg(feature = "device")]
use std::time::Duration;

#[cfg(doc)]
use super::cv_pipeline_new;
#[cfg(feature = "device")]
use super::{config_error, handle, invalid, overlap, parse_config, put, slice_mut, text};
use super::{entry, CvResult, CvStatus, CvVadEvent, Failure};
#[cfg(feature = "device")]
use crate::config::Config;
#[cfg(feature = "device")]
use crate::engine::{Engine, EngineConfig};
#[cfg(feature = "device")]
use crate::pipeline::EnhancedFrame;

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
/// Threads: the engine's thread (one thread at a time per engine); no lock, no
/// allocation.
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
/// Threads: any; it allocates.
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
/// Threads: any, once no other call on the engine is under way (not from its frame
/// callback); it stops the engine, waits for its threads and frees.
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
/// Threads: the engine's thread (one thread at a time per engine, not the callback); it
/// allocates.
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
/// Threads: the engine's thread (one thread at a time per engine, not the callback); it
/// allocates.
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
/// Threads: the engine's thread (one thread at a time per engine, not the callback); it
/// may wait up to `timeout_ms` and takes a lock: not for an audio callback.
///
/// `samples` and `events` must not overlap (`CV_ERR_INVALID_ARGUMENT`).
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
            if overlap(samples, capacity, events, events_capacity) {
                return Err(invalid("samples and events overlap: use separate buffers"));
            }
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
/// Threads: the engine's thread (one thread at a time per engine, not the callback); it
/// opens devices, starts threads and allocates.
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
/// Threads: the engine's thread (one thread at a time per engine, not the callback); it
/// waits for the engine's threads.
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
/// Threads: the engine's thread (one thread at a time per engine); it may take a lock.
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
