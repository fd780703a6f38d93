//! The stages in order: the 48 kHz frame chain ([`Chain`]: high-pass, denoiser, VAD,
//! spectral gate, AGC and limiter) and [`feed`], which takes mono input through the
//! input resampler, the chain, the output resampler and the output mix.
//!
//! The chain works on whole 10 ms frames and keeps the dry input delayed by its own
//! latency alongside, so that the mix blends each enhanced sample with the input it
//! came from.

use std::collections::VecDeque;

use super::mix::OutputMix;
use super::render::RenderQueue;
use super::{rescale, EVENT_CAPACITY};
use crate::config::{Config, Denoiser};
use crate::dsp::agc::Agc;
use crate::dsp::delay::DelayLine;
use crate::dsp::echo::EchoCanceller;
use crate::dsp::highpass::Highpass;
use crate::dsp::resample::StreamResampler;
use crate::dsp::rnnoise::Rnnoise;
use crate::dsp::spectral_gate::{GateMode, SpectralGate};
use crate::dsp::vad::{EnergyVoiceDetector, VadEvent, VadStateMachine};
use crate::dsp::{Frame, FrameInfo, Stage, FRAME_LEN, SAMPLE_RATE};
#[cfg(not(feature = "deepfilter"))]
use crate::error::Error;
use crate::error::Result;

/// The 48 kHz frame chain: the stages between the two resamplers, in order.
pub(super) struct Chain {
    assembler: Frame,
    fill: usize,
    /// The echo canceller, first, and the render samples it has not used yet.
    echo: Option<EchoCanceller>,
    render: RenderQueue,
    render_frame: Frame,
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
    pub(super) fn new(config: &Config) -> Result<Self> {
        let highpass = if config.highpass.enabled {
            Some(Highpass::new(config.highpass.cutoff_hz, config.highpass.q)?)
        } else {
            None
        };
        let echo = if config.echo.enabled {
            Some(EchoCanceller::new(&config.echo)?)
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
        let echo_latency = echo.as_ref().map_or(0, |e| e.latency());
        let denoiser_latency = denoiser.as_ref().map_or(0, |r| r.latency());
        let gate_latency = gate.as_ref().map_or(0, |g| g.latency());
        Ok(Self {
            assembler: [0.0; FRAME_LEN],
            fill: 0,
            // Two seconds of render can wait for its capture; an empty queue when the
            // canceller is off.
            render: RenderQueue::new(if echo.is_some() {
                2 * SAMPLE_RATE as usize
            } else {
                1
            }),
            render_frame: [0.0; FRAME_LEN],
            echo,
            energy_vad: denoiser.is_none().then(EnergyVoiceDetector::new),
            vad: VadStateMachine::new(&config.vad)?,
            guide_delay: DelayLine::new(if gate.is_some() { denoiser_latency } else { 0 }),
            guide: [0.0; FRAME_LEN],
            dry_delay: DelayLine::new(echo_latency + denoiser_latency + gate_latency),
            dry: [0.0; FRAME_LEN],
            frames: 0,
            highpass,
            denoiser,
            gate,
            agc,
        })
    }

    /// Latency of the whole chain, samples at 48 kHz.
    pub(super) fn latency(&self) -> usize {
        self.dry_delay.delay()
    }

    /// Input samples waiting for a complete frame.
    pub(super) fn pending(&self) -> usize {
        self.fill
    }

    /// Whether the VAD state machine is in speech.
    pub(super) fn in_speech(&self) -> bool {
        self.vad.in_speech()
    }

    /// The spectral gate, when the configuration has one.
    pub(super) fn gate_mut(&mut self) -> Option<&mut SpectralGate> {
        self.gate.as_mut()
    }

    /// Latency between the point where voice probabilities are taken and the output.
    fn post_vad_latency(&self) -> usize {
        self.gate.as_ref().map_or(0, |g| g.latency())
    }

    /// The echo canceller, when the configuration has one.
    pub(super) fn echo(&self) -> Option<&EchoCanceller> {
        self.echo.as_ref()
    }

    /// The render samples waiting for their capture.
    pub(super) fn render_queue(&mut self) -> &mut RenderQueue {
        &mut self.render
    }

    /// The render samples waiting for their capture.
    pub(super) fn render_queue_ref(&self) -> &RenderQueue {
        &self.render
    }

    /// Each stage's name and latency, in order, samples at 48 kHz.
    pub(super) fn stages(&self) -> Vec<(&'static str, usize)> {
        let mut v = Vec::new();
        if let Some(s) = &self.echo {
            v.push((s.name(), s.latency()));
        }
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
    pub(super) fn push(
        &mut self,
        mut x: &[f32],
        emit: &mut impl FnMut(&Frame, &Frame, Option<VadEvent>),
    ) {
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

    /// Runs one frame through the stages, in place; returns the VAD event it caused.
    pub(super) fn process_frame(&mut self, frame: &mut Frame) -> Option<VadEvent> {
        let mut info = FrameInfo::default();
        self.frames += 1;
        self.dry_delay.process(&frame[..], &mut self.dry);
        if let Some(echo) = &mut self.echo {
            self.render.pop_into(&mut self.render_frame);
            echo.process(frame, &self.render_frame);
        }
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
        if let (Some(echo), Some(p)) = (&self.echo, info.voice_prob.as_mut()) {
            // What the canceller removed was the assistant's voice: no speech to start
            // on there (no false barge-in).
            *p *= echo.near_end_weight();
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

    pub(super) fn reset(&mut self) {
        self.fill = 0;
        self.frames = 0;
        if let Some(s) = &mut self.echo {
            s.reset();
        }
        self.render.clear();
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

/// Where `feed` puts the VAD events, with their positions at the output rate.
pub(super) struct EventQueue<'a> {
    pub(super) events: &'a mut VecDeque<VadEvent>,
    /// Events dropped because the queue was full.
    pub(super) dropped: &'a mut u64,
    pub(super) output_rate: u32,
}

/// The stages `feed` drives, borrowed from the pipeline.
pub(super) struct Stages<'a> {
    pub(super) front: &'a mut StreamResampler,
    pub(super) chain: &'a mut Chain,
    pub(super) back: &'a mut StreamResampler,
    pub(super) dry_back: Option<&'a mut StreamResampler>,
    pub(super) mix: &'a mut OutputMix,
}

/// Runs mono input through the stages; `position` is the output position of the first
/// sample this call produces.
pub(super) fn feed(
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
pub(super) fn total_latency(
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
