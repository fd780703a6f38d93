//! `clearvox metrics`: scores against a clean reference, as a table or JSON.

use std::path::Path;

use crate::support::cli::*;
use serde_json::Value;

const CLEAN_16K: &str = "clean/us_deep__fan__snr10__16k_s16.wav";

fn metrics_json(reference: &Path, test: &Path) -> Value {
    let run = clearvox()
        .args(["metrics", "--json", "--reference"])
        .arg(reference)
        .arg("--test")
        .arg(test)
        .output()
        .unwrap();
    assert!(run.status.success(), "{}", stderr_of(&run));
    assert_eq!(stderr_of(&run), "");
    serde_json::from_slice(&run.stdout).expect("--json prints JSON")
}

fn num(v: &Value, key: &str) -> f64 {
    v[key]
        .as_f64()
        .unwrap_or_else(|| panic!("{key} is not a number in {v}"))
}

#[test]
fn a_file_against_itself() {
    let clean = testdata(CLEAN_16K);
    let v = metrics_json(&clean, &clean);
    assert_eq!(v["delay_samples"], 0);
    assert!(num(&v, "stoi") > 0.9999);
    assert!(num(&v, "si_sdr_db") > 100.0);
    // An exact copy has no noise at all: an infinite SNR, which JSON spells null.
    assert!(v["snr_db"].is_null());
    assert_eq!(v["sample_rate"], 16_000);
    assert_eq!(v["reference"]["path"], clean.to_str().unwrap());
}

#[test]
fn noisy_against_clean_as_a_table_and_as_json() {
    let clean = testdata(CLEAN_16K);
    let noisy = testdata(S16_16K);
    let v = metrics_json(&clean, &noisy);
    assert_eq!(v["delay_samples"], 0);
    for key in ["snr_db", "si_sdr_db", "seg_snr_db", "stoi"] {
        assert!(num(&v, key).is_finite(), "{key}");
    }
    let stoi = num(&v, "stoi");
    assert!(stoi < 0.99 && stoi > 0.5, "{stoi}");
    // The mixture is at 10 dB speech-active SNR; over the whole file it is a little less.
    assert!((5.0..12.0).contains(&num(&v, "si_sdr_db")), "{v}");

    let run = clearvox()
        .args(["metrics", "--reference"])
        .arg(&clean)
        .arg("--test")
        .arg(&noisy)
        .output()
        .unwrap();
    assert!(run.status.success());
    let table = String::from_utf8(run.stdout).unwrap();
    for label in [
        "reference",
        "test",
        "delay",
        "SNR",
        "SI-SDR",
        "segSNR",
        "STOI",
    ] {
        assert!(
            table.lines().any(|l| l.starts_with(label)),
            "{label} missing:\n{table}"
        );
    }
    let stoi_line = table.lines().find(|l| l.starts_with("STOI")).unwrap();
    assert!(stoi_line.contains(&format!("{stoi:.4}")), "{table}");
}

#[test]
fn a_delayed_copy_reports_its_delay() {
    let dir = tempfile::tempdir().unwrap();
    let clean = read_wav(&testdata(CLEAN_16K));
    let delayed = dir.path().join("delayed.wav");
    let mut w = hound::WavWriter::create(&delayed, clean.spec).unwrap();
    for _ in 0..100 {
        w.write_sample(0i16).unwrap();
    }
    for s in &clean.samples {
        w.write_sample((s * 32_768.0).round() as i16).unwrap();
    }
    w.finalize().unwrap();
    let v = metrics_json(&testdata(CLEAN_16K), &delayed);
    assert_eq!(v["delay_samples"], 100);
    assert!((num(&v, "delay_ms") - 6.25).abs() < 1e-9);
    assert!(num(&v, "stoi") > 0.999);
    assert!(num(&v, "si_sdr_db") > 60.0);
}

#[test]
fn a_test_file_at_another_rate_is_resampled() {
    let dir = tempfile::tempdir().unwrap();
    let up = dir.path().join("up.wav");
    let run = clearvox()
        .args([
            "enhance",
            "-q",
            "--preset",
            "bypass",
            "--output-rate",
            "48000",
        ])
        .args(["--format", "f32"])
        .arg(testdata(CLEAN_16K))
        .arg("-o")
        .arg(&up)
        .output()
        .unwrap();
    assert!(run.status.success(), "{}", stderr_of(&run));
    let v = metrics_json(&testdata(CLEAN_16K), &up);
    assert_eq!(v["sample_rate"], 16_000);
    assert_eq!(v["test"]["sample_rate"], 48_000);
    assert_eq!(v["test"]["resampled_to"], 16_000);
    assert_eq!(v["delay_samples"], 0);
    assert!(num(&v, "stoi") > 0.99);
    assert!(num(&v, "si_sdr_db") > 20.0, "{v}");
}

#[test]
fn unreadable_files_are_one_line_errors() {
    let dir = tempfile::tempdir().unwrap();
    let run = clearvox()
        .args(["metrics", "--reference"])
        .arg(dir.path().join("missing.wav"))
        .arg("--test")
        .arg(testdata(CLEAN_16K))
        .output()
        .unwrap();
    assert!(!run.status.success());
    let err = stderr_of(&run);
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(err.starts_with("error: reference: cannot open "), "{err}");
    assert!(
        err.contains("missing.wav") && err.contains("No such file"),
        "{err}"
    );
}
