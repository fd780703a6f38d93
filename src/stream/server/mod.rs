#![doc = include_str!("README.md")]

// A connection's way through these modules: `handshake` takes it in; `connection` serves
// it on a stream of `shared`'s table, which `session` and `wav` keep on disk; `message`
// hands each text message to `raw`, `openai` or `offsets`; `format` fixes the stream's
// protocol and rate. `auth` checks the token and `owner` the resume keys during the
// handshake; `limits` bounds what clients hold.
mod answer;
mod auth;
mod connection;
mod error;
mod format;
mod handshake;
mod limits;
mod log;
mod message;
mod names;
mod offsets;
mod openai;
mod owner;
mod raw;
mod replay;
mod report;
mod session;
mod shared;
mod tls;
mod wav;

use std::future::Future;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;
use std::{fmt, io};

use tokio::sync::{watch, Semaphore};
use tokio::task::JoinSet;

use crate::io::os_reason;
use crate::stream::Token;
use handshake::{Admission, Gate};
use shared::{Reporter, Shared};

pub use answer::{load_answer, ANSWER_DELTA_MS};
pub use error::ServeError;
pub use handshake::{valid_session_id, MAX_SESSION_ID_LEN};
pub use limits::ServerLimits;
pub use log::{MAX_CLIENT_LINES, MAX_LOG_BYTES};
pub use owner::RESUME_KEY_HEADER;
pub use replay::{replay_log, ReplaySummary};
pub use report::SessionReport;

/// Longest the connections get to close at shutdown.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(5);
/// How long to wait before accepting again after `accept` failed (out of file
/// descriptors, most often), doubled at each failure in a row up to [`ACCEPT_RETRY_MAX`].
const ACCEPT_RETRY: Duration = Duration::from_millis(20);
/// Longest wait between two failed `accept`s.
const ACCEPT_RETRY_MAX: Duration = Duration::from_secs(1);
/// Clients of a full receiver answered HTTP 503 at once; beyond them a client's socket is
/// closed at once.
const REFUSALS_AT_ONCE: usize = 16;
/// How often [`Server::run_until`] looks at its flag.
const STOP_POLL: Duration = Duration::from_millis(50);

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

/// What a [`Server`] listens on and writes to, whom it serves, and how much.
///
/// ```
/// use clearvox::stream::server::{ServerConfig, ServerLimits};
/// use clearvox::stream::Token;
/// let config = ServerConfig {
///     listen: "127.0.0.1:8765".parse().expect("a socket address"),
///     out: "received".into(),
///     tls: None, // plain ws://: for a receiver on the same machine only
///     token: Token::from_env("CLEARVOX_SERVE_TOKEN"),
///     limits: ServerLimits::default(),
///     respond_with: None, // or Some(Arc::new(load_answer(path)?)): see `load_answer`
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
    /// The bearer token every client must send (`Authorization: Bearer`); `None`: any
    /// client that reaches the port is served, so it is refused on an address other
    /// than loopback.
    pub token: Option<Token>,
    /// What clients may hold of the receiver.
    pub limits: ServerLimits,
    /// OpenAI protocol: answer every `response.create` with this recording (PCM16 mono
    /// at 24 kHz, see [`load_answer`]) as a backend's spoken answer: `response.created`,
    /// `response.output_audio.delta` events of [`ANSWER_DELTA_MS`] at twice real time,
    /// `response.output_audio.done`, `response.done`; a `response.cancel` stops it
    /// (`response.done` with status `cancelled`). A commit alone is not answered (no
    /// server VAD: the client asks, as with OpenAI's `turn_detection: null`). `None`:
    /// `response.create` is only logged.
    pub respond_with: Option<Arc<Vec<i16>>>,
}

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
///     token: None,
///     limits: Default::default(),
///     respond_with: None,
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
    gate: Arc<Gate>,
    reporter: Option<Reporter>,
}

impl fmt::Debug for Server {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Server")
            .field("local_addr", &self.local_addr)
            .field("tls", &self.tls.is_some())
            .field("out", &self.gate.out)
            .field("token", &self.gate.token.is_some())
            .field("limits", &self.gate.limits)
            .field("respond_with", &self.gate.answer.as_ref().map(|a| a.len()))
            .finish()
    }
}

impl Server {
    /// Checks the token (required beyond loopback) and the limits, creates the output
    /// folder, loads the TLS files and binds the listening socket.
    pub fn bind(config: ServerConfig) -> Result<Server, ServeError> {
        let token = match &config.token {
            Some(token) => match auth::token_problem(token.expose()) {
                Some(problem) => return Err(ServeError::Token(problem.into())),
                None => Some(auth::sha256(token.expose().as_bytes())),
            },
            None if !config.listen.ip().is_loopback() => {
                return Err(ServeError::NoToken {
                    addr: config.listen,
                })
            }
            None => None,
        };
        check_limits(&config.limits)?;
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
        let tls = config.tls.as_ref().map(tls::acceptor).transpose()?;
        let bind_error = |e: io::Error| ServeError::Bind {
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
            gate: Arc::new(Gate {
                out: config.out,
                token,
                limits: config.limits,
                answer: config.respond_with,
            }),
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
    /// At most [`ServerLimits::max_connections`] connections are served at once, fewer
    /// if the process's open-file limit allows fewer; a client beyond them is answered
    /// HTTP 503.
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
        let gate = self.gate;
        let shared = Arc::new(Shared::new(gate.out.clone(), self.reporter));
        let cap = gate.limits.connections_within(limits::open_file_limit());
        let served = Arc::new(Semaphore::new(cap));
        let refused = Arc::new(Semaphore::new(REFUSALS_AT_ONCE));
        let (stop_tx, stop_rx) = watch::channel(false);
        let mut tasks = JoinSet::new();
        let mut retry = ACCEPT_RETRY;
        tokio::pin!(shutdown);
        loop {
            tokio::select! {
                _ = &mut shutdown => break,
                accepted = listener.accept() => match accepted {
                    Ok((tcp, _peer)) => {
                        retry = ACCEPT_RETRY;
                        let (permit, admission) = match served.clone().try_acquire_owned() {
                            Ok(permit) => (permit, Admission::Serve),
                            Err(_) => match refused.clone().try_acquire_owned() {
                                Ok(permit) => (permit, Admission::Full),
                                Err(_) => continue, // dropped: closed at once
                            },
                        };
                        let accept = handshake::accept(
                            shared.clone(),
                            gate.clone(),
                            tcp,
                            self.tls.clone(),
                            stop_rx.clone(),
                            admission,
                        );
                        tasks.spawn(async move {
                            accept.await;
                            drop(permit);
                        });
                    }
                    // Out of file descriptors, a connection reset while queued, ...: the
                    // listener itself is fine. Waiting longer at each failure in a row
                    // keeps a full process from spinning on a queued connection.
                    Err(_) => {
                        tokio::time::sleep(retry).await;
                        retry = (retry * 2).min(ACCEPT_RETRY_MAX);
                    }
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
                tokio::time::sleep(STOP_POLL).await;
            }
        }))
    }
}

/// Refuses limits that would serve nothing.
fn check_limits(limits: &ServerLimits) -> Result<(), ServeError> {
    let problem = if limits.max_connections == 0 {
        Some("max_connections must be at least 1")
    } else if limits.max_message_bytes < 1024 {
        Some("max_message_bytes must be at least 1024")
    } else if limits.idle < Duration::from_millis(100) {
        Some("the idle limit must be at least 100 ms")
    } else if limits.handshake < Duration::from_millis(100) {
        Some("the handshake limit must be at least 100 ms")
    } else {
        None
    };
    match problem {
        Some(p) => Err(ServeError::Limits(p.into())),
        None => Ok(()),
    }
}
