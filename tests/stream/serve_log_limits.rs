//! The receiver's limits: a connection that sends nothing leaves no file, a stream's
//! log takes a bounded number of lines and bytes (text messages beyond are refused,
//! audio goes on), and a big log is read back in bounded memory without holding up
//! other streams' handshakes.

use std::io::{BufRead, BufReader, Read, Seek, SeekFrom, Write};
use std::net::SocketAddr;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use serde_json::json;
use tokio::sync::mpsc;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::protocol::CloseFrame;
use tokio_tungstenite::tungstenite::Message;

use super::serve::{
    disconnected, files, plant_key, read_wav, signal, try_connect, Client, Opts, Ws, WAIT,
};
use clearvox::stream::server::{Server, ServerConfig, SessionReport, MAX_CLIENT_LINES};

/// A version line, as every log starts.
const VERSION: &str = "{\"type\":\"log\",\"t\":1,\"version\":2}\n";

/// A server whose connection reports come through the channel returned.
fn start_reporting(dir: &Path) -> (SocketAddr, mpsc::UnboundedReceiver<SessionReport>) {
    let (tx, rx) = mpsc::unbounded_channel();
    let server = Server::bind(ServerConfig {
        listen: "127.0.0.1:0".parse().unwrap(),
        out: dir.to_path_buf(),
        tls: None,
        token: None,
        limits: Default::default(),
        respond_with: None,
    })
    .unwrap()
    .on_connection_end(move |r| {
        let _ = tx.send(r.clone());
    });
    let addr = server.local_addr();
    // Stopped with the test's runtime.
    tokio::spawn(server.run(std::future::pending()));
    (addr, rx)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_connection_that_sends_nothing_leaves_no_file() {
    let dir = tempfile::tempdir().unwrap();
    let (addr, mut reports) = start_reporting(dir.path());
    let named = Client::open(
        addr,
        Opts {
            session: Some("idle"),
            resume: true,
            query: "?rate=5",
            ..Opts::default()
        },
    )
    .await;
    let unnamed = Client::open(addr, Opts::default()).await;
    named.close().await;
    unnamed.close().await;
    for _ in 0..2 {
        let r = tokio::time::timeout(WAIT, reports.recv())
            .await
            .expect("a report in time")
            .unwrap();
        assert_eq!((r.samples, r.protocol), (0, None), "{r}");
    }
    let left: Vec<_> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert!(left.is_empty(), "{left:?}");
}

/// Reads until the server's Close frame.
async fn close_frame(ws: &mut Ws) -> Option<CloseFrame> {
    loop {
        let m = tokio::time::timeout(WAIT, ws.next())
            .await
            .expect("the server closes in time");
        match m {
            Some(Ok(Message::Close(frame))) => return frame,
            Some(Ok(_)) => continue,
            _ => panic!("no Close frame"),
        }
    }
}

/// The log's `client` lines.
fn client_lines(log: &Path) -> usize {
    std::fs::read_to_string(log)
        .unwrap()
        .lines()
        .filter(|l| l.starts_with("{\"type\":\"client\""))
        .count()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn events_beyond_the_cap_are_refused_and_audio_goes_on() {
    let dir = tempfile::tempdir().unwrap();
    let (wav, log) = files(dir.path(), "full");
    let before = MAX_CLIENT_LINES as usize - 5;
    let mut text = String::from(VERSION);
    for _ in 0..before {
        text.push_str("{\"type\":\"client\",\"t\":1,\"message\":{\"type\":\"x\"}}\n");
    }
    std::fs::write(&log, text).unwrap();
    plant_key(dir.path(), "full");
    let (addr, _reports) = start_reporting(dir.path());

    let o = Opts {
        session: Some("full"),
        ..Opts::default()
    };
    let mut ws = try_connect(addr, &o).await.unwrap();
    for i in 0..6 {
        let m = json!({"type": "x", "i": i}).to_string();
        ws.send(Message::text(m)).await.unwrap();
    }
    let frame = close_frame(&mut ws).await.expect("a Close frame");
    assert_eq!(frame.code, CloseCode::Policy);
    assert!(frame.reason.contains("no more text messages"), "{frame:?}");
    disconnected(&log, 1).await;
    assert_eq!(
        client_lines(&log),
        MAX_CLIENT_LINES as usize,
        "the sixth is not logged"
    );

    // Audio is still taken; a text message is not.
    let sent = signal(640, 31);
    let (mut c, received) = Client::resume(addr, "full").await;
    assert_eq!(received, 0);
    c.audio(&sent, 320).await;
    c.acks_until(640).await;
    c.json(json!({"type": "speech_started", "sample": 0})).await;
    assert_eq!(c.next().await, None, "closed");
    disconnected(&log, 2).await;
    assert_eq!(read_wav(&wav).1, sent);
    assert_eq!(client_lines(&log), MAX_CLIENT_LINES as usize);
}

// ---------------------------------------------------------------------------------------
// `clearvox serve` as a child, to measure its memory and to stall its reading of a log.

/// `clearvox serve` on `out`, killed when dropped.
struct ServeChild {
    child: std::process::Child,
    addr: SocketAddr,
}

impl ServeChild {
    fn spawn(out: &Path) -> ServeChild {
        let mut child = Command::new(env!("CARGO_BIN_EXE_clearvox"))
            .args(["serve", "--listen", "127.0.0.1:0", "--out"])
            .arg(out)
            .stderr(Stdio::piped())
            .stdout(Stdio::null())
            .spawn()
            .unwrap();
        let mut stderr = BufReader::new(child.stderr.take().unwrap());
        let mut first = String::new();
        stderr.read_line(&mut first).unwrap();
        // The reports that follow, read so that the pipe never fills.
        std::thread::spawn(move || std::io::copy(&mut stderr, &mut std::io::sink()));
        let addr = first
            .trim()
            .strip_prefix("listening on ws://")
            .unwrap_or_else(|| panic!("{first:?}"))
            .parse()
            .unwrap();
        ServeChild { child, addr }
    }

    /// The most memory the process has held so far (its peak resident set), bytes.
    #[cfg(target_os = "linux")]
    fn peak_rss(&self) -> u64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.child.id())).unwrap();
        let kb: u64 = status
            .lines()
            .find_map(|l| l.strip_prefix("VmHWM:"))
            .and_then(|v| v.trim().strip_suffix("kB"))
            .and_then(|v| v.trim().parse().ok())
            .unwrap_or_else(|| panic!("no VmHWM in {status}"));
        kb * 1024
    }
}

impl Drop for ServeChild {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A log of `bytes` or a little more: receiver's records, one in a thousand a client's
/// message.
fn write_big_log(path: &Path, bytes: u64) {
    let mut w = std::io::BufWriter::new(std::fs::File::create(path).unwrap());
    w.write_all(VERSION.as_bytes()).unwrap();
    let record = format!(
        "{{\"type\":\"disconnected\",\"t\":1,\"reason\":\"{}\",\"received\":0}}\n",
        "x".repeat(900)
    );
    let mut written = 0;
    let mut n = 0u64;
    while written < bytes {
        let line = if n.is_multiple_of(1000) {
            format!("{{\"type\":\"client\",\"t\":1,\"event\":\"speech_started\",\"sample\":{n},\"message\":{{\"type\":\"speech_started\",\"sample\":{n}}}}}\n")
        } else {
            record.clone()
        };
        w.write_all(line.as_bytes()).unwrap();
        written += line.len() as u64;
        n += 1;
    }
    w.flush().unwrap();
}

/// The log's last `len` bytes, as text.
fn tail(path: &Path, len: u64) -> String {
    let mut f = std::fs::File::open(path).unwrap();
    let size = f.metadata().unwrap().len();
    f.seek(SeekFrom::Start(size.saturating_sub(len))).unwrap();
    let mut text = String::new();
    f.read_to_string(&mut text).unwrap();
    text
}

#[cfg(target_os = "linux")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_big_log_is_read_back_in_bounded_memory() {
    const LOG_BYTES: u64 = 150 << 20;
    let dir = tempfile::tempdir().unwrap();
    let (wav, log) = files(dir.path(), "big");
    write_big_log(&log, LOG_BYTES);
    plant_key(dir.path(), "big");
    let server = ServeChild::spawn(dir.path());
    let before = server.peak_rss();

    let (mut c, received) = Client::resume(server.addr, "big").await;
    assert_eq!(received, 0);
    let grown = server.peak_rss().saturating_sub(before);
    assert!(
        grown < 48 << 20,
        "reading a {} MiB log took {} MiB more",
        LOG_BYTES >> 20,
        grown >> 20
    );
    // The log is over its 64 MiB: audio is taken, a text message is not.
    let sent = signal(320, 32);
    c.audio(&sent, 320).await;
    c.acks_until(320).await;
    c.json(json!({"type": "speech_started", "sample": 0})).await;
    assert_eq!(c.next().await, None, "closed");
    let t0 = std::time::Instant::now();
    while !tail(&log, 4096).contains("MiB, the most it takes") {
        assert!(
            t0.elapsed() < WAIT,
            "the reason is logged: {}",
            tail(&log, 512)
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(read_wav(&wav).1, sent);
    eprintln!(
        "a {} MiB log read back with {} MiB more at the peak",
        LOG_BYTES >> 20,
        grown >> 20
    );
}

/// Makes `path` a named pipe: a log whose reading the test holds up at will.
#[cfg(unix)]
fn mkfifo(path: &Path) {
    use std::os::unix::ffi::OsStrExt;
    let name = std::ffi::CString::new(path.as_os_str().as_bytes()).unwrap();
    assert_eq!(unsafe { libc::mkfifo(name.as_ptr(), 0o600) }, 0);
}

#[cfg(unix)]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn another_streams_handshake_does_not_wait_for_a_log_being_read() {
    let dir = tempfile::tempdir().unwrap();
    let (_, log) = files(dir.path(), "slow");
    mkfifo(&log);
    plant_key(dir.path(), "slow");
    let server = ServeChild::spawn(dir.path());

    // The writer of `slow`'s log: half of it, then the rest when told.
    let (written_tx, mut written) = mpsc::unbounded_channel::<()>();
    let (finish, finish_rx) = std::sync::mpsc::channel::<()>();
    let fifo = log.clone();
    let writer = std::thread::spawn(move || {
        // Opens once the receiver opens the log to read it.
        let mut f = std::fs::OpenOptions::new().write(true).open(&fifo).unwrap();
        f.write_all(VERSION.as_bytes()).unwrap();
        for _ in 0..100 {
            f.write_all(b"{\"type\":\"disconnected\",\"t\":1,\"reason\":\"x\",\"received\":0}\n")
                .unwrap();
        }
        let _ = written_tx.send(());
        let _ = finish_rx.recv();
    });

    let mut slow = Client::open(
        server.addr,
        Opts {
            session: Some("slow"),
            resume: true,
            ..Opts::default()
        },
    )
    .await;
    tokio::time::timeout(WAIT, written.recv())
        .await
        .expect("the receiver opens the log");
    // `slow`'s log is being read, and waits for the rest: another stream is served.
    let (quick, received) = Client::resume(server.addr, "quick").await;
    assert_eq!(received, 0);
    assert!(
        slow.rx.try_recv().is_err(),
        "no greeting before its log is read"
    );
    drop(finish);
    writer.join().unwrap();
    let hello = slow.next().await.expect("a clearvox.resume");
    assert_eq!(hello["type"], "clearvox.resume", "{hello}");
    quick.close().await;
}
