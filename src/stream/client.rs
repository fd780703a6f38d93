//! The network thread: one WebSocket connection at a time, reconnecting with backoff,
//! sending from the replay buffer.

use std::collections::VecDeque;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::mpsc::Sender as StdSender;
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures_util::{SinkExt, StreamExt};
use tokio::net::TcpStream;
use tokio::sync::mpsc::Receiver;
use tokio::time::{sleep_until, timeout};
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::http::HeaderValue;
use tokio_tungstenite::tungstenite::{Error as WsError, Message};
use tokio_tungstenite::{
    connect_async_tls_with_config, Connector, MaybeTlsStream, WebSocketStream,
};

use super::buffer::{Item, ReplayBuffer, StreamItem};
use super::protocol::{self, Control, Protocol, OPENAI_MIN_COMMIT_MS};
use super::retry::{status_is_final, Backoff, Repeats};
use super::server::RESUME_KEY_HEADER;
use super::tls::{Destination, Scheme};
use super::{Shared, StreamConfig, StreamError, StreamEvent, Token, TurnDetection};
use crate::dsp::convert::f32_to_i16;
use crate::dsp::resample::StreamResampler;
use crate::dsp::vad::{VadEvent, VadEventKind};
use crate::pipeline::{rescale, ResponsePlayer};

mod receive;
mod respond;

pub(crate) use respond::Response;

pub(crate) type Ws = WebSocketStream<MaybeTlsStream<TcpStream>>;

/// Without acknowledgements, sent audio kept outside an utterance, ms: a `SpeechStart`
/// points back by the VAD's pre-roll and onset (230 ms by default), and a reconnect
/// replays the utterance from there.
const UTTERANCE_LOOKBACK_MS: u64 = 1_000;

/// What the processing side hands to the network thread.
pub(crate) enum Input {
    /// Enhanced audio at `rate`, with the VAD events that came with it.
    Frame {
        samples: Vec<f32>,
        rate: u32,
        events: Vec<VadEvent>,
    },
    /// The stream has ended: send the rest, then close.
    Finish,
    /// Ask the backend to discard its input buffer (OpenAI `input_audio_buffer.clear`).
    Clear,
}

/// How a connection ended.
#[derive(Debug, PartialEq)]
pub(crate) enum Outcome {
    /// The stream was delivered (or given up on at its end).
    Finished,
    /// Lost: reconnect (after the backoff).
    Lost(String),
    /// The receiver refused this client on principle: never retried.
    Final(String),
}

pub(crate) struct Client {
    pub(crate) config: StreamConfig,
    pub(crate) token: Option<Token>,
    pub(crate) destination: Destination,
    pub(crate) tls: Option<Arc<rustls::ClientConfig>>,
    pub(crate) session: String,
    pub(crate) rate: u32,
    pub(crate) shared: Arc<Shared>,
    pub(crate) events: StdSender<StreamEvent>,
    pub(crate) input: Receiver<Input>,
    packet_len: usize,
    buffer: ReplayBuffer,
    pending: Vec<i16>,
    resampler: Option<(u32, StreamResampler)>,
    input_closed: bool,
    finishing: Option<Instant>,
    utterance_start: Option<u64>,
    last_commit: u64,
    in_speech: bool,
    sent_marks: VecDeque<(u64, Instant)>,
    rtt_total_ms: f64,
    rtt_count: u64,
    /// Whether the latest connection's receiver acknowledged.
    last_acknowledged: bool,
    /// Never-sent audio that overflow removed, already counted as dropped.
    overflow_accounted: u64,
    /// The stream's resume key: proves on every connection that this client is the
    /// stream's owner. Made here (32 random bytes) and sent from the first connection
    /// on, so a lost first answer cannot orphan the stream; a receiver that answers with
    /// a key of its own replaces it. Kept in memory only.
    resume_key: std::sync::Mutex<Option<HeaderValue>>,
    /// Where the backend's spoken answer goes (OpenAI protocol), if anywhere.
    pub(crate) player: Option<Box<dyn ResponsePlayer>>,
    /// The backend's answer in progress on this connection.
    response: Response,
    /// Messages to send at once, ahead of the buffered audio, on this connection only
    /// (`response.cancel`): never replayed on another.
    urgent: Vec<String>,
    /// An answer's bad audio message was warned about (once a stream).
    warned_bad_audio: bool,
}

impl Client {
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn new(
        config: StreamConfig,
        token: Option<Token>,
        destination: Destination,
        tls: Option<Arc<rustls::ClientConfig>>,
        session: String,
        shared: Arc<Shared>,
        events: StdSender<StreamEvent>,
        input: Receiver<Input>,
    ) -> Self {
        let rate = config.rate();
        let packet_len = (rate as usize * config.packet_ms as usize / 1000).max(1);
        let capacity = (config.buffer_s * rate as f64) as u64;
        Self {
            config,
            token,
            destination,
            tls,
            session,
            rate,
            shared,
            events,
            input,
            packet_len,
            buffer: ReplayBuffer::new(capacity),
            pending: Vec::with_capacity(packet_len),
            resampler: None,
            input_closed: false,
            finishing: None,
            utterance_start: None,
            last_commit: 0,
            in_speech: false,
            sent_marks: VecDeque::new(),
            rtt_total_ms: 0.0,
            rtt_count: 0,
            last_acknowledged: false,
            overflow_accounted: 0,
            resume_key: std::sync::Mutex::new(own_resume_key()),
            player: None,
            response: Response::default(),
            urgent: Vec::new(),
            warned_bad_audio: false,
        }
    }

    fn event(&self, e: StreamEvent) {
        let _ = self.events.send(e);
    }

    /// Opens one WebSocket connection.
    pub(crate) async fn connect(&self) -> Result<Ws, StreamError> {
        let mut request = self
            .config
            .url
            .as_str()
            .into_client_request()
            .map_err(|e| StreamError::Url(format!("{}: {e}", self.config.url_for_display())))?;
        let headers = request.headers_mut();
        let header = |v: &str| {
            HeaderValue::from_str(v).map_err(|_| {
                StreamError::Config("a header value holds characters a header cannot".into())
            })
        };
        if let Some(t) = &self.token {
            let mut v = HeaderValue::from_str(&format!("Bearer {}", t.expose())).map_err(|_| {
                StreamError::Config("the token holds characters a header cannot".into())
            })?;
            v.set_sensitive(true);
            headers.insert("authorization", v);
        }
        if self.config.resume {
            headers.insert(protocol::SESSION_HEADER, header(&self.session)?);
            headers.insert(protocol::RESUME_HEADER, header("1")?);
            let key = self.resume_key().clone();
            if let Some(key) = key {
                headers.insert(RESUME_KEY_HEADER, key);
            }
        }
        for (k, v) in &self.config.headers {
            let name =
                tokio_tungstenite::tungstenite::http::HeaderName::from_bytes(k.as_bytes())
                    .map_err(|_| StreamError::Config(format!("header name is not valid: {k:?}")))?;
            headers.insert(name, header(v)?);
        }
        let connector =
            match self.destination.scheme {
                Scheme::Tls => Connector::Rustls(self.tls.clone().ok_or_else(|| {
                    StreamError::Tls("no TLS configuration for a wss:// URL".into())
                })?),
                Scheme::Plain => Connector::Plain,
            };
        let timeout_after = Duration::from_millis(self.config.connect_timeout_ms);
        match timeout(
            timeout_after,
            connect_async_tls_with_config(request, None, true, Some(connector)),
        )
        .await
        {
            Err(_) => Err(StreamError::Connect {
                url: self.config.url_for_display(),
                message: format!("no answer within {} ms", self.config.connect_timeout_ms),
            }),
            Ok(Err(e)) => Err(self.connect_error(e)),
            Ok(Ok((ws, response))) => {
                // A receiver that made the stream's key itself gives it (once).
                if let Some(key) = response.headers().get(RESUME_KEY_HEADER) {
                    let mut key = key.clone();
                    key.set_sensitive(true);
                    *self.resume_key() = Some(key);
                }
                Ok(ws)
            }
        }
    }

    /// The key in use (see the field).
    fn resume_key(&self) -> std::sync::MutexGuard<'_, Option<HeaderValue>> {
        self.resume_key
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn connect_error(&self, e: WsError) -> StreamError {
        let url = self.config.url_for_display();
        match e {
            WsError::Http(response) => StreamError::Rejected {
                url,
                status: response.status().as_u16(),
            },
            // A failed TLS handshake (an unknown issuer, a name mismatch) comes from
            // tokio-rustls as an I/O error that wraps the rustls error.
            WsError::Io(io)
                if io
                    .get_ref()
                    .is_some_and(|inner| inner.downcast_ref::<rustls::Error>().is_some()) =>
            {
                StreamError::Tls(format!("{url}: {io}"))
            }
            WsError::Io(io) => StreamError::Connect {
                url,
                message: io.to_string(),
            },
            WsError::Tls(tls) => StreamError::Tls(format!("{url}: {tls}")),
            other => StreamError::Connect {
                url,
                message: other.to_string(),
            },
        }
    }

    /// Runs until the stream is finished and delivered (or given up on), or the receiver
    /// refuses it for good.
    pub(crate) async fn run(mut self, first: Ws) {
        let mut socket = Some(first);
        let mut backoff = Backoff::new(self.config.backoff_initial_ms, self.config.backoff_max_ms);
        let mut repeats = Repeats::default();
        let healthy_after = Duration::from_millis(self.config.healthy_after_ms);
        let mut failure = None;
        loop {
            let ws = match socket.take() {
                Some(ws) => ws,
                None => {
                    if self.gave_up() {
                        break;
                    }
                    match self.connect().await {
                        Ok(ws) => {
                            self.shared.reconnects.fetch_add(1, Relaxed);
                            ws
                        }
                        Err(e) => {
                            if let StreamError::Rejected { status, .. } = &e {
                                if status_is_final(*status) {
                                    failure = Some(e.to_string());
                                    break;
                                }
                            }
                            if let Some(line) = repeats.note(&format!("reconnecting failed: {e}")) {
                                self.event(StreamEvent::Warning(line));
                            }
                            let wait = backoff.wait();
                            self.idle_until(Instant::now() + wait).await;
                            continue;
                        }
                    }
                }
            };
            self.shared.connected.store(true, Relaxed);
            let started = Instant::now();
            let sent_before = self.shared.samples_sent.load(Relaxed);
            let acked_before = self.shared.acked_samples.load(Relaxed);
            let outcome = self.session(ws).await;
            self.shared.connected.store(false, Relaxed);
            // Only a connection that carried audio shows the trouble is over: audio its
            // receiver acknowledged, or audio sent for a while.
            let sent = self.shared.samples_sent.load(Relaxed) > sent_before;
            let acked = self.shared.acked_samples.load(Relaxed) > acked_before;
            if sent && (acked || started.elapsed() >= healthy_after) {
                backoff.reset();
                repeats.reset();
            }
            match outcome {
                Outcome::Finished => break,
                Outcome::Final(reason) => {
                    failure = Some(reason);
                    break;
                }
                Outcome::Lost(reason) => {
                    if let Some(reason) = repeats.note(&reason) {
                        self.event(StreamEvent::Disconnected { reason });
                    }
                    let wait = backoff.wait();
                    self.idle_until(Instant::now() + wait).await;
                }
            }
        }
        // Whatever was not delivered is discarded now: counted and said.
        let end = self.buffer.end() + self.pending.len() as u64;
        let left = if self.last_acknowledged {
            end.saturating_sub(self.shared.acked_samples.load(Relaxed))
        } else {
            end.saturating_sub(self.shared.samples_sent_position.load(Relaxed))
                .saturating_sub(self.overflow_accounted)
        };
        match failure {
            None => self.account_dropped(left, "undelivered at the end of the stream"),
            Some(reason) => {
                if let Ok(mut f) = self.shared.failure.lock() {
                    *f = Some(reason);
                }
                self.account_dropped(left, "undelivered: the receiver refused the stream");
                let later = self.drain().await;
                self.account_dropped(later, "produced after the receiver refused the stream");
            }
        }
    }

    /// After a final refusal: takes what the producer still hands over until it
    /// finishes, so that it never blocks; returns how many samples (at the stream's
    /// rate) that was.
    async fn drain(&mut self) -> u64 {
        let mut samples = 0;
        if self.finishing.is_some() {
            return samples;
        }
        while !self.input_closed {
            match self.input.recv().await {
                Some(Input::Frame {
                    samples: s, rate, ..
                }) => samples += rescale(s.len() as u64, rate, self.rate),
                Some(Input::Clear) => {}
                Some(Input::Finish) | None => break,
            }
        }
        samples
    }

    fn gave_up(&self) -> bool {
        self.finishing
            .is_some_and(|deadline| Instant::now() >= deadline)
    }

    fn account_dropped(&mut self, samples: u64, why: &str) {
        if samples == 0 {
            return;
        }
        self.shared.dropped_samples.fetch_add(samples, Relaxed);
        self.event(StreamEvent::Dropped {
            samples,
            reason: why.to_string(),
        });
    }

    /// Buffers input until `until` (a backoff pause, or the wait for a receiver's
    /// resume message).
    async fn idle_until(&mut self, until: Instant) {
        let until = match self.finishing {
            Some(deadline) => until.min(deadline),
            None => until,
        };
        loop {
            tokio::select! {
                input = self.input.recv(), if !self.input_closed => self.take_input(input),
                _ = sleep_until(until.into()) => return,
            }
        }
    }

    pub(crate) fn take_input(&mut self, input: Option<Input>) {
        match input {
            None => {
                self.input_closed = true;
                self.finish();
            }
            Some(Input::Finish) => self.finish(),
            Some(Input::Clear) => {
                if self.config.protocol == Protocol::Openai {
                    self.buffer.push_event(StreamItem::Clear);
                    self.last_commit = self.buffer.end() + self.pending.len() as u64;
                }
            }
            Some(Input::Frame {
                samples,
                rate,
                events,
            }) => {
                self.push_audio(&samples, rate);
                for e in events {
                    self.vad_event(e, rate);
                }
            }
        }
    }

    fn push_audio(&mut self, samples: &[f32], rate: u32) {
        let resampled;
        let samples = if rate == self.rate {
            samples
        } else {
            if self.resampler.as_ref().is_none_or(|(r, _)| *r != rate) {
                match StreamResampler::new(
                    rate,
                    self.rate,
                    crate::dsp::resample::ResamplerKind::Sinc,
                ) {
                    Ok(r) => self.resampler = Some((rate, r)),
                    Err(e) => {
                        self.event(StreamEvent::Warning(format!(
                            "cannot resample {rate} Hz: {e}"
                        )));
                        return;
                    }
                }
            }
            let mut out =
                Vec::with_capacity(samples.len() * self.rate as usize / rate as usize + 64);
            if let Some((_, r)) = self.resampler.as_mut() {
                let _ = r.process(samples, &mut |x| out.extend_from_slice(x));
            }
            resampled = out;
            &resampled[..]
        };
        for &v in samples {
            self.pending.push(f32_to_i16(v));
            if self.pending.len() == self.packet_len {
                let packet =
                    std::mem::replace(&mut self.pending, Vec::with_capacity(self.packet_len));
                self.push_packet(packet);
            }
        }
    }

    /// Buffers a packet. Overflow removes the oldest audio; without acknowledgements, what
    /// it removes unsent is lost for sure and counted now (with them, the receiver's
    /// resume offset tells, at the next connection).
    fn push_packet(&mut self, packet: Vec<i16>) {
        let before = self.buffer.dropped_unsent();
        self.buffer.push_audio(packet);
        let lost = self.buffer.dropped_unsent() - before;
        if lost > 0 && !self.config.resume {
            self.overflow_accounted += lost;
            self.account_dropped(lost, "the buffer is full: the oldest audio was dropped");
        }
    }

    /// Converts a VAD event's position to this stream and queues what it calls for.
    fn vad_event(&mut self, e: VadEvent, rate: u32) {
        let mut position = rescale(e.position, rate, self.rate);
        if let Some((_, r)) = &self.resampler {
            position += r.latency() as u64;
        }
        let now = self.buffer.end() + self.pending.len() as u64;
        match e.kind {
            VadEventKind::SpeechStart => {
                self.barge_in();
                self.in_speech = true;
                self.utterance_start = Some(position);
                if self.config.protocol == Protocol::Raw && self.config.events {
                    self.buffer.push_event(StreamItem::SpeechStarted(position));
                }
            }
            VadEventKind::SpeechEnd => {
                self.in_speech = false;
                self.utterance_start = None;
                match self.config.protocol {
                    Protocol::Raw if self.config.events => {
                        self.buffer.push_event(StreamItem::SpeechStopped(position));
                    }
                    Protocol::Openai if self.config.turn_detection == TurnDetection::Client => {
                        self.commit_if_enough(now);
                    }
                    _ => {}
                }
            }
        }
    }

    /// Queues an OpenAI commit if at least 100 ms were appended since the last one.
    fn commit_if_enough(&mut self, now: u64) {
        // Everything produced so far goes before the commit.
        if !self.pending.is_empty() {
            let packet = std::mem::take(&mut self.pending);
            self.push_packet(packet);
        }
        let min = self.rate as u64 * OPENAI_MIN_COMMIT_MS as u64 / 1000;
        if now.saturating_sub(self.last_commit) >= min {
            self.buffer.push_event(StreamItem::Commit);
            self.last_commit = now;
            if self.player.is_some() {
                // The backend answers each turn: with turn_detection null it waits to
                // be asked.
                self.buffer.push_event(StreamItem::ResponseCreate);
            }
        }
    }

    fn finish(&mut self) {
        if self.finishing.is_some() {
            return;
        }
        let now = self.buffer.end() + self.pending.len() as u64;
        if !self.pending.is_empty() {
            let packet = std::mem::take(&mut self.pending);
            self.push_packet(packet);
        }
        match self.config.protocol {
            Protocol::Raw if self.config.events => self.buffer.push_event(StreamItem::Stop),
            Protocol::Openai
                if self.config.turn_detection == TurnDetection::Client && self.in_speech =>
            {
                self.commit_if_enough(now)
            }
            _ => {}
        }
        self.finishing =
            Some(Instant::now() + Duration::from_secs_f64(self.config.finish_timeout_s));
    }

    /// One connection: the resume handshake, the opening message, then streaming.
    async fn session(&mut self, mut ws: Ws) -> Outcome {
        // Does the receiver acknowledge? It says so first, within a second.
        let mut received = None;
        if self.config.resume {
            let until = Instant::now() + Duration::from_millis(self.config.resume_wait_ms);
            loop {
                tokio::select! {
                    input = self.input.recv(), if !self.input_closed => self.take_input(input),
                    msg = ws.next() => match msg {
                        Some(Ok(Message::Text(t))) => {
                            received = self.first_message(t.as_str());
                            break;
                        }
                        Some(Ok(Message::Close(frame))) => return self.closed(frame),
                        None => return Outcome::Lost("closed by the receiver".into()),
                        Some(Err(e)) => return Outcome::Lost(e.to_string()),
                        Some(Ok(_)) => {}
                    },
                    _ = sleep_until(until.into()) => break,
                }
            }
        }
        let acknowledged = received.is_some();
        // A new connection is a new session: no answer is in progress on it.
        self.response = Response::default();
        self.urgent.clear();
        let from = self.resume_from(received);
        self.event(StreamEvent::Connected { acknowledged, from });
        let mut opening = Vec::new();
        if acknowledged {
            opening.push(Message::text(
                serde_json::to_string(&Control::ResumeFrom { sample: from }).unwrap_or_default(),
            ));
        }
        match self.config.protocol {
            Protocol::Raw if self.config.events => opening.push(Message::text(
                serde_json::to_string(&Control::Start {
                    rate: self.rate,
                    encoding: "pcm_s16le".into(),
                    channels: 1,
                    sample: from,
                })
                .unwrap_or_default(),
            )),
            Protocol::Openai => opening.push(Message::text(
                protocol::openai_session_update(
                    self.config.turn_detection == TurnDetection::Client,
                )
                .to_string(),
            )),
            Protocol::Raw => {}
        }
        for m in opening {
            if let Err(e) = ws.send(m).await {
                return self.lost_while_sending(&mut ws, e).await;
            }
        }
        loop {
            for text in std::mem::take(&mut self.urgent) {
                if let Err(e) = ws.send(Message::text(text)).await {
                    return self.lost_while_sending(&mut ws, e).await;
                }
            }
            while let Some((item, resend)) = self.buffer.next() {
                if let Err(e) = self.send_item(&mut ws, item, resend).await {
                    return self.lost_while_sending(&mut ws, e).await;
                }
            }
            if !acknowledged {
                // Outside an utterance keep the latest sent audio too: the next
                // SpeechStart points back into it (the VAD's pre-roll and onset).
                let lookback = self.rate as u64 * UTTERANCE_LOOKBACK_MS / 1000;
                let keep = self
                    .utterance_start
                    .unwrap_or(self.buffer.end().saturating_sub(lookback));
                self.buffer.forget_sent_before(keep);
            }
            if let Some(deadline) = self.finishing {
                let delivered = !acknowledged || self.buffer.held() == 0;
                if (self.buffer.all_sent() && delivered) || Instant::now() >= deadline {
                    let _ = ws.close(None).await;
                    // Let the close handshake finish (briefly). What the receiver sent
                    // before it saw our close still reaches the caller: the answer to
                    // the last commit most often arrives here.
                    let _ = timeout(Duration::from_millis(500), async {
                        while let Some(Ok(msg)) = ws.next().await {
                            if let Message::Text(t) = msg {
                                self.on_text(t.as_str());
                            }
                        }
                    })
                    .await;
                    return Outcome::Finished;
                }
            }
            let wake = self
                .finishing
                .unwrap_or_else(|| Instant::now() + Duration::from_secs(3600));
            tokio::select! {
                input = self.input.recv(), if !self.input_closed => self.take_input(input),
                msg = ws.next() => match msg {
                    Some(Ok(m)) => if let Some(outcome) = self.on_message(m) {
                        return outcome;
                    },
                    Some(Err(e)) => return Outcome::Lost(e.to_string()),
                    None => return Outcome::Lost("connection ended".into()),
                },
                _ = sleep_until(wake.into()) => {}
            }
        }
    }

    async fn send_item(&mut self, ws: &mut Ws, item: Item, resend: bool) -> Result<(), WsError> {
        match item {
            Item::Audio { start, samples } => {
                let n = samples.len() as u64;
                let message = match self.config.protocol {
                    Protocol::Raw => Message::binary(protocol::pcm16_to_bytes(&samples)),
                    Protocol::Openai => Message::text(protocol::openai_append(&samples)),
                };
                let bytes = message.len() as u64;
                ws.send(message).await?;
                let s = &self.shared;
                s.packets_sent.fetch_add(1, Relaxed);
                s.bytes_sent.fetch_add(bytes, Relaxed);
                s.samples_sent.fetch_add(n, Relaxed);
                s.samples_sent_position.fetch_max(start + n, Relaxed);
                if resend {
                    s.resent_samples.fetch_add(n, Relaxed);
                }
                self.sent_marks.push_back((start + n, Instant::now()));
                if self.sent_marks.len() > 10_000 {
                    self.sent_marks.pop_front();
                }
            }
            Item::Event { event, .. } => {
                let text = match event {
                    StreamItem::SpeechStarted(sample) => {
                        serde_json::to_string(&Control::SpeechStarted { sample }).ok()
                    }
                    StreamItem::SpeechStopped(sample) => {
                        serde_json::to_string(&Control::SpeechStopped { sample }).ok()
                    }
                    StreamItem::Stop => serde_json::to_string(&Control::Stop {
                        samples: self.buffer.end(),
                    })
                    .ok(),
                    StreamItem::Commit => Some(protocol::openai_commit()),
                    StreamItem::ResponseCreate => Some(protocol::openai_response_create()),
                    StreamItem::Clear => Some(protocol::openai_clear()),
                };
                if let Some(t) = text {
                    ws.send(Message::text(t)).await?;
                }
            }
        }
        Ok(())
    }
}

/// A fresh resume key for a new stream: 32 random bytes as 64 hex digits, sensitive (never
/// logged by the HTTP stack). `None` when the system has no randomness to give; the
/// receiver then makes the key and answers with it.
fn own_resume_key() -> Option<HeaderValue> {
    use ring::rand::SecureRandom;
    let mut bytes = [0u8; 32];
    ring::rand::SystemRandom::new().fill(&mut bytes).ok()?;
    let hex: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
    let mut value = HeaderValue::from_str(&hex).ok()?;
    value.set_sensitive(true);
    Some(value)
}
