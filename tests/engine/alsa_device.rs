//! `clearvox live` on a real ALSA device (the `file` plugin, see
//! `tests/support/alsa_fixture.rs`): paced in real time by a PulseAudio daemon and bit-exact, the recording equals the
//! offline `clearvox enhance` of the same input once shifted by the pipeline's latency;
//! at 48 kHz mono, 44.1 kHz stereo, with 320-frame callbacks and with the other core
//! busy, without overruns; the monitor plays the enhanced signal into the device; and a
//! ring too small for an unpaced device overruns, says so, and ends cleanly.
//!
//! Each test runs the binary as a child process with its own fixture (no test shares
//! ALSA's process-wide configuration), and each fixture holds the machine's real-time
//! slot, so the paced runs happen one at a time at the load each states.

use std::path::Path;
use std::process::Command;

use crate::support::alsa_fixture::{AlsaFixture, CpuBurner, RawAudio};
use crate::support::audio::{load, testdata};
use crate::support::u64_field;
use clearvox::io::read_wav_file;
use clearvox::metrics::estimate_delay;
use serde_json::Value;

fn to_i16(x: &[f32]) -> Vec<i16> {
    x.iter()
        .map(|v| (v * 32_768.0).round().clamp(-32_768.0, 32_767.0) as i16)
        .collect()
}

/// The 48 kHz mono test voice, and the 44.1 kHz stereo one, as 16-bit samples.
fn voice(stereo: bool) -> (Vec<i16>, u32, u16) {
    let file = if stereo {
        "noisy/gb_female__traffic__snr10__44k1_s24.wav"
    } else {
        "noisy/us_male__cafe__snr5__48k_f32.wav"
    };
    let (x, rate, ch) = load(&testdata(file));
    (to_i16(&x), rate, ch as u16)
}

fn clearvox() -> Command {
    Command::new(env!("CARGO_BIN_EXE_clearvox"))
}

/// Writes interleaved s16 samples as a WAV file.
fn write_s16(path: &Path, samples: &[i16], rate: u32, channels: u16) {
    let spec = hound::WavSpec {
        channels,
        sample_rate: rate,
        bits_per_sample: 16,
        sample_format: hound::SampleFormat::Int,
    };
    let mut w = hound::WavWriter::create(path, spec).unwrap();
    for s in samples {
        w.write_sample(*s).unwrap();
    }
    w.finalize().unwrap();
}

struct LiveRun {
    summary: Value,
    recording: Vec<f32>,
    stderr: String,
}

/// Runs `clearvox live` on the fixture for exactly the capture file's length.
fn live(fx: &AlsaFixture, dir: &Path, extra: &[&str]) -> LiveRun {
    let capture = fx.capture();
    let rec = dir.join("rec.wav");
    let seconds = format!("{:.9}", capture.frames() as f64 / capture.rate() as f64);
    let out = clearvox()
        .args(["live", "--json", "--record"])
        .arg(&rec)
        .args(["--duration", &seconds])
        .args(["--input-rate", &capture.rate().to_string()])
        .args(["--input-channels", &capture.channels().to_string()])
        .args(["--input-format", "s16"])
        .args(extra)
        .envs(fx.env())
        .output()
        .expect("clearvox runs");
    let stderr = String::from_utf8_lossy(&out.stderr).to_string();
    assert!(
        out.status.success(),
        "clearvox live failed: {stderr}\ndaemon log: {}",
        fx.daemon_log()
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    let summary: Value = serde_json::from_str(stdout.trim())
        .unwrap_or_else(|e| panic!("one JSON line expected ({e}): {stdout}"));
    LiveRun {
        summary,
        recording: read_wav_file(&rec).expect("a valid recording").samples,
        stderr,
    }
}

/// Offline enhancement of the same input with the CLI and the same preset.
fn offline(dir: &Path, samples: &[i16], rate: u32, channels: u16, preset: &str) -> Vec<f32> {
    let input = dir.join("in.wav");
    let output = dir.join("offline.wav");
    write_s16(&input, samples, rate, channels);
    let status = clearvox()
        .args(["enhance", "-q", "--preset", preset])
        .arg(&input)
        .arg("-o")
        .arg(&output)
        .status()
        .unwrap();
    assert!(status.success());
    read_wav_file(&output).unwrap().samples
}

/// Live (with `preset`) equals offline after the latency shift, the shift is what
/// cross-correlation finds, and nothing overran. Returns the statistics.
fn check_live_equals_offline(stereo: bool, extra: &[&str], burner: bool, preset: &str) -> Value {
    let (samples, rate, channels) = voice(stereo);
    let dir = tempfile::tempdir().unwrap();
    let fx = AlsaFixture::paced(&RawAudio::s16(&samples, channels).at_rate(rate));
    let _burner = burner.then(|| CpuBurner::start_in(fx.slot(), 1));
    let options: Vec<&str> = ["--preset", preset]
        .into_iter()
        .chain(extra.iter().copied())
        .collect();
    let run = live(&fx, dir.path(), &options);
    drop(_burner);
    let off = offline(dir.path(), &samples, rate, channels, preset);
    let stats = &run.summary["stats"];
    let latency = run.summary["stream"]["algorithmic_latency"]
        .as_u64()
        .unwrap() as usize;
    let frames = samples.len() / channels as usize;
    assert_eq!(
        run.recording.len(),
        frames + latency,
        "the recording holds the captured audio and the flushed tail"
    );
    assert_eq!(stats["overruns"], 0, "overruns: {stats}\n{}", run.stderr);
    // Identical samples once shifted by the reported latency.
    let shifted = &run.recording[latency..];
    let first = shifted.iter().zip(&off).position(|(a, b)| a != b);
    assert_eq!(
        first, None,
        "live and offline differ (first differing sample)"
    );
    // The shift cross-correlation finds is that latency: at 48 kHz at most 20 ms for
    // voice-chat, 40 ms for max-quality.
    let found = estimate_delay(&off, &run.recording, rate as usize / 10).lag;
    assert_eq!(found, latency as i64);
    if rate == 48_000 {
        let most = if preset == "max-quality" { 1_920 } else { 960 };
        assert!(latency <= most, "{preset}: {latency}");
    }
    eprintln!(
        "{preset}, {} Hz {} ch{}{}: latency {} samples, frame time p50 {} µs, p99 {} µs, max {} µs, \
         callbacks of up to {} frames, estimated end-to-end {:.1} ms",
        rate,
        channels,
        if extra.is_empty() { "" } else { " " },
        extra.join(" "),
        latency,
        stats["frame_time_p50_us"],
        stats["frame_time_p99_us"],
        stats["frame_time_max_us"],
        stats["max_callback_frames"],
        stats["latency_ms"].as_f64().unwrap_or(0.0),
    );
    stats.clone()
}

#[test]
fn paced_48k_mono_recording_equals_offline() {
    check_live_equals_offline(false, &[], false, "voice-chat");
}

#[test]
fn paced_44k1_stereo_recording_equals_offline() {
    check_live_equals_offline(true, &[], false, "voice-chat");
}

#[test]
fn paced_with_320_frame_callbacks() {
    // cpal asks ALSA for periods of the requested length and the pulse plugin cuts the
    // buffer in three: 10 ms (480 frames) asked gives 320-frame callbacks.
    let stats = check_live_equals_offline(false, &["--buffer-ms", "10"], false, "voice-chat");
    assert_eq!(stats["max_callback_frames"], 320, "{stats}");
}

#[test]
fn paced_with_the_other_core_busy() {
    check_live_equals_offline(false, &[], true, "voice-chat");
}

#[test]
fn max_quality_runs_live_without_overruns_with_the_other_core_busy() {
    // DeepFilterNet3 on the processing thread, at 30 ms of latency.
    let stats = check_live_equals_offline(false, &[], true, "max-quality");
    assert_eq!(stats["overruns"], 0, "{stats}");
}

#[test]
fn the_monitor_plays_the_enhanced_signal_into_the_device() {
    let (samples, rate, channels) = voice(false);
    let dir = tempfile::tempdir().unwrap();
    let fx = AlsaFixture::paced(&RawAudio::s16(&samples, channels).at_rate(rate));
    let run = live(&fx, dir.path(), &["--monitor"]);
    let monitor = &run.summary["stream"];
    assert_eq!(monitor["monitor_rate"], 48_000, "{monitor}");
    let stats = &run.summary["stats"];
    // The engine's promise: once primed, the monitor never runs dry while the signal
    // goes on (the silence after its end, until the CLI stops, is not counted).
    assert_eq!(stats["underruns"], 0, "{stats}");
    eprintln!(
        "monitor: {} underruns, {} stream errors, frame time max {} µs",
        stats["underruns"], stats["stream_errors"], stats["frame_time_max_us"]
    );
    // The device's default output configuration: stereo f32.
    let played: Vec<f32> = crate::support::alsa_fixture::f32_from_le(&fx.playback_bytes());
    assert!(
        played.len() > 48_000,
        "only {} samples played",
        played.len()
    );
    let left: Vec<f32> = played.chunks_exact(2).map(|f| f[0]).collect();
    assert!(
        played.chunks_exact(2).all(|f| f[0] == f[1]),
        "mono on both channels"
    );
    // The recording is the same signal in 16 bits: find it in what was played, then
    // compare sample by sample over a second of speech.
    let rec = &run.recording;
    let lag = estimate_delay(rec, &left, 48_000);
    assert!(lag.correlation > 0.99, "{lag:?}");
    let offset = lag.lag as usize;
    let stretch = 48_000..96_000;
    let worst = stretch
        .clone()
        .map(|i| (left[i + offset] - rec[i]).abs())
        .fold(0.0f32, f32::max);
    assert!(
        worst <= 1.0 / 32_768.0 + 1e-7,
        "monitor differs by up to {worst}"
    );
}

#[test]
fn a_ring_too_small_for_an_unpaced_device_overruns_and_says_so() {
    let (samples, rate, channels) = voice(false);
    let long: Vec<i16> = samples
        .iter()
        .copied()
        .cycle()
        .take(samples.len() * 5)
        .collect();
    let dir = tempfile::tempdir().unwrap();
    let fx = AlsaFixture::unpaced(&RawAudio::s16(&long, channels).at_rate(rate));
    let started = std::time::Instant::now();
    let run = live(&fx, dir.path(), &["--ring-ms", "1"]);
    let stats = &run.summary["stats"];
    assert!(u64_field(stats, "overruns") > 0, "{stats}");
    assert!(u64_field(stats, "overrun_frames") > 0, "{stats}");
    assert!(
        started.elapsed() < std::time::Duration::from_secs(60),
        "took {:?}",
        started.elapsed()
    );
}

#[test]
fn ctrl_c_stops_cleanly_with_a_valid_recording() {
    let (samples, rate, channels) = voice(false);
    let dir = tempfile::tempdir().unwrap();
    let fx = AlsaFixture::paced(&RawAudio::s16(&samples, channels).at_rate(rate));
    let rec = dir.path().join("rec.wav");
    let child = clearvox()
        .args([
            "live",
            "--json",
            "--input-rate",
            "48000",
            "--input-channels",
            "1",
        ])
        .args(["--input-format", "s16", "--record"])
        .arg(&rec)
        .envs(fx.env())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    std::thread::sleep(std::time::Duration::from_millis(1_500));
    // SAFETY: sending a signal to our own child process.
    let sent = unsafe { libc::kill(child.id() as libc::pid_t, libc::SIGINT) };
    assert_eq!(sent, 0);
    let out = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    let summary: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(summary["stopped_by"], "interrupt");
    let recording = read_wav_file(&rec).expect("a valid WAV after Ctrl-C");
    let seconds = recording.frames() as f64 / 48_000.0;
    assert!((0.8..3.0).contains(&seconds), "{seconds} s recorded");
    assert!(!dir
        .path()
        .read_dir()
        .unwrap()
        .any(|e| { e.unwrap().file_name().to_string_lossy().ends_with(".tmp") }));
}

#[test]
fn no_device_is_a_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    let conf = dir.path().join("asound.conf");
    std::fs::write(&conf, "# no devices at all\n").unwrap();
    let rec = dir.path().join("rec.wav");
    let out = clearvox()
        .args(["live", "--duration", "1", "--record"])
        .arg(&rec)
        .env("ALSA_CONFIG_PATH", &conf)
        .output()
        .unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    // alsa-lib prints its own diagnostics first; ours is the last line, and one line.
    let last = stderr.lines().last().unwrap_or_default();
    assert!(
        last.starts_with("error: ") && last.contains("device"),
        "{stderr}"
    );
    assert!(!rec.exists(), "no recording without capture");
}
