//! Whole-file processing: [`Aligner`] removes the pipeline's latency, so that an
//! offline result lines up with its input sample for sample and has its duration, and
//! [`enhance`] does that for a signal in memory.

use super::Pipeline;
use crate::config::Config;
use crate::dsp::convert::PcmSample;
use crate::dsp::vad::VadEvent;
use crate::error::Result;

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

/// Like [`enhance`], with the render signal for the echo canceller: `render`
/// (interleaved `render_channels` channels at `render_rate` Hz, any supported format)
/// is what the loudspeaker played, on the capture's clock from sample 0. The echo
/// canceller runs whatever `config.echo.enabled` says.
///
/// Render and capture are fed in step, 100 ms at a time, the render first, as a live
/// engine would.
#[allow(clippy::too_many_arguments)]
pub fn enhance_with_render(
    config: &Config,
    input: &[f32],
    input_rate: u32,
    channels: usize,
    render: &[f32],
    render_rate: u32,
    render_channels: usize,
) -> Result<(Vec<f32>, Vec<VadEvent>)> {
    let config = Config {
        echo: crate::config::EchoConfig {
            enabled: true,
            ..config.echo.clone()
        },
        ..config.clone()
    };
    let mut pipeline = Pipeline::new(&config, input_rate, channels)?;
    pipeline.set_render_format(render_rate, render_channels)?;
    let mut aligner = Aligner::new(pipeline);
    let mut feeder = RenderFeeder::new(render, render_rate, render_channels, input_rate);
    let mut out = Vec::new();
    let step = (input_rate as usize / 10).max(1) * channels;
    for chunk in input.chunks(step) {
        feeder.feed(aligner.pipeline_mut(), chunk.len() / channels)?;
        aligner.process(chunk, &mut out)?;
    }
    aligner.finish(&mut out)?;
    Ok((out, aligner.events))
}

/// Hands a render signal to a pipeline in step with its capture: before `n` more
/// capture frames, the render that covers them.
#[derive(Debug)]
pub struct RenderFeeder<'a> {
    render: &'a [f32],
    render_rate: u32,
    render_channels: usize,
    capture_rate: u32,
    capture_frames: u64,
    fed_frames: usize,
}

impl<'a> RenderFeeder<'a> {
    /// A feeder of `render` (interleaved) for a capture at `capture_rate`.
    pub fn new(
        render: &'a [f32],
        render_rate: u32,
        render_channels: usize,
        capture_rate: u32,
    ) -> Self {
        Self {
            render,
            render_rate,
            render_channels: render_channels.max(1),
            capture_rate,
            capture_frames: 0,
            fed_frames: 0,
        }
    }

    /// Pushes the render for the next `capture_frames` capture frames (silence past
    /// its end).
    pub fn feed(&mut self, pipeline: &mut Pipeline, capture_frames: usize) -> Result<()> {
        self.capture_frames += capture_frames as u64;
        let want =
            super::rescale(self.capture_frames, self.capture_rate, self.render_rate) as usize;
        let have = self.render.len() / self.render_channels;
        let from = self.fed_frames.min(have);
        let to = want.min(have);
        if to > from {
            pipeline.push_render(
                &self.render[from * self.render_channels..to * self.render_channels],
            )?;
        }
        if want > to.max(from) {
            let silence = [0.0f32; 512];
            let mut left = (want - to.max(from)) * self.render_channels;
            while left > 0 {
                let k = left.min(silence.len() / self.render_channels * self.render_channels);
                pipeline.push_render(&silence[..k])?;
                left -= k;
            }
        }
        self.fed_frames = want;
        Ok(())
    }
}
