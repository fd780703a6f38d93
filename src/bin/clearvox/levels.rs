//! Speech segments from VAD events, and noise levels measured outside them.
//!
//! Levels are measured while streaming: a [`LevelMeter`] keeps one mean power per 10 ms
//! frame (one `f32`, 400 bytes per second of audio) and nothing else, so a long file
//! costs little memory. Once the file has ended and its speech segments are known,
//! [`LevelMeter::noise_dbfs`] averages the frames that lie outside every segment.

use serde::Serialize;

use clearvox::dsp::vad::{VadEvent, VadEventKind};

/// Lowest level reported, dBFS (digital silence).
const FLOOR_DBFS: f64 = -200.0;

/// A stretch of speech, seconds from the start of the file.
#[derive(Clone, Copy, Debug, PartialEq, Serialize)]
pub struct Segment {
    pub start_s: f64,
    pub end_s: f64,
}

/// Speech segments from start/end events whose positions are samples at `rate` from
/// the start of a stream `len` samples long. Positions are clamped to the stream; a
/// segment still open at the end ends with the stream.
pub fn segments(events: &[VadEvent], len: u64, rate: u32) -> Vec<Segment> {
    let secs = |n: u64| n.min(len) as f64 / f64::from(rate);
    let mut out = Vec::new();
    let mut start: Option<u64> = None;
    let close = |s: u64, e: u64, out: &mut Vec<Segment>| {
        if e.min(len) > s.min(len) {
            out.push(Segment {
                start_s: secs(s),
                end_s: secs(e),
            });
        }
    };
    for e in events {
        match e.kind {
            VadEventKind::SpeechStart => {
                start.get_or_insert(e.position);
            }
            VadEventKind::SpeechEnd => {
                if let Some(s) = start.take() {
                    close(s, e.position, &mut out);
                }
            }
        }
    }
    if let Some(s) = start {
        close(s, len, &mut out);
    }
    out
}

/// Mean power per 10 ms frame of a mono stream.
#[derive(Debug)]
pub struct LevelMeter {
    rate: u32,
    frame_len: usize,
    acc: f64,
    fill: usize,
    samples: u64,
    frames: Vec<f32>,
}

impl LevelMeter {
    /// A meter for a stream at `rate` Hz.
    pub fn new(rate: u32) -> Self {
        Self {
            rate,
            frame_len: ((rate as usize + 50) / 100).max(1),
            acc: 0.0,
            fill: 0,
            samples: 0,
            frames: Vec::new(),
        }
    }

    /// Adds samples.
    pub fn push(&mut self, x: &[f32]) {
        for &v in x {
            self.acc += f64::from(v) * f64::from(v);
            self.fill += 1;
            if self.fill == self.frame_len {
                self.frames.push((self.acc / self.frame_len as f64) as f32);
                self.acc = 0.0;
                self.fill = 0;
            }
        }
        self.samples += x.len() as u64;
    }

    /// Samples seen so far.
    pub fn samples(&self) -> u64 {
        self.samples
    }

    /// RMS level in dBFS (full-scale square wave = 0 dBFS) over the frames, the last
    /// partial one included, that overlap none of `speech` (sorted); `None` if every
    /// frame does.
    pub fn noise_dbfs(&self, speech: &[Segment]) -> Option<f64> {
        self.level_dbfs(speech, false)
    }

    /// RMS level in dBFS over the frames that overlap a segment of `speech` (sorted);
    /// `None` if none does. With [`Self::noise_dbfs`], the speech-to-noise ratio a
    /// listener hears, which needs no clean reference.
    pub fn speech_dbfs(&self, speech: &[Segment]) -> Option<f64> {
        self.level_dbfs(speech, true)
    }

    /// The mean power of the frames inside (`inside`) or outside every segment.
    fn level_dbfs(&self, speech: &[Segment], inside: bool) -> Option<f64> {
        let rate = f64::from(self.rate);
        let partial = (self.fill > 0).then(|| self.acc / self.fill as f64);
        let powers = self
            .frames
            .iter()
            .map(|&p| f64::from(p))
            .chain(partial)
            .enumerate();
        let mut seg = 0;
        let mut sum = 0.0;
        let mut count = 0usize;
        for (i, p) in powers {
            let start = (i * self.frame_len) as f64 / rate;
            let end = ((i + 1) * self.frame_len).min(self.samples as usize) as f64 / rate;
            while seg < speech.len() && speech[seg].end_s <= start {
                seg += 1;
            }
            let in_speech = seg < speech.len() && speech[seg].start_s < end;
            if in_speech == inside {
                sum += p;
                count += 1;
            }
        }
        (count > 0).then(|| {
            let mean = sum / count as f64;
            if mean > 0.0 {
                (10.0 * mean.log10()).max(FLOOR_DBFS)
            } else {
                FLOOR_DBFS
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ev(kind: VadEventKind, position: u64) -> VadEvent {
        VadEvent { kind, position }
    }

    #[test]
    fn segments_pair_events_and_close_at_the_end() {
        use VadEventKind::*;
        let events = [
            ev(SpeechStart, 100),
            ev(SpeechEnd, 300),
            ev(SpeechStart, 500),
        ];
        let s = segments(&events, 1000, 100);
        assert_eq!(
            s,
            [
                Segment {
                    start_s: 1.0,
                    end_s: 3.0
                },
                Segment {
                    start_s: 5.0,
                    end_s: 10.0
                }
            ]
        );
        // An end past the stream is clamped; a segment wholly past it is dropped.
        let s = segments(&[ev(SpeechStart, 900), ev(SpeechEnd, 5000)], 1000, 100);
        assert_eq!(s[0].end_s, 10.0);
        assert!(segments(&[ev(SpeechStart, 2000)], 1000, 100).is_empty());
    }

    #[test]
    fn noise_level_skips_speech_frames() {
        // 1 s at 1 kHz: 0.5 s at amplitude 0.01 (noise), then 0.5 s at 0.5 (speech).
        let mut m = LevelMeter::new(1000);
        m.push(&vec![0.01; 500]);
        m.push(&vec![0.5; 500]);
        let speech = [Segment {
            start_s: 0.5,
            end_s: 1.0,
        }];
        let db = m.noise_dbfs(&speech).unwrap();
        assert!((db - -40.0).abs() < 1e-3, "{db}");
        assert!(m.noise_dbfs(&[]).unwrap() > -10.0);
        let all = [Segment {
            start_s: 0.0,
            end_s: 1.0,
        }];
        assert_eq!(m.noise_dbfs(&all), None);
        // And the speech frames alone: amplitude 0.5 is -6.02 dBFS.
        let db = m.speech_dbfs(&speech).unwrap();
        assert!((db - -6.0206).abs() < 1e-3, "{db}");
        assert_eq!(m.speech_dbfs(&[]), None);
    }
}
