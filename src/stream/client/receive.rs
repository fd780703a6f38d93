//! What the receiver says: its resume offer, acknowledgements, other messages (handed
//! to the caller) and its close, which decides between reconnecting and giving up.

use std::sync::atomic::Ordering::Relaxed;
use std::time::{Duration, Instant};

use futures_util::StreamExt;
use tokio::time::timeout;
use tokio_tungstenite::tungstenite::protocol::CloseFrame;
use tokio_tungstenite::tungstenite::{Error as WsError, Message};

use super::super::buffer::Item;
use super::super::protocol::Control;
use super::super::retry::{close_is_final, describe_close};
use super::super::StreamEvent;
use super::{Client, Outcome, Ws};

impl Client {
    /// One message from the receiver while streaming; `Some` when it ends the
    /// connection.
    pub(crate) fn on_message(&mut self, message: Message) -> Option<Outcome> {
        match message {
            Message::Text(t) => self.on_text(t.as_str()),
            Message::Close(frame) => return Some(self.closed(frame)),
            Message::Binary(_) | Message::Ping(_) | Message::Pong(_) | Message::Frame(_) => {}
        }
        None
    }

    /// What a close frame means: a policy or authentication refusal is final, anything
    /// else is a loss to recover from.
    pub(super) fn closed(&self, frame: Option<CloseFrame>) -> Outcome {
        let Some(f) = frame else {
            return Outcome::Lost("closed by the receiver".into());
        };
        let code = u16::from(f.code);
        let what = describe_close(code, f.reason.as_str());
        if close_is_final(code) {
            Outcome::Final(format!(
                "{} closed the connection with {what}",
                self.config.url_for_display()
            ))
        } else {
            Outcome::Lost(format!("closed by the receiver: {what}"))
        }
    }

    /// A send failed: the receiver may have closed the connection with a reason just
    /// before (a refusal right after the handshake), so what it sent is read first.
    pub(super) async fn lost_while_sending(&mut self, ws: &mut Ws, error: WsError) -> Outcome {
        let read = timeout(Duration::from_millis(250), async {
            while let Some(Ok(m)) = ws.next().await {
                if let Some(outcome) = self.on_message(m) {
                    return Some(outcome);
                }
            }
            None
        });
        match read.await {
            Ok(Some(outcome)) => outcome,
            _ => Outcome::Lost(error.to_string()),
        }
    }

    /// A connection's first text message: a resume offer (what the receiver holds), or
    /// anything else, which says it does not acknowledge.
    pub(crate) fn first_message(&mut self, text: &str) -> Option<u64> {
        if let Ok(Control::Resume { received, .. }) = serde_json::from_str(text) {
            return Some(received);
        }
        // A receiver with the extension speaks it first: this one does not (an OpenAI
        // server opens with session.created).
        self.server_message(text);
        None
    }

    /// Where a new connection's audio starts, given what its receiver says it holds
    /// (`None`: it does not acknowledge).
    pub(crate) fn resume_from(&mut self, received: Option<u64>) -> u64 {
        self.last_acknowledged = received.is_some();
        match received {
            Some(n) => {
                // A receiver cannot hold more than was ever produced.
                let n = n.min(self.buffer.end());
                self.buffer.ack(n);
                let from = self.buffer.rewind(n);
                if from > n {
                    self.account_dropped(from - n, "the buffer overflowed during the outage");
                }
                self.shared.acked_samples.store(n, Relaxed);
                from
            }
            None => {
                // No acknowledgements: resend the current utterance, since what of it
                // arrived is unknown; otherwise go on from what was never sent.
                let unsent = self.first_unsent();
                let from = self.utterance_start.map_or(unsent, |u| u.min(unsent));
                self.buffer.rewind(from)
            }
        }
    }

    /// Takes everything waiting to be sent as sent, without a socket: the message
    /// handling can then be exercised without a network (see
    /// [`super::handle_server_message`]).
    pub(crate) fn send_offline(&mut self) {
        while let Some((item, _)) = self.buffer.next() {
            if let Item::Audio { start, samples } = item {
                let end = start + samples.len() as u64;
                self.shared.samples_sent_position.fetch_max(end, Relaxed);
                self.sent_marks.push_back((end, Instant::now()));
            }
        }
    }

    fn first_unsent(&self) -> u64 {
        // The buffer's cursor is at the first unsent item after a connection is lost.
        self.shared.samples_sent_position.load(Relaxed)
    }

    pub(super) fn on_text(&mut self, text: &str) {
        match serde_json::from_str::<Control>(text) {
            Ok(Control::Ack { received }) => {
                // A receiver cannot hold more than was sent.
                let received = received.min(self.shared.samples_sent_position.load(Relaxed));
                self.buffer.ack(received);
                self.shared.acked_samples.store(received, Relaxed);
                let mut last = None;
                while let Some((end, t)) = self.sent_marks.front() {
                    if *end > received {
                        break;
                    }
                    last = Some(*t);
                    self.sent_marks.pop_front();
                }
                if let Some(t) = last {
                    let ms = t.elapsed().as_secs_f64() * 1000.0;
                    self.rtt_total_ms += ms;
                    self.rtt_count += 1;
                    self.shared
                        .ack_rtt_us_last
                        .store((ms * 1000.0) as u64, Relaxed);
                    self.shared.ack_rtt_us_mean.store(
                        (self.rtt_total_ms / self.rtt_count as f64 * 1000.0) as u64,
                        Relaxed,
                    );
                }
            }
            _ => {
                if !self.on_response_event(text) {
                    self.server_message(text);
                }
            }
        }
    }

    fn server_message(&self, text: &str) {
        self.shared.server_messages.fetch_add(1, Relaxed);
        self.event(StreamEvent::ServerMessage(text.to_string()));
    }
}
