//! Statistics shared between the audio callbacks, the processing thread and readers.
//!
//! Everything is an atomic: the callbacks update counters without locking, and
//! [`EngineStats`] can be read at any time from any thread.

use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering::Relaxed};

use serde::Serialize;

/// Resolution of the processing-time histogram below 1 ms: 1 µs per bucket.
const FINE_BUCKETS: usize = 1024;
/// Above 1 ms: 16 µs per bucket up to about 17 ms, then one overflow bucket.
const COARSE_BUCKETS: usize = 1024;
const COARSE_STEP_US: u64 = 16;

/// A lock-free histogram of per-frame processing times.
pub(crate) struct TimeHistogram {
    buckets: Vec<AtomicU32>,
    max_us: AtomicU64,
    count: AtomicU64,
}

impl TimeHistogram {
    pub(crate) fn new() -> Self {
        Self {
            buckets: (0..FINE_BUCKETS + COARSE_BUCKETS + 1)
                .map(|_| AtomicU32::new(0))
                .collect(),
            max_us: AtomicU64::new(0),
            count: AtomicU64::new(0),
        }
    }

    pub(crate) fn record(&self, micros: u64) {
        let i = if (micros as usize) < FINE_BUCKETS {
            micros as usize
        } else {
            (FINE_BUCKETS + ((micros - FINE_BUCKETS as u64) / COARSE_STEP_US) as usize)
                .min(FINE_BUCKETS + COARSE_BUCKETS)
        };
        self.buckets[i].fetch_add(1, Relaxed);
        self.max_us.fetch_max(micros, Relaxed);
        self.count.fetch_add(1, Relaxed);
    }

    /// The `q` quantile (0..1) in µs (the upper edge of its bucket).
    pub(crate) fn quantile(&self, q: f64) -> u64 {
        let count = self.count.load(Relaxed);
        if count == 0 {
            return 0;
        }
        let target = ((count as f64 * q).ceil() as u64).max(1);
        let mut seen = 0u64;
        for (i, b) in self.buckets.iter().enumerate() {
            seen += b.load(Relaxed) as u64;
            if seen >= target {
                return if i < FINE_BUCKETS {
                    i as u64
                } else {
                    FINE_BUCKETS as u64 + (i - FINE_BUCKETS + 1) as u64 * COARSE_STEP_US
                };
            }
        }
        self.max_us.load(Relaxed)
    }

    pub(crate) fn max(&self) -> u64 {
        self.max_us.load(Relaxed)
    }
}

/// Counters shared by every thread of a running engine.
pub(crate) struct Shared {
    pub(crate) callbacks: AtomicU64,
    pub(crate) captured_frames: AtomicU64,
    pub(crate) max_callback_frames: AtomicU64,
    pub(crate) overruns: AtomicU64,
    pub(crate) overrun_frames: AtomicU64,
    pub(crate) underruns: AtomicU64,
    pub(crate) monitor_dropped: AtomicU64,
    pub(crate) frames_processed: AtomicU64,
    pub(crate) input_consumed: AtomicU64,
    pub(crate) ring_fill: AtomicU64,
    pub(crate) ring_fill_max: AtomicU64,
    pub(crate) monitor_fill: AtomicU64,
    /// Input level of the last chunk, dBFS RMS, as f32 bits.
    pub(crate) input_level: AtomicU32,
    pub(crate) in_speech: AtomicBool,
    pub(crate) processing: TimeHistogram,
    /// Set when the input stream failed for good.
    pub(crate) device_error: AtomicU32,
    /// Samples the monitor ring must hold before playback starts (set after the streams
    /// are built, when their callback sizes are known).
    pub(crate) monitor_cushion: AtomicU64,
    /// Set when the monitor output failed for good.
    pub(crate) monitor_lost: AtomicBool,
    /// Set by the processing thread once the last enhanced sample (the pipeline's
    /// flushed tail) is in the monitor ring: when the ring runs dry after that, the
    /// signal has ended, and the silence the output plays until the engine stops is not
    /// an underrun.
    pub(crate) monitor_ended: AtomicBool,
    /// Errors a stream reported and went on from (xruns, backend hiccups).
    pub(crate) stream_errors: AtomicU64,
    /// What the error callback said (set once; the error callback is not the data
    /// callback and may allocate).
    pub(crate) device_error_message: std::sync::OnceLock<String>,
    /// Output callbacks so far, and the frames they wrote.
    pub(crate) output_callbacks: AtomicU64,
    pub(crate) output_frames: AtomicU64,
    /// The player's ring position (samples pushed since the start) up to which the
    /// output callback discards (`cancel`).
    pub(crate) player_discard_until: AtomicU64,
    /// Samples the output callback has taken from the player's ring (played or
    /// discarded).
    pub(crate) player_consumed: AtomicU64,
    /// Samples given to the player that it could not queue.
    pub(crate) player_dropped: AtomicU64,
    /// Set when the session has ended: nothing reads the player's ring any more.
    pub(crate) player_closed: AtomicBool,
    /// Render samples the output callback dropped (the render ring was full).
    pub(crate) render_dropped: AtomicU64,
    /// The pipeline's render underruns and overruns (see `Pipeline::render_underruns`).
    pub(crate) render_underruns: AtomicU64,
    pub(crate) render_overruns: AtomicU64,
}

impl Shared {
    pub(crate) fn new() -> Self {
        Self {
            callbacks: AtomicU64::new(0),
            captured_frames: AtomicU64::new(0),
            max_callback_frames: AtomicU64::new(0),
            overruns: AtomicU64::new(0),
            overrun_frames: AtomicU64::new(0),
            underruns: AtomicU64::new(0),
            monitor_dropped: AtomicU64::new(0),
            frames_processed: AtomicU64::new(0),
            input_consumed: AtomicU64::new(0),
            ring_fill: AtomicU64::new(0),
            ring_fill_max: AtomicU64::new(0),
            monitor_fill: AtomicU64::new(0),
            input_level: AtomicU32::new((-120.0f32).to_bits()),
            in_speech: AtomicBool::new(false),
            processing: TimeHistogram::new(),
            device_error: AtomicU32::new(0),
            monitor_lost: AtomicBool::new(false),
            monitor_ended: AtomicBool::new(false),
            monitor_cushion: AtomicU64::new(0),
            stream_errors: AtomicU64::new(0),
            device_error_message: std::sync::OnceLock::new(),
            output_callbacks: AtomicU64::new(0),
            output_frames: AtomicU64::new(0),
            player_discard_until: AtomicU64::new(0),
            player_consumed: AtomicU64::new(0),
            player_dropped: AtomicU64::new(0),
            player_closed: AtomicBool::new(false),
            render_dropped: AtomicU64::new(0),
            render_underruns: AtomicU64::new(0),
            render_overruns: AtomicU64::new(0),
        }
    }
}

/// A snapshot of a running (or stopped) engine's statistics.
///
/// # Examples
///
/// A status line once a second while the engine runs:
///
/// ```no_run
/// use clearvox::engine::{Engine, EngineConfig};
/// use std::time::Duration;
///
/// let mut engine = Engine::new(EngineConfig::default())?;
/// engine.start()?;
/// for _ in 0..10 {
///     std::thread::sleep(Duration::from_secs(1));
///     let s = engine.stats();
///     println!(
///         "{:5.1} dBFS {} | {:.1} % CPU, p99 {} µs | latency {:.0} ms | {} overruns",
///         s.input_level_dbfs,
///         if s.in_speech { "speech" } else { "      " },
///         s.cpu_percent,
///         s.frame_time_p99_us,
///         s.latency_ms,
///         s.overruns
///     );
/// }
/// engine.stop()?;
/// # Ok::<(), clearvox::engine::EngineError>(())
/// ```
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct EngineStats {
    /// Input callbacks so far.
    pub callbacks: u64,
    /// Frames the input callbacks delivered.
    pub captured_frames: u64,
    /// Largest input callback, frames.
    pub max_callback_frames: u64,
    /// Input frames the processing thread has taken.
    pub input_frames_processed: u64,
    /// Enhanced 10 ms frames produced.
    pub frames_processed: u64,
    /// Input callbacks that found the capture ring full (audio was dropped).
    pub overruns: u64,
    /// Input frames dropped by overruns.
    pub overrun_frames: u64,
    /// Monitor callbacks that found too little audio and played silence, once playback
    /// had started and before the enhanced signal ended (the silence after the last
    /// sample, while the engine stops, is not counted).
    pub underruns: u64,
    /// Monitor samples dropped because the monitor ring was full.
    pub monitor_dropped: u64,
    /// Errors the devices reported and carried on from (xruns and the like).
    pub stream_errors: u64,
    /// Capture ring fill now, frames.
    pub ring_fill: u64,
    /// Largest capture ring fill seen, frames.
    pub ring_fill_max: u64,
    /// Capture ring capacity, frames.
    pub ring_capacity: u64,
    /// Median processing time per 10 ms frame, µs.
    pub frame_time_p50_us: u64,
    /// 99th percentile of the processing time per frame, µs.
    pub frame_time_p99_us: u64,
    /// Longest processing time of a frame, µs.
    pub frame_time_max_us: u64,
    /// Median processing time as a share of the 10 ms frame budget, %.
    pub cpu_percent: f64,
    /// Input level of the latest chunk, dBFS RMS.
    pub input_level_dbfs: f32,
    /// Whether the VAD is in speech.
    pub in_speech: bool,
    /// Estimated end-to-end latency: input device buffer + capture ring + algorithmic
    /// (+ monitor ring and output buffer when monitoring), ms.
    pub latency_ms: f64,
    /// The algorithmic part of the latency, ms.
    pub algorithmic_latency_ms: f64,
    /// Output callbacks so far (monitor and player).
    pub output_callbacks: u64,
    /// Frames the output callbacks wrote to the device.
    pub output_frames: u64,
    /// Samples given to the player ([`crate::engine::EnginePlayer`]) that did not fit
    /// in its queue (or came at an unsupported rate) and were dropped.
    pub player_dropped: u64,
    /// Render samples (what the output played, for the echo canceller) dropped on the
    /// way to the processing thread because their ring was full.
    pub render_dropped: u64,
    /// Captured 10 ms frames that found the render signal short (the echo canceller got
    /// silence for the missing part); see [`crate::Pipeline::render_underruns`].
    pub render_underruns: u64,
    /// Render samples the pipeline forgot because too many were queued; see
    /// [`crate::Pipeline::render_overruns`].
    pub render_overruns: u64,
}

impl EngineStats {
    pub(crate) fn from_shared(shared: &Shared) -> Self {
        let p50 = shared.processing.quantile(0.5);
        Self {
            callbacks: shared.callbacks.load(Relaxed),
            captured_frames: shared.captured_frames.load(Relaxed),
            max_callback_frames: shared.max_callback_frames.load(Relaxed),
            input_frames_processed: shared.input_consumed.load(Relaxed),
            frames_processed: shared.frames_processed.load(Relaxed),
            overruns: shared.overruns.load(Relaxed),
            overrun_frames: shared.overrun_frames.load(Relaxed),
            underruns: shared.underruns.load(Relaxed),
            monitor_dropped: shared.monitor_dropped.load(Relaxed),
            stream_errors: shared.stream_errors.load(Relaxed),
            ring_fill: shared.ring_fill.load(Relaxed),
            ring_fill_max: shared.ring_fill_max.load(Relaxed),
            ring_capacity: 0,
            frame_time_p50_us: p50,
            frame_time_p99_us: shared.processing.quantile(0.99),
            frame_time_max_us: shared.processing.max(),
            cpu_percent: p50 as f64 / 10_000.0 * 100.0,
            input_level_dbfs: f32::from_bits(shared.input_level.load(Relaxed)),
            in_speech: shared.in_speech.load(Relaxed),
            latency_ms: 0.0,
            algorithmic_latency_ms: 0.0,
            output_callbacks: shared.output_callbacks.load(Relaxed),
            output_frames: shared.output_frames.load(Relaxed),
            player_dropped: shared.player_dropped.load(Relaxed),
            render_dropped: shared.render_dropped.load(Relaxed),
            render_underruns: shared.render_underruns.load(Relaxed),
            render_overruns: shared.render_overruns.load(Relaxed),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn histogram_quantiles() {
        let h = TimeHistogram::new();
        for us in 1..=100 {
            h.record(us);
        }
        h.record(5_000);
        assert_eq!(h.quantile(0.5), 51);
        assert_eq!(h.quantile(0.99), 100);
        assert_eq!(h.max(), 5_000);
        assert!(h.quantile(1.0) >= 5_000 && h.quantile(1.0) <= 5_016);
        assert_eq!(TimeHistogram::new().quantile(0.5), 0);
    }
}
