//! WAV input and output.

/// Why a WAV file could not be read or written.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum WavError {
    /// Not a RIFF/WAVE stream.
    #[error("not a WAV file: {0}")]
    NotWav(String),
}
