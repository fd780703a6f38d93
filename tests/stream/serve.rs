//! The reference receiver (`clearvox::stream::server` and `clearvox serve`) driven over
//! loopback by a WebSocket client written here: both protocols, the resume extension
//! (acks, reconnects, overlaps, gaps, a crash and restart), events, TLS, many streams at
//! once, and the command line.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures_util::stream::SplitSink;
use futures_util::{SinkExt, StreamExt};
use serde_json::{json, Value};
use tokio::net::TcpStream;
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::http::HeaderValue;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

use crate::support::{str_field, u64_field};
use clearvox::stream::protocol::{
    openai_append, openai_clear, openai_commit, openai_session_update, pcm16_to_bytes,
};
use clearvox::stream::server::{ServeError, Server, ServerConfig, TlsFiles, RESUME_KEY_HEADER};

pub(super) const WAIT: Duration = Duration::from_secs(10);

// ---------------------------------------------------------------------------------------
// The server under test.

pub(super) struct Running {
    pub(super) addr: SocketAddr,
    stop: Option<oneshot::Sender<()>>,
    task: JoinHandle<Result<(), ServeError>>,
}

pub(super) fn start(dir: &Path) -> Running {
    start_with(dir, None)
}

fn start_with(dir: &Path, tls: Option<TlsFiles>) -> Running {
    let server = Server::bind(ServerConfig {
        listen: "127.0.0.1:0".parse().unwrap(),
        out: dir.to_path_buf(),
        tls,
        token: None,
        limits: Default::default(),
        respond_with: None,
    })
    .unwrap();
    let addr = server.local_addr();
    let (stop, stopped) = oneshot::channel::<()>();
    let task = tokio::spawn(server.run(async {
        let _ = stopped.await;
    }));
    Running {
        addr,
        stop: Some(stop),
        task,
    }
}

impl Running {
    pub(super) async fn shutdown(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        tokio::time::timeout(WAIT, &mut self.task)
            .await
            .expect("the server stops")
            .unwrap()
            .unwrap();
    }

    /// Drops the server and its connections at once, as a killed process would.
    pub(super) async fn crash(self) {
        self.task.abort();
        let _ = self.task.await;
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

// ---------------------------------------------------------------------------------------
// A client.

pub(super) type Ws = WebSocketStream<MaybeTlsStream<TcpStream>>;

pub(super) struct Client {
    tx: SplitSink<Ws, Message>,
    pub(super) rx: mpsc::UnboundedReceiver<Value>,
    reader: JoinHandle<()>,
}

#[derive(Default)]
pub(super) struct Opts<'a> {
    pub(super) session: Option<&'a str>,
    pub(super) resume: bool,
    pub(super) query: &'a str,
    pub(super) tls: Option<Arc<rustls::ClientConfig>>,
}

pub(super) async fn try_connect(
    addr: SocketAddr,
    o: &Opts<'_>,
) -> Result<Ws, tokio_tungstenite::tungstenite::Error> {
    let url = match o.tls {
        Some(_) => format!("wss://localhost:{}/{}", addr.port(), o.query),
        None => format!("ws://{addr}/{}", o.query),
    };
    let mut req = url.into_client_request().unwrap();
    if let Some(id) = o.session {
        req.headers_mut()
            .insert("X-Clearvox-Session", HeaderValue::from_str(id).unwrap());
        req.headers_mut().insert(
            RESUME_KEY_HEADER,
            HeaderValue::from_str(&test_key(id)).unwrap(),
        );
    }
    if o.resume {
        req.headers_mut()
            .insert("X-Clearvox-Resume", HeaderValue::from_static("1"));
    }
    let connector = o.tls.clone().map(tokio_tungstenite::Connector::Rustls);
    let (ws, _) =
        tokio_tungstenite::connect_async_tls_with_config(req, None, false, connector).await?;
    Ok(ws)
}

/// The resume key these tests' clients choose for the stream `id` (ids are unique across
/// the tests), as a client keeps its own key from its first connection on.
pub(super) fn test_key(id: &str) -> String {
    format!("{id}-resume-key-of-these-tests-0123456789")
}

/// Plants the key file of a stream whose files a test wrote by hand, as the receiver
/// writes it for [`test_key`].
pub(super) fn plant_key(dir: &Path, id: &str) {
    let digest = ring::digest::digest(&ring::digest::SHA256, test_key(id).as_bytes());
    let hex: String = digest.as_ref().iter().map(|b| format!("{b:02x}")).collect();
    std::fs::write(dir.join(format!("{id}.key")), format!("{hex}\n")).unwrap();
}

impl Client {
    pub(super) async fn open(addr: SocketAddr, o: Opts<'_>) -> Client {
        let ws = try_connect(addr, &o).await.expect("connects");
        let (tx, mut ws_rx) = ws.split();
        let (to_test, rx) = mpsc::unbounded_channel();
        let reader = tokio::spawn(async move {
            while let Some(Ok(m)) = ws_rx.next().await {
                match m {
                    Message::Text(t) => {
                        let v: Value = serde_json::from_str(t.as_str()).expect("server sends JSON");
                        if to_test.send(v).is_err() {
                            break;
                        }
                    }
                    Message::Close(_) => break,
                    _ => {}
                }
            }
        });
        Client { tx, rx, reader }
    }

    pub(super) async fn resume(addr: SocketAddr, id: &str) -> (Client, u64) {
        let mut c = Client::open(
            addr,
            Opts {
                session: Some(id),
                resume: true,
                ..Opts::default()
            },
        )
        .await;
        let hello = c.next().await.expect("a clearvox.resume");
        assert_eq!(hello["type"], "clearvox.resume", "{hello}");
        assert_eq!(hello["session"], id);
        let received = u64_field(&hello, "received");
        (c, received)
    }

    pub(super) async fn send(&mut self, m: Message) {
        self.tx.send(m).await.expect("sends");
    }

    pub(super) async fn json(&mut self, v: Value) {
        self.send(Message::text(v.to_string())).await;
    }

    pub(super) async fn audio(&mut self, samples: &[i16], packet: usize) {
        for chunk in samples.chunks(packet) {
            self.send(Message::binary(pcm16_to_bytes(chunk))).await;
        }
    }

    pub(super) async fn start(&mut self, rate: u32, sample: u64) {
        self.json(json!({"type": "start", "rate": rate, "encoding": "pcm_s16le", "channels": 1, "sample": sample}))
            .await;
    }

    /// The next text message from the server; `None` when the server closed.
    pub(super) async fn next(&mut self) -> Option<Value> {
        tokio::time::timeout(WAIT, self.rx.recv())
            .await
            .expect("a message from the server in time")
    }

    /// Acks until one reaches `n`: all of them, in order.
    pub(super) async fn acks_until(&mut self, n: u64) -> Vec<u64> {
        let mut acks = Vec::new();
        loop {
            let m = self.next().await.expect("the server is still there");
            assert_eq!(m["type"], "clearvox.ack", "{m}");
            let a = u64_field(&m, "received");
            acks.push(a);
            if a >= n {
                return acks;
            }
        }
    }

    /// Closes with a Close frame and waits for the server's.
    pub(super) async fn close(mut self) -> Vec<Value> {
        let _ = self.tx.send(Message::Close(None)).await;
        let mut rest = Vec::new();
        while let Some(m) = self.next().await {
            rest.push(m);
        }
        let _ = self.reader.await;
        rest
    }

    /// Vanishes without a Close frame.
    pub(super) async fn vanish(self) {
        self.reader.abort();
        let _ = self.reader.await;
        drop(self.tx);
    }
}

// ---------------------------------------------------------------------------------------
// Signals and files.

/// `n` samples of a stream, none of them zero, different for every `seed`.
pub(super) fn signal(n: usize, seed: u32) -> Vec<i16> {
    let mut x = seed.wrapping_mul(2_654_435_761).wrapping_add(12_345);
    (0..n)
        .map(|_| {
            x = x.wrapping_mul(1_664_525).wrapping_add(1_013_904_223);
            let s = ((x >> 16) as i16) / 2;
            if s == 0 {
                1
            } else {
                s
            }
        })
        .collect()
}

pub(super) fn read_wav(path: &Path) -> (u32, Vec<i16>) {
    let mut r = hound::WavReader::open(path)
        .unwrap_or_else(|e| panic!("{} is a valid WAV: {e}", path.display()));
    let spec = r.spec();
    assert_eq!((spec.channels, spec.bits_per_sample), (1, 16));
    let samples = r.samples::<i16>().map(|s| s.unwrap()).collect();
    (spec.sample_rate, samples)
}

/// The lines of a stream's log after its version line (checked).
pub(super) fn read_log(path: &Path) -> Vec<Value> {
    let mut lines: Vec<Value> = std::fs::read_to_string(path)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("bad line {l}: {e}")))
        .collect();
    assert!(!lines.is_empty(), "{} is empty", path.display());
    let first = lines.remove(0);
    assert_eq!(
        (&first["type"], &first["version"]),
        (&json!("log"), &json!(2)),
        "{first}"
    );
    lines
}

/// The lines' types: the receiver's records by theirs, a client's message as `client`
/// and its type.
pub(super) fn types(log: &[Value]) -> Vec<String> {
    log.iter()
        .map(|v| match str_field(v, "type") {
            "client" => format!("client {}", v["message"]["type"].as_str().unwrap_or("?")),
            t => t.to_string(),
        })
        .collect()
}

/// The receiver's records of type `t`.
pub(super) fn of_type<'a>(log: &'a [Value], t: &str) -> Vec<&'a Value> {
    log.iter().filter(|v| v["type"] == t).collect()
}

/// The `client` lines of messages of type `t`.
pub(super) fn client<'a>(log: &'a [Value], t: &str) -> Vec<&'a Value> {
    log.iter()
        .filter(|v| v["type"] == "client" && v["message"]["type"] == t)
        .collect()
}

pub(super) fn files(dir: &Path, id: &str) -> (PathBuf, PathBuf) {
    (
        dir.join(format!("{id}.wav")),
        dir.join(format!("{id}.jsonl")),
    )
}

/// Waits until the server has written the end of a connection (its log's
/// `disconnected` line) `count` times.
pub(super) async fn disconnected(log: &Path, count: usize) {
    let t0 = Instant::now();
    loop {
        if log.exists() && of_type(&read_log(log), "disconnected").len() >= count {
            return;
        }
        assert!(
            t0.elapsed() < WAIT,
            "no disconnected line in {}",
            log.display()
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

// ---------------------------------------------------------------------------------------
// The tests.

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn raw_stream_with_resume_is_stored_exactly_and_acknowledged() {
    let dir = tempfile::tempdir().unwrap();
    let server = start(dir.path());
    let (wav, log) = files(dir.path(), "raw-1");
    let sent = signal(16_000, 1);

    let (mut c, received) = Client::resume(server.addr, "raw-1").await;
    assert_eq!(received, 0);
    c.json(json!({"type": "clearvox.resume_from", "sample": 0}))
        .await;
    c.start(16_000, 0).await;
    c.audio(&sent[..3_200], 320).await;
    let first = c.acks_until(3_200).await;
    // The file is a valid WAV while the stream goes on, holding what was acknowledged.
    assert_eq!(read_wav(&wav).1, sent[..3_200]);
    c.audio(&sent[3_200..], 320).await;
    let rest = c.acks_until(16_000).await;
    c.json(json!({"type": "stop", "samples": 16_000})).await;
    let last = c.acks_until(16_000).await;
    assert_eq!(last, [16_000], "a final ack on stop");
    let leftovers = c.close().await;
    assert!(leftovers.is_empty(), "{leftovers:?}");

    // One ack per 20 ms packet: every 20 ms of audio, never less, never more than 100 ms.
    let acks: Vec<u64> = first.into_iter().chain(rest).collect();
    let mut prev = 0;
    for a in &acks {
        assert!((320..=1_600).contains(&(a - prev)), "acks {acks:?}");
        prev = *a;
    }
    assert_eq!(acks.len(), 50, "{acks:?}");

    disconnected(&log, 1).await;
    let (rate, samples) = read_wav(&wav);
    assert_eq!(rate, 16_000);
    assert_eq!(samples, sent);
    let log = read_log(&log);
    assert_eq!(
        types(&log),
        [
            "connected",
            "client clearvox.resume_from",
            "format",
            "client start",
            "client stop",
            "disconnected"
        ]
    );
    assert_eq!(log[0]["resume"], true);
    assert_eq!(log[0]["received"], 0);
    assert_eq!(log[2]["protocol"], "raw");
    assert_eq!(log[2]["rate"], 16_000);
    assert!(log.iter().all(|l| l["t"].as_u64().is_some()));
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reconnect_resumes_where_the_server_is_and_drops_a_resent_overlap() {
    let dir = tempfile::tempdir().unwrap();
    let server = start(dir.path());
    let (wav, log) = files(dir.path(), "re-1");
    let sent = signal(16_000, 2);

    let (mut a, n) = Client::resume(server.addr, "re-1").await;
    assert_eq!(n, 0);
    a.json(json!({"type": "clearvox.resume_from", "sample": 0}))
        .await;
    a.start(16_000, 0).await;
    a.audio(&sent[..8_000], 320).await;
    a.acks_until(8_000).await;
    a.vanish().await;
    disconnected(&log, 1).await;

    let (mut b, n) = Client::resume(server.addr, "re-1").await;
    assert_eq!(n, 8_000, "received counts what arrived");
    // A client that resends from before what the server holds: the overlap is dropped
    // (it ends inside a packet).
    b.json(json!({"type": "clearvox.resume_from", "sample": 6_500}))
        .await;
    b.start(16_000, 6_500).await;
    b.audio(&sent[6_500..], 320).await;
    b.json(json!({"type": "stop", "samples": 16_000})).await;
    let acks = b.acks_until(16_000).await;
    assert!(acks.windows(2).all(|w| w[0] <= w[1]), "{acks:?}");
    assert!(acks[0] > 8_000, "nothing is acknowledged twice: {acks:?}");
    b.close().await;
    disconnected(&log, 2).await;

    assert_eq!(read_wav(&wav).1, sent, "nothing lost, nothing duplicated");
    let log = read_log(&log);
    assert_eq!(of_type(&log, "connected").len(), 2);
    assert_eq!(of_type(&log, "connected")[1]["received"], 8_000);
    let errors = of_type(&log, "protocol_error");
    assert_eq!(errors.len(), 1, "{errors:?}");
    assert!(errors[0]["message"]
        .as_str()
        .unwrap()
        .contains("first 1500 samples"));
    assert!(of_type(&log, "gap").is_empty());
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_connection_takes_the_stream_over() {
    let dir = tempfile::tempdir().unwrap();
    let server = start(dir.path());
    let (wav, log) = files(dir.path(), "take-1");
    let sent = signal(6_400, 3);

    let (mut a, _) = Client::resume(server.addr, "take-1").await;
    a.json(json!({"type": "clearvox.resume_from", "sample": 0}))
        .await;
    a.audio(&sent[..3_200], 320).await;
    a.acks_until(3_200).await;
    // The old connection is still open (its client thinks so, too).
    let (mut b, n) = Client::resume(server.addr, "take-1").await;
    assert_eq!(n, 3_200);
    assert_eq!(a.next().await, None, "the old connection is closed");
    b.json(json!({"type": "clearvox.resume_from", "sample": 3_200}))
        .await;
    b.audio(&sent[3_200..], 320).await;
    b.acks_until(6_400).await;
    b.close().await;
    disconnected(&log, 2).await;
    assert_eq!(read_wav(&wav).1, sent);
    let log = read_log(&log);
    assert!(of_type(&log, "disconnected")
        .iter()
        .any(|d| d["reason"] == "taken over by a new connection"));
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_gap_is_logged_and_the_file_holds_no_zeros() {
    let dir = tempfile::tempdir().unwrap();
    let server = start(dir.path());
    let (wav, log) = files(dir.path(), "gap-1");
    let sent = signal(10_400, 4);

    let (mut a, _) = Client::resume(server.addr, "gap-1").await;
    a.json(json!({"type": "clearvox.resume_from", "sample": 0}))
        .await;
    a.start(16_000, 0).await;
    a.audio(&sent[..3_200], 320).await;
    a.acks_until(3_200).await;
    a.close().await;
    disconnected(&log, 1).await;

    let (mut b, n) = Client::resume(server.addr, "gap-1").await;
    assert_eq!(n, 3_200, "a Close frame does not finish the stream");
    // The client lost [3200, 7200) to its full buffer.
    b.json(json!({"type": "clearvox.resume_from", "sample": 7_200}))
        .await;
    b.start(16_000, 7_200).await;
    b.audio(&sent[7_200..], 320).await;
    let acks = b.acks_until(10_400).await;
    // Acks count stream offsets: the gap's end (acknowledged on its own if the audio
    // after it is slow to come), then the packets after it.
    assert!(acks[0] == 7_200 || acks[0] == 7_520, "{acks:?}");
    assert!(acks.contains(&7_520), "{acks:?}");
    b.json(json!({"type": "stop", "samples": 10_400})).await;
    assert_eq!(b.acks_until(10_400).await, [10_400]);
    b.close().await;
    disconnected(&log, 2).await;

    let (_, samples) = read_wav(&wav);
    let expected: Vec<i16> = sent[..3_200]
        .iter()
        .chain(&sent[7_200..])
        .copied()
        .collect();
    assert_eq!(samples, expected);
    assert!(samples.iter().all(|&s| s != 0), "no zeros for the gap");
    let log = read_log(&log);
    let gaps = of_type(&log, "gap");
    assert_eq!(gaps.len(), 1);
    assert_eq!(
        (gaps[0]["from"].as_u64(), gaps[0]["to"].as_u64()),
        (Some(3_200), Some(7_200))
    );
    assert!(of_type(&log, "protocol_error").is_empty());
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restarted_server_resumes_from_the_file_length() {
    let dir = tempfile::tempdir().unwrap();
    let (wav, log) = files(dir.path(), "crash-1");
    let sent = signal(8_000, 5);

    let first = start(dir.path());
    let (mut a, _) = Client::resume(first.addr, "crash-1").await;
    a.json(json!({"type": "clearvox.resume_from", "sample": 0}))
        .await;
    a.start(8_000, 0).await;
    a.audio(&sent[..3_000], 160).await;
    a.acks_until(3_000).await;
    // The client loses [3000, 3500) to an outage of its own, then the server dies.
    a.json(json!({"type": "clearvox.resume_from", "sample": 3_500}))
        .await;
    a.audio(&sent[3_500..4_000], 160).await;
    a.acks_until(4_000).await;
    first.crash().await;
    a.vanish().await;

    // What a crash can leave: a header whose sizes (and more) are garbage, half a sample.
    let mut bytes = std::fs::read(&wav).unwrap();
    assert_eq!(bytes.len(), 44 + 3_500 * 2);
    bytes[..44].fill(0xa5);
    bytes.push(0x42);
    std::fs::write(&wav, &bytes).unwrap();
    assert!(
        hound::WavReader::open(&wav).is_err(),
        "the header is broken"
    );

    let second = start(dir.path());
    let (mut b, n) = Client::resume(second.addr, "crash-1").await;
    assert_eq!(n, 4_000, "3500 samples in the file and a 500-sample gap");
    // The file is whole again as soon as the stream is reopened.
    assert_eq!(
        read_wav(&wav),
        (8_000, [&sent[..3_000], &sent[3_500..4_000]].concat())
    );
    b.json(json!({"type": "clearvox.resume_from", "sample": 4_000}))
        .await;
    b.start(8_000, 4_000).await;
    b.audio(&sent[4_000..], 160).await;
    b.json(json!({"type": "stop", "samples": 8_000})).await;
    b.acks_until(8_000).await;
    b.close().await;
    disconnected(&log, 1).await;

    let expected = [&sent[..3_000], &sent[3_500..]].concat();
    assert_eq!(read_wav(&wav), (8_000, expected));
    let log = read_log(&log);
    assert_eq!(of_type(&log, "connected").len(), 2);
    assert_eq!(of_type(&log, "recovered").len(), 1);
    assert_eq!(of_type(&log, "gap").len(), 1);
    second.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn events_are_logged_once_and_a_finished_stream_takes_nothing_more() {
    let dir = tempfile::tempdir().unwrap();
    let server = start(dir.path());
    let (wav, log) = files(dir.path(), "ev-1");
    let sent = signal(8_000, 6);

    let (mut a, _) = Client::resume(server.addr, "ev-1").await;
    a.json(json!({"type": "clearvox.resume_from", "sample": 0}))
        .await;
    a.start(16_000, 0).await;
    a.audio(&sent[..1_600], 320).await;
    a.json(json!({"type": "speech_started", "sample": 1_600}))
        .await;
    a.audio(&sent[1_600..4_800], 320).await;
    a.json(json!({"type": "speech_stopped", "sample": 4_000}))
        .await;
    a.acks_until(4_800).await;
    a.vanish().await;
    disconnected(&log, 1).await;

    let (mut b, n) = Client::resume(server.addr, "ev-1").await;
    assert_eq!(n, 4_800);
    b.json(json!({"type": "clearvox.resume_from", "sample": 4_800}))
        .await;
    b.start(16_000, 4_800).await;
    // Resent: the client had no ack for them.
    b.json(json!({"type": "speech_started", "sample": 1_600}))
        .await;
    b.json(json!({"type": "speech_stopped", "sample": 4_000}))
        .await;
    b.json(json!({"type": "speech_started", "sample": 6_000}))
        .await;
    b.audio(&sent[4_800..], 320).await;
    b.json(json!({"type": "stop", "samples": 8_000})).await;
    b.audio(&signal(320, 98), 320).await; // after the stop: ignored
    b.acks_until(8_000).await;
    b.close().await;
    disconnected(&log, 2).await;
    // The client comes back (it may have missed the final ack).

    let (mut c, n) = Client::resume(server.addr, "ev-1").await;
    assert_eq!(n, 8_000, "a finished stream tells its length");
    c.json(json!({"type": "clearvox.resume_from", "sample": 8_000}))
        .await;
    c.audio(&signal(320, 99), 320).await;
    c.json(json!({"type": "stop", "samples": 8_000})).await;
    assert_eq!(
        c.acks_until(8_000).await,
        [8_000],
        "the stop is acknowledged again"
    );
    c.close().await;
    disconnected(&log, 3).await;

    assert_eq!(read_wav(&wav).1, sent, "nothing appended after the stop");
    let log = read_log(&log);
    let events: Vec<(String, u64)> = log
        .iter()
        .filter(|v| v["type"] == "client" && v.get("event").is_some() && v["event"] != "start")
        .map(|v| (str_field(v, "event").to_string(), u64_field(v, "sample")))
        .collect();
    assert_eq!(
        events,
        [
            ("speech_started".to_string(), 1_600),
            ("speech_stopped".to_string(), 4_000),
            ("speech_started".to_string(), 6_000),
            ("stop".to_string(), 8_000),
        ]
    );
    let starts: Vec<_> = client(&log, "start")
        .iter()
        .map(|v| v["sample"].clone())
        .collect();
    assert_eq!(starts, [json!(0), json!(4_800)]);
    let errors = of_type(&log, "protocol_error");
    assert_eq!(errors.len(), 2, "once per connection: {errors:?}");
    assert!(errors.iter().all(|e| e["message"]
        .as_str()
        .unwrap()
        .contains("after the stream's stop")));
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_plain_client_replaying_an_utterance_is_not_duplicated() {
    let dir = tempfile::tempdir().unwrap();
    let server = start(dir.path());
    let (wav, log) = files(dir.path(), "plain-1");
    let sent = signal(9_600, 7);
    let plain = || Opts {
        session: Some("plain-1"),
        ..Opts::default()
    };

    let mut a = Client::open(server.addr, plain()).await;
    a.start(16_000, 0).await;
    a.audio(&sent[..4_800], 320).await;
    assert!(a.close().await.is_empty(), "a plain receiver says nothing");
    disconnected(&log, 1).await;

    // No resume extension: the client replays the utterance from its speech start.
    let mut b = Client::open(server.addr, plain()).await;
    b.start(16_000, 1_700).await;
    b.json(json!({"type": "speech_started", "sample": 1_700}))
        .await;
    b.audio(&sent[1_700..], 320).await;
    b.json(json!({"type": "stop", "samples": 9_600})).await;
    assert!(b.close().await.is_empty());
    disconnected(&log, 2).await;
    assert_eq!(read_wav(&wav).1, sent);
    let log = read_log(&log);
    assert!(of_type(&log, "gap").is_empty() && of_type(&log, "protocol_error").is_empty());
    assert_eq!(of_type(&log, "connected")[1]["resume"], false);
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_connection_without_headers_is_a_plain_raw_stream_at_the_url_rate() {
    let dir = tempfile::tempdir().unwrap();
    let server = start(dir.path());
    let sent = signal(8_000, 8);
    let mut c = Client::open(
        server.addr,
        Opts {
            query: "?rate=8000",
            ..Opts::default()
        },
    )
    .await;
    c.audio(&sent, 160).await;
    assert!(
        c.close().await.is_empty(),
        "no message without the resume header"
    );

    let t0 = Instant::now();
    let id = loop {
        let names: Vec<String> = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .filter(|n| n.ends_with(".jsonl"))
            .collect();
        if let [name] = names.as_slice() {
            let id = name.trim_end_matches(".jsonl").to_string();
            if !of_type(&read_log(&dir.path().join(name)), "disconnected").is_empty() {
                break id;
            }
        }
        assert!(t0.elapsed() < WAIT);
        tokio::time::sleep(Duration::from_millis(10)).await;
    };
    let parts: Vec<&str> = id.split('-').collect();
    assert_eq!(parts.len(), 3, "{id}");
    assert_eq!(parts[0], "conn");
    assert!(parts[1].parse::<u64>().unwrap() > 1_600_000_000_000);
    let (wav, log) = files(dir.path(), &id);
    assert_eq!(read_wav(&wav), (8_000, sent));
    let log = read_log(&log);
    assert_eq!(types(&log), ["connected", "format", "disconnected"]);
    assert_eq!(log[0]["resume"], false);
    assert_eq!(log[1]["rate"], 8_000);
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn openai_audio_is_decoded_and_buffer_events_are_answered() {
    let dir = tempfile::tempdir().unwrap();
    let server = start(dir.path());
    let (wav, log) = files(dir.path(), "oai-1");
    let sent = signal(9_600, 9);
    let mut c = Client::open(
        server.addr,
        Opts {
            session: Some("oai-1"),
            ..Opts::default()
        },
    )
    .await;
    let update = openai_session_update(true);
    c.json(update.clone()).await;
    let m = c.next().await.unwrap();
    assert_eq!(m["type"], "session.updated");
    assert_eq!(m["session"], update["session"]);
    assert!(m["event_id"].as_str().is_some());

    // 50 ms: too little to commit.
    c.send(Message::text(openai_append(&sent[..1_200]))).await;
    c.json(json!({"type": "input_audio_buffer.commit", "event_id": "ev-client-1"}))
        .await;
    let m = c.next().await.unwrap();
    assert_eq!(m["type"], "error", "{m}");
    assert_eq!(m["error"]["type"], "invalid_request_error");
    assert_eq!(m["error"]["code"], "input_audio_buffer_commit_empty");
    assert_eq!(m["error"]["event_id"], "ev-client-1");
    assert!(
        m["error"]["message"].as_str().unwrap().contains("50.00ms"),
        "{m}"
    );
    // 50 + 100 ms: enough.
    for chunk in sent[1_200..4_800].chunks(480) {
        c.send(Message::text(openai_append(chunk))).await;
    }
    c.send(Message::text(openai_commit())).await;
    let m = c.next().await.unwrap();
    assert_eq!(m["type"], "input_audio_buffer.committed", "{m}");
    assert!(m["previous_item_id"].is_null());
    let item = str_field(&m, "item_id").to_string();
    assert!(!item.is_empty());
    // Exactly 100 ms is enough, and the next item follows the first.
    c.send(Message::text(openai_append(&sent[4_800..7_200])))
        .await;
    c.send(Message::text(openai_commit())).await;
    let m = c.next().await.unwrap();
    assert_eq!(m["type"], "input_audio_buffer.committed", "{m}");
    assert_eq!(m["previous_item_id"], item.as_str());
    assert_ne!(m["item_id"], item.as_str());
    c.send(Message::text(openai_append(&sent[7_200..]))).await;
    c.send(Message::text(openai_clear())).await;
    assert_eq!(
        c.next().await.unwrap()["type"],
        "input_audio_buffer.cleared"
    );
    c.send(Message::text(openai_commit())).await;
    let m = c.next().await.unwrap();
    assert_eq!(
        m["error"]["code"], "input_audio_buffer_commit_empty",
        "a clear empties the buffer"
    );
    assert!(c.close().await.is_empty());
    disconnected(&log, 1).await;

    assert_eq!(read_wav(&wav), (24_000, sent.clone()));
    let text = std::fs::read_to_string(&log).unwrap();
    assert!(
        !text.contains("input_audio_buffer.append"),
        "appends are not logged"
    );
    let log = read_log(&log);
    assert_eq!(
        types(&log),
        [
            "connected",
            "client session.update",
            "format",
            "client input_audio_buffer.commit",
            "client input_audio_buffer.commit",
            "client input_audio_buffer.commit",
            "client input_audio_buffer.clear",
            "client input_audio_buffer.commit",
            "disconnected"
        ]
    );
    assert_eq!(log[2]["protocol"], "openai");
    assert_eq!(log[2]["rate"], 24_000);
    let commits = client(&log, "input_audio_buffer.commit");
    assert_eq!(commits[0]["error"], "input_audio_buffer_commit_empty");
    assert_eq!(commits[1]["item_id"], item.as_str());
    assert_eq!(commits[1]["sample"], 4_800);

    // Another rate or format is a protocol error; the stream goes on.
    let (wav, log) = files(dir.path(), "oai-2");
    let mut c = Client::open(
        server.addr,
        Opts {
            session: Some("oai-2"),
            ..Opts::default()
        },
    )
    .await;
    c.json(json!({"type": "session.update", "session": {"type": "realtime", "audio": {"input": {"format": {"type": "audio/pcmu", "rate": 16000}}}}}))
        .await;
    assert_eq!(c.next().await.unwrap()["type"], "session.updated");
    c.send(Message::text(openai_append(&sent[..1_600]))).await;
    c.json(json!({"type": "input_audio_buffer.append", "audio": "not base64!"}))
        .await;
    assert_eq!(c.next().await.unwrap()["type"], "error");
    c.close().await;
    disconnected(&log, 1).await;
    assert_eq!(read_wav(&wav), (16_000, sent[..1_600].to_vec()));
    let errors: Vec<String> = of_type(&read_log(&log), "protocol_error")
        .iter()
        .map(|e| str_field(e, "message").to_string())
        .collect();
    assert_eq!(errors.len(), 3, "{errors:?}");
    assert!(errors[0].contains("not audio/pcm"), "{errors:?}");
    assert!(errors[1].contains("16000 Hz"), "{errors:?}");
    assert!(errors[2].contains("base64"), "{errors:?}");

    // With the resume extension, acks count 24 kHz samples.
    let (mut c, _) = Client::resume(server.addr, "oai-3").await;
    c.json(json!({"type": "clearvox.resume_from", "sample": 0}))
        .await;
    c.json(update.clone()).await;
    assert_eq!(c.next().await.unwrap()["type"], "session.updated");
    c.send(Message::text(openai_append(&sent[..2_400]))).await;
    assert_eq!(c.acks_until(2_400).await, [2_400]);
    c.close().await;
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_misbehaving_client_is_logged_and_served_on() {
    let dir = tempfile::tempdir().unwrap();
    let server = start(dir.path());
    let (wav, log) = files(dir.path(), "rude-1");
    let sent = signal(3_200, 13);
    let (mut c, _) = Client::resume(server.addr, "rude-1").await;
    c.send(Message::text("this is not JSON")).await;
    c.send(Message::text("[1, 2, 3]")).await;
    c.json(json!({"type": "clearvox.resume_from", "sample": u64::MAX}))
        .await;
    c.json(json!({"type": "clearvox.ack", "received": 5})).await;
    c.json(json!({"type": "start", "rate": "fast"})).await;
    c.audio(&sent[..1_600], 320).await;
    // Half a sample at the end of a message: ignored.
    let mut bytes = pcm16_to_bytes(&sent[1_600..]);
    bytes.push(0x7f);
    c.send(Message::binary(bytes)).await;
    c.json(json!({"type": "conversation.item.create", "item": {"content": [{"type": "input_audio", "audio": "AAAA"}]}}))
        .await;
    c.json(json!({"type": "stop", "samples": u64::MAX})).await;
    assert_eq!(c.acks_until(3_200).await.last(), Some(&3_200));
    c.close().await;
    disconnected(&log, 1).await;
    assert_eq!(read_wav(&wav).1, sent);
    let text = std::fs::read_to_string(&log).unwrap();
    assert!(!text.contains("AAAA"), "no audio in the log: {text}");
    let log = read_log(&log);
    let errors = of_type(&log, "protocol_error");
    assert_eq!(errors.len(), 7, "{errors:#?}");
    assert!(of_type(&log, "gap").is_empty());
    assert_eq!(client(&log, "stop").len(), 1);
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bad_session_header_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let server = start(dir.path());
    let long = "x".repeat(65);
    for bad in ["bad id", "a/b", "../up", "", "caf\u{e9}", long.as_str()] {
        let mut req = format!("ws://{}/", server.addr)
            .into_client_request()
            .unwrap();
        let value = HeaderValue::from_bytes(bad.as_bytes()).unwrap();
        req.headers_mut().insert("X-Clearvox-Session", value);
        match tokio_tungstenite::connect_async(req).await {
            Err(tokio_tungstenite::tungstenite::Error::Http(resp)) => {
                assert_eq!(resp.status(), 400, "{bad:?}")
            }
            other => panic!("{bad:?}: {:?}", other.map(|_| ())),
        }
    }
    let mut req = format!("ws://{}/", server.addr)
        .into_client_request()
        .unwrap();
    req.headers_mut()
        .append("X-Clearvox-Session", HeaderValue::from_static("one"));
    req.headers_mut()
        .append("X-Clearvox-Session", HeaderValue::from_static("two"));
    match tokio_tungstenite::connect_async(req).await {
        Err(tokio_tungstenite::tungstenite::Error::Http(resp)) => assert_eq!(resp.status(), 400),
        other => panic!("two ids: {:?}", other.map(|_| ())),
    }
    let written = std::fs::read_dir(dir.path()).unwrap().count();
    assert_eq!(written, 0, "nothing is written for a refused handshake");
    // The longest id is fine.
    let ok = "y".repeat(64);
    let c = Client::open(
        server.addr,
        Opts {
            session: Some(&ok),
            ..Opts::default()
        },
    )
    .await;
    c.close().await;
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_streams_with_a_certificate_made_for_the_test() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("out");
    // A certificate authority and a certificate for localhost, signed by it.
    let ca_key = rcgen::KeyPair::generate().unwrap();
    let mut ca_params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    let ca = rcgen::CertifiedIssuer::self_signed(ca_params, ca_key).unwrap();
    let key = rcgen::KeyPair::generate().unwrap();
    let leaf = rcgen::CertificateParams::new(vec!["localhost".to_string()])
        .unwrap()
        .signed_by(&key, &*ca)
        .unwrap();
    let cert_pem = dir.path().join("cert.pem");
    let key_pem = dir.path().join("key.pem");
    std::fs::write(&cert_pem, leaf.pem()).unwrap();
    std::fs::write(&key_pem, key.serialize_pem()).unwrap();

    let server = start_with(
        &out,
        Some(TlsFiles {
            cert: cert_pem.clone(),
            key: key_pem.clone(),
        }),
    );
    let mut roots = rustls::RootCertStore::empty();
    roots.add(ca.der().clone()).unwrap();
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    let tls = Arc::new(config);

    let sent = signal(8_000, 10);
    let mut c = Client::open(
        server.addr,
        Opts {
            session: Some("tls-1"),
            resume: true,
            tls: Some(tls.clone()),
            ..Opts::default()
        },
    )
    .await;
    assert_eq!(c.next().await.unwrap()["type"], "clearvox.resume");
    c.json(json!({"type": "clearvox.resume_from", "sample": 0}))
        .await;
    c.start(16_000, 0).await;
    c.audio(&sent, 320).await;
    c.json(json!({"type": "stop", "samples": 8_000})).await;
    let acks = c.acks_until(8_000).await;
    assert_eq!(acks.len(), 25, "one ack per packet: {acks:?}");
    c.close().await;
    let (wav, log) = files(&out, "tls-1");
    disconnected(&log, 1).await;
    assert_eq!(read_wav(&wav).1, sent);

    // A plain client gets nowhere, and neither does one that does not trust the CA.
    assert!(
        tokio_tungstenite::connect_async(format!("ws://{}/", server.addr))
            .await
            .is_err()
    );
    let strangers = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_root_certificates(rustls::RootCertStore::empty())
    .with_no_client_auth();
    let refused = try_connect(
        server.addr,
        &Opts {
            tls: Some(Arc::new(strangers)),
            ..Opts::default()
        },
    )
    .await;
    assert!(refused.is_err());
    server.shutdown().await;

    // Files that are not a certificate and a key are an error at bind.
    let err = Server::bind(ServerConfig {
        listen: "127.0.0.1:0".parse().unwrap(),
        out: out.clone(),
        tls: Some(TlsFiles {
            cert: key_pem.clone(),
            key: cert_pem.clone(),
        }),
        token: None,
        limits: Default::default(),
        respond_with: None,
    })
    .unwrap_err();
    assert!(err.to_string().contains("no certificate"), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn twenty_concurrent_streams_are_each_intact() {
    let dir = tempfile::tempdir().unwrap();
    let server = start(dir.path());
    let addr = server.addr;
    let t0 = Instant::now();
    let clients: Vec<_> = (0..20u32)
        .map(|i| {
            tokio::spawn(async move {
                let id = format!("many-{i}");
                let (mut c, _) = Client::resume(addr, &id).await;
                c.json(json!({"type": "clearvox.resume_from", "sample": 0}))
                    .await;
                let openai = i % 2 == 1;
                let rate = if openai { 24_000 } else { 16_000 };
                let sent = signal(2 * rate, 100 + i);
                if openai {
                    c.json(openai_session_update(true)).await;
                    assert_eq!(c.next().await.unwrap()["type"], "session.updated");
                    for chunk in sent.chunks(480) {
                        c.send(Message::text(openai_append(chunk))).await;
                    }
                } else {
                    c.start(16_000, 0).await;
                    c.audio(&sent, 320).await;
                    c.json(json!({"type": "stop", "samples": sent.len()})).await;
                }
                let acks = c.acks_until(sent.len() as u64).await;
                assert!(acks.len() >= 20, "{id}: {acks:?}");
                c.close().await;
                (id, rate as u32, sent)
            })
        })
        .collect();
    let mut streams = Vec::new();
    for c in clients {
        streams.push(c.await.unwrap());
    }
    for (id, rate, sent) in streams {
        let (wav, log) = files(dir.path(), &id);
        disconnected(&log, 1).await;
        assert_eq!(read_wav(&wav), (rate, sent), "{id}");
        assert!(
            of_type(&read_log(&log), "protocol_error").is_empty(),
            "{id}"
        );
    }
    assert!(t0.elapsed() < Duration::from_secs(20), "{:?}", t0.elapsed());
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_closes_connections_and_leaves_streams_resumable() {
    let dir = tempfile::tempdir().unwrap();
    let (wav, log) = files(dir.path(), "down-1");
    let sent = signal(6_400, 11);
    let server = start(dir.path());
    let (mut c, _) = Client::resume(server.addr, "down-1").await;
    c.json(json!({"type": "clearvox.resume_from", "sample": 0}))
        .await;
    c.audio(&sent[..3_200], 320).await;
    c.acks_until(3_200).await;
    server.shutdown().await;
    assert_eq!(c.next().await, None, "the server closed the connection");
    assert_eq!(read_wav(&wav).1, sent[..3_200]);
    let lines = read_log(&log);
    assert_eq!(
        of_type(&lines, "disconnected")[0]["reason"],
        "server shutting down"
    );

    let server = start(dir.path());
    let (mut c, n) = Client::resume(server.addr, "down-1").await;
    assert_eq!(n, 3_200, "not finished: resumable");
    c.json(json!({"type": "clearvox.resume_from", "sample": 3_200}))
        .await;
    c.audio(&sent[3_200..], 320).await;
    c.acks_until(6_400).await;
    c.close().await;
    disconnected(&log, 2).await;
    assert_eq!(read_wav(&wav).1, sent);
    server.shutdown().await;
}

// ---------------------------------------------------------------------------------------
// The command line.

#[test]
fn the_cli_serves_until_interrupted() {
    use std::io::{BufRead, BufReader};
    use std::process::{Command, Stdio};

    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("streams");
    let mut child = Command::new(env!("CARGO_BIN_EXE_clearvox"))
        .args(["serve", "--listen", "127.0.0.1:0", "--out"])
        .arg(&out)
        .stderr(Stdio::piped())
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    let mut stderr = BufReader::new(child.stderr.take().unwrap());
    let mut first = String::new();
    stderr.read_line(&mut first).unwrap();
    let addr: SocketAddr = first
        .trim()
        .strip_prefix("listening on ws://")
        .unwrap_or_else(|| panic!("{first:?}"))
        .parse()
        .unwrap();
    assert_ne!(addr.port(), 0);

    let sent = signal(8_000, 12);
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let (wav, log) = files(&out, "cli-1");
    let client = runtime.block_on(async {
        let mut c = Client::open(
            addr,
            Opts {
                session: Some("cli-1"),
                ..Opts::default()
            },
        )
        .await;
        c.audio(&sent, 320).await;
        let t0 = Instant::now();
        while !wav.exists() || std::fs::metadata(&wav).unwrap().len() < 44 + 16_000 {
            assert!(t0.elapsed() < WAIT, "the audio reaches the file");
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        c
    });

    // Ctrl-C.
    let pid = child.id() as libc::pid_t;
    assert_eq!(unsafe { libc::kill(pid, libc::SIGINT) }, 0);
    let t0 = Instant::now();
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        assert!(t0.elapsed() < WAIT, "serve stops on SIGINT");
        std::thread::sleep(Duration::from_millis(20));
    };
    let mut rest = String::new();
    std::io::Read::read_to_string(&mut stderr, &mut rest).unwrap();
    assert!(status.success(), "{status}: {rest}");
    assert!(
        rest.contains("session cli-1: raw 16000 Hz, 0.50 s received, 0 gaps, 0 reconnects; open (resumable): server shutting down"),
        "{rest}"
    );
    assert!(!rest.contains("error"), "{rest}");
    runtime.block_on(async {
        let mut c = client;
        assert_eq!(c.next().await, None, "the client got a Close frame");
    });
    assert_eq!(read_wav(&wav), (16_000, sent));
    let bytes = std::fs::read(&wav).unwrap();
    assert_eq!(
        u32::from_le_bytes(bytes[40..44].try_into().unwrap()),
        16_000
    );
    assert_eq!(u32::from_le_bytes(bytes[4..8].try_into().unwrap()), 16_036);
    assert_eq!(
        of_type(&read_log(&log), "disconnected")[0]["reason"],
        "server shutting down"
    );
}

#[test]
fn the_cli_reports_bad_arguments_as_one_line() {
    let dir = tempfile::tempdir().unwrap();
    let run = |args: &[&str]| {
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_clearvox"))
            .arg("serve")
            .args(args)
            .output()
            .unwrap();
        (
            out.status.code(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };
    let d = dir.path().to_str().unwrap();
    let (code, err) = run(&["--listen", "0.0.0.0:0", "--out", d]);
    assert_eq!(code, Some(1));
    assert!(
        err.starts_with("error: --listen 0.0.0.0:0: plain ws://"),
        "{err}"
    );
    assert_eq!(err.lines().count(), 1, "{err}");

    let missing = dir.path().join("missing.pem");
    let m = missing.to_str().unwrap();
    let (code, err) = run(&[
        "--listen",
        "127.0.0.1:0",
        "--out",
        d,
        "--cert",
        m,
        "--key",
        m,
    ]);
    assert_eq!(code, Some(1));
    assert!(err.starts_with("error: TLS certificate "), "{err}");
    assert!(err.contains("No such file or directory"), "{err}");
    assert_eq!(err.lines().count(), 1, "{err}");

    let (code, err) = run(&["--listen", "127.0.0.1:0", "--out", d, "--cert", m]);
    assert_eq!(code, Some(2), "{err}");
    assert_eq!(err.lines().count(), 1, "{err}");

    // A port in use.
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = taken.local_addr().unwrap().to_string();
    let (code, err) = run(&["--listen", &port, "--out", d]);
    assert_eq!(code, Some(1));
    assert!(
        err.starts_with(&format!("error: cannot listen on {port}: ")),
        "{err}"
    );
}
