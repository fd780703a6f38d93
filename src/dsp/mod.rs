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
pub mod deepfilter;
pub mod delay;
pub mod echo;
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
///
/// # Examples
///
/// ```
/// use clearvox::dsp::{Frame, FRAME_LEN};
///
/// /// The mean power of 10 ms of audio: a frame-sized array, so no length check.
/// fn power(frame: &Frame) -> f32 {
///     frame.iter().map(|x| x * x).sum::<f32>() / FRAME_LEN as f32
/// }
///
/// // 30 ms and a little more: three whole frames; the rest waits for more input.
/// let signal = vec![0.5f32; 3 * FRAME_LEN + 100];
/// let frames: Vec<&Frame> = signal
///     .chunks_exact(FRAME_LEN)
///     .map(|chunk| chunk.try_into().expect("chunks_exact gives whole frames"))
///     .collect();
/// assert_eq!(frames.len(), 3);
/// assert!(frames.iter().all(|frame| (power(frame) - 0.25).abs() < 1e-6));
/// ```
pub type Frame = [f32; FRAME_LEN];

/// Side information that travels with a frame along the chain.
///
/// # Examples
///
/// ```
/// use clearvox::dsp::rnnoise::Rnnoise;
/// use clearvox::dsp::{FrameInfo, Stage, FRAME_LEN};
///
/// let mut rnnoise = Rnnoise::new();
/// let mut frame = [0.0f32; FRAME_LEN];
/// let mut info = FrameInfo::default();
/// assert_eq!(info.voice_prob, None);
///
/// rnnoise.process(&mut frame, &mut info);
/// // RNNoise sets the voice probability that later stages read.
/// let p = info.voice_prob.expect("RNNoise estimates one");
/// assert!((0.0..=1.0).contains(&p));
/// ```
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
///
/// # Examples
///
/// Running stages one after another, among them one of your own:
///
/// ```
/// use clearvox::dsp::agc::{Agc, AgcConfig};
/// use clearvox::dsp::highpass::Highpass;
/// use clearvox::dsp::{db_to_gain, Frame, FrameInfo, Stage, FRAME_LEN};
///
/// /// A fixed gain.
/// struct Gain(f32);
///
/// impl Stage for Gain {
///     fn name(&self) -> &'static str {
///         "gain"
///     }
///     fn process(&mut self, frame: &mut Frame, _info: &mut FrameInfo) {
///         frame.iter_mut().for_each(|x| *x *= self.0);
///     }
///     fn latency(&self) -> usize {
///         0
///     }
///     fn reset(&mut self) {}
/// }
///
/// let mut chain: Vec<Box<dyn Stage>> = vec![
///     Box::new(Highpass::new(80.0, std::f32::consts::FRAC_1_SQRT_2)?),
///     Box::new(Gain(db_to_gain(6.0))),
///     Box::new(Agc::new(&AgcConfig::default())?), // the limiter
/// ];
/// let names: Vec<&str> = chain.iter().map(|s| s.name()).collect();
/// assert_eq!(names, ["highpass", "gain", "agc"]);
/// assert_eq!(chain.iter().map(|s| s.latency()).sum::<usize>(), 0);
///
/// let mut frame: Frame = [0.0; FRAME_LEN];
/// let mut info = FrameInfo::default();
/// for stage in &mut chain {
///     stage.process(&mut frame, &mut info);
/// }
/// # Ok::<(), clearvox::Error>(())
/// ```
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
