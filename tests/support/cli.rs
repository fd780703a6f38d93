//! For the tests of the CLI: the binary, WAV files read with hound (an implementation
//! independent of the library's reader), and byte patching.

use std::fs;
use std::path::Path;

use assert_cmd::Command;

/// The `clearvox` binary built for these tests.
pub fn clearvox() -> Command {
    Command::new(super::clearvox_binary())
}

pub use super::{testdata, F32_48K, NOISE_FAN, S16_16K, S16_8K, S24_44K_STEREO};

/// A WAV file as hound reads it: its header and its samples in ±1.0, interleaved.
#[derive(Debug)]
pub struct Wav {
    pub spec: hound::WavSpec,
    pub samples: Vec<f32>,
}

impl Wav {
    pub fn frames(&self) -> usize {
        self.samples.len() / self.spec.channels as usize
    }

    /// The mean of the channels, as the engine downmixes.
    pub fn mono(&self) -> Vec<f32> {
        let ch = self.spec.channels as usize;
        if ch == 1 {
            return self.samples.clone();
        }
        self.samples
            .chunks_exact(ch)
            .map(|f| f.iter().sum::<f32>() * (1.0 / ch as f32))
            .collect()
    }

    /// One least significant bit of the file's format, in ±1.0 units (0 for float).
    pub fn lsb(&self) -> f32 {
        match self.spec.sample_format {
            hound::SampleFormat::Float => 0.0,
            hound::SampleFormat::Int => 1.0 / (1u32 << (self.spec.bits_per_sample - 1)) as f32,
        }
    }
}

/// Reads a whole WAV from bytes with hound.
pub fn parse_wav(bytes: &[u8]) -> Wav {
    let reader = hound::WavReader::new(std::io::Cursor::new(bytes)).expect("a WAV hound reads");
    decode(reader)
}

/// Reads a WAV file with hound.
pub fn read_wav(path: &Path) -> Wav {
    let reader = hound::WavReader::open(path)
        .unwrap_or_else(|e| panic!("hound cannot read {}: {e}", path.display()));
    decode(reader)
}

fn decode<R: std::io::Read>(mut reader: hound::WavReader<R>) -> Wav {
    let spec = reader.spec();
    let samples = match spec.sample_format {
        hound::SampleFormat::Float => reader
            .samples::<f32>()
            .map(|s| s.expect("a float sample"))
            .collect(),
        hound::SampleFormat::Int => {
            let scale = 1.0 / (1u64 << (spec.bits_per_sample - 1)) as f32;
            reader
                .samples::<i32>()
                .map(|s| s.expect("an integer sample") as f32 * scale)
                .collect()
        }
    };
    Wav { spec, samples }
}

/// Largest absolute difference between two signals of the same length.
pub fn max_diff(a: &[f32], b: &[f32]) -> f32 {
    assert_eq!(a.len(), b.len(), "lengths differ");
    a.iter()
        .zip(b)
        .map(|(x, y)| (x - y).abs())
        .fold(0.0, f32::max)
}

/// `n` frames at rate `from` expressed at rate `to`, rounded to nearest.
pub fn rescale(n: usize, from: u32, to: u32) -> usize {
    ((n as u64 * to as u64 + from as u64 / 2) / from as u64) as usize
}

/// Byte offset of the header of the first chunk `id` in a RIFF file.
pub fn chunk_offset(bytes: &[u8], id: &[u8; 4]) -> usize {
    let mut at = 12;
    while at + 8 <= bytes.len() {
        if &bytes[at..at + 4] == id {
            return at;
        }
        let size = u32::from_le_bytes(bytes[at + 4..at + 8].try_into().expect("4 bytes")) as usize;
        at += 8 + size + (size & 1);
    }
    panic!("no {:?} chunk", std::str::from_utf8(id));
}

/// `bytes` with a little-endian value written at `at`.
pub fn patch(bytes: &[u8], at: usize, value: &[u8]) -> Vec<u8> {
    let mut b = bytes.to_vec();
    b[at..at + value.len()].copy_from_slice(value);
    b
}

/// The names in a folder, sorted (hidden temporary files included).
pub fn listing(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> = fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("listing {}: {e}", dir.display()))
        .map(|e| {
            e.unwrap_or_else(|e| panic!("listing {}: {e}", dir.display()))
                .file_name()
                .to_string_lossy()
                .into_owned()
        })
        .collect();
    v.sort();
    v
}

/// stderr as text.
pub fn stderr_of(output: &std::process::Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}
