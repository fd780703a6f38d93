//! `clearvox stream`: a WAV file through the pipeline to a conversation backend; and the
//! pieces `live --stream` shares with it.

use std::io::{IsTerminal, Write};
use std::process::ExitCode;
use std::sync::mpsc::Receiver;
use std::thread::JoinHandle;

use anyhow::{bail, Context, Result};

use clearvox::config::{Config, Preset};
use clearvox::io::WavReader;
use clearvox::stream::source::run_wav_until;
use clearvox::stream::{
    connect, escape_controls, StreamConfig, StreamEvent, StreamHandle, StreamStats, Token,
};

use crate::{settings, ServerText, StreamArgs, StreamCmdArgs};

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
            // Not echoed: a header's value is often a key.
            bail!("--header: write it as 'Name: value' (the argument is not shown)");
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

/// Whether server text is escaped on stdout: `auto` escapes on a terminal, where its
/// control characters would drive the terminal (clear it, set its title, rewrite lines).
pub fn escapes_server_text(mode: ServerText, stdout_is_terminal: bool) -> bool {
    match mode {
        ServerText::Auto => stdout_is_terminal,
        ServerText::Escaped => true,
        ServerText::Raw => false,
    }
}

/// A server message as the line printed: line breaks made spaces (one message, one
/// line), and with `escape` every other control character written as an escape.
pub fn server_line(text: &str, escape: bool) -> String {
    let text = text.replace('\n', " ");
    if escape {
        escape_controls(&text).into_owned()
    } else {
        text
    }
}

/// What `live --play-responses` does with the answers' events besides printing them.
pub struct Answers {
    /// The stream's rate (the answers' audio comes at it), for the durations printed.
    pub rate: u32,
    /// Called when an answer ends (`response.done`), after all its audio was handed to
    /// the player: the player plays what its resampler still holds.
    pub on_end: Box<dyn FnMut() + Send>,
}

/// The note printed for an answer's event (`None` for the other events).
pub fn answer_note(event: &StreamEvent, rate: u32) -> Option<String> {
    let seconds = |samples: u64| samples as f64 / rate.max(1) as f64;
    match event {
        StreamEvent::ResponseStarted => Some("answer: started".into()),
        StreamEvent::ResponseFinished { status, samples } => Some(format!(
            "answer: finished ({}, {:.2} s)",
            serde_json::to_value(status)
                .ok()
                .and_then(|v| v.as_str().map(str::to_string))
                .unwrap_or_default(),
            seconds(*samples)
        )),
        StreamEvent::ResponseCancelled {
            samples,
            cancel_sent,
        } => Some(format!(
            "answer: stopped, the user spoke over it ({:.2} s received{})",
            seconds(*samples),
            if *cancel_sent {
                "; response.cancel sent"
            } else {
                ""
            }
        )),
        _ => None,
    }
}

/// Prints stream events as they come: server messages as JSON lines on stdout (escaped
/// as `args.server_text` says), the rest as one-line notes on stderr. With `answers`
/// (a player of the backend's answers), their start, end and cancellation are notes too.
pub fn print_events(
    events: Receiver<StreamEvent>,
    args: &StreamArgs,
    mut answers: Option<Answers>,
) -> JoinHandle<()> {
    let escape = escapes_server_text(args.server_text, std::io::stdout().is_terminal());
    std::thread::spawn(move || {
        for e in events {
            match e {
                StreamEvent::ServerMessage(text) => {
                    let mut out = std::io::stdout().lock();
                    let _ = writeln!(out, "{}", server_line(&text, escape));
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
                // Only with a player of the answers (`live --play-responses`).
                StreamEvent::ResponseStarted
                | StreamEvent::ResponseFinished { .. }
                | StreamEvent::ResponseCancelled { .. } => {
                    let Some(a) = answers.as_mut() else {
                        continue;
                    };
                    if matches!(e, StreamEvent::ResponseFinished { .. }) {
                        (a.on_end)();
                    }
                    if let Some(note) = answer_note(&e, a.rate) {
                        eprintln!("{note}");
                    }
                }
            }
        }
    })
}

/// The error that ends a streaming command whose audio did not all reach the backend:
/// why (the receiver's refusal, if it refused), and how much of the `input_s` seconds
/// was lost, `unstreamed_s` (input never streamed) included.
pub fn loss(stats: &StreamStats, rate: u32, input_s: f64, unstreamed_s: f64) -> Option<String> {
    // Dropped frames are 10 ms each.
    let lost_s = stats.dropped_samples as f64 / rate as f64
        + stats.dropped_frames as f64 * 0.01
        + unstreamed_s;
    if stats.failure.is_none() && lost_s == 0.0 {
        return None;
    }
    let amount = format!("{lost_s:.2} s of {input_s:.2} s of audio did not reach the backend");
    Some(match &stats.failure {
        Some(f) => format!("{f}; {amount}"),
        None => amount,
    })
}

/// Whether the stream was refused for good (the source can stop).
pub fn refused(handle: &StreamHandle) -> bool {
    handle.failure().is_some()
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
    let total_s = reader
        .len_frames()
        .map(|n| n as f64 / reader.spec().sample_rate as f64);
    let (mut sink, mut handle) = connect(&stream, token)?;
    let printer = handle
        .take_events()
        .map(|e| print_events(e, &args.stream, None));
    let source = run_wav_until(reader, &config, &mut sink, args.realtime, &|| {
        refused(&handle)
    });
    drop(sink);
    let stats = handle.wait()?;
    if let Some(p) = printer {
        let _ = p.join();
    }
    let source = source?;
    report(&stats, stream.rate(), args.json);
    let read_s = source.duration_s;
    let (input_s, unstreamed_s) = match total_s {
        Some(t) if source.stopped => (t, (t - read_s).max(0.0)),
        _ => (read_s, 0.0),
    };
    if let Some(mut lost) = loss(&stats, stream.rate(), input_s, unstreamed_s) {
        if source.stopped {
            lost.push_str(&format!(" (streaming stopped at {read_s:.2} s)"));
        }
        bail!(lost);
    }
    Ok(ExitCode::SUCCESS)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn server_text_is_escaped_on_a_terminal_or_when_asked() {
        assert!(escapes_server_text(ServerText::Auto, true));
        assert!(!escapes_server_text(ServerText::Auto, false));
        assert!(escapes_server_text(ServerText::Escaped, false));
        assert!(!escapes_server_text(ServerText::Raw, true));
        let text = "{\"t\":\"\x1b]0;x\x07\r\nok\"}";
        assert_eq!(server_line(text, true), r#"{"t":"\x1b]0;x\x07\r ok"}"#);
        assert_eq!(server_line(text, false), "{\"t\":\"\x1b]0;x\x07\r ok\"}");
    }

    #[test]
    fn answers_are_told_in_seconds() {
        use clearvox::stream::ResponseStatus;
        assert_eq!(
            answer_note(&StreamEvent::ResponseStarted, 24_000).as_deref(),
            Some("answer: started")
        );
        let done = StreamEvent::ResponseFinished {
            status: ResponseStatus::Completed,
            samples: 36_000,
        };
        assert_eq!(
            answer_note(&done, 24_000).as_deref(),
            Some("answer: finished (completed, 1.50 s)")
        );
        let cancelled = StreamEvent::ResponseCancelled {
            samples: 12_000,
            cancel_sent: true,
        };
        assert_eq!(
            answer_note(&cancelled, 24_000).as_deref(),
            Some("answer: stopped, the user spoke over it (0.50 s received; response.cancel sent)")
        );
        assert_eq!(answer_note(&StreamEvent::Warning("w".into()), 24_000), None);
    }

    #[test]
    fn the_loss_is_said_with_the_refusal() {
        let mut stats = StreamStats::default();
        assert_eq!(loss(&stats, 16_000, 3.0, 0.0), None);
        stats.dropped_samples = 8_000;
        stats.dropped_frames = 50;
        assert_eq!(
            loss(&stats, 16_000, 3.0, 0.0).unwrap(),
            "1.00 s of 3.00 s of audio did not reach the backend"
        );
        stats.failure = Some("ws://h/ closed the connection with 1008".into());
        assert_eq!(
            loss(&stats, 16_000, 3.0, 1.5).unwrap(),
            "ws://h/ closed the connection with 1008; 2.50 s of 3.00 s of audio did not \
             reach the backend"
        );
    }
}
