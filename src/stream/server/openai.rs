//! The `openai` protocol: the client events of the OpenAI Realtime API, answered as a
//! Realtime server would answer them, minimally (`session.updated`,
//! `input_audio_buffer.committed` or its `error`, `input_audio_buffer.cleared`).

use std::sync::atomic::{AtomicU64, Ordering};

use serde_json::{json, Map, Value};
use tokio_tungstenite::tungstenite::Message;

use super::connection::Connection;
use super::log::Event;
use super::session::{unix_ms, Session};
use crate::limits::is_supported_sample_rate;
use crate::stream::protocol::{pcm16_from_base64, Protocol, OPENAI_MIN_COMMIT_MS, OPENAI_RATE};

impl Connection {
    /// `input_audio_buffer.append`: its `audio` (if valid base64) goes into the stream.
    pub(super) fn on_append(
        &mut self,
        s: &mut Session,
        audio: Option<&str>,
        event_id: Value,
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
        match audio.and_then(pcm16_from_base64) {
            Some(samples) => self.on_audio(s, &samples, out),
            None => {
                self.protocol_error(s, "input_audio_buffer.append without valid base64 audio")?;
                out.push(openai_error(
                    "invalid_value",
                    "Invalid 'audio'. Expected base64-encoded audio bytes.",
                    event_id,
                ));
                Ok(())
            }
        }
    }

    /// `session.update` (`message`): logged, its input format checked (the stream takes
    /// the rate it declares), and echoed in `session.updated`.
    pub(super) fn on_session_update(
        &mut self,
        s: &mut Session,
        message: Value,
        session: Option<Value>,
        out: &mut Vec<Message>,
    ) -> std::io::Result<()> {
        s.log_client(&message, None, Map::new())?;
        let mut problems = Vec::new();
        let mut rate = None;
        let format = session
            .as_ref()
            .and_then(|session| session.pointer("/audio/input/format"));
        if let Some(format) = format {
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
                    .filter(|r| is_supported_sample_rate(*r))
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
        out.push(json_message(&json!({
            "type": "session.updated",
            "event_id": new_id("event"),
            "session": session.unwrap_or_else(|| json!({})),
        })));
        Ok(())
    }

    /// The stream offset an OpenAI buffer event (`kind`) applies at, or `None` when the
    /// same event at the same offset was handled before: a resend after a reconnect.
    pub(super) fn buffer_event_at(
        &mut self,
        s: &mut Session,
        kind: Event,
    ) -> std::io::Result<Option<u64>> {
        if self.protocol.is_none() {
            self.detect(s, Protocol::Openai, None, false)?;
        }
        let at = self.position(s);
        let first_time = s.seen.insert((kind, at));
        Ok((first_time || !self.resume).then_some(at))
    }

    /// `input_audio_buffer.commit` (`message`): an item of the audio since the last
    /// commit or clear, or an error when that is less than OpenAI takes.
    pub(super) fn on_commit(
        &mut self,
        s: &mut Session,
        message: Value,
        event_id: Value,
        out: &mut Vec<Message>,
    ) -> std::io::Result<()> {
        let Some(at) = self.buffer_event_at(s, Event::Commit)? else {
            return Ok(());
        };
        let rate = u64::from(s.rate.unwrap_or(Protocol::Openai.default_rate()));
        let buffered = at.saturating_sub(s.commit_mark);
        let event = Some((Event::Commit, Some(at)));
        let mut about = Map::new();
        if buffered * 1000 < rate * u64::from(OPENAI_MIN_COMMIT_MS) {
            about.insert("error".into(), json!("input_audio_buffer_commit_empty"));
            s.log_client(&message, event, about)?;
            let ms = buffered as f64 * 1000.0 / rate as f64;
            out.push(openai_error(
                "input_audio_buffer_commit_empty",
                &format!(
                    "Error committing input audio buffer: buffer too small. Expected at least {OPENAI_MIN_COMMIT_MS}ms of audio, but buffer only has {ms:.2}ms of audio."
                ),
                event_id,
            ));
        } else {
            let item = new_id("item");
            about.insert("item_id".into(), json!(item));
            s.log_client(&message, event, about)?;
            out.push(json_message(&json!({
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

    /// `input_audio_buffer.clear` (`message`): the next commit counts from here.
    pub(super) fn on_clear(
        &mut self,
        s: &mut Session,
        message: Value,
        out: &mut Vec<Message>,
    ) -> std::io::Result<()> {
        let Some(at) = self.buffer_event_at(s, Event::Clear)? else {
            return Ok(());
        };
        s.log_client(&message, Some((Event::Clear, Some(at))), Map::new())?;
        s.commit_mark = at;
        out.push(json_message(&json!({
            "type": "input_audio_buffer.cleared",
            "event_id": new_id("event"),
        })));
        Ok(())
    }
}

/// A fresh id for server events and items, e.g. `event_18f3a2b4c5d0007`.
pub(super) fn new_id(prefix: &str) -> String {
    static NEXT: AtomicU64 = AtomicU64::new(0);
    let n = NEXT.fetch_add(1, Ordering::Relaxed);
    format!("{prefix}_{:x}{n:04x}", unix_ms())
}

/// The text message of a server event.
pub(super) fn json_message(event: &Value) -> Message {
    Message::text(event.to_string())
}

/// An OpenAI `error` server event about the client event whose id is `event_id`.
pub(super) fn openai_error(code: &str, message: &str, event_id: Value) -> Message {
    json_message(&json!({
        "type": "error",
        "event_id": new_id("event"),
        "error": {
            "type": "invalid_request_error",
            "code": code,
            "message": message,
            "param": null,
            "event_id": event_id,
        }
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_fresh() {
        let a = new_id("item");
        let b = new_id("item");
        assert!(a.starts_with("item_") && a != b);
    }
}
