//! A DeepFilterNet export: its `config.ini` and its three ONNX networks, compiled by
//! tract into streaming ("pulsed") plans that take one STFT frame per call.
//!
//! An export is a gzip-compressed tarball holding `config.ini`, `enc.onnx` (the
//! encoder: features → embeddings and a local SNR estimate), `erb_dec.onnx` (the ERB
//! gain decoder) and `df_dec.onnx` (the deep-filter coefficient decoder), in any
//! folder of the archive. The networks are convolutional-recurrent over time with a
//! symbolic time axis `S`; tract's pulsification turns each into a plan that consumes
//! one frame per call and keeps the convolutions' past frames and the GRUs' hidden
//! states between calls. Compiling is slow (about a second), so a compiled
//! [`DeepFilterModel`] is shared: every stage built from it only owns its states.

use std::collections::HashMap;
use std::io::Read;
use std::sync::{Arc, Mutex, OnceLock};

use tract_onnx::prelude::*;
use tract_pulse::model::{PulsedModel, PulsedModelExt};

use crate::config::one_line;

/// Why a model could not be loaded: one line, naming the file or key at fault.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct ModelError(pub(crate) String);

type Result<T> = std::result::Result<T, ModelError>;

/// The embedded DeepFilterNet3 export (`models/DeepFilterNet3_onnx.tar.gz`).
pub static DEEPFILTERNET3: &[u8] = include_bytes!("../../../models/DeepFilterNet3_onnx.tar.gz");

/// The sizes an export's `config.ini` decides.
#[derive(Clone, Debug, PartialEq)]
pub struct ModelParams {
    /// Sample rate, Hz (`[df] sr`).
    pub sample_rate: usize,
    /// STFT frame length (`[df] fft_size`).
    pub fft_size: usize,
    /// STFT hop (`[df] hop_size`).
    pub hop: usize,
    /// ERB bands of the gain decoder (`[df] nb_erb`).
    pub erb_bands: usize,
    /// Minimum bins per ERB band (`[df] min_nb_erb_freqs`).
    pub min_band_width: usize,
    /// Lowest bins filtered by the deep filter (`[df] nb_df`).
    pub df_bins: usize,
    /// Taps of the deep filter, frames (`[df] df_order`).
    pub df_order: usize,
    /// Future frames the deep filter reaches (`[df] df_lookahead`).
    pub df_lookahead: usize,
    /// Future frames the encoder's convolutions see (`[deepfilternet] conv_lookahead`).
    pub conv_lookahead: usize,
    /// Time constant of the feature normalisations, s (`[df] norm_tau`).
    pub norm_tau: f32,
}

impl ModelParams {
    /// Frames by which the networks' output trails their newest input.
    pub fn lookahead(&self) -> usize {
        self.df_lookahead.max(self.conv_lookahead)
    }

    fn from_ini(text: &str) -> Result<Self> {
        let mut values: HashMap<(String, String), String> = HashMap::new();
        let mut section = String::new();
        for line in text.lines() {
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') || line.starts_with(';') {
                continue;
            }
            if let Some(name) = line.strip_prefix('[').and_then(|l| l.strip_suffix(']')) {
                section = name.trim().to_ascii_lowercase();
            } else if let Some((k, v)) = line.split_once('=') {
                values.insert(
                    (section.clone(), k.trim().to_ascii_lowercase()),
                    v.trim().to_string(),
                );
            }
        }
        let get = |section: &str, key: &str| -> Result<&str> {
            values
                .get(&(section.to_string(), key.to_string()))
                .map(String::as_str)
                .ok_or_else(|| ModelError(format!("config.ini has no '{key}' in [{section}]")))
        };
        let int = |section: &str, key: &str| -> Result<usize> {
            let v = get(section, key)?;
            v.parse().map_err(|_| {
                ModelError(format!(
                    "config.ini: [{section}] {key} = {v:?} is not a whole number"
                ))
            })
        };
        let tau = get("df", "norm_tau")?;
        let params = Self {
            sample_rate: int("df", "sr")?,
            fft_size: int("df", "fft_size")?,
            hop: int("df", "hop_size")?,
            erb_bands: int("df", "nb_erb")?,
            min_band_width: int("df", "min_nb_erb_freqs")?,
            df_bins: int("df", "nb_df")?,
            df_order: int("df", "df_order")?,
            df_lookahead: int("df", "df_lookahead")?,
            conv_lookahead: int("deepfilternet", "conv_lookahead")?,
            norm_tau: tau.parse().map_err(|_| {
                ModelError(format!(
                    "config.ini: [df] norm_tau = {tau:?} is not a number"
                ))
            })?,
        };
        params.check()?;
        Ok(params)
    }

    /// What clearvox's processing takes: 48 kHz, 10 ms hops, half-overlapping frames.
    fn check(&self) -> Result<()> {
        let bins = self.fft_size / 2 + 1;
        let bad = |what: String| Err(ModelError(format!("config.ini: {what}")));
        if self.sample_rate != crate::dsp::SAMPLE_RATE as usize {
            return bad(format!(
                "sr = {}: clearvox runs DeepFilterNet at {} Hz only",
                self.sample_rate,
                crate::dsp::SAMPLE_RATE
            ));
        }
        if self.hop != crate::dsp::FRAME_LEN || self.fft_size != 2 * self.hop {
            return bad(format!(
                "fft_size = {}, hop_size = {}: clearvox needs hop_size = {} and fft_size = 2 × hop_size",
                self.fft_size,
                self.hop,
                crate::dsp::FRAME_LEN
            ));
        }
        if self.df_bins == 0 || self.df_bins > bins {
            return bad(format!("nb_df = {} must be in 1..={bins}", self.df_bins));
        }
        if self.df_order == 0 || self.df_lookahead >= self.df_order || self.df_order > 16 {
            return bad(format!(
                "df_order = {}, df_lookahead = {}: need 0 <= df_lookahead < df_order <= 16",
                self.df_order, self.df_lookahead
            ));
        }
        if self.conv_lookahead > 8 {
            return bad(format!(
                "conv_lookahead = {} is more than 8 frames",
                self.conv_lookahead
            ));
        }
        if !(self.norm_tau > 0.0 && self.norm_tau.is_finite()) {
            return bad(format!("norm_tau = {} must be positive", self.norm_tau));
        }
        if super::features::erb_band_widths(
            self.sample_rate,
            self.fft_size,
            self.erb_bands,
            self.min_band_width,
        )
        .is_none()
        {
            return bad(format!(
                "nb_erb = {} bands of at least {} bins do not fit {bins} bins",
                self.erb_bands, self.min_band_width
            ));
        }
        Ok(())
    }
}

/// One compiled network: its plan and where its named inputs and outputs are.
#[derive(Debug)]
pub(crate) struct Network {
    pub(crate) plan: Arc<TypedSimplePlan>,
    /// Output positions, in the order the caller asked for them by name.
    pub(crate) outputs: Vec<usize>,
    /// Input positions, in the order the caller asked for them by name.
    pub(crate) inputs: Vec<usize>,
}

impl Network {
    fn compile(file: &str, bytes: &[u8], inputs: &[&str], outputs: &[&str]) -> Result<Self> {
        let fail = |what: &str, e: TractError| {
            ModelError(format!("{file}: {what}: {}", one_line(&format!("{e:#}"))))
        };
        let model = tract_onnx::onnx()
            .with_ignore_output_shapes(true)
            .model_for_read(&mut &bytes[..])
            .map_err(|e| fail("not a readable ONNX network", e))?;
        let typed = model
            .into_typed()
            .and_then(|m| m.into_decluttered())
            .map_err(|e| fail("cannot be typed", e))?;
        let time = typed.sym("S");
        let find = |outlets: &[OutletId], name: &str, kind: &str| -> Result<usize> {
            outlets
                .iter()
                .position(|&o| {
                    typed.outlet_label(o) == Some(name) || typed.node(o.node).name == name
                })
                .ok_or_else(|| ModelError(format!("{file}: no {kind} named '{name}'")))
        };
        let input_outlets = typed
            .input_outlets()
            .map_err(|e| fail("inputs", e))?
            .to_vec();
        let output_outlets = typed
            .output_outlets()
            .map_err(|e| fail("outputs", e))?
            .to_vec();
        if input_outlets.len() != inputs.len() {
            return Err(ModelError(format!(
                "{file}: {} inputs, expected {} ({})",
                input_outlets.len(),
                inputs.len(),
                inputs.join(", ")
            )));
        }
        let inputs = inputs
            .iter()
            .map(|n| find(&input_outlets, n, "input"))
            .collect::<Result<Vec<_>>>()?;
        let outputs = outputs
            .iter()
            .map(|n| find(&output_outlets, n, "output"))
            .collect::<Result<Vec<_>>>()?;
        let pulsed = PulsedModel::new(&typed, time, &1.to_dim())
            .map_err(|e| fail("cannot be streamed frame by frame", e))?;
        for i in 0..output_outlets.len() {
            let delay = pulsed
                .output_fact(i)
                .map_err(|e| fail("outputs", e))?
                .stream
                .as_ref()
                .map_or(0, |s| s.delay);
            if delay != 0 {
                return Err(ModelError(format!(
                    "{file}: output {i} lags its input by {delay} frames; clearvox takes causal networks only"
                )));
            }
        }
        let optimized = pulsed
            .into_typed()
            .and_then(|m| m.into_optimized())
            .map_err(|e| fail("cannot be optimised", e))?;
        let plan = TypedSimplePlan::new(optimized).map_err(|e| fail("cannot be planned", e))?;
        Ok(Self {
            plan,
            outputs,
            inputs,
        })
    }
}

impl Network {
    /// Runs one frame on `state`, with `named` in the order the inputs were named when
    /// the network was compiled.
    pub(crate) fn step(
        &self,
        state: &mut TypedSimpleState,
        named: impl IntoIterator<Item = TValue>,
    ) -> TractResult<TVec<TValue>> {
        let mut inputs: Vec<Option<TValue>> = vec![None; self.inputs.len()];
        for (value, &at) in named.into_iter().zip(&self.inputs) {
            inputs[at] = Some(value);
        }
        state.run(inputs.into_iter().flatten().collect())
    }
}

/// A compiled DeepFilterNet export, shared by every stage built from it (cloning is
/// cheap).
#[derive(Clone, Debug)]
pub struct DeepFilterModel {
    inner: Arc<Compiled>,
}

#[derive(Debug)]
struct Compiled {
    params: ModelParams,
    origin: String,
    encoder: Network,
    erb_decoder: Network,
    df_decoder: Network,
}

/// Encoder outputs, in this order.
pub(crate) const ENCODER_OUTPUTS: [&str; 7] = ["e0", "e1", "e2", "e3", "emb", "c0", "lsnr"];

impl DeepFilterModel {
    /// The DeepFilterNet3 model built into the library, compiled once per process.
    pub fn embedded() -> std::result::Result<Self, ModelError> {
        static MODEL: OnceLock<std::result::Result<DeepFilterModel, ModelError>> = OnceLock::new();
        MODEL
            .get_or_init(|| Self::from_tar_gz(DEEPFILTERNET3, "built-in DeepFilterNet3"))
            .clone()
    }

    /// Loads an export from a `.tar.gz` file, compiling it once per process: a file
    /// already compiled (same path, size and modification time) is shared, so that a
    /// batch of recordings does not compile the same model for each.
    pub fn from_file(path: &std::path::Path) -> std::result::Result<Self, ModelError> {
        type Key = (std::path::PathBuf, u64, Option<std::time::SystemTime>);
        static CACHE: Mutex<Vec<(Key, DeepFilterModel)>> = Mutex::new(Vec::new());
        let meta = std::fs::metadata(path)
            .map_err(|e| ModelError(format!("{}: {}", path.display(), crate::io::os_reason(&e))))?;
        let key: Key = (path.to_path_buf(), meta.len(), meta.modified().ok());
        // A poisoned cache only means another thread panicked while holding it.
        let lock = || CACHE.lock().unwrap_or_else(|p| p.into_inner());
        if let Some((_, model)) = lock().iter().find(|(k, _)| *k == key) {
            return Ok(model.clone());
        }
        // Compiled outside the lock: another file's users need not wait.
        let model = Self::compile_file(path)?;
        let mut cache = lock();
        if cache.len() >= 4 {
            cache.remove(0);
        }
        cache.push((key, model.clone()));
        Ok(model)
    }

    fn compile_file(path: &std::path::Path) -> std::result::Result<Self, ModelError> {
        let bytes = std::fs::read(path)
            .map_err(|e| ModelError(format!("{}: {}", path.display(), crate::io::os_reason(&e))))?;
        Self::from_tar_gz(&bytes, &path.display().to_string())
            .map_err(|e| ModelError(format!("{}: {}", path.display(), e.0)))
    }

    /// Loads an export from the bytes of its `.tar.gz`; `origin` names it in reports.
    pub fn from_tar_gz(bytes: &[u8], origin: &str) -> std::result::Result<Self, ModelError> {
        let files = unpack(bytes)?;
        let file = |name: &str| {
            files.get(name).ok_or_else(|| {
                ModelError(format!(
                    "not a DeepFilterNet export: no {name} in the archive"
                ))
            })
        };
        let ini = std::str::from_utf8(file("config.ini")?)
            .map_err(|_| ModelError("config.ini is not UTF-8 text".into()))?;
        let params = ModelParams::from_ini(ini)?;
        let encoder = Network::compile(
            "enc.onnx",
            file("enc.onnx")?,
            &["feat_erb", "feat_spec"],
            &ENCODER_OUTPUTS,
        )?;
        let erb_decoder = Network::compile(
            "erb_dec.onnx",
            file("erb_dec.onnx")?,
            &["emb", "e3", "e2", "e1", "e0"],
            &["m"],
        )?;
        let df_decoder = Network::compile(
            "df_dec.onnx",
            file("df_dec.onnx")?,
            &["emb", "c0"],
            &["coefs"],
        )?;
        Ok(Self {
            inner: Arc::new(Compiled {
                params,
                origin: origin.to_string(),
                encoder,
                erb_decoder,
                df_decoder,
            }),
        })
    }

    /// The sizes from the export's `config.ini`.
    pub fn params(&self) -> &ModelParams {
        &self.inner.params
    }

    /// Where the model came from (a path, or the built-in model's name).
    pub fn origin(&self) -> &str {
        &self.inner.origin
    }

    pub(crate) fn encoder(&self) -> &Network {
        &self.inner.encoder
    }

    pub(crate) fn erb_decoder(&self) -> &Network {
        &self.inner.erb_decoder
    }

    pub(crate) fn df_decoder(&self) -> &Network {
        &self.inner.df_decoder
    }
}

/// The regular files of a `.tar.gz`, by file name (folders dropped). Bounded: an
/// archive that inflates past 64 MiB is refused rather than read.
fn unpack(bytes: &[u8]) -> Result<HashMap<String, Vec<u8>>> {
    const LIMIT: u64 = 64 << 20;
    let gz = flate2::read::GzDecoder::new(bytes);
    let mut archive = tar::Archive::new(gz.take(LIMIT + 1));
    let mut files = HashMap::new();
    let entries = archive
        .entries()
        .map_err(|e| ModelError(format!("not a .tar.gz archive: {e}")))?;
    let mut total = 0u64;
    for entry in entries {
        let mut entry = entry.map_err(|e| {
            ModelError(format!(
                "not a valid .tar.gz archive: {}",
                one_line(&e.to_string())
            ))
        })?;
        if !entry.header().entry_type().is_file() {
            continue;
        }
        let name = entry
            .path()
            .ok()
            .and_then(|p| p.file_name().map(|n| n.to_string_lossy().into_owned()))
            .unwrap_or_default();
        let mut data = Vec::new();
        entry.read_to_end(&mut data).map_err(|e| {
            ModelError(format!(
                "archive member {name}: {}",
                one_line(&e.to_string())
            ))
        })?;
        total += data.len() as u64;
        if total > LIMIT {
            return Err(ModelError(
                "archive inflates past 64 MiB: not a DeepFilterNet export".into(),
            ));
        }
        files.insert(name, data);
    }
    if files.is_empty() {
        return Err(ModelError("not a .tar.gz archive with files in it".into()));
    }
    Ok(files)
}
