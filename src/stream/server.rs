//! The reference receiver: accepts WebSocket streams of both protocols (see
//! [`protocol`](super::protocol)), with or without TLS and the resume extension, and
//! writes each stream to a WAV file and a JSONL log.
//!
//! # Use
//!
//! ```no_run
//! use clearvox::stream::server::{Server, ServerConfig};
//! # async fn demo() -> Result<(), clearvox::stream::server::ServeError> {
//! let server = Server::bind(ServerConfig {
//!     listen: "127.0.0.1:0".parse().unwrap(),
//!     out: "received".into(),
//!     tls: None,
//! })?
//! .on_connection_end(|report| eprintln!("{report}"));
//! println!("listening on {}", server.url());
//! // Serve for an hour (any future will do: a signal, a channel, ...).
//! server.run(tokio::time::sleep(std::time::Duration::from_secs(3600))).await?;
//! # Ok(()) }
//! ```
//!
//! [`Server::bind`] binds at once (so `local_addr()` tells the port of `:0`) and loads the
//! TLS files; [`Server::run`] serves until the future it is given completes;
//! [`Server::run_until`] does the same on a runtime of its own until a flag is set.
//!
//! # What is written
//!
//! Each stream has an id: the `X-Clearvox-Session` handshake header (1–64 characters of
//! `A-Z a-z 0-9 _ -`; anything else, or two such headers, is refused with HTTP 400), or
//! for a connection without one a fresh `conn-<unix_ms>-<counter>` (never resumable).
//! It is written to `OUT/<id>.wav` (PCM16 mono at the stream's rate; the header's sizes
//! are rewritten after every append, so the file is a valid WAV at every moment) and
//! `OUT/<id>.jsonl`: one line per text message received (`t`, Unix milliseconds, is
//! added; `input_audio_buffer.append` is never logged and any `audio` string in a logged
//! message is replaced by its length), and lines of the receiver's own:
//!
//! - `{"type":"connected","t":..,"resume":bool,"received":N}` per connection,
//! - `{"type":"format","t":..,"protocol":"raw","rate":16000,"events":bool}` once, when
//!   the stream's protocol is known (and the WAV file is created),
//! - `{"type":"gap","t":..,"from":N,"to":S}` for stream samples that never arrived,
//! - `{"type":"protocol_error","t":..,"message":".."}` for what a client did wrong (the
//!   stream goes on),
//! - `{"type":"recovered","t":..,"samples":N,"dropped_odd_byte":bool}` when a WAV file
//!   left by a crash had to be repaired,
//! - `{"type":"disconnected","t":..,"reason":"..","received":N}` per connection.
//!
//! No header value (an `Authorization` among them) and no audio is ever logged.
//!
//! # Protocol detection
//!
//! The first message of a connection that is not part of the resume extension decides:
//! binary → `raw` (rate: the URL's `?rate=N`, else 16000); text `start` (or another raw
//! event) → `raw` with events (rate: `start`'s); `session.update` or
//! `input_audio_buffer.*` → `openai` (rate: `session.update`'s
//! `audio.input.format.rate` if given, else 24000; another rate or a format other than
//! `audio/pcm` is logged as a protocol error, and the file takes the rate the client
//! declared, so that it plays right). The first connection of a stream fixes its format;
//! a later connection that disagrees is logged as a protocol error and its audio goes
//! into the same file.
//!
//! # Stream offsets, resume, gaps and duplicates
//!
//! `received` is a stream offset: the samples in the WAV plus the samples lost in gaps.
//! Every connection has a position, the stream offset of the next sample it sends. It is
//! set by `clearvox.resume_from` or by `start`'s `sample` (in the resume extension,
//! `clearvox.resume_from` wins when the two disagree: logged), and otherwise starts at
//! `received` (audio "as it comes"). Audio at a position before `received` is dropped as
//! a duplicate; a position after `received` is a gap, logged before any audio after it
//! is written (so `received` = WAV samples + gap lengths holds on disk even across a
//! crash), and the WAV holds no zeros for it. So a `clearvox.resume_from` `S < N` is a
//! protocol error whose first `N − S` samples are skipped, and a plain (non-resume)
//! client that replays an utterance with `start` at its first sample is not duplicated
//! either. A `stop` whose `samples` exceed `received` records the missing tail as a gap.
//!
//! With `X-Clearvox-Resume: 1` (and a session id) the receiver first sends
//! `clearvox.resume` and acknowledges with `clearvox.ack`: after an append once at least
//! 20 ms of audio is unacknowledged (so every 20–100 ms packet is acknowledged at once),
//! 20 ms (wall clock) after the first unacknowledged sample when less arrived, and always
//! on `stop`. An ack is sent only once the audio is in the file. Without the header no
//! message of the extension is sent. A resume header without a session header is a
//! protocol error and the connection is served plainly.
//!
//! Events are de-duplicated per stream by type and sample (`start`, `speech_started`,
//! `speech_stopped`, and `stop` by its `samples`): a repeated one is not logged again,
//! though a `start` still sets the position and a `stop` is still acknowledged. OpenAI
//! `input_audio_buffer.commit`/`clear` are logged with `sample`, the stream offset they
//! occur at; in the resume extension one at an offset already logged is a resend and is
//! neither logged nor answered.
//!
//! # End of a stream
//!
//! `stop` finishes a stream: later audio is ignored (logged once per connection), and a
//! later connection with the same id is told `received` = its length and appends
//! nothing. A Close frame alone does not finish a stream (a client may reconnect after
//! closing), except that an unnamed connection's stream can never be resumed. OpenAI and
//! raw streams without events have no `stop`: they stay resumable, and their files are
//! complete at every moment anyway. A stream found on disk (after a disconnect or a
//! restart) is reopened: its samples are counted from the WAV file's length, not its
//! header (a trailing odd byte is dropped), its header is rewritten, and the log tells
//! its gaps, format, events and whether it was finished.
//!
//! If two connections name the same stream at once (a client reconnecting before the
//! server noticed the old connection is dead), the new one takes the stream over and the
//! old one is closed.
//!
//! On shutdown every connection gets a Close frame (1001) and its stream's header is
//! rewritten; streams are not marked finished, so a client may resume after a restart.
//! The audio written is in the OS's page cache (no `fsync`): it survives a killed
//! process, not a power cut.
//!
//! OpenAI connections get the minimal answers of a Realtime server: `session.updated`
//! (echoing the `session` sent), `input_audio_buffer.committed` with a fresh `item_id`,
//! or an `error` `input_audio_buffer_commit_empty` when fewer than 100 ms were appended
//! since the last commit or clear, and `input_audio_buffer.cleared`.

mod session;
mod wav;

use std::collections::{HashMap, HashSet};
use std::fmt;
use std::future::Future;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use futures_util::{SinkExt, StreamExt};
use serde_json::{json, Value};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpStream;
use tokio::sync::{watch, Mutex as AsyncMutex, Notify};
use tokio::task::JoinSet;
use tokio::time::Instant;
use tokio_tungstenite::tungstenite::handshake::server::{ErrorResponse, Request, Response};
use tokio_tungstenite::tungstenite::http::StatusCode;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::protocol::{CloseFrame, WebSocketConfig};
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::WebSocketStream;

use super::protocol::{
    openai_append_samples, pcm16_from_bytes, Control, Protocol, OPENAI_MIN_COMMIT_MS, OPENAI_RATE,
    RESUME_HEADER, SESSION_HEADER,
};
use crate::io::os_reason;
use crate::limits::{MAX_SAMPLE_RATE, MIN_SAMPLE_RATE};
use session::{without_audio, Session, FORMAT_LINE};

/// Longest a client may take for the TLS and WebSocket handshakes.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// How often an idle connection is pinged.
const PING_EVERY: Duration = Duration::from_secs(15);
/// A connection that sends nothing (not even a pong) for this long is closed.
const IDLE_LIMIT: Duration = Duration::from_secs(60);
/// Longest a send may wait for a client that does not read.
const SEND_TIMEOUT: Duration = Duration::from_secs(10);
/// Longest the connections get to close at shutdown.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(5);
/// Fewest milliseconds of audio an ack covers, but for the last one and on `stop`.
const ACK_MIN_MS: u64 = 20;
/// Longest unacknowledged audio waits for its ack.
const ACK_DELAY: Duration = Duration::from_millis(20);
/// Largest WebSocket message taken, bytes.
const MAX_MESSAGE_BYTES: usize = 8 << 20;
/// Largest stream offset a client may name (over two years at 16 kHz): beyond it a
/// position is ignored, so that offset arithmetic can never overflow.
const MAX_OFFSET: u64 = 1 << 40;
/// Longest stream id.
pub const MAX_SESSION_ID_LEN: usize = 64;

/// Where a TLS receiver finds its certificate chain and private key (PEM files).
///
/// ```
/// use clearvox::stream::server::TlsFiles;
/// let tls = TlsFiles { cert: "certs/receiver.pem".into(), key: "certs/receiver.key".into() };
/// assert_eq!(tls.cert.extension().and_then(|e| e.to_str()), Some("pem"));
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TlsFiles {
    /// The certificate chain, leaf first.
    pub cert: PathBuf,
    /// The private key (PKCS#8, PKCS#1 or SEC1).
    pub key: PathBuf,
}

/// What a [`Server`] listens on and writes to.
///
/// ```
/// use clearvox::stream::server::ServerConfig;
/// let config = ServerConfig {
///     listen: "127.0.0.1:8765".parse().expect("a socket address"),
///     out: "received".into(),
///     tls: None, // plain ws://: for a receiver on the same machine only
/// };
/// assert_eq!(config.listen.port(), 8765);
/// ```
#[derive(Clone, Debug)]
pub struct ServerConfig {
    /// Address to listen on (port 0: any free port, see [`Server::local_addr`]).
    pub listen: SocketAddr,
    /// Folder of the streams' WAV and JSONL files (created if missing).
    pub out: PathBuf,
    /// Serve `wss://` with these files; `None`: plain `ws://`.
    pub tls: Option<TlsFiles>,
}

/// Why the receiver could not start or run.
///
/// ```
/// use clearvox::stream::server::{ServeError, Server, ServerConfig, TlsFiles};
/// let dir = tempfile::tempdir().expect("a temporary folder");
/// let error = Server::bind(ServerConfig {
///     listen: "127.0.0.1:0".parse().expect("a socket address"),
///     out: dir.path().join("received"),
///     tls: Some(TlsFiles { cert: dir.path().join("missing.pem"), key: dir.path().join("missing.key") }),
/// })
/// .unwrap_err();
/// assert!(matches!(error, ServeError::TlsFile { what: "certificate", .. }), "{error}");
/// assert!(error.to_string().starts_with("TLS certificate "));
/// ```
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ServeError {
    /// The listening socket could not be opened.
    #[error("cannot listen on {addr}: {reason}")]
    Bind {
        /// The address asked for.
        addr: SocketAddr,
        /// What the OS said.
        reason: String,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },
    /// The output folder cannot be created or is not a folder.
    #[error("output folder {}: {reason}", path.display())]
    OutDir {
        /// The folder.
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },
    /// A TLS certificate or key file cannot be read or holds nothing usable.
    #[error("TLS {what} {}: {reason}", path.display())]
    TlsFile {
        /// `certificate` or `private key`.
        what: &'static str,
        /// The file.
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },
    /// The certificate and key do not make a TLS configuration.
    #[error("TLS configuration: {0}")]
    Tls(String),
    /// The runtime of [`Server::run_until`] could not be started.
    #[error("cannot start the network runtime: {reason}")]
    Runtime {
        /// What the OS said.
        reason: String,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },
}

/// What became of a stream when one of its connections ended.
///
/// ```
/// use clearvox::stream::{protocol::Protocol, server::SessionReport};
/// let report = SessionReport {
///     id: "tutor-42".into(),
///     protocol: Some(Protocol::Raw),
///     rate: Some(16_000),
///     samples: 48_000,
///     received: 56_000,
///     gaps: 1,
///     lost: 8_000,
///     reconnects: 1,
///     finished: true,
///     resumable: false,
///     reason: "stop".into(),
/// };
/// assert_eq!(report.seconds(), 3.0);
/// assert_eq!(
///     report.to_string(),
///     "session tutor-42: raw 16000 Hz, 3.00 s received, 1 gap (0.50 s lost), 1 reconnect; finished: stop"
/// );
/// ```
#[derive(Clone, Debug, PartialEq)]
pub struct SessionReport {
    /// The stream id (file stem).
    pub id: String,
    /// Its protocol, if any audio or event told it.
    pub protocol: Option<Protocol>,
    /// Its sample rate, Hz, if known.
    pub rate: Option<u32>,
    /// Samples in its WAV file.
    pub samples: u64,
    /// Stream offset held (samples plus samples lost in gaps).
    pub received: u64,
    /// Gaps recorded.
    pub gaps: u32,
    /// Samples lost in gaps.
    pub lost: u64,
    /// Connections before this one.
    pub reconnects: u32,
    /// Whether the stream ended with `stop`.
    pub finished: bool,
    /// Whether another connection may resume it.
    pub resumable: bool,
    /// Why the connection ended.
    pub reason: String,
}

impl SessionReport {
    /// Seconds of audio in the WAV file.
    pub fn seconds(&self) -> f64 {
        self.samples as f64 / f64::from(self.rate.unwrap_or(1).max(1))
    }
}

impl fmt::Display for SessionReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let protocol = match self.protocol {
            Some(Protocol::Raw) => "raw",
            Some(Protocol::Openai) => "openai",
            None => "no audio",
        };
        write!(f, "session {}: {protocol}", self.id)?;
        if let Some(rate) = self.rate {
            write!(f, " {rate} Hz")?;
        }
        let plural = |n: u64| if n == 1 { "" } else { "s" };
        write!(f, ", {:.2} s received", self.seconds())?;
        write!(f, ", {} gap{}", self.gaps, plural(u64::from(self.gaps)))?;
        if self.lost > 0 {
            let lost = self.lost as f64 / f64::from(self.rate.unwrap_or(1).max(1));
            write!(f, " ({lost:.2} s lost)")?;
        }
        write!(
            f,
            ", {} reconnect{}",
            self.reconnects,
            plural(u64::from(self.reconnects))
        )?;
        let state = if self.finished {
            "finished"
        } else if self.resumable {
            "open (resumable)"
        } else {
            "ended"
        };
        write!(f, "; {state}: {}", self.reason)
    }
}

type Reporter = Arc<dyn Fn(&SessionReport) + Send + Sync>;

/// The reference receiver, bound and ready to [`run`](Server::run).
///
/// ```
/// use std::sync::{atomic::AtomicBool, Arc};
/// use clearvox::stream::server::{Server, ServerConfig};
/// let dir = tempfile::tempdir().expect("a temporary folder");
/// let server = Server::bind(ServerConfig {
///     listen: "127.0.0.1:0".parse().expect("a socket address"),
///     out: dir.path().join("received"),
///     tls: None,
/// })
/// .expect("a free port");
/// assert!(server.local_addr().port() != 0);
/// assert_eq!(server.url(), format!("ws://{}", server.local_addr()));
/// // A stop flag that is already set: serve nothing, shut down cleanly.
/// server.run_until(Arc::new(AtomicBool::new(true))).expect("a clean shutdown");
/// assert!(dir.path().join("received").is_dir());
/// ```
pub struct Server {
    listener: std::net::TcpListener,
    local_addr: SocketAddr,
    tls: Option<tokio_rustls::TlsAcceptor>,
    out: PathBuf,
    reporter: Option<Reporter>,
}

impl fmt::Debug for Server {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Server")
            .field("local_addr", &self.local_addr)
            .field("tls", &self.tls.is_some())
            .field("out", &self.out)
            .finish()
    }
}

impl Server {
    /// Creates the output folder, loads the TLS files and binds the listening socket.
    pub fn bind(config: ServerConfig) -> Result<Server, ServeError> {
        std::fs::create_dir_all(&config.out).map_err(|e| ServeError::OutDir {
            path: config.out.clone(),
            reason: os_reason(&e),
        })?;
        if !config.out.is_dir() {
            return Err(ServeError::OutDir {
                path: config.out,
                reason: "is not a folder".into(),
            });
        }
        let tls = config.tls.as_ref().map(tls_acceptor).transpose()?;
        let bind_error = |e: std::io::Error| ServeError::Bind {
            addr: config.listen,
            reason: os_reason(&e),
            source: e,
        };
        let listener = std::net::TcpListener::bind(config.listen).map_err(bind_error)?;
        listener.set_nonblocking(true).map_err(bind_error)?;
        let local_addr = listener.local_addr().map_err(bind_error)?;
        Ok(Server {
            listener,
            local_addr,
            tls,
            out: config.out,
            reporter: None,
        })
    }

    /// Calls `report` whenever a connection ends (on its stream's state then), from the
    /// connection's task: it should return quickly.
    pub fn on_connection_end(
        mut self,
        report: impl Fn(&SessionReport) + Send + Sync + 'static,
    ) -> Self {
        self.reporter = Some(Arc::new(report));
        self
    }

    /// The address listened on.
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// Whether connections use TLS.
    pub fn is_tls(&self) -> bool {
        self.tls.is_some()
    }

    /// `ws://ADDR` or `wss://ADDR`.
    pub fn url(&self) -> String {
        let scheme = if self.is_tls() { "wss" } else { "ws" };
        format!("{scheme}://{}", self.local_addr)
    }

    /// Serves connections until `shutdown` completes, then closes every connection,
    /// rewrites every open stream's WAV header, and returns.
    ///
    /// Must run inside a tokio runtime (with time and I/O enabled). Dropping the future
    /// instead drops every connection at once, like a crash, but for the files being
    /// valid: their headers are up to date after every write.
    pub async fn run(self, shutdown: impl Future<Output = ()>) -> Result<(), ServeError> {
        let addr = self.local_addr;
        let listener =
            tokio::net::TcpListener::from_std(self.listener).map_err(|e| ServeError::Bind {
                addr,
                reason: os_reason(&e),
                source: e,
            })?;
        let shared = Arc::new(Shared {
            out: self.out,
            sessions: Mutex::new(HashMap::new()),
            connections: AtomicU64::new(0),
            reporter: self.reporter,
        });
        let (stop_tx, stop_rx) = watch::channel(false);
        let mut tasks = JoinSet::new();
        tokio::pin!(shutdown);
        loop {
            tokio::select! {
                _ = &mut shutdown => break,
                accepted = listener.accept() => match accepted {
                    Ok((tcp, _peer)) => {
                        tasks.spawn(connection(shared.clone(), tcp, self.tls.clone(), stop_rx.clone()));
                    }
                    // Out of file descriptors, a connection reset while queued, ...: the
                    // listener itself is fine.
                    Err(_) => tokio::time::sleep(Duration::from_millis(20)).await,
                },
                Some(_) = tasks.join_next(), if !tasks.is_empty() => {}
            }
        }
        drop(listener);
        let _ = stop_tx.send(true);
        let drained = tokio::time::timeout(SHUTDOWN_GRACE, async {
            while tasks.join_next().await.is_some() {}
        })
        .await;
        if drained.is_err() {
            tasks.abort_all();
            while tasks.join_next().await.is_some() {}
        }
        Ok(())
    }

    /// [`run`](Server::run) on a multi-threaded runtime of its own, until `stop` is set
    /// (checked every 50 ms): for a caller without a runtime, such as a Ctrl-C handler's
    /// flag.
    pub fn run_until(self, stop: Arc<AtomicBool>) -> Result<(), ServeError> {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .enable_all()
            .build()
            .map_err(|e| ServeError::Runtime {
                reason: os_reason(&e),
                source: e,
            })?;
        runtime.block_on(self.run(async move {
            while !stop.load(Ordering::SeqCst) {
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }))
    }
}

/// Whether `id` may name a stream: 1 to 64 characters of `A-Z a-z 0-9 _ -`.
///
/// ```
/// use clearvox::stream::server::valid_session_id;
/// assert!(valid_session_id("tutor-42_a"));
/// assert!(!valid_session_id("../etc/passwd"));
/// assert!(!valid_session_id(""));
/// assert!(!valid_session_id(&"x".repeat(65)));
/// ```
pub fn valid_session_id(id: &str) -> bool {
    !id.is_empty()
        && id.len() <= MAX_SESSION_ID_LEN
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
}

/// Milliseconds since the Unix epoch.
fn unix_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

/// A fresh id for server events and items, e.g. `event_18f3a2b4c5d0007`.
fn new_id(prefix: &str) -> String {
    static NEXT: AtomicU64 = AtomicU64::new(0);
    let n = NEXT.fetch_add(1, Ordering::Relaxed);
    format!("{prefix}_{:x}{n:04x}", unix_ms())
}

fn tls_acceptor(files: &TlsFiles) -> Result<tokio_rustls::TlsAcceptor, ServeError> {
    use rustls_pki_types::pem::{Error as PemError, PemObject};
    use rustls_pki_types::{CertificateDer, PrivateKeyDer};

    let file_error = |what: &'static str, path: &Path, e: PemError| ServeError::TlsFile {
        what,
        path: path.to_path_buf(),
        reason: match e {
            PemError::Io(io) => os_reason(&io),
            PemError::NoItemsFound => format!("no {what} in the PEM file"),
            other => other.to_string(),
        },
    };
    let certs = CertificateDer::pem_file_iter(&files.cert)
        .and_then(|iter| iter.collect::<Result<Vec<_>, _>>())
        .map_err(|e| file_error("certificate", &files.cert, e))?;
    if certs.is_empty() {
        return Err(file_error(
            "certificate",
            &files.cert,
            PemError::NoItemsFound,
        ));
    }
    let key = PrivateKeyDer::from_pem_file(&files.key)
        .map_err(|e| file_error("private key", &files.key, e))?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| ServeError::Tls(e.to_string()))?
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .map_err(|e| ServeError::Tls(e.to_string()))?;
    Ok(tokio_rustls::TlsAcceptor::from(Arc::new(config)))
}

/// State shared by the connections of one running server.
struct Shared {
    out: PathBuf,
    /// The streams that have a connection, by id.
    sessions: Mutex<HashMap<String, Arc<AsyncMutex<Session>>>>,
    connections: AtomicU64,
    reporter: Option<Reporter>,
}

impl Shared {
    /// Takes the stream `id` for connection `conn` (from memory, else from disk), and
    /// wakes the connection that had it, if any.
    async fn attach(
        &self,
        id: &str,
        named: bool,
        conn: u64,
        kick: &Arc<Notify>,
    ) -> std::io::Result<Arc<AsyncMutex<Session>>> {
        loop {
            let entry = {
                let mut map = self.sessions.lock().unwrap_or_else(PoisonError::into_inner);
                match map.get(id) {
                    Some(entry) => entry.clone(),
                    None => {
                        let entry = Arc::new(AsyncMutex::new(Session::open(&self.out, id, named)?));
                        map.insert(id.to_string(), entry.clone());
                        entry
                    }
                }
            };
            let mut s = entry.lock().await;
            if s.detached {
                // Its last connection let go of it in the meantime: read it anew.
                continue;
            }
            if let Some(old) = s.owner_kick.replace(kick.clone()) {
                old.notify_one();
            }
            s.owner = conn;
            s.connections += 1;
            drop(s);
            return Ok(entry);
        }
    }

    /// Forgets `entry` (its files are closed when the last holder drops it).
    fn detach(&self, id: &str, entry: &Arc<AsyncMutex<Session>>) {
        let mut map = self.sessions.lock().unwrap_or_else(PoisonError::into_inner);
        if map.get(id).is_some_and(|e| Arc::ptr_eq(e, entry)) {
            map.remove(id);
        }
    }
}

/// What the handshake asked for.
#[derive(Debug, Default)]
struct Handshake {
    session: Option<String>,
    resume: bool,
    rate: Option<String>,
}

impl Handshake {
    // The signature tungstenite's handshake callback has.
    #[allow(clippy::result_large_err)]
    fn check(&mut self, request: &Request, response: Response) -> Result<Response, ErrorResponse> {
        let mut ids = request.headers().get_all(SESSION_HEADER).iter();
        if let Some(value) = ids.next() {
            if ids.next().is_some() {
                return Err(bad_request("more than one X-Clearvox-Session header"));
            }
            match value.to_str() {
                Ok(id) if valid_session_id(id) => self.session = Some(id.to_string()),
                _ => {
                    return Err(bad_request(
                        "X-Clearvox-Session must be 1 to 64 characters of A-Z a-z 0-9 _ -",
                    ))
                }
            }
        }
        self.resume = request
            .headers()
            .get(RESUME_HEADER)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.trim() == "1");
        if let Some(query) = request.uri().query() {
            for pair in query.split('&') {
                if let Some(rate) = pair.strip_prefix("rate=") {
                    self.rate = Some(rate.to_string());
                }
            }
        }
        Ok(response)
    }
}

fn bad_request(message: &str) -> ErrorResponse {
    let mut response = ErrorResponse::new(Some(format!("{message}\n")));
    *response.status_mut() = StatusCode::BAD_REQUEST;
    response
}

fn ws_config() -> WebSocketConfig {
    WebSocketConfig::default()
        .max_message_size(Some(MAX_MESSAGE_BYTES))
        .max_frame_size(Some(MAX_MESSAGE_BYTES))
}

/// Serves one TCP connection to its end.
async fn connection(
    shared: Arc<Shared>,
    tcp: TcpStream,
    tls: Option<tokio_rustls::TlsAcceptor>,
    mut stop: watch::Receiver<bool>,
) {
    let _ = tcp.set_nodelay(true);
    match tls {
        None => websocket(shared, tcp, stop).await,
        Some(acceptor) => {
            let stream = tokio::select! {
                r = tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(tcp)) => match r {
                    Ok(Ok(stream)) => stream,
                    _ => return,
                },
                _ = stop.changed() => return,
            };
            websocket(shared, stream, stop).await
        }
    }
}

/// The WebSocket handshake, then the stream.
#[allow(clippy::result_large_err)] // the handshake callback's signature is tungstenite's
async fn websocket<S>(shared: Arc<Shared>, stream: S, mut stop: watch::Receiver<bool>)
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let mut handshake = Handshake::default();
    let accepted = {
        let callback = |req: &Request, resp: Response| handshake.check(req, resp);
        tokio::select! {
            r = tokio::time::timeout(
                HANDSHAKE_TIMEOUT,
                tokio_tungstenite::accept_hdr_async_with_config(stream, callback, Some(ws_config())),
            ) => r,
            _ = stop.changed() => return,
        }
    };
    let Ok(Ok(ws)) = accepted else {
        return; // refused (400), timed out, or not a WebSocket client
    };
    Connection::serve(shared, ws, handshake, stop).await
}

/// How a connection ended.
struct End {
    reason: String,
    /// The Close frame the server sends; `None` when the client closed or vanished.
    close: Option<CloseCode>,
}

impl End {
    fn client(reason: impl Into<String>) -> End {
        End {
            reason: reason.into(),
            close: None,
        }
    }

    fn server(reason: impl Into<String>, code: CloseCode) -> End {
        End {
            reason: reason.into(),
            close: Some(code),
        }
    }
}

/// What woke the connection loop.
enum Wake {
    Shutdown,
    TakenOver,
    AckDue,
    Ping,
    Message(Option<Result<Message, tokio_tungstenite::tungstenite::Error>>),
}

/// One WebSocket connection of a stream.
struct Connection {
    id: u64,
    session: Arc<AsyncMutex<Session>>,
    resume: bool,
    query_rate: Option<u32>,
    /// The protocol this connection speaks, once its first data message told.
    protocol: Option<Protocol>,
    /// Stream offset of the next sample this connection sends, once known.
    pos: Option<u64>,
    /// Whether `pos` was set by `clearvox.resume_from`.
    pos_from_resume: bool,
    /// Whether audio came since `pos` was last set by a message.
    audio_since_pos: bool,
    /// The last `received` acknowledged.
    last_ack: u64,
    /// When unacknowledged audio must be acknowledged at the latest.
    ack_due: Option<Instant>,
    /// Protocol errors logged once per connection.
    warned: HashSet<&'static str>,
}

impl Connection {
    async fn serve<S>(
        shared: Arc<Shared>,
        mut ws: WebSocketStream<S>,
        handshake: Handshake,
        mut stop: watch::Receiver<bool>,
    ) where
        S: AsyncRead + AsyncWrite + Unpin,
    {
        let conn = shared.connections.fetch_add(1, Ordering::Relaxed) + 1;
        let (sid, named) = match handshake.session {
            Some(id) => (id, true),
            None => (format!("conn-{}-{conn}", unix_ms()), false),
        };
        let kick = Arc::new(Notify::new());
        let session = match shared.attach(&sid, named, conn, &kick).await {
            Ok(session) => session,
            Err(e) => {
                let _ = tokio::time::timeout(
                    SEND_TIMEOUT,
                    ws.close(Some(CloseFrame {
                        code: CloseCode::Error,
                        reason: close_reason(&format!(
                            "cannot open the stream's files: {}",
                            os_reason(&e)
                        ))
                        .into(),
                    })),
                )
                .await;
                return;
            }
        };
        let resume = handshake.resume && named;
        let mut c = Connection {
            id: conn,
            session: session.clone(),
            resume,
            query_rate: None,
            protocol: None,
            pos: None,
            pos_from_resume: false,
            audio_since_pos: false,
            last_ack: 0,
            ack_due: None,
            warned: HashSet::new(),
        };
        let mut out = Vec::new();
        let opened = {
            let mut s = session.lock().await;
            c.last_ack = s.received;
            c.open(
                &mut s,
                &handshake.rate,
                handshake.resume && !named,
                &mut out,
            )
        };
        let mut end = match opened {
            Ok(()) => None,
            Err(e) => Some(write_failed(&sid, &e)),
        };
        if end.is_none() {
            if let Err(e) = send_all(&mut ws, out).await {
                end = Some(End::client(e));
            }
        }
        let end = match end {
            Some(end) => end,
            None => c.run(&mut ws, &kick, &mut stop).await,
        };
        c.close(&shared, &sid, end, &mut ws).await;
    }

    /// Logs the connection and greets a resuming client.
    fn open(
        &mut self,
        s: &mut Session,
        rate: &Option<String>,
        resume_without_id: bool,
        out: &mut Vec<Message>,
    ) -> std::io::Result<()> {
        s.log(json!({"type": "connected", "resume": self.resume, "received": s.received}))?;
        if resume_without_id {
            self.protocol_error(
                s,
                "X-Clearvox-Resume without X-Clearvox-Session: served without the resume extension",
            )?;
        }
        if let Some(rate) = rate {
            match rate.parse::<u32>().ok().filter(|r| valid_rate(*r)) {
                Some(r) => self.query_rate = Some(r),
                None => self.protocol_error(
                    s,
                    format!(
                        "URL rate \"{rate}\" is not a rate from {MIN_SAMPLE_RATE} to {MAX_SAMPLE_RATE} Hz: ignored"
                    ),
                )?,
            }
        }
        if self.resume {
            out.push(control(&Control::Resume {
                session: s.id.clone(),
                received: s.received,
            }));
        }
        Ok(())
    }

    /// Serves messages until the connection ends.
    async fn run<S>(
        &mut self,
        ws: &mut WebSocketStream<S>,
        kick: &Notify,
        stop: &mut watch::Receiver<bool>,
    ) -> End
    where
        S: AsyncRead + AsyncWrite + Unpin,
    {
        let mut ping = tokio::time::interval_at(Instant::now() + PING_EVERY, PING_EVERY);
        let mut last_heard = Instant::now();
        let mut client_closed: Option<String> = None;
        if *stop.borrow() {
            return End::server("server shutting down", CloseCode::Away);
        }
        loop {
            let ack_due = self.ack_due;
            let wake = tokio::select! {
                biased;
                _ = stop.changed() => Wake::Shutdown,
                _ = kick.notified() => Wake::TakenOver,
                _ = tokio::time::sleep_until(ack_due.unwrap_or_else(Instant::now)), if ack_due.is_some() => Wake::AckDue,
                _ = ping.tick() => Wake::Ping,
                m = ws.next() => Wake::Message(m),
            };
            let message = match wake {
                Wake::Shutdown => return End::server("server shutting down", CloseCode::Away),
                Wake::TakenOver => return taken_over(),
                Wake::Ping => {
                    if last_heard.elapsed() >= IDLE_LIMIT {
                        return End::server(
                            format!("nothing heard for {} s", IDLE_LIMIT.as_secs()),
                            CloseCode::Away,
                        );
                    }
                    if let Err(e) = send_all(ws, vec![Message::Ping(Default::default())]).await {
                        return End::client(e);
                    }
                    continue;
                }
                Wake::AckDue => None,
                Wake::Message(None) => {
                    return End::client(client_closed.unwrap_or_else(|| "connection lost".into()))
                }
                Wake::Message(Some(Err(e))) => {
                    return End::client(
                        client_closed.unwrap_or_else(|| format!("connection lost: {e}")),
                    )
                }
                Wake::Message(Some(Ok(m))) => {
                    last_heard = Instant::now();
                    match m {
                        Message::Close(frame) => {
                            // Reading on completes the closing handshake, then ends.
                            client_closed = Some(match frame {
                                Some(f) if f.code != CloseCode::Normal => {
                                    format!("closed by the client ({})", u16::from(f.code))
                                }
                                _ => "closed by the client".into(),
                            });
                            continue;
                        }
                        Message::Binary(_) | Message::Text(_) => Some(m),
                        _ => continue,
                    }
                }
            };
            let session = self.session.clone();
            let mut s = session.lock().await;
            if s.owner != self.id {
                return taken_over();
            }
            let mut out = Vec::new();
            let handled = match &message {
                Some(Message::Binary(bytes)) => self.on_binary(&mut s, bytes, &mut out),
                Some(Message::Text(text)) => self.on_text(&mut s, text.as_str(), &mut out),
                _ => {
                    self.ack(&s, &mut out);
                    Ok(())
                }
            };
            if let Err(e) = handled {
                return write_failed(&s.id, &e);
            }
            if self.resume && s.received > self.last_ack {
                self.ack_due
                    .get_or_insert_with(|| Instant::now() + ACK_DELAY);
            }
            drop(s);
            if let Err(e) = send_all(ws, out).await {
                return End::client(e);
            }
        }
    }

    /// Logs the end, reports it, lets go of the stream and closes the socket.
    async fn close<S>(self, shared: &Shared, sid: &str, end: End, ws: &mut WebSocketStream<S>)
    where
        S: AsyncRead + AsyncWrite + Unpin,
    {
        let report = {
            let mut s = self.session.lock().await;
            let received = s.received;
            let _ =
                s.log(json!({"type": "disconnected", "reason": end.reason, "received": received}));
            if let Some(wav) = s.wav.as_mut() {
                let _ = wav.write_header();
            }
            if s.owner == self.id {
                s.owner_kick = None;
                s.detached = true;
                shared.detach(sid, &self.session);
            }
            SessionReport {
                id: s.id.clone(),
                protocol: s.protocol,
                rate: s.rate,
                samples: s.held(),
                received,
                gaps: s.gaps,
                lost: s.lost,
                reconnects: s.connections.saturating_sub(1),
                finished: s.finished,
                resumable: s.named && !s.finished,
                reason: end.reason.clone(),
            }
        };
        if let Some(report_to) = &shared.reporter {
            report_to(&report);
        }
        match end.close {
            Some(code) => {
                let frame = CloseFrame {
                    code,
                    reason: close_reason(&end.reason).into(),
                };
                let _ = tokio::time::timeout(Duration::from_secs(1), ws.close(Some(frame))).await;
            }
            None => {
                let _ = tokio::time::timeout(Duration::from_secs(1), ws.close(None)).await;
            }
        }
    }

    fn on_binary(
        &mut self,
        s: &mut Session,
        bytes: &[u8],
        out: &mut Vec<Message>,
    ) -> std::io::Result<()> {
        if bytes.len() % 2 == 1 {
            self.warn_once(
                s,
                "odd",
                "binary message of an odd number of bytes: its last byte is ignored",
            )?;
        }
        match self.protocol {
            None => self.detect(s, Protocol::Raw, self.query_rate, false)?,
            Some(Protocol::Openai) => self.warn_once(
                s,
                "binary in openai",
                "binary audio in an openai stream: appended all the same",
            )?,
            Some(Protocol::Raw) => {}
        }
        self.on_audio(s, &pcm16_from_bytes(bytes), out)
    }

    fn on_text(
        &mut self,
        s: &mut Session,
        text: &str,
        out: &mut Vec<Message>,
    ) -> std::io::Result<()> {
        let value: Value = match serde_json::from_str(text) {
            Ok(v) => v,
            Err(e) => {
                return self.protocol_error(
                    s,
                    format!("a text message of {} bytes is not JSON: {e}", text.len()),
                )
            }
        };
        let Some(kind) = value
            .get("type")
            .and_then(Value::as_str)
            .map(str::to_string)
        else {
            return self.protocol_error(
                s,
                "a text message that is not a JSON object with a \"type\"",
            );
        };
        match kind.as_str() {
            "input_audio_buffer.append" => self.on_append(s, &value, out),
            "clearvox.resume_from" => {
                s.log(value.clone())?;
                match serde_json::from_value::<Control>(value) {
                    Ok(Control::ResumeFrom { sample }) => self.on_position(s, sample, true),
                    _ => self.protocol_error(s, "clearvox.resume_from without a valid \"sample\""),
                }
            }
            "clearvox.resume" | "clearvox.ack" => {
                s.log(value)?;
                self.protocol_error(
                    s,
                    format!("{kind} is the receiver's message, not the client's"),
                )
            }
            "start" => self.on_start(s, value),
            "speech_started" | "speech_stopped" => self.on_speech(s, &kind, value),
            "stop" => self.on_stop(s, value, out),
            "session.update" => self.on_session_update(s, value, out),
            "input_audio_buffer.commit" => self.on_commit(s, value, out),
            "input_audio_buffer.clear" => self.on_clear(s, value, out),
            _ => {
                let mut value = value;
                without_audio(&mut value);
                s.log(value)
            }
        }
    }

    /// Sets the connection's protocol from its first data message, and the stream's
    /// format from its first connection's; logs disagreements.
    fn detect(
        &mut self,
        s: &mut Session,
        protocol: Protocol,
        rate: Option<u32>,
        events: bool,
    ) -> std::io::Result<()> {
        match self.protocol {
            None => self.protocol = Some(protocol),
            Some(p) if p != protocol => {
                return self.warn_once(
                    s,
                    "mixed protocols",
                    format!(
                        "{} message in a connection that speaks {}",
                        name(protocol),
                        name(p)
                    ),
                )
            }
            Some(_) => {}
        }
        match s.protocol {
            None => {
                let file_rate = s.rate;
                let chosen = file_rate.or(rate).unwrap_or(protocol.default_rate());
                s.protocol = Some(protocol);
                s.events = events;
                s.rate = Some(chosen);
                s.log(json!({
                    "type": FORMAT_LINE,
                    "protocol": protocol,
                    "rate": chosen,
                    "events": events,
                }))?;
                s.ensure_wav()?;
            }
            Some(p) if p != protocol => {
                return self.warn_once(
                    s,
                    "protocol changed",
                    format!(
                        "this connection speaks {} but the stream is {}: its audio goes into the same file",
                        name(protocol),
                        name(p)
                    ),
                )
            }
            Some(_) => s.events |= events,
        }
        if let (Some(asked), Some(have)) = (rate, s.rate) {
            if asked != have {
                self.protocol_error(
                    s,
                    format!("rate {asked} Hz, but the stream is {have} Hz: kept {have} Hz"),
                )?;
            }
        }
        Ok(())
    }

    /// Appends audio at the connection's position: what the stream holds already is
    /// skipped, what is missing before it is a gap.
    fn on_audio(
        &mut self,
        s: &mut Session,
        samples: &[i16],
        out: &mut Vec<Message>,
    ) -> std::io::Result<()> {
        if samples.is_empty() {
            return Ok(());
        }
        if s.finished {
            return self.warn_once(s, "after stop", "audio after the stream's stop: ignored");
        }
        let pos = self.pos.unwrap_or(s.received);
        let end = pos + samples.len() as u64;
        self.pos = Some(end);
        self.audio_since_pos = true;
        if end <= s.received {
            return Ok(()); // all of it held already
        }
        let skip = s.received.saturating_sub(pos) as usize;
        if pos > s.received {
            self.gap(s, pos)?;
        }
        s.ensure_wav()?;
        if let Some(wav) = s.wav.as_mut() {
            wav.append(&samples[skip..])?;
        }
        s.received = end;
        if self.resume {
            let min = u64::from(s.rate.unwrap_or(16_000)) * ACK_MIN_MS / 1000;
            if s.received - self.last_ack >= min.max(1) {
                self.ack(s, out);
            }
        }
        Ok(())
    }

    /// A gap from what the stream holds to `to`, logged before anything after it.
    fn gap(&mut self, s: &mut Session, to: u64) -> std::io::Result<()> {
        let from = s.received;
        s.log(json!({"type": "gap", "from": from, "to": to}))?;
        s.gaps += 1;
        s.lost += to - from;
        s.received = to;
        Ok(())
    }

    /// `clearvox.resume_from` (`from_resume`) or `start`: where this connection's audio
    /// starts in the stream.
    fn on_position(
        &mut self,
        s: &mut Session,
        sample: u64,
        from_resume: bool,
    ) -> std::io::Result<()> {
        if sample > MAX_OFFSET {
            return self.protocol_error(
                s,
                format!("sample offset {sample} is beyond any stream: ignored"),
            );
        }
        if from_resume {
            if sample < s.received && !s.finished {
                self.protocol_error(
                    s,
                    format!(
                        "clearvox.resume_from {sample} is before the {} samples held: the first {} samples that follow are dropped as duplicates",
                        s.received,
                        s.received - sample
                    ),
                )?;
            }
            self.pos_from_resume = true;
        } else if self.pos_from_resume && !self.audio_since_pos && self.pos != Some(sample) {
            let said = self.pos.unwrap_or(0);
            return self.protocol_error(
                s,
                format!(
                    "start at sample {sample}, but clearvox.resume_from said {said}: kept {said}"
                ),
            );
        }
        if sample > s.received && !s.finished {
            self.gap(s, sample)?;
        }
        self.pos = Some(sample);
        self.audio_since_pos = false;
        Ok(())
    }

    fn on_start(&mut self, s: &mut Session, value: Value) -> std::io::Result<()> {
        let parsed = serde_json::from_value::<Control>(value.clone());
        let Ok(Control::Start {
            rate,
            encoding,
            channels,
            sample,
        }) = parsed
        else {
            if self.protocol.is_none() {
                self.detect(s, Protocol::Raw, self.query_rate, true)?;
            }
            s.log(value)?;
            return self.protocol_error(
                s,
                "start without a valid rate, encoding, channels and sample",
            );
        };
        let rate = if valid_rate(rate) {
            Some(rate)
        } else {
            self.protocol_error(
                s,
                format!("start rate {rate} Hz is not from {MIN_SAMPLE_RATE} to {MAX_SAMPLE_RATE} Hz: ignored"),
            )?;
            self.query_rate
        };
        self.detect(s, Protocol::Raw, rate, true)?;
        if s.seen.insert(("start".to_string(), sample)) {
            s.log(value)?;
        }
        if encoding != "pcm_s16le" || channels != 1 {
            self.protocol_error(
                s,
                format!("start announces {encoding} with {channels} channel(s): only pcm_s16le mono is taken (stored as such)"),
            )?;
        }
        self.on_position(s, sample, false)
    }

    fn on_speech(&mut self, s: &mut Session, kind: &str, value: Value) -> std::io::Result<()> {
        if self.protocol.is_none() {
            self.detect(s, Protocol::Raw, self.query_rate, true)?;
        }
        let Some(sample) = value.get("sample").and_then(Value::as_u64) else {
            s.log(value)?;
            return self.protocol_error(s, format!("{kind} without a valid \"sample\""));
        };
        if s.seen.insert((kind.to_string(), sample)) {
            s.log(value)?;
        }
        Ok(())
    }

    fn on_stop(
        &mut self,
        s: &mut Session,
        value: Value,
        out: &mut Vec<Message>,
    ) -> std::io::Result<()> {
        if self.protocol.is_none() {
            self.detect(s, Protocol::Raw, self.query_rate, true)?;
        }
        let samples = value
            .get("samples")
            .and_then(Value::as_u64)
            .filter(|n| *n <= MAX_OFFSET);
        if samples.is_none() {
            self.protocol_error(
                s,
                "stop without a valid \"samples\": taken as the end all the same",
            )?;
        }
        let n = samples.unwrap_or(s.received);
        if !s.finished {
            if n > s.received {
                // The stream's tail never arrived.
                self.gap(s, n)?;
            } else if n < s.received {
                self.protocol_error(
                    s,
                    format!(
                        "stop says the stream has {n} samples, but {} were received",
                        s.received
                    ),
                )?;
            }
        }
        if s.seen.insert(("stop".to_string(), n)) || samples.is_none() {
            s.log(value)?;
        }
        if !s.finished {
            s.finished = true;
            if let Some(wav) = s.wav.as_mut() {
                wav.write_header()?;
            }
        }
        if self.resume {
            self.ack(s, out);
        }
        Ok(())
    }

    fn on_append(
        &mut self,
        s: &mut Session,
        value: &Value,
        out: &mut Vec<Message>,
    ) -> std::io::Result<()> {
        match self.protocol {
            None => self.detect(s, Protocol::Openai, None, false)?,
            Some(Protocol::Raw) => self.warn_once(
                s,
                "append in raw",
                "input_audio_buffer.append in a raw stream: appended all the same",
            )?,
            Some(Protocol::Openai) => {}
        }
        match openai_append_samples(value) {
            Some(samples) => self.on_audio(s, &samples, out),
            None => {
                self.protocol_error(s, "input_audio_buffer.append without valid base64 audio")?;
                out.push(openai_error(
                    "invalid_value",
                    "Invalid 'audio'. Expected base64-encoded audio bytes.",
                    value,
                ));
                Ok(())
            }
        }
    }

    fn on_session_update(
        &mut self,
        s: &mut Session,
        value: Value,
        out: &mut Vec<Message>,
    ) -> std::io::Result<()> {
        let mut logged = value.clone();
        without_audio(&mut logged);
        s.log(logged)?;
        let mut problems = Vec::new();
        let mut rate = None;
        if let Some(format) = value.pointer("/session/audio/input/format") {
            if let Some(kind) = format.get("type") {
                if kind.as_str() != Some("audio/pcm") {
                    problems.push(format!(
                        "input format {kind} is not audio/pcm: the audio is stored as PCM16 all the same"
                    ));
                }
            }
            if let Some(r) = format.get("rate") {
                match r
                    .as_u64()
                    .and_then(|r| u32::try_from(r).ok())
                    .filter(|r| valid_rate(*r))
                {
                    Some(OPENAI_RATE) => rate = Some(OPENAI_RATE),
                    Some(other) => {
                        problems.push(format!(
                            "input rate {other} Hz: OpenAI takes {OPENAI_RATE} Hz only (stored at {other} Hz)"
                        ));
                        rate = Some(other);
                    }
                    None => problems.push(format!("input rate {r} is not a sample rate: ignored")),
                }
            }
        }
        self.detect(s, Protocol::Openai, rate, false)?;
        for p in problems {
            self.protocol_error(s, p)?;
        }
        out.push(text(&json!({
            "type": "session.updated",
            "event_id": new_id("event"),
            "session": value.get("session").cloned().unwrap_or_else(|| json!({})),
        })));
        Ok(())
    }

    /// The stream offset an OpenAI buffer event applies at.
    fn here(&self, s: &Session) -> u64 {
        self.pos.unwrap_or(s.received)
    }

    /// The stream offset an OpenAI buffer event (`kind`) applies at, or `None` when the
    /// same event at the same offset was handled before: a resend after a reconnect.
    fn buffer_event_at(&mut self, s: &mut Session, kind: &str) -> std::io::Result<Option<u64>> {
        if self.protocol.is_none() {
            self.detect(s, Protocol::Openai, None, false)?;
        }
        let at = self.here(s);
        let first_time = s.seen.insert((kind.to_string(), at));
        Ok((first_time || !self.resume).then_some(at))
    }

    fn on_commit(
        &mut self,
        s: &mut Session,
        value: Value,
        out: &mut Vec<Message>,
    ) -> std::io::Result<()> {
        let Some(at) = self.buffer_event_at(s, "input_audio_buffer.commit")? else {
            return Ok(());
        };
        let rate = u64::from(s.rate.unwrap_or(OPENAI_RATE));
        let buffered = at.saturating_sub(s.commit_mark);
        let mut line = value.clone();
        without_audio(&mut line);
        line["sample"] = json!(at);
        if buffered * 1000 < rate * u64::from(OPENAI_MIN_COMMIT_MS) {
            line["error"] = json!("input_audio_buffer_commit_empty");
            s.log(line)?;
            let ms = buffered as f64 * 1000.0 / rate as f64;
            out.push(openai_error(
                "input_audio_buffer_commit_empty",
                &format!(
                    "Error committing input audio buffer: buffer too small. Expected at least {OPENAI_MIN_COMMIT_MS}ms of audio, but buffer only has {ms:.2}ms of audio."
                ),
                &value,
            ));
        } else {
            let item = new_id("item");
            line["item_id"] = json!(item);
            s.log(line)?;
            out.push(text(&json!({
                "type": "input_audio_buffer.committed",
                "event_id": new_id("event"),
                "previous_item_id": s.last_item,
                "item_id": item,
            })));
            s.commit_mark = at;
            s.last_item = Some(item);
        }
        Ok(())
    }

    fn on_clear(
        &mut self,
        s: &mut Session,
        value: Value,
        out: &mut Vec<Message>,
    ) -> std::io::Result<()> {
        let Some(at) = self.buffer_event_at(s, "input_audio_buffer.clear")? else {
            return Ok(());
        };
        let mut line = value;
        without_audio(&mut line);
        line["sample"] = json!(at);
        s.log(line)?;
        s.commit_mark = at;
        out.push(text(&json!({
            "type": "input_audio_buffer.cleared",
            "event_id": new_id("event"),
        })));
        Ok(())
    }

    /// Acknowledges what the stream holds (resume extension only).
    fn ack(&mut self, s: &Session, out: &mut Vec<Message>) {
        if !self.resume {
            return;
        }
        out.push(control(&Control::Ack {
            received: s.received,
        }));
        self.last_ack = s.received;
        self.ack_due = None;
    }

    fn protocol_error(
        &mut self,
        s: &mut Session,
        message: impl Into<String>,
    ) -> std::io::Result<()> {
        s.log(json!({"type": "protocol_error", "message": message.into()}))
    }

    fn warn_once(
        &mut self,
        s: &mut Session,
        key: &'static str,
        message: impl Into<String>,
    ) -> std::io::Result<()> {
        if self.warned.insert(key) {
            self.protocol_error(s, message)?;
        }
        Ok(())
    }
}

fn taken_over() -> End {
    End::server("taken over by a new connection", CloseCode::Normal)
}

fn write_failed(id: &str, e: &std::io::Error) -> End {
    End::server(
        format!("cannot write the files of {id}: {}", os_reason(e)),
        CloseCode::Error,
    )
}

/// `reason` cut to what a Close frame holds (123 bytes, at a character boundary).
fn close_reason(reason: &str) -> String {
    let mut end = reason.len().min(123);
    while !reason.is_char_boundary(end) {
        end -= 1;
    }
    reason[..end].to_string()
}

fn name(p: Protocol) -> &'static str {
    match p {
        Protocol::Raw => "raw",
        Protocol::Openai => "openai",
    }
}

fn valid_rate(rate: u32) -> bool {
    (MIN_SAMPLE_RATE..=MAX_SAMPLE_RATE).contains(&rate)
}

fn text(value: &Value) -> Message {
    Message::text(value.to_string())
}

fn control(c: &Control) -> Message {
    // Serialising these plain structs cannot fail; an empty message would be harmless.
    Message::text(serde_json::to_string(c).unwrap_or_default())
}

/// An OpenAI `error` server event about the client event `about`.
fn openai_error(code: &str, message: &str, about: &Value) -> Message {
    text(&json!({
        "type": "error",
        "event_id": new_id("event"),
        "error": {
            "type": "invalid_request_error",
            "code": code,
            "message": message,
            "param": null,
            "event_id": about.get("event_id").cloned().unwrap_or(Value::Null),
        }
    }))
}

/// Sends `messages` and flushes, giving up on a client that does not read.
async fn send_all<S>(ws: &mut WebSocketStream<S>, messages: Vec<Message>) -> Result<(), String>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    if messages.is_empty() {
        return Ok(());
    }
    let send = async {
        for m in messages {
            ws.feed(m).await?;
        }
        ws.flush().await
    };
    match tokio::time::timeout(SEND_TIMEOUT, send).await {
        Ok(Ok(())) => Ok(()),
        Ok(Err(e)) => Err(format!("connection lost: {e}")),
        Err(_) => Err(format!(
            "the client read nothing for {} s",
            SEND_TIMEOUT.as_secs()
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn session_ids_are_checked() {
        assert!(valid_session_id("a"));
        assert!(valid_session_id("0123456789abcdef0123456789ABCDEF"));
        assert!(valid_session_id("conn-1_2"));
        assert!(valid_session_id(&"x".repeat(64)));
        assert!(!valid_session_id(&"x".repeat(65)));
        assert!(!valid_session_id(""));
        assert!(!valid_session_id("../etc"));
        assert!(!valid_session_id("a b"));
        assert!(!valid_session_id("é"));
    }

    #[test]
    fn reports_read_as_one_line() {
        let r = SessionReport {
            id: "s1".into(),
            protocol: Some(Protocol::Raw),
            rate: Some(16_000),
            samples: 24_000,
            received: 32_000,
            gaps: 1,
            lost: 8_000,
            reconnects: 2,
            finished: true,
            resumable: false,
            reason: "closed by the client".into(),
        };
        assert_eq!(
            r.to_string(),
            "session s1: raw 16000 Hz, 1.50 s received, 1 gap (0.50 s lost), 2 reconnects; finished: closed by the client"
        );
    }

    #[test]
    fn close_reasons_fit_a_control_frame() {
        assert_eq!(close_reason("short"), "short");
        let long = "é".repeat(100);
        let cut = close_reason(&long);
        assert!(cut.len() <= 123 && long.starts_with(&cut));
        assert_eq!(cut.len(), 122);
    }

    #[test]
    fn ids_are_fresh() {
        let a = new_id("item");
        let b = new_id("item");
        assert!(a.starts_with("item_") && a != b);
    }
}
