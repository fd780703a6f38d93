//! Input conditioning, part one: sample formats, channel layouts and the supported ranges.
//!
//! Everything arriving at the pipeline is converted to `f32` in ±1.0 and reduced to
//! one channel (the mean of all channels, or one chosen channel) before resampling.

use serde::{Deserialize, Serialize};

use crate::limits::{check_channels, LimitError};

/// A sample-format name that a parser does not know.
///
/// One type for the three format enums' `FromStr`: [`SampleFormat`] (what a WAV file
/// or a byte stream may carry), [`OutputFormat`](crate::io::OutputFormat) (what
/// clearvox writes) and `engine::DeviceFormat` (what an audio device delivers). The
/// message names what was parsed, the text given and the names accepted.
///
/// ```
/// use clearvox::io::OutputFormat;
///
/// let err = "mp3".parse::<OutputFormat>().unwrap_err();
/// assert_eq!(err.given(), "mp3");
/// assert_eq!(err.to_string(), "unknown output format \"mp3\": supported are s16, s24 and f32");
/// ```
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown {what} \"{given}\": supported are {supported}")]
pub struct ParseFormatError {
    what: &'static str,
    given: String,
    supported: &'static str,
}

impl ParseFormatError {
    /// An error for `given`, which is not one of `supported` (a list for people: "s16,
    /// s24 and f32") names of a `what` ("output format").
    pub fn new(what: &'static str, given: &str, supported: &'static str) -> Self {
        Self {
            what,
            given: given.to_string(),
            supported,
        }
    }

    /// The text that was given.
    pub fn given(&self) -> &str {
        &self.given
    }
}

/// An integer or float PCM sample encoding (little-endian where stored as bytes).
///
/// Every encoding the WAV reader and the byte-stream decoders take: it is the widest of
/// the three format enums, because input comes from anywhere.
/// [`OutputFormat`](crate::io::OutputFormat) is the narrower set clearvox writes, and
/// `engine::DeviceFormat` the set audio devices open with.
///
/// # Examples
///
/// ```
/// use clearvox::dsp::convert::SampleFormat;
///
/// // Two signed 16-bit samples, 16384 and -16384, as stored in a file.
/// let bytes = [0x00, 0x40, 0x00, 0xC0];
/// let mut samples = [0.0f32; 2];
/// SampleFormat::S16.decode_le(&bytes, &mut samples);
/// assert_eq!(samples, [0.5, -0.5]);
///
/// assert_eq!(SampleFormat::S24.bytes(), 3);
/// assert_eq!(SampleFormat::S24.to_string(), "s24");
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SampleFormat {
    /// Unsigned 8-bit, 128 is silence (the only 8-bit form WAV has).
    U8,
    /// Signed 16-bit.
    S16,
    /// Signed 24-bit, packed in 3 bytes.
    S24,
    /// Signed 32-bit.
    S32,
    /// IEEE 32-bit float, ±1.0 full scale.
    F32,
}

impl SampleFormat {
    /// Bytes one sample takes in a packed stream.
    pub fn bytes(self) -> usize {
        match self {
            Self::U8 => 1,
            Self::S16 => 2,
            Self::S24 => 3,
            Self::S32 | Self::F32 => 4,
        }
    }

    /// Bits per sample.
    pub fn bits(self) -> u16 {
        self.bytes() as u16 * 8
    }

    /// Short name, as used on the command line (`s16`, `f32`, ...).
    pub fn name(self) -> &'static str {
        match self {
            Self::U8 => "u8",
            Self::S16 => "s16",
            Self::S24 => "s24",
            Self::S32 => "s32",
            Self::F32 => "f32",
        }
    }

    /// Decodes packed little-endian samples into `out` (one `f32` per sample).
    ///
    /// `bytes.len()` must be `out.len() * self.bytes()`; extra bytes are ignored.
    pub fn decode_le(self, bytes: &[u8], out: &mut [f32]) {
        let n = self.bytes();
        for (chunk, y) in bytes.chunks_exact(n).zip(out.iter_mut()) {
            *y = match self {
                Self::U8 => (chunk[0] as f32 - 128.0) / 128.0,
                Self::S16 => i16::from_le_bytes([chunk[0], chunk[1]]) as f32 / 32_768.0,
                Self::S24 => {
                    // Sign-extend by placing the 3 bytes in the top of an i32.
                    let v = i32::from_le_bytes([0, chunk[0], chunk[1], chunk[2]]) >> 8;
                    v as f32 / 8_388_608.0
                }
                Self::S32 => {
                    i32::from_le_bytes([chunk[0], chunk[1], chunk[2], chunk[3]]) as f32
                        / 2_147_483_648.0
                }
                Self::F32 => f32::from_le_bytes([chunk[0], chunk[1], chunk[2], chunk[3]]),
            };
        }
    }
}

impl std::fmt::Display for SampleFormat {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// Converts a signed 16-bit sample to `f32` in ±1.0.
#[inline]
pub fn i16_to_f32(v: i16) -> f32 {
    v as f32 / 32_768.0
}

/// Converts an `f32` sample to signed 16-bit, rounding and saturating.
#[inline]
pub fn f32_to_i16(v: f32) -> i16 {
    (v * 32_768.0).round().clamp(-32_768.0, 32_767.0) as i16
}

/// Replaces NaN by 0 and ±infinity by ±1.0; returns how many samples were replaced.
pub fn sanitize(samples: &mut [f32]) -> usize {
    let mut replaced = 0;
    for s in samples.iter_mut() {
        if !s.is_finite() {
            *s = if s.is_nan() { 0.0 } else { s.signum() };
            replaced += 1;
        }
    }
    replaced
}

/// A sample type the pipeline accepts directly: `f32` in ±1.0 or `i16` (also `i32`
/// and `u16`, the other formats audio devices deliver).
///
/// # Examples
///
/// ```
/// use clearvox::dsp::convert::PcmSample;
/// use clearvox::{Config, Pipeline};
///
/// fn peak<S: PcmSample>(samples: &[S]) -> f32 {
///     samples.iter().map(|s| s.to_f32().abs()).fold(0.0, f32::max)
/// }
/// assert_eq!(peak(&[0i16, -16_384, 8_192]), 0.5);
/// assert_eq!(peak(&[0.25f32, -0.75]), 0.75);
///
/// // The pipeline takes any of them, no conversion needed.
/// let mut pipeline = Pipeline::new(&Config::default(), 16_000, 1)?;
/// let mut out = Vec::new();
/// pipeline.process(&[0i16; 160], &mut out)?;
/// pipeline.process(&[0.0f32; 160], &mut out)?;
/// # Ok::<(), clearvox::Error>(())
/// ```
pub trait PcmSample: Copy + Send + Sync + 'static {
    /// The sample as `f32` in ±1.0.
    fn to_f32(self) -> f32;
}

impl PcmSample for f32 {
    #[inline]
    fn to_f32(self) -> f32 {
        self
    }
}

impl PcmSample for i16 {
    #[inline]
    fn to_f32(self) -> f32 {
        i16_to_f32(self)
    }
}

impl PcmSample for i32 {
    /// Same scale as a 32-bit WAV sample.
    #[inline]
    fn to_f32(self) -> f32 {
        self as f32 / 2_147_483_648.0
    }
}

impl PcmSample for u16 {
    /// 32768 is silence.
    #[inline]
    fn to_f32(self) -> f32 {
        (self as f32 - 32_768.0) / 32_768.0
    }
}

/// A sample type audio can be written to from `f32` in ±1.0 (rounding and saturating).
///
/// # Examples
///
/// ```
/// use clearvox::dsp::convert::FromF32;
///
/// fn to_device<S: FromF32>(mono: &[f32], out: &mut [S]) {
///     for (o, &x) in out.iter_mut().zip(mono) {
///         *o = S::from_f32(x);
///     }
/// }
///
/// let mut pcm = [0i16; 3];
/// to_device(&[0.5, -1.0, 2.0], &mut pcm);
/// assert_eq!(pcm, [16_384, -32_768, 32_767]); // 2.0 saturates
/// ```
pub trait FromF32: Copy + Send + 'static {
    /// Converts one sample.
    fn from_f32(v: f32) -> Self;
}

impl FromF32 for f32 {
    #[inline]
    fn from_f32(v: f32) -> Self {
        v
    }
}

impl FromF32 for i16 {
    #[inline]
    fn from_f32(v: f32) -> Self {
        f32_to_i16(v)
    }
}

impl FromF32 for i32 {
    #[inline]
    fn from_f32(v: f32) -> Self {
        (v as f64 * 2_147_483_648.0)
            .round()
            .clamp(i32::MIN as f64, i32::MAX as f64) as i32
    }
}

impl FromF32 for u16 {
    #[inline]
    fn from_f32(v: f32) -> Self {
        (v * 32_768.0 + 32_768.0).round().clamp(0.0, 65_535.0) as u16
    }
}

/// How a multi-channel input becomes the single channel the chain processes.
///
/// # Examples
///
/// ```
/// use clearvox::dsp::convert::ChannelMode;
/// use clearvox::{Config, Pipeline};
///
/// // Only the left channel of a stereo input (channels count from 0).
/// let config = Config {
///     channel: ChannelMode::Channel(0),
///     ..Config::default()
/// };
/// let pipeline = Pipeline::new(&config, 48_000, 2)?;
/// assert_eq!(pipeline.channels(), 2);
///
/// // The same in TOML.
/// let from_file = Config::from_toml_str("channel = { channel = 0 }")?;
/// assert_eq!(from_file.channel, ChannelMode::Channel(0));
///
/// // A channel the input does not have is refused when the pipeline is built.
/// let third = Config {
///     channel: ChannelMode::Channel(2),
///     ..Config::default()
/// };
/// let err = Pipeline::new(&third, 48_000, 2).unwrap_err();
/// assert!(err.to_string().contains("the input has only 2 channel(s)"));
/// # Ok::<(), clearvox::Error>(())
/// ```
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum ChannelMode {
    /// The mean of all channels.
    #[default]
    Downmix,
    /// One channel, counted from 0.
    Channel(usize),
}

/// Reduces interleaved frames to one channel.
///
/// # Examples
///
/// ```
/// use clearvox::dsp::convert::{ChannelMode, Downmixer};
///
/// let stereo = [0.5f32, 0.25, -0.5, -0.25]; // two frames: left, right
/// let mut mono = [0.0f32; 2];
///
/// let mean = Downmixer::new(2, ChannelMode::Downmix)?;
/// assert_eq!(mean.process(&stereo, &mut mono), 2);
/// assert_eq!(mono, [0.375, -0.375]);
///
/// let right = Downmixer::new(2, ChannelMode::Channel(1))?;
/// right.process(&stereo, &mut mono);
/// assert_eq!(mono, [0.25, -0.25]);
/// # Ok::<(), clearvox::limits::LimitError>(())
/// ```
#[derive(Clone, Copy, Debug)]
pub struct Downmixer {
    channels: usize,
    mode: ChannelMode,
}

impl Downmixer {
    /// A downmixer for `channels`-channel input; fails if the count or the chosen channel
    /// is not supported.
    pub fn new(channels: usize, mode: ChannelMode) -> Result<Self, LimitError> {
        check_channels(channels)?;
        if let ChannelMode::Channel(c) = mode {
            if c >= channels {
                return Err(LimitError::NoSuchChannel {
                    channel: c,
                    channels,
                });
            }
        }
        Ok(Self { channels, mode })
    }

    /// Channels per input frame.
    pub fn channels(&self) -> usize {
        self.channels
    }

    /// Writes one mono sample per whole frame of `interleaved` into `out`; returns the
    /// number of frames written (at most `out.len()`).
    pub fn process<S: PcmSample>(&self, interleaved: &[S], out: &mut [f32]) -> usize {
        let frames = (interleaved.len() / self.channels).min(out.len());
        let input = &interleaved[..frames * self.channels];
        match (self.channels, self.mode) {
            (1, _) => {
                for (y, x) in out.iter_mut().zip(input) {
                    *y = x.to_f32();
                }
            }
            (_, ChannelMode::Channel(c)) => {
                for (y, f) in out.iter_mut().zip(input.chunks_exact(self.channels)) {
                    *y = f[c].to_f32();
                }
            }
            (n, ChannelMode::Downmix) => {
                let scale = 1.0 / n as f32;
                for (y, f) in out.iter_mut().zip(input.chunks_exact(n)) {
                    *y = f.iter().map(|x| x.to_f32()).sum::<f32>() * scale;
                }
            }
        }
        frames
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decodes_every_format_at_full_scale() {
        let mut y = [0.0f32; 2];
        SampleFormat::U8.decode_le(&[0, 255], &mut y);
        assert_eq!(y, [-1.0, 127.0 / 128.0]);
        SampleFormat::S16.decode_le(&[0x00, 0x80, 0xff, 0x7f], &mut y);
        assert_eq!(y, [-1.0, 32767.0 / 32768.0]);
        SampleFormat::S24.decode_le(&[0x00, 0x00, 0x80, 0xff, 0xff, 0xff], &mut y);
        assert_eq!(y, [-1.0, -1.0 / 8_388_608.0]);
        SampleFormat::S32.decode_le(&[0, 0, 0, 0x80, 0, 0, 0, 0x40], &mut y);
        assert_eq!(y, [-1.0, 0.5]);
        let mut b = Vec::new();
        b.extend_from_slice(&0.25f32.to_le_bytes());
        b.extend_from_slice(&(-2.0f32).to_le_bytes());
        SampleFormat::F32.decode_le(&b, &mut y);
        assert_eq!(y, [0.25, -2.0]);
    }

    #[test]
    fn i16_round_trip_saturates() {
        assert_eq!(f32_to_i16(i16_to_f32(-32768)), -32768);
        assert_eq!(f32_to_i16(1.5), 32767);
        assert_eq!(f32_to_i16(-1.5), -32768);
    }

    #[test]
    fn sanitize_replaces_non_finite() {
        let mut x = [f32::NAN, f32::INFINITY, f32::NEG_INFINITY, 0.5];
        assert_eq!(sanitize(&mut x), 3);
        assert_eq!(x, [0.0, 1.0, -1.0, 0.5]);
    }

    #[test]
    fn downmix_and_pick() {
        let x = [1.0, 0.0, 0.5, 0.5, -1.0, 1.0];
        let mut y = [9.0; 3];
        assert_eq!(
            Downmixer::new(2, ChannelMode::Downmix)
                .unwrap()
                .process(&x, &mut y),
            3
        );
        assert_eq!(y, [0.5, 0.5, 0.0]);
        Downmixer::new(2, ChannelMode::Channel(1))
            .unwrap()
            .process(&x, &mut y);
        assert_eq!(y, [0.0, 0.5, 1.0]);
        assert!(matches!(
            Downmixer::new(2, ChannelMode::Channel(2)),
            Err(LimitError::NoSuchChannel { .. })
        ));
        assert!(Downmixer::new(0, ChannelMode::Downmix).is_err());
        assert!(Downmixer::new(9, ChannelMode::Downmix).is_err());
    }
}
