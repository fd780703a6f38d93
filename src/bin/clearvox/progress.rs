//! What `enhance` tells the user while it runs: progress bars (only on a terminal, and
//! not with `--quiet`) and one-line warnings that do not tear the bars.

use std::io::IsTerminal;
use std::time::Duration;

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

/// A single file shorter than this gets no bar: it is done before one would be read.
const BAR_MIN_SECONDS: f64 = 10.0;

/// The user interface of one run. Shared by the worker threads.
pub struct Ui {
    bars: bool,
    /// The overall bar of a batch (files done of files).
    overall: Option<ProgressBar>,
}

impl Ui {
    /// `files` jobs, in a batch or not.
    pub fn new(quiet: bool, files: usize, batch: bool) -> Self {
        let bars = !quiet && std::io::stderr().is_terminal();
        let overall = (bars && batch).then(|| {
            let bar =
                ProgressBar::with_draw_target(Some(files as u64), ProgressDrawTarget::stderr());
            bar.set_style(
                ProgressStyle::with_template(
                    "{spinner} [{elapsed_precise}] {bar:30} {pos}/{len} files  {wide_msg}",
                )
                .unwrap_or_else(|_| ProgressStyle::default_bar()),
            );
            bar.enable_steady_tick(Duration::from_millis(200));
            bar
        });
        Self { bars, overall }
    }

    /// Prints `line` to stderr without disturbing a bar.
    pub fn line(&self, line: &str) {
        match &self.overall {
            Some(bar) => bar.suspend(|| eprintln!("{line}")),
            None => eprintln!("{line}"),
        }
    }

    /// Prints `warning: <file>: <message>`.
    pub fn warn(&self, file: &str, message: &str) {
        self.line(&format!("warning: {file}: {}", crate::flatten(message)));
    }

    /// A bar for one file of a single-file run: `frames` long (unknown for a stream),
    /// at `rate` Hz. Batches show their overall bar instead.
    pub fn file_bar(&self, name: &str, frames: Option<u64>, rate: u32) -> FileBar {
        if let Some(bar) = &self.overall {
            bar.set_message(name.to_string());
            return FileBar(None);
        }
        let long = frames.is_none_or(|f| f as f64 / f64::from(rate) >= BAR_MIN_SECONDS);
        if !self.bars || !long {
            return FileBar(None);
        }
        let bar = ProgressBar::with_draw_target(frames, ProgressDrawTarget::stderr());
        let template = if frames.is_some() {
            "{spinner} [{elapsed_precise}] {bar:30} {percent:>3}%  eta {eta}  {wide_msg}"
        } else {
            "{spinner} [{elapsed_precise}] {wide_msg}"
        };
        bar.set_style(
            ProgressStyle::with_template(template).unwrap_or_else(|_| ProgressStyle::default_bar()),
        );
        bar.set_message(name.to_string());
        bar.enable_steady_tick(Duration::from_millis(200));
        FileBar(Some(bar))
    }

    /// One more file of a batch is done.
    pub fn file_done(&self) {
        if let Some(bar) = &self.overall {
            bar.inc(1);
        }
    }

    /// Removes the bars (before the closing lines).
    pub fn finish(&self) {
        if let Some(bar) = &self.overall {
            bar.finish_and_clear();
        }
    }
}

/// The progress of one file, if it is shown.
pub struct FileBar(Option<ProgressBar>);

impl FileBar {
    /// `frames` more input frames are done.
    pub fn advance(&self, frames: u64) {
        if let Some(bar) = &self.0 {
            bar.inc(frames);
        }
    }
}

impl Drop for FileBar {
    fn drop(&mut self) {
        if let Some(bar) = &self.0 {
            bar.finish_and_clear();
        }
    }
}
