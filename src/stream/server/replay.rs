//! What a stream's log tells when the stream is reopened (after a disconnect or a
//! restart), read line by line in bounded memory and validated: only the receiver's
//! records are taken as such, every number is range-checked, and a line that does not
//! fit is skipped. Also the conversion of a log written before the schema (see
//! [`super::log`]), whose records a client could have forged.

use std::collections::HashSet;
use std::fs::File;
use std::io::{self, BufReader, BufWriter, Write};
use std::path::Path;

use serde_json::{json, Map, Value};

use super::log::{
    for_each_line, line_text, private_options, Event, CLIENT_LINE, LEGACY_LINE, LOG_VERSION,
    MAX_CLIENT_LINES, MAX_LINE_BYTES, PROTOCOL_ERROR_LINE, VERSION_LINE,
};
use super::offsets::MAX_OFFSET;
use super::session::{unix_ms, without_audio};
use crate::limits::is_supported_sample_rate;
use crate::stream::protocol::Protocol;

/// Longest OpenAI item id taken from a log (the receiver's are about 25 characters).
const MAX_ITEM_ID: usize = 64;

/// What a stream's log says about it, as replay found it.
///
/// Public for the fuzz target of [`replay_log`] only.
#[doc(hidden)]
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ReplaySummary {
    /// Whether the log was written before the schema (its records were not trusted).
    pub legacy: bool,
    /// The stream's protocol, from its `format` record.
    pub protocol: Option<Protocol>,
    /// The stream's rate, Hz, from its `format` record (a supported rate).
    pub rate: Option<u32>,
    /// Whether the raw stream sends events.
    pub events: bool,
    /// Gaps recorded.
    pub gaps: u32,
    /// Samples lost in gaps (at most [`MAX_OFFSET`]).
    pub lost: u64,
    /// Whether the stream ended with `stop`.
    pub finished: bool,
    /// Connections the stream had.
    pub connections: u32,
    /// OpenAI: stream offset of the last successful commit or clear.
    pub commit_mark: u64,
    /// OpenAI: the last committed item.
    pub last_item: Option<String>,
    /// Lines about the client's messages.
    pub client_lines: u64,
    /// Distinct events remembered for de-duplication.
    pub events_seen: usize,
    /// Lines read.
    pub lines: u64,
    /// Lines skipped: cut short, too long, not JSON, or with a value out of range.
    pub skipped: u64,
}

/// Replays a log given as bytes, as if its stream's WAV file held `wav_samples`
/// samples: the entry point of the fuzz target. A log written before the schema is
/// converted in memory first.
#[doc(hidden)]
pub fn replay_log(bytes: &[u8], wav_samples: u64) -> ReplaySummary {
    let mut converted = Vec::new();
    let mut input = bytes;
    if !is_current(bytes) {
        // Writing to a Vec cannot fail, nor can reading a slice.
        if convert(bytes, &mut converted).is_err() {
            return ReplaySummary::default();
        }
        input = &converted;
    }
    let mut replay = Replay::new(wav_samples);
    replay.summary.legacy = !is_current(bytes);
    let _ = for_each_line(input, MAX_LINE_BYTES, |l| {
        replay.line(l);
        Ok(())
    });
    replay.finish()
}

/// A replay in progress: what the lines read so far tell.
pub(crate) struct Replay {
    /// The summary so far.
    pub summary: ReplaySummary,
    /// Events seen, by kind and sample (at most [`MAX_CLIENT_LINES`]).
    pub seen: HashSet<(Event, u64)>,
    wav_samples: u64,
    gaps_end: u64,
}

impl Replay {
    /// A replay of the log of a stream whose WAV file holds `wav_samples` samples.
    pub(crate) fn new(wav_samples: u64) -> Replay {
        Replay {
            summary: ReplaySummary::default(),
            seen: HashSet::new(),
            wav_samples,
            gaps_end: 0,
        }
    }

    /// The summary, once every line is read.
    pub(crate) fn finish(mut self) -> ReplaySummary {
        self.summary.events_seen = self.seen.len();
        self.summary
    }

    /// Takes one line (`None`: one over [`MAX_LINE_BYTES`]).
    pub(crate) fn line(&mut self, line: Option<&[u8]>) {
        self.summary.lines += 1;
        let taken = line
            .and_then(|l| serde_json::from_slice::<Value>(l).ok())
            .is_some_and(|v| match v {
                Value::Object(map) => self.take(&map),
                _ => false,
            });
        if !taken {
            self.summary.skipped += 1;
        }
    }

    /// Takes a line of the schema; `false` if it is not one or a value is out of range.
    fn take(&mut self, v: &Map<String, Value>) -> bool {
        let s = &mut self.summary;
        match v.get("type").and_then(Value::as_str) {
            Some("connected") => s.connections = s.connections.saturating_add(1),
            Some("format") => {
                let protocol = v.get("protocol").and_then(protocol_named);
                let rate = v
                    .get("rate")
                    .and_then(Value::as_u64)
                    .and_then(|r| u32::try_from(r).ok())
                    .filter(|r| is_supported_sample_rate(*r));
                let events = v.get("events").and_then(Value::as_bool);
                match (protocol, rate, events) {
                    // The first format is the stream's; the receiver writes no other.
                    (Some(p), Some(r), Some(e)) if s.protocol.is_none() => {
                        s.protocol = Some(p);
                        s.rate = Some(r);
                        s.events = e;
                    }
                    _ => return false,
                }
            }
            Some("gap") => return self.gap(v),
            Some(CLIENT_LINE) => return self.client(v),
            Some(PROTOCOL_ERROR_LINE) => s.client_lines = s.client_lines.saturating_add(1),
            Some(
                VERSION_LINE
                | "disconnected"
                | "recovered"
                | LEGACY_LINE
                | super::answer::RESPONSE_LINE
                | super::answer::RESPONSE_DONE_LINE,
            ) => {}
            _ => return false,
        }
        true
    }

    /// A gap: taken if it starts where the stream can have been (after the gaps before
    /// it, within the WAV file's samples) and ends within [`MAX_OFFSET`].
    fn gap(&mut self, v: &Map<String, Value>) -> bool {
        let (Some(from), Some(to)) = (
            v.get("from").and_then(Value::as_u64),
            v.get("to").and_then(Value::as_u64),
        ) else {
            return false;
        };
        let s = &mut self.summary;
        let audio_before = from.checked_sub(s.lost);
        let ok = from < to
            && to <= MAX_OFFSET
            && from >= self.gaps_end
            && audio_before.is_some_and(|a| a <= self.wav_samples);
        if !ok {
            return false;
        }
        let (Some(lost), Some(gaps)) = (s.lost.checked_add(to - from), s.gaps.checked_add(1))
        else {
            return false;
        };
        if lost > MAX_OFFSET {
            return false;
        }
        s.lost = lost;
        s.gaps = gaps;
        self.gaps_end = to;
        true
    }

    /// A client's message: only what the receiver wrote next to it is read.
    fn client(&mut self, v: &Map<String, Value>) -> bool {
        let s = &mut self.summary;
        s.client_lines = s.client_lines.saturating_add(1);
        let Some(name) = v.get("event") else {
            return true; // a message the receiver keeps no state about
        };
        let Some(event) = name.as_str().and_then(Event::from_name) else {
            return false;
        };
        let sample = v.get("sample").and_then(Value::as_u64);
        if sample.is_some_and(|n| n > MAX_OFFSET) {
            return false;
        }
        if event == Event::Stop {
            s.finished = true;
        }
        let Some(sample) = sample else {
            return event == Event::Stop;
        };
        if self.seen.len() < MAX_CLIENT_LINES as usize {
            self.seen.insert((event, sample));
        }
        if matches!(event, Event::Commit | Event::Clear) && v.get("error").is_none() {
            s.commit_mark = sample;
            if let Some(item) = v.get("item_id").and_then(Value::as_str) {
                if item.len() <= MAX_ITEM_ID {
                    s.last_item = Some(item.to_string());
                }
            }
        }
        true
    }
}

/// The protocol named `v` in a `format` record.
fn protocol_named(v: &Value) -> Option<Protocol> {
    match v.as_str()? {
        "raw" => Some(Protocol::Raw),
        "openai" => Some(Protocol::Openai),
        _ => None,
    }
}

/// Whether `log` (its start is enough) begins with the version line of this schema.
pub(crate) fn is_current(log: &[u8]) -> bool {
    let first = log.split(|&b| b == b'\n').next().unwrap_or_default();
    serde_json::from_slice::<Value>(first).is_ok_and(|v| {
        v.get("type").and_then(Value::as_str) == Some(VERSION_LINE)
            && v.get("version").and_then(Value::as_u64) == Some(LOG_VERSION)
    })
}

/// Rewrites the log at `path`, written before the schema, in the schema: a version
/// line, then every line: an event the receiver handled (`start`, `speech_started`,
/// `speech_stopped`, `stop`, and the OpenAI commits and clears, whose types no client
/// message can take without being handled as such) as a `client` line, and any other
/// line, the receiver's records among them (a client could have written lines of those
/// types), as a `legacy` line holding its text, never interpreted.
pub(crate) fn convert_file(path: &Path) -> io::Result<()> {
    let temporary = path.with_extension("jsonl.converting");
    let reader = BufReader::new(File::open(path)?);
    let file = private_options()
        .write(true)
        .create(true)
        .truncate(true)
        .open(&temporary)?;
    let mut writer = BufWriter::new(file);
    convert(reader, &mut writer)?;
    writer
        .into_inner()
        .map_err(|e| e.into_error())?
        .sync_all()?;
    std::fs::rename(&temporary, path)
}

/// [`convert_file`] from `reader` to `out`.
fn convert(reader: impl io::BufRead, out: &mut impl Write) -> io::Result<()> {
    let mut version = Map::new();
    version.insert("type".into(), json!(VERSION_LINE));
    version.insert("version".into(), json!(LOG_VERSION));
    out.write_all(line_text(version, unix_ms()).as_bytes())?;
    for_each_line(reader, MAX_LINE_BYTES, |line| {
        let text = match line {
            Some(l) => convert_line(l),
            None => {
                let mut m = Map::new();
                m.insert("type".into(), json!(LEGACY_LINE));
                m.insert("too_long".into(), json!(true));
                line_text(m, 0)
            }
        };
        out.write_all(text.as_bytes())
    })
}

/// One line of a log written before the schema, in the schema.
fn convert_line(line: &[u8]) -> String {
    let parsed = serde_json::from_slice::<Value>(line).ok();
    let t = parsed
        .as_ref()
        .and_then(|v| v.get("t"))
        .and_then(Value::as_u64)
        .unwrap_or(0);
    if let Some(Value::Object(mut message)) = parsed {
        let event = message
            .get("type")
            .and_then(Value::as_str)
            .and_then(Event::from_name);
        if let Some(event) = event {
            let at = if event == Event::Stop {
                "samples"
            } else {
                "sample"
            };
            let mut about = Map::new();
            about.insert("type".into(), json!(CLIENT_LINE));
            about.insert("event".into(), json!(event.name()));
            let sample = message.get(at).and_then(Value::as_u64);
            // A `stop` with an invalid `samples` was taken at the stream's end.
            if let Some(n) = sample.filter(|n| *n <= MAX_OFFSET) {
                about.insert("sample".into(), json!(n));
            }
            if matches!(event, Event::Commit | Event::Clear) {
                for key in ["error", "item_id"] {
                    if let Some(v) = message.get(key) {
                        about.insert(key.into(), v.clone());
                    }
                }
            }
            message.remove("t");
            let mut message = Value::Object(message);
            without_audio(&mut message);
            about.insert("message".into(), message);
            let text = line_text(about, t);
            if text.len() < MAX_LINE_BYTES {
                return text;
            }
        }
    }
    let mut m = Map::new();
    m.insert("type".into(), json!(LEGACY_LINE));
    let text = String::from_utf8_lossy(line);
    if text.len() + 64 < MAX_LINE_BYTES {
        m.insert("line".into(), json!(text));
    } else {
        m.insert("too_long".into(), json!(true));
    }
    line_text(m, t)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn current(lines: &[Value]) -> Vec<u8> {
        let mut out = br#"{"type":"log","t":1,"version":2}"#.to_vec();
        for l in lines {
            out.push(b'\n');
            out.extend_from_slice(l.to_string().as_bytes());
        }
        out
    }

    #[test]
    fn the_receivers_records_are_read_and_range_checked() {
        let log = current(&[
            json!({"type": "connected"}),
            json!({"type": "format", "protocol": "raw", "rate": 0, "events": true}),
            json!({"type": "format", "protocol": "raw", "rate": 8000, "events": true}),
            json!({"type": "format", "protocol": "openai", "rate": 24000, "events": false}),
            json!({"type": "gap", "from": 100, "to": 150}),
            json!({"type": "gap", "from": 120, "to": 1_000_000_000}),
            json!({"type": "gap", "from": 150, "to": u64::MAX}),
            json!({"type": "gap", "from": 10_000, "to": 20_000}),
            json!({"type": "client", "event": "stop", "sample": u64::MAX}),
            json!({"type": "client", "event": "speech_started", "sample": 40, "message": {"type": "gap"}}),
            json!({"type": "client", "message": {"type": "format", "rate": 0}}),
            json!({"type": "nonsense"}),
        ]);
        let s = replay_log(&log, 200);
        assert!(!s.legacy);
        assert_eq!(
            (s.protocol, s.rate, s.events),
            (Some(Protocol::Raw), Some(8_000), true)
        );
        assert_eq!((s.gaps, s.lost), (1, 50));
        assert!(!s.finished);
        assert_eq!((s.connections, s.client_lines, s.events_seen), (1, 3, 1));
        assert_eq!(s.skipped, 7);
    }

    #[test]
    fn a_log_before_the_schema_is_read_for_its_events_only() {
        let log = [
            json!({"type": "connected", "t": 5}),
            json!({"type": "format", "t": 6, "protocol": "raw", "rate": 0, "events": true}),
            json!({"type": "gap", "t": 7, "from": 0, "to": 1_000_000_000}),
            json!({"type": "start", "t": 8, "sample": 0, "audio": "AAAA"}),
            json!({"type": "stop", "t": 9, "samples": 300}),
        ]
        .iter()
        .map(Value::to_string)
        .collect::<Vec<_>>()
        .join("\n");
        let s = replay_log(log.as_bytes(), 300);
        assert!(s.legacy && s.finished);
        assert_eq!((s.protocol, s.rate, s.gaps, s.lost), (None, None, 0, 0));
        assert_eq!(s.events_seen, 2);
        let mut out = Vec::new();
        convert(log.as_bytes(), &mut out).unwrap();
        let text = String::from_utf8(out).unwrap();
        assert!(is_current(text.as_bytes()));
        assert!(!text.contains("AAAA"), "{text}");
        assert_eq!(text.matches(r#""type":"legacy""#).count(), 3, "{text}");
        // A stop whose samples were out of range still finished the stream.
        let stop = json!({"type": "stop", "t": 9, "samples": u64::MAX}).to_string();
        assert!(replay_log(stop.as_bytes(), 0).finished);
    }

    #[test]
    fn nothing_read_makes_replay_fail() {
        let odd = [
            &b"\xff\xfe\n{\n}\n[]\n\"gap\"\n"[..],
            br#"{"type":"gap","from":-1,"to":1.5}"#,
            br#"{"type":"gap","from":18446744073709551615,"to":18446744073709551615}"#,
            br#"{"type":"client","event":"stop","sample":-3}"#,
            br#"{"type":"client","event":7,"item_id":"x"}"#,
            br#"{"type":"client","event":"input_audio_buffer.commit","sample":1,"item_id":7}"#,
            br#"{"type":"format","protocol":"raw","rate":4294967296000,"events":"yes"}"#,
            br#"{"type":{"nested":true}}"#,
        ];
        for line in odd {
            for start in [&b""[..], br#"{"type":"log","version":2}"#] {
                let mut log = start.to_vec();
                log.push(b'\n');
                log.extend_from_slice(line);
                let s = replay_log(&log, u64::MAX);
                assert_eq!((s.gaps, s.lost, s.rate), (0, 0, None), "{s:?}");
            }
        }
        let big = format!(
            "{{\"type\":\"log\",\"version\":2}}\n{}",
            "x".repeat(MAX_LINE_BYTES * 2)
        );
        assert_eq!(replay_log(big.as_bytes(), 0).skipped, 1);
    }
}
