//! The transport policy and the token, on the command line: `clearvox serve` over TLS
//! with a certificate made here (rcgen) for 127.0.0.1 and localhost, trusted with
//! `--ca-file` and refused without it; plain `ws://` to a non-loopback address refused
//! without `--insecure` and, with it, streamed with a warning (inside a network namespace
//! of the test's own, where the non-loopback address lives); and a token in the
//! environment that reaches the backend's handshake and nothing else: not the client's
//! output, not the receiver's output or files, and never from the command line.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::Command;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::net::TcpListener;
use tokio_tungstenite::tungstenite::handshake::server::{ErrorResponse, Request, Response};
use tokio_tungstenite::tungstenite::http::StatusCode;

use crate::support::stream::*;

const TOKEN: &str = "sk-test-0123456789abcdef";

/// A certificate authority, and a certificate it signed for 127.0.0.1 and localhost:
/// (ca.pem, cert.pem, key.pem) in `dir`.
fn certificates(dir: &Path) -> (std::path::PathBuf, std::path::PathBuf, std::path::PathBuf) {
    let ca_key = rcgen::KeyPair::generate().unwrap();
    let mut ca_params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    ca_params
        .distinguished_name
        .push(rcgen::DnType::CommonName, "clearvox test CA");
    let ca = rcgen::CertifiedIssuer::self_signed(ca_params, ca_key).unwrap();
    let key = rcgen::KeyPair::generate().unwrap();
    let leaf =
        rcgen::CertificateParams::new(vec!["127.0.0.1".to_string(), "localhost".to_string()])
            .unwrap()
            .signed_by(&key, &*ca)
            .unwrap();
    let paths = (
        dir.join("ca.pem"),
        dir.join("cert.pem"),
        dir.join("key.pem"),
    );
    std::fs::write(&paths.0, ca.pem()).unwrap();
    std::fs::write(&paths.1, leaf.pem()).unwrap();
    std::fs::write(&paths.2, key.serialize_pem()).unwrap();
    paths
}

/// The one line of an error, checked: non-zero exit, stderr one `error:` line.
fn one_error_line(run: &StreamRun) -> String {
    assert!(
        !run.status.success(),
        "it should have failed: {}",
        run.stderr
    );
    let lines: Vec<&str> = run.stderr.lines().collect();
    assert_eq!(lines.len(), 1, "one line: {:?}", run.stderr);
    assert!(lines[0].starts_with("error: "), "{}", lines[0]);
    lines[0].to_string()
}

#[test]
fn wss_with_a_private_ca_works_and_without_it_fails_in_one_line() {
    let dir = tempfile::tempdir().unwrap();
    let (ca, cert, key) = certificates(dir.path());
    let out = dir.path().join("out");
    let serve = Serve::start_with(
        &out,
        "127.0.0.1:0",
        &[
            "--cert",
            cert.to_str().unwrap(),
            "--key",
            key.to_str().unwrap(),
        ],
    );
    assert!(
        serve.base_url.starts_with("wss://127.0.0.1:"),
        "{}",
        serve.base_url
    );
    let input = testdata(S16_16K);
    let off = offline(&input, 16_000, dir.path());
    let latency = pipeline_latency(&input, 16_000);

    // By address and by name: the certificate covers both.
    for host in ["127.0.0.1", "localhost"] {
        let url = format!("wss://{host}:{}/", serve.addr.port());
        let run = stream(&input, &url, &["--ca-file", ca.to_str().unwrap(), "--json"]);
        run.assert_success();
        assert!(!run.stderr.contains("warning"), "{}", run.stderr);
        let stats = run.stats();
        assert_eq!(stats["dropped_samples"], 0, "{stats}");
        assert_eq!(stats["acked_samples"], off.len() + latency, "{stats}");
    }
    for s in received_streams(&out) {
        assert_equals_offline(&s.samples, &off, latency, "over TLS");
    }
    assert_eq!(received_streams(&out).len(), 2);

    // Without the CA the web roots do not know the certificate.
    let url = format!("wss://127.0.0.1:{}/", serve.addr.port());
    let run = stream(&input, &url, &[]);
    let line = one_error_line(&run);
    assert!(
        line.contains("TLS") && line.contains("certificate"),
        "a TLS error about the certificate: {line}"
    );
    assert!(run.wall < Duration::from_secs(10), "{:?}", run.wall);
    eprintln!("without --ca-file: {line}");
    // Nor does plain ws:// get through to a TLS receiver.
    let run = stream(
        &input,
        &format!("ws://127.0.0.1:{}/", serve.addr.port()),
        &[],
    );
    one_error_line(&run);
    // A CA file that is not one is a TLS error too, before any connection.
    let run = stream(&input, &url, &["--ca-file", key.to_str().unwrap()]);
    let line = one_error_line(&run);
    assert!(line.contains("TLS") && line.contains("CA file"), "{line}");
    assert_eq!(
        received_streams(&out).len(),
        2,
        "no stream from the failures"
    );
    eprintln!("without --ca-file: {line}");
}

#[test]
fn plain_ws_off_loopback_needs_insecure() {
    let dir = tempfile::tempdir().unwrap();
    let input = testdata(S16_16K);
    // A TEST-NET address: refused before anything is sent anywhere.
    let run = stream(&input, "ws://192.0.2.1:9/", &[]);
    let line = one_error_line(&run);
    assert!(
        line.contains("--insecure") && line.contains("192.0.2.1"),
        "{line}"
    );
    assert!(run.wall < Duration::from_secs(5), "{:?}", run.wall);
    // The same for live (the check comes before any device is opened).
    let out = clearvox()
        .args(["live", "--duration", "1", "--stream", "ws://192.0.2.1:9/"])
        .env("ALSA_CONFIG_PATH", dir.path().join("none.conf"))
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(
        stderr
            .lines()
            .last()
            .unwrap_or_default()
            .contains("--insecure"),
        "{stderr}"
    );
    // And the receiver will not listen there in the clear without it.
    let out = clearvox()
        .args(["serve", "--listen", "192.0.2.1:0", "--out"])
        .arg(dir.path().join("out"))
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("--insecure"));
}

/// A process group, killed whole when dropped.
struct GroupGuard(std::process::Child);

impl Drop for GroupGuard {
    fn drop(&mut self) {
        // SAFETY: kill(2) on the process group this test created for its child.
        unsafe {
            libc::kill(-(self.0.id() as libc::pid_t), libc::SIGKILL);
        }
        let _ = self.0.wait();
    }
}

#[test]
fn plain_ws_off_loopback_with_insecure_streams_and_warns() {
    // A network namespace of the test's own, with only a loopback interface that also
    // carries a documentation address (198.51.100.7): not a loopback address to the
    // policy, and nothing in it can reach beyond this namespace.
    let ok = Command::new("unshare")
        .args([
            "-n",
            "sh",
            "-c",
            "ip link set lo up && ip addr add 198.51.100.7/32 dev lo",
        ])
        .output()
        .is_ok_and(|o| o.status.success());
    if !ok {
        eprintln!(
            "note: skipped: no network namespace of our own here (unshare -n and ip need root); \
             the refusal without --insecure is tested by plain_ws_off_loopback_needs_insecure"
        );
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let input = testdata(S16_16K);
    let out = dir.path().join("out");
    let script = r#"
set -u
ip link set lo up
ip addr add 198.51.100.7/32 dev lo
"$BIN" serve --listen 198.51.100.7:0 --out "$OUT" 2>"$DIR/refused.err"
echo $? >"$DIR/refused.rc"
SERVE_TOKEN=ns-test-token "$BIN" serve --listen 198.51.100.7:0 --out "$OUT" --insecure --token-env SERVE_TOKEN 2>"$DIR/serve.err" &
serve=$!
i=0
while ! grep -q '^listening on ' "$DIR/serve.err" && [ $i -lt 200 ]; do sleep 0.05; i=$((i+1)); done
url=$(sed -n 's/^listening on //p' "$DIR/serve.err")
"$BIN" stream "$IN" --url "$url/" --json >"$DIR/refused-stream.out" 2>"$DIR/refused-stream.err"
echo $? >"$DIR/refused-stream.rc"
CLEARVOX_TOKEN=ns-test-token "$BIN" stream "$IN" --url "$url/" --insecure --json >"$DIR/stream.out" 2>"$DIR/stream.err"
echo $? >"$DIR/stream.rc"
kill -INT $serve
wait $serve
echo "$url" >"$DIR/url"
"#;
    let child = Command::new("unshare")
        .args(["-n", "sh", "-c", script])
        .env("BIN", env!("CARGO_BIN_EXE_clearvox"))
        .env("OUT", &out)
        .env("DIR", dir.path())
        .env("IN", &input)
        .process_group(0)
        .spawn()
        .unwrap();
    let mut guard = GroupGuard(child);
    let t0 = std::time::Instant::now();
    while guard.0.try_wait().unwrap().is_none() {
        assert!(
            t0.elapsed() < Duration::from_secs(60),
            "the namespace script hangs"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    let read = |name: &str| std::fs::read_to_string(dir.path().join(name)).unwrap_or_default();
    let url = read("url");
    assert!(
        url.starts_with("ws://198.51.100.7:"),
        "{url} {}",
        read("serve.err")
    );
    // serve: no plain listening off loopback without --insecure.
    assert_ne!(read("refused.rc").trim(), "0");
    assert!(
        read("refused.err").contains("--insecure"),
        "{}",
        read("refused.err")
    );
    // stream: refused without --insecure, in one line naming it...
    assert_ne!(read("refused-stream.rc").trim(), "0");
    let refused = read("refused-stream.err");
    assert_eq!(refused.lines().count(), 1, "{refused}");
    assert!(refused.contains("--insecure"), "{refused}");
    // ... and with it, streamed, with a warning that the audio goes in the clear.
    let stderr = read("stream.err");
    assert_eq!(read("stream.rc").trim(), "0", "{stderr}");
    let warning = stderr
        .lines()
        .find(|l| l.starts_with("warning:"))
        .unwrap_or_else(|| panic!("no warning: {stderr}"));
    assert!(
        warning.contains("unencrypted") && warning.contains("198.51.100.7"),
        "{warning}"
    );
    let streams = received_streams(&out);
    assert_eq!(streams.len(), 1, "only the --insecure stream arrived");
    let off = offline(&input, 16_000, dir.path());
    assert_equals_offline(
        &streams[0].samples,
        &off,
        pipeline_latency(&input, 16_000),
        "--insecure",
    );
    eprintln!("{}: {warning}", url.trim());
}

// ---------------------------------------------------------------------------------------
// The token.

/// A handshake's headers, by lower-case name (every value of each).
type Headers = HashMap<String, Vec<String>>;

/// A WebSocket server that records every handshake's headers and answers 401 unless the
/// bearer token is `TOKEN`; it reads and drops whatever follows.
struct HeaderServer {
    runtime: Option<tokio::runtime::Runtime>,
    addr: SocketAddr,
    handshakes: Arc<Mutex<Vec<Headers>>>,
}

impl HeaderServer {
    fn start() -> HeaderServer {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .unwrap();
        let listener = runtime.block_on(TcpListener::bind("127.0.0.1:0")).unwrap();
        let addr = listener.local_addr().unwrap();
        let handshakes: Arc<Mutex<Vec<Headers>>> = Arc::default();
        let record = handshakes.clone();
        runtime.spawn(async move {
            while let Ok((tcp, _)) = listener.accept().await {
                let record = record.clone();
                tokio::spawn(async move {
                    // The signature tungstenite's handshake callback has.
                    #[allow(clippy::result_large_err)]
                    let callback = |req: &Request, resp: Response| {
                        let mut headers = Headers::new();
                        for (k, v) in req.headers() {
                            headers
                                .entry(k.as_str().to_string())
                                .or_default()
                                .push(v.to_str().unwrap_or("").to_string());
                        }
                        let ok =
                            headers.get("authorization") == Some(&vec![format!("Bearer {TOKEN}")]);
                        record.lock().unwrap().push(headers);
                        if ok {
                            Ok(resp)
                        } else {
                            let mut e = ErrorResponse::new(Some("unauthorized".into()));
                            *e.status_mut() = StatusCode::UNAUTHORIZED;
                            Err(e)
                        }
                    };
                    if let Ok(mut ws) = tokio_tungstenite::accept_hdr_async(tcp, callback).await {
                        use futures_util::StreamExt;
                        while let Some(Ok(_)) = ws.next().await {}
                    }
                });
            }
        });
        HeaderServer {
            runtime: Some(runtime),
            addr,
            handshakes,
        }
    }

    fn handshakes(&self) -> Vec<Headers> {
        self.handshakes.lock().unwrap().clone()
    }
}

impl Drop for HeaderServer {
    fn drop(&mut self) {
        if let Some(rt) = self.runtime.take() {
            rt.shutdown_timeout(Duration::from_secs(1));
        }
    }
}

/// Whether `haystack` holds the token, or its distinctive part, anywhere.
fn holds_token(haystack: &[u8]) -> bool {
    let needles: [&[u8]; 2] = [TOKEN.as_bytes(), b"0123456789abcdef"];
    needles
        .iter()
        .any(|n| haystack.windows(n.len()).any(|w| w == *n))
}

#[test]
fn the_token_reaches_the_handshake_and_nothing_else() {
    let dir = tempfile::tempdir().unwrap();
    let input = testdata(S16_16K);

    // The backend sees it, as a bearer token, once per connection.
    let backend = HeaderServer::start();
    let url = format!("ws://{}/v1/stream", backend.addr);
    let run = StreamChild::spawn(&input, &url, &["--json"], &[("CLEARVOX_TOKEN", TOKEN)]).wait();
    run.assert_success();
    let seen = backend.handshakes();
    assert_eq!(seen.len(), 1);
    assert_eq!(seen[0]["authorization"], [format!("Bearer {TOKEN}")]);
    assert!(!holds_token(run.stdout.as_bytes()) && !holds_token(run.stderr.as_bytes()));
    // From another variable with --token-env; none at all without one.
    let run = StreamChild::spawn(
        &input,
        &url,
        &["--token-env", "MY_BACKEND_KEY"],
        &[("MY_BACKEND_KEY", TOKEN)],
    )
    .wait();
    run.assert_success();
    assert_eq!(
        backend.handshakes()[1]["authorization"],
        [format!("Bearer {TOKEN}")]
    );
    // A wrong token: refused with HTTP 401, said in one line without the token.
    let wrong = "sk-test-wrong-0123456789abcdef";
    let run = StreamChild::spawn(&input, &url, &[], &[("CLEARVOX_TOKEN", wrong)]).wait();
    let line = one_error_line(&run);
    assert!(line.contains("401") && line.contains("token"), "{line}");
    assert!(
        !line.contains(wrong) && !holds_token(line.as_bytes()),
        "{line}"
    );
    let run = StreamChild::spawn(&input, &url, &[], &[]).wait();
    one_error_line(&run);
    assert!(!backend.handshakes()[3].contains_key("authorization"));

    // Never from the command line, in any spelling, and the value is not echoed.
    for header in [
        format!("Authorization: Bearer {TOKEN}"),
        format!("authorization:{TOKEN}"),
        "  AUTHORIZATION : x".to_string(),
    ] {
        let run = stream(&input, &url, &["--header", &header]);
        let line = one_error_line(&run);
        assert!(line.contains("environment"), "{line}");
        assert!(!holds_token(line.as_bytes()), "{line}");
    }
    assert_eq!(
        backend.handshakes().len(),
        4,
        "no connection for a refused header"
    );
    // Other headers go through.
    let run = stream(&input, &url, &["--header", "X-Test: yes"]);
    one_error_line(&run); // no token: 401
    assert_eq!(backend.handshakes()[4]["x-test"], ["yes"]);
    drop(backend);

    // The reference receiver gets it too (the client cannot tell), and it shows up in
    // none of its output nor its files.
    let out = dir.path().join("out");
    let serve = Serve::start(&out);
    let run = StreamChild::spawn(
        &input,
        &serve.url(),
        &["--json", "--events"],
        &[("CLEARVOX_TOKEN", TOKEN)],
    )
    .wait();
    run.assert_success();
    let s = the_stream(&out);
    wait_ended(&out, &s.id);
    let (serve_out, serve_err) = serve.interrupt();
    assert!(serve_err.contains("session "), "{serve_err}");
    for (what, bytes) in [
        ("client stdout", run.stdout.into_bytes()),
        ("client stderr", run.stderr.into_bytes()),
        ("server stdout", serve_out.into_bytes()),
        ("server stderr", serve_err.into_bytes()),
    ] {
        assert!(!holds_token(&bytes), "{what} holds the token");
    }
    let files: Vec<_> = std::fs::read_dir(&out)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    assert_eq!(
        files.len(),
        3,
        "the WAV, the log and the key file: {files:?}"
    );
    for f in files {
        assert!(
            !holds_token(&std::fs::read(&f).unwrap()),
            "{} holds the token",
            f.display()
        );
    }
}
