//! The sample rates and channel layouts clearvox accepts, and their checks.
//!
//! The limits are one idea used everywhere audio enters: the pipeline and the format
//! conversion, the WAV reader and writer, the devices and the stream receiver. They
//! live here, in a module that depends on no other part of the crate, so that each of
//! those can check a value the same way, with the same message, without importing
//! another's error type.
//!
//! ```
//! use clearvox::limits::{check_sample_rate, LimitError, MAX_SAMPLE_RATE};
//!
//! assert!(check_sample_rate(44_100).is_ok());
//! let err = check_sample_rate(MAX_SAMPLE_RATE * 2).unwrap_err();
//! assert_eq!(err, LimitError::SampleRate { rate: 384_000 });
//! assert_eq!(
//!     err.to_string(),
//!     "unsupported sample rate 384000 Hz: supported are 8000 Hz to 192000 Hz"
//! );
//! ```

/// Lowest input or output sample rate accepted.
pub const MIN_SAMPLE_RATE: u32 = 8_000;
/// Highest input or output sample rate accepted.
pub const MAX_SAMPLE_RATE: u32 = 192_000;
/// Most channels an input may have.
pub const MAX_CHANNELS: usize = 8;

/// A sample rate or channel count outside what clearvox accepts.
///
/// The message names the value and the supported range, so it can be shown as it is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum LimitError {
    /// A sample rate outside [`MIN_SAMPLE_RATE`]..=[`MAX_SAMPLE_RATE`].
    #[error(
        "unsupported sample rate {rate} Hz: supported are {min} Hz to {max} Hz",
        min = MIN_SAMPLE_RATE,
        max = MAX_SAMPLE_RATE
    )]
    SampleRate {
        /// The rate that was given.
        rate: u32,
    },

    /// A channel count outside 1..=[`MAX_CHANNELS`].
    #[error(
        "unsupported channel count {channels}: supported are 1 to {max} channels",
        max = MAX_CHANNELS
    )]
    Channels {
        /// The count that was given.
        channels: usize,
    },

    /// One channel was selected from an input that does not have it.
    #[error(
        "channel {channel} selected, but the input has only {channels} channel(s) (channels count from 0)"
    )]
    NoSuchChannel {
        /// The selected channel (0-based).
        channel: usize,
        /// The channels the input has.
        channels: usize,
    },
}

/// Whether `rate` is within [`MIN_SAMPLE_RATE`]..=[`MAX_SAMPLE_RATE`].
pub fn is_supported_sample_rate(rate: u32) -> bool {
    (MIN_SAMPLE_RATE..=MAX_SAMPLE_RATE).contains(&rate)
}

/// Checks that a sample rate is within [`MIN_SAMPLE_RATE`]..=[`MAX_SAMPLE_RATE`].
pub fn check_sample_rate(rate: u32) -> Result<(), LimitError> {
    if is_supported_sample_rate(rate) {
        Ok(())
    } else {
        Err(LimitError::SampleRate { rate })
    }
}

/// Checks that a channel count is within 1..=[`MAX_CHANNELS`].
pub fn check_channels(channels: usize) -> Result<(), LimitError> {
    if (1..=MAX_CHANNELS).contains(&channels) {
        Ok(())
    } else {
        Err(LimitError::Channels { channels })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rates_are_checked_inclusively() {
        for rate in [MIN_SAMPLE_RATE, 16_000, 44_100, MAX_SAMPLE_RATE] {
            assert_eq!(check_sample_rate(rate), Ok(()), "{rate}");
        }
        for rate in [0, MIN_SAMPLE_RATE - 1, MAX_SAMPLE_RATE + 1, u32::MAX] {
            assert_eq!(
                check_sample_rate(rate),
                Err(LimitError::SampleRate { rate }),
                "{rate}"
            );
        }
    }

    #[test]
    fn channels_are_checked_inclusively() {
        for channels in 1..=MAX_CHANNELS {
            assert_eq!(check_channels(channels), Ok(()));
        }
        for channels in [0, MAX_CHANNELS + 1, usize::MAX] {
            assert_eq!(
                check_channels(channels),
                Err(LimitError::Channels { channels })
            );
        }
        assert_eq!(
            check_channels(9).unwrap_err().to_string(),
            "unsupported channel count 9: supported are 1 to 8 channels"
        );
    }
}
