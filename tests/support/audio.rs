//! Audio for the tests of the library: WAV files read with the library's reader,
//! deterministic signals, and running a pipeline in arbitrary chunks.

use std::path::Path;

use clearvox::dsp::vad::VadEvent;
use clearvox::io::read_wav_file;
use clearvox::{Config, Pipeline};

pub use super::testdata;

/// Interleaved samples, rate and channels of a WAV file.
pub fn load(path: &Path) -> (Vec<f32>, u32, usize) {
    let a = read_wav_file(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    (a.samples, a.spec.sample_rate, a.spec.channels as usize)
}

/// The mean of the channels.
pub fn mono(samples: &[f32], channels: usize) -> Vec<f32> {
    samples
        .chunks_exact(channels)
        .map(|f| f.iter().sum::<f32>() / channels as f32)
        .collect()
}

/// Deterministic white noise in ±amp (a 64-bit LCG).
pub fn white_noise(n: usize, amp: f32, seed: u64) -> Vec<f32> {
    let mut s = seed
        .wrapping_mul(6364136223846793005)
        .wrapping_add(1442695040888963407);
    (0..n)
        .map(|_| {
            s = s
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            ((s >> 40) as f32 / (1u64 << 24) as f32 * 2.0 - 1.0) * amp
        })
        .collect()
}

/// Chunk sizes that repeat `sizes` until `total` is covered.
pub fn chunks(total: usize, sizes: &[usize]) -> Vec<usize> {
    let mut v = Vec::new();
    let mut left = total;
    let mut i = 0;
    while left > 0 {
        let n = sizes[i % sizes.len()].min(left);
        v.push(n);
        left -= n;
        i += 1;
    }
    v
}

/// Pseudo-random chunk sizes in 1..=max (deterministic).
pub fn random_chunks(total: usize, max: usize, seed: u64) -> Vec<usize> {
    let r = white_noise(total / 2 + 16, 1.0, seed);
    let sizes: Vec<usize> = r
        .iter()
        .map(|x| 1 + ((x.abs() * max as f32) as usize).min(max - 1))
        .collect();
    chunks(total, &sizes)
}

/// Runs `input` (interleaved frames) through a fresh pipeline in chunks of the given
/// frame counts, flushes, and returns the whole output stream and the events.
pub fn run_in_chunks(
    config: &Config,
    input: &[f32],
    rate: u32,
    channels: usize,
    frame_chunks: &[usize],
) -> (Vec<f32>, Vec<VadEvent>) {
    let mut p = Pipeline::new(config, rate, channels).expect("the configuration is valid");
    let mut out = Vec::new();
    let mut events = Vec::new();
    let mut at = 0;
    for &n in frame_chunks {
        p.process(&input[at * channels..(at + n) * channels], &mut out)
            .expect("processing a chunk");
        at += n;
        while let Some(e) = p.pop_event() {
            events.push(e);
        }
    }
    assert_eq!(at * channels, input.len(), "chunks must cover the input");
    p.flush(&mut out).expect("flushing the pipeline");
    while let Some(e) = p.pop_event() {
        events.push(e);
    }
    (out, events)
}
