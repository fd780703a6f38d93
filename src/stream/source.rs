//! A file as if it were a microphone: read a WAV, run it through the pipeline and hand
//! the 10 ms frames (with their VAD events) to a sink, optionally paced in real time.
//!
//! The stream is the pipeline's output stream, latency included, and ends with its
//! flushed tail: what a live engine would send for the same audio.

use std::io::Read;
use std::time::{Duration, Instant};

use serde::Serialize;

use crate::config::Config;
use crate::error::Result;
use crate::io::WavReader;
use crate::pipeline::{FrameSink, Framer, Pipeline};

/// What a file source did.
///
/// # Examples
///
/// ```
/// use clearvox::io::{write_wav_to, OutputFormat, WavReader};
/// use clearvox::pipeline::EnhancedFrame;
/// use clearvox::stream::source::run_wav;
///
/// // Half a second of a 440 Hz tone at 16 kHz, as a WAV in memory.
/// let tone: Vec<f32> = (0..8_000).map(|i| 0.3 * (i as f32 * 0.1727).sin()).collect();
/// let mut wav = Vec::new();
/// write_wav_to(&mut wav, 16_000, 1, OutputFormat::S16, &tone)?;
/// let mut frames = 0;
/// let mut sink = |f: &EnhancedFrame<'_>| frames += f.samples.len();
/// let report = run_wav(WavReader::new(&wav[..])?, &clearvox::Config::default(), &mut sink, false)?;
/// assert_eq!(report.output_samples as usize, frames);
/// assert_eq!(report.output_samples, report.input_frames + report.latency as u64);
/// # Ok::<(), clearvox::Error>(())
/// ```
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct SourceReport {
    /// Input frames read.
    pub input_frames: u64,
    /// Samples handed to the sink (at the pipeline's output rate).
    pub output_samples: u64,
    /// Output rate, Hz.
    pub output_rate: u32,
    /// The pipeline's latency, output samples.
    pub latency: usize,
    /// Duration of the input, s.
    pub duration_s: f64,
    /// Wall time taken, s.
    pub wall_s: f64,
    /// Whether the source stopped before the end of the input (its `stop` said so).
    pub stopped: bool,
}

/// Runs a WAV stream through a pipeline built from `config` into `sink`, then finishes
/// the sink. With `realtime`, 10 ms of input are processed every 10 ms of wall time.
pub fn run_wav<R: Read>(
    reader: WavReader<R>,
    config: &Config,
    sink: &mut dyn FrameSink,
    realtime: bool,
) -> Result<SourceReport> {
    run_wav_until(reader, config, sink, realtime, &|| false)
}

/// [`run_wav`], stopping early (without the pipeline's tail) once `stop` says so, checked
/// every 10 ms of input: a stream the receiver refused for good need not go on for the
/// length of the file.
pub fn run_wav_until<R: Read>(
    mut reader: WavReader<R>,
    config: &Config,
    sink: &mut dyn FrameSink,
    realtime: bool,
    stop: &dyn Fn() -> bool,
) -> Result<SourceReport> {
    let spec = reader.spec();
    let channels = spec.channels as usize;
    let mut pipeline = Pipeline::new(config, spec.sample_rate, channels)?;
    let rate = pipeline.output_rate();
    let chunk_frames = (spec.sample_rate as usize / 100).max(1);
    let mut input = vec![0.0f32; chunk_frames * channels];
    let mut output = Vec::new();
    let mut framer = Framer::new(rate);
    let started = Instant::now();
    let mut frames = 0u64;
    let mut produced = 0u64;
    let mut stopped = false;
    loop {
        if stop() {
            stopped = true;
            break;
        }
        let n = reader.read_frames(&mut input)?;
        if n == 0 {
            break;
        }
        output.clear();
        pipeline.process(&input[..n], &mut output)?;
        frames += (n / channels) as u64;
        while let Some(e) = pipeline.pop_event() {
            framer.event(e);
        }
        framer.push(&output, sink);
        produced += output.len() as u64;
        if realtime {
            let due = Duration::from_secs_f64(frames as f64 / spec.sample_rate as f64);
            if let Some(wait) = due.checked_sub(started.elapsed()) {
                std::thread::sleep(wait);
            }
        }
    }
    if !stopped {
        output.clear();
        pipeline.flush(&mut output)?;
        while let Some(e) = pipeline.pop_event() {
            framer.event(e);
        }
        framer.push(&output, sink);
        produced += output.len() as u64;
    }
    framer.finish(sink);
    sink.finish();
    Ok(SourceReport {
        input_frames: frames,
        output_samples: produced,
        output_rate: rate,
        latency: pipeline.latency(),
        duration_s: frames as f64 / spec.sample_rate as f64,
        wall_s: started.elapsed().as_secs_f64(),
        stopped,
    })
}
