//! Audio devices: listing them with what they support, picking one by name or index,
//! and choosing a stream configuration.

use std::fmt;
use std::str::FromStr;

use cpal::traits::{DeviceTrait, HostTrait};
use cpal::{
    BufferSize, SampleFormat, StreamConfig, SupportedBufferSize, SupportedStreamConfigRange,
};
use serde::{Deserialize, Serialize};

use super::EngineError;
use crate::limits::{check_channels, check_sample_rate};

/// Which device to open.
///
/// # Examples
///
/// ```
/// use clearvox::engine::DeviceSelector;
///
/// // As a user types it: `default`, an index from the device list, or (part of) a name.
/// assert_eq!("default".parse(), Ok(DeviceSelector::Default));
/// assert_eq!("2".parse(), Ok(DeviceSelector::Index(2)));
/// assert_eq!("usb".parse(), Ok(DeviceSelector::Name("usb".into())));
///
/// assert_eq!(DeviceSelector::Index(2).to_string(), "device #2");
/// ```
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum DeviceSelector {
    /// The host's default device.
    #[default]
    Default,
    /// The n-th device of the kind in [`list_devices`] order, from 0.
    Index(usize),
    /// A device whose name equals this (ignoring case), or the only one containing it.
    Name(String),
}

impl FromStr for DeviceSelector {
    type Err = std::convert::Infallible;

    /// `default`, a number (index) or a name.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Ok(if s.eq_ignore_ascii_case("default") {
            DeviceSelector::Default
        } else if let Ok(i) = s.parse::<usize>() {
            DeviceSelector::Index(i)
        } else {
            DeviceSelector::Name(s.to_string())
        })
    }
}

impl fmt::Display for DeviceSelector {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DeviceSelector::Default => f.write_str("the default device"),
            DeviceSelector::Index(i) => write!(f, "device #{i}"),
            DeviceSelector::Name(n) => write!(f, "device '{n}'"),
        }
    }
}

/// A device sample format the engine can open a stream with.
///
/// These are the formats cpal devices deliver natively (16- and 32-bit integer,
/// unsigned 16-bit, float), which is why this is neither
/// [`SampleFormat`](crate::dsp::convert::SampleFormat) (file encodings, with packed
/// 24-bit and 8-bit) nor [`OutputFormat`](crate::io::OutputFormat) (what clearvox
/// writes). `i16` and `i32` are accepted as names beside `s16` and `s32`.
///
/// # Examples
///
/// ```
/// use clearvox::dsp::convert::SampleFormat;
/// use clearvox::engine::{DeviceFormat, EngineConfig};
///
/// let format: DeviceFormat = "s16".parse()?;
/// assert_eq!(format, DeviceFormat::I16);
/// // A recording that follows the device is 16-bit too.
/// assert_eq!(format.wav_format(), SampleFormat::S16);
///
/// let config = EngineConfig {
///     input_format: Some(format),
///     ..EngineConfig::default()
/// };
/// # let _ = config;
///
/// let err = "s24".parse::<DeviceFormat>().unwrap_err();
/// assert_eq!(
///     err.to_string(),
///     "unknown device sample format \"s24\": supported are s16, s32, f32 and u16"
/// );
/// # Ok::<(), clearvox::dsp::convert::ParseFormatError>(())
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum DeviceFormat {
    /// Signed 16-bit.
    I16,
    /// Signed 32-bit.
    I32,
    /// 32-bit float.
    F32,
    /// Unsigned 16-bit.
    U16,
}

impl DeviceFormat {
    /// The cpal sample format.
    pub fn to_cpal(self) -> SampleFormat {
        match self {
            DeviceFormat::I16 => SampleFormat::I16,
            DeviceFormat::I32 => SampleFormat::I32,
            DeviceFormat::F32 => SampleFormat::F32,
            DeviceFormat::U16 => SampleFormat::U16,
        }
    }

    /// The engine's format for a cpal sample format, if supported.
    pub fn from_cpal(format: SampleFormat) -> Option<Self> {
        match format {
            SampleFormat::I16 => Some(DeviceFormat::I16),
            SampleFormat::I32 => Some(DeviceFormat::I32),
            SampleFormat::F32 => Some(DeviceFormat::F32),
            SampleFormat::U16 => Some(DeviceFormat::U16),
            _ => None,
        }
    }

    /// The closest WAV sample format (for recordings that follow the device).
    pub fn wav_format(self) -> crate::dsp::convert::SampleFormat {
        use crate::dsp::convert::SampleFormat as W;
        match self {
            DeviceFormat::I16 | DeviceFormat::U16 => W::S16,
            DeviceFormat::I32 => W::S32,
            DeviceFormat::F32 => W::F32,
        }
    }
}

impl FromStr for DeviceFormat {
    type Err = crate::dsp::convert::ParseFormatError;

    /// `s16`/`i16`, `s32`/`i32`, `f32`, `u16`.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.to_ascii_lowercase().as_str() {
            "s16" | "i16" => Ok(DeviceFormat::I16),
            "s32" | "i32" => Ok(DeviceFormat::I32),
            "f32" => Ok(DeviceFormat::F32),
            "u16" => Ok(DeviceFormat::U16),
            _ => Err(crate::dsp::convert::ParseFormatError::new(
                "device sample format",
                s,
                "s16, s32, f32 and u16",
            )),
        }
    }
}

/// One range of configurations a device supports.
///
/// # Examples
///
/// [`list_devices`] reports them; they print the way the CLI's device list shows them:
///
/// ```
/// use clearvox::engine::ConfigRange;
///
/// let range = ConfigRange {
///     channels: 2,
///     min_rate: 8_000,
///     max_rate: 48_000,
///     format: "i16".into(),
///     buffer_frames: Some((64, 8_192)),
/// };
/// assert_eq!(range.to_string(), "8000-48000 Hz 2 ch i16");
/// assert!((range.min_rate..=range.max_rate).contains(&16_000));
/// ```
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct ConfigRange {
    /// Channels.
    pub channels: u16,
    /// Lowest rate, Hz.
    pub min_rate: u32,
    /// Highest rate, Hz.
    pub max_rate: u32,
    /// cpal's name of the sample format (`i16`, `f32`, ...).
    pub format: String,
    /// Buffer sizes the device accepts, frames, when it says.
    pub buffer_frames: Option<(u32, u32)>,
}

impl From<&SupportedStreamConfigRange> for ConfigRange {
    fn from(r: &SupportedStreamConfigRange) -> Self {
        Self {
            channels: r.channels(),
            min_rate: r.min_sample_rate(),
            max_rate: r.max_sample_rate(),
            format: r.sample_format().to_string(),
            buffer_frames: match r.buffer_size() {
                SupportedBufferSize::Range { min, max } => Some((*min, *max)),
                SupportedBufferSize::Unknown => None,
            },
        }
    }
}

impl fmt::Display for ConfigRange {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.min_rate == self.max_rate {
            write!(f, "{} Hz", self.min_rate)?;
        } else {
            write!(f, "{}-{} Hz", self.min_rate, self.max_rate)?;
        }
        write!(f, " {} ch {}", self.channels, self.format)
    }
}

/// A device as listed by [`list_devices`].
///
/// # Examples
///
/// Pick the first microphone that can capture 16 kHz mono directly:
///
/// ```no_run
/// use clearvox::engine::{list_devices, DeviceSelector, EngineConfig};
///
/// let devices = list_devices(&cpal::default_host())?;
/// let mic = devices.inputs.iter().find(|d| {
///     d.configs
///         .iter()
///         .any(|c| c.channels == 1 && (c.min_rate..=c.max_rate).contains(&16_000))
/// });
/// if let Some(mic) = mic {
///     let config = EngineConfig {
///         input: DeviceSelector::Index(mic.index),
///         input_rate: Some(16_000),
///         input_channels: Some(1),
///         ..EngineConfig::default()
///     };
///     println!("using {}{}", mic.name, if mic.is_default { " (default)" } else { "" });
/// #   let _ = config;
/// }
/// # Ok::<(), clearvox::engine::EngineError>(())
/// ```
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct DeviceInfo {
    /// Position in the list of its kind (what an index selects).
    pub index: usize,
    /// The device's name.
    pub name: String,
    /// Whether it is the host's default of its kind.
    pub is_default: bool,
    /// Its default configuration, when it has one.
    pub default_config: Option<ConfigRange>,
    /// Everything it supports.
    pub configs: Vec<ConfigRange>,
}

/// Input and output devices of a host.
///
/// # Examples
///
/// ```no_run
/// use clearvox::engine::list_devices;
///
/// let devices = list_devices(&cpal::default_host())?;
/// println!("{} host", devices.host);
/// for d in &devices.inputs {
///     let default = d.default_config.as_ref().map(|c| c.to_string());
///     println!("  in  {}: {} [{}]", d.index, d.name, default.unwrap_or_default());
/// }
/// for d in &devices.outputs {
///     println!("  out {}: {}", d.index, d.name);
/// }
/// # Ok::<(), clearvox::engine::EngineError>(())
/// ```
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct DeviceList {
    /// The host's name (ALSA, CoreAudio, WASAPI, ...).
    pub host: String,
    /// Capture devices.
    pub inputs: Vec<DeviceInfo>,
    /// Playback devices.
    pub outputs: Vec<DeviceInfo>,
}

fn device_name(d: &cpal::Device) -> String {
    d.to_string()
}

/// Lists the host's devices with what they support.
pub fn list_devices(host: &cpal::Host) -> Result<DeviceList, EngineError> {
    let default_in = host.default_input_device().map(|d| device_name(&d));
    let default_out = host.default_output_device().map(|d| device_name(&d));
    let inputs = host
        .input_devices()
        .map_err(|e| EngineError::Host(e.to_string()))?;
    let outputs = host
        .output_devices()
        .map_err(|e| EngineError::Host(e.to_string()))?;
    let info = |(index, d): (usize, cpal::Device), input: bool, default: &Option<String>| {
        let name = device_name(&d);
        let (default_config, configs) = if input {
            (
                d.default_input_config().ok().map(|c| single(&c)),
                d.supported_input_configs()
                    .map(|it| it.map(|r| ConfigRange::from(&r)).collect())
                    .unwrap_or_default(),
            )
        } else {
            (
                d.default_output_config().ok().map(|c| single(&c)),
                d.supported_output_configs()
                    .map(|it| it.map(|r| ConfigRange::from(&r)).collect())
                    .unwrap_or_default(),
            )
        };
        DeviceInfo {
            index,
            is_default: default.as_deref() == Some(name.as_str()),
            name,
            default_config,
            configs,
        }
    };
    Ok(DeviceList {
        host: host.id().name().to_string(),
        inputs: inputs
            .enumerate()
            .map(|d| info(d, true, &default_in))
            .collect(),
        outputs: outputs
            .enumerate()
            .map(|d| info(d, false, &default_out))
            .collect(),
    })
}

fn single(c: &cpal::SupportedStreamConfig) -> ConfigRange {
    ConfigRange {
        channels: c.channels(),
        min_rate: c.sample_rate(),
        max_rate: c.sample_rate(),
        format: c.sample_format().to_string(),
        buffer_frames: match c.buffer_size() {
            SupportedBufferSize::Range { min, max } => Some((*min, *max)),
            SupportedBufferSize::Unknown => None,
        },
    }
}

/// Finds a device of one kind.
pub(crate) fn select_device(
    host: &cpal::Host,
    selector: &DeviceSelector,
    input: bool,
) -> Result<cpal::Device, EngineError> {
    let kind = if input { "input" } else { "output" };
    if *selector == DeviceSelector::Default {
        let d = if input {
            host.default_input_device()
        } else {
            host.default_output_device()
        };
        return d.ok_or(EngineError::NoDevice { kind });
    }
    let devices: Vec<cpal::Device> = if input {
        host.input_devices().map(|d| d.collect())
    } else {
        host.output_devices().map(|d| d.collect())
    }
    .map_err(|e| EngineError::Host(e.to_string()))?;
    let names: Vec<String> = devices.iter().map(device_name).collect();
    let not_found = || EngineError::DeviceNotFound {
        kind,
        wanted: selector.to_string(),
        available: names.clone(),
    };
    match selector {
        DeviceSelector::Default => unreachable!("handled above"),
        DeviceSelector::Index(i) => devices.get(*i).cloned().ok_or_else(not_found),
        DeviceSelector::Name(wanted) => {
            let lower = wanted.to_lowercase();
            if let Some(i) = names.iter().position(|n| n.to_lowercase() == lower) {
                return Ok(devices[i].clone());
            }
            let matches: Vec<usize> = (0..names.len())
                .filter(|&i| names[i].to_lowercase().contains(&lower))
                .collect();
            match matches.as_slice() {
                [i] => Ok(devices[*i].clone()),
                [] => Err(not_found()),
                many => Err(EngineError::AmbiguousDevice {
                    kind,
                    wanted: wanted.clone(),
                    matches: many.iter().map(|&i| names[i].clone()).collect(),
                }),
            }
        }
    }
}

/// What the caller asks of a stream; `None` keeps the device's default.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub(crate) struct StreamRequest {
    pub rate: Option<u32>,
    pub channels: Option<u16>,
    pub format: Option<DeviceFormat>,
    pub buffer_ms: Option<f64>,
}

/// A stream configuration the device supports, from its default and the request.
pub(crate) fn choose_config(
    device: &cpal::Device,
    input: bool,
    request: StreamRequest,
) -> Result<(StreamConfig, DeviceFormat), EngineError> {
    let name = device_name(device);
    let default = if input {
        device.default_input_config()
    } else {
        device.default_output_config()
    }
    .map_err(|e| EngineError::from_cpal(&name, e))?;
    let ranges: Vec<SupportedStreamConfigRange> = if input {
        device.supported_input_configs().map(|it| it.collect())
    } else {
        device.supported_output_configs().map(|it| it.collect())
    }
    .map_err(|e| EngineError::from_cpal(&name, e))?;
    let rate = request.rate.unwrap_or(default.sample_rate());
    let channels = request.channels.unwrap_or(default.channels());
    let format = match request.format {
        Some(f) => f,
        None => DeviceFormat::from_cpal(default.sample_format())
            .or_else(|| {
                // The default format is one the engine does not convert: take the best
                // supported one at this rate and channel count.
                [
                    DeviceFormat::F32,
                    DeviceFormat::I16,
                    DeviceFormat::I32,
                    DeviceFormat::U16,
                ]
                .into_iter()
                .find(|f| supports(&ranges, rate, channels, *f))
            })
            .ok_or_else(|| EngineError::UnsupportedConfig {
                device: name.clone(),
                requested: format!("sample format {}", default.sample_format()),
                supported: summary(&ranges),
            })?,
    };
    let describe = || format!("{rate} Hz {channels} ch {}", format.to_cpal());
    if check_sample_rate(rate).is_err() || check_channels(channels as usize).is_err() {
        return Err(EngineError::UnsupportedConfig {
            device: name.clone(),
            requested: describe(),
            supported: "clearvox takes 8000-192000 Hz and 1-8 channels".into(),
        });
    }
    if !supports(&ranges, rate, channels, format) {
        return Err(EngineError::UnsupportedConfig {
            device: name,
            requested: describe(),
            supported: summary(&ranges),
        });
    }
    let buffer_size = match request.buffer_ms {
        None => BufferSize::Default,
        Some(ms) => BufferSize::Fixed(((ms * rate as f64 / 1000.0).round() as u32).max(1)),
    };
    Ok((
        StreamConfig {
            channels,
            sample_rate: rate,
            buffer_size,
        },
        format,
    ))
}

fn supports(
    ranges: &[SupportedStreamConfigRange],
    rate: u32,
    channels: u16,
    f: DeviceFormat,
) -> bool {
    ranges.iter().any(|r| {
        r.channels() == channels
            && r.sample_format() == f.to_cpal()
            && (r.min_sample_rate()..=r.max_sample_rate()).contains(&rate)
    })
}

fn summary(ranges: &[SupportedStreamConfigRange]) -> String {
    if ranges.is_empty() {
        return "nothing".into();
    }
    let mut parts: Vec<String> = ranges
        .iter()
        .map(|r| ConfigRange::from(r).to_string())
        .collect();
    parts.dedup();
    parts.join(", ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn selectors_parse() {
        assert_eq!(
            "default".parse::<DeviceSelector>().unwrap(),
            DeviceSelector::Default
        );
        assert_eq!(
            "3".parse::<DeviceSelector>().unwrap(),
            DeviceSelector::Index(3)
        );
        assert_eq!(
            "USB Mic".parse::<DeviceSelector>().unwrap(),
            DeviceSelector::Name("USB Mic".into())
        );
        assert_eq!("s16".parse::<DeviceFormat>().unwrap(), DeviceFormat::I16);
        let err = "a-law".parse::<DeviceFormat>().unwrap_err();
        assert_eq!(err.given(), "a-law");
        assert!(err.to_string().contains("supported are s16"), "{err}");
    }
}
