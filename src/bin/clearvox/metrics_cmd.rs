//! `clearvox metrics`: scores a file against its clean reference with
//! [`clearvox::metrics::compare`] (delay removed first, up to ±500 ms).

use std::path::Path;
use std::process::ExitCode;

use anyhow::{bail, Context, Result};
use serde::Serialize;

use clearvox::dsp::convert::{ChannelMode, Downmixer};
use clearvox::dsp::resample::{ResamplerKind, StreamResampler};
use clearvox::io::read_wav_file;
use clearvox::metrics::{align, compare, Comparison};
use clearvox::pipeline::rescale;

use crate::MetricsArgs;

/// The delay search range, ms.
const MAX_LAG_MS: u64 = 500;

/// One input file, mono, as scored.
#[derive(Serialize)]
struct Scored {
    path: String,
    /// The file's own rate.
    sample_rate: u32,
    channels: u16,
    duration_s: f64,
    /// Set when the file was resampled to the reference's rate before scoring.
    #[serde(skip_serializing_if = "Option::is_none")]
    resampled_to: Option<u32>,
}

#[derive(Serialize)]
struct Output {
    reference: Scored,
    test: Scored,
    /// Rate the scores were computed at (the reference's).
    sample_rate: u32,
    delay_ms: f64,
    #[serde(flatten)]
    scores: Comparison,
}

/// Runs `clearvox metrics`.
pub fn run(args: &MetricsArgs) -> Result<ExitCode> {
    if let Some(path) = &args.plot.plot {
        crate::plot::check_path(path, &[&args.reference, &args.test])?;
    }
    let (reference, ref_info) = read_mono(&args.reference, "reference")?;
    let (test, mut test_info) = read_mono(&args.test, "test")?;
    let rate = ref_info.sample_rate;
    let test = if test_info.sample_rate == rate {
        test
    } else {
        test_info.resampled_to = Some(rate);
        resample(&test, test_info.sample_rate, rate)
            .with_context(|| format!("cannot resample {}", args.test.display()))?
    };
    let max_lag = (u64::from(rate) * MAX_LAG_MS / 1000) as usize;
    let scores = compare(&reference, &test, rate, max_lag).with_context(|| {
        format!(
            "cannot score {} against {}",
            args.test.display(),
            args.reference.display()
        )
    })?;
    let out = Output {
        delay_ms: scores.delay_samples as f64 * 1000.0 / f64::from(rate),
        reference: ref_info,
        test: test_info,
        sample_rate: rate,
        scores,
    };
    // The scores first: a picture that cannot be written does not lose them.
    if args.json {
        println!("{}", serde_json::to_string_pretty(&out)?);
    } else {
        print!("{}", table(&out));
    }
    if let Some(path) = &args.plot.plot {
        plot(path, args.plot.plot_size, &reference, &test, &out)?;
    }
    Ok(ExitCode::SUCCESS)
}

/// Draws the reference above the test signal, the test with the delay removed, as
/// they were scored.
///
/// `metrics` is given only these two files, and the pair is what its figures judge:
/// what the test has that the reference lacks (noise left, artefacts) and what it lost
/// (speech removed) show as differences between the panels at the same time and
/// frequency. The speech band is the VAD's (the `voice-chat` preset's) over the clean
/// reference: where the speech really is, which the figures judge the test against.
fn plot(
    path: &Path,
    size: crate::plot::PlotSize,
    reference: &[f32],
    test: &[f32],
    out: &Output,
) -> Result<()> {
    use crate::plot::{self, Picture, Spectrogram};
    let columns = 2 * size.width as usize;
    let mut top = Spectrogram::new(out.sample_rate, columns)?;
    let mut bottom = Spectrogram::new(out.sample_rate, columns)?;
    top.push(reference);
    top.finish();
    bottom.push(&align(test, out.scores.delay_samples, reference.len()));
    bottom.finish();
    let name = |p: &str| {
        Path::new(p)
            .file_name()
            .map_or_else(|| p.to_string(), |n| n.to_string_lossy().into_owned())
    };
    let speech = reference_speech(reference, out.sample_rate)?;
    let c = &out.scores;
    let picture = Picture {
        title: format!(
            "clearvox metrics: {} against {}",
            name(&out.test.path),
            name(&out.reference.path)
        ),
        figures: format!(
            "SI-SDR {} dB   ·   SNR {} dB   ·   segSNR {} dB   ·   STOI {:.3}   ·   delay {:.1} ms",
            plot::db_or(Some(c.si_sdr_db), "n/a"),
            plot::db_or(Some(c.snr_db), "n/a"),
            plot::db_or(Some(c.seg_snr_db), "n/a"),
            c.stoi,
            out.delay_ms
        ),
        top: ("reference", &top),
        bottom: ("test (delay removed)", &bottom),
        speech: Some(&speech),
    };
    plot::write(path, size, &picture)
}

/// The speech segments the VAD finds in the clean reference (mono at `rate`).
fn reference_speech(reference: &[f32], rate: u32) -> Result<Vec<crate::levels::Segment>> {
    let config = clearvox::Preset::VoiceChat.config();
    let (_, events) = clearvox::pipeline::enhance(&config, reference, rate, 1)
        .context("cannot find the speech in the reference")?;
    Ok(crate::levels::segments(
        &events,
        reference.len() as u64,
        rate,
    ))
}

/// Reads a WAV file as one channel (the mean of its channels); warnings go to stderr.
fn read_mono(path: &Path, role: &str) -> Result<(Vec<f32>, Scored)> {
    let audio = read_wav_file(path).map_err(|e| crate::about(role, path, e))?;
    for w in &audio.warnings {
        eprintln!("warning: {}: {}", path.display(), crate::flatten(w));
    }
    let channels = usize::from(audio.spec.channels);
    if channels == 0 {
        bail!("{role} {}: no channels", path.display());
    }
    let mut mono = vec![0.0f32; audio.frames()];
    Downmixer::new(channels, ChannelMode::Downmix)?.process(&audio.samples, &mut mono);
    let info = Scored {
        path: path.display().to_string(),
        sample_rate: audio.spec.sample_rate,
        channels: audio.spec.channels,
        duration_s: audio.duration_s(),
        resampled_to: None,
    };
    Ok((mono, info))
}

/// `x` at rate `to`, aligned with the original (the resampler's delay removed) and of
/// the same duration.
///
/// The resampler's delay is rarely a whole number of output samples (9⅔ from 48 to
/// 16 kHz), and the delay search in `compare` only removes whole samples: a third of a
/// sample left over would cost the test file several dB of SNR. So the input is first
/// preceded by the few zeros that make the delay whole, and then exactly that is cut.
fn resample(x: &[f32], from: u32, to: u32) -> Result<Vec<f32>> {
    let mut r = StreamResampler::new(from, to, ResamplerKind::Sinc)?;
    let (pad, delay) = whole_delay(r.latency_exact(), from, to);
    let want = rescale(x.len() as u64, from, to) as usize;
    let mut y = Vec::with_capacity(delay + want + 2 * r.chunk_len());
    let mut sink = |o: &[f32]| y.extend_from_slice(o);
    r.process(&vec![0.0; pad], &mut sink)?;
    r.process(x, &mut sink)?;
    let zeros = vec![0.0f32; r.chunk_len()];
    // Each round of zeros releases at least one chunk of output.
    let rounds = (delay + want) / r.chunk_len().max(1) + 4;
    for _ in 0..rounds {
        if y.len() >= delay + want {
            break;
        }
        r.process(&zeros, &mut |o| y.extend_from_slice(o))?;
    }
    if y.len() < delay + want {
        bail!("the resampler stalled");
    }
    y.truncate(delay + want);
    y.drain(..delay);
    Ok(y)
}

/// The fewest input samples of silence to put before the signal so that a resampler
/// delay of `delay` output samples (fraction included) becomes whole, and that whole
/// delay. Each input sample adds `to / from` output samples.
fn whole_delay(delay: f64, from: u32, to: u32) -> (usize, usize) {
    let step = f64::from(to) / f64::from(from);
    for pad in 0..from as usize {
        let d = delay + pad as f64 * step;
        if (d - d.round()).abs() < 1e-6 {
            return (pad, d.round() as usize);
        }
    }
    (0, delay.round() as usize)
}

fn db(v: f64) -> String {
    if v.is_nan() {
        "undefined".into()
    } else if v.is_infinite() {
        format!("{}inf dB", if v > 0.0 { "+" } else { "-" })
    } else {
        format!("{v:.2} dB")
    }
}

fn file_line(f: &Scored) -> String {
    let mut s = format!(
        "{} ({} Hz, {} ch, {:.2} s",
        f.path, f.sample_rate, f.channels, f.duration_s
    );
    if let Some(r) = f.resampled_to {
        s.push_str(&format!(", resampled to {r} Hz"));
    }
    s.push(')');
    s
}

fn table(o: &Output) -> String {
    let c = &o.scores;
    let rows = [
        ("reference", file_line(&o.reference)),
        ("test", file_line(&o.test)),
        (
            "delay",
            format!("{} samples ({:.2} ms)", c.delay_samples, o.delay_ms),
        ),
        ("SNR", db(c.snr_db)),
        ("SI-SDR", db(c.si_sdr_db)),
        ("segSNR", db(c.seg_snr_db)),
        ("STOI", format!("{:.4}", c.stoi)),
    ];
    rows.iter().map(|(k, v)| format!("{k:<10} {v}\n")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn padding_makes_the_delay_whole() {
        // 48 -> 16 kHz: 9 2/3 samples; one more input sample adds 1/3.
        assert_eq!(whole_delay(29.0 / 3.0, 48_000, 16_000), (1, 10));
        assert_eq!(whole_delay(95.0, 16_000, 48_000), (0, 95));
        // 44.1 -> 16 kHz: each input sample adds 160/441.
        let d = 32.0 * 160.0 / 441.0 - 1.0;
        let (pad, whole) = whole_delay(d, 44_100, 16_000);
        assert!(pad < 441);
        assert!((d + pad as f64 * 160.0 / 441.0 - whole as f64).abs() < 1e-6);
    }

    #[test]
    fn resampling_keeps_a_tone_in_place() {
        let tone = |rate: f64, n: usize| -> Vec<f32> {
            (0..n)
                .map(|i| (0.5 * (std::f64::consts::TAU * 440.0 * i as f64 / rate).sin()) as f32)
                .collect()
        };
        for (from, to) in [(48_000, 16_000), (44_100, 16_000), (8_000, 22_050)] {
            let y = resample(&tone(f64::from(from), from as usize), from, to).unwrap();
            let expected = tone(f64::from(to), to as usize);
            assert_eq!(y.len(), expected.len());
            let err = (to as usize / 10..to as usize * 9 / 10)
                .map(|i| (y[i] - expected[i]).abs())
                .fold(0.0f32, f32::max);
            assert!(err < 0.01, "{from} -> {to}: {err}");
        }
    }
}
