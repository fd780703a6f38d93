//! What the receiver targets share: one reference receiver on loopback, kept for the
//! whole run, and a client that plays a script of WebSocket messages to it and waits
//! until the receiver has finished with the connection (its connection-end report).
//!
//! The receiver's message handling is reached through its public API only (`Server`
//! over a real socket), so the targets follow the receiver through refactorings of its
//! internals.

use std::path::{Path, PathBuf};
use std::sync::{Mutex, OnceLock};
use std::time::Duration;

use clearvox::io::{read_wav, WavError, WavSpec};
use clearvox::stream::server::{Server, ServerConfig, SessionReport, RESUME_KEY_HEADER};
use futures_util::{SinkExt, StreamExt};
use tokio::runtime::Runtime;
use tokio::sync::mpsc::{unbounded_channel, UnboundedReceiver};
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::http::HeaderValue;
use tokio_tungstenite::tungstenite::Message;

/// The resume key the targets' clients own their streams with.
pub const RESUME_KEY: &str = "the-fuzz-targets-resume-key-0123456789abcdef";

/// Makes the stream `id` in `out`, whose files a target wrote by hand, its clients': the
/// key file the receiver would have written for [`RESUME_KEY`].
pub fn plant_key(out: &Path, id: &str) {
    let digest = ring::digest::digest(&ring::digest::SHA256, RESUME_KEY.as_bytes());
    let hex: String = digest.as_ref().iter().map(|b| format!("{b:02x}")).collect();
    std::fs::write(out.join(format!("{id}.key")), format!("{hex}\n")).expect("the key file");
}

/// Longest one connection may take from connect to the receiver's report: far more than
/// a script of a few messages needs, so that only a hang trips it.
const CONNECTION_LIMIT: Duration = Duration::from_secs(20);

/// One message a script sends.
#[derive(Debug, Clone)]
pub enum Step {
    /// A text message.
    Text(String),
    /// A binary message.
    Binary(Vec<u8>),
    /// A ping.
    Ping,
}

/// One connection of a script.
#[derive(Debug, Clone, Default)]
pub struct Connect {
    /// Send `X-Clearvox-Resume: 1`.
    pub resume: bool,
    /// The URL's query (without `?`), if any.
    pub query: Option<String>,
    /// The messages, in order.
    pub steps: Vec<Step>,
    /// End with a Close frame (else the TCP connection is just dropped).
    pub close: bool,
}

/// The receiver of a fuzzing run.
pub struct Receiver {
    runtime: Runtime,
    url: String,
    out: PathBuf,
    reports: Mutex<UnboundedReceiver<SessionReport>>,
}

/// The receiver, started on the first call.
pub fn receiver() -> &'static Receiver {
    static RECEIVER: OnceLock<Receiver> = OnceLock::new();
    RECEIVER.get_or_init(|| {
        let base = if Path::new("/dev/shm").is_dir() {
            PathBuf::from("/dev/shm")
        } else {
            std::env::temp_dir()
        };
        let out = base.join(format!("clearvox-fuzz-{}", std::process::id()));
        let (tx, rx) = unbounded_channel();
        let server = Server::bind(ServerConfig {
            listen: "127.0.0.1:0".parse().expect("a socket address"),
            out: out.clone(),
            tls: None,
            token: None,
            limits: Default::default(),
            respond_with: None,
        })
        .expect("a receiver on loopback")
        .on_connection_end(move |report| {
            let _ = tx.send(report.clone());
        });
        let url = server.url();
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("a runtime");
        // Runs whenever the runtime is driven, i.e. during `play`.
        runtime.spawn(server.run(std::future::pending()));
        Receiver {
            runtime,
            url,
            out,
            reports: Mutex::new(rx),
        }
    })
}

impl Receiver {
    /// The folder the receiver writes to.
    pub fn out(&self) -> &Path {
        &self.out
    }

    /// Plays `connections` one after the other on the stream `session` (unnamed when
    /// `None`), each until the receiver reports its end; returns the reports.
    pub fn play(&self, session: Option<&str>, connections: &[Connect]) -> Vec<SessionReport> {
        let mut reports = self.reports.lock().unwrap_or_else(|e| e.into_inner());
        self.runtime.block_on(async {
            let mut out = Vec::new();
            for c in connections {
                let played = tokio::time::timeout(CONNECTION_LIMIT, async {
                    if !self.connect_and_send(session, c).await {
                        return None;
                    }
                    reports.recv().await
                })
                .await;
                match played {
                    Ok(Some(report)) => out.push(report),
                    Ok(None) => {}
                    Err(_) => panic!(
                        "the receiver did not end a connection within {CONNECTION_LIMIT:?}: {c:?}"
                    ),
                }
            }
            out
        })
    }

    /// Whether the handshake succeeded (the receiver then reports the connection's end).
    async fn connect_and_send(&self, session: Option<&str>, c: &Connect) -> bool {
        let url = match &c.query {
            Some(q) => format!("{}/?{q}", self.url),
            None => format!("{}/", self.url),
        };
        let Ok(mut request) = url.into_client_request() else {
            return false;
        };
        if let Some(id) = session {
            request.headers_mut().insert(
                "x-clearvox-session",
                HeaderValue::from_str(id).expect("a valid id"),
            );
            // The owner's key, on every connection (see `plant_key`).
            request
                .headers_mut()
                .insert(RESUME_KEY_HEADER, HeaderValue::from_static(RESUME_KEY));
        }
        if c.resume {
            request
                .headers_mut()
                .insert("x-clearvox-resume", HeaderValue::from_static("1"));
        }
        let (ws, _) = match tokio_tungstenite::connect_async(request).await {
            Ok(ok) => ok,
            Err(_) => return false,
        };
        let (mut tx, mut rx) = ws.split();
        // Read whatever the receiver says meanwhile, so that it never waits on us.
        // A receiver that cannot open the stream's files closes without a report.
        let reader = async move {
            let mut unopened = false;
            while let Some(Ok(message)) = rx.next().await {
                if let Message::Close(Some(frame)) = message {
                    unopened = frame.reason.starts_with("cannot open the stream's files");
                }
            }
            unopened
        };
        let writer = async move {
            for step in &c.steps {
                let message = match step {
                    Step::Text(t) => Message::text(t.clone()),
                    Step::Binary(b) => Message::binary(b.clone()),
                    Step::Ping => Message::Ping(Vec::new().into()),
                };
                if tx.send(message).await.is_err() {
                    return;
                }
            }
            if c.close {
                let _ = tx.send(Message::Close(None)).await;
            } else {
                let _ = tx.close().await;
            }
        };
        let (unopened, ()) = tokio::join!(reader, writer);
        !unopened
    }

    /// Removes every file the receiver wrote, after checking that its WAV files are
    /// readable WAV (a header that parses, audio in whole samples).
    pub fn check_and_clear(&self) {
        self.check_and_clear_if(true);
    }

    /// [`check_and_clear`](Self::check_and_clear), checking the WAV files only if
    /// `check`.
    pub fn check_and_clear_if(&self, check: bool) {
        let Ok(entries) = std::fs::read_dir(&self.out) else {
            return;
        };
        for entry in entries.flatten() {
            let path = entry.path();
            if check && path.extension().is_some_and(|e| e == "wav") {
                check_wav(&path);
            }
            let _ = std::fs::remove_file(&path);
        }
    }
}

/// A WAV file the receiver wrote: a valid header, PCM16 mono, sizes that match.
pub fn check_wav(path: &Path) {
    let bytes = std::fs::read(path).expect("the receiver's WAV file");
    let (spec, audio_at) =
        WavSpec::read_header(&bytes[..]).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    assert_eq!(spec.channels, 1, "{}", path.display());
    match read_wav(&bytes[..]) {
        Ok(audio) => {
            assert!(
                audio.warnings.is_empty(),
                "{}: {:?}",
                path.display(),
                audio.warnings
            );
            assert_eq!(
                audio.samples.len() as u64 * 2,
                bytes.len() as u64 - audio_at,
                "{}",
                path.display()
            );
        }
        Err(WavError::NoAudio(_)) => assert_eq!(bytes.len() as u64, audio_at),
        Err(e) => panic!("{}: {e}", path.display()),
    }
}

/// Splits a script: lines, each a message by its first byte (`T` text, `B` binary, `P`
/// ping), `-` a new connection (`-R` with the resume header, `-?QUERY` with a query,
/// `-X` dropped without a Close frame).
pub fn parse_script(data: &[u8], max_steps: usize) -> Vec<Connect> {
    let mut connections = vec![Connect {
        close: true,
        ..Connect::default()
    }];
    let mut steps = 0;
    for line in data.split(|&b| b == b'\n') {
        let Some((&kind, rest)) = line.split_first() else {
            continue;
        };
        let current = connections.last_mut().expect("one connection at least");
        match kind {
            b'T' => current
                .steps
                .push(Step::Text(String::from_utf8_lossy(rest).into_owned())),
            b'B' => current.steps.push(Step::Binary(rest.to_vec())),
            b'P' => current.steps.push(Step::Ping),
            b'-' if connections.len() < 4 => {
                let text = String::from_utf8_lossy(rest);
                let query = text.split_once('?').map(|(_, q)| q.to_string());
                connections.push(Connect {
                    resume: text.contains('R'),
                    query,
                    steps: Vec::new(),
                    close: !text.contains('X'),
                });
            }
            _ => continue,
        }
        steps += 1;
        if steps >= max_steps {
            break;
        }
    }
    // The first line of options applies to the first connection too.
    if let Some(first) = data.split(|&b| b == b'\n').next() {
        if first.first() == Some(&b'#') {
            let text = String::from_utf8_lossy(first);
            connections[0].resume = text.contains('R');
            connections[0].query = text.split_once('?').map(|(_, q)| q.to_string());
            connections[0].close = !text.contains('X');
        }
    }
    connections
}
