//! From an accepted TCP connection to a WebSocket: the TLS handshake if any, then the
//! WebSocket handshake, whose stream id and resume headers are checked here.

use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpStream;
use tokio::sync::watch;
use tokio_tungstenite::tungstenite::handshake::server::{ErrorResponse, Request, Response};
use tokio_tungstenite::tungstenite::http::StatusCode;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;

use super::connection::Connection;
use super::shared::Shared;
use crate::stream::protocol::{RESUME_HEADER, SESSION_HEADER};

/// Longest stream id.
pub const MAX_SESSION_ID_LEN: usize = 64;
/// Longest a client may take for the TLS and WebSocket handshakes.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// Largest WebSocket message taken, bytes.
const MAX_MESSAGE_BYTES: usize = 8 << 20;

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
}

impl Handshake {
    /// Reads the request's headers and query; refuses (HTTP 400) a stream id that
    /// cannot name a file, or two of them.
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
        Ok(response)
    }
}

/// An HTTP 400 answer to a handshake, `message` as its body.
fn bad_request(message: &str) -> ErrorResponse {
    let mut response = ErrorResponse::new(Some(format!("{message}\n")));
    *response.status_mut() = StatusCode::BAD_REQUEST;
    response
}

/// The WebSocket limits: no message or frame over [`MAX_MESSAGE_BYTES`].
fn ws_config() -> WebSocketConfig {
    WebSocketConfig::default()
        .max_message_size(Some(MAX_MESSAGE_BYTES))
        .max_frame_size(Some(MAX_MESSAGE_BYTES))
}

/// Serves one TCP connection to its end: handshakes (given up on at shutdown), then the
/// stream.
pub(super) async fn accept(
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
