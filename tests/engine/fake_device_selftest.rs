//! The fake audio host of `tests/support/fake_device.rs`, driven through cpal's traits the
//! way the live engine drives a real host: exact delivery in every format and
//! callback-size pattern, `BufferSize::Fixed` handling, injected faults and build
//! failures, the stream lifecycle, the heap instrumentation, output recording and pacing.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use crate::support::fake_device::*;
use cpal::traits::{DeviceTrait, HostTrait, StreamTrait};
use cpal::{
    BufferSize, Data, ErrorKind, HostId, Sample, SampleFormat, StreamConfig, StreamInstant,
    SupportedBufferSize, SupportedStreamConfig,
};

/// Generous: only reached when something is broken.
const WAIT: Duration = Duration::from_secs(20);

const FORMATS: [SampleFormat; 4] = [
    SampleFormat::I16,
    SampleFormat::I32,
    SampleFormat::U16,
    SampleFormat::F32,
];

const PATTERNS: [&[usize]; 4] = [&[1], &[333], &[4096], &[480, 1, 7, 4096]];

fn config(channels: u16, rate: u32) -> StreamConfig {
    StreamConfig {
        channels,
        sample_rate: rate,
        buffer_size: BufferSize::Default,
    }
}

fn mic(script: InputScript) -> FakeInput {
    FakeInput::new("mic", script)
        .default_device()
        .supports(&FORMATS, &[1, 2], &[16_000, 48_000])
        .default_config(SampleFormat::F32, 2, 48_000)
}

fn speaker(script: OutputScript) -> FakeOutput {
    FakeOutput::new("speaker", script)
        .default_device()
        .supports(&FORMATS, &[1, 2], &[48_000])
}

fn host_with_mic(script: InputScript) -> (cpal::Host, Arc<FakeProbe>) {
    FakeHost::build(FakeSetup::new().input(mic(script)))
}

/// Sample types with a deterministic noise generator that also hits the extremes.
trait Noise: FakeSample {
    fn from_bits(r: u32) -> Self;
    fn extremes() -> Vec<Self>;
}

impl Noise for i16 {
    fn from_bits(r: u32) -> Self {
        (r >> 16) as i16
    }
    fn extremes() -> Vec<Self> {
        vec![i16::MIN, i16::MAX, 0, -1, 1, i16::MIN + 1]
    }
}

impl Noise for i32 {
    fn from_bits(r: u32) -> Self {
        r as i32
    }
    fn extremes() -> Vec<Self> {
        vec![i32::MIN, i32::MAX, 0, -1, 1, i32::MIN + 1]
    }
}

impl Noise for u16 {
    fn from_bits(r: u32) -> Self {
        (r >> 16) as u16
    }
    fn extremes() -> Vec<Self> {
        vec![0, u16::MAX, 32_768, 32_767, 1, 32_769]
    }
}

impl Noise for f32 {
    fn from_bits(r: u32) -> Self {
        (r >> 8) as f32 / 16_777_216.0 * 2.0 - 1.0
    }
    fn extremes() -> Vec<Self> {
        vec![-1.0, 1.0, 0.0, -0.0, 1e-30, -0.999_999_9]
    }
}

fn noise<T: Noise>(len: usize, seed: u32) -> Vec<T> {
    let mut v = T::extremes();
    v.truncate(len);
    let mut x = seed;
    while v.len() < len {
        x = x.wrapping_mul(1_664_525).wrapping_add(1_013_904_223);
        v.push(T::from_bits(x));
    }
    v
}

/// Callback sizes a `Stop` script of `total` frames yields with `pattern`.
fn expected_sizes(pattern: &[usize], total: usize) -> Vec<usize> {
    let mut sizes = Vec::new();
    let mut left = total;
    for &n in pattern.iter().cycle() {
        if left == 0 {
            break;
        }
        let n = n.min(left);
        sizes.push(n);
        left -= n;
    }
    sizes
}

fn bits(v: &[f32]) -> Vec<u32> {
    v.iter().map(|x| x.to_bits()).collect()
}

struct Captured<T> {
    samples: Vec<T>,
    sizes: Vec<usize>,
    errors: Vec<ErrorKind>,
}

/// Opens the default input device as `T`, plays until the script is delivered, drops the
/// stream, and returns what the callbacks saw.
fn capture<T: FakeSample>(host: &cpal::Host, probe: &FakeProbe, cfg: StreamConfig) -> Captured<T> {
    let device = host.default_input_device().expect("default input device");
    let ch = usize::from(cfg.channels);
    let got = Arc::new(Mutex::new(Captured::<T> {
        samples: Vec::new(),
        sizes: Vec::new(),
        errors: Vec::new(),
    }));
    let (g, e) = (got.clone(), got.clone());
    let stream = device
        .build_input_stream::<T, _, _>(
            cfg,
            move |data: &[T], _| {
                let mut g = g.lock().unwrap();
                g.samples.extend_from_slice(data);
                g.sizes.push(data.len() / ch);
            },
            move |err| e.lock().unwrap().errors.push(err.kind()),
            None,
        )
        .expect("build input stream");
    stream.play().unwrap();
    assert!(probe.wait_until_done(WAIT), "script not delivered in time");
    drop(stream);
    // The stream dropped its callbacks, so this is the last reference.
    Arc::try_unwrap(got)
        .unwrap_or_else(|_| panic!("callbacks still alive after the stream was dropped"))
        .into_inner()
        .unwrap()
}

#[test]
fn counting_allocator_is_installed_and_counts_this_thread() {
    assert!(counting_alloc::is_installed());
    let before = counting_alloc::thread_counts();
    let b = std::hint::black_box(Box::new([0u8; 100]));
    drop(b);
    let after = counting_alloc::thread_counts();
    assert_eq!(after.allocs - before.allocs, 1);
    assert_eq!(after.frees - before.frees, 1);
    assert!(after.bytes - before.bytes >= 100);
}

#[test]
fn host_enumerates_devices_and_configs() {
    let script = || InputScript::new(1, vec![0i16; 10]);
    let (host, _probe) = FakeHost::build(
        FakeSetup::new()
            .input(mic(InputScript::new(2, vec![0.0f32; 10])))
            .input(FakeInput::new("usb", script()).supports_range(
                SampleFormat::I16,
                1,
                8_000,
                96_000,
            ))
            .output(speaker(OutputScript::new())),
    );
    assert_eq!(host.id(), HostId::Custom);
    let names: Vec<String> = host.devices().unwrap().map(|d| d.to_string()).collect();
    assert_eq!(names, ["mic", "usb", "speaker"]);
    let inputs: Vec<String> = host
        .input_devices()
        .unwrap()
        .map(|d| d.to_string())
        .collect();
    assert_eq!(inputs, ["mic", "usb"]);
    let outputs: Vec<String> = host
        .output_devices()
        .unwrap()
        .map(|d| d.to_string())
        .collect();
    assert_eq!(outputs, ["speaker"]);

    let mic = host.default_input_device().unwrap();
    assert_eq!(mic.to_string(), "mic");
    assert_eq!(mic.description().unwrap().name(), "mic");
    assert_ne!(
        mic.id().unwrap(),
        host.default_output_device().unwrap().id().unwrap()
    );
    assert_eq!(
        mic.default_input_config().unwrap(),
        SupportedStreamConfig::new(
            2,
            48_000,
            SupportedBufferSize::Range {
                min: 1,
                max: 16_384
            },
            SampleFormat::F32
        )
    );
    let ranges: Vec<_> = mic.supported_input_configs().unwrap().collect();
    assert_eq!(ranges.len(), 4 * 2 * 2);
    assert!(ranges.iter().any(|r| r.sample_format() == SampleFormat::U16
        && r.channels() == 1
        && r.min_sample_rate() == 16_000
        && r.max_sample_rate() == 16_000));
    assert_eq!(
        mic.supported_output_configs().err().unwrap().kind(),
        ErrorKind::UnsupportedOperation
    );
    assert!(mic.supports_input() && !mic.supports_output());

    // Without a configured default: the first range at its highest rate.
    let usb = host.input_devices().unwrap().nth(1).unwrap();
    let d = usb.default_input_config().unwrap();
    assert_eq!(
        (d.sample_format(), d.channels(), d.sample_rate()),
        (SampleFormat::I16, 1, 96_000)
    );
    assert_ne!(usb, mic);
    assert_eq!(usb.clone(), usb);

    let spk = host.default_output_device().unwrap();
    let d = spk.default_output_config().unwrap();
    assert_eq!(
        (d.sample_format(), d.channels(), d.sample_rate()),
        (SampleFormat::I16, 1, 48_000)
    );
    assert_eq!(
        spk.default_input_config().unwrap_err().kind(),
        ErrorKind::UnsupportedOperation
    );
}

#[test]
fn no_default_devices() {
    let (host, _probe) = FakeHost::build(FakeSetup::new().input(
        FakeInput::new("mic", InputScript::new(1, vec![0i16; 4])).supports(
            &[SampleFormat::I16],
            &[1],
            &[16_000],
        ),
    ));
    assert!(host.default_input_device().is_none());
    assert!(host.default_output_device().is_none());
    assert_eq!(host.input_devices().unwrap().count(), 1);

    let (empty, _probe) = FakeHost::build(FakeSetup::new());
    assert!(empty.default_input_device().is_none());
    assert_eq!(empty.devices().unwrap().count(), 0);
}

fn exact_delivery<T: Noise>() {
    let frames = 10_007;
    let script: Vec<T> = noise(frames * 2, 7);
    for pattern in PATTERNS {
        let (host, probe) =
            host_with_mic(InputScript::new(2, script.clone()).callback_frames(pattern));
        let got = capture::<T>(&host, &probe, config(2, 48_000));
        let what = format!("{:?}, pattern {pattern:?}", T::FORMAT);
        assert!(got.samples == script, "{what}: delivered samples differ");
        let sizes = expected_sizes(pattern, frames);
        assert_eq!(got.sizes, sizes, "{what}");
        assert!(got.errors.is_empty(), "{what}");
        let stats = probe.input_stats();
        assert_eq!(stats.callback_frames, sizes, "{what}");
        assert_eq!(stats.frames, frames as u64, "{what}");
        assert_eq!(stats.data_callbacks, sizes.len() as u64, "{what}");
        assert_eq!(stats.sample_format, T::FORMAT);
        assert!(stats.finished && stats.dropped && !stats.playing, "{what}");
        assert!(stats.errors.is_empty() && stats.lost.is_none() && !stats.panicked);
    }
}

#[test]
fn delivers_exact_script_as_i16_in_every_pattern() {
    exact_delivery::<i16>();
}

#[test]
fn delivers_exact_script_as_i32_in_every_pattern() {
    exact_delivery::<i32>();
}

#[test]
fn delivers_exact_script_as_u16_in_every_pattern() {
    exact_delivery::<u16>();
}

#[test]
fn delivers_exact_script_as_f32_in_every_pattern() {
    let frames = 10_007;
    let script: Vec<f32> = noise(frames * 2, 11);
    for pattern in PATTERNS {
        let (host, probe) =
            host_with_mic(InputScript::new(2, script.clone()).callback_frames(pattern));
        let got = capture::<f32>(&host, &probe, config(2, 48_000));
        // Bit for bit, -0.0 included.
        assert_eq!(bits(&got.samples), bits(&script), "pattern {pattern:?}");
        assert_eq!(got.sizes, expected_sizes(pattern, frames));
        assert_eq!(probe.input_stats().frames, frames as u64);
    }
}

/// Opens the default input through the raw API in `format` and converts each callback to f32
/// with cpal's sample conversions, as the engine's capture callback does.
fn capture_raw_as_f32(host: &cpal::Host, probe: &FakeProbe, format: SampleFormat) -> Vec<f32> {
    fn conv<T: FakeSample>(data: &Data, out: &mut Vec<f32>)
    where
        f32: cpal::FromSample<T>,
    {
        out.extend(
            data.as_slice::<T>()
                .unwrap()
                .iter()
                .map(|&x| f32::from_sample(x)),
        );
    }
    let device = host.default_input_device().unwrap();
    let got = Arc::new(Mutex::new(Vec::new()));
    let wrong = Arc::new(AtomicBool::new(false));
    let (g, w) = (got.clone(), wrong.clone());
    let stream = device
        .build_input_stream_raw(
            config(1, 16_000),
            format,
            move |data: &Data, _| {
                if data.sample_format() != format {
                    w.store(true, Ordering::SeqCst);
                    return;
                }
                let mut g = g.lock().unwrap();
                match format {
                    SampleFormat::I16 => conv::<i16>(data, &mut g),
                    SampleFormat::I32 => conv::<i32>(data, &mut g),
                    SampleFormat::U16 => conv::<u16>(data, &mut g),
                    _ => conv::<f32>(data, &mut g),
                }
            },
            |_| {},
            None,
        )
        .unwrap();
    stream.play().unwrap();
    assert!(probe.wait_until_done(WAIT));
    drop(stream);
    assert!(
        !wrong.load(Ordering::SeqCst),
        "callback got another format than opened"
    );
    let v = got.lock().unwrap().clone();
    v
}

#[test]
fn other_formats_are_converted_so_the_engine_round_trips_exactly() {
    let on_i16_grid: Vec<f32> = noise::<i16>(5_000, 3)
        .iter()
        .map(|&x| f32::from(x) / 32_768.0)
        .collect();
    // An f32 script on the i16 grid, opened as i16 or u16, converts back to itself exactly.
    for format in [
        SampleFormat::I16,
        SampleFormat::U16,
        SampleFormat::I32,
        SampleFormat::F32,
    ] {
        let (host, probe) = host_with_mic(InputScript::new(1, on_i16_grid.clone()));
        let got = capture_raw_as_f32(&host, &probe, format);
        assert_eq!(
            bits(&got),
            bits(&on_i16_grid),
            "f32 script opened as {format:?}"
        );
    }
    // Integer scripts opened as f32 arrive as cpal's own conversion of them.
    let i16s: Vec<i16> = noise(5_000, 5);
    let (host, probe) = host_with_mic(InputScript::new(1, i16s.clone()));
    let want: Vec<f32> = i16s.iter().map(|&x| f32::from_sample(x)).collect();
    assert_eq!(
        bits(&capture_raw_as_f32(&host, &probe, SampleFormat::F32)),
        bits(&want)
    );

    let u16s: Vec<u16> = noise(5_000, 6);
    let (host, probe) = host_with_mic(InputScript::new(1, u16s.clone()));
    let want: Vec<f32> = u16s.iter().map(|&x| f32::from_sample(x)).collect();
    assert_eq!(
        bits(&capture_raw_as_f32(&host, &probe, SampleFormat::F32)),
        bits(&want)
    );
    // u16 opened as i16: the same values shifted, exactly.
    let (host, probe) = host_with_mic(InputScript::new(1, u16s.clone()));
    assert_eq!(
        bits(&capture_raw_as_f32(&host, &probe, SampleFormat::I16)),
        bits(&want)
    );

    let i32s: Vec<i32> = noise(5_000, 8);
    let (host, probe) = host_with_mic(InputScript::new(1, i32s.clone()));
    let want: Vec<f32> = i32s.iter().map(|&x| f32::from_sample(x)).collect();
    assert_eq!(
        bits(&capture_raw_as_f32(&host, &probe, SampleFormat::F32)),
        bits(&want)
    );
}

#[test]
fn fixed_buffer_size_is_ignored_unless_honoured() {
    let frames = 3_000;
    let fixed = StreamConfig {
        buffer_size: BufferSize::Fixed(256),
        ..config(1, 48_000)
    };
    let script = InputScript::new(1, vec![0i16; frames]).callback_frames(&[100]);

    let (host, probe) = host_with_mic(script.clone());
    let got = capture::<i16>(&host, &probe, fixed);
    assert_eq!(got.sizes, expected_sizes(&[100], frames));

    let (host, probe) = host_with_mic(script.clone().honour_fixed_buffer_size());
    let got = capture::<i16>(&host, &probe, fixed);
    assert_eq!(got.sizes, expected_sizes(&[256], frames));
    assert_eq!(
        probe.input_stats().callback_frames,
        expected_sizes(&[256], frames)
    );

    // buffer_size() reports the first size of the pattern in force.
    let (host, _probe) = host_with_mic(script.clone());
    let device = host.default_input_device().unwrap();
    let s = device
        .build_input_stream::<i16, _, _>(fixed, |_, _| {}, |_| {}, None)
        .unwrap();
    assert_eq!(s.buffer_size().unwrap(), 100);
    let (host, _probe) = host_with_mic(script.clone().honour_fixed_buffer_size());
    let device = host.default_input_device().unwrap();
    let s = device
        .build_input_stream::<i16, _, _>(fixed, |_, _| {}, |_| {}, None)
        .unwrap();
    assert_eq!(s.buffer_size().unwrap(), 256);

    // An honoured request outside the device's range is refused; an ignored one is not.
    let narrow = |s: InputScript| {
        FakeHost::build(
            FakeSetup::new().input(mic(s).buffer_range(SupportedBufferSize::Range {
                min: 64,
                max: 1_024,
            })),
        )
        .0
    };
    let big = StreamConfig {
        buffer_size: BufferSize::Fixed(4_096),
        ..config(1, 48_000)
    };
    let host = narrow(script.clone().honour_fixed_buffer_size());
    let device = host.default_input_device().unwrap();
    let e = device
        .build_input_stream::<i16, _, _>(big, |_, _| {}, |_| {}, None)
        .err()
        .unwrap();
    assert_eq!(e.kind(), ErrorKind::UnsupportedConfig);
    let host = narrow(script);
    let device = host.default_input_device().unwrap();
    assert!(device
        .build_input_stream::<i16, _, _>(big, |_, _| {}, |_| {}, None)
        .is_ok());
}

/// An input stream that records what the engine would notice about faults.
struct Watched {
    stream: cpal::Stream,
    sizes: Arc<Mutex<Vec<usize>>>,
    errors: Arc<Mutex<Vec<ErrorKind>>>,
    data_after_error: Arc<AtomicU64>,
}

fn watch(device: &cpal::Device, cfg: StreamConfig) -> Result<Watched, cpal::Error> {
    let sizes = Arc::new(Mutex::new(Vec::new()));
    let errors = Arc::new(Mutex::new(Vec::new()));
    let data_after_error = Arc::new(AtomicU64::new(0));
    let error_seen = Arc::new(AtomicBool::new(false));
    let ch = usize::from(cfg.channels);
    let (s, seen, after) = (sizes.clone(), error_seen.clone(), data_after_error.clone());
    let (e, seen2) = (errors.clone(), error_seen);
    let stream = device.build_input_stream::<f32, _, _>(
        cfg,
        move |data: &[f32], _| {
            if seen.load(Ordering::SeqCst) {
                after.fetch_add(1, Ordering::SeqCst);
            }
            s.lock().unwrap().push(data.len() / ch);
        },
        move |err| {
            e.lock().unwrap().push(err.kind());
            seen2.store(true, Ordering::SeqCst);
        },
        None,
    )?;
    Ok(Watched {
        stream,
        sizes,
        errors,
        data_after_error,
    })
}

#[test]
fn device_loss_calls_the_error_callback_once_and_stops_data() {
    let first = InputScript::new(1, vec![0.25f32; 5_000])
        .callback_frames(&[333])
        .lose_device_after(1_000);
    let second = InputScript::new(1, vec![0.5f32; 700]).callback_frames(&[100]);
    let (host, probe) = FakeHost::build(FakeSetup::new().input(mic(first).then(second)));
    let device = host.default_input_device().unwrap();
    let w = watch(&device, config(1, 16_000)).unwrap();
    w.stream.play().unwrap();
    assert!(probe.wait_until_done(WAIT));
    thread::sleep(Duration::from_millis(50));

    assert_eq!(*w.sizes.lock().unwrap(), [333, 333, 333, 1]);
    assert_eq!(*w.errors.lock().unwrap(), [ErrorKind::DeviceNotAvailable]);
    assert_eq!(w.data_after_error.load(Ordering::SeqCst), 0);
    let stats = probe.input_stats();
    assert_eq!(stats.frames, 1_000);
    assert_eq!(stats.lost, Some(ErrorKind::DeviceNotAvailable));
    assert_eq!(stats.errors, [ErrorKind::DeviceNotAvailable]);
    assert!(stats.finished);

    // The device is gone until replugged; the dead stream stays dead.
    assert!(!probe.is_present("mic"));
    assert!(host.default_input_device().is_none());
    assert_eq!(host.devices().unwrap().count(), 0);
    assert_eq!(
        w.stream.play().unwrap_err().kind(),
        ErrorKind::DeviceNotAvailable
    );
    let stale = watch(&device, config(1, 16_000)).err().unwrap();
    assert_eq!(stale.kind(), ErrorKind::DeviceNotAvailable);
    assert_eq!(
        device.supported_input_configs().err().unwrap().kind(),
        ErrorKind::DeviceNotAvailable
    );
    drop(w);

    // Replugged, the next build plays the next script.
    probe.replug("mic");
    let device = host.default_input_device().unwrap();
    let got = capture::<f32>(&host, &probe, config(1, 16_000));
    assert_eq!(got.samples, vec![0.5f32; 700]);
    assert_eq!(probe.input_streams().len(), 2);
    assert_eq!(probe.input_stats().build_index, 1);
    assert_eq!(probe.build_attempts("mic"), 3);
    drop(device);
}

#[test]
fn fatal_fault_keeps_the_device_and_non_fatal_fault_keeps_the_data() {
    let fatal = InputScript::new(1, vec![0.0f32; 5_000])
        .callback_frames(&[333])
        .fault_at(700, Fault::Fatal(ErrorKind::StreamInvalidated));
    let (host, probe) = host_with_mic(fatal);
    let w = watch(&host.default_input_device().unwrap(), config(1, 16_000)).unwrap();
    w.stream.play().unwrap();
    assert!(probe.wait_until_done(WAIT));
    assert_eq!(*w.sizes.lock().unwrap(), [333, 333, 34]);
    assert_eq!(*w.errors.lock().unwrap(), [ErrorKind::StreamInvalidated]);
    assert_eq!(w.data_after_error.load(Ordering::SeqCst), 0);
    assert!(probe.is_present("mic"));
    assert_eq!(
        w.stream.play().unwrap_err().kind(),
        ErrorKind::StreamInvalidated
    );

    let xrun = InputScript::new(1, vec![0.0f32; 2_000])
        .callback_frames(&[333])
        .fault_at(500, Fault::NonFatal(ErrorKind::Xrun));
    let (host, probe) = host_with_mic(xrun);
    let w = watch(&host.default_input_device().unwrap(), config(1, 16_000)).unwrap();
    w.stream.play().unwrap();
    assert!(probe.wait_until_done(WAIT));
    assert_eq!(
        *w.sizes.lock().unwrap(),
        [333, 167, 333, 333, 333, 333, 168]
    );
    assert_eq!(*w.errors.lock().unwrap(), [ErrorKind::Xrun]);
    assert_eq!(w.data_after_error.load(Ordering::SeqCst), 5);
    let stats = probe.input_stats();
    assert_eq!((stats.frames, stats.lost), (2_000, None));
}

#[test]
fn unplugging_at_runtime_loses_the_running_stream() {
    let script = InputScript::new(1, vec![0.0f32; 480])
        .callback_frames(&[48])
        .pacing(Pacing::Paced(1.0))
        .at_end(AtEnd::Silence);
    let (host, probe) = host_with_mic(script);
    let w = watch(&host.default_input_device().unwrap(), config(1, 48_000)).unwrap();
    w.stream.play().unwrap();
    assert!(probe.wait_until(WAIT, |p| p.input_stats().frames >= 960));
    probe.unplug("mic");
    assert!(probe.wait_until(WAIT, |p| p.input_stats().lost.is_some()));
    let frames = probe.input_stats().frames;
    thread::sleep(Duration::from_millis(50));
    assert_eq!(probe.input_stats().frames, frames);
    assert_eq!(*w.errors.lock().unwrap(), [ErrorKind::DeviceNotAvailable]);
    assert_eq!(w.data_after_error.load(Ordering::SeqCst), 0);
    assert!(host.default_input_device().is_none());
    probe.replug("mic");
    assert!(host.default_input_device().is_some());
}

#[test]
fn build_failures() {
    let script = || InputScript::new(1, vec![0i16; 100]);
    let open = |host: &cpal::Host, cfg: StreamConfig| {
        host.default_input_device()
            .unwrap()
            .build_input_stream::<i16, _, _>(cfg, |_, _| {}, |_| {}, None)
            .map(|_| ())
            .map_err(|e| e.kind())
    };
    let ok = config(1, 16_000);

    for kind in [
        ErrorKind::DeviceBusy,
        ErrorKind::UnsupportedConfig,
        ErrorKind::PermissionDenied,
    ] {
        let (host, probe) = FakeHost::build(FakeSetup::new().input(mic(script()).fail_build(kind)));
        assert_eq!(open(&host, ok), Err(kind));
        assert_eq!(open(&host, ok), Err(kind));
        assert_eq!(probe.build_attempts("mic"), 2);
        assert!(probe.streams().is_empty());
    }

    let (host, probe) = FakeHost::build(
        FakeSetup::new().input(mic(script()).fail_build_times(ErrorKind::DeviceBusy, 2)),
    );
    assert_eq!(open(&host, ok), Err(ErrorKind::DeviceBusy));
    assert_eq!(open(&host, ok), Err(ErrorKind::DeviceBusy));
    assert_eq!(open(&host, ok), Ok(()));
    assert_eq!(probe.streams().len(), 1);

    // Configurations the device does not list.
    let (host, _probe) = host_with_mic(script());
    assert_eq!(
        open(&host, config(1, 44_100)),
        Err(ErrorKind::UnsupportedConfig)
    );
    assert_eq!(
        open(&host, config(3, 16_000)),
        Err(ErrorKind::UnsupportedConfig)
    );
    let f64_stream = host
        .default_input_device()
        .unwrap()
        .build_input_stream::<f64, _, _>(ok, |_, _| {}, |_| {}, None);
    assert_eq!(
        f64_stream.err().unwrap().kind(),
        ErrorKind::UnsupportedConfig
    );
    let wrong_direction = host
        .default_input_device()
        .unwrap()
        .build_output_stream::<i16, _, _>(ok, |_, _| {}, |_| {}, None);
    assert_eq!(
        wrong_direction.err().unwrap().kind(),
        ErrorKind::UnsupportedOperation
    );
    assert_eq!(open(&host, ok), Ok(()));
}

#[test]
fn callbacks_run_only_between_play_and_pause_and_never_after_drop() {
    let ramp: Vec<i16> = (0..48_000).map(|i| (i % 30_000) as i16).collect();
    let script = InputScript::new(1, ramp.clone())
        .callback_frames(&[48])
        .pacing(Pacing::Paced(1.0));
    let (host, probe) = host_with_mic(script);
    let device = host.default_input_device().unwrap();
    let calls = Arc::new(AtomicU64::new(0));
    let got = Arc::new(Mutex::new(Vec::new()));
    let (c, g) = (calls.clone(), got.clone());
    let stream = device
        .build_input_stream::<i16, _, _>(
            config(1, 48_000),
            move |data: &[i16], _| {
                c.fetch_add(1, Ordering::SeqCst);
                g.lock().unwrap().extend_from_slice(data);
            },
            |_| {},
            None,
        )
        .unwrap();

    thread::sleep(Duration::from_millis(30));
    assert_eq!(
        calls.load(Ordering::SeqCst),
        0,
        "a callback ran before play()"
    );

    stream.play().unwrap();
    stream.play().unwrap(); // playing twice is harmless
    assert!(probe.wait_until(WAIT, |p| p.input_stats().frames >= 480));
    stream.pause().unwrap();
    let paused_at = calls.load(Ordering::SeqCst);
    thread::sleep(Duration::from_millis(40));
    assert_eq!(
        calls.load(Ordering::SeqCst),
        paused_at,
        "a callback ran while paused"
    );
    assert!(!probe.input_stats().playing);

    stream.play().unwrap();
    assert!(probe.wait_until(WAIT, |p| p.input_stats().data_callbacks >= paused_at + 10));
    drop(stream);
    let dropped_at = calls.load(Ordering::SeqCst);
    thread::sleep(Duration::from_millis(50));
    assert_eq!(
        calls.load(Ordering::SeqCst),
        dropped_at,
        "a callback ran after drop"
    );
    assert_eq!(
        Arc::strong_count(&calls),
        1,
        "callbacks not released by drop"
    );
    let stats = probe.input_stats();
    assert!(stats.dropped && !stats.playing);
    assert_eq!(stats.data_callbacks, dropped_at);

    // Pause and resume neither lose nor repeat frames.
    let got = got.lock().unwrap();
    assert_eq!(got.len() as u64, stats.frames);
    assert!(*got == ramp[..got.len()]);
}

#[test]
fn heap_use_inside_callbacks_is_counted_and_only_there() {
    let script = || {
        InputScript::new(1, vec![0.1f32; 4_800])
            .callback_frames(&[480])
            .fault_at(2_400, Fault::NonFatal(ErrorKind::Xrun))
    };

    // Allocating callbacks: one allocation and one free per data callback; the error
    // callback's formatting is counted on its own side.
    let (host, probe) = host_with_mic(script());
    let stream = host
        .default_input_device()
        .unwrap()
        .build_input_stream::<f32, _, _>(
            config(1, 16_000),
            |data: &[f32], _| {
                let copy: Vec<f32> = std::hint::black_box(data.to_vec());
                drop(copy);
            },
            |err| {
                let text = std::hint::black_box(format!("{err}"));
                drop(text);
            },
            None,
        )
        .unwrap();
    stream.play().unwrap();
    assert!(probe.wait_until_done(WAIT));
    drop(stream);
    let stats = probe.input_stats();
    assert_eq!(stats.data_callbacks, 10);
    assert_eq!(stats.data_callback_allocs.allocs, 10);
    assert_eq!(stats.data_callback_allocs.frees, 10);
    assert_eq!(stats.data_callback_allocs.bytes, 10 * 480 * 4);
    assert_eq!(stats.data_callbacks_touching_heap, 10);
    assert!(stats.error_callback_allocs.allocs >= 1);

    // Clean callbacks: nothing, although the fake itself allocates (its records) on the same
    // thread between callbacks.
    let (host, probe) = host_with_mic(script());
    let sum = Arc::new(AtomicU64::new(0));
    let s = sum.clone();
    let stream = host
        .default_input_device()
        .unwrap()
        .build_input_stream::<f32, _, _>(
            config(1, 16_000),
            move |data: &[f32], _| {
                let acc: f32 = data.iter().sum();
                s.fetch_add(acc as u64, Ordering::Relaxed);
            },
            |_| {},
            None,
        )
        .unwrap();
    stream.play().unwrap();
    assert!(probe.wait_until_done(WAIT));
    drop(stream);
    let stats = probe.input_stats();
    assert_eq!(stats.data_callbacks, 10);
    assert_eq!(stats.data_callback_allocs, AllocCounts::default());
    assert_eq!(stats.data_callbacks_touching_heap, 0);
    assert_eq!(stats.error_callback_allocs, AllocCounts::default());
    assert_eq!(stats.errors, [ErrorKind::Xrun]);
    assert!(sum.load(Ordering::Relaxed) > 0);
}

fn output_round_trip<T: FakeSample>() {
    let frames = 10_007usize;
    let pattern = [480, 1, 7, 4096];
    // Values on the i16 grid are exact in all four formats.
    let value = |k: usize| ((k % 65_536) as f32 - 32_768.0) / 32_768.0;
    let (host, probe) = FakeHost::build(
        FakeSetup::new().output(speaker(
            OutputScript::new()
                .callback_frames(&pattern)
                .pacing(Pacing::AsFastAsPossible)
                .stop_after_frames(frames as u64),
        )),
    );
    let device = host.default_output_device().unwrap();
    let mut k = 0usize;
    let prefilled = Arc::new(AtomicBool::new(true));
    let p = prefilled.clone();
    let stream = device
        .build_output_stream::<T, _, _>(
            config(2, 48_000),
            move |out: &mut [T], _| {
                if out.iter().any(|&x| x != T::SILENCE) {
                    p.store(false, Ordering::Relaxed);
                }
                for x in out.iter_mut() {
                    *x = T::from_unit_f32(value(k));
                    k += 1;
                }
            },
            |_| {},
            None,
        )
        .unwrap();
    stream.play().unwrap();
    assert!(probe.wait_until_done(WAIT));
    drop(stream);
    let what = format!("{:?}", T::FORMAT);
    let want: Vec<f32> = (0..frames * 2).map(value).collect();
    assert_eq!(bits(&probe.played()), bits(&want), "{what}");
    let stats = probe.output_stats();
    assert_eq!(
        stats.callback_frames,
        expected_sizes(&pattern, frames),
        "{what}"
    );
    assert_eq!(stats.frames, frames as u64);
    assert!(stats.finished);
    assert_eq!(stats.data_callback_allocs, AllocCounts::default(), "{what}");
    assert!(
        prefilled.load(Ordering::Relaxed),
        "{what}: buffer not pre-filled with silence"
    );
}

#[test]
fn output_records_exactly_what_the_callback_wrote_in_every_format() {
    output_round_trip::<i16>();
    output_round_trip::<i32>();
    output_round_trip::<u16>();
    output_round_trip::<f32>();
}

#[test]
fn output_left_untouched_plays_silence_and_allocations_are_counted() {
    let (host, probe) = FakeHost::build(
        FakeSetup::new().output(speaker(
            OutputScript::new()
                .callback_frames(&[100])
                .pacing(Pacing::AsFastAsPossible)
                .stop_after_frames(1_000)
                .lose_device_after(500),
        )),
    );
    let errors = Arc::new(Mutex::new(Vec::new()));
    let e = errors.clone();
    let stream = host
        .default_output_device()
        .unwrap()
        .build_output_stream::<u16, _, _>(
            config(1, 48_000),
            |out: &mut [u16], _| {
                // Writes only the first sample, through a needless allocation.
                let v = std::hint::black_box(vec![40_000u16]);
                out[0] = v[0];
            },
            move |err| e.lock().unwrap().push(err.kind()),
            None,
        )
        .unwrap();
    stream.play().unwrap();
    assert!(probe.wait_until_done(WAIT));
    drop(stream);
    let played = probe.played();
    assert_eq!(played.len(), 500);
    for (i, &x) in played.iter().enumerate() {
        let want = if i % 100 == 0 {
            f32::from_sample(40_000u16)
        } else {
            0.0
        };
        assert_eq!(x, want, "sample {i}");
    }
    let stats = probe.output_stats();
    assert_eq!(stats.data_callback_allocs.allocs, 5);
    assert_eq!(stats.data_callback_allocs.frees, 5);
    assert_eq!(*errors.lock().unwrap(), [ErrorKind::DeviceNotAvailable]);
    assert!(host.default_output_device().is_none());
}

#[test]
fn paced_streams_take_about_real_time() {
    // Input: 4800 frames at 48 kHz in real time is 100 ms; 19200 at 4x speed also 100 ms.
    for (frames, speed) in [(4_800usize, 1.0), (19_200, 4.0)] {
        let script = InputScript::new(1, vec![0i16; frames])
            .callback_frames(&[480])
            .pacing(Pacing::Paced(speed));
        let (host, probe) = host_with_mic(script);
        let stream = host
            .default_input_device()
            .unwrap()
            .build_input_stream::<i16, _, _>(config(1, 48_000), |_, _| {}, |_| {}, None)
            .unwrap();
        let t0 = Instant::now();
        stream.play().unwrap();
        assert!(probe.wait_until_done(WAIT));
        let took = t0.elapsed();
        assert!(
            took >= Duration::from_millis(80),
            "{frames} frames at {speed}x took {took:?}"
        );
    }
    // Output: the callback for frames [4800, 5280) is due at 100 ms.
    let (host, probe) = FakeHost::build(
        FakeSetup::new().output(speaker(
            OutputScript::new()
                .callback_frames(&[480])
                .stop_after_frames(5_280),
        )),
    );
    let stream = host
        .default_output_device()
        .unwrap()
        .build_output_stream::<f32, _, _>(config(1, 48_000), |_, _| {}, |_| {}, None)
        .unwrap();
    let t0 = Instant::now();
    stream.play().unwrap();
    assert!(probe.wait_until_done(WAIT));
    let took = t0.elapsed();
    assert!(took >= Duration::from_millis(80), "output took {took:?}");
}

#[test]
fn waits_time_out_instead_of_hanging() {
    let (_host, probe) = host_with_mic(InputScript::new(1, vec![0i16; 100]));
    let t0 = Instant::now();
    assert!(
        !probe.wait_until_done(Duration::from_millis(50)),
        "done without any stream"
    );
    assert!(t0.elapsed() >= Duration::from_millis(50));

    // Built but never played: never done.
    let (host, probe) = host_with_mic(InputScript::new(1, vec![0i16; 100]));
    let _stream = host
        .default_input_device()
        .unwrap()
        .build_input_stream::<i16, _, _>(config(1, 16_000), |_, _| {}, |_| {}, None)
        .unwrap();
    let t0 = Instant::now();
    assert!(!probe.wait_until_done(Duration::from_millis(50)));
    assert!(t0.elapsed() < Duration::from_secs(10));
    assert!(!probe.wait_until(Duration::from_millis(20), |_| false));
}

#[test]
fn timestamps_follow_the_sample_clock() {
    let rate = 16_000u32;
    let (host, probe) =
        host_with_mic(InputScript::new(1, vec![0i16; 2_000]).callback_frames(&[480, 1, 7]));
    let seen = Arc::new(Mutex::new(Vec::new()));
    let s = seen.clone();
    let stream = host
        .default_input_device()
        .unwrap()
        .build_input_stream::<i16, _, _>(
            config(1, rate),
            move |data: &[i16], info: &cpal::InputCallbackInfo| {
                let t = info.timestamp();
                s.lock().unwrap().push((data.len(), t.capture, t.callback));
            },
            |_| {},
            None,
        )
        .unwrap();
    assert_eq!(stream.now(), StreamInstant::ZERO);
    stream.play().unwrap();
    assert!(probe.wait_until_done(WAIT));
    let at = |frames: u64| StreamInstant::from_nanos(frames * 1_000_000_000 / u64::from(rate));
    let mut pos = 0u64;
    for &(n, capture, callback) in seen.lock().unwrap().iter() {
        assert_eq!(capture, at(pos));
        assert_eq!(callback, at(pos + n as u64));
        pos += n as u64;
    }
    assert_eq!(pos, 2_000);
    assert_eq!(stream.now(), at(2_000));

    let (host, probe) = FakeHost::build(
        FakeSetup::new().output(speaker(
            OutputScript::new()
                .callback_frames(&[480])
                .pacing(Pacing::AsFastAsPossible)
                .stop_after_frames(1_000),
        )),
    );
    let seen = Arc::new(Mutex::new(Vec::new()));
    let s = seen.clone();
    let stream = host
        .default_output_device()
        .unwrap()
        .build_output_stream::<f32, _, _>(
            config(1, 48_000),
            move |out: &mut [f32], info: &cpal::OutputCallbackInfo| {
                let t = info.timestamp();
                s.lock().unwrap().push((out.len(), t.callback, t.playback));
            },
            |_| {},
            None,
        )
        .unwrap();
    stream.play().unwrap();
    assert!(probe.wait_until_done(WAIT));
    let at = |frames: u64| StreamInstant::from_nanos(frames * 1_000_000_000 / 48_000);
    let seen = seen.lock().unwrap();
    assert_eq!(seen.len(), 3);
    let mut pos = 0u64;
    for &(n, callback, playback) in seen.iter() {
        assert_eq!((callback, playback), (at(pos), at(pos + n as u64)));
        pos += n as u64;
    }
    assert!(stream.now() >= seen.last().unwrap().1);
}

#[test]
fn a_panicking_callback_stops_its_stream_and_is_reported() {
    let (host, probe) =
        host_with_mic(InputScript::new(1, vec![0i16; 5_000]).callback_frames(&[100]));
    let calls = Arc::new(AtomicU64::new(0));
    let c = calls.clone();
    let stream = host
        .default_input_device()
        .unwrap()
        .build_input_stream::<i16, _, _>(
            config(1, 16_000),
            move |_: &[i16], _| {
                if c.fetch_add(1, Ordering::SeqCst) == 2 {
                    panic!("deliberate panic in a fake-device callback");
                }
            },
            |_| {},
            None,
        )
        .unwrap();
    stream.play().unwrap();
    assert!(probe.wait_until_done(WAIT));
    let stats = probe.input_stats();
    assert!(stats.panicked && stats.finished);
    assert_eq!(
        stats.data_callbacks, 2,
        "the panicking call is not counted as completed"
    );
    thread::sleep(Duration::from_millis(20));
    assert_eq!(calls.load(Ordering::SeqCst), 3);
    stream.pause().unwrap();
    drop(stream);
    assert_eq!(Arc::strong_count(&calls), 1);
}
