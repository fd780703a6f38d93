//! From an accepted TCP connection to a WebSocket: the TLS handshake if any, then the
//! WebSocket handshake, where the token, the stream id, its resume key and the resume
//! header are checked, all within one deadline.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpStream;
use tokio::sync::watch;
use tokio::time::Instant;
use tokio_tungstenite::tungstenite::handshake::server::{ErrorResponse, Request, Response};
use tokio_tungstenite::tungstenite::http::header::WWW_AUTHENTICATE;
use tokio_tungstenite::tungstenite::http::{HeaderValue, StatusCode};
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;

use super::auth::{check_bearer, Digest};
use super::connection::Connection;
use super::limits::ServerLimits;
use super::owner::{claim_named, Refusal, RESUME_KEY_HEADER};
use super::shared::Shared;
use crate::stream::protocol::{RESUME_HEADER, SESSION_HEADER};

/// Longest stream id.
pub const MAX_SESSION_ID_LEN: usize = 64;
/// Longest a refused client gets to read its HTTP 503.
const REFUSAL_TIMEOUT: Duration = Duration::from_secs(2);
/// Largest answer the receiver may have waiting for a client that does not read, bytes
/// (its messages are small: acks, greetings, OpenAI's short answers).
const MAX_WRITE_BUFFER: usize = 1 << 20;

/// What every handshake is checked against.
#[derive(Debug)]
pub(super) struct Gate {
    /// Folder of the streams' files (their key files among them).
    pub out: PathBuf,
    /// SHA-256 of the bearer token every client must present, if any.
    pub token: Option<Digest>,
    /// The limits.
    pub limits: ServerLimits,
    /// The answer to every `response.create` (`--respond-with`), if any.
    pub answer: Option<super::answer::Answer>,
}

/// Whether a connection is served, or refused because the receiver is full.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Admission {
    /// Served.
    Serve,
    /// Answered HTTP 503: the receiver serves its maximum of connections.
    Full,
}

/// Whether `id` may name a stream: 1 to 64 characters of `A-Z a-z 0-9 _ -`, and not a
/// device name of Windows (`CON`, `PRN`, `AUX`, `NUL`, `COM0`–`COM9`, `LPT0`–`LPT9`, in
/// any case), so that it names the same files everywhere.
///
/// ```
/// use clearvox::stream::server::valid_session_id;
/// assert!(valid_session_id("tutor-42_a"));
/// assert!(!valid_session_id("../etc/passwd"));
/// assert!(!valid_session_id("Nul"));
/// assert!(!valid_session_id(""));
/// assert!(!valid_session_id(&"x".repeat(65)));
/// ```
pub fn valid_session_id(id: &str) -> bool {
    !id.is_empty()
        && id.len() <= MAX_SESSION_ID_LEN
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
        && !super::names::is_reserved_name(id)
}

/// What the handshake asked for.
#[derive(Debug, Default)]
pub(super) struct Handshake {
    /// The `X-Clearvox-Session` id, if the client named its stream.
    pub session: Option<String>,
    /// Whether `X-Clearvox-Resume: 1` asked for the resume extension.
    pub resume: bool,
    /// The URL's `rate` query parameter, unchecked (a bad one is a protocol error, not a
    /// refusal).
    pub rate: Option<String>,
    /// The digest of the key a new named stream is bound to (`None`: the stream's key
    /// file was there and the client's key matched it).
    pub new_stream_key: Option<Digest>,
}

impl Handshake {
    /// Reads the request's headers and query. Refuses a full receiver (HTTP 503), a
    /// missing or wrong token (401), a stream id that cannot name a file or two of them
    /// (400), and a stream that exists without its resume key (403); gives a new named
    /// stream's key in the answer.
    // The signature tungstenite's handshake callback has.
    #[allow(clippy::result_large_err)]
    fn check(
        &mut self,
        gate: &Gate,
        admission: Admission,
        request: &Request,
        mut response: Response,
    ) -> Result<Response, ErrorResponse> {
        if admission == Admission::Full {
            return Err(refusal(
                StatusCode::SERVICE_UNAVAILABLE,
                "the receiver serves its maximum of connections: try again later",
            ));
        }
        if let Some(token) = &gate.token {
            if let Err(reason) = check_bearer(token, request) {
                let mut answer = refusal(StatusCode::UNAUTHORIZED, reason);
                answer
                    .headers_mut()
                    .insert(WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
                return Err(answer);
            }
        }
        let mut ids = request.headers().get_all(SESSION_HEADER).iter();
        if let Some(value) = ids.next() {
            if ids.next().is_some() {
                return Err(bad_request("more than one X-Clearvox-Session header"));
            }
            match value.to_str() {
                Ok(id) if valid_session_id(id) => self.session = Some(id.to_string()),
                _ => {
                    return Err(bad_request(
                        "X-Clearvox-Session must be 1 to 64 characters of A-Z a-z 0-9 _ - and not a device name (CON, NUL, COM1, ...)",
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
        if let Some(id) = &self.session {
            let mut keys = request.headers().get_all(RESUME_KEY_HEADER).iter();
            let presented = keys.next().and_then(|v| v.to_str().ok());
            if keys.next().is_some() {
                return Err(bad_request("more than one X-Clearvox-Resume-Key header"));
            }
            match claim_named(&gate.out, id, presented) {
                Ok(claim) => {
                    if let Some(key) = claim.answer {
                        if let Ok(mut value) = HeaderValue::from_str(&key) {
                            value.set_sensitive(true);
                            response.headers_mut().insert(RESUME_KEY_HEADER, value);
                        }
                    }
                    self.new_stream_key = claim.new_stream;
                }
                Err(Refusal::Forbidden(reason)) => {
                    return Err(refusal(StatusCode::FORBIDDEN, &reason))
                }
                Err(Refusal::Failed(reason)) => {
                    return Err(refusal(StatusCode::INTERNAL_SERVER_ERROR, &reason))
                }
            }
        }
        Ok(response)
    }
}

/// An HTTP answer of `status` to a handshake, `message` (one line) as its body.
fn refusal(status: StatusCode, message: &str) -> ErrorResponse {
    let mut response = ErrorResponse::new(Some(format!("{message}\n")));
    *response.status_mut() = status;
    response
}

/// An HTTP 400 answer to a handshake, `message` as its body.
fn bad_request(message: &str) -> ErrorResponse {
    refusal(StatusCode::BAD_REQUEST, message)
}

/// The WebSocket limits: no message or frame over the limits' size, and no more than
/// [`MAX_WRITE_BUFFER`] of answers waiting for a client that does not read.
fn ws_config(limits: &ServerLimits) -> WebSocketConfig {
    WebSocketConfig::default()
        .max_message_size(Some(limits.max_message_bytes))
        .max_frame_size(Some(limits.max_message_bytes))
        .max_write_buffer_size(MAX_WRITE_BUFFER)
}

/// Serves one TCP connection to its end: handshakes (given up on at shutdown or when
/// the handshake deadline passes), then the stream; or, when the receiver is full,
/// answers HTTP 503 and closes.
pub(super) async fn accept(
    shared: Arc<Shared>,
    gate: Arc<Gate>,
    tcp: TcpStream,
    tls: Option<tokio_rustls::TlsAcceptor>,
    mut stop: watch::Receiver<bool>,
    admission: Admission,
) {
    let _ = tcp.set_nodelay(true);
    let limit = match admission {
        Admission::Serve => gate.limits.handshake,
        Admission::Full => gate.limits.handshake.min(REFUSAL_TIMEOUT),
    };
    let deadline = Instant::now() + limit;
    match tls {
        None => websocket(shared, gate, tcp, stop, admission, deadline).await,
        Some(acceptor) => {
            let stream = tokio::select! {
                r = tokio::time::timeout_at(deadline, acceptor.accept(tcp)) => match r {
                    Ok(Ok(stream)) => stream,
                    _ => return,
                },
                _ = stop.changed() => return,
            };
            websocket(shared, gate, stream, stop, admission, deadline).await
        }
    }
}

/// The WebSocket handshake, then the stream.
#[allow(clippy::result_large_err)] // the handshake callback's signature is tungstenite's
async fn websocket<S>(
    shared: Arc<Shared>,
    gate: Arc<Gate>,
    stream: S,
    mut stop: watch::Receiver<bool>,
    admission: Admission,
    deadline: Instant,
) where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let mut handshake = Handshake::default();
    let accepted = {
        let callback = |req: &Request, resp: Response| handshake.check(&gate, admission, req, resp);
        let config = ws_config(&gate.limits);
        tokio::select! {
            r = tokio::time::timeout_at(
                deadline,
                tokio_tungstenite::accept_hdr_async_with_config(stream, callback, Some(config)),
            ) => r,
            _ = stop.changed() => return,
        }
    };
    let Ok(Ok(ws)) = accepted else {
        return; // refused, timed out, or not a WebSocket client
    };
    Connection::serve(shared, &gate, ws, handshake, stop).await
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
}
