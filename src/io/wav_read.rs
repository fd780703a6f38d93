//! A streaming RIFF/WAVE reader that never seeks.
//!
//! `hound` needs `Seek` and trusts the sizes in the header, so it cannot read what
//! `sox -t wav -` or `ffmpeg ... -f wav pipe:` write to a pipe (sizes of 0 or
//! 0xFFFFFFFF, meaning "until the end"). This parser walks the chunks in order,
//! skipping everything before `data` by reading, and then decodes the audio from one
//! byte buffer that it keeps for its whole life.
//!
//! RF64 (and its EBU twin BW64) is supported: its `ds64` chunk gives the 64-bit data
//! size that the 32-bit `data` header cannot hold. Big-endian RIFX is refused.

use std::fmt;
use std::fmt::Write as _;
use std::fs::File;
use std::io::{self, BufReader, Read};
use std::path::Path;

use super::{check_spec, os_reason, WavError, GUID_TAIL};
use crate::dsp::convert::{sanitize, SampleFormat};

/// `wFormatTag` of integer PCM.
const TAG_PCM: u16 = 0x0001;
/// `wFormatTag` of IEEE float.
const TAG_FLOAT: u16 = 0x0003;
/// `wFormatTag` of WAVE_FORMAT_EXTENSIBLE (the real encoding is in the sub-format GUID).
const TAG_EXTENSIBLE: u16 = 0xFFFE;
/// The data size `sox` writes when it cannot seek back to fill in the real one (to a
/// pipe), rounded down to whole frames. Like 0 and 0xFFFFFFFF (ffmpeg and others), it
/// means "until the end of the input". A real file of exactly this size reads the same.
const SOX_UNKNOWN_LEN: u32 = 0x7FFF_F000;
/// Size of the reader's byte buffer (rounded down to whole frames).
const BUFFER_BYTES: usize = 64 * 1024;
/// Most samples [`read_wav`] reserves up front from the header's claim, so that a bogus
/// size in a small file cannot make it reserve gigabytes.
const MAX_PREALLOC_SAMPLES: u64 = 1 << 24;
/// Frames [`read_wav`] asks for per call.
const READ_CHUNK_FRAMES: usize = 16 * 1024;

/// What a WAV stream contains.
///
/// # Examples
///
/// ```
/// use clearvox::dsp::convert::SampleFormat;
/// use clearvox::io::{write_wav_to, OutputFormat, WavReader};
///
/// let mut wav = Vec::new();
/// write_wav_to(&mut wav, 44_100, 2, OutputFormat::S24, &[0.0; 2 * 4_410])?;
///
/// let spec = WavReader::new(wav.as_slice())?.spec();
/// assert_eq!((spec.sample_rate, spec.channels), (44_100, 2));
/// assert_eq!(spec.format, SampleFormat::S24);
/// assert_eq!(spec.frame_bytes(), 6);
/// assert_eq!(spec.frames_to_secs(4_410), 0.1);
/// # Ok::<(), clearvox::io::WavError>(())
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct WavSpec {
    /// Frames per second.
    pub sample_rate: u32,
    /// Interleaved channels per frame.
    pub channels: u16,
    /// How each sample is stored. For WAVE_FORMAT_EXTENSIBLE files with fewer valid
    /// bits than the container (24 bits in 32), this is the container's format: the
    /// valid bits sit at the top, so decoding the container gives the right scale.
    pub format: SampleFormat,
}

impl WavSpec {
    /// Bytes one interleaved frame takes in the file.
    pub fn frame_bytes(&self) -> usize {
        self.channels as usize * self.format.bytes()
    }

    /// Seconds that `frames` frames last at this rate.
    pub fn frames_to_secs(&self, frames: u64) -> f64 {
        frames as f64 / f64::from(self.sample_rate.max(1))
    }

    /// Reads a WAV header up to the first byte of its audio, and returns what it says
    /// with the audio's offset from the start, in bytes.
    ///
    /// Unlike [`WavReader::new`], it needs no audio after the header and leaves the
    /// sizes the header claims aside: it reads the start of a file that is still being
    /// written, or that a killed process left with sizes that were never filled in, for
    /// a caller that counts the audio from the file's length instead. Fails as
    /// [`WavReader::new`] does on what is not a supported WAV header, and with
    /// [`WavError::Truncated`] when the input ends before the audio starts.
    ///
    /// # Examples
    ///
    /// ```
    /// use clearvox::dsp::convert::SampleFormat;
    /// use clearvox::io::{write_wav_to, OutputFormat, WavSpec};
    ///
    /// let mut wav = Vec::new();
    /// write_wav_to(&mut wav, 16_000, 1, OutputFormat::S16, &[0.1; 480])?;
    /// wav[40..44].fill(0); // the data size, as a crash may leave it
    /// let (spec, audio_at) = WavSpec::read_header(&wav[..])?;
    /// assert_eq!((spec.sample_rate, spec.channels), (16_000, 1));
    /// assert_eq!(spec.format, SampleFormat::S16);
    /// assert_eq!(audio_at, 44);
    /// assert_eq!((wav.len() as u64 - audio_at) / 2, 480);
    /// // The header alone is enough; less is not.
    /// assert!(WavSpec::read_header(&wav[..44]).is_ok());
    /// assert!(WavSpec::read_header(&wav[..43]).is_err());
    /// # Ok::<(), clearvox::io::WavError>(())
    /// ```
    pub fn read_header<R: Read>(input: R) -> Result<(WavSpec, u64), WavError> {
        let mut counted = Counted {
            inner: input,
            bytes: 0,
        };
        let header = parse_header(&mut counted)?;
        Ok((header.spec, counted.bytes))
    }
}

/// A reader that counts the bytes read through it.
struct Counted<R> {
    inner: R,
    bytes: u64,
}

impl<R: Read> Read for Counted<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.bytes += n as u64;
        Ok(n)
    }
}

/// A data chunk that claimed more bytes than the input held.
///
/// # Examples
///
/// A file cut off while it was being copied still reads, up to where it ends:
///
/// ```
/// use clearvox::io::{write_wav_to, OutputFormat, Truncation, WavReader};
///
/// let mut wav = Vec::new();
/// write_wav_to(&mut wav, 16_000, 1, OutputFormat::S16, &[0.25; 1_600])?;
/// wav.truncate(wav.len() - 1_000); // the last 500 samples are lost
///
/// let mut reader = WavReader::new(wav.as_slice())?;
/// let mut buf = [0.0f32; 1_024];
/// let mut frames = 0;
/// loop {
///     let n = reader.read_frames(&mut buf)?;
///     if n == 0 {
///         break;
///     }
///     frames += n;
/// }
/// assert_eq!(frames, 1_100);
/// assert_eq!(
///     reader.warning_counts().truncated,
///     Some(Truncation {
///         claimed_bytes: 3_200,
///         actual_bytes: 2_200
///     })
/// );
/// assert_eq!(
///     reader.warnings(),
///     ["data chunk claims 3200 bytes but the file ends after 2200; \
///       kept the 0.07 s that are there"]
/// );
/// # Ok::<(), clearvox::io::WavError>(())
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Truncation {
    /// Bytes the header announced.
    pub claimed_bytes: u64,
    /// Bytes that were actually there.
    pub actual_bytes: u64,
}

/// Damage that the reader worked around, counted so the caller can say what happened
/// instead of failing a file that is still mostly usable.
///
/// # Examples
///
/// A float file with a NaN sample:
///
/// ```
/// use clearvox::io::{write_wav_to, OutputFormat, WavReader};
///
/// let mut wav = Vec::new();
/// write_wav_to(&mut wav, 16_000, 1, OutputFormat::F32, &[0.25; 100])?;
/// let audio_start = wav.len() - 100 * 4;
/// wav[audio_start..audio_start + 4].copy_from_slice(&f32::NAN.to_le_bytes());
///
/// let mut reader = WavReader::new(wav.as_slice())?;
/// let mut samples = [0.0f32; 100];
/// assert_eq!(reader.read_frames(&mut samples)?, 100);
/// assert_eq!(samples[0], 0.0); // silence instead of NaN
///
/// let warnings = reader.warning_counts();
/// assert!(!warnings.is_empty());
/// assert_eq!(warnings.non_finite_samples, 1);
/// assert_eq!(
///     warnings.messages(&reader.spec()),
///     ["replaced 1 NaN/Inf samples (NaN with silence, Inf with full scale)"]
/// );
/// # Ok::<(), clearvox::io::WavError>(())
/// ```
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ReadWarnings {
    /// Set when the data chunk ended early (a file cut off while being written or
    /// copied). Known only once the end has been reached.
    pub truncated: Option<Truncation>,
    /// Bytes of an incomplete last frame that were dropped (0 if none).
    pub partial_frame_bytes: usize,
    /// NaN or infinite float samples replaced by 0 (NaN) or ±1.0 (±Inf).
    pub non_finite_samples: u64,
}

impl ReadWarnings {
    /// Whether nothing needed repairing.
    pub fn is_empty(&self) -> bool {
        *self == Self::default()
    }

    /// One line per repair, for a person to read.
    pub fn messages(&self, spec: &WavSpec) -> Vec<String> {
        let mut out = Vec::new();
        if let Some(t) = self.truncated {
            let frames = t.actual_bytes / spec.frame_bytes().max(1) as u64;
            out.push(format!(
                "data chunk claims {} bytes but the file ends after {}; kept the {:.2} s that are there",
                t.claimed_bytes,
                t.actual_bytes,
                spec.frames_to_secs(frames)
            ));
        }
        if self.partial_frame_bytes > 0 {
            out.push(format!(
                "dropped an incomplete last frame ({} of {} bytes)",
                self.partial_frame_bytes,
                spec.frame_bytes()
            ));
        }
        if self.non_finite_samples > 0 {
            out.push(format!(
                "replaced {} NaN/Inf samples (NaN with silence, Inf with full scale)",
                self.non_finite_samples
            ));
        }
        out
    }
}

/// Reads a WAV stream frame by frame, converting every sample to `f32` in ±1.0.
///
/// Construction parses the header and buffers the first frames, so that a stream with
/// no audio fails there and not in the middle of a pipeline. After that,
/// [`read_frames`](Self::read_frames) allocates nothing.
///
/// # Examples
///
/// Reading a WAV file made in memory, 1024 frames at a time:
///
/// ```
/// use clearvox::io::{write_wav_to, OutputFormat, WavReader};
///
/// let tone: Vec<f32> = (0..4_800).map(|n| 0.5 * (n as f32 * 0.06).sin()).collect();
/// let mut wav = Vec::new();
/// write_wav_to(&mut wav, 48_000, 1, OutputFormat::S16, &tone)?;
///
/// // Any `Read` works: a file, stdin, a socket, a byte slice.
/// let mut reader = WavReader::new(wav.as_slice())?;
/// assert_eq!(reader.spec().sample_rate, 48_000);
/// assert_eq!(reader.len_frames(), Some(4_800));
///
/// let mut buf = [0.0f32; 1_024];
/// let mut total = 0;
/// loop {
///     let n = reader.read_frames(&mut buf)?;
///     if n == 0 {
///         break;
///     }
///     // ... process buf[..n] ...
///     total += n;
/// }
/// assert_eq!(total, 4_800);
/// assert!(reader.warnings().is_empty());
/// # Ok::<(), clearvox::io::WavError>(())
/// ```
pub struct WavReader<R> {
    inner: R,
    spec: WavSpec,
    frame_bytes: usize,
    /// Data size from the header; `None` when streamed ("read to the end").
    declared: Option<u64>,
    /// Bytes of the declared data not yet pulled from `inner`.
    remaining: Option<u64>,
    /// Data bytes pulled from `inner` so far.
    pulled: u64,
    buf: Box<[u8]>,
    /// Undecoded bytes are `buf[start..end]`.
    start: usize,
    end: usize,
    /// `inner` has nothing more to give (its end, or the declared size reached).
    at_end: bool,
    /// The end-of-data warnings have been recorded.
    ended: bool,
    warnings: ReadWarnings,
}

impl<R> fmt::Debug for WavReader<R> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("WavReader")
            .field("spec", &self.spec)
            .field("declared_bytes", &self.declared)
            .field("bytes_read", &self.pulled)
            .field("warnings", &self.warnings)
            .finish_non_exhaustive()
    }
}

impl<R: Read> WavReader<R> {
    /// Parses the header of `inner` up to the start of the audio, skipping unknown
    /// chunks, and buffers the first frames.
    ///
    /// Fails with a message naming the problem if the stream is not a WAV file, uses an
    /// encoding, size, channel count or rate that is not supported, ends before its
    /// audio, or holds no complete frame.
    pub fn new(mut inner: R) -> Result<Self, WavError> {
        let header = parse_header(&mut inner)?;
        let frame_bytes = header.spec.frame_bytes();
        let buf_len = (BUFFER_BYTES / frame_bytes).max(1) * frame_bytes;
        let mut reader = Self {
            inner,
            spec: header.spec,
            frame_bytes,
            declared: header.data_len,
            remaining: header.data_len,
            pulled: 0,
            buf: vec![0u8; buf_len].into_boxed_slice(),
            start: 0,
            end: 0,
            at_end: header.data_len == Some(0),
            ended: false,
            warnings: ReadWarnings::default(),
        };
        while reader.end - reader.start < frame_bytes && !reader.at_end {
            reader.refill()?;
        }
        if reader.end - reader.start < frame_bytes {
            return Err(WavError::NoAudio(match (reader.pulled, reader.declared) {
                (0, Some(d)) if d > 0 => format!(
                    "the data chunk claims {d} bytes but the input ends right after its header"
                ),
                (0, _) => "the data chunk is empty".to_string(),
                (n, _) => format!(
                    "the data chunk holds only {n} byte(s), less than one {frame_bytes}-byte frame"
                ),
            }));
        }
        Ok(reader)
    }

    /// Reads interleaved samples into `out`, whole frames only, until `out` cannot take
    /// another frame or the audio ends. Returns the number of samples written; 0 means
    /// the end of the audio.
    ///
    /// Fails if `out` is shorter than one frame (which would be indistinguishable from
    /// the end) or if reading fails.
    pub fn read_frames(&mut self, out: &mut [f32]) -> Result<usize, WavError> {
        let channels = self.spec.channels as usize;
        if out.len() < channels {
            return Err(WavError::BufferTooSmall {
                len: out.len(),
                channels: self.spec.channels,
            });
        }
        let want = out.len() / channels * channels;
        let mut written = 0;
        while written < want {
            let avail = (self.end - self.start) / self.frame_bytes;
            if avail == 0 {
                if self.at_end {
                    self.record_end();
                    break;
                }
                self.refill()?;
                continue;
            }
            let frames = avail.min((want - written) / channels);
            let bytes = frames * self.frame_bytes;
            let dst = &mut out[written..written + frames * channels];
            self.spec
                .format
                .decode_le(&self.buf[self.start..self.start + bytes], dst);
            if self.spec.format == SampleFormat::F32 {
                self.warnings.non_finite_samples += sanitize(dst) as u64;
            }
            self.start += bytes;
            written += frames * channels;
        }
        Ok(written)
    }

    /// Pulls more data bytes from `inner` into the buffer (one `read` call).
    fn refill(&mut self) -> Result<(), WavError> {
        if self.at_end {
            return Ok(());
        }
        if self.start > 0 {
            self.buf.copy_within(self.start..self.end, 0);
            self.end -= self.start;
            self.start = 0;
        }
        let mut room = self.buf.len() - self.end;
        if let Some(rem) = self.remaining {
            room = room.min(usize::try_from(rem).unwrap_or(usize::MAX));
        }
        if room == 0 {
            // Only reachable when the declared size has been read in full.
            self.at_end = self.remaining == Some(0);
            return Ok(());
        }
        loop {
            match self.inner.read(&mut self.buf[self.end..self.end + room]) {
                Ok(0) => {
                    self.at_end = true;
                    return Ok(());
                }
                Ok(n) => {
                    let n = n.min(room);
                    self.end += n;
                    self.pulled += n as u64;
                    if let Some(rem) = self.remaining.as_mut() {
                        *rem -= n as u64;
                        if *rem == 0 {
                            self.at_end = true;
                        }
                    }
                    return Ok(());
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(read_error(e)),
            }
        }
    }

    /// Records what was wrong with the end of the data, once.
    fn record_end(&mut self) {
        if self.ended {
            return;
        }
        self.ended = true;
        let leftover = self.end - self.start;
        if leftover > 0 {
            self.warnings.partial_frame_bytes = leftover;
            self.start = self.end;
        }
        if let Some(claimed) = self.declared {
            if self.pulled < claimed {
                self.warnings.truncated = Some(Truncation {
                    claimed_bytes: claimed,
                    actual_bytes: self.pulled,
                });
            }
        }
    }
}

impl<R> WavReader<R> {
    /// The stream's rate, channels and sample format.
    pub fn spec(&self) -> WavSpec {
        self.spec
    }

    /// Frames the header announces; `None` for a streamed WAV whose size is unknown.
    ///
    /// A truncated file delivers fewer (see [`warnings`](Self::warnings)).
    pub fn len_frames(&self) -> Option<u64> {
        self.declared.map(|d| d / self.frame_bytes as u64)
    }

    /// The repairs made so far, as counters. Truncation and a partial last frame are
    /// known only once [`read_frames`](Self::read_frames) has returned 0.
    pub fn warning_counts(&self) -> &ReadWarnings {
        &self.warnings
    }

    /// The repairs made so far, one line each (see [`ReadWarnings::messages`]).
    pub fn warnings(&self) -> Vec<String> {
        self.warnings.messages(&self.spec)
    }
}

/// A whole WAV file in memory.
///
/// # Examples
///
/// ```
/// use clearvox::io::{read_wav, write_wav_to, OutputFormat};
///
/// let stereo = [0.5f32, -0.5].repeat(8_000); // 0.5 s at 16 kHz
/// let mut wav = Vec::new();
/// write_wav_to(&mut wav, 16_000, 2, OutputFormat::S24, &stereo)?;
///
/// let audio = read_wav(wav.as_slice())?;
/// assert_eq!(audio.spec.channels, 2);
/// assert_eq!(audio.frames(), 8_000);
/// assert_eq!(audio.duration_s(), 0.5);
/// assert_eq!(audio.samples, stereo);
/// assert!(audio.warnings.is_empty());
/// # Ok::<(), clearvox::io::WavError>(())
/// ```
#[derive(Clone, Debug, PartialEq)]
pub struct WavAudio {
    /// Rate, channels and the format the samples were stored in.
    pub spec: WavSpec,
    /// Interleaved samples in ±1.0.
    pub samples: Vec<f32>,
    /// What was repaired while reading, one line each.
    pub warnings: Vec<String>,
}

impl WavAudio {
    /// Number of frames (samples per channel).
    pub fn frames(&self) -> usize {
        self.samples.len() / (self.spec.channels as usize).max(1)
    }

    /// Length in seconds.
    pub fn duration_s(&self) -> f64 {
        self.spec.frames_to_secs(self.frames() as u64)
    }
}

/// Reads a whole WAV stream (a file, stdin, a byte slice) into memory.
pub fn read_wav<R: Read>(reader: R) -> Result<WavAudio, WavError> {
    let mut r = WavReader::new(reader)?;
    let spec = r.spec();
    let channels = spec.channels as usize;
    let hint = r
        .len_frames()
        .unwrap_or(0)
        .saturating_mul(channels as u64)
        .min(MAX_PREALLOC_SAMPLES);
    let mut samples = Vec::with_capacity(usize::try_from(hint).unwrap_or(0));
    loop {
        let len = samples.len();
        samples.resize(len + READ_CHUNK_FRAMES * channels, 0.0);
        let n = r.read_frames(&mut samples[len..])?;
        samples.truncate(len + n);
        if n == 0 {
            break;
        }
    }
    Ok(WavAudio {
        spec,
        samples,
        warnings: r.warnings(),
    })
}

/// Reads a whole WAV file into memory; a file that cannot be opened is an error naming
/// the path and the OS's reason.
pub fn read_wav_file(path: &Path) -> Result<WavAudio, WavError> {
    let file = File::open(path).map_err(|e| WavError::Open {
        path: path.to_path_buf(),
        reason: os_reason(&e),
        source: e,
    })?;
    read_wav(BufReader::new(file))
}

/// What the header says about the audio.
struct Header {
    spec: WavSpec,
    /// Data size in bytes; `None` when it is to be read to the end.
    data_len: Option<u64>,
}

fn read_error(e: io::Error) -> WavError {
    WavError::Read {
        reason: os_reason(&e),
        source: e,
    }
}

/// Reads until `buf` is full or the input ends; returns the bytes read.
fn fill<R: Read>(r: &mut R, buf: &mut [u8]) -> Result<usize, WavError> {
    let mut got = 0;
    while got < buf.len() {
        match r.read(&mut buf[got..]) {
            Ok(0) => break,
            Ok(n) => got += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(read_error(e)),
        }
    }
    Ok(got)
}

/// Fills `buf` completely, or fails as a truncated header ending `where_`.
fn exact<R: Read>(r: &mut R, buf: &mut [u8], where_: impl Fn() -> String) -> Result<(), WavError> {
    if fill(r, buf)? < buf.len() {
        return Err(WavError::Truncated(where_()));
    }
    Ok(())
}

/// Reads and discards `n` bytes, or fails as a truncated header ending `where_`.
fn skip<R: Read>(r: &mut R, n: u64, where_: impl Fn() -> String) -> Result<(), WavError> {
    let copied = io::copy(&mut r.by_ref().take(n), &mut io::sink()).map_err(read_error)?;
    if copied < n {
        return Err(WavError::Truncated(where_()));
    }
    Ok(())
}

fn le16(b: &[u8], at: usize) -> u16 {
    u16::from_le_bytes([b[at], b[at + 1]])
}

fn le32(b: &[u8], at: usize) -> u32 {
    u32::from_le_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]])
}

fn le64(b: &[u8], at: usize) -> u64 {
    u64::from(le32(b, at)) | (u64::from(le32(b, at + 4)) << 32)
}

/// A chunk id or magic, quoted, with non-printable bytes escaped.
fn show_id(id: &[u8]) -> String {
    let mut s = String::from("\"");
    for &b in id {
        if (0x20..0x7f).contains(&b) && b != b'"' && b != b'\\' {
            s.push(char::from(b));
        } else {
            let _ = write!(s, "\\x{b:02x}");
        }
    }
    s.push('"');
    s
}

/// A GUID as stored in a WAV file (mixed-endian), in the usual hyphenated form.
fn show_guid(g: &[u8]) -> String {
    let mut s = format!("{:08x}-{:04x}-{:04x}-", le32(g, 0), le16(g, 4), le16(g, 6));
    for (i, b) in g[8..16].iter().enumerate() {
        if i == 2 {
            s.push('-');
        }
        let _ = write!(s, "{b:02x}");
    }
    s
}

/// A human name for a WAV format tag, where one is well known.
fn tag_name(tag: u16) -> Option<&'static str> {
    Some(match tag {
        0x0002 => "Microsoft ADPCM",
        0x0006 => "A-law",
        0x0007 => "mu-law",
        0x0011 => "IMA ADPCM",
        0x0031 => "GSM 6.10",
        0x0050 => "MPEG audio",
        0x0055 => "MPEG layer 3",
        0x00FF => "AAC",
        0x0161..=0x0163 => "Windows Media Audio",
        0xF1AC => "FLAC",
        _ => return None,
    })
}

/// Walks the RIFF header up to the first byte of the audio.
fn parse_header<R: Read>(r: &mut R) -> Result<Header, WavError> {
    let mut riff = [0u8; 12];
    let n = fill(r, &mut riff)?;
    if n == 0 {
        return Err(WavError::NoAudio("the input is empty (0 bytes)".into()));
    }
    if n < 4 {
        return Err(WavError::NotWav(format!(
            "the input is only {n} byte(s) long"
        )));
    }
    let rf64 = match &riff[..4] {
        b"RIFF" => false,
        b"RF64" | b"BW64" => true,
        b"RIFX" => return Err(WavError::BigEndian),
        other => {
            return Err(WavError::NotWav(format!(
                "it starts with {} instead of \"RIFF\"",
                show_id(other)
            )))
        }
    };
    if n < 12 {
        return Err(WavError::Truncated(format!(
            "inside the 12-byte RIFF header (after {n} bytes)"
        )));
    }
    if &riff[8..12] != b"WAVE" {
        return Err(WavError::NotWav(format!(
            "a RIFF file of type {} instead of \"WAVE\"",
            show_id(&riff[8..12])
        )));
    }

    let mut spec: Option<WavSpec> = None;
    let mut ds64_data: Option<u64> = None;
    loop {
        let next = if spec.is_none() { "fmt" } else { "data" };
        let mut head = [0u8; 8];
        match fill(r, &mut head)? {
            8 => {}
            0 => return Err(WavError::Truncated(format!("before the {next} chunk"))),
            _ => {
                return Err(WavError::Truncated(format!(
                    "inside a chunk header, before the {next} chunk"
                )))
            }
        }
        let id = [head[0], head[1], head[2], head[3]];
        let size = le32(&head, 4);
        let padded = u64::from(size) + u64::from(size & 1);
        let inside = || format!("inside the {} chunk, before the data chunk", show_id(&id));
        match &id {
            b"fmt " if spec.is_none() => spec = Some(parse_fmt(r, size)?),
            b"ds64" if rf64 => {
                if size < 24 {
                    return Err(WavError::Malformed(format!(
                        "RF64 ds64 chunk of {size} bytes is shorter than the 24 bytes it needs"
                    )));
                }
                let mut b = [0u8; 24];
                exact(r, &mut b, inside)?;
                ds64_data = Some(le64(&b, 8));
                skip(r, padded - 24, inside)?;
            }
            b"data" => {
                let spec = spec.ok_or_else(|| {
                    WavError::Malformed("the data chunk comes before the fmt chunk".into())
                })?;
                let frame = spec.frame_bytes() as u32;
                let data_len = match size {
                    u32::MAX if rf64 => ds64_data.filter(|&d| d != 0),
                    0 | u32::MAX => None,
                    s if s == SOX_UNKNOWN_LEN / frame * frame => None,
                    s => Some(u64::from(s)),
                };
                return Ok(Header { spec, data_len });
            }
            _ => skip(r, padded, inside)?,
        }
    }
}

/// Parses a `fmt ` chunk body of `size` bytes (and its pad byte) into a spec, checking
/// everything the reader relies on.
fn parse_fmt<R: Read>(r: &mut R, size: u32) -> Result<WavSpec, WavError> {
    if size < 16 {
        return Err(WavError::Malformed(format!(
            "fmt chunk of {size} bytes is shorter than the 16 bytes every WAV format needs"
        )));
    }
    let inside = || "inside the fmt chunk".to_string();
    let mut b = [0u8; 40];
    let take = size.min(40) as usize;
    exact(r, &mut b[..take], inside)?;
    skip(
        r,
        u64::from(size) - take as u64 + u64::from(size & 1),
        inside,
    )?;

    let tag = le16(&b, 0);
    let channels = le16(&b, 2);
    let sample_rate = le32(&b, 4);
    let block_align = le16(&b, 12);
    let bits = le16(&b, 14);

    let (encoding, valid_bits) = if tag == TAG_EXTENSIBLE {
        if size < 40 {
            return Err(WavError::Malformed(format!(
                "WAVE_FORMAT_EXTENSIBLE fmt chunk of {size} bytes is shorter than the 40 bytes it needs"
            )));
        }
        let guid = &b[24..40];
        if guid[2..4] != [0, 0] || guid[4..] != GUID_TAIL {
            return Err(WavError::UnsupportedSubFormat {
                guid: show_guid(guid),
            });
        }
        (le16(guid, 0), le16(&b, 18))
    } else {
        (tag, bits)
    };

    let format = match (encoding, bits) {
        (TAG_PCM, 8) => SampleFormat::U8,
        (TAG_PCM, 16) => SampleFormat::S16,
        (TAG_PCM, 24) => SampleFormat::S24,
        (TAG_PCM, 32) => SampleFormat::S32,
        (TAG_PCM, _) => {
            return Err(WavError::UnsupportedBits {
                encoding: "PCM",
                bits,
                supported: "8, 16, 24 and 32 bits",
            })
        }
        (TAG_FLOAT, 32) => SampleFormat::F32,
        (TAG_FLOAT, _) => {
            return Err(WavError::UnsupportedBits {
                encoding: "IEEE float",
                bits,
                supported: "32 bits (and PCM 8, 16, 24 and 32 bits)",
            })
        }
        (other, _) => {
            return Err(WavError::UnsupportedEncoding {
                tag: other,
                name: tag_name(other),
            })
        }
    };
    if valid_bits > bits {
        return Err(WavError::Malformed(format!(
            "{valid_bits} valid bits per sample do not fit the {bits}-bit sample container"
        )));
    }
    check_spec(sample_rate, channels)?;
    let expected = channels as usize * format.bytes();
    if block_align as usize != expected {
        return Err(WavError::BadBlockAlign {
            block_align,
            channels,
            bytes: format.bytes(),
            expected,
        });
    }
    Ok(WavSpec {
        sample_rate,
        channels,
        format,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::limits::LimitError;

    /// A byte source that can only be read (no `Seek`), at most `step` bytes a call,
    /// like a pipe delivering in pieces.
    struct Trickle<'a> {
        data: &'a [u8],
        step: usize,
    }

    impl Read for Trickle<'_> {
        fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
            let n = buf.len().min(self.step).min(self.data.len());
            buf[..n].copy_from_slice(&self.data[..n]);
            self.data = &self.data[n..];
            Ok(n)
        }
    }

    fn fmt_body(tag: u16, channels: u16, rate: u32, bits: u16, block_align: u16) -> Vec<u8> {
        let mut b = Vec::new();
        b.extend_from_slice(&tag.to_le_bytes());
        b.extend_from_slice(&channels.to_le_bytes());
        b.extend_from_slice(&rate.to_le_bytes());
        b.extend_from_slice(&(rate * u32::from(block_align)).to_le_bytes());
        b.extend_from_slice(&block_align.to_le_bytes());
        b.extend_from_slice(&bits.to_le_bytes());
        b
    }

    fn plain_fmt(tag: u16, channels: u16, rate: u32, bits: u16) -> Vec<u8> {
        fmt_body(tag, channels, rate, bits, channels * bits / 8)
    }

    fn sub_guid(tag: u16) -> [u8; 16] {
        let mut g = [0u8; 16];
        g[..2].copy_from_slice(&tag.to_le_bytes());
        g[4..].copy_from_slice(&GUID_TAIL);
        g
    }

    fn ext_fmt(channels: u16, rate: u32, container: u16, valid: u16, guid: [u8; 16]) -> Vec<u8> {
        let mut b = fmt_body(
            TAG_EXTENSIBLE,
            channels,
            rate,
            container,
            channels * container / 8,
        );
        b.extend_from_slice(&22u16.to_le_bytes());
        b.extend_from_slice(&valid.to_le_bytes());
        b.extend_from_slice(&((1u32 << channels.min(18)) - 1).to_le_bytes());
        b.extend_from_slice(&guid);
        b
    }

    /// A chunk with its pad byte when the body is odd.
    fn chunk(id: &[u8; 4], body: &[u8]) -> Vec<u8> {
        let mut c = id.to_vec();
        c.extend_from_slice(&(body.len() as u32).to_le_bytes());
        c.extend_from_slice(body);
        if body.len() % 2 == 1 {
            c.push(0);
        }
        c
    }

    /// A data chunk header claiming `size`, followed by `body` as it is.
    fn data_sized(size: u32, body: &[u8]) -> Vec<u8> {
        let mut c = b"data".to_vec();
        c.extend_from_slice(&size.to_le_bytes());
        c.extend_from_slice(body);
        c
    }

    fn riff(magic: &[u8; 4], riff_size: Option<u32>, parts: &[Vec<u8>]) -> Vec<u8> {
        let body: Vec<u8> = parts.concat();
        let mut f = magic.to_vec();
        f.extend_from_slice(&riff_size.unwrap_or(body.len() as u32 + 4).to_le_bytes());
        f.extend_from_slice(b"WAVE");
        f.extend_from_slice(&body);
        f
    }

    fn wav(fmt: Vec<u8>, data: &[u8]) -> Vec<u8> {
        riff(b"RIFF", None, &[chunk(b"fmt ", &fmt), chunk(b"data", data)])
    }

    fn read(bytes: &[u8]) -> Result<WavAudio, WavError> {
        read_wav(Trickle {
            data: bytes,
            step: 7,
        })
    }

    fn ok(bytes: &[u8]) -> WavAudio {
        match read(bytes) {
            Ok(a) => a,
            Err(e) => panic!("refused: {e}"),
        }
    }

    fn refused(bytes: &[u8]) -> WavError {
        match read(bytes) {
            Ok(a) => panic!("accepted: {:?}", a.spec),
            Err(e) => e,
        }
    }

    /// The message is one line and names every `needle`.
    fn says(e: &WavError, needles: &[&str]) {
        let m = e.to_string();
        assert!(!m.contains('\n'), "multi-line message: {m:?}");
        for n in needles {
            assert!(m.contains(n), "{m:?} does not mention {n:?}");
        }
    }

    fn s16le(v: &[i16]) -> Vec<u8> {
        v.iter().flat_map(|x| x.to_le_bytes()).collect()
    }

    fn f32le(v: &[f32]) -> Vec<u8> {
        v.iter().flat_map(|x| x.to_le_bytes()).collect()
    }

    #[test]
    fn decodes_every_plain_format() {
        let a = ok(&wav(plain_fmt(1, 2, 8_000, 8), &[0, 255, 128, 192]));
        assert_eq!(a.spec.format, SampleFormat::U8);
        assert_eq!(a.samples, [-1.0, 127.0 / 128.0, 0.0, 0.5]);

        let a = ok(&wav(
            plain_fmt(1, 2, 16_000, 16),
            &s16le(&[-32768, 16384, 0, -1]),
        ));
        assert_eq!(
            a.spec,
            WavSpec {
                sample_rate: 16_000,
                channels: 2,
                format: SampleFormat::S16
            }
        );
        assert_eq!(a.samples, [-1.0, 0.5, 0.0, -1.0 / 32768.0]);
        assert_eq!(a.frames(), 2);

        let a = ok(&wav(
            plain_fmt(1, 1, 44_100, 24),
            &[0, 0, 0x80, 0, 0, 0x40, 0xff, 0xff, 0xff],
        ));
        assert_eq!(a.spec.format, SampleFormat::S24);
        assert_eq!(a.samples, [-1.0, 0.5, -1.0 / 8_388_608.0]);

        let a = ok(&wav(
            plain_fmt(1, 1, 48_000, 32),
            &[0, 0, 0, 0x80, 0, 0, 0, 0xc0],
        ));
        assert_eq!(a.spec.format, SampleFormat::S32);
        assert_eq!(a.samples, [-1.0, -0.5]);

        let a = ok(&wav(
            plain_fmt(3, 1, 192_000, 32),
            &f32le(&[0.25, -1.5, 0.0]),
        ));
        assert_eq!(a.spec.format, SampleFormat::F32);
        assert_eq!(a.samples, [0.25, -1.5, 0.0]);
        assert!(a.warnings.is_empty(), "{:?}", a.warnings);
    }

    #[test]
    fn decodes_extensible_pcm_float_and_24_in_32() {
        let a = ok(&wav(
            ext_fmt(2, 48_000, 16, 16, sub_guid(1)),
            &s16le(&[16384, -16384]),
        ));
        assert_eq!(a.spec.format, SampleFormat::S16);
        assert_eq!(a.samples, [0.5, -0.5]);

        let a = ok(&wav(ext_fmt(1, 48_000, 24, 24, sub_guid(1)), &[0, 0, 0xc0]));
        assert_eq!(a.samples, [-0.5]);

        let a = ok(&wav(
            ext_fmt(3, 48_000, 32, 32, sub_guid(3)),
            &f32le(&[0.1, 0.2, 0.3]),
        ));
        assert_eq!(a.spec.format, SampleFormat::F32);
        assert_eq!(a.samples, [0.1, 0.2, 0.3]);

        // 24 valid bits at the top of a 32-bit container.
        let vals = [0x40_0000i32 << 8, -(0x20_0000i32 << 8), 1 << 8];
        let bytes: Vec<u8> = vals.iter().flat_map(|v| v.to_le_bytes()).collect();
        let a = ok(&wav(ext_fmt(1, 48_000, 32, 24, sub_guid(1)), &bytes));
        assert_eq!(a.spec.format, SampleFormat::S32);
        assert_eq!(a.samples, [0.5, -0.25, 1.0 / 8_388_608.0]);

        // Valid bits left at 0 ("unspecified") is accepted.
        let a = ok(&wav(ext_fmt(1, 8_000, 16, 0, sub_guid(1)), &s16le(&[8192])));
        assert_eq!(a.samples, [0.25]);
    }

    #[test]
    fn skips_unknown_chunks_and_their_pad_bytes() {
        let f = riff(
            b"RIFF",
            None,
            &[
                chunk(b"JUNK", &[1, 2, 3, 4, 5]),
                chunk(b"fmt ", &plain_fmt(1, 1, 8_000, 16)),
                chunk(b"LIST", b"INFOISFT\x03\0\0\0ab\0"),
                chunk(b"fact", &[9, 0, 0, 0]),
                chunk(b"data", &s16le(&[1000, -1000, 3])),
                chunk(b"LIST", b"trailing"),
            ],
        );
        let a = ok(&f);
        assert_eq!(
            a.samples,
            [1000.0 / 32768.0, -1000.0 / 32768.0, 3.0 / 32768.0]
        );
        assert!(a.warnings.is_empty(), "{:?}", a.warnings);

        // An odd fmt chunk (18 bytes is common, 19 is not) is padded too.
        let mut fmt = plain_fmt(1, 1, 8_000, 16);
        fmt.extend_from_slice(&[0, 0, 7]);
        let a = ok(&riff(
            b"RIFF",
            None,
            &[chunk(b"fmt ", &fmt), chunk(b"data", &s16le(&[5]))],
        ));
        assert_eq!(a.samples, [5.0 / 32768.0]);
    }

    #[test]
    fn known_size_stops_at_the_end_of_the_data_chunk() {
        let f = riff(
            b"RIFF",
            None,
            &[
                chunk(b"fmt ", &plain_fmt(1, 1, 8_000, 8)),
                chunk(b"data", &[128, 255, 0]),
                chunk(b"LIST", &[200; 10]),
            ],
        );
        let mut r = WavReader::new(Trickle { data: &f, step: 3 }).unwrap();
        assert_eq!(r.len_frames(), Some(3));
        let mut out = [9.0f32; 64];
        assert_eq!(r.read_frames(&mut out).unwrap(), 3);
        assert_eq!(r.read_frames(&mut out).unwrap(), 0);
        assert_eq!(out[..3], [0.0, 127.0 / 128.0, -1.0]);
        assert!(r.warnings().is_empty());
    }

    #[test]
    fn streamed_sizes_read_to_the_end_without_seeking() {
        let samples: Vec<i16> = (0..1000).map(|i| (i * 37 % 2000 - 1000) as i16).collect();
        let body = s16le(&samples);
        // 0 and 0xFFFFFFFF, and what sox writes to a pipe (0x7FFFF000 in whole frames).
        for size in [0u32, u32::MAX, 0x7FFF_F000] {
            let f = riff(
                b"RIFF",
                Some(size),
                &[
                    chunk(b"fmt ", &plain_fmt(1, 2, 22_050, 16)),
                    data_sized(size, &body),
                ],
            );
            for step in [1, 5, 4096] {
                let mut r = WavReader::new(Trickle { data: &f, step }).unwrap();
                assert_eq!(r.len_frames(), None);
                let mut got = Vec::new();
                let mut out = [0.0f32; 33];
                loop {
                    let n = r.read_frames(&mut out).unwrap();
                    assert!(n.is_multiple_of(2) && n <= 32);
                    if n == 0 {
                        break;
                    }
                    got.extend_from_slice(&out[..n]);
                }
                let want: Vec<f32> = samples.iter().map(|&s| s as f32 / 32768.0).collect();
                assert_eq!(got, want, "size {size:#x}, step {step}");
                assert!(r.warnings().is_empty(), "{:?}", r.warnings());
            }
        }
    }

    #[test]
    fn sox_placeholder_size_is_rounded_to_whole_frames() {
        // 24-bit stereo: sox writes 0x7FFFF000 rounded down to 6-byte frames.
        let fmt = chunk(b"fmt ", &plain_fmt(1, 2, 48_000, 24));
        let body = [0u8; 60];
        let f = riff(
            b"RIFF",
            None,
            &[fmt.clone(), data_sized(2_147_479_548, &body)],
        );
        let a = ok(&f);
        assert_eq!(a.frames(), 10);
        assert!(a.warnings.is_empty(), "{:?}", a.warnings);
        // Any other large size is taken at its word.
        let f = riff(b"RIFF", None, &[fmt, data_sized(0x7FFF_F000, &body)]);
        let a = ok(&f);
        assert_eq!(a.frames(), 10);
        assert_eq!(a.warnings.len(), 1, "{:?}", a.warnings);
    }

    #[test]
    fn large_file_through_unaligned_reads() {
        // 24-bit stereo (6-byte frames) over several buffer refills, read in odd pieces.
        let frames: usize = 50_000;
        let mut body = Vec::new();
        let mut want = Vec::new();
        for i in 0..frames * 2 {
            let v = ((i as i32 * 7919) % 16_000_000) - 8_000_000;
            body.extend_from_slice(&v.to_le_bytes()[..3]);
            want.push(v as f32 / 8_388_608.0);
        }
        let f = wav(plain_fmt(1, 2, 96_000, 24), &body);
        let mut r = WavReader::new(Trickle {
            data: &f,
            step: 4093,
        })
        .unwrap();
        assert_eq!(r.len_frames(), Some(frames as u64));
        let mut got = Vec::new();
        let mut out = vec![0.0f32; 777];
        loop {
            let n = r.read_frames(&mut out).unwrap();
            if n == 0 {
                break;
            }
            got.extend_from_slice(&out[..n]);
        }
        assert_eq!(got, want);
    }

    #[test]
    fn a_header_is_read_without_its_audio() {
        let fmt = chunk(b"fmt ", &plain_fmt(TAG_PCM, 1, 8_000, 16));
        let bare = riff(b"RIFF", Some(0), &[fmt.clone(), data_sized(0, &[])]);
        let (spec, at) = WavSpec::read_header(&bare[..]).unwrap();
        assert_eq!(
            (spec.sample_rate, spec.channels, spec.format),
            (8_000, 1, SampleFormat::S16)
        );
        assert_eq!(at, 44);
        // Chunks before the audio move it; the sizes claimed do not matter.
        let list = chunk(b"LIST", b"INFOabc");
        let with_list = riff(
            b"RIFF",
            None,
            &[fmt, list, data_sized(u32::MAX, &s16le(&[1, 2]))],
        );
        let trickle = Trickle {
            data: &with_list,
            step: 3,
        };
        let (_, at) = WavSpec::read_header(trickle).unwrap();
        assert_eq!(at, 44 + 8 + 8);
        assert_eq!(with_list.len() as u64 - at, 4);
        // What is not a WAV header is refused as by the reader.
        assert!(matches!(
            WavSpec::read_header(&bare[..30]),
            Err(WavError::Truncated(_))
        ));
        assert!(matches!(
            WavSpec::read_header(&[0xeeu8; 44][..]),
            Err(WavError::NotWav(_))
        ));
    }

    #[test]
    fn truncated_data_keeps_what_is_there_and_warns() {
        let body = s16le(&vec![100; 24_000]);
        let f = riff(
            b"RIFF",
            None,
            &[
                chunk(b"fmt ", &plain_fmt(1, 1, 48_000, 16)),
                data_sized(96_000, &body),
            ],
        );
        let mut r = WavReader::new(Trickle {
            data: &f,
            step: 1000,
        })
        .unwrap();
        assert_eq!(r.len_frames(), Some(48_000));
        let a = read(&f).unwrap();
        assert_eq!(a.frames(), 24_000);
        assert!((a.duration_s() - 0.5).abs() < 1e-12);
        assert_eq!(
            a.warnings,
            ["data chunk claims 96000 bytes but the file ends after 48000; kept the 0.50 s that are there"]
        );
        let mut out = vec![0.0; 100_000];
        assert_eq!(r.read_frames(&mut out).unwrap(), 24_000);
        assert_eq!(r.read_frames(&mut out).unwrap(), 0);
        assert_eq!(
            r.warning_counts().truncated,
            Some(Truncation {
                claimed_bytes: 96_000,
                actual_bytes: 48_000
            })
        );
    }

    #[test]
    fn partial_last_frame_is_dropped_with_a_warning() {
        let mut body = s16le(&[1, 2, 3, 4, 5, 6]);
        body.extend_from_slice(&[7, 0, 8]);
        // Known (odd) size and streamed size behave alike.
        let known = riff(
            b"RIFF",
            None,
            &[
                chunk(b"fmt ", &plain_fmt(1, 2, 8_000, 16)),
                chunk(b"data", &body),
            ],
        );
        let streamed = riff(
            b"RIFF",
            None,
            &[
                chunk(b"fmt ", &plain_fmt(1, 2, 8_000, 16)),
                data_sized(0, &body),
            ],
        );
        for f in [known, streamed] {
            let a = ok(&f);
            assert_eq!(a.frames(), 3);
            assert_eq!(a.samples[5], 6.0 / 32768.0);
            assert_eq!(
                a.warnings,
                ["dropped an incomplete last frame (3 of 4 bytes)"]
            );
        }
    }

    #[test]
    fn non_finite_floats_are_replaced_and_counted() {
        let body = f32le(&[
            f32::NAN,
            0.5,
            f32::INFINITY,
            f32::NEG_INFINITY,
            -0.25,
            f32::NAN,
        ]);
        let a = ok(&wav(plain_fmt(3, 2, 8_000, 32), &body));
        assert_eq!(a.samples, [0.0, 0.5, 1.0, -1.0, -0.25, 0.0]);
        assert_eq!(a.warnings.len(), 1);
        assert!(
            a.warnings[0].starts_with("replaced 4 NaN/Inf samples"),
            "{:?}",
            a.warnings
        );
    }

    #[test]
    fn rf64_uses_the_ds64_size() {
        let mut ds64 = Vec::new();
        ds64.extend_from_slice(&u64::MAX.to_le_bytes()); // RIFF size: unused
        ds64.extend_from_slice(&6u64.to_le_bytes()); // data size
        ds64.extend_from_slice(&3u64.to_le_bytes()); // sample count
        ds64.extend_from_slice(&0u32.to_le_bytes()); // table length
        let parts = [
            chunk(b"ds64", &ds64),
            chunk(b"fmt ", &plain_fmt(1, 1, 8_000, 16)),
            data_sized(u32::MAX, &s16le(&[1, 2, 3])),
            chunk(b"LIST", &[0x55; 8]),
        ];
        for magic in [b"RF64", b"BW64"] {
            let f = riff(magic, Some(u32::MAX), &parts);
            let r = WavReader::new(Trickle { data: &f, step: 64 }).unwrap();
            assert_eq!(r.len_frames(), Some(3));
            let a = ok(&f);
            assert_eq!(a.samples, [1.0 / 32768.0, 2.0 / 32768.0, 3.0 / 32768.0]);
            assert!(a.warnings.is_empty());
        }
        // A ds64 chunk too short to hold the sizes.
        let f = riff(b"RF64", Some(u32::MAX), &[chunk(b"ds64", &[0; 8])]);
        let e = refused(&f);
        assert!(matches!(e, WavError::Malformed(_)));
        says(&e, &["ds64", "8 bytes"]);
    }

    #[test]
    fn small_read_buffer_is_an_error_not_the_end() {
        let f = wav(plain_fmt(1, 2, 8_000, 16), &s16le(&[1, 2, 3, 4]));
        let mut r = WavReader::new(&f[..]).unwrap();
        let e = r.read_frames(&mut [0.0; 1]).unwrap_err();
        assert!(matches!(
            e,
            WavError::BufferTooSmall {
                len: 1,
                channels: 2
            }
        ));
        says(&e, &["1 samples", "2-channel"]);
        // Three samples take one stereo frame.
        assert_eq!(r.read_frames(&mut [0.0; 3]).unwrap(), 2);
        assert_eq!(r.read_frames(&mut [0.0; 3]).unwrap(), 2);
        assert_eq!(r.read_frames(&mut [0.0; 3]).unwrap(), 0);
    }

    #[test]
    fn read_errors_are_reported_and_interruptions_retried() {
        struct Flaky<'a> {
            data: &'a [u8],
            calls: usize,
            fail_at: usize,
            kind: io::ErrorKind,
        }
        impl Read for Flaky<'_> {
            fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
                self.calls += 1;
                if self.calls == self.fail_at {
                    return Err(io::Error::new(self.kind, "device went away"));
                }
                let n = buf.len().min(self.data.len()).min(10);
                buf[..n].copy_from_slice(&self.data[..n]);
                self.data = &self.data[n..];
                Ok(n)
            }
        }
        let f = wav(plain_fmt(1, 1, 8_000, 16), &s16le(&[7; 100]));
        for fail_at in [1, 3, 8] {
            let r = read_wav(Flaky {
                data: &f,
                calls: 0,
                fail_at,
                kind: io::ErrorKind::Interrupted,
            });
            assert_eq!(r.unwrap().samples.len(), 100);
            let e = read_wav(Flaky {
                data: &f,
                calls: 0,
                fail_at,
                kind: io::ErrorKind::Other,
            })
            .unwrap_err();
            assert!(matches!(e, WavError::Read { .. }), "{e:?}");
            says(&e, &["cannot read", "device went away"]);
        }
    }

    #[test]
    fn refuses_other_containers_and_byte_orders() {
        let good = wav(plain_fmt(1, 1, 8_000, 16), &s16le(&[1]));

        let mut rifx = good.clone();
        rifx[..4].copy_from_slice(b"RIFX");
        let e = refused(&rifx);
        assert!(matches!(e, WavError::BigEndian));
        says(&e, &["RIFX", "big-endian", "little-endian RIFF"]);

        let mut id3 = b"ID3\x04\0\0\0\0\0\0".to_vec();
        id3.extend_from_slice(&[0; 100]);
        let e = refused(&id3);
        assert!(matches!(e, WavError::NotWav(_)));
        says(&e, &["not a WAV file", "\"ID3\\x04\"", "\"RIFF\""]);

        let e = refused(b"hello, this is text\n");
        says(&e, &["not a WAV file", "\"hell\""]);

        let mut avi = good.clone();
        avi[8..12].copy_from_slice(b"AVI ");
        let e = refused(&avi);
        assert!(matches!(e, WavError::NotWav(_)));
        says(&e, &["\"AVI \"", "\"WAVE\""]);

        let e = refused(b"RI");
        assert!(matches!(e, WavError::NotWav(_)));
        says(&e, &["2 byte"]);
    }

    #[test]
    fn refuses_unsupported_encodings_naming_the_tag() {
        for (tag, name) in [
            (6u16, "A-law"),
            (7, "mu-law"),
            (2, "ADPCM"),
            (0x11, "IMA ADPCM"),
            (0x55, "MPEG"),
        ] {
            let e = refused(&wav(plain_fmt(tag, 1, 8_000, 8), &[0; 4]));
            assert!(
                matches!(e, WavError::UnsupportedEncoding { tag: t, .. } if t == tag),
                "{e:?}"
            );
            says(&e, &[name, &format!("{tag:#06x}"), "supported are PCM"]);
        }
        let e = refused(&wav(plain_fmt(0x1234, 1, 8_000, 16), &[0; 4]));
        says(&e, &["0x1234", "unknown", "IEEE float 32-bit"]);

        // The same inside WAVE_FORMAT_EXTENSIBLE.
        let e = refused(&wav(ext_fmt(1, 8_000, 8, 8, sub_guid(6)), &[0; 4]));
        assert!(matches!(e, WavError::UnsupportedEncoding { tag: 6, .. }));
        says(&e, &["A-law", "0x0006"]);

        let mut guid = sub_guid(1);
        guid[15] = 0x72;
        let e = refused(&wav(ext_fmt(1, 8_000, 16, 16, guid), &[0; 4]));
        assert!(matches!(e, WavError::UnsupportedSubFormat { .. }));
        says(
            &e,
            &["00000001-0000-0010-8000-00aa00389b72", "PCM and IEEE float"],
        );
    }

    #[test]
    fn refuses_unsupported_sample_sizes() {
        let e = refused(&wav(plain_fmt(3, 1, 8_000, 64), &[0; 16]));
        assert!(matches!(e, WavError::UnsupportedBits { bits: 64, .. }));
        says(&e, &["IEEE float", "64 bits", "32 bits"]);

        let e = refused(&wav(ext_fmt(1, 8_000, 64, 64, sub_guid(3)), &[0; 16]));
        says(&e, &["IEEE float", "64 bits"]);

        for bits in [0u16, 4, 12, 20, 48] {
            let e = refused(&wav(fmt_body(1, 1, 8_000, bits, 2), &[0; 16]));
            assert!(matches!(e, WavError::UnsupportedBits { bits: b, .. } if b == bits));
            says(
                &e,
                &["PCM", &format!(" {bits} bits"), "8, 16, 24 and 32 bits"],
            );
        }

        let e = refused(&wav(ext_fmt(1, 8_000, 16, 24, sub_guid(1)), &[0; 4]));
        assert!(matches!(e, WavError::Malformed(_)));
        says(&e, &["24 valid bits", "16-bit"]);
    }

    #[test]
    fn refuses_channel_counts_and_rates_out_of_range() {
        for ch in [0u16, 9, 32] {
            let e = refused(&wav(fmt_body(1, ch, 8_000, 16, ch * 2), &[0; 128]));
            assert!(
                matches!(e, WavError::Limit(LimitError::Channels { channels }) if channels == usize::from(ch))
            );
            says(&e, &[&format!("channel count {ch}:"), "1 to 8 channels"]);
        }
        for rate in [0u32, 7_999, 192_001, 768_000] {
            let e = refused(&wav(plain_fmt(1, 1, rate, 16), &[0; 4]));
            assert!(matches!(e, WavError::Limit(LimitError::SampleRate { rate: r }) if r == rate));
            says(&e, &[&format!("rate {rate} Hz"), "8000 Hz to 192000 Hz"]);
        }
    }

    #[test]
    fn refuses_block_align_that_does_not_match() {
        let e = refused(&wav(fmt_body(1, 2, 8_000, 16, 3), &[0; 12]));
        assert!(matches!(
            e,
            WavError::BadBlockAlign {
                block_align: 3,
                expected: 4,
                ..
            }
        ));
        says(
            &e,
            &["block align is 3", "2 channel(s)", "2-byte", "need 4"],
        );
    }

    #[test]
    fn refuses_headers_that_end_before_the_audio() {
        let full = riff(
            b"RIFF",
            None,
            &[
                chunk(b"fmt ", &plain_fmt(1, 1, 8_000, 16)),
                chunk(b"LIST", &[1; 30]),
                chunk(b"data", &s16le(&[1, 2])),
            ],
        );
        // Cut inside the RIFF header, the fmt chunk, the LIST chunk, the data header.
        for (cut, needle) in [
            (8, "RIFF header"),
            (12, "before the fmt chunk"),
            (16, "chunk header, before the fmt"),
            (30, "inside the fmt chunk"),
            (36, "before the data chunk"),
            (50, "inside the \"LIST\" chunk"),
            (74, "before the data chunk"),
            (78, "chunk header, before the data"),
        ] {
            let e = refused(&full[..cut]);
            assert!(matches!(e, WavError::Truncated(_)), "cut {cut}: {e:?}");
            says(&e, &["truncated", needle]);
        }
        // An unknown chunk that claims more than there is.
        let f = riff(
            b"RIFF",
            None,
            &[
                chunk(b"fmt ", &plain_fmt(1, 1, 8_000, 16)),
                b"bext\xff\xff\0\0abc".to_vec(),
            ],
        );
        let e = refused(&f);
        assert!(matches!(e, WavError::Truncated(_)));
        says(&e, &["truncated", "inside the \"bext\" chunk"]);
    }

    #[test]
    fn refuses_malformed_fmt_chunks() {
        let e = refused(&riff(
            b"RIFF",
            None,
            &[chunk(
                b"fmt ",
                &[1, 0, 1, 0, 0x40, 0x1f, 0, 0, 0, 0, 0, 0, 2, 0],
            )],
        ));
        assert!(matches!(e, WavError::Malformed(_)));
        says(&e, &["fmt chunk of 14 bytes", "16"]);

        let mut short_ext = fmt_body(TAG_EXTENSIBLE, 1, 8_000, 16, 2);
        short_ext.extend_from_slice(&[0, 0]);
        let e = refused(&wav(short_ext, &[0; 4]));
        assert!(matches!(e, WavError::Malformed(_)));
        says(&e, &["WAVE_FORMAT_EXTENSIBLE", "18 bytes", "40"]);

        let e = refused(&riff(
            b"RIFF",
            None,
            &[
                chunk(b"data", &[0; 4]),
                chunk(b"fmt ", &plain_fmt(1, 1, 8_000, 16)),
            ],
        ));
        assert!(matches!(e, WavError::Malformed(_)));
        says(&e, &["data chunk comes before the fmt chunk"]);
    }

    #[test]
    fn refuses_inputs_without_audio() {
        let fmt = chunk(b"fmt ", &plain_fmt(1, 2, 8_000, 16));
        for f in [
            riff(b"RIFF", None, &[fmt.clone(), chunk(b"data", &[])]),
            riff(b"RIFF", Some(0), &[fmt.clone(), data_sized(u32::MAX, &[])]),
            Vec::new(),
        ] {
            let e = refused(&f);
            assert!(matches!(e, WavError::NoAudio(_)), "{e:?}");
            says(&e, &["no audio data"]);
        }
        let e = refused(&riff(b"RIFF", None, &[fmt.clone(), data_sized(400, &[])]));
        says(&e, &["no audio data", "claims 400 bytes"]);
        let e = refused(&riff(b"RIFF", None, &[fmt, chunk(b"data", &[1, 2, 3])]));
        says(&e, &["no audio data", "only 3 byte(s)", "4-byte frame"]);
    }

    #[test]
    fn warning_messages() {
        let spec = WavSpec {
            sample_rate: 16_000,
            channels: 1,
            format: SampleFormat::S16,
        };
        assert!(ReadWarnings::default().is_empty());
        assert!(ReadWarnings::default().messages(&spec).is_empty());
        let w = ReadWarnings {
            truncated: Some(Truncation {
                claimed_bytes: 64_000,
                actual_bytes: 8_001,
            }),
            partial_frame_bytes: 1,
            non_finite_samples: 12,
        };
        assert!(!w.is_empty());
        assert_eq!(
            w.messages(&spec),
            [
                "data chunk claims 64000 bytes but the file ends after 8001; kept the 0.25 s that are there",
                "dropped an incomplete last frame (1 of 2 bytes)",
                "replaced 12 NaN/Inf samples (NaN with silence, Inf with full scale)",
            ]
        );
    }

    #[test]
    fn ids_and_guids_are_shown_readably() {
        assert_eq!(show_id(b"LI\x00\"T"), "\"LI\\x00\\x22T\"");
        assert_eq!(
            show_guid(&sub_guid(3)),
            "00000003-0000-0010-8000-00aa00389b71"
        );
        assert_eq!(tag_name(0x0161), Some("Windows Media Audio"));
        assert_eq!(tag_name(0x4242), None);
    }

    #[test]
    fn missing_file_names_path_and_reason() {
        let p = Path::new("/nonexistent-folder-for-clearvox/x.wav");
        let e = read_wav_file(p).unwrap_err();
        assert!(matches!(e, WavError::Open { .. }));
        says(
            &e,
            &["cannot open /nonexistent-folder-for-clearvox/x.wav: No such file or directory"],
        );
        assert!(!e.to_string().contains("os error"));
    }
}
