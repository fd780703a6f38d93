//! A stream's format: which protocol it speaks and its rate, fixed by the first data
//! message of its first connection; and which rates the receiver takes.

use serde_json::json;

use super::connection::Connection;
use super::session::{Session, FORMAT_LINE};
use crate::limits::{MAX_SAMPLE_RATE, MIN_SAMPLE_RATE};
use crate::stream::protocol::Protocol;

/// The rates the receiver takes from a client ([`crate::limits`]), in words for protocol errors: `from 8000 to 192000 Hz`.
pub(super) fn valid_rates() -> String {
    format!("from {MIN_SAMPLE_RATE} to {MAX_SAMPLE_RATE} Hz")
}

impl Connection {
    /// Sets the connection's protocol from its first data message, and the stream's
    /// format from its first connection's; logs disagreements.
    ///
    /// `rate` is what the message (or the URL) asked for, if anything; a new stream
    /// takes it, else its protocol's default rate. `events`: a raw stream with JSON
    /// events.
    pub(super) fn detect(
        &mut self,
        s: &mut Session,
        protocol: Protocol,
        rate: Option<u32>,
        events: bool,
    ) -> std::io::Result<()> {
        match self.protocol {
            None => self.protocol = Some(protocol),
            Some(p) if p != protocol => {
                return self.warn_once(
                    s,
                    "mixed protocols",
                    format!("{protocol} message in a connection that speaks {p}"),
                )
            }
            Some(_) => {}
        }
        match s.protocol {
            None => {
                let file_rate = s.rate;
                let chosen = file_rate.or(rate).unwrap_or(protocol.default_rate());
                s.protocol = Some(protocol);
                s.events = events;
                s.rate = Some(chosen);
                s.log(json!({
                    "type": FORMAT_LINE,
                    "protocol": protocol,
                    "rate": chosen,
                    "events": events,
                }))?;
                s.ensure_wav()?;
            }
            Some(p) if p != protocol => {
                return self.warn_once(
                    s,
                    "protocol changed",
                    format!(
                        "this connection speaks {protocol} but the stream is {p}: its audio goes into the same file"
                    ),
                )
            }
            Some(_) => s.events |= events,
        }
        if let (Some(asked), Some(have)) = (rate, s.rate) {
            if asked != have {
                self.protocol_error(
                    s,
                    format!("rate {asked} Hz, but the stream is {have} Hz: kept {have} Hz"),
                )?;
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_rates_taken_are_said_in_words() {
        assert_eq!(valid_rates(), "from 8000 to 192000 Hz");
    }
}
