//! What the receiver tells about a stream when one of its connections ends.

use std::fmt;

use crate::stream::protocol::Protocol;

/// What became of a stream when one of its connections ended.
///
/// ```
/// use clearvox::stream::{protocol::Protocol, server::SessionReport};
/// let report = SessionReport {
///     id: "tutor-42".into(),
///     protocol: Some(Protocol::Raw),
///     rate: Some(16_000),
///     samples: 48_000,
///     received: 56_000,
///     gaps: 1,
///     lost: 8_000,
///     reconnects: 1,
///     finished: true,
///     resumable: false,
///     reason: "stop".into(),
/// };
/// assert_eq!(report.seconds(), 3.0);
/// assert_eq!(
///     report.to_string(),
///     "session tutor-42: raw 16000 Hz, 3.00 s received, 1 gap (0.50 s lost), 1 reconnect; finished: stop"
/// );
/// ```
#[derive(Clone, Debug, PartialEq)]
pub struct SessionReport {
    /// The stream id (file stem).
    pub id: String,
    /// Its protocol, if any audio or event told it.
    pub protocol: Option<Protocol>,
    /// Its sample rate, Hz, if known.
    pub rate: Option<u32>,
    /// Samples in its WAV file.
    pub samples: u64,
    /// Stream offset held (samples plus samples lost in gaps).
    pub received: u64,
    /// Gaps recorded.
    pub gaps: u32,
    /// Samples lost in gaps.
    pub lost: u64,
    /// Connections before this one.
    pub reconnects: u32,
    /// Whether the stream ended with `stop`.
    pub finished: bool,
    /// Whether another connection may resume it.
    pub resumable: bool,
    /// Why the connection ended.
    pub reason: String,
}

impl SessionReport {
    /// Seconds of audio in the WAV file.
    pub fn seconds(&self) -> f64 {
        self.samples_to_seconds(self.samples)
    }

    /// `samples` in seconds at the stream's rate (none known: 1 Hz, so that a report of
    /// a stream without audio still reads).
    fn samples_to_seconds(&self, samples: u64) -> f64 {
        samples as f64 / f64::from(self.rate.unwrap_or(1).max(1))
    }
}

impl fmt::Display for SessionReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.protocol {
            Some(protocol) => write!(f, "session {}: {protocol}", self.id)?,
            None => write!(f, "session {}: no audio", self.id)?,
        }
        if let Some(rate) = self.rate {
            write!(f, " {rate} Hz")?;
        }
        let plural = |n: u64| if n == 1 { "" } else { "s" };
        write!(f, ", {:.2} s received", self.seconds())?;
        write!(f, ", {} gap{}", self.gaps, plural(u64::from(self.gaps)))?;
        if self.lost > 0 {
            write!(f, " ({:.2} s lost)", self.samples_to_seconds(self.lost))?;
        }
        write!(
            f,
            ", {} reconnect{}",
            self.reconnects,
            plural(u64::from(self.reconnects))
        )?;
        let state = if self.finished {
            "finished"
        } else if self.resumable {
            "open (resumable)"
        } else {
            "ended"
        };
        write!(f, "; {state}: {}", self.reason)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reports_read_as_one_line() {
        let mut r = SessionReport {
            id: "s1".into(),
            protocol: Some(Protocol::Raw),
            rate: Some(16_000),
            samples: 24_000,
            received: 32_000,
            gaps: 1,
            lost: 8_000,
            reconnects: 2,
            finished: true,
            resumable: false,
            reason: "closed by the client".into(),
        };
        assert_eq!(
            r.to_string(),
            "session s1: raw 16000 Hz, 1.50 s received, 1 gap (0.50 s lost), 2 reconnects; finished: closed by the client"
        );
        r.protocol = None;
        r.rate = None;
        r.samples = 0;
        r.lost = 0;
        r.gaps = 0;
        r.finished = false;
        r.resumable = true;
        assert_eq!(
            r.to_string(),
            "session s1: no audio, 0.00 s received, 0 gaps, 2 reconnects; open (resumable): closed by the client"
        );
    }
}
