//! The output mix: the last stage, at the output rate, where the enhanced signal meets
//! the latency-aligned dry input. Strength, the attenuation limit and bypass are all a
//! blend of the two, so that strength 0 and bypass give the input itself, and each
//! change ramps over 10 ms instead of clicking.

use crate::config::Config;
use crate::dsp::{db_to_gain, FRAME_LEN};

/// Extra room in the dry ring beyond the latency and the internal chunking, samples.
const DRY_SLACK: usize = 4096;

/// A linear parameter ramp, one step per sample.
#[derive(Clone, Copy, Debug)]
struct Ramp {
    value: f32,
    target: f32,
    step: f32,
}

impl Ramp {
    fn new(value: f32) -> Self {
        Self {
            value,
            target: value,
            step: 0.0,
        }
    }

    /// Moves to `target` over `len` samples.
    fn set(&mut self, target: f32, len: usize) {
        self.target = target;
        self.step = (target - self.value) / len.max(1) as f32;
    }

    fn is_steady_at(&self, v: f32) -> bool {
        self.value == v && self.target == v
    }

    #[inline]
    fn next(&mut self) -> f32 {
        if self.value != self.target {
            self.value += self.step;
            if (self.step > 0.0 && self.value >= self.target)
                || (self.step < 0.0 && self.value <= self.target)
                || self.step == 0.0
            {
                self.value = self.target;
            }
        }
        self.value
    }
}

/// The last stage, at the output rate: blends the enhanced signal with the dry input
/// (strength, attenuation limit, bypass).
///
/// The dry signal is kept in a ring indexed by absolute output position, so that
/// output sample `n` is always blended with dry sample `n`, whatever the chunking.
pub(super) struct OutputMix {
    ring: Vec<f32>,
    /// Dry samples written so far (the next one's output position).
    written: u64,
    /// Zeros written at the start (the latency, when the dry signal is the input).
    pad: usize,
    /// `strength × (1 − floor)`.
    wet: Ramp,
    /// 1 processing, 0 bypassed.
    bypass: Ramp,
    floor: f32,
    ramp_len: usize,
    scratch: Vec<f32>,
}

impl OutputMix {
    /// A mix at `output_rate` whose dry signal starts with `pad` zeros and may run `lead`
    /// samples ahead of the enhanced one.
    pub(super) fn new(config: &Config, output_rate: u32, pad: usize, lead: usize) -> Self {
        let floor = config.atten_limit_db.map_or(0.0, |l| db_to_gain(-l));
        let mut this = Self {
            ring: vec![0.0; (pad + lead + DRY_SLACK).next_power_of_two()],
            written: 0,
            pad,
            wet: Ramp::new(config.strength * (1.0 - floor)),
            bypass: Ramp::new(if config.bypass { 0.0 } else { 1.0 }),
            floor,
            ramp_len: (output_rate as usize / 100).max(1),
            scratch: vec![0.0; FRAME_LEN],
        };
        this.reset();
        this
    }

    /// Appends dry samples, at the next output positions.
    pub(super) fn push(&mut self, dry: &[f32]) {
        let mask = self.ring.len() - 1;
        for &d in dry {
            self.ring[self.written as usize & mask] = d;
            self.written += 1;
        }
    }

    fn push_zeros(&mut self, n: usize) {
        let mask = self.ring.len() - 1;
        for _ in 0..n {
            self.ring[self.written as usize & mask] = 0.0;
            self.written += 1;
        }
    }

    /// Dry sample at output position `n` (silence before the start and after the end).
    #[inline]
    fn dry(&self, n: u64) -> f32 {
        if n < self.written && self.written - n <= self.ring.len() as u64 {
            self.ring[n as usize & (self.ring.len() - 1)]
        } else {
            0.0
        }
    }

    /// Blends `wet`, output positions `start..`, with the dry signal and hands the result
    /// to `sink`.
    pub(super) fn mix(&mut self, start: u64, wet: &[f32], sink: &mut impl FnMut(&[f32])) {
        if self.wet.is_steady_at(1.0) && self.bypass.is_steady_at(1.0) {
            sink(wet);
            return;
        }
        let mut pos = start;
        for chunk in wet.chunks(self.scratch.len()) {
            for (i, &x) in chunk.iter().enumerate() {
                let w = self.wet.next() * self.bypass.next();
                let d = self.dry(pos + i as u64);
                self.scratch[i] = w * x + (1.0 - w) * d;
            }
            pos += chunk.len() as u64;
            sink(&self.scratch[..chunk.len()]);
        }
    }

    /// Moves the wet/dry mix to `strength` (0 dry, 1 enhanced) over 10 ms.
    pub(super) fn set_strength(&mut self, strength: f32) {
        self.wet.set(strength * (1.0 - self.floor), self.ramp_len);
    }

    /// Moves to the dry signal (`bypass`) or back over 10 ms.
    pub(super) fn set_bypass(&mut self, bypass: bool) {
        self.bypass
            .set(if bypass { 0.0 } else { 1.0 }, self.ramp_len);
    }

    /// Back to the start of the stream, the ramps at their targets.
    pub(super) fn reset(&mut self) {
        self.written = 0;
        self.push_zeros(self.pad);
        self.wet = Ramp::new(self.wet.target);
        self.bypass = Ramp::new(self.bypass.target);
    }
}

#[cfg(test)]
mod tests {
    use crate::config::{Config, Preset};
    use crate::dsp::convert::{ChannelMode, Downmixer};
    use crate::pipeline::{Aligner, Pipeline};

    /// A deterministic noisy test signal with no exact zeros.
    fn signal(len: usize) -> Vec<f32> {
        let mut state = 0x1234_5678u32;
        (0..len)
            .map(|i| {
                state = state.wrapping_mul(1_664_525).wrapping_add(1_013_904_223);
                let noise = (state >> 8) as f32 / (1u32 << 24) as f32 - 0.5;
                0.3 * (i as f32 * 0.05).sin() + 0.2 * noise + 0.01
            })
            .collect()
    }

    fn run_chunked(
        config: &Config,
        x: &[f32],
        rate: u32,
        channels: usize,
        chunk: usize,
    ) -> Vec<f32> {
        let mut a = Aligner::new(Pipeline::new(config, rate, channels).unwrap());
        let mut out = Vec::new();
        for c in x.chunks(chunk * channels) {
            a.process(c, &mut out).unwrap();
        }
        a.finish(&mut out).unwrap();
        out
    }

    fn strength_zero() -> Config {
        Config {
            strength: 0.0,
            ..Config::default()
        }
    }

    #[test]
    fn bypass_and_strength_zero_give_the_input_at_every_rate() {
        for rate in [8_000, 16_000, 44_100, 48_000, 96_000] {
            let x = signal(rate as usize / 4);
            for config in [Preset::Bypass.config(), strength_zero()] {
                for chunk in [1, 441, 4096] {
                    let y = run_chunked(&config, &x, rate, 1, chunk);
                    assert!(y == x, "rate {rate}, chunk {chunk}, {:?}", config.preset);
                }
            }
            // Several channels: their downmix, exactly.
            let stereo: Vec<f32> = x.iter().flat_map(|&v| [v, 0.5 * v]).collect();
            let mut mono = vec![0.0; x.len()];
            Downmixer::new(2, ChannelMode::Downmix)
                .unwrap()
                .process(&stereo, &mut mono);
            let y = run_chunked(&Preset::Bypass.config(), &stereo, rate, 2, 1000);
            assert!(y == mono, "stereo at {rate}");
        }
    }

    #[test]
    fn strength_zero_equals_bypass_when_resampling() {
        let x = signal(12_000);
        let resampled = |c: Config| Config {
            output_rate: Some(24_000),
            ..c
        };
        let bypass = run_chunked(&resampled(Preset::Bypass.config()), &x, 16_000, 1, 4096);
        let dry = run_chunked(&resampled(strength_zero()), &x, 16_000, 1, 333);
        assert_eq!(bypass.len(), 18_000);
        assert!(bypass == dry);
        // And it is the input, resampled and aligned: a 440 Hz tone stays in place, to
        // within the half sample that whole-sample latency compensation leaves here
        // (47.5 + 15 samples of delay at 24 kHz); 0.03 is a third of a sample's error.
        let tone = |rate: f32, n: usize| -> Vec<f32> {
            (0..n)
                .map(|i| 0.5 * (std::f32::consts::TAU * 440.0 * i as f32 / rate).sin())
                .collect()
        };
        let y = run_chunked(
            &resampled(Preset::Bypass.config()),
            &tone(16_000.0, 12_000),
            16_000,
            1,
            4096,
        );
        let expected = tone(24_000.0, 18_000);
        let err = (2_000..16_000)
            .map(|i| (y[i] - expected[i]).abs())
            .fold(0.0f32, f32::max);
        assert!(err < 0.035, "{err}");
    }

    #[test]
    fn partial_strength_does_not_depend_on_chunking() {
        for (rate, out) in [(16_000, None), (16_000, Some(24_000)), (48_000, None)] {
            let config = Config {
                strength: 0.5,
                atten_limit_db: Some(12.0),
                output_rate: out,
                ..Config::default()
            };
            let x = signal(rate as usize / 2);
            let whole = run_chunked(&config, &x, rate, 1, x.len());
            for chunk in [1, 100, 4096] {
                assert!(
                    run_chunked(&config, &x, rate, 1, chunk) == whole,
                    "{rate} -> {out:?}, chunk {chunk}"
                );
            }
        }
    }

    #[test]
    fn switching_to_bypass_while_running_ends_on_the_input() {
        let rate = 16_000;
        let x = signal(rate as usize);
        let mut a = Aligner::new(Pipeline::new(&Config::default(), rate, 1).unwrap());
        let mut y = Vec::new();
        a.process(&x[..8_000], &mut y).unwrap();
        a.pipeline_mut().set_bypass(true);
        a.process(&x[8_000..], &mut y).unwrap();
        a.finish(&mut y).unwrap();
        assert_eq!(y.len(), x.len());
        assert!(y[..4_000] != x[..4_000], "processing before the switch");
        // The cross-fade is done 10 ms after the switch point plus the latency.
        assert!(y[9_000..] == x[9_000..]);
    }
}
