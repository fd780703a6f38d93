//! What the checker measures itself, deterministically: each preset's latency by
//! cross-correlation, and the heap a `Pipeline` holds after construction.

use std::path::Path;

use anyhow::{bail, Context, Result};
use clearvox::io::read_wav_file;
use clearvox::metrics::estimate_delay;
use clearvox::{Pipeline, Preset};

/// The input rates the latency and memory are measured at.
pub const RATES: [u32; 4] = [8_000, 16_000, 44_100, 48_000];

/// Heap bytes a freshly built pipeline of `preset` holds, for mono input at `rate`
/// (output at the same rate: at 48 kHz no resampler, elsewhere one each way).
pub fn pipeline_heap_bytes(preset: Preset, rate: u32) -> Result<u64> {
    let config = preset.config();
    // Once first, so that anything allocated once per process (lazily initialised
    // tables) is not counted as the pipeline's.
    drop(Pipeline::new(&config, rate, 1)?);
    let (p, heap) = counting_alloc::heap_use(|| Pipeline::new(&config, rate, 1));
    drop(p?);
    Ok(heap.held.max(0) as u64)
}

/// The clean speech of the test data at each input rate.
fn speech_file(rate: u32) -> &'static str {
    match rate {
        8_000 => "clean/rp_female__cafe__snr10__8k_s16.wav",
        16_000 => "clean/us_deep__cafe__snr0__16k_s16.wav",
        44_100 => "clean/gb_female__traffic__snr10__44k1_s24.wav",
        _ => "clean/us_male__cafe__snr5__48k_f32.wav",
    }
}

/// A latency measurement.
pub struct Latency {
    /// Output samples by which the output lags the input.
    pub lag: i64,
    pub rate: u32,
    /// Normalised cross-correlation at that lag.
    pub correlation: f64,
}

impl Latency {
    pub fn ms(&self) -> f64 {
        self.lag as f64 * 1000.0 / self.rate as f64
    }
}

/// The latency of `preset` at input rate `rate` (output at the same rate), measured:
/// clean speech (broadband voice, 4 s) runs through the pipeline and the output is
/// cross-correlated with the input.
pub fn preset_latency(testdata: &Path, preset: Preset, rate: u32) -> Result<Latency> {
    let path = testdata.join(speech_file(rate));
    let audio = read_wav_file(&path).with_context(|| format!("reading {}", path.display()))?;
    if audio.spec.sample_rate != rate {
        bail!("{} is not at {rate} Hz", path.display());
    }
    let ch = audio.spec.channels as usize;
    let x: Vec<f32> = audio
        .samples
        .chunks_exact(ch)
        .map(|f| f.iter().sum::<f32>() / ch as f32)
        .collect();
    let mut p = Pipeline::new(&preset.config(), rate, 1)?;
    let mut y = Vec::new();
    p.process(&x, &mut y)?;
    p.flush(&mut y)?;
    let d = estimate_delay(&x, &y, rate as usize / 4);
    if d.correlation.is_nan() || d.correlation <= 0.5 {
        bail!(
            "{preset} at {rate} Hz: the output does not resemble the input (correlation {:.2})",
            d.correlation
        );
    }
    Ok(Latency {
        lag: d.lag,
        rate,
        correlation: d.correlation,
    })
}
