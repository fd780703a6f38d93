//! `clearvox enhance` as a user runs it: files of every test-data rate and format,
//! options, folders, stdin/stdout, the report and the closing line.

use std::fs;
use std::path::Path;

use crate::support::cli::*;
use serde_json::Value;

/// Runs `clearvox enhance -q <args>` and requires success.
fn enhance(args: &[&str]) -> std::process::Output {
    let out = clearvox()
        .arg("enhance")
        .arg("-q")
        .args(args)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "clearvox enhance {args:?} failed: {}",
        stderr_of(&out)
    );
    out
}

/// Enhances `input` into `dir/name` with extra options; returns the output bytes.
fn enhance_to(dir: &Path, name: &str, input: &Path, options: &[&str]) -> Vec<u8> {
    let out = dir.join(name);
    let mut args = vec![input.to_str().unwrap(), "-o", out.to_str().unwrap()];
    args.extend_from_slice(options);
    enhance(&args);
    fs::read(&out).unwrap()
}

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

#[test]
fn every_testdata_rate_and_format_is_enhanced_aligned() {
    let dir = tempfile::tempdir().unwrap();
    for (rel, bits, float) in [
        (S16_8K, 16, false),
        (S16_16K, 16, false),
        (S24_44K_STEREO, 24, false),
        (F32_48K, 32, true),
    ] {
        let input = read_wav(&testdata(rel));
        let bytes = enhance_to(dir.path(), "out.wav", &testdata(rel), &[]);
        let output = parse_wav(&bytes);
        assert_eq!(output.spec.sample_rate, input.spec.sample_rate, "{rel}");
        assert_eq!(output.spec.channels, 1, "{rel}: output is mono");
        assert_eq!(output.spec.bits_per_sample, bits, "{rel}");
        assert_eq!(
            output.spec.sample_format == hound::SampleFormat::Float,
            float,
            "{rel}"
        );
        assert_eq!(output.frames(), input.frames(), "{rel}: aligned length");
        let diff = max_diff(&output.samples, &input.mono());
        assert!(diff > 0.01, "{rel}: output barely differs ({diff})");
    }
}

#[test]
fn output_rate_and_format_change_the_header() {
    let dir = tempfile::tempdir().unwrap();
    let input = read_wav(&testdata(F32_48K));
    let out = parse_wav(&enhance_to(
        dir.path(),
        "a.wav",
        &testdata(F32_48K),
        &["--output-rate", "16000"],
    ));
    assert_eq!(out.spec.sample_rate, 16_000);
    assert_eq!(out.spec.sample_format, hound::SampleFormat::Float);
    assert_eq!(out.frames(), rescale(input.frames(), 48_000, 16_000));

    let out = parse_wav(&enhance_to(
        dir.path(),
        "b.wav",
        &testdata(S16_16K),
        &["--format", "s24"],
    ));
    assert_eq!(out.spec.bits_per_sample, 24);
    assert_eq!(out.spec.sample_rate, 16_000);
    assert_eq!(out.frames(), read_wav(&testdata(S16_16K)).frames());

    let out = parse_wav(&enhance_to(
        dir.path(),
        "c.wav",
        &testdata(S16_8K),
        &["--format", "f32", "--output-rate", "44100"],
    ));
    assert_eq!(out.spec.sample_format, hound::SampleFormat::Float);
    assert_eq!(out.spec.sample_rate, 44_100);
    assert_eq!(
        out.frames(),
        rescale(read_wav(&testdata(S16_8K)).frames(), 8_000, 44_100)
    );
}

#[test]
fn bypass_and_strength_zero_give_the_input() {
    let dir = tempfile::tempdir().unwrap();
    for rel in [S16_8K, S16_16K, S24_44K_STEREO, F32_48K] {
        let input = read_wav(&testdata(rel));
        let bypass = enhance_to(
            dir.path(),
            "bypass.wav",
            &testdata(rel),
            &["--preset", "bypass"],
        );
        let out = parse_wav(&bypass);
        assert_eq!(out.spec.channels, 1);
        assert_eq!(out.spec.sample_rate, input.spec.sample_rate);
        let diff = max_diff(&out.samples, &input.mono());
        assert!(diff <= out.lsb(), "{rel}: bypass differs by {diff}");
        if rel == F32_48K {
            assert!(out.samples == input.samples, "{rel}: bypass is not exact");
        }
        let dry = enhance_to(dir.path(), "dry.wav", &testdata(rel), &["--strength", "0"]);
        assert!(dry == bypass, "{rel}: --strength 0 differs from bypass");
    }
}

#[test]
fn every_option_changes_the_output() {
    let dir = tempfile::tempdir().unwrap();
    let input = testdata(S16_16K);
    let run = |name: &str, options: &[&str]| enhance_to(dir.path(), name, &input, options);
    let default = run("default.wav", &[]);
    let toml = dir.path().join("settings.toml");
    fs::write(&toml, "strength = 0.5\n[gate]\nmax_attenuation_db = 3.0\n").unwrap();
    let profile = testdata(NOISE_FAN);
    let variants: Vec<(&str, Vec<&str>)> = vec![
        ("denoiser-off", vec!["--denoiser", "off"]),
        ("denoiser-rnnoise", vec!["--denoiser", "rnnoise"]),
        ("agc-on", vec!["--agc", "on"]),
        ("gate-stationary", vec!["--gate", "stationary"]),
        ("gate-nonstationary", vec!["--gate", "nonstationary"]),
        ("atten-limit", vec!["--atten-limit-db", "6"]),
        ("strength", vec!["--strength", "0.7"]),
        ("config", vec!["--config", s(&toml)]),
        ("profile", vec!["--noise-profile", s(&profile)]),
        ("voice-chat", vec!["--preset", "voice-chat"]),
        ("low-cpu", vec!["--preset", "low-cpu"]),
    ];
    let mut outputs = vec![("default", default.clone())];
    for (name, options) in &variants {
        let out = run(&format!("{name}.wav"), options);
        assert_eq!(parse_wav(&out).frames(), parse_wav(&default).frames());
        assert!(out != default, "{name} did not change the output");
        outputs.push((name, out));
    }
    // `--gate nonstationary` is the default mode: it changes the output of a preset
    // whose gate is off, and differs from the stationary gate.
    let nonstationary = run("ns.wav", &["--gate", "nonstationary", "--denoiser", "off"]);
    let stationary = run("st.wav", &["--gate", "stationary", "--denoiser", "off"]);
    let gate_off = run("off.wav", &["--gate", "off", "--denoiser", "off"]);
    assert!(nonstationary != stationary && nonstationary != gate_off && stationary != gate_off);
    // A profile with --gate nonstationary seeds the tracker: also a change.
    let seeded = run(
        "seeded.wav",
        &["--gate", "nonstationary", "--noise-profile", s(&profile)],
    );
    assert!(seeded != default);
    // No two variants agree by accident.
    for (i, (a, x)) in outputs.iter().enumerate() {
        for (b, y) in &outputs[i + 1..] {
            assert!(x != y, "{a} and {b} give the same output");
        }
    }
}

#[test]
fn flags_override_the_config_file_which_overrides_the_preset() {
    let dir = tempfile::tempdir().unwrap();
    let toml = dir.path().join("c.toml");
    fs::write(
        &toml,
        "preset = \"max-quality\"\nstrength = 0.5\n[gate]\nmax_attenuation_db = 3.0\n",
    )
    .unwrap();
    let print = |args: &[&str]| -> String {
        let out = clearvox()
            .args(["enhance", "--print-config"])
            .args(args)
            .output()
            .unwrap();
        assert!(out.status.success(), "{}", stderr_of(&out));
        String::from_utf8(out.stdout).unwrap()
    };
    let from_file = print(&["--config", s(&toml)]);
    assert!(
        from_file.contains("preset = \"max-quality\""),
        "{from_file}"
    );
    assert!(from_file.contains("strength = 0.5"), "{from_file}");
    let fft_size = clearvox::Preset::MaxQuality.config().gate.fft_size;
    assert!(
        from_file.contains(&format!("fft_size = {fft_size}")),
        "{from_file}"
    );
    assert!(
        from_file.contains("max_attenuation_db = 3.0"),
        "{from_file}"
    );
    let overridden = print(&[
        "--config",
        s(&toml),
        "--strength",
        "0.25",
        "--preset",
        "low-cpu",
        "--gate",
        "off",
    ]);
    assert!(overridden.contains("strength = 0.25"), "{overridden}");
    assert!(overridden.contains("preset = \"low-cpu\""), "{overridden}");
    assert!(overridden.contains("mode = \"off\""), "{overridden}");
    assert!(
        overridden.contains("max_attenuation_db = 3.0"),
        "{overridden}"
    );
    // A noise profile implies the stationary gate unless --gate says otherwise.
    let profile = testdata(NOISE_FAN);
    assert!(print(&["--noise-profile", s(&profile)]).contains("mode = \"stationary\""));
    assert!(
        print(&["--noise-profile", s(&profile), "--gate", "nonstationary"])
            .contains("mode = \"nonstationary\"")
    );
}

#[test]
fn a_folder_is_mirrored_in_parallel_with_the_results_of_single_runs() {
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("in");
    let files = [
        ("a/one.wav", S16_8K),
        ("b/c/two.WAV", F32_48K),
        ("three.wav", S16_16K),
    ];
    for (rel, src) in files {
        let path = input.join(rel);
        fs::create_dir_all(path.parent().unwrap()).unwrap();
        fs::copy(testdata(src), &path).unwrap();
    }
    fs::write(input.join("a/notes.txt"), "not audio").unwrap();
    let out = dir.path().join("out");
    fs::create_dir(&out).unwrap();
    enhance(&[s(&input), "-o", s(&out), "--jobs", "2"]);

    let single = dir.path().join("single");
    fs::create_dir(&single).unwrap();
    for (rel, src) in files {
        let expected = enhance_to(&single, "x.wav", &testdata(src), &[]);
        let got = fs::read(out.join(rel)).unwrap_or_else(|_| panic!("{rel} not written"));
        assert!(got == expected, "{rel} differs from a single run");
    }
    assert_eq!(listing(&out), ["a", "b", "three.wav"]);
    assert_eq!(listing(&out.join("a")), ["one.wav"]);
    assert_eq!(listing(&out.join("b/c")), ["two.WAV"]);
}

#[test]
fn several_files_go_into_an_existing_folder() {
    let dir = tempfile::tempdir().unwrap();
    let (a, b) = (testdata(S16_8K), testdata(S16_16K));
    enhance(&[s(&a), s(&b), "-o", s(dir.path()), "-j", "2"]);
    assert_eq!(
        listing(dir.path()),
        [
            "rp_female__cafe__snr10__8k_s16.wav",
            "us_deep__fan__snr10__16k_s16.wav"
        ]
    );
    // One file and a folder as OUT: the file keeps its name inside it.
    let sub = dir.path().join("sub");
    fs::create_dir(&sub).unwrap();
    enhance(&[s(&a), "-o", s(&sub)]);
    assert_eq!(listing(&sub), ["rp_female__cafe__snr10__8k_s16.wav"]);
}

#[test]
fn a_batch_continues_past_a_bad_file_and_fails_at_the_end() {
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("in");
    fs::create_dir(&input).unwrap();
    fs::copy(testdata(S16_16K), input.join("good.wav")).unwrap();
    fs::write(input.join("bad.wav"), "this is text").unwrap();
    let out = dir.path().join("out");
    fs::create_dir(&out).unwrap();
    let run = clearvox()
        .args(["enhance", s(&input), "-o", s(&out)])
        .output()
        .unwrap();
    assert!(!run.status.success());
    assert_eq!(listing(&out), ["good.wav"]);
    let err = stderr_of(&run);
    let lines: Vec<&str> = err.lines().collect();
    assert_eq!(lines.len(), 3, "{err}");
    assert!(lines[0].starts_with("enhanced 1 file(s), "), "{err}");
    assert!(
        lines[1].starts_with("error: ") && lines[1].contains("bad.wav: not a WAV file"),
        "{err}"
    );
    assert_eq!(lines[2], "error: 1 of 2 file(s) failed");
}

/// `bytes` of a WAV file with both size fields set to 0xFFFFFFFF, as a pipe writer
/// that cannot seek back leaves them.
fn streamed(bytes: &[u8]) -> Vec<u8> {
    let data = chunk_offset(bytes, b"data");
    let b = patch(bytes, 4, &u32::MAX.to_le_bytes());
    patch(&b, data + 4, &u32::MAX.to_le_bytes())
}

#[test]
fn stdin_takes_a_streamed_wav_and_stdout_gives_a_wav() {
    let dir = tempfile::tempdir().unwrap();
    let original = fs::read(testdata(S16_16K)).unwrap();
    let from_file = enhance_to(dir.path(), "file.wav", &testdata(S16_16K), &[]);

    let out = dir.path().join("stdin.wav");
    let run = clearvox()
        .args(["enhance", "-q", "-", "-o", s(&out)])
        .write_stdin(streamed(&original))
        .output()
        .unwrap();
    assert!(run.status.success(), "{}", stderr_of(&run));
    assert!(fs::read(&out).unwrap() == from_file);

    let run = clearvox()
        .args(["enhance", "-q", "-", "-o", "-"])
        .write_stdin(streamed(&original))
        .output()
        .unwrap();
    assert!(run.status.success(), "{}", stderr_of(&run));
    // Streamed as it comes, sizes unknown up front: 0xFFFFFFFF, "until the end".
    assert!(run.stdout == streamed(&from_file));
    let mut reader = clearvox::io::WavReader::new(&run.stdout[..]).unwrap();
    assert_eq!(reader.spec().sample_rate, 16_000);
    let frames = crate::frames_to_end(&mut reader);
    assert_eq!(frames, read_wav(&testdata(S16_16K)).frames());
    assert!(reader.warnings().is_empty(), "{:?}", reader.warnings());

    // A file to stdout, in bypass: the very bytes of a mono 16-bit input.
    let run = clearvox()
        .args(["enhance", "-q", "--preset", "bypass"])
        .arg(testdata(S16_16K))
        .args(["-o", "-"])
        .output()
        .unwrap();
    assert!(run.status.success(), "{}", stderr_of(&run));
    assert!(run.stdout == original);
}

fn num(v: &Value, key: &str) -> f64 {
    v[key]
        .as_f64()
        .unwrap_or_else(|| panic!("{key} is not a number in {v}"))
}

#[test]
fn the_report_has_every_field() {
    let dir = tempfile::tempdir().unwrap();
    let report = dir.path().join("report.json");
    let out = dir.path().join("out.wav");
    let input = testdata(S16_16K);
    enhance(&[s(&input), "-o", s(&out), "--report", s(&report)]);
    let v: Value = serde_json::from_str(&fs::read_to_string(&report).unwrap()).unwrap();
    // Without --preset, enhance runs max-quality: DeepFilterNet3.
    assert_eq!(v["config"]["preset"], "max-quality");
    assert_eq!(v["config"]["denoiser"], "deepfilter");
    let files = v["files"].as_array().unwrap();
    assert_eq!(files.len(), 1);
    let f = &files[0];
    assert_eq!(f["input"], s(&input));
    assert_eq!(f["output"], s(&out));
    assert_eq!(f["sample_rate_in"], 16_000);
    assert_eq!(f["sample_rate_out"], 16_000);
    assert_eq!(f["channels"], 1);
    assert_eq!(f["warnings"].as_array().unwrap().len(), 0);
    let duration = num(f, "duration_s");
    assert!((duration - 66_904.0 / 16_000.0).abs() < 1e-9);
    let processing = num(f, "processing_s");
    assert!(processing > 0.0);
    assert!((num(f, "real_time_factor") - processing / duration).abs() < 1e-9);
    let latency = num(f, "latency_samples");
    assert!(latency > 0.0);
    assert!((num(f, "latency_ms") - latency / 16.0).abs() < 1e-9);

    // The manifest: speech from 0.56 s to 3.869 s, noise at -36 dBFS RMS.
    let segments = f["speech_segments"].as_array().unwrap();
    assert!(!segments.is_empty());
    let mut last_end = 0.0;
    for seg in segments {
        let (start, end) = (num(seg, "start_s"), num(seg, "end_s"));
        assert!(last_end <= start && start < end && end <= duration, "{seg}");
        last_end = end;
    }
    assert!(num(&segments[0], "start_s") <= 0.56);
    assert!(last_end >= 3.869);
    let noise_in = num(f, "noise_level_in_dbfs");
    let noise_out = num(f, "noise_level_out_dbfs");
    assert!(
        (noise_in - -36.0).abs() < 3.0,
        "input noise {noise_in} dBFS"
    );
    assert!(noise_out < noise_in - 6.0, "{noise_out} vs {noise_in}");
    // Speech frames hold the voice and the noise: louder than the noise alone, and the
    // ratio of the two (the SNR heard) rises with the noise removed.
    let speech_in = num(f, "speech_level_in_dbfs");
    let speech_out = num(f, "speech_level_out_dbfs");
    assert!(speech_in > noise_in + 3.0, "{speech_in} vs {noise_in}");
    assert!(
        speech_out - noise_out > speech_in - noise_in + 6.0,
        "SNR {} -> {} dB",
        speech_in - noise_in,
        speech_out - noise_out
    );

    let totals = &v["totals"];
    assert_eq!(totals["files"], 1);
    assert_eq!(totals["failed"], 0);
    assert!((num(totals, "duration_s") - duration).abs() < 1e-9);
    assert!(num(totals, "wall_s") > 0.0);
    assert_eq!(v["failures"].as_array().unwrap().len(), 0);
    // Nothing but the two outputs is left in the folder.
    assert_eq!(listing(dir.path()), ["out.wav", "report.json"]);
}

#[test]
fn a_closing_line_unless_quiet() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("out.wav");
    let run = clearvox()
        .arg("enhance")
        .arg(testdata(S16_16K))
        .args(["-o", s(&out)])
        .output()
        .unwrap();
    assert!(run.status.success());
    let err = stderr_of(&run);
    let lines: Vec<&str> = err.lines().collect();
    assert_eq!(lines.len(), 1, "{err}");
    let re = predicates::str::is_match(
        r"^enhanced 1 file\(s\), 4\.18 s of audio in \d+\.\d\d s \(\d+\.\d× real time\)$",
    )
    .unwrap();
    use predicates::Predicate;
    assert!(re.eval(lines[0]), "{err}");

    let run = clearvox()
        .args(["enhance", "-q"])
        .arg(testdata(S16_16K))
        .args(["-o", s(&out)])
        .output()
        .unwrap();
    assert!(run.status.success());
    assert_eq!(stderr_of(&run), "");

    let run = clearvox()
        .args(["enhance", "-q", "--timing"])
        .arg(testdata(S16_16K))
        .args(["-o", s(&out)])
        .output()
        .unwrap();
    let err = stderr_of(&run);
    let secs: f64 = err
        .trim()
        .strip_prefix("PROC_S=")
        .unwrap_or_else(|| panic!("{err}"))
        .parse()
        .unwrap();
    assert!(secs > 0.0 && secs < 60.0);
}

#[test]
fn deepfilternet_on_telephone_band_input_comes_with_a_warning() {
    let dir = tempfile::tempdir().unwrap();
    let run = |preset: &[&str]| {
        let out = clearvox()
            .args(["enhance", "-q", s(&testdata(S16_8K)), "-o"])
            .arg(dir.path().join("out.wav"))
            .args(preset)
            .output()
            .unwrap();
        assert!(out.status.success(), "{}", stderr_of(&out));
        stderr_of(&out)
    };
    let default = run(&[]);
    assert!(
        default.starts_with("warning: ") && default.contains("8000 Hz input: DeepFilterNet3"),
        "{default}"
    );
    assert_eq!(default.lines().count(), 1, "{default}");
    assert_eq!(run(&["--preset", "voice-chat"]), "");
}
