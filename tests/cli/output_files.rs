//! What `clearvox enhance` writes, under misuse: the report never replaces an input or
//! the output, its temporary file never follows a planted link, outputs keep their
//! input's permissions, and `-o -` streams in bounded memory.

use std::fs;
use std::io::{Read, Write};
use std::path::Path;
use std::process::{Command, Stdio};

use crate::support::cli::*;

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

/// Runs `clearvox enhance -q <args>` in `dir`; requires a failure with one `error:`
/// line containing every phrase, and nothing on stdout.
fn refused(dir: &Path, args: &[&str], phrases: &[&str]) {
    let run = clearvox()
        .current_dir(dir)
        .args(["enhance", "-q", "--preset", "bypass"])
        .args(args)
        .output()
        .unwrap();
    let err = stderr_of(&run);
    assert!(!run.status.success(), "{args:?} was accepted: {err}");
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(err.starts_with("error: "), "{err}");
    for p in phrases {
        assert!(err.contains(p), "{p:?} not in {err}");
    }
    assert!(run.stdout.is_empty());
}

/// Runs `clearvox enhance -q --preset bypass <args>` in `dir` and requires success.
fn accepted(dir: &Path, args: &[&str]) {
    let run = clearvox()
        .current_dir(dir)
        .args(["enhance", "-q", "--preset", "bypass"])
        .args(args)
        .output()
        .unwrap();
    assert!(run.status.success(), "{args:?}: {}", stderr_of(&run));
}

/// An input `in.wav` (whose bytes it returns), a hard link of it `linked.wav`, and a
/// configuration file `settings.toml`, in `d`.
fn inputs(d: &Path) -> Vec<u8> {
    let original = fs::read(testdata(S16_16K)).unwrap();
    fs::write(d.join("in.wav"), &original).unwrap();
    fs::hard_link(d.join("in.wav"), d.join("linked.wav")).unwrap();
    fs::write(d.join("settings.toml"), "strength = 0.5\n").unwrap();
    original
}

#[test]
fn the_report_never_replaces_an_input() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let original = inputs(d);
    fs::create_dir(d.join("sub")).unwrap();
    for report in ["in.wav", "./in.wav", "sub/../in.wav", "linked.wav"] {
        refused(
            d,
            &["in.wav", "-o", "out.wav", "--report", report],
            &["report ", report, "is the input file"],
        );
    }
    // Every input of a batch, and the other files the run reads.
    fs::create_dir(d.join("outs")).unwrap();
    refused(
        d,
        &["in.wav", "sub", "-o", "outs", "--report", "./in.wav"],
        &["is the input file"],
    );
    refused(
        d,
        &[
            "in.wav",
            "-o",
            "out.wav",
            "--config",
            "settings.toml",
            "--report",
            "./settings.toml",
        ],
        &["is the input file settings.toml"],
    );
    assert_eq!(fs::read(d.join("in.wav")).unwrap(), original);
    assert_eq!(
        fs::read_to_string(d.join("settings.toml")).unwrap(),
        "strength = 0.5\n"
    );
    assert_eq!(
        listing(d),
        ["in.wav", "linked.wav", "outs", "settings.toml", "sub"]
    );
    assert!(listing(&d.join("outs")).is_empty());
}

#[test]
fn the_output_never_replaces_an_input_either() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let original = inputs(d);
    refused(
        d,
        &["in.wav", "-o", "linked.wav"],
        &["output linked.wav is the input file"],
    );
    refused(
        d,
        &[
            "in.wav",
            "-o",
            "./settings.toml",
            "--config",
            "settings.toml",
        ],
        &["output ./settings.toml is the input file settings.toml"],
    );
    // stdin redirected from the very file: neither the output nor the report.
    for args in [
        &["-", "-o", "./in.wav"][..],
        &["-", "-o", "out.wav", "--report", "linked.wav"],
    ] {
        let run = Command::new(crate::support::clearvox_binary())
            .current_dir(d)
            .args(["enhance", "-q", "--preset", "bypass"])
            .args(args)
            .stdin(fs::File::open(d.join("in.wav")).unwrap())
            .output()
            .unwrap();
        let err = stderr_of(&run);
        assert!(!run.status.success(), "{args:?} was accepted");
        assert!(err.contains("is the file stdin reads"), "{err}");
    }
    assert_eq!(fs::read(d.join("in.wav")).unwrap(), original);
    assert_eq!(fs::read(d.join("linked.wav")).unwrap(), original);
    assert_eq!(listing(d), ["in.wav", "linked.wav", "settings.toml"]);
}

#[test]
fn the_report_never_replaces_the_output() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    fs::copy(testdata(S16_16K), d.join("in.wav")).unwrap();
    for report in ["out.wav", "./out.wav", "sub/../out.wav"] {
        fs::create_dir_all(d.join("sub")).unwrap();
        refused(
            d,
            &["in.wav", "-o", "out.wav", "--report", report],
            &["is the output file out.wav"],
        );
        assert!(!d.join("out.wav").exists());
    }
    // An existing output reached through a hard link.
    fs::write(d.join("out.wav"), b"previous").unwrap();
    fs::hard_link(d.join("out.wav"), d.join("alias.json")).unwrap();
    refused(
        d,
        &["in.wav", "-o", "out.wav", "--report", "alias.json"],
        &["is the output file out.wav"],
    );
    assert_eq!(fs::read(d.join("out.wav")).unwrap(), b"previous");
    // One of a batch's outputs.
    fs::create_dir(d.join("outs")).unwrap();
    fs::copy(testdata(S16_8K), d.join("other.wav")).unwrap();
    refused(
        d,
        &[
            "in.wav",
            "other.wav",
            "-o",
            "outs",
            "--report",
            "outs/other.wav",
        ],
        &["is the output file outs/other.wav"],
    );
    assert!(listing(&d.join("outs")).is_empty());
    // The output given as a folder: the file inside it.
    refused(
        d,
        &["in.wav", "-o", "outs", "--report", "outs/./in.wav"],
        &["is the output file"],
    );
    accepted(d, &["in.wav", "-o", "out.wav", "--report", "report.json"]);
    read_wav(&d.join("out.wav"));
    let v: serde_json::Value =
        serde_json::from_str(&fs::read_to_string(d.join("report.json")).unwrap()).unwrap();
    assert_eq!(v["files"][0]["output"], "out.wav");
}

#[cfg(unix)]
#[test]
fn the_reports_temporary_file_never_follows_a_planted_link() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let victim = d.join("victim.txt");
    fs::write(&victim, b"not yours").unwrap();
    // Reading stdin, the child waits for the audio: links are planted at the names its
    // temporary files could predictably have before it writes anything.
    let mut child = Command::new(crate::support::clearvox_binary())
        .current_dir(d)
        .args(["enhance", "-q", "--preset", "bypass", "-", "-o", "out.wav"])
        .args(["--report", "report.json"])
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let pid = child.id();
    let planted: Vec<String> = std::iter::once(format!(".report.json.{pid}.tmp"))
        .chain((0..4).map(|n| format!(".report.json.{pid}.{n}.tmp")))
        .chain((0..4).map(|n| format!(".out.wav.{pid}.{n}.tmp")))
        .collect();
    for name in &planted {
        std::os::unix::fs::symlink(&victim, d.join(name)).unwrap();
    }
    let mut stdin = child.stdin.take().unwrap();
    stdin
        .write_all(&fs::read(testdata(S16_16K)).unwrap())
        .unwrap();
    drop(stdin);
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success(), "{}", stderr_of(&out));
    assert!(
        fs::read(&victim).unwrap() == b"not yours",
        "the file a planted link points to was overwritten"
    );
    for name in &planted {
        let meta = fs::symlink_metadata(d.join(name)).unwrap();
        assert!(meta.is_symlink(), "{name} was replaced");
    }
    assert!(!fs::symlink_metadata(d.join("report.json"))
        .unwrap()
        .is_symlink());
    let v: serde_json::Value =
        serde_json::from_str(&fs::read_to_string(d.join("report.json")).unwrap()).unwrap();
    assert_eq!(v["files"][0]["input"], "-");
    read_wav(&d.join("out.wav"));
}

#[cfg(unix)]
#[test]
fn outputs_and_the_report_keep_the_inputs_permissions() {
    use std::os::unix::fs::PermissionsExt;
    let mode = |p: &Path| fs::metadata(p).unwrap().permissions().mode() & 0o777;
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    // 0o604 is what no umask gives: the bits can only come from the input.
    for bits in [0o600, 0o604, 0o644] {
        let input = d.join(format!("in{bits:o}.wav"));
        fs::copy(testdata(S16_16K), &input).unwrap();
        fs::set_permissions(&input, fs::Permissions::from_mode(bits)).unwrap();
        let out = d.join(format!("out{bits:o}.wav"));
        let report = d.join(format!("report{bits:o}.json"));
        // Twice: a new output, then one replaced.
        for _ in 0..2 {
            accepted(d, &[s(&input), "-o", s(&out), "--report", s(&report)]);
            assert_eq!(mode(&out), bits, "output of a {bits:o} input");
            assert_eq!(mode(&report), bits, "report of a {bits:o} input");
        }
    }
    // A batch: the report only keeps what every input allows.
    fs::create_dir(d.join("outs")).unwrap();
    let report = d.join("batch.json");
    accepted(
        d,
        &[
            "in600.wav",
            "in644.wav",
            "-o",
            "outs",
            "--report",
            s(&report),
        ],
    );
    assert_eq!(mode(&d.join("outs/in600.wav")), 0o600);
    assert_eq!(mode(&d.join("outs/in644.wav")), 0o644);
    assert_eq!(mode(&report), 0o600);
    // From a pipe: private.
    let out = d.join("piped.wav");
    let run = clearvox()
        .args(["enhance", "-q", "--preset", "bypass", "-", "-o", s(&out)])
        .write_stdin(fs::read(testdata(S16_16K)).unwrap())
        .output()
        .unwrap();
    assert!(run.status.success(), "{}", stderr_of(&run));
    assert_eq!(mode(&out), 0o600);
}

/// An 8-bit mono WAV of `frames` frames at 8 kHz with the sizes filled in, or with
/// 0xFFFFFFFF sizes when `streamed`.
fn u8_wav(frames: u32, streamed: bool) -> Vec<u8> {
    let mut b = Vec::with_capacity(44 + frames as usize);
    let size = |n: u32| if streamed { u32::MAX } else { n };
    b.extend_from_slice(b"RIFF");
    b.extend_from_slice(&size(36 + frames).to_le_bytes());
    b.extend_from_slice(b"WAVEfmt ");
    b.extend_from_slice(&16u32.to_le_bytes());
    b.extend_from_slice(&1u16.to_le_bytes());
    b.extend_from_slice(&1u16.to_le_bytes());
    b.extend_from_slice(&8_000u32.to_le_bytes());
    b.extend_from_slice(&8_000u32.to_le_bytes());
    b.extend_from_slice(&1u16.to_le_bytes());
    b.extend_from_slice(&8u16.to_le_bytes());
    b.extend_from_slice(b"data");
    b.extend_from_slice(&size(frames).to_le_bytes());
    b.extend((0..frames).map(|i| (128.0 + 60.0 * (i as f32 * 0.05).sin()) as u8));
    b
}

/// Bytes of output left unread while the child's memory is read: more than a pipe
/// holds, so the child is still there, blocked writing, with nearly all work done.
#[cfg(target_os = "linux")]
const HOLD_BACK: usize = 1 << 20;

/// The peak resident memory (`VmHWM`, KiB) of the process `pid`.
#[cfg(target_os = "linux")]
fn vm_hwm_kib(pid: u32) -> u64 {
    let status = fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let line = status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .unwrap_or_else(|| panic!("no VmHWM in {status}"));
    line.trim()
        .strip_suffix("kB")
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or_else(|| panic!("VmHWM: {line}"))
}

/// Runs `clearvox enhance -q --preset bypass <input> -o -`, expecting `len` bytes on
/// stdout; returns the child's peak resident memory in KiB, read while it is blocked
/// on the last [`HOLD_BACK`] bytes of its output (a fresh process image after `exec`:
/// nothing of this test process is counted), and the first 44 bytes it wrote.
#[cfg(target_os = "linux")]
fn peak_rss_to_stdout(input: &Path, len: usize) -> (u64, Vec<u8>) {
    assert!(len > HOLD_BACK);
    let mut child = Command::new(crate::support::clearvox_binary())
        .args(["enhance", "-q", "--preset", "bypass"])
        .arg(input)
        .args(["-o", "-"])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap();
    let mut stdout = child.stdout.take().unwrap();
    let mut buf = vec![0u8; 64 * 1024];
    let mut head = Vec::new();
    let mut got = 0;
    while got < len - HOLD_BACK {
        let want = buf.len().min(len - HOLD_BACK - got);
        let n = stdout.read(&mut buf[..want]).unwrap();
        assert!(n > 0, "the output ended after {got} of {len} bytes");
        if head.len() < 44 {
            head.extend_from_slice(&buf[..n.min(44 - head.len())]);
        }
        got += n;
    }
    let kib = vm_hwm_kib(child.id());
    let mut rest = Vec::new();
    stdout.read_to_end(&mut rest).unwrap();
    assert!(child.wait().unwrap().success());
    assert_eq!(got + rest.len(), len);
    (kib, head)
}

#[cfg(target_os = "linux")]
#[test]
fn stdout_streams_in_memory_that_does_not_grow_with_the_input() {
    let dir = tempfile::tempdir().unwrap();
    let small = dir.path().join("small.wav");
    let large = dir.path().join("large.wav");
    let small_frames = 1 << 20;
    fs::write(&small, u8_wav(small_frames, false)).unwrap();
    // 8 MiB of 8-bit audio (17 min): 32 MiB as f32 samples, 16 MiB of 16-bit output.
    let frames = 8 << 20;
    fs::write(&large, u8_wav(frames, false)).unwrap();
    let (small_kib, _) = peak_rss_to_stdout(&small, 44 + 2 * small_frames as usize);
    let (large_kib, head) = peak_rss_to_stdout(&large, 44 + 2 * frames as usize);
    eprintln!("peak RSS: {small_kib} KiB for {small_frames} frames, {large_kib} KiB for {frames}");
    let header = hound::WavReader::new(std::io::Cursor::new(head)).unwrap();
    assert_eq!(header.duration(), frames);
    let growth = large_kib.saturating_sub(small_kib);
    assert!(
        growth < 12 * 1024,
        "peak RSS {small_kib} KiB for {small_frames} frames, {large_kib} KiB for {frames}"
    );
}

#[test]
fn stdout_carries_exact_sizes_for_a_file_and_until_the_end_for_a_pipe() {
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("in.wav");
    fs::write(&input, u8_wav(12_345, false)).unwrap();
    let file_out = dir.path().join("out.wav");
    accepted(dir.path(), &[s(&input), "-o", s(&file_out)]);
    let from_file = fs::read(&file_out).unwrap();

    // From a file: the very bytes of the file output, which hound reads.
    let run = clearvox()
        .args(["enhance", "-q", "--preset", "bypass", s(&input), "-o", "-"])
        .output()
        .unwrap();
    assert!(run.status.success(), "{}", stderr_of(&run));
    assert!(run.stdout == from_file);
    assert_eq!(parse_wav(&run.stdout).frames(), 12_345);

    // From a pipe with unknown sizes: 0xFFFFFFFF, read to the end by clearvox's reader.
    let run = clearvox()
        .args(["enhance", "-q", "--preset", "bypass", "-", "-o", "-"])
        .write_stdin(u8_wav(12_345, true))
        .output()
        .unwrap();
    assert!(run.status.success(), "{}", stderr_of(&run));
    let out = &run.stdout;
    assert_eq!(out[4..8], [0xFF; 4]);
    assert_eq!(out[40..44], [0xFF; 4]);
    assert_eq!(out[44..], from_file[44..]);
    let mut reader = clearvox::io::WavReader::new(&out[..]).unwrap();
    assert_eq!(reader.len_frames(), None);
    let frames = crate::frames_to_end(&mut reader);
    assert_eq!(frames, 12_345);
    assert!(reader.warnings().is_empty(), "{:?}", reader.warnings());

    // A file whose header promises more than it holds: until the end, nothing padded.
    let mut cut = u8_wav(12_345, false);
    cut.truncate(44 + 10_000);
    fs::write(&input, &cut).unwrap();
    let run = clearvox()
        .args(["enhance", "-q", "--preset", "bypass", s(&input), "-o", "-"])
        .output()
        .unwrap();
    assert!(run.status.success(), "{}", stderr_of(&run));
    assert_eq!(run.stdout[40..44], [0xFF; 4]);
    assert_eq!(run.stdout.len(), 44 + 2 * 10_000);
}
