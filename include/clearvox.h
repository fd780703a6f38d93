/*
 * clearvox: real-time voice enhancement (RNNoise and a spectral gate, or DeepFilterNet3).
 *
 * Every function returns a CvStatus (CV_OK = 0, negative on failure); the message of
 * the latest failure on the calling thread is cv_last_error(). Handles come from
 * cv_*_new and go back through cv_*_free. Audio is interleaved float (±1.0) or int16_t,
 * any number of frames per call; output is mono at the pipeline's output rate.
 *
 * Threads. A pipeline has stream calls (cv_pipeline_process_f32/_i16,
 * _push_render_f32/_i16, _set_render_format, _flush, _next_event, _reset), made by one
 * thread at a time (a second at the same moment gets CV_ERR_STATE), and control calls
 * (cv_pipeline_set_config/_strength/_bypass, _info, _render_stats, _output_frames_max),
 * which any thread may make beside anything: an audio thread processes while a control
 * thread changes the configuration, handed over without a lock. An engine is used by
 * one thread at a time. cv_*_free runs when no other call on the handle is under way.
 * Each function's comment gives its rule.
 *
 * Real-time. cv_pipeline_process_f32/_i16, _push_render_f32/_i16, _next_event, _info,
 * _render_stats, _output_frames_max, cv_last_error and cv_abi_version take no lock and,
 * after their first call on a thread, do not allocate (the DeepFilterNet3 denoiser's
 * network excepted); the other functions may do both.
 *
 * Echo. With `[echo] enabled = true` in the configuration, the pipeline cancels the
 * echo of what the loudspeaker played: declare its format once
 * (cv_pipeline_set_render_format) and, on the processing thread, push each stretch of
 * it (cv_pipeline_push_render_f32/_i16) before processing the capture of that moment.
 */

#ifndef CLEARVOX_H
#define CLEARVOX_H

/* Generated from src/capi/ by cbindgen; do not edit. */

#include <stdint.h>
#include <stddef.h>
#define CV_ABI_VERSION 4

// What a function did.
typedef enum CvStatus {
  // Success.
  CV_OK = 0,
  // A pointer was NULL, a length did not fit, or a value is out of range.
  CV_ERR_INVALID_ARGUMENT = -1,
  // The configuration (preset name, TOML/JSON text, rate, channels) was refused.
  CV_ERR_CONFIG = -2,
  // The output buffer is smaller than the call needs.
  CV_ERR_OUTPUT_TOO_SMALL = -3,
  // An audio device could not be used.
  CV_ERR_DEVICE = -4,
  // The call does not fit the handle's state (starting a running engine, ...).
  CV_ERR_STATE = -5,
  // Processing failed.
  CV_ERR_PROCESSING = -6,
  // A bug: a panic was caught at the boundary.
  CV_ERR_PANIC = -7,
  // The function is not in this build (the `device` feature is off).
  CV_ERR_UNSUPPORTED = -8,
} CvStatus;

// A live engine (opaque).
typedef struct CvEngine CvEngine;

// An enhancement pipeline (opaque).
typedef struct CvPipeline CvPipeline;

// A speech-state change: `kind` 1 = speech started, 2 = speech ended; `position` in
// samples of the output stream.
typedef struct CvVadEvent {
  // 1 speech started, 2 speech ended.
  uint32_t kind;
  // Sample position in the output stream.
  uint64_t position;
} CvVadEvent;

// What to open for a live engine. Every field may be zero/NULL for the default.
typedef struct CvEngineOptions {
  // Capture device: a name, part of one, or an index as text; NULL: the default.
  const char *input_device;
  // Monitor output device; NULL: no monitoring; "default": the default output.
  const char *output_device;
  // Capture rate, Hz; 0: the device's.
  uint32_t input_rate;
  // Capture channels; 0: the device's.
  uint32_t input_channels;
  // Capture sample format: 0 the device's, 1 int16, 2 int32, 3 float, 4 uint16.
  uint32_t input_format;
  // Requested callback length, ms; 0: the device's.
  double buffer_ms;
  // Stop processing after this much captured audio, s (the tail is flushed); 0: no
  // limit.
  double duration_s;
  // Record the enhanced signal to this WAV file; NULL: no recording.
  const char *record_path;
} CvEngineOptions;

// A frame handed to an engine callback: mono samples and the VAD events that came with
// them (pointers valid during the call only).
typedef struct CvFrame {
  // Mono samples in ±1.0.
  const float *samples;
  // Number of samples.
  uintptr_t len;
  // Sample rate, Hz.
  uint32_t rate;
  // Position of the first sample in the output stream.
  uint64_t position;
  // VAD events.
  const struct CvVadEvent *events;
  // Number of events.
  uintptr_t n_events;
} CvFrame;

// Called on the engine's processing thread with each 10 ms frame. It must return
// quickly and must not call back into the engine.
typedef void (*CvFrameCallback)(void *user, const struct CvFrame *frame);

// Statistics of a live engine.
typedef struct CvEngineStats {
  // Enhanced 10 ms frames produced.
  uint64_t frames_processed;
  // Input callbacks that found the capture ring full.
  uint64_t overruns;
  // Monitor callbacks that played silence for want of audio while the signal went on
  // (the silence after its end, until stop, is not counted).
  uint64_t underruns;
  // Frames dropped because the polling queue was full.
  uint64_t frames_dropped;
  // Processing time per frame: median, µs.
  uint64_t frame_time_p50_us;
  // 99th percentile, µs.
  uint64_t frame_time_p99_us;
  // Maximum, µs.
  uint64_t frame_time_max_us;
  // Estimated end-to-end latency, ms.
  double latency_ms;
  // Whether capture is running.
  uint32_t running;
} CvEngineStats;

#ifdef __cplusplus
extern "C" {
#endif // __cplusplus

// The version of the C ABI this library implements ([`CV_ABI_VERSION`]). Any thread;
// real-time safe.
uint32_t cv_abi_version(void);

// The message of the latest failure on this thread ("" after a success). The pointer
// stays valid until the next clearvox call on this thread. Any thread; real-time safe.
const char *cv_last_error(void);

// Creates a pipeline. `config` is a preset name (`voice-chat`, `max-quality`,
// `low-cpu`, `bypass`), TOML or JSON text (a preset plus overrides), or NULL for the
// default. The input is `channels`-channel audio at `input_rate` Hz.
//
// Threads: any; it allocates.
//
// # Safety
// `config` is NULL or a NUL-terminated string; `out` is NULL or valid for a write.
enum CvStatus cv_pipeline_new(const char *config,
                              uint32_t input_rate,
                              uint32_t channels,
                              struct CvPipeline **out);

// Frees a pipeline (NULL is allowed).
//
// Threads: any, once no other call on the pipeline is under way; it frees.
//
// # Safety
// `p` is NULL or a pipeline from `cv_pipeline_new`, with no call on it under way and
// none after.
void cv_pipeline_free(struct CvPipeline *p);

// The maximum possible number of output samples (mono) of a call with `input_frames`
// frames, in any state: the capacity [`cv_pipeline_process_f32`] and
// [`cv_pipeline_process_i16`] ask for, so one buffer of this size serves every call of
// up to `input_frames` frames. It covers every configuration set so far (it never
// shrinks): after a configuration change, ask again. 0 for a NULL pipeline.
//
// Threads: any, beside any call; real-time safe (no lock, no allocation).
//
// # Safety
// `p` is NULL or a live pipeline.
uintptr_t cv_pipeline_output_frames_max(const struct CvPipeline *p, uintptr_t input_frames);

// The latency in output samples of the latest configuration set, and the output rate
// in Hz.
//
// Threads: any, beside any call; real-time safe (no lock, no allocation).
//
// # Safety
// `p` is NULL or a live pipeline; each out-pointer is NULL or valid for a write.
enum CvStatus cv_pipeline_info(const struct CvPipeline *p,
                               uint32_t *latency,
                               uint32_t *output_rate);

// The render input's counts (see [`cv_pipeline_set_render_format`]), as of the latest
// stream call: `underruns`, the captured 10 ms frames that found the render short
// (silence stood in for the missing part), and `overruns`, the render samples (at
// 48 kHz) forgotten because more than 2 s were queued. Both count from the latest
// render format, configuration change or reset, and stay 0 while no render is pushed
// or the configuration has no echo canceller.
//
// Threads: any, beside any call; real-time safe (no lock, no allocation).
//
// # Safety
// `p` is NULL or a live pipeline; each out-pointer is NULL or valid for a write.
enum CvStatus cv_pipeline_render_stats(const struct CvPipeline *p,
                                       uint64_t *underruns,
                                       uint64_t *overruns);

// Sets the wet/dry mix (0 dry … 1 enhanced), with a 10 ms cross-fade, from the next
// stream call on.
//
// Threads: any, beside any call (control calls take a lock among themselves); it may
// allocate: not for an audio callback.
//
// # Safety
// `p` is NULL or a live pipeline.
enum CvStatus cv_pipeline_set_strength(struct CvPipeline *p, float strength);

// Switches bypass on (non-zero) or off, with a 10 ms cross-fade, from the next stream
// call on; the latency stays.
//
// Threads: as [`cv_pipeline_set_strength`].
//
// # Safety
// `p` is NULL or a live pipeline.
enum CvStatus cv_pipeline_set_bypass(struct CvPipeline *p, uint32_t bypass);

// Changes the configuration while running (a preset name, TOML or JSON), with a 10 ms
// cross-fade from the old to the new; input rate, channels, output rate and the render
// format ([`cv_pipeline_set_render_format`]) stay, and the configuration's strength and
// bypass replace those set before. It builds the new pipeline here, warmed on the
// latest 200 ms of input, and hands it over without a lock: the next stream call takes
// it, without allocating. The new pipeline's echo canceller starts afresh, with the
// render pushed from then on (during the cross-fade the old pipeline gets none).
//
// Threads: any, beside any call: the control thread of an app whose audio thread
// processes. It allocates and takes a lock among control calls: not for an audio
// callback.
//
// # Safety
// `p` is NULL or a live pipeline; `config` NULL or a NUL-terminated string.
enum CvStatus cv_pipeline_set_config(struct CvPipeline *p, const char *config);

// Processes `frames` interleaved `f32` frames into `output` (capacity in samples); the
// number of mono samples written goes to `written`. When `capacity` is less than
// [`cv_pipeline_output_frames_max`] asks, the call returns `CV_ERR_OUTPUT_TOO_SMALL`,
// processes nothing and sets `written` to the capacity needed. `input` and `output`
// must not overlap (`CV_ERR_INVALID_ARGUMENT`); `frames` may be 0.
//
// Threads: a stream call (one thread at a time: another stream call under way is
// refused with `CV_ERR_STATE`), beside any control call. Real-time safe: no lock, and no
// allocation after its first call on the thread (DeepFilterNet3's network excepted).
//
// # Safety
// `p` is NULL or a live pipeline; `input` NULL or holding `frames × channels` floats;
// `output` NULL or holding `capacity` floats; `written` NULL or valid for a write; none
// of them inside the others or the handle.
enum CvStatus cv_pipeline_process_f32(struct CvPipeline *p,
                                      const float *input,
                                      uintptr_t frames,
                                      float *output,
                                      uintptr_t capacity,
                                      uintptr_t *written);

// As [`cv_pipeline_process_f32`], for `int16_t` input.
//
// Threads: as [`cv_pipeline_process_f32`].
//
// # Safety
// As [`cv_pipeline_process_f32`], with `input` holding `frames × channels` `int16_t`.
enum CvStatus cv_pipeline_process_i16(struct CvPipeline *p,
                                      const int16_t *input,
                                      uintptr_t frames,
                                      float *output,
                                      uintptr_t capacity,
                                      uintptr_t *written);

// Declares the format of the render input (what the loudspeaker plays, for the echo
// canceller of a configuration with `[echo] enabled = true`): interleaved `channels`
// channels (1 to 8) at `rate` Hz. Before any call, it is mono at the input rate. A rate
// or channel count outside what the pipeline accepts is refused with `CV_ERR_CONFIG`.
// Render queued and not yet used is dropped, and the render counts start again. The
// format holds for the life of the handle: a configuration change, before or after
// this call, keeps it, as does a reset.
//
// Threads: a stream call (as [`cv_pipeline_process_f32`]); it also takes the lock of
// the control calls. It allocates: when the stream starts or the playback device
// changes, not in an audio callback.
//
// # Safety
// `p` is NULL or a live pipeline.
enum CvStatus cv_pipeline_set_render_format(struct CvPipeline *p, uint32_t rate, uint32_t channels);

// Gives the echo canceller `frames` interleaved `f32` frames of what the loudspeaker
// played, in the format of [`cv_pipeline_set_render_format`], before the capture they
// may be heard in is processed. Render and capture are taken to be on one clock: push
// each stretch of render as it is played, beside the capture of the same moment (the
// canceller finds the acoustic delay itself). Render missing when a captured frame
// needs it is silence, more than 2 s queued forgets the oldest
// ([`cv_pipeline_render_stats`] counts both); without an echo canceller in the
// configuration, the render is checked and ignored. `frames` may be 0.
//
// Threads: a stream call (as [`cv_pipeline_process_f32`]): the thread that processes,
// or another that never calls at the same moment (a playback callback on another
// thread queues its render for the processing thread). Real-time safe: no lock, and no
// allocation after its first call on the thread.
//
// # Safety
// `p` is NULL or a live pipeline; `render` NULL or holding `frames × channels` floats
// of the render format.
enum CvStatus cv_pipeline_push_render_f32(struct CvPipeline *p,
                                          const float *render,
                                          uintptr_t frames);

// As [`cv_pipeline_push_render_f32`], for `int16_t` render.
//
// Threads: as [`cv_pipeline_push_render_f32`].
//
// # Safety
// As [`cv_pipeline_push_render_f32`], with `render` holding `frames × channels`
// `int16_t`.
enum CvStatus cv_pipeline_push_render_i16(struct CvPipeline *p,
                                          const int16_t *render,
                                          uintptr_t frames);

// Drains the tail of the stream into `output`; `written` gets its length. If the tail
// does not fit, the call returns `CV_ERR_OUTPUT_TOO_SMALL`, sets `written` to the room
// needed and keeps the tail for the next flush. The stream then ends: call
// [`cv_pipeline_reset`] before processing more.
//
// Threads: a stream call (as [`cv_pipeline_process_f32`]). It may allocate: the end of
// a stream, not an audio callback.
//
// # Safety
// `p` is NULL or a live pipeline; `output` NULL or holding `capacity` floats; `written`
// NULL or valid for a write.
enum CvStatus cv_pipeline_flush(struct CvPipeline *p,
                                float *output,
                                uintptr_t capacity,
                                uintptr_t *written);

// Takes the oldest pending VAD event: `has_event` is set to 1 and `event` filled, or
// `has_event` to 0.
//
// Threads: a stream call (as [`cv_pipeline_process_f32`]); real-time safe.
//
// # Safety
// `p` is NULL or a live pipeline; each out-pointer NULL or valid for a write.
enum CvStatus cv_pipeline_next_event(struct CvPipeline *p,
                                     struct CvVadEvent *event,
                                     uint32_t *has_event);

// Returns the pipeline to its freshly built state (of the latest configuration); a
// tail kept by a refused flush is dropped.
//
// Threads: a stream call (as [`cv_pipeline_process_f32`]). It allocates: not for an
// audio callback.
//
// # Safety
// `p` is NULL or a live pipeline.
enum CvStatus cv_pipeline_reset(struct CvPipeline *p);

// Whether the engine has finished processing (its duration reached, or the device
// failed): 1 or 0.
//
// Threads: the engine's thread (one thread at a time per engine); no lock, no
// allocation.
//
// # Safety
// `e` is a live engine.
uint32_t cv_engine_is_finished(const struct CvEngine *e);

// Creates a live engine (opens nothing yet). `config` as for [`cv_pipeline_new`];
// `options` may be NULL for the default devices.
//
// Threads: any; it allocates.
//
// # Safety
// `config` is NULL or a NUL-terminated string; `options` NULL or valid; `out` valid for
// a write.
enum CvStatus cv_engine_new(const char *config,
                            const struct CvEngineOptions *options,
                            struct CvEngine **out);

// Frees an engine, stopping it first if it runs (NULL is allowed).
//
// Threads: any, once no other call on the engine is under way (not from its frame
// callback); it stops the engine, waits for its threads and frees.
//
// # Safety
// `e` is NULL or an engine from `cv_engine_new`, not used afterwards.
void cv_engine_free(struct CvEngine *e);

// Hands every enhanced frame to `callback` (on the engine's processing thread) from the
// next start on. `user` is passed back unchanged and must be usable from that thread.
//
// Threads: the engine's thread (one thread at a time per engine, not the callback); it
// allocates.
//
// # Safety
// `e` is a live engine; `callback` a valid function; `user` valid as long as the
// engine may call it.
enum CvStatus cv_engine_set_frame_callback(struct CvEngine *e,
                                           CvFrameCallback callback,
                                           void *user);

// Queues frames for [`cv_engine_poll_frame`] instead (pull style, for Dart FFI and the
// like); a consumer more than `capacity` frames behind loses frames (counted).
//
// Threads: the engine's thread (one thread at a time per engine, not the callback); it
// allocates.
//
// # Safety
// `e` is a live engine.
enum CvStatus cv_engine_enable_polling(struct CvEngine *e, uintptr_t capacity);

// Takes the next queued frame, waiting up to `timeout_ms`: its samples go to `samples`
// (capacity `capacity`), its events to `events` (capacity `events_capacity`), and `info`
// gets the counts, rate and position (`info.samples` and `info.events` are set to the
// given buffers). `has_frame` is 1 if a frame was taken, else 0.
//
// Threads: the engine's thread (one thread at a time per engine, not the callback); it
// may wait up to `timeout_ms` and takes a lock: not for an audio callback.
//
// `samples` and `events` must not overlap (`CV_ERR_INVALID_ARGUMENT`).
//
// # Safety
// `e` is a live engine with polling enabled; buffers valid for the given capacities;
// `info` and `has_frame` valid for writes.
enum CvStatus cv_engine_poll_frame(struct CvEngine *e,
                                   uint32_t timeout_ms,
                                   float *samples,
                                   uintptr_t capacity,
                                   struct CvVadEvent *events,
                                   uintptr_t events_capacity,
                                   struct CvFrame *info,
                                   uint32_t *has_frame);

// Opens the devices and starts capture. Nothing is captured before this call.
//
// Threads: the engine's thread (one thread at a time per engine, not the callback); it
// opens devices, starts threads and allocates.
//
// # Safety
// `e` is a live engine.
enum CvStatus cv_engine_start(struct CvEngine *e);

// Stops capture, flushes the pipeline's tail to the frames and the recording, and
// releases the devices.
//
// Threads: the engine's thread (one thread at a time per engine, not the callback); it
// waits for the engine's threads.
//
// # Safety
// `e` is a live engine.
enum CvStatus cv_engine_stop(struct CvEngine *e);

// The engine's statistics (of the running or the last session).
//
// Threads: the engine's thread (one thread at a time per engine); it may take a lock.
//
// # Safety
// `e` is a live engine; `stats` valid for a write.
enum CvStatus cv_engine_stats(const struct CvEngine *e, struct CvEngineStats *stats);

#ifdef __cplusplus
}  // extern "C"
#endif  // __cplusplus

#endif  /* CLEARVOX_H */
