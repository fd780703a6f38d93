//! The enhancement pipeline: a [`Config`] turned into a chain of DSP stages that takes
//! audio in any chunk size, at any supported rate and channel count.
//!
//! ```text
//! interleaved input (any rate, 1–8 ch, f32 or i16)
//!   → downmix / pick channel → sanitise NaN/Inf
//!   → resample to 48 kHz (rubato, streaming)
//!   → 10 ms frames: high-pass? → RNNoise (+ voice probability) → VAD state machine
//!                   → spectral gate (guided by the noisy input) → strength mix
//!                   → AGC + limiter → bypass cross-fade
//!   → resample to the output rate
//! ```
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

use std::collections::VecDeque;

use crate::config::Config;
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

/// Input frames converted per internal step (bounds the scratch buffers).
const MONO_CHUNK: usize = 1024;
/// Events kept for the caller before the oldest is dropped.
const EVENT_CAPACITY: usize = 256;
/// Length of the strength and bypass cross-fades, samples at 48 kHz.
const RAMP_LEN: usize = FRAME_LEN;

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

    fn set(&mut self, target: f32) {
        self.target = target;
        self.step = (target - self.value) / RAMP_LEN as f32;
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

    /// `out = w·wet + (1−w)·dry` with `w` ramping.
    fn mix(&mut self, wet: &mut Frame, dry: &Frame) {
        if self.is_steady_at(1.0) {
            return;
        }
        for (y, d) in wet.iter_mut().zip(dry) {
            let w = self.next();
            *y = w * *y + (1.0 - w) * d;
        }
    }
}

/// The 48 kHz frame chain.
struct Chain {
    assembler: Frame,
    fill: usize,
    highpass: Option<Highpass>,
    rnnoise: Option<Rnnoise>,
    energy_vad: Option<EnergyVoiceDetector>,
    vad: VadStateMachine,
    gate: Option<SpectralGate>,
    agc: Option<Agc>,
    guide_delay: DelayLine,
    guide: Frame,
    dry_delay: DelayLine,
    dry: Frame,
    wet_mix: Ramp,
    bypass_mix: Ramp,
    strength: f32,
    floor: f32,
    frames: u64,
}

impl Chain {
    fn new(config: &Config) -> Result<Self> {
        let highpass = if config.highpass.enabled {
            Some(Highpass::new(config.highpass.cutoff_hz, config.highpass.q)?)
        } else {
            None
        };
        let rnnoise = config.rnnoise.enabled.then(Rnnoise::new);
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
        let rnn_latency = rnnoise.as_ref().map_or(0, |r| r.latency());
        let gate_latency = gate.as_ref().map_or(0, |g| g.latency());
        let floor = config.atten_limit_db.map_or(0.0, |l| db_to_gain(-l));
        let strength = config.strength;
        Ok(Self {
            assembler: [0.0; FRAME_LEN],
            fill: 0,
            energy_vad: rnnoise.is_none().then(EnergyVoiceDetector::new),
            vad: VadStateMachine::new(&config.vad)?,
            guide_delay: DelayLine::new(if gate.is_some() { rnn_latency } else { 0 }),
            guide: [0.0; FRAME_LEN],
            dry_delay: DelayLine::new(rnn_latency + gate_latency),
            dry: [0.0; FRAME_LEN],
            wet_mix: Ramp::new(strength * (1.0 - floor)),
            bypass_mix: Ramp::new(if config.bypass { 0.0 } else { 1.0 }),
            strength,
            floor,
            frames: 0,
            highpass,
            rnnoise,
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
        if let Some(s) = &self.rnnoise {
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

    fn push(&mut self, mut x: &[f32], emit: &mut impl FnMut(&Frame, Option<VadEvent>)) {
        while !x.is_empty() {
            let take = (FRAME_LEN - self.fill).min(x.len());
            self.assembler[self.fill..self.fill + take].copy_from_slice(&x[..take]);
            self.fill += take;
            x = &x[take..];
            if self.fill == FRAME_LEN {
                self.fill = 0;
                let mut frame = self.assembler;
                let event = self.process_frame(&mut frame);
                emit(&frame, event);
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
        if let Some(rn) = &mut self.rnnoise {
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
            if self.rnnoise.is_some() {
                g.process_guided(frame, &self.guide, &info);
            } else {
                g.process(frame, &mut info);
            }
        }
        self.wet_mix.mix(frame, &self.dry);
        if let Some(agc) = &mut self.agc {
            agc.process(frame, &mut info);
        }
        self.bypass_mix.mix(frame, &self.dry);
        event
    }

    fn reset(&mut self) {
        self.fill = 0;
        self.frames = 0;
        if let Some(s) = &mut self.highpass {
            s.reset();
        }
        if let Some(s) = &mut self.rnnoise {
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
        self.wet_mix = Ramp::new(self.wet_mix.target);
        self.bypass_mix = Ramp::new(self.bypass_mix.target);
    }
}

/// The enhancement pipeline. See the [module documentation](self).
pub struct Pipeline {
    config: Config,
    input_rate: u32,
    output_rate: u32,
    downmix: Downmixer,
    mono: Vec<f32>,
    front: StreamResampler,
    chain: Chain,
    back: StreamResampler,
    events: VecDeque<VadEvent>,
    events_dropped: u64,
    input_frames: u64,
    output_frames: u64,
    non_finite: u64,
    flushed: bool,
}

impl Pipeline {
    /// A pipeline for `channels`-channel input at `input_rate` Hz. The output is mono at
    /// `config.output_rate` (or the input rate).
    pub fn new(config: &Config, input_rate: u32, channels: usize) -> Result<Self> {
        config.validate()?;
        check_sample_rate(input_rate)?;
        let output_rate = config.output_rate.unwrap_or(input_rate);
        let downmix = Downmixer::new(channels, config.channel)?;
        Ok(Self {
            front: StreamResampler::new(input_rate, SAMPLE_RATE, config.resampler)?,
            back: StreamResampler::new(SAMPLE_RATE, output_rate, config.resampler)?,
            chain: Chain::new(config)?,
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
        // Summed with their fractions and rounded once, so that the rounding of each
        // stage does not add up.
        let at_48k = self.front.delay() + self.chain.latency() as f64;
        let total =
            at_48k * f64::from(self.output_rate) / f64::from(SAMPLE_RATE) + self.back.delay();
        total.round().max(0.0) as usize
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

    /// The most output samples a call with `input_frames` frames can produce.
    pub fn output_len_max(&self, input_frames: usize) -> usize {
        let at_48k = self.front.output_len_max(input_frames);
        let frames = (self.chain.fill + at_48k) / FRAME_LEN * FRAME_LEN;
        self.back.output_len_max(frames)
    }

    /// Changes the wet/dry mix (0 = dry, 1 = fully enhanced), with a 10 ms cross-fade.
    pub fn set_strength(&mut self, strength: f32) -> Result<()> {
        if !(0.0..=1.0).contains(&strength) {
            return Err(Error::Config(format!(
                "strength = {strength}: must be in 0..1"
            )));
        }
        self.config.strength = strength;
        self.chain.strength = strength;
        self.chain.wet_mix.set(strength * (1.0 - self.chain.floor));
        Ok(())
    }

    /// Switches bypass on or off, with a 10 ms cross-fade; the latency does not change.
    pub fn set_bypass(&mut self, bypass: bool) {
        self.config.bypass = bypass;
        self.chain.bypass_mix.set(if bypass { 0.0 } else { 1.0 });
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
        let cfg = gate.config();
        let profile = NoiseProfile::from_samples(&at_48k[skip..], cfg.fft_size, cfg.hop)?;
        gate.set_noise_profile(profile)
    }

    /// Runs one frame of silence through every stage and resets: afterwards, processing
    /// on this thread does not allocate (RNNoise's FFT keeps per-thread plans that its
    /// first frame creates). Call it on the thread that will run the pipeline.
    pub fn warm_up(&mut self) {
        let mut frame = [0.0; FRAME_LEN];
        self.chain.process_frame(&mut frame);
        self.reset();
    }

    /// Returns to the freshly-built state (pending input, history and events dropped).
    ///
    /// This rebuilds RNNoise's state and so allocates: not for an audio thread.
    pub fn reset(&mut self) {
        self.front.reset();
        self.chain.reset();
        self.back.reset();
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
        output.reserve(self.output_len_max(input.len() / self.downmix.channels()));
        self.run(input, &mut |x| output.extend_from_slice(x))
    }

    /// Processes interleaved input into `output`, returning the samples written. Does
    /// not allocate. `output` must hold [`Pipeline::output_len_max`] of the input's frames.
    pub fn process_into_buffer<S: PcmSample>(
        &mut self,
        input: &[S],
        output: &mut [f32],
    ) -> Result<usize> {
        self.check_input(input)?;
        let needed = self.output_len_max(input.len() / self.downmix.channels());
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
        rescale(self.input_frames, self.input_rate, self.output_rate) + self.latency() as u64
    }

    /// Drains the tail: appends the output still held inside the stages, so that the
    /// stream holds [`Pipeline::flushed_len`] samples. Ends the stream: call
    /// [`Pipeline::reset`] before processing more.
    pub fn flush(&mut self, output: &mut Vec<f32>) -> Result<()> {
        if self.flushed {
            return Ok(());
        }
        let target = self.flushed_len();
        let zeros = [0.0f32; MONO_CHUNK];
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
            self.feed_mono_zeros(&zeros, &mut sink)?;
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
            let mut counting = |x: &[f32]| {
                produced += x.len() as u64;
                sink(x);
            };
            let Self {
                mono,
                front,
                chain,
                back,
                events,
                events_dropped,
                output_rate,
                ..
            } = self;
            feed(
                &mono[..frames],
                front,
                chain,
                back,
                &mut EventQueue {
                    events,
                    dropped: events_dropped,
                    output_rate: *output_rate,
                },
                &mut counting,
            )?;
            self.output_frames += produced;
        }
        Ok(())
    }

    fn feed_mono_zeros(&mut self, zeros: &[f32], sink: &mut impl FnMut(&[f32])) -> Result<()> {
        let Self {
            front,
            chain,
            back,
            events,
            events_dropped,
            output_rate,
            ..
        } = self;
        feed(
            zeros,
            front,
            chain,
            back,
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

fn feed(
    mono: &[f32],
    front: &mut StreamResampler,
    chain: &mut Chain,
    back: &mut StreamResampler,
    queue: &mut EventQueue<'_>,
    sink: &mut impl FnMut(&[f32]),
) -> Result<()> {
    let post_vad = chain.post_vad_latency() as u64;
    let back_latency = back.latency() as u64;
    let mut result = Ok(());
    front.process(mono, &mut |x48| {
        chain.push(x48, &mut |frame, event| {
            if let Some(mut e) = event {
                e.position =
                    rescale(e.position + post_vad, SAMPLE_RATE, queue.output_rate) + back_latency;
                if queue.events.len() == EVENT_CAPACITY {
                    queue.events.pop_front();
                    *queue.dropped += 1;
                }
                queue.events.push_back(e);
            }
            if let Err(e) = back.process(frame, sink) {
                result = Err(e);
            }
        })
    })?;
    result
}

/// `n` samples at rate `from` expressed at rate `to`, rounded to nearest.
pub fn rescale(n: u64, from: u32, to: u32) -> u64 {
    if from == to {
        return n;
    }
    ((n as u128 * to as u128 + from as u128 / 2) / from as u128) as u64
}

/// Latency compensation for offline use: wraps a [`Pipeline`] so that its output lines
/// up with the input sample for sample and has exactly the input's duration (at the
/// output rate). VAD event positions are shifted the same way.
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
