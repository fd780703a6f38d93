//! `clearvox stream` into `clearvox serve` over loopback, end to end: what the receiver
//! writes equals the offline enhancement at the backend's rate, PCM16 value for value,
//! once the pipeline's latency is removed — for 48 kHz float, 44.1 kHz stereo 24-bit and
//! 16 kHz 16-bit inputs, raw at 16 kHz and OpenAI at 24 kHz; the raw protocol's events
//! land in the receiver's log where the pipeline's VAD put them; `--realtime` paces the
//! file; and the library's own path (`connect` + `source::run_wav`) does the same in
//! process.

use std::time::Duration;

use crate::support::f64_field;
use crate::support::stream::*;
use clearvox::dsp::vad::VadEventKind;
use clearvox::io::WavReader;
use clearvox::stream::server::{Server, ServerConfig};
use clearvox::stream::{connect, source::run_wav, StreamConfig, StreamEvent};

const FILES: [&str; 3] = [F32_48K, S24_44K_STEREO, S16_16K];

/// Streams `file` with `args` into a fresh receiver and checks the result against the
/// offline enhancement at `rate`. Returns the stream's log and the client's run.
fn stream_equals_offline(
    file: &str,
    rate: u32,
    protocol: &str,
    args: &[&str],
) -> (Received, StreamRun) {
    stream_equals_offline_at(file, rate, protocol, args, "")
}

/// The same, with `query` appended to the URL.
fn stream_equals_offline_at(
    file: &str,
    rate: u32,
    protocol: &str,
    args: &[&str],
    query: &str,
) -> (Received, StreamRun) {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("out");
    let serve = Serve::start(&out);
    let input = testdata(file);
    let mut all = vec!["--protocol", protocol, "--json"];
    all.extend_from_slice(args);
    let run = stream(&input, &format!("{}{query}", serve.url()), &all);
    run.assert_success();
    let stats = run.stats();
    let s = the_stream(&out);
    wait_ended(&out, &s.id);
    let s = the_stream(&out);
    drop(serve);

    let what = format!("{file} {protocol} {rate} Hz");
    assert_eq!(s.rate, rate, "{what}");
    let format = s.lines("format");
    assert_eq!(format.len(), 1, "{what}: {format:?}");
    assert_eq!(format[0]["protocol"], protocol, "{what}");
    assert_eq!(format[0]["rate"], rate, "{what}");
    assert!(s.gaps().is_empty(), "{what}: gaps {:?}", s.gaps());
    assert_eq!(s.lines("protocol_error").len(), 0, "{what}: {:?}", s.log);

    let latency = pipeline_latency(&input, rate);
    let off = offline(&input, rate, dir.path());
    assert_equals_offline(&s.samples, &off, latency, &what);
    // The whole stream, latency included, is the library's pipeline output.
    let expected = expected_stream(&input, rate);
    assert_eq!(expected.latency, latency);
    assert_eq!(
        first_difference(&s.samples, &expected.stream),
        None,
        "{what}"
    );
    assert_eq!(s.samples.len(), expected.stream.len(), "{what}");

    let n = s.samples.len() as u64;
    assert_eq!(stats["samples_sent"], n, "{what}: {stats}");
    let resume = !args.contains(&"--no-resume");
    let acked = if resume { n } else { 0 };
    assert_eq!(stats["acked_samples"], acked, "{what}: {stats}");
    assert_eq!(s.lines("connected")[0]["resume"], resume, "{what}");
    for zero in [
        "resent_samples",
        "reconnects",
        "dropped_samples",
        "dropped_frames",
    ] {
        assert_eq!(stats[zero], 0, "{what}: {zero}: {stats}");
    }
    eprintln!(
        "{what}: {} samples, latency {latency}, {} packets, wall {:.2} s",
        n,
        stats["packets_sent"],
        run.wall.as_secs_f64()
    );
    (s, run)
}

#[test]
fn raw_16k_equals_the_offline_enhancement_for_every_input_format() {
    for file in FILES {
        stream_equals_offline(file, 16_000, "raw", &[]);
    }
}

#[test]
fn openai_24k_equals_the_offline_enhancement_for_every_input_format() {
    for file in FILES {
        let (s, _) = stream_equals_offline(file, 24_000, "openai", &[]);
        assert_eq!(s.lines("session.update").len(), 1, "{:?}", s.log);
        assert!(
            s.log
                .iter()
                .all(|l| l["type"] != "input_audio_buffer.append"),
            "appends are never logged"
        );
    }
}

#[test]
fn raw_at_another_rate_equals_the_offline_enhancement_at_that_rate() {
    // Plain raw audio says nothing of its rate: the receiver takes it from the URL...
    stream_equals_offline_at(
        S24_44K_STEREO,
        8_000,
        "raw",
        &["--rate", "8000"],
        "?rate=8000",
    );
    // ... or from the start event.
    stream_equals_offline(F32_48K, 22_050, "raw", &["--rate", "22050", "--events"]);
}

#[test]
fn without_the_resume_extension_the_stream_is_the_same() {
    // Nothing is acknowledged: the client forgets what it sent as it goes. With events
    // (two utterances, so speech events and the stop go by) and without.
    let (s, _) = stream_equals_offline(F32_48K_FAN, 16_000, "raw", &["--events", "--no-resume"]);
    assert_eq!(s.speech_events().len(), 4);
    stream_equals_offline(S16_16K, 16_000, "raw", &["--no-resume"]);
    stream_equals_offline(F32_48K_FAN, 24_000, "openai", &["--no-resume"]);
}

/// Seconds of a stream offset, on the input's time line (the latency removed).
fn input_time(sample: u64, latency: usize, rate: u32) -> f64 {
    (sample as f64 - latency as f64) / rate as f64
}

#[test]
fn events_mark_the_speech_where_the_vad_heard_it() {
    // Inputs whose noise is not speech (babble keeps a VAD in speech), one with a pause
    // long enough for two utterances; there the fan at 0 dB SNR opens the first one
    // from the start.
    for (file, utterances, quiet_lead_in) in [
        (S16_16K, 1, true),
        (S24_44K_STEREO, 1, true),
        (F32_48K_FAN, 2, false),
    ] {
        let (s, _) = stream_equals_offline(file, 16_000, "raw", &["--events"]);
        let what = file;
        let input = testdata(file);
        let expected = expected_stream(&input, 16_000);
        let n = s.samples.len() as u64;

        // start opens the stream at sample 0; stop closes it with its length.
        let kinds: Vec<&str> = s
            .log
            .iter()
            .filter_map(|l| l["type"].as_str())
            .filter(|t| ["start", "speech_started", "speech_stopped", "stop"].contains(t))
            .collect();
        assert_eq!(kinds.first(), Some(&"start"), "{what}: {kinds:?}");
        assert_eq!(kinds.last(), Some(&"stop"), "{what}: {kinds:?}");
        let start = s.lines("start");
        assert_eq!(start.len(), 1);
        assert_eq!(start[0]["sample"], 0);
        assert_eq!(start[0]["rate"], 16_000);
        assert_eq!(start[0]["encoding"], "pcm_s16le");
        assert_eq!(start[0]["channels"], 1);
        assert_eq!(s.lines("stop")[0]["samples"], n, "{what}");

        // The speech events are the pipeline's, at the same offsets, alternating.
        let events = s.speech_events();
        assert_eq!(events, expected.events, "{what}");
        assert_eq!(events.len(), 2 * utterances, "{what}: {events:?}");
        for (i, e) in events.iter().enumerate() {
            let kind = if i % 2 == 0 {
                VadEventKind::SpeechStart
            } else {
                VadEventKind::SpeechEnd
            };
            assert_eq!(e.kind, kind, "{what}: {events:?}");
            assert!(
                e.position <= n,
                "{what}: {e:?} beyond the stream's {n} samples"
            );
        }
        assert!(
            events.windows(2).all(|w| w[0].position < w[1].position),
            "{what}: {events:?}"
        );
        // And they are where the speech is: the first start shortly before the speech
        // (a 200 ms pre-roll), the last end shortly after it (no later than the hangover).
        let item = manifest_item(file);
        let speech = (
            f64_field(&item, "speech_start_s"),
            f64_field(&item, "speech_end_s"),
        );
        let first = input_time(events[0].position, expected.latency, 16_000);
        let last = input_time(events[events.len() - 1].position, expected.latency, 16_000);
        let earliest = if quiet_lead_in { speech.0 - 0.35 } else { -1.0 };
        assert!(
            (earliest..=speech.0 + 0.1).contains(&first),
            "{what}: speech_started at {first:.3} s, the speech starts at {:.3} s",
            speech.0
        );
        assert!(
            (speech.1 - 0.3..=speech.1 + 0.4).contains(&last),
            "{what}: speech_stopped at {last:.3} s, the speech ends at {:.3} s",
            speech.1
        );
        // A pause between two utterances lies inside the speech.
        for pair in events[1..events.len() - 1].chunks(2) {
            let (stop, start) = (
                input_time(pair[0].position, expected.latency, 16_000),
                input_time(pair[1].position, expected.latency, 16_000),
            );
            assert!(
                speech.0 < stop && stop < start && start < speech.1,
                "{what}: a pause from {stop:.3} to {start:.3} s"
            );
        }
        eprintln!(
            "{what}: speech {:.3}..{:.3} s, events at {:?} s",
            speech.0,
            speech.1,
            events
                .iter()
                .map(|e| format!("{:.3}", input_time(e.position, expected.latency, 16_000)))
                .collect::<Vec<_>>()
        );
    }
}

#[test]
fn realtime_takes_about_real_time_and_changes_nothing() {
    let (s, run) = stream_equals_offline(S16_16K, 16_000, "raw", &["--realtime"]);
    let item = manifest_item(S16_16K);
    let duration = f64_field(&item, "duration_s");
    assert!(
        run.wall.as_secs_f64() >= 0.95 * duration,
        "{:.2} s of audio streamed in {:.2} s",
        duration,
        run.wall.as_secs_f64()
    );
    assert!(!s.samples.is_empty());
}

#[test]
fn the_library_path_streams_a_file_in_process() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("out");
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    let server = Server::bind(ServerConfig {
        listen: "127.0.0.1:0".parse().unwrap(),
        out: out.clone(),
        tls: None,
        token: None,
        limits: Default::default(),
        respond_with: None,
    })
    .unwrap();
    let url = format!("{}/", server.url());
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let serving = runtime.spawn(server.run(async {
        let _ = stopped.await;
    }));

    let input = testdata(F32_48K);
    let config = StreamConfig::new(url);
    let (mut sink, handle) = connect(&config, None).unwrap();
    let reader = WavReader::new(std::io::BufReader::new(
        std::fs::File::open(&input).unwrap(),
    ))
    .unwrap();
    let pipeline = config_at(config.rate());
    let report = run_wav(reader, &pipeline, &mut sink, false).unwrap();
    drop(sink);
    let session = handle.session_id().to_string();
    let first = handle.poll_event();
    let stats = handle.wait().unwrap();
    assert_eq!(
        first,
        Some(StreamEvent::Connected {
            acknowledged: true,
            from: 0
        })
    );

    wait_ended(&out, &session);
    let _ = stop.send(());
    runtime
        .block_on(async { tokio::time::timeout(Duration::from_secs(10), serving).await })
        .expect("the server stops")
        .unwrap()
        .unwrap();

    let s = the_stream(&out);
    assert_eq!(s.id, session);
    assert_eq!(s.rate, 16_000);
    assert_eq!(report.output_rate, 16_000);
    assert_eq!(report.output_samples, s.samples.len() as u64);
    let latency = pipeline_latency(&input, 16_000);
    assert_eq!(report.latency, latency);
    let off = offline(&input, 16_000, dir.path());
    assert_equals_offline(&s.samples, &off, latency, "library path");
    assert_eq!(stats.samples_sent, s.samples.len() as u64);
    assert_eq!(stats.acked_samples, s.samples.len() as u64);
    assert_eq!(
        (
            stats.dropped_samples,
            stats.resent_samples,
            stats.reconnects
        ),
        (0, 0, 0)
    );
}
