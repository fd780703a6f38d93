//! The receiver's spoken answer (`clearvox serve --respond-with FILE.wav`, OpenAI
//! protocol): a fixed recording played back as a Realtime backend's answer, so that a
//! client's whole voice-chat loop — answer playback and barge-in — can be tested
//! without a backend.
//!
//! The receiver answers each `response.create` (with client turn detection, the client
//! sends one after each commit; the receiver has no VAD of its own, so a commit alone is
//! not answered, as the OpenAI API does not with `turn_detection: null`):
//! `response.created`, then the recording as `response.output_audio.delta` events of
//! 100 ms (base64 PCM16 mono at 24 kHz) at twice real time, so that a `response.cancel`
//! can arrive mid-answer, then `response.output_audio.done` and `response.done` with
//! status `completed`. A `response.cancel` stops the deltas and is answered with
//! `response.done`, status `cancelled`. A `response.create` while an answer is in
//! progress, or a `response.cancel` with none, is answered with OpenAI's `error`.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use serde_json::{json, Map, Value};
use tokio::time::Instant;
use tokio_tungstenite::tungstenite::Message;

use super::connection::Connection;
use super::error::ServeError;
use super::log::Event;
use super::openai::{json_message, new_id, openai_error};
use super::session::Session;
use crate::dsp::convert::f32_to_i16;
use crate::dsp::resample::{ResamplerKind, StreamResampler};
use crate::io::read_wav_file;
use crate::limits::is_supported_sample_rate;
use crate::stream::protocol::{pcm16_to_bytes, Protocol, OPENAI_RATE};

/// Audio per `response.output_audio.delta`, ms.
pub const ANSWER_DELTA_MS: u32 = 100;
/// Time between two deltas: half their duration (twice real time).
const DELTA_EVERY: Duration = Duration::from_millis(ANSWER_DELTA_MS as u64 / 2);
/// JSONL `type` of the receiver's line about an answer it began.
pub(crate) const RESPONSE_LINE: &str = "response";
/// JSONL `type` of the receiver's line about an answer's end.
pub(crate) const RESPONSE_DONE_LINE: &str = "response_done";
/// Longest answer, s (a longer recording is refused: it is held in memory).
const MAX_ANSWER_S: u64 = 600;

/// The answer of `path`, as the receiver sends it: mono (the channels averaged),
/// resampled to 24 kHz (the library's sinc resampler, its delay removed, its tail
/// flushed: as many samples as the recording's duration), PCM16.
///
/// ```
/// use clearvox::stream::server::load_answer;
/// let dir = tempfile::tempdir().expect("a temporary folder");
/// let path = dir.path().join("answer.wav");
/// let spec = hound::WavSpec { channels: 1, sample_rate: 24_000, bits_per_sample: 16, sample_format: hound::SampleFormat::Int };
/// let mut w = hound::WavWriter::create(&path, spec).expect("a WAV writer");
/// for i in 0..2_400i16 { w.write_sample(i).expect("written"); }
/// w.finalize().expect("finalized");
/// let answer = load_answer(&path).expect("a valid WAV");
/// assert_eq!(answer, (0..2_400i16).collect::<Vec<_>>()); // 24 kHz PCM16: as it is
/// assert!(load_answer(&dir.path().join("missing.wav")).is_err());
/// ```
pub fn load_answer(path: &Path) -> Result<Vec<i16>, ServeError> {
    let error = |reason: String| ServeError::Answer {
        path: path.to_path_buf(),
        reason,
    };
    let audio = read_wav_file(path).map_err(|e| error(e.to_string()))?;
    let rate = audio.spec.sample_rate;
    let channels = usize::from(audio.spec.channels).max(1);
    if !is_supported_sample_rate(rate) {
        return Err(error(format!("{rate} Hz is not a supported rate")));
    }
    let frames = audio.samples.len() / channels;
    if frames == 0 {
        return Err(error("it holds no audio".into()));
    }
    if frames as u64 > MAX_ANSWER_S * u64::from(rate) {
        return Err(error(format!("longer than {MAX_ANSWER_S} s")));
    }
    let mono: Vec<f32> = audio
        .samples
        .chunks_exact(channels)
        .map(|frame| frame.iter().sum::<f32>() / channels as f32)
        .collect();
    let mono = if rate == OPENAI_RATE {
        mono
    } else {
        let mut r = StreamResampler::new(rate, OPENAI_RATE, ResamplerKind::Sinc)
            .map_err(|e| error(e.to_string()))?;
        let want = crate::pipeline::rescale(frames as u64, rate, OPENAI_RATE) as usize;
        let skip = r.latency();
        let mut out = Vec::with_capacity(want + skip + 1024);
        let mut sink = |x: &[f32]| out.extend_from_slice(x);
        r.process(&mono, &mut sink)
            .map_err(|e| error(e.to_string()))?;
        // Zeros push the filter's tail out.
        let tail = vec![0.0; r.chunk_len() + rate as usize / 100 + skip * 2];
        r.process(&tail, &mut sink)
            .map_err(|e| error(e.to_string()))?;
        out.drain(..skip.min(out.len()));
        out.truncate(want);
        out
    };
    Ok(mono.into_iter().map(f32_to_i16).collect())
}

/// An answer being sent on a connection.
#[derive(Debug)]
pub(super) struct Answering {
    /// `resp_...`
    id: String,
    /// The answer's item, `item_...`.
    item: String,
    /// Samples of the recording sent so far.
    sent: usize,
    /// When the next delta is due.
    pub next_at: Instant,
}

impl Connection {
    /// `response.create` (`message`): an answer begins, unless one is in progress.
    pub(super) fn on_response_create(
        &mut self,
        s: &mut Session,
        message: Value,
        event_id: Value,
        out: &mut Vec<Message>,
    ) -> std::io::Result<()> {
        let Some(answer) = self.answer.clone() else {
            // A receiver without an answer keeps it as any other message.
            return s.log_client(&message, None, Map::new());
        };
        if self.protocol == Some(Protocol::Raw) {
            s.log_client(&message, None, Map::new())?;
            return self.warn_once(
                s,
                "response in raw",
                "response.create in a raw stream: not answered",
            );
        }
        // A resend after a reconnect is answered once.
        let Some(at) = self.buffer_event_at(s, Event::ResponseCreate)? else {
            return Ok(());
        };
        let event = Some((Event::ResponseCreate, Some(at)));
        let mut about = Map::new();
        if let Some(a) = &self.answering {
            about.insert(
                "error".into(),
                json!("conversation_already_has_active_response"),
            );
            s.log_client(&message, event, about)?;
            out.push(openai_error(
                "conversation_already_has_active_response",
                &format!(
                    "Conversation already has an active response in progress: {}. Wait until the response is finished before creating a new one.",
                    a.id
                ),
                event_id,
            ));
            return Ok(());
        }
        let id = new_id("resp");
        let item = new_id("item");
        about.insert("response_id".into(), json!(id));
        s.log_client(&message, event, about)?;
        s.log(json!({
            "type": RESPONSE_LINE,
            "response_id": id,
            "samples": answer.len(),
            "rate": OPENAI_RATE,
        }))?;
        out.push(json_message(&json!({
            "type": "response.created",
            "event_id": new_id("event"),
            "response": response_object(&id, "in_progress", None, Vec::new()),
        })));
        self.answering = Some(Answering {
            id,
            item,
            sent: 0,
            next_at: Instant::now(),
        });
        Ok(())
    }

    /// `response.cancel` (`message`): the answer in progress stops.
    pub(super) fn on_response_cancel(
        &mut self,
        s: &mut Session,
        message: Value,
        event_id: Value,
        out: &mut Vec<Message>,
    ) -> std::io::Result<()> {
        if self.answer.is_none() {
            return s.log_client(&message, None, Map::new());
        }
        let mut about = Map::new();
        let Some(a) = self.answering.take() else {
            about.insert("error".into(), json!("response_cancel_not_active"));
            s.log_client(&message, None, about)?;
            out.push(openai_error(
                "response_cancel_not_active",
                "Cancellation failed: no active response found",
                event_id,
            ));
            return Ok(());
        };
        about.insert("response_id".into(), json!(a.id));
        s.log_client(&message, None, about)?;
        self.answer_done(s, a, "cancelled", out)
    }

    /// The next delta of the answer in progress, or its end.
    pub(super) fn answer_due(
        &mut self,
        s: &mut Session,
        out: &mut Vec<Message>,
    ) -> std::io::Result<()> {
        let (Some(mut a), Some(answer)) = (self.answering.take(), self.answer.clone()) else {
            return Ok(());
        };
        let per_delta = (OPENAI_RATE * ANSWER_DELTA_MS / 1000) as usize;
        let end = (a.sent + per_delta).min(answer.len());
        if a.sent < end {
            use base64::Engine as _;
            let delta = base64::engine::general_purpose::STANDARD
                .encode(pcm16_to_bytes(&answer[a.sent..end]));
            out.push(json_message(&json!({
                "type": "response.output_audio.delta",
                "event_id": new_id("event"),
                "response_id": a.id,
                "item_id": a.item,
                "output_index": 0,
                "content_index": 0,
                "delta": delta,
            })));
            a.sent = end;
            a.next_at += DELTA_EVERY;
            self.answering = Some(a);
            return Ok(());
        }
        out.push(json_message(&json!({
            "type": "response.output_audio.done",
            "event_id": new_id("event"),
            "response_id": a.id,
            "item_id": a.item,
            "output_index": 0,
            "content_index": 0,
        })));
        self.answer_done(s, a, "completed", out)
    }

    /// Ends the answer `a` with `status`: logged, and `response.done`.
    fn answer_done(
        &mut self,
        s: &mut Session,
        a: Answering,
        status: &str,
        out: &mut Vec<Message>,
    ) -> std::io::Result<()> {
        s.log(json!({
            "type": RESPONSE_DONE_LINE,
            "response_id": a.id,
            "status": status,
            "sent": a.sent,
        }))?;
        let details = (status == "cancelled")
            .then(|| json!({"type": "cancelled", "reason": "client_cancelled"}));
        let item = json!({
            "id": a.item,
            "object": "realtime.item",
            "type": "message",
            "role": "assistant",
            "status": if status == "completed" { "completed" } else { "incomplete" },
            "content": [{"type": "output_audio"}],
        });
        out.push(json_message(&json!({
            "type": "response.done",
            "event_id": new_id("event"),
            "response": response_object(&a.id, status, details, vec![item]),
        })));
        Ok(())
    }

    /// The connection ends with an answer in progress: logged.
    pub(super) fn answer_interrupted(&mut self, s: &mut Session) {
        if let Some(a) = self.answering.take() {
            let _ = s.log(json!({
                "type": RESPONSE_DONE_LINE,
                "response_id": a.id,
                "status": "interrupted",
                "sent": a.sent,
            }));
        }
    }
}

/// A `realtime.response` object.
fn response_object(id: &str, status: &str, details: Option<Value>, output: Vec<Value>) -> Value {
    json!({
        "object": "realtime.response",
        "id": id,
        "status": status,
        "status_details": details,
        "output": output,
        "output_modalities": ["audio"],
        "audio": {"output": {"format": {"type": "audio/pcm", "rate": OPENAI_RATE}}},
    })
}

/// The answer as the receiver holds it.
pub(super) type Answer = Arc<Vec<i16>>;
