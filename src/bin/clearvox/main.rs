//! The `clearvox` command line: argument parsing, error reporting and dispatch.
//!
//! Every error reaches the user as one line, `error: <message>`, with the causes joined
//! by ": ", and a non-zero exit code; warnings are one line each too. A panic is turned
//! into such a line as well, never a backtrace.

mod enhance;
mod levels;
#[cfg(feature = "device")]
mod live;
mod merge;
mod metrics_cmd;
mod plan;
mod plot;
mod progress;
mod report;
#[cfg(feature = "stream")]
mod serve;
mod settings;
mod shard;
#[cfg(feature = "stream")]
mod stream_cmd;

use std::panic::{self, AssertUnwindSafe};
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, Parser, Subcommand, ValueEnum};

use clearvox::config::{Denoiser, Preset};
use clearvox::dsp::spectral_gate::GateMode;
use clearvox::io::OutputFormat;

/// Exit code of a command-line usage error (clap's convention).
const USAGE_ERROR: u8 = 2;

#[derive(Parser, Debug)]
#[command(
    name = "clearvox",
    version,
    about = "Voice enhancement with spectral gating and RNNoise",
    propagate_version = true
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Enhance WAV files, or folders of WAV files, into mono WAV files.
    Enhance(EnhanceArgs),
    /// Compare an enhanced file with its clean reference (delay, SNR, SI-SDR, segmental
    /// SNR, STOI).
    Metrics(MetricsArgs),
    /// Check that the shards of a batch (`enhance --shard K/N`) enhanced every file
    /// exactly once, from their summaries.
    MergeShards(merge::MergeArgs),
    /// Enhance the microphone live: monitor, record, or both.
    #[cfg(feature = "device")]
    Live(LiveArgs),
    /// List the audio devices with what they support.
    #[cfg(feature = "device")]
    Devices(DevicesArgs),
    /// Stream a WAV file through the pipeline to a conversation backend (WebSocket).
    #[cfg(feature = "stream")]
    Stream(StreamCmdArgs),
    /// Receive streams over WebSocket (raw or OpenAI Realtime, with the resume
    /// extension) into WAV and JSONL files: the reference receiver.
    #[cfg(feature = "stream")]
    Serve(ServeArgs),
}

/// Where and how to stream (shared by `stream` and `live --stream`).
#[cfg(feature = "stream")]
#[derive(Args, Debug, Default)]
pub struct StreamArgs {
    /// Protocol: `raw` PCM16 binary messages, or `openai` Realtime client events.
    #[arg(long, value_name = "raw|openai", value_parser = parse_protocol)]
    pub protocol: Option<clearvox::stream::Protocol>,

    /// Rate sent, Hz [default: raw 16000, openai 24000].
    #[arg(long, value_name = "HZ")]
    pub rate: Option<u32>,

    /// Raw protocol: also send JSON start/stop and speech_started/speech_stopped messages.
    #[arg(long)]
    pub events: bool,

    /// OpenAI protocol: `server` VAD, or `client` (clearvox commits at each speech end).
    #[arg(long, value_name = "server|client", value_parser = parse_turn_detection)]
    pub turn_detection: Option<clearvox::stream::TurnDetection>,

    /// Audio per message, ms [default: 20].
    #[arg(long, value_name = "MS")]
    pub packet_ms: Option<u32>,

    /// Audio kept in memory for resending across reconnects, s [default: 30].
    #[arg(long, value_name = "S")]
    pub buffer_s: Option<f64>,

    /// Do not ask the receiver for the resume extension.
    #[arg(long)]
    pub no_resume: bool,

    /// PEM file of a private CA to trust (besides the system's web roots).
    #[arg(long, value_name = "FILE.pem")]
    pub ca_file: Option<PathBuf>,

    /// Allow ws:// to a non-loopback address: the audio travels unencrypted.
    #[arg(long)]
    pub insecure: bool,

    /// Environment variable holding the bearer token [default: CLEARVOX_TOKEN].
    #[arg(long, value_name = "VAR", default_value = "CLEARVOX_TOKEN")]
    pub token_env: String,

    /// Extra handshake header, `Name: value` (repeatable).
    #[arg(long = "header", value_name = "NAME: VALUE")]
    pub headers: Vec<String>,

    /// Server messages on stdout: `escaped` writes their control characters as escapes
    /// (`\x1b`), `raw` as they came; `auto` escapes when stdout is a terminal.
    #[arg(long, value_enum, value_name = "auto|escaped|raw", default_value_t)]
    pub server_text: ServerText,
}

/// How server text is printed (see [`StreamArgs::server_text`]).
#[cfg(feature = "stream")]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, ValueEnum)]
pub enum ServerText {
    /// Escaped on a terminal, raw otherwise.
    #[default]
    Auto,
    /// Control characters always escaped.
    Escaped,
    /// As the server sent it.
    Raw,
}

/// Arguments of `clearvox stream`.
#[cfg(feature = "stream")]
#[derive(Args, Debug)]
#[command(after_help = "\
The token, if the backend needs one, comes from the environment (CLEARVOX_TOKEN, or the
variable --token-env names), never from the command line, and is never printed. Server
messages are printed to stdout as JSON lines; progress, warnings and the closing
statistics go to stderr (one JSON line with --json).")]
pub struct StreamCmdArgs {
    /// Input WAV file (`-` reads stdin).
    #[arg(value_name = "IN")]
    pub input: PathBuf,

    /// Backend URL: wss://host/path (ws:// to a loopback address).
    #[arg(long, value_name = "URL")]
    pub url: String,

    /// Pace the file like a microphone (10 ms every 10 ms).
    #[arg(long)]
    pub realtime: bool,

    /// Print the closing statistics as one JSON line on stderr.
    #[arg(long)]
    pub json: bool,

    /// Where and how to stream.
    #[command(flatten)]
    pub stream: StreamArgs,

    /// The pipeline's settings.
    #[command(flatten)]
    pub pipeline: PipelineArgs,
}

#[cfg(feature = "stream")]
fn parse_protocol(s: &str) -> Result<clearvox::stream::Protocol, String> {
    s.parse()
}

#[cfg(feature = "stream")]
fn parse_turn_detection(s: &str) -> Result<clearvox::stream::TurnDetection, String> {
    match s {
        "server" => Ok(clearvox::stream::TurnDetection::Server),
        "client" => Ok(clearvox::stream::TurnDetection::Client),
        other => Err(format!(
            "unknown turn detection '{other}': choose server or client"
        )),
    }
}

/// Arguments of `clearvox serve`.
#[cfg(feature = "stream")]
#[derive(Args, Debug)]
#[command(after_help = "\
Each stream is written to OUT/<id>.wav (PCM16 mono, valid at every moment) and
OUT/<id>.jsonl (its events, connections, gaps and protocol errors; never audio nor
header values). The id is the X-Clearvox-Session header, else conn-<unix_ms>-<n>.
A stream named again (after a disconnect or a restart) is resumed from its files, by
the client that created it only: it sent its own resume key (X-Clearvox-Resume-Key) or
was given one, and the receiver keeps its SHA-256 in OUT/<id>.key (all files mode 600).
With --token-env VAR, every client must send the token of $VAR as
Authorization: Bearer (HTTP 401 otherwise); it is required off loopback.
Runs until Ctrl-C; one line per ended connection is printed to stderr.")]
pub struct ServeArgs {
    /// Address to listen on (port 0: any free port; the line printed tells which).
    #[arg(long, value_name = "ADDR:PORT")]
    pub listen: std::net::SocketAddr,

    /// Folder for the received streams (created if missing).
    #[arg(long, value_name = "DIR")]
    pub out: PathBuf,

    /// TLS certificate chain (PEM): serve wss:// (needs --key).
    #[arg(long, value_name = "C.pem", requires = "key")]
    pub cert: Option<PathBuf>,

    /// TLS private key (PEM) of --cert.
    #[arg(long, value_name = "K.pem", requires = "cert")]
    pub key: Option<PathBuf>,

    /// Allow plain ws:// on an address other than loopback (audio in clear text).
    #[arg(long)]
    pub insecure: bool,

    /// Environment variable holding the bearer token every client must send (required
    /// on an address other than loopback; never give a token on the command line).
    #[arg(long, value_name = "VAR")]
    pub token_env: Option<String>,

    /// Most connections served at once (lowered to fit the open-file limit).
    #[arg(long, value_name = "N", default_value_t = 256)]
    pub max_connections: usize,

    /// Largest WebSocket message a client may send, bytes.
    #[arg(long, value_name = "BYTES", default_value_t = 1 << 20)]
    pub max_message_bytes: usize,

    /// Close a connection that sent no message for this long, s (pings do not count).
    #[arg(long, value_name = "S", default_value_t = 60.0)]
    pub idle_timeout: f64,

    /// Longest the TLS and WebSocket handshakes may take together, s.
    #[arg(long, value_name = "S", default_value_t = 10.0)]
    pub handshake_timeout: f64,

    /// OpenAI protocol: answer every response.create with this recording (mono, 24 kHz
    /// PCM16 deltas at twice real time), as a backend's spoken answer.
    #[arg(long, value_name = "FILE.wav")]
    pub respond_with: Option<PathBuf>,
}

/// Arguments of `clearvox live`.
#[cfg(feature = "device")]
#[derive(Args, Debug)]
#[command(after_help = "\
Capture runs from start until --duration of captured audio, Ctrl-C, or a device error;
the pipeline's tail is then flushed into the recording, which is finalised (a valid WAV
even after Ctrl-C). The recording is what a listener hears: it is not
latency-compensated. On a terminal a status line shows the input level, the VAD, the
CPU share of the 10 ms budget, overruns and the estimated latency; otherwise one JSON
line with the statistics is printed at the end.

The voice-chat loop: `--stream URL --protocol openai --play-responses` plays the
backend's spoken answers on the output device and cancels their echo from the
microphone before the audio is sent; with `--turn-detection client` clearvox asks for an
answer at each end of speech, and `--barge-in` stops an answer when the user speaks
over it. Answers are played from memory, never written to disk.")]
pub struct LiveArgs {
    /// Capture device: name (or part of it) or index from `clearvox devices`.
    #[arg(long, value_name = "NAME|INDEX")]
    pub input: Option<String>,

    /// Output device: the monitor's (implies --monitor without --play-responses), and
    /// the backend's answers' with --play-responses [default: the default output].
    #[arg(long, value_name = "NAME|INDEX")]
    pub output: Option<String>,

    /// Play the enhanced signal on the output device.
    #[arg(long)]
    pub monitor: bool,

    /// Capture rate, Hz [default: the device's].
    #[arg(long, value_name = "HZ")]
    pub input_rate: Option<u32>,

    /// Capture channels [default: the device's].
    #[arg(long, value_name = "N")]
    pub input_channels: Option<u16>,

    /// Capture sample format [default: the device's].
    #[arg(long, value_name = "s16|s32|f32|u16")]
    pub input_format: Option<clearvox::engine::DeviceFormat>,

    /// Record the enhanced signal to this WAV file.
    #[arg(long, value_name = "FILE.wav")]
    pub record: Option<PathBuf>,

    /// Recording sample format [default: follows the capture format].
    #[arg(long, value_enum, value_name = "FORMAT")]
    pub format: Option<FormatArg>,

    /// Stop after exactly this much captured audio, seconds.
    #[arg(long, value_name = "SECS")]
    pub duration: Option<f64>,

    /// Ask the device for callbacks of this length, ms (a request; any size works).
    #[arg(long, value_name = "MS")]
    pub buffer_ms: Option<f64>,

    /// Capture ring size, ms of audio [default: 500].
    #[arg(long, value_name = "MS")]
    pub ring_ms: Option<u32>,

    /// Print the final JSON statistics even on a terminal (and no status line).
    #[arg(long)]
    pub json: bool,

    /// Also stream the enhanced audio to this backend (wss://...).
    #[cfg(feature = "stream")]
    #[arg(long, value_name = "URL")]
    pub stream: Option<String>,

    /// Play the backend's spoken answers on the output device (with --stream and
    /// --protocol openai), and cancel their echo from the microphone (the pipeline's
    /// echo canceller is turned on, unless the --config file sets `[echo] enabled`).
    #[cfg(feature = "stream")]
    #[arg(long)]
    pub play_responses: bool,

    /// With --play-responses: speaking over an answer stops it (and cancels the
    /// backend's response).
    #[cfg(feature = "stream")]
    #[arg(long)]
    pub barge_in: bool,

    /// Where and how to stream (with --stream).
    #[cfg(feature = "stream")]
    #[command(flatten)]
    pub stream_args: StreamArgs,

    /// The pipeline's settings.
    #[command(flatten)]
    pub pipeline: PipelineArgs,
}

/// Arguments of `clearvox devices`.
#[cfg(feature = "device")]
#[derive(Args, Debug)]
pub struct DevicesArgs {
    /// Print JSON instead of a list.
    #[arg(long)]
    pub json: bool,
}

/// Arguments of `clearvox enhance`.
#[derive(Args, Debug)]
#[command(after_help = "\
With one input file, OUT is the output file (or an existing folder to write it into);
`-o -` writes the WAV to stdout. With a folder or several inputs, OUT must be an
existing folder: every .wav file below a folder is enhanced into the same relative
path inside OUT. `-` as the input reads one WAV from stdin (sizes may be unknown).
`-o -` streams: its header has the exact sizes when the input is a file that holds
all its header announces, else 0xFFFFFFFF (\"until the end\", as ffmpeg writes it).
Outputs and the report keep the input's read/write permission bits (0600 from a
pipe); neither may be an input, nor the report an output.

Settings apply in order: the preset (--preset, else the `preset` key of the --config
file, else max-quality), then the values in the --config file, then the other flags.")]
pub struct EnhanceArgs {
    /// Input WAV files or folders (searched recursively for .wav files); `-` is stdin.
    #[arg(value_name = "IN", required_unless_present = "print_config")]
    pub inputs: Vec<PathBuf>,

    /// Output file, or folder for a folder or several inputs; `-` is stdout.
    #[arg(
        short,
        long,
        value_name = "OUT",
        required_unless_present = "print_config"
    )]
    pub output: Option<PathBuf>,

    /// The pipeline's settings.
    #[command(flatten)]
    pub pipeline: PipelineArgs,

    /// Output sample format [default: follows the input: 8/16-bit → s16, 24-bit → s24,
    /// 32-bit → f32].
    #[arg(long, value_enum, value_name = "FORMAT")]
    pub format: Option<FormatArg>,

    /// Write a JSON report (per file: rates, duration, speed, latency, speech segments,
    /// noise levels, warnings; the effective configuration; totals).
    #[arg(long, value_name = "FILE.json")]
    pub report: Option<PathBuf>,

    /// What the loudspeaker played while IN was recorded (an assistant's voice, music):
    /// its echo is cancelled from IN. Same clock as IN from sample 0; any rate and
    /// channel count. One input file only.
    #[arg(long, value_name = "FAR.wav")]
    pub echo_ref: Option<PathBuf>,

    /// Enhance only shard K of N of the batch (K from 0 to N-1): each file goes to the
    /// shard its path relative to the folder given hashes to, so that N workers with
    /// K = 0..N-1 cover the batch exactly once. A summary is written (see
    /// --shard-summary); `clearvox merge-shards` checks the N summaries.
    #[arg(long, value_name = "K/N", allow_hyphen_values = true)]
    pub shard: Option<shard::Shard>,

    /// Where --shard writes its summary (JSON) [default: OUT/.clearvox-shard-K-of-N.json].
    #[arg(long, value_name = "FILE.json", requires = "shard")]
    pub shard_summary: Option<PathBuf>,

    /// `--plot` and `--plot-size`.
    #[command(flatten)]
    pub plot: plot::PlotArgs,

    /// Files processed in parallel [default: the number of cores].
    #[arg(short, long, value_name = "N", value_parser = clap::value_parser!(u16).range(1..=1024))]
    pub jobs: Option<u16>,

    /// No progress bar and no closing summary (warnings and errors are still printed).
    #[arg(short, long)]
    pub quiet: bool,

    /// Print the effective configuration as TOML and exit.
    #[arg(long)]
    pub print_config: bool,

    /// Print `PROC_S=<seconds>` (time spent processing the files) to stderr.
    #[arg(long, hide = true)]
    pub timing: bool,
}

/// The pipeline's settings, shared by `enhance` and `live`.
#[derive(Args, Debug)]
pub struct PipelineArgs {
    /// Starting configuration [default: max-quality for `enhance`, voice-chat for
    /// `live`].
    #[arg(long, value_enum, value_name = "PRESET")]
    pub preset: Option<PresetArg>,

    /// Configuration file (TOML: an optional `preset` key and overrides of any field).
    #[arg(long, value_name = "FILE.toml")]
    pub config: Option<PathBuf>,

    /// Mix of the enhanced signal with the dry input: 0 = dry, 1 = fully enhanced.
    #[arg(long, value_name = "0..1")]
    pub strength: Option<f32>,

    /// Never remove more than this many dB in all (the dry input is mixed back in).
    #[arg(long, value_name = "DB")]
    pub atten_limit_db: Option<f32>,

    /// Spectral gate noise estimator.
    #[arg(long, value_enum, value_name = "MODE")]
    pub gate: Option<GateArg>,

    /// Neural denoiser: rnnoise (10 ms, light), deepfilter (DeepFilterNet3: 30 ms,
    /// best quality), or off.
    #[arg(long, value_enum, value_name = "NAME")]
    pub denoiser: Option<DenoiserArg>,

    /// DeepFilterNet export to run instead of the built-in DeepFilterNet3 (a .tar.gz
    /// with config.ini, enc.onnx, erb_dec.onnx and df_dec.onnx).
    #[arg(long, value_name = "FILE.tar.gz")]
    pub model: Option<PathBuf>,

    /// Automatic gain control towards -20 dBFS speech (off in every preset: on short
    /// clips its adaptation costs SI-SDR; the limiter stays on either way).
    #[arg(long, value_enum, value_name = "on|off")]
    pub agc: Option<Switch>,

    /// Noise-only WAV clip to take the gate's noise profile from (implies
    /// `--gate stationary` unless --gate is given).
    #[arg(long, value_name = "FILE.wav")]
    pub noise_profile: Option<PathBuf>,

    /// Output sample rate in Hz [default: the input's].
    #[arg(long, value_name = "HZ")]
    pub output_rate: Option<u32>,
}

/// Arguments of `clearvox metrics`.
#[derive(Args, Debug)]
pub struct MetricsArgs {
    /// The clean reference WAV file.
    #[arg(long, value_name = "CLEAN.wav")]
    pub reference: PathBuf,

    /// The WAV file to score (resampled to the reference's rate if they differ).
    #[arg(long, value_name = "OUT.wav")]
    pub test: PathBuf,

    /// Print the results as JSON instead of a table.
    #[arg(long)]
    pub json: bool,

    /// `--plot` and `--plot-size`.
    #[command(flatten)]
    pub plot: plot::PlotArgs,
}

/// `--preset` values.
#[derive(Clone, Copy, Debug, ValueEnum)]
pub enum PresetArg {
    /// RNNoise and the spectral gate, low latency (the default).
    VoiceChat,
    /// DeepFilterNet3 (30 ms latency), FFT resampling: the best quality.
    MaxQuality,
    /// The spectral gate alone, without a neural denoiser.
    LowCpu,
    /// No processing (the input, mono, resampled if asked).
    Bypass,
}

impl From<PresetArg> for Preset {
    fn from(p: PresetArg) -> Self {
        match p {
            PresetArg::VoiceChat => Preset::VoiceChat,
            PresetArg::MaxQuality => Preset::MaxQuality,
            PresetArg::LowCpu => Preset::LowCpu,
            PresetArg::Bypass => Preset::Bypass,
        }
    }
}

/// `--gate` values.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum GateArg {
    /// A fixed noise profile (from --noise-profile, or learned from non-speech).
    Stationary,
    /// A running noise tracker.
    Nonstationary,
    /// No spectral gate.
    Off,
}

impl From<GateArg> for GateMode {
    fn from(g: GateArg) -> Self {
        match g {
            GateArg::Stationary => GateMode::Stationary,
            GateArg::Nonstationary => GateMode::Nonstationary,
            GateArg::Off => GateMode::Off,
        }
    }
}

/// `--denoiser` values.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum DenoiserArg {
    /// RNNoise (nnnoiseless).
    Rnnoise,
    /// DeepFilterNet3.
    Deepfilter,
    /// No neural denoiser.
    Off,
}

impl From<DenoiserArg> for Denoiser {
    fn from(d: DenoiserArg) -> Self {
        match d {
            DenoiserArg::Rnnoise => Denoiser::Rnnoise,
            DenoiserArg::Deepfilter => Denoiser::DeepFilter,
            DenoiserArg::Off => Denoiser::Off,
        }
    }
}

/// An on/off switch.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum Switch {
    /// Enabled.
    On,
    /// Disabled.
    Off,
}

/// `--format` values.
#[derive(Clone, Copy, Debug, ValueEnum)]
pub enum FormatArg {
    /// 16-bit integer PCM.
    S16,
    /// 24-bit integer PCM.
    S24,
    /// 32-bit IEEE float.
    F32,
}

impl From<FormatArg> for OutputFormat {
    fn from(f: FormatArg) -> Self {
        match f {
            FormatArg::S16 => OutputFormat::S16,
            FormatArg::S24 => OutputFormat::S24,
            FormatArg::F32 => OutputFormat::F32,
        }
    }
}

fn main() -> ExitCode {
    // Panics are reported as one error line by `catch` below, never with the default
    // multi-line message and backtrace hint.
    panic::set_hook(Box::new(|_| {}));
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => return usage_error(&e),
    };
    match catch(|| run(cli)) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {}", one_line(&e));
            ExitCode::FAILURE
        }
    }
}

fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    match cli.command {
        Command::Enhance(args) => enhance::run(&args),
        Command::Metrics(args) => metrics_cmd::run(&args),
        Command::MergeShards(args) => merge::run(&args),
        #[cfg(feature = "device")]
        Command::Live(args) => live::live(&args),
        #[cfg(feature = "device")]
        Command::Devices(args) => live::devices(&args),
        #[cfg(feature = "stream")]
        Command::Stream(args) => stream_cmd::run(&args),
        #[cfg(feature = "stream")]
        Command::Serve(args) => serve::run(&args),
    }
}

/// Runs `f`, turning a panic into an error ("internal error: ...").
pub fn catch<T>(f: impl FnOnce() -> anyhow::Result<T>) -> anyhow::Result<T> {
    match panic::catch_unwind(AssertUnwindSafe(f)) {
        Ok(r) => r,
        Err(payload) => {
            let what = clearvox::error::panic_message(payload.as_ref());
            Err(anyhow::anyhow!("internal error: {what}"))
        }
    }
}

/// An error and its causes as one line: the messages joined by ": ", leaving out a
/// cause whose text the line already holds (many errors repeat their source's text).
pub fn one_line(e: &anyhow::Error) -> String {
    let mut line = String::new();
    for cause in e.chain() {
        let text = flatten(clearvox::io::without_os_error_number(&cause.to_string()));
        if text.is_empty() || line.contains(&text) {
            continue;
        }
        if !line.is_empty() {
            line.push_str(": ");
        }
        line.push_str(&text);
    }
    line
}

/// `e` as an error about `what` (e.g. "noise profile") read from `path`: the path is
/// added unless the message already names it.
pub fn about(what: &str, path: &std::path::Path, e: impl Into<anyhow::Error>) -> anyhow::Error {
    let e = e.into();
    let shown = path.display().to_string();
    if e.to_string().contains(&shown) {
        e.context(what.to_string())
    } else {
        e.context(format!("{what} {shown}"))
    }
}

/// `s` with every run of whitespace that contains a line break made one space.
pub fn flatten(s: &str) -> String {
    if !s.contains(['\n', '\r']) {
        return s.trim().to_string();
    }
    s.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// Prints a clap error: help and version as clap renders them (exit 0), anything else
/// as one `error:` line (exit 2).
fn usage_error(e: &clap::Error) -> ExitCode {
    use clap::error::ErrorKind;
    if matches!(
        e.kind(),
        ErrorKind::DisplayHelp
            | ErrorKind::DisplayVersion
            | ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand
    ) {
        let _ = e.print();
        return if e.kind() == ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand {
            ExitCode::from(USAGE_ERROR)
        } else {
            ExitCode::SUCCESS
        };
    }
    let rendered = e.render().to_string();
    let mut message = String::new();
    for line in rendered.lines() {
        let line = line.trim();
        if line.starts_with("Usage:") || line.starts_with("For more information") {
            break;
        }
        let line = line.strip_prefix("error:").unwrap_or(line).trim();
        if line.is_empty() {
            continue;
        }
        if !message.is_empty() {
            message.push_str(if message.ends_with(':') { " " } else { "; " });
        }
        message.push_str(line);
    }
    eprintln!("error: {message} (see --help)");
    ExitCode::from(USAGE_ERROR)
}
