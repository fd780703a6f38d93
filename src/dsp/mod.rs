//! The signal-processing stages, one file each.
//!
//! Every stage works on 48 kHz mono `f32` in ±1.0, one 10 ms frame
//! ([`FRAME_LEN`] samples) at a time, in place and without allocating. Each reports
//! how far its output lags its input ([`Stage::latency`], in samples) and can be
//! [`Stage::reset`] to its freshly-built state. Stages know nothing of threads,
//! devices, files or sockets: the [`Pipeline`](crate::Pipeline) wires them together.
//!
//! The resamplers ([`resample`]) and sample conversion ([`convert`]) sit at the edges
//! of the chain, where rates and formats are still the caller's.

pub mod agc;
pub mod convert;
pub mod delay;
pub mod highpass;
pub mod resample;
pub mod rnnoise;
pub mod spectral_gate;
pub mod stft;
pub mod vad;

/// The internal processing rate of every stage.
pub const SAMPLE_RATE: u32 = 48_000;

/// Samples per processing frame: 10 ms at [`SAMPLE_RATE`], RNNoise's frame size.
pub const FRAME_LEN: usize = 480;

/// One processing frame.
pub type Frame = [f32; FRAME_LEN];

/// Side information that travels with a frame along the chain.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct FrameInfo {
    /// Voice-activity probability of this frame (0..1), when a stage estimated one.
    ///
    /// RNNoise sets it; without RNNoise, the spectral gate sets its own estimate.
    pub voice_prob: Option<f32>,
    /// The debounced speech state of the VAD state machine for this frame.
    pub speech: bool,
}

/// A processing stage of the chain.
///
/// Implementations never allocate, lock or block in [`Stage::process`].
pub trait Stage: Send {
    /// Short name of the stage, for reports and benchmarks.
    fn name(&self) -> &'static str;

    /// Processes one frame in place, reading and updating the frame's side information.
    fn process(&mut self, frame: &mut Frame, info: &mut FrameInfo);

    /// How many samples the output lags the input.
    fn latency(&self) -> usize;

    /// Forgets all signal history, as if freshly built.
    fn reset(&mut self);
}

/// Converts decibels to a linear amplitude factor.
#[inline]
pub fn db_to_gain(db: f32) -> f32 {
    10f32.powf(db / 20.0)
}

/// Converts a linear amplitude factor to decibels (−200 dB for 0).
#[inline]
pub fn gain_to_db(gain: f32) -> f32 {
    20.0 * gain.max(1e-10).log10()
}

/// The smoothing coefficient of a one-pole filter with time constant `tau_s`, updated
/// every `step_s` seconds: `y += (1 - coef) * (x - y)`.
#[inline]
pub fn one_pole_coef(tau_s: f32, step_s: f32) -> f32 {
    if tau_s <= 0.0 {
        0.0
    } else {
        (-step_s / tau_s).exp()
    }
}
