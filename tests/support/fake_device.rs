//! A scripted fake audio host for the live-engine tests, built on cpal's `custom` host.
//!
//! Real devices cannot be told to lose themselves after 10 000 frames, to deliver callbacks
//! of 1, 7 and 4096 frames in turn, or to run a minute of audio in a tenth of a second. This
//! host can: every device plays a script, and everything that happened on every stream is
//! recorded for the test to read.
//!
//! # Shape
//!
//! ```ignore
//! use support::fake_device::*;
//!
//! // Once per test binary that checks allocations (see "Heap instrumentation"):
//! #[global_allocator]
//! static ALLOC: counting_alloc::CountingAlloc = counting_alloc::CountingAlloc;
//!
//! let script = InputScript::new(1, Samples::from(samples_f32))
//!     .callback_frames(&[480, 1, 7, 4096])
//!     .lose_device_after(48_000);
//! let (host, probe) = FakeHost::build(
//!     FakeSetup::new()
//!         .input(
//!             FakeInput::new("mic", script)
//!                 .default_device()
//!                 .supports(&[SampleFormat::I16, SampleFormat::F32], &[1, 2], &[48_000])
//!                 .default_config(SampleFormat::I16, 1, 48_000),
//!         )
//!         .output(
//!             FakeOutput::new("speaker", OutputScript::new().stop_after_frames(48_000))
//!                 .default_device()
//!                 .supports(&[SampleFormat::F32], &[2], &[48_000]),
//!         ),
//! );
//! // `host` is a plain `cpal::Host`: hand it to the engine.
//! assert!(probe.wait_until_done(Duration::from_secs(10)));
//! let input = probe.input_stats();
//! assert_eq!(input.data_callback_allocs.total(), 0);
//! let monitor: Vec<f32> = probe.played();
//! ```
//!
//! # Devices
//!
//! [`FakeSetup`] lists input devices ([`FakeInput`]) and output devices ([`FakeOutput`]). Each
//! has a name (unique per direction), a default flag, the configurations it supports
//! ([`DeviceSpec::supports`], [`DeviceSpec::supports_range`]; the formats the fake can stream
//! are i16, i32, u16 and f32), a default configuration ([`DeviceSpec::default_config`]; the
//! first supported range at its highest rate if not given), the buffer-size range it reports
//! ([`DeviceSpec::buffer_range`]) and optional build failures ([`DeviceSpec::fail_build`],
//! [`DeviceSpec::fail_build_times`]). The default input (output) device is the first present
//! device marked [`DeviceSpec::default_device`]; with none, `default_input_device()` is `None`.
//!
//! Building a stream checks, in this order: the device is present (else
//! `DeviceNotAvailable`), the direction (else `UnsupportedOperation`), injected build failures,
//! then that the format, channel count and rate are among the supported ones (else
//! `UnsupportedConfig`). [`FakeProbe::build_attempts`] counts every attempt, failed ones
//! included. Each successful build takes the next script given to the device
//! ([`DeviceSpec::then`]); the last one is reused once they run out.
//!
//! # Streams
//!
//! A stream does nothing until `play()`, which starts one thread for it; `pause()` stops that
//! thread and joins it, so when `pause()` returns no callback is running or will run until
//! the next `play()`, which resumes where the script stopped. Dropping the stream does the
//! same and then drops the callbacks: no callback runs after the drop returns. (Called from
//! the stream's own callback, `pause()` and drop only ask the thread to stop: it cannot join
//! itself.) A callback that panics ends its stream: no callback runs after it, and
//! [`StreamStats::panicked`] is set.
//!
//! Callback sizes follow the script's pattern ([`InputScript::callback_frames`]), repeating.
//! `BufferSize::Fixed(n)` in the `StreamConfig` is a request that real devices do not always
//! grant, so the fake ignores it unless the script says [`InputScript::honour_fixed_buffer_size`]
//! (then every callback is `n` frames, and `n` must lie in the device's buffer range).
//! `Stream::buffer_size()` reports the first entry of the pattern: callbacks larger than it are
//! legal, as cpal documents.
//!
//! Timestamps come from the stream's sample clock: frame `k` is at `k / rate` seconds. An
//! input callback carrying frames `[a, b)` has `capture = a` and `callback = b`; an output
//! callback filling `[a, b)` has `callback = a` and `playback = b`. `now()` is the clock of
//! the latest callback, so it is monotonic and on the same time base.
//!
//! # Input scripts
//!
//! [`InputScript`] holds interleaved samples in any of the four formats ([`Samples`]) and the
//! channel count they are interleaved for (a stream must be opened with that channel count).
//! Delivery is in the format the stream is opened with: the same format is copied bit for bit;
//! another format is converted through f32 in ±1.0 (`i16 / 32768`, `i32 / 2^31`,
//! `(u16 - 32768) / 32768`, which is also what cpal's `Sample` conversions compute), rounding
//! to the nearest integer and clamping (cpal's own f32-to-integer conversion truncates; the two
//! agree on values of the integer grid). So an f32 script whose values lie on the target's grid
//! (`k / 32768` for i16) arrives as integers the engine converts back to exactly the script.
//! For a bit-exact check without thinking about grids, store the script in the format the
//! engine opens.
//!
//! After the last frame, [`AtEnd::Stop`] stops calling the data callback (the stream is then
//! finished), [`AtEnd::Silence`] goes on delivering silence in the same pattern; a callback
//! straddling the end is then padded with silence, while with `Stop` it is cut short.
//!
//! Pacing: [`Pacing::AsFastAsPossible`] calls back-to-back; [`Pacing::Paced`]`(speed)` hands
//! over each callback when its last frame would have been captured in real time divided by
//! `speed` (2.0 runs twice as fast as real time), against deadlines fixed at `play()`, so
//! scheduling delays do not accumulate.
//!
//! # Faults
//!
//! [`InputScript::fault_at`] (and the same on [`OutputScript`]) fires a [`Fault`] once exactly
//! `frame` frames have been delivered; the callback that would cross that frame is cut short.
//! - [`Fault::NonFatal`]`(kind)`: the error callback gets `kind`, data keeps flowing (an xrun).
//! - [`Fault::Fatal`]`(kind)`: the error callback gets `kind` once, no data callback follows,
//!   `play()` on the stream returns that error from then on.
//! - [`Fault::DeviceLost`] (shortcut [`InputScript::lose_device_after`]): as `Fatal` with
//!   `DeviceNotAvailable`, and the device is unplugged first, so it disappears from the host
//!   (no default device, builds fail with `DeviceNotAvailable`) before the error callback runs,
//!   until the test calls [`FakeProbe::replug`].
//!
//! [`FakeProbe::unplug`] does the same to a running stream at any moment (it fires at the next
//! callback boundary, within about 10 ms in paced mode). Faults placed after the end of a
//! `Stop` script never fire.
//!
//! # Output scripts
//!
//! [`OutputScript`] sets the callback pattern, pacing (default: real time, so that a forgotten
//! limit does not fill the memory), an optional frame limit after which the stream finishes,
//! Fixed-size honouring and faults. Each callback gets a buffer pre-filled with silence, as
//! cpal promises; whatever the callback leaves in it is recorded, converted to f32 as above
//! ([`FakeProbe::played`]).
//!
//! # Heap instrumentation
//!
//! The `counting-alloc` crate's allocator counts heap operations in thread-local counters.
//! The stream thread counts what each data callback does on it, and separately each error
//! callback ([`counting_alloc::count_on_this_thread`]), and adds that to the stream's
//! [`StreamStats`]; the fake's own bookkeeping happens outside those windows and is never
//! counted. A `#[global_allocator]` can only be declared by the test binary itself, so a
//! binary whose tests check allocations declares it (see the example above) and they should
//! assert `counting_alloc::is_installed()`; without it every count is simply 0.

use std::fmt;
use std::hash::{Hash, Hasher};
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use cpal::traits::{DeviceTrait, HostTrait, StreamTrait};
use cpal::{
    BufferSize, ChannelCount, Data, DeviceDescription, DeviceDescriptionBuilder, DeviceDirection,
    DeviceId, DeviceType, Error, ErrorKind, FrameCount, HostId, InputCallbackInfo,
    InputStreamTimestamp, OutputCallbackInfo, OutputStreamTimestamp, SampleFormat, SampleRate,
    SizedSample, StreamConfig, StreamInstant, SupportedBufferSize, SupportedStreamConfig,
    SupportedStreamConfigRange,
};

// ---------------------------------------------------------------------------------------------
// Heap instrumentation
// ---------------------------------------------------------------------------------------------

pub use counting_alloc::AllocCounts;

// ---------------------------------------------------------------------------------------------
// Samples
// ---------------------------------------------------------------------------------------------

/// The sample types the fake streams: i16, i32, u16 and f32.
pub trait FakeSample: SizedSample + Copy + PartialEq + fmt::Debug + Send + Sync + 'static {
    /// The value of silence (0, or 32768 for u16).
    const SILENCE: Self;
    /// To f32 in ±1.0: `i16 / 32768`, `i32 / 2^31`, `(u16 - 32768) / 32768`.
    fn to_unit_f32(self) -> f32;
    /// From f32 in ±1.0, the inverse of [`FakeSample::to_unit_f32`], rounded to nearest and
    /// clamped to the type's range.
    fn from_unit_f32(x: f32) -> Self;
    /// Wraps a vector of this type.
    fn wrap(v: Vec<Self>) -> Samples;
    /// The samples, if they are of this type.
    fn view(s: &Samples) -> Option<&[Self]>;
}

impl FakeSample for i16 {
    const SILENCE: Self = 0;
    fn to_unit_f32(self) -> f32 {
        self as f32 / 32_768.0
    }
    fn from_unit_f32(x: f32) -> Self {
        (x * 32_768.0).round().clamp(-32_768.0, 32_767.0) as i16
    }
    fn wrap(v: Vec<Self>) -> Samples {
        Samples::I16(v)
    }
    fn view(s: &Samples) -> Option<&[Self]> {
        match s {
            Samples::I16(v) => Some(v),
            _ => None,
        }
    }
}

impl FakeSample for i32 {
    const SILENCE: Self = 0;
    fn to_unit_f32(self) -> f32 {
        self as f32 / 2_147_483_648.0
    }
    fn from_unit_f32(x: f32) -> Self {
        (f64::from(x) * 2_147_483_648.0)
            .round()
            .clamp(-2_147_483_648.0, 2_147_483_647.0) as i32
    }
    fn wrap(v: Vec<Self>) -> Samples {
        Samples::I32(v)
    }
    fn view(s: &Samples) -> Option<&[Self]> {
        match s {
            Samples::I32(v) => Some(v),
            _ => None,
        }
    }
}

impl FakeSample for u16 {
    const SILENCE: Self = 32_768;
    fn to_unit_f32(self) -> f32 {
        (i32::from(self) - 32_768) as f32 / 32_768.0
    }
    fn from_unit_f32(x: f32) -> Self {
        (i32::from(i16::from_unit_f32(x)) + 32_768) as u16
    }
    fn wrap(v: Vec<Self>) -> Samples {
        Samples::U16(v)
    }
    fn view(s: &Samples) -> Option<&[Self]> {
        match s {
            Samples::U16(v) => Some(v),
            _ => None,
        }
    }
}

impl FakeSample for f32 {
    const SILENCE: Self = 0.0;
    fn to_unit_f32(self) -> f32 {
        self
    }
    fn from_unit_f32(x: f32) -> Self {
        x
    }
    fn wrap(v: Vec<Self>) -> Samples {
        Samples::F32(v)
    }
    fn view(s: &Samples) -> Option<&[Self]> {
        match s {
            Samples::F32(v) => Some(v),
            _ => None,
        }
    }
}

/// Interleaved samples of one of the formats the fake streams.
#[derive(Clone, Debug, PartialEq)]
pub enum Samples {
    I16(Vec<i16>),
    I32(Vec<i32>),
    U16(Vec<u16>),
    F32(Vec<f32>),
}

impl<T: FakeSample> From<Vec<T>> for Samples {
    fn from(v: Vec<T>) -> Self {
        T::wrap(v)
    }
}

impl Samples {
    /// The cpal format of these samples.
    pub fn format(&self) -> SampleFormat {
        match self {
            Samples::I16(_) => SampleFormat::I16,
            Samples::I32(_) => SampleFormat::I32,
            Samples::U16(_) => SampleFormat::U16,
            Samples::F32(_) => SampleFormat::F32,
        }
    }

    /// Number of samples (all channels).
    pub fn len(&self) -> usize {
        match self {
            Samples::I16(v) => v.len(),
            Samples::I32(v) => v.len(),
            Samples::U16(v) => v.len(),
            Samples::F32(v) => v.len(),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// As f32 in ±1.0 (see [`FakeSample::to_unit_f32`]).
    pub fn to_f32(&self) -> Vec<f32> {
        fn conv<T: FakeSample>(v: &[T]) -> Vec<f32> {
            v.iter().map(|&x| x.to_unit_f32()).collect()
        }
        match self {
            Samples::I16(v) => conv(v),
            Samples::I32(v) => conv(v),
            Samples::U16(v) => conv(v),
            Samples::F32(v) => v.clone(),
        }
    }

    /// As type `T`: a copy if already of type `T`, else converted through f32 as the fake
    /// delivers them to a stream opened as `T`.
    pub fn to_vec<T: FakeSample>(&self) -> Vec<T> {
        match T::view(self) {
            Some(v) => v.to_vec(),
            None => self.to_f32().into_iter().map(T::from_unit_f32).collect(),
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Scripts
// ---------------------------------------------------------------------------------------------

/// How fast callbacks follow one another.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Pacing {
    /// Back to back, as fast as the callbacks return. With [`AtEnd::Silence`], or on an
    /// output stream without a frame limit, this spins (and records) until paused or dropped.
    AsFastAsPossible,
    /// At the stream's sample rate times this speed factor (1.0 = real time, 2.0 = twice as
    /// fast), against deadlines fixed at `play()`.
    Paced(f64),
}

/// What an input stream does after the last frame of its script.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AtEnd {
    /// No more data callbacks; the stream is finished.
    Stop,
    /// Silence, in the same callback pattern, until paused or dropped.
    Silence,
}

/// A failure injected at a frame position.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Fault {
    /// The error callback gets this kind; data keeps flowing.
    NonFatal(ErrorKind),
    /// The error callback gets this kind once; no data callback after it.
    Fatal(ErrorKind),
    /// The device is unplugged, then the error callback gets `DeviceNotAvailable` once; no
    /// data callback after it.
    DeviceLost,
}

/// Everything shared by input and output scripts.
#[derive(Clone, Debug)]
struct Timing {
    callback_frames: Vec<usize>,
    pacing: Pacing,
    honour_fixed: bool,
    faults: Vec<(u64, Fault)>,
}

impl Timing {
    fn new(pacing: Pacing) -> Self {
        Timing {
            callback_frames: vec![480],
            pacing,
            honour_fixed: false,
            faults: Vec::new(),
        }
    }

    fn set_callback_frames(&mut self, pattern: &[usize]) {
        assert!(
            pattern.iter().any(|&n| n > 0),
            "fake device: a callback pattern needs at least one non-zero size, got {pattern:?}"
        );
        self.callback_frames = pattern.to_vec();
    }

    fn set_pacing(&mut self, pacing: Pacing) {
        if let Pacing::Paced(speed) = pacing {
            assert!(
                speed.is_finite() && speed > 0.0,
                "fake device: pacing speed must be positive, got {speed}"
            );
        }
        self.pacing = pacing;
    }

    fn add_fault(&mut self, frame: u64, fault: Fault) {
        self.faults.push((frame, fault));
        // Stable: faults at the same frame fire in the order they were added.
        self.faults.sort_by_key(|&(at, _)| at);
    }
}

/// What an input device delivers to one stream. Defaults: callbacks of 480 frames, as fast as
/// possible, stop at the end, `BufferSize::Fixed` ignored, no faults.
#[derive(Clone, Debug)]
pub struct InputScript {
    channels: ChannelCount,
    samples: Samples,
    at_end: AtEnd,
    timing: Timing,
}

impl InputScript {
    /// `samples` interleaved for `channels` channels; a stream must be opened with that many.
    pub fn new(channels: ChannelCount, samples: impl Into<Samples>) -> Self {
        let samples = samples.into();
        assert!(
            channels > 0,
            "fake device: a script needs at least one channel"
        );
        assert!(
            samples.len() % usize::from(channels) == 0,
            "fake device: {} samples are not a whole number of {channels}-channel frames",
            samples.len()
        );
        InputScript {
            channels,
            samples,
            at_end: AtEnd::Stop,
            timing: Timing::new(Pacing::AsFastAsPossible),
        }
    }

    /// Callback sizes in frames, used in turn and repeated (0 = an empty callback).
    pub fn callback_frames(mut self, pattern: &[usize]) -> Self {
        self.timing.set_callback_frames(pattern);
        self
    }

    pub fn pacing(mut self, pacing: Pacing) -> Self {
        self.timing.set_pacing(pacing);
        self
    }

    pub fn at_end(mut self, at_end: AtEnd) -> Self {
        self.at_end = at_end;
        self
    }

    /// Every callback is `n` frames when the stream is opened with `BufferSize::Fixed(n)`.
    pub fn honour_fixed_buffer_size(mut self) -> Self {
        self.timing.honour_fixed = true;
        self
    }

    /// Fires `fault` once exactly `frame` frames have been delivered.
    pub fn fault_at(mut self, frame: u64, fault: Fault) -> Self {
        self.timing.add_fault(frame, fault);
        self
    }

    /// The device is lost after exactly `frames` frames: [`Fault::DeviceLost`].
    pub fn lose_device_after(self, frames: u64) -> Self {
        self.fault_at(frames, Fault::DeviceLost)
    }

    /// Frames in the script.
    pub fn frames(&self) -> u64 {
        (self.samples.len() / usize::from(self.channels)) as u64
    }

    pub fn samples(&self) -> &Samples {
        &self.samples
    }
}

/// How an output device pulls from one stream. Defaults: callbacks of 480 frames, real time,
/// no frame limit, `BufferSize::Fixed` ignored, no faults.
#[derive(Clone, Debug)]
pub struct OutputScript {
    stop_after: Option<u64>,
    timing: Timing,
}

impl Default for OutputScript {
    fn default() -> Self {
        Self::new()
    }
}

impl OutputScript {
    pub fn new() -> Self {
        OutputScript {
            stop_after: None,
            timing: Timing::new(Pacing::Paced(1.0)),
        }
    }

    /// Callback sizes in frames, used in turn and repeated (0 = an empty callback).
    pub fn callback_frames(mut self, pattern: &[usize]) -> Self {
        self.timing.set_callback_frames(pattern);
        self
    }

    pub fn pacing(mut self, pacing: Pacing) -> Self {
        self.timing.set_pacing(pacing);
        self
    }

    /// The stream finishes after exactly this many frames (the last callback is cut short).
    pub fn stop_after_frames(mut self, frames: u64) -> Self {
        self.stop_after = Some(frames);
        self
    }

    /// Every callback is `n` frames when the stream is opened with `BufferSize::Fixed(n)`.
    pub fn honour_fixed_buffer_size(mut self) -> Self {
        self.timing.honour_fixed = true;
        self
    }

    /// Fires `fault` once exactly `frame` frames have been pulled.
    pub fn fault_at(mut self, frame: u64, fault: Fault) -> Self {
        self.timing.add_fault(frame, fault);
        self
    }

    /// The device is lost after exactly `frames` frames: [`Fault::DeviceLost`].
    pub fn lose_device_after(self, frames: u64) -> Self {
        self.fault_at(frames, Fault::DeviceLost)
    }
}

// ---------------------------------------------------------------------------------------------
// Setup
// ---------------------------------------------------------------------------------------------

#[derive(Clone, Copy, Debug)]
struct ConfigSpec {
    format: SampleFormat,
    channels: ChannelCount,
    min_rate: SampleRate,
    max_rate: SampleRate,
}

#[derive(Clone, Copy, Debug)]
struct BuildFailure {
    kind: ErrorKind,
    /// `None`: every build fails.
    remaining: Option<u32>,
}

/// One fake device and the scripts of the streams built on it. Use the aliases [`FakeInput`]
/// and [`FakeOutput`].
#[derive(Clone, Debug)]
pub struct DeviceSpec<S> {
    name: String,
    is_default: bool,
    configs: Vec<ConfigSpec>,
    default_config: Option<(SampleFormat, ChannelCount, SampleRate)>,
    buffer_range: SupportedBufferSize,
    build_failure: Option<BuildFailure>,
    scripts: Vec<S>,
}

/// An input device: [`DeviceSpec`] of [`InputScript`]s.
pub type FakeInput = DeviceSpec<InputScript>;
/// An output device: [`DeviceSpec`] of [`OutputScript`]s.
pub type FakeOutput = DeviceSpec<OutputScript>;

impl<S> DeviceSpec<S> {
    /// A device whose first stream plays `script`. Not the default device, no supported
    /// configuration yet, buffer range 1..=16384 frames.
    pub fn new(name: &str, script: S) -> Self {
        DeviceSpec {
            name: name.to_string(),
            is_default: false,
            configs: Vec::new(),
            default_config: None,
            buffer_range: SupportedBufferSize::Range {
                min: 1,
                max: 16_384,
            },
            build_failure: None,
            scripts: vec![script],
        }
    }

    /// Makes this the default device of its direction (the first one so marked wins).
    pub fn default_device(mut self) -> Self {
        self.is_default = true;
        self
    }

    /// Supports every combination of these formats, channel counts and (fixed) rates.
    pub fn supports(
        mut self,
        formats: &[SampleFormat],
        channels: &[ChannelCount],
        rates: &[SampleRate],
    ) -> Self {
        for &format in formats {
            for &ch in channels {
                for &rate in rates {
                    self = self.supports_range(format, ch, rate, rate);
                }
            }
        }
        self
    }

    /// Supports one format and channel count over a continuous range of rates.
    pub fn supports_range(
        mut self,
        format: SampleFormat,
        channels: ChannelCount,
        min_rate: SampleRate,
        max_rate: SampleRate,
    ) -> Self {
        assert!(
            matches!(
                format,
                SampleFormat::I16 | SampleFormat::I32 | SampleFormat::U16 | SampleFormat::F32
            ),
            "fake device: cannot stream {format:?} (only i16, i32, u16, f32)"
        );
        assert!(channels > 0 && min_rate > 0 && min_rate <= max_rate);
        self.configs.push(ConfigSpec {
            format,
            channels,
            min_rate,
            max_rate,
        });
        self
    }

    /// What `default_input_config()` / `default_output_config()` report.
    pub fn default_config(
        mut self,
        format: SampleFormat,
        channels: ChannelCount,
        rate: SampleRate,
    ) -> Self {
        self.default_config = Some((format, channels, rate));
        self
    }

    /// The buffer-size range reported in the configurations (and enforced on honoured
    /// `BufferSize::Fixed` requests).
    pub fn buffer_range(mut self, range: SupportedBufferSize) -> Self {
        self.buffer_range = range;
        self
    }

    /// Every stream build fails with `kind`.
    pub fn fail_build(mut self, kind: ErrorKind) -> Self {
        self.build_failure = Some(BuildFailure {
            kind,
            remaining: None,
        });
        self
    }

    /// The next `times` stream builds fail with `kind`, later ones succeed.
    pub fn fail_build_times(mut self, kind: ErrorKind, times: u32) -> Self {
        self.build_failure = Some(BuildFailure {
            kind,
            remaining: Some(times),
        });
        self
    }

    /// The script of the next stream built on this device.
    pub fn then(mut self, script: S) -> Self {
        self.scripts.push(script);
        self
    }
}

/// The devices of a [`FakeHost`].
#[derive(Clone, Debug, Default)]
pub struct FakeSetup {
    inputs: Vec<FakeInput>,
    outputs: Vec<FakeOutput>,
}

impl FakeSetup {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn input(mut self, device: FakeInput) -> Self {
        assert!(
            self.inputs.iter().all(|d| d.name != device.name),
            "fake device: two input devices named {:?}",
            device.name
        );
        self.inputs.push(device);
        self
    }

    pub fn output(mut self, device: FakeOutput) -> Self {
        assert!(
            self.outputs.iter().all(|d| d.name != device.name),
            "fake device: two output devices named {:?}",
            device.name
        );
        self.outputs.push(device);
        self
    }
}

// ---------------------------------------------------------------------------------------------
// Shared state and the probe
// ---------------------------------------------------------------------------------------------

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

/// Stream direction.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Direction {
    Input,
    Output,
}

enum Scripts {
    Input(Vec<InputScript>),
    Output(Vec<OutputScript>),
}

struct DeviceShared {
    name: String,
    direction: Direction,
    is_default: bool,
    configs: Vec<ConfigSpec>,
    default_config: Option<(SampleFormat, ChannelCount, SampleRate)>,
    buffer_range: SupportedBufferSize,
    scripts: Scripts,
    present: AtomicBool,
    builds: Mutex<BuildState>,
}

struct BuildState {
    attempts: u32,
    built: u32,
    failure: Option<BuildFailure>,
}

impl DeviceShared {
    fn new<S>(spec: DeviceSpec<S>, direction: Direction, wrap: fn(Vec<S>) -> Scripts) -> Self {
        DeviceShared {
            name: spec.name,
            direction,
            is_default: spec.is_default,
            configs: spec.configs,
            default_config: spec.default_config,
            buffer_range: spec.buffer_range,
            scripts: wrap(spec.scripts),
            present: AtomicBool::new(true),
            builds: Mutex::new(BuildState {
                attempts: 0,
                built: 0,
                failure: spec.build_failure,
            }),
        }
    }

    fn present(&self) -> bool {
        self.present.load(Ordering::Acquire)
    }

    fn ranges(&self) -> Vec<SupportedStreamConfigRange> {
        self.configs
            .iter()
            .map(|c| {
                SupportedStreamConfigRange::new(
                    c.channels,
                    c.min_rate,
                    c.max_rate,
                    self.buffer_range,
                    c.format,
                )
            })
            .collect()
    }
}

/// Wakes whoever waits on the probe whenever something is recorded.
struct Notifier {
    generation: Mutex<u64>,
    changed: Condvar,
}

impl Notifier {
    fn bump(&self) {
        *lock(&self.generation) += 1;
        self.changed.notify_all();
    }
}

/// What happened on one stream, as of the moment it was read.
#[derive(Clone, Debug)]
pub struct StreamStats {
    pub device: String,
    pub direction: Direction,
    /// The configuration the stream was opened with.
    pub config: StreamConfig,
    pub sample_format: SampleFormat,
    /// 0 for the first stream built on its device, 1 for the next...
    pub build_index: u32,
    /// Frames in the input script (`None` for output streams).
    pub script_frames: Option<u64>,
    /// The output frame limit, if any.
    pub frame_limit: Option<u64>,
    /// Between `play()` and `pause()` / drop.
    pub playing: bool,
    /// Script over (input with [`AtEnd::Stop`]), frame limit reached (output) or fatal fault:
    /// no data callback will run again.
    pub finished: bool,
    /// The kind of the fatal fault, if one fired.
    pub lost: Option<ErrorKind>,
    /// A callback panicked (the stream then stops).
    pub panicked: bool,
    pub dropped: bool,
    pub data_callbacks: u64,
    /// Frames delivered (input) or pulled (output).
    pub frames: u64,
    /// Frames of each data callback, in order.
    pub callback_frames: Vec<usize>,
    /// Kinds passed to the error callback, in order.
    pub errors: Vec<ErrorKind>,
    /// Heap operations on the stream thread inside data callbacks.
    pub data_callback_allocs: AllocCounts,
    /// Heap operations on the stream thread inside error callbacks.
    pub error_callback_allocs: AllocCounts,
    /// Data callbacks during which at least one heap operation happened.
    pub data_callbacks_touching_heap: u64,
    pub longest_data_callback: Duration,
    pub total_data_callback_time: Duration,
}

impl StreamStats {
    /// Whether [`FakeProbe::wait_until_done`] considers this stream done: an input stream has
    /// delivered its whole script or finished; an output stream with a frame limit has
    /// finished; an output stream without one is always "done" (it never ends by itself).
    pub fn done(&self) -> bool {
        match (self.direction, self.script_frames, self.frame_limit) {
            (Direction::Input, Some(total), _) => self.finished || self.frames >= total,
            (Direction::Output, _, Some(_)) => self.finished,
            _ => true,
        }
    }
}

struct StreamRecord {
    stats: Mutex<StreamStats>,
    played: Mutex<Vec<f32>>,
    notifier: Arc<Notifier>,
}

impl StreamRecord {
    fn update(&self, f: impl FnOnce(&mut StreamStats)) {
        f(&mut lock(&self.stats));
        self.notifier.bump();
    }

    fn snapshot(&self) -> StreamStats {
        lock(&self.stats).clone()
    }
}

/// The test's handle on the fake host: stream statistics, recorded output, device presence,
/// and waits that never hang.
pub struct FakeProbe {
    devices: Vec<Arc<DeviceShared>>,
    streams: Mutex<Vec<Arc<StreamRecord>>>,
    notifier: Arc<Notifier>,
}

impl FakeProbe {
    /// Every stream built so far, in build order.
    pub fn streams(&self) -> Vec<StreamStats> {
        lock(&self.streams).iter().map(|r| r.snapshot()).collect()
    }

    pub fn input_streams(&self) -> Vec<StreamStats> {
        self.streams_of(Direction::Input)
    }

    pub fn output_streams(&self) -> Vec<StreamStats> {
        self.streams_of(Direction::Output)
    }

    /// The latest input stream. Panics if none was built.
    pub fn input_stats(&self) -> StreamStats {
        self.input_streams()
            .pop()
            .expect("fake device: no input stream was built")
    }

    /// The latest output stream. Panics if none was built.
    pub fn output_stats(&self) -> StreamStats {
        self.output_streams()
            .pop()
            .expect("fake device: no output stream was built")
    }

    /// Everything the latest output stream's callback wrote, interleaved, as f32 (empty if no
    /// output stream was built).
    pub fn played(&self) -> Vec<f32> {
        let records = lock(&self.streams);
        records
            .iter()
            .rev()
            .find(|r| lock(&r.stats).direction == Direction::Output)
            .map(|r| lock(&r.played).clone())
            .unwrap_or_default()
    }

    /// Everything the `index`-th output stream (in build order) wrote.
    pub fn played_by(&self, index: usize) -> Vec<f32> {
        let records = lock(&self.streams);
        records
            .iter()
            .filter(|r| lock(&r.stats).direction == Direction::Output)
            .nth(index)
            .map(|r| lock(&r.played).clone())
            .unwrap_or_default()
    }

    /// Stream builds attempted on the device(s) of that name, failed ones included.
    pub fn build_attempts(&self, device: &str) -> u32 {
        self.named(device).map(|d| lock(&d.builds).attempts).sum()
    }

    /// Unplugs the device(s) of that name: they leave the host, builds fail, and a running
    /// stream on them gets `DeviceNotAvailable` at its next callback boundary.
    pub fn unplug(&self, device: &str) {
        self.set_present(device, false);
    }

    /// Plugs the device(s) of that name back in (after [`FakeProbe::unplug`] or
    /// [`Fault::DeviceLost`]). Streams that were lost stay lost: build new ones.
    pub fn replug(&self, device: &str) {
        self.set_present(device, true);
    }

    pub fn is_present(&self, device: &str) -> bool {
        self.named(device).any(|d| d.present())
    }

    /// Waits until `pred` holds, re-checking whenever a stream records something (and at
    /// least every 10 ms). Returns `false` on timeout.
    pub fn wait_until(&self, timeout: Duration, mut pred: impl FnMut(&FakeProbe) -> bool) -> bool {
        let deadline = Instant::now() + timeout;
        loop {
            let seen = *lock(&self.notifier.generation);
            if pred(self) {
                return true;
            }
            let now = Instant::now();
            if now >= deadline {
                return false;
            }
            let generation = lock(&self.notifier.generation);
            if *generation == seen {
                let slice = (deadline - now).min(Duration::from_millis(10));
                let _ = self
                    .notifier
                    .changed
                    .wait_timeout(generation, slice)
                    .unwrap_or_else(PoisonError::into_inner);
            }
        }
    }

    /// Waits until at least one stream exists and every stream is [`StreamStats::done`].
    /// Returns `false` on timeout.
    pub fn wait_until_done(&self, timeout: Duration) -> bool {
        self.wait_until(timeout, |p| {
            let all = p.streams();
            !all.is_empty() && all.iter().all(StreamStats::done)
        })
    }

    fn streams_of(&self, direction: Direction) -> Vec<StreamStats> {
        self.streams()
            .into_iter()
            .filter(|s| s.direction == direction)
            .collect()
    }

    fn named<'a>(&'a self, device: &'a str) -> impl Iterator<Item = &'a Arc<DeviceShared>> + 'a {
        self.devices.iter().filter(move |d| d.name == device)
    }

    fn set_present(&self, device: &str, present: bool) {
        let mut any = false;
        for d in self.named(device) {
            d.present.store(present, Ordering::Release);
            any = true;
        }
        assert!(any, "fake device: no device named {device:?}");
        self.notifier.bump();
    }
}

// ---------------------------------------------------------------------------------------------
// Host and devices
// ---------------------------------------------------------------------------------------------

/// The fake host. [`FakeHost::build`] hands out a ready `cpal::Host`.
#[derive(Clone)]
pub struct FakeHost {
    probe: Arc<FakeProbe>,
}

impl FakeHost {
    /// A `cpal::Host` serving the devices of `setup`, and the probe that watches them.
    pub fn build(setup: FakeSetup) -> (cpal::Host, Arc<FakeProbe>) {
        let mut devices = Vec::new();
        for spec in setup.inputs {
            devices.push(Arc::new(DeviceShared::new(
                spec,
                Direction::Input,
                Scripts::Input,
            )));
        }
        for spec in setup.outputs {
            devices.push(Arc::new(DeviceShared::new(
                spec,
                Direction::Output,
                Scripts::Output,
            )));
        }
        let probe = Arc::new(FakeProbe {
            devices,
            streams: Mutex::new(Vec::new()),
            notifier: Arc::new(Notifier {
                generation: Mutex::new(0),
                changed: Condvar::new(),
            }),
        });
        let host = FakeHost {
            probe: probe.clone(),
        };
        let host = cpal::Host::from(cpal::platform::CustomHost::from_host(host));
        (host, probe)
    }

    fn device(&self, d: &Arc<DeviceShared>) -> FakeDevice {
        FakeDevice {
            shared: d.clone(),
            probe: self.probe.clone(),
        }
    }

    fn default_of(&self, direction: Direction) -> Option<FakeDevice> {
        self.probe
            .devices
            .iter()
            .find(|d| d.direction == direction && d.is_default && d.present())
            .map(|d| self.device(d))
    }
}

impl HostTrait for FakeHost {
    type Devices = std::vec::IntoIter<FakeDevice>;
    type Device = FakeDevice;

    fn is_available() -> bool {
        true
    }

    fn devices(&self) -> Result<Self::Devices, Error> {
        let present: Vec<FakeDevice> = self
            .probe
            .devices
            .iter()
            .filter(|d| d.present())
            .map(|d| self.device(d))
            .collect();
        Ok(present.into_iter())
    }

    fn default_input_device(&self) -> Option<Self::Device> {
        self.default_of(Direction::Input)
    }

    fn default_output_device(&self) -> Option<Self::Device> {
        self.default_of(Direction::Output)
    }
}

/// A fake device (reached by tests through `cpal::Device`).
#[derive(Clone)]
pub struct FakeDevice {
    shared: Arc<DeviceShared>,
    probe: Arc<FakeProbe>,
}

impl PartialEq for FakeDevice {
    fn eq(&self, other: &Self) -> bool {
        self.shared.direction == other.shared.direction && self.shared.name == other.shared.name
    }
}

impl Eq for FakeDevice {}

impl Hash for FakeDevice {
    fn hash<H: Hasher>(&self, state: &mut H) {
        self.shared.direction.hash(state);
        self.shared.name.hash(state);
    }
}

impl fmt::Debug for FakeDevice {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("FakeDevice")
            .field("name", &self.shared.name)
            .field("direction", &self.shared.direction)
            .finish()
    }
}

impl fmt::Display for FakeDevice {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.shared.name)
    }
}

type InputCallback = Box<dyn FnMut(&Data, &InputCallbackInfo) + Send + 'static>;
type OutputCallback = Box<dyn FnMut(&mut Data, &OutputCallbackInfo) + Send + 'static>;
type ErrorCallback = Box<dyn FnMut(Error) + Send + 'static>;

fn err(kind: ErrorKind, message: impl Into<std::borrow::Cow<'static, str>>) -> Error {
    Error::with_message(kind, message)
}

impl FakeDevice {
    fn configs_for(&self, direction: Direction) -> Result<Vec<SupportedStreamConfigRange>, Error> {
        let d = &self.shared;
        if !d.present() {
            return Err(err(ErrorKind::DeviceNotAvailable, "fake device unplugged"));
        }
        if d.direction != direction {
            return Err(Error::new(ErrorKind::UnsupportedOperation));
        }
        Ok(d.ranges())
    }

    fn default_for(&self, direction: Direction) -> Result<SupportedStreamConfig, Error> {
        let ranges = self.configs_for(direction)?;
        let d = &self.shared;
        if let Some((format, channels, rate)) = d.default_config {
            return Ok(SupportedStreamConfig::new(
                channels,
                rate,
                d.buffer_range,
                format,
            ));
        }
        ranges
            .into_iter()
            .next()
            .map(|r| r.with_max_sample_rate())
            .ok_or_else(|| err(ErrorKind::UnsupportedConfig, "fake device has no configs"))
    }

    /// Checks a build request and registers the stream. Returns the script index, the
    /// callback pattern after `BufferSize` handling, and the stream's record.
    fn open(
        &self,
        direction: Direction,
        config: &StreamConfig,
        format: SampleFormat,
        honour_fixed: impl FnOnce(usize) -> bool,
        pattern: impl FnOnce(usize) -> Vec<usize>,
        limits: impl FnOnce(usize) -> (Option<u64>, Option<u64>),
    ) -> Result<(usize, Vec<usize>, Arc<StreamRecord>), Error> {
        let d = &self.shared;
        let mut builds = lock(&d.builds);
        builds.attempts += 1;
        if !d.present() {
            return Err(err(ErrorKind::DeviceNotAvailable, "fake device unplugged"));
        }
        if d.direction != direction {
            return Err(err(
                ErrorKind::UnsupportedOperation,
                "fake device has no streams in that direction",
            ));
        }
        if let Some(failure) = builds.failure.as_mut() {
            let fail = match failure.remaining.as_mut() {
                None => true,
                Some(0) => false,
                Some(left) => {
                    *left -= 1;
                    true
                }
            };
            if fail {
                return Err(err(failure.kind, "injected build failure"));
            }
        }
        let supported = d.configs.iter().any(|c| {
            c.format == format
                && c.channels == config.channels
                && (c.min_rate..=c.max_rate).contains(&config.sample_rate)
        });
        if !supported {
            return Err(err(
                ErrorKind::UnsupportedConfig,
                format!(
                    "fake device {:?} does not support {format:?}, {} ch, {} Hz",
                    d.name, config.channels, config.sample_rate
                ),
            ));
        }
        let index = (builds.built as usize).min(match &d.scripts {
            Scripts::Input(s) => s.len() - 1,
            Scripts::Output(s) => s.len() - 1,
        });
        let mut pattern = pattern(index);
        if let BufferSize::Fixed(n) = config.buffer_size {
            if honour_fixed(index) {
                let in_range = match d.buffer_range {
                    SupportedBufferSize::Range { min, max } => (min..=max).contains(&n),
                    SupportedBufferSize::Unknown => n > 0,
                };
                if !in_range {
                    return Err(err(
                        ErrorKind::UnsupportedConfig,
                        format!("fake device: buffer size {n} out of range"),
                    ));
                }
                pattern = vec![n as usize];
            }
        }
        let (script_frames, frame_limit) = limits(index);
        let build_index = builds.built;
        builds.built += 1;
        drop(builds);
        let record = Arc::new(StreamRecord {
            stats: Mutex::new(StreamStats {
                device: d.name.clone(),
                direction,
                config: *config,
                sample_format: format,
                build_index,
                script_frames,
                frame_limit,
                playing: false,
                finished: false,
                lost: None,
                panicked: false,
                dropped: false,
                data_callbacks: 0,
                frames: 0,
                callback_frames: Vec::new(),
                errors: Vec::new(),
                data_callback_allocs: AllocCounts::default(),
                error_callback_allocs: AllocCounts::default(),
                data_callbacks_touching_heap: 0,
                longest_data_callback: Duration::ZERO,
                total_data_callback_time: Duration::ZERO,
            }),
            played: Mutex::new(Vec::new()),
            notifier: self.probe.notifier.clone(),
        });
        lock(&self.probe.streams).push(record.clone());
        self.probe.notifier.bump();
        Ok((index, pattern, record))
    }

    fn input_scripts(&self) -> &[InputScript] {
        match &self.shared.scripts {
            Scripts::Input(s) => s,
            Scripts::Output(_) => &[],
        }
    }

    fn output_scripts(&self) -> &[OutputScript] {
        match &self.shared.scripts {
            Scripts::Output(s) => s,
            Scripts::Input(_) => &[],
        }
    }

    fn stream(
        &self,
        record: Arc<StreamRecord>,
        ctl: Arc<StreamCtl>,
        nominal: usize,
        rate: SampleRate,
        worker: Box<dyn Worker>,
    ) -> FakeStream {
        FakeStream {
            record,
            ctl,
            device: self.shared.clone(),
            nominal: nominal as FrameCount,
            rate,
            run: Mutex::new(RunState {
                worker: Some(worker),
                thread: None,
            }),
        }
    }
}

impl DeviceTrait for FakeDevice {
    type SupportedInputConfigs = std::vec::IntoIter<SupportedStreamConfigRange>;
    type SupportedOutputConfigs = std::vec::IntoIter<SupportedStreamConfigRange>;
    type Stream = FakeStream;

    fn description(&self) -> Result<DeviceDescription, Error> {
        let (direction, kind) = match self.shared.direction {
            Direction::Input => (DeviceDirection::Input, DeviceType::Microphone),
            Direction::Output => (DeviceDirection::Output, DeviceType::Speaker),
        };
        Ok(DeviceDescriptionBuilder::new(&self.shared.name)
            .direction(direction)
            .device_type(kind)
            .driver("fake")
            .build())
    }

    fn id(&self) -> Result<DeviceId, Error> {
        let prefix = match self.shared.direction {
            Direction::Input => "in",
            Direction::Output => "out",
        };
        Ok(DeviceId::new(
            HostId::Custom,
            format!("{prefix}:{}", self.shared.name),
        ))
    }

    fn supported_input_configs(&self) -> Result<Self::SupportedInputConfigs, Error> {
        self.configs_for(Direction::Input).map(Vec::into_iter)
    }

    fn supported_output_configs(&self) -> Result<Self::SupportedOutputConfigs, Error> {
        self.configs_for(Direction::Output).map(Vec::into_iter)
    }

    fn default_input_config(&self) -> Result<SupportedStreamConfig, Error> {
        self.default_for(Direction::Input)
    }

    fn default_output_config(&self) -> Result<SupportedStreamConfig, Error> {
        self.default_for(Direction::Output)
    }

    fn build_input_stream_raw<D, E>(
        &self,
        config: StreamConfig,
        sample_format: SampleFormat,
        data_callback: D,
        error_callback: E,
        _timeout: Option<Duration>,
    ) -> Result<Self::Stream, Error>
    where
        D: FnMut(&Data, &InputCallbackInfo) + Send + 'static,
        E: FnMut(Error) + Send + 'static,
    {
        let scripts = self.input_scripts();
        let (index, pattern, record) = self.open(
            Direction::Input,
            &config,
            sample_format,
            |i| scripts[i].timing.honour_fixed,
            |i| scripts[i].timing.callback_frames.clone(),
            |i| (Some(scripts[i].frames()), None),
        )?;
        let script = &scripts[index];
        assert_eq!(
            script.channels, config.channels,
            "fake device {:?}: the script is for {} channels, the stream was opened with {}",
            self.shared.name, script.channels, config.channels
        );
        let ctl = Arc::new(StreamCtl::default());
        let core = Core::new(
            &config,
            pattern.clone(),
            &script.timing,
            match script.at_end {
                AtEnd::Stop => Some(script.frames()),
                AtEnd::Silence => None,
            },
            Box::new(error_callback),
            record.clone(),
            self.shared.clone(),
            ctl.clone(),
        );
        let data: InputCallback = Box::new(data_callback);
        let worker: Box<dyn Worker> = match sample_format {
            SampleFormat::I16 => Box::new(InputWorker::<i16>::new(core, &script.samples, data)),
            SampleFormat::I32 => Box::new(InputWorker::<i32>::new(core, &script.samples, data)),
            SampleFormat::U16 => Box::new(InputWorker::<u16>::new(core, &script.samples, data)),
            SampleFormat::F32 => Box::new(InputWorker::<f32>::new(core, &script.samples, data)),
            other => unreachable!("fake device: {other:?} passed the config check"),
        };
        Ok(self.stream(record, ctl, pattern[0], config.sample_rate, worker))
    }

    fn build_output_stream_raw<D, E>(
        &self,
        config: StreamConfig,
        sample_format: SampleFormat,
        data_callback: D,
        error_callback: E,
        _timeout: Option<Duration>,
    ) -> Result<Self::Stream, Error>
    where
        D: FnMut(&mut Data, &OutputCallbackInfo) + Send + 'static,
        E: FnMut(Error) + Send + 'static,
    {
        let scripts = self.output_scripts();
        let (index, pattern, record) = self.open(
            Direction::Output,
            &config,
            sample_format,
            |i| scripts[i].timing.honour_fixed,
            |i| scripts[i].timing.callback_frames.clone(),
            |i| (None, scripts[i].stop_after),
        )?;
        let script = &scripts[index];
        let ctl = Arc::new(StreamCtl::default());
        let core = Core::new(
            &config,
            pattern.clone(),
            &script.timing,
            script.stop_after,
            Box::new(error_callback),
            record.clone(),
            self.shared.clone(),
            ctl.clone(),
        );
        let data: OutputCallback = Box::new(data_callback);
        let worker: Box<dyn Worker> = match sample_format {
            SampleFormat::I16 => Box::new(OutputWorker::<i16>::new(core, data)),
            SampleFormat::I32 => Box::new(OutputWorker::<i32>::new(core, data)),
            SampleFormat::U16 => Box::new(OutputWorker::<u16>::new(core, data)),
            SampleFormat::F32 => Box::new(OutputWorker::<f32>::new(core, data)),
            other => unreachable!("fake device: {other:?} passed the config check"),
        };
        Ok(self.stream(record, ctl, pattern[0], config.sample_rate, worker))
    }
}

// ---------------------------------------------------------------------------------------------
// Streams
// ---------------------------------------------------------------------------------------------

#[derive(Default)]
struct StreamCtl {
    stop: AtomicBool,
    /// The sample clock at the latest callback, in frames.
    clock: AtomicU64,
}

fn instant_at(frames: u64, rate: SampleRate) -> StreamInstant {
    let rate = u64::from(rate);
    let secs = frames / rate;
    let nanos = (frames % rate) * 1_000_000_000 / rate;
    StreamInstant::new(secs, nanos as u32)
}

/// What a stream thread runs: the callbacks and the script position, handed back on join.
trait Worker: Send {
    fn run(&mut self);
    fn core(&mut self) -> &mut Core;
}

/// The script position and everything common to input and output streams.
struct Core {
    channels: usize,
    rate: SampleRate,
    pattern: Vec<usize>,
    pattern_at: usize,
    pos: u64,
    pacing: Pacing,
    faults: Vec<(u64, Fault)>,
    next_fault: usize,
    limit: Option<u64>,
    finished: bool,
    error_callback: ErrorCallback,
    record: Arc<StreamRecord>,
    device: Arc<DeviceShared>,
    ctl: Arc<StreamCtl>,
}

impl Core {
    #[allow(clippy::too_many_arguments)]
    fn new(
        config: &StreamConfig,
        pattern: Vec<usize>,
        timing: &Timing,
        limit: Option<u64>,
        error_callback: ErrorCallback,
        record: Arc<StreamRecord>,
        device: Arc<DeviceShared>,
        ctl: Arc<StreamCtl>,
    ) -> Self {
        Core {
            channels: usize::from(config.channels),
            rate: config.sample_rate,
            pattern,
            pattern_at: 0,
            pos: 0,
            pacing: timing.pacing,
            faults: timing.faults.clone(),
            next_fault: 0,
            limit,
            finished: false,
            error_callback,
            record,
            device,
            ctl,
        }
    }

    fn max_frames(&self) -> usize {
        self.pattern.iter().copied().max().unwrap_or(0)
    }

    /// Before each data callback: fires due faults, ends the stream when its script or limit
    /// is over. `Some(n)`: deliver `n` frames next; `None`: leave the loop.
    fn prepare(&mut self) -> Option<usize> {
        if self.finished || self.ctl.stop.load(Ordering::Acquire) {
            return None;
        }
        if !self.device.present() {
            self.die(ErrorKind::DeviceNotAvailable, false);
            return None;
        }
        while let Some(&(at, fault)) = self.faults.get(self.next_fault) {
            if at > self.pos {
                break;
            }
            self.next_fault += 1;
            match fault {
                Fault::NonFatal(kind) => self.report(err(kind, "injected fault")),
                Fault::Fatal(kind) => {
                    self.die(kind, false);
                    return None;
                }
                Fault::DeviceLost => {
                    self.die(ErrorKind::DeviceNotAvailable, true);
                    return None;
                }
            }
        }
        if self.limit.is_some_and(|limit| self.pos >= limit) {
            self.finished = true;
            self.record.update(|s| s.finished = true);
            return None;
        }
        let mut n = self.pattern[self.pattern_at];
        if let Some(limit) = self.limit {
            n = n.min((limit - self.pos) as usize);
        }
        if let Some(&(at, _)) = self.faults.get(self.next_fault) {
            n = n.min((at - self.pos) as usize);
        }
        Some(n)
    }

    /// Sleeps until `deadline` when paced. `false`: stop requested or device unplugged first.
    fn wait_for(&self, start: Instant, frames_since_start: u64) -> bool {
        let Pacing::Paced(speed) = self.pacing else {
            return true;
        };
        let due = start
            + Duration::from_secs_f64(frames_since_start as f64 / f64::from(self.rate) / speed);
        loop {
            if self.ctl.stop.load(Ordering::Acquire) || !self.device.present() {
                return false;
            }
            let now = Instant::now();
            if now >= due {
                return true;
            }
            thread::park_timeout((due - now).min(Duration::from_millis(10)));
        }
    }

    /// Calls the error callback, measuring its heap use.
    fn report(&mut self, error: Error) {
        let kind = error.kind();
        let ((), allocs) = counting_alloc::count_on_this_thread(|| (self.error_callback)(error));
        self.record.update(|s| {
            s.errors.push(kind);
            s.error_callback_allocs += allocs;
        });
    }

    fn die(&mut self, kind: ErrorKind, unplug: bool) {
        if unplug {
            self.device.present.store(false, Ordering::Release);
        }
        self.finished = true;
        self.report(err(kind, "fake device stream failed"));
        self.record.update(|s| {
            s.lost = Some(kind);
            s.finished = true;
        });
    }

    fn delivered(&mut self, n: usize, allocs: AllocCounts, took: Duration) {
        self.pos += n as u64;
        self.pattern_at = (self.pattern_at + 1) % self.pattern.len();
        // Finished as soon as the last frame is out, in the same update, unless a fault is
        // still due at this very frame (the next `prepare` fires it).
        let fault_due = self
            .faults
            .get(self.next_fault)
            .is_some_and(|&(at, _)| at <= self.pos);
        if self.limit.is_some_and(|limit| self.pos >= limit) && !fault_due {
            self.finished = true;
        }
        let finished = self.finished;
        self.record.update(|s| {
            s.finished |= finished;
            s.data_callbacks += 1;
            s.frames += n as u64;
            s.callback_frames.push(n);
            s.data_callback_allocs += allocs;
            if allocs.total() > 0 {
                s.data_callbacks_touching_heap += 1;
            }
            s.longest_data_callback = s.longest_data_callback.max(took);
            s.total_data_callback_time += took;
        });
    }
}

/// Calls `f`, returning the heap operations it made on this thread and how long it took.
fn measured(f: impl FnOnce()) -> (AllocCounts, Duration) {
    let t0 = Instant::now();
    let ((), allocs) = counting_alloc::count_on_this_thread(f);
    (allocs, t0.elapsed())
}

struct InputWorker<T: FakeSample> {
    core: Core,
    script: Vec<T>,
    buffer: Vec<T>,
    callback: InputCallback,
}

impl<T: FakeSample> InputWorker<T> {
    fn new(core: Core, samples: &Samples, callback: InputCallback) -> Self {
        let buffer = vec![T::SILENCE; core.max_frames() * core.channels];
        InputWorker {
            script: samples.to_vec::<T>(),
            buffer,
            core,
            callback,
        }
    }
}

impl<T: FakeSample> Worker for InputWorker<T> {
    fn run(&mut self) {
        let start = Instant::now();
        let pos0 = self.core.pos;
        while let Some(n) = self.core.prepare() {
            let pos = self.core.pos;
            if !self.core.wait_for(start, pos + n as u64 - pos0) {
                continue;
            }
            let len = n * self.core.channels;
            let from = (pos as usize * self.core.channels).min(self.script.len());
            let avail = (self.script.len() - from).min(len);
            self.buffer[..avail].copy_from_slice(&self.script[from..from + avail]);
            self.buffer[avail..len].fill(T::SILENCE);
            // SAFETY: the pointer is to `len` initialised samples of format `T::FORMAT`, owned
            // by this worker and untouched until the callback returns; input callbacks only
            // get `&Data`, so nothing writes through it.
            let data = unsafe { Data::from_parts(self.buffer.as_mut_ptr().cast(), len, T::FORMAT) };
            let info = InputCallbackInfo::new(InputStreamTimestamp {
                callback: instant_at(pos + n as u64, self.core.rate),
                capture: instant_at(pos, self.core.rate),
            });
            self.core.ctl.clock.store(pos + n as u64, Ordering::Release);
            let callback = &mut self.callback;
            let (allocs, took) = measured(|| callback(&data, &info));
            self.core.delivered(n, allocs, took);
        }
    }

    fn core(&mut self) -> &mut Core {
        &mut self.core
    }
}

struct OutputWorker<T: FakeSample> {
    core: Core,
    buffer: Vec<T>,
    callback: OutputCallback,
}

impl<T: FakeSample> OutputWorker<T> {
    fn new(core: Core, callback: OutputCallback) -> Self {
        let buffer = vec![T::SILENCE; core.max_frames() * core.channels];
        OutputWorker {
            buffer,
            core,
            callback,
        }
    }
}

impl<T: FakeSample> Worker for OutputWorker<T> {
    fn run(&mut self) {
        let start = Instant::now();
        let pos0 = self.core.pos;
        while let Some(n) = self.core.prepare() {
            let pos = self.core.pos;
            if !self.core.wait_for(start, pos - pos0) {
                continue;
            }
            let len = n * self.core.channels;
            self.buffer[..len].fill(T::SILENCE);
            // SAFETY: the pointer is to `len` initialised samples of format `T::FORMAT`, owned
            // by this worker and not otherwise accessed until the callback returns.
            let mut data =
                unsafe { Data::from_parts(self.buffer.as_mut_ptr().cast(), len, T::FORMAT) };
            let info = OutputCallbackInfo::new(OutputStreamTimestamp {
                callback: instant_at(pos, self.core.rate),
                playback: instant_at(pos + n as u64, self.core.rate),
            });
            self.core.ctl.clock.store(pos, Ordering::Release);
            let callback = &mut self.callback;
            let (allocs, took) = measured(|| callback(&mut data, &info));
            lock(&self.core.record.played)
                .extend(self.buffer[..len].iter().map(|x| x.to_unit_f32()));
            self.core.delivered(n, allocs, took);
        }
    }

    fn core(&mut self) -> &mut Core {
        &mut self.core
    }
}

struct RunState {
    /// The callbacks and script position while no thread runs.
    worker: Option<Box<dyn Worker>>,
    thread: Option<JoinHandle<Box<dyn Worker>>>,
}

/// A fake stream: one thread between `play()` and `pause()` / drop.
pub struct FakeStream {
    record: Arc<StreamRecord>,
    ctl: Arc<StreamCtl>,
    device: Arc<DeviceShared>,
    nominal: FrameCount,
    rate: SampleRate,
    run: Mutex<RunState>,
}

cpal::assert_stream_send!(FakeStream);
cpal::assert_stream_sync!(FakeStream);

fn on_thread(handle: &JoinHandle<Box<dyn Worker>>) -> bool {
    handle.thread().id() == thread::current().id()
}

impl FakeStream {
    /// Stops the thread and takes the worker back. From the stream's own thread, only asks it
    /// to stop (and forgets the handle if `detach`).
    fn halt(&self, run: &mut RunState, detach: bool) {
        self.ctl.stop.store(true, Ordering::Release);
        let Some(handle) = run.thread.take() else {
            return;
        };
        if on_thread(&handle) {
            if !detach {
                run.thread = Some(handle);
            }
            return;
        }
        handle.thread().unpark();
        if let Ok(worker) = handle.join() {
            run.worker = Some(worker);
        }
    }
}

impl StreamTrait for FakeStream {
    fn play(&self) -> Result<(), Error> {
        let mut run = lock(&self.run);
        if let Some(kind) = lock(&self.record.stats).lost {
            return Err(err(kind, "fake stream failed earlier"));
        }
        if !self.device.present() {
            return Err(err(ErrorKind::DeviceNotAvailable, "fake device unplugged"));
        }
        if let Some(handle) = &run.thread {
            if on_thread(handle) {
                self.ctl.stop.store(false, Ordering::Release);
                self.record.update(|s| s.playing = true);
                return Ok(());
            }
            if !self.ctl.stop.load(Ordering::Acquire) && !handle.is_finished() {
                return Ok(());
            }
            self.halt(&mut run, false);
        }
        let Some(mut worker) = run.worker.take() else {
            return Err(err(
                ErrorKind::BackendError,
                "fake stream lost its callbacks",
            ));
        };
        self.record.update(|s| s.playing = true);
        if worker.core().finished {
            run.worker = Some(worker);
            return Ok(());
        }
        self.ctl.stop.store(false, Ordering::Release);
        let record = self.record.clone();
        let spawned = thread::Builder::new()
            .name(format!("fake-audio-{}", self.device.name))
            .spawn(move || {
                if catch_unwind(AssertUnwindSafe(|| worker.run())).is_err() {
                    worker.core().finished = true;
                    record.update(|s| {
                        s.panicked = true;
                        s.finished = true;
                    });
                }
                worker
            });
        match spawned {
            Ok(handle) => {
                run.thread = Some(handle);
                Ok(())
            }
            Err(e) => Err(err(ErrorKind::ResourceExhausted, e.to_string())),
        }
    }

    fn pause(&self) -> Result<(), Error> {
        let mut run = lock(&self.run);
        self.halt(&mut run, false);
        self.record.update(|s| s.playing = false);
        Ok(())
    }

    fn now(&self) -> StreamInstant {
        instant_at(self.ctl.clock.load(Ordering::Acquire), self.rate)
    }

    fn buffer_size(&self) -> Result<FrameCount, Error> {
        Ok(self.nominal)
    }
}

impl Drop for FakeStream {
    fn drop(&mut self) {
        let mut run = lock(&self.run);
        self.halt(&mut run, true);
        // The callbacks go with the worker, here, before the drop returns.
        run.worker = None;
        drop(run);
        self.record.update(|s| {
            s.playing = false;
            s.dropped = true;
        });
    }
}
