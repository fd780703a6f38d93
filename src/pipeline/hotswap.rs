//! Changing the configuration of a running pipeline without a click.
//!
//! [`HotSwap`] wraps a [`Pipeline`]. [`HotSwap::set_config`] builds the new pipeline,
//! warms it with the last 200 ms of input (so its noise estimate and RNNoise state are
//! not starting cold), and then runs old and new side by side for 10 ms while the output
//! cross-fades from one to the other. A configuration with another latency moves the
//! output in time by the difference; the cross-fade hides the seam.
//!
//! Strength and bypass changes need no swap: they cross-fade inside the pipeline
//! ([`HotSwap::set_strength`], [`HotSwap::set_bypass`]).

use std::collections::VecDeque;

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
    fade_done: usize,
    fade_len: usize,
    new_fifo: VecDeque<f32>,
    old_fifo: VecDeque<f32>,
    history: VecDeque<f32>,
    history_cap: usize,
    scratch_new: Vec<f32>,
    scratch_old: Vec<f32>,
    chunk: Vec<f32>,
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
        let history_cap = input_rate as usize * HISTORY_MS / 1000 * channels;
        let fade_len = current.output_rate() as usize * FADE_MS / 1000;
        let bound = current.output_frames_max(STEP_FRAMES);
        Ok(Self {
            current,
            previous: None,
            fade_done: 0,
            fade_len,
            new_fifo: VecDeque::with_capacity(4 * bound + 4096),
            old_fifo: VecDeque::with_capacity(4 * bound + 4096),
            history: VecDeque::with_capacity(history_cap),
            history_cap,
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
    pub fn output_frames_max(&self, input_frames: usize) -> usize {
        let steps = input_frames.div_ceil(STEP_FRAMES).max(1);
        let per_step = self.current.output_frames_max(STEP_FRAMES).max(
            self.previous
                .as_ref()
                .map_or(0, |p| p.output_frames_max(STEP_FRAMES)),
        );
        steps * per_step + self.new_fifo.capacity()
    }

    /// Switches to `config` with a 10 ms cross-fade. The input rate, channel count and
    /// output rate stay as they are. This builds a pipeline and so allocates: call it
    /// from a control thread, not from an audio callback.
    pub fn set_config(&mut self, config: &Config) -> Result<()> {
        let config = Config {
            output_rate: Some(self.current.output_rate()),
            ..config.clone()
        };
        let mut next = Pipeline::new(&config, self.current.input_rate(), self.current.channels())?;
        next.warm_up();
        // Warm it on what was heard lately; its output so far is not used.
        let history: Vec<f32> = self.history.iter().copied().collect();
        let mut discard = Vec::new();
        next.process(&history, &mut discard)?;
        while next.pop_event().is_some() {}
        let old = std::mem::replace(&mut self.current, next);
        self.previous = Some(old);
        self.fade_done = 0;
        self.new_fifo.clear();
        self.old_fifo.clear();
        Ok(())
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
        self.previous = None;
        self.new_fifo.clear();
        self.old_fifo.clear();
        self.history.clear();
        self.current.reset();
    }

    /// Drains the tail (see [`Pipeline::flush`]); a cross-fade in progress ends at once.
    pub fn flush(&mut self, output: &mut Vec<f32>) -> Result<()> {
        self.previous = None;
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
            self.remember(n);
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

    fn remember(&mut self, n: usize) {
        for &v in &self.chunk[..n] {
            if self.history.len() == self.history_cap {
                self.history.pop_front();
            }
            self.history.push_back(v);
        }
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
                self.previous = None;
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
