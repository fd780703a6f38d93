//! The enhancement pipeline: a [`Config`] turned into a chain of DSP stages that takes
//! audio in any chunk size, at any supported rate and channel count.
//!
//! ```text
//! interleaved input (any rate, 1–8 ch, f32 or i16)
//!   → downmix / pick channel → sanitise NaN/Inf
//!   → resample to 48 kHz (rubato, streaming)
//!   → 10 ms frames: high-pass? → RNNoise or DeepFilterNet3 (+ voice probability)
//!                   → VAD state machine
//!                   → spectral gate (guided by the noisy input) → AGC + limiter
//!   → resample to the output rate
//!   → strength / attenuation-limit mix and bypass cross-fade with the dry input
//! ```
//!
//! **Dry path.** The strength mix, the attenuation limit and the bypass blend the
//! enhanced signal with the latency-aligned input at the output rate, after every
//! stage: strength 0 and bypass give the input itself. When the output rate is the
//! input rate, the dry signal is the (downmixed) input delayed by
//! [`Pipeline::latency`], untouched by any resampler, so bypass is bit-exact at every
//! rate; otherwise it is the 48 kHz input resampled along with the enhanced signal.
//!
//! **Streaming equals offline.** Input is gathered into fixed chunks and frames
//! internally, so the output does not depend on how the caller splits the input: one
//! call over the whole signal and a million one-sample calls give the same samples.
//!
//! **Latency.** [`Pipeline::latency`] is the sum of the stages' latencies (converted to
//! output samples): output sample `n` belongs to input instant `n - latency`.
//! [`Pipeline::flush`] drains the tail; [`Aligner`] removes the latency so an offline
//! result lines up with its input sample for sample and has the same length.
//!
//! **Real time.** After [`Pipeline::warm_up`] on the thread that runs it,
//! [`Pipeline::process_into_buffer`] does not allocate, lock or block.
//!
//! **Layout.** This file holds [`Pipeline`] itself; `chain.rs` the stages in order,
//! `mix.rs` the output mix with the dry input, `offline.rs` the latency removal for
//! whole files ([`Aligner`], [`enhance`]), `hotswap.rs` configuration changes while
//! running ([`HotSwap`]) and `sink.rs` the destinations of enhanced frames.

mod chain;
mod hotswap;
mod mix;
mod offline;
mod render;
mod sink;

use std::collections::VecDeque;

use crate::config::Config;
use crate::dsp::convert::{sanitize, Downmixer, PcmSample};
use crate::dsp::resample::StreamResampler;
use crate::dsp::spectral_gate::NoiseProfile;
use crate::dsp::vad::VadEvent;
use crate::dsp::{FRAME_LEN, SAMPLE_RATE};
use crate::error::{Error, Result};
use crate::limits::check_sample_rate;
use chain::{feed, total_latency, Chain, EventQueue, Stages};
use mix::OutputMix;

pub use hotswap::{HotSwap, SwapBuilder};
pub use offline::{enhance, enhance_with_render, Aligner, RenderFeeder};
pub use render::{render_ring, RenderReceiver, RenderSender, ResponsePlayer};
pub use sink::{
    frame_channel, ChannelSink, EnhancedFrame, FrameReceiver, FrameSink, Framer, OwnedFrame,
};

/// Input frames converted per internal step (bounds the scratch buffers).
const MONO_CHUNK: usize = 1024;
/// Events kept for the caller before the oldest is dropped.
const EVENT_CAPACITY: usize = 256;

/// The enhancement pipeline. See the [module documentation](self).
///
/// # Examples
///
/// Streaming a signal through in chunks of any size, then draining the tail (the
/// [crate documentation](crate) shows the allocation-free form for real-time code):
///
/// ```
/// use clearvox::{Config, Pipeline};
///
/// let mut pipeline = Pipeline::new(&Config::default(), 16_000, 1)?;
/// let input: Vec<f32> = (0..16_000).map(|n| 0.1 * (n as f32 * 0.2).sin()).collect();
///
/// let mut output = Vec::new();
/// for chunk in input.chunks(256) {
///     pipeline.process(chunk, &mut output)?;
/// }
/// pipeline.flush(&mut output)?;
///
/// // Output sample n belongs to input instant n - latency: the stream is the input
/// // followed by the latency's worth of tail. At 16 kHz the latency is the chain's
/// // 20 ms plus the two resamplers' delays.
/// let latency_ms = pipeline.latency() as f64 * 1000.0 / 16_000.0;
/// assert!((20.0..25.0).contains(&latency_ms));
/// assert_eq!(output.len(), 16_000 + pipeline.latency());
///
/// // A flushed pipeline takes no more input until it is reset.
/// assert!(pipeline.process(&input, &mut output).is_err());
/// pipeline.reset();
/// pipeline.process(&input, &mut output)?;
/// # Ok::<(), clearvox::Error>(())
/// ```
pub struct Pipeline {
    config: Config,
    input_rate: u32,
    output_rate: u32,
    downmix: Downmixer,
    mono: Vec<f32>,
    front: StreamResampler,
    chain: Chain,
    back: StreamResampler,
    /// The dry signal's own output resampler, when the output rate differs from the
    /// input rate (otherwise the dry signal is the input itself).
    dry_back: Option<StreamResampler>,
    mix: OutputMix,
    /// The render format (rate, channels), and its path to the chain when the echo
    /// canceller runs (nothing is held for it otherwise).
    render_format: (u32, usize),
    render: Option<RenderPath>,
    events: VecDeque<VadEvent>,
    events_dropped: u64,
    input_frames: u64,
    output_frames: u64,
    non_finite: u64,
    flushed: bool,
}

impl std::fmt::Debug for Pipeline {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Pipeline")
            .field("preset", &self.config.preset)
            .field("input_rate", &self.input_rate)
            .field("output_rate", &self.output_rate)
            .field("channels", &self.channels())
            .field("latency", &self.latency())
            .field("input_frames", &self.input_frames)
            .field("output_frames", &self.output_frames)
            .field("flushed", &self.flushed)
            .finish_non_exhaustive()
    }
}

impl Pipeline {
    /// A pipeline for `channels`-channel input at `input_rate` Hz. The output is mono at
    /// `config.output_rate` (or the input rate).
    pub fn new(config: &Config, input_rate: u32, channels: usize) -> Result<Self> {
        config.validate()?;
        check_sample_rate(input_rate)?;
        let output_rate = config.output_rate.unwrap_or(input_rate);
        let downmix = Downmixer::new(channels, config.channel)?;
        let front = StreamResampler::new(input_rate, SAMPLE_RATE, config.resampler)?;
        let back = StreamResampler::new(SAMPLE_RATE, output_rate, config.resampler)?;
        let chain = Chain::new(config)?;
        let latency = total_latency(&front, &chain, &back, output_rate);
        let (dry_back, pad) = if output_rate == input_rate {
            (None, latency)
        } else {
            let twin = StreamResampler::new(SAMPLE_RATE, output_rate, config.resampler)?;
            (Some(twin), 0)
        };
        // How far the dry input can run ahead of the output: one internal chunk of
        // input, and what the resamplers and the frame assembler hold.
        let held = rescale(
            (MONO_CHUNK + front.chunk_len()) as u64,
            input_rate,
            output_rate,
        ) as usize
            + rescale(4 * FRAME_LEN as u64, SAMPLE_RATE, output_rate) as usize;
        let render = RenderPath::for_config(input_rate, 1, config)?;
        let mut pipeline = Self {
            mix: OutputMix::new(config, output_rate, pad, held),
            render_format: (input_rate, 1),
            render,
            dry_back,
            front,
            back,
            chain,
            config: config.clone(),
            input_rate,
            output_rate,
            downmix,
            mono: vec![0.0; MONO_CHUNK],
            events: VecDeque::with_capacity(EVENT_CAPACITY),
            events_dropped: 0,
            input_frames: 0,
            output_frames: 0,
            non_finite: 0,
            flushed: false,
        };
        pipeline.align_render();
        Ok(pipeline)
    }

    /// The configuration the pipeline was built from.
    pub fn config(&self) -> &Config {
        &self.config
    }

    /// Input rate, Hz.
    pub fn input_rate(&self) -> u32 {
        self.input_rate
    }

    /// Output rate, Hz.
    pub fn output_rate(&self) -> u32 {
        self.output_rate
    }

    /// Channels per input frame.
    pub fn channels(&self) -> usize {
        self.downmix.channels()
    }

    /// Total latency in output samples: output sample `n` belongs to input instant
    /// `n - latency()`.
    pub fn latency(&self) -> usize {
        total_latency(&self.front, &self.chain, &self.back, self.output_rate)
    }

    /// The latency of each 48 kHz stage in the chain, in order, samples at 48 kHz.
    pub fn stage_latencies(&self) -> Vec<(&'static str, usize)> {
        let mut v = vec![("resample_in", self.front.latency())];
        v.extend(self.chain.stages());
        v.push(("resample_out", self.back.latency()));
        v
    }

    /// Input frames taken so far.
    pub fn input_frames(&self) -> u64 {
        self.input_frames
    }

    /// Output samples produced so far.
    pub fn output_frames(&self) -> u64 {
        self.output_frames
    }

    /// NaN/infinite input samples replaced by silence so far.
    pub fn non_finite_samples(&self) -> u64 {
        self.non_finite
    }

    /// VAD events dropped because the caller did not collect them in time.
    pub fn events_dropped(&self) -> u64 {
        self.events_dropped
    }

    /// Takes the oldest pending VAD event. Positions are in output samples.
    pub fn pop_event(&mut self) -> Option<VadEvent> {
        self.events.pop_front()
    }

    /// Whether the VAD state machine is in speech.
    pub fn in_speech(&self) -> bool {
        self.chain.in_speech()
    }

    /// The number of output frames (mono samples) the next call with `input_frames`
    /// frames will produce at most. It depends on the input the stages still hold from
    /// earlier calls: size a buffer that is reused with [`Pipeline::output_frames_max`].
    pub fn output_frames_next(&self, input_frames: usize) -> usize {
        let at_48k = self.front.output_frames_next(input_frames);
        let frames = (self.chain.pending() + at_48k) / FRAME_LEN * FRAME_LEN;
        self.back.output_frames_next(frames)
    }

    /// The maximum possible number of output frames (mono samples) of a call with
    /// `input_frames` frames, in any state: size a buffer once with this and every call
    /// of that length fits.
    pub fn output_frames_max(&self, input_frames: usize) -> usize {
        let at_48k = self.front.output_frames_max(input_frames);
        let frames = at_48k.div_ceil(FRAME_LEN) * FRAME_LEN;
        self.back.output_frames_max(frames)
    }

    /// Changes the wet/dry mix (0 = dry, 1 = fully enhanced), with a 10 ms cross-fade.
    pub fn set_strength(&mut self, strength: f32) -> Result<()> {
        if !(0.0..=1.0).contains(&strength) {
            return Err(Error::Config(format!(
                "strength = {strength}: must be in 0..1"
            )));
        }
        self.config.strength = strength;
        self.mix.set_strength(strength);
        Ok(())
    }

    /// Switches bypass on or off, with a 10 ms cross-fade; the latency does not change.
    pub fn set_bypass(&mut self, bypass: bool) {
        self.config.bypass = bypass;
        self.mix.set_bypass(bypass);
    }

    /// Gives the spectral gate a noise profile measured from a noise-only clip
    /// (interleaved `channels`-channel audio at `rate` Hz; any supported rate and
    /// channel count). In stationary mode it is the profile; in non-stationary mode it
    /// seeds the tracker.
    pub fn set_noise_profile(&mut self, noise: &[f32], rate: u32, channels: usize) -> Result<()> {
        let Some(gate) = self.chain.gate_mut() else {
            return Err(Error::Config(
                "a noise profile needs the spectral gate (gate mode stationary or nonstationary)"
                    .into(),
            ));
        };
        check_sample_rate(rate)?;
        let downmix = Downmixer::new(channels, self.config.channel)?;
        if !noise.len().is_multiple_of(channels) {
            return Err(Error::PartialFrame {
                len: noise.len(),
                channels,
            });
        }
        let mut mono = vec![0.0; noise.len() / channels];
        downmix.process(noise, &mut mono);
        sanitize_bounded(&mut mono);
        let mut front = StreamResampler::new(rate, SAMPLE_RATE, self.config.resampler)?;
        let mut at_48k =
            Vec::with_capacity(rescale(mono.len() as u64, rate, SAMPLE_RATE) as usize + 1);
        front.process(&mono, &mut |x| at_48k.extend_from_slice(x))?;
        let skip = front.latency().min(at_48k.len());
        let profile = NoiseProfile::from_samples(&at_48k[skip..], gate.config())?;
        gate.set_noise_profile(profile)
    }

    /// Declares the format of the render signal (what the loudspeaker plays, for the
    /// echo canceller): interleaved `channels` channels at `rate` Hz, any supported
    /// rate and channel count. The default is mono at the input rate. Drops render
    /// queued so far; allocates (not for an audio thread).
    pub fn set_render_format(&mut self, rate: u32, channels: usize) -> Result<()> {
        check_sample_rate(rate)?;
        self.render = RenderPath::for_config(rate, channels, &self.config)?;
        self.render_format = (rate, channels);
        self.chain.render_queue().clear();
        self.align_render();
        Ok(())
    }

    /// The render signal's rate, Hz (see [`Pipeline::set_render_format`]).
    pub fn render_rate(&self) -> u32 {
        self.render_format.0
    }

    /// Channels per render frame (see [`Pipeline::set_render_format`]).
    pub fn render_channels(&self) -> usize {
        self.render_format.1
    }

    /// Gives the echo canceller what the loudspeaker played (interleaved, in the render
    /// format), before the capture it may be heard in is processed. Render and capture
    /// are on one clock: the render sample pushed as the `n`-th is taken to have been
    /// played at capture instant `n` (the canceller finds the acoustic delay after
    /// that itself). Render that is missing when a captured frame needs it is silence;
    /// more than 2 s queued forgets the oldest. Without the echo canceller in the
    /// configuration the render is ignored. Does not allocate.
    pub fn push_render<S: PcmSample>(&mut self, render: &[S]) -> Result<()> {
        let channels = self.render_format.1;
        if !render.len().is_multiple_of(channels) {
            return Err(Error::PartialFrame {
                len: render.len(),
                channels,
            });
        }
        let Some(RenderPath {
            downmix,
            resampler,
            mono,
            skip,
        }) = self.render.as_mut()
        else {
            return Ok(());
        };
        let queue = self.chain.render_queue();
        for chunk in render.chunks(MONO_CHUNK * channels) {
            let frames = chunk.len() / channels;
            downmix.process(chunk, mono);
            sanitize_bounded(&mut mono[..frames]);
            resampler.process(&mono[..frames], &mut |x| {
                let drop = (*skip).min(x.len());
                *skip -= drop;
                queue.push(&x[drop..]);
            })?;
        }
        Ok(())
    }

    /// Render samples (at 48 kHz) queued for captured frames still to come.
    pub fn render_queued(&self) -> usize {
        self.chain.render_queue_ref().len()
    }

    /// Captured frames that found the render short since the render began (silence
    /// was used for the missing part).
    pub fn render_underruns(&self) -> u64 {
        self.chain.render_queue_ref().underrun_frames()
    }

    /// Render samples (at 48 kHz) forgotten because more than 2 s were queued.
    pub fn render_overruns(&self) -> u64 {
        self.chain.render_queue_ref().overrun_samples()
    }

    /// The echo canceller's state, when the configuration has one.
    pub fn echo_stats(&self) -> Option<crate::dsp::echo::EchoStats> {
        self.chain.echo().map(|e| e.stats())
    }

    /// Lines the render path up with the capture path: the render resampler's delay is
    /// skipped and the capture resampler's is added, so that render pushed in step
    /// with the capture reaches the chain at the capture instant it was played at.
    fn align_render(&mut self) {
        self.chain.render_queue().clear();
        if let Some(render) = self.render.as_mut() {
            render.skip = render.resampler.latency();
            let lead = self.front.latency();
            self.chain.render_queue().push_silence(lead);
        }
    }

    /// Runs one frame of silence through every stage and resets: afterwards, processing
    /// on this thread does not allocate (RNNoise's FFT keeps per-thread plans that its
    /// first frame creates), except in DeepFilterNet3, whose network calls allocate
    /// their tensors (see [`crate::dsp::deepfilter`]). Call it on the thread that will
    /// run the pipeline.
    pub fn warm_up(&mut self) {
        let mut frame = [0.0; FRAME_LEN];
        self.chain.process_frame(&mut frame);
        self.reset();
    }

    /// Returns to the freshly-built state (pending input, history and events dropped).
    ///
    /// This rebuilds the denoiser's state and so allocates: not for an audio thread.
    pub fn reset(&mut self) {
        self.front.reset();
        self.chain.reset();
        self.back.reset();
        if let Some(r) = self.dry_back.as_mut() {
            r.reset();
        }
        self.mix.reset();
        self.events.clear();
        self.events_dropped = 0;
        self.input_frames = 0;
        self.output_frames = 0;
        self.non_finite = 0;
        self.flushed = false;
        if let Some(r) = self.render.as_mut() {
            r.reset();
        }
        self.align_render();
    }

    /// Processes interleaved input (`f32` in ±1.0 or `i16`), appending the output to
    /// `output`. Convenience form: it may grow `output` (allocating); real-time code
    /// uses [`Pipeline::process_into_buffer`].
    pub fn process<S: PcmSample>(&mut self, input: &[S], output: &mut Vec<f32>) -> Result<()> {
        self.check_input(input)?;
        output.reserve(self.output_frames_next(input.len() / self.downmix.channels()));
        self.run(input, &mut |x| output.extend_from_slice(x))
    }

    /// Processes interleaved input into `output`, returning the samples written. Does
    /// not allocate. `output` must hold [`Pipeline::output_frames_next`] of the input's
    /// frames, which [`Pipeline::output_frames_max`] always covers.
    pub fn process_into_buffer<S: PcmSample>(
        &mut self,
        input: &[S],
        output: &mut [f32],
    ) -> Result<usize> {
        self.check_input(input)?;
        let needed = self.output_frames_next(input.len() / self.downmix.channels());
        if output.len() < needed {
            return Err(Error::OutputTooSmall {
                got: output.len(),
                needed,
            });
        }
        let mut written = 0;
        self.run(input, &mut |x| {
            output[written..written + x.len()].copy_from_slice(x);
            written += x.len();
        })?;
        Ok(written)
    }

    /// Output samples the input so far corresponds to, plus the latency: the length of
    /// the stream once [`Pipeline::flush`] has drained it.
    pub fn flushed_len(&self) -> u64 {
        duration_at(self.input_frames, self.input_rate, self.output_rate) + self.latency() as u64
    }

    /// Drains the tail: appends the output still held inside the stages, so that the
    /// stream holds [`Pipeline::flushed_len`] samples. Ends the stream: call
    /// [`Pipeline::reset`] before processing more.
    pub fn flush(&mut self, output: &mut Vec<f32>) -> Result<()> {
        if self.flushed {
            return Ok(());
        }
        let target = self.flushed_len();
        self.mono.fill(0.0);
        // Each round pushes MONO_CHUNK input frames; the tail is at most the latency
        // plus the internal chunks, so this bound is never reached in practice.
        let max_rounds = 64 + (self.latency() * 4 + 10 * FRAME_LEN) / MONO_CHUNK * 8;
        for _ in 0..max_rounds {
            if self.output_frames >= target {
                break;
            }
            let mut produced = self.output_frames;
            let mut sink = |x: &[f32]| {
                let room = target.saturating_sub(produced) as usize;
                let n = room.min(x.len());
                output.extend_from_slice(&x[..n]);
                produced += n as u64;
            };
            self.feed_mono(MONO_CHUNK, &mut sink)?;
            self.output_frames = produced;
        }
        if self.output_frames < target {
            return Err(Error::Resampler(format!(
                "flush stalled at {} of {target} samples",
                self.output_frames
            )));
        }
        self.flushed = true;
        Ok(())
    }

    fn check_input<S>(&self, input: &[S]) -> Result<()> {
        if self.flushed {
            return Err(Error::Flushed);
        }
        let channels = self.downmix.channels();
        if !input.len().is_multiple_of(channels) {
            return Err(Error::PartialFrame {
                len: input.len(),
                channels,
            });
        }
        Ok(())
    }

    fn run<S: PcmSample>(&mut self, input: &[S], sink: &mut impl FnMut(&[f32])) -> Result<()> {
        let channels = self.downmix.channels();
        for chunk in input.chunks(MONO_CHUNK * channels) {
            let frames = chunk.len() / channels;
            self.downmix.process(chunk, &mut self.mono);
            self.non_finite += sanitize_bounded(&mut self.mono[..frames]) as u64;
            self.input_frames += frames as u64;
            let mut produced = 0u64;
            self.feed_mono(frames, &mut |x: &[f32]| {
                produced += x.len() as u64;
                sink(x);
            })?;
            self.output_frames += produced;
        }
        Ok(())
    }

    /// Runs the first `frames` samples of the mono buffer through every stage.
    fn feed_mono(&mut self, frames: usize, sink: &mut impl FnMut(&[f32])) -> Result<()> {
        if self.dry_back.is_none() {
            self.mix.push(&self.mono[..frames]);
        }
        let Self {
            mono,
            front,
            chain,
            back,
            dry_back,
            mix,
            events,
            events_dropped,
            output_rate,
            output_frames,
            ..
        } = self;
        feed(
            &mono[..frames],
            Stages {
                front,
                chain,
                back,
                dry_back: dry_back.as_mut(),
                mix,
            },
            *output_frames,
            &mut EventQueue {
                events,
                dropped: events_dropped,
                output_rate: *output_rate,
            },
            sink,
        )
    }
}

/// The render signal's way to the chain: downmix and resampling to 48 kHz.
struct RenderPath {
    downmix: Downmixer,
    resampler: StreamResampler,
    mono: Vec<f32>,
    /// Resampler output still to drop (its delay), see [`Pipeline::align_render`].
    skip: usize,
}

impl RenderPath {
    /// The path for a render format, when `config` runs the echo canceller; checks the
    /// format either way.
    fn for_config(rate: u32, channels: usize, config: &Config) -> Result<Option<Self>> {
        let downmix = Downmixer::new(channels, crate::dsp::convert::ChannelMode::Downmix)?;
        if !config.echo.enabled {
            return Ok(None);
        }
        Ok(Some(Self {
            downmix,
            resampler: StreamResampler::new(rate, SAMPLE_RATE, config.resampler)?,
            mono: vec![0.0; MONO_CHUNK],
            skip: 0,
        }))
    }

    fn reset(&mut self) {
        self.resampler.reset();
    }
}

/// Largest input magnitude the stages get (60 dB over full scale); beyond it, finite
/// samples are clipped.
const MAX_INPUT: f32 = 1_000.0;

/// [`sanitize`] (NaN to 0, ±∞ to ±1, counted) and a clip of finite samples to
/// ±[`MAX_INPUT`], in one pass that costs an ordinary sample one comparison: far larger
/// finite input (a float file or a C caller's buffer of garbage) overflows RNNoise's
/// spectra to infinities, whose inverse FFT then fails where the FFT library assumes it
/// cannot. Returns how many samples were not finite.
fn sanitize_bounded(samples: &mut [f32]) -> usize {
    let mut non_finite = 0;
    for s in samples {
        // The ordinary sample: one comparison (false for NaN too).
        if s.abs() <= MAX_INPUT {
            continue;
        }
        if s.is_finite() {
            *s = s.clamp(-MAX_INPUT, MAX_INPUT);
        } else {
            non_finite += sanitize(std::slice::from_mut(s));
        }
    }
    non_finite
}

/// `n` samples at rate `from` expressed at rate `to`, rounded to nearest.
pub fn rescale(n: u64, from: u32, to: u32) -> u64 {
    if from == to {
        return n;
    }
    ((n as u128 * to as u128 + from as u128 / 2) / from as u128) as u64
}

/// The number of samples at rate `to` that cover `n` samples at rate `from` (rounded
/// up, so no part of the input's duration is lost).
pub fn duration_at(n: u64, from: u32, to: u32) -> u64 {
    if from == to {
        return n;
    }
    (n as u128 * to as u128).div_ceil(from as u128) as u64
}

// A pipeline is built on one thread and run on another (the live engine's processing
// thread): it must be `Send`. It is not shared between threads, so `Sync` is not promised.
const _: () = {
    const fn assert_send<T: Send>() {}
    assert_send::<Pipeline>();
    assert_send::<Aligner>();
    assert_send::<HotSwap>();
    assert_send::<FrameReceiver>();
    assert_send::<ChannelSink>();
    assert_send::<Config>();
};
