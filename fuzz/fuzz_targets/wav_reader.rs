//! The WAV reader on arbitrary bytes: the header parser alone, the whole-file reader, and
//! the streaming reader fed in short reads of a fuzzed size into buffers of a fuzzed
//! size. Every failure is an error of one line; every success is finite samples in whole
//! frames, and the streaming reader reads what the whole-file reader reads.
#![no_main]

use std::io::Read;

use clearvox::io::{read_wav, WavReader, WavSpec};
use libfuzzer_sys::fuzz_target;

/// Hands out at most `step` bytes per `read`, as a pipe or a socket may.
struct Trickle<'a> {
    data: &'a [u8],
    step: usize,
}

impl Read for Trickle<'_> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.step.min(buf.len()).min(self.data.len());
        buf[..n].copy_from_slice(&self.data[..n]);
        self.data = &self.data[n..];
        Ok(n)
    }
}

fn one_line(e: &impl std::fmt::Display) {
    let text = e.to_string();
    assert!(!text.is_empty() && !text.contains('\n'), "{text:?}");
}

fuzz_target!(|input: &[u8]| {
    // Two bytes steer the streaming reader; the rest is the file.
    let (step, out_len, data) = match input {
        [a, b, rest @ ..] => (usize::from(*a) + 1, usize::from(*b) + 1, rest),
        _ => (1, 1, input),
    };

    match WavSpec::read_header(data) {
        Ok((spec, audio_at)) => {
            assert!(spec.channels > 0 && spec.sample_rate > 0);
            assert!(audio_at <= data.len() as u64);
        }
        Err(e) => one_line(&e),
    }

    let whole = match read_wav(data) {
        Ok(audio) => {
            let channels = usize::from(audio.spec.channels);
            assert!(channels > 0);
            assert_eq!(audio.samples.len() % channels, 0);
            assert!(audio.samples.iter().all(|s| s.is_finite()));
            assert!(audio.duration_s().is_finite());
            for w in &audio.warnings {
                one_line(w);
            }
            Some(audio)
        }
        Err(e) => {
            one_line(&e);
            None
        }
    };

    let reader = WavReader::new(Trickle { data, step });
    let mut reader = match (reader, &whole) {
        (Ok(r), Some(_)) => r,
        (Err(e), None) => {
            one_line(&e);
            return;
        }
        (Ok(_), None) => panic!("the streaming reader took what read_wav refused"),
        (Err(e), Some(_)) => panic!("the streaming reader refused what read_wav took: {e}"),
    };
    let whole = whole.expect("checked above");
    assert_eq!(reader.spec(), whole.spec);
    let mut out = vec![0.0f32; out_len];
    let mut streamed = Vec::new();
    loop {
        match reader.read_frames(&mut out) {
            Ok(0) => break,
            Ok(n) => {
                assert!(n <= out.len() && n % usize::from(whole.spec.channels) == 0);
                streamed.extend_from_slice(&out[..n]);
            }
            Err(e) => {
                // Only a buffer shorter than one frame is refused.
                one_line(&e);
                assert!(out_len < usize::from(whole.spec.channels));
                return;
            }
        }
    }
    assert_eq!(streamed.len(), whole.samples.len());
    assert!(streamed
        .iter()
        .zip(&whole.samples)
        .all(|(a, b)| a.to_bits() == b.to_bits()));
    assert_eq!(reader.warnings(), whole.warnings);
});
