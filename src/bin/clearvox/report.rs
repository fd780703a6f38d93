//! The `--report` JSON document, and writing it atomically.

use std::io::Write;
use std::path::Path;

use anyhow::{bail, Result};
use serde::Serialize;

use clearvox::config::Config;

use crate::levels::Segment;
use clearvox::io::{os_reason, AtomicFile};

/// What happened to one file that was enhanced.
#[derive(Clone, Debug, Serialize)]
pub struct FileReport {
    /// The input path as given (`-` for stdin).
    pub input: String,
    /// The output path (`-` for stdout).
    pub output: String,
    pub sample_rate_in: u32,
    pub sample_rate_out: u32,
    /// Channels of the input (the output is mono).
    pub channels: u16,
    pub format_in: &'static str,
    pub format_out: &'static str,
    /// Input frames read.
    pub frames_in: u64,
    /// Output samples written (the input's duration at the output rate).
    pub frames_out: u64,
    /// Length of the audio, seconds.
    pub duration_s: f64,
    /// Time spent on this file, seconds.
    pub processing_s: f64,
    /// `processing_s / duration_s`: below 1 is faster than real time.
    pub real_time_factor: f64,
    /// The pipeline's latency (compensated in the output), output samples.
    pub latency_samples: usize,
    pub latency_ms: f64,
    /// Speech found by the VAD, seconds from the start.
    pub speech_segments: Vec<Segment>,
    /// RMS level over the 10 ms frames outside speech of the mono input (downmix),
    /// dBFS; `null` when every frame is speech.
    pub noise_level_in_dbfs: Option<f64>,
    /// The same over the output.
    pub noise_level_out_dbfs: Option<f64>,
    /// RMS level over the 10 ms frames inside speech of the mono input, dBFS; `null`
    /// when no speech was found. Less the noise level, the speech-to-noise ratio heard.
    pub speech_level_in_dbfs: Option<f64>,
    /// The same over the output.
    pub speech_level_out_dbfs: Option<f64>,
    /// What the reader repaired, one line each.
    pub warnings: Vec<String>,
}

/// A file that could not be enhanced.
#[derive(Clone, Debug, Serialize)]
pub struct Failure {
    pub input: String,
    pub output: String,
    pub error: String,
}

/// Sums over the run.
#[derive(Clone, Debug, Serialize)]
pub struct Totals {
    pub files: usize,
    pub failed: usize,
    /// Audio enhanced, seconds.
    pub duration_s: f64,
    /// Sum of the files' processing times, seconds.
    pub processing_s: f64,
    /// Wall-clock time of the run (files in parallel), seconds.
    pub wall_s: f64,
    /// `wall_s / duration_s`.
    pub real_time_factor: f64,
}

/// The whole report.
#[derive(Serialize)]
pub struct Report<'a> {
    pub clearvox_version: &'static str,
    pub config: &'a Config,
    pub files: &'a [FileReport],
    pub failures: &'a [Failure],
    pub totals: Totals,
}

/// Checks, before any work is done, that a report can be written to `path`.
pub fn check_path(path: &Path) -> Result<()> {
    let folder = folder_of(path);
    if !folder.is_dir() {
        bail!("report folder does not exist: {}", folder.display());
    }
    if path.is_dir() {
        bail!("report path {} is a folder", path.display());
    }
    if path.file_name().is_none() {
        bail!("report path {} does not name a file", path.display());
    }
    Ok(())
}

fn folder_of(path: &Path) -> &Path {
    match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    }
}

/// Writes `report` as pretty JSON to `path` with the permission bits `mode`, through
/// the same [`AtomicFile`] as the WAV outputs: an unpredictable temporary name created
/// exclusively (never following a planted link) and renamed over `path`, so that the
/// file appears complete or not at all.
pub fn write(path: &Path, report: &Report<'_>, mode: u32) -> Result<()> {
    write_json(path, report, Some(mode))
        .map_err(|e| anyhow::anyhow!("cannot write report {}: {}", path.display(), os_reason(&e)))
}

/// Writes `value` as pretty JSON and a line end, atomically (temporary file, then
/// rename), with permission bits `mode` (`None`: the default): the report, the shard
/// summaries and the merged summary.
pub fn write_json<T: Serialize>(path: &Path, value: &T, mode: Option<u32>) -> std::io::Result<()> {
    let mut text = serde_json::to_string_pretty(value).map_err(std::io::Error::other)?;
    text.push('\n');
    let (guard, mut file) = AtomicFile::create(path, mode)?;
    file.write_all(text.as_bytes())?;
    guard.commit(file)
}
