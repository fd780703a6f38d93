//! One file through a preset, with the quality metrics printed.
//!
//! ```sh
//! cargo run --release --example offline                               # the test data's example
//! cargo run --release --example offline -- noisy.wav clean.wav max-quality
//! ```
//!
//! The output is aligned with the input (the pipeline's latency removed), so it can be
//! compared with the clean reference sample for sample.

use std::path::PathBuf;

use clearvox::io::{read_wav_file, write_wav_file, OutputFormat};
use clearvox::metrics::compare;
use clearvox::pipeline::enhance;
use clearvox::Preset;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let args: Vec<String> = std::env::args().skip(1).collect();
    let noisy = args
        .first()
        .map(PathBuf::from)
        .unwrap_or_else(|| root.join("testdata/noisy/us_male__cafe__snr5__48k_f32.wav"));
    let clean = args.get(1).map(PathBuf::from).or_else(|| {
        args.is_empty()
            .then(|| root.join("testdata/clean/us_male__cafe__snr5__48k_f32.wav"))
    });
    let preset: Preset = args
        .get(2)
        .map(|s| s.parse())
        .transpose()?
        .unwrap_or_default();

    let input = read_wav_file(&noisy)?;
    let rate = input.spec.sample_rate;
    let channels = input.spec.channels as usize;
    let started = std::time::Instant::now();
    let (enhanced, events) = enhance(&preset.config(), &input.samples, rate, channels)?;
    let took = started.elapsed().as_secs_f64();
    println!(
        "{}: {:.2} s at {} Hz through {preset} in {:.3} s ({:.0}x real time), {} VAD events",
        noisy.display(),
        input.duration_s(),
        rate,
        took,
        input.duration_s() / took,
        events.len()
    );
    let out = std::env::temp_dir().join("clearvox-offline-example.wav");
    write_wav_file(&out, rate, 1, OutputFormat::F32, &enhanced)?;
    println!("enhanced: {}", out.display());

    if let Some(clean) = clean {
        let reference = read_wav_file(&clean)?;
        let mono = |s: &[f32], ch: usize| -> Vec<f32> {
            s.chunks_exact(ch)
                .map(|f| f.iter().sum::<f32>() / ch as f32)
                .collect()
        };
        let reference = mono(&reference.samples, reference.spec.channels as usize);
        let before = compare(
            &reference,
            &mono(&input.samples, channels),
            rate,
            rate as usize / 2,
        )?;
        let after = compare(&reference, &enhanced, rate, rate as usize / 2)?;
        println!("             SI-SDR     STOI   segSNR");
        println!(
            "input     {:>7.2} dB  {:.3}  {:>6.2} dB",
            before.si_sdr_db, before.stoi, before.seg_snr_db
        );
        println!(
            "enhanced  {:>7.2} dB  {:.3}  {:>6.2} dB   (delay {} samples)",
            after.si_sdr_db, after.stoi, after.seg_snr_db, after.delay_samples
        );
    }
    Ok(())
}
