//! `clearvox live` and `clearvox devices`: the engine on the machine's own audio hardware.

use std::io::{IsTerminal, Write};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
#[cfg(feature = "stream")]
use std::sync::Mutex;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use serde::Serialize;

#[cfg(feature = "stream")]
use clearvox::engine::EnginePlayer;
use clearvox::engine::{
    list_devices, DeviceList, DeviceSelector, Engine, EngineConfig, EngineEvent, EngineStats,
    StreamInfo,
};
#[cfg(feature = "stream")]
use clearvox::pipeline::ResponsePlayer;
use clearvox::Preset;

use crate::{settings, DevicesArgs, LiveArgs};

/// How often the status line is redrawn.
const STATUS_EVERY: Duration = Duration::from_millis(100);

/// `clearvox devices`.
pub fn devices(args: &DevicesArgs) -> Result<std::process::ExitCode> {
    let list = list_devices(&cpal::default_host())?;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&list)?);
    } else {
        print!("{}", render_devices(&list));
    }
    Ok(std::process::ExitCode::SUCCESS)
}

fn render_devices(list: &DeviceList) -> String {
    let mut out = String::new();
    for (title, devices) in [("input", &list.inputs), ("output", &list.outputs)] {
        out.push_str(&format!("{title} devices ({}):\n", list.host));
        if devices.is_empty() {
            out.push_str("  none\n");
        }
        for d in devices {
            let mark = if d.is_default { "*" } else { " " };
            out.push_str(&format!("  {:>2}{mark} {}\n", d.index, d.name));
            if let Some(c) = &d.default_config {
                out.push_str(&format!("       default: {c}\n"));
            }
            for line in summarize(&d.configs) {
                out.push_str(&format!("       supports: {line}\n"));
            }
        }
    }
    out.push_str("(* = default; select with --input/--output NAME or INDEX)\n");
    out
}

/// One line per sample format: the channel and rate ranges it comes in (devices such as
/// ALSA's plugins list hundreds of combinations).
fn summarize(configs: &[clearvox::engine::ConfigRange]) -> Vec<String> {
    let mut formats: Vec<(String, u16, u16, u32, u32)> = Vec::new();
    for c in configs {
        match formats.iter_mut().find(|f| f.0 == c.format) {
            Some(f) => {
                f.1 = f.1.min(c.channels);
                f.2 = f.2.max(c.channels);
                f.3 = f.3.min(c.min_rate);
                f.4 = f.4.max(c.max_rate);
            }
            None => formats.push((
                c.format.clone(),
                c.channels,
                c.channels,
                c.min_rate,
                c.max_rate,
            )),
        }
    }
    // Formats that come in the same ranges share a line.
    let mut lines: Vec<(String, String)> = Vec::new();
    for (format, c0, c1, r0, r1) in formats {
        let ch = if c0 == c1 {
            c0.to_string()
        } else {
            format!("{c0}-{c1}")
        };
        let hz = if r0 == r1 {
            r0.to_string()
        } else {
            format!("{r0}-{r1}")
        };
        let ranges = format!("{ch} ch, {hz} Hz");
        match lines.iter_mut().find(|l| l.1 == ranges) {
            Some(l) => l.0 = format!("{}/{format}", l.0),
            None => lines.push((format, ranges)),
        }
    }
    lines
        .into_iter()
        .map(|(f, r)| format!("{f}: {r}"))
        .collect()
}

/// What `live` prints as JSON at the end when stderr is not a terminal (or `--json`).
#[derive(Serialize)]
struct Summary<'a> {
    stream: Option<&'a StreamInfo>,
    stats: &'a EngineStats,
    events: &'a [EngineEvent],
    recording: Option<String>,
    stopped_by: &'a str,
    /// The network stream's statistics, with --stream.
    network: Option<serde_json::Value>,
}

/// `clearvox live`.
pub fn live(args: &LiveArgs) -> Result<std::process::ExitCode> {
    #[allow(unused_mut)]
    let mut pipeline = settings::build_config(&args.pipeline, Preset::VoiceChat)?;
    #[cfg(feature = "stream")]
    let stream_config = match &args.stream {
        Some(url) => {
            let c = crate::stream_cmd::stream_config(url, &args.stream_args)?;
            pipeline = crate::stream_cmd::pipeline_for(pipeline, &c);
            Some(c)
        }
        None => None,
    };
    if args.pipeline.noise_profile.is_some() {
        bail!("--noise-profile is for files; live, the gate learns the noise as it goes");
    }
    if let Some(d) = args.duration {
        if !(d > 0.0 && d.is_finite()) {
            bail!("--duration {d}: must be a positive number of seconds");
        }
    }
    #[cfg(feature = "stream")]
    let play_responses = args.play_responses;
    #[cfg(not(feature = "stream"))]
    let play_responses = false;
    #[cfg(feature = "stream")]
    if play_responses {
        let openai = stream_config
            .as_ref()
            .is_some_and(|c| c.protocol == clearvox::stream::Protocol::Openai);
        if !openai {
            bail!(
                "--play-responses needs --stream URL --protocol openai (the answers come from an \
                 OpenAI Realtime backend)"
            );
        }
        // The answers come back into the microphone: cancel them, unless the
        // configuration file says otherwise.
        if !settings::config_sets_echo(&args.pipeline) {
            pipeline.echo.enabled = true;
        }
    } else if args.barge_in {
        bail!("--barge-in needs --play-responses (it stops an answer that is playing)");
    }
    #[cfg(feature = "stream")]
    let stream_config = stream_config.map(|mut c| {
        c.barge_in = args.barge_in;
        c
    });
    // With --play-responses the output device plays the answers, and the monitor only
    // when asked; otherwise --output is the monitor's.
    let output = match (&args.output, args.monitor) {
        (Some(o), _) => Some(o.parse::<DeviceSelector>().unwrap_or_default()),
        (None, true) => Some(DeviceSelector::Default),
        (None, false) => None,
    };
    let config = EngineConfig {
        monitor: args.monitor || !play_responses,
        playback: play_responses,
        pipeline,
        input: args
            .input
            .as_deref()
            .map(|s| s.parse::<DeviceSelector>().unwrap_or_default())
            .unwrap_or_default(),
        output,
        input_rate: args.input_rate,
        input_channels: args.input_channels,
        input_format: args.input_format,
        buffer_ms: args.buffer_ms,
        capture_ring_ms: args
            .ring_ms
            .unwrap_or(EngineConfig::default().capture_ring_ms),
        record: args.record.clone(),
        record_format: args.format.map(Into::into),
        duration: args.duration.map(Duration::from_secs_f64),
        ..EngineConfig::default()
    };
    let mut engine = Engine::new(config)?;
    #[cfg(feature = "stream")]
    let mut stream = None;
    // The answers' player: handed to the stream now, filled with the engine's player
    // once the engine runs (the frame sink is set before the start, the player exists
    // only after it).
    #[cfg(feature = "stream")]
    let player = play_responses.then(SharedPlayer::default);
    #[cfg(feature = "stream")]
    if let Some(c) = &stream_config {
        let token = clearvox::stream::Token::from_env(&args.stream_args.token_env);
        let (sink, mut handle) = match &player {
            Some(p) => clearvox::stream::connect_with_player(c, token, Box::new(p.clone()))?,
            None => clearvox::stream::connect(c, token)?,
        };
        let answers = player.as_ref().map(|p| {
            let p = p.clone();
            crate::stream_cmd::Answers {
                rate: c.rate(),
                on_end: Box::new(move || p.finish()),
            }
        });
        let printer = handle
            .take_events()
            .map(|e| crate::stream_cmd::print_events(e, &args.stream_args, answers));
        engine.set_frame_sink(Box::new(sink));
        stream = Some((handle, printer, c.rate()));
    }
    let interrupted = Arc::new(AtomicBool::new(false));
    {
        let flag = interrupted.clone();
        // A second Ctrl-C while stopping is ignored; the stop is quick.
        ctrlc::set_handler(move || flag.store(true, Ordering::SeqCst))
            .context("cannot install the Ctrl-C handler")?;
    }
    let terminal = std::io::stderr().is_terminal() && !args.json;
    engine.start()?;
    #[cfg(feature = "stream")]
    if let Some(p) = &player {
        p.put(engine.player()?);
    }
    let info = engine.stream_info();
    if terminal {
        if let Some(i) = &info {
            eprintln!(
                "listening on {} ({} Hz, {} ch, {:?}){}; Ctrl-C stops",
                i.input_device,
                i.input_rate,
                i.input_channels,
                i.input_format,
                match (&i.monitor_device, i.monitoring, i.playback) {
                    (Some(m), true, true) => format!(", monitoring and answering on {m}"),
                    (Some(m), true, false) => format!(", monitoring on {m}"),
                    (Some(m), false, true) => format!(", answering on {m}"),
                    _ => String::new(),
                }
            );
        }
    }
    let started = Instant::now();
    let mut events = Vec::new();
    let stopped_by = loop {
        while let Some(e) = engine.poll_event() {
            events.push(e);
        }
        if interrupted.load(Ordering::SeqCst) {
            break "interrupt";
        }
        #[cfg(feature = "stream")]
        if stream
            .as_ref()
            .is_some_and(|(h, _, _)| crate::stream_cmd::refused(h))
        {
            break "stream refused";
        }
        if engine.is_finished() {
            break if events
                .iter()
                .any(|e| matches!(e, EngineEvent::DeviceError { .. }))
            {
                "device error"
            } else {
                "duration"
            };
        }
        if terminal {
            status_line(&engine.stats(), started.elapsed());
        }
        std::thread::sleep(STATUS_EVERY);
    };
    let result = engine.stop();
    while let Some(e) = engine.poll_event() {
        events.push(e);
    }
    // The processing thread finished the sink at stop: wait for the stream's delivery.
    #[cfg(feature = "stream")]
    let stream_stats = match stream {
        Some((handle, printer, rate)) => {
            let stats = handle.wait()?;
            if let Some(p) = printer {
                let _ = p.join();
            }
            if terminal {
                crate::stream_cmd::report(&stats, rate, false);
            }
            Some(stats)
        }
        None => None,
    };
    #[cfg(not(feature = "stream"))]
    let stream_stats: Option<()> = None;
    if terminal {
        eprintln!();
    }
    let stats = engine.stats();
    let recording = args.record.as_ref().map(|p| p.display().to_string());
    if terminal {
        eprintln!(
            "{:.1} s captured, {} frames, {} overrun(s) ({} frames lost), {} underrun(s), \
             frame time p50 {} µs / p99 {} µs / max {} µs, latency ≈ {:.1} ms",
            stats.captured_frames as f64 / info.as_ref().map_or(1, |i| i.input_rate) as f64,
            stats.frames_processed,
            stats.overruns,
            stats.overrun_frames,
            stats.underruns,
            stats.frame_time_p50_us,
            stats.frame_time_p99_us,
            stats.frame_time_max_us,
            stats.latency_ms,
        );
        if stats.overruns > 0 {
            eprintln!(
                "warning: {} frames of input were lost to overruns (the capture ring was full)",
                stats.overrun_frames
            );
        }
    } else {
        let summary = Summary {
            stream: info.as_ref(),
            stats: &stats,
            events: &events,
            recording,
            stopped_by,
            network: stream_stats
                .as_ref()
                .map(|s| serde_json::to_value(s).unwrap_or_default()),
        };
        println!("{}", serde_json::to_string(&summary)?);
    }
    result?;
    // Audio that did not reach the backend fails the command, after the summary.
    #[cfg(feature = "stream")]
    if let (Some(s), Some(c)) = (&stream_stats, &stream_config) {
        let captured_s =
            stats.captured_frames as f64 / info.as_ref().map_or(1, |i| i.input_rate).max(1) as f64;
        if let Some(lost) = crate::stream_cmd::loss(s, c.rate(), captured_s, 0.0) {
            bail!(lost);
        }
    }
    Ok(std::process::ExitCode::SUCCESS)
}

/// The engine's player of the backend's answers, shared by the stream's network thread
/// (which plays and cancels) and the thread that prints the stream's events (which ends
/// each answer). Until the engine runs it holds no player and accepts nothing.
#[cfg(feature = "stream")]
#[derive(Clone, Default)]
struct SharedPlayer(Arc<Mutex<Option<EnginePlayer>>>);

#[cfg(feature = "stream")]
impl SharedPlayer {
    fn lock(&self) -> std::sync::MutexGuard<'_, Option<EnginePlayer>> {
        // A panic elsewhere leaves the player usable: it holds no invariant of ours.
        self.0.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn put(&self, player: EnginePlayer) {
        *self.lock() = Some(player);
    }

    /// The answer is complete: play what the resampler still holds.
    fn finish(&self) {
        if let Some(p) = self.lock().as_mut() {
            p.finish();
        }
    }
}

#[cfg(feature = "stream")]
impl ResponsePlayer for SharedPlayer {
    fn play(&mut self, samples: &[f32], rate: u32) -> usize {
        self.lock().as_mut().map_or(0, |p| p.play(samples, rate))
    }

    fn cancel(&mut self) {
        if let Some(p) = self.lock().as_mut() {
            p.cancel();
        }
    }

    fn is_playing(&self) -> bool {
        self.lock().as_ref().is_some_and(|p| p.is_playing())
    }
}

fn status_line(s: &EngineStats, elapsed: Duration) {
    // A 20-step meter from -60 to 0 dBFS.
    let steps = ((s.input_level_dbfs + 60.0) / 3.0).clamp(0.0, 20.0) as usize;
    let meter: String = "#".repeat(steps) + &" ".repeat(20 - steps);
    let line = format!(
        "\r[{meter}] {:>5.1} dBFS  {}  CPU {:>4.1}%  overruns {}  underruns {}  latency {:>5.1} ms  {:>6.1} s ",
        s.input_level_dbfs.max(-99.9),
        if s.in_speech { "SPEECH" } else { "quiet " },
        s.cpu_percent,
        s.overruns,
        s.underruns,
        s.latency_ms,
        elapsed.as_secs_f64()
    );
    let mut err = std::io::stderr().lock();
    let _ = err.write_all(line.as_bytes());
    let _ = err.flush();
}
