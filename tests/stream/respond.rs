//! The whole voice-chat loop over the OpenAI protocol: the receiver answers each turn
//! with a recording (`clearvox serve --respond-with`), the client decodes the answer and
//! hands it to a player (`connect_with_player`), asks for an answer after each commit,
//! and cancels it when the user speaks over it (barge-in). A hostile server's bad audio
//! is skipped with a warning.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use clearvox::dsp::convert::f32_to_i16;
use clearvox::io::{read_wav_file, WavReader};
use clearvox::pipeline::{EnhancedFrame, FrameSink, ResponsePlayer};
use clearvox::stream::server::{load_answer, Server, ServerConfig};
use clearvox::stream::source::run_wav;
use clearvox::stream::{
    connect_with_player, Protocol, ResponseStatus, StreamConfig, StreamEvent, StreamStats,
    TurnDetection,
};
use futures_util::{SinkExt, StreamExt};
use serde_json::{json, Value};
use tokio_tungstenite::tungstenite::Message;

use crate::support::stream::*;

// ---------------------------------------------------------------------------------------
// A player that records what it is given and plays it in (simulated) real time.

#[derive(Clone, Debug, PartialEq)]
enum Call {
    Play(usize),
    Cancel,
}

#[derive(Default)]
struct PlayerLog {
    /// Everything handed over, as PCM16.
    samples: Vec<i16>,
    calls: Vec<Call>,
    rates: Vec<u32>,
    /// When what was queued has been played.
    playing_until: Option<Instant>,
}

#[derive(Clone, Default)]
struct Recorder(Arc<Mutex<PlayerLog>>);

impl Recorder {
    fn log(&self) -> std::sync::MutexGuard<'_, PlayerLog> {
        self.0.lock().unwrap()
    }

    fn cancels(&self) -> usize {
        self.log()
            .calls
            .iter()
            .filter(|c| **c == Call::Cancel)
            .count()
    }
}

impl ResponsePlayer for Recorder {
    fn play(&mut self, samples: &[f32], rate: u32) -> usize {
        let mut l = self.log();
        l.samples.extend(samples.iter().map(|&v| f32_to_i16(v)));
        l.calls.push(Call::Play(samples.len()));
        if !l.rates.contains(&rate) {
            l.rates.push(rate);
        }
        let now = Instant::now();
        let from = l.playing_until.filter(|t| *t > now).unwrap_or(now);
        l.playing_until = Some(from + Duration::from_secs_f64(samples.len() as f64 / rate as f64));
        samples.len()
    }

    fn cancel(&mut self) {
        let mut l = self.log();
        l.calls.push(Call::Cancel);
        l.playing_until = None;
    }

    fn is_playing(&self) -> bool {
        self.log().playing_until.is_some_and(|t| t > Instant::now())
    }
}

// ---------------------------------------------------------------------------------------
// Inputs.

/// A recognisable answer of `seconds` at 24 kHz (a sweep), as PCM16 values.
fn answer_samples(seconds: f64) -> Vec<i16> {
    let n = (seconds * 24_000.0) as usize;
    (0..n)
        .map(|i| {
            let t = i as f64 / 24_000.0;
            (9_000.0 * (2.0 * std::f64::consts::PI * (200.0 + 300.0 * t) * t).sin()) as i16
        })
        .collect()
}

/// Writes `samples` as a 24 kHz PCM16 WAV file.
fn write_answer(path: &Path, samples: &[i16]) {
    let f: Vec<f32> = samples.iter().map(|&s| s as f32 / 32_768.0).collect();
    write_wav(path, &f, 24_000, 1);
}

enum Part {
    Speech,
    Silence(f64),
}

/// The 16 kHz test voice and digital silence, in the order given, as a WAV file.
fn conversation(dir: &Path, parts: &[Part]) -> PathBuf {
    let voice = read_wav_file(&testdata(S16_16K)).unwrap();
    assert_eq!((voice.spec.sample_rate, voice.spec.channels), (16_000, 1));
    let mut samples = Vec::new();
    for p in parts {
        match p {
            Part::Speech => samples.extend_from_slice(&voice.samples),
            Part::Silence(s) => samples.extend(std::iter::repeat_n(0.0, (s * 16_000.0) as usize)),
        }
    }
    let path = dir.join("conversation.wav");
    write_wav(&path, &samples, 16_000, 1);
    path
}

fn openai_config(url: &str, barge_in: bool) -> StreamConfig {
    StreamConfig {
        protocol: Protocol::Openai,
        turn_detection: TurnDetection::Client,
        barge_in,
        ..StreamConfig::new(url)
    }
}

struct Run {
    session: String,
    stats: StreamStats,
    events: Vec<StreamEvent>,
    player: Recorder,
}

/// Streams `input` paced like a microphone to `url` with a recording player.
fn talk(url: &str, input: &Path, barge_in: bool) -> Run {
    let config = openai_config(url, barge_in);
    let player = Recorder::default();
    let (mut sink, mut handle) =
        connect_with_player(&config, None, Box::new(player.clone())).unwrap();
    let events = handle.take_events().unwrap();
    let reader =
        WavReader::new(std::io::BufReader::new(std::fs::File::open(input).unwrap())).unwrap();
    run_wav(reader, &config_at(config.rate()), &mut sink, true).unwrap();
    drop(sink);
    let session = handle.session_id().to_string();
    let stats = handle
        .wait()
        .expect("the network thread ends without a panic");
    Run {
        session,
        stats,
        events: events.try_iter().collect(),
        player,
    }
}

/// The `message` type of a log's client line (`""` for the receiver's lines).
fn client_type(line: &Value) -> &str {
    if line["type"] == "client" {
        line["message"]["type"].as_str().unwrap_or_default()
    } else {
        ""
    }
}

/// The receiver's log of a stream, its raw lines (and its text, for what it must not
/// hold).
fn log_of(out: &Path, id: &str) -> (Vec<Value>, String) {
    let path = out.join(format!("{id}.jsonl"));
    (read_jsonl(&path), std::fs::read_to_string(&path).unwrap())
}

fn count<T>(items: &[T], f: impl Fn(&T) -> bool) -> usize {
    items.iter().filter(|x| f(x)).count()
}

/// An in-process receiver answering with `answer`; the runtime stops it when dropped.
fn in_process(out: &Path, answer: Vec<i16>) -> (tokio::runtime::Runtime, String) {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    let server = Server::bind(ServerConfig {
        listen: "127.0.0.1:0".parse().unwrap(),
        out: out.to_path_buf(),
        tls: None,
        token: None,
        limits: Default::default(),
        respond_with: Some(Arc::new(answer)),
    })
    .unwrap();
    let url = format!("{}/", server.url());
    runtime.spawn(server.run(std::future::pending::<()>()));
    (runtime, url)
}

// ---------------------------------------------------------------------------------------
// The tests.

#[test]
fn each_turn_is_answered_and_the_player_gets_the_recording_exactly() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("out");
    let answer = answer_samples(0.6);
    let answer_path = dir.path().join("answer.wav");
    write_answer(&answer_path, &answer);
    let serve = Serve::start_with(
        &out,
        "127.0.0.1:0",
        &["--respond-with", answer_path.to_str().unwrap()],
    );
    let input = conversation(dir.path(), &[Part::Speech, Part::Silence(2.0)]);
    let run = talk(&serve.url(), &input, false);
    wait_ended(&out, &run.session);
    let (_, stderr) = serve.interrupt();

    let (log, text) = log_of(&out, &run.session);
    let client: Vec<&Value> = log.iter().filter(|l| l["type"] == "client").collect();
    let commits: Vec<usize> = (0..client.len())
        .filter(|&i| client_type(client[i]) == "input_audio_buffer.commit")
        .collect();
    assert!(!commits.is_empty(), "the voice has a speech end: {stderr}");
    // Every commit is followed at once by response.create, at the same stream offset.
    let creates = count(&client, |l| client_type(l) == "response.create");
    assert_eq!(creates, commits.len(), "a response.create for each commit");
    for &i in &commits {
        let next = client.get(i + 1).copied().unwrap_or(&Value::Null);
        assert_eq!(client_type(next), "response.create", "after {}", client[i]);
        assert_eq!(next["sample"], client[i]["sample"]);
        assert!(client[i].get("error").is_none(), "{}", client[i]);
    }
    // Each was answered in full.
    let n = commits.len();
    assert_eq!(count(&log, |l| l["type"] == "response"), n);
    let done: Vec<&Value> = log
        .iter()
        .filter(|l| l["type"] == "response_done")
        .collect();
    assert_eq!(done.len(), n);
    for d in &done {
        assert_eq!(d["status"], "completed", "{d}");
        assert_eq!(d["sent"], answer.len(), "{d}");
    }
    // The log holds no audio of the answer.
    assert!(
        !text.contains("delta"),
        "the answer's audio is never logged"
    );

    // The player got the recording, sample for sample, once per turn, at 24 kHz.
    let player = run.player.log();
    let expected: Vec<i16> = answer
        .iter()
        .copied()
        .cycle()
        .take(n * answer.len())
        .collect();
    assert_eq!(player.samples.len(), expected.len());
    assert!(player.samples == expected, "the answer arrives exactly");
    assert_eq!(player.rates, [24_000]);
    assert!(!player.calls.contains(&Call::Cancel));
    let s = &run.stats;
    assert_eq!(s.responses, n as u64);
    assert_eq!(s.response_samples, (n * answer.len()) as u64);
    assert_eq!(
        (
            s.response_samples_refused,
            s.response_samples_discarded,
            s.bad_response_audio,
            s.barge_ins
        ),
        (0, 0, 0, 0)
    );
    assert_eq!(
        count(&run.events, |e| *e == StreamEvent::ResponseStarted),
        n
    );
    let finished = StreamEvent::ResponseFinished {
        status: ResponseStatus::Completed,
        samples: answer.len() as u64,
    };
    assert_eq!(
        count(&run.events, |e| *e == finished),
        n,
        "{:?}",
        run.events
    );
    // The audio messages are the player's, not printed as server messages.
    assert!(!run
        .events
        .iter()
        .any(|e| matches!(e, StreamEvent::ServerMessage(m) if m.contains("output_audio.delta"))));
}

#[test]
fn speaking_over_the_answer_cancels_it_on_both_sides() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("out");
    let answer = answer_samples(6.0);
    let (runtime, url) = in_process(&out, answer.clone());
    // The voice, a pause long enough to end the turn, the voice again while the answer
    // plays (it takes 6 s to play, 3 s to arrive), and time for the last answer.
    let input = conversation(
        dir.path(),
        &[
            Part::Speech,
            Part::Silence(0.6),
            Part::Speech,
            Part::Silence(4.0),
        ],
    );
    let run = talk(&url, &input, true);
    wait_ended(&out, &run.session);
    runtime.shutdown_timeout(Duration::from_secs(5));

    let s = &run.stats;
    assert!(s.barge_ins >= 1, "{s:?}");
    assert_eq!(
        run.player.cancels() as u64,
        s.barge_ins,
        "the player was cancelled"
    );
    let sent_cancel = count(&run.events, |e| {
        matches!(
            e,
            StreamEvent::ResponseCancelled {
                cancel_sent: true,
                ..
            }
        )
    });
    assert!(sent_cancel >= 1, "{:?}", run.events);

    let (log, _) = log_of(&out, &run.session);
    let cancels: Vec<usize> = (0..log.len())
        .filter(|&i| client_type(&log[i]) == "response.cancel")
        .collect();
    assert_eq!(
        cancels.len(),
        sent_cancel,
        "response.cancel reached the receiver"
    );
    let cancelled: Vec<usize> = (0..log.len())
        .filter(|&i| log[i]["type"] == "response_done" && log[i]["status"] == "cancelled")
        .collect();
    assert!(!cancelled.is_empty(), "the receiver cancelled an answer");
    for &i in &cancelled {
        // Stopped early, at the client's word.
        assert!(
            log[i]["sent"].as_u64().unwrap() < answer.len() as u64,
            "{}",
            log[i]
        );
        assert_eq!(client_type(&log[i - 1]), "response.cancel");
    }
    let told = count(&run.events, |e| {
        matches!(
            e,
            StreamEvent::ResponseFinished {
                status: ResponseStatus::Cancelled,
                ..
            }
        )
    });
    assert_eq!(
        told,
        cancelled.len(),
        "the client heard the answer was cancelled"
    );
    // Whatever the receiver sent was either played or, after the barge-in, discarded.
    let sent: u64 = log
        .iter()
        .filter(|l| l["type"] == "response_done")
        .map(|l| l["sent"].as_u64().unwrap())
        .sum();
    let played = run.player.log().samples.len() as u64;
    assert_eq!(played, s.response_samples);
    assert_eq!(played + s.response_samples_discarded, sent);
    assert!(
        played < (s.responses * answer.len() as u64),
        "not everything was played"
    );
}

#[test]
fn bad_audio_from_a_hostile_server_is_skipped_with_one_warning() {
    let good: Vec<i16> = (0..480).map(|i| (i * 37 % 2000 - 1000) as i16).collect();
    let good_b64 = {
        use base64::Engine as _;
        let bytes: Vec<u8> = good.iter().flat_map(|s| s.to_le_bytes()).collect();
        base64::engine::general_purpose::STANDARD.encode(bytes)
    };
    let answer = vec![
        json!({"type": "response.created", "response": {"id": "r1", "status": "in_progress"}}),
        json!({"type": "response.output_audio.delta", "delta": "%%% not base64 %%%"}),
        json!({"type": "response.output_audio.delta", "delta": "AAEC"}),
        json!({"type": "response.output_audio.delta"}),
        json!({"type": "response.audio.delta", "delta": 5}),
        json!({"type": "response.audio.delta", "delta": good_b64}),
        json!({"type": "response.done", "response": {"id": "r1", "status": "completed"}}),
    ];
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    let listener = runtime
        .block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))
        .unwrap();
    let addr: SocketAddr = listener.local_addr().unwrap();
    runtime.spawn(async move {
        while let Ok((tcp, _)) = listener.accept().await {
            let answer = answer.clone();
            tokio::spawn(async move {
                let Ok(mut ws) = tokio_tungstenite::accept_async(tcp).await else {
                    return;
                };
                // Answers once the client has opened its session.
                let mut answered = false;
                while let Some(Ok(m)) = ws.next().await {
                    if m.is_text() && !answered {
                        answered = true;
                        for e in &answer {
                            if ws.send(Message::text(e.to_string())).await.is_err() {
                                return;
                            }
                        }
                    }
                    if m.is_close() {
                        let _ = ws.close(None).await;
                        return;
                    }
                }
            });
        }
    });

    let config = openai_config(&format!("ws://{addr}/"), true);
    let player = Recorder::default();
    let (mut sink, mut handle) =
        connect_with_player(&config, None, Box::new(player.clone())).unwrap();
    let events = handle.take_events().unwrap();
    let silence = [0.0f32; 240];
    let t0 = Instant::now();
    let mut position = 0;
    while player.log().samples.len() < good.len() && t0.elapsed() < Duration::from_secs(10) {
        sink.frame(&EnhancedFrame {
            samples: &silence,
            rate: 24_000,
            position,
            events: &[],
        });
        position += silence.len() as u64;
        std::thread::sleep(Duration::from_millis(10));
    }
    std::thread::sleep(Duration::from_millis(200));
    sink.finish();
    let stats = handle.wait().expect("no panic on the network thread");
    runtime.shutdown_timeout(Duration::from_secs(1));
    let events: Vec<StreamEvent> = events.try_iter().collect();

    assert_eq!(player.log().samples, good, "the one good message is played");
    assert_eq!(stats.bad_response_audio, 4, "{stats:?}");
    assert_eq!(stats.response_samples, good.len() as u64);
    let warnings: Vec<&String> = events
        .iter()
        .filter_map(|e| match e {
            StreamEvent::Warning(w) if w.contains("answer") => Some(w),
            _ => None,
        })
        .collect();
    assert_eq!(warnings.len(), 1, "one warning: {events:?}");
    assert!(warnings[0].contains("not base64"), "{}", warnings[0]);
    assert!(events.contains(&StreamEvent::ResponseFinished {
        status: ResponseStatus::Completed,
        samples: good.len() as u64
    }));
}

#[test]
fn a_bad_answer_file_is_a_one_line_error() {
    let dir = tempfile::tempdir().unwrap();
    let not_wav = dir.path().join("notes.wav");
    std::fs::write(&not_wav, b"not a WAV file at all").unwrap();
    let empty = dir.path().join("empty.wav");
    write_wav(&empty, &[], 24_000, 1);
    for bad in [dir.path().join("missing.wav"), not_wav, empty] {
        let output = clearvox()
            .args(["serve", "--listen", "127.0.0.1:0", "--out"])
            .arg(dir.path().join("out"))
            .arg("--respond-with")
            .arg(&bad)
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(!output.status.success(), "{}: {stderr}", bad.display());
        assert_eq!(stderr.trim().lines().count(), 1, "{stderr}");
        assert!(
            stderr.contains(&*bad.to_string_lossy()) && !stderr.contains("listening"),
            "{stderr}"
        );
    }
}

#[test]
fn an_answer_at_another_rate_is_resampled_to_24k_mono() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("answer48.wav");
    let tone =
        |rate: f64, i: usize| 0.4 * (2.0 * std::f64::consts::PI * 440.0 * i as f64 / rate).sin();
    // Stereo at 48 kHz, the tone in both channels.
    let stereo: Vec<f32> = (0..48_000)
        .flat_map(|i| [tone(48_000.0, i) as f32; 2])
        .collect();
    write_wav(&path, &stereo, 48_000, 2);
    let answer = load_answer(&path).unwrap();
    assert_eq!(answer.len(), 24_000);
    let worst = (100..answer.len() - 100)
        .map(|i| (answer[i] as f64 / 32_768.0 - tone(24_000.0, i)).abs())
        .fold(0.0, f64::max);
    assert!(worst < 0.01, "worst difference {worst}");
}

#[test]
fn the_receiver_answers_one_response_at_a_time_and_cancels_only_one_in_progress() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("out");
    let answer = answer_samples(1.0);
    let (runtime, url) = in_process(&out, answer.clone());
    let (events, audio) = runtime.block_on(async {
        let (mut ws, _) = tokio_tungstenite::connect_async(url.as_str()).await.unwrap();
        let update = json!({"type": "session.update", "session": {"type": "realtime", "audio": {"input": {"format": {"type": "audio/pcm", "rate": 24000}, "turn_detection": null}}}});
        for m in [
            update,
            json!({"type": "response.cancel", "event_id": "c1"}),
            json!({"type": "response.create"}),
            json!({"type": "response.create", "event_id": "c2"}),
        ] {
            ws.send(Message::text(m.to_string())).await.unwrap();
        }
        let mut events = Vec::new();
        let mut audio = Vec::new();
        let read = async {
            while let Some(Ok(m)) = ws.next().await {
                let Message::Text(t) = m else { continue };
                let v: Value = serde_json::from_str(t.as_str()).unwrap();
                if v["type"] == "response.output_audio.delta" {
                    use base64::Engine as _;
                    let bytes = base64::engine::general_purpose::STANDARD
                        .decode(v["delta"].as_str().unwrap())
                        .unwrap();
                    audio.extend(bytes.chunks_exact(2).map(|b| i16::from_le_bytes([b[0], b[1]])));
                }
                let done = v["type"] == "response.done";
                events.push(v);
                if done {
                    break;
                }
            }
        };
        tokio::time::timeout(Duration::from_secs(10), read)
            .await
            .expect("the answer ends");
        let _ = ws.close(None).await;
        (events, audio)
    });
    runtime.shutdown_timeout(Duration::from_secs(5));

    let kinds: Vec<&str> = events
        .iter()
        .map(|e| e["type"].as_str().unwrap())
        .filter(|t| *t != "response.output_audio.delta")
        .collect();
    assert_eq!(
        kinds,
        [
            "session.updated",
            "error",
            "response.created",
            "error",
            "response.output_audio.done",
            "response.done"
        ]
    );
    let errors: Vec<&Value> = events.iter().filter(|e| e["type"] == "error").collect();
    assert_eq!(errors[0]["error"]["code"], "response_cancel_not_active");
    assert_eq!(errors[0]["error"]["event_id"], "c1");
    assert_eq!(
        errors[1]["error"]["code"],
        "conversation_already_has_active_response"
    );
    assert_eq!(errors[1]["error"]["event_id"], "c2");
    let done = events.last().unwrap();
    assert_eq!(done["response"]["status"], "completed");
    let created = events
        .iter()
        .find(|e| e["type"] == "response.created")
        .unwrap();
    assert_eq!(done["response"]["id"], created["response"]["id"]);
    // 100 ms a delta, the recording exactly.
    let deltas: Vec<&Value> = events
        .iter()
        .filter(|e| e["type"] == "response.output_audio.delta")
        .collect();
    assert_eq!(deltas.len(), 10);
    assert!(deltas
        .iter()
        .all(|d| d["response_id"] == created["response"]["id"]));
    assert!(audio == answer, "the recording, sample for sample");
}
