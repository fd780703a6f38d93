//! For the streaming tests (`tests/stream/`, `tests/stream_load.rs`, and `clearvox live
//! --stream` in `tests/engine/stream_live.rs`): the `clearvox` binary as
//! child processes that are killed and reaped when a test fails, the reference receiver
//! (`clearvox serve`), what it wrote, the offline result a stream must equal, and long
//! inputs made of the test data.
//!
//! The comparison every test makes: the stream a backend receives is the pipeline's
//! output at the backend's rate, latency included, so once its first `latency` samples
//! are removed it equals `clearvox enhance --output-rate RATE --format s16` of the same
//! input, sample for sample; `latency` comes from the library (`Pipeline::latency`) and
//! cross-correlation must find the same shift.

use std::io::{BufRead, BufReader, Read};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use clearvox::dsp::convert::f32_to_i16;
use clearvox::dsp::vad::{VadEvent, VadEventKind};
use clearvox::io::read_wav_file;
use clearvox::metrics::estimate_delay;
use clearvox::{Config, Pipeline};
use serde_json::Value;

pub use super::{testdata, F32_48K, F32_48K_FAN, S16_16K, S24_44K_STEREO};

/// Every 16 kHz mono 16-bit mixture.
pub const ALL_16K: [&str; 5] = [
    "noisy/us_deep__cafe__snr0__16k_s16.wav",
    "noisy/us_deep__fan__snr10__16k_s16.wav",
    "noisy/us_deep__hum__snr5__16k_s16.wav",
    "noisy/us_deep__keyboard__snr0__16k_s16.wav",
    "noisy/us_deep__traffic__snr5__16k_s16.wav",
];

/// How long a child process may take before a test gives up on it.
pub const CHILD_TIMEOUT: Duration = Duration::from_secs(120);

/// The `clearvox` binary built for these tests.
pub fn clearvox() -> Command {
    Command::new(super::clearvox_binary())
}

/// The manifest entry of a test data file.
pub fn manifest_item(rel: &str) -> Value {
    let text = std::fs::read_to_string(testdata("manifest.json"))
        .expect("testdata/manifest.json is readable");
    let manifest: Value = serde_json::from_str(&text).expect("the manifest is JSON");
    manifest["items"]
        .as_array()
        .expect("the manifest has an array of items")
        .iter()
        .find(|i| i["noisy"] == rel)
        .unwrap_or_else(|| panic!("{rel} is not in the manifest"))
        .clone()
}

// ---------------------------------------------------------------------------------------
// Child processes.

/// Sends a signal to a process this test started.
pub fn signal(pid: u32, sig: libc::c_int) {
    // SAFETY: kill(2) on the pid of a child process this test spawned and has not reaped.
    let r = unsafe { libc::kill(pid as libc::pid_t, sig) };
    assert_eq!(r, 0, "kill({pid}, {sig}) failed");
}

/// Text a child writes to a pipe, read line by line by a thread as it comes.
pub struct Captured {
    text: Arc<Mutex<String>>,
    reader: Option<JoinHandle<()>>,
}

impl Captured {
    /// Reads `pipe` until its end; every line also goes to `lines`, if given.
    pub fn new(pipe: impl Read + Send + 'static, lines: Option<mpsc::Sender<String>>) -> Self {
        let text = Arc::new(Mutex::new(String::new()));
        let into = text.clone();
        let reader = std::thread::spawn(move || {
            let mut r = BufReader::new(pipe);
            let mut line = String::new();
            loop {
                line.clear();
                match r.read_line(&mut line) {
                    Ok(0) | Err(_) => break,
                    Ok(_) => {
                        into.lock().unwrap().push_str(&line);
                        if let Some(tx) = &lines {
                            let _ = tx.send(line.trim_end().to_string());
                        }
                    }
                }
            }
        });
        Captured {
            text,
            reader: Some(reader),
        }
    }

    /// What came so far.
    pub fn text(&self) -> String {
        self.text.lock().unwrap().clone()
    }

    /// Everything, once the pipe has closed.
    pub fn finish(mut self) -> String {
        if let Some(r) = self.reader.take() {
            let _ = r.join();
        }
        self.text()
    }
}

/// A child process that is killed (SIGKILL) and reaped when dropped, so that a failing
/// test leaves no process behind.
pub struct ChildGuard {
    child: Option<Child>,
    what: String,
}

impl ChildGuard {
    /// Guards `child`.
    pub fn new(child: Child, what: impl Into<String>) -> Self {
        ChildGuard {
            child: Some(child),
            what: what.into(),
        }
    }

    /// The process id.
    pub fn id(&self) -> u32 {
        self.child.as_ref().map_or(0, Child::id)
    }

    /// Mutable access to the child (its pipes).
    pub fn child(&mut self) -> &mut Child {
        self.child.as_mut().expect("the child is still there")
    }

    /// Whether it has exited.
    pub fn has_exited(&mut self) -> bool {
        matches!(self.child().try_wait(), Ok(Some(_)))
    }

    /// Waits for the exit, at most `timeout` (then kills it and panics).
    pub fn wait_timeout(&mut self, timeout: Duration) -> ExitStatus {
        let t0 = Instant::now();
        loop {
            if let Some(status) = self.child().try_wait().unwrap() {
                self.child = None;
                return status;
            }
            if t0.elapsed() > timeout {
                self.kill();
                panic!("{} did not end within {timeout:?}", self.what);
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// SIGKILL, and reap.
    pub fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

impl Drop for ChildGuard {
    fn drop(&mut self) {
        self.kill();
    }
}

// ---------------------------------------------------------------------------------------
// The reference receiver.

/// A running `clearvox serve`.
pub struct Serve {
    guard: ChildGuard,
    /// The address it listens on.
    pub addr: SocketAddr,
    /// `ws://ADDR` or `wss://ADDR`, as it printed.
    pub base_url: String,
    /// Its output folder.
    pub out: PathBuf,
    stderr: Option<Captured>,
    stdout: Option<Captured>,
}

impl Serve {
    /// `clearvox serve --listen 127.0.0.1:0 --out OUT`.
    pub fn start(out: &Path) -> Serve {
        Serve::start_with(out, "127.0.0.1:0", &[])
    }

    /// `clearvox serve --listen LISTEN --out OUT EXTRA...`; waits for its
    /// `listening on URL` line.
    pub fn start_with(out: &Path, listen: &str, extra: &[&str]) -> Serve {
        let mut child = clearvox()
            .args(["serve", "--listen", listen, "--out"])
            .arg(out)
            .args(extra)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("clearvox serve starts");
        let (tx, rx) = mpsc::channel();
        let stderr = Captured::new(child.stderr.take().expect("stderr is piped"), Some(tx));
        let stdout = Captured::new(child.stdout.take().expect("stdout is piped"), None);
        let mut guard = ChildGuard::new(child, format!("clearvox serve --listen {listen}"));
        let deadline = Instant::now() + Duration::from_secs(10);
        let base_url = loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match rx.recv_timeout(left) {
                Ok(line) => {
                    if let Some(url) = line.strip_prefix("listening on ") {
                        break url.trim().to_string();
                    }
                }
                Err(_) => {
                    guard.kill();
                    panic!(
                        "clearvox serve --listen {listen} did not start: {}",
                        stderr.finish()
                    );
                }
            }
        };
        let addr = base_url
            .rsplit("://")
            .next()
            .unwrap()
            .parse()
            .unwrap_or_else(|e| panic!("{base_url}: {e}"));
        Serve {
            guard,
            addr,
            base_url,
            out: out.to_path_buf(),
            stderr: Some(stderr),
            stdout: Some(stdout),
        }
    }

    /// The URL of a stream to this receiver, `ws://127.0.0.1:PORT/`.
    pub fn url(&self) -> String {
        format!("{}/", self.base_url)
    }

    /// The process id.
    pub fn pid(&self) -> u32 {
        self.guard.id()
    }

    /// What it printed on stderr so far.
    pub fn stderr(&self) -> String {
        self.stderr.as_ref().map(Captured::text).unwrap_or_default()
    }

    /// SIGKILL: the process dies with its connections, as in a crash.
    pub fn kill(mut self) {
        self.guard.kill();
    }

    /// Stops it as Ctrl-C does; returns (stdout, stderr).
    pub fn interrupt(mut self) -> (String, String) {
        signal(self.guard.id(), libc::SIGINT);
        let status = self.guard.wait_timeout(Duration::from_secs(15));
        let out = self.stdout.take().map(Captured::finish).unwrap_or_default();
        let err = self.stderr.take().map(Captured::finish).unwrap_or_default();
        assert!(
            status.success(),
            "clearvox serve ended with {status}: {err}"
        );
        (out, err)
    }
}

/// One stream as the receiver wrote it.
#[derive(Debug)]
pub struct Received {
    /// The stream id (file stem).
    pub id: String,
    /// The WAV's rate.
    pub rate: u32,
    /// The WAV's samples.
    pub samples: Vec<i16>,
    /// The JSONL lines after the version line, a client's message (a `client` line) as
    /// the message it holds.
    pub log: Vec<Value>,
}

impl Received {
    /// The lines of one `type`.
    pub fn lines(&self, kind: &str) -> Vec<&Value> {
        self.log.iter().filter(|l| l["type"] == kind).collect()
    }

    /// The gaps, `[from, to)` stream offsets.
    pub fn gaps(&self) -> Vec<(u64, u64)> {
        self.lines("gap")
            .iter()
            .map(|g| {
                let at = |k: &str| g[k].as_u64().unwrap_or_else(|| panic!("gap line {g}"));
                (at("from"), at("to"))
            })
            .collect()
    }

    /// Samples lost in gaps.
    pub fn lost(&self) -> u64 {
        self.gaps().iter().map(|(a, b)| b - a).sum()
    }

    /// The speech events logged (raw with events), in order.
    pub fn speech_events(&self) -> Vec<VadEvent> {
        self.log
            .iter()
            .filter_map(|l| {
                let kind = match l["type"].as_str()? {
                    "speech_started" => VadEventKind::SpeechStart,
                    "speech_stopped" => VadEventKind::SpeechEnd,
                    _ => return None,
                };
                Some(VadEvent {
                    kind,
                    position: l["sample"].as_u64()?,
                })
            })
            .collect()
    }
}

/// A PCM16 mono WAV file, as hound reads it.
pub fn read_wav_i16(path: &Path) -> (u32, Vec<i16>) {
    let mut r = hound::WavReader::open(path)
        .unwrap_or_else(|e| panic!("{} is not a valid WAV: {e}", path.display()));
    let spec = r.spec();
    assert_eq!(
        (spec.channels, spec.bits_per_sample, spec.sample_format),
        (1, 16, hound::SampleFormat::Int),
        "{}",
        path.display()
    );
    (
        spec.sample_rate,
        r.samples::<i16>().map(Result::unwrap).collect(),
    )
}

/// A JSONL file's lines.
pub fn read_jsonl(path: &Path) -> Vec<Value> {
    std::fs::read_to_string(path)
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{l}: {e}")))
        .collect()
}

/// Every stream in a receiver's output folder, by id.
pub fn received_streams(out: &Path) -> Vec<Received> {
    let listing = |e: std::io::Error| -> ! { panic!("listing {}: {e}", out.display()) };
    let mut ids: Vec<String> = std::fs::read_dir(out)
        .unwrap_or_else(|e| listing(e))
        .filter_map(|e| {
            let name = e
                .unwrap_or_else(|e| listing(e))
                .file_name()
                .to_string_lossy()
                .into_owned();
            name.strip_suffix(".jsonl").map(str::to_string)
        })
        .collect();
    ids.sort();
    ids.into_iter()
        .map(|id| {
            let log = read_jsonl(&out.join(format!("{id}.jsonl")))
                .into_iter()
                .filter(|l| l["type"] != "log")
                .map(|l| match l["type"].as_str() {
                    Some("client") => l["message"].clone(),
                    _ => l,
                })
                .collect();
            let (rate, samples) = read_wav_i16(&out.join(format!("{id}.wav")));
            Received {
                id,
                rate,
                samples,
                log,
            }
        })
        .collect()
}

/// The one stream in a receiver's output folder.
pub fn the_stream(out: &Path) -> Received {
    let mut all = received_streams(out);
    assert_eq!(
        all.len(),
        1,
        "one stream expected: {:?}",
        all.iter().map(|s| &s.id).collect::<Vec<_>>()
    );
    all.remove(0)
}

/// Waits until the receiver logged the end of the latest connection of stream `id` (its
/// files are complete then). A connection of a killed receiver never logs its end: only
/// the latest one counts.
pub fn wait_ended(out: &Path, id: &str) {
    let path = out.join(format!("{id}.jsonl"));
    let t0 = Instant::now();
    loop {
        if let Ok(text) = std::fs::read_to_string(&path) {
            let last = text
                .lines()
                .rev()
                .filter_map(|l| serde_json::from_str::<Value>(l).ok())
                .find(|v| v["type"] == "connected" || v["type"] == "disconnected");
            if last.is_some_and(|v| v["type"] == "disconnected") {
                return;
            }
        }
        assert!(
            t0.elapsed() < Duration::from_secs(15),
            "{}: its latest connection never ended",
            path.display()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

// ---------------------------------------------------------------------------------------
// `clearvox stream`.

/// What a finished `clearvox stream` left.
#[derive(Debug)]
pub struct StreamRun {
    pub status: ExitStatus,
    pub stdout: String,
    pub stderr: String,
    pub wall: Duration,
}

impl StreamRun {
    /// The closing statistics (`--json`): the last stderr line that is a `StreamStats`.
    pub fn stats(&self) -> Value {
        self.stderr
            .lines()
            .rev()
            .filter_map(|l| serde_json::from_str::<Value>(l).ok())
            .find(|v| v.get("packets_sent").is_some())
            .unwrap_or_else(|| panic!("no statistics line on stderr:\n{}", self.stderr))
    }

    /// Panics with the output unless the exit was a success.
    pub fn assert_success(&self) -> &Self {
        assert!(
            self.status.success(),
            "clearvox stream failed ({}):\nstdout: {}\nstderr: {}",
            self.status,
            self.stdout,
            self.stderr
        );
        self
    }

    /// stdout's lines, each parsed as JSON.
    pub fn stdout_json(&self) -> Vec<Value> {
        self.stdout
            .lines()
            .map(|l| {
                serde_json::from_str(l)
                    .unwrap_or_else(|e| panic!("stdout line is not JSON ({e}): {l}"))
            })
            .collect()
    }
}

/// A `clearvox stream` running in the background.
pub struct StreamChild {
    guard: ChildGuard,
    stdout: Option<Captured>,
    stderr: Option<Captured>,
    started: Instant,
}

impl StreamChild {
    /// `clearvox stream INPUT --url URL ARGS...` with `env` added to the environment.
    pub fn spawn(input: &Path, url: &str, args: &[&str], env: &[(&str, &str)]) -> StreamChild {
        let mut cmd = clearvox();
        cmd.arg("stream")
            .arg(input)
            .args(["--url", url])
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        for (k, v) in env {
            cmd.env(k, v);
        }
        let started = Instant::now();
        let mut child = cmd.spawn().expect("clearvox stream starts");
        let stdout = Captured::new(child.stdout.take().expect("stdout is piped"), None);
        let stderr = Captured::new(child.stderr.take().expect("stderr is piped"), None);
        StreamChild {
            guard: ChildGuard::new(child, format!("clearvox stream --url {url}")),
            stdout: Some(stdout),
            stderr: Some(stderr),
            started,
        }
    }

    /// The process id.
    pub fn pid(&self) -> u32 {
        self.guard.id()
    }

    /// Whether it has ended.
    pub fn has_exited(&mut self) -> bool {
        self.guard.has_exited()
    }

    /// What it printed on stderr so far.
    pub fn stderr_so_far(&self) -> String {
        self.stderr.as_ref().map(Captured::text).unwrap_or_default()
    }

    /// Waits for the end (at most [`CHILD_TIMEOUT`]).
    pub fn wait(mut self) -> StreamRun {
        let status = self.guard.wait_timeout(CHILD_TIMEOUT);
        let wall = self.started.elapsed();
        StreamRun {
            status,
            stdout: self.stdout.take().unwrap().finish(),
            stderr: self.stderr.take().unwrap().finish(),
            wall,
        }
    }
}

/// Runs `clearvox stream INPUT --url URL ARGS...` to its end.
pub fn stream(input: &Path, url: &str, args: &[&str]) -> StreamRun {
    StreamChild::spawn(input, url, args, &[]).wait()
}

// ---------------------------------------------------------------------------------------
// What a stream must equal.

/// `clearvox enhance INPUT --preset voice-chat --output-rate RATE --format s16`, as
/// PCM16: the stream's preset (`enhance` alone would run max-quality).
pub fn offline(input: &Path, rate: u32, dir: &Path) -> Vec<i16> {
    let output = dir.join(format!(
        "offline-{rate}-{}.wav",
        input.file_stem().unwrap().to_string_lossy()
    ));
    let out = clearvox()
        .args(["enhance", "-q", "--preset", "voice-chat"])
        .arg(input)
        .args(["--output-rate", &rate.to_string(), "--format", "s16", "-o"])
        .arg(&output)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "clearvox enhance failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let (r, samples) = read_wav_i16(&output);
    assert_eq!(r, rate);
    samples
}

/// The library's pipeline with the command line's default settings and its output at
/// `rate`.
pub fn config_at(rate: u32) -> Config {
    Config {
        output_rate: Some(rate),
        ..Config::default()
    }
}

/// What the pipeline makes of a WAV file at output rate `rate`, as a stream: its latency,
/// the whole output (latency and flushed tail included) in PCM16, and its VAD events.
#[derive(Debug)]
pub struct Expected {
    pub latency: usize,
    pub stream: Vec<i16>,
    pub events: Vec<VadEvent>,
}

/// Runs the library's pipeline over `input` in 10 ms chunks, as the file source does.
pub fn expected_stream(input: &Path, rate: u32) -> Expected {
    let audio = read_wav_file(input).unwrap_or_else(|e| panic!("{}: {e}", input.display()));
    let channels = audio.spec.channels as usize;
    let in_rate = audio.spec.sample_rate;
    let mut p =
        Pipeline::new(&config_at(rate), in_rate, channels).expect("the configuration is valid");
    let latency = p.latency();
    let mut out = Vec::new();
    let mut events = Vec::new();
    let chunk = (in_rate as usize / 100) * channels;
    for c in audio.samples.chunks(chunk) {
        p.process(c, &mut out).unwrap();
        while let Some(e) = p.pop_event() {
            events.push(e);
        }
    }
    p.flush(&mut out).unwrap();
    while let Some(e) = p.pop_event() {
        events.push(e);
    }
    Expected {
        latency,
        stream: out.iter().map(|&v| f32_to_i16(v)).collect(),
        events,
    }
}

/// The pipeline's latency for `input` at output rate `rate`, output samples.
pub fn pipeline_latency(input: &Path, rate: u32) -> usize {
    let audio = read_wav_file(input).unwrap_or_else(|e| panic!("{}: {e}", input.display()));
    Pipeline::new(
        &config_at(rate),
        audio.spec.sample_rate,
        audio.spec.channels as usize,
    )
    .unwrap()
    .latency()
}

/// Index of the first sample where `a` and `b` differ (over the shorter), if any.
pub fn first_difference(a: &[i16], b: &[i16]) -> Option<usize> {
    a.iter().zip(b).position(|(x, y)| x != y)
}

fn to_f32(x: &[i16]) -> Vec<f32> {
    x.iter().map(|&v| v as f32 / 32_768.0).collect()
}

/// The received stream equals the offline result once its first `latency` samples are
/// removed, value for value, and cross-correlation finds that same shift.
pub fn assert_equals_offline(received: &[i16], offline: &[i16], latency: usize, what: &str) {
    assert_eq!(
        received.len(),
        offline.len() + latency,
        "{what}: the stream holds the latency, then as many samples as the offline result"
    );
    if let Some(i) = first_difference(&received[latency..], offline) {
        panic!(
            "{what}: the stream differs from the offline result at offline sample {i} \
             ({} received, {} offline)",
            received[latency + i],
            offline[i]
        );
    }
    let max_lag = (2 * latency).max(1_000);
    let found = estimate_delay(&to_f32(offline), &to_f32(received), max_lag);
    assert_eq!(
        found.lag, latency as i64,
        "{what}: cross-correlation finds another shift than the pipeline's latency ({found:?})"
    );
    assert!(found.correlation > 0.99, "{what}: {found:?}");
}

// ---------------------------------------------------------------------------------------
// Inputs.

/// Writes interleaved samples in ±1.0 as a WAV file: 32-bit float, or 16-bit when every
/// sample is exactly a 16-bit value (so the file reads back the same either way).
pub fn write_wav(path: &Path, samples: &[f32], rate: u32, channels: u16) {
    let exact16 = samples
        .iter()
        .all(|&v| (v * 32_768.0).fract() == 0.0 && (-1.0..1.0).contains(&v));
    let spec = hound::WavSpec {
        channels,
        sample_rate: rate,
        bits_per_sample: if exact16 { 16 } else { 32 },
        sample_format: if exact16 {
            hound::SampleFormat::Int
        } else {
            hound::SampleFormat::Float
        },
    };
    let mut w = hound::WavWriter::create(path, spec)
        .unwrap_or_else(|e| panic!("creating {}: {e}", path.display()));
    for &s in samples {
        if exact16 {
            w.write_sample((s * 32_768.0) as i16).unwrap();
        } else {
            w.write_sample(s).unwrap();
        }
    }
    w.finalize().unwrap();
}

/// Test data files of one rate and channel count one after the other, repeated as needed
/// and cut at `seconds`, written to `path`; returns the length in seconds.
pub fn concatenate(files: &[&str], seconds: f64, path: &Path) -> f64 {
    let mut samples = Vec::new();
    let mut format = None;
    for rel in files.iter().cycle() {
        let a = read_wav_file(&testdata(rel)).unwrap_or_else(|e| panic!("{rel}: {e}"));
        let f = (a.spec.sample_rate, a.spec.channels);
        assert!(
            format.is_none_or(|x| x == f),
            "{rel}: another rate or channel count"
        );
        format = Some(f);
        samples.extend_from_slice(&a.samples);
        let frames = samples.len() / f.1 as usize;
        if frames as f64 >= seconds * f.0 as f64 {
            break;
        }
    }
    let (rate, channels) = format.expect("at least one file to concatenate");
    let frames = (seconds * rate as f64).round() as usize;
    samples.truncate(frames * channels as usize);
    write_wav(path, &samples, rate, channels);
    frames as f64 / rate as f64
}

/// A small deterministic random number generator (SplitMix64).
pub struct Rng(u64);

impl Rng {
    /// Seeded.
    pub fn new(seed: u64) -> Self {
        Rng(seed)
    }

    /// The next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// Uniform in `[lo, hi)`.
    pub fn range_f64(&mut self, lo: f64, hi: f64) -> f64 {
        lo + (hi - lo) * (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }

    /// Uniform in `lo..=hi`.
    pub fn range_u64(&mut self, lo: u64, hi: u64) -> u64 {
        lo + self.next_u64() % (hi - lo + 1)
    }
}
