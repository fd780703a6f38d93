//! Streaming enhanced frames to the conversation backend over WebSocket.
//!
//! ```text
//!  processing thread ──FrameSink──► bounded queue ──► network thread (tokio)
//!  (engine or file source;          (never blocks:    resample to the backend rate → PCM16
//!   10 ms frames + VAD events)       full = dropped,  → packets (20 ms) → replay buffer (30 s)
//!                                    counted)         → WebSocket (wss://) → backend
//!                                                       ◄── acks (resume extension), server events
//! ```
//!
//! [`connect`] checks the destination (TLS unless loopback or `insecure`), opens the
//! first connection (so a wrong URL, a refused connection or a rejected token is an
//! error right away) and returns a [`NetworkSink`] — the [`FrameSink`] to hand the
//! engine or a file source — and a [`StreamHandle`] for statistics, server events and
//! the end of the stream. Afterwards a lost connection is retried with exponential
//! backoff and jitter while audio keeps accumulating in the replay buffer; see
//! [`protocol`] for what the receiver is told so that nothing is lost or duplicated.
//! Every failure backs off (a receiver that accepts and closes at once is not hammered),
//! and a receiver that refuses the client on principle — a close with 1008 (policy) or
//! 4000–4999, HTTP 401/403 — ends the stream: [`StreamStats::failure`] says why, and
//! the audio not delivered is counted as dropped.
//!
//! The token goes in an `Authorization: Bearer` header; it is never logged or shown
//! ([`Token`]'s `Debug` and `Display` hide it). A URL with credentials (`user:pass@`)
//! is refused (they would not be sent, and they would show up in messages); messages
//! show URLs by [`redact_url`] and never a header's value. A server's text is the
//! server's: [`escape_controls`] makes it safe to show on a terminal. [`server`] is the
//! reference receiver.

mod buffer;
mod client;
mod fuzzing;
pub mod protocol;
mod retry;
mod sanitize;
pub mod server;
pub mod source;
mod tls;

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::atomic::{AtomicBool, AtomicU64};
use std::sync::mpsc::{channel as std_channel, Receiver as StdReceiver};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;

use serde::{Deserialize, Serialize};
use tokio::sync::mpsc::{channel, error::TrySendError, Sender};

use self::client::{Client, Input};
#[doc(hidden)]
pub use self::fuzzing::handle_server_message;
pub use self::protocol::Protocol;
pub use self::sanitize::{escape_controls, redact_url};
use crate::pipeline::{EnhancedFrame, FrameSink, ResponsePlayer};

/// Who decides where a turn ends (OpenAI protocol).
///
/// # Examples
///
/// ```
/// use clearvox::stream::{Protocol, StreamConfig, TurnDetection};
///
/// // clearvox's VAD ends the turns: a commit at every speech end.
/// let config = StreamConfig {
///     protocol: Protocol::Openai,
///     turn_detection: TurnDetection::Client,
///     ..StreamConfig::new("wss://api.openai.com/v1/realtime?model=gpt-realtime")
/// };
/// assert_eq!(config.rate(), 24_000);
/// ```
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum TurnDetection {
    /// The backend's own VAD (`server_vad`); the client never commits.
    #[default]
    Server,
    /// clearvox's VAD: `turn_detection: null`, and a commit at every speech end.
    Client,
}

/// Where and how to stream.
///
/// # Examples
///
/// ```
/// use clearvox::stream::StreamConfig;
///
/// let mut config = StreamConfig::new("wss://stt.example.com/v1/listen?key=k");
/// config.events = true; // JSON start/stop and speech events beside the audio
/// config.headers.insert("X-Model".into(), "nova".into());
/// config.validate()?;
/// assert_eq!(config.rate(), 16_000);
/// // Messages never show the query, which may hold credentials.
/// assert_eq!(config.url_for_display(), "wss://stt.example.com/v1/listen");
/// # Ok::<(), clearvox::stream::StreamError>(())
/// ```
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct StreamConfig {
    /// `wss://host/path` (or `ws://` to a loopback address).
    pub url: String,
    /// Protocol spoken.
    pub protocol: Protocol,
    /// Sample rate sent, Hz; `None` takes the protocol's (raw 16 kHz, OpenAI 24 kHz).
    pub rate: Option<u32>,
    /// Audio per message, ms.
    pub packet_ms: u32,
    /// Audio kept for resending across a reconnect, s.
    pub buffer_s: f64,
    /// Ask for the resume extension (harmless to receivers that ignore it).
    pub resume: bool,
    /// Raw protocol: send JSON start/stop and speech events as well.
    pub events: bool,
    /// OpenAI protocol: whose VAD ends turns.
    pub turn_detection: TurnDetection,
    /// Extra handshake headers.
    pub headers: BTreeMap<String, String>,
    /// PEM file of a private CA to trust besides the webpki roots.
    pub ca_file: Option<PathBuf>,
    /// Allow `ws://` to a non-loopback address (audio in the clear).
    pub insecure: bool,
    /// Give up a connection attempt after this long, ms.
    pub connect_timeout_ms: u64,
    /// First reconnect delay, ms (doubles up to `backoff_max_ms`, with jitter).
    pub backoff_initial_ms: u64,
    /// Longest reconnect delay, ms.
    pub backoff_max_ms: u64,
    /// How long a connection must carry audio before the reconnect delay starts again
    /// from `backoff_initial_ms`, ms, unless its receiver acknowledged some (then at
    /// once): a receiver that accepts and then drops every connection is retried ever
    /// more slowly, not in a loop.
    pub healthy_after_ms: u64,
    /// How long to wait for a receiver's resume message when it says nothing at all, ms
    /// (a receiver that opens with anything else is known not to acknowledge at once).
    pub resume_wait_ms: u64,
    /// At the end, how long to keep trying to deliver what is left, s.
    pub finish_timeout_s: f64,
    /// Frames the queue to the network thread holds (10 ms each).
    pub queue_frames: usize,
    /// With a [`ResponsePlayer`] ([`connect_with_player`]): when the VAD hears speech
    /// start while the player is playing the backend's answer, cancel the player and
    /// the response (`response.cancel`, if one is in progress) — the user interrupted.
    pub barge_in: bool,
}

impl Default for StreamConfig {
    fn default() -> Self {
        Self {
            url: String::new(),
            protocol: Protocol::Raw,
            rate: None,
            packet_ms: 20,
            buffer_s: 30.0,
            resume: true,
            events: false,
            turn_detection: TurnDetection::Server,
            headers: BTreeMap::new(),
            ca_file: None,
            insecure: false,
            connect_timeout_ms: 10_000,
            backoff_initial_ms: 200,
            backoff_max_ms: 5_000,
            healthy_after_ms: 2_000,
            resume_wait_ms: 300,
            finish_timeout_s: 10.0,
            queue_frames: 1_000,
            barge_in: false,
        }
    }
}

impl StreamConfig {
    /// A configuration for `url` with the defaults.
    pub fn new(url: impl Into<String>) -> Self {
        Self {
            url: url.into(),
            ..Self::default()
        }
    }

    /// The rate sent, Hz.
    pub fn rate(&self) -> u32 {
        self.rate.unwrap_or(self.protocol.default_rate())
    }

    /// The URL without its query and with its user information hidden (both may hold
    /// credentials), for messages: see [`redact_url`].
    pub fn url_for_display(&self) -> String {
        redact_url(&self.url)
    }

    /// Checks every value.
    pub fn validate(&self) -> Result<(), StreamError> {
        if sanitize::has_credentials(&self.url) {
            // The transport policy's message (it says where the token goes instead).
            tls::check_url(&self.url, self.insecure)?;
        }
        let rate = self.rate();
        crate::limits::check_sample_rate(rate).map_err(|e| StreamError::Config(e.to_string()))?;
        if self.protocol == Protocol::Openai && rate != protocol::OPENAI_RATE {
            return Err(StreamError::Config(format!(
                "the OpenAI Realtime API takes PCM16 at {} Hz only, not {rate} Hz",
                protocol::OPENAI_RATE
            )));
        }
        if !(10..=1_000).contains(&self.packet_ms) {
            return Err(StreamError::Config(format!(
                "packet_ms = {}: must be in 10..1000",
                self.packet_ms
            )));
        }
        if !(self.buffer_s >= 0.1 && self.buffer_s <= 600.0) {
            return Err(StreamError::Config(format!(
                "buffer_s = {}: must be in 0.1..600",
                self.buffer_s
            )));
        }
        if self.queue_frames == 0 || self.backoff_initial_ms == 0 || self.connect_timeout_ms == 0 {
            return Err(StreamError::Config(
                "queue_frames, backoff_initial_ms and connect_timeout_ms must be positive".into(),
            ));
        }
        self.validate_headers()
    }

    /// Checks the extra headers. A value is never shown: it may well be a key.
    fn validate_headers(&self) -> Result<(), StreamError> {
        use tokio_tungstenite::tungstenite::http::{HeaderName, HeaderValue};
        for (name, value) in &self.headers {
            if HeaderName::from_bytes(name.as_bytes()).is_err() {
                return Err(StreamError::Config(format!(
                    "header name '{}' is not valid",
                    escape_controls(name)
                )));
            }
            if HeaderValue::from_str(value).is_err() {
                return Err(StreamError::Config(format!(
                    "the value of header {name} holds characters a header cannot \
                     (the value is not shown)"
                )));
            }
        }
        Ok(())
    }
}

/// A bearer token. Its `Debug` and `Display` never show it.
///
/// # Examples
///
/// ```
/// use clearvox::stream::Token;
///
/// let token = Token::new("sk-secret");
/// assert_eq!(format!("{token:?} {token}"), "Token(<hidden>) <hidden>");
/// // In an app: from the environment, never from a command line.
/// let from_env = Token::from_env("CLEARVOX_TOKEN");
/// # let _ = from_env;
/// ```
#[derive(Clone)]
pub struct Token(String);

impl Token {
    /// Wraps a token.
    pub fn new(token: impl Into<String>) -> Self {
        Self(token.into())
    }

    /// The token from an environment variable, if set and not empty.
    pub fn from_env(var: &str) -> Option<Self> {
        std::env::var(var).ok().filter(|t| !t.is_empty()).map(Token)
    }

    pub(crate) fn expose(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Debug for Token {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Token(<hidden>)")
    }
}

impl std::fmt::Display for Token {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("<hidden>")
    }
}

/// Why a stream could not start.
///
/// # Examples
///
/// ```
/// use clearvox::stream::{connect, StreamConfig, StreamError};
///
/// // Plain ws:// leaves this machine only with `insecure`: refused before any connection.
/// let err = connect(&StreamConfig::new("ws://192.0.2.1/"), None).err().unwrap();
/// assert!(matches!(err, StreamError::Url(_)));
/// assert!(err.to_string().contains("--insecure"));
/// ```
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StreamError {
    /// The URL is malformed or refused by the transport policy.
    #[error("{0}")]
    Url(String),
    /// A TLS configuration problem (CA file, handshake).
    #[error("TLS: {0}")]
    Tls(String),
    /// An invalid setting.
    #[error("invalid stream configuration: {0}")]
    Config(String),
    /// The connection could not be made.
    #[error("cannot connect to {url}: {message}")]
    Connect {
        /// The URL, without its query.
        url: String,
        /// What went wrong.
        message: String,
    },
    /// The server refused the WebSocket handshake.
    #[error("{url} refused the connection with HTTP {status}{}", hint(*status))]
    Rejected {
        /// The URL, without its query.
        url: String,
        /// The HTTP status.
        status: u16,
    },
    /// The network thread could not start or failed.
    #[error("stream thread: {0}")]
    Thread(String),
}

fn hint(status: u16) -> &'static str {
    match status {
        401 | 403 => " (check the token)",
        404 => " (check the URL's path)",
        _ => "",
    }
}

/// What happens on the stream, for the caller to show or act on.
///
/// # Examples
///
/// ```
/// use clearvox::stream::StreamEvent;
///
/// fn show(event: StreamEvent) {
///     match event {
///         StreamEvent::ServerMessage(json) => println!("{json}"),
///         StreamEvent::Dropped { samples, reason } => eprintln!("lost {samples}: {reason}"),
///         other => eprintln!("{other:?}"),
///     }
/// }
/// show(StreamEvent::Warning("reconnecting".into()));
/// ```
#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(rename_all = "snake_case", tag = "event")]
pub enum StreamEvent {
    /// A connection is up.
    Connected {
        /// Whether the receiver acknowledges (resume extension).
        acknowledged: bool,
        /// Stream offset this connection's audio starts at.
        from: u64,
    },
    /// A connection was lost; reconnecting (after the backoff). The same reason again
    /// is reported only at its 2nd, 4th, 8th... time (with the count) until a
    /// connection works again.
    Disconnected {
        /// Why.
        reason: String,
    },
    /// A message from the server (OpenAI server events, a raw receiver's messages), as
    /// it came.
    ServerMessage(String),
    /// Audio was dropped.
    Dropped {
        /// How many samples.
        samples: u64,
        /// Why.
        reason: String,
    },
    /// Something worth telling that did not stop the stream.
    Warning(String),
    /// The backend began an answer (`response.created`; with a player only).
    ResponseStarted,
    /// The backend's answer ended (`response.done`; with a player only).
    ResponseFinished {
        /// How it ended, as the backend says.
        status: ResponseStatus,
        /// Samples of the answer handed to the player.
        samples: u64,
    },
    /// The user spoke over the answer (barge-in, [`StreamConfig::barge_in`]): the
    /// player was cancelled, and the rest of the answer is not played.
    ResponseCancelled {
        /// Samples of the answer handed to the player before.
        samples: u64,
        /// Whether `response.cancel` was sent (a response was in progress).
        cancel_sent: bool,
    },
}

/// How a backend's answer ended (`response.done`'s `response.status`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ResponseStatus {
    /// Played to its end.
    Completed,
    /// Cancelled (by `response.cancel`, or by the backend's own turn detection).
    Cancelled,
    /// The backend failed.
    Failed,
    /// Cut short (a token limit, content filtering).
    Incomplete,
    /// Missing, or a status this client does not know.
    Other,
}

impl ResponseStatus {
    /// The status named `name`.
    pub(crate) fn from_name(name: Option<&str>) -> Self {
        match name {
            Some("completed") => ResponseStatus::Completed,
            Some("cancelled") => ResponseStatus::Cancelled,
            Some("failed") => ResponseStatus::Failed,
            Some("incomplete") => ResponseStatus::Incomplete,
            _ => ResponseStatus::Other,
        }
    }
}

/// Counters of a stream.
///
/// # Examples
///
/// ```
/// use clearvox::stream::StreamStats;
///
/// let stats = StreamStats { samples_sent: 32_000, resent_samples: 320, ..Default::default() };
/// let seconds_delivered = (stats.samples_sent - stats.resent_samples) as f64 / 16_000.0;
/// assert!((seconds_delivered - 1.98).abs() < 1e-9);
/// println!("{}", serde_json::to_string(&stats).unwrap());
/// ```
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct StreamStats {
    /// Audio messages sent (resends included).
    pub packets_sent: u64,
    /// Bytes of audio messages sent.
    pub bytes_sent: u64,
    /// Samples sent (resends included).
    pub samples_sent: u64,
    /// Samples sent again after a reconnect.
    pub resent_samples: u64,
    /// Connections after the first.
    pub reconnects: u64,
    /// Samples lost: overflow of the replay buffer, or undelivered at the end.
    pub dropped_samples: u64,
    /// Frames dropped because the network thread fell behind the producer.
    pub dropped_frames: u64,
    /// Samples the receiver acknowledged.
    pub acked_samples: u64,
    /// Round trip of the latest acknowledgement, ms.
    pub ack_rtt_ms: f64,
    /// Mean acknowledgement round trip, ms.
    pub ack_rtt_mean_ms: f64,
    /// Messages received from the server (acknowledgements aside).
    pub server_messages: u64,
    /// Whether a connection is up.
    pub connected: bool,
    /// Why the stream ended before its end, when the receiver refused it for good (a
    /// close with 1008 or 4000–4999, HTTP 401/403): one line, the receiver's reason
    /// escaped. `None` for a stream that ran to its end.
    pub failure: Option<String>,
    /// Answers the backend began (`response.created`; with a player only).
    pub responses: u64,
    /// Samples of the backend's answers decoded and handed to the player (at the
    /// stream's rate).
    pub response_samples: u64,
    /// Of those, samples the player did not accept (its queue was full).
    pub response_samples_refused: u64,
    /// Samples of answers that arrived after a barge-in and were not played.
    pub response_samples_discarded: u64,
    /// Audio messages of answers skipped because their audio was not base64 PCM16.
    pub bad_response_audio: u64,
    /// Times the user interrupted an answer (barge-in).
    pub barge_ins: u64,
}

#[derive(Default)]
pub(crate) struct Shared {
    packets_sent: AtomicU64,
    bytes_sent: AtomicU64,
    samples_sent: AtomicU64,
    samples_sent_position: AtomicU64,
    resent_samples: AtomicU64,
    reconnects: AtomicU64,
    dropped_samples: AtomicU64,
    dropped_frames: AtomicU64,
    acked_samples: AtomicU64,
    ack_rtt_us_last: AtomicU64,
    ack_rtt_us_mean: AtomicU64,
    server_messages: AtomicU64,
    connected: AtomicBool,
    failure: Mutex<Option<String>>,
    responses: AtomicU64,
    response_samples: AtomicU64,
    response_samples_refused: AtomicU64,
    response_samples_discarded: AtomicU64,
    bad_response_audio: AtomicU64,
    barge_ins: AtomicU64,
}

impl Shared {
    fn snapshot(&self) -> StreamStats {
        StreamStats {
            packets_sent: self.packets_sent.load(Relaxed),
            bytes_sent: self.bytes_sent.load(Relaxed),
            samples_sent: self.samples_sent.load(Relaxed),
            resent_samples: self.resent_samples.load(Relaxed),
            reconnects: self.reconnects.load(Relaxed),
            dropped_samples: self.dropped_samples.load(Relaxed),
            dropped_frames: self.dropped_frames.load(Relaxed),
            acked_samples: self.acked_samples.load(Relaxed),
            ack_rtt_ms: self.ack_rtt_us_last.load(Relaxed) as f64 / 1000.0,
            ack_rtt_mean_ms: self.ack_rtt_us_mean.load(Relaxed) as f64 / 1000.0,
            server_messages: self.server_messages.load(Relaxed),
            connected: self.connected.load(Relaxed),
            failure: self.failure(),
            responses: self.responses.load(Relaxed),
            response_samples: self.response_samples.load(Relaxed),
            response_samples_refused: self.response_samples_refused.load(Relaxed),
            response_samples_discarded: self.response_samples_discarded.load(Relaxed),
            bad_response_audio: self.bad_response_audio.load(Relaxed),
            barge_ins: self.barge_ins.load(Relaxed),
        }
    }

    fn failure(&self) -> Option<String> {
        self.failure.lock().ok().and_then(|f| f.clone())
    }
}

/// The [`FrameSink`] end of a stream: hands frames to the network thread without ever
/// blocking (a full queue drops the frame and counts it).
///
/// # Examples
///
/// A file, paced like a microphone, into a backend (here `clearvox serve` on this
/// machine):
///
/// ```no_run
/// use clearvox::io::WavReader;
/// use clearvox::stream::{connect, source::run_wav, StreamConfig, Token};
///
/// let stream = StreamConfig::new("ws://127.0.0.1:9000/");
/// let (mut sink, handle) = connect(&stream, Token::from_env("CLEARVOX_TOKEN"))?;
/// let config = clearvox::Config { output_rate: Some(stream.rate()), ..Default::default() };
/// let reader = WavReader::new(std::fs::File::open("talk.wav")?)?;
/// run_wav(reader, &config, &mut sink, true)?; // finishes the sink at the end
/// let stats = handle.wait()?;
/// println!("{} reconnects, {} samples dropped", stats.reconnects, stats.dropped_samples);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub struct NetworkSink {
    tx: Option<Sender<Input>>,
    shared: Arc<Shared>,
}

impl std::fmt::Debug for NetworkSink {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NetworkSink")
            .field("open", &self.tx.is_some())
            .finish()
    }
}

impl std::fmt::Debug for StreamHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StreamHandle")
            .field("session", &self.session)
            .field("stats", &self.shared.snapshot())
            .finish()
    }
}

impl FrameSink for NetworkSink {
    fn frame(&mut self, frame: &EnhancedFrame<'_>) {
        let Some(tx) = &self.tx else { return };
        let input = Input::Frame {
            samples: frame.samples.to_vec(),
            rate: frame.rate,
            events: frame.events.to_vec(),
        };
        match tx.try_send(input) {
            Ok(()) => {}
            Err(TrySendError::Full(_)) => {
                self.shared.dropped_frames.fetch_add(1, Relaxed);
            }
            Err(TrySendError::Closed(_)) => self.tx = None,
        }
    }

    fn finish(&mut self) {
        if let Some(tx) = self.tx.take() {
            // The end of the stream must get through: wait for room if need be (this
            // runs once, on the processing thread, never on an audio callback).
            let _ = tx.blocking_send(Input::Finish);
        }
    }
}

impl Drop for NetworkSink {
    fn drop(&mut self) {
        self.finish();
    }
}

/// The caller's handle on a running stream.
///
/// # Examples
///
/// ```no_run
/// use clearvox::stream::{connect, StreamConfig, StreamEvent};
///
/// let (sink, mut handle) = connect(&StreamConfig::new("ws://127.0.0.1:9000/"), None)?;
/// let events = handle.take_events().unwrap();
/// std::thread::spawn(move || {
///     for e in events {
///         if let StreamEvent::ServerMessage(json) = e {
///             println!("{json}");
///         }
///     }
/// });
/// // ... hand `sink` to an engine or a file source; when it finishes:
/// drop(sink);
/// let stats = handle.wait()?;
/// # let _ = stats;
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub struct StreamHandle {
    thread: Option<JoinHandle<()>>,
    shared: Arc<Shared>,
    events: Option<StdReceiver<StreamEvent>>,
    control: Sender<Input>,
    session: String,
}

impl StreamHandle {
    /// Current counters.
    pub fn stats(&self) -> StreamStats {
        self.shared.snapshot()
    }

    /// The stream identifier sent to resume-capable receivers.
    pub fn session_id(&self) -> &str {
        &self.session
    }

    /// Why the stream ended early, once the receiver has refused it for good (see
    /// [`StreamStats::failure`]): a live source checks it to stop rather than capture
    /// for nothing.
    pub fn failure(&self) -> Option<String> {
        self.shared.failure()
    }

    /// The next event, if any.
    pub fn poll_event(&self) -> Option<StreamEvent> {
        self.events.as_ref().and_then(|r| r.try_recv().ok())
    }

    /// Takes the event receiver (for a thread that prints events as they come).
    pub fn take_events(&mut self) -> Option<StdReceiver<StreamEvent>> {
        self.events.take()
    }

    /// Asks an OpenAI backend to discard the audio it holds (`input_audio_buffer.clear`).
    pub fn clear_input(&self) {
        let _ = self.control.try_send(Input::Clear);
    }

    /// Waits until the stream has ended (the sink finished) and what was produced is
    /// delivered, or the finish timeout passed; returns the final counters.
    pub fn wait(mut self) -> Result<StreamStats, StreamError> {
        if let Some(t) = self.thread.take() {
            t.join()
                .map_err(|_| StreamError::Thread("the network thread panicked".into()))?;
        }
        Ok(self.shared.snapshot())
    }
}

/// Checks the destination, opens the first connection, and starts the network thread.
pub fn connect(
    config: &StreamConfig,
    token: Option<Token>,
) -> Result<(NetworkSink, StreamHandle), StreamError> {
    start(config, token, None)
}

/// [`connect`], with a player for the backend's spoken answer (OpenAI protocol).
///
/// The answer's audio (`response.output_audio.delta`, or the older
/// `response.audio.delta`: base64 PCM16 mono at the stream's rate) is decoded and
/// handed to `player` as it arrives, on the network thread: `play` must return at once
/// (queue the samples for the playback device, never wait for it). Those audio
/// messages are not repeated as [`StreamEvent::ServerMessage`]; the others are, and
/// `response.created` / `response.done` are also told as [`StreamEvent::ResponseStarted`]
/// and [`StreamEvent::ResponseFinished`]. An audio message that is not valid base64
/// PCM16 (an odd number of bytes) is skipped, counted and warned about once.
///
/// With client turn detection ([`TurnDetection::Client`]) a `response.create` follows
/// every commit: the backend answers each turn. With [`StreamConfig::barge_in`], a
/// speech start while the player plays cancels the player (and `response.cancel` goes
/// to the backend if a response is in progress); what is still coming of that answer is
/// not played ([`StreamEvent::ResponseCancelled`]). With the raw protocol the player
/// receives nothing.
///
/// # Examples
///
/// ```no_run
/// use clearvox::pipeline::ResponsePlayer;
/// use clearvox::stream::{connect_with_player, Protocol, StreamConfig, TurnDetection};
///
/// /// Keeps the answer (a real player queues it for the loudspeaker).
/// struct Keep(Vec<f32>);
/// impl ResponsePlayer for Keep {
///     fn play(&mut self, samples: &[f32], _rate: u32) -> usize {
///         self.0.extend_from_slice(samples);
///         samples.len()
///     }
///     fn cancel(&mut self) {}
///     fn is_playing(&self) -> bool { false }
/// }
///
/// let config = StreamConfig {
///     protocol: Protocol::Openai,
///     turn_detection: TurnDetection::Client,
///     barge_in: true,
///     ..StreamConfig::new("ws://127.0.0.1:9000/")
/// };
/// let (sink, handle) = connect_with_player(&config, None, Box::new(Keep(Vec::new())))?;
/// # drop(sink);
/// # let _ = handle.wait()?;
/// # Ok::<(), clearvox::stream::StreamError>(())
/// ```
pub fn connect_with_player(
    config: &StreamConfig,
    token: Option<Token>,
    player: Box<dyn ResponsePlayer>,
) -> Result<(NetworkSink, StreamHandle), StreamError> {
    start(config, token, Some(player))
}

fn start(
    config: &StreamConfig,
    token: Option<Token>,
    player: Option<Box<dyn ResponsePlayer>>,
) -> Result<(NetworkSink, StreamHandle), StreamError> {
    config.validate()?;
    let destination = tls::check_url(&config.url, config.insecure)?;
    let tls = match destination.scheme {
        tls::Scheme::Tls => Some(tls::client_config(config.ca_file.as_deref())?),
        tls::Scheme::Plain => None,
    };
    let session = new_session_id();
    let shared = Arc::new(Shared::default());
    let (events_tx, events_rx) = std_channel();
    if destination.insecure {
        let _ = events_tx.send(StreamEvent::Warning(format!(
            "sending audio unencrypted to {} (--insecure)",
            config.url_for_display()
        )));
    }
    let (tx, rx) = channel(config.queue_frames);
    let mut client = Client::new(
        config.clone(),
        token,
        destination,
        tls,
        session.clone(),
        shared.clone(),
        events_tx,
        rx,
    );
    client.player = player;
    let (ready_tx, ready_rx) = std_channel();
    let thread = std::thread::Builder::new()
        .name("clearvox-stream".into())
        .spawn(move || {
            let runtime = match tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
            {
                Ok(r) => r,
                Err(e) => {
                    let _ = ready_tx.send(Err(StreamError::Thread(e.to_string())));
                    return;
                }
            };
            runtime.block_on(async move {
                match client.connect().await {
                    Ok(ws) => {
                        let _ = ready_tx.send(Ok(()));
                        client.run(ws).await;
                    }
                    Err(e) => {
                        let _ = ready_tx.send(Err(e));
                    }
                }
            });
        })
        .map_err(|e| StreamError::Thread(e.to_string()))?;
    match ready_rx.recv() {
        Ok(Ok(())) => {}
        Ok(Err(e)) => {
            let _ = thread.join();
            return Err(e);
        }
        Err(_) => {
            let _ = thread.join();
            return Err(StreamError::Thread(
                "the network thread ended at start".into(),
            ));
        }
    }
    Ok((
        NetworkSink {
            tx: Some(tx.clone()),
            shared: shared.clone(),
        },
        StreamHandle {
            thread: Some(thread),
            shared,
            events: Some(events_rx),
            control: tx,
            session,
        },
    ))
}

// The sink runs on the engine's processing thread and the handle wherever the caller
// likes: both must be `Send`.
const _: () = {
    const fn assert_send<T: Send>() {}
    assert_send::<NetworkSink>();
    assert_send::<StreamHandle>();
    assert_send::<StreamConfig>();
};

/// 32 random hex digits.
fn new_session_id() -> String {
    use ring::rand::SecureRandom;
    let mut bytes = [0u8; 16];
    if ring::rand::SystemRandom::new().fill(&mut bytes).is_err() {
        // No system randomness: time and process id still make it unique enough.
        let t = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or(0);
        bytes = (t ^ ((std::process::id() as u128) << 64)).to_le_bytes();
    }
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_never_show() {
        let t = Token::new("sk-secret");
        assert!(!format!("{t:?} {t}").contains("secret"));
    }

    #[test]
    fn configuration_checks() {
        let mut c = StreamConfig::new("wss://x");
        c.validate().unwrap();
        c.protocol = Protocol::Openai;
        assert_eq!(c.rate(), 24_000);
        c.rate = Some(16_000);
        assert!(c.validate().unwrap_err().to_string().contains("24000"));
        assert_eq!(
            StreamConfig::new("wss://h/p?key=1").url_for_display(),
            "wss://h/p"
        );
        assert_eq!(new_session_id().len(), 32);
    }

    #[test]
    fn credentials_and_header_values_never_show() {
        let c = StreamConfig::new("wss://me:pw-123@h/p?key=1");
        assert_eq!(c.url_for_display(), "wss://me:***@h/p");
        let e = c.validate().unwrap_err().to_string();
        assert!(
            e.contains("wss://me:***@h/p") && !e.contains("pw-123"),
            "{e}"
        );
        let mut c = StreamConfig::new("wss://h/");
        c.headers.insert("X-Key".into(), "sk-123\u{1}".into());
        let e = c.validate().unwrap_err().to_string();
        assert!(e.contains("X-Key") && !e.contains("sk-123"), "{e}");
        c.headers.clear();
        c.headers.insert("X Key\u{1b}".into(), "v".into());
        let e = c.validate().unwrap_err().to_string();
        assert!(e.contains(r"X Key\x1b"), "{e}");
    }

    #[test]
    fn a_refused_connection_is_an_error_at_once() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        drop(listener);
        let c = StreamConfig::new(format!("ws://127.0.0.1:{port}/"));
        let e = connect(&c, None).err().unwrap().to_string();
        assert!(e.contains("cannot connect"), "{e}");
    }
}
