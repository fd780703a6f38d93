//! clearvox: real-time voice enhancement with spectral gating, RNNoise and
//! DeepFilterNet3.
//!
//! clearvox takes a voice recorded in a café, a street, beside a fan or a keyboard, and
//! hands on the voice without the room. Live, by default, RNNoise separates voice from
//! noise and a spectral gate removes what it leaves, in 10 ms frames with 20 ms of
//! algorithmic latency, never allocating on the real-time path. For the best quality,
//! DeepFilterNet3 (feature `deepfilter`, [`dsp::deepfilter`]) does it at 30 ms.
//!
//! ```text
//!  microphone (engine, cpal)         WAV file (io)            your own buffers
//!           │ any rate, 1–8 ch            │                         │
//!           └──────────────► Pipeline ◄───┴─────────────────────────┘
//!        downmix → resample to 48 kHz → RNNoise or DeepFilterNet3 (+ voice prob.) → VAD
//!        → spectral gate → limiter → resample to the output rate → strength / bypass
//!                               │ mono frames + SpeechStart / SpeechEnd events
//!           ┌───────────────────┼──────────────────────┐
//!           ▼                   ▼                      ▼
//!   network (stream:       recording / monitor      your FrameSink
//!   WebSocket over TLS)    (engine)                 (callback, channel)
//! ```
//!
//! # Where to start
//!
//! - **Files, offline**: [`pipeline::enhance`] (whole signal, latency removed) or an
//!   [`Aligner`] over a [`Pipeline`] for long streams; [`io`] reads and writes WAV.
//! - **Your own audio loop**: [`Pipeline`] — any chunk size, [`Pipeline::process_into_buffer`]
//!   never allocates after [`Pipeline::warm_up`]; [`pipeline::HotSwap`] changes the
//!   configuration while it runs.
//! - **The microphone**: `engine::Engine` (feature `device`) captures, processes on its
//!   own thread and hands 10 ms frames to a [`pipeline::FrameSink`].
//! - **To a conversation backend**: `stream::connect` (feature `stream`) gives a
//!   `NetworkSink` for the engine or a file source; `stream::server` is a reference
//!   receiver.
//! - **From C, Swift, Kotlin, Dart**: the `capi` module (feature `capi`) and
//!   `include/clearvox.h`.
//! - **Measuring**: [`metrics`] (SNR, SI-SDR, segmental SNR, STOI, delay).
//!
//! Everything is configured by one [`Config`], made from a [`Preset`] and overrides
//! (TOML or JSON), shared by the library, the CLI and the C ABI.
//!
//! ```
//! use clearvox::{Config, Pipeline, Preset};
//!
//! // 44.1 kHz stereo in, 16 kHz mono out (what a speech recogniser takes).
//! let config = Config { output_rate: Some(16_000), ..Preset::VoiceChat.config() };
//! let mut pipeline = Pipeline::new(&config, 44_100, 2)?;
//! pipeline.warm_up();
//!
//! let ten_ms = vec![0.0f32; 441 * 2]; // interleaved frames, any number per call
//! let mut out = vec![0.0f32; pipeline.output_frames_max(441)];
//! let n = pipeline.process_into_buffer(&ten_ms, &mut out)?;
//! let enhanced = &out[..n]; // 16 kHz mono, `pipeline.latency()` samples late
//! while let Some(event) = pipeline.pop_event() {
//!     println!("{:?} at output sample {}", event.kind, event.position);
//! }
//! println!("latency: {} samples at {} Hz", pipeline.latency(), pipeline.output_rate());
//! # Ok::<(), clearvox::Error>(())
//! ```
#![deny(missing_docs)]
#![warn(missing_debug_implementations)]

#[cfg(feature = "capi")]
pub mod capi;
pub mod config;
pub mod dsp;
#[cfg(feature = "device")]
pub mod engine;
pub mod error;
pub mod io;
pub mod limits;
pub mod metrics;
pub mod pipeline;
#[cfg(feature = "stream")]
pub mod stream;

pub use config::{Config, Preset};
pub use error::{Error, Result};
pub use pipeline::{Aligner, Pipeline};
