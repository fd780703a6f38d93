//! The library's error type.
//!
//! Every variant names what was wrong with the input and, where it helps, what is
//! supported instead, so that a caller can show the message to a user as it is.

use std::path::PathBuf;

/// Anything that can go wrong in the library.
///
/// Match on the variant to react in code; show the message ([`Display`](std::fmt::Display))
/// to a person: it is one line that names the offending value and what is accepted.
///
/// # Examples
///
/// ```
/// use clearvox::limits::LimitError;
/// use clearvox::{Config, Error, Pipeline};
///
/// // 4 kHz is below what the pipeline takes.
/// let err = Pipeline::new(&Config::default(), 4_000, 1).unwrap_err();
/// assert!(matches!(err, Error::Limit(LimitError::SampleRate { rate: 4_000 })));
/// assert_eq!(
///     err.to_string(),
///     "unsupported sample rate 4000 Hz: supported are 8000 Hz to 192000 Hz"
/// );
///
/// // Interleaved stereo input must come in whole frames.
/// let mut pipeline = Pipeline::new(&Config::default(), 48_000, 2)?;
/// let err = pipeline.process(&[0.0f32; 3], &mut Vec::new()).unwrap_err();
/// assert!(matches!(err, Error::PartialFrame { len: 3, channels: 2 }));
/// # Ok::<(), clearvox::Error>(())
/// ```
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The configuration is invalid (a value out of range, an unknown preset, bad TOML).
    #[error("invalid configuration: {0}")]
    Config(String),

    /// A sample rate, channel count or channel selection outside what clearvox accepts.
    #[error(transparent)]
    Limit(#[from] crate::limits::LimitError),

    /// An interleaved buffer whose length is not a whole number of frames.
    #[error(
        "buffer of {len} samples is not a whole number of {channels}-channel frames: \
         pass interleaved audio in whole frames (a multiple of {channels} samples)"
    )]
    PartialFrame {
        /// Length of the buffer in samples.
        len: usize,
        /// Channels per frame.
        channels: usize,
    },

    /// An output buffer too small for what the call produces.
    #[error(
        "output buffer holds {got} samples but this call may write up to {needed}: \
         pass a buffer of at least {needed} samples"
    )]
    OutputTooSmall {
        /// Capacity given.
        got: usize,
        /// Capacity needed.
        needed: usize,
    },

    /// The pipeline was flushed and must be reset before it takes more input.
    #[error("the pipeline was flushed; call reset() before processing more audio")]
    Flushed,

    /// The resampler could not be built or run.
    #[error("resampling failed: {0}")]
    Resampler(String),

    /// A WAV file could not be read or written.
    #[error(transparent)]
    Wav(#[from] crate::io::WavError),

    /// A quality metric cannot score the signals it was given.
    #[error(transparent)]
    Metric(#[from] crate::metrics::MetricError),

    /// A DeepFilterNet model could not be loaded or run.
    #[error("DeepFilterNet model: {0}")]
    Model(String),

    /// The configuration asks for a part this build of the library leaves out.
    #[error("{what} is not in this build of clearvox: rebuild with the cargo feature `{feature}`")]
    NotBuilt {
        /// What was asked for.
        what: &'static str,
        /// The cargo feature that brings it.
        feature: &'static str,
    },

    /// A file-system operation failed.
    #[error("{}: {source}", path.display())]
    Io {
        /// The path involved.
        path: PathBuf,
        /// What the OS said.
        #[source]
        source: std::io::Error,
    },
}

impl Error {
    /// A configuration asks for DeepFilterNet in a build without the `deepfilter` feature.
    pub(crate) fn deepfilter_not_built() -> Self {
        Error::NotBuilt {
            what: "the denoiser 'deepfilter'",
            feature: "deepfilter",
        }
    }
}

/// Shorthand for results of this crate.
///
/// # Examples
///
/// ```
/// use clearvox::{Config, Result};
///
/// /// Enhances 16 kHz mono speech; the output lines up with the input.
/// fn denoise(samples: &[f32]) -> Result<Vec<f32>> {
///     let (enhanced, _events) =
///         clearvox::pipeline::enhance(&Config::default(), samples, 16_000, 1)?;
///     Ok(enhanced)
/// }
///
/// let enhanced = denoise(&vec![0.0; 16_000])?;
/// assert_eq!(enhanced.len(), 16_000);
/// # Ok::<(), clearvox::Error>(())
/// ```
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// The message a panic was raised with, from the payload `catch_unwind` returns.
///
/// The C ABI and the CLI turn a panic into an "internal error: …" rather than an abort
/// or a backtrace; this is the "…". A payload that is neither a `&str` nor a `String`
/// (a `panic_any` with another type) is "unknown panic".
///
/// ```
/// let payload = std::panic::catch_unwind(|| panic!("index {} out of range", 7)).unwrap_err();
/// assert_eq!(clearvox::error::panic_message(payload.as_ref()), "index 7 out of range");
/// ```
pub fn panic_message(payload: &(dyn std::any::Any + Send)) -> String {
    payload
        .downcast_ref::<&str>()
        .map(|s| s.to_string())
        .or_else(|| payload.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "unknown panic".to_string())
}
