//! The client's handling of what a receiver sends, reachable from bytes alone, so that a
//! fuzzer can drive it without a network.

use std::sync::mpsc::channel as std_channel;
use std::sync::Arc;

use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::protocol::CloseFrame;
use tokio_tungstenite::tungstenite::Message;

use super::client::{Client, Input, Outcome};
use super::protocol::Protocol;
use super::tls::{Destination, Scheme};
use super::{StreamConfig, StreamEvent, TurnDetection};

/// Feeds `data` to a client as a receiver's messages and returns what the client made
/// of them: the events it reported, then why the connection ended, if it did.
///
/// `data` is a sequence of messages, each a kind byte, a little-endian `u16` length
/// and that many bytes (cut short at the end of `data`). Kinds, by the byte's value
/// modulo 4: 0, the connection's first text message (a resume offer or anything else);
/// 1, a text message while streaming (not UTF-8: binary); 2, a binary message; 3, a
/// close frame (a `u16` code, then the reason). Before each message the client has
/// produced and sent 20 ms of audio, with a speech start and end along the way. An
/// OpenAI client (the first byte's high bit) plays the answers, with barge-in.
///
/// For fuzzing: not a stable interface.
#[doc(hidden)]
pub fn handle_server_message(data: &[u8]) -> (Vec<StreamEvent>, Option<String>) {
    let mut config = StreamConfig::new("ws://127.0.0.1/");
    let openai = data.first().is_some_and(|b| b & 0x80 != 0);
    if openai {
        config.protocol = Protocol::Openai;
        config.turn_detection = TurnDetection::Client;
        config.barge_in = true;
    } else {
        config.events = true;
    }
    config.buffer_s = 0.1;
    let (events_tx, events_rx) = std_channel();
    let (_input_tx, input_rx) = tokio::sync::mpsc::channel(1);
    let mut client = Client::new(
        config,
        None,
        Destination {
            scheme: Scheme::Plain,
            insecure: false,
        },
        None,
        "0".repeat(32),
        Arc::default(),
        events_tx,
        input_rx,
    );
    if openai {
        // The answer's audio is decoded and played too.
        client.player = Some(Box::new(Speaker::default()));
    }
    let mut ended = None;
    let mut rest = data;
    let mut step = 0u32;
    while rest.len() >= 3 && ended.is_none() {
        let kind = rest[0] & 3;
        let len = u16::from_le_bytes([rest[1], rest[2]]) as usize;
        let payload = &rest[3..(3 + len).min(rest.len())];
        rest = &rest[3 + payload.len()..];
        produce(&mut client, step);
        step += 1;
        client.send_offline();
        match kind {
            0 => {
                let received = std::str::from_utf8(payload)
                    .ok()
                    .and_then(|t| client.first_message(t));
                client.resume_from(received);
            }
            1 | 2 => {
                let message = match std::str::from_utf8(payload) {
                    Ok(t) if kind == 1 => Message::text(t),
                    _ => Message::binary(payload.to_vec()),
                };
                ended = client.on_message(message);
            }
            _ => {
                let frame = (payload.len() >= 2).then(|| CloseFrame {
                    code: CloseCode::from(u16::from_le_bytes([payload[0], payload[1]])),
                    reason: String::from_utf8_lossy(&payload[2..]).into_owned().into(),
                });
                ended = client.on_message(Message::Close(frame));
            }
        }
    }
    drop(client);
    let ended = ended.and_then(|o| match o {
        Outcome::Finished => None,
        Outcome::Lost(why) | Outcome::Final(why) => Some(why),
    });
    (events_rx.try_iter().collect(), ended)
}

/// A player that is playing from the first sample it is given until cancelled.
#[derive(Default)]
struct Speaker {
    queued: usize,
}

impl crate::pipeline::ResponsePlayer for Speaker {
    fn play(&mut self, samples: &[f32], _rate: u32) -> usize {
        self.queued = self.queued.saturating_add(samples.len());
        samples.len()
    }

    fn cancel(&mut self) {
        self.queued = 0;
    }

    fn is_playing(&self) -> bool {
        self.queued > 0
    }
}

/// 20 ms of a tone at 16 kHz, with a speech start at the second step and an end at the
/// fifth.
fn produce(client: &mut Client, step: u32) {
    use crate::dsp::vad::{VadEvent, VadEventKind};
    let samples: Vec<f32> = (0..320)
        .map(|i| 0.1 * ((step * 320 + i) as f32 * 0.05).sin())
        .collect();
    let position = step as u64 * 320;
    let events = match step {
        1 => vec![VadEvent {
            kind: VadEventKind::SpeechStart,
            position,
        }],
        4 => vec![VadEvent {
            kind: VadEventKind::SpeechEnd,
            position,
        }],
        _ => Vec::new(),
    };
    client.take_input(Some(Input::Frame {
        samples,
        rate: 16_000,
        events,
    }));
}

#[cfg(test)]
mod tests {
    use super::*;

    fn message(kind: u8, payload: &[u8]) -> Vec<u8> {
        let mut m = vec![kind];
        m.extend_from_slice(&(payload.len() as u16).to_le_bytes());
        m.extend_from_slice(payload);
        m
    }

    #[test]
    fn messages_from_bytes_are_handled_as_the_client_does() {
        let mut data = message(
            0,
            br#"{"type":"clearvox.resume","session":"x","received":0}"#,
        );
        data.extend(message(
            1,
            br#"{"type":"clearvox.ack","received":18446744073709551615}"#,
        ));
        data.extend(message(
            1,
            "{\"type\":\"x\",\"t\":\"\x1b]0;t\x07\"}".as_bytes(),
        ));
        data.extend(message(2, &[0xff, 0xfe]));
        let mut close = 1008u16.to_le_bytes().to_vec();
        close.extend_from_slice(b"invalid token\x1b[2J");
        data.extend(message(3, &close));
        data.extend(message(1, b"never read"));
        let (events, ended) = handle_server_message(&data);
        let ended = ended.unwrap();
        assert!(
            ended.contains(r"1008 (policy violation): invalid token\x1b[2J"),
            "{ended}"
        );
        let messages: Vec<_> = events
            .iter()
            .filter(|e| matches!(e, StreamEvent::ServerMessage(_)))
            .collect();
        assert_eq!(messages.len(), 1, "{events:?}");
        // Garbage of every shape is taken without a panic.
        for seed in 0..200u32 {
            let bytes: Vec<u8> = (0..64u32)
                .map(|i| (seed.wrapping_mul(2_654_435_761).wrapping_add(i * 40_503) >> 7) as u8)
                .collect();
            let _ = handle_server_message(&bytes);
        }
        assert_eq!(handle_server_message(&[]), (Vec::new(), None));
        // OpenAI with a player: the answer is decoded, bad audio warned about once.
        let mut data = message(0x80, b"{}");
        data.extend(message(1, br#"{"type":"response.created"}"#));
        data.extend(message(
            1,
            br#"{"type":"response.output_audio.delta","delta":"AAE="}"#,
        ));
        data.extend(message(
            1,
            br#"{"type":"response.output_audio.delta","delta":"AAEC"}"#,
        ));
        data.extend(message(
            1,
            br#"{"type":"response.audio.delta","delta":"%"}"#,
        ));
        let (events, ended) = handle_server_message(&data);
        assert_eq!(ended, None);
        let warnings = events
            .iter()
            .filter(|e| matches!(e, StreamEvent::Warning(_)))
            .count();
        assert_eq!(warnings, 1, "{events:?}");
        assert!(events.contains(&StreamEvent::ResponseStarted), "{events:?}");
    }
}
