//! The live engine: the pipeline running on the device's own audio hardware.
//!
//! ```text
//!  input device ──cpal callback──► capture ring (SPSC, lock-free) ──► processing thread
//!   (any rate, 1–8 ch,            convert + downmix only;             Pipeline (resample,
//!    i16/i32/u16/f32)              a full ring counts an overrun       RNNoise, gate, ...)
//!                                                                          │ 10 ms frames
//!                          ┌───────────────────────┬──────────────────────┤
//!                          ▼                       ▼                      ▼
//!                 monitor ring ──cpal──► output   recorder (WAV,      frame sink (callback,
//!                 (empty: silence,       device   written to a temp   channel, network)
//!                  counts an underrun)            name, renamed at stop)
//! ```
//!
//! The output device also plays a player's audio ([`EngineConfig::playback`],
//! [`Engine::player`]): a conversation backend's answer, resampled on the caller's
//! thread into a lock-free ring that the output callback mixes with the monitor. What the
//! output callback writes to the device goes, at that moment, into the pipeline's render
//! ring ([`crate::pipeline::render_ring`]); the processing thread moves it into the
//! pipeline before each processing step, for the echo canceller (and drops it unread
//! when the configuration cancels no echo). The engine changes no configuration while
//! it runs, so the render format is set once, when the pipeline is built.
//!
//! Capture happens only between [`Engine::start`] and [`Engine::stop`] (or drop): the
//! engine opens no stream before `start` and releases the devices at `stop`, after
//! which no callback runs. The callbacks never allocate, lock, block or log (tested with
//! a counting allocator around real callbacks). Statistics ([`Engine::stats`]) are
//! atomics, readable at any time.

mod capture;
mod devices;
mod monitor;
mod player;
mod processing;
mod stats;

use std::path::PathBuf;
use std::sync::atomic::Ordering::{Acquire, Release};
use std::sync::mpsc::{channel, Receiver};
use std::sync::Arc;
use std::thread::JoinHandle;

use cpal::traits::{DeviceTrait, StreamTrait};
use ringbuf::traits::Split;
use ringbuf::HeapRb;
use serde::Serialize;

pub use devices::{
    list_devices, ConfigRange, DeviceFormat, DeviceInfo, DeviceList, DeviceSelector,
};
pub use player::{EnginePlayer, RenderTap};
pub use stats::EngineStats;

use self::capture::{Capture, SCRATCH_FRAMES};
use self::devices::{choose_config, select_device, StreamRequest};
use self::monitor::{Monitor, OutputParts};
use self::player::PlayerSource;
use self::processing::{Control, MonitorFeed, Processing};
use self::stats::Shared;
use crate::config::Config;
use crate::dsp::convert::{ChannelMode, Downmixer};
use crate::dsp::resample::StreamResampler;
use crate::io::{OutputFormat, WavError, WavFileWriter};
use crate::pipeline::{frame_channel, render_ring, FrameReceiver, FrameSink, Framer, Pipeline};

/// Why the engine could not start, or stopped.
///
/// # Examples
///
/// ```
/// use clearvox::engine::{Engine, EngineConfig, EngineError};
/// use clearvox::Config;
///
/// // Building an engine checks the pipeline's configuration; it opens no device.
/// let config = EngineConfig {
///     pipeline: Config { strength: 2.0, ..Config::default() },
///     ..EngineConfig::default()
/// };
/// let err = Engine::new(config).unwrap_err();
/// assert!(matches!(err, EngineError::Pipeline(_)));
///
/// let mut engine = Engine::new(EngineConfig::default())?;
/// let err = engine.stop().unwrap_err();
/// assert!(matches!(err, EngineError::NotRunning));
/// assert_eq!(err.to_string(), "the engine is not running: start it first");
/// # Ok::<(), EngineError>(())
/// ```
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum EngineError {
    /// The host has no device of that kind (or no default one).
    #[error("no {kind} device: check that a microphone/speaker is connected and enabled")]
    NoDevice {
        /// `input` or `output`.
        kind: &'static str,
    },
    /// No device matches the selector.
    #[error("no {kind} {wanted}; available: {}", choices(available))]
    DeviceNotFound {
        /// `input` or `output`.
        kind: &'static str,
        /// What was asked for.
        wanted: String,
        /// The names of the devices there are.
        available: Vec<String>,
    },
    /// Several devices contain the name.
    #[error(
        "{kind} device name '{wanted}' is ambiguous: it matches {}; give more of the name",
        list(matches)
    )]
    AmbiguousDevice {
        /// `input` or `output`.
        kind: &'static str,
        /// What was asked for.
        wanted: String,
        /// The devices it matches.
        matches: Vec<String>,
    },
    /// The device does not support the configuration.
    #[error("{device} does not support {requested}; it supports {supported}")]
    UnsupportedConfig {
        /// The device's name.
        device: String,
        /// What was asked for.
        requested: String,
        /// What it supports.
        supported: String,
    },
    /// The device refused (busy, permission, gone) or the backend failed.
    #[error("{device}: {message}")]
    Device {
        /// The device's name.
        device: String,
        /// What the audio backend said.
        message: String,
    },
    /// The device failed while running (unplugged, server gone).
    #[error(
        "the {kind} device failed while running: {message}; check that it is still \
         connected, then start again"
    )]
    DeviceLost {
        /// `input` or `output`.
        kind: &'static str,
        /// What the audio backend said.
        message: String,
    },
    /// The audio host itself failed.
    #[error("the audio system failed: {0}")]
    Host(String),
    /// The pipeline could not be built or run.
    #[error(transparent)]
    Pipeline(#[from] crate::Error),
    /// The recording could not be written.
    #[error("recording: {0}")]
    Recorder(#[from] WavError),
    /// `start` on a running engine.
    #[error("the engine is already running: stop it first")]
    AlreadyRunning,
    /// `stop` on an engine that is not running.
    #[error("the engine is not running: start it first")]
    NotRunning,
    /// [`Engine::player`] on an engine configured without playback.
    #[error(
        "the engine has no player: set `playback` in its configuration (the output device \
         then opens for it)"
    )]
    NoPlayback,
    /// [`Engine::player`] a second time in one session.
    #[error("the player of this session was already taken: one player per session")]
    PlayerTaken,
    /// The processing thread could not be started or ended abnormally.
    #[error("the processing thread failed: {0}")]
    Thread(String),
}

/// The devices there are, and how to pick one.
fn choices(names: &[String]) -> String {
    if names.is_empty() {
        "none".into()
    } else {
        format!(
            "{} (choose one by name, part of a name, or index)",
            names.join(", ")
        )
    }
}

fn list(names: &[String]) -> String {
    if names.is_empty() {
        "none".into()
    } else {
        names.join(", ")
    }
}

impl EngineError {
    pub(crate) fn from_cpal(device: &str, e: cpal::Error) -> Self {
        let message = match e.kind() {
            cpal::ErrorKind::DeviceBusy => {
                format!(
                    "device is busy (in use by another program: close it, or choose another \
                     device): {e}"
                )
            }
            cpal::ErrorKind::DeviceNotAvailable => {
                "not available: there is no such device, or it was disconnected".to_string()
            }
            cpal::ErrorKind::PermissionDenied => {
                format!("permission denied (check that this program may use audio devices): {e}")
            }
            cpal::ErrorKind::UnsupportedConfig => format!("configuration not supported: {e}"),
            _ => e.to_string(),
        };
        EngineError::Device {
            device: device.to_string(),
            message,
        }
    }
}

/// Something that happened while the engine ran.
///
/// # Examples
///
/// ```
/// use clearvox::engine::EngineEvent;
///
/// fn on_event(event: &EngineEvent) -> Option<String> {
///     match event {
///         EngineEvent::DeviceError { input: true, message } => {
///             Some(format!("microphone lost: {message}"))
///         }
///         EngineEvent::DeviceError { input: false, message } => {
///             Some(format!("monitoring stopped: {message}"))
///         }
///         EngineEvent::Failed { message } => Some(format!("stopped: {message}")),
///         EngineEvent::Finished => None,
///     }
/// }
/// // Polled while the engine runs: `while let Some(e) = engine.poll_event() { ... }`
/// assert_eq!(on_event(&EngineEvent::Finished), None);
///
/// // As JSON, as the CLI writes it.
/// let json = serde_json::to_string(&EngineEvent::Finished)?;
/// assert_eq!(json, r#"{"event":"finished"}"#);
/// # Ok::<(), serde_json::Error>(())
/// ```
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case", tag = "event")]
pub enum EngineEvent {
    /// A device failed: for the input, the engine flushed, finished the recording and
    /// stopped processing; for the monitor output, monitoring stopped and capture goes
    /// on.
    DeviceError {
        /// Whether it was the input (else the monitor output).
        input: bool,
        /// What the backend said.
        message: String,
    },
    /// Processing failed (the recording could not be written, ...); the engine has
    /// stopped processing.
    Failed {
        /// What went wrong.
        message: String,
    },
    /// The processing thread has flushed and finished (input budget reached, device
    /// error, or stop).
    Finished,
}

/// Everything that shapes a live [`Engine`] besides the host.
///
/// # Examples
///
/// Set what differs from the defaults with struct-update syntax:
///
/// ```
/// use clearvox::engine::{DeviceSelector, EngineConfig};
/// use clearvox::{Config, Preset};
/// use std::time::Duration;
///
/// let config = EngineConfig {
///     // 16 kHz out, for a speech recogniser.
///     pipeline: Config {
///         output_rate: Some(16_000),
///         ..Preset::VoiceChat.config()
///     },
///     input: DeviceSelector::Name("USB".into()),
///     // Hear the result on the default output.
///     output: Some(DeviceSelector::Default),
///     record: Some("session.wav".into()),
///     duration: Some(Duration::from_secs(30)),
///     ..EngineConfig::default()
/// };
/// assert_eq!(config.capture_ring_ms, 500);
/// ```
#[derive(Clone, Debug, PartialEq)]
pub struct EngineConfig {
    /// The enhancement pipeline (the same configuration as offline).
    pub pipeline: Config,
    /// The capture device.
    pub input: DeviceSelector,
    /// The output device: the monitor plays the enhanced signal there (unless
    /// `monitor` is off), the player ([`EngineConfig::playback`]) plays there. `None`:
    /// no monitor, and the player (if any) plays on the default output.
    pub output: Option<DeviceSelector>,
    /// Whether the enhanced signal is played on `output` (when `output` is set).
    pub monitor: bool,
    /// Open the output device for a player ([`Engine::player`]): mono audio from the
    /// caller (a conversation backend's answer), mixed with the monitor. What the
    /// output plays is the echo canceller's render signal.
    pub playback: bool,
    /// The player's queue, ms of audio at the device rate.
    pub player_ring_ms: u32,
    /// Capture rate; `None` takes the device's default.
    pub input_rate: Option<u32>,
    /// Capture channels; `None` takes the device's default.
    pub input_channels: Option<u16>,
    /// Capture sample format; `None` takes the device's default.
    pub input_format: Option<DeviceFormat>,
    /// Requested callback length in ms (a request: any callback size is handled).
    pub buffer_ms: Option<f64>,
    /// Capture ring capacity, ms of audio.
    pub capture_ring_ms: u32,
    /// Monitor ring capacity, ms.
    pub monitor_ring_ms: u32,
    /// Audio the monitor ring collects before playback starts, ms.
    pub monitor_cushion_ms: u32,
    /// Record the enhanced signal here (not latency-compensated: what a listener hears).
    pub record: Option<PathBuf>,
    /// Sample format of the recording; `None` follows the capture format.
    pub record_format: Option<OutputFormat>,
    /// Stop processing after exactly this much captured audio (rounded to whole input
    /// frames) and flush the tail.
    pub duration: Option<std::time::Duration>,
}

impl Default for EngineConfig {
    fn default() -> Self {
        Self {
            pipeline: Config::default(),
            input: DeviceSelector::Default,
            output: None,
            monitor: true,
            playback: false,
            player_ring_ms: 20_000,
            input_rate: None,
            input_channels: None,
            input_format: None,
            buffer_ms: None,
            capture_ring_ms: 500,
            monitor_ring_ms: 500,
            monitor_cushion_ms: 20,
            record: None,
            record_format: None,
            duration: None,
        }
    }
}

/// What a running engine opened.
///
/// # Examples
///
/// ```no_run
/// use clearvox::engine::{Engine, EngineConfig};
///
/// let mut engine = Engine::new(EngineConfig::default())?;
/// engine.start()?;
/// let info = engine.stream_info().expect("the engine runs");
/// println!(
///     "capturing from {} at {} Hz, {} ch {:?}; {} ms of algorithmic latency",
///     info.input_device,
///     info.input_rate,
///     info.input_channels,
///     info.input_format,
///     info.algorithmic_latency * 1000 / info.output_rate as usize
/// );
/// # Ok::<(), clearvox::engine::EngineError>(())
/// ```
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct StreamInfo {
    /// Capture device name.
    pub input_device: String,
    /// Capture rate, Hz.
    pub input_rate: u32,
    /// Capture channels.
    pub input_channels: u16,
    /// Capture sample format.
    pub input_format: DeviceFormat,
    /// Frames per callback the backend reports, when it does.
    pub input_buffer_frames: Option<u32>,
    /// Rate of the enhanced signal (frames, recording), Hz.
    pub output_rate: u32,
    /// Algorithmic latency of the pipeline, samples at `output_rate`.
    pub algorithmic_latency: usize,
    /// Output device name (monitor and player), when one is open.
    pub monitor_device: Option<String>,
    /// Output device rate, Hz (also the render signal's rate).
    pub monitor_rate: Option<u32>,
    /// Output device channels (also the render signal's).
    pub monitor_channels: Option<u16>,
    /// Whether the enhanced signal is played on the output device.
    pub monitoring: bool,
    /// Whether the output device plays a player's audio ([`Engine::player`]).
    pub playback: bool,
    /// Monitor frames per callback, when the backend reports it.
    pub monitor_buffer_frames: Option<u32>,
    /// Capture ring capacity, frames.
    pub ring_capacity: usize,
}

/// What [`Engine::stop`] returns.
///
/// # Examples
///
/// Record ten seconds, then report as JSON:
///
/// ```no_run
/// use clearvox::engine::{Engine, EngineConfig};
/// use std::time::Duration;
///
/// let mut engine = Engine::new(EngineConfig {
///     record: Some("take.wav".into()),
///     duration: Some(Duration::from_secs(10)),
///     ..EngineConfig::default()
/// })?;
/// engine.start()?;
/// while !engine.is_finished() {
///     std::thread::sleep(Duration::from_millis(100));
/// }
/// let report = engine.stop()?;
/// assert_eq!(report.stats.overruns, 0, "the processing kept up");
/// println!("{}", serde_json::to_string_pretty(&report)?);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct EngineReport {
    /// What was opened.
    pub stream: StreamInfo,
    /// Final statistics.
    pub stats: EngineStats,
}

struct Running {
    input: cpal::Stream,
    output: Option<cpal::Stream>,
    thread: JoinHandle<Result<(), EngineError>>,
    control: Arc<Control>,
    shared: Arc<Shared>,
    info: StreamInfo,
    player: Option<EnginePlayer>,
}

/// The live engine. See the [module documentation](self).
///
/// # Examples
///
/// Capture from the default microphone for three seconds and take the enhanced frames
/// on this thread:
///
/// ```no_run
/// use clearvox::dsp::vad::VadEventKind;
/// use clearvox::engine::{Engine, EngineConfig};
/// use std::time::{Duration, Instant};
///
/// let mut engine = Engine::new(EngineConfig::default())?;
/// let frames = engine.frame_channel(64);
/// engine.start()?;
///
/// let until = Instant::now() + Duration::from_secs(3);
/// while Instant::now() < until {
///     let Some(frame) = frames.recv_timeout(Duration::from_millis(100)) else {
///         continue;
///     };
///     // ... frame.samples: 10 ms of enhanced mono audio at frame.rate ...
///     for event in &frame.events {
///         if event.kind == VadEventKind::SpeechStart {
///             println!("speech from sample {}", event.position);
///         }
///     }
///     while let Some(event) = engine.poll_event() {
///         println!("{event:?}");
///     }
/// }
///
/// let report = engine.stop()?;
/// println!("{} frames, {} overruns", report.stats.frames_processed, report.stats.overruns);
/// # Ok::<(), clearvox::engine::EngineError>(())
/// ```
pub struct Engine {
    host: cpal::Host,
    config: EngineConfig,
    sink: Option<Box<dyn FrameSink>>,
    events: Option<Receiver<EngineEvent>>,
    running: Option<Running>,
    last: Option<(StreamInfo, Arc<Shared>)>,
    tap: Option<(ringbuf::HeapProd<f32>, Arc<std::sync::atomic::AtomicU64>)>,
}

impl std::fmt::Debug for Engine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Engine")
            .field("host", &self.host.id().name())
            .field("config", &self.config)
            .field("running", &self.is_running())
            .field("stream", &self.stream_info())
            .finish_non_exhaustive()
    }
}

impl Engine {
    /// An engine on the platform's default audio host. Opens nothing yet.
    pub fn new(config: EngineConfig) -> Result<Self, EngineError> {
        Self::with_host(cpal::default_host(), config)
    }

    /// An engine on the given host (another backend, or a test double).
    pub fn with_host(host: cpal::Host, config: EngineConfig) -> Result<Self, EngineError> {
        config.pipeline.validate()?;
        Ok(Self {
            host,
            config,
            sink: None,
            events: None,
            running: None,
            last: None,
            tap: None,
        })
    }

    /// The configuration.
    pub fn config(&self) -> &EngineConfig {
        &self.config
    }

    /// Hands every enhanced 10 ms frame (with its VAD events) to `sink`, on the
    /// processing thread, during the next session. The session finishes and drops the
    /// sink when it ends: set one again before a later `start`.
    pub fn set_frame_sink(&mut self, sink: Box<dyn FrameSink>) {
        self.sink = Some(sink);
    }

    /// Delivers the next session's frames into a bounded channel instead (frames are
    /// dropped and counted when the receiver falls `capacity` frames behind). The
    /// receiver reports the end once the session has stopped.
    pub fn frame_channel(&mut self, capacity: usize) -> FrameReceiver {
        let (tx, rx) = frame_channel(capacity);
        self.sink = Some(Box::new(tx));
        rx
    }

    /// The player of the running session: mono audio from this (or any) thread,
    /// resampled to the output device's rate and mixed with the monitor; what it plays
    /// is also the echo canceller's render signal. Needs [`EngineConfig::playback`];
    /// call it after [`Engine::start`], once per session (the device's rate is known
    /// then). After [`Engine::stop`] the player accepts nothing.
    ///
    /// # Examples
    ///
    /// ```no_run
    /// use clearvox::engine::{Engine, EngineConfig};
    /// use clearvox::pipeline::ResponsePlayer;
    ///
    /// let mut engine = Engine::new(EngineConfig { playback: true, ..EngineConfig::default() })?;
    /// engine.start()?;
    /// let mut player = engine.player()?;
    /// // A backend's answer: 24 kHz mono, in pieces as they arrive.
    /// let answer = vec![0.0f32; 2_400];
    /// player.play(&answer, 24_000);
    /// player.finish(); // the answer is complete: play its last milliseconds too
    /// // The user talks over it (barge-in): silence within one output callback.
    /// player.cancel();
    /// assert!(!player.is_playing());
    /// # Ok::<(), clearvox::engine::EngineError>(())
    /// ```
    pub fn player(&mut self) -> Result<EnginePlayer, EngineError> {
        let running = self.running.as_mut().ok_or(EngineError::NotRunning)?;
        if !running.info.playback {
            return Err(EngineError::NoPlayback);
        }
        running.player.take().ok_or(EngineError::PlayerTaken)
    }

    /// A copy of what the output device plays during the next session, exactly as the
    /// echo canceller's render input gets it (see [`RenderTap`]); `capacity` samples
    /// (interleaved) are kept until read. Call it before [`Engine::start`]; a session
    /// without an output device leaves the tap empty.
    pub fn render_tap(&mut self, capacity: usize) -> RenderTap {
        let (tx, rx) = HeapRb::<f32>::new(capacity.max(1)).split();
        let dropped = Arc::new(std::sync::atomic::AtomicU64::new(0));
        self.tap = Some((tx, dropped.clone()));
        RenderTap { ring: rx, dropped }
    }

    /// Whether capture is running.
    pub fn is_running(&self) -> bool {
        self.running.is_some()
    }

    /// Whether the processing thread has finished (input budget used up, or a device
    /// error); `stop` then only releases the devices.
    pub fn is_finished(&self) -> bool {
        self.running
            .as_ref()
            .is_some_and(|r| r.control.finished.load(Acquire))
    }

    /// The next event, if any.
    pub fn poll_event(&self) -> Option<EngineEvent> {
        self.events.as_ref().and_then(|r| r.try_recv().ok())
    }

    /// What the running (or last) session opened.
    pub fn stream_info(&self) -> Option<StreamInfo> {
        match (&self.running, &self.last) {
            (Some(r), _) => Some(r.info.clone()),
            (None, Some((info, _))) => Some(info.clone()),
            _ => None,
        }
    }

    /// Statistics of the running (or last) session.
    pub fn stats(&self) -> EngineStats {
        match (&self.running, &self.last) {
            (Some(r), _) => snapshot(&r.shared, &r.info),
            (None, Some((info, shared))) => snapshot(shared, info),
            _ => EngineStats::default(),
        }
    }

    /// Opens the devices and starts capture, processing and playback.
    pub fn start(&mut self) -> Result<(), EngineError> {
        if self.running.is_some() {
            return Err(EngineError::AlreadyRunning);
        }
        let cfg = &self.config;
        let input_device = select_device(&self.host, &cfg.input, true)?;
        let input_name = input_device.to_string();
        let (input_config, input_format) = choose_config(
            &input_device,
            true,
            StreamRequest {
                rate: cfg.input_rate,
                channels: cfg.input_channels,
                format: cfg.input_format,
                buffer_ms: cfg.buffer_ms,
            },
        )?;
        let rate = input_config.sample_rate;
        let channels = input_config.channels as usize;

        // The callback reduces to mono; the pipeline takes one channel.
        let downmix = Downmixer::new(channels, cfg.pipeline.channel).map_err(crate::Error::from)?;
        let pipeline_config = Config {
            channel: ChannelMode::Downmix,
            ..cfg.pipeline.clone()
        };
        let mut pipeline = Pipeline::new(&pipeline_config, rate, 1)?;
        let output_rate = pipeline.output_rate();
        let algorithmic_latency = pipeline.latency();

        let shared = Arc::new(Shared::new());
        let control = Arc::new(Control::default());
        let ring_capacity =
            (rate as usize * cfg.capture_ring_ms as usize / 1000).max(2 * SCRATCH_FRAMES);
        let (producer, consumer) = HeapRb::<f32>::new(ring_capacity).split();

        // The output (monitor and player): chosen before anything starts, so a bad device
        // fails early.
        let monitoring = cfg.output.is_some() && cfg.monitor;
        let mut monitor_parts = None;
        if monitoring || cfg.playback {
            let sel = cfg.output.clone().unwrap_or_default();
            let device = select_device(&self.host, &sel, false)?;
            let (config, format) = choose_config(
                &device,
                false,
                StreamRequest {
                    buffer_ms: cfg.buffer_ms,
                    ..StreamRequest::default()
                },
            )?;
            monitor_parts = Some((device, config, format));
        }

        let recorder = match &cfg.record {
            None => None,
            Some(path) => {
                let format = cfg
                    .record_format
                    .unwrap_or_else(|| OutputFormat::for_input(input_format.wav_format()));
                Some(WavFileWriter::create(path, output_rate, 1, format)?)
            }
        };

        let (events_tx, events_rx) = channel();
        let mut monitor_feed = None;
        let mut output_stream = None;
        let mut monitor_info = (None, None, None);
        let mut output_channels = None;
        let mut render_rx = None;
        let mut player = None;
        let mut mprod = None;
        if let Some((device, config, format)) = monitor_parts {
            let mrate = config.sample_rate;
            let mch = config.channels as usize;
            let mut parts = OutputParts {
                monitor: None,
                player: None,
                render: {
                    // The render signal: what the device plays, for the echo canceller.
                    pipeline.set_render_format(mrate, mch)?;
                    let ms = cfg.capture_ring_ms.max(100) as usize;
                    let (tx, rx) = render_ring((mrate as usize * mch * ms / 1000).max(8192));
                    render_rx = Some(rx);
                    tx
                },
                tap: self.tap.take(),
            };
            if monitoring {
                let capacity = (mrate as usize * cfg.monitor_ring_ms as usize / 1000).max(4096);
                let (tx, rx) = HeapRb::<f32>::new(capacity).split();
                parts.monitor = Some(rx);
                mprod = Some(tx);
            }
            if cfg.playback {
                let capacity = (mrate as usize * cfg.player_ring_ms as usize / 1000).max(4096);
                let (tx, rx) = HeapRb::<f32>::new(capacity).split();
                parts.player = Some(PlayerSource::new(rx, shared.clone()));
                player = Some(EnginePlayer::new(
                    tx,
                    mrate,
                    cfg.pipeline.resampler,
                    shared.clone(),
                ));
            }
            output_channels = Some(config.channels);
            let cushion = mrate as usize * cfg.monitor_cushion_ms as usize / 1000;
            let mut monitor = Monitor::new(parts, mch, cushion, shared.clone());
            let err_shared = shared.clone();
            let name = device.to_string();
            let stream = device
                .build_output_stream_raw(
                    config,
                    format.to_cpal(),
                    move |data: &mut cpal::Data, _: &cpal::OutputCallbackInfo| monitor.on_raw(data),
                    move |e: cpal::Error| report_device_error(&err_shared, 2, e),
                    None,
                )
                .map_err(|e| EngineError::from_cpal(&name, e))?;
            monitor_info = (Some(name), Some(mrate), stream.buffer_size().ok());
            if let Some(ring) = mprod {
                monitor_feed = Some(MonitorFeed {
                    ring,
                    resampler: if mrate == output_rate {
                        None
                    } else {
                        Some(StreamResampler::new(
                            output_rate,
                            mrate,
                            cfg.pipeline.resampler,
                        )?)
                    },
                });
            }
            output_stream = Some(stream);
        }

        let mut capture = Capture::new(producer, downmix, shared.clone());
        let err_shared = shared.clone();
        let input_stream = input_device
            .build_input_stream_raw(
                input_config,
                input_format.to_cpal(),
                move |data: &cpal::Data, _: &cpal::InputCallbackInfo| capture.on_raw(data),
                move |e: cpal::Error| report_device_error(&err_shared, 1, e),
                None,
            )
            .map_err(|e| EngineError::from_cpal(&input_name, e))?;

        // The monitor's cushion: one input callback (the enhanced signal arrives in such
        // bursts) plus two output callbacks.
        if let (Some(mrate), Some(out_frames)) = (monitor_info.1, monitor_info.2) {
            let in_frames = input_stream.buffer_size().unwrap_or(0) as u64;
            let cushion = in_frames * mrate as u64 / rate as u64 + 2 * out_frames as u64;
            shared
                .monitor_cushion
                .store(cushion, std::sync::atomic::Ordering::Relaxed);
        }
        let info = StreamInfo {
            input_device: input_name.clone(),
            input_rate: rate,
            input_channels: channels as u16,
            input_format,
            input_buffer_frames: input_stream.buffer_size().ok(),
            output_rate,
            algorithmic_latency,
            monitor_device: monitor_info.0,
            monitor_rate: monitor_info.1,
            monitor_channels: output_channels,
            monitoring: monitoring && output_channels.is_some(),
            playback: player.is_some(),
            monitor_buffer_frames: monitor_info.2,
            ring_capacity,
        };

        let processing = Processing {
            ring: consumer,
            pipeline,
            chunk: (rate as usize / 100).max(1),
            framer: Framer::new(output_rate),
            sink: self.sink.take(),
            recorder,
            monitor: monitor_feed,
            shared: shared.clone(),
            control: control.clone(),
            events: events_tx,
            max_input_frames: cfg
                .duration
                .map(|d| ((d.as_nanos() * rate as u128 + 500_000_000) / 1_000_000_000) as u64),
            render: render_rx,
            echo: cfg.pipeline.echo.enabled,
        };
        let thread = std::thread::Builder::new()
            .name("clearvox-processing".into())
            .spawn(move || processing.run())
            .map_err(|e| EngineError::Thread(e.to_string()))?;

        let started = (|| {
            if let Some(s) = &output_stream {
                s.play()
                    .map_err(|e| EngineError::from_cpal("monitor output", e))?;
            }
            input_stream
                .play()
                .map_err(|e| EngineError::from_cpal(&input_name, e))
        })();
        self.events = Some(events_rx);
        self.running = Some(Running {
            input: input_stream,
            output: output_stream,
            thread,
            control,
            shared,
            info,
            player,
        });
        if let Err(e) = started {
            let _ = self.stop();
            return Err(e);
        }
        Ok(())
    }

    /// Stops capture (no callback runs after this returns), processes what was
    /// captured, flushes the pipeline's tail to the sink and the recording, finalises
    /// the recording, and releases the devices.
    pub fn stop(&mut self) -> Result<EngineReport, EngineError> {
        let running = self.running.take().ok_or(EngineError::NotRunning)?;
        let Running {
            input,
            output,
            thread,
            control,
            shared,
            info,
            player: _,
        } = running;
        let _ = input.pause();
        // Dropping the stream joins the backend's callback thread.
        drop(input);
        control.stop.store(true, Release);
        let result = thread
            .join()
            .map_err(|_| EngineError::Thread("the processing thread panicked".into()))
            .and_then(|r| r);
        if let Some(o) = output {
            let _ = o.pause();
            drop(o);
        }
        shared.player_closed.store(true, Release);
        let stats = snapshot(&shared, &info);
        self.last = Some((info.clone(), shared));
        result.map(|()| EngineReport {
            stream: info,
            stats,
        })
    }
}

impl Drop for Engine {
    fn drop(&mut self) {
        if self.running.is_some() {
            let _ = self.stop();
        }
    }
}

/// The error callback of a stream (`which`: 1 input, 2 output). It runs on the
/// backend's thread, possibly thousands of times in a burst (the ALSA pulse plugin
/// reports a spurious I/O error per period when playback starts beside a capture), so it
/// only counts: errors after which the stream goes on (xruns, backend hiccups) are
/// tallied; those that end the stream (the device is gone, the server is gone, the
/// stream must be rebuilt) are flagged for the processing thread, with their message.
fn report_device_error(shared: &Shared, which: u32, e: cpal::Error) {
    use cpal::ErrorKind as K;
    use std::sync::atomic::Ordering::Relaxed;
    match e.kind() {
        // A rerouted default device keeps running: not an error at all.
        K::DeviceChanged => {}
        K::DeviceNotAvailable | K::HostUnavailable | K::StreamInvalidated => {
            let _ = shared.device_error_message.set(e.to_string());
            if which == 1 {
                let _ = shared.device_error.compare_exchange(0, 1, Release, Relaxed);
            } else {
                shared.monitor_lost.store(true, Release);
            }
        }
        _ => {
            shared.stream_errors.fetch_add(1, Relaxed);
        }
    }
}

fn snapshot(shared: &Shared, info: &StreamInfo) -> EngineStats {
    let mut s = EngineStats::from_shared(shared);
    s.ring_capacity = info.ring_capacity as u64;
    let ms = |frames: f64, rate: u32| frames * 1000.0 / rate as f64;
    s.algorithmic_latency_ms = ms(info.algorithmic_latency as f64, info.output_rate);
    let mut latency = s.algorithmic_latency_ms
        + ms(
            info.input_buffer_frames.unwrap_or(0) as f64,
            info.input_rate,
        )
        + ms(s.ring_fill as f64, info.input_rate);
    if let (true, Some(mrate)) = (info.monitoring, info.monitor_rate) {
        let fill = shared
            .monitor_fill
            .load(std::sync::atomic::Ordering::Relaxed);
        latency +=
            ms(fill as f64, mrate) + ms(info.monitor_buffer_frames.unwrap_or(0) as f64, mrate);
    }
    s.latency_ms = latency;
    s
}

// The engine is built on one thread and may be moved to another (an app's audio
// controller); the frame sink runs on the processing thread.
const _: () = {
    const fn assert_send<T: Send>() {}
    assert_send::<Engine>();
    assert_send::<EngineConfig>();
    assert_send::<EngineStats>();
    assert_send::<Box<dyn FrameSink>>();
    // The player goes to the stream client's thread; the tap to a reader's.
    assert_send::<EnginePlayer>();
    assert_send::<RenderTap>();
};
