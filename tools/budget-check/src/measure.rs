//! What the checker measures itself, deterministically: each preset's latency by
//! cross-correlation, and the heap a `Pipeline` holds after construction.

use std::alloc::{GlobalAlloc, Layout, System};
use std::path::Path;
use std::sync::atomic::{AtomicI64, Ordering};

use anyhow::{bail, Context, Result};
use clearvox::io::read_wav_file;
use clearvox::metrics::estimate_delay;
use clearvox::{Pipeline, Preset};

/// The input rates the latency and memory are measured at.
pub const RATES: [u32; 4] = [8_000, 16_000, 44_100, 48_000];

/// Counts the bytes live on the heap (allocated and not yet freed), process-wide.
pub struct CountingAllocator;

static LIVE_BYTES: AtomicI64 = AtomicI64::new(0);

// SAFETY: every call is forwarded unchanged to the system allocator; the counter only
// observes sizes.
unsafe impl GlobalAlloc for CountingAllocator {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        // SAFETY: forwarded unchanged.
        let p = unsafe { System.alloc(layout) };
        if !p.is_null() {
            LIVE_BYTES.fetch_add(layout.size() as i64, Ordering::Relaxed);
        }
        p
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        // SAFETY: forwarded unchanged.
        let p = unsafe { System.alloc_zeroed(layout) };
        if !p.is_null() {
            LIVE_BYTES.fetch_add(layout.size() as i64, Ordering::Relaxed);
        }
        p
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        LIVE_BYTES.fetch_sub(layout.size() as i64, Ordering::Relaxed);
        // SAFETY: `ptr` came from this allocator with this layout.
        unsafe { System.dealloc(ptr, layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        // SAFETY: as for `dealloc`; the system allocator handles the move.
        let p = unsafe { System.realloc(ptr, layout, new_size) };
        if !p.is_null() {
            LIVE_BYTES.fetch_add(new_size as i64 - layout.size() as i64, Ordering::Relaxed);
        }
        p
    }
}

fn live_bytes() -> i64 {
    LIVE_BYTES.load(Ordering::Relaxed)
}

/// Heap bytes a freshly built pipeline of `preset` holds, for mono input at `rate`
/// (output at the same rate: at 48 kHz no resampler, elsewhere one each way).
pub fn pipeline_heap_bytes(preset: Preset, rate: u32) -> Result<u64> {
    let config = preset.config();
    // Once first, so that anything allocated once per process (lazily initialised
    // tables) is not counted as the pipeline's.
    drop(Pipeline::new(&config, rate, 1)?);
    let before = live_bytes();
    let p = Pipeline::new(&config, rate, 1)?;
    let held = live_bytes() - before;
    drop(p);
    Ok(held.max(0) as u64)
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
