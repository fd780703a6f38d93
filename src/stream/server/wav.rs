//! A PCM16 mono WAV file that grows while it is written and stays valid at every moment.
//!
//! The header is the one [`OutputFormat::wav_header`] lays out (44 bytes for PCM16
//! mono), the same as every WAV file clearvox writes. After every append it is written
//! anew with the new sizes, so a reader that opens the file at any time finds a valid
//! WAV holding the audio written so far. A file left behind by a killed process is
//! recovered by [`WavAppender::open`]: the samples are counted from the file's length
//! (a trailing odd byte is dropped), whatever its header says, and the header is
//! written anew.

use std::fs::{File, OpenOptions};
use std::io::{self, Read};
use std::path::Path;

use super::log::private_options;
use crate::dsp::convert::SampleFormat;
use crate::io::{OutputFormat, WavSpec, MAX_DATA_BYTES};
use crate::limits::is_supported_sample_rate;
use crate::stream::protocol::pcm16_to_bytes;

/// Bytes of the header of a PCM16 mono file: where its audio starts.
const HEADER_BYTES: u64 = 44;

/// An open, growing PCM16 mono WAV file.
#[derive(Debug)]
pub(crate) struct WavAppender {
    file: File,
    rate: u32,
    samples: u64,
}

/// What [`WavAppender::open`] found in an existing file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Recovered {
    /// Whether the header on disk was the one this appender writes for the file's
    /// length.
    pub header_was_valid: bool,
    /// Whether a trailing odd byte was cut off.
    pub dropped_odd_byte: bool,
}

impl WavAppender {
    /// Creates (or empties) `path` as a WAV file without samples.
    pub fn create(path: &Path, rate: u32) -> io::Result<Self> {
        // Owner-only: it is someone's voice.
        let file = private_options()
            .read(true)
            .write(true)
            .create(true)
            .truncate(true)
            .open(path)?;
        let mut wav = WavAppender {
            file,
            rate,
            samples: 0,
        };
        wav.write_header()?;
        Ok(wav)
    }

    /// Opens an existing file to append to it, counting its samples from its length.
    ///
    /// The rate is `rate` if given (what the session recorded when it created the file),
    /// else the header's if it is a PCM16 mono one at a supported rate, else
    /// `default_rate`.
    pub fn open(
        path: &Path,
        rate: Option<u32>,
        default_rate: u32,
    ) -> io::Result<(Self, Recovered)> {
        let mut file = OpenOptions::new().read(true).write(true).open(path)?;
        let mut len = file.metadata()?.len();
        let mut head = Vec::with_capacity(HEADER_BYTES as usize);
        (&mut file).take(HEADER_BYTES).read_to_end(&mut head)?;
        let header_rate = pcm16_mono_rate(&head);
        let dropped_odd_byte = len > HEADER_BYTES && (len - HEADER_BYTES) % 2 == 1;
        if dropped_odd_byte {
            len -= 1;
            file.set_len(len)?;
        }
        let data_bytes = len.saturating_sub(HEADER_BYTES).min(MAX_DATA_BYTES);
        let header_was_valid =
            !dropped_odd_byte && header_rate.is_some_and(|r| head == header(r, data_bytes / 2));
        let rate = rate.or(header_rate).unwrap_or(default_rate);
        let mut wav = WavAppender {
            file,
            rate,
            samples: data_bytes / 2,
        };
        wav.write_header()?;
        Ok((
            wav,
            Recovered {
                header_was_valid,
                dropped_odd_byte,
            },
        ))
    }

    /// The sample rate written in the header, Hz.
    pub fn rate(&self) -> u32 {
        self.rate
    }

    /// Samples in the file.
    pub fn samples(&self) -> u64 {
        self.samples
    }

    /// How many more samples the file can take.
    pub fn room(&self) -> u64 {
        (MAX_DATA_BYTES / 2).saturating_sub(self.samples)
    }

    /// Appends `samples` and updates the header's sizes.
    pub fn append(&mut self, samples: &[i16]) -> io::Result<()> {
        if samples.is_empty() {
            return Ok(());
        }
        if samples.len() as u64 > self.room() {
            return Err(io::Error::other("the WAV file is full (4 GiB of audio)"));
        }
        let bytes = pcm16_to_bytes(samples);
        write_at(&mut self.file, HEADER_BYTES + self.samples * 2, &bytes)?;
        self.samples += samples.len() as u64;
        self.write_header()
    }

    /// Rewrites the whole header for the samples written.
    pub fn write_header(&mut self) -> io::Result<()> {
        write_at(&mut self.file, 0, &header(self.rate, self.samples))
    }
}

/// The header of a PCM16 mono file of `samples` samples at `rate`.
fn header(rate: u32, samples: u64) -> Vec<u8> {
    // `samples` is at most `MAX_DATA_BYTES / 2`: the size fits.
    let data_bytes = u32::try_from(samples * 2).unwrap_or(u32::MAX);
    OutputFormat::S16.wav_header(rate, 1, data_bytes)
}

/// The rate of `head`, the start of a file, if it is a PCM16 mono WAV header whose audio
/// starts where this appender writes it (whatever sizes it claims).
fn pcm16_mono_rate(head: &[u8]) -> Option<u32> {
    let (spec, audio_at) = WavSpec::read_header(head).ok()?;
    let pcm16_mono = spec.channels == 1 && spec.format == SampleFormat::S16;
    (pcm16_mono && audio_at == HEADER_BYTES && is_supported_sample_rate(spec.sample_rate))
        .then_some(spec.sample_rate)
}

/// Samples a WAV file at `path` holds as [`WavAppender::open`] counts them, `None` if
/// there is no file: a bound for what the stream's log may say.
pub(crate) fn samples_on_disk(path: &Path) -> io::Result<Option<u64>> {
    match std::fs::metadata(path) {
        Ok(m) => Ok(Some(
            (m.len().saturating_sub(HEADER_BYTES) / 2).min(MAX_DATA_BYTES / 2),
        )),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e),
    }
}

#[cfg(unix)]
fn write_at(file: &mut File, offset: u64, bytes: &[u8]) -> io::Result<()> {
    use std::os::unix::fs::FileExt;
    file.write_all_at(bytes, offset)
}

#[cfg(not(unix))]
fn write_at(file: &mut File, offset: u64, bytes: &[u8]) -> io::Result<()> {
    use std::io::{Seek, SeekFrom, Write};
    file.seek(SeekFrom::Start(offset))?;
    file.write_all(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn read_back(path: &Path) -> (hound::WavSpec, Vec<i16>) {
        let mut r = hound::WavReader::open(path).unwrap();
        let spec = r.spec();
        let s = r.samples::<i16>().map(|s| s.unwrap()).collect();
        (spec, s)
    }

    #[test]
    fn the_file_is_valid_after_every_append() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("a.wav");
        let mut w = WavAppender::create(&path, 16_000).unwrap();
        assert_eq!(read_back(&path).1, Vec::<i16>::new());
        w.append(&[1, -2, 3]).unwrap();
        let (spec, s) = read_back(&path);
        assert_eq!(spec.sample_rate, 16_000);
        assert_eq!(spec.channels, 1);
        assert_eq!(s, [1, -2, 3]);
        w.append(&[i16::MIN, i16::MAX]).unwrap();
        assert_eq!(read_back(&path).1, [1, -2, 3, i16::MIN, i16::MAX]);
    }

    #[test]
    fn a_damaged_file_is_recovered_from_its_length() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("b.wav");
        let mut w = WavAppender::create(&path, 24_000).unwrap();
        w.append(&[10, 20, 30, 40]).unwrap();
        drop(w);
        // A crash: sizes left at zero and half a sample at the end.
        let mut bytes = std::fs::read(&path).unwrap();
        bytes[4..8].copy_from_slice(&0u32.to_le_bytes());
        bytes[40..44].copy_from_slice(&0u32.to_le_bytes());
        bytes.push(0x7f);
        std::fs::write(&path, &bytes).unwrap();
        let (mut w, rec) = WavAppender::open(&path, None, 16_000).unwrap();
        assert!(!rec.header_was_valid);
        assert!(rec.dropped_odd_byte);
        assert_eq!(w.samples(), 4);
        assert_eq!(w.rate(), 24_000);
        w.append(&[50]).unwrap();
        let (spec, s) = read_back(&path);
        assert_eq!(spec.sample_rate, 24_000);
        assert_eq!(s, [10, 20, 30, 40, 50]);
    }

    #[test]
    fn a_garbled_header_takes_the_rate_it_is_given() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("c.wav");
        let mut w = WavAppender::create(&path, 8_000).unwrap();
        w.append(&[7; 10]).unwrap();
        drop(w);
        let mut bytes = std::fs::read(&path).unwrap();
        bytes[..44].fill(0xee);
        std::fs::write(&path, &bytes).unwrap();
        let (w, rec) = WavAppender::open(&path, Some(8_000), 16_000).unwrap();
        assert!(!rec.header_was_valid);
        assert_eq!(w.samples(), 10);
        let (spec, s) = read_back(&path);
        assert_eq!(spec.sample_rate, 8_000);
        assert_eq!(s, [7; 10]);
        // A header cut short: no samples, a fresh header.
        std::fs::write(&path, &bytes[..20]).unwrap();
        let (w, _) = WavAppender::open(&path, None, 16_000).unwrap();
        assert_eq!((w.samples(), w.rate()), (0, 16_000));
        assert_eq!(read_back(&path).1, Vec::<i16>::new());
    }

    #[test]
    fn the_header_is_the_one_every_wav_writer_writes() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("e.wav");
        let mut w = WavAppender::create(&path, 16_000).unwrap();
        w.append(&[1, -1, 300]).unwrap();
        let mut streamed = Vec::new();
        let samples = [1.0 / 32_768.0, -1.0 / 32_768.0, 300.0 / 32_768.0];
        crate::io::write_wav_to(&mut streamed, 16_000, 1, OutputFormat::S16, &samples).unwrap();
        assert_eq!(std::fs::read(&path).unwrap(), streamed);
        assert_eq!(HEADER_BYTES as usize, header(16_000, 0).len());
    }

    #[test]
    fn an_intact_file_is_reported_intact() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("d.wav");
        let mut w = WavAppender::create(&path, 16_000).unwrap();
        w.append(&[1, 2]).unwrap();
        drop(w);
        let (w, rec) = WavAppender::open(&path, None, 8_000).unwrap();
        assert!(rec.header_was_valid && !rec.dropped_odd_byte);
        assert_eq!((w.samples(), w.rate()), (2, 16_000));
    }
}
