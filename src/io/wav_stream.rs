//! WAV output to a byte stream that cannot seek back (stdout, a pipe, a socket), written
//! as the audio comes, in constant memory.
//!
//! The header goes first, so its sizes must be settled before the audio:
//!
//! - when the caller knows how many frames will follow (`clearvox enhance FILE -o -`:
//!   the input file's length at the output rate), the header carries the exact sizes,
//!   the stream is an ordinary WAV file byte for byte, and every reader (including
//!   `hound`, which trusts the sizes) reads it. Should fewer frames arrive, silence
//!   fills the rest, so the header stays true; more is an error.
//! - otherwise (or when the length does not fit a WAV header's 32 bits) both the RIFF
//!   and the data size are 0xFFFFFFFF, the convention of `ffmpeg` and others for "until
//!   the end of the stream": clearvox's own reader, `ffmpeg` and `sox` read such a
//!   stream to its end; readers that trust the sizes (`hound`) refuse it or stop early.

use std::io::Write;

use super::{check_spec, os_reason, OutputFormat, WavError, MAX_DATA_BYTES};

/// Bytes encoded per write to the sink.
const CHUNK_BYTES: usize = 8 * 1024;

/// Writes a WAV stream to any [`Write`] without seeking and without keeping the audio.
///
/// # Examples
///
/// ```
/// use clearvox::io::{read_wav, OutputFormat, WavReader, WavStreamWriter};
///
/// // Length known up front: an ordinary WAV file.
/// let mut known = WavStreamWriter::new(Vec::new(), 16_000, 1, OutputFormat::S16, Some(320))?;
/// known.write(&[0.25; 160])?;
/// known.write(&[0.25; 160])?;
/// let bytes = known.finish()?;
/// assert_eq!(read_wav(&bytes[..])?.frames(), 320);
///
/// // Unknown: 0xFFFFFFFF sizes, read to the end of the stream.
/// let mut open = WavStreamWriter::new(Vec::new(), 16_000, 1, OutputFormat::S16, None)?;
/// open.write(&[0.25; 100])?;
/// let bytes = open.finish()?;
/// assert_eq!(bytes[4..8], [0xFF; 4]);
/// let mut reader = WavReader::new(&bytes[..])?;
/// assert_eq!(reader.len_frames(), None);
/// assert_eq!(reader.read_frames(&mut [0.0; 1000])?, 100);
/// # Ok::<(), clearvox::io::WavError>(())
/// ```
#[derive(Debug)]
pub struct WavStreamWriter<W: Write> {
    sink: W,
    format: OutputFormat,
    channels: u16,
    /// Frames the header announces; `None` for 0xFFFFFFFF sizes.
    announced: Option<u64>,
    frames: u64,
    buf: Vec<u8>,
}

impl<W: Write> WavStreamWriter<W> {
    /// Checks the spec and writes the header: exact sizes for `frames` frames when
    /// given and they fit in a WAV file, 0xFFFFFFFF ("until the end") otherwise.
    pub fn new(
        sink: W,
        sample_rate: u32,
        channels: u16,
        format: OutputFormat,
        frames: Option<u64>,
    ) -> Result<Self, WavError> {
        check_spec(sample_rate, channels)?;
        let frame_bytes = u64::from(channels) * format.bytes() as u64;
        let announced = frames.filter(|&f| {
            f.checked_mul(frame_bytes)
                .is_some_and(|b| b <= MAX_DATA_BYTES)
        });
        let data_bytes = match announced {
            // Fits: checked just above.
            Some(f) => u32::try_from(f * frame_bytes).unwrap_or(u32::MAX),
            None => u32::MAX,
        };
        let mut this = Self {
            sink,
            format,
            channels,
            announced,
            frames: 0,
            buf: vec![0; CHUNK_BYTES],
        };
        let header = format.wav_header(sample_rate, channels, data_bytes);
        // `wav_header` saturates the RIFF size: 0xFFFFFFFF along with the data size.
        this.put(&header)?;
        Ok(this)
    }

    /// Appends interleaved samples (a whole number of frames), converted as by
    /// [`WavFileWriter::write`](super::WavFileWriter::write).
    pub fn write(&mut self, samples: &[f32]) -> Result<(), WavError> {
        let channels = usize::from(self.channels);
        if !samples.len().is_multiple_of(channels) {
            return Err(WavError::PartialFrame {
                len: samples.len(),
                channels: self.channels,
            });
        }
        let frames = (samples.len() / channels) as u64;
        if let Some(announced) = self.announced {
            if self.frames + frames > announced {
                return Err(WavError::StreamOverrun { announced });
            }
        }
        let bytes = self.format.bytes();
        let per_chunk = (CHUNK_BYTES / bytes / channels) * channels;
        for chunk in samples.chunks(per_chunk) {
            super::wav_write::encode(self.format, chunk, &mut self.buf);
            let n = chunk.len() * bytes;
            let (sink, buf) = (&mut self.sink, &self.buf);
            sink.write_all(&buf[..n]).map_err(stream_error)?;
        }
        self.frames += frames;
        Ok(())
    }

    /// Frames written so far (without the silence [`finish`](Self::finish) may add).
    pub fn frames_written(&self) -> u64 {
        self.frames
    }

    /// The frames the header announces; `None` when it says "until the end".
    pub fn announced_frames(&self) -> Option<u64> {
        self.announced
    }

    /// Completes the stream (silence up to the announced length, if any is missing),
    /// flushes the sink and returns it.
    pub fn finish(mut self) -> Result<W, WavError> {
        if let Some(announced) = self.announced {
            let silence = vec![0.0f32; CHUNK_BYTES / self.format.bytes()];
            let frame = u64::from(self.channels);
            while self.frames < announced {
                let left = (announced - self.frames) * frame;
                let n = usize::try_from(left).map_or(silence.len(), |l| l.min(silence.len()));
                let n = n - n % usize::from(self.channels);
                self.write(&silence[..n])?;
            }
        }
        self.sink.flush().map_err(stream_error)?;
        Ok(self.sink)
    }

    fn put(&mut self, bytes: &[u8]) -> Result<(), WavError> {
        self.sink.write_all(bytes).map_err(stream_error)
    }
}

fn stream_error(e: std::io::Error) -> WavError {
    WavError::WriteStream {
        reason: os_reason(&e),
        source: e,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::io::{read_wav, write_wav_to, WavReader};

    #[test]
    fn a_known_length_gives_the_bytes_of_a_whole_file() {
        for format in OutputFormat::ALL {
            for channels in [1u16, 2, 3] {
                let samples: Vec<f32> = (0..3 * 5000)
                    .map(|i| ((i * 7919) % 2001) as f32 / 1000.0 - 1.0)
                    .collect();
                let mut whole = Vec::new();
                write_wav_to(&mut whole, 44_100, channels, format, &samples).unwrap();
                let frames = (samples.len() / usize::from(channels)) as u64;
                let mut w =
                    WavStreamWriter::new(Vec::new(), 44_100, channels, format, Some(frames))
                        .unwrap();
                for part in samples.chunks(usize::from(channels) * 997) {
                    w.write(part).unwrap();
                }
                assert_eq!(w.finish().unwrap(), whole, "{format} x{channels}");
            }
        }
    }

    #[test]
    fn a_short_stream_is_padded_and_an_overrun_refused() {
        let mut w =
            WavStreamWriter::new(Vec::new(), 16_000, 2, OutputFormat::F32, Some(5000)).unwrap();
        w.write(&[0.5; 2 * 1000]).unwrap();
        let bytes = w.finish().unwrap();
        let wav = read_wav(&bytes[..]).unwrap();
        assert_eq!(wav.frames(), 5000);
        assert!(wav.warnings.is_empty(), "{:?}", wav.warnings);

        let mut w =
            WavStreamWriter::new(Vec::new(), 16_000, 1, OutputFormat::S16, Some(10)).unwrap();
        w.write(&[0.0; 8]).unwrap();
        let e = w.write(&[0.0; 3]).unwrap_err();
        assert!(
            matches!(e, WavError::StreamOverrun { announced: 10 }),
            "{e:?}"
        );
        assert_eq!(
            e.to_string(),
            "more audio than the 10 frames announced in the WAV header already written"
        );
    }

    #[test]
    fn an_unknown_or_too_long_length_is_announced_as_until_the_end() {
        let too_long = MAX_DATA_BYTES / 2 + 1;
        for frames in [None, Some(too_long), Some(u64::MAX)] {
            let mut w =
                WavStreamWriter::new(Vec::new(), 48_000, 1, OutputFormat::S16, frames).unwrap();
            assert_eq!(w.announced_frames(), None);
            w.write(&[0.5; 4801]).unwrap();
            let bytes = w.finish().unwrap();
            assert_eq!(bytes.len(), 44 + 2 * 4801);
            assert_eq!(bytes[4..8], [0xFF; 4]);
            assert_eq!(bytes[40..44], [0xFF; 4]);
            let mut r = WavReader::new(&bytes[..]).unwrap();
            assert_eq!(r.len_frames(), None);
            let mut out = vec![0.0; 10_000];
            assert_eq!(r.read_frames(&mut out).unwrap(), 4801);
            assert!(r.warnings().is_empty(), "{:?}", r.warnings());
        }
    }

    #[test]
    fn bad_specs_and_partial_frames_are_refused() {
        let e = WavStreamWriter::new(Vec::new(), 1, 1, OutputFormat::S16, None).unwrap_err();
        assert!(matches!(e, WavError::Limit(_)));
        let mut w = WavStreamWriter::new(Vec::new(), 8_000, 2, OutputFormat::S16, None).unwrap();
        assert!(matches!(
            w.write(&[0.0; 3]),
            Err(WavError::PartialFrame {
                len: 3,
                channels: 2
            })
        ));
    }
}
