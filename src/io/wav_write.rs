//! WAV output that never leaves a half-written file behind.
//!
//! [`WavFileWriter`] writes through `hound` into the hidden temporary file of an
//! [`AtomicFile`] (in the target's folder, an unpredictable name, created exclusively,
//! with the requested permission bits) and only [`finish`](WavFileWriter::finish)
//! renames it over the target. A writer dropped before that (an error, a panic, a
//! Ctrl-C handler that unwinds) removes its temporary file and leaves an existing
//! target as it was. Only a process killed outright can leave a stale hidden `.tmp`
//! file.
//!
//! [`write_wav_to`] writes to any byte sink, including non-seekable ones like stdout:
//! all samples are in memory, so the header can be written first with the final sizes.
//! Both produce the same bytes for the same audio. [`WavStreamWriter`](super::WavStreamWriter)
//! streams to such a sink when the length is not known up front.

use std::fs::{self, File};
use std::io::{self, BufWriter, Write};
use std::path::{Path, PathBuf};
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use super::{check_spec, os_reason, write_error, AtomicFile, WavError, GUID_TAIL};
use crate::dsp::convert::{f32_to_i16, ParseFormatError, SampleFormat};

/// Largest data chunk written, in bytes: the RIFF size field (data plus up to 60 bytes
/// of header) must still fit in 32 bits. RF64 output is not written.
pub const MAX_DATA_BYTES: u64 = u32::MAX as u64 - 68;

/// Bytes of the buffer between the converter and the file or stream.
const WRITE_BUFFER_BYTES: usize = 64 * 1024;

/// The sample encoding of a written WAV file.
///
/// Three are enough: 16-bit for size and compatibility, 24-bit for masters, float for
/// headroom and exactness (the pipeline works in `f32`). That is why this is not
/// [`SampleFormat`], which also has the 8- and 32-bit integer encodings files may come
/// in; [`OutputFormat::for_input`] maps one to the other.
///
/// # Examples
///
/// ```
/// use clearvox::dsp::convert::SampleFormat;
/// use clearvox::io::OutputFormat;
///
/// let format: OutputFormat = "S24".parse()?;
/// assert_eq!(format, OutputFormat::S24);
/// assert_eq!(format.to_string(), "s24");
///
/// // Keep what the input had: 8- and 16-bit stay 16-bit, 32-bit becomes float.
/// assert_eq!(OutputFormat::for_input(SampleFormat::U8), OutputFormat::S16);
/// assert_eq!(OutputFormat::for_input(SampleFormat::S32), OutputFormat::F32);
///
/// let err = "mp3".parse::<OutputFormat>().unwrap_err();
/// assert_eq!(
///     err.to_string(),
///     "unknown output format \"mp3\": supported are s16, s24 and f32"
/// );
/// # Ok::<(), clearvox::dsp::convert::ParseFormatError>(())
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum OutputFormat {
    /// Signed 16-bit PCM, rounded and clipped to full scale.
    S16,
    /// Signed 24-bit PCM (3 bytes), rounded and clipped to full scale.
    S24,
    /// IEEE 32-bit float; not clipped, so peaks above 1.0 survive.
    F32,
}

impl OutputFormat {
    /// Every output format, in the order of the documentation and error messages.
    pub const ALL: [Self; 3] = [Self::S16, Self::S24, Self::F32];

    /// Short name, as used on the command line and in configuration (`s16`, ...).
    pub fn name(self) -> &'static str {
        match self {
            Self::S16 => "s16",
            Self::S24 => "s24",
            Self::F32 => "f32",
        }
    }

    /// The output format that keeps what an input in `input` format had.
    ///
    /// 8- and 16-bit inputs give 16-bit (8-bit output is too coarse for processed
    /// audio), 24-bit stays 24-bit, and 32-bit integer and float inputs give float:
    /// the samples have passed through `f32`, whose 24-bit mantissa holds everything a
    /// 32-bit integer input kept, and float output keeps the headroom as well, where
    /// 24-bit integer output would clip peaks above full scale.
    pub fn for_input(input: SampleFormat) -> Self {
        match input {
            SampleFormat::U8 | SampleFormat::S16 => Self::S16,
            SampleFormat::S24 => Self::S24,
            SampleFormat::S32 | SampleFormat::F32 => Self::F32,
        }
    }

    /// The sample format a reader reports for a file written in this format.
    pub fn sample_format(self) -> SampleFormat {
        match self {
            Self::S16 => SampleFormat::S16,
            Self::S24 => SampleFormat::S24,
            Self::F32 => SampleFormat::F32,
        }
    }

    /// Bytes per sample in the file.
    pub fn bytes(self) -> usize {
        self.sample_format().bytes()
    }

    /// The header that every writer here puts before `data_bytes` bytes of audio of
    /// `channels` channels at `sample_rate` in this format: 44 bytes for 16-bit mono or
    /// stereo, 68 (WAVE_FORMAT_EXTENSIBLE) otherwise; the audio follows it.
    ///
    /// For a file written in place as it grows (the stream receiver's): written again
    /// at the start of the file after every append, it keeps the file a valid WAV of the
    /// audio so far. Nothing is checked and nothing panics: a size or rate too large for
    /// its field saturates, so check the spec and size first where they come from input.
    ///
    /// # Examples
    ///
    /// ```
    /// use clearvox::io::{write_wav_to, OutputFormat};
    ///
    /// let mut file = Vec::new();
    /// write_wav_to(&mut file, 16_000, 1, OutputFormat::S16, &[0.5; 10])?;
    /// let header = OutputFormat::S16.wav_header(16_000, 1, 20);
    /// assert_eq!(header.len(), 44);
    /// assert_eq!(file[..44], header[..]);
    /// assert_eq!(OutputFormat::F32.wav_header(48_000, 2, 0).len(), 68);
    /// # Ok::<(), clearvox::io::WavError>(())
    /// ```
    pub fn wav_header(self, sample_rate: u32, channels: u16, data_bytes: u32) -> Vec<u8> {
        let (bytes, len) = header(sample_rate, channels, self, data_bytes);
        bytes[..len].to_vec()
    }

    fn hound_spec(self, sample_rate: u32, channels: u16) -> hound::WavSpec {
        let sample_format = match self {
            Self::S16 | Self::S24 => hound::SampleFormat::Int,
            Self::F32 => hound::SampleFormat::Float,
        };
        hound::WavSpec {
            channels,
            sample_rate,
            bits_per_sample: self.sample_format().bits(),
            sample_format,
        }
    }
}

impl std::fmt::Display for OutputFormat {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for OutputFormat {
    type Err = ParseFormatError;

    /// Parses `s16`, `s24` or `f32` (any case, surrounding spaces ignored).
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let t = s.trim();
        Self::ALL
            .into_iter()
            .find(|f| f.name().eq_ignore_ascii_case(t))
            .ok_or_else(|| ParseFormatError::new("output format", s, "s16, s24 and f32"))
    }
}

/// NaN becomes silence and ±Inf full scale, so that no format receives them.
#[inline]
fn finite(v: f32) -> f32 {
    if v.is_finite() {
        v
    } else if v.is_nan() {
        0.0
    } else {
        v.signum()
    }
}

/// Converts a sample to signed 24-bit, rounding and saturating.
#[inline]
fn f32_to_i24(v: f32) -> i32 {
    (finite(v) * 8_388_608.0)
        .round()
        .clamp(-8_388_608.0, 8_388_607.0) as i32
}

/// Encodes `samples` little-endian into the front of `out`
/// (`out.len() >= samples.len() * format.bytes()`).
pub(super) fn encode(format: OutputFormat, samples: &[f32], out: &mut [u8]) {
    let n = format.bytes();
    for (&v, b) in samples.iter().zip(out.chunks_exact_mut(n)) {
        match format {
            OutputFormat::S16 => b.copy_from_slice(&f32_to_i16(finite(v)).to_le_bytes()),
            OutputFormat::S24 => b.copy_from_slice(&f32_to_i24(v).to_le_bytes()[..3]),
            OutputFormat::F32 => b.copy_from_slice(&finite(v).to_le_bytes()),
        }
    }
}

/// The error for audio that would not fit in a WAV file.
fn too_long(sample_rate: u32, channels: u16, format: OutputFormat) -> WavError {
    let bytes_per_s = f64::from(sample_rate) * f64::from(channels) * format.bytes() as f64;
    WavError::TooLong {
        max: MAX_DATA_BYTES,
        hours: MAX_DATA_BYTES as f64 / bytes_per_s / 3600.0,
    }
}

/// Writes a WAV file atomically: the target appears complete or not at all.
///
/// Every [`write`](Self::write) converts and buffers; nothing allocates after
/// [`create`](Self::create). Call [`finish`](Self::finish) to publish the file.
///
/// # Examples
///
/// ```
/// use clearvox::io::{read_wav_file, OutputFormat, WavFileWriter};
///
/// let dir = tempfile::tempdir()?;
/// let path = dir.path().join("take.wav");
///
/// let mut writer = WavFileWriter::create(&path, 16_000, 1, OutputFormat::S16)?;
/// for _ in 0..10 {
///     writer.write(&[0.1; 160])?; // 10 ms at a time
/// }
/// assert_eq!(writer.frames_written(), 1_600);
/// assert!(!path.exists()); // nothing there until it is finished
///
/// writer.finish()?;
/// assert_eq!(read_wav_file(&path)?.frames(), 1_600);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub struct WavFileWriter {
    target: PathBuf,
    /// `Some` until finished or dropped; an `Option` so that `Drop` can close it before
    /// the guard removes the file.
    writer: Option<hound::WavWriter<BufWriter<File>>>,
    /// A second handle on the temporary file, to sync it after `hound` has closed its own.
    sync_handle: Option<File>,
    /// The temporary file; removes it when dropped unfinished (after the handles above,
    /// which `Drop` closes first).
    guard: Option<AtomicFile>,
    format: OutputFormat,
    sample_rate: u32,
    channels: u16,
    data_bytes: u64,
}

impl WavFileWriter {
    /// Starts writing `path`: checks the rate, channels and folder, and creates the
    /// hidden temporary file next to `path`.
    ///
    /// A folder that does not exist is an error, not created: a typo in `-o` should not
    /// scatter folders. The file gets the usual permissions (0o666 less the umask); see
    /// [`create_with_mode`](Self::create_with_mode) to choose them.
    pub fn create(
        path: impl AsRef<Path>,
        sample_rate: u32,
        channels: u16,
        format: OutputFormat,
    ) -> Result<Self, WavError> {
        Self::open(path.as_ref(), sample_rate, channels, format, None)
    }

    /// [`create`](Self::create), with the Unix permission bits the file gets (the
    /// temporary file already has them, so the audio is never readable by more users
    /// than the result): a tool that derives one file from another keeps a private
    /// input private. Ignored on other systems.
    pub fn create_with_mode(
        path: impl AsRef<Path>,
        sample_rate: u32,
        channels: u16,
        format: OutputFormat,
        mode: u32,
    ) -> Result<Self, WavError> {
        Self::open(path.as_ref(), sample_rate, channels, format, Some(mode))
    }

    fn open(
        path: &Path,
        sample_rate: u32,
        channels: u16,
        format: OutputFormat,
        mode: Option<u32>,
    ) -> Result<Self, WavError> {
        let target = path.to_path_buf();
        check_spec(sample_rate, channels)?;
        if target.file_name().is_none() {
            return Err(WavError::BadOutputPath {
                path: target,
                reason: "does not name a file",
            });
        }
        let folder = match target.parent() {
            Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
            _ => PathBuf::from("."),
        };
        match fs::metadata(&folder) {
            Ok(m) if m.is_dir() => {}
            Ok(_) => {
                return Err(WavError::Write {
                    path: target.clone(),
                    reason: format!("{} is not a folder", folder.display()),
                    source: None,
                })
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                return Err(WavError::OutputFolderMissing(folder))
            }
            Err(e) => return Err(write_error(&target, e)),
        }
        if target.is_dir() {
            return Err(WavError::BadOutputPath {
                path: target,
                reason: "is a folder",
            });
        }
        let (guard, file) =
            AtomicFile::create(&target, mode).map_err(|e| write_error(&target, e))?;
        // From here on, `Drop` removes the temporary file if anything fails.
        let mut this = Self {
            target,
            writer: None,
            sync_handle: None,
            guard: Some(guard),
            format,
            sample_rate,
            channels,
            data_bytes: 0,
        };
        this.sync_handle = Some(file.try_clone().map_err(|e| write_error(&this.target, e))?);
        let buffered = BufWriter::with_capacity(WRITE_BUFFER_BYTES, file);
        let writer = hound::WavWriter::new(buffered, format.hound_spec(sample_rate, channels))
            .map_err(|e| hound_error(&this.target, e))?;
        this.writer = Some(writer);
        Ok(this)
    }

    /// Appends interleaved samples (a whole number of frames), converting each: integer
    /// formats round and clip to full scale; NaN is written as silence, ±Inf as ±1.0.
    pub fn write(&mut self, samples: &[f32]) -> Result<(), WavError> {
        if !samples.len().is_multiple_of(self.channels as usize) {
            return Err(WavError::PartialFrame {
                len: samples.len(),
                channels: self.channels,
            });
        }
        let add = samples.len() as u64 * self.format.bytes() as u64;
        if self.data_bytes + add > MAX_DATA_BYTES {
            return Err(too_long(self.sample_rate, self.channels, self.format));
        }
        let Some(w) = self.writer.as_mut() else {
            return Err(closed(&self.target));
        };
        let res = match self.format {
            OutputFormat::S16 => samples
                .iter()
                .try_for_each(|&v| w.write_sample(f32_to_i16(finite(v)))),
            OutputFormat::S24 => samples
                .iter()
                .try_for_each(|&v| w.write_sample(f32_to_i24(v))),
            OutputFormat::F32 => samples.iter().try_for_each(|&v| w.write_sample(finite(v))),
        };
        res.map_err(|e| hound_error(&self.target, e))?;
        self.data_bytes += add;
        Ok(())
    }

    /// Completes the header, syncs the file to disk and renames it over the target.
    ///
    /// On failure the temporary file is removed and an existing target is untouched.
    pub fn finish(mut self) -> Result<(), WavError> {
        let Some(w) = self.writer.take() else {
            return Err(closed(&self.target));
        };
        w.finalize().map_err(|e| hound_error(&self.target, e))?;
        let (Some(file), Some(guard)) = (self.sync_handle.take(), self.guard.take()) else {
            return Err(closed(&self.target));
        };
        guard.commit(file).map_err(|e| write_error(&self.target, e))
    }

    /// The file this writer will produce.
    pub fn path(&self) -> &Path {
        &self.target
    }

    /// Frames written so far.
    pub fn frames_written(&self) -> u64 {
        self.data_bytes / (self.channels as u64 * self.format.bytes() as u64)
    }

    /// The encoding being written.
    pub fn format(&self) -> OutputFormat {
        self.format
    }
}

impl std::fmt::Debug for WavFileWriter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WavFileWriter")
            .field("target", &self.target)
            .field("temp", &self.guard.as_ref().map(AtomicFile::temp_path))
            .field("format", &self.format)
            .field("sample_rate", &self.sample_rate)
            .field("channels", &self.channels)
            .field("data_bytes", &self.data_bytes)
            .finish_non_exhaustive()
    }
}

impl Drop for WavFileWriter {
    fn drop(&mut self) {
        // Close both handles before the guard removes the file: some systems refuse to
        // remove open files.
        drop(self.writer.take());
        drop(self.sync_handle.take());
        drop(self.guard.take());
    }
}

/// The error for a writer used after it was closed (cannot happen through the API,
/// which consumes the writer in `finish`, but is not worth a panic).
fn closed(target: &Path) -> WavError {
    WavError::Write {
        path: target.to_path_buf(),
        reason: "the writer is already closed".into(),
        source: None,
    }
}

fn hound_error(target: &Path, e: hound::Error) -> WavError {
    match e {
        hound::Error::IoError(e) => write_error(target, e),
        other => WavError::Write {
            path: target.to_path_buf(),
            reason: other.to_string(),
            source: None,
        },
    }
}

/// Writes a whole WAV file atomically (see [`WavFileWriter`]).
pub fn write_wav_file(
    path: impl AsRef<Path>,
    sample_rate: u32,
    channels: u16,
    format: OutputFormat,
    samples: &[f32],
) -> Result<(), WavError> {
    let mut w = WavFileWriter::create(path, sample_rate, channels, format)?;
    w.write(samples)?;
    w.finish()
}

/// Writes a whole WAV file to any byte sink (stdout for `-o -`, a socket, a `Vec`),
/// without seeking: the sizes are known up front. Flushes the sink at the end.
pub fn write_wav_to<W: Write>(
    mut writer: W,
    sample_rate: u32,
    channels: u16,
    format: OutputFormat,
    samples: &[f32],
) -> Result<(), WavError> {
    check_spec(sample_rate, channels)?;
    if !samples.len().is_multiple_of(channels as usize) {
        return Err(WavError::PartialFrame {
            len: samples.len(),
            channels,
        });
    }
    let data_bytes = samples.len() as u64 * format.bytes() as u64;
    let data_bytes = match u32::try_from(data_bytes) {
        Ok(d) if u64::from(d) <= MAX_DATA_BYTES => d,
        _ => return Err(too_long(sample_rate, channels, format)),
    };
    let stream_error = |e: io::Error| WavError::WriteStream {
        reason: os_reason(&e),
        source: e,
    };
    let (header, header_len) = header(sample_rate, channels, format, data_bytes);
    writer
        .write_all(&header[..header_len])
        .map_err(stream_error)?;
    let mut buf = [0u8; 8 * 1024];
    let per_chunk = buf.len() / format.bytes();
    for chunk in samples.chunks(per_chunk) {
        encode(format, chunk, &mut buf);
        writer
            .write_all(&buf[..chunk.len() * format.bytes()])
            .map_err(stream_error)?;
    }
    writer.flush().map_err(stream_error)
}

/// The bytes before the audio, laid out as `hound` lays them out (plain PCM/float `fmt`
/// for up to two channels of 16 bits, WAVE_FORMAT_EXTENSIBLE otherwise), so that file
/// and stream output are identical. Returns the buffer and how much of it is used.
///
/// Values too large for their fields saturate (the writers check them before).
fn header(
    sample_rate: u32,
    channels: u16,
    format: OutputFormat,
    data_bytes: u32,
) -> ([u8; 68], usize) {
    let bytes = format.bytes() as u16;
    let bits = bytes * 8;
    let block_align = channels.saturating_mul(bytes);
    let extensible = channels > 2 || bits > 16;
    let tag: u16 = match format {
        OutputFormat::S16 | OutputFormat::S24 => 0x0001,
        OutputFormat::F32 => 0x0003,
    };
    let len = if extensible { 68 } else { 44 };
    let mut h = [0u8; 68];
    let mut at = 0;
    let mut put = |b: &[u8]| {
        h[at..at + b.len()].copy_from_slice(b);
        at += b.len();
    };
    put(b"RIFF");
    put(&data_bytes.saturating_add(len as u32 - 8).to_le_bytes());
    put(b"WAVE");
    put(b"fmt ");
    put(&(if extensible { 40u32 } else { 16 }).to_le_bytes());
    put(&(if extensible { 0xFFFEu16 } else { tag }).to_le_bytes());
    put(&channels.to_le_bytes());
    put(&sample_rate.to_le_bytes());
    put(&sample_rate
        .saturating_mul(u32::from(block_align))
        .to_le_bytes());
    put(&block_align.to_le_bytes());
    put(&bits.to_le_bytes());
    if extensible {
        put(&22u16.to_le_bytes());
        put(&bits.to_le_bytes());
        let mask: u32 = 1u32
            .checked_shl(u32::from(channels))
            .map_or(u32::MAX, |bit| bit - 1);
        put(&mask.to_le_bytes());
        put(&u32::from(tag).to_le_bytes());
        put(&GUID_TAIL);
    }
    put(b"data");
    put(&data_bytes.to_le_bytes());
    (h, len)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::io::{read_wav, read_wav_file, WavReader};
    use crate::limits::LimitError;

    fn files_in(dir: &Path) -> Vec<String> {
        let mut v: Vec<String> = fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        v.sort();
        v
    }

    /// Samples every format holds exactly, plus values that must be clipped or cleaned.
    fn exact_for(format: OutputFormat) -> (Vec<f32>, Vec<f32>) {
        let exact: Vec<f32> = match format {
            OutputFormat::S16 => vec![
                0.0,
                0.5,
                -1.0,
                32_767.0 / 32_768.0,
                -3.0 / 32_768.0,
                1.0 / 32_768.0,
            ],
            OutputFormat::S24 => {
                vec![
                    0.0,
                    0.5,
                    -1.0,
                    8_388_607.0 / 8_388_608.0,
                    -3.0 / 8_388_608.0,
                    1.0 / 8_388_608.0,
                ]
            }
            OutputFormat::F32 => vec![0.0, 0.123_456_79, -1.0, 1.5, -2.25, 1e-9],
        };
        let full = match format {
            OutputFormat::S16 => 32_767.0 / 32_768.0,
            OutputFormat::S24 => 8_388_607.0 / 8_388_608.0,
            OutputFormat::F32 => 1.0,
        };
        let mut input = exact.clone();
        let mut expected = exact;
        input.extend_from_slice(&[f32::NAN, f32::INFINITY, f32::NEG_INFINITY, 0.0]);
        expected.extend_from_slice(&[0.0, full, -1.0, 0.0]);
        (input, expected)
    }

    #[test]
    fn round_trips_every_format_through_the_reader() {
        let dir = tempfile::tempdir().unwrap();
        for format in OutputFormat::ALL {
            for channels in [1u16, 2, 5] {
                let (one, want_one) = exact_for(format);
                let input: Vec<f32> = one
                    .iter()
                    .flat_map(|&v| std::iter::repeat_n(v, channels as usize))
                    .collect();
                let want: Vec<f32> = want_one
                    .iter()
                    .flat_map(|&v| std::iter::repeat_n(v, channels as usize))
                    .collect();
                let path = dir.path().join(format!("{format}-{channels}.wav"));
                write_wav_file(&path, 44_100, channels, format, &input).unwrap();
                let a = read_wav_file(&path).unwrap();
                assert_eq!(a.spec.sample_rate, 44_100);
                assert_eq!(a.spec.channels, channels);
                assert_eq!(a.spec.format, format.sample_format());
                assert_eq!(a.samples, want, "{format} x{channels}");
                assert!(a.warnings.is_empty());

                // The stream writer produces the very same bytes.
                let mut streamed = Vec::new();
                write_wav_to(&mut streamed, 44_100, channels, format, &input).unwrap();
                assert_eq!(streamed, fs::read(&path).unwrap(), "{format} x{channels}");
                assert_eq!(read_wav(&streamed[..]).unwrap().samples, want);
            }
        }
        // Only the finished files, no temporary leftovers.
        assert!(files_in(dir.path())
            .iter()
            .all(|f| f.ends_with(".wav") && !f.starts_with('.')));
    }

    #[test]
    fn headers_are_what_the_writers_write_and_never_panic() {
        for format in OutputFormat::ALL {
            for channels in [1u16, 2, 8] {
                let samples = vec![0.25f32; usize::from(channels) * 7];
                let mut file = Vec::new();
                write_wav_to(&mut file, 22_050, channels, format, &samples).unwrap();
                let data = (samples.len() * format.bytes()) as u32;
                let header = format.wav_header(22_050, channels, data);
                assert_eq!(header[..], file[..file.len() - data as usize]);
                let spec = WavReader::new(&file[..]).unwrap().spec();
                assert_eq!((spec.sample_rate, spec.channels), (22_050, channels));
            }
        }
        // A growing file: the same header again with the new size.
        let mono = OutputFormat::S16.wav_header(16_000, 1, 0);
        let grown = OutputFormat::S16.wav_header(16_000, 1, 3_200);
        assert_eq!((mono.len(), grown.len()), (44, 44));
        assert_eq!(grown[4..8], 3_236u32.to_le_bytes());
        assert_eq!(grown[40..44], 3_200u32.to_le_bytes());
        assert_eq!(mono[..4], grown[..4]);
        assert_eq!(mono[8..40], grown[8..40]);
        // Out-of-range values saturate.
        let h = OutputFormat::F32.wav_header(u32::MAX, u16::MAX, u32::MAX);
        assert_eq!(h.len(), 68);
        assert_eq!(h[4..8], u32::MAX.to_le_bytes());
        assert_eq!(h[28..32], u32::MAX.to_le_bytes());
    }

    #[test]
    fn integer_formats_round_and_clip() {
        let mut out = [0u8; 12];
        encode(
            OutputFormat::S16,
            &[
                0.6 / 32_768.0,
                -0.6 / 32_768.0,
                1.5,
                -1.5,
                0.4 / 32_768.0,
                -1.0,
            ],
            &mut out,
        );
        let v: Vec<i16> = out
            .chunks_exact(2)
            .map(|b| i16::from_le_bytes([b[0], b[1]]))
            .collect();
        assert_eq!(v, [1, -1, 32_767, -32_768, 0, -32_768]);
        assert_eq!(f32_to_i24(0.6 / 8_388_608.0), 1);
        assert_eq!(f32_to_i24(2.0), 8_388_607);
        assert_eq!(f32_to_i24(-2.0), -8_388_608);
        assert_eq!(f32_to_i24(f32::NAN), 0);
        let mut b = [0u8; 6];
        encode(OutputFormat::S24, &[-1.0 / 8_388_608.0, 0.5], &mut b);
        assert_eq!(b, [0xff, 0xff, 0xff, 0x00, 0x00, 0x40]);
    }

    #[test]
    fn hound_reads_what_is_streamed() {
        for (format, channels) in [
            (OutputFormat::S16, 2u16),
            (OutputFormat::S24, 1),
            (OutputFormat::F32, 3),
        ] {
            let samples: Vec<f32> = (0..channels as usize * 50)
                .map(|i| (i as f32 / 200.0) - 0.5)
                .collect();
            let mut bytes = Vec::new();
            write_wav_to(&mut bytes, 16_000, channels, format, &samples).unwrap();
            let r = hound::WavReader::new(std::io::Cursor::new(bytes)).unwrap();
            assert_eq!(r.spec().channels, channels);
            assert_eq!(r.spec().sample_rate, 16_000);
            assert_eq!(r.spec().bits_per_sample, format.sample_format().bits());
            assert_eq!(r.len() as usize, samples.len());
        }
    }

    #[test]
    fn temp_file_is_hidden_and_removed_on_drop() {
        let dir = tempfile::tempdir().unwrap();
        let target = dir.path().join("out.wav");
        let mut w = WavFileWriter::create(&target, 48_000, 1, OutputFormat::S16).unwrap();
        w.write(&[0.1; 480]).unwrap();
        let during = files_in(dir.path());
        assert_eq!(during.len(), 1, "{during:?}");
        assert!(
            during[0].starts_with(".out.wav.") && during[0].ends_with(".tmp"),
            "{during:?}"
        );
        assert!(!target.exists());
        drop(w);
        assert!(files_in(dir.path()).is_empty());
    }

    #[test]
    fn existing_target_is_untouched_until_finish() {
        let dir = tempfile::tempdir().unwrap();
        let target = dir.path().join("keep.wav");
        fs::write(&target, b"precious").unwrap();
        {
            let mut w = WavFileWriter::create(&target, 16_000, 2, OutputFormat::F32).unwrap();
            w.write(&[0.25; 320]).unwrap();
            assert_eq!(w.frames_written(), 160);
            assert_eq!(fs::read(&target).unwrap(), b"precious");
            // Dropped here without finish, as on an error path.
        }
        assert_eq!(fs::read(&target).unwrap(), b"precious");
        assert_eq!(files_in(dir.path()), ["keep.wav"]);

        let mut w = WavFileWriter::create(&target, 16_000, 2, OutputFormat::F32).unwrap();
        w.write(&[0.25; 320]).unwrap();
        w.finish().unwrap();
        let a = read_wav_file(&target).unwrap();
        assert_eq!(a.frames(), 160);
        assert_eq!(files_in(dir.path()), ["keep.wav"]);
    }

    #[test]
    fn failed_rename_removes_the_temp_file() {
        let dir = tempfile::tempdir().unwrap();
        let target = dir.path().join("late.wav");
        let mut w = WavFileWriter::create(&target, 16_000, 1, OutputFormat::S16).unwrap();
        w.write(&[0.0; 16]).unwrap();
        // Something puts a non-empty folder where the file should go.
        fs::create_dir(&target).unwrap();
        fs::write(target.join("x"), b"x").unwrap();
        let e = w.finish().unwrap_err();
        assert!(matches!(e, WavError::Write { .. }), "{e:?}");
        assert!(e.to_string().contains("late.wav"), "{e}");
        assert_eq!(files_in(dir.path()), ["late.wav"]);
        assert_eq!(files_in(&target), ["x"]);
    }

    #[test]
    fn output_path_problems_are_named() {
        let dir = tempfile::tempdir().unwrap();
        let missing = dir.path().join("no").join("such");
        let e =
            WavFileWriter::create(missing.join("x.wav"), 48_000, 1, OutputFormat::S16).unwrap_err();
        assert!(matches!(&e, WavError::OutputFolderMissing(p) if *p == missing));
        assert_eq!(
            e.to_string(),
            format!("output folder does not exist: {}", missing.display())
        );
        assert!(
            !dir.path().join("no").exists(),
            "the folder must not be created"
        );

        let e = WavFileWriter::create(dir.path(), 48_000, 1, OutputFormat::S16).unwrap_err();
        assert!(
            matches!(
                e,
                WavError::BadOutputPath {
                    reason: "is a folder",
                    ..
                }
            ),
            "{e:?}"
        );

        let file = dir.path().join("plain");
        fs::write(&file, b"").unwrap();
        let e =
            write_wav_file(file.join("x.wav"), 48_000, 1, OutputFormat::S16, &[0.0]).unwrap_err();
        assert!(e.to_string().contains("is not a folder"), "{e}");

        let e =
            WavFileWriter::create(dir.path().join(".."), 48_000, 1, OutputFormat::S16).unwrap_err();
        assert!(
            matches!(
                e,
                WavError::BadOutputPath {
                    reason: "does not name a file",
                    ..
                }
            ),
            "{e:?}"
        );
    }

    #[test]
    fn refuses_bad_specs_and_partial_frames() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("a.wav");
        let e = WavFileWriter::create(&p, 4_000, 1, OutputFormat::S16).unwrap_err();
        assert!(matches!(
            e,
            WavError::Limit(LimitError::SampleRate { rate: 4_000 })
        ));
        let e = WavFileWriter::create(&p, 48_000, 0, OutputFormat::S16).unwrap_err();
        assert!(matches!(
            e,
            WavError::Limit(LimitError::Channels { channels: 0 })
        ));
        let e = write_wav_to(Vec::new(), 48_000, 9, OutputFormat::S16, &[]).unwrap_err();
        assert!(matches!(
            e,
            WavError::Limit(LimitError::Channels { channels: 9 })
        ));

        let mut w = WavFileWriter::create(&p, 48_000, 2, OutputFormat::S24).unwrap();
        let e = w.write(&[0.0; 3]).unwrap_err();
        assert!(matches!(
            e,
            WavError::PartialFrame {
                len: 3,
                channels: 2
            }
        ));
        assert_eq!(
            e.to_string(),
            "3 samples are not a whole number of 2-channel frames: \
             write interleaved audio in whole frames"
        );
        let e = write_wav_to(Vec::new(), 48_000, 2, OutputFormat::S16, &[0.0; 5]).unwrap_err();
        assert!(matches!(
            e,
            WavError::PartialFrame {
                len: 5,
                channels: 2
            }
        ));
    }

    #[test]
    fn refuses_more_than_a_wav_can_hold() {
        let dir = tempfile::tempdir().unwrap();
        let mut w = WavFileWriter::create(dir.path().join("big.wav"), 48_000, 2, OutputFormat::F32)
            .unwrap();
        w.data_bytes = MAX_DATA_BYTES - 8;
        w.write(&[0.0; 2]).unwrap();
        let e = w.write(&[0.0; 2]).unwrap_err();
        assert!(matches!(e, WavError::TooLong { .. }));
        let m = e.to_string();
        assert!(m.contains("4294967227 bytes") && m.contains("3.1 h"), "{m}");
    }

    #[test]
    fn stream_errors_are_reported() {
        struct Broken;
        impl Write for Broken {
            fn write(&mut self, _: &[u8]) -> io::Result<usize> {
                Err(io::Error::from(io::ErrorKind::BrokenPipe))
            }
            fn flush(&mut self) -> io::Result<()> {
                Ok(())
            }
        }
        let e = write_wav_to(Broken, 48_000, 1, OutputFormat::S16, &[0.0; 10]).unwrap_err();
        assert!(matches!(e, WavError::WriteStream { .. }));
        assert!(
            e.to_string()
                .starts_with("cannot write the WAV output stream: "),
            "{e}"
        );
    }

    #[test]
    fn output_format_names_parsing_and_mapping() {
        for f in OutputFormat::ALL {
            assert_eq!(f.name().parse::<OutputFormat>().unwrap(), f);
            assert_eq!(f.to_string(), f.name());
            assert_eq!(
                serde_json::to_string(&f).unwrap(),
                format!("\"{}\"", f.name())
            );
            assert_eq!(
                serde_json::from_str::<OutputFormat>(&format!("\"{f}\"")).unwrap(),
                f
            );
        }
        assert_eq!(" S24 ".parse::<OutputFormat>().unwrap(), OutputFormat::S24);
        let e = "wav16".parse::<OutputFormat>().unwrap_err();
        assert_eq!(
            e.to_string(),
            "unknown output format \"wav16\": supported are s16, s24 and f32"
        );
        assert_eq!(OutputFormat::for_input(SampleFormat::U8), OutputFormat::S16);
        assert_eq!(
            OutputFormat::for_input(SampleFormat::S16),
            OutputFormat::S16
        );
        assert_eq!(
            OutputFormat::for_input(SampleFormat::S24),
            OutputFormat::S24
        );
        assert_eq!(
            OutputFormat::for_input(SampleFormat::S32),
            OutputFormat::F32
        );
        assert_eq!(
            OutputFormat::for_input(SampleFormat::F32),
            OutputFormat::F32
        );
    }
}
