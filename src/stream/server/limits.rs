//! What one receiver lets its clients hold: connections, memory per connection, idle
//! time and handshake time, so that no client, or crowd of clients, can exhaust it.

use std::time::Duration;

/// Bounds on what clients may hold of a receiver.
///
/// The worst case of memory is about `max_connections × (max_message_bytes + 1 MiB)`
/// (a message being read, plus the socket buffers); a connection's buffers are freed
/// when it ends.
///
/// ```
/// use std::time::Duration;
/// use clearvox::stream::server::ServerLimits;
/// let limits = ServerLimits { idle: Duration::from_secs(20), ..ServerLimits::default() };
/// assert_eq!(limits.max_connections, 256);
/// assert_eq!(limits.max_message_bytes, 1 << 20);
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ServerLimits {
    /// Connections served at once (handshakes included). Beyond it a client is refused
    /// with HTTP 503; the receiver lowers it to what its open-file limit allows (each
    /// connection holds up to 4 files: its socket, the stream's WAV and log, one more
    /// while the stream opens).
    pub max_connections: usize,
    /// Largest WebSocket message (and frame) a client may send, bytes: 1 MiB holds
    /// 20 s of 24 kHz audio in an OpenAI append, far more than any client sends at once.
    pub max_message_bytes: usize,
    /// A connection that sends no message for this long is closed (pings and pongs are
    /// not activity: a client that only answers pings is gone as far as the stream is
    /// concerned).
    pub idle: Duration,
    /// Longest the TLS and WebSocket handshakes may take together.
    pub handshake: Duration,
}

impl Default for ServerLimits {
    fn default() -> Self {
        ServerLimits {
            max_connections: 256,
            max_message_bytes: 1 << 20,
            idle: Duration::from_secs(60),
            handshake: Duration::from_secs(10),
        }
    }
}

/// Files a connection may hold at once.
const FILES_PER_CONNECTION: u64 = 4;
/// Files kept for the receiver itself (standard streams, the listener, the runtime's
/// poller and wakers) and for refusing clients cleanly when it is full.
const FILES_RESERVED: u64 = 48;

impl ServerLimits {
    /// `max_connections`, lowered so that the connections' files stay below `open_files`
    /// (the process's open-file limit, if known).
    pub(super) fn connections_within(&self, open_files: Option<u64>) -> usize {
        match open_files {
            Some(n) => {
                let fit = n.saturating_sub(FILES_RESERVED) / FILES_PER_CONNECTION;
                self.max_connections
                    .min(usize::try_from(fit).unwrap_or(usize::MAX))
                    .max(1)
            }
            None => self.max_connections.max(1),
        }
    }
}

/// The process's soft limit of open files, where the OS tells it without a system call
/// of its own (Linux's `/proc/self/limits`).
pub(super) fn open_file_limit() -> Option<u64> {
    let text = std::fs::read_to_string("/proc/self/limits").ok()?;
    let line = text.lines().find(|l| l.starts_with("Max open files"))?;
    line.split_whitespace().nth(3)?.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_connection_cap_fits_the_open_file_limit() {
        let limits = ServerLimits::default();
        assert_eq!(limits.connections_within(None), 256);
        assert_eq!(limits.connections_within(Some(1_048_576)), 256);
        assert_eq!(limits.connections_within(Some(100)), 13);
        assert_eq!(limits.connections_within(Some(10)), 1);
        if cfg!(target_os = "linux") {
            assert!(open_file_limit().is_some_and(|n| n > 0));
        }
    }
}
