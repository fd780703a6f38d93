//! Loading DeepFilterNet exports: the built-in model, the same model from a file, and
//! files that are not exports, through the library and through `clearvox enhance
//! --model` (one `error:` line naming the file and what is wrong, no output left).

use std::fs;
use std::io::Write;
use std::path::Path;

use crate::support::cli::*;
use clearvox::dsp::deepfilter::{DeepFilterConfig, DeepFilterModel};
use clearvox::Error;

const MODEL: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/models/DeepFilterNet3_onnx.tar.gz"
);

/// The files of the vendored export, by name.
fn vendored_files() -> Vec<(String, Vec<u8>)> {
    let gz = flate2::read::GzDecoder::new(fs::File::open(MODEL).unwrap());
    let mut archive = tar::Archive::new(gz);
    let mut files = Vec::new();
    for entry in archive.entries().unwrap() {
        let mut entry = entry.unwrap();
        if !entry.header().entry_type().is_file() {
            continue;
        }
        let name = entry
            .path()
            .unwrap()
            .file_name()
            .unwrap()
            .to_string_lossy()
            .into_owned();
        let mut data = Vec::new();
        std::io::Read::read_to_end(&mut entry, &mut data).unwrap();
        files.push((name, data));
    }
    files
}

/// A `.tar.gz` of `files`, in a folder like the real export's.
fn tar_gz(files: &[(String, Vec<u8>)]) -> Vec<u8> {
    let gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    let mut builder = tar::Builder::new(gz);
    for (name, data) in files {
        let mut header = tar::Header::new_gnu();
        header.set_size(data.len() as u64);
        header.set_mode(0o644);
        header.set_cksum();
        builder
            .append_data(&mut header, format!("export/{name}"), &data[..])
            .unwrap();
    }
    builder.into_inner().unwrap().finish().unwrap()
}

/// The vendored export with `name` replaced by `data` (or left out, for `None`).
fn altered(name: &str, data: Option<&[u8]>) -> Vec<u8> {
    let mut files: Vec<_> = vendored_files()
        .into_iter()
        .filter(|(n, _)| n != name)
        .collect();
    if let Some(d) = data {
        files.push((name.to_string(), d.to_vec()));
    }
    tar_gz(&files)
}

fn load_error(bytes: &[u8]) -> String {
    let err = DeepFilterModel::from_tar_gz(bytes, "test")
        .unwrap_err()
        .to_string();
    assert!(!err.contains('\n'), "not one line: {err}");
    err
}

#[test]
fn the_built_in_model_is_deepfilternet3() {
    let m = DeepFilterModel::embedded().unwrap();
    let p = m.params();
    assert_eq!((p.sample_rate, p.fft_size, p.hop), (48_000, 960, 480));
    assert_eq!(
        (p.erb_bands, p.df_bins, p.df_order, p.lookahead()),
        (32, 96, 5, 2)
    );
    let bytes = fs::read(MODEL).unwrap();
    assert_eq!(bytes, clearvox::dsp::deepfilter::model::DEEPFILTERNET3);
}

#[test]
fn the_vendored_file_repacked_loads_like_the_original() {
    let m = DeepFilterModel::from_tar_gz(&tar_gz(&vendored_files()), "repacked").unwrap();
    assert_eq!(m.params(), DeepFilterModel::embedded().unwrap().params());
    assert_eq!(m.origin(), "repacked");
}

#[test]
fn what_is_not_an_export_is_named() {
    for (bytes, phrase) in [
        (b"not a tarball".to_vec(), "not a"),
        (Vec::new(), "not a"),
        (altered("enc.onnx", None), "no enc.onnx"),
        (altered("config.ini", None), "no config.ini"),
        (
            altered("df_dec.onnx", Some(b"garbage")),
            "df_dec.onnx: not a readable ONNX network",
        ),
    ] {
        let err = load_error(&bytes);
        assert!(err.contains(phrase), "{phrase:?} not in {err:?}");
    }
}

#[test]
fn a_config_ini_clearvox_cannot_run_is_named() {
    let ini = vendored_files()
        .into_iter()
        .find(|(n, _)| n == "config.ini")
        .unwrap()
        .1;
    let ini = String::from_utf8(ini).unwrap();
    for (from, to, phrase) in [
        ("sr = 48000", "sr = 16000", "sr = 16000"),
        ("hop_size = 480", "hop_size = 256", "hop_size = 256"),
        ("nb_erb = 32", "nb_erb = 400", "nb_erb = 400"),
        (
            "df_order = 5",
            "df_order = five",
            "df_order = \"five\" is not a whole number",
        ),
        ("nb_df = 96", "", "no 'nb_df' in [df]"),
    ] {
        assert!(ini.contains(from), "{from}");
        let bad = ini.replace(from, to);
        let err = load_error(&altered("config.ini", Some(bad.as_bytes())));
        assert!(err.contains(phrase), "{phrase:?} not in {err:?}");
    }
}

#[test]
fn a_missing_model_file_is_an_error_of_the_library() {
    let config = DeepFilterConfig {
        model: Some("/nonexistent/model.tar.gz".into()),
        ..DeepFilterConfig::default()
    };
    let err = clearvox::dsp::deepfilter::DeepFilter::new(&config).unwrap_err();
    assert!(matches!(err, Error::Model(_)), "{err:?}");
    let text = err.to_string();
    assert!(
        text.contains("/nonexistent/model.tar.gz") && text.contains("No such file"),
        "{text}"
    );
}

/// `clearvox enhance IN -o OUT --model <model>`: its stderr, and whether it worked.
fn enhance_with_model(dir: &Path, model: &Path) -> (bool, String, bool) {
    let out = dir.join("out.wav");
    let run = clearvox()
        .arg("enhance")
        .arg(testdata(F32_48K))
        .arg("-o")
        .arg(&out)
        .arg("--model")
        .arg(model)
        .arg("--quiet")
        .output()
        .unwrap();
    (run.status.success(), stderr_of(&run), out.exists())
}

#[test]
fn the_cli_runs_a_model_file_like_the_built_in_one() {
    let dir = tempfile::tempdir().unwrap();
    let (ok, err, _) = enhance_with_model(dir.path(), Path::new(MODEL));
    assert!(ok, "{err}");
    let with_file = fs::read(dir.path().join("out.wav")).unwrap();
    let built_in = dir.path().join("built_in.wav");
    let run = clearvox()
        .arg("enhance")
        .arg(testdata(F32_48K))
        .arg("-o")
        .arg(&built_in)
        .args(["--denoiser", "deepfilter", "--quiet"])
        .output()
        .unwrap();
    assert!(run.status.success(), "{}", stderr_of(&run));
    assert!(fs::read(built_in).unwrap() == with_file);
}

#[test]
fn the_cli_refuses_a_bad_model_in_one_line_and_writes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let text = dir.path().join("notes.tar.gz");
    fs::File::create(&text)
        .unwrap()
        .write_all(b"hello")
        .unwrap();
    let half = dir.path().join("half.tar.gz");
    fs::write(&half, altered("erb_dec.onnx", None)).unwrap();
    for (model, phrase) in [
        (dir.path().join("missing.tar.gz"), "No such file"),
        (text, "not a"),
        (half, "no erb_dec.onnx"),
    ] {
        let (ok, err, written) = enhance_with_model(dir.path(), &model);
        assert!(!ok, "{} was accepted", model.display());
        let lines: Vec<&str> = err.lines().collect();
        assert_eq!(lines.len(), 1, "not one line: {err}");
        assert!(lines[0].starts_with("error: "), "{err}");
        assert!(lines[0].contains(phrase), "{phrase:?} not in {err}");
        assert!(
            lines[0].contains(&*model.to_string_lossy()),
            "file not named: {err}"
        );
        assert!(!written, "an output was written");
    }
}
