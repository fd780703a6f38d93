//! The streaming client's handling of what a server sends: a scripted server on loopback
//! answers each of the client's connections with fuzzed text (acks and resume greetings
//! with any offsets, OpenAI events, anything), binary, ping and Close messages, and may
//! acknowledge the audio it gets, close, or keep silent. The client streams a little
//! audio with VAD events through its sink, over either protocol, with or without the
//! resume extension. It must neither panic nor hang: `wait` returns within the finish
//! timeout (plus slack), with counters that add up.
//!
//! Input: one byte of options (bit 0 resume, 1 OpenAI, 2 raw events, 3 the server
//! closes after its script, 4 the server acknowledges audio, 5–6 how much audio, 7 the
//! audio at 48 kHz, to be resampled), then lines as in `receiver_messages` (`T` text,
//! `B` binary, `P` ping, `C` a Close frame, `-` the script of the next connection).
#![no_main]

use std::net::SocketAddr;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use clearvox::dsp::vad::{VadEvent, VadEventKind};
use clearvox::pipeline::{EnhancedFrame, FrameSink};
use clearvox::stream::{connect, Protocol, StreamConfig};
use futures_util::{SinkExt, StreamExt};
use libfuzzer_sys::fuzz_target;
use tokio_tungstenite::tungstenite::Message;

/// What the server does on each connection of the current input.
#[derive(Default, Clone)]
struct Script {
    parts: Vec<Vec<Message>>,
    close: bool,
    ack: bool,
    connections: usize,
}

fn server() -> (SocketAddr, Arc<Mutex<Script>>) {
    static SERVER: OnceLock<(SocketAddr, Arc<Mutex<Script>>)> = OnceLock::new();
    SERVER
        .get_or_init(|| {
            let script = Arc::new(Mutex::new(Script::default()));
            let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("a loopback port");
            listener.set_nonblocking(true).expect("non-blocking");
            let addr = listener.local_addr().expect("its address");
            let shared = script.clone();
            std::thread::spawn(move || {
                let runtime = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .expect("a runtime");
                runtime.block_on(async move {
                    let listener = tokio::net::TcpListener::from_std(listener).expect("a listener");
                    loop {
                        let Ok((tcp, _)) = listener.accept().await else {
                            continue;
                        };
                        let (part, close, ack) = {
                            let mut s = shared.lock().unwrap_or_else(|e| e.into_inner());
                            let k = s.connections;
                            s.connections += 1;
                            (s.parts.get(k).cloned().unwrap_or_default(), s.close, s.ack)
                        };
                        tokio::spawn(serve(tcp, part, close, ack));
                    }
                });
            });
            (addr, script)
        })
        .clone()
}

async fn serve(tcp: tokio::net::TcpStream, part: Vec<Message>, close: bool, ack: bool) {
    let Ok(mut ws) = tokio_tungstenite::accept_async(tcp).await else {
        return;
    };
    for m in part {
        if ws.send(m).await.is_err() {
            return;
        }
    }
    if close {
        let _ = ws.close(None).await;
    }
    let mut received = 0u64;
    while let Some(Ok(m)) = ws.next().await {
        if let Message::Binary(b) = &m {
            received += b.len() as u64 / 2;
            if ack {
                let text = format!(r#"{{"type":"clearvox.ack","received":{received}}}"#);
                if ws.send(Message::text(text)).await.is_err() {
                    return;
                }
            }
        }
    }
}

fn parse(data: &[u8]) -> Vec<Vec<Message>> {
    let mut parts = vec![Vec::new()];
    for line in data.split(|&b| b == b'\n').take(64) {
        let Some((&kind, rest)) = line.split_first() else {
            continue;
        };
        let part = parts.last_mut().expect("one part at least");
        match kind {
            b'T' => part.push(Message::text(String::from_utf8_lossy(rest).into_owned())),
            b'B' => part.push(Message::binary(rest.to_vec())),
            b'P' => part.push(Message::Ping(rest.to_vec().into())),
            b'C' => part.push(Message::Close(None)),
            b'-' if parts.len() < 4 => parts.push(Vec::new()),
            _ => {}
        }
    }
    parts
}

/// Longest `wait` may take beyond the finish timeout before it counts as a hang.
const SLACK: Duration = Duration::from_secs(10);

fuzz_target!(|data: &[u8]| {
    let Some((&options, rest)) = data.split_first() else {
        return;
    };
    let (addr, script) = server();
    *script.lock().unwrap_or_else(|e| e.into_inner()) = Script {
        parts: parse(rest),
        close: options & 8 != 0,
        ack: options & 16 != 0,
        connections: 0,
    };
    let openai = options & 2 != 0;
    let config = StreamConfig {
        protocol: if openai {
            Protocol::Openai
        } else {
            Protocol::Raw
        },
        resume: options & 1 != 0,
        events: options & 4 != 0,
        packet_ms: 20,
        buffer_s: 0.5,
        connect_timeout_ms: 2_000,
        backoff_initial_ms: 5,
        backoff_max_ms: 20,
        resume_wait_ms: 50,
        finish_timeout_s: 0.2,
        queue_frames: 64,
        ..StreamConfig::new(format!("ws://{addr}/"))
    };
    let started = Instant::now();
    let Ok((mut sink, handle)) = connect(&config, None) else {
        return;
    };

    let rate = if options & 128 != 0 {
        48_000
    } else {
        config.rate()
    };
    let frame_len = rate as usize / 100;
    let frames = [2usize, 10, 30, 60][usize::from(options >> 5 & 3)];
    let samples: Vec<f32> = (0..frame_len)
        .map(|n| 0.2 * (n as f32 * 0.07).sin())
        .collect();
    for k in 0..frames {
        let position = (k * frame_len) as u64;
        let events = match k % 10 {
            1 => vec![VadEvent {
                kind: VadEventKind::SpeechStart,
                position: position.saturating_sub(300),
            }],
            7 => vec![VadEvent {
                kind: VadEventKind::SpeechEnd,
                position,
            }],
            _ => Vec::new(),
        };
        sink.frame(&EnhancedFrame {
            samples: &samples,
            rate,
            position,
            events: &events,
        });
        if k == frames / 2 {
            handle.clear_input();
        }
    }
    sink.finish();
    let stats = handle.wait().expect("the network thread ends");
    let took = started.elapsed();
    assert!(
        took < Duration::from_secs_f64(config.finish_timeout_s) + SLACK,
        "the client took {took:?} to finish"
    );
    assert!(stats.resent_samples <= stats.samples_sent, "{stats:?}");
    assert!(
        stats.ack_rtt_ms.is_finite() && stats.ack_rtt_mean_ms.is_finite(),
        "{stats:?}"
    );
});
