//! Unusable input: one `error:` line that names the problem, a non-zero exit, no output
//! (and no temporary file) left behind, and an existing output untouched. Damage the
//! reader can work around gives one `warning:` line and an output instead.

use std::fs;
use std::path::Path;

use crate::support::cli::*;

const SENTINEL: &[u8] = b"an existing output that must survive";

/// The 16 kHz 16-bit mono test file: a plain 44-byte header.
fn valid() -> Vec<u8> {
    fs::read(testdata(S16_16K)).unwrap()
}

/// Offsets in a plain PCM header.
const FORMAT_TAG: usize = 20;
const CHANNELS: usize = 22;
const SAMPLE_RATE: usize = 24;
const BLOCK_ALIGN: usize = 32;

/// Runs `clearvox enhance <input> -o <output>`; requires a failure with exactly one
/// stderr line, `error: ...` containing `phrase`; returns that line.
fn fails(input: &Path, output: &Path, phrase: &str) -> String {
    let run = clearvox()
        .arg("enhance")
        .arg(input)
        .arg("-o")
        .arg(output)
        .output()
        .unwrap();
    assert!(!run.status.success(), "{} was accepted", input.display());
    let err = stderr_of(&run);
    let lines: Vec<&str> = err.lines().collect();
    assert_eq!(lines.len(), 1, "not one line: {err}");
    assert!(lines[0].starts_with("error: "), "{err}");
    assert!(lines[0].contains(phrase), "{phrase:?} not in: {err}");
    assert!(run.stdout.is_empty());
    lines[0].to_string()
}

/// Feeds `bytes` (or nothing, for `None`: a path that does not exist) to enhance twice:
/// without an output file, which must not appear, and over an existing output, which
/// must keep its bytes. Nothing else may appear in the folder either time.
fn rejected(bytes: Option<&[u8]>, phrase: &str) {
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("input.wav");
    if let Some(b) = bytes {
        fs::write(&input, b).unwrap();
    }
    let before = listing(dir.path());
    let output = dir.path().join("output.wav");
    let line = fails(&input, &output, phrase);
    assert!(line.contains("input.wav"), "the file is not named: {line}");
    assert_eq!(listing(dir.path()), before, "files left behind");

    fs::write(&output, SENTINEL).unwrap();
    let before = listing(dir.path());
    fails(&input, &output, phrase);
    assert_eq!(
        fs::read(&output).unwrap(),
        SENTINEL,
        "existing output changed"
    );
    assert_eq!(listing(dir.path()), before, "files left behind");
}

#[test]
fn truncated_header() {
    rejected(Some(&valid()[..30]), "header is truncated");
}

#[test]
fn wrong_magic() {
    rejected(Some(&patch(&valid(), 0, b"RIFX")), "big-endian");
    rejected(Some(&patch(&valid(), 0, b"JUNK")), "not a WAV file");
    rejected(Some(&patch(&valid(), 8, b"AVI ")), "not a WAV file");
}

#[test]
fn a_text_file() {
    rejected(
        Some(b"Hello, this is not audio at all.\n"),
        "not a WAV file: it starts with \"Hell\"",
    );
}

#[test]
fn zero_channels() {
    rejected(
        Some(&patch(&valid(), CHANNELS, &0u16.to_le_bytes())),
        "unsupported channel count 0",
    );
}

#[test]
fn thirty_two_channels() {
    let b = patch(&valid(), CHANNELS, &32u16.to_le_bytes());
    let b = patch(&b, BLOCK_ALIGN, &64u16.to_le_bytes());
    rejected(Some(&b), "unsupported channel count 32");
}

#[test]
fn zero_sample_rate() {
    rejected(
        Some(&patch(&valid(), SAMPLE_RATE, &0u32.to_le_bytes())),
        "unsupported sample rate 0 Hz",
    );
}

#[test]
fn sample_rate_768_khz() {
    rejected(
        Some(&patch(&valid(), SAMPLE_RATE, &768_000u32.to_le_bytes())),
        "unsupported sample rate 768000 Hz",
    );
}

#[test]
fn empty_data_chunk() {
    let b = valid();
    let data = chunk_offset(&b, b"data");
    let header_only = patch(&b[..data + 8], data + 4, &0u32.to_le_bytes());
    rejected(Some(&header_only), "the data chunk is empty");
}

#[test]
fn mp3_format_tag() {
    rejected(
        Some(&patch(&valid(), FORMAT_TAG, &0x0055u16.to_le_bytes())),
        "format tag 0x0055",
    );
}

#[test]
fn an_empty_file() {
    rejected(Some(b""), "empty (0 bytes)");
}

#[test]
fn a_path_that_does_not_exist() {
    rejected(None, "cannot open");
    let dir = tempfile::tempdir().unwrap();
    fails(
        &dir.path().join("missing.wav"),
        &dir.path().join("out.wav"),
        "No such file or directory",
    );
}

#[test]
fn an_output_folder_that_does_not_exist() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("no/such/folder");
    fails(
        &testdata(S16_16K),
        &missing.join("out.wav"),
        "output folder does not exist",
    );
    fails(&testdata("noisy"), &missing, "output folder does not exist");
    assert!(listing(dir.path()).is_empty());
}

#[test]
fn the_output_cannot_be_the_input() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("same.wav");
    fs::write(&file, valid()).unwrap();
    fails(&file, &file, "is the input file");
    assert!(fs::read(&file).unwrap() == valid());
    assert_eq!(listing(dir.path()), ["same.wav"]);
}

/// Runs enhance on `bytes` and requires success with exactly one warning line
/// containing `phrase`; returns the output.
fn repaired(bytes: &[u8], phrase: &str) -> Wav {
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("damaged.wav");
    fs::write(&input, bytes).unwrap();
    let output = dir.path().join("out.wav");
    let run = clearvox()
        .args(["enhance", "-q"])
        .arg(&input)
        .arg("-o")
        .arg(&output)
        .output()
        .unwrap();
    let err = stderr_of(&run);
    assert!(run.status.success(), "{err}");
    let lines: Vec<&str> = err.lines().collect();
    assert_eq!(lines.len(), 1, "{err}");
    assert!(
        lines[0].starts_with(&format!("warning: {}: ", input.display())),
        "{err}"
    );
    assert!(lines[0].contains(phrase), "{phrase:?} not in: {err}");
    assert_eq!(listing(dir.path()), ["damaged.wav", "out.wav"]);
    read_wav(&output)
}

#[test]
fn nan_and_inf_samples_are_replaced_with_a_warning() {
    let original = fs::read(testdata(F32_48K)).unwrap();
    let data = chunk_offset(&original, b"data") + 8;
    let mut b = original.clone();
    for (i, v) in [f32::NAN, f32::INFINITY, f32::NEG_INFINITY, f32::NAN]
        .into_iter()
        .enumerate()
    {
        let at = data + 4 * (10_000 + 1_000 * i);
        b[at..at + 4].copy_from_slice(&v.to_le_bytes());
    }
    let out = repaired(&b, "replaced 4 NaN/Inf samples");
    assert_eq!(out.frames(), read_wav(&testdata(F32_48K)).frames());
    assert!(out.samples.iter().all(|v| v.is_finite() && v.abs() <= 1.0));
}

#[test]
fn a_data_chunk_longer_than_the_file_is_kept_with_a_warning() {
    let b = valid();
    let data = chunk_offset(&b, b"data") + 8;
    // Cut the file after 1.5 s of its audio; the header still claims all of it.
    let kept = 24_000 * 2;
    let out = repaired(&b[..data + kept], "data chunk claims 133808 bytes");
    assert_eq!(out.frames(), kept / 2);
}

/// A bad `--echo-ref` (missing, corrupt, or beside a batch) is one line naming it, and
/// no output appears or changes.
#[test]
fn a_bad_echo_reference_is_one_line_and_writes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("mic.wav");
    fs::write(&input, valid()).unwrap();
    let corrupt = dir.path().join("far.wav");
    fs::write(&corrupt, b"RIFF\0\0\0\0WAVEjunk").unwrap();
    let output = dir.path().join("out.wav");
    fs::write(&output, SENTINEL).unwrap();
    let folder = dir.path().join("out");
    fs::create_dir(&folder).unwrap();
    let second = dir.path().join("mic2.wav");
    fs::write(&second, valid()).unwrap();
    let missing = dir.path().join("missing.wav");
    let cases: [(Vec<&Path>, &Path, &Path, &str); 3] = [
        (vec![&input], &missing, &output, "missing.wav"),
        (vec![&input], &corrupt, &output, "far.wav"),
        (vec![&input, &second], &corrupt, &folder, "--echo-ref"),
    ];
    for (inputs, far, out, phrase) in cases {
        let before = listing(dir.path());
        let run = clearvox()
            .arg("enhance")
            .args(&inputs)
            .arg("--echo-ref")
            .arg(far)
            .arg("-o")
            .arg(out)
            .output()
            .unwrap();
        assert!(!run.status.success(), "{} was accepted", far.display());
        let err = stderr_of(&run);
        assert_eq!(err.lines().count(), 1, "not one line: {err}");
        assert!(err.starts_with("error: ") && err.contains(phrase), "{err}");
        assert_eq!(fs::read(&output).unwrap(), SENTINEL, "the output changed");
        assert_eq!(listing(dir.path()), before, "files left behind");
    }
}
