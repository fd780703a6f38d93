//! Every example runs and says what it should: `offline` on the test data, `voice_chat`
//! on a real (paced) ALSA device, `stream_to_backend` into `clearvox serve`. (The C
//! example runs in `tests/c_abi.rs`.)
//!
//! `offline` and `stream_to_backend` keep a core busy while they run, so they hold a
//! real-time slot like the paced tests of this binary, which they would disturb.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use crate::support::alsa_fixture::{AlsaFixture, RawAudio};
use crate::support::audio::{load, testdata};
use crate::support::realtime_slot::RealTimeSlot;

/// An example's binary, built by `cargo test` beside the test binaries.
fn example(name: &str) -> PathBuf {
    let exe = std::env::current_exe().expect("the test binary's path");
    let dir = exe
        .parent()
        .and_then(Path::parent)
        .expect("the test binary is in target/PROFILE/deps")
        .join("examples");
    let path = dir.join(name);
    assert!(path.exists(), "{} is not built", path.display());
    path
}

fn run(cmd: &mut Command) -> String {
    let out = cmd.output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(
        out.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    stdout
}

#[test]
fn offline_prints_better_metrics() {
    let _slot = RealTimeSlot::acquire();
    let out = run(&mut Command::new(example("offline")));
    let si_sdr = |label: &str| -> f64 {
        let line = out
            .lines()
            .find(|l| l.starts_with(label) && !l.contains(':'))
            .unwrap_or_else(|| panic!("no line \"{label} ...\" in {out}"));
        line.split_whitespace()
            .nth(1)
            .and_then(|v| v.parse().ok())
            .unwrap_or_else(|| panic!("no number after {label}: {line}"))
    };
    assert!(si_sdr("enhanced") > si_sdr("input") + 2.0, "{out}");
    assert!(out.contains("delay 0 samples"), "{out}");
}

#[test]
fn voice_chat_receives_frames_from_a_real_device() {
    let (x, _, _) = load(&testdata("noisy/us_male__cafe__snr5__48k_f32.wav"));
    let samples: Vec<i16> = x.iter().map(|v| (v * 32_768.0).round() as i16).collect();
    // The example opens the device's default configuration: stereo f32 at 48 kHz.
    let stereo: Vec<f32> = samples
        .iter()
        .flat_map(|s| [*s as f32 / 32_768.0; 2])
        .collect();
    let fx = AlsaFixture::paced(&RawAudio::f32(&stereo, 2).at_rate(48_000));
    let out = run(Command::new(example("voice_chat")).arg("2").envs(fx.env()));
    assert!(out.contains("capturing from"), "{out}");
    let received: u64 = out
        .lines()
        .find_map(|l| l.strip_prefix("received "))
        .and_then(|l| l.split_whitespace().next())
        .and_then(|n| n.parse().ok())
        .unwrap_or(0);
    // Two seconds at 16 kHz (the example asks for 16 kHz frames), give or take a period.
    assert!((28_000..=40_000).contains(&received), "{out}");
    assert!(out.contains("0 overruns"), "{out}");
}

#[test]
fn stream_to_backend_delivers_a_file_to_the_reference_receiver() {
    let _slot = RealTimeSlot::acquire();
    let dir = tempfile::tempdir().unwrap();
    let mut serve = Command::new(env!("CARGO_BIN_EXE_clearvox"))
        .args(["serve", "--listen", "127.0.0.1:0", "--out"])
        .arg(dir.path())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(serve.stderr.take().expect("stderr is piped")).lines();
    let first = lines
        .next()
        .expect("clearvox serve says where it listens")
        .expect("reading clearvox serve's stderr");
    let url = first.trim_start_matches("listening on ").to_string();
    let out = Command::new(example("stream_to_backend"))
        .arg(format!("{url}/"))
        .arg(testdata("noisy/us_deep__hum__snr5__16k_s16.wav"))
        .output()
        .unwrap();
    let _ = serve.kill();
    let _ = serve.wait();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.contains("0 dropped"), "{stdout}");
    let wav = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| p.extension().is_some_and(|e| e == "wav"))
        .expect("a received stream");
    let received = clearvox::io::read_wav_file(&wav).unwrap();
    assert!(received.duration_s() > 4.0, "{}", received.duration_s());
}
