//! WAV input and output.
//!
//! The reader ([`WavReader`], [`read_wav`], [`read_wav_file`]) is a small streaming RIFF
//! parser of its own: it never seeks, so it reads from pipes (`sox ... -t wav - |
//! clearvox enhance -`) whose headers carry "unknown" sizes, and it tells apart the many
//! ways a file can be unusable with one-line messages that say what was found and what
//! is supported. Damage it can work around (a data chunk cut short, a partial last
//! frame, NaN samples) is repaired and reported as warnings instead of failing.
//!
//! The writer ([`WavFileWriter`], [`write_wav_file`]) writes through `hound` into a
//! hidden temporary file next to the target and renames it over the target only when
//! the file is complete, so an interrupted run never leaves a truncated output or
//! destroys an existing one. That temporary file is an [`AtomicFile`]: an unpredictable
//! name, created exclusively (a planted file or symbolic link is never opened), with
//! the permission bits asked for; any other output file should go through it too.
//! [`write_wav_to`] writes audio held in memory to any byte sink, and
//! [`WavStreamWriter`] streams audio of any length to one (stdout) in constant memory.

mod atomic;
mod wav_read;
mod wav_stream;
mod wav_write;

use std::path::{Path, PathBuf};

pub use atomic::AtomicFile;
pub use wav_read::{
    read_wav, read_wav_file, ReadWarnings, Truncation, WavAudio, WavReader, WavSpec,
};
pub use wav_stream::WavStreamWriter;
pub use wav_write::{write_wav_file, write_wav_to, OutputFormat, WavFileWriter, MAX_DATA_BYTES};

/// Why a WAV file could not be read or written.
///
/// Every message is one line that names the offending value and, where it helps, what
/// is supported instead, so the CLI can print it as it is. It converts into the crate's
/// [`Error`](crate::Error) with `?`, message unchanged.
///
/// # Examples
///
/// ```
/// use clearvox::io::{read_wav, WavError};
///
/// let err = read_wav(&b"these are notes, not audio"[..]).unwrap_err();
/// assert!(matches!(err, WavError::NotWav(_)));
/// assert_eq!(
///     err.to_string(),
///     "not a WAV file: it starts with \"thes\" instead of \"RIFF\""
/// );
///
/// // In a function returning the crate's error type, `?` converts it.
/// fn duration(wav: &[u8]) -> clearvox::Result<f64> {
///     Ok(read_wav(wav)?.duration_s())
/// }
/// assert!(duration(b"RIFX").is_err());
/// ```
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum WavError {
    /// The input file could not be opened.
    #[error("cannot open {}: {reason}", path.display())]
    Open {
        /// The file that was asked for.
        path: PathBuf,
        /// What the OS said, without the error number.
        reason: String,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },

    /// Reading the input failed for another reason than its end.
    #[error("cannot read the WAV input: {reason}")]
    Read {
        /// What the OS said, without the error number.
        reason: String,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },

    /// The input is not a RIFF/WAVE stream at all.
    #[error("not a WAV file: {0}")]
    NotWav(String),

    /// A big-endian (RIFX) WAV file.
    #[error(
        "big-endian WAV (RIFX) is not supported: only little-endian RIFF and RF64 WAV files are"
    )]
    BigEndian,

    /// The header ends before the audio starts.
    #[error("WAV header is truncated: the input ends {0}")]
    Truncated(String),

    /// The `fmt ` chunk is too short for the format it announces.
    #[error("malformed WAV header: {0}")]
    Malformed(String),

    /// A sample encoding other than PCM or IEEE float.
    #[error(
        "unsupported WAV encoding {} (format tag {tag:#06x}): supported are PCM 8/16/24/32-bit and IEEE float 32-bit",
        name.unwrap_or("of unknown type")
    )]
    UnsupportedEncoding {
        /// The format tag found (for WAVE_FORMAT_EXTENSIBLE, the sub-format's tag).
        tag: u16,
        /// A human name for the tag, where one is well known.
        name: Option<&'static str>,
    },

    /// A WAVE_FORMAT_EXTENSIBLE sub-format that is not a registered audio format tag.
    #[error(
        "unsupported WAVE_FORMAT_EXTENSIBLE sub-format {guid}: supported are PCM and IEEE float"
    )]
    UnsupportedSubFormat {
        /// The sub-format GUID, in the usual hyphenated form.
        guid: String,
    },

    /// A sample size the encoding does not come in here.
    #[error("unsupported {encoding} sample size of {bits} bits: supported are {supported}")]
    UnsupportedBits {
        /// "PCM" or "IEEE float".
        encoding: &'static str,
        /// Bits per sample found.
        bits: u16,
        /// The sizes supported for this encoding.
        supported: &'static str,
    },

    /// A channel count or sample rate outside what clearvox reads and writes.
    #[error(transparent)]
    Limit(#[from] crate::limits::LimitError),

    /// The header's bytes per frame disagree with its channels and sample size.
    #[error("inconsistent WAV header: block align is {block_align} bytes, but {channels} channel(s) of {bytes}-byte samples need {expected}")]
    BadBlockAlign {
        /// Block align found.
        block_align: u16,
        /// Channels found.
        channels: u16,
        /// Bytes per sample (container size).
        bytes: usize,
        /// What the block align should be.
        expected: usize,
    },

    /// No complete sample frame in the data chunk.
    #[error("no audio data: {0}")]
    NoAudio(String),

    /// A buffer given to [`WavReader::read_frames`] cannot hold a single frame.
    #[error(
        "read buffer of {len} samples cannot hold one {channels}-channel frame: \
         give it at least {channels} samples"
    )]
    BufferTooSmall {
        /// Length of the buffer given.
        len: usize,
        /// Channels per frame.
        channels: u16,
    },

    /// The folder the output should go to does not exist.
    #[error("output folder does not exist: {}", .0.display())]
    OutputFolderMissing(PathBuf),

    /// The output path cannot name a WAV file (it is a folder, or has no file name).
    #[error("output path {} {reason}", path.display())]
    BadOutputPath {
        /// The output path given.
        path: PathBuf,
        /// What is wrong with it.
        reason: &'static str,
    },

    /// Writing the output failed.
    #[error("cannot write {}: {reason}", path.display())]
    Write {
        /// The output (the target, not the temporary file; `-` for a stream).
        path: PathBuf,
        /// What went wrong.
        reason: String,
        /// The underlying error, when the OS reported one.
        #[source]
        source: Option<std::io::Error>,
    },

    /// Writing to a stream (stdout) failed.
    #[error("cannot write the WAV output stream: {reason}")]
    WriteStream {
        /// What the OS said, without the error number.
        reason: String,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },

    /// Samples handed to a writer that are not a whole number of frames.
    #[error(
        "{len} samples are not a whole number of {channels}-channel frames: \
         write interleaved audio in whole frames"
    )]
    PartialFrame {
        /// Number of samples given.
        len: usize,
        /// Channels per frame.
        channels: u16,
    },

    /// More audio given to a [`WavStreamWriter`] than the header it already wrote
    /// announced.
    #[error("more audio than the {announced} frames announced in the WAV header already written")]
    StreamOverrun {
        /// Frames the header announced.
        announced: u64,
    },

    /// More audio than a WAV file's 32-bit sizes can describe.
    #[error(
        "output too long for a WAV file: more than {max} bytes of audio data \
         (about {hours:.1} h at this rate and format); split it into shorter files"
    )]
    TooLong {
        /// Largest data size a WAV file can hold.
        max: u64,
        /// That size as a duration in hours, for the message.
        hours: f64,
    },
}

/// The last 12 bytes (as stored) of every WAVE_FORMAT_EXTENSIBLE sub-format GUID that
/// wraps a plain format tag: `XXXXXXXX-0000-0010-8000-00aa00389b71`, the tag first.
pub(crate) const GUID_TAIL: [u8; 12] = [
    0x00, 0x00, 0x10, 0x00, 0x80, 0x00, 0x00, 0xaa, 0x00, 0x38, 0x9b, 0x71,
];

/// The OS's description of an I/O error, without the trailing " (os error N)".
///
/// Users need "No such file or directory", not the errno behind it.
pub fn os_reason(e: &std::io::Error) -> String {
    without_os_error_number(&e.to_string()).to_string()
}

/// `text` without a trailing " (os error N)", for messages that carry an I/O error's
/// text inside their own (an error chain shown as one line).
///
/// ```
/// use clearvox::io::without_os_error_number;
///
/// let shown = "cannot open in.wav: No such file or directory (os error 2)";
/// assert_eq!(
///     without_os_error_number(shown),
///     "cannot open in.wav: No such file or directory"
/// );
/// ```
pub fn without_os_error_number(text: &str) -> &str {
    match text.rfind(" (os error ") {
        Some(i) if text.ends_with(')') => &text[..i],
        _ => text,
    }
}

/// The error for an output I/O failure on `path`.
pub(crate) fn write_error(path: &Path, e: std::io::Error) -> WavError {
    WavError::Write {
        path: path.to_path_buf(),
        reason: os_reason(&e),
        source: Some(e),
    }
}

/// Checks a channel count and rate against what clearvox reads and writes.
fn check_spec(sample_rate: u32, channels: u16) -> Result<(), WavError> {
    crate::limits::check_channels(usize::from(channels))?;
    crate::limits::check_sample_rate(sample_rate)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn os_reason_drops_the_error_number() {
        let e = std::io::Error::from_raw_os_error(2);
        let r = os_reason(&e);
        assert!(!r.contains("os error"), "{r}");
        assert!(!r.is_empty());
        let custom = std::io::Error::other("disk on fire");
        assert_eq!(os_reason(&custom), "disk on fire");
    }
}
