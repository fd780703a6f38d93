//! One stream's state on disk and in memory: its WAV file, its JSONL log, and what the
//! log tells after a restart (gaps, events already logged, whether it was finished).

use std::collections::HashSet;
use std::fs::{File, OpenOptions};
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use serde_json::{json, Map, Value};
use tokio::sync::Notify;

use super::wav::WavAppender;
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
    jsonl: File,
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
    pub seen: HashSet<(String, u64)>,
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
    /// Set when the stream left the server's table: whoever holds it must look again.
    pub detached: bool,
}

impl Session {
    /// Opens the stream `id` in `dir`: a new one, or one whose files are there (after a
    /// disconnect or a restart), recovered from them.
    pub fn open(dir: &Path, id: &str, named: bool) -> io::Result<Session> {
        let wav_path = dir.join(format!("{id}.wav"));
        let jsonl_path = dir.join(format!("{id}.jsonl"));
        let mut session = Session {
            id: id.to_string(),
            named,
            wav_path: wav_path.clone(),
            jsonl: open_log(&jsonl_path)?,
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
            detached: false,
        };
        session.replay_log(&jsonl_path)?;
        if wav_path.exists() {
            let default = session.protocol.unwrap_or_default().default_rate();
            let (wav, recovered) = WavAppender::open(&wav_path, session.rate, default)?;
            if !recovered.header_was_valid {
                session.log(json!({
                    "type": "recovered",
                    "samples": wav.samples(),
                    "dropped_odd_byte": recovered.dropped_odd_byte,
                }))?;
            }
            session.rate = Some(wav.rate());
            session.wav = Some(wav);
        }
        session.received = session.held() + session.lost;
        Ok(session)
    }

    /// Samples in the WAV file.
    pub fn held(&self) -> u64 {
        self.wav.as_ref().map_or(0, WavAppender::samples)
    }

    /// Creates the WAV file at the stream's rate if it is not there yet.
    pub fn ensure_wav(&mut self) -> io::Result<()> {
        if self.wav.is_none() {
            let rate = self
                .rate
                .unwrap_or_else(|| self.protocol.unwrap_or_default().default_rate());
            self.rate = Some(rate);
            self.wav = Some(WavAppender::create(&self.wav_path, rate)?);
        }
        Ok(())
    }

    /// Appends one line to the JSONL log (`t`, Unix milliseconds, is added).
    pub fn log(&mut self, line: Value) -> io::Result<()> {
        let mut line = match line {
            Value::Object(map) => map,
            other => {
                let mut m = Map::new();
                m.insert("value".into(), other);
                m
            }
        };
        let t = line.remove("t").unwrap_or_else(|| json!(unix_ms()));
        // `type` and `t` first, for the human reader; the rest in key order.
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
        put("t", &t);
        for (key, value) in &line {
            put(key, value);
        }
        text.push_str("}\n");
        // One write per line: a line is never interleaved with another.
        self.jsonl.write_all(text.as_bytes())
    }

    /// Rebuilds what the log says about the stream.
    fn replay_log(&mut self, path: &Path) -> io::Result<()> {
        let mut bytes = Vec::new();
        File::open(path)?.read_to_end(&mut bytes)?;
        for line in String::from_utf8_lossy(&bytes).lines() {
            let Ok(Value::Object(v)) = serde_json::from_str::<Value>(line) else {
                continue; // a line cut short by a crash
            };
            let ty = v.get("type").and_then(Value::as_str).unwrap_or("");
            let sample = v.get("sample").and_then(Value::as_u64);
            match ty {
                "connected" => self.connections += 1,
                "gap" => {
                    let from = v.get("from").and_then(Value::as_u64).unwrap_or(0);
                    let to = v.get("to").and_then(Value::as_u64).unwrap_or(from);
                    self.gaps += 1;
                    self.lost = self.lost.saturating_add(to.saturating_sub(from));
                }
                FORMAT_LINE => {
                    self.protocol = v
                        .get("protocol")
                        .and_then(|p| serde_json::from_value(p.clone()).ok());
                    self.rate = v
                        .get("rate")
                        .and_then(Value::as_u64)
                        .and_then(|r| u32::try_from(r).ok());
                    self.events = v.get("events").and_then(Value::as_bool).unwrap_or(false);
                }
                "stop" => {
                    self.finished = true;
                    if let Some(n) = v.get("samples").and_then(Value::as_u64) {
                        self.seen.insert((ty.to_string(), n));
                    }
                }
                "start" | "speech_started" | "speech_stopped" => {
                    if let Some(s) = sample {
                        self.seen.insert((ty.to_string(), s));
                    }
                }
                "input_audio_buffer.commit" | "input_audio_buffer.clear" => {
                    let Some(s) = sample else { continue };
                    self.seen.insert((ty.to_string(), s));
                    if v.get("error").is_none() {
                        self.commit_mark = s;
                        if let Some(item) = v.get("item_id").and_then(Value::as_str) {
                            self.last_item = Some(item.to_string());
                        }
                    }
                }
                _ => {}
            }
        }
        Ok(())
    }
}

/// Milliseconds since the Unix epoch: the `t` of every log line, and part of an unnamed
/// stream's id.
pub(crate) fn unix_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

/// Opens the log for appending, so that the next line starts on a line of its own even
/// if the last one was cut short.
fn open_log(path: &Path) -> io::Result<File> {
    let mut file = OpenOptions::new()
        .read(true)
        .append(true)
        .create(true)
        .open(path)?;
    let len = file.metadata()?.len();
    if len > 0 {
        let mut last = [0u8; 1];
        file.seek(SeekFrom::Start(len - 1))?;
        file.read_exact(&mut last)?;
        if last[0] != b'\n' {
            file.write_all(b"\n")?;
        }
    }
    Ok(file)
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
        let dir = tempfile::tempdir().unwrap();
        let mut s = Session::open(dir.path(), "abc", true).unwrap();
        assert_eq!((s.received, s.connections, s.finished), (0, 0, false));
        s.log(json!({"type": "connected", "resume": true, "received": 0}))
            .unwrap();
        s.protocol = Some(Protocol::Raw);
        s.rate = Some(8_000);
        s.log(json!({"type": FORMAT_LINE, "protocol": "raw", "rate": 8000, "events": true}))
            .unwrap();
        s.ensure_wav().unwrap();
        s.wav.as_mut().unwrap().append(&[1; 100]).unwrap();
        s.log(json!({"type": "speech_started", "sample": 40}))
            .unwrap();
        s.log(json!({"type": "gap", "from": 100, "to": 150}))
            .unwrap();
        drop(s);
        // A line cut short by a crash.
        let log = dir.path().join("abc.jsonl");
        let mut f = OpenOptions::new().append(true).open(&log).unwrap();
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
        assert!(s.seen.contains(&("speech_started".to_string(), 40)));
        s.log(json!({"type": "stop", "samples": 150})).unwrap();
        drop(s);
        let text = std::fs::read_to_string(&log).unwrap();
        assert!(text.lines().all(|l| !l.is_empty()));
        assert!(text
            .lines()
            .last()
            .unwrap()
            .starts_with(r#"{"type":"stop","t":"#));
        let s = Session::open(dir.path(), "abc", true).unwrap();
        assert!(s.finished);
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
