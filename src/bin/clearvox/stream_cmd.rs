//! `clearvox stream`: a WAV file through the pipeline to a conversation backend; and the
//! pieces `live --stream` shares with it.

use std::io::Write;
use std::process::ExitCode;
use std::sync::mpsc::Receiver;
use std::thread::JoinHandle;

use anyhow::{bail, Context, Result};

use clearvox::config::{Config, Preset};
use clearvox::io::WavReader;
use clearvox::stream::source::run_wav;
use clearvox::stream::{connect, StreamConfig, StreamEvent, StreamStats, Token};

use crate::{settings, StreamArgs, StreamCmdArgs};

/// The stream configuration the flags describe.
pub fn stream_config(url: &str, args: &StreamArgs) -> Result<StreamConfig> {
    let mut c = StreamConfig::new(url);
    if let Some(p) = args.protocol {
        c.protocol = p;
    }
    c.rate = args.rate;
    c.events = args.events;
    if let Some(t) = args.turn_detection {
        c.turn_detection = t;
    }
    if let Some(ms) = args.packet_ms {
        c.packet_ms = ms;
    }
    if let Some(s) = args.buffer_s {
        c.buffer_s = s;
    }
    c.resume = !args.no_resume;
    c.ca_file = args.ca_file.clone();
    c.insecure = args.insecure;
    for h in &args.headers {
        let Some((name, value)) = h.split_once(':') else {
            bail!("--header '{h}': write it as 'Name: value'");
        };
        let name = name.trim();
        if name.eq_ignore_ascii_case("authorization") {
            bail!("--header Authorization: the token comes from the environment ({}), never from the command line", args.token_env);
        }
        c.headers.insert(name.to_string(), value.trim().to_string());
    }
    c.validate()?;
    Ok(c)
}

/// Prints stream events as they come: server messages as JSON lines on stdout, the rest
/// as one-line notes on stderr.
pub fn print_events(events: Receiver<StreamEvent>) -> JoinHandle<()> {
    std::thread::spawn(move || {
        for e in events {
            match e {
                StreamEvent::ServerMessage(text) => {
                    let mut out = std::io::stdout().lock();
                    let _ = writeln!(out, "{}", text.replace('\n', " "));
                    let _ = out.flush();
                }
                StreamEvent::Connected { acknowledged, from } => {
                    if from > 0 {
                        eprintln!(
                            "note: connected again, sending from sample {from}{}",
                            if acknowledged {
                                " (the receiver acknowledges)"
                            } else {
                                ""
                            }
                        );
                    }
                }
                StreamEvent::Disconnected { reason } => {
                    eprintln!("warning: connection lost ({reason}); reconnecting");
                }
                StreamEvent::Dropped { samples, reason } => {
                    eprintln!("warning: dropped {samples} samples of audio: {reason}");
                }
                StreamEvent::Warning(w) => eprintln!("warning: {w}"),
            }
        }
    })
}

/// The closing line of a stream.
pub fn report(stats: &StreamStats, rate: u32, json: bool) {
    if json {
        eprintln!("{}", serde_json::to_string(stats).unwrap_or_default());
        return;
    }
    eprintln!(
        "streamed {:.2} s: {} packets, {} bytes, {} reconnect(s), {:.2} s resent, {:.2} s dropped, \
         ack round trip {:.1} ms (mean {:.1} ms)",
        stats.samples_sent.saturating_sub(stats.resent_samples) as f64 / rate as f64,
        stats.packets_sent,
        stats.bytes_sent,
        stats.reconnects,
        stats.resent_samples as f64 / rate as f64,
        stats.dropped_samples as f64 / rate as f64,
        stats.ack_rtt_ms,
        stats.ack_rtt_mean_ms,
    );
}

/// The pipeline configuration for streaming: its output at the backend's rate unless
/// asked otherwise (then the network thread resamples).
pub fn pipeline_for(mut config: Config, stream: &StreamConfig) -> Config {
    if config.output_rate.is_none() {
        config.output_rate = Some(stream.rate());
    }
    config
}

/// `clearvox stream`.
pub fn run(args: &StreamCmdArgs) -> Result<ExitCode> {
    let stream = stream_config(&args.url, &args.stream)?;
    let config = pipeline_for(
        settings::build_config(&args.pipeline, Preset::VoiceChat)?,
        &stream,
    );
    if args.pipeline.noise_profile.is_some() {
        bail!("--noise-profile is for `enhance`; the stream's gate learns the noise as it goes");
    }
    let reader: WavReader<Box<dyn std::io::Read>> = if args.input.as_os_str() == "-" {
        WavReader::new(Box::new(std::io::stdin().lock()) as Box<dyn std::io::Read>)
            .context("stdin")?
    } else {
        let file = std::fs::File::open(&args.input).map_err(|e| {
            anyhow::anyhow!(
                "cannot open {}: {}",
                args.input.display(),
                clearvox::io::without_os_error_number(&e.to_string())
            )
        })?;
        WavReader::new(Box::new(std::io::BufReader::new(file)) as Box<dyn std::io::Read>)
            .map_err(|e| crate::about("input", &args.input, e))?
    };
    for w in reader.warnings() {
        eprintln!("warning: {}: {w}", args.input.display());
    }
    let token = Token::from_env(&args.stream.token_env);
    let (mut sink, mut handle) = connect(&stream, token)?;
    let printer = handle.take_events().map(print_events);
    let source = run_wav(reader, &config, &mut sink, args.realtime);
    drop(sink);
    let stats = handle.wait()?;
    if let Some(p) = printer {
        let _ = p.join();
    }
    let source = source?;
    report(&stats, stream.rate(), args.json);
    if stats.dropped_samples > 0 {
        eprintln!(
            "warning: {:.2} s of {:.2} s of audio did not reach the backend",
            stats.dropped_samples as f64 / stream.rate() as f64,
            source.duration_s
        );
    }
    Ok(ExitCode::SUCCESS)
}
