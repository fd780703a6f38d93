//! The live engine against a scripted device (cpal's custom host,
//! `tests/support/fake_device.rs`):
//! odd callback sizes give the offline result exactly, device faults end the session
//! cleanly, capture happens only between start and stop, the callbacks never touch the
//! heap, a ring too small overruns without blocking, and the monitor plays what was
//! enhanced, without an underrun while the signal goes on.
//!
//! Every test runs its engine in a [`RealTimeSlot`] (one paced test at a time on the
//! machine); the monitor's promise (no underrun once primed) is tested at the pace of
//! real time, the one it is made for, since a device paced faster shrinks the cushion's
//! wall-clock margin by as much.

use std::time::{Duration, Instant};

use crate::support::audio::{load, mono, testdata};
use crate::support::fake_device::*;
use crate::support::realtime_slot::RealTimeSlot;
use clearvox::engine::{Engine, EngineConfig, EngineError, EngineEvent};
use clearvox::io::read_wav_file;
use clearvox::pipeline::{FrameReceiver, ResponsePlayer};
use clearvox::{Config, Pipeline};
use cpal::SampleFormat;

const TIMEOUT: Duration = Duration::from_secs(30);

/// The first `seconds` of [`voice_48k_i16`] (for the tests paced in real time).
fn voice_seconds(seconds: f64) -> Vec<i16> {
    let mut v = voice_48k_i16();
    v.truncate((seconds * 48_000.0) as usize);
    v
}

/// The 48 kHz test voice as i16 (the format the fake device streams bit for bit).
fn voice_48k_i16() -> Vec<i16> {
    let (x, rate, ch) = load(&testdata("noisy/us_male__cafe__snr5__48k_f32.wav"));
    assert_eq!((rate, ch), (48_000, 1));
    x.iter()
        .map(|v| (v * 32_768.0).round().clamp(-32_768.0, 32_767.0) as i16)
        .collect()
}

/// What the pipeline makes of `input` (interleaved i16) offline: the whole output stream,
/// latency included, flushed — what the engine's frames and recording must equal.
fn offline(config: &Config, input: &[i16], rate: u32, channels: usize) -> Vec<f32> {
    // The engine downmixes in the callback and runs a mono pipeline.
    let as_f32: Vec<f32> = input.iter().map(|v| *v as f32 / 32_768.0).collect();
    let mono = mono(&as_f32, channels);
    let mut p = Pipeline::new(config, rate, 1).unwrap();
    let mut out = Vec::new();
    p.process(&mono, &mut out).unwrap();
    p.flush(&mut out).unwrap();
    out
}

/// A duration that rounds to exactly `frames` at `rate`.
fn exactly(frames: usize, rate: u32) -> Duration {
    Duration::from_nanos((frames as u128 * 1_000_000_000 / rate as u128) as u64)
}

fn mic(script: InputScript, rate: u32, channels: u16) -> FakeInput {
    FakeInput::new("mic", script)
        .default_device()
        .supports(
            &[SampleFormat::I16, SampleFormat::F32],
            &[channels],
            &[rate],
        )
        .default_config(SampleFormat::I16, channels, rate)
}

fn wait_finished(engine: &Engine) {
    let until = Instant::now() + TIMEOUT;
    while !engine.is_finished() {
        assert!(
            Instant::now() < until,
            "the engine did not finish in {TIMEOUT:?}: {:?} {:?}",
            engine.stream_info(),
            engine.stats()
        );
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// Runs a whole script through the engine; returns the frames it delivered.
fn run_script(
    samples: Vec<i16>,
    rate: u32,
    channels: u16,
    pattern: &[usize],
) -> (
    Vec<f32>,
    clearvox::engine::EngineReport,
    std::sync::Arc<FakeProbe>,
) {
    let frames = samples.len() / channels as usize;
    let script = InputScript::new(channels, samples)
        .callback_frames(pattern)
        .pacing(Pacing::Paced(8.0));
    let (host, probe) = FakeHost::build(FakeSetup::new().input(mic(script, rate, channels)));
    let config = EngineConfig {
        duration: Some(exactly(frames, rate)),
        ..EngineConfig::default()
    };
    let mut engine = Engine::with_host(host, config).unwrap();
    let rx = engine.frame_channel(10_000);
    engine.start().unwrap();
    wait_finished(&engine);
    let report = engine.stop().unwrap();
    let mut out = Vec::new();
    let mut position = 0;
    for f in rx.iter_timeout(Duration::from_millis(50)) {
        assert_eq!(f.position, position, "frames are contiguous");
        assert_eq!(f.rate, rate);
        position += f.samples.len() as u64;
        out.extend_from_slice(&f.samples);
    }
    (out, report, probe)
}

#[test]
fn odd_callback_sizes_give_the_offline_result_exactly() {
    let _slot = RealTimeSlot::acquire();
    let voice = voice_48k_i16();
    let expected = offline(&Config::default(), &voice, 48_000, 1);
    for pattern in [&[1][..], &[333], &[4096], &[480, 1, 7, 4096]] {
        let (got, report, probe) = run_script(voice.clone(), 48_000, 1, pattern);
        assert_eq!(report.stats.overruns, 0, "{pattern:?}");
        assert_eq!(got.len(), expected.len(), "{pattern:?}: length");
        let first = got
            .iter()
            .zip(&expected)
            .position(|(a, b)| a.to_bits() != b.to_bits());
        assert_eq!(first, None, "{pattern:?}: first differing sample");
        // Every callback had a size of the pattern (the last is cut at the script's end).
        let sizes = &probe.input_stats().callback_frames;
        let last = sizes.len() - 1;
        assert!(
            sizes[..last].iter().all(|n| pattern.contains(n)),
            "{pattern:?}"
        );
    }
}

#[test]
fn stereo_44k1_with_odd_callbacks_equals_offline() {
    let _slot = RealTimeSlot::acquire();
    let (x, rate, ch) = load(&testdata("noisy/gb_female__traffic__snr10__44k1_s24.wav"));
    assert_eq!((rate, ch), (44_100, 2));
    let samples: Vec<i16> = x
        .iter()
        .map(|v| (v * 32_768.0).round().clamp(-32_768.0, 32_767.0) as i16)
        .collect();
    let expected = offline(&Config::default(), &samples, rate, ch);
    let (got, _, _) = run_script(samples, rate, ch as u16, &[333]);
    assert_eq!(got, expected);
}

#[test]
fn the_recording_is_the_output_stream_and_a_valid_wav() {
    let _slot = RealTimeSlot::acquire();
    let voice = voice_48k_i16();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("rec.wav");
    let script = InputScript::new(1, voice.clone()).pacing(Pacing::Paced(8.0));
    let (host, _probe) = FakeHost::build(FakeSetup::new().input(mic(script, 48_000, 1)));
    let config = EngineConfig {
        duration: Some(exactly(voice.len(), 48_000)),
        record: Some(path.clone()),
        ..EngineConfig::default()
    };
    let mut engine = Engine::with_host(host, config).unwrap();
    engine.start().unwrap();
    wait_finished(&engine);
    let report = engine.stop().unwrap();
    // s16 capture is recorded as s16: the offline stream, rounded the same way.
    let rec = read_wav_file(&path).unwrap();
    assert_eq!(rec.spec.sample_rate, 48_000);
    let expected: Vec<f32> = offline(&Config::default(), &voice, 48_000, 1)
        .iter()
        .map(|v| clearvox::dsp::convert::f32_to_i16(*v) as f32 / 32_768.0)
        .collect();
    assert_eq!(rec.samples, expected);
    assert_eq!(
        rec.samples.len(),
        voice.len() + report.stream.algorithmic_latency,
        "duration of input plus the flushed latency"
    );
}

#[test]
fn a_device_lost_mid_stream_ends_cleanly_with_a_valid_recording() {
    let _slot = RealTimeSlot::acquire();
    let voice = voice_48k_i16();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("rec.wav");
    let script = InputScript::new(1, voice.clone())
        .callback_frames(&[480])
        .pacing(Pacing::Paced(8.0))
        .lose_device_after(96_000);
    let (host, _probe) = FakeHost::build(FakeSetup::new().input(mic(script, 48_000, 1)));
    let config = EngineConfig {
        record: Some(path.clone()),
        ..EngineConfig::default()
    };
    let mut engine = Engine::with_host(host, config).unwrap();
    let rx = engine.frame_channel(10_000);
    engine.start().unwrap();
    wait_finished(&engine);
    let mut events = Vec::new();
    while let Some(e) = engine.poll_event() {
        events.push(e);
    }
    assert!(
        matches!(
            &events[..],
            [
                EngineEvent::DeviceError { input: true, .. },
                EngineEvent::Finished
            ]
        ),
        "{events:?}"
    );
    let err = engine.stop().unwrap_err();
    assert!(
        matches!(err, EngineError::DeviceLost { kind: "input", .. }),
        "{err}"
    );
    assert!(err.to_string().contains("failed while running"), "{err}");
    // Everything captured before the loss was processed, flushed and recorded.
    let got: Vec<f32> = rx
        .iter_timeout(Duration::from_millis(50))
        .flat_map(|f| f.samples)
        .collect();
    let expected = offline(&Config::default(), &voice[..96_000], 48_000, 1);
    assert_eq!(got, expected);
    let rec = read_wav_file(&path).unwrap();
    assert_eq!(rec.samples.len(), expected.len());
}

#[test]
fn missing_busy_and_unsupported_devices_are_clear_errors() {
    let _slot = RealTimeSlot::acquire();
    let script = || InputScript::new(1, vec![0i16; 4_800]);
    // No default input.
    let (host, _) = FakeHost::build(
        FakeSetup::new().input(FakeInput::new("mic", script()).supports(
            &[SampleFormat::I16],
            &[1],
            &[48_000],
        )),
    );
    let mut engine = Engine::with_host(host, EngineConfig::default()).unwrap();
    let err = engine.start().unwrap_err();
    assert!(
        matches!(err, EngineError::NoDevice { kind: "input" }),
        "{err}"
    );
    assert!(!engine.is_running());
    // By name: not there; the error lists what is.
    let (host, _) = FakeHost::build(FakeSetup::new().input(mic(script(), 48_000, 1)));
    let config = EngineConfig {
        input: "usb headset".parse().unwrap(),
        ..EngineConfig::default()
    };
    let err = Engine::with_host(host, config)
        .unwrap()
        .start()
        .unwrap_err();
    assert!(err.to_string().contains("available: mic"), "{err}");
    // Busy.
    let (host, _) = FakeHost::build(
        FakeSetup::new().input(mic(script(), 48_000, 1).fail_build(cpal::ErrorKind::DeviceBusy)),
    );
    let err = Engine::with_host(host, EngineConfig::default())
        .unwrap()
        .start()
        .unwrap_err();
    assert!(err.to_string().contains("busy"), "{err}");
    // A rate the device does not have.
    let (host, _) = FakeHost::build(FakeSetup::new().input(mic(script(), 48_000, 1)));
    let config = EngineConfig {
        input_rate: Some(44_100),
        ..EngineConfig::default()
    };
    let err = Engine::with_host(host, config)
        .unwrap()
        .start()
        .unwrap_err();
    assert!(
        matches!(err, EngineError::UnsupportedConfig { .. })
            && err.to_string().contains("48000 Hz"),
        "{err}"
    );
}

#[test]
fn capture_runs_only_between_start_and_stop() {
    let _slot = RealTimeSlot::acquire();
    let voice = voice_48k_i16();
    let script = InputScript::new(1, voice)
        .pacing(Pacing::Paced(1.0))
        .at_end(AtEnd::Silence);
    let (host, probe) = FakeHost::build(FakeSetup::new().input(mic(script, 48_000, 1)));
    let mut engine = Engine::with_host(host, EngineConfig::default()).unwrap();
    std::thread::sleep(Duration::from_millis(50));
    assert!(probe.streams().is_empty(), "nothing is opened before start");
    engine.start().unwrap();
    assert!(probe.wait_until(TIMEOUT, |p| p.input_stats().data_callbacks > 5));
    engine.stop().unwrap();
    let after_stop = probe.input_stats();
    assert!(after_stop.dropped, "the stream is released at stop");
    std::thread::sleep(Duration::from_millis(100));
    assert_eq!(
        probe.input_stats().data_callbacks,
        after_stop.data_callbacks
    );
    // A second session opens a new stream; dropping a running engine stops it.
    engine.start().unwrap();
    assert!(probe.wait_until(TIMEOUT, |p| p.input_streams().len() == 2
        && p.input_stats().data_callbacks > 2));
    drop(engine);
    assert!(probe.input_stats().dropped);
}

#[test]
fn callbacks_never_touch_the_heap() {
    let _slot = RealTimeSlot::acquire();
    assert!(counting_alloc::is_installed());
    let voice = voice_48k_i16();
    let script = InputScript::new(1, voice.clone())
        .callback_frames(&[480, 1, 7, 4096])
        .pacing(Pacing::Paced(8.0));
    let (host, probe) = FakeHost::build(
        FakeSetup::new().input(mic(script, 48_000, 1)).output(
            FakeOutput::new("speaker", OutputScript::new().pacing(Pacing::Paced(8.0)))
                .default_device()
                .supports(&[SampleFormat::F32, SampleFormat::I16], &[2], &[44_100])
                .default_config(SampleFormat::I16, 2, 44_100),
        ),
    );
    // The monitor and a player at 24 kHz (resampled to the speaker's 44.1 kHz on this
    // thread) play together; what is played goes to the echo canceller.
    let mut pipeline = Config::default();
    pipeline.echo.enabled = true;
    let config = EngineConfig {
        pipeline,
        output: Some(Default::default()),
        playback: true,
        duration: Some(exactly(voice.len(), 48_000)),
        ..EngineConfig::default()
    };
    let mut engine = Engine::with_host(host, config).unwrap();
    engine.start().unwrap();
    let mut player = engine.player().unwrap();
    let answer: Vec<f32> = (0..24_000 * 4)
        .map(|i| 0.3 * (i as f32 * 0.05).sin())
        .collect();
    for (k, piece) in answer.chunks(240).enumerate() {
        assert_eq!(player.play(piece, 24_000), piece.len());
        if k == 200 {
            // Barge-in, then the answer goes on.
            player.cancel();
        }
    }
    player.finish();
    wait_finished(&engine);
    let report = engine.stop().unwrap();
    assert_eq!(report.stats.player_dropped, 0, "{:?}", report.stats);
    let played = probe.played();
    assert!(
        played.iter().filter(|v| **v != 0.0).count() > 44_100,
        "the player was heard"
    );
    let input = probe.input_stats();
    let output = probe.output_stats();
    assert!(input.data_callbacks > 100 && output.data_callbacks > 100);
    assert_eq!(
        input.data_callback_allocs.total(),
        0,
        "capture callback: {:?}",
        input.data_callback_allocs
    );
    assert_eq!(
        output.data_callback_allocs.total(),
        0,
        "monitor callback: {:?}",
        output.data_callback_allocs
    );
}

/// The player's queue is bounded: what does not fit is refused at once and counted, as
/// is audio at an unsupported rate; a configuration without playback has no player.
#[test]
fn the_player_refuses_what_does_not_fit_and_counts_it() {
    let _slot = RealTimeSlot::acquire();
    let voice = voice_seconds(1.0);
    let script = InputScript::new(1, voice.clone())
        .callback_frames(&[480])
        .pacing(Pacing::Paced(1.0));
    let (host, _probe) = FakeHost::build(
        FakeSetup::new()
            .input(mic(script, 48_000, 1))
            .output(speaker(1.0)),
    );
    let config = EngineConfig {
        playback: true,
        player_ring_ms: 100,
        duration: Some(exactly(voice.len(), 48_000)),
        ..EngineConfig::default()
    };
    let mut engine = Engine::with_host(host, config).unwrap();
    engine.start().unwrap();
    let info = engine.stream_info().unwrap();
    assert!(info.playback && !info.monitoring, "{info:?}");
    let mut player = engine.player().unwrap();
    let answer = vec![0.25f32; 48_000];
    let started = Instant::now();
    let accepted = player.play(&answer, 48_000);
    assert!(started.elapsed() < Duration::from_millis(50), "play waited");
    assert!((4_000..=4_800).contains(&accepted), "{accepted}");
    assert_eq!(player.dropped(), (answer.len() - accepted) as u64);
    assert!(player.is_playing());
    player.cancel();
    assert_eq!(player.play(&answer[..100], 4_000), 0, "below 8 kHz");
    assert_eq!(player.play(&answer[..100], 1_000_000), 0, "above 192 kHz");
    let dropped = player.dropped();
    assert_eq!(dropped, (answer.len() - accepted) as u64 + 200);
    wait_finished(&engine);
    let report = engine.stop().unwrap();
    assert_eq!(report.stats.player_dropped, dropped);
    assert_eq!(
        player.play(&answer[..100], 48_000),
        0,
        "the session is over"
    );

    // Without `playback`, no player.
    let (host, _probe) = FakeHost::build(FakeSetup::new().input(mic(
        InputScript::new(1, voice.clone()).pacing(Pacing::Paced(8.0)),
        48_000,
        1,
    )));
    let mut engine = Engine::with_host(host, EngineConfig::default()).unwrap();
    engine.start().unwrap();
    assert!(matches!(engine.player(), Err(EngineError::NoPlayback)));
    assert_eq!(engine.stream_info().unwrap().monitor_rate, None);
    engine.stop().unwrap();
}

#[test]
fn a_ring_too_small_overruns_without_blocking() {
    let _slot = RealTimeSlot::acquire();
    // Ten seconds delivered as fast as memory allows into the smallest ring: the
    // callback may not wait for the processing thread, so it drops and counts.
    let voice = voice_48k_i16();
    let long: Vec<i16> = voice.iter().copied().cycle().take(480_000).collect();
    let script = InputScript::new(1, long)
        .callback_frames(&[4096])
        .pacing(Pacing::AsFastAsPossible);
    let (host, probe) = FakeHost::build(FakeSetup::new().input(mic(script, 48_000, 1)));
    let config = EngineConfig {
        capture_ring_ms: 1,
        ..EngineConfig::default()
    };
    let mut engine = Engine::with_host(host, config).unwrap();
    let started = Instant::now();
    engine.start().unwrap();
    assert!(probe.wait_until_done(TIMEOUT));
    let delivery = started.elapsed();
    let report = engine.stop().unwrap();
    let s = report.stats;
    assert_eq!(s.captured_frames, 480_000);
    assert!(s.overruns > 0 && s.overrun_frames > 0, "{s:?}");
    assert_eq!(
        s.input_frames_processed + s.overrun_frames,
        s.captured_frames,
        "{s:?}"
    );
    assert!(
        delivery < Duration::from_secs(10),
        "delivery took {delivery:?}"
    );
}

#[test]
fn the_monitor_plays_the_enhanced_signal() {
    let _slot = RealTimeSlot::acquire();
    let voice = voice_seconds(2.0);
    let (mut engine, rx, probe) = monitored(&voice, 1.0, 1.0, false);
    assert!(probe.wait_until(TIMEOUT, |p| p.input_stats().frames >= voice.len() as u64));
    std::thread::sleep(Duration::from_millis(200));
    engine.stop().unwrap();
    // After the leading silence, the monitor plays the enhanced samples exactly.
    let (played, enhanced) = played_and_enhanced(&probe, rx);
    let n = 48_000.min(played.len()).min(enhanced.len());
    assert!(n > 24_000, "only {n} samples played");
    assert_eq!(&played[..n], &enhanced[..n]);
}

#[test]
fn errors_a_stream_goes_on_from_are_counted_not_fatal() {
    let _slot = RealTimeSlot::acquire();
    let voice = voice_48k_i16();
    let script = InputScript::new(1, voice.clone())
        .pacing(Pacing::Paced(8.0))
        .fault_at(4_800, Fault::NonFatal(cpal::ErrorKind::Xrun))
        .fault_at(9_600, Fault::NonFatal(cpal::ErrorKind::BackendError));
    let (host, _probe) = FakeHost::build(FakeSetup::new().input(mic(script, 48_000, 1)));
    let config = EngineConfig {
        duration: Some(exactly(voice.len(), 48_000)),
        ..EngineConfig::default()
    };
    let mut engine = Engine::with_host(host, config).unwrap();
    let rx = engine.frame_channel(10_000);
    engine.start().unwrap();
    wait_finished(&engine);
    let report = engine.stop().unwrap();
    assert_eq!(report.stats.stream_errors, 2);
    let got: Vec<f32> = rx
        .iter_timeout(Duration::from_millis(50))
        .flat_map(|f| f.samples)
        .collect();
    assert_eq!(got, offline(&Config::default(), &voice, 48_000, 1));
}

#[test]
fn losing_the_monitor_stops_monitoring_but_not_capture() {
    let _slot = RealTimeSlot::acquire();
    let voice = voice_48k_i16();
    let script = InputScript::new(1, voice.clone()).pacing(Pacing::Paced(8.0));
    let (host, _probe) = FakeHost::build(
        FakeSetup::new().input(mic(script, 48_000, 1)).output(
            FakeOutput::new(
                "speaker",
                OutputScript::new()
                    .pacing(Pacing::Paced(8.0))
                    .lose_device_after(24_000),
            )
            .default_device()
            .supports(&[SampleFormat::F32], &[2], &[48_000])
            .default_config(SampleFormat::F32, 2, 48_000),
        ),
    );
    let config = EngineConfig {
        output: Some(Default::default()),
        duration: Some(exactly(voice.len(), 48_000)),
        ..EngineConfig::default()
    };
    let mut engine = Engine::with_host(host, config).unwrap();
    let rx = engine.frame_channel(10_000);
    engine.start().unwrap();
    wait_finished(&engine);
    let mut events = Vec::new();
    while let Some(e) = engine.poll_event() {
        events.push(e);
    }
    assert!(
        events
            .iter()
            .any(|e| matches!(e, EngineEvent::DeviceError { input: false, .. })),
        "{events:?}"
    );
    engine.stop().unwrap();
    let got: Vec<f32> = rx
        .iter_timeout(Duration::from_millis(50))
        .flat_map(|f| f.samples)
        .collect();
    assert_eq!(got, offline(&Config::default(), &voice, 48_000, 1));
}

/// The monitor's device, paced `speed` times faster than real time.
fn speaker(speed: f64) -> FakeOutput {
    FakeOutput::new(
        "speaker",
        OutputScript::new()
            .callback_frames(&[480])
            .pacing(Pacing::Paced(speed)),
    )
    .default_device()
    .supports(&[SampleFormat::F32], &[2], &[48_000])
    .default_config(SampleFormat::F32, 2, 48_000)
}

/// A started engine that monitors into a scripted speaker: `voice` from a microphone
/// paced `mic_speed` times real time, the speaker paced `speaker_speed` times; capture
/// ends after the voice (a duration) when `ends` is set, else it goes on until `stop`.
fn monitored(
    voice: &[i16],
    mic_speed: f64,
    speaker_speed: f64,
    ends: bool,
) -> (Engine, FrameReceiver, std::sync::Arc<FakeProbe>) {
    let script = InputScript::new(1, voice.to_vec())
        .callback_frames(&[480])
        .pacing(Pacing::Paced(mic_speed));
    let (host, probe) = FakeHost::build(
        FakeSetup::new()
            .input(mic(script, 48_000, 1))
            .output(speaker(speaker_speed)),
    );
    let config = EngineConfig {
        output: Some(Default::default()),
        duration: ends.then(|| exactly(voice.len(), 48_000)),
        ..EngineConfig::default()
    };
    let mut engine = Engine::with_host(host, config).unwrap();
    let rx = engine.frame_channel(10_000);
    engine.start().unwrap();
    (engine, rx, probe)
}

/// The left channel of what the speaker played from its first sound, and the enhanced
/// frames from theirs (the monitor begins with silence until its cushion is full).
fn played_and_enhanced(probe: &FakeProbe, rx: FrameReceiver) -> (Vec<f32>, Vec<f32>) {
    let enhanced: Vec<f32> = rx
        .iter_timeout(Duration::from_millis(50))
        .flat_map(|f| f.samples)
        .collect();
    let played = probe.played();
    assert!(
        played.chunks_exact(2).all(|f| f[0] == f[1]),
        "mono on every channel"
    );
    let left: Vec<f32> = played.chunks_exact(2).map(|f| f[0]).collect();
    let start = left
        .iter()
        .position(|v| *v != 0.0)
        .expect("something was played");
    let lead = enhanced.iter().position(|v| *v != 0.0).unwrap();
    (left[start..].to_vec(), enhanced[lead..].to_vec())
}

/// Once capture has ended (here: the duration was reached), the monitor plays the
/// signal to its last sample, then silence until the engine is stopped, and that
/// silence is no underrun: however long the caller takes to call `stop` (the CLI looks
/// every 100 ms, longer on a loaded machine), the engine's promise of no underrun holds.
#[test]
fn silence_after_the_end_of_the_signal_is_not_an_underrun() {
    let _slot = RealTimeSlot::acquire();
    let voice = voice_seconds(2.0);
    let (mut engine, rx, probe) = monitored(&voice, 1.0, 1.0, true);
    wait_finished(&engine);
    // A slow caller: the monitor runs dry long before `stop`.
    let played_before = probe.output_stats().frames;
    std::thread::sleep(Duration::from_millis(400));
    assert!(
        probe.output_stats().frames > played_before + 9_600,
        "the output kept running after the end of the signal"
    );
    let report = engine.stop().unwrap();
    assert_eq!(report.stats.underruns, 0, "{:?}", report.stats);
    // Every enhanced sample, the flushed tail included, was played.
    let (played, enhanced) = played_and_enhanced(&probe, rx);
    assert!(played.len() >= enhanced.len(), "the tail was not played");
    assert_eq!(&played[..enhanced.len()], &enhanced[..]);
}

/// The converse: while the signal goes on, an output that takes audio faster than
/// capture delivers it runs dry, and every such callback is counted.
#[test]
fn a_monitor_starved_while_the_signal_goes_on_counts_underruns() {
    let _slot = RealTimeSlot::acquire();
    let voice = voice_48k_i16();
    let (mut engine, _rx, _probe) = monitored(&voice, 4.0, 8.0, true);
    wait_finished(&engine);
    let report = engine.stop().unwrap();
    // Twice the pace: about every other output callback finds the ring short.
    assert!(report.stats.underruns > 50, "{:?}", report.stats);
}
