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
