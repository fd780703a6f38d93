//! The command-line programs as a user runs them, as child processes: `clearvox enhance`,
//! `clearvox metrics` and `clearvox merge-shards` on good and bad input.

#[path = "../support/mod.rs"]
mod support;

/// Every kind of bad input: one line, a non-zero exit and no output file.
mod bad_input;
/// `clearvox enhance` and its options.
mod enhance;
/// `clearvox metrics`.
mod metrics;
/// Outputs and the report under misuse: no input or output replaced, no link followed,
/// permissions kept, `-o -` streamed.
mod output_files;
/// `--plot`: the spectrogram picture, decoded.
mod plot;
/// `enhance --shard K/N` as separate workers, and `merge-shards` over their summaries.
mod shard;

/// Reads `reader` to its end (a streamed WAV has no length up front) and counts frames.
fn frames_to_end<R: std::io::Read>(reader: &mut clearvox::io::WavReader<R>) -> usize {
    let mut samples = vec![0.0; 4096];
    let mut frames = 0;
    loop {
        match reader.read_frames(&mut samples).unwrap() {
            0 => return frames,
            n => frames += n,
        }
    }
}
