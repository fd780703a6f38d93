//! The C ABI: the committed header is what cbindgen makes of `src/capi/`; the C
//! example, compiled and run, gives the Rust API's output bit for bit (and runs clean
//! under valgrind when it is installed); every entry point rejects bad arguments with a
//! status and a message instead of crashing.

mod support;

/// Two threads on one handle, flushes short of room, overlapping buffers, odd orders.
#[path = "c_abi/misuse.rs"]
mod misuse;

/// The render input of the echo canceller: the Rust result, refusals, configuration
/// changes.
#[path = "c_abi/render.rs"]
mod render;

use std::ffi::{CStr, CString};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::ptr::{null, null_mut};

use clearvox::capi::*;
use clearvox::{Config, Pipeline};
use support::audio::{load, testdata};

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn last_error() -> String {
    // SAFETY: the library returns a valid NUL-terminated string.
    unsafe { CStr::from_ptr(cv_last_error()) }
        .to_string_lossy()
        .into_owned()
}

#[test]
fn the_committed_header_is_up_to_date() {
    let config = cbindgen::Config::from_file(root().join("cbindgen.toml")).unwrap();
    let mut generated = Vec::new();
    cbindgen::Builder::new()
        .with_crate(root())
        .with_config(config)
        .generate()
        .expect("cbindgen runs")
        .write(&mut generated);
    let generated = String::from_utf8(generated).unwrap();
    let path = root().join("include/clearvox.h");
    if std::env::var_os("CLEARVOX_UPDATE_HEADER").is_some() {
        std::fs::create_dir_all(path.parent().expect("the header is in a folder"))
            .expect("creating include/");
        std::fs::write(&path, &generated).unwrap();
    }
    let committed = std::fs::read_to_string(&path).unwrap_or_default();
    assert!(
        committed == generated,
        "include/clearvox.h is out of date: run `CLEARVOX_UPDATE_HEADER=1 cargo test --test c_abi`"
    );
    let version = format!("#define CV_ABI_VERSION {CV_ABI_VERSION}\n");
    assert!(
        generated.contains(&version),
        "the header's CV_ABI_VERSION is not {CV_ABI_VERSION}: change it in cbindgen.toml"
    );
    for name in [
        "cv_pipeline_new",
        "cv_pipeline_push_render_f32",
        "cv_engine_poll_frame",
        "CV_ERR_PANIC",
        "CvVadEvent",
    ] {
        assert!(generated.contains(name), "{name} missing from the header");
    }
}

/// The directory of the library cargo built for these tests.
fn lib_dir() -> PathBuf {
    let exe = std::env::current_exe().unwrap();
    exe.parent()
        .and_then(Path::parent)
        .expect("the test binary is in target/PROFILE/deps")
        .to_path_buf()
}

/// Builds the static library the C example links against and returns its path.
///
/// `cargo test` builds the crate only as an rlib, so the test builds the static library
/// itself, as an app that only enhances buffers would: the C ABI without devices,
/// streaming or DeepFilterNet (whose C ABI path a test below takes in this process:
/// building tract once more for the C example would double the time of the test run). It goes to a target folder of its own, because a second build of the
/// dependencies with other features in the tests' folder would leave two versions of
/// them side by side there, and the doctests would then not know which one to use.
/// Runs once per test binary.
fn static_library() -> PathBuf {
    static BUILT: std::sync::OnceLock<Result<PathBuf, String>> = std::sync::OnceLock::new();
    let result = BUILT.get_or_init(|| {
        let target = lib_dir()
            .parent()
            .expect("target/PROFILE is in the target folder")
            .join("c-example");
        let release = lib_dir().file_name().is_some_and(|name| name == "release");
        let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
        let mut command = Command::new(cargo);
        command
            .args([
                "build",
                "--lib",
                "--no-default-features",
                "--features",
                "capi",
            ])
            .arg("--manifest-path")
            .arg(root().join("Cargo.toml"))
            .arg("--target-dir")
            .arg(&target);
        if release {
            command.arg("--release");
        }
        match command.status() {
            Ok(status) if status.success() => Ok(target
                .join(if release { "release" } else { "debug" })
                .join("libclearvox.a")),
            Ok(status) => Err(format!("building the static library failed: {status}")),
            Err(e) => Err(format!("cannot run cargo: {e}")),
        }
    });
    match result {
        Ok(path) => path.clone(),
        Err(message) => panic!("{message}"),
    }
}

fn compile_c_example(dir: &Path) -> PathBuf {
    let library = static_library();
    let exe = dir.join("offline");
    let status = Command::new("cc")
        .arg("-Wall")
        .arg("-Werror")
        .arg("-g")
        .arg(format!("-I{}", root().join("include").display()))
        .arg(root().join("examples/c/offline.c"))
        .arg(library)
        .args(["-lgcc_s", "-lutil", "-lrt", "-lpthread", "-lm", "-ldl"])
        .arg("-o")
        .arg(&exe)
        .status()
        .expect("a C compiler (cc)");
    assert!(status.success(), "the C example does not compile");
    exe
}

fn write_f32(path: &Path, x: &[f32]) {
    let bytes: Vec<u8> = x.iter().flat_map(|v| v.to_ne_bytes()).collect();
    std::fs::write(path, bytes).unwrap();
}

fn read_f32(path: &Path) -> Vec<f32> {
    std::fs::read(path)
        .unwrap()
        .chunks_exact(4)
        .map(|b| f32::from_ne_bytes([b[0], b[1], b[2], b[3]]))
        .collect()
}

/// What the Rust API makes of the same input: the whole output stream, flushed.
fn rust_reference(config: &Config, x: &[f32], rate: u32, channels: usize) -> Vec<f32> {
    let mut p = Pipeline::new(config, rate, channels).unwrap();
    let mut y = Vec::new();
    p.process(x, &mut y).unwrap();
    p.flush(&mut y).unwrap();
    y
}

#[test]
fn the_c_example_gives_the_rust_result_bit_for_bit() {
    let dir = tempfile::tempdir().unwrap();
    let exe = compile_c_example(dir.path());
    for (file, config, preset) in [
        (
            "noisy/us_male__cafe__snr5__48k_f32.wav",
            Config::default(),
            "voice-chat",
        ),
        (
            "noisy/gb_female__traffic__snr10__44k1_s24.wav",
            clearvox::Preset::LowCpu.config(),
            "low-cpu",
        ),
    ] {
        let (x, rate, ch) = load(&testdata(file));
        let input = dir.path().join("in.f32");
        let output = dir.path().join("out.f32");
        write_f32(&input, &x);
        let out = Command::new(&exe)
            .arg(&input)
            .arg(rate.to_string())
            .arg(ch.to_string())
            .arg(&output)
            .arg(preset)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let c = read_f32(&output);
        let rust = rust_reference(&config, &x, rate, ch);
        assert_eq!(c.len(), rust.len(), "{file}");
        let first = c
            .iter()
            .zip(&rust)
            .position(|(a, b)| a.to_bits() != b.to_bits());
        assert_eq!(first, None, "{file}: first differing sample");
    }
}

#[test]
fn the_c_example_runs_clean_under_valgrind() {
    let have = Command::new("valgrind").arg("--version").output().is_ok();
    if !have {
        support::missing(
            "valgrind is not installed",
            "install it (apt-get install valgrind) to run the C example under it",
        );
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let exe = compile_c_example(dir.path());
    // A second of audio keeps the run short.
    let (x, rate, ch) = load(&testdata("noisy/us_deep__hum__snr5__16k_s16.wav"));
    let input = dir.path().join("in.f32");
    write_f32(&input, &x[..16_000]);
    let out = Command::new("valgrind")
        .args([
            "--error-exitcode=99",
            "--leak-check=full",
            "--errors-for-leak-kinds=definite,indirect",
            "--show-leak-kinds=definite,indirect",
            "--quiet",
        ])
        // nnnoiseless's per-thread FFT plan cache, created once and never freed: not ours
        // (see the file).
        .arg(format!(
            "--suppressions={}",
            root().join("examples/c/valgrind.supp").display()
        ))
        .arg(&exe)
        .arg(&input)
        .arg(rate.to_string())
        .arg(ch.to_string())
        .arg(dir.path().join("out.f32"))
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "valgrind found errors or leaks:\n{stderr}"
    );
}

#[test]
fn bad_arguments_are_refused_with_a_message() {
    // SAFETY (every call below): the arguments are either valid or the NULLs and bad
    // lengths under test, which the ABI promises to reject.
    unsafe {
        let mut p: *mut CvPipeline = null_mut();
        assert_eq!(
            cv_pipeline_new(null(), 48_000, 1, null_mut()),
            CvStatus::CV_ERR_INVALID_ARGUMENT
        );
        assert!(last_error().contains("out is NULL"));
        let bad = CString::new("[gate]\nfft_sise = 3").unwrap();
        assert_eq!(
            cv_pipeline_new(bad.as_ptr(), 48_000, 1, &mut p),
            CvStatus::CV_ERR_CONFIG
        );
        assert!(last_error().contains("fft_sise"), "{}", last_error());
        assert!(p.is_null());
        assert_eq!(
            cv_pipeline_new(null(), 768_000, 1, &mut p),
            CvStatus::CV_ERR_CONFIG
        );
        assert!(last_error().contains("768000"));
        assert_eq!(
            cv_pipeline_new(null(), 48_000, 32, &mut p),
            CvStatus::CV_ERR_CONFIG
        );
        let json = CString::new(r#"{"preset":"low-cpu","strength":0.5}"#).unwrap();
        assert_eq!(
            cv_pipeline_new(json.as_ptr(), 16_000, 2, &mut p),
            CvStatus::CV_OK
        );
        assert!(!p.is_null());
        assert_eq!(last_error(), "");

        let input = [0.1f32; 64];
        let mut out = [0.0f32; 8];
        let mut written = 0usize;
        // NULL input with a length, a too-small output, NULL written, NULL handle.
        assert_eq!(
            cv_pipeline_process_f32(p, null(), 10, out.as_mut_ptr(), 8, &mut written),
            CvStatus::CV_ERR_INVALID_ARGUMENT
        );
        assert_eq!(
            cv_pipeline_process_f32(p, input.as_ptr(), 32, out.as_mut_ptr(), 8, &mut written),
            CvStatus::CV_ERR_OUTPUT_TOO_SMALL
        );
        assert!(last_error().contains("output buffer"), "{}", last_error());
        assert_eq!(
            cv_pipeline_process_f32(p, input.as_ptr(), 32, out.as_mut_ptr(), 8, null_mut()),
            CvStatus::CV_ERR_INVALID_ARGUMENT
        );
        assert_eq!(
            cv_pipeline_process_f32(
                null_mut(),
                input.as_ptr(),
                32,
                out.as_mut_ptr(),
                8,
                &mut written
            ),
            CvStatus::CV_ERR_INVALID_ARGUMENT
        );
        assert_eq!(
            cv_pipeline_process_f32(
                p,
                input.as_ptr(),
                usize::MAX,
                out.as_mut_ptr(),
                8,
                &mut written
            ),
            CvStatus::CV_ERR_INVALID_ARGUMENT
        );
        assert_eq!(
            cv_pipeline_set_strength(p, 1.5),
            CvStatus::CV_ERR_INVALID_ARGUMENT
        );
        assert_eq!(
            cv_pipeline_set_config(p, null()),
            CvStatus::CV_ERR_INVALID_ARGUMENT
        );
        let ok = CString::new("max-quality").unwrap();
        assert_eq!(cv_pipeline_set_config(p, ok.as_ptr()), CvStatus::CV_OK);
        assert_eq!(cv_pipeline_set_bypass(p, 1), CvStatus::CV_OK);
        assert_eq!(cv_pipeline_reset(p), CvStatus::CV_OK);
        let mut has = 7u32;
        let mut event = CvVadEvent::default();
        assert_eq!(
            cv_pipeline_next_event(p, &mut event, &mut has),
            CvStatus::CV_OK
        );
        assert_eq!(has, 0);
        cv_pipeline_free(p);
        cv_pipeline_free(null_mut());
        cv_engine_free(null_mut());
        assert_eq!(
            cv_engine_start(null_mut()),
            CvStatus::CV_ERR_INVALID_ARGUMENT
        );
    }
    assert_eq!(cv_abi_version(), CV_ABI_VERSION);
}

#[test]
fn processing_i16_and_f32_through_the_abi_agree() {
    let (x, rate, ch) = load(&testdata("noisy/rp_female__keyboard__snr5__8k_s16.wav"));
    let as_i16: Vec<i16> = x.iter().map(|v| (v * 32_768.0).round() as i16).collect();
    let run = |f32_input: bool| -> Vec<f32> {
        // SAFETY: valid buffers of the stated lengths and a live handle throughout.
        unsafe {
            let mut p: *mut CvPipeline = null_mut();
            assert_eq!(
                cv_pipeline_new(null(), rate, ch as u32, &mut p),
                CvStatus::CV_OK
            );
            let cap = cv_pipeline_output_frames_max(p, 1000);
            let mut buf = vec![0.0f32; cap];
            let mut y = Vec::new();
            for start in (0..x.len()).step_by(1000) {
                let n = (x.len() - start).min(1000);
                let mut written = 0;
                let status = if f32_input {
                    cv_pipeline_process_f32(
                        p,
                        x[start..].as_ptr(),
                        n,
                        buf.as_mut_ptr(),
                        cap,
                        &mut written,
                    )
                } else {
                    cv_pipeline_process_i16(
                        p,
                        as_i16[start..].as_ptr(),
                        n,
                        buf.as_mut_ptr(),
                        cap,
                        &mut written,
                    )
                };
                assert_eq!(status, CvStatus::CV_OK, "{}", last_error());
                y.extend_from_slice(&buf[..written]);
            }
            cv_pipeline_free(p);
            y
        }
    };
    assert_eq!(run(true), run(false));
}

#[test]
fn the_denoiser_is_chosen_through_the_configuration_text() {
    // SAFETY: NUL-terminated strings and a valid out-pointer; each handle is freed.
    unsafe {
        let mut p: *mut CvPipeline = null_mut();
        let deepfilter =
            CString::new("preset = \"voice-chat\"\ndenoiser = \"deepfilter\"\n").unwrap();
        assert_eq!(
            cv_pipeline_new(deepfilter.as_ptr(), 48_000, 1, &mut p),
            CvStatus::CV_OK,
            "{}",
            last_error()
        );
        let (mut latency, mut rate) = (0u32, 0u32);
        assert_eq!(
            cv_pipeline_info(p, &mut latency, &mut rate),
            CvStatus::CV_OK
        );
        // DeepFilterNet's 30 ms, with voice-chat's gate after it (10 ms).
        assert_eq!((latency, rate), (1_440 + 480, 48_000));
        cv_pipeline_free(p);

        let missing = CString::new(
            "denoiser = \"deepfilter\"\n[deepfilter]\nmodel = \"/nonexistent/m.tar.gz\"\n",
        )
        .unwrap();
        let mut q: *mut CvPipeline = null_mut();
        assert_eq!(
            cv_pipeline_new(missing.as_ptr(), 48_000, 1, &mut q),
            CvStatus::CV_ERR_CONFIG
        );
        assert!(q.is_null());
        let message = last_error();
        assert!(
            message.contains("/nonexistent/m.tar.gz") && message.contains("No such file"),
            "{message}"
        );
    }
}
