//! `clearvox stream` against hostile receivers, written here on tokio-tungstenite: one
//! that closes every connection with a policy or authentication code, one that takes
//! the first connection and answers HTTP 401 afterwards, one that drops every connection
//! (the client must back off, not storm, and say so in a few lines), one whose text is
//! full of terminal escape sequences; and credentials in the URL or a header's value,
//! which no message may show.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures_util::{SinkExt, StreamExt};
use tokio::net::TcpListener;
use tokio_tungstenite::tungstenite::handshake::server::{ErrorResponse, Request, Response};
use tokio_tungstenite::tungstenite::http::StatusCode;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::protocol::CloseFrame;
use tokio_tungstenite::tungstenite::Message;

use crate::support::stream::*;

/// What the hostile receiver does with a connection.
#[derive(Clone)]
enum Behaviour {
    /// Accepts, then closes at once with this code and reason.
    Close(u16, &'static str),
    /// Accepts the first connection and closes it (1001); answers HTTP 401 after.
    UnauthorizedAfterFirst,
    /// Accepts, sends these texts, then reads until the client leaves.
    Say(Vec<String>),
}

/// A WebSocket receiver on its own runtime that notes when each connection came.
struct Hostile {
    runtime: Option<tokio::runtime::Runtime>,
    addr: SocketAddr,
    attempts: Arc<Mutex<Vec<Instant>>>,
}

impl Hostile {
    fn start(behaviour: Behaviour) -> Hostile {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .unwrap();
        let listener = runtime.block_on(TcpListener::bind("127.0.0.1:0")).unwrap();
        let addr = listener.local_addr().unwrap();
        let attempts: Arc<Mutex<Vec<Instant>>> = Arc::default();
        let record = attempts.clone();
        runtime.spawn(async move {
            while let Ok((tcp, _)) = listener.accept().await {
                let n = {
                    let mut a = record.lock().unwrap();
                    a.push(Instant::now());
                    a.len()
                };
                tokio::spawn(serve(tcp, behaviour.clone(), n));
            }
        });
        Hostile {
            runtime: Some(runtime),
            addr,
            attempts,
        }
    }

    fn url(&self) -> String {
        format!("ws://{}/", self.addr)
    }

    fn attempts(&self) -> Vec<Instant> {
        self.attempts.lock().unwrap().clone()
    }

    /// The most connections that came within any `window`.
    fn most_within(&self, window: Duration) -> usize {
        let a = self.attempts();
        (0..a.len())
            .map(|i| a[i..].iter().take_while(|t| **t - a[i] < window).count())
            .max()
            .unwrap_or(0)
    }
}

impl Drop for Hostile {
    fn drop(&mut self) {
        if let Some(rt) = self.runtime.take() {
            rt.shutdown_timeout(Duration::from_secs(1));
        }
    }
}

async fn serve(tcp: tokio::net::TcpStream, behaviour: Behaviour, n: usize) {
    let refuse = matches!(behaviour, Behaviour::UnauthorizedAfterFirst) && n > 1;
    // The signature tungstenite's handshake callback has.
    #[allow(clippy::result_large_err)]
    let callback = move |_: &Request, resp: Response| {
        if refuse {
            let mut e = ErrorResponse::new(Some("unauthorized".into()));
            *e.status_mut() = StatusCode::UNAUTHORIZED;
            Err(e)
        } else {
            Ok(resp)
        }
    };
    let Ok(mut ws) = tokio_tungstenite::accept_hdr_async(tcp, callback).await else {
        return;
    };
    let close = |code: u16, reason: &str| {
        Message::Close(Some(CloseFrame {
            code: CloseCode::from(code),
            reason: reason.to_string().into(),
        }))
    };
    match behaviour {
        Behaviour::Close(code, reason) => {
            let _ = ws.send(close(code, reason)).await;
        }
        Behaviour::UnauthorizedAfterFirst => {
            let _ = ws.send(close(1001, "restarting")).await;
        }
        Behaviour::Say(texts) => {
            for t in texts {
                let _ = ws.send(Message::text(t)).await;
            }
        }
    }
    // Read until the client has gone (it answers a close, or closes itself).
    while let Some(Ok(_)) = ws.next().await {}
}

/// The last stderr line, which must be the one `error:` line of a failed command.
fn error_line(run: &StreamRun) -> String {
    assert!(
        !run.status.success(),
        "it should have failed: {}",
        run.stderr
    );
    let last = run.stderr.lines().last().unwrap_or_default().to_string();
    assert!(last.starts_with("error: "), "{}", run.stderr);
    last
}

#[test]
fn a_policy_or_authentication_close_ends_the_stream_with_its_reason() {
    let input = testdata(S16_16K);
    for (code, reason) in [(1008, "invalid token"), (4401, "token expired")] {
        let server = Hostile::start(Behaviour::Close(code, reason));
        let run = StreamChild::spawn(&input, &server.url(), &[], &[]).wait();
        let line = error_line(&run);
        assert!(
            line.contains(&code.to_string()) && line.contains(reason),
            "{line}"
        );
        assert!(line.contains("did not reach the backend"), "{line}");
        // Never asked again: one connection, and the command ends at once.
        assert_eq!(server.attempts().len(), 1, "{}", run.stderr);
        assert!(run.stderr.lines().count() <= 4, "{}", run.stderr);
        assert!(run.wall < Duration::from_secs(30), "{:?}", run.wall);
        eprintln!("close {code}: {line} ({:.2} s)", run.wall.as_secs_f64());
    }
}

#[test]
fn http_401_on_a_reconnect_is_final() {
    let input = testdata(S16_16K);
    let server = Hostile::start(Behaviour::UnauthorizedAfterFirst);
    let run = StreamChild::spawn(&input, &server.url(), &["--realtime"], &[]).wait();
    let line = error_line(&run);
    assert!(line.contains("401") && line.contains("token"), "{line}");
    assert!(line.contains("did not reach the backend"), "{line}");
    assert_eq!(server.attempts().len(), 2, "{}", run.stderr);
    // The realtime source stopped with the stream, not at the end of the file.
    assert!(line.contains("(streaming stopped at"), "{line}");
}

#[test]
fn a_receiver_that_drops_every_connection_gets_backoff_not_a_storm() {
    let input = testdata(S16_16K);
    let server = Hostile::start(Behaviour::Close(1011, "overloaded"));
    let run = StreamChild::spawn(&input, &server.url(), &["--json"], &[]).wait();
    let attempts = server.attempts().len();
    let burst = server.most_within(Duration::from_secs(3));
    // Waits of at least 100, 200, 400, 800, 1600 ms...: a handful in 3 s.
    assert!(burst <= 20, "{burst} attempts within 3 s");
    // The finish timeout (10 s) with waits up to 5 s: a dozen attempts at most.
    assert!(attempts <= 20, "{attempts} attempts");
    assert!(attempts >= 3, "{attempts} attempts: it should have retried");
    // The same warning is said at its 1st, 2nd, 4th, 8th... time, with the code and reason.
    let lost: Vec<&str> = run
        .stderr
        .lines()
        .filter(|l| l.contains("connection lost"))
        .collect();
    assert!(!lost.is_empty() && lost.len() <= 5, "{}", run.stderr);
    assert!(
        lost[0].contains("1011") && lost[0].contains("overloaded"),
        "{lost:?}"
    );
    let line = error_line(&run);
    assert!(line.contains("did not reach the backend"), "{line}");
    eprintln!(
        "1011 on every connection: {attempts} attempts in {:.1} s ({burst} within 3 s), {} \
         warning lines",
        run.wall.as_secs_f64(),
        lost.len()
    );
}

/// What a hostile server says: a window title, a screen clear, a carriage return that
/// would overwrite the line, a bell, and a right-to-left override.
const HOSTILE_TEXT: &str =
    "{\"type\":\"x\",\"t\":\"\x1b]0;pwned\x07\x1b[2J\rfake prompt$ \u{202e}gnp.exe\"}";

#[test]
fn server_text_is_escaped_when_asked_and_raw_into_a_pipe_by_default() {
    let input = testdata(S16_16K);
    let server = Hostile::start(Behaviour::Say(vec![HOSTILE_TEXT.to_string()]));
    let run = StreamChild::spawn(&input, &server.url(), &["--server-text", "escaped"], &[]).wait();
    run.assert_success();
    let out = run.stdout.as_bytes();
    for control in [0x1bu8, 0x07, b'\r'] {
        assert!(!out.contains(&control), "{:?}", run.stdout);
    }
    assert!(!run.stdout.contains('\u{202e}'), "{:?}", run.stdout);
    assert_eq!(
        run.stdout.trim_end(),
        r#"{"type":"x","t":"\x1b]0;pwned\x07\x1b[2J\rfake prompt$ \u{202e}gnp.exe"}"#
    );
    // `auto` (the default) passes it through to a pipe: what a program reads is the
    // server's text as it came.
    let run = StreamChild::spawn(&input, &server.url(), &[], &[]).wait();
    run.assert_success();
    assert_eq!(run.stdout.trim_end(), HOSTILE_TEXT);
}

#[test]
fn a_close_reason_reaches_stderr_escaped() {
    let input = testdata(S16_16K);
    let server = Hostile::start(Behaviour::Close(1008, "bad\x1b]0;pwned\x07token"));
    let run = StreamChild::spawn(&input, &server.url(), &[], &[]).wait();
    let line = error_line(&run);
    assert!(!run.stderr.contains('\x1b'), "{:?}", run.stderr);
    assert!(line.contains(r"bad\x1b]0;pwned\x07token"), "{line}");
}

#[test]
fn credentials_in_the_url_or_a_header_are_never_shown() {
    let input = testdata(S16_16K);
    let server = Hostile::start(Behaviour::Say(Vec::new()));
    let secret = "s3cret-pa55";
    let url = format!("ws://alice:{secret}@{}/v1", server.addr);
    let run = stream(&input, &url, &[]);
    let line = error_line(&run);
    assert!(!run.stderr.contains(secret), "{}", run.stderr);
    assert!(
        line.contains(&format!("ws://alice:***@{}/v1", server.addr)),
        "{line}"
    );
    assert!(line.contains("CLEARVOX_TOKEN"), "{line}");
    // A lone user name is often a key: hidden too.
    let url = format!("ws://{secret}@{}/v1", server.addr);
    let line = error_line(&stream(&input, &url, &[]));
    assert!(!line.contains(secret) && line.contains("***@"), "{line}");
    // A header value that a header cannot hold, or no colon at all: not echoed.
    for header in [
        format!("X-Api-Key: {secret}\x01"),
        format!("X-Api-Key {secret}"),
    ] {
        let run = stream(&input, &server.url(), &["--header", &header]);
        let line = error_line(&run);
        assert!(!run.stderr.contains(secret), "{}", run.stderr);
        assert!(line.contains("header"), "{line}");
    }
    assert_eq!(server.attempts().len(), 0, "nothing was sent anywhere");
}
