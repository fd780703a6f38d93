//! The effective configuration of `clearvox enhance`: preset, then `--config`, then the
//! individual flags.

use std::fs;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};

use clearvox::config::{Config, Preset};
use clearvox::dsp::spectral_gate::GateMode;
use clearvox::io::{read_wav_file, OutputFormat};
use clearvox::limits::check_sample_rate;

use crate::{GateArg, PipelineArgs, Switch};

/// A noise-only clip for the gate's noise profile.
pub struct NoiseClip {
    pub path: PathBuf,
    pub samples: Vec<f32>,
    pub rate: u32,
    pub channels: usize,
    pub warnings: Vec<String>,
}

/// Everything every file of a run shares.
pub struct Settings {
    pub config: Config,
    /// `None`: follow each input's format.
    pub format: Option<OutputFormat>,
    pub noise: Option<NoiseClip>,
    /// The render signal for the echo canceller (`--echo-ref`).
    pub echo_ref: Option<NoiseClip>,
    /// Where to draw the spectrograms (`--plot`, one input file only), and their size.
    pub plot: Option<(std::path::PathBuf, crate::plot::PlotSize)>,
}

/// The configuration the flags describe (the noise profile is not read here);
/// `default` is the preset when neither `--preset` nor the `--config` file names one.
pub fn build_config(args: &PipelineArgs, default: Preset) -> Result<Config> {
    let mut config = match &args.config {
        Some(path) => config_file(path, args.preset.map(Preset::from), default)?,
        None => Config::preset(args.preset.map(Preset::from).unwrap_or(default)),
    };
    if let Some(s) = args.strength {
        config.strength = s;
    }
    if let Some(l) = args.atten_limit_db {
        config.atten_limit_db = Some(l);
    }
    if let Some(d) = args.denoiser {
        config.denoiser = d.into();
    }
    if let Some(model) = &args.model {
        config.deepfilter.model = Some(model.clone());
    }
    if let Some(a) = args.agc {
        config.agc.enabled = a == Switch::On;
    }
    if let Some(rate) = args.output_rate {
        check_sample_rate(rate).context("--output-rate")?;
        config.output_rate = Some(rate);
    }
    match (args.gate, &args.noise_profile) {
        (Some(GateArg::Off), Some(_)) => bail!(
            "--noise-profile needs the spectral gate, but --gate is off: \
             use --gate stationary or nonstationary"
        ),
        (Some(g), _) => config.gate.mode = GateMode::from(g),
        (None, Some(_)) => config.gate.mode = GateMode::Stationary,
        (None, None) => {}
    }
    config.validate()?;
    Ok(config)
}

/// Reads a TOML configuration; `preset` (from `--preset`) replaces the file's own,
/// and `default` stands in when neither names one.
fn config_file(path: &Path, preset: Option<Preset>, default: Preset) -> Result<Config> {
    let text = fs::read_to_string(path).map_err(|e| {
        anyhow::anyhow!(
            "cannot read {}: {}",
            path.display(),
            clearvox::io::os_reason(&e)
        )
    })?;
    let mut table: toml::Table = toml::from_str(&text).map_err(|e| {
        anyhow::anyhow!(
            "{}: invalid configuration: {}",
            path.display(),
            crate::flatten(&e.to_string())
        )
    })?;
    match preset {
        Some(p) => {
            table.insert("preset".into(), toml::Value::String(p.name().into()));
        }
        None => {
            table
                .entry("preset")
                .or_insert_with(|| toml::Value::String(default.name().into()));
        }
    }
    let text = toml::to_string(&table)?;
    Config::from_toml_str(&text).with_context(|| path.display().to_string())
}

/// Whether the `--config` file sets `echo.enabled` itself (then `live --play-responses`
/// leaves the echo canceller as the file says). The file was read and checked by
/// [`build_config`] before.
#[cfg(feature = "device")]
pub fn config_sets_echo(args: &PipelineArgs) -> bool {
    let Some(path) = &args.config else {
        return false;
    };
    let Ok(text) = fs::read_to_string(path) else {
        return false;
    };
    let Ok(table) = toml::from_str::<toml::Table>(&text) else {
        return false;
    };
    table
        .get("echo")
        .and_then(|e| e.as_table())
        .is_some_and(|e| e.contains_key("enabled"))
}

/// Reads the `--noise-profile` clip, if any.
pub fn read_noise_clip(args: &PipelineArgs) -> Result<Option<NoiseClip>> {
    match &args.noise_profile {
        Some(path) => read_clip(path, "noise profile").map(Some),
        None => Ok(None),
    }
}

/// Reads a whole WAV file that goes beside the inputs (`what` names it in errors).
pub fn read_clip(path: &Path, what: &str) -> Result<NoiseClip> {
    let audio = read_wav_file(path).map_err(|e| crate::about(what, path, e))?;
    Ok(NoiseClip {
        path: path.to_path_buf(),
        rate: audio.spec.sample_rate,
        channels: audio.spec.channels as usize,
        warnings: audio.warnings,
        samples: audio.samples,
    })
}
