//! When to reconnect, and when to give up: the backoff between attempts, which endings
//! are final, and how often a repeated warning is said.
//!
//! Every failed attempt and every lost connection waits before the next attempt, the
//! wait doubling up to a cap (with jitter, so that many clients spread out); only a
//! connection that carried audio for a while resets it. A receiver that refuses the
//! client on principle (a policy or authentication close, HTTP 401/403) is not asked
//! again: retrying could only hammer it.

use std::collections::HashMap;
use std::time::Duration;

use super::sanitize::escape_controls;

/// Close codes a receiver sends when it will not take this client as it is: 1008
/// (policy violation) and the application's own 4000–4999 (by convention
/// authentication and authorisation refusals).
pub(crate) fn close_is_final(code: u16) -> bool {
    code == 1008 || (4000..=4999).contains(&code)
}

/// HTTP statuses of a handshake that no retry can change.
pub(crate) fn status_is_final(status: u16) -> bool {
    matches!(status, 401 | 403)
}

/// A close frame as one line: its code, the code's meaning, and the receiver's reason
/// (escaped: it is the receiver's text).
pub(crate) fn describe_close(code: u16, reason: &str) -> String {
    let meaning = match code {
        1000 => " (normal closure)",
        1001 => " (going away)",
        1002 => " (protocol error)",
        1003 => " (unsupported data)",
        1007 => " (invalid payload)",
        1008 => " (policy violation)",
        1009 => " (message too big)",
        1011 => " (server error)",
        1012 => " (service restart)",
        1013 => " (try again later)",
        _ => "",
    };
    let reason = reason.trim();
    if reason.is_empty() {
        format!("{code}{meaning}")
    } else {
        format!("{code}{meaning}: {}", escape_controls(reason))
    }
}

/// Exponential backoff with jitter and a cap.
#[derive(Debug)]
pub(crate) struct Backoff {
    initial: Duration,
    max: Duration,
    next: Duration,
}

impl Backoff {
    pub(crate) fn new(initial_ms: u64, max_ms: u64) -> Self {
        let initial = Duration::from_millis(initial_ms.max(1));
        Self {
            initial,
            max: Duration::from_millis(max_ms).max(initial),
            next: initial,
        }
    }

    /// The wait before the next attempt (in [d/2, d) of the current step `d`); doubles
    /// the step, up to the cap.
    pub(crate) fn wait(&mut self) -> Duration {
        let d = jittered(self.next);
        self.next = (self.next * 2).min(self.max);
        d
    }

    /// Back to the first step (after a connection that worked).
    pub(crate) fn reset(&mut self) {
        self.next = self.initial;
    }
}

/// `d` scaled by a random factor in [0.5, 1.0): reconnecting clients spread out.
fn jittered(d: Duration) -> Duration {
    use ring::rand::SecureRandom;
    let mut b = [0u8; 2];
    let r = ring::rand::SystemRandom::new()
        .fill(&mut b)
        .map(|()| u16::from_le_bytes(b) as f64 / 65_536.0)
        .unwrap_or(0.5);
    d.mul_f64(0.5 + 0.5 * r)
}

/// Most distinct messages tracked; past it the counts start over.
const TRACKED: usize = 32;

/// Says a repeated message at its 1st, 2nd, 4th, 8th... occurrence only, with the
/// count: an outage of an hour is a dozen lines, not one per attempt.
#[derive(Debug, Default)]
pub(crate) struct Repeats {
    counts: HashMap<String, u64>,
}

impl Repeats {
    /// The line to show for this occurrence of `message`, if any.
    pub(crate) fn note(&mut self, message: &str) -> Option<String> {
        if self.counts.len() >= TRACKED && !self.counts.contains_key(message) {
            self.counts.clear();
        }
        let n = self.counts.entry(message.to_string()).or_insert(0);
        *n += 1;
        match *n {
            1 => Some(message.to_string()),
            n if n.is_power_of_two() => Some(format!("{message} ({n} times so far)")),
            _ => None,
        }
    }

    /// Forgets the counts (a connection worked: the next trouble is news).
    pub(crate) fn reset(&mut self) {
        self.counts.clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_backoff_doubles_up_to_its_cap_with_jitter() {
        let mut b = Backoff::new(200, 1_000);
        let steps = [200, 400, 800, 1_000, 1_000];
        for step in steps {
            let d = b.wait().as_millis() as u64;
            assert!(d >= step / 2 && d < step, "{d} for a step of {step}");
        }
        b.reset();
        assert!(b.wait() < Duration::from_millis(200));
        // A cap below the first step is the first step.
        let mut b = Backoff::new(500, 10);
        assert!(b.wait() < Duration::from_millis(500));
        assert!(b.wait() >= Duration::from_millis(250));
    }

    #[test]
    fn policy_and_authentication_refusals_are_final() {
        for code in [1008, 4000, 4001, 4403, 4999] {
            assert!(close_is_final(code), "{code}");
        }
        for code in [1000, 1001, 1006, 1011, 1012, 3000, 5000] {
            assert!(!close_is_final(code), "{code}");
        }
        assert!(status_is_final(401) && status_is_final(403));
        assert!(!status_is_final(404) && !status_is_final(503));
        assert_eq!(
            describe_close(1008, "invalid token\x1b[2J"),
            r"1008 (policy violation): invalid token\x1b[2J"
        );
        assert_eq!(describe_close(4001, " "), "4001");
    }

    #[test]
    fn repeated_messages_are_said_ever_more_rarely() {
        let mut r = Repeats::default();
        let said: Vec<_> = (0..100).filter_map(|_| r.note("lost")).collect();
        assert_eq!(said.len(), 7, "{said:?}"); // 1, 2, 4, 8, 16, 32, 64
        assert_eq!(said[0], "lost");
        assert_eq!(said[6], "lost (64 times so far)");
        assert_eq!(r.note("other").as_deref(), Some("other"));
        r.reset();
        assert_eq!(r.note("lost").as_deref(), Some("lost"));
    }
}
