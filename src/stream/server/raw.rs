//! The `raw` protocol: binary PCM16 messages, and the JSON events `start`,
//! `speech_started`, `speech_stopped` and `stop`, each logged once per stream.

use serde_json::{Map, Value};
use tokio_tungstenite::tungstenite::Message;

use super::connection::Connection;
use super::format::valid_rates;
use super::log::Event;
use super::offsets::MAX_OFFSET;
use super::session::Session;
use crate::limits::is_supported_sample_rate;
use crate::stream::protocol::{pcm16_from_bytes, Protocol};

impl Connection {
    /// A binary message: PCM16 audio, whatever the protocol.
    pub(super) fn on_binary(
        &mut self,
        s: &mut Session,
        bytes: &[u8],
        out: &mut Vec<Message>,
    ) -> std::io::Result<()> {
        s.touch()?;
        if bytes.len() % 2 == 1 {
            self.warn_once(
                s,
                "odd",
                "binary message of an odd number of bytes: its last byte is ignored",
            )?;
        }
        match self.protocol {
            None => self.detect(s, Protocol::Raw, self.query_rate, false)?,
            Some(Protocol::Openai) => self.warn_once(
                s,
                "binary in openai",
                "binary audio in an openai stream: appended all the same",
            )?,
            Some(Protocol::Raw) => {}
        }
        self.on_audio(s, &pcm16_from_bytes(bytes), out)
    }

    /// A raw event's connection speaks raw with events, unless it spoke before.
    fn detect_events(&mut self, s: &mut Session) -> std::io::Result<()> {
        if self.protocol.is_none() {
            self.detect(s, Protocol::Raw, self.query_rate, true)?;
        }
        Ok(())
    }

    /// `start` (`message`) with all its fields: the stream's format and this connection's
    /// position.
    pub(super) fn on_start(
        &mut self,
        s: &mut Session,
        message: Value,
        rate: u32,
        encoding: &str,
        channels: u16,
        sample: u64,
    ) -> std::io::Result<()> {
        let rate = if is_supported_sample_rate(rate) {
            Some(rate)
        } else {
            self.protocol_error(
                s,
                format!("start rate {rate} Hz is not {}: ignored", valid_rates()),
            )?;
            self.query_rate
        };
        self.detect(s, Protocol::Raw, rate, true)?;
        if s.seen.insert((Event::Start, sample)) {
            s.log_client(&message, Some((Event::Start, Some(sample))), Map::new())?;
        }
        if encoding != "pcm_s16le" || channels != 1 {
            self.protocol_error(
                s,
                format!("start announces {encoding} with {channels} channel(s): only pcm_s16le mono is taken (stored as such)"),
            )?;
        }
        self.on_position(s, sample, false)
    }

    /// `start` (`message`) without a valid rate, encoding, channels or sample: logged,
    /// and a protocol error.
    pub(super) fn on_invalid_start(
        &mut self,
        s: &mut Session,
        message: Value,
    ) -> std::io::Result<()> {
        self.detect_events(s)?;
        s.log_client(&message, None, Map::new())?;
        self.protocol_error(
            s,
            "start without a valid rate, encoding, channels and sample",
        )
    }

    /// `speech_started` or `speech_stopped` (`kind`, `message`) at `sample`.
    pub(super) fn on_speech(
        &mut self,
        s: &mut Session,
        kind: Event,
        message: Value,
        sample: Option<u64>,
    ) -> std::io::Result<()> {
        self.detect_events(s)?;
        let Some(sample) = sample.filter(|n| *n <= MAX_OFFSET) else {
            s.log_client(&message, None, Map::new())?;
            return self.protocol_error(s, format!("{} without a valid \"sample\"", kind.name()));
        };
        if s.seen.insert((kind, sample)) {
            s.log_client(&message, Some((kind, Some(sample))), Map::new())?;
        }
        Ok(())
    }

    /// `stop` (`message`): the stream ends at `samples` (missing or invalid: where it
    /// is), and is acknowledged.
    pub(super) fn on_stop(
        &mut self,
        s: &mut Session,
        message: Value,
        samples: Option<u64>,
        out: &mut Vec<Message>,
    ) -> std::io::Result<()> {
        self.detect_events(s)?;
        let samples = samples.filter(|n| *n <= MAX_OFFSET);
        if samples.is_none() {
            self.protocol_error(
                s,
                "stop without a valid \"samples\": taken as the end all the same",
            )?;
        }
        let n = samples.unwrap_or(s.received);
        if !s.finished {
            if n > s.received {
                // The stream's tail never arrived.
                self.gap(s, n)?;
            } else if n < s.received {
                self.protocol_error(
                    s,
                    format!(
                        "stop says the stream has {n} samples, but {} were received",
                        s.received
                    ),
                )?;
            }
        }
        if s.seen.insert((Event::Stop, n)) || samples.is_none() {
            s.log_client(&message, Some((Event::Stop, samples)), Map::new())?;
        }
        if !s.finished {
            s.finished = true;
            if let Some(wav) = s.wav.as_mut() {
                wav.write_header()?;
            }
        }
        if self.resume {
            self.ack(s, out);
        }
        Ok(())
    }
}
