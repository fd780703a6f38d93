//! One stream's state on disk and in memory: its WAV file, its JSONL log (see
//! [`super::log`]), and what the log tells after a restart (see [`super::replay`]).

use std::collections::HashSet;
use std::fs::File;
use std::io::{self, BufReader};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use serde_json::{json, Map, Value};
use tokio::sync::Notify;

use super::auth::{same_digest, Digest};
use super::log::{for_each_line, Event, LogFile, MAX_LINE_BYTES};
use super::owner::{key_path, write_key_digest};
use super::replay::{convert_file, is_current, Replay};
use super::wav::{samples_on_disk, WavAppender};
use crate::stream::protocol::Protocol;

/// JSONL `type` of the lines the receiver writes about the stream's format.
pub(crate) const FORMAT_LINE: &str = "format";

/// A stream (one `X-Clearvox-Session` id, or one unnamed connection).
#[derive(Debug)]
pub(crate) struct Session {
    /// The stream identifier (also the files' stem).
    pub id: String,
    /// Whether the id came from the client (so another connection may resume it).
    pub named: bool,
    wav_path: PathBuf,
    log: LogFile,
    /// The audio file, once the format is known.
    pub wav: Option<WavAppender>,
    /// The protocol the stream was first detected as.
    pub protocol: Option<Protocol>,
    /// Whether a raw stream sends JSON events.
    pub events: bool,
    /// The stream's sample rate, once known.
    pub rate: Option<u32>,
    /// Stream offset held: samples in the WAV plus samples lost in gaps.
    pub received: u64,
    /// Gaps recorded.
    pub gaps: u32,
    /// Samples lost in gaps.
    pub lost: u64,
    /// Whether the stream ended with `stop`.
    pub finished: bool,
    /// Events logged, by type and stream sample (for de-duplication).
    pub seen: HashSet<(Event, u64)>,
    /// OpenAI: stream offset of the last successful commit or clear.
    pub commit_mark: u64,
    /// OpenAI: the last committed item.
    pub last_item: Option<String>,
    /// Connections the stream has had, this one included.
    pub connections: u32,
    /// The connection that owns the stream now.
    pub owner: u64,
    /// Wakes the owning connection when another one takes the stream over.
    pub owner_kick: Option<Arc<Notify>>,
    /// Set when the stream is not (or no longer) in the server's table, and until it
    /// is loaded: whoever holds it must look again.
    pub detached: bool,
    /// The digest of a new stream's resume key: the stream is bound to it from its
    /// creator's handshake, and it is written to the key file with the stream's files.
    key: Option<Digest>,
}

impl Session {
    /// The stream `id` in `dir`, not loaded yet (no file is touched).
    pub fn new(dir: &Path, id: &str, named: bool) -> Session {
        Session {
            id: id.to_string(),
            named,
            wav_path: dir.join(format!("{id}.wav")),
            log: LogFile::new(dir.join(format!("{id}.jsonl"))),
            wav: None,
            protocol: None,
            events: false,
            rate: None,
            received: 0,
            gaps: 0,
            lost: 0,
            finished: false,
            seen: HashSet::new(),
            commit_mark: 0,
            last_item: None,
            connections: 0,
            owner: 0,
            owner_kick: None,
            detached: true,
            key: None,
        }
    }

    /// Opens the stream `id` in `dir`: a new one, or one whose files are there (after a
    /// disconnect or a restart), recovered from them.
    #[cfg(test)]
    pub fn open(dir: &Path, id: &str, named: bool) -> io::Result<Session> {
        let mut s = Session::new(dir, id, named);
        s.load()?;
        Ok(s)
    }

    /// Reads the stream's files, if there are any: replays its log (converting one
    /// written before the schema) and opens its WAV file. Blocking: a big log takes a
    /// while.
    pub fn load(&mut self) -> io::Result<()> {
        let wav_samples = samples_on_disk(&self.wav_path)?;
        let log_path = self.log.path().to_path_buf();
        let mut replay = Replay::new(wav_samples.unwrap_or(0));
        // Opened once, read once (it may be big), line by line.
        let log_exists = match File::open(&log_path) {
            Ok(file) => {
                if !replay_file(file, &mut replay)? {
                    convert_file(&log_path)?;
                    replay = Replay::new(wav_samples.unwrap_or(0));
                    replay.summary.legacy = true;
                    replay_file(File::open(&log_path)?, &mut replay)?;
                }
                true
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => false,
            Err(e) => return Err(e),
        };
        self.seen = std::mem::take(&mut replay.seen);
        let r = replay.finish();
        if log_exists {
            self.log.open_existing(r.client_lines)?;
        }
        self.protocol = r.protocol;
        self.rate = r.rate;
        self.events = r.events;
        self.gaps = r.gaps;
        self.lost = r.lost;
        self.finished = r.finished;
        self.connections = r.connections;
        self.commit_mark = r.commit_mark;
        self.last_item = r.last_item;
        if wav_samples.is_some() {
            self.log.create()?;
            let default = self.protocol.unwrap_or_default().default_rate();
            let (wav, recovered) = WavAppender::open(&self.wav_path, self.rate, default)?;
            if !recovered.header_was_valid {
                self.log(json!({
                    "type": "recovered",
                    "samples": wav.samples(),
                    "dropped_odd_byte": recovered.dropped_odd_byte,
                }))?;
            }
            self.rate = Some(wav.rate());
            self.wav = Some(wav);
        }
        self.received = self.held() + self.lost;
        self.commit_mark = self.commit_mark.min(self.received);
        self.detached = false;
        Ok(())
    }

    /// Whether the stream's files exist.
    #[cfg(test)]
    pub fn has_files(&self) -> bool {
        self.log.is_open()
    }

    /// Binds a stream to the key of the handshake that attaches to it: `Some` for a
    /// stream that had no key file at that handshake (a new one), `None` for a client
    /// whose key matched the key file. A new stream takes the first key it is given; a
    /// connection with another key is refused (`PermissionDenied`) before it touches the
    /// stream, so no client can take over a stream another one is creating.
    pub fn bind_key(&mut self, key: Option<Digest>) -> io::Result<()> {
        let Some(key) = key else { return Ok(()) };
        match &self.key {
            None if !self.log.is_open() => {
                self.key = Some(key);
                Ok(())
            }
            Some(bound) if same_digest(bound, &key) => Ok(()),
            _ => Err(io::Error::new(
                io::ErrorKind::PermissionDenied,
                format!("stream {} belongs to another client", self.id),
            )),
        }
    }

    /// Creates the stream's log, if it is not there yet: its first message arrived.
    /// A new stream's key file is written first, so that its files never exist without
    /// their owner's key.
    pub fn touch(&mut self) -> io::Result<()> {
        if !self.log.is_open() {
            if let Some(key) = &self.key {
                write_key_digest(&key_path(self.log_dir(), &self.id), key)?;
            }
        }
        self.log.create()
    }

    /// The folder of the stream's files.
    fn log_dir(&self) -> &Path {
        self.wav_path.parent().unwrap_or(Path::new("."))
    }

    /// Why the stream takes no more text messages, if its log is full.
    pub fn log_full(&self) -> Option<String> {
        self.log.full()
    }

    /// Samples in the WAV file.
    pub fn held(&self) -> u64 {
        self.wav.as_ref().map_or(0, WavAppender::samples)
    }

    /// Creates the WAV file at the stream's rate if it is not there yet.
    pub fn ensure_wav(&mut self) -> io::Result<()> {
        if self.wav.is_none() {
            self.touch()?;
            let rate = self
                .rate
                .unwrap_or_else(|| self.protocol.unwrap_or_default().default_rate());
            self.rate = Some(rate);
            self.wav = Some(WavAppender::create(&self.wav_path, rate)?);
        }
        Ok(())
    }

    /// Appends one of the receiver's records to the log (`line`, an object with its
    /// `type`; `t`, Unix milliseconds, is added). Before the stream's first message it
    /// waits in memory.
    pub fn log(&mut self, line: Value) -> io::Result<()> {
        let line = match line {
            Value::Object(map) => map,
            other => {
                let mut m = Map::new();
                m.insert("value".into(), other);
                m
            }
        };
        self.log.record(line, unix_ms())
    }

    /// Appends a client's `message` to the log, without its audio, and `about` it what
    /// the receiver made of it: the `event` and `sample` it is de-duplicated by, and
    /// any more keys. Creates the files if need be.
    pub fn log_client(
        &mut self,
        message: &Value,
        event: Option<(Event, Option<u64>)>,
        more: Map<String, Value>,
    ) -> io::Result<()> {
        self.touch()?;
        let mut about = more;
        if let Some((event, sample)) = event {
            about.insert("event".into(), json!(event.name()));
            if let Some(sample) = sample {
                about.insert("sample".into(), json!(sample));
            }
        }
        let mut message = message.clone();
        without_audio(&mut message);
        self.log.client(&message, about, unix_ms())
    }
}

/// Replays the log `file` into `replay`; `false`, having read only its first line, if
/// it was written before the schema.
fn replay_file(file: File, replay: &mut Replay) -> io::Result<bool> {
    let mut first = true;
    let mut current = true;
    let read = for_each_line(BufReader::new(file), MAX_LINE_BYTES, |line| {
        if std::mem::take(&mut first) && !line.is_some_and(is_current) {
            current = false;
            // Stops the reading: the file is converted, then read again.
            return Err(io::Error::other("written before the schema"));
        }
        replay.line(line);
        Ok(())
    });
    match read {
        Err(_) if !current => Ok(false),
        other => other.map(|()| true),
    }
}

/// Milliseconds since the Unix epoch: the `t` of every log line, and part of an unnamed
/// stream's id.
pub(crate) fn unix_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

/// `value` with every string under an `audio` key replaced by its length, so that a
/// logged message never holds audio.
pub(crate) fn without_audio(value: &mut Value) {
    match value {
        Value::Object(map) => {
            for (k, v) in map.iter_mut() {
                if k == "audio" {
                    if let Value::String(s) = v {
                        *v = json!(format!("<{} base64 characters>", s.len()));
                        continue;
                    }
                }
                without_audio(v);
            }
        }
        Value::Array(items) => items.iter_mut().for_each(without_audio),
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_stream_is_recovered_from_its_files() {
        use std::io::Write;
        let dir = tempfile::tempdir().unwrap();
        let mut s = Session::open(dir.path(), "abc", true).unwrap();
        assert_eq!((s.received, s.connections, s.finished), (0, 0, false));
        s.log(json!({"type": "connected", "resume": true, "received": 0}))
            .unwrap();
        assert!(!s.has_files(), "no file before the first message");
        s.protocol = Some(Protocol::Raw);
        s.rate = Some(8_000);
        s.log(json!({"type": FORMAT_LINE, "protocol": "raw", "rate": 8000, "events": true}))
            .unwrap();
        s.ensure_wav().unwrap();
        assert!(s.has_files());
        s.wav.as_mut().unwrap().append(&[1; 100]).unwrap();
        let started = json!({"type": "speech_started", "sample": 40});
        s.log_client(&started, Some((Event::SpeechStarted, Some(40))), Map::new())
            .unwrap();
        s.log(json!({"type": "gap", "from": 100, "to": 150}))
            .unwrap();
        drop(s);
        // A line cut short by a crash.
        let log = dir.path().join("abc.jsonl");
        let mut f = std::fs::OpenOptions::new().append(true).open(&log).unwrap();
        f.write_all(br#"{"type":"gap","fr"#).unwrap();
        drop(f);

        let mut s = Session::open(dir.path(), "abc", true).unwrap();
        assert_eq!(s.rate, Some(8_000));
        assert_eq!(s.protocol, Some(Protocol::Raw));
        assert!(s.events);
        assert_eq!(s.held(), 100);
        assert_eq!(s.lost, 50);
        assert_eq!(s.received, 150);
        assert_eq!(s.connections, 1);
        assert!(s.seen.contains(&(Event::SpeechStarted, 40)));
        let stop = json!({"type": "stop", "samples": 150});
        s.log_client(&stop, Some((Event::Stop, Some(150))), Map::new())
            .unwrap();
        drop(s);
        let text = std::fs::read_to_string(&log).unwrap();
        assert!(text.lines().all(|l| !l.is_empty()));
        assert!(text.starts_with(r#"{"type":"log","t":"#));
        assert!(text
            .lines()
            .last()
            .unwrap()
            .starts_with(r#"{"type":"client","t":"#));
        let s = Session::open(dir.path(), "abc", true).unwrap();
        assert!(s.finished);
    }

    #[cfg(unix)]
    #[test]
    fn the_files_are_private() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let mut s = Session::open(dir.path(), "p", true).unwrap();
        s.ensure_wav().unwrap();
        for name in ["p.wav", "p.jsonl"] {
            let mode = std::fs::metadata(dir.path().join(name))
                .unwrap()
                .permissions()
                .mode();
            assert_eq!(mode & 0o777, 0o600, "{name}");
        }
    }

    #[test]
    fn logged_messages_hold_no_audio() {
        let mut v = json!({
            "type": "conversation.item.create",
            "item": {"content": [{"type": "input_audio", "audio": "AAAAAAAA"}]},
        });
        without_audio(&mut v);
        assert_eq!(v["item"]["content"][0]["audio"], "<8 base64 characters>");
    }
}
