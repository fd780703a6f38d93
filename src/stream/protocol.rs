//! What travels on the WebSocket: the two protocols and the resume extension.
//!
//! # `raw`
//!
//! Binary messages of PCM16 little-endian mono at the stream's rate (default 16 kHz),
//! one packet (default 20 ms) per message, and nothing else: the shape most streaming
//! speech-to-text services take. With `events`, JSON text messages go along, in stream
//! order with the audio:
//!
//! ```json
//! {"type":"start","rate":16000,"encoding":"pcm_s16le","channels":1,"sample":0}
//! {"type":"speech_started","sample":20800}
//! {"type":"speech_stopped","sample":71360}
//! {"type":"stop","samples":96000}
//! ```
//!
//! `start` opens every connection (`sample`: the stream offset its audio starts at),
//! `stop` ends the stream (`samples`: its length); the speech events carry the stream
//! sample offset of the VAD decision (a start includes the VAD's pre-roll). A receiver
//! that does not get `start` takes the rate from the URL's `rate` query parameter.
//!
//! # `openai`
//!
//! The client events of the OpenAI Realtime API (generally available version), audio as
//! PCM16 at 24 kHz:
//!
//! ```json
//! {"type":"session.update","session":{"type":"realtime","audio":{"input":{"format":{"type":"audio/pcm","rate":24000},"turn_detection":null}}}}
//! {"type":"input_audio_buffer.append","audio":"<base64 of PCM16 LE>"}
//! {"type":"input_audio_buffer.commit"}
//! {"type":"input_audio_buffer.clear"}
//! ```
//!
//! `session.update` opens every connection; with client-side turn detection it sets
//! `turn_detection` to `null` and the client commits at each `SpeechEnd` (never fewer
//! than 100 ms of audio appended since the last commit or clear); with server turn
//! detection it asks for `{"type":"server_vad"}` and never commits. Server events are
//! handed to the caller as they come.
//!
//! # The resume extension (both protocols, opt-in)
//!
//! So that a dropped connection loses nothing and duplicates nothing:
//!
//! 1. The client's handshake carries `X-Clearvox-Session: <id>` (a random 32-hex-digit
//!    stream identifier, the same for every connection of one stream) and
//!    `X-Clearvox-Resume: 1`.
//! 2. A receiver that supports it sends, as its first message, text
//!    `{"type":"clearvox.resume","session":"<id>","received":N}`: it holds the stream's
//!    first `N` samples (0 for a new stream).
//! 3. The client answers with `{"type":"clearvox.resume_from","sample":S}`, `S >= N`, and
//!    then sends the stream from `S` on. `S > N` only when the client had to drop audio
//!    (its buffer overflowed during the outage): `[N, S)` is lost, and counted as dropped
//!    by both sides.
//! 4. While audio arrives the receiver acknowledges, at least every 100 ms of audio and
//!    at most every 20 ms: `{"type":"clearvox.ack","received":N}`. The client frees what is
//!    acknowledged, and measures the round trip.
//!
//! Events are resent with the audio they follow; a receiver ignores an event it already
//! has (same type and sample). A receiver that opens with any other message, or says
//! nothing for 300 ms after the handshake, does not acknowledge: the client then, after a reconnect,
//! replays the current utterance (from its `SpeechStart`) rather than nothing, since it
//! cannot know what arrived.

use serde::{Deserialize, Serialize};

/// Which protocol a stream speaks.
///
/// # Examples
///
/// ```
/// use clearvox::stream::Protocol;
///
/// let p: Protocol = "openai".parse()?;
/// assert_eq!(p.default_rate(), 24_000);
/// assert_eq!(p.to_string(), "openai");
/// assert!("sip".parse::<Protocol>().is_err());
/// # Ok::<(), String>(())
/// ```
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Protocol {
    /// Binary PCM16 messages (and optional JSON events).
    #[default]
    Raw,
    /// OpenAI Realtime client events.
    Openai,
}

impl Protocol {
    /// The rate a backend of this protocol takes unless told otherwise, Hz.
    pub fn default_rate(self) -> u32 {
        match self {
            Protocol::Raw => 16_000,
            Protocol::Openai => OPENAI_RATE,
        }
    }
}

/// The protocol's name, as on the command line, in the receiver's log and in JSON.
impl std::fmt::Display for Protocol {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Protocol::Raw => "raw",
            Protocol::Openai => "openai",
        })
    }
}

impl std::str::FromStr for Protocol {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "raw" => Ok(Protocol::Raw),
            "openai" => Ok(Protocol::Openai),
            other => Err(format!("unknown protocol '{other}': choose raw or openai")),
        }
    }
}

/// The only input rate of the OpenAI Realtime API, Hz.
pub const OPENAI_RATE: u32 = 24_000;
/// Fewest milliseconds of audio OpenAI accepts in a commit.
pub const OPENAI_MIN_COMMIT_MS: u32 = 100;

/// Handshake header naming the stream (resume extension).
pub const SESSION_HEADER: &str = "x-clearvox-session";
/// Handshake header asking for the resume extension.
pub const RESUME_HEADER: &str = "x-clearvox-resume";

/// JSON text messages of the `raw` protocol's events and of the resume extension, in
/// both directions.
///
/// # Examples
///
/// ```
/// use clearvox::stream::protocol::Control;
///
/// let ack: Control = serde_json::from_str(r#"{"type":"clearvox.ack","received":4800}"#)?;
/// assert_eq!(ack, Control::Ack { received: 4800 });
/// let start = Control::SpeechStarted { sample: 20_800 };
/// assert_eq!(serde_json::to_string(&start)?, r#"{"type":"speech_started","sample":20800}"#);
/// # Ok::<(), serde_json::Error>(())
/// ```
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type")]
pub enum Control {
    /// Opens a connection's audio (raw with events).
    #[serde(rename = "start")]
    Start {
        /// Sample rate, Hz.
        rate: u32,
        /// Always `pcm_s16le`.
        encoding: String,
        /// Always 1.
        channels: u16,
        /// Stream offset of the first sample this connection carries.
        sample: u64,
    },
    /// The VAD heard speech begin (raw with events).
    #[serde(rename = "speech_started")]
    SpeechStarted {
        /// Stream sample offset.
        sample: u64,
    },
    /// The VAD heard speech end (raw with events).
    #[serde(rename = "speech_stopped")]
    SpeechStopped {
        /// Stream sample offset.
        sample: u64,
    },
    /// The stream ends (raw with events).
    #[serde(rename = "stop")]
    Stop {
        /// Samples in the whole stream.
        samples: u64,
    },
    /// Receiver → client: what it already holds of the stream.
    #[serde(rename = "clearvox.resume")]
    Resume {
        /// The stream identifier.
        session: String,
        /// Samples held.
        received: u64,
    },
    /// Client → receiver: where this connection's audio starts.
    #[serde(rename = "clearvox.resume_from")]
    ResumeFrom {
        /// Stream sample offset.
        sample: u64,
    },
    /// Receiver → client: samples held so far.
    #[serde(rename = "clearvox.ack")]
    Ack {
        /// Samples held.
        received: u64,
    },
}

/// The `session.update` that opens an OpenAI connection.
pub fn openai_session_update(client_turn_detection: bool) -> serde_json::Value {
    let turn_detection = if client_turn_detection {
        serde_json::Value::Null
    } else {
        serde_json::json!({ "type": "server_vad" })
    };
    serde_json::json!({
        "type": "session.update",
        "session": {
            "type": "realtime",
            "audio": {
                "input": {
                    "format": { "type": "audio/pcm", "rate": OPENAI_RATE },
                    "turn_detection": turn_detection
                }
            }
        }
    })
}

/// An `input_audio_buffer.append` carrying `samples`.
pub fn openai_append(samples: &[i16]) -> String {
    use base64::Engine as _;
    let mut bytes = Vec::with_capacity(samples.len() * 2);
    for s in samples {
        bytes.extend_from_slice(&s.to_le_bytes());
    }
    let audio = base64::engine::general_purpose::STANDARD.encode(bytes);
    serde_json::json!({ "type": "input_audio_buffer.append", "audio": audio }).to_string()
}

/// `input_audio_buffer.commit`.
pub fn openai_commit() -> String {
    r#"{"type":"input_audio_buffer.commit"}"#.to_string()
}

/// `response.create`: asks the backend to answer (sent after each commit when the
/// client ends the turns and plays the answers).
pub fn openai_response_create() -> String {
    r#"{"type":"response.create"}"#.to_string()
}

/// `response.cancel`: the user interrupted the answer in progress (barge-in).
pub fn openai_response_cancel() -> String {
    r#"{"type":"response.cancel"}"#.to_string()
}

/// `input_audio_buffer.clear`.
pub fn openai_clear() -> String {
    r#"{"type":"input_audio_buffer.clear"}"#.to_string()
}

/// PCM16 samples of a binary message (little-endian; a trailing odd byte is ignored).
pub fn pcm16_from_bytes(bytes: &[u8]) -> Vec<i16> {
    bytes
        .chunks_exact(2)
        .map(|b| i16::from_le_bytes([b[0], b[1]]))
        .collect()
}

/// The binary message of PCM16 samples.
pub fn pcm16_to_bytes(samples: &[i16]) -> Vec<u8> {
    let mut bytes = Vec::with_capacity(samples.len() * 2);
    for s in samples {
        bytes.extend_from_slice(&s.to_le_bytes());
    }
    bytes
}

/// The samples of an `input_audio_buffer.append`, if `event` is one with valid base64.
pub fn openai_append_samples(event: &serde_json::Value) -> Option<Vec<i16>> {
    if event.get("type")?.as_str()? != "input_audio_buffer.append" {
        return None;
    }
    pcm16_from_base64(event.get("audio")?.as_str()?)
}

/// The samples of an `input_audio_buffer.append`'s `audio`, if it is valid base64
/// (standard alphabet, padded; a trailing odd byte is ignored).
pub fn pcm16_from_base64(audio: &str) -> Option<Vec<i16>> {
    use base64::Engine as _;
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(audio)
        .ok()?;
    Some(pcm16_from_bytes(&bytes))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn control_messages_have_their_documented_shape() {
        let m = Control::Ack { received: 480 };
        assert_eq!(
            serde_json::to_string(&m).unwrap(),
            r#"{"type":"clearvox.ack","received":480}"#
        );
        let back: Control =
            serde_json::from_str(r#"{"type":"speech_started","sample":5}"#).unwrap();
        assert_eq!(back, Control::SpeechStarted { sample: 5 });
    }

    #[test]
    fn protocol_names_are_the_same_everywhere() {
        for p in [Protocol::Raw, Protocol::Openai] {
            assert_eq!(p.to_string().parse::<Protocol>(), Ok(p));
            assert_eq!(serde_json::to_value(p).unwrap(), p.to_string());
        }
    }

    #[test]
    fn openai_events_round_trip() {
        let samples = [0i16, 1, -1, i16::MAX, i16::MIN];
        let text = openai_append(&samples);
        let v: serde_json::Value = serde_json::from_str(&text).unwrap();
        assert_eq!(openai_append_samples(&v).unwrap(), samples);
        assert_eq!(
            pcm16_from_base64(v["audio"].as_str().unwrap()).unwrap(),
            samples
        );
        assert_eq!(pcm16_from_base64("AAE="), Some(vec![256]));
        assert_eq!(pcm16_from_base64("%%"), None);
        let u = openai_session_update(true);
        assert!(u["session"]["audio"]["input"]["turn_detection"].is_null());
        assert_eq!(u["session"]["audio"]["input"]["format"]["rate"], 24_000);
        assert_eq!(
            openai_session_update(false)["session"]["audio"]["input"]["turn_detection"]["type"],
            "server_vad"
        );
    }
}
