//! RNNoise (through nnnoiseless): the recurrent network that separates voice from noise.
//!
//! RNNoise expects samples in the 16-bit range (±32768) as `f32`; fed ±1.0 it sees
//! near-silence and does nothing at all. This stage scales to that range and back, so
//! the rest of the chain keeps ±1.0. Its output is one frame (480 samples) late, and it
//! reports a voice-activity probability for every frame, which the spectral gate and
//! the VAD state machine use.

use nnnoiseless::DenoiseState;

use super::{Frame, FrameInfo, Stage, FRAME_LEN};

const I16_SCALE: f32 = 32_768.0;

/// The RNNoise stage.
///
/// # Examples
///
/// ```
/// use clearvox::dsp::rnnoise::Rnnoise;
/// use clearvox::dsp::{Frame, Stage, FRAME_LEN};
///
/// let mut rnnoise = Rnnoise::new();
/// assert_eq!(rnnoise.latency(), FRAME_LEN); // one frame late
///
/// let noisy: Vec<f32> = (0..48_000).map(|n| 0.1 * (n as f32 * 0.3).sin()).collect();
/// let mut enhanced = Vec::with_capacity(noisy.len());
/// for chunk in noisy.chunks_exact(FRAME_LEN) {
///     let mut frame: Frame = chunk.try_into().expect("whole frames");
///     let voice_prob = rnnoise.denoise(&mut frame);
///     assert!((0.0..=1.0).contains(&voice_prob));
///     enhanced.extend_from_slice(&frame);
/// }
/// assert_eq!(enhanced.len(), noisy.len());
/// ```
pub struct Rnnoise {
    state: Box<DenoiseState<'static>>,
    scaled: Frame,
}

impl std::fmt::Debug for Rnnoise {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Rnnoise").finish_non_exhaustive()
    }
}

impl Default for Rnnoise {
    fn default() -> Self {
        Self::new()
    }
}

impl Rnnoise {
    /// A fresh RNNoise state with the model built into nnnoiseless.
    pub fn new() -> Self {
        Self {
            state: DenoiseState::new(),
            scaled: [0.0; FRAME_LEN],
        }
    }

    /// Denoises one frame in place and returns the frame's voice probability (0..1).
    pub fn denoise(&mut self, frame: &mut Frame) -> f32 {
        for (s, x) in self.scaled.iter_mut().zip(frame.iter()) {
            *s = x * I16_SCALE;
        }
        let vad = self.state.process_frame(frame, &self.scaled);
        for x in frame.iter_mut() {
            *x /= I16_SCALE;
        }
        vad
    }
}

impl Stage for Rnnoise {
    fn name(&self) -> &'static str {
        "rnnoise"
    }

    fn process(&mut self, frame: &mut Frame, info: &mut FrameInfo) {
        info.voice_prob = Some(self.denoise(frame));
    }

    fn latency(&self) -> usize {
        FRAME_LEN
    }

    /// Rebuilds the network state. This allocates: do not call it on an audio thread.
    fn reset(&mut self) {
        self.state = DenoiseState::new();
    }
}
