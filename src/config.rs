//! One configuration for the library, the CLI and the C ABI: [`Config`] and its presets.
//!
//! A configuration is a preset plus overrides. In TOML (or JSON) the optional `preset`
//! key names the starting point and every other key overrides it, so a file holds only
//! what differs:
//!
//! ```toml
//! preset = "voice-chat"
//! strength = 0.8
//!
//! [gate]
//! max_attenuation_db = 8.0
//! ```

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use crate::dsp::agc::AgcConfig;
use crate::dsp::convert::ChannelMode;
use crate::dsp::deepfilter::DeepFilterConfig;
pub use crate::dsp::echo::EchoConfig;
use crate::dsp::resample::ResamplerKind;
use crate::dsp::spectral_gate::{GateConfig, GateMode};
use crate::dsp::vad::VadConfig;
use crate::error::{Error, Result};
use crate::limits::check_sample_rate;

/// Named starting points for a [`Config`].
///
/// # Examples
///
/// Presets parse from and print as the names used in files and on the command line:
///
/// ```
/// use clearvox::Preset;
///
/// let preset: Preset = "low-cpu".parse()?;
/// assert_eq!(preset, Preset::LowCpu);
/// assert_eq!(preset.to_string(), "low-cpu");
///
/// // The spectral gate alone, without a neural denoiser.
/// let config = preset.config();
/// assert_eq!(config.denoiser, clearvox::config::Denoiser::Off);
///
/// // An unknown name is refused with the list of the valid ones.
/// let err = "loud".parse::<Preset>().unwrap_err();
/// assert!(err.to_string().contains("voice-chat, max-quality, low-cpu, bypass"));
/// # Ok::<(), clearvox::Error>(())
/// ```
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Preset {
    /// The default: RNNoise and the spectral gate, 20 ms of algorithmic latency at 48 kHz,
    /// low-latency resampling. For live conversation.
    #[default]
    VoiceChat,
    /// The best quality within 40 ms that runs in real time on one core: DeepFilterNet3
    /// (30 ms) and FFT resampling. In a build without the `deepfilter` feature, RNNoise
    /// with a longer gate window instead.
    MaxQuality,
    /// The spectral gate alone, without RNNoise: a fraction of the CPU, less suppression of
    /// non-stationary noise.
    LowCpu,
    /// No processing: the input, resampled if asked.
    Bypass,
}

impl Preset {
    /// Every preset, in documentation order.
    pub const ALL: [Preset; 4] = [
        Preset::VoiceChat,
        Preset::MaxQuality,
        Preset::LowCpu,
        Preset::Bypass,
    ];

    /// The preset's name, as written in files and on the command line.
    pub fn name(self) -> &'static str {
        match self {
            Preset::VoiceChat => "voice-chat",
            Preset::MaxQuality => "max-quality",
            Preset::LowCpu => "low-cpu",
            Preset::Bypass => "bypass",
        }
    }

    /// The full configuration of this preset.
    pub fn config(self) -> Config {
        let base = Config {
            preset: self,
            ..Config::voice_chat()
        };
        match self {
            Preset::VoiceChat => base,
            Preset::MaxQuality if cfg!(feature = "deepfilter") => Config {
                resampler: ResamplerKind::Fft,
                denoiser: Denoiser::DeepFilter,
                gate: GateConfig {
                    mode: GateMode::Off,
                    ..base.gate.clone()
                },
                ..base
            },
            Preset::MaxQuality => Config {
                resampler: ResamplerKind::Fft,
                gate: GateConfig {
                    fft_size: 2880,
                    low_delay: false,
                    ..base.gate.clone()
                },
                ..base
            },
            Preset::LowCpu => Config {
                denoiser: Denoiser::Off,
                gate: GateConfig {
                    max_attenuation_db: 12.0,
                    residual_scale: 1.0,
                    ..base.gate.clone()
                },
                ..base
            },
            Preset::Bypass => Config {
                highpass: HighpassConfig {
                    enabled: false,
                    ..base.highpass.clone()
                },
                denoiser: Denoiser::Off,
                gate: GateConfig {
                    mode: GateMode::Off,
                    ..base.gate.clone()
                },
                agc: AgcConfig {
                    enabled: false,
                    limiter: false,
                    ..base.agc.clone()
                },
                bypass: true,
                ..base
            },
        }
    }
}

impl fmt::Display for Preset {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for Preset {
    type Err = Error;

    fn from_str(s: &str) -> Result<Self> {
        Preset::ALL
            .into_iter()
            .find(|p| p.name() == s)
            .ok_or_else(|| {
                Error::Config(format!(
                    "unknown preset '{}': choose one of {}",
                    controls_escaped(s),
                    Preset::ALL.map(Preset::name).join(", ")
                ))
            })
    }
}

/// The optional high-pass stage.
///
/// # Examples
///
/// Turn it on for a chain without RNNoise (RNNoise high-passes its own input):
///
/// ```
/// use clearvox::config::HighpassConfig;
/// use clearvox::{Config, Pipeline, Preset};
///
/// let config = Config {
///     highpass: HighpassConfig {
///         enabled: true,
///         cutoff_hz: 120.0,
///         ..HighpassConfig::default()
///     },
///     ..Preset::LowCpu.config()
/// };
/// config.validate()?;
/// let pipeline = Pipeline::new(&config, 16_000, 1)?;
/// assert_eq!(pipeline.config().highpass.cutoff_hz, 120.0);
/// # Ok::<(), clearvox::Error>(())
/// ```
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct HighpassConfig {
    /// Whether the stage runs.
    pub enabled: bool,
    /// −3 dB frequency, Hz.
    pub cutoff_hz: f32,
    /// Quality factor (0.7071 is Butterworth).
    pub q: f32,
}

impl Default for HighpassConfig {
    fn default() -> Self {
        Self {
            enabled: false,
            cutoff_hz: 80.0,
            q: std::f32::consts::FRAC_1_SQRT_2,
        }
    }
}

/// The neural denoiser of the chain.
///
/// # Examples
///
/// ```
/// use clearvox::config::Denoiser;
/// use clearvox::{Config, Preset};
///
/// // RNNoise in voice-chat, none in low-cpu and bypass.
/// assert_eq!(Config::default().denoiser, Denoiser::Rnnoise);
/// assert_eq!(Preset::LowCpu.config().denoiser, Denoiser::Off);
///
/// let config = Config::from_toml_str("denoiser = \"deepfilter\"")?;
/// assert_eq!(config.denoiser, Denoiser::DeepFilter);
/// assert_eq!("off".parse::<Denoiser>()?, Denoiser::Off);
/// # Ok::<(), clearvox::Error>(())
/// ```
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Denoiser {
    /// RNNoise (nnnoiseless): 10 ms of latency, a small fraction of a core.
    #[default]
    Rnnoise,
    /// DeepFilterNet3 (the `deepfilter` feature): 30 ms of latency, several times
    /// RNNoise's CPU, much better on babble and non-stationary noise.
    #[serde(rename = "deepfilter")]
    DeepFilter,
    /// No neural denoiser (the spectral gate, if on, works alone).
    Off,
}

impl Denoiser {
    /// Every choice, in documentation order.
    pub const ALL: [Denoiser; 3] = [Denoiser::Rnnoise, Denoiser::DeepFilter, Denoiser::Off];

    /// The name used in files and on the command line.
    pub fn name(self) -> &'static str {
        match self {
            Denoiser::Rnnoise => "rnnoise",
            Denoiser::DeepFilter => "deepfilter",
            Denoiser::Off => "off",
        }
    }
}

impl fmt::Display for Denoiser {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for Denoiser {
    type Err = Error;

    fn from_str(s: &str) -> Result<Self> {
        Denoiser::ALL
            .into_iter()
            .find(|d| d.name() == s)
            .ok_or_else(|| {
                Error::Config(format!(
                    "unknown denoiser '{}': choose one of {}",
                    controls_escaped(s),
                    Denoiser::ALL.map(Denoiser::name).join(", ")
                ))
            })
    }
}

/// Everything that shapes a [`Pipeline`](crate::Pipeline).
///
/// Start from a [`Preset`] and override what differs, in Rust with struct-update
/// syntax or from TOML/JSON text (a `preset` key, then the overrides). Every value is
/// checked by [`Config::validate`], which the pipeline calls too; its error names the
/// field and the allowed range.
///
/// # Examples
///
/// In Rust:
///
/// ```
/// use clearvox::{Config, Preset};
///
/// let config = Config {
///     strength: 0.8,
///     output_rate: Some(16_000),
///     ..Preset::VoiceChat.config()
/// };
/// config.validate()?;
/// # Ok::<(), clearvox::Error>(())
/// ```
///
/// From a file, overriding a preset:
///
/// ```
/// use clearvox::{Config, Preset};
///
/// let config = Config::from_toml_str(
///     r#"
///     preset = "max-quality"
///     strength = 0.8
///
///     [gate]
///     max_attenuation_db = 8.0
///     "#,
/// )?;
/// assert_eq!(config.preset, Preset::MaxQuality);
/// assert_eq!(config.strength, 0.8);
/// assert_eq!(config.gate.max_attenuation_db, 8.0);
/// // Everything not overridden is the preset's.
/// assert_eq!(config.gate.fft_size, Preset::MaxQuality.config().gate.fft_size);
///
/// // A value out of range is refused with the field and the range.
/// let err = Config::from_toml_str("strength = 2.0").unwrap_err();
/// assert_eq!(
///     err.to_string(),
///     "invalid configuration: strength = 2: must be in 0..1"
/// );
/// # Ok::<(), clearvox::Error>(())
/// ```
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    /// The preset this configuration started from (informational once overridden).
    pub preset: Preset,
    /// How multi-channel input becomes mono.
    pub channel: ChannelMode,
    /// Resampler used at the input and output when rates differ from 48 kHz.
    pub resampler: ResamplerKind,
    /// Echo canceller, first in the chain (off unless a render signal is given).
    pub echo: EchoConfig,
    /// High-pass stage.
    pub highpass: HighpassConfig,
    /// The neural denoiser.
    pub denoiser: Denoiser,
    /// DeepFilterNet's settings (used when `denoiser` is `deepfilter`).
    pub deepfilter: DeepFilterConfig,
    /// Spectral gate stage.
    pub gate: GateConfig,
    /// AGC and limiter stage.
    pub agc: AgcConfig,
    /// VAD state machine.
    pub vad: VadConfig,
    /// Mix between the latency-aligned dry input (0) and the enhanced signal (1).
    pub strength: f32,
    /// The whole chain never removes more than this many dB (dry signal mixed back in).
    pub atten_limit_db: Option<f32>,
    /// Pass the latency-aligned input through untouched (switching is click-free).
    pub bypass: bool,
    /// Output rate in Hz; `None` keeps the input's rate.
    pub output_rate: Option<u32>,
}

impl Default for Config {
    fn default() -> Self {
        Self::voice_chat()
    }
}

impl Config {
    fn voice_chat() -> Self {
        Self {
            preset: Preset::VoiceChat,
            channel: ChannelMode::Downmix,
            resampler: ResamplerKind::Sinc,
            echo: EchoConfig::default(),
            highpass: HighpassConfig::default(),
            denoiser: Denoiser::Rnnoise,
            deepfilter: DeepFilterConfig::default(),
            gate: GateConfig::default(),
            agc: AgcConfig::default(),
            vad: VadConfig::default(),
            strength: 1.0,
            atten_limit_db: None,
            bypass: false,
            output_rate: None,
        }
    }

    /// The configuration of a preset (the same as [`Preset::config`]).
    pub fn preset(preset: Preset) -> Self {
        preset.config()
    }

    /// Parses TOML: an optional `preset` key, then overrides of any field.
    pub fn from_toml_str(text: &str) -> Result<Self> {
        let table: toml::Table =
            toml::from_str(text).map_err(|e| Error::Config(one_line(&e.to_string())))?;
        let overrides = serde_json::to_value(table).map_err(|e| Error::Config(e.to_string()))?;
        Self::from_overrides(overrides)
    }

    /// Parses JSON: an optional `"preset"` key, then overrides of any field.
    pub fn from_json_str(text: &str) -> Result<Self> {
        let overrides: serde_json::Value =
            serde_json::from_str(text).map_err(|e| Error::Config(e.to_string()))?;
        Self::from_overrides(overrides)
    }

    fn from_overrides(overrides: serde_json::Value) -> Result<Self> {
        let serde_json::Value::Object(map) = overrides else {
            return Err(Error::Config(
                "a configuration must be a table of keys".into(),
            ));
        };
        let preset = match map.get("preset") {
            None => Preset::default(),
            Some(serde_json::Value::String(s)) => s.parse()?,
            Some(other) => {
                return Err(Error::Config(format!("preset must be a name, not {other}")))
            }
        };
        let mut merged =
            serde_json::to_value(preset.config()).map_err(|e| Error::Config(e.to_string()))?;
        merge(&mut merged, serde_json::Value::Object(map));
        let config: Config = serde_json::from_value(merged)
            .map_err(|e| Error::Config(controls_escaped(&e.to_string())))?;
        config.validate()?;
        Ok(config)
    }

    /// This configuration as TOML (every field, so it documents itself).
    pub fn to_toml_string(&self) -> Result<String> {
        toml::to_string_pretty(self).map_err(|e| Error::Config(e.to_string()))
    }

    /// Checks every value; the error names the field and the allowed range.
    pub fn validate(&self) -> Result<()> {
        if !(0.0..=1.0).contains(&self.strength) {
            return Err(Error::Config(format!(
                "strength = {}: must be in 0..1",
                self.strength
            )));
        }
        if let Some(l) = self.atten_limit_db {
            if !(0.0..=100.0).contains(&l) {
                return Err(Error::Config(format!(
                    "atten_limit_db = {l}: must be in 0..100"
                )));
            }
        }
        if let Some(rate) = self.output_rate {
            check_sample_rate(rate)?;
        }
        if self.highpass.enabled {
            crate::dsp::highpass::Highpass::new(self.highpass.cutoff_hz, self.highpass.q)?;
        }
        self.echo.validate()?;
        self.deepfilter.validate()?;
        if self.denoiser == Denoiser::DeepFilter && !cfg!(feature = "deepfilter") {
            return Err(Error::deepfilter_not_built());
        }
        self.gate.validate()?;
        self.agc.validate()?;
        self.vad.validate()?;
        Ok(())
    }
}

fn merge(base: &mut serde_json::Value, over: serde_json::Value) {
    match (base, over) {
        (serde_json::Value::Object(b), serde_json::Value::Object(o)) => {
            for (k, v) in o {
                match b.get_mut(&k) {
                    Some(slot) => merge(slot, v),
                    None => {
                        b.insert(k, v);
                    }
                }
            }
        }
        (slot, v) => *slot = v,
    }
}

/// `s` with its control characters (line breaks among them) escaped as in Rust source,
/// so that a message quoting a name it was given stays one printable line.
fn controls_escaped(s: &str) -> String {
    s.chars()
        .map(|c| {
            if c.is_control() {
                c.escape_default().to_string()
            } else {
                c.to_string()
            }
        })
        .collect()
}

/// `s` with every run of whitespace, line breaks included, as one space.
pub(crate) fn one_line(s: &str) -> String {
    s.split_whitespace().collect::<Vec<_>>().join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_preset_is_valid_and_round_trips_through_toml() {
        for p in Preset::ALL {
            let c = p.config();
            c.validate().unwrap();
            let text = c.to_toml_string().unwrap();
            assert_eq!(Config::from_toml_str(&text).unwrap(), c, "{p}");
        }
    }

    #[test]
    fn toml_overrides_a_preset() {
        let c = Config::from_toml_str(
            "preset = \"max-quality\"\nstrength = 0.5\n[gate]\nmax_attenuation_db = 6.0\n",
        )
        .unwrap();
        assert_eq!(c.preset, Preset::MaxQuality);
        assert_eq!(c.strength, 0.5);
        assert_eq!(c.gate.max_attenuation_db, 6.0);
        assert_eq!(c.gate.fft_size, Preset::MaxQuality.config().gate.fft_size);
    }

    #[test]
    fn an_unknown_name_is_quoted_on_one_line() {
        // From the C ABI, a TOML or JSON string: any bytes, line breaks included.
        for text in [
            "7 \n\u{4}",
            "{\"preset\": \"a\\nb\"}",
            "denoiser = \"x\\r\\ny\"",
        ] {
            let e = if text.starts_with('{') {
                Config::from_json_str(text)
            } else if text.contains('=') {
                Config::from_toml_str(text)
            } else {
                text.parse::<Preset>().map(Preset::config)
            }
            .unwrap_err()
            .to_string();
            assert!(!e.contains(['\n', '\r', '\u{4}']), "{e:?}");
        }
        let e = "a\nb".parse::<Preset>().unwrap_err().to_string();
        assert!(e.contains(r"unknown preset 'a\nb'"), "{e}");
    }

    #[test]
    fn errors_name_the_problem() {
        let e = Config::from_toml_str("preset = \"loud\"")
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("unknown preset 'loud'") && e.contains("voice-chat"),
            "{e}"
        );
        let e = Config::from_toml_str("strength = 2.0")
            .unwrap_err()
            .to_string();
        assert!(e.contains("strength = 2"), "{e}");
        let e = Config::from_toml_str("[gate]\nfft_sise = 3")
            .unwrap_err()
            .to_string();
        assert!(e.contains("fft_sise"), "{e}");
        let e = Config::from_toml_str("strength = ")
            .unwrap_err()
            .to_string();
        assert!(!e.contains('\n'), "{e}");
        let e = Config::from_json_str("{\"output_rate\": 768000}")
            .unwrap_err()
            .to_string();
        assert!(e.contains("768000"), "{e}");
    }
}
