//! Streaming to a conversation backend over loopback: the reference receiver (`clearvox
//! serve`, in process and as a child), and the client (`clearvox stream`, and the
//! library's `connect`) into it, plain, with OpenAI's protocol, over TLS and across
//! faults. The load test is a binary of its own (`tests/stream_load.rs`).

#[path = "../support/mod.rs"]
mod support;

/// The client against hostile receivers: final refusals, backoff, escaped server text,
/// credentials never shown.
mod client_hostile;
/// The client into the receiver: the received audio equals the offline enhancement.
mod e2e;
/// The stream across a killed receiver, cut connections and an outage.
mod faults;
/// The OpenAI Realtime protocol against a validating stand-in server.
mod openai;
/// The voice-chat loop: the receiver's spoken answer, the client's player, barge-in.
mod respond;
/// The reference receiver, driven by hand-written clients.
mod serve;
/// The receiver's token and the streams' owners.
mod serve_auth;
/// What clients may hold of the receiver: connections, memory, idle and handshake time.
mod serve_limits;
/// The receiver's log and stream ids against a hostile client.
mod serve_log;
/// The receiver's files: only for streams that send something, bounded logs read in
/// bounded memory, outside the lock other streams need.
mod serve_log_limits;
/// TLS, plain connections off loopback, and the token.
mod tls;
