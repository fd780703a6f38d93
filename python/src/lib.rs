//! The native half of the `clearvox` Python package (`clearvox._native`).
//!
//! Every behaviour is the library's: this module only moves numpy arrays in and out,
//! turns configurations given as JSON (the Python side's dicts) into a
//! [`clearvox::Config`] through the library's own merge and validation, releases the
//! GIL while the library works, and turns [`clearvox::Error`] into the package's
//! exceptions. The checks a Python caller needs first (dtype, shape, finite samples,
//! size) are in `clearvox/__init__.py`, which is the public API; the functions here
//! still refuse what they cannot take, with an exception and never a crash.

use std::path::PathBuf;
use std::sync::Mutex;

use clearvox::dsp::convert::PcmSample;
use clearvox::dsp::vad::{VadEvent, VadEventKind};
use clearvox::io::OutputFormat;
use clearvox::{Aligner, Config, Preset};
use numpy::{PyArray1, PyReadonlyArray1};
use pyo3::exceptions::{PyRuntimeError, PyValueError};
use pyo3::prelude::*;
use pyo3::types::{PyDict, PyType};

/// The Python exception class for a library error, by the variant's kind: the classes
/// live in `clearvox/_errors.py` so that they can inherit from two built-in
/// exceptions (a `ConfigError` is also a `ValueError`).
fn to_py_err(e: clearvox::Error) -> PyErr {
    use clearvox::Error as E;
    let class = match &e {
        E::Config(_) | E::NotBuilt { .. } => "ConfigError",
        E::Limit(_) | E::PartialFrame { .. } => "AudioFormatError",
        E::Wav(_) => "WavError",
        E::Metric(_) => "MetricError",
        _ => "ClearvoxError",
    };
    exception(class, e.to_string())
}

/// An exception of the class named `class` in `clearvox/_errors.py`.
fn exception(class: &str, message: String) -> PyErr {
    Python::attach(|py| {
        let cls = match py.import("clearvox._errors").and_then(|m| m.getattr(class)) {
            Ok(cls) => cls,
            Err(import_error) => return import_error,
        };
        match cls.cast_into::<PyType>() {
            Ok(cls) => PyErr::from_type(cls, message),
            Err(_) => PyRuntimeError::new_err(message),
        }
    })
}

/// `Result` of the library, as a Python result.
trait IntoPy<T> {
    fn py_err(self) -> PyResult<T>;
}

impl<T> IntoPy<T> for clearvox::Result<T> {
    fn py_err(self) -> PyResult<T> {
        self.map_err(to_py_err)
    }
}

/// A configuration from JSON overrides (an optional `"preset"` key and any fields),
/// merged over the preset and validated by the library.
fn config_from_json(json: &str) -> PyResult<Config> {
    Config::from_json_str(json).py_err()
}

/// The samples of a contiguous 1-D array, copied so that the GIL can be released while
/// the library reads them (another thread may write the array meanwhile).
fn samples<T: numpy::Element + Copy>(array: &PyReadonlyArray1<'_, T>) -> Vec<T> {
    match array.as_slice() {
        Ok(s) => s.to_vec(),
        Err(_) => array.as_array().iter().copied().collect(),
    }
}

/// VAD events as the Python side's `(kind, position)` tuples.
type Events = Vec<(&'static str, u64)>;

/// A VAD event as the Python side's `(kind, position)` tuple.
fn event_tuple(e: &VadEvent) -> (&'static str, u64) {
    let kind = match e.kind {
        VadEventKind::SpeechStart => "speech_start",
        VadEventKind::SpeechEnd => "speech_end",
    };
    (kind, e.position)
}

/// Input a function accepts: float32 in ±1.0 or int16, interleaved.
#[derive(FromPyObject)]
enum Samples<'py> {
    F32(PyReadonlyArray1<'py, f32>),
    I16(PyReadonlyArray1<'py, i16>),
}

/// The input, owned, of either sample type.
enum OwnedSamples {
    F32(Vec<f32>),
    I16(Vec<i16>),
}

impl Samples<'_> {
    fn to_owned_samples(&self) -> OwnedSamples {
        match self {
            Samples::F32(a) => OwnedSamples::F32(samples(a)),
            Samples::I16(a) => OwnedSamples::I16(samples(a)),
        }
    }
}

impl OwnedSamples {
    /// The samples as float32 in ±1.0, converted as the library converts its input.
    fn into_f32(self) -> Vec<f32> {
        match self {
            OwnedSamples::F32(x) => x,
            OwnedSamples::I16(x) => x.into_iter().map(PcmSample::to_f32).collect(),
        }
    }
}

/// Whole-signal enhancement through an [`Aligner`], as [`clearvox::pipeline::enhance`]
/// does, for either sample type.
fn enhance_any<S: PcmSample>(
    config: &Config,
    input: &[S],
    rate: u32,
    channels: usize,
) -> clearvox::Result<(Vec<f32>, Vec<VadEvent>)> {
    let mut aligner = Aligner::new(clearvox::Pipeline::new(config, rate, channels)?);
    let mut out = Vec::new();
    aligner.process(input, &mut out)?;
    aligner.finish(&mut out)?;
    Ok((out, aligner.events().to_vec()))
}

/// enhance(samples, rate, channels, config_json) -> (float32 array, events)
///
/// Enhances a whole interleaved signal (float32 or int16, 1-D, C-contiguous) and returns
/// the aligned mono output and the VAD events (positions in output samples). float32
/// input goes through `clearvox::pipeline::enhance` itself.
#[pyfunction]
fn enhance<'py>(
    py: Python<'py>,
    samples: Samples<'py>,
    rate: u32,
    channels: usize,
    config_json: &str,
) -> PyResult<(Bound<'py, PyArray1<f32>>, Events)> {
    let config = config_from_json(config_json)?;
    let input = samples.to_owned_samples();
    let (out, events) = py
        .detach(|| match &input {
            OwnedSamples::F32(x) => clearvox::pipeline::enhance(&config, x, rate, channels),
            OwnedSamples::I16(x) => enhance_any(&config, x, rate, channels),
        })
        .py_err()?;
    Ok((
        PyArray1::from_vec(py, out),
        events.iter().map(event_tuple).collect(),
    ))
}

/// preset_json(name) -> str
///
/// The full configuration of a preset, as JSON.
#[pyfunction]
fn preset_json(name: &str) -> PyResult<String> {
    let preset: Preset = name.parse().py_err()?;
    serde_json::to_string(&preset.config()).map_err(|e| PyRuntimeError::new_err(e.to_string()))
}

/// config_json(json) -> str
///
/// The effective configuration of JSON overrides (merged over their preset and
/// validated), as JSON with every field.
#[pyfunction]
fn config_json(json: &str) -> PyResult<String> {
    let config = config_from_json(json)?;
    serde_json::to_string(&config).map_err(|e| PyRuntimeError::new_err(e.to_string()))
}

/// toml_to_json(text) -> str
///
/// A TOML configuration text as a JSON object (not merged, not validated), so that the
/// Python side can merge keyword overrides into it. A TOML syntax error is the
/// library's `ConfigError`.
#[pyfunction]
fn toml_to_json(text: &str) -> PyResult<String> {
    match toml::from_str::<toml::Table>(text) {
        Ok(table) => {
            serde_json::to_string(&table).map_err(|e| PyRuntimeError::new_err(e.to_string()))
        }
        // The library's parser words the same error as it does for files.
        Err(e) => match Config::from_toml_str(text) {
            Err(lib) => Err(to_py_err(lib)),
            Ok(_) => Err(PyValueError::new_err(e.to_string())),
        },
    }
}

/// metrics(reference, test, rate, max_lag) -> dict
///
/// `clearvox::metrics::compare`: the delay is estimated within ±max_lag samples and
/// removed, then SNR, SI-SDR, segmental SNR and STOI are computed.
#[pyfunction]
fn metrics<'py>(
    py: Python<'py>,
    reference: Samples<'py>,
    test: Samples<'py>,
    rate: u32,
    max_lag: usize,
) -> PyResult<Bound<'py, PyDict>> {
    let reference = reference.to_owned_samples().into_f32();
    let test = test.to_owned_samples().into_f32();
    let scores = py
        .detach(|| clearvox::metrics::compare(&reference, &test, rate, max_lag))
        .map_err(|e| to_py_err(e.into()))?;
    let d = PyDict::new(py);
    d.set_item("delay_samples", scores.delay_samples)?;
    d.set_item("snr_db", scores.snr_db)?;
    d.set_item("si_sdr_db", scores.si_sdr_db)?;
    d.set_item("seg_snr_db", scores.seg_snr_db)?;
    d.set_item("stoi", scores.stoi)?;
    Ok(d)
}

/// enhance_file(input, output, config_json, format) -> dict
///
/// Reads a WAV file with the library's reader, enhances it (latency removed) and writes
/// a mono WAV with the library's atomic writer: on any failure the output path is left
/// as it was. `format` is "s16", "s24", "f32" or None (follows the input).
#[pyfunction]
#[pyo3(signature = (input, output, config_json, format=None))]
fn enhance_file<'py>(
    py: Python<'py>,
    input: PathBuf,
    output: PathBuf,
    config_json: &str,
    format: Option<&str>,
) -> PyResult<Bound<'py, PyDict>> {
    let config = config_from_json(config_json)?;
    let format = match format {
        None => None,
        Some(name) => Some(
            OutputFormat::ALL
                .into_iter()
                .find(|f| f.name() == name)
                .ok_or_else(|| {
                    PyValueError::new_err(format!(
                        "unknown output format {name:?}: supported are s16, s24 and f32"
                    ))
                })?,
        ),
    };
    // A reading error names the file (the library's reader words what is wrong in it;
    // a writing error names its path itself).
    let audio = py
        .detach(|| clearvox::io::read_wav_file(&input))
        .map_err(|e| {
            let message = e.to_string();
            let path = input.display().to_string();
            if message.contains(&path) {
                exception("WavError", message)
            } else {
                exception("WavError", format!("{path}: {message}"))
            }
        })?;
    let summary = py
        .detach(|| -> clearvox::Result<_> {
            let rate = audio.spec.sample_rate;
            let channels = audio.spec.channels as usize;
            let pipeline = clearvox::Pipeline::new(&config, rate, channels)?;
            let latency = pipeline.latency();
            let output_rate = pipeline.output_rate();
            let (out, events) =
                clearvox::pipeline::enhance(&config, &audio.samples, rate, channels)?;
            let format = format.unwrap_or(OutputFormat::for_input(audio.spec.format));
            clearvox::io::write_wav_file(&output, output_rate, 1, format, &out)?;
            Ok((audio, output_rate, latency, out.len(), events, format))
        })
        .py_err()?;
    let (audio, output_rate, latency, out_len, events, format) = summary;
    let d = PyDict::new(py);
    d.set_item("input_rate", audio.spec.sample_rate)?;
    d.set_item("output_rate", output_rate)?;
    d.set_item("channels", audio.spec.channels)?;
    d.set_item("frames", audio.frames())?;
    d.set_item("duration_s", audio.duration_s())?;
    d.set_item("output_samples", out_len)?;
    d.set_item("output_format", format.name())?;
    d.set_item("latency_samples", latency)?;
    d.set_item(
        "latency_ms",
        latency as f64 * 1000.0 / f64::from(output_rate),
    )?;
    d.set_item("events", events.iter().map(event_tuple).collect::<Vec<_>>())?;
    d.set_item("warnings", audio.warnings)?;
    Ok(d)
}

/// A streaming pipeline (`clearvox::Pipeline`) behind a lock, so that one shared
/// between threads serialises its calls instead of racing; the lock is taken with the
/// GIL released.
#[pyclass(module = "clearvox._native")]
struct Pipeline {
    inner: Mutex<clearvox::Pipeline>,
}

impl Pipeline {
    /// Runs `f` on the pipeline with the GIL released; the lock is taken and dropped
    /// inside, so a thread waiting for it never holds the GIL that the holder may need,
    /// and errors become Python exceptions only once the lock is released.
    fn run<T: Send>(
        &self,
        py: Python<'_>,
        f: impl FnOnce(&mut clearvox::Pipeline) -> clearvox::Result<T> + Send,
    ) -> PyResult<T> {
        let result = py.detach(|| match self.inner.lock() {
            Ok(mut guard) => Some(f(&mut guard)),
            Err(_) => None,
        });
        match result {
            Some(r) => r.py_err(),
            None => Err(PyRuntimeError::new_err(
                "this pipeline failed inside an earlier call and cannot be used: create a new one",
            )),
        }
    }

    /// Reads a value of the pipeline (see [`Pipeline::run`]).
    fn get<T: Send>(
        &self,
        py: Python<'_>,
        f: impl FnOnce(&clearvox::Pipeline) -> T + Send,
    ) -> PyResult<T> {
        self.run(py, |p| Ok(f(p)))
    }
}

#[pymethods]
impl Pipeline {
    /// Pipeline(rate, channels, config_json)
    ///
    /// A pipeline for interleaved `channels`-channel input at `rate` Hz.
    #[new]
    fn new(py: Python<'_>, rate: u32, channels: usize, config_json: &str) -> PyResult<Self> {
        let config = config_from_json(config_json)?;
        let pipeline = py
            .detach(|| {
                let mut p = clearvox::Pipeline::new(&config, rate, channels)?;
                p.warm_up();
                Ok(p)
            })
            .py_err()?;
        Ok(Self {
            inner: Mutex::new(pipeline),
        })
    }

    /// process(samples) -> float32 array
    ///
    /// Processes interleaved input (whole frames, any number); the output is mono and
    /// `latency` samples late.
    fn process<'py>(
        &self,
        py: Python<'py>,
        samples: Samples<'py>,
    ) -> PyResult<Bound<'py, PyArray1<f32>>> {
        let input = samples.to_owned_samples();
        let out = self.run(py, |p| {
            let mut out = Vec::new();
            match &input {
                OwnedSamples::F32(x) => p.process(x, &mut out)?,
                OwnedSamples::I16(x) => p.process(x, &mut out)?,
            }
            Ok(out)
        })?;
        Ok(PyArray1::from_vec(py, out))
    }

    /// flush() -> float32 array
    ///
    /// Drains the tail; the pipeline then takes no input until reset().
    fn flush<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyArray1<f32>>> {
        let out = self.run(py, |p| {
            let mut out = Vec::new();
            p.flush(&mut out)?;
            Ok(out)
        })?;
        Ok(PyArray1::from_vec(py, out))
    }

    /// reset()
    ///
    /// Back to the freshly-built state.
    fn reset(&self, py: Python<'_>) -> PyResult<()> {
        self.run(py, |p| {
            p.reset();
            Ok(())
        })
    }

    /// pop_events() -> list of (kind, position)
    ///
    /// The pending VAD events, oldest first; positions in output samples.
    fn pop_events(&self, py: Python<'_>) -> PyResult<Events> {
        self.run(py, |p| {
            Ok(std::iter::from_fn(|| p.pop_event())
                .map(|e| event_tuple(&e))
                .collect())
        })
    }

    /// set_strength(strength)
    fn set_strength(&self, py: Python<'_>, strength: f32) -> PyResult<()> {
        self.run(py, |p| p.set_strength(strength))
    }

    /// set_bypass(bypass)
    fn set_bypass(&self, py: Python<'_>, bypass: bool) -> PyResult<()> {
        self.run(py, |p| {
            p.set_bypass(bypass);
            Ok(())
        })
    }

    /// push_render(samples, rate, channels)
    ///
    /// Pushes render (what the loudspeaker played) for the echo canceller, declaring
    /// its format first when it differs from the current one.
    fn push_render<'py>(
        &self,
        py: Python<'py>,
        samples: Samples<'py>,
        rate: u32,
        channels: usize,
    ) -> PyResult<()> {
        let input = samples.to_owned_samples();
        self.run(py, |p| {
            if (p.render_rate(), p.render_channels()) != (rate, channels) {
                p.set_render_format(rate, channels)?;
            }
            match &input {
                OwnedSamples::F32(x) => p.push_render(x),
                OwnedSamples::I16(x) => p.push_render(x),
            }
        })
    }

    /// The echo canceller's state as a dict (delay in samples at 48 kHz or None,
    /// erle_db, active), or None without an echo canceller.
    #[getter]
    fn echo_stats<'py>(&self, py: Python<'py>) -> PyResult<Option<Bound<'py, PyDict>>> {
        let Some(stats) = self.get(py, |p| p.echo_stats())? else {
            return Ok(None);
        };
        let d = PyDict::new(py);
        d.set_item("delay", stats.delay)?;
        d.set_item("erle_db", stats.erle_db)?;
        d.set_item("active", stats.active)?;
        Ok(Some(d))
    }

    /// Total latency in output samples.
    #[getter]
    fn latency(&self, py: Python<'_>) -> PyResult<usize> {
        self.get(py, |p| p.latency())
    }

    /// Input rate, Hz.
    #[getter]
    fn input_rate(&self, py: Python<'_>) -> PyResult<u32> {
        self.get(py, |p| p.input_rate())
    }

    /// Output rate, Hz.
    #[getter]
    fn output_rate(&self, py: Python<'_>) -> PyResult<u32> {
        self.get(py, |p| p.output_rate())
    }

    /// Channels per input frame.
    #[getter]
    fn channels(&self, py: Python<'_>) -> PyResult<usize> {
        self.get(py, |p| p.channels())
    }

    /// Render rate, Hz.
    #[getter]
    fn render_rate(&self, py: Python<'_>) -> PyResult<u32> {
        self.get(py, |p| p.render_rate())
    }

    /// Channels per render frame.
    #[getter]
    fn render_channels(&self, py: Python<'_>) -> PyResult<usize> {
        self.get(py, |p| p.render_channels())
    }

    /// The latency of each stage at 48 kHz: list of (name, samples).
    #[getter]
    fn stage_latencies(&self, py: Python<'_>) -> PyResult<Vec<(&'static str, usize)>> {
        self.get(py, |p| p.stage_latencies())
    }

    /// Whether the VAD is in speech.
    #[getter]
    fn in_speech(&self, py: Python<'_>) -> PyResult<bool> {
        self.get(py, |p| p.in_speech())
    }

    /// VAD events dropped because they were not collected in time.
    #[getter]
    fn events_dropped(&self, py: Python<'_>) -> PyResult<u64> {
        self.get(py, |p| p.events_dropped())
    }

    /// Input frames taken since the last reset.
    #[getter]
    fn input_frames(&self, py: Python<'_>) -> PyResult<u64> {
        self.get(py, |p| p.input_frames())
    }

    /// The effective configuration, as JSON.
    fn config_json(&self, py: Python<'_>) -> PyResult<String> {
        self.get(py, |p| serde_json::to_string(p.config()))?
            .map_err(|e| PyRuntimeError::new_err(e.to_string()))
    }
}

/// The native module: the library's functions over numpy arrays.
#[pymodule]
fn _native(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add("__version__", env!("CARGO_PKG_VERSION"))?;
    m.add("PRESETS", Preset::ALL.map(Preset::name).to_vec())?;
    m.add("MAX_CHANNELS", clearvox::limits::MAX_CHANNELS)?;
    m.add("MIN_SAMPLE_RATE", clearvox::limits::MIN_SAMPLE_RATE)?;
    m.add("MAX_SAMPLE_RATE", clearvox::limits::MAX_SAMPLE_RATE)?;
    m.add_function(wrap_pyfunction!(enhance, m)?)?;
    m.add_function(wrap_pyfunction!(enhance_file, m)?)?;
    m.add_function(wrap_pyfunction!(metrics, m)?)?;
    m.add_function(wrap_pyfunction!(preset_json, m)?)?;
    m.add_function(wrap_pyfunction!(config_json, m)?)?;
    m.add_function(wrap_pyfunction!(toml_to_json, m)?)?;
    m.add_class::<Pipeline>()?;
    Ok(())
}
