//! One WebSocket connection of a stream, from its greeting to its Close frame: the loop
//! that waits for messages, pings, acks due and shutdown, and what is logged and reported
//! when it ends. What its messages mean is in [`raw`](super::raw),
//! [`openai`](super::openai), [`offsets`](super::offsets) and [`format`](super::format).

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use serde_json::json;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::sync::{watch, Mutex as AsyncMutex, Notify};
use tokio::time::Instant;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::protocol::CloseFrame;
use tokio_tungstenite::tungstenite::{Error as WsError, Message};
use tokio_tungstenite::WebSocketStream;

use super::answer::{Answer, Answering};
use super::format::valid_rates;
use super::handshake::{Gate, Handshake};
use super::owner::claim_unnamed;
use super::session::Session;
use super::shared::Shared;
use super::SessionReport;
use crate::io::os_reason;
use crate::limits::is_supported_sample_rate;
use crate::stream::protocol::{Control, Protocol};

/// How often a connection is pinged (more often when the idle limit is shorter), so
/// that a dead peer is noticed by a failed send.
const PING_EVERY: Duration = Duration::from_secs(15);
/// Longest a send may wait for a client that does not read.
const SEND_TIMEOUT: Duration = Duration::from_secs(10);
/// Longest the Close frame may take to go out when a connection ends.
const CLOSE_TIMEOUT: Duration = Duration::from_secs(1);
/// Longest unacknowledged audio waits for its ack.
const ACK_DELAY: Duration = Duration::from_millis(20);
/// Longest reason a Close frame holds, bytes.
const MAX_CLOSE_REASON: usize = 123;

/// How a connection ended.
struct End {
    reason: String,
    /// The Close frame the server sends; `None` when the client closed or vanished.
    close: Option<CloseCode>,
}

impl End {
    /// The client closed or vanished.
    fn client(reason: impl Into<String>) -> End {
        End {
            reason: reason.into(),
            close: None,
        }
    }

    /// The server ends the connection with a Close frame of `code`.
    fn server(reason: impl Into<String>, code: CloseCode) -> End {
        End {
            reason: reason.into(),
            close: Some(code),
        }
    }

    /// Another connection took the stream over.
    fn taken_over() -> End {
        End::server("taken over by a new connection", CloseCode::Normal)
    }

    /// The stream `id`'s files cannot be written.
    fn write_failed(id: &str, e: &std::io::Error) -> End {
        End::server(
            format!("cannot write the files of {id}: {}", os_reason(e)),
            CloseCode::Error,
        )
    }
}

/// What woke the connection loop.
enum Wake {
    Shutdown,
    TakenOver,
    AckDue,
    AnswerDue,
    Idle,
    Ping,
    Message(Option<Result<Message, WsError>>),
}

/// One WebSocket connection of a stream.
pub(super) struct Connection {
    /// The connection's number (see [`Session::owner`]).
    pub id: u64,
    /// The stream it feeds.
    pub session: Arc<AsyncMutex<Session>>,
    /// Whether the connection speaks the resume extension.
    pub resume: bool,
    /// The URL's rate, if valid.
    pub query_rate: Option<u32>,
    /// The protocol this connection speaks, once its first data message told.
    pub protocol: Option<Protocol>,
    /// Stream offset of the next sample this connection sends, once known.
    pub pos: Option<u64>,
    /// Whether `pos` was set by `clearvox.resume_from`.
    pub pos_from_resume: bool,
    /// Whether audio came since `pos` was last set by a message.
    pub audio_since_pos: bool,
    /// The last `received` acknowledged.
    pub last_ack: u64,
    /// When unacknowledged audio must be acknowledged at the latest.
    pub ack_due: Option<Instant>,
    /// Protocol errors logged once per connection.
    pub warned: HashSet<&'static str>,
    /// Set when a message was refused: the connection ends with a Close frame (1008)
    /// of this reason.
    pub refused: Option<String>,
    /// The answer to `response.create`, if the receiver gives one.
    pub answer: Option<Answer>,
    /// The answer being sent.
    pub answering: Option<Answering>,
}

impl Connection {
    /// Takes the stream the handshake names, greets the client, serves it, and lets go.
    pub(super) async fn serve<S>(
        shared: Arc<Shared>,
        gate: &Gate,
        mut ws: WebSocketStream<S>,
        handshake: Handshake,
        mut stop: watch::Receiver<bool>,
    ) where
        S: AsyncRead + AsyncWrite + Unpin,
    {
        let conn = shared.next_connection();
        let named = handshake.session.is_some();
        let mut first = Some(conn);
        let claimed = match handshake.session {
            Some(id) => Ok((id, handshake.new_stream_key)),
            None => claim_unnamed(&gate.out, || {
                first.take().unwrap_or_else(|| shared.next_connection())
            })
            .map(|(id, key)| (id, Some(key))),
        };
        let kick = Arc::new(Notify::new());
        let attached = match claimed {
            Ok((sid, key)) => shared
                .attach(&sid, named, key, conn, &kick)
                .await
                .map(|session| (sid, session)),
            Err(e) => Err(e),
        };
        let (sid, session) = match attached {
            Ok(attached) => attached,
            Err(e) => {
                // Another client's stream (1008), or files that cannot be opened (1011).
                let (code, reason) = if e.kind() == std::io::ErrorKind::PermissionDenied {
                    (CloseCode::Policy, e.to_string())
                } else {
                    (
                        CloseCode::Error,
                        format!("cannot open the stream's files: {}", os_reason(&e)),
                    )
                };
                let frame = CloseFrame {
                    code,
                    reason: close_reason(&reason).into(),
                };
                let _ = tokio::time::timeout(SEND_TIMEOUT, ws.close(Some(frame))).await;
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
            refused: None,
            answer: gate.answer.clone(),
            answering: None,
        };
        let mut out = Vec::new();
        let opened = {
            let mut s = session.lock().await;
            c.last_ack = s.received;
            c.open(
                &mut s,
                handshake.rate.as_deref(),
                handshake.resume && !named,
                &mut out,
            )
        };
        let mut end = match opened {
            Ok(()) => None,
            Err(e) => Some(End::write_failed(&sid, &e)),
        };
        if end.is_none() {
            if let Err(e) = send_all(&mut ws, out).await {
                end = Some(End::client(e));
            }
        }
        let end = match end {
            Some(end) => end,
            None => c.run(&mut ws, &kick, &mut stop, gate.limits.idle).await,
        };
        c.close(&shared, &sid, end, &mut ws).await;
    }

    /// Logs the connection and greets a resuming client.
    fn open(
        &mut self,
        s: &mut Session,
        rate: Option<&str>,
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
            match rate
                .parse::<u32>()
                .ok()
                .filter(|r| is_supported_sample_rate(*r))
            {
                Some(r) => self.query_rate = Some(r),
                None => self.protocol_error(
                    s,
                    format!(
                        "URL rate \"{rate}\" is not a rate {}: ignored",
                        valid_rates()
                    ),
                )?,
            }
        }
        if self.resume {
            out.push(control_message(&Control::Resume {
                session: s.id.clone(),
                received: s.received,
            }));
        }
        Ok(())
    }

    /// Serves messages until the connection ends, or no message came for `idle`.
    async fn run<S>(
        &mut self,
        ws: &mut WebSocketStream<S>,
        kick: &Notify,
        stop: &mut watch::Receiver<bool>,
        idle: Duration,
    ) -> End
    where
        S: AsyncRead + AsyncWrite + Unpin,
    {
        let every = PING_EVERY.min(idle / 3).max(Duration::from_millis(100));
        let mut ping = tokio::time::interval_at(Instant::now() + every, every);
        let mut last_heard = Instant::now();
        let mut client_closed: Option<String> = None;
        if *stop.borrow() {
            return End::server("server shutting down", CloseCode::Away);
        }
        loop {
            let ack_due = self.ack_due;
            let answer_due = self.answering.as_ref().map(|a| a.next_at);
            let wake = tokio::select! {
                biased;
                _ = stop.changed() => Wake::Shutdown,
                _ = kick.notified() => Wake::TakenOver,
                _ = tokio::time::sleep_until(ack_due.unwrap_or_else(Instant::now)), if ack_due.is_some() => Wake::AckDue,
                _ = tokio::time::sleep_until(answer_due.unwrap_or_else(Instant::now)), if answer_due.is_some() => Wake::AnswerDue,
                _ = tokio::time::sleep_until(last_heard + idle) => Wake::Idle,
                _ = ping.tick() => Wake::Ping,
                m = ws.next() => Wake::Message(m),
            };
            let answer_turn = matches!(wake, Wake::AnswerDue);
            let message = match wake {
                Wake::Shutdown => return End::server("server shutting down", CloseCode::Away),
                Wake::TakenOver => return End::taken_over(),
                Wake::Idle => {
                    return End::server(
                        format!("no message for {} s", idle.as_secs_f64()),
                        CloseCode::Away,
                    );
                }
                Wake::Ping => {
                    if let Err(e) = send_all(ws, vec![Message::Ping(Default::default())]).await {
                        return End::client(e);
                    }
                    continue;
                }
                Wake::AckDue | Wake::AnswerDue => None,
                Wake::Message(None) => {
                    return End::client(client_closed.unwrap_or_else(|| "connection lost".into()))
                }
                Wake::Message(Some(Err(e))) => {
                    return End::client(
                        client_closed.unwrap_or_else(|| format!("connection lost: {e}")),
                    )
                }
                Wake::Message(Some(Ok(m))) => {
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
                        // Only data is activity: pings and pongs keep a connection's
                        // socket alive, not its stream.
                        Message::Binary(_) | Message::Text(_) => {
                            last_heard = Instant::now();
                            Some(m)
                        }
                        _ => continue,
                    }
                }
            };
            let session = self.session.clone();
            let mut s = session.lock().await;
            if s.owner != self.id {
                return End::taken_over();
            }
            let mut out = Vec::new();
            let handled = match &message {
                Some(Message::Binary(bytes)) => self.on_binary(&mut s, bytes, &mut out),
                Some(Message::Text(text)) => self.on_text(&mut s, text.as_str(), &mut out),
                None if answer_turn => self.answer_due(&mut s, &mut out),
                _ => {
                    self.ack(&s, &mut out);
                    Ok(())
                }
            };
            if let Err(e) = handled {
                return End::write_failed(&s.id, &e);
            }
            if let Some(reason) = self.refused.take() {
                return End::server(reason, CloseCode::Policy);
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
    async fn close<S>(mut self, shared: &Shared, sid: &str, end: End, ws: &mut WebSocketStream<S>)
    where
        S: AsyncRead + AsyncWrite + Unpin,
    {
        let report = {
            let session = self.session.clone();
            let mut s = session.lock().await;
            let received = s.received;
            self.answer_interrupted(&mut s);
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
        shared.report(&report);
        let frame = end.close.map(|code| CloseFrame {
            code,
            reason: close_reason(&end.reason).into(),
        });
        let _ = tokio::time::timeout(CLOSE_TIMEOUT, ws.close(frame)).await;
    }

    /// Acknowledges what the stream holds (resume extension only).
    pub(super) fn ack(&mut self, s: &Session, out: &mut Vec<Message>) {
        if !self.resume {
            return;
        }
        out.push(control_message(&Control::Ack {
            received: s.received,
        }));
        self.last_ack = s.received;
        self.ack_due = None;
    }

    /// Logs what the client did wrong; the stream goes on.
    pub(super) fn protocol_error(
        &mut self,
        s: &mut Session,
        message: impl Into<String>,
    ) -> std::io::Result<()> {
        s.log(json!({"type": "protocol_error", "message": message.into()}))
    }

    /// A protocol error logged only the first time `key` comes up in this connection.
    pub(super) fn warn_once(
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

/// The text message of a control message of the resume extension.
fn control_message(c: &Control) -> Message {
    // Serialising these plain structs cannot fail; an empty message would be harmless.
    Message::text(serde_json::to_string(c).unwrap_or_default())
}

/// `reason` cut to what a Close frame holds (123 bytes, at a character boundary).
fn close_reason(reason: &str) -> String {
    let mut end = reason.len().min(MAX_CLOSE_REASON);
    while !reason.is_char_boundary(end) {
        end -= 1;
    }
    reason[..end].to_string()
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
    fn close_reasons_fit_a_control_frame() {
        assert_eq!(close_reason("short"), "short");
        let long = "é".repeat(100);
        let cut = close_reason(&long);
        assert!(cut.len() <= 123 && long.starts_with(&cut));
        assert_eq!(cut.len(), 122);
    }
}
