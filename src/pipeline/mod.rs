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

mod hotswap;
mod sink;

use std::collections::VecDeque;

use crate::config::{Config, Denoiser};
use crate::dsp::agc::Agc;
use crate::dsp::convert::{check_sample_rate, sanitize, Downmixer, PcmSample};
use crate::dsp::delay::DelayLine;
use crate::dsp::highpass::Highpass;
use crate::dsp::resample::StreamResampler;
use crate::dsp::rnnoise::Rnnoise;
use crate::dsp::spectral_gate::{GateMode, NoiseProfile, SpectralGate};
use crate::dsp::vad::{EnergyVoiceDetector, VadEvent, VadStateMachine};
use crate::dsp::{db_to_gain, Frame, FrameInfo, Stage, FRAME_LEN, SAMPLE_RATE};
use crate::error::{Error, Result};

pub use hotswap::HotSwap;
pub use sink::{
    frame_channel, ChannelSink, EnhancedFrame, FrameReceiver, FrameSink, Framer, OwnedFrame,
};

/// Input frames converted per internal step (bounds the scratch buffers).
const MONO_CHUNK: usize = 1024;
/// Events kept for the caller before the oldest is dropped.
const EVENT_CAPACITY: usize = 256;
/// Extra room in the dry ring beyond the latency and the internal chunking, samples.
const DRY_SLACK: usize = 4096;

/// A linear parameter ramp, one step per sample.
#[derive(Clone, Copy, Debug)]
struct Ramp {
    value: f32,
    target: f32,
    step: f32,
}

impl Ramp {
    fn new(value: f32) -> Self {
        Self {
            value,
            target: value,
            step: 0.0,
        }
    }

    /// Moves to `target` over `len` samples.
    fn set(&mut self, target: f32, len: usize) {
        self.target = target;
        self.step = (target - self.value) / len.max(1) as f32;
    }

    fn is_steady_at(&self, v: f32) -> bool {
        self.value == v && self.target == v
    }

    #[inline]
    fn next(&mut self) -> f32 {
        if self.value != self.target {
            self.value += self.step;
            if (self.step > 0.0 && self.value >= self.target)
                || (self.step < 0.0 && self.value <= self.target)
                || self.step == 0.0
            {
                self.value = self.target;
            }
        }
        self.value
    }
}

/// The 48 kHz frame chain.
struct Chain {
    assembler: Frame,
    fill: usize,
    highpass: Option<Highpass>,
    /// The neural denoiser (RNNoise or DeepFilterNet), which also estimates the voice
    /// probability.
    denoiser: Option<Box<dyn Stage>>,
    energy_vad: Option<EnergyVoiceDetector>,
    vad: VadStateMachine,
    gate: Option<SpectralGate>,
    agc: Option<Agc>,
    guide_delay: DelayLine,
    guide: Frame,
    dry_delay: DelayLine,
    dry: Frame,
    frames: u64,
}

impl Chain {
    fn new(config: &Config) -> Result<Self> {
        let highpass = if config.highpass.enabled {
            Some(Highpass::new(config.highpass.cutoff_hz, config.highpass.q)?)
        } else {
            None
        };
        let denoiser = build_denoiser(config)?;
        let gate = if config.gate.mode != GateMode::Off {
            Some(SpectralGate::new(&config.gate)?)
        } else {
            None
        };
        let agc = if config.agc.enabled || config.agc.limiter {
            Some(Agc::new(&config.agc)?)
        } else {
            None
        };
        let denoiser_latency = denoiser.as_ref().map_or(0, |r| r.latency());
        let gate_latency = gate.as_ref().map_or(0, |g| g.latency());
        Ok(Self {
            assembler: [0.0; FRAME_LEN],
            fill: 0,
            energy_vad: denoiser.is_none().then(EnergyVoiceDetector::new),
            vad: VadStateMachine::new(&config.vad)?,
            guide_delay: DelayLine::new(if gate.is_some() { denoiser_latency } else { 0 }),
            guide: [0.0; FRAME_LEN],
            dry_delay: DelayLine::new(denoiser_latency + gate_latency),
            dry: [0.0; FRAME_LEN],
            frames: 0,
            highpass,
            denoiser,
            gate,
            agc,
        })
    }

    /// Latency of the whole chain, samples at 48 kHz.
    fn latency(&self) -> usize {
        self.dry_delay.delay()
    }

    /// Latency between the point where voice probabilities are taken and the output.
    fn post_vad_latency(&self) -> usize {
        self.gate.as_ref().map_or(0, |g| g.latency())
    }

    fn stages(&self) -> Vec<(&'static str, usize)> {
        let mut v = Vec::new();
        if let Some(s) = &self.highpass {
            v.push((s.name(), s.latency()));
        }
        if let Some(s) = &self.denoiser {
            v.push((s.name(), s.latency()));
        }
        if let Some(s) = &self.gate {
            v.push((s.name(), s.latency()));
        }
        if let Some(s) = &self.agc {
            v.push((s.name(), s.latency()));
        }
        v
    }

    /// Takes 48 kHz samples; hands every finished frame to `emit` with the input frame
    /// delayed by the chain's latency (the dry signal) and the VAD event it caused.
    fn push(&mut self, mut x: &[f32], emit: &mut impl FnMut(&Frame, &Frame, Option<VadEvent>)) {
        while !x.is_empty() {
            let take = (FRAME_LEN - self.fill).min(x.len());
            self.assembler[self.fill..self.fill + take].copy_from_slice(&x[..take]);
            self.fill += take;
            x = &x[take..];
            if self.fill == FRAME_LEN {
                self.fill = 0;
                let mut frame = self.assembler;
                let event = self.process_frame(&mut frame);
                emit(&frame, &self.dry, event);
            }
        }
    }

    fn process_frame(&mut self, frame: &mut Frame) -> Option<VadEvent> {
        let mut info = FrameInfo::default();
        self.frames += 1;
        self.dry_delay.process(&frame[..], &mut self.dry);
        if let Some(hp) = &mut self.highpass {
            hp.process(frame, &mut info);
        }
        if let Some(rn) = &mut self.denoiser {
            if self.gate.is_some() {
                self.guide_delay.process(&frame[..], &mut self.guide);
            }
            rn.process(frame, &mut info);
        } else if let Some(d) = &mut self.energy_vad {
            info.voice_prob = Some(d.probability(frame));
        }
        let event = self.vad.update(info.voice_prob.unwrap_or(0.0));
        info.speech = self.vad.in_speech();
        if let Some(g) = &mut self.gate {
            if self.denoiser.is_some() {
                g.process_guided(frame, &self.guide, &info);
            } else {
                g.process(frame, &mut info);
            }
        }
        if let Some(agc) = &mut self.agc {
            agc.process(frame, &mut info);
        }
        event
    }

    fn reset(&mut self) {
        self.fill = 0;
        self.frames = 0;
        if let Some(s) = &mut self.highpass {
            s.reset();
        }
        if let Some(s) = &mut self.denoiser {
            s.reset();
        }
        if let Some(s) = &mut self.energy_vad {
            s.reset();
        }
        if let Some(s) = &mut self.gate {
            s.reset();
        }
        if let Some(s) = &mut self.agc {
            s.reset();
        }
        self.vad.reset();
        self.guide_delay.reset();
        self.dry_delay.reset();
    }
}

/// The denoiser stage `config` asks for.
fn build_denoiser(config: &Config) -> Result<Option<Box<dyn Stage>>> {
    Ok(match config.denoiser {
        Denoiser::Off => None,
        Denoiser::Rnnoise => Some(Box::new(Rnnoise::new())),
        #[cfg(feature = "deepfilter")]
        Denoiser::DeepFilter => Some(Box::new(crate::dsp::deepfilter::DeepFilter::new(
            &config.deepfilter,
        )?)),
        // `Config::validate` refuses it first; this arm only keeps the match whole.
        #[cfg(not(feature = "deepfilter"))]
        Denoiser::DeepFilter => return Err(Error::deepfilter_not_built()),
    })
}

/// The last stage, at the output rate: blends the enhanced signal with the dry input
/// (strength, attenuation limit, bypass).
///
/// The dry signal is kept in a ring indexed by absolute output position, so that
/// output sample `n` is always blended with dry sample `n`, whatever the chunking.
struct OutputMix {
    ring: Vec<f32>,
    /// Dry samples written so far (the next one's output position).
    written: u64,
    /// Zeros written at the start (the latency, when the dry signal is the input).
    pad: usize,
    /// `strength × (1 − floor)`.
    wet: Ramp,
    /// 1 processing, 0 bypassed.
    bypass: Ramp,
    floor: f32,
    ramp_len: usize,
    scratch: Vec<f32>,
}

impl OutputMix {
    fn new(config: &Config, output_rate: u32, pad: usize, lead: usize) -> Self {
        let floor = config.atten_limit_db.map_or(0.0, |l| db_to_gain(-l));
        let mut this = Self {
            ring: vec![0.0; (pad + lead + DRY_SLACK).next_power_of_two()],
            written: 0,
            pad,
            wet: Ramp::new(config.strength * (1.0 - floor)),
            bypass: Ramp::new(if config.bypass { 0.0 } else { 1.0 }),
            floor,
            ramp_len: (output_rate as usize / 100).max(1),
            scratch: vec![0.0; FRAME_LEN],
        };
        this.reset();
        this
    }

    fn push(&mut self, dry: &[f32]) {
        let mask = self.ring.len() - 1;
        for &d in dry {
            self.ring[self.written as usize & mask] = d;
            self.written += 1;
        }
    }

    fn push_zeros(&mut self, n: usize) {
        let mask = self.ring.len() - 1;
        for _ in 0..n {
            self.ring[self.written as usize & mask] = 0.0;
            self.written += 1;
        }
    }

    /// Dry sample at output position `n` (silence before the start and after the end).
    #[inline]
    fn dry(&self, n: u64) -> f32 {
        if n < self.written && self.written - n <= self.ring.len() as u64 {
            self.ring[n as usize & (self.ring.len() - 1)]
        } else {
            0.0
        }
    }

    /// Blends `wet`, output positions `start..`, with the dry signal and hands the result
    /// to `sink`.
    fn mix(&mut self, start: u64, wet: &[f32], sink: &mut impl FnMut(&[f32])) {
        if self.wet.is_steady_at(1.0) && self.bypass.is_steady_at(1.0) {
            sink(wet);
            return;
        }
        let mut pos = start;
        for chunk in wet.chunks(self.scratch.len()) {
            for (i, &x) in chunk.iter().enumerate() {
                let w = self.wet.next() * self.bypass.next();
                let d = self.dry(pos + i as u64);
                self.scratch[i] = w * x + (1.0 - w) * d;
            }
            pos += chunk.len() as u64;
            sink(&self.scratch[..chunk.len()]);
        }
    }

    fn reset(&mut self) {
        self.written = 0;
        self.push_zeros(self.pad);
        self.wet = Ramp::new(self.wet.target);
        self.bypass = Ramp::new(self.bypass.target);
    }
}

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
        Ok(Self {
            mix: OutputMix::new(config, output_rate, pad, held),
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
        })
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
        self.chain.vad.in_speech()
    }

    /// The number of output frames (mono samples) the next call with `input_frames`
    /// frames will produce at most. It depends on the input the stages still hold from
    /// earlier calls: size a buffer that is reused with [`Pipeline::output_frames_max`].
    pub fn output_frames_next(&self, input_frames: usize) -> usize {
        let at_48k = self.front.output_frames_next(input_frames);
        let frames = (self.chain.fill + at_48k) / FRAME_LEN * FRAME_LEN;
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
        let mix = &mut self.mix;
        mix.wet.set(strength * (1.0 - mix.floor), mix.ramp_len);
        Ok(())
    }

    /// Switches bypass on or off, with a 10 ms cross-fade; the latency does not change.
    pub fn set_bypass(&mut self, bypass: bool) {
        self.config.bypass = bypass;
        let mix = &mut self.mix;
        mix.bypass.set(if bypass { 0.0 } else { 1.0 }, mix.ramp_len);
    }

    /// Gives the spectral gate a noise profile measured from a noise-only clip
    /// (interleaved `channels`-channel audio at `rate` Hz; any supported rate and
    /// channel count). In stationary mode it is the profile; in non-stationary mode it
    /// seeds the tracker.
    pub fn set_noise_profile(&mut self, noise: &[f32], rate: u32, channels: usize) -> Result<()> {
        let Some(gate) = self.chain.gate.as_mut() else {
            return Err(Error::Config(
                "a noise profile needs the spectral gate (gate mode stationary or nonstationary)"
                    .into(),
            ));
        };
        check_sample_rate(rate)?;
        let downmix = Downmixer::new(channels, self.config.channel)?;
        if noise.len() % channels != 0 {
            return Err(Error::PartialFrame {
                len: noise.len(),
                channels,
            });
        }
        let mut mono = vec![0.0; noise.len() / channels];
        downmix.process(noise, &mut mono);
        sanitize(&mut mono);
        let mut front = StreamResampler::new(rate, SAMPLE_RATE, self.config.resampler)?;
        let mut at_48k =
            Vec::with_capacity(rescale(mono.len() as u64, rate, SAMPLE_RATE) as usize + 1);
        front.process(&mono, &mut |x| at_48k.extend_from_slice(x))?;
        let skip = front.latency().min(at_48k.len());
        let profile = NoiseProfile::from_samples(&at_48k[skip..], gate.config())?;
        gate.set_noise_profile(profile)
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
        if input.len() % channels != 0 {
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
            self.non_finite += sanitize(&mut self.mono[..frames]) as u64;
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

struct EventQueue<'a> {
    events: &'a mut VecDeque<VadEvent>,
    dropped: &'a mut u64,
    output_rate: u32,
}

/// The stages `feed` drives, borrowed from the pipeline.
struct Stages<'a> {
    front: &'a mut StreamResampler,
    chain: &'a mut Chain,
    back: &'a mut StreamResampler,
    dry_back: Option<&'a mut StreamResampler>,
    mix: &'a mut OutputMix,
}

/// Runs mono input through the stages; `position` is the output position of the first
/// sample this call produces.
fn feed(
    mono: &[f32],
    stages: Stages<'_>,
    mut position: u64,
    queue: &mut EventQueue<'_>,
    sink: &mut impl FnMut(&[f32]),
) -> Result<()> {
    let Stages {
        front,
        chain,
        back,
        mut dry_back,
        mix,
    } = stages;
    let post_vad = chain.post_vad_latency() as u64;
    let back_latency = back.latency() as u64;
    let mut result = Ok(());
    front.process(mono, &mut |x48| {
        chain.push(x48, &mut |frame, dry, event| {
            if let Some(mut e) = event {
                e.position =
                    rescale(e.position + post_vad, SAMPLE_RATE, queue.output_rate) + back_latency;
                if queue.events.len() == EVENT_CAPACITY {
                    queue.events.pop_front();
                    *queue.dropped += 1;
                }
                queue.events.push_back(e);
            }
            if let Some(r) = dry_back.as_deref_mut() {
                if let Err(e) = r.process(dry, &mut |d| mix.push(d)) {
                    result = Err(e);
                }
            }
            let mixed = back.process(frame, &mut |wet| {
                mix.mix(position, wet, sink);
                position += wet.len() as u64;
            });
            if let Err(e) = mixed {
                result = Err(e);
            }
        })
    })?;
    result
}

/// The latency of the stages in output samples.
fn total_latency(
    front: &StreamResampler,
    chain: &Chain,
    back: &StreamResampler,
    output_rate: u32,
) -> usize {
    // Summed with their fractions and rounded once, so that the rounding of each stage
    // does not add up.
    let at_48k = front.latency_exact() + chain.latency() as f64;
    let total = at_48k * f64::from(output_rate) / f64::from(SAMPLE_RATE) + back.latency_exact();
    total.round().max(0.0) as usize
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

/// Latency compensation for offline use: wraps a [`Pipeline`] so that its output lines
/// up with the input sample for sample and has exactly the input's duration (at the
/// output rate). VAD event positions are shifted the same way.
///
/// # Examples
///
/// ```
/// use clearvox::{Aligner, Config, Pipeline, Preset};
///
/// // 1 s of 44.1 kHz stereo, enhanced to 16 kHz mono.
/// let input = vec![0.0f32; 2 * 44_100];
/// let config = Config { output_rate: Some(16_000), ..Preset::VoiceChat.config() };
/// let mut aligner = Aligner::new(Pipeline::new(&config, 44_100, 2)?);
///
/// let mut output = Vec::new();
/// for chunk in input.chunks(2 * 441) {
///     aligner.process(chunk, &mut output)?;
/// }
/// aligner.finish(&mut output)?;
///
/// // The same duration as the input; sample n is input instant n.
/// assert_eq!(output.len(), 16_000);
/// assert!(aligner.events().is_empty()); // silence: no speech
/// # Ok::<(), clearvox::Error>(())
/// ```
#[derive(Debug)]
pub struct Aligner {
    pipeline: Pipeline,
    to_skip: usize,
    events: Vec<VadEvent>,
}

impl Aligner {
    /// Wraps a freshly built (or reset) pipeline.
    pub fn new(pipeline: Pipeline) -> Self {
        Self {
            to_skip: pipeline.latency(),
            pipeline,
            events: Vec::new(),
        }
    }

    /// The wrapped pipeline.
    pub fn pipeline(&self) -> &Pipeline {
        &self.pipeline
    }

    /// The wrapped pipeline, for changing parameters while running.
    pub fn pipeline_mut(&mut self) -> &mut Pipeline {
        &mut self.pipeline
    }

    /// Processes input; appends the aligned output produced so far.
    pub fn process<S: PcmSample>(&mut self, input: &[S], output: &mut Vec<f32>) -> Result<()> {
        let start = output.len();
        self.pipeline.process(input, output)?;
        self.trim(output, start);
        self.collect_events();
        Ok(())
    }

    /// Drains the pipeline and appends the rest of the aligned output.
    pub fn finish(&mut self, output: &mut Vec<f32>) -> Result<()> {
        let start = output.len();
        self.pipeline.flush(output)?;
        self.trim(output, start);
        self.collect_events();
        Ok(())
    }

    /// VAD events so far, positions in aligned output samples (input time).
    pub fn events(&self) -> &[VadEvent] {
        &self.events
    }

    fn trim(&mut self, output: &mut Vec<f32>, start: usize) {
        let skip = self.to_skip.min(output.len() - start);
        output.drain(start..start + skip);
        self.to_skip -= skip;
    }

    fn collect_events(&mut self) {
        let latency = self.pipeline.latency() as u64;
        while let Some(mut e) = self.pipeline.pop_event() {
            e.position = e.position.saturating_sub(latency);
            self.events.push(e);
        }
    }
}

/// Enhances a whole interleaved signal in memory and returns the aligned mono output
/// (at `config.output_rate` or the input rate) and the VAD events.
pub fn enhance(
    config: &Config,
    input: &[f32],
    input_rate: u32,
    channels: usize,
) -> Result<(Vec<f32>, Vec<VadEvent>)> {
    let mut aligner = Aligner::new(Pipeline::new(config, input_rate, channels)?);
    let mut out = Vec::new();
    aligner.process(input, &mut out)?;
    aligner.finish(&mut out)?;
    Ok((out, aligner.events))
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Preset;
    use crate::dsp::convert::ChannelMode;

    /// A deterministic noisy test signal with no exact zeros.
    fn signal(len: usize) -> Vec<f32> {
        let mut state = 0x1234_5678u32;
        (0..len)
            .map(|i| {
                state = state.wrapping_mul(1_664_525).wrapping_add(1_013_904_223);
                let noise = (state >> 8) as f32 / (1u32 << 24) as f32 - 0.5;
                0.3 * (i as f32 * 0.05).sin() + 0.2 * noise + 0.01
            })
            .collect()
    }

    fn run_chunked(
        config: &Config,
        x: &[f32],
        rate: u32,
        channels: usize,
        chunk: usize,
    ) -> Vec<f32> {
        let mut a = Aligner::new(Pipeline::new(config, rate, channels).unwrap());
        let mut out = Vec::new();
        for c in x.chunks(chunk * channels) {
            a.process(c, &mut out).unwrap();
        }
        a.finish(&mut out).unwrap();
        out
    }

    fn strength_zero() -> Config {
        Config {
            strength: 0.0,
            ..Config::default()
        }
    }

    #[test]
    fn bypass_and_strength_zero_give_the_input_at_every_rate() {
        for rate in [8_000, 16_000, 44_100, 48_000, 96_000] {
            let x = signal(rate as usize / 4);
            for config in [Preset::Bypass.config(), strength_zero()] {
                for chunk in [1, 441, 4096] {
                    let y = run_chunked(&config, &x, rate, 1, chunk);
                    assert!(y == x, "rate {rate}, chunk {chunk}, {:?}", config.preset);
                }
            }
            // Several channels: their downmix, exactly.
            let stereo: Vec<f32> = x.iter().flat_map(|&v| [v, 0.5 * v]).collect();
            let mut mono = vec![0.0; x.len()];
            Downmixer::new(2, ChannelMode::Downmix)
                .unwrap()
                .process(&stereo, &mut mono);
            let y = run_chunked(&Preset::Bypass.config(), &stereo, rate, 2, 1000);
            assert!(y == mono, "stereo at {rate}");
        }
    }

    #[test]
    fn strength_zero_equals_bypass_when_resampling() {
        let x = signal(12_000);
        let resampled = |c: Config| Config {
            output_rate: Some(24_000),
            ..c
        };
        let bypass = run_chunked(&resampled(Preset::Bypass.config()), &x, 16_000, 1, 4096);
        let dry = run_chunked(&resampled(strength_zero()), &x, 16_000, 1, 333);
        assert_eq!(bypass.len(), 18_000);
        assert!(bypass == dry);
        // And it is the input, resampled and aligned: a 440 Hz tone stays in place, to
        // within the half sample that whole-sample latency compensation leaves here
        // (47.5 + 15 samples of delay at 24 kHz); 0.03 is a third of a sample's error.
        let tone = |rate: f32, n: usize| -> Vec<f32> {
            (0..n)
                .map(|i| 0.5 * (std::f32::consts::TAU * 440.0 * i as f32 / rate).sin())
                .collect()
        };
        let y = run_chunked(
            &resampled(Preset::Bypass.config()),
            &tone(16_000.0, 12_000),
            16_000,
            1,
            4096,
        );
        let expected = tone(24_000.0, 18_000);
        let err = (2_000..16_000)
            .map(|i| (y[i] - expected[i]).abs())
            .fold(0.0f32, f32::max);
        assert!(err < 0.035, "{err}");
    }

    #[test]
    fn partial_strength_does_not_depend_on_chunking() {
        for (rate, out) in [(16_000, None), (16_000, Some(24_000)), (48_000, None)] {
            let config = Config {
                strength: 0.5,
                atten_limit_db: Some(12.0),
                output_rate: out,
                ..Config::default()
            };
            let x = signal(rate as usize / 2);
            let whole = run_chunked(&config, &x, rate, 1, x.len());
            for chunk in [1, 100, 4096] {
                assert!(
                    run_chunked(&config, &x, rate, 1, chunk) == whole,
                    "{rate} -> {out:?}, chunk {chunk}"
                );
            }
        }
    }

    #[test]
    fn switching_to_bypass_while_running_ends_on_the_input() {
        let rate = 16_000;
        let x = signal(rate as usize);
        let mut a = Aligner::new(Pipeline::new(&Config::default(), rate, 1).unwrap());
        let mut y = Vec::new();
        a.process(&x[..8_000], &mut y).unwrap();
        a.pipeline_mut().set_bypass(true);
        a.process(&x[8_000..], &mut y).unwrap();
        a.finish(&mut y).unwrap();
        assert_eq!(y.len(), x.len());
        assert!(y[..4_000] != x[..4_000], "processing before the switch");
        // The cross-fade is done 10 ms after the switch point plus the latency.
        assert!(y[9_000..] == x[9_000..]);
    }
}
