//! `clearvox enhance`: files and folders through the pipeline, streaming.
//!
//! Each file is read in chunks by [`WavReader`], run through an [`Aligner`] (so the
//! output lines up with the input and has its duration) and written by a
//! [`WavFileWriter`] (a temporary file renamed over the target at the end): memory does
//! not grow with the file's length, and a failure leaves no output behind and an
//! existing one untouched. `-o -` streams through a [`WavStreamWriter`]: exact sizes in
//! the header when the input is a file holding all the audio its header announces,
//! 0xFFFFFFFF ("until the end") otherwise (stdin, a truncated file), so memory stays
//! bounded there too, even for an endless stdin. The header goes out before the audio
//! is read: a failure midway leaves a cut stream on stdout and a non-zero exit.
//!
//! Outputs and the report keep the read/write permission bits of their input (the
//! owner always reading and writing), and are 0o600 when the input is not a file: a
//! private recording stays private.

use std::fs::{self, File};
use std::io::{self, BufWriter, Read, Seek};
use std::path::Path;
use std::process::ExitCode;
use std::time::Instant;

use anyhow::{anyhow, bail, Context, Result};
use rayon::prelude::*;

use clearvox::config::Denoiser;
use clearvox::dsp::convert::Downmixer;
use clearvox::io::{OutputFormat, WavFileWriter, WavReader, WavSpec, WavStreamWriter};
use clearvox::pipeline::duration_at;
use clearvox::pipeline::RenderFeeder;
use clearvox::{Aligner, Pipeline, Preset};

use crate::levels::{segments, LevelMeter};
use crate::plan::{self, Input, Job, Output};
use crate::plot::Recorder as PlotRecorder;
use crate::progress::Ui;
use crate::report::{self, Failure, FileReport, Report, Totals};
use crate::settings::{self, Settings};
use crate::shard::Share;
use crate::EnhanceArgs;
use clearvox::io::os_reason;

/// Input frames read and processed per step.
const CHUNK_FRAMES: usize = 4096;

/// Bytes buffered between the WAV stream and stdout.
const STDOUT_BUFFER_BYTES: usize = 64 * 1024;

/// Permission bits of outputs whose input is not a regular file (a pipe, a terminal).
const PRIVATE_MODE: u32 = 0o600;

/// Runs `clearvox enhance`.
pub fn run(args: &EnhanceArgs) -> Result<ExitCode> {
    let mut config = settings::build_config(&args.pipeline, Preset::MaxQuality)?;
    if args.echo_ref.is_some() {
        config.echo.enabled = true;
    }
    if args.print_config {
        print!("{}", config.to_toml_string()?);
        return Ok(ExitCode::SUCCESS);
    }
    let output = args
        .output
        .as_deref()
        .ok_or_else(|| anyhow!("no output given: use -o OUT"))?;
    let started = Instant::now();
    if let Some(path) = &args.report {
        report::check_path(path)?;
    }
    let mut plan = plan::plan(&args.inputs, output)?;
    let others = other_inputs(args, &config);
    let share = match args.shard {
        Some(shard) => {
            let mut taken: Vec<&Path> = others.iter().map(|p| p.as_path()).collect();
            taken.extend(args.report.as_deref());
            taken.extend(args.plot.plot.as_deref());
            Some(Share::take(
                &mut plan,
                shard,
                &args.inputs,
                output,
                args.shard_summary.as_deref(),
                &taken,
            )?)
        }
        None => None,
    };
    plan::check_other_inputs(&plan, &others)?;
    if let Some(path) = &args.report {
        plan::check_report(path, &plan, &others)?;
    }
    if let Some(path) = &args.plot.plot {
        check_plot(path, args, &plan, &others)?;
    }
    if let Some(share) = &share {
        share.remove_stale_summary()?;
    }
    let noise = settings::read_noise_clip(&args.pipeline)?;
    let echo_ref = match &args.echo_ref {
        Some(path) if plan.batch || plan.jobs.len() != 1 => bail!(
            "--echo-ref {} goes with one input file, not a batch",
            path.display()
        ),
        Some(path) => Some(settings::read_clip(path, "echo reference")?),
        None => None,
    };
    if let Some(clip) = &noise {
        // Fail once, before any file, if the clip cannot give a profile.
        Pipeline::new(&config, clip.rate, clip.channels)
            .and_then(|mut p| p.set_noise_profile(&clip.samples, clip.rate, clip.channels))
            .with_context(|| format!("noise profile {}", clip.path.display()))?;
    }
    let ui = Ui::new(args.quiet, plan.jobs.len(), plan.batch);
    if let Some(share) = share.as_ref().filter(|_| !args.quiet) {
        ui.line(&share.describe());
    }
    for clip in noise.iter().chain(&echo_ref) {
        for w in &clip.warnings {
            ui.warn(&clip.path.display().to_string(), w);
        }
    }
    let settings = Settings {
        config,
        format: args.format.map(OutputFormat::from),
        noise,
        echo_ref,
        plot: args.plot.plot.clone().map(|p| (p, args.plot.plot_size)),
    };

    let outcomes: Vec<Result<FileReport, Failure>> = if plan.jobs.len() == 1 {
        vec![run_job(&plan.jobs[0], &settings, &ui)]
    } else {
        let threads = match args.jobs {
            Some(n) => usize::from(n),
            None => std::thread::available_parallelism().map_or(1, |n| n.get()),
        };
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(threads)
            .thread_name(|i| format!("clearvox-{i}"))
            .build()
            .context("cannot start the worker threads")?;
        pool.install(|| {
            plan.jobs
                .par_iter()
                .map(|job| run_job(job, &settings, &ui))
                .collect()
        })
    };
    let wall_s = started.elapsed().as_secs_f64();
    ui.finish();
    if let Some(share) = &share {
        // It names the share's files: private if they are (none: the default bits).
        let mode = (!plan.jobs.is_empty()).then(|| report_mode(&plan.jobs));
        share.write_summary(&plan.jobs, &outcomes, mode)?;
    }

    let (done, failed): (Vec<_>, Vec<_>) = outcomes.into_iter().partition(|o| o.is_ok());
    let done: Vec<FileReport> = done.into_iter().filter_map(Result::ok).collect();
    let failed: Vec<Failure> = failed.into_iter().filter_map(Result::err).collect();
    let audio_s: f64 = done.iter().map(|r| r.duration_s).sum();

    if !args.quiet && (!done.is_empty() || plan.batch) {
        ui.line(&format!(
            "enhanced {} file(s), {:.2} s of audio in {:.2} s ({:.1}× real time)",
            done.len(),
            audio_s,
            wall_s,
            audio_s / wall_s.max(1e-9)
        ));
    }
    for f in &failed {
        eprintln!("error: {}", f.error);
    }
    if plan.batch && !failed.is_empty() {
        eprintln!(
            "error: {} of {} file(s) failed",
            failed.len(),
            plan.jobs.len()
        );
    }
    if args.timing {
        eprintln!("PROC_S={wall_s:.6}");
    }
    if let Some(path) = &args.report {
        let totals = Totals {
            files: done.len(),
            failed: failed.len(),
            duration_s: audio_s,
            processing_s: done.iter().map(|r| r.processing_s).sum(),
            wall_s,
            real_time_factor: if audio_s > 0.0 { wall_s / audio_s } else { 0.0 },
        };
        report::write(
            path,
            &Report {
                clearvox_version: env!("CARGO_PKG_VERSION"),
                config: &settings.config,
                files: &done,
                failures: &failed,
                totals,
            },
            report_mode(&plan.jobs),
        )?;
    }
    Ok(if failed.is_empty() {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

/// Enhances one file; a failure (or a panic) becomes a [`Failure`] naming the input.
fn run_job(job: &Job, settings: &Settings, ui: &Ui) -> Result<FileReport, Failure> {
    let result = crate::catch(|| enhance_file(job, settings, ui));
    ui.file_done();
    result.map_err(|e| {
        let input = job.input_name();
        let message = crate::one_line(&e);
        let error = if message.contains(&input) {
            message
        } else {
            let shown = if input == "-" { "stdin" } else { &input };
            format!("{shown}: {message}")
        };
        Failure {
            input,
            output: job.output_name(),
            error,
        }
    })
}

/// Refuses `--plot` beside a batch, and a plot path that cannot be written or is
/// another file of the run, before any audio is read.
fn check_plot(
    path: &Path,
    args: &EnhanceArgs,
    plan: &plan::Plan,
    others: &[std::path::PathBuf],
) -> Result<()> {
    if plan.batch || plan.jobs.len() != 1 {
        bail!(
            "--plot {} goes with one input file, not a batch",
            path.display()
        );
    }
    let mut taken: Vec<&Path> = others.iter().map(|p| p.as_path()).collect();
    taken.extend(args.report.as_deref());
    for job in &plan.jobs {
        if let Input::File(p) = &job.input {
            taken.push(p);
        }
        if let Output::File { path, .. } = &job.output {
            taken.push(path);
        }
    }
    crate::plot::check_path(path, &taken)
}

/// Files the run reads besides its audio inputs, which no output may replace.
fn other_inputs(args: &EnhanceArgs, config: &clearvox::Config) -> Vec<std::path::PathBuf> {
    [
        args.pipeline.config.clone(),
        args.pipeline.noise_profile.clone(),
        args.echo_ref.clone(),
        config.deepfilter.model.clone(),
    ]
    .into_iter()
    .flatten()
    .collect()
}

/// The permission bits of a file derived from an input with metadata `meta`: its
/// read/write bits, the owner's always set; [`PRIVATE_MODE`] when it is not a file.
fn mode_from(meta: Option<&fs::Metadata>) -> u32 {
    #[cfg(unix)]
    if let Some(m) = meta.filter(|m| m.is_file()) {
        use std::os::unix::fs::PermissionsExt;
        return (m.permissions().mode() & 0o666) | 0o600;
    }
    let _ = meta;
    PRIVATE_MODE
}

fn input_mode(input: &Input) -> u32 {
    match input {
        Input::Stdin => mode_from(plan::stdin_metadata().as_ref()),
        Input::File(p) => mode_from(fs::metadata(p).ok().as_ref()),
    }
}

/// The report describes every input: only the permission bits they all share.
fn report_mode(jobs: &[Job]) -> u32 {
    jobs.iter()
        .map(|j| input_mode(&j.input))
        .fold(0o666, |a, m| a & m)
        | 0o600
}

fn enhance_file(job: &Job, settings: &Settings, ui: &Ui) -> Result<FileReport> {
    let started = Instant::now();
    match &job.input {
        Input::Stdin => {
            let stdin = io::stdin();
            let mode = input_mode(&job.input);
            let reader = WavReader::new(stdin.lock())?;
            enhance_stream(reader, None, mode, job, settings, ui, started)
        }
        Input::File(path) => {
            let mut file = File::open(path)
                .map_err(|e| anyhow!("cannot open {}: {}", path.display(), os_reason(&e)))?;
            let meta = file.metadata().ok();
            let mode = mode_from(meta.as_ref());
            let held = match (&job.output, &meta) {
                (Output::Stdout, Some(m)) if m.is_file() => frames_held(&mut file, m.len())
                    .map_err(|e| anyhow!("cannot read {}: {}", path.display(), os_reason(&e)))?,
                _ => None,
            };
            enhance_stream(
                WavReader::new(file)?,
                held,
                mode,
                job,
                settings,
                ui,
                started,
            )
        }
    }
}

/// The frames a WAV file of `len` bytes holds after its header (`None` if the header
/// cannot be read: the reader reports why), leaving `file` at its start.
fn frames_held(file: &mut File, len: u64) -> io::Result<Option<u64>> {
    let header = WavSpec::read_header(&*file).ok();
    file.rewind()?;
    Ok(header.map(|(spec, audio_at)| len.saturating_sub(audio_at) / spec.frame_bytes() as u64))
}

/// `held`: the frames the input file really holds, when it is a file (a header may
/// promise more than a truncated file has).
fn enhance_stream<R: Read>(
    mut reader: WavReader<R>,
    held: Option<u64>,
    mode: u32,
    job: &Job,
    settings: &Settings,
    ui: &Ui,
    started: Instant,
) -> Result<FileReport> {
    let spec = reader.spec();
    let channels = usize::from(spec.channels);
    let mut pipeline = Pipeline::new(&settings.config, spec.sample_rate, channels)?;
    if let Some(clip) = &settings.noise {
        pipeline
            .set_noise_profile(&clip.samples, clip.rate, clip.channels)
            .with_context(|| format!("noise profile {}", clip.path.display()))?;
    }
    let latency = pipeline.latency();
    let out_rate = pipeline.output_rate();
    let format = settings
        .format
        .unwrap_or_else(|| OutputFormat::for_input(spec.format));
    let downmix = Downmixer::new(channels, settings.config.channel)?;
    // The output's length, when the input's is certain: what the header announces and
    // the file holds (the aligned output has the input's duration at the output rate).
    let out_frames = reader
        .len_frames()
        .filter(|&n| held.is_some_and(|h| n <= h))
        .map(|n| duration_at(n, spec.sample_rate, out_rate));
    let mut sink = Sink::open(&job.output, out_rate, format, mode, out_frames)?;
    let mut render = match &settings.echo_ref {
        Some(clip) => {
            pipeline
                .set_render_format(clip.rate, clip.channels)
                .with_context(|| format!("echo reference {}", clip.path.display()))?;
            Some(RenderFeeder::new(
                &clip.samples,
                clip.rate,
                clip.channels,
                spec.sample_rate,
            ))
        }
        None => None,
    };
    let mut aligner = Aligner::new(pipeline);

    let bar = ui.file_bar(&job.input_name(), reader.len_frames(), spec.sample_rate);
    let mut input = vec![0.0f32; CHUNK_FRAMES * channels];
    let mut mono = vec![0.0f32; CHUNK_FRAMES];
    let mut out = Vec::with_capacity(aligner.pipeline().output_frames_max(CHUNK_FRAMES));
    let mut in_meter = LevelMeter::new(spec.sample_rate);
    let mut out_meter = LevelMeter::new(out_rate);
    let mut plot = match &settings.plot {
        Some((_, size)) => Some(PlotRecorder::new(spec.sample_rate, out_rate, *size)?),
        None => None,
    };
    loop {
        let n = reader.read_frames(&mut input)?;
        if n == 0 {
            break;
        }
        let frames = n / channels;
        downmix.process(&input[..n], &mut mono);
        in_meter.push(&mono[..frames]);
        if let Some(p) = plot.as_mut() {
            p.input.push(&mono[..frames]);
        }
        if let Some(feeder) = render.as_mut() {
            feeder.feed(aligner.pipeline_mut(), frames)?;
        }
        aligner.process(&input[..n], &mut out)?;
        out_meter.push(&out);
        if let Some(p) = plot.as_mut() {
            p.output.push(&out);
        }
        sink.write(&out)?;
        out.clear();
        bar.advance(frames as u64);
    }
    aligner.finish(&mut out)?;
    out_meter.push(&out);
    if let Some(p) = plot.as_mut() {
        p.output.push(&out);
    }
    sink.write(&out)?;
    drop(bar);

    let mut warnings = reader.warnings();
    if settings.config.denoiser == Denoiser::DeepFilter && spec.sample_rate < NARROWBAND_BELOW_HZ {
        warnings.push(format!(
            "{} Hz input: DeepFilterNet3 is trained on full-band speech and can cost \
             intelligibility on band-limited audio; --preset voice-chat may do better here",
            spec.sample_rate
        ));
    }
    for w in &warnings {
        ui.warn(&job.input_name(), w);
    }
    sink.finish()?;

    let frames_in = in_meter.samples();
    let frames_out = out_meter.samples();
    let speech = segments(aligner.events(), frames_out, out_rate);
    let duration_s = frames_in as f64 / f64::from(spec.sample_rate);
    let processing_s = started.elapsed().as_secs_f64();
    let report = FileReport {
        input: job.input_name(),
        output: job.output_name(),
        sample_rate_in: spec.sample_rate,
        sample_rate_out: out_rate,
        channels: spec.channels,
        format_in: spec.format.name(),
        format_out: format.name(),
        frames_in,
        frames_out,
        duration_s,
        processing_s,
        real_time_factor: processing_s / duration_s.max(1e-12),
        latency_samples: latency,
        latency_ms: latency as f64 * 1000.0 / f64::from(out_rate),
        noise_level_in_dbfs: in_meter.noise_dbfs(&speech),
        noise_level_out_dbfs: out_meter.noise_dbfs(&speech),
        speech_level_in_dbfs: in_meter.speech_dbfs(&speech),
        speech_level_out_dbfs: out_meter.speech_dbfs(&speech),
        speech_segments: speech,
        warnings,
    };
    if let (Some(mut recorder), Some((path, _))) = (plot, &settings.plot) {
        recorder.write(path, &report)?;
    }
    Ok(report)
}

/// Input rates below this (telephone band) carry too little of the spectrum for
/// DeepFilterNet3 to be the better denoiser: measured on `testdata/`, it costs up to
/// 0.08 STOI at 8 kHz, where RNNoise gains (README, "Quality").
const NARROWBAND_BELOW_HZ: u32 = 16_000;

/// Where the enhanced samples go.
enum Sink {
    File(WavFileWriter),
    /// stdout, streamed: nothing is kept.
    Stream(WavStreamWriter<BufWriter<io::Stdout>>),
}

impl Sink {
    /// `frames`: the output's length if known (exact sizes in a streamed header).
    fn open(
        output: &Output,
        rate: u32,
        format: OutputFormat,
        mode: u32,
        frames: Option<u64>,
    ) -> Result<Self> {
        match output {
            Output::Stdout => {
                let stdout = BufWriter::with_capacity(STDOUT_BUFFER_BYTES, io::stdout());
                Ok(Self::Stream(WavStreamWriter::new(
                    stdout, rate, 1, format, frames,
                )?))
            }
            Output::File {
                path,
                create_folders,
            } => {
                if *create_folders {
                    create_parent(path)?;
                }
                Ok(Self::File(WavFileWriter::create_with_mode(
                    path, rate, 1, format, mode,
                )?))
            }
        }
    }

    fn write(&mut self, samples: &[f32]) -> Result<()> {
        match self {
            Self::File(w) => w.write(samples)?,
            Self::Stream(w) => w.write(samples)?,
        }
        Ok(())
    }

    fn finish(self) -> Result<()> {
        match self {
            Self::File(w) => w.finish()?,
            Self::Stream(w) => {
                w.finish()?;
            }
        }
        Ok(())
    }
}

/// Creates the folders above `path` (inside the output folder of a batch).
fn create_parent(path: &Path) -> Result<()> {
    if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
        fs::create_dir_all(parent).map_err(|e| {
            anyhow!(
                "cannot create output folder {}: {}",
                parent.display(),
                os_reason(&e)
            )
        })?;
    }
    Ok(())
}
