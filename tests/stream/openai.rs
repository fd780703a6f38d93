//! `clearvox stream --protocol openai` against a stand-in for the OpenAI Realtime API
//! written here: it checks every client event against the documented shapes of the
//! generally available API (a small validator below), answers as the API does
//! (`session.created` first, `session.updated`, `input_audio_buffer.committed`,
//! `input_audio_buffer.cleared`), and records the audio. The audio equals the offline
//! enhancement at 24 kHz; with client turn detection the commits come at the VAD's speech
//! ends and never with less than 100 ms of audio; with server turn detection there are
//! none; the server's events are the client's stdout, line for line; and after a lost
//! connection (an OpenAI session does not resume) the client opens the new session the
//! same way and sends the current utterance again.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use clearvox::dsp::vad::VadEventKind;
use futures_util::{SinkExt, StreamExt};
use serde_json::{json, Map, Value};
use tokio::net::TcpListener;
use tokio_tungstenite::tungstenite::handshake::server::{Request, Response};
use tokio_tungstenite::tungstenite::Message;

use crate::support::stream::*;
use crate::support::u64_field;

// ---------------------------------------------------------------------------------------
// The documented shapes of the client events this client may send.

/// Fields of a `session` (RealtimeSessionCreateRequest) in `session.update`.
const SESSION_FIELDS: [&str; 12] = [
    "type",
    "audio",
    "include",
    "instructions",
    "max_output_tokens",
    "model",
    "output_modalities",
    "prompt",
    "tool_choice",
    "tools",
    "tracing",
    "truncation",
];
/// Fields of `session.audio.input`.
const AUDIO_INPUT_FIELDS: [&str; 4] = [
    "format",
    "noise_reduction",
    "transcription",
    "turn_detection",
];
/// Fields of a `server_vad` turn detection.
const SERVER_VAD_FIELDS: [&str; 7] = [
    "type",
    "threshold",
    "prefix_padding_ms",
    "silence_duration_ms",
    "create_response",
    "interrupt_response",
    "idle_timeout_ms",
];
/// Largest `input_audio_buffer.append` the API takes, bytes of audio.
const MAX_APPEND_BYTES: usize = 15 << 20;
/// Fewest bytes of PCM16 at 24 kHz a commit needs: 100 ms.
const MIN_COMMIT_BYTES: usize = 4_800;

fn object<'a>(v: &'a Value, what: &str) -> Result<&'a Map<String, Value>, String> {
    v.as_object()
        .ok_or_else(|| format!("{what} is not an object: {v}"))
}

fn only_fields(o: &Map<String, Value>, allowed: &[&str], what: &str) -> Result<(), String> {
    match o.keys().find(|k| !allowed.contains(&k.as_str())) {
        Some(k) => Err(format!("{what} has an unknown field \"{k}\"")),
        None => Ok(()),
    }
}

/// Strict standard base64 (RFC 4648 alphabet, padded, canonical).
fn base64_decode(s: &str) -> Result<Vec<u8>, String> {
    fn value(c: u8) -> Option<u32> {
        Some(match c {
            b'A'..=b'Z' => c - b'A',
            b'a'..=b'z' => c - b'a' + 26,
            b'0'..=b'9' => c - b'0' + 52,
            b'+' => 62,
            b'/' => 63,
            _ => return None,
        } as u32)
    }
    let b = s.as_bytes();
    if !b.len().is_multiple_of(4) {
        return Err(format!(
            "base64 of {} characters (not a multiple of 4)",
            b.len()
        ));
    }
    let mut out = Vec::with_capacity(b.len() / 4 * 3);
    for (i, quad) in b.chunks(4).enumerate() {
        let last = i == b.len() / 4 - 1;
        let pad = quad.iter().rev().take_while(|&&c| c == b'=').count();
        if pad > 2 || (pad > 0 && !last) {
            return Err("misplaced base64 padding".into());
        }
        let mut n = 0u32;
        for &c in &quad[..4 - pad] {
            n = n << 6 | value(c).ok_or_else(|| format!("{:?} is not base64", c as char))?;
        }
        n <<= 6 * pad as u32;
        let bytes = n.to_be_bytes();
        let take = 3 - pad;
        // Canonical: the bits beyond the last byte are zero.
        if bytes[1 + take..].iter().any(|&x| x != 0) {
            return Err("non-canonical base64 padding bits".into());
        }
        out.extend_from_slice(&bytes[1..1 + take]);
    }
    Ok(out)
}

fn check_event_id(o: &Map<String, Value>) -> Result<(), String> {
    match o.get("event_id") {
        None => Ok(()),
        Some(Value::String(s)) if s.len() <= 512 => Ok(()),
        Some(v) => Err(format!(
            "event_id {v} is not a string of at most 512 characters"
        )),
    }
}

fn check_turn_detection(t: &Value) -> Result<(), String> {
    if t.is_null() {
        return Ok(());
    }
    let o = object(t, "turn_detection")?;
    if o.get("type") != Some(&json!("server_vad")) {
        return Err(format!(
            "turn_detection is neither null nor server_vad: {t}"
        ));
    }
    only_fields(o, &SERVER_VAD_FIELDS, "server_vad")?;
    for (k, v) in o {
        let ok = match k.as_str() {
            "type" => true,
            "threshold" => v.as_f64().is_some_and(|x| (0.0..=1.0).contains(&x)),
            "prefix_padding_ms" | "silence_duration_ms" => v.as_u64().is_some(),
            "idle_timeout_ms" => v.is_null() || v.as_u64().is_some(),
            _ => v.is_boolean(),
        };
        if !ok {
            return Err(format!("server_vad.{k} = {v} is not valid"));
        }
    }
    Ok(())
}

fn check_session(s: &Value) -> Result<(), String> {
    let o = object(s, "session")?;
    only_fields(o, &SESSION_FIELDS, "session")?;
    if o.get("type") != Some(&json!("realtime")) {
        return Err(format!("session.type is not \"realtime\": {s}"));
    }
    let audio = object(
        o.get("audio").ok_or("session.audio is missing")?,
        "session.audio",
    )?;
    only_fields(audio, &["input", "output"], "session.audio")?;
    let input = object(
        audio.get("input").ok_or("session.audio.input is missing")?,
        "session.audio.input",
    )?;
    only_fields(input, &AUDIO_INPUT_FIELDS, "session.audio.input")?;
    let format = input.get("format").ok_or("the input format is missing")?;
    if *format != json!({"type": "audio/pcm", "rate": 24_000}) {
        return Err(format!("the input format is not PCM at 24 kHz: {format}"));
    }
    check_turn_detection(
        input
            .get("turn_detection")
            .ok_or("turn_detection is missing")?,
    )
}

/// What one connection's events must respect beyond their shapes.
#[derive(Default)]
struct BufferState {
    /// Bytes appended since the last commit or clear.
    since_commit: usize,
}

/// Checks one client event; returns the audio of an append.
fn validate(event: &Value, state: &mut BufferState) -> Result<Option<Vec<u8>>, String> {
    let o = object(event, "a client event")?;
    let kind = o
        .get("type")
        .and_then(Value::as_str)
        .ok_or("an event without a string \"type\"")?;
    check_event_id(o)?;
    match kind {
        "session.update" => {
            only_fields(o, &["type", "event_id", "session"], kind)?;
            check_session(o.get("session").ok_or("session.update without session")?)?;
            Ok(None)
        }
        "input_audio_buffer.append" => {
            only_fields(o, &["type", "event_id", "audio"], kind)?;
            let audio = o
                .get("audio")
                .and_then(Value::as_str)
                .ok_or("append without a string \"audio\"")?;
            let bytes = base64_decode(audio)?;
            if bytes.is_empty() || bytes.len() % 2 == 1 || bytes.len() > MAX_APPEND_BYTES {
                return Err(format!("append of {} bytes", bytes.len()));
            }
            state.since_commit += bytes.len();
            Ok(Some(bytes))
        }
        "input_audio_buffer.commit" => {
            only_fields(o, &["type", "event_id"], kind)?;
            if state.since_commit < MIN_COMMIT_BYTES {
                return Err(format!(
                    "commit of {} bytes: at least {MIN_COMMIT_BYTES} (100 ms) needed",
                    state.since_commit
                ));
            }
            state.since_commit = 0;
            Ok(None)
        }
        "input_audio_buffer.clear" => {
            only_fields(o, &["type", "event_id"], kind)?;
            state.since_commit = 0;
            Ok(None)
        }
        other => Err(format!("unknown client event type \"{other}\"")),
    }
}

#[test]
fn the_validator_knows_valid_from_invalid() {
    let mut st = BufferState::default();
    assert_eq!(base64_decode("AAEC").unwrap(), [0, 1, 2]);
    assert_eq!(base64_decode("AAE=").unwrap(), [0, 1]);
    assert!(base64_decode("AAF=").is_err(), "non-canonical");
    assert!(base64_decode("AA=A").is_err());
    assert!(base64_decode("AA-_").is_err(), "URL-safe alphabet");
    let update = json!({"type": "session.update", "session": {"type": "realtime", "audio": {"input": {"format": {"type": "audio/pcm", "rate": 24000}, "turn_detection": null}}}});
    validate(&update, &mut st).unwrap();
    let mut bad = update.clone();
    bad["session"]["audio"]["input"]["format"]["rate"] = json!(16_000);
    assert!(validate(&bad, &mut st).is_err());
    let mut bad = update.clone();
    bad["session"]["type"] = json!("transcription");
    assert!(validate(&bad, &mut st).is_err());
    let mut bad = update.clone();
    bad["session"]["input_audio_format"] = json!("pcm16");
    assert!(validate(&bad, &mut st).is_err(), "a beta field");
    let mut bad = update.clone();
    bad["extra"] = json!(1);
    assert!(validate(&bad, &mut st).is_err());
    let mut vad = update.clone();
    vad["session"]["audio"]["input"]["turn_detection"] =
        json!({"type": "server_vad", "silence_duration_ms": 500});
    validate(&vad, &mut st).unwrap();
    vad["session"]["audio"]["input"]["turn_detection"] = json!({"type": "semantic_vad"});
    assert!(validate(&vad, &mut st).is_err());
    assert!(validate(&json!({"type": "input_audio_buffer.commit"}), &mut st).is_err());
    let odd = json!({"type": "input_audio_buffer.append", "audio": "AAEC"});
    assert!(validate(&odd, &mut st).is_err(), "3 bytes");
    let ms50 = base64_encode_for_test(&vec![0u8; 2_400]);
    let append = json!({"type": "input_audio_buffer.append", "audio": ms50});
    validate(&append, &mut st).unwrap();
    assert!(validate(&json!({"type": "input_audio_buffer.commit"}), &mut st).is_err());
    validate(&append, &mut st).unwrap();
    validate(&json!({"type": "input_audio_buffer.commit"}), &mut st).unwrap();
    assert!(validate(
        &json!({"type": "clearvox.resume_from", "sample": 0}),
        &mut st
    )
    .is_err());
    assert!(validate(&json!({"type": "response.create", "x": 1}), &mut st).is_err());
}

fn base64_encode_for_test(bytes: &[u8]) -> String {
    const A: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut s = String::new();
    for c in bytes.chunks(3) {
        let n = (c[0] as u32) << 16
            | (*c.get(1).unwrap_or(&0) as u32) << 8
            | *c.get(2).unwrap_or(&0) as u32;
        for i in 0..4 {
            if i <= c.len() {
                s.push(A[(n >> (18 - 6 * i) & 63) as usize] as char);
            } else {
                s.push('=');
            }
        }
    }
    s
}

// ---------------------------------------------------------------------------------------
// The stand-in server.

/// One connection as the server saw it.
#[derive(Default, Debug)]
struct Connection {
    headers: HashMap<String, String>,
    /// Every client event, as sent.
    events: Vec<Value>,
    /// Events that broke the rules, and why.
    invalid: Vec<String>,
    /// The audio appended.
    audio: Vec<i16>,
    /// Samples appended (on this connection) at each commit.
    commits: Vec<usize>,
    clears: usize,
    /// Server events sent, in order.
    sent: Vec<Value>,
}

type Record = Arc<Mutex<Vec<Connection>>>;

struct FakeRealtime {
    runtime: Option<tokio::runtime::Runtime>,
    addr: SocketAddr,
    record: Record,
}

impl FakeRealtime {
    /// Serves; the first connection is dropped (no Close frame) once `cut_first_after`
    /// samples were appended on it, if given.
    fn start(cut_first_after: Option<usize>) -> FakeRealtime {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .unwrap();
        let listener = runtime.block_on(TcpListener::bind("127.0.0.1:0")).unwrap();
        let addr = listener.local_addr().unwrap();
        let record: Record = Arc::default();
        let r = record.clone();
        runtime.spawn(async move {
            let mut n = 0usize;
            while let Ok((tcp, _)) = listener.accept().await {
                let cut = if n == 0 { cut_first_after } else { None };
                n += 1;
                tokio::spawn(serve(tcp, r.clone(), cut));
            }
        });
        FakeRealtime {
            runtime: Some(runtime),
            addr,
            record,
        }
    }

    fn url(&self) -> String {
        format!("ws://{}/v1/realtime?model=gpt-realtime", self.addr)
    }

    fn connections(&self) -> std::sync::MutexGuard<'_, Vec<Connection>> {
        self.record.lock().unwrap()
    }
}

impl Drop for FakeRealtime {
    fn drop(&mut self) {
        if let Some(rt) = self.runtime.take() {
            rt.shutdown_timeout(Duration::from_secs(1));
        }
    }
}

fn server_event(kind: &str, n: usize, rest: Value) -> Value {
    let mut v = json!({"type": kind, "event_id": format!("event_{n:04}")});
    if let (Some(o), Value::Object(r)) = (v.as_object_mut(), rest) {
        o.extend(r);
    }
    v
}

async fn serve(tcp: tokio::net::TcpStream, record: Record, cut_after: Option<usize>) {
    let mut headers = HashMap::new();
    // The signature tungstenite's handshake callback has.
    #[allow(clippy::result_large_err)]
    let callback = |req: &Request, resp: Response| {
        for (k, v) in req.headers() {
            headers.insert(k.as_str().to_string(), v.to_str().unwrap_or("").to_string());
        }
        Ok(resp)
    };
    let Ok(mut ws) = tokio_tungstenite::accept_hdr_async(tcp, callback).await else {
        return;
    };
    let index = {
        let mut all = record.lock().unwrap();
        all.push(Connection {
            headers,
            ..Connection::default()
        });
        all.len() - 1
    };
    let mut n = 0;
    let mut state = BufferState::default();
    let mut out = vec![server_event(
        "session.created",
        n,
        json!({"session": {"type": "realtime", "object": "realtime.session", "id": format!("sess_{index}"), "model": "gpt-realtime",
            "audio": {"input": {"format": {"type": "audio/pcm", "rate": 24000}, "turn_detection": {"type": "server_vad", "threshold": 0.5, "prefix_padding_ms": 300, "silence_duration_ms": 200}}}}}),
    )];
    loop {
        if !out.is_empty() {
            // A real backend answers after a network round trip: the answer to the last
            // commit then arrives after the client has begun to close.
            tokio::time::sleep(Duration::from_millis(30)).await;
        }
        for e in out.drain(..) {
            record.lock().unwrap()[index].sent.push(e.clone());
            if ws.send(Message::text(e.to_string())).await.is_err() {
                return;
            }
        }
        let Some(Ok(message)) = ws.next().await else {
            return;
        };
        let text = match message {
            Message::Text(t) => t.as_str().to_string(),
            Message::Binary(_) => {
                record.lock().unwrap()[index]
                    .invalid
                    .push("a binary message".into());
                continue;
            }
            Message::Close(_) => {
                let _ = ws.close(None).await;
                return;
            }
            _ => continue,
        };
        let event: Value = match serde_json::from_str(&text) {
            Ok(v) => v,
            Err(e) => {
                record.lock().unwrap()[index]
                    .invalid
                    .push(format!("not JSON ({e}): {text}"));
                continue;
            }
        };
        let mut all = record.lock().unwrap();
        let c = &mut all[index];
        let first = c.events.is_empty();
        c.events.push(event.clone());
        if first && event["type"] != "session.update" {
            c.invalid
                .push(format!("the first event is not session.update: {event}"));
        }
        match validate(&event, &mut state) {
            Err(why) => c.invalid.push(why),
            Ok(Some(bytes)) => c.audio.extend(
                bytes
                    .chunks_exact(2)
                    .map(|b| i16::from_le_bytes([b[0], b[1]])),
            ),
            Ok(None) => {}
        }
        n += 1;
        match event["type"].as_str().unwrap_or_default() {
            "session.update" => out.push(server_event(
                "session.updated",
                n,
                json!({"session": event["session"]}),
            )),
            "input_audio_buffer.commit" => {
                c.commits.push(c.audio.len());
                out.push(server_event(
                    "input_audio_buffer.committed",
                    n,
                    json!({"previous_item_id": null, "item_id": format!("item_{index}_{}", c.commits.len())}),
                ));
            }
            "input_audio_buffer.clear" => {
                c.clears += 1;
                out.push(server_event("input_audio_buffer.cleared", n, json!({})));
            }
            _ => {}
        }
        if cut_after.is_some_and(|cut| c.audio.len() >= cut) {
            // Gone without a Close frame, as a dropped network connection.
            return;
        }
    }
}

// ---------------------------------------------------------------------------------------
// The tests.

/// Streams `file` with `args` (OpenAI protocol) to a fresh stand-in server; checks that
/// every event was valid, that each connection opened with its `session.update`, and that
/// the client's stdout is the server's events; returns the server's record and the run.
fn run_openai(
    file: &str,
    args: &[&str],
    cut_first_after: Option<usize>,
) -> (Vec<Connection>, StreamRun) {
    let server = FakeRealtime::start(cut_first_after);
    let mut all = vec!["--protocol", "openai", "--json"];
    all.extend_from_slice(args);
    let run = stream(&testdata(file), &server.url(), &all);
    run.assert_success();
    let connections = std::mem::take(&mut *server.connections());
    drop(server);
    assert!(!connections.is_empty());
    for (i, c) in connections.iter().enumerate() {
        assert_eq!(
            c.invalid,
            Vec::<String>::new(),
            "connection {i}: invalid events"
        );
        assert_eq!(c.events[0]["type"], "session.update");
    }
    let sent: Vec<Value> = connections.iter().flat_map(|c| c.sent.clone()).collect();
    assert_eq!(
        run.stdout_json(),
        sent,
        "the client prints the server's events, one JSON line each, in order"
    );
    (connections, run)
}

fn turn_detection_sent(c: &Connection) -> Value {
    c.events[0]["session"]["audio"]["input"]["turn_detection"].clone()
}

#[test]
fn client_turn_detection_commits_at_each_speech_end() {
    // One utterance; two utterances (the comma pause).
    for file in [S16_16K, F32_48K_FAN] {
        let (connections, run) = run_openai(file, &["--turn-detection", "client"], None);
        assert_eq!(connections.len(), 1);
        let c = &connections[0];
        assert_eq!(turn_detection_sent(c), Value::Null);
        let input = testdata(file);
        let expected = expected_stream(&input, 24_000);
        let off = offline(&input, 24_000, tempfile::tempdir().unwrap().path());
        assert_equals_offline(&c.audio, &off, expected.latency, file);

        // A commit for every speech end, after it (once the VAD decided), before the
        // next utterance; one more at the end if the stream ends in speech.
        let ends: Vec<u64> = expected
            .events
            .iter()
            .filter(|e| e.kind == VadEventKind::SpeechEnd)
            .map(|e| e.position)
            .collect();
        let in_speech_at_end = expected
            .events
            .last()
            .is_some_and(|e| e.kind == VadEventKind::SpeechStart);
        assert!(!ends.is_empty(), "{file}: the test voice has speech ends");
        assert_eq!(
            c.commits.len(),
            ends.len() + usize::from(in_speech_at_end),
            "{file}: commits at {:?}, speech ends at {ends:?}",
            c.commits
        );
        // The VAD's decision is reported at its place in the output stream, which the
        // stages after it (the gate, the resampler) have not all produced yet: the
        // commit may come up to the latency before that place.
        for (commit, end) in c.commits.iter().zip(&ends) {
            let after = *commit as i64 - *end as i64;
            assert!(
                (-(expected.latency as i64)..=12_000).contains(&after),
                "{file}: the commit at {commit} comes {after} samples after the speech end at {end}"
            );
        }
        assert!(
            c.commits.windows(2).all(|w| w[1] - w[0] >= 2_400),
            "{:?}",
            c.commits
        );
        let committed = run
            .stdout_json()
            .iter()
            .filter(|e| e["type"] == "input_audio_buffer.committed")
            .count();
        assert_eq!(committed, c.commits.len());
        assert_eq!(c.clears, 0);
        eprintln!(
            "{file}: {} appends, commits at {:?} s, speech ends at {:?} s",
            c.events.len() - 1 - c.commits.len(),
            c.commits
                .iter()
                .map(|&s| format!("{:.2}", s as f64 / 24_000.0))
                .collect::<Vec<_>>(),
            ends.iter()
                .map(|&s| format!("{:.2}", s as f64 / 24_000.0))
                .collect::<Vec<_>>()
        );
    }
}

#[test]
fn server_turn_detection_never_commits() {
    for file in [F32_48K, S24_44K_STEREO, F32_48K_FAN] {
        let (connections, run) = run_openai(file, &[], None);
        assert_eq!(connections.len(), 1);
        let c = &connections[0];
        assert_eq!(turn_detection_sent(c)["type"], "server_vad");
        assert_eq!(c.commits, Vec::<usize>::new(), "{file}");
        assert_eq!(c.clears, 0);
        let input = testdata(file);
        let latency = pipeline_latency(&input, 24_000);
        let off = offline(&input, 24_000, tempfile::tempdir().unwrap().path());
        assert_equals_offline(&c.audio, &off, latency, file);
        // The resume extension is offered in the handshake, and ignored by this server.
        assert_eq!(
            c.headers.get("x-clearvox-resume").map(String::as_str),
            Some("1")
        );
        let stats = run.stats();
        assert_eq!(stats["acked_samples"], 0, "{stats}");
        assert_eq!(stats["samples_sent"], c.audio.len(), "{stats}");
        assert_eq!(stats["server_messages"], c.sent.len(), "{stats}");
        assert_eq!(stats["dropped_samples"], 0, "{stats}");
    }
}

#[test]
fn after_a_lost_connection_the_new_session_gets_the_current_utterance_again() {
    // The fan at 0 dB opens the first utterance from the start; the connection is lost
    // 1 s into it.
    let file = F32_48K_FAN;
    let (connections, run) = run_openai(
        file,
        &["--turn-detection", "client", "--realtime"],
        Some(24_000),
    );
    assert_eq!(connections.len(), 2, "one reconnect");
    let stats = run.stats();
    assert_eq!(stats["reconnects"], 1, "{stats}");
    let expected = expected_stream(&testdata(file), 24_000);
    let first_start = expected.events[0];
    assert_eq!(first_start.kind, VadEventKind::SpeechStart);
    let [a, b] = &connections[..] else {
        unreachable!()
    };
    assert!(a.audio.len() >= 24_000);
    assert_eq!(first_difference(&a.audio, &expected.stream), None);
    // The second session starts over at the utterance's start and goes to the end.
    let from = first_start.position as usize;
    assert!(from < a.audio.len());
    assert_eq!(
        (
            b.audio.len(),
            first_difference(&b.audio, &expected.stream[from..])
        ),
        (expected.stream.len() - from, None),
        "the second session's audio is the stream from sample {from} on (the first had {})",
        a.audio.len()
    );
    // What the lost connection had (and what was in flight when it went) is sent again.
    let resent = u64_field(&stats, "resent_samples") as usize;
    assert!(
        (a.audio.len() - from..=a.audio.len() - from + 4_800).contains(&resent),
        "{stats}"
    );
    // Its commits: the utterance ends, as without the cut.
    let ends = expected
        .events
        .iter()
        .filter(|e| e.kind == VadEventKind::SpeechEnd)
        .count();
    assert_eq!(a.commits.len() + b.commits.len(), ends);
    assert_eq!(turn_detection_sent(b), Value::Null);
}
