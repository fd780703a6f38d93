//! A client's text messages: JSON objects told apart by their `"type"`, each handed to
//! what handles it.

use serde::de::{DeserializeOwned, Deserializer};
use serde::Deserialize;
use serde_json::{Map, Value};
use tokio_tungstenite::tungstenite::Message;

use super::connection::Connection;
use super::log::Event;
use super::session::Session;

/// A client's text message, by its `"type"`: the events of both protocols and of the
/// resume extension, and any other.
///
/// The fields are those of [`Control`](crate::stream::protocol::Control) and of the OpenAI
/// client events, but each is `None` when it is missing or of the wrong type: a message
/// is known by its type alone, so that the receiver can log it and say which field is
/// wrong, where a strict parse would make it no message at all.
#[derive(Debug, PartialEq, Deserialize)]
#[serde(tag = "type")]
pub(super) enum ClientMessage {
    /// Raw: opens a connection's audio.
    #[serde(rename = "start")]
    Start {
        /// Sample rate, Hz.
        #[serde(default, deserialize_with = "lenient")]
        rate: Option<u32>,
        /// `pcm_s16le`, or the client sends what is not taken.
        #[serde(default, deserialize_with = "lenient")]
        encoding: Option<String>,
        /// 1, or the client sends what is not taken.
        #[serde(default, deserialize_with = "lenient")]
        channels: Option<u16>,
        /// Stream offset of the connection's first sample.
        #[serde(default, deserialize_with = "lenient")]
        sample: Option<u64>,
    },
    /// Raw: the VAD heard speech begin.
    #[serde(rename = "speech_started")]
    SpeechStarted {
        /// Stream sample offset.
        #[serde(default, deserialize_with = "lenient")]
        sample: Option<u64>,
    },
    /// Raw: the VAD heard speech end.
    #[serde(rename = "speech_stopped")]
    SpeechStopped {
        /// Stream sample offset.
        #[serde(default, deserialize_with = "lenient")]
        sample: Option<u64>,
    },
    /// Raw: the stream ends.
    #[serde(rename = "stop")]
    Stop {
        /// Samples in the whole stream.
        #[serde(default, deserialize_with = "lenient")]
        samples: Option<u64>,
    },
    /// Resume extension: where the connection's audio starts.
    #[serde(rename = "clearvox.resume_from")]
    ResumeFrom {
        /// Stream sample offset.
        #[serde(default, deserialize_with = "lenient")]
        sample: Option<u64>,
    },
    /// The receiver's greeting, sent by a client.
    #[serde(rename = "clearvox.resume")]
    Resume,
    /// The receiver's acknowledgement, sent by a client.
    #[serde(rename = "clearvox.ack")]
    Ack,
    /// OpenAI: the session's settings; only the input format matters here.
    #[serde(rename = "session.update")]
    SessionUpdate {
        /// The settings, echoed in `session.updated` (`null` too, when sent so).
        #[serde(default, deserialize_with = "present")]
        session: Option<Value>,
    },
    /// OpenAI: audio.
    #[serde(rename = "input_audio_buffer.append")]
    Append {
        /// Base64 of PCM16 little-endian.
        #[serde(default, deserialize_with = "lenient")]
        audio: Option<String>,
        /// The client's id of the event, echoed in an error about it.
        #[serde(default)]
        event_id: Value,
    },
    /// OpenAI: the audio since the last commit or clear is an item.
    #[serde(rename = "input_audio_buffer.commit")]
    Commit {
        /// The client's id of the event, echoed in an error about it.
        #[serde(default)]
        event_id: Value,
    },
    /// OpenAI: the audio since the last commit or clear is dropped.
    #[serde(rename = "input_audio_buffer.clear")]
    Clear,
    /// OpenAI: answer (with `--respond-with`).
    #[serde(rename = "response.create")]
    ResponseCreate {
        /// The client's id of the event, echoed in an error about it.
        #[serde(default)]
        event_id: Value,
    },
    /// OpenAI: stop the answer in progress (barge-in).
    #[serde(rename = "response.cancel")]
    ResponseCancel {
        /// The client's id of the event, echoed in an error about it.
        #[serde(default)]
        event_id: Value,
    },
    /// A type the receiver does not know: logged, nothing more.
    #[serde(other)]
    Other,
}

impl ClientMessage {
    /// `value` as a client message, if it is a JSON object whose `type` is a string.
    pub(super) fn parse(value: &Value) -> Option<ClientMessage> {
        // Checked first: serde would take a number as a variant's index.
        value.get("type")?.as_str()?;
        ClientMessage::deserialize(value).ok()
    }
}

/// Whether `text` is an `input_audio_buffer.append` with its audio: taken even when the
/// stream's log is full (a bad one is not, as it would log a protocol error).
fn is_audio(text: &str) -> bool {
    serde_json::from_str::<Value>(text)
        .ok()
        .and_then(|v| ClientMessage::parse(&v))
        .is_some_and(|m| {
            matches!(m, ClientMessage::Append { audio: Some(a), .. }
                if crate::stream::protocol::pcm16_from_base64(&a).is_some())
        })
}

/// A field that is `None` when it is not a `T`, rather than an error that would make the
/// whole message unknown (with `#[serde(default)]`: also when it is missing).
fn lenient<'de, D, T>(field: D) -> Result<Option<T>, D::Error>
where
    D: Deserializer<'de>,
    T: DeserializeOwned,
{
    let value = Value::deserialize(field)?;
    Ok(T::deserialize(value).ok())
}

/// A field that is `Some` whenever it is there, `null` included (with
/// `#[serde(default)]`: `None` when it is missing).
fn present<'de, D: Deserializer<'de>>(field: D) -> Result<Option<Value>, D::Error> {
    Value::deserialize(field).map(Some)
}

impl Connection {
    /// A text message: parsed, then handled by its type; what is not JSON or has no
    /// type is a protocol error.
    pub(super) fn on_text(
        &mut self,
        s: &mut Session,
        text: &str,
        out: &mut Vec<Message>,
    ) -> std::io::Result<()> {
        if let Some(full) = s.log_full() {
            // Audio still goes on; anything that would write to the log is refused.
            if !is_audio(text) {
                self.refused = Some(full);
                return Ok(());
            }
        }
        s.touch()?;
        let value: Value = match serde_json::from_str(text) {
            Ok(v) => v,
            Err(e) => {
                return self.protocol_error(
                    s,
                    format!("a text message of {} bytes is not JSON: {e}", text.len()),
                )
            }
        };
        let Some(message) = ClientMessage::parse(&value) else {
            return self.protocol_error(
                s,
                "a text message that is not a JSON object with a \"type\"",
            );
        };
        match message {
            ClientMessage::Start {
                rate: Some(rate),
                encoding: Some(encoding),
                channels: Some(channels),
                sample: Some(sample),
            } => self.on_start(s, value, rate, &encoding, channels, sample),
            ClientMessage::Start { .. } => self.on_invalid_start(s, value),
            ClientMessage::SpeechStarted { sample } => {
                self.on_speech(s, Event::SpeechStarted, value, sample)
            }
            ClientMessage::SpeechStopped { sample } => {
                self.on_speech(s, Event::SpeechStopped, value, sample)
            }
            ClientMessage::Stop { samples } => self.on_stop(s, value, samples, out),
            ClientMessage::ResumeFrom { sample } => self.on_resume_from(s, value, sample),
            ClientMessage::Resume => self.on_receivers_message(s, value, "clearvox.resume"),
            ClientMessage::Ack => self.on_receivers_message(s, value, "clearvox.ack"),
            ClientMessage::SessionUpdate { session } => {
                self.on_session_update(s, value, session, out)
            }
            ClientMessage::Append { audio, event_id } => {
                self.on_append(s, audio.as_deref(), event_id, out)
            }
            ClientMessage::Commit { event_id } => self.on_commit(s, value, event_id, out),
            ClientMessage::Clear => self.on_clear(s, value, out),
            ClientMessage::ResponseCreate { event_id } => {
                self.on_response_create(s, value, event_id, out)
            }
            ClientMessage::ResponseCancel { event_id } => {
                self.on_response_cancel(s, value, event_id, out)
            }
            ClientMessage::Other => s.log_client(&value, None, Map::new()),
        }
    }

    /// A message only the receiver sends (`kind`), sent by the client: logged, and a
    /// protocol error.
    fn on_receivers_message(
        &mut self,
        s: &mut Session,
        message: Value,
        kind: &str,
    ) -> std::io::Result<()> {
        s.log_client(&message, None, Map::new())?;
        self.protocol_error(
            s,
            format!("{kind} is the receiver's message, not the client's"),
        )
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn parse(v: Value) -> Option<ClientMessage> {
        ClientMessage::parse(&v)
    }

    #[test]
    fn messages_are_known_by_their_type_whatever_their_fields() {
        assert_eq!(
            parse(
                json!({"type": "start", "rate": 16000, "encoding": "pcm_s16le", "channels": 1, "sample": 5})
            ),
            Some(ClientMessage::Start {
                rate: Some(16_000),
                encoding: Some("pcm_s16le".into()),
                channels: Some(1),
                sample: Some(5),
            })
        );
        assert_eq!(
            parse(json!({"type": "start", "rate": "fast", "channels": 70000, "sample": -1})),
            Some(ClientMessage::Start {
                rate: None,
                encoding: None,
                channels: None,
                sample: None,
            })
        );
        assert_eq!(
            parse(json!({"type": "speech_started", "sample": 1.5})),
            Some(ClientMessage::SpeechStarted { sample: None })
        );
        assert_eq!(
            parse(json!({"type": "stop", "samples": 96000, "extra": true})),
            Some(ClientMessage::Stop {
                samples: Some(96_000)
            })
        );
        assert_eq!(
            parse(json!({"type": "clearvox.ack", "received": 5})),
            Some(ClientMessage::Ack)
        );
        assert_eq!(
            parse(json!({"type": "input_audio_buffer.append", "audio": 5, "event_id": 7})),
            Some(ClientMessage::Append {
                audio: None,
                event_id: json!(7)
            })
        );
        assert_eq!(
            parse(json!({"type": "input_audio_buffer.commit"})),
            Some(ClientMessage::Commit {
                event_id: Value::Null
            })
        );
    }

    #[test]
    fn a_null_session_is_told_from_a_missing_one() {
        assert_eq!(
            parse(json!({"type": "session.update", "session": null})),
            Some(ClientMessage::SessionUpdate {
                session: Some(Value::Null)
            })
        );
        assert_eq!(
            parse(json!({"type": "session.update"})),
            Some(ClientMessage::SessionUpdate { session: None })
        );
    }

    #[test]
    fn other_types_are_other_and_a_type_must_be_a_string() {
        assert_eq!(
            parse(json!({"type": "conversation.item.create", "item": {}})),
            Some(ClientMessage::Other)
        );
        assert_eq!(
            parse(json!({"type": "response.cancel", "event_id": "e1"})),
            Some(ClientMessage::ResponseCancel {
                event_id: json!("e1")
            })
        );
        assert_eq!(parse(json!({"type": 0, "sample": 1})), None);
        assert_eq!(parse(json!({"type": null})), None);
        assert_eq!(parse(json!({"sample": 1})), None);
        assert_eq!(parse(json!([1, 2])), None);
        assert_eq!(parse(json!("start")), None);
    }
}
