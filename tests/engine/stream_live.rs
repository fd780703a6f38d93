//! `clearvox live --stream` on a real ALSA device (the paced `file` plugin of
//! `tests/support/alsa_fixture.rs`: the test voice delivered bit for bit at the pace of
//! real time) into `clearvox serve`: what the receiver writes equals the offline
//! enhancement at the backend's rate once the pipeline's latency is removed, value for
//! value.

use std::path::Path;

use crate::support::alsa_fixture::{AlsaFixture, RawAudio};
use crate::support::stream::*;
use clearvox::io::read_wav_file;
use serde_json::Value;

/// A test voice as 16-bit samples (what the device delivers), written as a WAV file too.
fn voice(file: &str, dir: &Path) -> (Vec<i16>, u32, u16, std::path::PathBuf) {
    let a = read_wav_file(&testdata(file)).unwrap();
    let samples: Vec<i16> = a
        .samples
        .iter()
        .map(|v| (v * 32_768.0).round().clamp(-32_768.0, 32_767.0) as i16)
        .collect();
    let path = dir.join("captured.wav");
    let as_f32: Vec<f32> = samples.iter().map(|&s| s as f32 / 32_768.0).collect();
    write_wav(&path, &as_f32, a.spec.sample_rate, a.spec.channels);
    (samples, a.spec.sample_rate, a.spec.channels, path)
}

/// Captures `file` live for exactly its length and streams it; returns the received
/// stream, the offline result at `rate`, the latency and the live summary.
fn live_stream(file: &str, rate: u32, extra: &[&str]) -> (Received, Vec<i16>, usize, Value) {
    let dir = tempfile::tempdir().unwrap();
    let (samples, in_rate, channels, wav) = voice(file, dir.path());
    let out = dir.path().join("out");
    let serve = Serve::start(&out);
    let fx = AlsaFixture::paced(&RawAudio::s16(&samples, channels).at_rate(in_rate));
    let frames = samples.len() / channels as usize;
    let seconds = format!("{:.9}", frames as f64 / in_rate as f64);
    let run = clearvox()
        .args(["live", "--json", "--stream", &serve.url()])
        .args(["--duration", &seconds])
        .args(["--input-rate", &in_rate.to_string()])
        .args(["--input-channels", &channels.to_string()])
        .args(["--input-format", "s16"])
        .args(extra)
        .envs(fx.env())
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&run.stderr);
    assert!(
        run.status.success(),
        "clearvox live failed: {stderr}\ndaemon log: {}",
        fx.daemon_log()
    );
    let stdout = String::from_utf8_lossy(&run.stdout);
    // The summary is the last line (server messages, if any, come before it).
    let summary: Value = serde_json::from_str(stdout.lines().last().unwrap_or_default())
        .unwrap_or_else(|e| panic!("a JSON summary ({e}): {stdout}"));
    let s = the_stream(&out);
    wait_ended(&out, &s.id);
    let s = the_stream(&out);
    drop(serve);
    let off = offline(&wav, rate, dir.path());
    let latency = pipeline_latency(&wav, rate);
    assert_eq!(summary["stats"]["overruns"], 0, "{summary}");
    assert_eq!(summary["stopped_by"], "duration", "{summary}");
    let network = &summary["network"];
    for zero in ["dropped_samples", "dropped_frames", "reconnects"] {
        assert_eq!(network[zero], 0, "{zero}: {network}");
    }
    assert_eq!(network["acked_samples"], s.samples.len(), "{network}");
    (s, off, latency, summary)
}

#[test]
fn live_48k_mono_streams_the_offline_enhancement_at_16k() {
    let (s, off, latency, summary) = live_stream(F32_48K, 16_000, &[]);
    assert_eq!(s.rate, 16_000);
    assert_equals_offline(&s.samples, &off, latency, "live --stream raw 16 kHz");
    eprintln!(
        "live 48 kHz mono → raw 16 kHz: {} samples, latency {latency}, frame time p99 {} µs, \
         ack round trip mean {} ms",
        s.samples.len(),
        summary["stats"]["frame_time_p99_us"],
        summary["network"]["ack_rtt_mean_ms"],
    );
}

#[test]
fn live_44k1_stereo_streams_the_offline_enhancement_at_24k_openai() {
    let (s, off, latency, _) = live_stream(S24_44K_STEREO, 24_000, &["--protocol", "openai"]);
    assert_eq!(s.rate, 24_000);
    assert_eq!(s.lines("session.update").len(), 1);
    assert_equals_offline(&s.samples, &off, latency, "live --stream openai 24 kHz");
}
