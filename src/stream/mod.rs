//! Streaming enhanced frames to a conversation backend over WebSocket.
//!
//! (Being built: see `protocol` for what travels on the wire.)

pub mod protocol;
