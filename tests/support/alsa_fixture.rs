//! A real ALSA device for tests on a machine without a sound card.
//!
//! [`AlsaFixture`] writes an ALSA configuration in a fresh temporary folder whose
//! `default` PCM is the ALSA `file` plugin: capture delivers the bytes of a file the test
//! gives ([`RawAudio`]), and what is played lands in files the test reads back
//! ([`AlsaFixture::playback_raw_s16`], [`AlsaFixture::playback_raw_f32`]). The plugin's
//! slave sets the pace:
//!
//! - [`AlsaFixture::paced`]: a PulseAudio daemon of the fixture's own (unprivileged, in
//!   the temporary folder, a native-protocol unix socket with anonymous access, a null
//!   sink and a null source at 48 kHz mono s16le) behind the ALSA `pulse` plugin: capture
//!   and playback run at the pace of real time, as on a sound card.
//! - [`AlsaFixture::unpaced`]: the ALSA `null` PCM as slave, no daemon: the same bytes
//!   arrive two to five thousand times faster than real time.
//!
//! The code under test reaches the device as cpal's default host, default input and
//! default output device (the ALSA PCM `default`). Point it at the fixture with the
//! environment of [`AlsaFixture::env`] for a child process (`Command::envs`), or with
//! [`AlsaFixture::apply_to_current_process`] for cpal in the test's own process.
//!
//! ```ignore
//! use support::alsa_fixture::{AlsaFixture, RawAudio};
//!
//! let speech: Vec<i16> = /* 48 kHz mono */;
//! let fx = AlsaFixture::paced(&RawAudio::s16(&speech, 1));
//! let out = std::process::Command::new(env!("CARGO_BIN_EXE_clearvox"))
//!     .args(["live", /* ... */])
//!     .envs(fx.env())
//!     .output()
//!     .expect("clearvox runs");
//! let played: Vec<i16> = fx.playback_raw_s16();
//! ```
//!
//! `tests/engine/alsa_fixture_selftest.rs` checks every statement below that carries a
//! number; `cargo test --test engine -- --ignored --nocapture alsa_fixture_selftest::report`
//! prints what cpal sees.
//!
//! # The configuration
//!
//! `ALSA_CONFIG_PATH` names the fixture's `asound.conf` **alone**, not after the system's
//! `/usr/share/alsa/alsa.conf`: with the system's configuration, the hook that
//! libasound2-plugins installs (`/etc/alsa/conf.d/99-pulse.conf`) replaces `pcm.!default`
//! by a plain `pulse` PCM whenever it finds a PulseAudio server: it does as soon as
//! `PULSE_SERVER` is set (measured), and would on a desktop where PulseAudio or PipeWire
//! answers at the usual place. Capture then silently delivers the null source's silence
//! instead of the file. The fixture's configuration:
//!
//! ```text
//! defaults.pcm.minperiodtime 5000          # as the system's alsa.conf: 5 ms periods at least
//! pcm.clearvox_pulse { type pulse; server "unix:<dir>/pulse.sock" }    # paced only
//! ctl.!default       { type pulse; server "unix:<dir>/pulse.sock" }    # paced only
//! pcm.clearvox_capture  { type file; slave.pcm SLAVE; infile "<dir>/capture-in.raw";
//!                         file "/dev/null"; format "raw" }
//! pcm.clearvox_playback { type file; slave.pcm SLAVE; file "<dir>/playback-out.raw";
//!                         format "raw"; truncate false }
//! pcm.!default { type asym; capture.pcm "clearvox_capture"; playback.pcm "clearvox_playback";
//!                hint { show on; description "clearvox test device (RealTime)" } }
//! ```
//!
//! with SLAVE = `"clearvox_pulse"` (paced) or `{ type null }` (unpaced). Two `file` PCMs
//! and not one, because the `file` plugin also writes *what capture delivers* into its
//! `file`: with one plugin for both directions a capture stream and a playback stream
//! would write the same file. The capture side's copy goes to `/dev/null` (unpaced it
//! would grow by hundreds of MB/s). `truncate false` makes each playback stream write a
//! file of its own ([`AlsaFixture::playback_files`]) instead of truncating the last one.
//! The only device cpal lists is `default` (description "clearvox test device (RealTime)"
//! or "(Unpaced)").
//!
//! The daemon's script (`pa.pa`):
//!
//! ```text
//! load-module module-null-sink sink_name=vsink rate=48000 channels=1 format=s16le
//! load-module module-null-source source_name=vsource rate=48000 channels=1 format=s16le max_latency_msec=20
//! load-module module-loopback source=vsource sink=vsink latency_msec=20 ...
//! load-module module-native-protocol-unix auth-anonymous=1 socket=<dir>/pulse.sock
//! suspend-sink vsink 1
//! suspend-sink vsink 0
//! set-default-sink vsink
//! set-default-source vsource
//! ```
//!
//! Capture reads the null source, not the sink's monitor: a null sink with nothing
//! playing renders in blocks of 2 s, so the first callback of a capture from its monitor
//! (and the start of a playback) came 0 to 2 s late, at random. The null source's
//! `max_latency_msec` bounds that at 20 ms; the silent loopback keeps the sink rendering
//! in short blocks, and the suspend/resume pair ends the 2 s block it started with. The
//! daemon then uses about 1 % of a core while idle.
//!
//! # Capture
//!
//! - The plugin reads `capture-in.raw` as raw bytes **in whatever sample format and
//!   channel count the stream was opened with**; nothing converts. [`RawAudio`] records a
//!   format and a rate only to tell the test what to open. Open the input stream
//!   explicitly with the [`RawAudio`]'s format and channels (cpal's default configuration
//!   for this device is stereo f32 48 kHz); paced capture runs at the stream's rate.
//! - Capture starts at the file's first byte and delivers the file in order, bit for bit
//!   (i16 mono 48 kHz, i16 stereo 44.1 kHz, f32 mono 48 kHz: all exact), paced at 1.00 to
//!   1.03 × real time with the first callback 7 to 50 ms after `play()`.
//! - **After the end of the file capture goes on**, and what comes is not the file: the
//!   plugin overwrites what the slave delivered with what it could read. Paced, the slave
//!   is the null source, so the period that straddles the end is completed with zeros and
//!   zeros follow. Unpaced, the `null` slave leaves the reader's buffer as it was: with
//!   cpal, every callback after the end repeats the one that straddled it (the file's
//!   last frames, then the rest of the period before). **Readers must stop after the
//!   file's length** ([`AlsaFixture::capture_frames`]).
//! - Every open of the capture PCM starts again at the file's first byte.
//!
//! # Callback sizes (frames per cpal callback)
//!
//! | request | paced (pulse) | unpaced (null) |
//! |---|---|---|
//! | `BufferSize::Default` | 4096 bytes: 2048 i16 mono, 1024 i16 stereo or f32 mono, 512 f32 stereo | 240 at 48 kHz, 220 at 44.1 kHz (the 5 ms minimum period) |
//! | `BufferSize::Fixed(n)` | 2n/3, rounded down: 320 → 213, 441 → 294, **480 → 320**, 960 → 640 | n |
//!
//! cpal asks for a buffer of 2n frames and periods of n; the pulse plugin cuts the buffer
//! in three periods. So 320-frame callbacks come from `Fixed(480)` on the paced fixture
//! and from `Fixed(320)` on the unpaced one. The configuration cannot set them: neither
//! the `file` nor the `pulse` PCM, nor a `slave { }` block, accepts `period_size`
//! (alsa-lib rejects it: "Unknown field period_size").
//!
//! # Playback
//!
//! An output stream on the same `default` device works while capture runs, in any format
//! the stream is opened with (i16/f32, mono/stereo tested). The file holds exactly what
//! the callbacks produced, from the first sample (no leading silence: the plugin records
//! what the application writes, before PulseAudio). Paced, cpal fills the three periods
//! of the buffer at once, then takes one every period (1 s of audio is handed over in
//! 0.98 s). A stream's file is complete once the stream is dropped.
//!
//! **Known noise**: right after a paced playback stream starts, the ALSA pulse plugin may
//! answer `snd_pcm_avail_delay` with EIO while PulseAudio has no timing information yet
//! (alsa-plugins issue 65): cpal's worker then calls the error callback in a tight loop,
//! hundreds to a few thousand times within the first ~5 ms, and the stream goes on
//! normally (on time, every sample in the file). A playback stream started while a capture
//! stream runs got such a burst in 16 runs out of 17; a playback stream alone on a fresh
//! daemon in about one run in five; capture streams never. The same happens on users'
//! machines that route ALSA to
//! PulseAudio, so the engine must treat stream errors as events to count, not as fatal,
//! and keep its error callback cheap. [`is_pulse_startup_error`] recognises the message.
//! A playback stream with a small buffer (20 ms: three 320-frame periods) may also get
//! an xrun in mid-stream when the daemon, which runs without real-time priority here,
//! is descheduled on a loaded two-core machine (seen once in 20 runs with the other
//! core busy); cpal recovers and the stream goes on.
//!
//! # Processes, threads and the process-wide ALSA configuration
//!
//! alsa-lib parses the configuration once per process, from `ALSA_CONFIG_PATH`, and the
//! `default` device of a process is one fixture at a time:
//!
//! - **Child processes** (the `clearvox` binary, `arecord`, the test binary run again):
//!   each gets its own environment from [`AlsaFixture::env`], and any number of fixtures
//!   run at once, each with its own daemon, folder and socket (tested: two paced and one
//!   unpaced fixture, three children at once, each got its own file exactly, the paced
//!   ones in real time). This is the way for tests that run in parallel, as cargo's test
//!   threads do.
//! - **In-process** cpal: [`AlsaFixture::apply_to_current_process`] sets
//!   `ALSA_CONFIG_PATH` and holds a process-wide lock until its guard is dropped, so the
//!   tests of one binary that use it run one after the other under the parallel test
//!   runner. One fixture after another in one process works, paced or not, even while a
//!   cpal `Host` lives through all of them: alsa-lib checks the configuration files
//!   against what it parsed at each PCM open and hint query, and re-reads them when they
//!   changed, so the next stream and the next device list follow the fixture applied at
//!   that moment. Drop every stream before the guard: an open stream keeps using the
//!   previous fixture's files and daemon.
//!
//! # One real-time test at a time
//!
//! Every fixture holds a [`RealTimeSlot`]: an exclusive `flock(2)` on a lock file in
//! the temporary directory, so fixtures of parallel test threads,
//! of test binaries run at once and of other checkouts on the machine wait for each
//! other. A paced test states its load (idle, or one core busy with a [`CpuBurner`] in
//! its slot) and then asserts the engine's promises exactly; without the slot, cargo's
//! test threads ran up to six paced engines, daemons and an unpaced fixture running flat
//! out on two cores at once, and a test failed for its neighbours' sake. Several
//! fixtures at once, on purpose, share one slot ([`AlsaFixture::paced_in`]).
//!
//! # The daemon's lifetime
//!
//! The daemon starts in 15 to 50 ms (spawn to accepting connections) and stops in about
//! 3 ms. `pulseaudio --daemonize=yes` would re-parent it to PID 1, which on the build
//! machine reaps orphans only after about a second: a stopped daemon stays a zombie that
//! `pgrep pulseaudio` lists, and no one can wait for it. So the daemon runs in the
//! foreground under a small `sh` watcher that is this process's child: the watcher waits
//! for the daemon, and stops it (SIGTERM) when its standard input closes. Dropping the
//! fixture closes that pipe and waits until the watcher has exited, after reaping the
//! daemon. The pipe also closes when the test process dies any other way (abort, SIGKILL,
//! a timeout; tested with SIGKILL), so no daemon outlives the process that started it;
//! only the temporary folder (`clearvox-alsa-*` in the temporary directory) stays behind
//! then. If the watcher does not exit within [`STOP_TIMEOUT`], the daemon is killed by the
//! PID of its pid file. Drop runs on unwinding, so a failing test stops its daemon too.
//!
//! A missing `pulseaudio` or ALSA pulse plugin, a daemon that exits at start, or one that
//! does not accept connections within [`START_TIMEOUT`] fails [`AlsaFixture::paced`] at
//! once with the daemon's log. `CLEARVOX_PULSE_DEBUG=1` makes the daemon log at debug
//! level (in `pulse.log` of the fixture's folder, [`AlsaFixture::daemon_log`]).
//!
//! Packages (Debian): `pulseaudio pulseaudio-utils libasound2-plugins`; `alsa-utils` for
//! `arecord`/`aplay` by hand.
use std::ffi::OsString;
use std::fs;
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

// The slot is shared with the tests of the scripted device
// (`tests/engine/scripted_device.rs`); tests print measurements with `note`.
pub use super::realtime_slot::{note, RealTimeSlot};

/// How long the daemon may take to accept connections before [`AlsaFixture::paced`] gives
/// up (it takes 15 to 50 ms on the build machine). The environment variable
/// `CLEARVOX_PULSE_START_TIMEOUT_MS` overrides it.
pub const START_TIMEOUT: Duration = Duration::from_secs(10);

fn start_timeout() -> Duration {
    std::env::var("CLEARVOX_PULSE_START_TIMEOUT_MS")
        .ok()
        .and_then(|v| v.parse().ok())
        .map(Duration::from_millis)
        .unwrap_or(START_TIMEOUT)
}

/// How long the daemon may take to exit after it is told to.
pub const STOP_TIMEOUT: Duration = Duration::from_secs(5);

/// The rate of the paced fixture's PulseAudio null sink and source (both mono s16le).
pub const SINK_RATE: u32 = 48_000;

/// The null source's maximum latency: how late at most the first captured period comes.
pub const SOURCE_MAX_LATENCY_MS: u32 = 20;

/// Latency of the silent loopback that keeps the null sink rendering in short blocks.
pub const SINK_KEEPALIVE_LATENCY_MS: u32 = 20;

/// Name prefix of the fixtures' temporary folders.
const DIR_PREFIX: &str = "clearvox-alsa-";

/// Sample format of a [`RawAudio`]: little-endian, which is what cpal's `I16` and `F32`
/// streams read on a little-endian machine (ALSA `S16_LE` and `FLOAT_LE`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RawFormat {
    /// Signed 16-bit little-endian (cpal `SampleFormat::I16`).
    S16Le,
    /// 32-bit float little-endian (cpal `SampleFormat::F32`).
    F32Le,
}

impl RawFormat {
    /// Bytes per sample.
    pub fn bytes(self) -> usize {
        match self {
            RawFormat::S16Le => 2,
            RawFormat::F32Le => 4,
        }
    }
}

/// The audio that capture will deliver: raw interleaved samples, their format, channel
/// count and (informational) rate.
///
/// The `file` plugin does not read any of this: it hands the bytes to whatever stream is
/// opened. The format and channels say how to open the input stream for the bytes to
/// mean these samples; the rate says at which pace a paced fixture delivers them if the
/// stream is opened at that rate.
#[derive(Debug, Clone, PartialEq)]
pub struct RawAudio {
    bytes: Vec<u8>,
    format: RawFormat,
    channels: u16,
    rate: u32,
}

impl RawAudio {
    /// Interleaved 16-bit samples, `channels` per frame, at 48 kHz (see [`Self::at_rate`]).
    pub fn s16(samples_interleaved: &[i16], channels: u16) -> Self {
        Self::check_channels(samples_interleaved.len(), channels);
        RawAudio {
            bytes: samples_interleaved
                .iter()
                .flat_map(|s| s.to_le_bytes())
                .collect(),
            format: RawFormat::S16Le,
            channels,
            rate: 48_000,
        }
    }

    /// Interleaved 32-bit float samples (±1.0 full scale), `channels` per frame, at 48 kHz.
    pub fn f32(samples_interleaved: &[f32], channels: u16) -> Self {
        Self::check_channels(samples_interleaved.len(), channels);
        RawAudio {
            bytes: samples_interleaved
                .iter()
                .flat_map(|s| s.to_le_bytes())
                .collect(),
            format: RawFormat::F32Le,
            channels,
            rate: 48_000,
        }
    }

    fn check_channels(samples: usize, channels: u16) {
        assert!(channels > 0, "RawAudio needs at least one channel");
        assert!(
            samples.is_multiple_of(channels as usize),
            "RawAudio: {samples} samples are not a whole number of {channels}-channel frames"
        );
    }

    /// The same samples, labelled with another rate (nothing is resampled).
    pub fn at_rate(mut self, rate: u32) -> Self {
        self.rate = rate;
        self
    }

    /// The raw bytes, as capture delivers them.
    pub fn bytes(&self) -> &[u8] {
        &self.bytes
    }

    /// Sample format.
    pub fn format(&self) -> RawFormat {
        self.format
    }

    /// Channels per frame.
    pub fn channels(&self) -> u16 {
        self.channels
    }

    /// The rate the samples are meant for (informational).
    pub fn rate(&self) -> u32 {
        self.rate
    }

    /// Number of frames.
    pub fn frames(&self) -> usize {
        self.bytes.len() / (self.format.bytes() * self.channels as usize)
    }

    /// Number of samples (frames × channels).
    pub fn samples(&self) -> usize {
        self.bytes.len() / self.format.bytes()
    }

    /// Play time at [`Self::rate`].
    pub fn duration(&self) -> Duration {
        Duration::from_secs_f64(self.frames() as f64 / self.rate as f64)
    }

    /// The samples as i16 (panics if the format is not [`RawFormat::S16Le`]).
    pub fn to_s16(&self) -> Vec<i16> {
        assert_eq!(
            self.format,
            RawFormat::S16Le,
            "RawAudio holds {:?}",
            self.format
        );
        s16_from_le(&self.bytes)
    }

    /// The samples as f32 (panics if the format is not [`RawFormat::F32Le`]).
    pub fn to_f32(&self) -> Vec<f32> {
        assert_eq!(
            self.format,
            RawFormat::F32Le,
            "RawAudio holds {:?}",
            self.format
        );
        f32_from_le(&self.bytes)
    }
}

/// Little-endian bytes as i16 samples (a trailing odd byte is ignored).
pub fn s16_from_le(bytes: &[u8]) -> Vec<i16> {
    bytes
        .chunks_exact(2)
        .map(|b| i16::from_le_bytes([b[0], b[1]]))
        .collect()
}

/// Little-endian bytes as f32 samples (trailing bytes short of a sample are ignored).
pub fn f32_from_le(bytes: &[u8]) -> Vec<f32> {
    bytes
        .chunks_exact(4)
        .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
        .collect()
}

/// What paces the fixture's device.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Pacing {
    /// Real time, through a PulseAudio null sink.
    RealTime,
    /// As fast as the reader reads, through the ALSA `null` PCM.
    Unpaced,
}

/// A real ALSA `default` device whose capture plays a file and whose playback is
/// recorded in a file; see the module documentation.
///
/// Dropping it stops its daemon (and waits until the daemon has exited) and removes its
/// folder.
#[derive(Debug)]
pub struct AlsaFixture {
    // Declared before `dir`: the daemon stops before its folder goes.
    daemon: Option<PulseDaemon>,
    dir: tempfile::TempDir,
    pacing: Pacing,
    capture: RawAudio,
    // Declared last: the machine is handed on only once the daemon has stopped.
    slot: Arc<RealTimeSlot>,
}

impl AlsaFixture {
    /// A fixture paced in real time by a PulseAudio daemon of its own, in a
    /// [`RealTimeSlot`] of its own (so it waits while another test's fixture lives).
    ///
    /// Panics, with the daemon's log, if `pulseaudio` or the ALSA pulse plugin is not
    /// installed or the daemon does not accept connections within [`START_TIMEOUT`].
    pub fn paced(capture: &RawAudio) -> Self {
        Self::paced_in(&RealTimeSlot::acquire(), capture)
    }

    /// A paced fixture in a slot the test already holds: for tests that run several
    /// fixtures at once on purpose.
    pub fn paced_in(slot: &Arc<RealTimeSlot>, capture: &RawAudio) -> Self {
        let dir = new_dir();
        let daemon = PulseDaemon::start(dir.path());
        let fx = AlsaFixture {
            daemon: Some(daemon),
            dir,
            pacing: Pacing::RealTime,
            capture: capture.clone(),
            slot: Arc::clone(slot),
        };
        fx.write_files();
        fx
    }

    /// A fixture without a daemon whose device runs as fast as it is read, in a
    /// [`RealTimeSlot`] of its own: it keeps a core busy, which would be load that a
    /// paced test running beside it did not ask for.
    pub fn unpaced(capture: &RawAudio) -> Self {
        Self::unpaced_in(&RealTimeSlot::acquire(), capture)
    }

    /// An unpaced fixture in a slot the test already holds.
    pub fn unpaced_in(slot: &Arc<RealTimeSlot>, capture: &RawAudio) -> Self {
        let fx = AlsaFixture {
            daemon: None,
            dir: new_dir(),
            pacing: Pacing::Unpaced,
            capture: capture.clone(),
            slot: Arc::clone(slot),
        };
        fx.write_files();
        fx
    }

    fn write_files(&self) {
        write_file(&self.capture_path(), self.capture.bytes());
        let mut conf = String::from(
            "# The whole ALSA configuration of a clearvox test fixture (tests/support/alsa_fixture.rs).\n\
             # The shortest default period of the system's alsa.conf (5 ms).\n\
             defaults.pcm.minperiodtime 5000\n",
        );
        let slave = match self.pacing {
            Pacing::RealTime => {
                let server = format!("unix:{}", self.socket_path().display());
                conf.push_str(&format!(
                    "pcm.clearvox_pulse {{\n    type pulse\n    server \"{server}\"\n}}\n\
                     ctl.!default {{\n    type pulse\n    server \"{server}\"\n}}\n"
                ));
                "\"clearvox_pulse\""
            }
            Pacing::Unpaced => "{ type null }",
        };
        conf.push_str(&format!(
            "pcm.clearvox_capture {{\n    type file\n    slave.pcm {slave}\n    \
             infile \"{}\"\n    file \"/dev/null\"\n    format \"raw\"\n}}\n\
             pcm.clearvox_playback {{\n    type file\n    slave.pcm {slave}\n    \
             file \"{}\"\n    format \"raw\"\n    truncate false\n}}\n\
             pcm.!default {{\n    type asym\n    capture.pcm \"clearvox_capture\"\n    \
             playback.pcm \"clearvox_playback\"\n    \
             hint {{\n        show on\n        description \"clearvox test device ({:?})\"\n    }}\n}}\n",
            self.capture_path().display(),
            self.playback_path().display(),
            self.pacing,
        ));
        write_file(&self.config_path(), conf.as_bytes());
    }

    /// The real-time slot the fixture holds (for a [`CpuBurner`] that loads the machine
    /// during this fixture's test).
    pub fn slot(&self) -> &Arc<RealTimeSlot> {
        &self.slot
    }

    /// The fixture's folder.
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// Paced or not.
    pub fn pacing(&self) -> Pacing {
        self.pacing
    }

    /// The fixture's `asound.conf`.
    pub fn config_path(&self) -> PathBuf {
        self.dir().join("asound.conf")
    }

    /// The file capture delivers.
    pub fn capture_path(&self) -> PathBuf {
        self.dir().join("capture-in.raw")
    }

    /// The file playback writes.
    pub fn playback_path(&self) -> PathBuf {
        self.dir().join("playback-out.raw")
    }

    /// The daemon's socket (paced fixtures only).
    pub fn socket_path(&self) -> PathBuf {
        self.dir().join("pulse.sock")
    }

    /// The daemon's log (paced fixtures only).
    pub fn daemon_log_path(&self) -> PathBuf {
        self.dir().join("pulse.log")
    }

    /// The daemon's log so far ("" for an unpaced fixture).
    pub fn daemon_log(&self) -> String {
        fs::read_to_string(self.daemon_log_path()).unwrap_or_default()
    }

    /// The daemon's process id (paced fixtures only).
    pub fn daemon_pid(&self) -> Option<u32> {
        self.daemon.as_ref().map(|d| d.pid)
    }

    /// How long the daemon took from spawn to accepting connections.
    pub fn daemon_startup(&self) -> Option<Duration> {
        self.daemon.as_ref().map(|d| d.startup)
    }

    /// What capture delivers.
    pub fn capture(&self) -> &RawAudio {
        &self.capture
    }

    /// Frames of the capture file: read no more than this many (see the module docs).
    pub fn capture_frames(&self) -> usize {
        self.capture.frames()
    }

    /// `ALSA_CONFIG_PATH`'s value: the fixture's configuration alone (see the module
    /// documentation for why not after the system's `alsa.conf`).
    pub fn alsa_config_path(&self) -> String {
        self.config_path().display().to_string()
    }

    /// The environment that points a child process's ALSA default device at this
    /// fixture, for `Command::envs`: `ALSA_CONFIG_PATH`, `HOME`, `XDG_RUNTIME_DIR` and
    /// `XDG_CONFIG_HOME` in the fixture's folder, and for a paced fixture `PULSE_SERVER`
    /// (so PulseAudio clients such as `pactl` find the daemon) and `PULSE_CLIENTCONFIG`
    /// (a client configuration that never spawns a daemon of its own).
    pub fn env(&self) -> Vec<(String, String)> {
        let d = self.dir().display().to_string();
        let mut v = vec![
            ("ALSA_CONFIG_PATH".to_string(), self.alsa_config_path()),
            ("HOME".to_string(), d.clone()),
            ("XDG_RUNTIME_DIR".to_string(), d.clone()),
            ("XDG_CONFIG_HOME".to_string(), format!("{d}/.config")),
        ];
        v.extend(self.pulse_client_env());
        v
    }

    fn pulse_client_env(&self) -> Vec<(String, String)> {
        match self.pacing {
            Pacing::RealTime => vec![
                (
                    "PULSE_SERVER".to_string(),
                    format!("unix:{}", self.socket_path().display()),
                ),
                (
                    "PULSE_CLIENTCONFIG".to_string(),
                    self.dir().join("client.conf").display().to_string(),
                ),
            ],
            Pacing::Unpaced => Vec::new(),
        }
    }

    /// Points this process's ALSA default device at the fixture until the returned
    /// guard is dropped, for cpal used in the test's own process.
    ///
    /// Sets `ALSA_CONFIG_PATH` alone (the configuration names the daemon's socket, so no
    /// PulseAudio variable is needed) and restores its previous value on drop. The guard
    /// holds a process-wide lock: the in-process ALSA tests of one test binary wait here
    /// for each other, whatever the test runner's threads. Drop every cpal stream before
    /// the guard.
    pub fn apply_to_current_process(&self) -> CurrentProcessGuard<'_> {
        let lock = PROCESS_ALSA
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        let key = "ALSA_CONFIG_PATH";
        let saved = vec![(key.to_string(), std::env::var_os(key))];
        std::env::set_var(key, self.alsa_config_path());
        CurrentProcessGuard {
            saved,
            _lock: lock,
            _fixture: self,
        }
    }

    /// The files playback wrote so far, one per opened playback stream, in the order
    /// the streams were opened: [`Self::playback_path`], then the same name with the
    /// suffixes `.0001`, `.0002`, ... (the `file` plugin's numbering when it must not
    /// overwrite). A stream that was opened but never wrote leaves an empty file or none.
    pub fn playback_files(&self) -> Vec<PathBuf> {
        let base = self.playback_path();
        let prefix = format!(
            "{}.",
            base.file_name()
                .and_then(|n| n.to_str())
                .expect("the playback file has a UTF-8 name")
        );
        let mut numbered: Vec<(u32, PathBuf)> = fs::read_dir(self.dir())
            .unwrap_or_else(|e| panic!("listing {}: {e}", self.dir().display()))
            .flatten()
            .filter_map(|e| {
                let name = e.file_name().into_string().ok()?;
                let n = name.strip_prefix(&prefix)?.parse().ok()?;
                Some((n, e.path()))
            })
            .collect();
        numbered.sort();
        let mut files: Vec<PathBuf> = Vec::new();
        if base.exists() {
            files.push(base);
        }
        files.extend(numbered.into_iter().map(|(_, p)| p));
        files
    }

    /// The raw bytes each playback stream played so far, in the order of
    /// [`Self::playback_files`].
    pub fn playback_streams_bytes(&self) -> Vec<Vec<u8>> {
        self.playback_files()
            .iter()
            .map(|p| fs::read(p).unwrap_or_else(|e| panic!("reading {}: {e}", p.display())))
            .collect()
    }

    /// All raw bytes played so far, the streams one after the other. Complete for a
    /// stream only once it is dropped (the plugin writes in blocks of a buffer's size).
    pub fn playback_bytes(&self) -> Vec<u8> {
        self.playback_streams_bytes().concat()
    }

    /// What was played so far, as interleaved i16 (for output streams opened as I16).
    pub fn playback_raw_s16(&self) -> Vec<i16> {
        s16_from_le(&self.playback_bytes())
    }

    /// What was played so far, as interleaved f32 (for output streams opened as F32).
    pub fn playback_raw_f32(&self) -> Vec<f32> {
        f32_from_le(&self.playback_bytes())
    }
}

/// Serialises in-process use of the ALSA configuration (see
/// [`AlsaFixture::apply_to_current_process`]).
static PROCESS_ALSA: Mutex<()> = Mutex::new(());

/// While alive, this process's ALSA default device is the fixture's; see
/// [`AlsaFixture::apply_to_current_process`].
#[must_use = "the process uses the fixture only while the guard lives"]
pub struct CurrentProcessGuard<'a> {
    saved: Vec<(String, Option<OsString>)>,
    _lock: MutexGuard<'static, ()>,
    _fixture: &'a AlsaFixture,
}

impl Drop for CurrentProcessGuard<'_> {
    fn drop(&mut self) {
        for (k, v) in &self.saved {
            match v {
                Some(v) => std::env::set_var(k, v),
                None => std::env::remove_var(k),
            }
        }
    }
}

fn new_dir() -> tempfile::TempDir {
    // A unix socket path is limited to 107 bytes: keep the folder short even if TMPDIR
    // is long.
    let base = std::env::temp_dir();
    let base = if base.as_os_str().len() > 60 {
        PathBuf::from("/tmp")
    } else {
        base
    };
    tempfile::Builder::new()
        .prefix(DIR_PREFIX)
        .tempdir_in(&base)
        .unwrap_or_else(|e| panic!("creating a temporary folder in {}: {e}", base.display()))
}

fn write_file(path: &Path, bytes: &[u8]) {
    fs::write(path, bytes).unwrap_or_else(|e| panic!("writing {}: {e}", path.display()));
}

/// Where a program is on `PATH`.
fn which(program: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|d| d.join(program))
        .find(|p| p.is_file())
}

/// Whether alsa-lib's PulseAudio PCM plugin (package libasound2-plugins) is installed.
fn alsa_pulse_plugin_installed() -> bool {
    let name = "libasound_module_pcm_pulse.so";
    let mut dirs = vec![PathBuf::from("/usr/lib/alsa-lib")];
    if let Ok(entries) = fs::read_dir("/usr/lib") {
        dirs.extend(entries.flatten().map(|e| e.path().join("alsa-lib")));
    }
    dirs.iter().any(|d| d.join(name).is_file())
}

const INSTALL_HINT: &str =
    "install them with: apt-get install pulseaudio pulseaudio-utils libasound2-plugins";

/// The watcher: runs the daemon given as arguments in the foreground and waits for it;
/// stops it when standard input closes (a background job's standard input is /dev/null
/// in a non-interactive shell, hence the copy in fd 3).
const WATCHER: &str = r#"
exec 3<&0
"$@" </dev/null 3<&- &
daemon=$!
( read -r _ <&3; kill -TERM "$daemon" 2>/dev/null ) &
watch=$!
exec 3<&-
wait "$daemon"
status=$?
kill "$watch" 2>/dev/null
exit "$status"
"#;

/// A PulseAudio daemon run by the watcher.
#[derive(Debug)]
struct PulseDaemon {
    watcher: Child,
    /// Closing it stops the daemon.
    stop: Option<ChildStdin>,
    pid: u32,
    pid_file: PathBuf,
    log: PathBuf,
    startup: Duration,
}

impl PulseDaemon {
    fn start(dir: &Path) -> Self {
        let Some(pulseaudio) = which("pulseaudio") else {
            panic!("AlsaFixture::paced: `pulseaudio` is not on PATH; {INSTALL_HINT}");
        };
        assert!(
            alsa_pulse_plugin_installed(),
            "AlsaFixture::paced: the ALSA pulse plugin (libasound_module_pcm_pulse.so) is \
             missing; {INSTALL_HINT}"
        );
        let socket = dir.join("pulse.sock");
        let script = dir.join("pa.pa");
        write_file(
            &script,
            format!(
                "load-module module-null-sink sink_name=vsink rate={SINK_RATE} channels=1 \
                 format=s16le\n\
                 load-module module-null-source source_name=vsource rate={SINK_RATE} \
                 channels=1 format=s16le max_latency_msec={SOURCE_MAX_LATENCY_MS}\n\
                 load-module module-loopback source=vsource sink=vsink \
                 latency_msec={SINK_KEEPALIVE_LATENCY_MS} source_dont_move=true sink_dont_move=true\n\
                 load-module module-native-protocol-unix auth-anonymous=1 socket={}\n\
                 suspend-sink vsink 1\n\
                 suspend-sink vsink 0\n\
                 set-default-sink vsink\n\
                 set-default-source vsource\n",
                socket.display()
            )
            .as_bytes(),
        );
        // Clients of this daemon never start a daemon of their own.
        write_file(&dir.join("client.conf"), b"autospawn = no\n");
        let log = dir.join("pulse.log");
        let log_file =
            fs::File::create(&log).unwrap_or_else(|e| panic!("creating {}: {e}", log.display()));
        let log_file2 = log_file
            .try_clone()
            .unwrap_or_else(|e| panic!("duplicating the handle of {}: {e}", log.display()));
        let started = Instant::now();
        let mut watcher = Command::new("sh")
            .arg("-c")
            .arg(WATCHER)
            .arg("clearvox-pulse-watcher")
            .arg(&pulseaudio)
            .args([
                "-n",
                "-F",
                &script.display().to_string(),
                "--daemonize=no",
                "--use-pid-file=yes",
                "--exit-idle-time=-1",
                "--system=no",
                "--realtime=no",
                "--high-priority=no",
                "--log-target=stderr",
            ])
            .args(std::env::var_os("CLEARVOX_PULSE_DEBUG").map(|_| "--log-level=debug"))
            .env("HOME", dir)
            .env("XDG_RUNTIME_DIR", dir)
            .env("XDG_CONFIG_HOME", dir.join(".config"))
            .env_remove("PULSE_SERVER")
            .env_remove("PULSE_RUNTIME_PATH")
            .env_remove("PULSE_STATE_PATH")
            .env_remove("DISPLAY")
            .stdin(Stdio::piped())
            .stdout(log_file)
            .stderr(log_file2)
            .spawn()
            .unwrap_or_else(|e| panic!("AlsaFixture::paced: cannot run sh: {e}"));
        let stop = watcher.stdin.take();
        let pid_file = dir.join("pulse").join("pid");
        let timeout = start_timeout();
        let mut daemon = PulseDaemon {
            watcher,
            stop,
            pid: 0,
            pid_file,
            log,
            startup: Duration::ZERO,
        };
        loop {
            match daemon.watcher.try_wait() {
                Ok(Some(status)) => panic!(
                    "AlsaFixture::paced: pulseaudio exited ({status}) before accepting \
                     connections; its log ({}):\n{}",
                    daemon.log.display(),
                    daemon.log_text()
                ),
                Ok(None) => {}
                Err(e) => panic!("AlsaFixture::paced: waiting for the daemon's watcher: {e}"),
            }
            let pid = fs::read_to_string(&daemon.pid_file)
                .ok()
                .and_then(|s| s.trim().parse::<u32>().ok());
            if let (Some(pid), Ok(conn)) = (pid, UnixStream::connect(&socket)) {
                drop(conn);
                daemon.pid = pid;
                daemon.startup = started.elapsed();
                return daemon;
            }
            if started.elapsed() > timeout {
                // Drop stops and reaps whatever did start.
                panic!(
                    "AlsaFixture::paced: pulseaudio does not accept connections on {} after \
                     {timeout:?}; its log ({}):\n{}",
                    socket.display(),
                    daemon.log.display(),
                    daemon.log_text()
                );
            }
            std::thread::sleep(Duration::from_millis(5));
        }
    }

    fn log_text(&self) -> String {
        fs::read_to_string(&self.log).unwrap_or_else(|e| format!("(unreadable: {e})"))
    }

    /// Stops the daemon and waits until it has exited. Never panics (it runs in Drop,
    /// possibly while unwinding); says on stderr what went wrong.
    fn stop(&mut self) {
        drop(self.stop.take());
        let t0 = Instant::now();
        loop {
            match self.watcher.try_wait() {
                Ok(Some(_)) => return,
                Ok(None) if t0.elapsed() < STOP_TIMEOUT => {
                    std::thread::sleep(Duration::from_millis(2))
                }
                Ok(None) => break,
                Err(e) => {
                    eprintln!("AlsaFixture: waiting for the daemon's watcher: {e}");
                    break;
                }
            }
        }
        eprintln!(
            "AlsaFixture: pulseaudio (pid {}) did not stop within {STOP_TIMEOUT:?}; killing it",
            self.pid
        );
        if self.pid > 0 {
            // SAFETY: kill(2) with a pid read from the daemon's own pid file.
            unsafe {
                libc::kill(self.pid as libc::pid_t, libc::SIGKILL);
            }
        }
        let _ = self.watcher.kill();
        let _ = self.watcher.wait();
    }
}

impl Drop for PulseDaemon {
    fn drop(&mut self) {
        self.stop();
    }
}

/// Whether a cpal stream error is the burst of `snd_pcm_avail_delay` EIO errors that
/// the ALSA pulse plugin may report in a paced fixture's first milliseconds of playback
/// (see the module documentation): harmless, the stream goes on.
pub fn is_pulse_startup_error(message: &str) -> bool {
    message.contains("snd_pcm_avail_delay") && message.contains("I/O error (5)")
}

/// Whether a process runs (exists and is not a zombie).
pub fn process_running(pid: u32) -> bool {
    match fs::read_to_string(format!("/proc/{pid}/stat")) {
        // "pid (comm) S ...": the state follows the last ')'.
        Ok(stat) => stat
            .rsplit_once(')')
            .map(|(_, rest)| !rest.trim_start().starts_with('Z'))
            .unwrap_or(false),
        Err(_) => false,
    }
}

/// Busy loops on some threads until dropped, to load the cores that the code under test
/// does not use.
#[derive(Debug)]
pub struct CpuBurner {
    stop: Arc<AtomicBool>,
    threads: Vec<JoinHandle<u64>>,
    _slot: Arc<RealTimeSlot>,
}

impl CpuBurner {
    /// Starts `threads` busy threads in a [`RealTimeSlot`] of their own (the load they
    /// make is no other test's business).
    pub fn start(threads: usize) -> Self {
        Self::start_in(&RealTimeSlot::acquire(), threads)
    }

    /// Starts `threads` busy threads in a slot the test already holds (the load a paced
    /// test states: [`AlsaFixture::slot`]).
    pub fn start_in(slot: &Arc<RealTimeSlot>, threads: usize) -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let threads = (0..threads)
            .map(|i| {
                let stop = Arc::clone(&stop);
                std::thread::Builder::new()
                    .name(format!("cpu-burner-{i}"))
                    .spawn(move || {
                        let mut x = 0x9e37_79b9_7f4a_7c15u64 ^ i as u64;
                        let mut rounds = 0u64;
                        while !stop.load(Ordering::Relaxed) {
                            for _ in 0..10_000 {
                                x ^= x << 13;
                                x ^= x >> 7;
                                x ^= x << 17;
                            }
                            std::hint::black_box(x);
                            rounds += 1;
                        }
                        rounds
                    })
                    .unwrap_or_else(|e| panic!("starting a CPU burner thread: {e}"))
            })
            .collect();
        CpuBurner {
            stop,
            threads,
            _slot: Arc::clone(slot),
        }
    }

    /// Stops the threads; returns how many rounds of 10 000 xorshift steps each did.
    pub fn stop(mut self) -> Vec<u64> {
        self.halt()
    }

    fn halt(&mut self) -> Vec<u64> {
        self.stop.store(true, Ordering::Relaxed);
        self.threads
            .drain(..)
            .map(|t| t.join().unwrap_or(0))
            .collect()
    }
}

impl Drop for CpuBurner {
    fn drop(&mut self) {
        self.halt();
    }
}
