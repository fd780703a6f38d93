//! A stream's JSONL log: its line schema, the file (created with the stream's first
//! message, bounded in size), and the line reader that replays it.
//!
//! The schema keeps the receiver's records and the client's messages apart by structure:
//! a line's top-level `type` is always the receiver's, and a client's message is only
//! ever the opaque value of a `client` line's `message` key, next to what the receiver
//! made of it (`event`, `sample`, ...). Replay ([`super::replay`]) reads those
//! receiver-written keys and never the message itself.

use std::fs::{File, OpenOptions};
use std::io::{self, BufRead, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

use serde_json::{json, Map, Value};

/// The schema version, told by a log's first line (`{"type":"log","version":2}`). A log
/// without it was written before the schema and is converted when reopened.
pub(crate) const LOG_VERSION: u64 = 2;
/// `type` of the first line of a log.
pub(crate) const VERSION_LINE: &str = "log";
/// `type` of a line holding a client's message.
pub(crate) const CLIENT_LINE: &str = "client";
/// `type` of a line of a log written before the schema, kept as text, never interpreted.
pub(crate) const LEGACY_LINE: &str = "legacy";
/// `type` of the receiver's line about a protocol error (counted as a client line).
pub(crate) const PROTOCOL_ERROR_LINE: &str = "protocol_error";

/// Most bytes a stream's log may reach before the stream takes no more text messages
/// (binary audio and `input_audio_buffer.append` go on).
pub const MAX_LOG_BYTES: u64 = 64 << 20;
/// Most lines about the client's messages (its messages and the protocol errors they
/// caused) a stream's log may hold before the stream takes no more text messages.
pub const MAX_CLIENT_LINES: u64 = 100_000;
/// Longest client message logged as it came, bytes of JSON: a longer one is logged as
/// its length.
pub(crate) const MAX_LOGGED_MESSAGE: usize = 16 << 10;
/// Longest text logged in a receiver's line (a protocol error's message, a reason).
const MAX_LOGGED_TEXT: usize = 1 << 10;
/// Longest line replay reads: the longest line the receiver writes is well under it;
/// a longer one is skipped unread.
pub(crate) const MAX_LINE_BYTES: usize = 32 << 10;

/// A client event the receiver de-duplicates and replays, as named in `event`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub(crate) enum Event {
    /// Raw `start`, at its `sample`.
    Start,
    /// Raw `speech_started`.
    SpeechStarted,
    /// Raw `speech_stopped`.
    SpeechStopped,
    /// Raw `stop`, at its `samples`: the stream is finished.
    Stop,
    /// OpenAI `input_audio_buffer.commit`, at the stream offset it applied at.
    Commit,
    /// OpenAI `input_audio_buffer.clear`, at the stream offset it applied at.
    Clear,
    /// OpenAI `response.create`, at the stream offset it came at (answered once).
    ResponseCreate,
}

impl Event {
    const ALL: [Event; 7] = [
        Event::Start,
        Event::SpeechStarted,
        Event::SpeechStopped,
        Event::Stop,
        Event::Commit,
        Event::Clear,
        Event::ResponseCreate,
    ];

    /// The message type it is (also its `event` in the log).
    pub(crate) fn name(self) -> &'static str {
        match self {
            Event::Start => "start",
            Event::SpeechStarted => "speech_started",
            Event::SpeechStopped => "speech_stopped",
            Event::Stop => "stop",
            Event::Commit => "input_audio_buffer.commit",
            Event::Clear => "input_audio_buffer.clear",
            Event::ResponseCreate => "response.create",
        }
    }

    /// The event named `name`.
    pub(crate) fn from_name(name: &str) -> Option<Event> {
        Event::ALL.into_iter().find(|e| e.name() == name)
    }
}

/// A stream's log file: created when the stream's first message arrives (lines written
/// before wait in memory, and are dropped with a stream that never got one), appended
/// to one whole line at a time, its size and client lines counted for the limits.
#[derive(Debug)]
pub(crate) struct LogFile {
    path: PathBuf,
    file: Option<File>,
    pending: Vec<String>,
    /// Bytes in the file (with the pending lines once written).
    bytes: u64,
    /// Lines about the client's messages.
    client_lines: u64,
}

impl LogFile {
    /// The log at `path`, not opened.
    pub(crate) fn new(path: PathBuf) -> LogFile {
        LogFile {
            path,
            file: None,
            pending: Vec::new(),
            bytes: 0,
            client_lines: 0,
        }
    }

    /// Where the file is.
    pub(crate) fn path(&self) -> &Path {
        &self.path
    }

    /// Whether the file is open (so exists).
    pub(crate) fn is_open(&self) -> bool {
        self.file.is_some()
    }

    /// Opens the existing file to append to it, counting `client_lines` already in it;
    /// the next line starts on a line of its own even if the last one was cut short.
    pub(crate) fn open_existing(&mut self, client_lines: u64) -> io::Result<()> {
        let mut file = OpenOptions::new()
            .read(true)
            .append(true)
            .open(&self.path)?;
        let len = file.metadata()?.len();
        self.bytes = len;
        self.client_lines = client_lines;
        if len == 0 {
            self.file = Some(file);
            return self.put(version_line());
        }
        let mut last = [0u8; 1];
        file.seek(SeekFrom::Start(len - 1))?;
        file.read_exact(&mut last)?;
        if last[0] != b'\n' {
            file.write_all(b"\n")?;
            self.bytes += 1;
        }
        self.file = Some(file);
        self.flush_pending()
    }

    /// Creates the file (owner-only: it tells what people said when), its version line
    /// first, then the lines that waited.
    pub(crate) fn create(&mut self) -> io::Result<()> {
        if self.file.is_some() {
            return Ok(());
        }
        let file = private_options()
            .read(true)
            .append(true)
            .create(true)
            .open(&self.path)?;
        self.file = Some(file);
        self.put(version_line())?;
        self.flush_pending()
    }

    fn flush_pending(&mut self) -> io::Result<()> {
        let lines: String = std::mem::take(&mut self.pending).concat();
        if lines.is_empty() {
            return Ok(());
        }
        self.put(lines)
    }

    /// Writes `text` (whole lines) to the file, or keeps it until the file is created.
    fn put(&mut self, text: String) -> io::Result<()> {
        match self.file.as_mut() {
            // One write per line: a line is never interleaved with another.
            Some(file) => {
                file.write_all(text.as_bytes())?;
                self.bytes += text.len() as u64;
                Ok(())
            }
            None => {
                // Before the first message only the connections' lines wait here.
                if self.pending.len() < 64 {
                    self.pending.push(text);
                }
                Ok(())
            }
        }
    }

    /// Appends a receiver's record: `line` (an object with its `type`); `t`, Unix
    /// milliseconds, is added. Text fields are cut to 1 KiB.
    pub(crate) fn record(&mut self, mut line: Map<String, Value>, t: u64) -> io::Result<()> {
        for value in line.values_mut() {
            if let Value::String(s) = value {
                if s.len() > MAX_LOGGED_TEXT {
                    let mut end = MAX_LOGGED_TEXT;
                    while !s.is_char_boundary(end) {
                        end -= 1;
                    }
                    s.truncate(end);
                    s.push_str("...");
                }
            }
        }
        if line.get("type").and_then(Value::as_str) == Some(PROTOCOL_ERROR_LINE) {
            self.client_lines += 1;
        }
        self.put(line_text(line, t))
    }

    /// Appends a client's message: `{"type":"client","t":..,<about>..,"message":..}`,
    /// `about` being what the receiver made of it. A message over 16 KiB of JSON is
    /// logged as `message_bytes`, its length.
    pub(crate) fn client(
        &mut self,
        message: &Value,
        mut about: Map<String, Value>,
        t: u64,
    ) -> io::Result<()> {
        let text = message.to_string();
        if text.len() <= MAX_LOGGED_MESSAGE {
            about.insert("message".into(), message.clone());
        } else {
            about.insert("message_bytes".into(), json!(text.len()));
        }
        about.insert("type".into(), json!(CLIENT_LINE));
        self.client_lines += 1;
        self.put(line_text(about, t))
    }

    /// Why the stream takes no more text messages, if its log is full.
    pub(crate) fn full(&self) -> Option<String> {
        if self.client_lines >= MAX_CLIENT_LINES {
            Some(format!(
                "the stream's log holds {MAX_CLIENT_LINES} lines about the client's messages, the most it takes: no more text messages"
            ))
        } else if self.bytes >= MAX_LOG_BYTES {
            Some(format!(
                "the stream's log reached {} MiB, the most it takes: no more text messages",
                MAX_LOG_BYTES >> 20
            ))
        } else {
            None
        }
    }
}

/// Options that create a file readable and writable by its owner only (mode 600 on
/// Unix; elsewhere, the folder's permissions apply).
pub(crate) fn private_options() -> OpenOptions {
    let mut options = OpenOptions::new();
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    options
}

/// The first line of a log.
fn version_line() -> String {
    let mut m = Map::new();
    m.insert("type".into(), json!(VERSION_LINE));
    m.insert("version".into(), json!(LOG_VERSION));
    line_text(m, super::session::unix_ms())
}

/// `line` as one line of text: `type` and `t` first, for the human reader; the rest in
/// key order.
pub(crate) fn line_text(mut line: Map<String, Value>, t: u64) -> String {
    line.remove("t");
    let mut text = String::from("{");
    let mut put = |key: &str, value: &Value| {
        if text.len() > 1 {
            text.push(',');
        }
        text.push_str(&Value::from(key).to_string());
        text.push(':');
        text.push_str(&value.to_string());
    };
    if let Some(ty) = line.remove("type") {
        put("type", &ty);
    }
    put("t", &json!(t));
    for (key, value) in &line {
        put(key, value);
    }
    text.push_str("}\n");
    text
}

/// Calls `f` with every line of `reader` (without its `\n`), or `None` for a line over
/// `max` bytes, which is skipped without being held: memory stays within `max` whatever
/// the input.
pub(crate) fn for_each_line(
    mut reader: impl BufRead,
    max: usize,
    mut f: impl FnMut(Option<&[u8]>) -> io::Result<()>,
) -> io::Result<()> {
    let mut line = Vec::new();
    let mut too_long = false;
    loop {
        let buf = reader.fill_buf()?;
        if buf.is_empty() {
            if too_long {
                f(None)?;
            } else if !line.is_empty() {
                f(Some(&line))?;
            }
            return Ok(());
        }
        let (chunk, end_of_line) = match buf.iter().position(|&b| b == b'\n') {
            Some(i) => (&buf[..i], true),
            None => (buf, false),
        };
        if !too_long {
            if line.len() + chunk.len() <= max {
                line.extend_from_slice(chunk);
            } else {
                too_long = true;
                line = Vec::new();
            }
        }
        let used = chunk.len() + usize::from(end_of_line);
        reader.consume(used);
        if end_of_line {
            if too_long {
                f(None)?;
            } else {
                f(Some(&line))?;
            }
            line.clear();
            too_long = false;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lines(input: &[u8], max: usize) -> Vec<Option<String>> {
        let mut out = Vec::new();
        for_each_line(input, max, |l| {
            out.push(l.map(|l| String::from_utf8_lossy(l).into_owned()));
            Ok(())
        })
        .unwrap();
        out
    }

    #[test]
    fn lines_over_the_cap_are_skipped() {
        let some = |s: &str| Some(s.to_string());
        assert_eq!(
            lines(b"ab\ncdefgh\n\nxyz", 4),
            [some("ab"), None, some(""), some("xyz")]
        );
        assert_eq!(lines(b"abcdefgh", 4), [None]);
        // Read in small pieces, the same.
        let reader = io::BufReader::with_capacity(2, &b"ab\ncdefgh\nxy\n"[..]);
        let mut out = Vec::new();
        for_each_line(reader, 4, |l| {
            out.push(l.map(<[u8]>::to_vec));
            Ok(())
        })
        .unwrap();
        assert_eq!(out, [Some(b"ab".to_vec()), None, Some(b"xy".to_vec())]);
    }

    #[test]
    fn events_are_named_as_their_messages() {
        for e in Event::ALL {
            assert_eq!(Event::from_name(e.name()), Some(e));
        }
        assert_eq!(Event::from_name("gap"), None);
    }

    #[test]
    fn a_long_message_is_logged_as_its_length() {
        let dir = tempfile::tempdir().unwrap();
        let mut log = LogFile::new(dir.path().join("a.jsonl"));
        log.create().unwrap();
        let big = json!({"type": "x", "pad": "y".repeat(MAX_LOGGED_MESSAGE)});
        log.client(&big, Map::new(), 1).unwrap();
        let text = std::fs::read_to_string(log.path()).unwrap();
        let last: Value = serde_json::from_str(text.lines().last().unwrap()).unwrap();
        assert_eq!(last["type"], "client");
        assert!(last.get("message").is_none());
        assert!(last["message_bytes"].as_u64().unwrap() > MAX_LOGGED_MESSAGE as u64);
        assert!(text.lines().all(|l| l.len() < MAX_LINE_BYTES));
    }
}
