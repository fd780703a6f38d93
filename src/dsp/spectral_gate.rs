//! The spectral gate: per-bin soft gains on a causal STFT that take out what RNNoise
//! leaves behind (or, without RNNoise, the noise itself).
//!
//! Two noise estimators, as in noisereduce:
//! - **stationary**: a per-bin noise profile (mean and spread of the level in dB, and
//!   the mean power), from a noise clip the caller gives ([`NoiseProfile`]) or learned
//!   online from the frames the VAD calls non-speech;
//! - **non-stationary**: a running noise power per bin, tracked with a speech-presence
//!   probability (so speech leaks little into it) and smoothed over time.
//!
//! Both estimates freeze while the VAD says speech (configurable).
//!
//! Two gain rules turn the estimate into a mask:
//! - **mmse**: the log-spectral-amplitude MMSE gain (Ephraim–Malah) with a
//!   decision-directed a-priori SNR, which is smooth over time by construction;
//! - **sigmoid**: a soft sigmoid of the level above the noise threshold (noisereduce).
//!
//! The mask is smoothed over frequency and time against musical noise, scaled by
//! `prop_decrease` and floored at `max_attenuation_db`: the gate never removes more
//! than that. Finally a zero-phase low cut (`low_cut_hz`, the magnitude of a 4th-order
//! Butterworth high-pass) takes out the rumble and hum below the voice: as a real
//! spectral gain it shifts no phase and adds no delay, which a causal high-pass cannot
//! avoid (measured in the README).
//!
//! **Guided mode.** After RNNoise, the gate is handed the noisy input too, delayed to
//! line up with RNNoise's output. The noise is tracked on the noisy input, where it is
//! stationary enough to track, and the residual noise in RNNoise's output is estimated
//! per bin as `residual_scale × noise × (RNNoise's own gain)²`, the gain read off the
//! two spectra. Measured on the development set this beats tracking the residual
//! directly (see the README).

use realfft::num_complex::Complex32;
use realfft::RealFftPlanner;
use serde::{Deserialize, Serialize};

use super::stft::{check_geometry, StftAnalyzer, StftSynthesizer, WindowPair};
use super::{db_to_gain, one_pole_coef, Frame, FrameInfo, Stage, FRAME_LEN, SAMPLE_RATE};
use crate::error::{Error, Result};

/// How the gate estimates the noise.
///
/// # Examples
///
/// ```
/// use clearvox::dsp::spectral_gate::GateMode;
/// use clearvox::{Config, Preset};
///
/// let config = Config::from_toml_str("[gate]\nmode = \"stationary\"")?;
/// assert_eq!(config.gate.mode, GateMode::Stationary);
///
/// assert_eq!(Preset::VoiceChat.config().gate.mode, GateMode::Nonstationary);
/// assert_eq!(Preset::Bypass.config().gate.mode, GateMode::Off);
/// # Ok::<(), clearvox::Error>(())
/// ```
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum GateMode {
    /// No gate.
    Off,
    /// A fixed per-bin profile (given, or learned online from non-speech).
    Stationary,
    /// A running, speech-presence-weighted noise tracker.
    #[default]
    Nonstationary,
}

/// How the noise estimate becomes a gain.
///
/// # Examples
///
/// ```
/// use clearvox::dsp::spectral_gate::{GateConfig, MaskRule};
/// use clearvox::{Config, Preset};
///
/// // noisereduce's soft threshold, 2 standard deviations above the noise level.
/// let config = Config {
///     gate: GateConfig {
///         mask: MaskRule::Sigmoid,
///         n_std: 2.0,
///         ..GateConfig::default()
///     },
///     ..Preset::LowCpu.config()
/// };
/// config.validate()?;
/// # Ok::<(), clearvox::Error>(())
/// ```
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum MaskRule {
    /// Log-spectral-amplitude MMSE gain with a decision-directed a-priori SNR.
    #[default]
    Mmse,
    /// Soft sigmoid of the level above the noise threshold.
    Sigmoid,
}

/// Settings of the spectral gate.
///
/// # Examples
///
/// ```
/// use clearvox::dsp::spectral_gate::GateConfig;
///
/// // The default STFT: 1440 samples (30 ms), hop 480, low-delay windows.
/// let gate = GateConfig::default();
/// assert_eq!(gate.latency(), 480);
///
/// // The symmetric window pair trades latency for a smoother response.
/// let symmetric = GateConfig {
///     low_delay: false,
///     ..GateConfig::default()
/// };
/// assert_eq!(symmetric.latency(), 960);
///
/// // The geometry is checked.
/// let bad = GateConfig {
///     hop: 500,
///     ..GateConfig::default()
/// };
/// let err = bad.validate().unwrap_err();
/// assert!(err.to_string().contains("fft_size must be even and a multiple of hop"));
/// ```
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct GateConfig {
    /// Noise estimator (or off).
    pub mode: GateMode,
    /// Gain rule.
    pub mask: MaskRule,
    /// STFT length in samples at 48 kHz (latency is `fft_size - hop`).
    pub fft_size: usize,
    /// STFT hop in samples; must divide 480 (one 10 ms frame).
    pub hop: usize,
    /// Use the low-delay window pair: latency one hop instead of `fft_size - hop`.
    pub low_delay: bool,
    /// Most attenuation the gate applies to a bin, dB.
    pub max_attenuation_db: f32,
    /// Fraction of the computed attenuation applied (0 = none, 1 = all), as in noisereduce.
    pub prop_decrease: f32,
    /// Stationary/sigmoid threshold: standard deviations of the noise level above its mean.
    pub n_std: f32,
    /// Width of the sigmoid, dB (larger is softer).
    pub sigmoid_slope_db: f32,
    /// Time constant of the non-stationary noise tracker, ms.
    pub noise_tau_ms: f32,
    /// Memory of the online stationary profile, s.
    pub profile_tau_s: f32,
    /// Whether the noise estimate holds still while the VAD says speech.
    pub freeze_on_speech: bool,
    /// Voice probability above which the estimate freezes.
    pub freeze_threshold: f32,
    /// Weight of the previous frame in the decision-directed a-priori SNR.
    pub dd_alpha: f32,
    /// Guided mode: residual noise in RNNoise's output relative to the input noise × its gain².
    pub residual_scale: f32,
    /// Mask smoothing across frequency, Hz either side (0 = none).
    pub freq_smooth_hz: f32,
    /// Mask smoothing over time when closing, ms (0 = none; opening is instant).
    pub time_smooth_ms: f32,
    /// Zero-phase low cut in the gate's spectrum, Hz (0 = none).
    pub low_cut_hz: f32,
}

impl Default for GateConfig {
    fn default() -> Self {
        Self {
            mode: GateMode::Nonstationary,
            mask: MaskRule::Mmse,
            fft_size: 1440,
            hop: 480,
            low_delay: true,
            max_attenuation_db: 10.0,
            prop_decrease: 1.0,
            n_std: 1.5,
            sigmoid_slope_db: 3.0,
            noise_tau_ms: 70.0,
            profile_tau_s: 10.0,
            freeze_on_speech: true,
            freeze_threshold: 0.8,
            dd_alpha: 0.92,
            residual_scale: 0.5,
            freq_smooth_hz: 0.0,
            time_smooth_ms: 0.0,
            low_cut_hz: 100.0,
        }
    }
}

impl GateConfig {
    /// Checks ranges and the STFT geometry.
    pub fn validate(&self) -> Result<()> {
        check_geometry(self.fft_size, self.hop)?;
        if !FRAME_LEN.is_multiple_of(self.hop) {
            return Err(Error::Config(format!(
                "gate.hop = {}: must divide the {FRAME_LEN}-sample frame",
                self.hop
            )));
        }
        if self.fft_size > 8192 {
            return Err(Error::Config(format!(
                "gate.fft_size = {}: at most 8192",
                self.fft_size
            )));
        }
        let checks = [
            ("max_attenuation_db", self.max_attenuation_db, 0.0, 100.0),
            ("prop_decrease", self.prop_decrease, 0.0, 1.0),
            ("n_std", self.n_std, -5.0, 10.0),
            ("sigmoid_slope_db", self.sigmoid_slope_db, 0.1, 30.0),
            ("noise_tau_ms", self.noise_tau_ms, 1.0, 60_000.0),
            ("profile_tau_s", self.profile_tau_s, 0.1, 3_600.0),
            ("freeze_threshold", self.freeze_threshold, 0.0, 1.0),
            ("dd_alpha", self.dd_alpha, 0.0, 0.999),
            ("residual_scale", self.residual_scale, 0.0, 10.0),
            ("freq_smooth_hz", self.freq_smooth_hz, 0.0, 4_000.0),
            ("time_smooth_ms", self.time_smooth_ms, 0.0, 5_000.0),
            ("low_cut_hz", self.low_cut_hz, 0.0, 1_000.0),
        ];
        for (name, v, lo, hi) in checks {
            if !(lo..=hi).contains(&v) {
                return Err(Error::Config(format!(
                    "gate.{name} = {v}: must be in {lo}..{hi}"
                )));
            }
        }
        Ok(())
    }

    /// The STFT window pair this configuration uses.
    pub fn windows(&self) -> Result<WindowPair> {
        if self.low_delay {
            WindowPair::low_delay(self.fft_size, self.hop)
        } else {
            WindowPair::symmetric(self.fft_size, self.hop)
        }
    }

    /// Samples the gate delays its input.
    pub fn latency(&self) -> usize {
        if self.low_delay {
            self.hop
        } else {
            self.fft_size - self.hop
        }
    }
}

/// Gains of a 4th-order Butterworth high-pass magnitude at each bin centre, applied as
/// a real (zero-phase) spectral gain: a low cut with no phase shift and no extra delay.
fn low_cut_gains(cutoff_hz: f32, bin_hz: f32) -> Vec<f32> {
    if cutoff_hz <= 0.0 {
        return Vec::new();
    }
    (0..)
        .map(|k| k as f32 * bin_hz)
        .take_while(|f| *f < cutoff_hz * 4.0)
        .map(|f| {
            let r = (cutoff_hz / f.max(1e-3)).powi(4);
            (1.0 / (1.0 + r * r)).sqrt()
        })
        .collect()
}

/// A per-bin noise profile: statistics of a noise clip's STFT.
///
/// [`Pipeline::set_noise_profile`](crate::Pipeline::set_noise_profile) measures one
/// from audio at any rate; this is the 48 kHz building block.
///
/// # Examples
///
/// ```
/// use clearvox::dsp::spectral_gate::{GateConfig, GateMode, NoiseProfile, SpectralGate};
/// # fn noise(len: usize) -> Vec<f32> {
/// #     let mut seed = 1u32;
/// #     (0..len)
/// #         .map(|_| {
/// #             seed = seed.wrapping_mul(1_664_525).wrapping_add(1_013_904_223);
/// #             (seed >> 8) as f32 / (1u32 << 24) as f32 * 0.02 - 0.01
/// #         })
/// #         .collect()
/// # }
///
/// let config = GateConfig {
///     mode: GateMode::Stationary,
///     ..GateConfig::default()
/// };
/// let room_tone = noise(24_000); // 0.5 s of noise alone, 48 kHz
/// let profile = NoiseProfile::from_samples(&room_tone, &config)?;
/// assert_eq!(profile.mean_db.len(), config.fft_size / 2 + 1);
///
/// let mut gate = SpectralGate::new(&config)?;
/// gate.set_noise_profile(profile)?;
///
/// // A clip must give the STFT enough frames.
/// let err = NoiseProfile::from_samples(&room_tone[..4_800], &config).unwrap_err();
/// assert!(err.to_string().contains("100 ms is too short: it needs at least 120 ms"));
/// # Ok::<(), clearvox::Error>(())
/// ```
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct NoiseProfile {
    /// STFT length the profile was measured with.
    pub fft_size: usize,
    /// STFT hop the profile was measured with.
    pub hop: usize,
    /// Whether it was measured with the low-delay window pair.
    pub low_delay: bool,
    /// Mean level per bin, dB (of the unnormalised power spectrum).
    pub mean_db: Vec<f32>,
    /// Standard deviation of the level per bin, dB.
    pub std_db: Vec<f32>,
    /// Mean power per bin (unnormalised).
    pub mean_power: Vec<f32>,
}

/// Fewest STFT frames a noise clip must yield.
const MIN_PROFILE_FRAMES: usize = 10;

impl NoiseProfile {
    /// Measures a profile from noise alone (48 kHz mono ±1.0) with the STFT of a gate
    /// configured by `config`.
    pub fn from_samples(samples: &[f32], config: &GateConfig) -> Result<Self> {
        let (fft_size, hop) = (config.fft_size, config.hop);
        check_geometry(fft_size, hop)?;
        let frames = samples.len().saturating_sub(fft_size) / hop + 1;
        if samples.len() < fft_size || frames < MIN_PROFILE_FRAMES {
            return Err(Error::Config(format!(
                "noise profile clip of {:.0} ms is too short: it needs at least {:.0} ms",
                samples.len() as f64 * 1000.0 / SAMPLE_RATE as f64,
                (fft_size + (MIN_PROFILE_FRAMES - 1) * hop) as f64 * 1000.0 / SAMPLE_RATE as f64
            )));
        }
        let mut planner = RealFftPlanner::new();
        let mut stft = StftAnalyzer::new(&mut planner, &config.windows()?)?;
        let bins = stft.bins();
        let mut stats = vec![Welford::default(); bins];
        let mut power = vec![0.0f64; bins];
        let mut n = 0usize;
        for (i, hop_samples) in samples.chunks_exact(hop).enumerate() {
            let spec = stft.analyze(hop_samples);
            // Skip the frames whose window still reaches before the clip.
            if (i + 1) * hop < fft_size {
                continue;
            }
            n += 1;
            for ((s, p), c) in stats.iter_mut().zip(power.iter_mut()).zip(spec.iter()) {
                let pw = c.norm_sqr();
                s.push(10.0 * (pw as f64 + POWER_EPS as f64).log10());
                *p += pw as f64;
            }
        }
        Ok(Self {
            fft_size,
            hop,
            low_delay: config.low_delay,
            mean_db: stats.iter().map(|s| s.mean as f32).collect(),
            std_db: stats.iter().map(|s| s.std() as f32).collect(),
            mean_power: power.iter().map(|p| (p / n as f64) as f32).collect(),
        })
    }
}

#[derive(Clone, Copy, Debug, Default)]
struct Welford {
    n: f64,
    mean: f64,
    m2: f64,
}

impl Welford {
    fn push(&mut self, x: f64) {
        self.n += 1.0;
        let d = x - self.mean;
        self.mean += d / self.n;
        self.m2 += d * (x - self.mean);
    }

    fn std(&self) -> f64 {
        if self.n > 1.0 {
            (self.m2 / (self.n - 1.0)).sqrt()
        } else {
            0.0
        }
    }
}

/// Keeps logarithms finite for silent bins (the spectra are unnormalised, so this is
/// far below any real signal).
const POWER_EPS: f32 = 1e-10;
/// A-priori SNR of speech assumed by the speech-presence tracker (15 dB).
const SPP_XI_H1: f32 = 31.622_776;
/// Hops averaged to initialise the noise estimate.
const INIT_HOPS: u32 = 8;
/// Lowest a-priori SNR the decision-directed estimate may take (−25 dB).
const XI_MIN: f32 = 0.003_162_277_6;
/// Expected dB level of exponentially distributed power below its mean (Euler's γ in dB).
const EXP_MEAN_DB_OFFSET: f32 = -2.507;
/// Standard deviation of the dB level of exponentially distributed power.
const EXP_STD_DB: f32 = 5.57;

/// The spectral gate stage.
///
/// # Examples
///
/// ```
/// use clearvox::dsp::spectral_gate::{GateConfig, SpectralGate};
/// use clearvox::dsp::{Frame, FrameInfo, Stage, FRAME_LEN};
/// # fn noise(len: usize) -> Vec<f32> {
/// #     let mut seed = 1u32;
/// #     (0..len)
/// #         .map(|_| {
/// #             seed = seed.wrapping_mul(1_664_525).wrapping_add(1_013_904_223);
/// #             (seed >> 8) as f32 / (1u32 << 24) as f32 * 0.02 - 0.01
/// #         })
/// #         .collect()
/// # }
///
/// let mut gate = SpectralGate::new(&GateConfig::default())?;
/// assert_eq!(gate.latency(), 480);
///
/// let input = noise(48_000); // 1 s of steady noise
/// let mut output = Vec::new();
/// for chunk in input.chunks_exact(FRAME_LEN) {
///     let mut frame: Frame = chunk.try_into().expect("whole frames");
///     gate.process(&mut frame, &mut FrameInfo::default());
///     output.extend_from_slice(&frame);
/// }
///
/// // Once the noise is learned, it is taken down by up to `max_attenuation_db`.
/// let energy = |x: &[f32]| x.iter().map(|v| v * v).sum::<f32>();
/// assert!(energy(&output[24_000..]) < 0.3 * energy(&input[24_000..]));
/// # Ok::<(), clearvox::Error>(())
/// ```
pub struct SpectralGate {
    config: GateConfig,
    analyzer: StftAnalyzer,
    guide_analyzer: StftAnalyzer,
    synthesizer: StftSynthesizer,
    /// Noise power per bin (unnormalised), on the guide (noisy input) when guided.
    noise: Vec<f32>,
    /// Smoothed speech-presence probability per bin (stagnation guard).
    spp_avg: Vec<f32>,
    /// Online stationary profile: mean and variance of the level in dB.
    prof_mean_db: Vec<f32>,
    prof_var_db: Vec<f32>,
    prof_frames: u32,
    /// Measured profile: the stationary estimate, or the non-stationary tracker's seed.
    fixed_profile: Option<NoiseProfile>,
    /// Decision-directed memory: |Ŝ|²/λ of the previous hop.
    prev_snr: Vec<f32>,
    mask: Vec<f32>,
    prev_mask: Vec<f32>,
    smooth_tmp: Vec<f32>,
    guide_power: Vec<f32>,
    hops_seen: u32,
    noise_coef: f32,
    profile_coef: f32,
    close_coef: f32,
    floor: f32,
    smooth_bins: usize,
    guided_last_frame: bool,
    lsa: LsaTable,
    /// Zero-phase low cut: a gain per bin (only the bins below ~4× the cutoff).
    low_cut: Vec<f32>,
}

impl std::fmt::Debug for SpectralGate {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SpectralGate")
            .field("config", &self.config)
            .field("fixed_profile", &self.fixed_profile.is_some())
            .field("hops_seen", &self.hops_seen)
            .finish_non_exhaustive()
    }
}

impl SpectralGate {
    /// A gate with an empty noise estimate (the first hops initialise it).
    pub fn new(config: &GateConfig) -> Result<Self> {
        config.validate()?;
        let mut planner = RealFftPlanner::new();
        let windows = config.windows()?;
        let analyzer = StftAnalyzer::new(&mut planner, &windows)?;
        let guide_analyzer = StftAnalyzer::new(&mut planner, &windows)?;
        let synthesizer = StftSynthesizer::new(&mut planner, &windows)?;
        let bins = analyzer.bins();
        let hop_s = config.hop as f32 / SAMPLE_RATE as f32;
        let bin_hz = SAMPLE_RATE as f32 / config.fft_size as f32;
        Ok(Self {
            analyzer,
            guide_analyzer,
            synthesizer,
            noise: vec![0.0; bins],
            spp_avg: vec![0.0; bins],
            prof_mean_db: vec![0.0; bins],
            prof_var_db: vec![0.0; bins],
            prof_frames: 0,
            fixed_profile: None,
            prev_snr: vec![1.0; bins],
            mask: vec![1.0; bins],
            prev_mask: vec![1.0; bins],
            smooth_tmp: vec![0.0; bins],
            guide_power: vec![0.0; bins],
            hops_seen: 0,
            noise_coef: one_pole_coef(config.noise_tau_ms / 1000.0, hop_s),
            profile_coef: one_pole_coef(config.profile_tau_s, hop_s),
            close_coef: one_pole_coef(config.time_smooth_ms / 1000.0, hop_s),
            floor: db_to_gain(-config.max_attenuation_db),
            smooth_bins: (config.freq_smooth_hz / bin_hz).round() as usize,
            guided_last_frame: false,
            lsa: LsaTable::new(),
            low_cut: low_cut_gains(config.low_cut_hz, bin_hz),
            config: config.clone(),
        })
    }

    /// Uses a measured noise profile (it must have been measured with this gate's STFT
    /// geometry). In stationary mode it replaces the online profile; in non-stationary
    /// mode it seeds the tracker, which then follows the noise as usual.
    pub fn set_noise_profile(&mut self, profile: NoiseProfile) -> Result<()> {
        if profile.fft_size != self.config.fft_size
            || profile.hop != self.config.hop
            || profile.low_delay != self.config.low_delay
            || profile.mean_db.len() != self.noise.len()
        {
            return Err(Error::Config(format!(
                "noise profile measured with fft_size {} / hop {} / low_delay {}, but the gate \
                 uses {} / {} / {}",
                profile.fft_size,
                profile.hop,
                profile.low_delay,
                self.config.fft_size,
                self.config.hop,
                self.config.low_delay
            )));
        }
        self.fixed_profile = Some(profile);
        self.seed_from_profile();
        Ok(())
    }

    fn seed_from_profile(&mut self) {
        let Some(profile) = &self.fixed_profile else {
            return;
        };
        self.noise.copy_from_slice(&profile.mean_power);
        self.prof_mean_db.copy_from_slice(&profile.mean_db);
        for (v, s) in self.prof_var_db.iter_mut().zip(&profile.std_db) {
            *v = s * s;
        }
        self.hops_seen = INIT_HOPS;
        self.prof_frames = INIT_HOPS;
    }

    /// The gate's settings.
    pub fn config(&self) -> &GateConfig {
        &self.config
    }

    /// The current noise power estimate per bin (unnormalised power spectrum units).
    pub fn noise_estimate(&self) -> &[f32] {
        &self.noise
    }

    /// Whether the last frame was processed with a guide signal.
    pub fn was_guided(&self) -> bool {
        self.guided_last_frame
    }

    /// Processes one frame of `frame` in place, tracking the noise on `guide`: the
    /// noisy signal aligned sample for sample with `frame` (RNNoise's input delayed by
    /// RNNoise's latency). Without RNNoise, use [`Stage::process`], which guides the
    /// gate by its own input.
    pub fn process_guided(&mut self, frame: &mut Frame, guide: &Frame, info: &FrameInfo) {
        self.guided_last_frame = true;
        self.run(frame, Some(guide), info);
    }

    fn run(&mut self, frame: &mut Frame, guide: Option<&Frame>, info: &FrameInfo) {
        let hop = self.config.hop;
        let frozen = self.config.freeze_on_speech
            && info
                .voice_prob
                .is_some_and(|p| p >= self.config.freeze_threshold);
        for h in 0..FRAME_LEN / hop {
            let range = h * hop..(h + 1) * hop;
            let guide_hop = guide.map(|g| &g[range.clone()]);
            self.hop(&mut frame[range], guide_hop, frozen);
        }
    }

    fn hop(&mut self, samples: &mut [f32], guide: Option<&[f32]>, frozen: bool) {
        // Power of the signal that carries the noise estimate: the guide when there is
        // one, else the gate's own input.
        let guided = guide.is_some();
        let spec = self.analyzer.analyze(samples);
        let source = match guide {
            Some(g) => self.guide_analyzer.analyze(g),
            None => spec,
        };
        for (p, c) in self.guide_power.iter_mut().zip(source.iter()) {
            *p = c.norm_sqr() + POWER_EPS;
        }
        self.hops_seen = self.hops_seen.saturating_add(1);
        self.update_noise(frozen);
        compute_mask(
            &self.config,
            &mut MaskState {
                lsa: &self.lsa,
                mask: &mut self.mask,
                prev_snr: &mut self.prev_snr,
                noise: &self.noise,
                guide_power: &self.guide_power,
                prof_mean_db: &self.prof_mean_db,
                prof_var_db: &self.prof_var_db,
                fixed_profile: self
                    .fixed_profile
                    .as_ref()
                    .filter(|_| self.config.mode == GateMode::Stationary),
            },
            self.analyzer.spectrum(),
            guided,
        );
        self.finish_mask();
        let spec = self.analyzer.spectrum_mut();
        for (c, g) in spec.iter_mut().zip(&self.mask) {
            *c *= *g;
        }
        self.synthesizer.synthesize(spec, samples);
    }

    fn update_noise(&mut self, frozen: bool) {
        let n = self.hops_seen;
        if n <= INIT_HOPS {
            // Average the first hops: a stream most often starts before the speaker does.
            self.blend_into_estimates(1.0 / n as f32);
            self.prof_frames = n;
            return;
        }
        if frozen {
            return;
        }
        match self.config.mode {
            GateMode::Nonstationary | GateMode::Off => {
                let a = self.noise_coef;
                let k = SPP_XI_H1 / (1.0 + SPP_XI_H1);
                for ((l, p), avg) in self
                    .noise
                    .iter_mut()
                    .zip(&self.guide_power)
                    .zip(self.spp_avg.iter_mut())
                {
                    let post = p / l.max(POWER_EPS);
                    let spp = 1.0 / (1.0 + (1.0 + SPP_XI_H1) * exp_neg(-post * k));
                    *avg = 0.9 * *avg + 0.1 * spp;
                    let spp = if *avg > 0.99 { spp.min(0.99) } else { spp };
                    let expected = (1.0 - spp) * p + spp * *l;
                    *l = a * *l + (1.0 - a) * expected;
                }
            }
            GateMode::Stationary => {
                if self.fixed_profile.is_some() {
                    return;
                }
                self.prof_frames = self.prof_frames.saturating_add(1);
                let w = (1.0 / self.prof_frames as f32).max(1.0 - self.profile_coef);
                self.blend_into_estimates(w);
            }
        }
    }

    /// Moves the mean noise power and the level statistics (mean and variance in dB) a
    /// fraction `w` towards the current hop: `w = 1/n` gives plain averages over `n`
    /// hops, a constant gives an exponential memory.
    fn blend_into_estimates(&mut self, w: f32) {
        for (((l, p), m), v) in self
            .noise
            .iter_mut()
            .zip(&self.guide_power)
            .zip(self.prof_mean_db.iter_mut())
            .zip(self.prof_var_db.iter_mut())
        {
            *l += w * (p - *l);
            let db = 10.0 * p.log10();
            let d = db - *m;
            *m += w * d;
            *v += w * (d * (db - *m) - *v);
        }
    }

    fn finish_mask(&mut self) {
        let bins = self.mask.len();
        if self.smooth_bins > 0 {
            // Moving average across ±smooth_bins (running sum, edges shrink the window).
            self.smooth_tmp.copy_from_slice(&self.mask);
            let w = self.smooth_bins;
            let mut sum: f32 = self.smooth_tmp[..w.min(bins)].iter().sum();
            for k in 0..bins {
                if k + w < bins {
                    sum += self.smooth_tmp[k + w];
                }
                if k > w {
                    sum -= self.smooth_tmp[k - w - 1];
                }
                let lo = k.saturating_sub(w);
                let hi = (k + w).min(bins - 1);
                self.mask[k] = sum / (hi - lo + 1) as f32;
            }
        }
        let c = self.close_coef;
        let p = self.config.prop_decrease;
        for (g, prev) in self.mask.iter_mut().zip(self.prev_mask.iter_mut()) {
            let mut v = *g;
            if v < *prev {
                v = c * *prev + (1.0 - c) * v;
            }
            *prev = v;
            v = 1.0 - p * (1.0 - v);
            *g = v.clamp(self.floor, 1.0);
        }
        for (g, w) in self.mask.iter_mut().zip(&self.low_cut) {
            *g *= w;
        }
    }
}

struct MaskState<'a> {
    lsa: &'a LsaTable,
    mask: &'a mut [f32],
    prev_snr: &'a mut [f32],
    noise: &'a [f32],
    guide_power: &'a [f32],
    prof_mean_db: &'a [f32],
    prof_var_db: &'a [f32],
    fixed_profile: Option<&'a NoiseProfile>,
}

fn compute_mask(config: &GateConfig, st: &mut MaskState<'_>, spec: &[Complex32], guided: bool) {
    match config.mask {
        MaskRule::Mmse => {
            let alpha = config.dd_alpha;
            let stationary_power = match (config.mode, st.fixed_profile) {
                (GateMode::Stationary, Some(p)) => Some(&p.mean_power[..]),
                _ => None,
            };
            // Guided, the residual noise is `residual_scale × noise × g²` with RNNoise's
            // gain g² = min(|Y|²/|X|², 1), so γ = |Y|²/λ = max(|Y|², |X|²)/(scale × noise).
            let scale = if guided { config.residual_scale } else { 1.0 };
            for k in 0..st.mask.len() {
                let noise = stationary_power.map_or(st.noise[k], |p| p[k]);
                let py = spec[k].norm_sqr() + POWER_EPS;
                let power = if guided {
                    py.max(st.guide_power[k])
                } else {
                    py
                };
                let gamma = (power / (scale * noise).max(POWER_EPS)).min(1e4);
                let xi =
                    (alpha * st.prev_snr[k] + (1.0 - alpha) * (gamma - 1.0).max(0.0)).max(XI_MIN);
                let g = st.lsa.gain(xi, gamma);
                st.prev_snr[k] = g * g * gamma;
                st.mask[k] = g;
            }
        }
        MaskRule::Sigmoid => {
            let slope = config.sigmoid_slope_db;
            for k in 0..st.mask.len() {
                let threshold_db = match (config.mode, st.fixed_profile) {
                    (GateMode::Stationary, Some(p)) => p.mean_db[k] + config.n_std * p.std_db[k],
                    (GateMode::Stationary, None) => {
                        st.prof_mean_db[k] + config.n_std * st.prof_var_db[k].max(0.0).sqrt()
                    }
                    _ => {
                        10.0 * st.noise[k].max(POWER_EPS).log10()
                            + EXP_MEAN_DB_OFFSET
                            + config.n_std * EXP_STD_DB
                    }
                };
                let level_db = 10.0 * st.guide_power[k].log10();
                st.mask[k] = 1.0 / (1.0 + (-(level_db - threshold_db) / slope).exp());
            }
        }
    }
}

/// The log-spectral-amplitude estimator's gain, `ξ/(1+ξ) · exp(E1(v)/2)`, `v = ξγ/(1+ξ)`,
/// capped at 1. The reference form; the gate uses [`LsaTable`].
#[cfg(test)]
fn log_mmse_gain(xi: f32, gamma: f32) -> f32 {
    let r = xi / (1.0 + xi);
    let v = (r * gamma).max(2f32.powi(LsaTable::MIN_EXP));
    (r * (0.5 * exp_integral_e1(v)).exp()).min(1.0)
}

/// `exp(E1(v)/2)` tabulated on a grid that is uniform within each octave of `v`, so
/// the index comes straight from the float's exponent and mantissa bits; linear
/// interpolation between entries. Two transcendental functions per bin and hop were
/// most of the gate's cost; this is a few multiplies (error below 1e-4 relative).
struct LsaTable {
    values: Vec<f32>,
}

impl LsaTable {
    /// Lowest octave tabulated: 2^-20 (below it the gain is capped at 1 anyway).
    const MIN_EXP: i32 = -20;
    /// Above 2^6 the factor is 1 to within 1e-29.
    const MAX_EXP: i32 = 6;
    const PER_OCTAVE: usize = 32;

    fn new() -> Self {
        let octaves = (Self::MAX_EXP - Self::MIN_EXP) as usize;
        let values = (0..=octaves * Self::PER_OCTAVE)
            .map(|i| {
                let octave = Self::MIN_EXP + (i / Self::PER_OCTAVE) as i32;
                let m = 1.0 + (i % Self::PER_OCTAVE) as f64 / Self::PER_OCTAVE as f64;
                let v = m * 2f64.powi(octave);
                (0.5 * exp_integral_e1(v as f32) as f64).exp() as f32
            })
            .collect();
        Self { values }
    }

    /// The gain for a-priori SNR `xi` and a-posteriori SNR `gamma`.
    #[inline]
    fn gain(&self, xi: f32, gamma: f32) -> f32 {
        let r = xi / (1.0 + xi);
        let v = r * gamma;
        let min = f32::from_bits(((Self::MIN_EXP + 127) as u32) << 23);
        if v >= f32::from_bits(((Self::MAX_EXP + 127) as u32) << 23) {
            return r.min(1.0);
        }
        let v = v.max(min);
        let bits = v.to_bits();
        let octave = ((bits >> 23) & 0xff) as i32 - 127 - Self::MIN_EXP;
        // Mantissa as a position within the octave, 0..PER_OCTAVE.
        let pos = (bits & 0x007f_ffff) as f32 * (Self::PER_OCTAVE as f32 / 8_388_608.0);
        let i = pos as usize;
        let frac = pos - i as f32;
        let k = octave as usize * Self::PER_OCTAVE + i;
        let h = self.values[k] + frac * (self.values[k + 1] - self.values[k]);
        (r * h).min(1.0)
    }
}

/// `e^x` for `x ≤ 0` from the float's exponent bits and a degree-5 polynomial for the
/// fraction (relative error below 1e-4); the speech-presence tracker needs one per bin.
#[inline]
fn exp_neg(x: f32) -> f32 {
    let y = (x * std::f32::consts::LOG2_E).max(-126.0);
    // floor(y) for y ≤ 0, without a branch.
    let i = y as i32 - ((y as i32) as f32 > y) as i32;
    let f = y - i as f32;
    let p = 1.0
        + f * (std::f32::consts::LN_2
            + f * (0.240_226_5 + f * (0.055_504_11 + f * (0.009_618_129 + f * 0.001_333_355_8))));
    f32::from_bits(((i + 127) as u32) << 23) * p
}

/// The exponential integral E1(x) for x > 0: its series below 1, a rational
/// approximation (Abramowitz & Stegun 5.1.56, error < 5e-5) above.
fn exp_integral_e1(x: f32) -> f32 {
    if x < 1.0 {
        const EULER: f32 = 0.577_215_7;
        let x2 = x * x;
        -EULER - x.ln() + x - x2 / 4.0 + x2 * x / 18.0 - x2 * x2 / 96.0 + x2 * x2 * x / 600.0
    } else {
        let num = x * x + 2.334_733 * x + 0.250_621;
        let den = x * x + 3.330_657 * x + 1.681_534;
        num / den * (-x).exp() / x
    }
}

impl Stage for SpectralGate {
    fn name(&self) -> &'static str {
        "spectral_gate"
    }

    fn process(&mut self, frame: &mut Frame, info: &mut FrameInfo) {
        self.guided_last_frame = false;
        self.run(frame, None, info);
    }

    fn latency(&self) -> usize {
        self.config.latency()
    }

    fn reset(&mut self) {
        self.analyzer.reset();
        self.guide_analyzer.reset();
        self.synthesizer.reset();
        self.noise.fill(0.0);
        self.spp_avg.fill(0.0);
        self.prof_mean_db.fill(0.0);
        self.prof_var_db.fill(0.0);
        self.prof_frames = 0;
        self.prev_snr.fill(1.0);
        self.mask.fill(1.0);
        self.prev_mask.fill(1.0);
        self.hops_seen = 0;
        self.seed_from_profile();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn e1_matches_known_values() {
        // E1(0.1) = 1.822924, E1(1) = 0.219384, E1(3) = 0.013048.
        assert!((exp_integral_e1(0.1) - 1.822_924).abs() < 1e-4);
        assert!((exp_integral_e1(0.999) - 0.219_384).abs() < 2e-3);
        assert!((exp_integral_e1(1.0) - 0.219_384).abs() < 1e-4);
        assert!((exp_integral_e1(3.0) - 0.013_048).abs() < 1e-5);
    }

    #[test]
    fn fast_forms_match_the_reference() {
        let table = LsaTable::new();
        for i in 0..400 {
            let xi = 10f32.powf((i as f32 - 200.0) / 40.0);
            for gamma in [0.01, 0.5, 1.0, 2.0, 10.0, 100.0, 1e4] {
                let (a, b) = (table.gain(xi, gamma), log_mmse_gain(xi, gamma));
                assert!(
                    (a - b).abs() <= 1e-4 * b.max(1e-3),
                    "xi {xi} gamma {gamma}: {a} vs {b}"
                );
            }
        }
        for i in 0..1000 {
            let x = -(i as f32) * 0.087;
            let (a, b) = (exp_neg(x), x.exp());
            assert!((a - b).abs() <= 1e-4 * b, "exp({x}): {a} vs {b}");
        }
    }

    #[test]
    fn log_mmse_gain_is_monotonic_and_bounded() {
        let mut last = 0.0;
        for i in 0..60 {
            let xi = 10f32.powf((i as f32 - 30.0) / 10.0);
            let g = log_mmse_gain(xi, xi + 1.0);
            assert!((0.0..=1.0).contains(&g));
            assert!(g >= last - 1e-6, "gain fell at xi {xi}");
            last = g;
        }
        assert!(log_mmse_gain(1000.0, 1001.0) > 0.99);
    }

    #[test]
    fn profile_needs_enough_audio() {
        let err = NoiseProfile::from_samples(&[0.0; 2000], &GateConfig::default()).unwrap_err();
        assert!(err.to_string().contains("too short"), "{err}");
    }
}
