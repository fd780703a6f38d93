//! The streaming DeepFilterNet stage: STFT, features, the three networks, gains, deep
//! filter and synthesis, one 480-sample frame per call.

use realfft::num_complex::Complex32;
use realfft::RealFftPlanner;
use tract_onnx::prelude::{Tensor, TypedSimpleState};

use super::features::{
    apply_band_gains, deep_filter, erb_band_widths, norm_alpha, post_filter, FeatureExtractor,
};
use super::model::{self, DeepFilterModel};
use super::{lsnr_to_voice_prob, DeepFilterConfig};
use crate::dsp::stft::{StftAnalyzer, StftSynthesizer, WindowPair};
use crate::dsp::{db_to_gain, Frame, FrameInfo, Stage};
use crate::error::{Error, Result};

/// What the local SNR decided for a frame.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Route {
    /// Noise alone: muted.
    Mute,
    /// Band gains and the deep filter.
    Full,
    /// Band gains only.
    GainsOnly,
    /// Left as it is.
    Untouched,
}

/// The DeepFilterNet stage. See the [module documentation](super).
///
/// # Examples
///
/// ```
/// use clearvox::dsp::deepfilter::{DeepFilter, DeepFilterConfig};
/// use clearvox::dsp::{Frame, FrameInfo, Stage, FRAME_LEN};
///
/// let mut df = DeepFilter::new(&DeepFilterConfig::default())?;
/// assert_eq!(df.latency(), 1440); // 30 ms
///
/// let mut frame: Frame = [0.0; FRAME_LEN];
/// let mut info = FrameInfo::default();
/// df.process(&mut frame, &mut info);
/// // The local SNR becomes a voice probability for the VAD.
/// assert!(info.voice_prob.is_some());
/// # Ok::<(), clearvox::Error>(())
/// ```
pub struct DeepFilter {
    model: DeepFilterModel,
    analyzer: StftAnalyzer,
    synthesizer: StftSynthesizer,
    features: FeatureExtractor,
    /// The last noisy spectra, a ring indexed by frame number.
    history: Vec<Vec<Complex32>>,
    frames: u64,
    /// The spectrum being enhanced (the frame `lookahead` frames back).
    target: Vec<Complex32>,
    erb_feature: Vec<f32>,
    complex_feature: Vec<f32>,
    gains: Vec<f32>,
    /// Local SNR of the last frames, to hand each output frame its own.
    lsnr: Vec<f32>,
    encoder: TypedSimpleState,
    erb_decoder: TypedSimpleState,
    df_decoder: TypedSimpleState,
    config: DeepFilterConfig,
    floor: f32,
    failures: u64,
}

impl std::fmt::Debug for DeepFilter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DeepFilter")
            .field("model", &self.model.origin())
            .field("frames", &self.frames)
            .field("failures", &self.failures)
            .finish_non_exhaustive()
    }
}

/// The values of a network output.
fn floats(t: &Tensor) -> std::result::Result<&[f32], tract_onnx::prelude::TractError> {
    t.try_as_plain_ram()?.as_slice::<f32>()
}

fn new_state(network: &model::Network) -> Result<TypedSimpleState> {
    TypedSimpleState::new(&network.plan).map_err(|e| Error::Model(format!("{e:#}")))
}

impl DeepFilter {
    /// A stage with the model `config` names (compiling it on first use).
    pub fn new(config: &DeepFilterConfig) -> Result<Self> {
        // Settings first: a bad value is reported without compiling a model.
        config.validate()?;
        Self::build(config.load_model()?, config)
    }

    /// A stage on an already compiled model (cheap: the model is shared).
    pub fn with_model(model: DeepFilterModel, config: &DeepFilterConfig) -> Result<Self> {
        config.validate()?;
        Self::build(model, config)
    }

    /// The stage, for settings already validated.
    fn build(model: DeepFilterModel, config: &DeepFilterConfig) -> Result<Self> {
        let p = model.params().clone();
        let windows = WindowPair::vorbis(p.fft_size, p.hop)?;
        let mut planner = RealFftPlanner::new();
        let analyzer = StftAnalyzer::new(&mut planner, &windows)?;
        let synthesizer = StftSynthesizer::new(&mut planner, &windows)?;
        let bins = analyzer.bins();
        let widths = erb_band_widths(p.sample_rate, p.fft_size, p.erb_bands, p.min_band_width)
            .ok_or_else(|| Error::Model("the ERB band layout does not fit".into()))?;
        let history_len = p.lookahead() + p.df_order - p.df_lookahead;
        Ok(Self {
            features: FeatureExtractor::new(
                widths,
                p.df_bins,
                norm_alpha(p.sample_rate, p.hop, p.norm_tau),
            ),
            history: vec![vec![Complex32::new(0.0, 0.0); bins]; history_len],
            frames: 0,
            target: vec![Complex32::new(0.0, 0.0); bins],
            erb_feature: vec![0.0; p.erb_bands],
            complex_feature: vec![0.0; 2 * p.df_bins],
            gains: vec![0.0; p.erb_bands],
            lsnr: vec![0.0; p.lookahead() + 1],
            encoder: new_state(model.encoder())?,
            erb_decoder: new_state(model.erb_decoder())?,
            df_decoder: new_state(model.df_decoder())?,
            floor: if config.atten_limit_db >= 100.0 {
                0.0
            } else {
                db_to_gain(-config.atten_limit_db)
            },
            config: config.clone(),
            analyzer,
            synthesizer,
            model,
            failures: 0,
        })
    }

    /// The compiled model this stage runs.
    pub fn model(&self) -> &DeepFilterModel {
        &self.model
    }

    /// Frames whose networks failed to run (each output with what had been applied
    /// before the failure; local SNR 0). Zero unless tract itself failed.
    pub fn failures(&self) -> u64 {
        self.failures
    }

    /// Enhances one 480-sample frame in place (the output trails the input by
    /// [`Stage::latency`]) and returns the local SNR, dB, that the encoder estimated for
    /// the newest frame (the one this call's input completed), as DeepFilterNet's own
    /// runtime reports it. [`DeepFilter::output_lsnr`] is the estimate for the frame
    /// this call output.
    pub fn denoise(&mut self, frame: &mut Frame) -> f32 {
        let p = self.model.params();
        let (lookahead, order, df_lookahead) = (p.lookahead(), p.df_order, p.df_lookahead);
        let depth = self.history.len() as u64;
        let newest = self.frames;
        self.frames += 1;
        let slot = |frame: u64| (frame % depth) as usize;

        let spectrum = self.analyzer.analyze(frame);
        self.history[slot(newest)].copy_from_slice(spectrum);
        let spectrum = &self.history[slot(newest)];
        self.features.erb(spectrum, &mut self.erb_feature);
        let (re, im) = self.complex_feature.split_at_mut(p.df_bins);
        self.features.complex(spectrum, re, im);

        // The frame being enhanced: `lookahead` frames back (silence before the start).
        let current = newest.wrapping_sub(lookahead as u64);
        if newest >= lookahead as u64 {
            self.target.copy_from_slice(&self.history[slot(current)]);
        } else {
            self.target.fill(Complex32::new(0.0, 0.0));
        }
        let lsnr = match self.run_networks(current, order, df_lookahead) {
            Ok(lsnr) => lsnr,
            Err(_) => {
                self.failures += 1;
                0.0
            }
        };
        if self.floor > 0.0 && newest >= lookahead as u64 {
            let noisy = &self.history[slot(current)];
            for (y, x) in self.target.iter_mut().zip(noisy) {
                *y = *y * (1.0 - self.floor) + *x * self.floor;
            }
        }
        self.synthesizer.synthesize(&mut self.target, frame);

        // Hand the output frame the local SNR estimated when it was the newest.
        let n = self.lsnr.len() as u64;
        self.lsnr[(newest % n) as usize] = lsnr;
        lsnr
    }

    /// The local SNR, dB, estimated for the frame the last [`DeepFilter::denoise`]
    /// output (0 before the first frame has gone through).
    pub fn output_lsnr(&self) -> f32 {
        let p = self.model.params();
        let n = self.lsnr.len() as u64;
        match self.frames.checked_sub(1 + p.lookahead() as u64) {
            Some(current) => self.lsnr[(current % n) as usize],
            None => 0.0,
        }
    }

    /// Runs the networks on the newest features and modifies `self.target`.
    fn run_networks(
        &mut self,
        current: u64,
        order: usize,
        df_lookahead: usize,
    ) -> std::result::Result<f32, tract_onnx::prelude::TractError> {
        let p = self.model.params();
        let erb = Tensor::from_shape(&[1, 1, 1, p.erb_bands], &self.erb_feature)?;
        let spec = Tensor::from_shape(&[1, 2, 1, p.df_bins], &self.complex_feature)?;
        let enc = self.model.encoder();
        // feat_erb, feat_spec
        let out = enc.step(&mut self.encoder, [erb.into(), spec.into()])?;
        let get = |i: usize| out[enc.outputs[i]].clone();
        let lsnr = floats(&get(6))?.first().copied().unwrap_or(0.0);
        let route = if lsnr < self.config.noise_only_below_db {
            Route::Mute
        } else if lsnr > self.config.untouched_above_db {
            Route::Untouched
        } else if lsnr > self.config.gains_only_above_db {
            Route::GainsOnly
        } else {
            Route::Full
        };
        match route {
            Route::Untouched => {}
            Route::Mute => self.target.fill(Complex32::new(0.0, 0.0)),
            Route::Full | Route::GainsOnly => {
                let dec = self.model.erb_decoder();
                // emb, e3, e2, e1, e0
                let named = [get(4), get(3), get(2), get(1), get(0)];
                let m = dec.step(&mut self.erb_decoder, named)?;
                self.gains.copy_from_slice(floats(&m[dec.outputs[0]])?);
                post_filter(&mut self.gains, self.config.post_filter_beta);
                apply_band_gains(&mut self.target, &self.gains, self.features.widths());
            }
        }
        if route == Route::Full {
            let dec = self.model.df_decoder();
            // emb, c0
            let c = dec.step(&mut self.df_decoder, [get(4), get(5)])?;
            let coefs = floats(&c[dec.outputs[0]])?;
            let depth = self.history.len() as u64;
            let first = current.wrapping_sub((order - 1 - df_lookahead) as u64);
            let history = &self.history;
            let frames = (0..order as u64).map(move |o| {
                let k = first.wrapping_add(o);
                // Frames before the start are silence: the ring still holds zeros there.
                history[(k % depth) as usize].as_slice()
            });
            deep_filter(frames, coefs, order, &mut self.target);
        }
        Ok(lsnr)
    }
}

impl Stage for DeepFilter {
    fn name(&self) -> &'static str {
        "deepfilter"
    }

    fn process(&mut self, frame: &mut Frame, info: &mut FrameInfo) {
        self.denoise(frame);
        info.voice_prob = Some(lsnr_to_voice_prob(self.output_lsnr()));
    }

    fn latency(&self) -> usize {
        let p = self.model.params();
        (p.fft_size - p.hop) + p.lookahead() * p.hop
    }

    /// Back to the freshly built state. This allocates (new network states): do not
    /// call it on an audio thread.
    fn reset(&mut self) {
        self.analyzer.reset();
        self.synthesizer.reset();
        self.features.reset();
        for h in &mut self.history {
            h.fill(Complex32::new(0.0, 0.0));
        }
        self.lsnr.fill(0.0);
        self.frames = 0;
        for (state, network) in [
            (&mut self.encoder, self.model.encoder()),
            (&mut self.erb_decoder, self.model.erb_decoder()),
            (&mut self.df_decoder, self.model.df_decoder()),
        ] {
            if let Ok(fresh) = TypedSimpleState::new(&network.plan) {
                *state = fresh;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const _: () = {
        const fn assert_send<T: Send>() {}
        assert_send::<DeepFilter>();
        assert_send::<DeepFilterModel>();
    };
}
