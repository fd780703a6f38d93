//! Where a connection's audio goes in its stream: its position, set by
//! `clearvox.resume_from` or `start` or else where the stream is; audio before what the
//! stream holds is a duplicate, a position after it a gap. Both protocols' audio comes
//! through here.

use serde_json::json;
use tokio_tungstenite::tungstenite::Message;

use super::connection::Connection;
use super::session::Session;
use crate::stream::protocol::Protocol;

/// Fewest milliseconds of audio an ack covers, but for the last one and on `stop`.
const ACK_MIN_MS: u64 = 20;
/// Largest stream offset a client may name (over two years at 16 kHz): beyond it a
/// position is ignored, so that offset arithmetic can never overflow.
pub(super) const MAX_OFFSET: u64 = 1 << 40;

impl Connection {
    /// Stream offset of the next sample this connection sends: where its position was
    /// set, else where the stream is.
    pub(super) fn position(&self, s: &Session) -> u64 {
        self.pos.unwrap_or(s.received)
    }

    /// Appends audio at the connection's position: what the stream holds already is
    /// skipped, what is missing before it is a gap.
    pub(super) fn on_audio(
        &mut self,
        s: &mut Session,
        samples: &[i16],
        out: &mut Vec<Message>,
    ) -> std::io::Result<()> {
        if samples.is_empty() {
            return Ok(());
        }
        if s.finished {
            return self.warn_once(s, "after stop", "audio after the stream's stop: ignored");
        }
        let pos = self.position(s);
        let end = pos + samples.len() as u64;
        self.pos = Some(end);
        self.audio_since_pos = true;
        if end <= s.received {
            return Ok(()); // all of it held already
        }
        let skip = s.received.saturating_sub(pos) as usize;
        if pos > s.received {
            self.gap(s, pos)?;
        }
        s.ensure_wav()?;
        if let Some(wav) = s.wav.as_mut() {
            wav.append(&samples[skip..])?;
        }
        s.received = end;
        if self.resume {
            // `ensure_wav` has set the rate: the default is never taken.
            let rate = s.rate.unwrap_or(Protocol::Raw.default_rate());
            let min = u64::from(rate) * ACK_MIN_MS / 1000;
            if s.received - self.last_ack >= min.max(1) {
                self.ack(s, out);
            }
        }
        Ok(())
    }

    /// A gap from what the stream holds to `to`, logged before anything after it.
    pub(super) fn gap(&mut self, s: &mut Session, to: u64) -> std::io::Result<()> {
        let from = s.received;
        s.log(json!({"type": "gap", "from": from, "to": to}))?;
        s.gaps += 1;
        s.lost += to - from;
        s.received = to;
        Ok(())
    }

    /// `clearvox.resume_from` (`from_resume`) or `start`: where this connection's audio
    /// starts in the stream.
    pub(super) fn on_position(
        &mut self,
        s: &mut Session,
        sample: u64,
        from_resume: bool,
    ) -> std::io::Result<()> {
        if sample > MAX_OFFSET {
            return self.protocol_error(
                s,
                format!("sample offset {sample} is beyond any stream: ignored"),
            );
        }
        if from_resume {
            if sample < s.received && !s.finished {
                self.protocol_error(
                    s,
                    format!(
                        "clearvox.resume_from {sample} is before the {} samples held: the first {} samples that follow are dropped as duplicates",
                        s.received,
                        s.received - sample
                    ),
                )?;
            }
            self.pos_from_resume = true;
        } else if self.pos_from_resume && !self.audio_since_pos && self.pos != Some(sample) {
            let said = self.pos.unwrap_or(0);
            return self.protocol_error(
                s,
                format!(
                    "start at sample {sample}, but clearvox.resume_from said {said}: kept {said}"
                ),
            );
        }
        if sample > s.received && !s.finished {
            self.gap(s, sample)?;
        }
        self.pos = Some(sample);
        self.audio_since_pos = false;
        Ok(())
    }

    /// `clearvox.resume_from`, with its `sample` if valid: logged as it came, then taken
    /// as the connection's position.
    pub(super) fn on_resume_from(
        &mut self,
        s: &mut Session,
        message: serde_json::Value,
        sample: Option<u64>,
    ) -> std::io::Result<()> {
        s.log_client(&message, None, serde_json::Map::new())?;
        match sample {
            Some(sample) => self.on_position(s, sample, true),
            None => self.protocol_error(s, "clearvox.resume_from without a valid \"sample\""),
        }
    }
}
