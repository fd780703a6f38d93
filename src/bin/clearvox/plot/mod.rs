//! `--plot FILE.png`: what the enhancer did, as two spectrograms one above the other.
//!
//! The spectrograms are measured while the audio streams ([`Spectrogram`], bounded
//! memory), drawn in memory ([`draw`]) and written through [`AtomicFile`]: the PNG
//! appears complete or not at all. Its path is checked, and its folder proven
//! writable, before any audio is read.

mod draw;
mod enhance;
mod spectrogram;

use std::io::Write;
use std::path::{Path, PathBuf};
use std::str::FromStr;

use anyhow::{anyhow, bail, Result};
use clap::Args;

use clearvox::io::{os_reason, AtomicFile};

use crate::levels::Segment;
pub use enhance::Recorder;
pub use spectrogram::Spectrogram;

/// Largest picture side, pixels (a 4096 × 4096 RGB picture is 48 MiB in memory).
const MAX_SIDE: u32 = 4096;
/// Smallest picture sides, pixels: room for the axes and the title.
const MIN_SIZE: PlotSize = PlotSize {
    width: 480,
    height: 360,
};

/// The `--plot` options, shared by `enhance` and `metrics`.
#[derive(Args, Debug)]
pub struct PlotArgs {
    /// Also draw the spectrograms to this PNG file: the input above the output for
    /// `enhance` (one input file only; the VAD's speech marked), the reference above
    /// the test for `metrics`; one colour scale, the figures in the title.
    #[arg(long, value_name = "FILE.png")]
    pub plot: Option<PathBuf>,

    /// Size of the --plot picture, pixels.
    #[arg(
        long,
        value_name = "WxH",
        default_value = "1200x800",
        requires = "plot"
    )]
    pub plot_size: PlotSize,
}

/// A picture's size in pixels.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PlotSize {
    pub width: u32,
    pub height: u32,
}

impl FromStr for PlotSize {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        let bad = || format!("'{s}' is not a size WxH in pixels (e.g. 1200x800)");
        let (w, h) = s.split_once(['x', 'X']).ok_or_else(bad)?;
        let width: u32 = w.trim().parse().map_err(|_| bad())?;
        let height: u32 = h.trim().parse().map_err(|_| bad())?;
        if width < MIN_SIZE.width || height < MIN_SIZE.height {
            return Err(format!(
                "{width}x{height} is too small for the picture: at least {}x{}",
                MIN_SIZE.width, MIN_SIZE.height
            ));
        }
        if width > MAX_SIDE || height > MAX_SIDE {
            return Err(format!(
                "{width}x{height} is too large: at most {MAX_SIDE} pixels a side"
            ));
        }
        Ok(Self { width, height })
    }
}

/// Checks, before any work, that a PNG can be written at `path`: its folder exists and
/// takes a new file (a temporary one is created there and removed), `path` is not a
/// folder, and it is none of `taken` (the run's inputs and other outputs).
pub fn check_path(path: &Path, taken: &[&Path]) -> Result<()> {
    if path.is_dir() {
        bail!("plot path {} is a folder", path.display());
    }
    if path.file_name().is_none() {
        bail!("plot path {} does not name a file", path.display());
    }
    let folder = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    };
    if !folder.is_dir() {
        bail!("plot folder does not exist: {}", folder.display());
    }
    if let Some(other) = taken.iter().find(|t| crate::plan::same_file(t, path)) {
        bail!(
            "plot {} is the file {}: choose another plot path",
            path.display(),
            other.display()
        );
    }
    // Dropped unused: the temporary file is removed again.
    AtomicFile::create(path, None)
        .map_err(|e| anyhow!("cannot write plot {}: {}", path.display(), os_reason(&e)))?;
    Ok(())
}

/// The spectrograms of a run and what the picture says about them.
pub struct Picture<'a> {
    /// First title line (what was compared).
    pub title: String,
    /// Second title line: the figures.
    pub figures: String,
    /// The top panel's name and spectrogram.
    pub top: (&'a str, &'a Spectrogram),
    /// The bottom panel's name and spectrogram.
    pub bottom: (&'a str, &'a Spectrogram),
    /// Speech found by the VAD, marked in a band over the bottom panel; `None`: no
    /// VAD ran.
    pub speech: Option<&'a [Segment]>,
}

/// Draws `picture` at `size` and writes it to `path` atomically (mode 0644 less the
/// umask).
pub fn write(path: &Path, size: PlotSize, picture: &Picture<'_>) -> Result<()> {
    let png = draw::png(size, picture)?;
    let write = || -> std::io::Result<()> {
        let (guard, mut file) = AtomicFile::create(path, None)?;
        file.write_all(&png)?;
        guard.commit(file)
    };
    write().map_err(|e| anyhow!("cannot write plot {}: {}", path.display(), os_reason(&e)))
}

/// `value` in dB with one decimal, or `what` when there is none.
pub fn db_or(value: Option<f64>, what: &str) -> String {
    match value {
        Some(v) if v.is_finite() => format!("{v:.1}"),
        Some(v) if v > 0.0 => "+inf".into(),
        Some(_) => "-inf".into(),
        None => what.into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_parse_and_out_of_range_ones_are_refused() {
        assert_eq!(
            "1200x800".parse::<PlotSize>(),
            Ok(PlotSize {
                width: 1200,
                height: 800
            })
        );
        assert!("1200".parse::<PlotSize>().is_err());
        assert!("10x10"
            .parse::<PlotSize>()
            .unwrap_err()
            .contains("too small"));
        assert!("99999x800"
            .parse::<PlotSize>()
            .unwrap_err()
            .contains("too large"));
    }
}
