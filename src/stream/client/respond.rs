//! The backend's spoken answer (OpenAI protocol, with a player): its audio decoded and
//! handed to the caller's [`ResponsePlayer`](crate::pipeline::ResponsePlayer), its
//! start and end followed, and the user's interruption (barge-in).

use std::sync::atomic::Ordering::Relaxed;

use serde_json::Value;

use super::super::protocol::{self, Protocol};
use super::super::{ResponseStatus, StreamEvent};
use super::Client;
use crate::dsp::convert::i16_to_f32;

/// The answer in progress on the current connection.
#[derive(Debug, Default)]
pub(crate) struct Response {
    /// Between `response.created` and `response.done`.
    active: bool,
    /// The user interrupted it: the rest of its audio is not played.
    muted: bool,
    /// `response.cancel` was sent for it.
    cancel_sent: bool,
    /// Samples of it handed to the player.
    samples: u64,
}

/// Why an answer's audio message could not be played.
#[derive(Debug, PartialEq)]
enum BadAudio {
    NoDelta,
    NotBase64,
    OddBytes(usize),
}

impl std::fmt::Display for BadAudio {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            BadAudio::NoDelta => f.write_str("it has no \"delta\" string"),
            BadAudio::NotBase64 => f.write_str("its \"delta\" is not base64"),
            BadAudio::OddBytes(n) => {
                write!(f, "its \"delta\" holds {n} bytes, not whole PCM16 samples")
            }
        }
    }
}

/// The samples of an audio message's `delta`: base64 (standard, padded) of PCM16
/// little-endian, a whole number of samples.
fn decode_delta(event: &Value) -> Result<Vec<i16>, BadAudio> {
    use base64::Engine as _;
    let delta = event
        .get("delta")
        .and_then(Value::as_str)
        .ok_or(BadAudio::NoDelta)?;
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(delta)
        .map_err(|_| BadAudio::NotBase64)?;
    if bytes.len() % 2 != 0 {
        return Err(BadAudio::OddBytes(bytes.len()));
    }
    Ok(protocol::pcm16_from_bytes(&bytes))
}

impl Client {
    /// A server message about the answer, if there is a player: `true` when it was the
    /// answer's audio (handed to the player, not to the caller as a message).
    pub(super) fn on_response_event(&mut self, text: &str) -> bool {
        if self.player.is_none() || self.config.protocol != Protocol::Openai {
            return false;
        }
        // Only messages that can be about the answer are parsed twice.
        if !text.contains("\"response.") {
            return false;
        }
        let Ok(event) = serde_json::from_str::<Value>(text) else {
            return false;
        };
        match event.get("type").and_then(Value::as_str) {
            Some("response.output_audio.delta" | "response.audio.delta") => {
                self.shared.server_messages.fetch_add(1, Relaxed);
                self.play(&event);
                true
            }
            Some("response.created") => {
                self.response = Response {
                    active: true,
                    ..Response::default()
                };
                self.shared.responses.fetch_add(1, Relaxed);
                self.event(StreamEvent::ResponseStarted);
                false
            }
            Some("response.done") => {
                let status = event.pointer("/response/status").and_then(Value::as_str);
                self.response.active = false;
                self.event(StreamEvent::ResponseFinished {
                    status: ResponseStatus::from_name(status),
                    samples: self.response.samples,
                });
                false
            }
            _ => false,
        }
    }

    /// Hands an audio message's samples to the player (unless the user interrupted).
    fn play(&mut self, event: &Value) {
        let samples = match decode_delta(event) {
            Ok(s) => s,
            Err(why) => {
                self.shared.bad_response_audio.fetch_add(1, Relaxed);
                if !std::mem::replace(&mut self.warned_bad_audio, true) {
                    self.event(StreamEvent::Warning(format!(
                        "an audio message of the backend's answer was skipped: {why} \
                         (further ones are only counted)"
                    )));
                }
                return;
            }
        };
        let n = samples.len() as u64;
        if self.response.muted {
            self.shared.response_samples_discarded.fetch_add(n, Relaxed);
            return;
        }
        let Some(player) = self.player.as_mut() else {
            return;
        };
        let audio: Vec<f32> = samples.iter().map(|&s| i16_to_f32(s)).collect();
        let accepted = player.play(&audio, self.rate).min(audio.len()) as u64;
        self.response.samples += n;
        self.shared.response_samples.fetch_add(n, Relaxed);
        self.shared
            .response_samples_refused
            .fetch_add(n - accepted, Relaxed);
    }

    /// The VAD heard speech start: with barge-in, a playing answer is cancelled.
    pub(super) fn barge_in(&mut self) {
        if !self.config.barge_in {
            return;
        }
        let Some(player) = self.player.as_mut() else {
            return;
        };
        if !player.is_playing() {
            return;
        }
        player.cancel();
        self.shared.barge_ins.fetch_add(1, Relaxed);
        let cancel = self.config.protocol == Protocol::Openai
            && self.response.active
            && !self.response.cancel_sent;
        if cancel {
            self.urgent.push(protocol::openai_response_cancel());
            self.response.cancel_sent = true;
        }
        // What still comes of this answer is not played.
        self.response.muted = self.response.active;
        self.event(StreamEvent::ResponseCancelled {
            samples: self.response.samples,
            cancel_sent: cancel,
        });
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn bad_audio_is_told_apart() {
        assert_eq!(
            decode_delta(&json!({"delta": "AAEC/w=="})),
            Ok(vec![256, -254])
        );
        assert_eq!(decode_delta(&json!({"delta": ""})), Ok(vec![]));
        assert_eq!(decode_delta(&json!({})), Err(BadAudio::NoDelta));
        assert_eq!(decode_delta(&json!({"delta": 5})), Err(BadAudio::NoDelta));
        assert_eq!(
            decode_delta(&json!({"delta": "%%%"})),
            Err(BadAudio::NotBase64)
        );
        assert_eq!(
            decode_delta(&json!({"delta": "AAEC"})),
            Err(BadAudio::OddBytes(3))
        );
    }
}
