//! DeepFilterNet3: the neural denoiser of the `max-quality` preset, in pure Rust.
//!
//! DeepFilterNet (Schröter et al., 2022–2023) enhances speech in two stages on a 48 kHz
//! STFT (960-sample Vorbis window, 480 hop):
//!
//! 1. gains for 32 ERB bands shape the whole spectral envelope, and
//! 2. a complex *deep filter* — for each of the lowest 96 bins (up to 4.8 kHz) five
//!    complex taps over the frames from two before to two after — rebuilds the
//!    periodic structure of voiced speech that band gains cannot.
//!
//! An encoder reads two normalised features (ERB band energies and the low bins'
//! complex values, [`features`]) and estimates the frame's local SNR (−15 to 35 dB),
//! which can decide what runs ([`DeepFilterConfig`]): below a floor the frame is taken
//! to be noise alone and muted, above a ceiling only the gains run, above another it
//! is left alone. By default, as in DeepFilterNet's own runtime, the thresholds sit at
//! the ends of the estimate's range, so both stages always run; raising the floor or
//! lowering the ceilings trades quality for CPU. The networks see two frames ahead of
//! the frame they enhance, so the output trails the input by the STFT's hop plus two
//! hops: 1440 samples, 30 ms.
//!
//! The networks run on [tract](https://github.com/sonos/tract) ([`model`]);
//! [`DeepFilter`] is the streaming stage around them. It works on whole 480-sample
//! frames, like every [`Stage`](crate::dsp::Stage): the pipeline's framing makes any
//! chunk size give the same samples.
//!
//! The settings ([`DeepFilterConfig`]) exist in every build, so that a configuration
//! reads the same everywhere; the engine needs the cargo feature `deepfilter` (on by
//! default), which brings tract.
//!
//! **Allocation.** tract allocates the tensors of each network call (a few dozen small
//! blocks per frame, measured in `tests/dsp/no_alloc.rs`). The stage therefore belongs on
//! the processing thread, never in an audio callback; the live engine keeps it there.

pub mod features;
#[cfg(feature = "deepfilter")]
pub mod model;
#[cfg(feature = "deepfilter")]
mod stage;

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

#[cfg(feature = "deepfilter")]
pub use self::model::{DeepFilterModel, ModelError, ModelParams};
#[cfg(feature = "deepfilter")]
pub use self::stage::DeepFilter;
use crate::error::{Error, Result};

/// The DeepFilterNet stage's settings.
///
/// # Examples
///
/// ```
/// use clearvox::Config;
///
/// let config = Config::from_toml_str(
///     "denoiser = \"deepfilter\"\n[deepfilter]\natten_limit_db = 24.0",
/// )?;
/// assert_eq!(config.deepfilter.atten_limit_db, 24.0);
/// assert_eq!(config.deepfilter.model, None); // the built-in DeepFilterNet3
/// # Ok::<(), clearvox::Error>(())
/// ```
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct DeepFilterConfig {
    /// A DeepFilterNet export (`.tar.gz` with `config.ini`, `enc.onnx`,
    /// `erb_dec.onnx`, `df_dec.onnx`); `None` is the built-in DeepFilterNet3.
    pub model: Option<PathBuf>,
    /// The most the stage removes, dB (0..=100; 100 is no limit): the noisy frame is
    /// mixed back in at this level below it.
    pub atten_limit_db: f32,
    /// Strength of DeepFilterNet's post-filter, which deepens the attenuation of bands
    /// the network already attenuates (0 = off, 0.02 DeepFilterNet's suggestion; 0..=1).
    pub post_filter_beta: f32,
    /// A frame whose estimated local SNR is below this is muted as noise alone and the
    /// decoders skip it, dB (−15, the default, never: the estimate's floor).
    pub noise_only_below_db: f32,
    /// Above this local SNR only the band gains run (no deep filter), dB (35, the
    /// default, never: the estimate's ceiling).
    pub gains_only_above_db: f32,
    /// Above this local SNR the frame is left untouched and the decoders skip it, dB
    /// (35, the default, never).
    pub untouched_above_db: f32,
}

impl Default for DeepFilterConfig {
    fn default() -> Self {
        Self {
            model: None,
            atten_limit_db: 100.0,
            post_filter_beta: 0.0,
            noise_only_below_db: -15.0,
            gains_only_above_db: 35.0,
            untouched_above_db: 35.0,
        }
    }
}

impl DeepFilterConfig {
    /// Checks every value; the error names the field and the allowed range.
    pub fn validate(&self) -> Result<()> {
        let bad = |what: String| Err(Error::Config(format!("deepfilter.{what}")));
        if !(0.0..=100.0).contains(&self.atten_limit_db) {
            return bad(format!(
                "atten_limit_db = {}: must be in 0..100",
                self.atten_limit_db
            ));
        }
        if !(0.0..=1.0).contains(&self.post_filter_beta) {
            return bad(format!(
                "post_filter_beta = {}: must be in 0..1",
                self.post_filter_beta
            ));
        }
        let (lo, mid, hi) = (
            self.noise_only_below_db,
            self.gains_only_above_db,
            self.untouched_above_db,
        );
        if !(lo.is_finite() && mid.is_finite() && hi.is_finite() && lo <= mid && mid <= hi) {
            return bad(format!(
                "noise_only_below_db = {lo}, gains_only_above_db = {mid}, untouched_above_db = {hi}: \
                 must be finite and in increasing order"
            ));
        }
        Ok(())
    }

    /// The model these settings name, compiled (the built-in one is compiled once per
    /// process and shared).
    #[cfg(feature = "deepfilter")]
    pub fn load_model(&self) -> Result<DeepFilterModel> {
        match &self.model {
            None => DeepFilterModel::embedded(),
            Some(path) => DeepFilterModel::from_file(path),
        }
        .map_err(|e| Error::Model(e.to_string()))
    }
}

/// The voice probability the VAD reads from a local SNR estimate, dB: 0.5 at 0 dB.
pub fn lsnr_to_voice_prob(lsnr_db: f32) -> f32 {
    1.0 / (1.0 + (-lsnr_db / 3.0).exp())
}
