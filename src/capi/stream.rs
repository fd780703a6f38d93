//! The stream calls of a [`CvPipeline`]: processing, the render input of the echo
//! canceller, flush, events and reset. One thread makes them at a time (a second at the
//! same moment is refused with `CV_ERR_STATE`); each first takes over the configuration
//! changes the control calls posted.

use std::sync::atomic::Ordering::{Acquire, Relaxed, Release};

use super::mailbox::{Change, Mailbox};
#[cfg(doc)]
use super::pipeline::{cv_pipeline_output_frames_max, cv_pipeline_render_stats};
use super::pipeline::{pack_render_format, pipeline};
use super::{
    config_error, entry, invalid, overlap, put, slice, slice_mut, CvResult, CvStatus, Failure,
};
use super::{CvPipeline, CvVadEvent};
use crate::pipeline::HotSwap;

/// The processing side of a pipeline.
#[derive(Debug)]
pub(super) struct Stream {
    hot: HotSwap,
    /// The box that brought the pipeline now fading in; it carries the one that fades
    /// out back to the control side.
    carrier: Option<Box<Change>>,
    /// A flushed tail that did not fit the caller's buffer, for the next flush.
    tail: Vec<f32>,
    tail_waiting: bool,
}

impl Stream {
    pub(super) fn new(hot: HotSwap) -> Self {
        Self {
            hot,
            carrier: None,
            tail: Vec::new(),
            tail_waiting: false,
        }
    }

    /// Applies the pending change, in its order: pipeline, strength, bypass. No heap
    /// operation: the pipeline was built on the control side, and what leaves goes back.
    fn take_changes(&mut self, mailbox: &Mailbox) {
        let Some(mut change) = mailbox.take() else {
            return;
        };
        let installed = change.pipeline.is_some();
        if let Some(next) = change.pipeline.take() {
            let gone = self.hot.install(next);
            match (self.carrier.take(), gone) {
                (Some(mut old), gone) => {
                    old.pipeline = gone;
                    mailbox.give_back(old);
                }
                // Not reached: a pipeline fading out came with a carrier.
                (None, gone) => drop(gone),
            }
        }
        if let Some(strength) = change.strength.take() {
            // Checked by the control call.
            let _ = self.hot.set_strength(strength);
        }
        if let Some(bypass) = change.bypass.take() {
            self.hot.set_bypass(bypass);
        }
        if installed {
            self.carrier = Some(change);
        } else {
            mailbox.give_back(change);
        }
    }

    /// Sends a pipeline that finished fading out (or was cut short) back to be freed.
    fn give_back_retired(&mut self, mailbox: &Mailbox) {
        if let Some(old) = self.hot.take_retired() {
            match self.carrier.take() {
                Some(mut carrier) => {
                    carrier.pipeline = Some(old);
                    mailbox.give_back(carrier);
                }
                // Not reached, as above.
                None => drop(old),
            }
        }
    }
}

/// Runs a stream call on `p`: refuses it if another is under way, takes over the posted
/// changes, and sends retired pipelines back. No lock, no heap operation of its own.
///
/// # Safety
/// `p` is NULL or a live pipeline.
unsafe fn stream_call<T>(
    p: *mut CvPipeline,
    body: impl FnOnce(&mut Stream) -> CvResult<T>,
) -> CvResult<T> {
    // SAFETY: NULL or live, as the caller promises.
    let p = unsafe { pipeline(p) }?;
    if p.busy.swap(true, Acquire) {
        return Err(Failure(
            CvStatus::CV_ERR_STATE,
            "another thread is making a stream call on this pipeline".into(),
        ));
    }
    /// Releases `busy` even if the body panics.
    struct Unbusy<'a>(&'a CvPipeline);
    impl Drop for Unbusy<'_> {
        fn drop(&mut self) {
            self.0.busy.store(false, Release);
        }
    }
    let _unbusy = Unbusy(p);
    // SAFETY: `busy` was false and is now ours: no other reference to the stream exists
    // until it is released.
    let stream = unsafe { &mut *p.stream.get() };
    stream.take_changes(&p.mailbox);
    let result = body(stream);
    stream.give_back_retired(&p.mailbox);
    let running = stream.hot.pipeline();
    p.render_underruns
        .store(running.render_underruns(), Relaxed);
    p.render_overruns.store(running.render_overruns(), Relaxed);
    result
}

/// Processes `frames` interleaved `f32` frames into `output` (capacity in samples); the
/// number of mono samples written goes to `written`. When `capacity` is less than
/// [`cv_pipeline_output_frames_max`] asks, the call returns `CV_ERR_OUTPUT_TOO_SMALL`,
/// processes nothing and sets `written` to the capacity needed. `input` and `output`
/// must not overlap (`CV_ERR_INVALID_ARGUMENT`); `frames` may be 0.
///
/// Threads: a stream call (one thread at a time: another stream call under way is
/// refused with `CV_ERR_STATE`), beside any control call. Real-time safe: no lock, and no
/// allocation after its first call on the thread (DeepFilterNet3's network excepted).
///
/// # Safety
/// `p` is NULL or a live pipeline; `input` NULL or holding `frames × channels` floats;
/// `output` NULL or holding `capacity` floats; `written` NULL or valid for a write; none
/// of them inside the others or the handle.
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
/// Threads: as [`cv_pipeline_process_f32`].
///
/// # Safety
/// As [`cv_pipeline_process_f32`], with `input` holding `frames × channels` `int16_t`.
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
    if written.is_null() {
        return Err(invalid("written is NULL"));
    }
    // SAFETY (all): the caller's contract; the slices are made once the ranges are known
    // not to overlap.
    unsafe {
        stream_call(p, |s| {
            if s.tail_waiting {
                return Err(Failure(
                    CvStatus::CV_ERR_STATE,
                    format!(
                        "a flushed tail of {} samples is waiting: flush into a larger buffer, \
                         or reset",
                        s.tail.len()
                    ),
                ));
            }
            let len = frames
                .checked_mul(s.hot.pipeline().channels())
                .ok_or_else(|| invalid("frames × channels overflows"))?;
            if overlap(input, len, output, capacity) {
                return Err(invalid("input and output overlap: use separate buffers"));
            }
            let input = slice(input, len, "input")?;
            let output = slice_mut(output, capacity, "output")?;
            match s.hot.process_into_buffer(input, output) {
                Ok(n) => put(written, n, "written"),
                Err(e @ crate::Error::OutputTooSmall { needed, .. }) => {
                    put(written, needed, "written")?;
                    Err(Failure(CvStatus::CV_ERR_OUTPUT_TOO_SMALL, e.to_string()))
                }
                Err(e) => Err(Failure(CvStatus::CV_ERR_PROCESSING, e.to_string())),
            }
        })
    }
}

/// Declares the format of the render input (what the loudspeaker plays, for the echo
/// canceller of a configuration with `[echo] enabled = true`): interleaved `channels`
/// channels (1 to 8) at `rate` Hz. Before any call, it is mono at the input rate. A rate
/// or channel count outside what the pipeline accepts is refused with `CV_ERR_CONFIG`.
/// Render queued and not yet used is dropped, and the render counts start again. The
/// format holds for the life of the handle: a configuration change, before or after
/// this call, keeps it, as does a reset.
///
/// Threads: a stream call (as [`cv_pipeline_process_f32`]); it also takes the lock of
/// the control calls. It allocates: when the stream starts or the playback device
/// changes, not in an audio callback.
///
/// # Safety
/// `p` is NULL or a live pipeline.
#[no_mangle]
pub unsafe extern "C" fn cv_pipeline_set_render_format(
    p: *mut CvPipeline,
    rate: u32,
    channels: u32,
) -> CvStatus {
    entry(|| {
        // SAFETY: NULL or live, as documented.
        let handle = unsafe { pipeline(p) }?;
        // SAFETY: the caller's contract.
        unsafe {
            stream_call(p, |s| {
                let channels_n = channels as usize;
                let control = handle.mailbox.control();
                s.hot
                    .pipeline_mut()
                    .set_render_format(rate, channels_n)
                    .map_err(config_error)?;
                // A pipeline that a configuration change built before this call, still
                // waiting for the next stream call, gets the format too.
                handle
                    .mailbox
                    .amend_pending(&control, |change| match change.pipeline.as_mut() {
                        Some(next) => next.set_render_format(rate, channels_n),
                        None => Ok(()),
                    })
                    .transpose()
                    .map_err(config_error)?;
                handle
                    .render_format
                    .store(pack_render_format(rate, channels), Relaxed);
                Ok(())
            })
        }
    })
}

/// Gives the echo canceller `frames` interleaved `f32` frames of what the loudspeaker
/// played, in the format of [`cv_pipeline_set_render_format`], before the capture they
/// may be heard in is processed. Render and capture are taken to be on one clock: push
/// each stretch of render as it is played, beside the capture of the same moment (the
/// canceller finds the acoustic delay itself). Render missing when a captured frame
/// needs it is silence, more than 2 s queued forgets the oldest
/// ([`cv_pipeline_render_stats`] counts both); without an echo canceller in the
/// configuration, the render is checked and ignored. `frames` may be 0.
///
/// Threads: a stream call (as [`cv_pipeline_process_f32`]): the thread that processes,
/// or another that never calls at the same moment (a playback callback on another
/// thread queues its render for the processing thread). Real-time safe: no lock, and no
/// allocation after its first call on the thread.
///
/// # Safety
/// `p` is NULL or a live pipeline; `render` NULL or holding `frames × channels` floats
/// of the render format.
#[no_mangle]
pub unsafe extern "C" fn cv_pipeline_push_render_f32(
    p: *mut CvPipeline,
    render: *const f32,
    frames: usize,
) -> CvStatus {
    // SAFETY: forwarded with the same contract.
    entry(|| unsafe { push_render(p, render, frames) })
}

/// As [`cv_pipeline_push_render_f32`], for `int16_t` render.
///
/// Threads: as [`cv_pipeline_push_render_f32`].
///
/// # Safety
/// As [`cv_pipeline_push_render_f32`], with `render` holding `frames × channels`
/// `int16_t`.
#[no_mangle]
pub unsafe extern "C" fn cv_pipeline_push_render_i16(
    p: *mut CvPipeline,
    render: *const i16,
    frames: usize,
) -> CvStatus {
    // SAFETY: forwarded with the same contract.
    entry(|| unsafe { push_render(p, render, frames) })
}

/// # Safety
/// As [`cv_pipeline_push_render_f32`].
unsafe fn push_render<S: crate::dsp::convert::PcmSample>(
    p: *mut CvPipeline,
    render: *const S,
    frames: usize,
) -> CvResult {
    // SAFETY (all): the caller's contract.
    unsafe {
        stream_call(p, |s| {
            let running = s.hot.pipeline_mut();
            let len = frames
                .checked_mul(running.render_channels())
                .ok_or_else(|| invalid("frames × channels overflows"))?;
            let render = slice(render, len, "render")?;
            running
                .push_render(render)
                .map_err(|e| Failure(CvStatus::CV_ERR_PROCESSING, e.to_string()))
        })
    }
}

/// Drains the tail of the stream into `output`; `written` gets its length. If the tail
/// does not fit, the call returns `CV_ERR_OUTPUT_TOO_SMALL`, sets `written` to the room
/// needed and keeps the tail for the next flush. The stream then ends: call
/// [`cv_pipeline_reset`] before processing more.
///
/// Threads: a stream call (as [`cv_pipeline_process_f32`]). It may allocate: the end of
/// a stream, not an audio callback.
///
/// # Safety
/// `p` is NULL or a live pipeline; `output` NULL or holding `capacity` floats; `written`
/// NULL or valid for a write.
#[no_mangle]
pub unsafe extern "C" fn cv_pipeline_flush(
    p: *mut CvPipeline,
    output: *mut f32,
    capacity: usize,
    written: *mut usize,
) -> CvStatus {
    entry(|| {
        if written.is_null() {
            return Err(invalid("written is NULL"));
        }
        // SAFETY (all): the caller's contract.
        let output = unsafe { slice_mut(output, capacity, "output") }?;
        unsafe {
            stream_call(p, |s| {
                if !s.tail_waiting {
                    s.tail.clear();
                    s.hot
                        .flush(&mut s.tail)
                        .map_err(|e| Failure(CvStatus::CV_ERR_PROCESSING, e.to_string()))?;
                }
                let n = s.tail.len();
                if n > output.len() {
                    s.tail_waiting = true;
                    put(written, n, "written")?;
                    return Err(Failure(
                        CvStatus::CV_ERR_OUTPUT_TOO_SMALL,
                        format!(
                            "the tail holds {n} samples and the buffer {}: it is kept for \
                             the next flush",
                            output.len()
                        ),
                    ));
                }
                output[..n].copy_from_slice(&s.tail);
                s.tail.clear();
                s.tail_waiting = false;
                put(written, n, "written")
            })
        }
    })
}

/// Takes the oldest pending VAD event: `has_event` is set to 1 and `event` filled, or
/// `has_event` to 0.
///
/// Threads: a stream call (as [`cv_pipeline_process_f32`]); real-time safe.
///
/// # Safety
/// `p` is NULL or a live pipeline; each out-pointer NULL or valid for a write.
#[no_mangle]
pub unsafe extern "C" fn cv_pipeline_next_event(
    p: *mut CvPipeline,
    event: *mut CvVadEvent,
    has_event: *mut u32,
) -> CvStatus {
    entry(|| {
        if event.is_null() || has_event.is_null() {
            return Err(invalid("event or has_event is NULL"));
        }
        // SAFETY (all): the caller's contract.
        unsafe {
            stream_call(p, |s| match s.hot.pop_event() {
                Some(e) => {
                    put(event, e.into(), "event")?;
                    put(has_event, 1, "has_event")
                }
                None => put(has_event, 0, "has_event"),
            })
        }
    })
}

/// Returns the pipeline to its freshly built state (of the latest configuration); a
/// tail kept by a refused flush is dropped.
///
/// Threads: a stream call (as [`cv_pipeline_process_f32`]). It allocates: not for an
/// audio callback.
///
/// # Safety
/// `p` is NULL or a live pipeline.
#[no_mangle]
pub unsafe extern "C" fn cv_pipeline_reset(p: *mut CvPipeline) -> CvStatus {
    entry(|| {
        // SAFETY: the caller's contract.
        unsafe {
            stream_call(p, |s| {
                s.hot.reset();
                s.tail.clear();
                s.tail_waiting = false;
                Ok(())
            })
        }
    })
}
