//! The WAV input/output API as a user of the library sees it: files on disk, streams,
//! atomic replacement, and files written by another implementation (hound).

use std::fs;
use std::io::Read;
use std::path::Path;

use clearvox::dsp::convert::SampleFormat;
use clearvox::io::{
    read_wav, read_wav_file, write_wav_file, write_wav_to, OutputFormat, WavError, WavFileWriter,
    WavReader, WavSpec,
};

/// A byte source that offers only `Read`, a few bytes at a time, like stdin from a pipe.
struct Pipe<'a>(&'a [u8]);

impl Read for Pipe<'_> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = buf.len().min(self.0.len()).min(1000);
        buf[..n].copy_from_slice(&self.0[..n]);
        self.0 = &self.0[n..];
        Ok(n)
    }
}

fn listing(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> = fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    v.sort();
    v
}

/// A stereo test signal: a ramp on the left, its negation on the right.
fn ramp(frames: usize) -> Vec<f32> {
    (0..frames)
        .flat_map(|i| {
            let v = (i as f32 / frames as f32) * 1.6 - 0.8;
            [v, -v]
        })
        .collect()
}

#[test]
fn every_output_format_reads_back_within_its_resolution() {
    let dir = tempfile::tempdir().unwrap();
    let input = ramp(4_800);
    for (format, tolerance) in [
        (OutputFormat::S16, 0.5 / 32_768.0),
        (OutputFormat::S24, 0.5 / 8_388_608.0),
        (OutputFormat::F32, 0.0),
    ] {
        let path = dir.path().join(format!("ramp-{format}.wav"));
        write_wav_file(&path, 48_000, 2, format, &input).unwrap();
        let audio = read_wav_file(&path).unwrap();
        assert_eq!(
            audio.spec,
            WavSpec {
                sample_rate: 48_000,
                channels: 2,
                format: format.sample_format()
            }
        );
        assert_eq!(audio.frames(), 4_800);
        assert!((audio.duration_s() - 0.1).abs() < 1e-9);
        assert!(audio.warnings.is_empty());
        let worst = input
            .iter()
            .zip(&audio.samples)
            .map(|(a, b)| (a - b).abs())
            .fold(0.0f32, f32::max);
        assert!(worst <= tolerance, "{format}: error {worst} > {tolerance}");
    }
    assert_eq!(
        listing(dir.path()),
        ["ramp-f32.wav", "ramp-s16.wav", "ramp-s24.wav"]
    );
}

#[test]
fn streaming_reader_matches_whole_file_reader() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("in.wav");
    write_wav_file(&path, 16_000, 2, OutputFormat::S24, &ramp(10_000)).unwrap();
    let whole = read_wav_file(&path).unwrap();

    let mut reader = WavReader::new(fs::File::open(&path).unwrap()).unwrap();
    assert_eq!(reader.spec(), whole.spec);
    assert_eq!(reader.len_frames(), Some(10_000));
    let mut buf = vec![0.0f32; 321];
    let mut got = Vec::new();
    loop {
        let n = reader.read_frames(&mut buf).unwrap();
        if n == 0 {
            break;
        }
        assert_eq!(n % 2, 0);
        got.extend_from_slice(&buf[..n]);
    }
    assert_eq!(got, whole.samples);
    assert!(reader.warnings().is_empty());
}

#[test]
fn stream_output_reads_back_from_a_pipe() {
    let input = ramp(1_000);
    let mut bytes = Vec::new();
    write_wav_to(&mut bytes, 24_000, 2, OutputFormat::F32, &input).unwrap();
    let audio = read_wav(Pipe(&bytes)).unwrap();
    assert_eq!(audio.spec.sample_rate, 24_000);
    assert_eq!(audio.samples, input);
}

#[test]
fn streamed_header_with_unknown_sizes_is_read_to_the_end() {
    // What `sox ... -t wav -` writes: RIFF and data sizes it could not fill in.
    let mut bytes = Vec::new();
    write_wav_to(&mut bytes, 8_000, 1, OutputFormat::S16, &[0.25; 777]).unwrap();
    bytes[4..8].copy_from_slice(&u32::MAX.to_le_bytes());
    bytes[40..44].copy_from_slice(&u32::MAX.to_le_bytes());
    let reader = WavReader::new(Pipe(&bytes)).unwrap();
    assert_eq!(reader.len_frames(), None);
    let audio = read_wav(Pipe(&bytes)).unwrap();
    assert_eq!(audio.samples, vec![0.25; 777]);
    assert!(audio.warnings.is_empty());
}

#[test]
fn reads_what_hound_writes_in_formats_clearvox_does_not_write() {
    let dir = tempfile::tempdir().unwrap();
    for (bits, format) in [(8u16, SampleFormat::U8), (32, SampleFormat::S32)] {
        let path = dir.path().join(format!("hound-{bits}.wav"));
        let spec = hound::WavSpec {
            channels: 3,
            sample_rate: 11_025,
            bits_per_sample: bits,
            sample_format: hound::SampleFormat::Int,
        };
        let mut w = hound::WavWriter::create(&path, spec).unwrap();
        let full = 1i64 << (bits - 1);
        let ints: Vec<i32> = (0..300i64)
            .map(|i| ((i * 2 * full / 300) - full) as i32)
            .collect();
        for &v in &ints {
            w.write_sample(v).unwrap();
        }
        w.finalize().unwrap();

        let audio = read_wav_file(&path).unwrap();
        assert_eq!(audio.spec.format, format);
        assert_eq!(audio.spec.channels, 3);
        let want: Vec<f32> = ints.iter().map(|&v| v as f32 / full as f32).collect();
        assert_eq!(audio.samples, want, "{bits} bits");
    }
}

#[test]
fn damaged_files_are_read_with_warnings() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("cut.wav");
    write_wav_file(&path, 8_000, 1, OutputFormat::S16, &[0.5; 8_000]).unwrap();
    // Cut the file in the middle of a sample, as an interrupted copy would.
    let bytes = fs::read(&path).unwrap();
    fs::write(&path, &bytes[..44 + 4_001]).unwrap();
    let audio = read_wav_file(&path).unwrap();
    assert_eq!(audio.frames(), 2_000);
    assert_eq!(
        audio.warnings,
        [
            "data chunk claims 16000 bytes but the file ends after 4001; kept the 0.25 s that are there",
            "dropped an incomplete last frame (1 of 2 bytes)",
        ]
    );
}

#[test]
fn unreadable_inputs_give_one_line_errors() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("absent.wav");
    let e = read_wav_file(&missing).unwrap_err();
    assert!(matches!(e, WavError::Open { .. }));
    assert_eq!(
        e.to_string(),
        format!(
            "cannot open {}: No such file or directory",
            missing.display()
        )
    );

    let text = dir.path().join("notes.wav");
    fs::write(&text, "these are notes, not audio").unwrap();
    let e = read_wav_file(&text).unwrap_err();
    assert_eq!(
        e.to_string(),
        "not a WAV file: it starts with \"thes\" instead of \"RIFF\""
    );

    let empty = dir.path().join("empty.wav");
    fs::write(&empty, "").unwrap();
    let e = read_wav_file(&empty).unwrap_err();
    assert!(e.to_string().starts_with("no audio data"), "{e}");

    // The crate's error type carries the message unchanged.
    let e: clearvox::Error = e.into();
    assert!(e.to_string().starts_with("no audio data"), "{e}");
}

#[test]
fn an_unfinished_write_leaves_the_old_file_and_no_litter() {
    let dir = tempfile::tempdir().unwrap();
    let target = dir.path().join("take.wav");
    write_wav_file(&target, 48_000, 1, OutputFormat::S16, &[0.5; 480]).unwrap();
    let before = fs::read(&target).unwrap();

    let mut w = WavFileWriter::create(&target, 48_000, 1, OutputFormat::F32).unwrap();
    assert_eq!(w.path(), target);
    assert_eq!(w.format(), OutputFormat::F32);
    w.write(&[-0.5; 4_800]).unwrap();
    assert_eq!(
        listing(dir.path()).len(),
        2,
        "the temporary file sits beside the target"
    );
    drop(w);
    assert_eq!(fs::read(&target).unwrap(), before);
    assert_eq!(listing(dir.path()), ["take.wav"]);

    // Written in pieces and finished, the new content replaces the old.
    let mut w = WavFileWriter::create(&target, 48_000, 1, OutputFormat::F32).unwrap();
    for _ in 0..10 {
        w.write(&[-0.5; 480]).unwrap();
    }
    assert_eq!(w.frames_written(), 4_800);
    w.finish().unwrap();
    let audio = read_wav_file(&target).unwrap();
    assert_eq!(audio.samples, vec![-0.5; 4_800]);
    assert_eq!(listing(dir.path()), ["take.wav"]);
}

#[test]
fn a_missing_output_folder_is_an_error_not_created() {
    let dir = tempfile::tempdir().unwrap();
    let folder = dir.path().join("renders");
    let e = write_wav_file(
        folder.join("a.wav"),
        48_000,
        1,
        OutputFormat::S16,
        &[0.0; 10],
    )
    .unwrap_err();
    assert_eq!(
        e.to_string(),
        format!("output folder does not exist: {}", folder.display())
    );
    assert!(!folder.exists());
}

#[test]
fn output_format_follows_the_input_and_parses_from_text() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("in.wav");
    write_wav_file(&path, 22_050, 1, OutputFormat::S24, &[0.0; 100]).unwrap();
    let audio = read_wav_file(&path).unwrap();
    assert_eq!(
        OutputFormat::for_input(audio.spec.format),
        OutputFormat::S24
    );
    assert_eq!("f32".parse::<OutputFormat>().unwrap(), OutputFormat::F32);
    let e = "mp3".parse::<OutputFormat>().unwrap_err();
    assert_eq!(e.given(), "mp3");
}
