//! The voice-activity state machine: speech start/end events from per-frame probabilities.
//!
//! RNNoise gives a voice probability every 10 ms; taken raw it flickers. The state
//! machine adds hysteresis (a higher threshold to enter speech than to leave it), an
//! onset requirement (a few frames above the threshold, so a click is not a word), a
//! hangover (speech ends only after a stretch below the threshold, so the gaps between
//! words do not split an utterance) and a pre-roll: the `SpeechStart` it emits points
//! back before the frame where speech was recognised, so a consumer that buffers that
//! much audio never cuts a word's onset.
//!
//! Without RNNoise, [`EnergyVoiceDetector`] supplies the probabilities from frame
//! energy against a tracked noise floor.

use serde::{Deserialize, Serialize};

use super::{one_pole_coef, FRAME_LEN, SAMPLE_RATE};
use crate::error::{Error, Result};

/// Settings of the VAD state machine.
///
/// # Examples
///
/// ```
/// use clearvox::dsp::vad::VadConfig;
/// use clearvox::Config;
///
/// // Let pauses of up to half a second stay inside one utterance.
/// let config = Config::from_toml_str("[vad]\nhangover_ms = 500.0")?;
/// assert_eq!(config.vad.hangover_ms, 500.0);
///
/// let bad = VadConfig {
///     off_threshold: 0.9,
///     ..VadConfig::default()
/// };
/// assert_eq!(
///     bad.validate().unwrap_err().to_string(),
///     "invalid configuration: vad thresholds on 0.6 / off 0.9: \
///      both must be in 0..1 with off <= on"
/// );
/// # Ok::<(), clearvox::Error>(())
/// ```
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct VadConfig {
    /// Probability at or above which a frame counts as voiced when not in speech.
    pub on_threshold: f32,
    /// Probability below which a frame counts as unvoiced while in speech.
    pub off_threshold: f32,
    /// Voiced time needed to enter speech, in ms (rounded up to whole 10 ms frames).
    pub onset_ms: f32,
    /// Unvoiced time needed to leave speech, in ms.
    pub hangover_ms: f32,
    /// How far before the recognised onset `SpeechStart` points, in ms.
    pub preroll_ms: f32,
}

impl Default for VadConfig {
    fn default() -> Self {
        Self {
            on_threshold: 0.6,
            off_threshold: 0.3,
            onset_ms: 30.0,
            hangover_ms: 300.0,
            preroll_ms: 200.0,
        }
    }
}

impl VadConfig {
    /// Checks ranges and consistency.
    pub fn validate(&self) -> Result<()> {
        let ok = (0.0..=1.0).contains(&self.on_threshold)
            && (0.0..=1.0).contains(&self.off_threshold)
            && self.off_threshold <= self.on_threshold;
        if !ok {
            return Err(Error::Config(format!(
                "vad thresholds on {} / off {}: both must be in 0..1 with off <= on",
                self.on_threshold, self.off_threshold
            )));
        }
        for (name, v) in [
            ("onset_ms", self.onset_ms),
            ("hangover_ms", self.hangover_ms),
            ("preroll_ms", self.preroll_ms),
        ] {
            if !(0.0..=10_000.0).contains(&v) {
                return Err(Error::Config(format!(
                    "vad.{name} = {v}: must be in 0..10000 ms"
                )));
            }
        }
        Ok(())
    }
}

/// What happened to the speech state.
///
/// # Examples
///
/// ```
/// use clearvox::dsp::vad::{VadEvent, VadEventKind};
///
/// fn describe(event: &VadEvent, rate: u32) -> String {
///     let at = event.position as f64 / f64::from(rate);
///     match event.kind {
///         VadEventKind::SpeechStart => format!("speech from {at:.2} s"),
///         VadEventKind::SpeechEnd => format!("silence from {at:.2} s"),
///     }
/// }
///
/// let start = VadEvent { kind: VadEventKind::SpeechStart, position: 24_000 };
/// assert_eq!(describe(&start, 16_000), "speech from 1.50 s");
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum VadEventKind {
    /// Speech began (at `position`, pre-roll included).
    SpeechStart,
    /// Speech ended (at `position`, hangover included).
    SpeechEnd,
}

/// A speech-state change at a sample position.
///
/// # Examples
///
/// A [`Pipeline`](crate::Pipeline) reports them in output samples:
///
/// ```
/// use clearvox::dsp::vad::VadEventKind;
/// use clearvox::{Config, Pipeline, Preset};
///
/// // Half a second of silence, then a loud tone (the low-cpu preset's energy
/// // detector calls anything well above the noise floor voice).
/// let rate = 16_000;
/// let mut input = vec![0.0f32; 8_000];
/// input.extend((0..8_000).map(|n| 0.3 * (n as f32 * 0.1).sin()));
///
/// let mut pipeline = Pipeline::new(&Preset::LowCpu.config(), rate, 1)?;
/// pipeline.process(&input, &mut Vec::new())?;
/// let event = pipeline.pop_event().expect("speech starts");
/// assert_eq!(event.kind, VadEventKind::SpeechStart);
/// // The start points back before the onset (pre-roll).
/// assert!(event.position < 8_000 + pipeline.latency() as u64);
/// # Ok::<(), clearvox::Error>(())
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct VadEvent {
    /// Start or end.
    pub kind: VadEventKind,
    /// Sample index in the stream the event belongs to. The state machine counts 48 kHz
    /// frames of its own input; the [`Pipeline`](crate::Pipeline) converts this to its
    /// output stream.
    pub position: u64,
}

fn ms_to_frames(ms: f32) -> u32 {
    (ms * SAMPLE_RATE as f32 / 1000.0 / FRAME_LEN as f32).ceil() as u32
}

/// Hysteresis, onset, hangover and pre-roll over per-frame voice probabilities.
///
/// # Examples
///
/// ```
/// use clearvox::dsp::vad::{VadConfig, VadEvent, VadEventKind, VadStateMachine};
///
/// // Defaults: 3 frames (30 ms) at 0.6 or more start speech, 30 frames (300 ms)
/// // below 0.3 end it, and the start points 200 ms before the onset.
/// let mut vad = VadStateMachine::new(&VadConfig::default())?;
///
/// let mut probs = vec![0.05; 30]; // 300 ms of silence
/// probs.extend([0.9; 3]); // 30 ms of voice
/// let events: Vec<VadEvent> = probs.iter().filter_map(|&p| vad.update(p)).collect();
/// assert_eq!(
///     events,
///     [VadEvent {
///         kind: VadEventKind::SpeechStart,
///         position: 4_800, // the onset at 14 400, less 9 600 samples of pre-roll
///     }]
/// );
/// assert!(vad.in_speech());
///
/// // 300 ms below the off threshold end the utterance.
/// let end = (0..30).filter_map(|_| vad.update(0.1)).next();
/// assert_eq!(
///     end,
///     Some(VadEvent {
///         kind: VadEventKind::SpeechEnd,
///         position: 30_240,
///     })
/// );
/// # Ok::<(), clearvox::Error>(())
/// ```
#[derive(Clone, Debug)]
pub struct VadStateMachine {
    on: f32,
    off: f32,
    onset_frames: u32,
    hangover_frames: u32,
    preroll: u64,
    speech: bool,
    run: u32,
    run_start: u64,
    last_end: u64,
    position: u64,
}

impl VadStateMachine {
    /// A state machine in the silent state at position 0.
    pub fn new(config: &VadConfig) -> Result<Self> {
        config.validate()?;
        Ok(Self {
            on: config.on_threshold,
            off: config.off_threshold,
            onset_frames: ms_to_frames(config.onset_ms).max(1),
            hangover_frames: ms_to_frames(config.hangover_ms).max(1),
            preroll: (config.preroll_ms * SAMPLE_RATE as f32 / 1000.0).round() as u64,
            speech: false,
            run: 0,
            run_start: 0,
            last_end: 0,
            position: 0,
        })
    }

    /// Whether the machine is in speech.
    pub fn in_speech(&self) -> bool {
        self.speech
    }

    /// Feeds the voice probability of the next frame; returns the event it caused, if any.
    pub fn update(&mut self, prob: f32) -> Option<VadEvent> {
        let frame_start = self.position;
        self.position += FRAME_LEN as u64;
        let prob = if prob.is_finite() { prob } else { 0.0 };
        if !self.speech {
            if prob >= self.on {
                if self.run == 0 {
                    self.run_start = frame_start;
                }
                self.run += 1;
                if self.run >= self.onset_frames {
                    self.speech = true;
                    self.run = 0;
                    let start = self
                        .run_start
                        .saturating_sub(self.preroll)
                        .max(self.last_end);
                    return Some(VadEvent {
                        kind: VadEventKind::SpeechStart,
                        position: start,
                    });
                }
            } else {
                self.run = 0;
            }
        } else if prob < self.off {
            self.run += 1;
            if self.run >= self.hangover_frames {
                self.speech = false;
                self.run = 0;
                self.last_end = self.position;
                return Some(VadEvent {
                    kind: VadEventKind::SpeechEnd,
                    position: self.position,
                });
            }
        } else {
            self.run = 0;
        }
        None
    }

    /// Returns to silence at position 0.
    pub fn reset(&mut self) {
        self.speech = false;
        self.run = 0;
        self.run_start = 0;
        self.last_end = 0;
        self.position = 0;
    }
}

/// A voice probability from frame energy, for chains without RNNoise.
///
/// It tracks the noise floor of the frame level (falls fast, rises slowly) and maps
/// the level above it through a logistic curve: 9 dB above the floor is 50 %.
///
/// # Examples
///
/// ```
/// use clearvox::dsp::vad::EnergyVoiceDetector;
/// use clearvox::dsp::FRAME_LEN;
///
/// let mut detector = EnergyVoiceDetector::new();
/// let hum = [0.001f32; FRAME_LEN];
/// for _ in 0..50 {
///     assert!(detector.probability(&hum) < 0.1);
/// }
/// let voice: Vec<f32> = (0..FRAME_LEN).map(|n| 0.3 * (n as f32 * 0.1).sin()).collect();
/// assert!(detector.probability(&voice) > 0.9);
/// ```
#[derive(Clone, Debug)]
pub struct EnergyVoiceDetector {
    floor_db: f32,
    rise: f32,
    started: bool,
}

impl Default for EnergyVoiceDetector {
    fn default() -> Self {
        Self::new()
    }
}

impl EnergyVoiceDetector {
    /// A detector with no floor yet (the first frame sets it).
    pub fn new() -> Self {
        Self {
            floor_db: -100.0,
            // The floor may rise by about 3 dB per second.
            rise: 3.0 * FRAME_LEN as f32 / SAMPLE_RATE as f32,
            started: false,
        }
    }

    /// The voice probability of one frame.
    pub fn probability(&mut self, frame: &[f32]) -> f32 {
        let energy = frame.iter().map(|x| x * x).sum::<f32>() / frame.len().max(1) as f32;
        let level = 10.0 * (energy + 1e-12).log10();
        if !self.started {
            self.floor_db = level;
            self.started = true;
        }
        if level < self.floor_db {
            // Follow a quieter floor within ~50 ms.
            let c = one_pole_coef(0.05, FRAME_LEN as f32 / SAMPLE_RATE as f32);
            self.floor_db = c * self.floor_db + (1.0 - c) * level;
        } else {
            self.floor_db = (self.floor_db + self.rise).min(level);
        }
        let above = level - self.floor_db.max(-90.0);
        1.0 / (1.0 + (-(above - 9.0) / 2.0).exp())
    }

    /// Forgets the floor.
    pub fn reset(&mut self) {
        *self = Self::new();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(probs: &[f32]) -> Vec<VadEvent> {
        let mut m = VadStateMachine::new(&VadConfig::default()).unwrap();
        probs.iter().filter_map(|p| m.update(*p)).collect()
    }

    #[test]
    fn onset_hangover_and_preroll() {
        // 50 silent frames, 100 voiced, 50 silent.
        let mut p = vec![0.0; 50];
        p.extend(vec![0.9; 100]);
        p.extend(vec![0.0; 50]);
        let ev = run(&p);
        assert_eq!(ev.len(), 2);
        assert_eq!(ev[0].kind, VadEventKind::SpeechStart);
        // Onset at frame 50, 200 ms (9600 samples) pre-roll.
        assert_eq!(ev[0].position, 50 * 480 - 9_600);
        assert_eq!(ev[1].kind, VadEventKind::SpeechEnd);
        // 300 ms hangover after the last voiced frame (frame 149).
        assert_eq!(ev[1].position, (150 + 30) * 480);
    }

    #[test]
    fn single_spikes_and_short_gaps_are_ignored() {
        let mut p = vec![0.0; 20];
        p.extend([0.9, 0.0, 0.9, 0.9, 0.0]);
        assert!(run(&p).is_empty(), "two-frame burst is not speech");
        let mut p = vec![0.9; 20];
        p.extend(vec![0.1; 20]); // 200 ms gap < 300 ms hangover
        p.extend(vec![0.9; 20]);
        let ev = run(&p);
        assert_eq!(ev.len(), 1);
    }

    #[test]
    fn hysteresis_keeps_speech_between_thresholds() {
        let mut p = vec![0.9; 10];
        p.extend(vec![0.45; 100]);
        assert_eq!(run(&p).len(), 1);
    }

    #[test]
    fn preroll_never_reaches_before_previous_end() {
        let mut p = vec![0.9; 10];
        p.extend(vec![0.0; 31]);
        p.extend(vec![0.9; 10]);
        let ev = run(&p);
        assert_eq!(ev.len(), 3);
        assert_eq!(ev[2].position, ev[1].position);
    }

    #[test]
    fn rejects_inverted_thresholds() {
        let c = VadConfig {
            on_threshold: 0.2,
            off_threshold: 0.5,
            ..VadConfig::default()
        };
        assert!(VadStateMachine::new(&c).is_err());
    }

    #[test]
    fn energy_detector_separates_loud_from_floor() {
        let mut d = EnergyVoiceDetector::new();
        let quiet = vec![0.001f32; 480];
        let loud = vec![0.1f32; 480];
        for _ in 0..50 {
            assert!(d.probability(&quiet) < 0.1);
        }
        assert!(d.probability(&loud) > 0.9);
    }
}
