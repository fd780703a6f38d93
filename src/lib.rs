//! clearvox: real-time voice enhancement with spectral gating and RNNoise.
#![deny(missing_docs)]

#[cfg(feature = "capi")]
pub mod capi;
pub mod config;
pub mod dsp;
#[cfg(feature = "device")]
pub mod engine;
pub mod error;
pub mod io;
pub mod metrics;
pub mod pipeline;
#[cfg(feature = "stream")]
pub mod stream;

pub use config::{Config, Preset};
pub use error::{Error, Result};
pub use pipeline::{Aligner, Pipeline};
