//! A PCM16 mono WAV file that grows while it is written and stays valid at every moment.
//!
//! The header is the canonical 44-byte one (`RIFF`, `fmt ` of 16 bytes, `data`). After
//! every append the RIFF and data sizes are rewritten, so a reader that opens the file
//! at any time finds a valid WAV holding the audio written so far. A file left behind by
//! a killed process is recovered by [`WavAppender::open`]: the samples are counted from
//! the file's length (a trailing odd byte is dropped), whatever its header says, and the
//! header is written anew.

use std::fs::{File, OpenOptions};
use std::io::{self, Read};
use std::path::Path;

use crate::io::MAX_DATA_BYTES;
use crate::stream::protocol::pcm16_to_bytes;

/// Bytes of the header this writer produces.
pub(crate) const HEADER_BYTES: u64 = 44;

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
    /// Whether the header on disk was complete and agreed with the file's length.
    pub header_was_valid: bool,
    /// Whether a trailing odd byte was cut off.
    pub dropped_odd_byte: bool,
}

impl WavAppender {
    /// Creates (or empties) `path` as a WAV file without samples.
    pub fn create(path: &Path, rate: u32) -> io::Result<Self> {
        let file = OpenOptions::new()
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
    /// else the header's if it is one of ours, else `default_rate`.
    pub fn open(
        path: &Path,
        rate: Option<u32>,
        default_rate: u32,
    ) -> io::Result<(Self, Recovered)> {
        let mut file = OpenOptions::new().read(true).write(true).open(path)?;
        let mut len = file.metadata()?.len();
        let mut head = Vec::with_capacity(HEADER_BYTES as usize);
        (&mut file).take(HEADER_BYTES).read_to_end(&mut head)?;
        let header_rate = header_rate(&head);
        let dropped_odd_byte = len > HEADER_BYTES && (len - HEADER_BYTES) % 2 == 1;
        if dropped_odd_byte {
            len -= 1;
            file.set_len(len)?;
        }
        let data_bytes = len.saturating_sub(HEADER_BYTES);
        let header_was_valid = header_rate.is_some()
            && !dropped_odd_byte
            && head.len() == HEADER_BYTES as usize
            && u32_at(&head, 40) == Some(data_bytes as u32)
            && u32_at(&head, 4) == Some((data_bytes + 36) as u32);
        let rate = rate.or(header_rate).unwrap_or(default_rate);
        let mut wav = WavAppender {
            file,
            rate,
            samples: data_bytes.min(MAX_DATA_BYTES) / 2,
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
        self.write_sizes()
    }

    /// Rewrites the whole header for the samples written.
    pub fn write_header(&mut self) -> io::Result<()> {
        let data = (self.samples * 2) as u32;
        let mut h = [0u8; HEADER_BYTES as usize];
        h[0..4].copy_from_slice(b"RIFF");
        h[4..8].copy_from_slice(&(data + 36).to_le_bytes());
        h[8..12].copy_from_slice(b"WAVE");
        h[12..16].copy_from_slice(b"fmt ");
        h[16..20].copy_from_slice(&16u32.to_le_bytes());
        h[20..22].copy_from_slice(&1u16.to_le_bytes()); // PCM
        h[22..24].copy_from_slice(&1u16.to_le_bytes()); // mono
        h[24..28].copy_from_slice(&self.rate.to_le_bytes());
        h[28..32].copy_from_slice(&(self.rate.saturating_mul(2)).to_le_bytes());
        h[32..34].copy_from_slice(&2u16.to_le_bytes()); // block align
        h[34..36].copy_from_slice(&16u16.to_le_bytes()); // bits
        h[36..40].copy_from_slice(b"data");
        h[40..44].copy_from_slice(&data.to_le_bytes());
        write_at(&mut self.file, 0, &h)
    }

    /// Rewrites the RIFF and data sizes.
    fn write_sizes(&mut self) -> io::Result<()> {
        let data = (self.samples * 2) as u32;
        write_at(&mut self.file, 4, &(data + 36).to_le_bytes())?;
        write_at(&mut self.file, 40, &data.to_le_bytes())
    }
}

/// The rate of a header this writer could have written (PCM16 mono), if it is one.
fn header_rate(h: &[u8]) -> Option<u32> {
    if h.len() < HEADER_BYTES as usize
        || &h[0..4] != b"RIFF"
        || &h[8..12] != b"WAVE"
        || &h[12..16] != b"fmt "
        || &h[36..40] != b"data"
        || u32_at(h, 16)? != 16
        || u16_at(h, 20)? != 1
        || u16_at(h, 22)? != 1
        || u16_at(h, 34)? != 16
    {
        return None;
    }
    let rate = u32_at(h, 24)?;
    use crate::limits::{MAX_SAMPLE_RATE, MIN_SAMPLE_RATE};
    (MIN_SAMPLE_RATE..=MAX_SAMPLE_RATE)
        .contains(&rate)
        .then_some(rate)
}

fn u32_at(h: &[u8], at: usize) -> Option<u32> {
    let b = h.get(at..at + 4)?;
    Some(u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
}

fn u16_at(h: &[u8], at: usize) -> Option<u16> {
    let b = h.get(at..at + 2)?;
    Some(u16::from_le_bytes([b[0], b[1]]))
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
