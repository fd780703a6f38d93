//! Automatic gain control and a peak limiter.
//!
//! The AGC brings speech to a target level (RMS over voiced frames) so the backend
//! hears a steady voice whether the user whispers or leans into the microphone. It
//! measures and adapts only while the VAD says speech, so it never pumps the noise up
//! in pauses; its gain is bounded and changes at a limited rate, ramped sample by
//! sample across each frame (no zipper noise).
//!
//! The limiter comes last and guarantees the output never exceeds its threshold: the
//! gain drops instantly to what the current sample needs and recovers with a release
//! time constant. It has no look-ahead, so it adds no latency.

use serde::{Deserialize, Serialize};

use super::{
    db_to_gain, gain_to_db, one_pole_coef, Frame, FrameInfo, Stage, FRAME_LEN, SAMPLE_RATE,
};
use crate::error::{Error, Result};

/// Settings of the AGC and the limiter.
///
/// # Examples
///
/// ```
/// use clearvox::dsp::agc::AgcConfig;
/// use clearvox::{Config, Preset};
///
/// // Level speech to -23 dBFS (off in every preset).
/// let config = Config {
///     agc: AgcConfig {
///         enabled: true,
///         target_dbfs: -23.0,
///         ..AgcConfig::default()
///     },
///     ..Preset::VoiceChat.config()
/// };
/// config.validate()?;
///
/// // A value out of range names the field and the range.
/// let bad = AgcConfig {
///     max_gain_db: 60.0,
///     ..AgcConfig::default()
/// };
/// assert_eq!(
///     bad.validate().unwrap_err().to_string(),
///     "invalid configuration: agc.max_gain_db = 60: must be in 0..40"
/// );
/// # Ok::<(), clearvox::Error>(())
/// ```
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AgcConfig {
    /// Whether the AGC adjusts the level (the limiter is separate).
    pub enabled: bool,
    /// Target speech level, dBFS RMS.
    pub target_dbfs: f32,
    /// Most gain the AGC applies, dB.
    pub max_gain_db: f32,
    /// Least gain (most attenuation) the AGC applies, dB (≤ 0).
    pub min_gain_db: f32,
    /// Time constant of the speech-level measurement, ms of speech.
    pub level_tau_ms: f32,
    /// Fastest gain change, dB per second.
    pub max_slew_db_per_s: f32,
    /// Whether the peak limiter runs.
    pub limiter: bool,
    /// Ceiling of the limiter, dBFS (peak).
    pub limiter_threshold_dbfs: f32,
    /// Recovery time constant of the limiter, ms.
    pub limiter_release_ms: f32,
}

impl Default for AgcConfig {
    fn default() -> Self {
        Self {
            // Off by default: on short utterances its adaptation costs SI-SDR (see README).
            enabled: false,
            target_dbfs: -20.0,
            max_gain_db: 18.0,
            min_gain_db: -12.0,
            level_tau_ms: 3_000.0,
            max_slew_db_per_s: 30.0,
            limiter: true,
            limiter_threshold_dbfs: -1.0,
            limiter_release_ms: 60.0,
        }
    }
}

impl AgcConfig {
    /// Checks ranges.
    pub fn validate(&self) -> Result<()> {
        let checks = [
            ("target_dbfs", self.target_dbfs, -60.0, 0.0),
            ("max_gain_db", self.max_gain_db, 0.0, 40.0),
            ("min_gain_db", self.min_gain_db, -40.0, 0.0),
            ("level_tau_ms", self.level_tau_ms, 10.0, 10_000.0),
            ("max_slew_db_per_s", self.max_slew_db_per_s, 0.1, 200.0),
            (
                "limiter_threshold_dbfs",
                self.limiter_threshold_dbfs,
                -30.0,
                0.0,
            ),
            ("limiter_release_ms", self.limiter_release_ms, 1.0, 2_000.0),
        ];
        for (name, v, lo, hi) in checks {
            if !(lo..=hi).contains(&v) {
                return Err(Error::Config(format!(
                    "agc.{name} = {v}: must be in {lo}..{hi}"
                )));
            }
        }
        Ok(())
    }
}

/// The AGC + limiter stage.
///
/// # Examples
///
/// ```
/// use clearvox::dsp::agc::{Agc, AgcConfig};
/// use clearvox::dsp::{db_to_gain, FrameInfo, Stage, FRAME_LEN};
///
/// let config = AgcConfig {
///     enabled: true,
///     ..AgcConfig::default()
/// };
/// let mut agc = Agc::new(&config)?;
///
/// // Quiet speech (the VAD says so in the frame's side information) is brought up...
/// let speech = FrameInfo { voice_prob: Some(0.9), speech: true };
/// for _ in 0..100 {
///     let mut frame = [0.01f32; FRAME_LEN];
///     agc.process(&mut frame, &mut { speech });
/// }
/// assert!(agc.gain_db() > 10.0);
///
/// // ...and the limiter keeps every sample below its ceiling.
/// let mut loud = [1.5f32; FRAME_LEN];
/// agc.process(&mut loud, &mut { speech });
/// let ceiling = db_to_gain(config.limiter_threshold_dbfs);
/// assert!(loud.iter().all(|x| x.abs() <= ceiling));
/// # Ok::<(), clearvox::Error>(())
/// ```
#[derive(Clone, Debug)]
pub struct Agc {
    config: AgcConfig,
    level_coef: f32,
    slew_db: f32,
    release: f32,
    threshold: f32,
    level: Option<f32>,
    voiced_frames: u32,
    gain_db: f32,
    limiter_gain: f32,
}

impl Agc {
    /// A stage with unity gain and no level measured yet.
    pub fn new(config: &AgcConfig) -> Result<Self> {
        config.validate()?;
        let frame_s = FRAME_LEN as f32 / SAMPLE_RATE as f32;
        Ok(Self {
            level_coef: one_pole_coef(config.level_tau_ms / 1000.0, frame_s),
            slew_db: config.max_slew_db_per_s * frame_s,
            release: one_pole_coef(config.limiter_release_ms / 1000.0, 1.0 / SAMPLE_RATE as f32),
            threshold: db_to_gain(config.limiter_threshold_dbfs),
            config: config.clone(),
            level: None,
            voiced_frames: 0,
            gain_db: 0.0,
            limiter_gain: 1.0,
        })
    }

    /// The AGC gain currently applied, dB.
    pub fn gain_db(&self) -> f32 {
        self.gain_db
    }

    fn next_gain_db(&mut self, frame: &Frame, info: &FrameInfo) -> f32 {
        if !self.config.enabled {
            return 0.0;
        }
        let voiced = info.speech && info.voice_prob.is_none_or(|p| p >= 0.5);
        if !voiced {
            return self.gain_db;
        }
        let power = frame.iter().map(|x| x * x).sum::<f32>() / FRAME_LEN as f32;
        // A plain mean over the first voiced frames (a steady estimate fast), then an
        // exponential average with the configured memory.
        self.voiced_frames = self.voiced_frames.saturating_add(1);
        let w = (1.0 / self.voiced_frames as f32).max(1.0 - self.level_coef);
        let level = match self.level {
            None => power,
            Some(l) => l + w * (power - l),
        };
        self.level = Some(level);
        let level_db = 10.0 * (level + 1e-12).log10();
        let want = (self.config.target_dbfs - level_db)
            .clamp(self.config.min_gain_db, self.config.max_gain_db);
        self.gain_db + (want - self.gain_db).clamp(-self.slew_db, self.slew_db)
    }
}

impl Stage for Agc {
    fn name(&self) -> &'static str {
        "agc"
    }

    fn process(&mut self, frame: &mut Frame, info: &mut FrameInfo) {
        let g0 = db_to_gain(self.gain_db);
        self.gain_db = self.next_gain_db(frame, info);
        let g1 = db_to_gain(self.gain_db);
        let step = (g1 - g0) / FRAME_LEN as f32;
        let limiter = self.config.limiter;
        for (i, x) in frame.iter_mut().enumerate() {
            let mut y = *x * (g0 + step * (i + 1) as f32);
            if limiter {
                let need = if y.abs() > self.threshold {
                    self.threshold / y.abs()
                } else {
                    1.0
                };
                self.limiter_gain = if need < self.limiter_gain {
                    need
                } else {
                    self.release * self.limiter_gain + (1.0 - self.release) * need
                };
                y *= self.limiter_gain;
            }
            *x = y;
        }
        debug_assert!(gain_to_db(g1).is_finite());
    }

    fn latency(&self) -> usize {
        0
    }

    fn reset(&mut self) {
        self.level = None;
        self.voiced_frames = 0;
        self.gain_db = 0.0;
        self.limiter_gain = 1.0;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn on() -> AgcConfig {
        AgcConfig {
            enabled: true,
            ..AgcConfig::default()
        }
    }

    fn tone(amp: f32, n: usize) -> Vec<f32> {
        (0..n)
            .map(|i| amp * (i as f32 * 2.0 * std::f32::consts::PI * 440.0 / 48_000.0).sin())
            .collect()
    }

    fn run(agc: &mut Agc, x: &[f32], speech: bool) -> Vec<f32> {
        let mut out = Vec::new();
        for c in x.chunks_exact(FRAME_LEN) {
            let mut f: Frame = c.try_into().unwrap();
            let mut info = FrameInfo {
                voice_prob: Some(if speech { 0.9 } else { 0.0 }),
                speech,
            };
            agc.process(&mut f, &mut info);
            out.extend_from_slice(&f);
        }
        out
    }

    fn rms_db(x: &[f32]) -> f32 {
        10.0 * (x.iter().map(|v| v * v).sum::<f32>() / x.len() as f32).log10()
    }

    #[test]
    fn brings_quiet_speech_to_target() {
        let mut agc = Agc::new(&on()).unwrap();
        let x = tone(0.02, 48_000 * 4); // about -37 dBFS RMS
        let y = run(&mut agc, &x, true);
        // Bounded at +18 dB: -37 + 18 = -19... target -20 is within reach.
        let tail = rms_db(&y[48_000 * 3..]);
        assert!((tail - -20.0).abs() < 0.5, "{tail}");
    }

    #[test]
    fn does_not_adapt_without_speech() {
        let mut agc = Agc::new(&on()).unwrap();
        let x = tone(0.01, 48_000 * 2);
        let y = run(&mut agc, &x, false);
        assert_eq!(x, y);
        assert_eq!(agc.gain_db(), 0.0);
    }

    #[test]
    fn gain_is_bounded() {
        let mut agc = Agc::new(&on()).unwrap();
        run(&mut agc, &tone(0.0001, 48_000 * 5), true);
        assert!((agc.gain_db() - 18.0).abs() < 1e-3);
    }

    #[test]
    fn limiter_never_lets_output_exceed_threshold() {
        let cfg = on();
        let mut agc = Agc::new(&cfg).unwrap();
        let mut x = tone(0.05, 48_000);
        for (i, v) in x.iter_mut().enumerate() {
            if i % 5000 < 50 {
                *v = if i % 2 == 0 { 3.0 } else { -3.0 };
            }
        }
        let y = run(&mut agc, &x, true);
        let thr = db_to_gain(cfg.limiter_threshold_dbfs);
        assert!(y.iter().all(|v| v.abs() <= thr + 1e-6));
    }
}
