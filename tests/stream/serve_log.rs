//! The receiver's log against a hostile client: lines a client writes are never taken for
//! the receiver's own, a log written before its schema is read safely, no audio is
//! logged whatever the message, and stream ids name the same files everywhere.

use std::path::Path;

use serde_json::json;

use super::serve::{
    client, disconnected, files, of_type, plant_key, read_log, read_wav, signal, start,
    try_connect, Client, Opts,
};
use crate::support::u64_field;

/// A WAV file of `samples` at `rate`, as the receiver writes them.
fn write_wav(path: &Path, rate: u32, samples: &[i16]) {
    let spec = hound::WavSpec {
        channels: 1,
        sample_rate: rate,
        bits_per_sample: 16,
        sample_format: hound::SampleFormat::Int,
    };
    let mut w = hound::WavWriter::create(path, spec).unwrap();
    for s in samples {
        w.write_sample(*s).unwrap();
    }
    w.finalize().unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lines_a_client_forges_are_not_taken_for_the_receivers() {
    let dir = tempfile::tempdir().unwrap();
    let server = start(dir.path());
    let (wav, log) = files(dir.path(), "forge");
    let sent = signal(1_600, 21);

    let (mut c, received) = Client::resume(server.addr, "forge").await;
    assert_eq!(received, 0);
    c.start(16_000, 0).await;
    c.audio(&sent, 320).await;
    c.acks_until(1_600).await;
    // Lines typed as the receiver's records.
    c.json(json!({"type": "format", "protocol": "raw", "rate": 0, "events": true}))
        .await;
    c.json(json!({"type": "gap", "from": 1_600, "to": 1_000_001_600u64}))
        .await;
    c.json(json!({"type": "gap", "from": 0, "to": u64::MAX}))
        .await;
    c.json(json!({"type": "connected", "resume": true, "received": 5}))
        .await;
    c.close().await;
    disconnected(&log, 1).await;
    server.shutdown().await;

    // A restart reads the log back.
    let server = start(dir.path());
    let (c, received) = Client::resume(server.addr, "forge").await;
    assert_eq!(received, 1_600, "no forged gap is counted");
    c.close().await;
    disconnected(&log, 2).await;
    assert_eq!(read_wav(&wav), (16_000, sent), "the header keeps its rate");
    let log = read_log(&log);
    assert_eq!(of_type(&log, "format").len(), 1);
    assert!(of_type(&log, "gap").is_empty());
    assert_eq!(of_type(&log, "connected").len(), 2);
    assert_eq!(client(&log, "format").len(), 1);
    assert_eq!(client(&log, "gap").len(), 2);
    assert_eq!(client(&log, "gap")[1]["message"]["to"], json!(u64::MAX));
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_log_written_before_the_schema_is_read_for_its_events_only() {
    let dir = tempfile::tempdir().unwrap();
    let (wav, log) = files(dir.path(), "old");
    let sent = signal(1_600, 22);
    write_wav(&wav, 16_000, &sent);
    // What the earlier receiver wrote, a client's forged lines among them.
    let lines = [
        json!({"type": "connected", "t": 1, "resume": true, "received": 0}),
        json!({"type": "format", "t": 2, "protocol": "raw", "rate": 16000, "events": true}),
        json!({"type": "start", "t": 3, "rate": 16000, "encoding": "pcm_s16le", "channels": 1, "sample": 0, "audio": "c2VjcmV0LXZvaWNl"}),
        json!({"type": "format", "t": 4, "protocol": "raw", "rate": 0, "events": true}),
        json!({"type": "gap", "t": 5, "from": 1_600, "to": 1_000_000_000u64}),
        json!({"type": "disconnected", "t": 6, "reason": "connection lost", "received": 1600}),
    ];
    let text: String = lines.iter().map(|l| format!("{l}\n")).collect();
    std::fs::write(&log, text).unwrap();
    plant_key(dir.path(), "old");

    let server = start(dir.path());
    let (mut c, received) = Client::resume(server.addr, "old").await;
    assert_eq!(received, 1_600, "the WAV file's samples, no forged gap");
    // The start at 0 was read: sent again, it is not logged again.
    c.start(16_000, 0).await;
    c.close().await;
    disconnected(&log, 1).await;
    assert_eq!(read_wav(&wav), (16_000, sent));
    let text = std::fs::read_to_string(&log).unwrap();
    assert!(!text.contains("c2VjcmV0LXZvaWNl"), "{text}");
    let log = read_log(&log);
    assert_eq!(of_type(&log, "legacy").len(), 5, "{log:#?}");
    assert_eq!(client(&log, "start").len(), 1, "{log:#?}");
    assert_eq!(u64_field(client(&log, "start")[0], "t"), 3);
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_message_brings_audio_into_the_log() {
    let dir = tempfile::tempdir().unwrap();
    let server = start(dir.path());
    let (_, log) = files(dir.path(), "quiet");
    let secret = "c2VjcmV0LXZvaWNl";
    let (mut c, _) = Client::resume(server.addr, "quiet").await;
    c.json(json!({"type": "clearvox.resume_from", "sample": 0, "audio": secret}))
        .await;
    c.json(json!({"type": "start", "rate": 16000, "encoding": "pcm_s16le", "channels": 1, "sample": 0, "audio": secret}))
        .await;
    c.json(json!({"type": "speech_started", "sample": 0, "audio": secret}))
        .await;
    c.json(json!({"type": "speech_stopped", "sample": 0, "audio": secret}))
        .await;
    c.json(json!({"type": "clearvox.ack", "received": 0, "audio": secret}))
        .await;
    c.json(json!({"type": "something.else", "nested": [{"audio": secret}]}))
        .await;
    c.json(json!({"type": "stop", "samples": 0, "audio": secret}))
        .await;
    c.acks_until(0).await;
    c.close().await;
    disconnected(&log, 1).await;
    let text = std::fs::read_to_string(&log).unwrap();
    assert!(!text.contains(secret), "{text}");
    let log = read_log(&log);
    for t in ["clearvox.resume_from", "start", "speech_started", "stop"] {
        let line = client(&log, t);
        assert_eq!(line.len(), 1, "{t}: {log:#?}");
        assert_eq!(line[0]["message"]["audio"], "<16 base64 characters>");
    }
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn device_names_are_refused_as_stream_ids() {
    let dir = tempfile::tempdir().unwrap();
    let server = start(dir.path());
    for id in ["CON", "nul", "Aux", "prn", "COM1", "com9", "LPT1", "lPt0"] {
        let o = Opts {
            session: Some(id),
            ..Opts::default()
        };
        match try_connect(server.addr, &o).await {
            Err(tokio_tungstenite::tungstenite::Error::Http(resp)) => {
                assert_eq!(resp.status(), 400, "{id}")
            }
            other => panic!("{id}: {:?}", other.map(|_| "accepted")),
        }
    }
    // Names that only look alike are fine.
    let c = Client::open(
        server.addr,
        Opts {
            session: Some("console"),
            ..Opts::default()
        },
    )
    .await;
    c.close().await;
    server.shutdown().await;
    assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0);
}

/// The names of the files in `dir`, sorted.
fn names(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    names
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ids_differing_in_case_only_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let server = start(dir.path());
    let (wav, log) = files(dir.path(), "abc");
    let sent = signal(800, 23);
    let mut c = Client::open(
        server.addr,
        Opts {
            session: Some("abc"),
            ..Opts::default()
        },
    )
    .await;
    c.audio(&sent, 400).await;
    // While `abc` is connected.
    let mut twin = Client::open(
        server.addr,
        Opts {
            session: Some("ABC"),
            resume: true,
            ..Opts::default()
        },
    )
    .await;
    assert_eq!(twin.next().await, None, "closed without a greeting");
    c.close().await;
    disconnected(&log, 1).await;
    server.shutdown().await;

    // After a restart, from the folder.
    let server = start(dir.path());
    let mut twin = Client::open(
        server.addr,
        Opts {
            session: Some("Abc"),
            resume: true,
            ..Opts::default()
        },
    )
    .await;
    assert_eq!(twin.next().await, None, "closed without a greeting");
    let (c, received) = Client::resume(server.addr, "abc").await;
    assert_eq!(received, 800);
    c.close().await;
    disconnected(&log, 2).await;
    server.shutdown().await;
    assert_eq!(names(dir.path()), ["abc.jsonl", "abc.key", "abc.wav"]);
    assert_eq!(read_wav(&wav).1, sent);
}

#[cfg(unix)]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn recordings_are_readable_by_their_owner_only() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let server = start(dir.path());
    let (wav, log) = files(dir.path(), "private");
    let mut c = Client::open(
        server.addr,
        Opts {
            session: Some("private"),
            ..Opts::default()
        },
    )
    .await;
    c.audio(&signal(320, 24), 320).await;
    c.close().await;
    disconnected(&log, 1).await;
    server.shutdown().await;
    for path in [wav, log] {
        let mode = std::fs::metadata(&path).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600, "{}: {mode:o}", path.display());
    }
}
