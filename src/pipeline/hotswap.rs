//! Changing the configuration of a running pipeline without a click.
//!
//! [`HotSwap`] wraps a [`Pipeline`]. [`HotSwap::set_config`] builds the new pipeline,
//! warms it with the last 200 ms of input (so its noise estimate and RNNoise state are
//! not starting cold), and then runs old and new side by side for 10 ms while the output
//! cross-fades from one to the other. A configuration with another latency moves the
//! output in time by the difference; the cross-fade hides the seam.
//!
//! The two halves of a change can also run on two threads: a [`SwapBuilder`] (from
//! [`HotSwap::builder`]) builds and warms the new pipeline on a control thread, reading
//! the recent input without a lock, and [`HotSwap::install`] hands it to the processing
//! thread, which neither allocates nor frees for it (with
//! [`HotSwap::park_retired`], the pipeline that leaves is kept for the caller to free
//! elsewhere).
//!
//! Strength and bypass changes need no swap: they cross-fade inside the pipeline
//! ([`HotSwap::set_strength`], [`HotSwap::set_bypass`]).

use std::collections::VecDeque;
use std::sync::atomic::Ordering::{Acquire, Relaxed, Release};
use std::sync::atomic::{fence, AtomicU32, AtomicU64, AtomicUsize};
use std::sync::Arc;

use super::Pipeline;
use crate::config::Config;
use crate::dsp::convert::PcmSample;
use crate::dsp::vad::VadEvent;
use crate::error::{Error, Result};

/// Input kept for warming a new pipeline, ms.
const HISTORY_MS: usize = 200;
/// Length of the cross-fade between two pipelines, ms.
const FADE_MS: usize = 10;

/// A pipeline whose configuration can change while it runs: [`HotSwap::set_config`]
/// warms the new pipeline on the last 200 ms of input and cross-fades to it over 10 ms.
///
/// # Examples
///
/// ```
/// use clearvox::pipeline::HotSwap;
/// use clearvox::Preset;
///
/// let mut hot = HotSwap::new(&Preset::VoiceChat.config(), 48_000, 1)?;
/// let ten_ms = [0.0f32; 480];
/// let mut out = vec![0.0f32; hot.output_frames_max(ten_ms.len())];
/// for _ in 0..50 {
///     let n = hot.process_into_buffer(&ten_ms, &mut out)?;
///     // ... play or send out[..n] ...
/// }
///
/// // The device is short of CPU: change to the spectral gate alone, without a click.
/// // (This builds a pipeline: call it from a control thread, not an audio callback.)
/// assert_eq!(hot.latency(), 960); // RNNoise and the gate: 20 ms
/// hot.set_config(&Preset::LowCpu.config())?;
/// // The gate alone is 10 ms late: the output moves 10 ms earlier, under the cross-fade.
/// assert_eq!(hot.latency(), 480);
/// for _ in 0..50 {
///     hot.process_into_buffer(&ten_ms, &mut out)?;
/// }
///
/// // Strength and bypass need no new pipeline.
/// hot.set_strength(0.5)?;
/// # Ok::<(), clearvox::Error>(())
/// ```
pub struct HotSwap {
    current: Pipeline,
    previous: Option<Pipeline>,
    /// A pipeline whose cross-fade ended, kept for the caller ([`HotSwap::park_retired`]).
    retired: Option<Pipeline>,
    park: bool,
    fade_done: usize,
    fade_len: usize,
    new_fifo: VecDeque<f32>,
    old_fifo: VecDeque<f32>,
    shared: Arc<Shared>,
    scratch_new: Vec<f32>,
    scratch_old: Vec<f32>,
    chunk: Vec<f32>,
}

/// What a [`HotSwap`] shares with its [`SwapBuilder`]s: the stream's format, the recent
/// input and the output bound.
///
/// The recent input is a ring of `f32` bits written by the processing side alone, read
/// by builders as a sequence lock is: `claimed` moves before a step's samples are
/// written and `written` after, so a reader that finds `claimed` advanced knows which
/// of the samples it read may have been overwritten meanwhile.
#[derive(Debug)]
struct Shared {
    input_rate: u32,
    output_rate: u32,
    channels: usize,
    ring: Box<[AtomicU32]>,
    /// Samples whose writing has begun, since creation.
    claimed: AtomicU64,
    /// Samples written, since creation.
    written: AtomicU64,
    /// Where the input began after the latest reset (older samples are not history).
    since: AtomicU64,
    /// Samples of history a new pipeline is warmed with: 200 ms of frames.
    keep: usize,
    /// The largest output of one step among the pipelines built for this stream.
    per_step: AtomicUsize,
    /// The capacity of the cross-fade's queues.
    fifo_cap: usize,
}

impl Shared {
    /// Appends one step's samples to the ring (processing side only).
    fn remember(&self, samples: &[f32]) {
        let start = self.written.load(Relaxed);
        let end = start + samples.len() as u64;
        self.claimed.store(end, Relaxed);
        fence(Release);
        let len = self.ring.len() as u64;
        for (i, v) in samples.iter().enumerate() {
            self.ring[((start + i as u64) % len) as usize].store(v.to_bits(), Relaxed);
        }
        self.written.store(end, Release);
    }

    /// The latest input, up to 200 ms of whole frames, without the samples the
    /// processing side may have overwritten during the copy.
    fn history(&self) -> Vec<f32> {
        let len = self.ring.len() as u64;
        let end = self.written.load(Acquire);
        let start = end
            .saturating_sub(self.keep as u64)
            .max(self.since.load(Acquire).min(end));
        let copy: Vec<f32> = (start..end)
            .map(|i| f32::from_bits(self.ring[(i % len) as usize].load(Relaxed)))
            .collect();
        fence(Acquire);
        let claimed = self.claimed.load(Relaxed);
        // Samples from `claimed - len` on were not overwritten during the copy; both
        // bounds are whole frames, as every step is.
        let intact_from = claimed.saturating_sub(len).max(start);
        let skip = (intact_from - start).min(copy.len() as u64) as usize;
        copy[skip..].to_vec()
    }

    fn output_frames_max(&self, input_frames: usize) -> usize {
        let steps = input_frames.div_ceil(STEP_FRAMES).max(1);
        steps
            .saturating_mul(self.per_step.load(Relaxed))
            .saturating_add(self.fifo_cap)
    }
}

/// Builds pipelines for a [`HotSwap`] on another thread: [`SwapBuilder::build`] makes the
/// new pipeline and warms it on the stream's latest input, read without a lock;
/// [`HotSwap::install`] then takes it over on the processing thread.
///
/// # Examples
///
/// ```
/// use clearvox::pipeline::HotSwap;
/// use clearvox::Preset;
///
/// let mut hot = HotSwap::new(&Preset::VoiceChat.config(), 48_000, 1)?;
/// let builder = hot.builder();
/// // On a control thread: building allocates, and takes as long as it takes.
/// let next = std::thread::spawn(move || builder.build(&Preset::LowCpu.config()))
///     .join()
///     .expect("the control thread does not panic")?;
/// // On the processing thread: no allocation, no lock.
/// hot.install(next);
/// assert_eq!(hot.latency(), 480); // the gate alone: 10 ms
/// # Ok::<(), clearvox::Error>(())
/// ```
#[derive(Clone, Debug)]
pub struct SwapBuilder {
    shared: Arc<Shared>,
}

impl SwapBuilder {
    /// A pipeline of `config` for this stream (its input rate and channels, the running
    /// pipeline's output rate), warmed on the latest 200 ms of input. It allocates.
    pub fn build(&self, config: &Config) -> Result<Pipeline> {
        let s = &self.shared;
        let config = Config {
            output_rate: Some(s.output_rate),
            ..config.clone()
        };
        let mut next = Pipeline::new(&config, s.input_rate, s.channels)?;
        next.warm_up();
        // Warm it on what was heard lately; its output so far is not used.
        let mut discard = Vec::new();
        next.process(&s.history(), &mut discard)?;
        while next.pop_event().is_some() {}
        s.per_step
            .fetch_max(next.output_frames_max(STEP_FRAMES), Relaxed);
        Ok(next)
    }

    /// As [`HotSwap::output_frames_max`], readable from any thread.
    pub fn output_frames_max(&self, input_frames: usize) -> usize {
        self.shared.output_frames_max(input_frames)
    }

    /// The stream's output rate, Hz.
    pub fn output_rate(&self) -> u32 {
        self.shared.output_rate
    }
}

/// Input frames handled per internal step (bounds the scratch buffers).
const STEP_FRAMES: usize = 1024;

impl std::fmt::Debug for HotSwap {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HotSwap")
            .field("current", &self.current)
            .field("cross_fading", &self.previous.is_some())
            .finish_non_exhaustive()
    }
}

impl HotSwap {
    /// A pipeline as [`Pipeline::new`] builds it.
    pub fn new(config: &Config, input_rate: u32, channels: usize) -> Result<Self> {
        let current = Pipeline::new(config, input_rate, channels)?;
        let keep = input_rate as usize * HISTORY_MS / 1000 * channels;
        let fade_len = current.output_rate() as usize * FADE_MS / 1000;
        let bound = current.output_frames_max(STEP_FRAMES);
        let new_fifo = VecDeque::with_capacity(4 * bound + 4096);
        let shared = Arc::new(Shared {
            input_rate,
            output_rate: current.output_rate(),
            channels,
            ring: (0..keep + STEP_FRAMES * channels)
                .map(|_| AtomicU32::new(0))
                .collect(),
            claimed: AtomicU64::new(0),
            written: AtomicU64::new(0),
            since: AtomicU64::new(0),
            keep,
            per_step: AtomicUsize::new(bound),
            fifo_cap: new_fifo.capacity(),
        });
        Ok(Self {
            current,
            previous: None,
            retired: None,
            park: false,
            fade_done: 0,
            fade_len,
            new_fifo,
            old_fifo: VecDeque::with_capacity(4 * bound + 4096),
            shared,
            scratch_new: vec![0.0; 4 * bound + 4096],
            scratch_old: vec![0.0; 4 * bound + 4096],
            chunk: vec![0.0; STEP_FRAMES * channels],
        })
    }

    /// The running pipeline.
    pub fn pipeline(&self) -> &Pipeline {
        &self.current
    }

    /// The running pipeline, to change what can change in place.
    pub fn pipeline_mut(&mut self) -> &mut Pipeline {
        &mut self.current
    }

    /// The maximum possible number of output frames (mono samples) of a call with
    /// `input_frames` frames, in any state, a cross-fade included: the capacity
    /// [`HotSwap::process_into_buffer`] asks for.
    ///
    /// The bound covers every pipeline built for this stream so far, so it never
    /// shrinks: a buffer sized once serves across configuration changes to pipelines of
    /// no larger output.
    pub fn output_frames_max(&self, input_frames: usize) -> usize {
        self.shared.output_frames_max(input_frames)
    }

    /// Switches to `config` with a 10 ms cross-fade. The input rate, channel count and
    /// output rate stay as they are. This builds a pipeline and so allocates: call it
    /// from a control thread, not from an audio callback (or build there with
    /// [`HotSwap::builder`] and [`HotSwap::install`] here).
    pub fn set_config(&mut self, config: &Config) -> Result<()> {
        let next = self.builder().build(config)?;
        drop(self.install(next));
        Ok(())
    }

    /// A builder of pipelines for this stream, for another thread.
    pub fn builder(&self) -> SwapBuilder {
        SwapBuilder {
            shared: Arc::clone(&self.shared),
        }
    }

    /// Switches to `next` (from [`SwapBuilder::build`]) with a 10 ms cross-fade, without
    /// allocating or freeing: returns the pipeline that leaves at once (the one that was
    /// fading out, if a cross-fade was under way), for the caller to drop where it may.
    pub fn install(&mut self, next: Pipeline) -> Option<Pipeline> {
        let old = std::mem::replace(&mut self.current, next);
        let gone = self.previous.replace(old);
        self.fade_done = 0;
        self.new_fifo.clear();
        self.old_fifo.clear();
        gone
    }

    /// From now on, keeps a pipeline whose cross-fade ends (or that a reset or flush
    /// drops) for [`HotSwap::take_retired`] instead of freeing it on the processing
    /// thread. If the caller does not take it, a later one replaces it and it is freed.
    pub fn park_retired(&mut self) {
        self.park = true;
    }

    /// The pipeline parked by [`HotSwap::park_retired`], if any.
    pub fn take_retired(&mut self) -> Option<Pipeline> {
        self.retired.take()
    }

    fn retire_previous(&mut self) {
        if let Some(old) = self.previous.take() {
            if self.park {
                self.retired = Some(old);
            }
        }
    }

    /// See [`Pipeline::set_strength`].
    pub fn set_strength(&mut self, strength: f32) -> Result<()> {
        if let Some(p) = self.previous.as_mut() {
            p.set_strength(strength)?;
        }
        self.current.set_strength(strength)
    }

    /// See [`Pipeline::set_bypass`].
    pub fn set_bypass(&mut self, bypass: bool) {
        if let Some(p) = self.previous.as_mut() {
            p.set_bypass(bypass);
        }
        self.current.set_bypass(bypass);
    }

    /// The latency of the running pipeline, output samples.
    pub fn latency(&self) -> usize {
        self.current.latency()
    }

    /// The oldest pending VAD event of the running pipeline.
    pub fn pop_event(&mut self) -> Option<VadEvent> {
        self.current.pop_event()
    }

    /// Returns to the freshly built state of the running configuration.
    pub fn reset(&mut self) {
        self.retire_previous();
        self.new_fifo.clear();
        self.old_fifo.clear();
        let written = self.shared.written.load(Relaxed);
        self.shared.since.store(written, Release);
        self.current.reset();
    }

    /// Drains the tail (see [`Pipeline::flush`]); a cross-fade in progress ends at once.
    pub fn flush(&mut self, output: &mut Vec<f32>) -> Result<()> {
        self.retire_previous();
        output.extend(self.new_fifo.drain(..));
        self.current.flush(output)
    }

    /// Processes interleaved input into `output` (which must hold
    /// [`HotSwap::output_frames_max`] samples); returns the samples written. Does not
    /// allocate.
    pub fn process_into_buffer<S: PcmSample>(
        &mut self,
        input: &[S],
        output: &mut [f32],
    ) -> Result<usize> {
        let channels = self.current.channels();
        if !input.len().is_multiple_of(channels) {
            return Err(Error::PartialFrame {
                len: input.len(),
                channels,
            });
        }
        if input.is_empty() {
            return Ok(0);
        }
        let needed = self.output_frames_max(input.len() / channels);
        if output.len() < needed {
            return Err(Error::OutputTooSmall {
                got: output.len(),
                needed,
            });
        }
        let mut written = 0;
        for step in input.chunks(STEP_FRAMES * channels) {
            let n = step.len();
            for (c, s) in self.chunk.iter_mut().zip(step) {
                *c = s.to_f32();
            }
            self.shared.remember(&self.chunk[..n]);
            written += self.step(n, &mut output[written..])?;
        }
        Ok(written)
    }

    /// Convenience form of [`HotSwap::process_into_buffer`] that appends to a `Vec`.
    pub fn process<S: PcmSample>(&mut self, input: &[S], output: &mut Vec<f32>) -> Result<()> {
        let start = output.len();
        output.resize(
            start + self.output_frames_max(input.len() / self.current.channels()),
            0.0,
        );
        let n = self.process_into_buffer(input, &mut output[start..])?;
        output.truncate(start + n);
        Ok(())
    }

    fn step(&mut self, n: usize, output: &mut [f32]) -> Result<usize> {
        let input = &self.chunk[..n];
        let Some(old) = self.previous.as_mut() else {
            // Steady state: whatever a finished cross-fade left over goes first.
            let mut written = 0;
            while let Some(v) = self.new_fifo.pop_front() {
                output[written] = v;
                written += 1;
            }
            return Ok(written
                + self
                    .current
                    .process_into_buffer(input, &mut output[written..])?);
        };
        let a = self
            .current
            .process_into_buffer(input, &mut self.scratch_new)?;
        let b = old.process_into_buffer(input, &mut self.scratch_old)?;
        self.new_fifo.extend(&self.scratch_new[..a]);
        self.old_fifo.extend(&self.scratch_old[..b]);
        let mut written = 0;
        while let (Some(new), Some(old)) = (self.new_fifo.front(), self.old_fifo.front()) {
            let w = (self.fade_done + 1) as f32 / self.fade_len.max(1) as f32;
            output[written] = w * new + (1.0 - w) * old;
            written += 1;
            self.new_fifo.pop_front();
            self.old_fifo.pop_front();
            self.fade_done += 1;
            if self.fade_done >= self.fade_len {
                self.retire_previous();
                self.old_fifo.clear();
                break;
            }
        }
        if self.previous.is_none() {
            while let Some(v) = self.new_fifo.pop_front() {
                output[written] = v;
                written += 1;
            }
        }
        Ok(written)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Preset;

    fn tone(n: usize) -> Vec<f32> {
        (0..n)
            .map(|i| 0.3 * (i as f32 * 2.0 * std::f32::consts::PI * 300.0 / 48_000.0).sin())
            .collect()
    }

    #[test]
    fn without_a_swap_it_is_the_pipeline() {
        let x = tone(48_000);
        let mut a = HotSwap::new(&Config::default(), 48_000, 1).unwrap();
        let mut b = Pipeline::new(&Config::default(), 48_000, 1).unwrap();
        let (mut ya, mut yb) = (Vec::new(), Vec::new());
        for c in x.chunks(777) {
            a.process(c, &mut ya).unwrap();
            b.process(c, &mut yb).unwrap();
        }
        assert_eq!(ya, yb);
    }

    #[test]
    fn built_on_another_thread_and_installed_it_is_set_config() {
        let x = tone(48_000);
        let mut a = HotSwap::new(&Config::default(), 48_000, 1).unwrap();
        let mut b = HotSwap::new(&Config::default(), 48_000, 1).unwrap();
        let (mut ya, mut yb) = (Vec::new(), Vec::new());
        a.process(&x[..24_000], &mut ya).unwrap();
        b.process(&x[..24_000], &mut yb).unwrap();
        a.set_config(&Preset::LowCpu.config()).unwrap();
        let builder = b.builder();
        let next = std::thread::spawn(move || builder.build(&Preset::LowCpu.config()))
            .join()
            .unwrap()
            .unwrap();
        b.park_retired();
        assert!(b.install(next).is_none());
        for c in x[24_000..].chunks(500) {
            a.process(c, &mut ya).unwrap();
            b.process(c, &mut yb).unwrap();
        }
        assert_eq!(ya, yb);
        // The old pipeline, its cross-fade over, waits to be freed by the caller.
        assert!(b.take_retired().is_some());
        assert!(b.take_retired().is_none());
    }

    #[test]
    fn a_swap_cross_fades_without_a_jump() {
        let x = tone(96_000);
        let mut p = HotSwap::new(&Preset::Bypass.config(), 48_000, 1).unwrap();
        let mut y = Vec::new();
        p.process(&x[..48_000], &mut y).unwrap();
        let before = y.len();
        p.set_config(&Preset::LowCpu.config()).unwrap();
        for c in x[48_000..].chunks(333) {
            p.process(c, &mut y).unwrap();
        }
        assert!(y.len() >= 96_000 - 2_000, "{}", y.len());
        // Around the swap the largest sample-to-sample step stays that of a 300 Hz tone
        // (a click would jump by far more).
        let max_step = y[before - 100..before + 2_000]
            .windows(2)
            .map(|w| (w[1] - w[0]).abs())
            .fold(0.0f32, f32::max);
        let tone_step = 0.3 * 2.0 * std::f32::consts::PI * 300.0 / 48_000.0;
        assert!(max_step < tone_step * 1.6, "step {max_step} vs {tone_step}");
        assert_eq!(p.latency(), p.pipeline().latency());
    }
}
