//! Who the receiver serves (`clearvox serve` as a child): the bearer token, required off
//! loopback; and who owns a stream, its creator, who alone may resume it or read its
//! length, with the resume key it was given.
//!
//! The receiver under test is this build's `clearvox`, or the binary `CLEARVOX_SERVE_BIN`
//! names (to run these tests against another build).

use std::net::SocketAddr;
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use futures_util::{SinkExt, StreamExt};
use serde_json::{json, Value};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::http::{HeaderName, HeaderValue, Response};
use tokio_tungstenite::tungstenite::{Error as WsError, Message};
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

use crate::support::stream::{Captured, ChildGuard};
use clearvox::stream::protocol::pcm16_to_bytes;
use clearvox::stream::server::RESUME_KEY_HEADER;

/// Longest anything a test waits for may take.
pub const WAIT: Duration = Duration::from_secs(20);

const TOKEN: &str = "serve-test-token-5f2c9a";

// ---------------------------------------------------------------------------------------
// The receiver as a child process.

/// A running `clearvox serve`, killed when dropped.
pub struct ServeChild {
    pub guard: ChildGuard,
    pub addr: SocketAddr,
    stderr: Captured,
}

/// The `clearvox` binary whose receiver is tested.
fn serve_bin() -> std::ffi::OsString {
    std::env::var_os("CLEARVOX_SERVE_BIN")
        .unwrap_or_else(|| crate::support::clearvox_binary().into())
}

/// `clearvox serve --out OUT ARGS...` with `env`, under `sh -c "ulimit -n N"` if
/// `open_files` is given; `Err(stderr)` if it exits or prints no `listening on` line
/// within 10 s.
pub fn try_serve(
    out: &Path,
    args: &[&str],
    env: &[(&str, &str)],
    open_files: Option<u32>,
) -> Result<ServeChild, String> {
    let mut command = match open_files {
        Some(n) => {
            let mut c = Command::new("sh");
            c.arg("-c")
                .arg(format!("ulimit -n {n} && exec \"$0\" \"$@\""))
                .arg(serve_bin());
            c
        }
        None => Command::new(serve_bin()),
    };
    command
        .arg("serve")
        .arg("--out")
        .arg(out)
        .args(args)
        .envs(env.iter().copied())
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    let mut child = command.spawn().expect("clearvox serve starts");
    let (tx, rx) = mpsc::channel();
    let stderr = Captured::new(child.stderr.take().expect("stderr is piped"), Some(tx));
    let mut guard = ChildGuard::new(child, "clearvox serve");
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match rx.recv_timeout(left) {
            Ok(line) => {
                if let Some(url) = line.strip_prefix("listening on ") {
                    let addr = url.rsplit("://").next().unwrap().trim().parse().unwrap();
                    return Ok(ServeChild {
                        guard,
                        addr,
                        stderr,
                    });
                }
            }
            Err(_) => {
                guard.kill();
                return Err(stderr.finish());
            }
        }
    }
}

/// [`try_serve`] on 127.0.0.1:0, which must start.
pub fn serve(out: &Path, args: &[&str], env: &[(&str, &str)]) -> ServeChild {
    let mut all = vec!["--listen", "127.0.0.1:0"];
    all.extend_from_slice(args);
    try_serve(out, &all, env, None).unwrap_or_else(|e| panic!("clearvox serve: {e}"))
}

impl ServeChild {
    /// What it printed on stderr so far.
    pub fn stderr(&self) -> String {
        self.stderr.text()
    }
}

// ---------------------------------------------------------------------------------------
// A client.

pub type Ws = WebSocketStream<MaybeTlsStream<TcpStream>>;

/// A handshake's outcome: the socket and the answer's resume key, or the refusal's HTTP
/// status and body.
pub async fn handshake(
    addr: SocketAddr,
    headers: &[(&str, &str)],
) -> Result<(Ws, Option<String>), (u16, String)> {
    let mut req = format!("ws://{addr}/").into_client_request().unwrap();
    for (name, value) in headers {
        req.headers_mut().append(
            HeaderName::from_bytes(name.as_bytes()).unwrap(),
            HeaderValue::from_str(value).unwrap(),
        );
    }
    let connecting = tokio_tungstenite::connect_async(req);
    match tokio::time::timeout(WAIT, connecting).await {
        Err(_) => panic!("the receiver neither served nor refused a client within {WAIT:?}"),
        Ok(Ok((ws, response))) => Ok((ws, key_of(&response))),
        Ok(Err(WsError::Http(response))) => {
            let body = response
                .body()
                .as_ref()
                .map(|b| String::from_utf8_lossy(b).into_owned())
                .unwrap_or_default();
            Err((response.status().as_u16(), body))
        }
        Ok(Err(e)) => Err((0, e.to_string())),
    }
}

fn key_of<T>(response: &Response<T>) -> Option<String> {
    response
        .headers()
        .get(RESUME_KEY_HEADER)
        .map(|v| v.to_str().unwrap().to_string())
}

/// The next text message, as JSON; `None` once the receiver closed.
pub async fn next_json(ws: &mut Ws) -> Option<Value> {
    loop {
        let m = tokio::time::timeout(WAIT, ws.next())
            .await
            .expect("a message from the receiver in time");
        match m {
            Some(Ok(Message::Text(t))) => return Some(serde_json::from_str(t.as_str()).unwrap()),
            Some(Ok(Message::Close(_))) | None | Some(Err(_)) => return None,
            Some(Ok(_)) => {}
        }
    }
}

/// Sends `n` samples of audio and waits for the ack that covers `upto`.
async fn audio_acked(ws: &mut Ws, n: usize, upto: u64) {
    let samples: Vec<i16> = (0..n).map(|i| (i % 100) as i16).collect();
    ws.send(Message::binary(pcm16_to_bytes(&samples)))
        .await
        .unwrap();
    loop {
        let m = next_json(ws).await.expect("the connection is still served");
        if m["type"] == "clearvox.ack" && m["received"].as_u64().unwrap() >= upto {
            return;
        }
    }
}

/// The lines of a stream's log.
fn log_lines(out: &Path, id: &str) -> Vec<Value> {
    std::fs::read_to_string(out.join(format!("{id}.jsonl")))
        .unwrap_or_default()
        .lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect()
}

// ---------------------------------------------------------------------------------------
// The token.

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_token_is_required_off_loopback_and_checked() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("out");
    // Off loopback without a token: refused at start, in one line naming the option.
    match try_serve(&out, &["--listen", "0.0.0.0:0", "--insecure"], &[], None) {
        Ok(child) => panic!(
            "clearvox serve listens on 0.0.0.0 without a token: {}",
            child.stderr()
        ),
        Err(stderr) => {
            let line = stderr.lines().last().unwrap_or_default();
            assert!(line.contains("--token-env"), "{stderr}");
        }
    }
    // A variable that is not set: refused at start too.
    let err = try_serve(
        &out,
        &["--listen", "127.0.0.1:0", "--token-env", "NO_SUCH_VAR_7f3"],
        &[],
        None,
    )
    .err()
    .expect("no token, no receiver");
    assert!(err.contains("NO_SUCH_VAR_7f3"), "{err}");

    let server = serve(
        &out,
        &["--token-env", "SERVE_TOKEN"],
        &[("SERVE_TOKEN", TOKEN)],
    );
    let bearer = format!("Bearer {TOKEN}");
    let wrong = format!("Bearer {TOKEN}x");
    for (headers, reason) in [
        (vec![], "missing"),
        (vec![("Authorization", wrong.as_str())], "wrong token"),
        (vec![("Authorization", "Basic c2VydmU=")], "Bearer"),
        (
            vec![
                ("Authorization", wrong.as_str()),
                ("X-Clearvox-Session", "tok-1"),
            ],
            "wrong token",
        ),
    ] {
        let (status, body) = handshake(server.addr, &headers)
            .await
            .err()
            .unwrap_or_else(|| panic!("served without the token: {headers:?}"));
        assert_eq!(status, 401, "{headers:?}: {body}");
        assert_eq!(body.lines().count(), 1, "{body}");
        assert!(body.contains(reason), "{headers:?}: {body}");
        assert!(!body.contains(TOKEN), "{body}");
    }
    assert!(
        !out.join("tok-1.jsonl").exists() && !out.join("tok-1.key").exists(),
        "nothing is written for a client without the token"
    );
    let (mut ws, _) = handshake(
        server.addr,
        &[
            ("Authorization", bearer.as_str()),
            ("X-Clearvox-Session", "tok-1"),
            ("X-Clearvox-Resume", "1"),
        ],
    )
    .await
    .expect("the right token is served");
    assert_eq!(next_json(&mut ws).await.unwrap()["type"], "clearvox.resume");
    audio_acked(&mut ws, 1_600, 1_600).await;
    ws.close(None).await.unwrap();
    assert!(!server.stderr().contains(TOKEN));
}

// ---------------------------------------------------------------------------------------
// Ownership.

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn only_its_creator_resumes_a_stream_or_reads_its_length() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().to_path_buf();
    let server = serve(&out, &[], &[]);
    let named = |key: Option<&str>| {
        let mut h = vec![("X-Clearvox-Session", "own-1"), ("X-Clearvox-Resume", "1")];
        if let Some(k) = key {
            h.push((RESUME_KEY_HEADER, k));
        }
        h.into_iter()
            .map(|(a, b)| (a.to_string(), b.to_string()))
            .collect::<Vec<_>>()
    };

    // The creator gets a key, once.
    let first = named(None);
    let (mut a, key) = handshake(server.addr, &refs(&first)).await.expect("served");
    let key = key.expect("a new stream's answer holds its resume key");
    assert_eq!(key.len(), 64, "{key}");
    assert_eq!(next_json(&mut a).await.unwrap()["received"], 0);
    a.send(Message::text(
        json!({"type": "clearvox.resume_from", "sample": 0}).to_string(),
    ))
    .await
    .unwrap();
    audio_acked(&mut a, 1_600, 1_600).await;

    // Another client naming the stream, without the key or with a wrong one: refused
    // (403) before it is told the stream's length, and the live connection goes on.
    let wrong = "0".repeat(64);
    for attempt in [named(None), named(Some(&wrong))] {
        let (status, body) = handshake(server.addr, &refs(&attempt))
            .await
            .expect_err("a client without the stream's key is refused");
        assert_eq!(status, 403, "{body}");
        assert!(body.contains("X-Clearvox-Resume-Key"), "{body}");
    }
    audio_acked(&mut a, 1_600, 3_200).await;
    let log = log_lines(&out, "own-1");
    let connected = log.iter().filter(|l| l["type"] == "connected").count();
    assert_eq!(connected, 1, "a refused client touches nothing: {log:?}");
    assert!(log.iter().all(|l| l["type"] != "disconnected"), "{log:?}");

    // The key is kept as a digest only, readable by the receiver's user alone.
    let stored = std::fs::read_to_string(out.join("own-1.key")).unwrap();
    assert!(!stored.contains(&key));
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(out.join("own-1.key"))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
    }

    // With the key: resumed, told the length, and the old connection is let go.
    let again = named(Some(&key));
    let (mut b, new_key) = handshake(server.addr, &refs(&again))
        .await
        .expect("the creator resumes");
    assert_eq!(new_key, None, "the key is given once");
    assert_eq!(next_json(&mut b).await.unwrap()["received"], 3_200);
    assert_eq!(
        next_json(&mut a).await,
        None,
        "the old connection is closed"
    );
    b.close(None).await.unwrap();

    // An unnamed stream's id cannot be taken over by naming it.
    let (mut u, _) = handshake(server.addr, &[]).await.expect("served");
    u.send(Message::binary(pcm16_to_bytes(&[1i16; 160])))
        .await
        .unwrap();
    let t0 = Instant::now();
    let unnamed = loop {
        let found = std::fs::read_dir(&out)
            .unwrap()
            .filter_map(|e| {
                let name = e.unwrap().file_name().to_string_lossy().into_owned();
                name.strip_suffix(".wav").map(str::to_string)
            })
            .find(|id| id.starts_with("conn-"));
        if let Some(id) = found {
            break id;
        }
        assert!(t0.elapsed() < WAIT, "the unnamed stream is written");
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    let (status, body) = handshake(
        server.addr,
        &[
            ("X-Clearvox-Session", unnamed.as_str()),
            ("X-Clearvox-Resume", "1"),
        ],
    )
    .await
    .expect_err("an unnamed stream is nobody's to resume");
    assert_eq!(status, 403, "{body}");
    u.send(Message::binary(pcm16_to_bytes(&[1i16; 160])))
        .await
        .expect("the unnamed connection is still served");
    let log = log_lines(&out, &unnamed);
    assert_eq!(log.iter().filter(|l| l["type"] == "connected").count(), 1);
    assert!(log.iter().all(|l| l["type"] != "disconnected"), "{log:?}");
    u.close(None).await.unwrap();
}

/// A client that chose its own key holds the stream from its first connection, though
/// it never read that connection's answer (lost in transit, say): the receiver keeps the
/// key the client sent and gives none of its own.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_key_the_client_chose_survives_a_lost_first_answer() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().to_path_buf();
    let server = serve(&out, &[], &[]);
    let mine = "c0ffee".repeat(8) + "0123456789abcdef";
    let with = |key: &str| keyed("own-2", key);
    let (mut a, answer) = handshake(server.addr, &refs(&with(&mine)))
        .await
        .expect("a new stream is created with the client's key");
    assert_eq!(answer, None, "the client's own key is not replaced");
    assert_eq!(next_json(&mut a).await.unwrap()["received"], 0);
    a.send(Message::text(
        json!({"type": "clearvox.resume_from", "sample": 0}).to_string(),
    ))
    .await
    .unwrap();
    audio_acked(&mut a, 1_600, 1_600).await;
    drop(a);

    let (status, body) = handshake(server.addr, &refs(&with(&"f".repeat(64))))
        .await
        .expect_err("another key is refused");
    assert_eq!(status, 403, "{body}");
    let (mut b, answer) = handshake(server.addr, &refs(&with(&mine)))
        .await
        .expect("the client's own key resumes the stream");
    assert_eq!(answer, None);
    assert_eq!(next_json(&mut b).await.unwrap()["received"], 1_600);
    b.close(None).await.unwrap();

    // While a stream's creator has sent nothing yet (no file holds its key), another
    // client naming it with another key is refused, and the creator goes on.
    let creator = "c".repeat(64);
    let with4 = |key: &str| keyed("own-4", key);
    let (mut first, _) = handshake(server.addr, &refs(&with4(&creator)))
        .await
        .expect("served");
    assert_eq!(next_json(&mut first).await.unwrap()["received"], 0);
    let (mut other, _) = handshake(server.addr, &refs(&with4(&"d".repeat(64))))
        .await
        .expect("no key file yet: the handshake passes");
    assert_eq!(
        next_json(&mut other).await,
        None,
        "but the stream refuses the other key"
    );
    first
        .send(Message::text(
            json!({"type": "clearvox.resume_from", "sample": 0}).to_string(),
        ))
        .await
        .unwrap();
    audio_acked(&mut first, 800, 800).await;
    first.close(None).await.unwrap();
    assert!(out.join("own-4.key").exists());

    // A key too short to be a secret creates no stream.
    let short = keyed("own-3", "1234");
    let (status, body) = handshake(server.addr, &refs(&short))
        .await
        .expect_err("a short key is refused");
    assert_eq!(status, 403, "{body}");
    assert!(body.contains("32 to 256 bytes"), "{body}");
    assert!(!out.join("own-3.key").exists());
}

/// The headers of a client that names the stream `id`, asks to resume it, and presents
/// `key` as its resume key.
fn keyed(id: &str, key: &str) -> Vec<(String, String)> {
    vec![
        ("X-Clearvox-Session".to_string(), id.to_string()),
        ("X-Clearvox-Resume".to_string(), "1".to_string()),
        (RESUME_KEY_HEADER.to_string(), key.to_string()),
    ]
}

/// `headers` as the pairs [`handshake`] takes.
fn refs(headers: &[(String, String)]) -> Vec<(&str, &str)> {
    headers
        .iter()
        .map(|(a, b)| (a.as_str(), b.as_str()))
        .collect()
}
