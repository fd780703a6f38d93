//! What the test binaries share: where the test data and the development set are, the
//! rule for a test whose prerequisite is missing, and one module per kind of fixture.
//!
//! Every test binary (`tests/AREA/main.rs` with its modules beside it, `tests/c_abi.rs`,
//! `tests/stream_load.rs`) declares this module and uses what it needs; the rest is
//! compiled but unused there, hence the allowances.
#![allow(dead_code, unused_imports)]

pub mod alsa_fixture;
pub mod audio;
pub mod cli;
pub mod fake_device;
pub mod realtime_slot;
pub mod stream;

use std::ffi::OsStr;
use std::io::Write;
use std::path::{Path, PathBuf};

/// 8 kHz mono 16-bit: café babble at 10 dB.
pub const S16_8K: &str = "noisy/rp_female__cafe__snr10__8k_s16.wav";
/// 16 kHz mono 16-bit: fan noise at 10 dB.
pub const S16_16K: &str = "noisy/us_deep__fan__snr10__16k_s16.wav";
/// 44.1 kHz stereo 24-bit: traffic at 10 dB.
pub const S24_44K_STEREO: &str = "noisy/gb_female__traffic__snr10__44k1_s24.wav";
/// 48 kHz mono 32-bit float, babble noise (the VAD hears speech in it throughout).
pub const F32_48K: &str = "noisy/us_male__cafe__snr5__48k_f32.wav";
/// 48 kHz mono 32-bit float, fan noise: two utterances (the comma pause).
pub const F32_48K_FAN: &str = "noisy/us_male__fan__snr0__48k_f32.wav";
/// 16 kHz mono 16-bit fan noise alone.
pub const NOISE_FAN: &str = "noise_only/fan__16k_s16.wav";

/// A file (or folder) of the repository's committed test data, `testdata/`.
pub fn testdata(rel: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("testdata")
        .join(rel)
}

/// The number `key` of a JSON object (a report, a stream's statistics, a message), or a
/// failure that shows the object.
#[track_caller]
pub fn u64_field(v: &serde_json::Value, key: &str) -> u64 {
    v[key]
        .as_u64()
        .unwrap_or_else(|| panic!("no whole number \"{key}\" in {v}"))
}

/// As [`u64_field`], for a number with a fraction.
#[track_caller]
pub fn f64_field(v: &serde_json::Value, key: &str) -> f64 {
    v[key]
        .as_f64()
        .unwrap_or_else(|| panic!("no number \"{key}\" in {v}"))
}

/// As [`u64_field`], for a string.
#[track_caller]
pub fn str_field<'a>(v: &'a serde_json::Value, key: &str) -> &'a str {
    v[key]
        .as_str()
        .unwrap_or_else(|| panic!("no string \"{key}\" in {v}"))
}

/// The environment variable that names the development set's folder.
pub const DEVSET_VAR: &str = "CLEARVOX_DEVSET";

/// The development set of real noisy speech (`clean/` and `noisy/` WAV files of the
/// same names), which is not part of the repository (licences): the folder named by
/// `CLEARVOX_DEVSET`, else `../shared/data` beside the repository.
///
/// `None` when it is not there, after the rule of [`missing`]: a test calls
/// `let Some(dir) = support::devset() else { return };`, which fails under `CI=true`
/// and is skipped, saying so, elsewhere.
#[track_caller]
pub fn devset() -> Option<PathBuf> {
    let named = std::env::var_os(DEVSET_VAR);
    let dir = devset_dir(named.as_deref());
    if dir.join("clean").is_dir() && dir.join("noisy").is_dir() {
        return Some(dir);
    }
    let how = match named {
        Some(_) => format!("the folder {DEVSET_VAR} names"),
        None => format!("../shared/data beside the repository, as {DEVSET_VAR} is not set"),
    };
    missing(
        &format!(
            "the development set is not at {} ({how}; it needs clean/ and noisy/)",
            dir.display()
        ),
        &format!("set {DEVSET_VAR} to the folder that holds it"),
    );
    None
}

/// Where the development set is looked for, given the value of `CLEARVOX_DEVSET`.
fn devset_dir(named: Option<&OsStr>) -> PathBuf {
    match named {
        Some(dir) => PathBuf::from(dir),
        None => Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared/data"),
    }
}

/// Whether the tests run in continuous integration: `CI` set to anything but an empty
/// string, `0` or `false` (CI sets `CI=true`).
pub fn in_ci() -> bool {
    std::env::var_os("CI").is_some_and(|v| !v.is_empty() && v != "0" && v != "false")
}

/// The rule for a test whose prerequisite (a data set, an installed program) is
/// missing: under CI it fails, saying `what` is missing and `fix`, how to provide it;
/// elsewhere it prints a line saying it is skipped and why, and the test returns.
///
/// The skip line goes to stderr directly, past the harness's capture, so that a plain
/// `cargo test` shows it.
#[track_caller]
pub fn missing(what: &str, fix: &str) {
    assert!(!in_ci(), "{what}: {fix}");
    let mut e = std::io::stderr().lock();
    let _ = writeln!(e, "skipped: {what}: {fix}");
}

/// The `clearvox` binary built for these tests (the `cli` feature, which the test
/// binaries that run it require in Cargo.toml).
pub fn clearvox_binary() -> &'static str {
    match option_env!("CARGO_BIN_EXE_clearvox") {
        Some(path) => path,
        None => panic!("the clearvox binary is not built: these tests need the `cli` feature"),
    }
}
