//! The `enhance` side of `--plot`: the input's and the output's spectrograms, fed
//! while the file streams, and the picture drawn from them and the file's report.

use std::path::Path;

use anyhow::Result;

use super::{db_or, write, Picture, PlotSize, Spectrogram};
use crate::report::FileReport;

/// The spectrograms of one file's input (mono) and output, for `--plot`.
pub struct Recorder {
    /// The input, downmixed to mono.
    pub input: Spectrogram,
    /// The output.
    pub output: Spectrogram,
    size: PlotSize,
}

impl Recorder {
    /// Spectrograms at the input's and the output's rates, for a picture of `size`.
    pub fn new(in_rate: u32, out_rate: u32, size: PlotSize) -> Result<Self> {
        // Twice the picture's width: never fewer columns than pixels across.
        let columns = 2 * size.width as usize;
        Ok(Self {
            input: Spectrogram::new(in_rate, columns)?,
            output: Spectrogram::new(out_rate, columns)?,
            size,
        })
    }

    /// Draws the input above the output, with the figures the report holds.
    pub fn write(&mut self, path: &Path, report: &FileReport) -> Result<()> {
        self.input.finish();
        self.output.finish();
        let name = |s: &str| {
            Path::new(s)
                .file_name()
                .map_or_else(|| s.to_string(), |n| n.to_string_lossy().into_owned())
        };
        let input = if report.input == "-" {
            "stdin".to_string()
        } else {
            name(&report.input)
        };
        let reduction = match (report.noise_level_in_dbfs, report.noise_level_out_dbfs) {
            (Some(a), Some(b)) if a.is_finite() && b.is_finite() => {
                format!(" ({:+.1} dB)", b - a)
            }
            _ => String::new(),
        };
        // The speech-to-noise ratio heard (speech frames against the rest), before and
        // after: the SNR gain without a clean reference.
        let snr = |speech: Option<f64>, noise: Option<f64>| match (speech, noise) {
            (Some(s), Some(n)) if s.is_finite() && n.is_finite() => Some(s - n),
            _ => None,
        };
        let snr_in = snr(report.speech_level_in_dbfs, report.noise_level_in_dbfs);
        let snr_out = snr(report.speech_level_out_dbfs, report.noise_level_out_dbfs);
        let snr_text = match (snr_in, snr_out) {
            (Some(a), Some(b)) => format!("est. SNR {a:.1} → {b:.1} dB ({:+.1} dB)   ·   ", b - a),
            _ => String::new(),
        };
        let none = "n/a (all speech)";
        let picture = Picture {
            title: format!("clearvox enhance: {input}"),
            figures: format!(
                "{snr_text}noise floor {} → {} dBFS{reduction}   ·   latency {:.1} ms   ·   {:.2} s, {} → {} Hz",
                db_or(report.noise_level_in_dbfs, none),
                db_or(report.noise_level_out_dbfs, none),
                report.latency_ms,
                report.duration_s,
                report.sample_rate_in,
                report.sample_rate_out,
            ),
            top: ("input", &self.input),
            bottom: ("output (enhanced)", &self.output),
            speech: Some(&report.speech_segments),
        };
        write(path, self.size, &picture)
    }
}
