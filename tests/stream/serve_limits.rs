//! What clients may hold of the receiver (`clearvox serve` as a child): idle time (pings
//! answered are not activity), handshake time, memory per connection, and connections
//! beyond the open-file limit.

use std::time::{Duration, Instant};

use futures_util::StreamExt;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::MaybeTlsStream;

use super::serve_auth::{handshake, next_json, serve, try_serve, Ws, WAIT};

/// A field of `/proc/PID/status`, kB.
fn status_kb(pid: u32, field: &str) -> u64 {
    let text = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let line = text
        .lines()
        .find(|l| l.starts_with(field))
        .unwrap_or_else(|| panic!("no {field} in /proc/{pid}/status"));
    line.split_whitespace().nth(1).unwrap().parse().unwrap()
}

/// CPU time the process used so far (user + system), in clock ticks.
fn cpu_ticks(pid: u32) -> u64 {
    let text = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
    let after = &text[text.rfind(')').unwrap() + 2..];
    let fields: Vec<&str> = after.split_whitespace().collect();
    // utime and stime are fields 14 and 15 of stat, 12 and 13 after the name.
    fields[11].parse::<u64>().unwrap() + fields[12].parse::<u64>().unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_connection_that_only_answers_pings_is_closed_when_idle() {
    let dir = tempfile::tempdir().unwrap();
    let server = serve(dir.path(), &["--idle-timeout", "1.5"], &[]);
    let (mut ws, _) = handshake(server.addr, &[]).await.expect("served");
    // Read on (which answers every ping with a pong), send nothing.
    let t0 = Instant::now();
    let mut pings = 0;
    let close = loop {
        match tokio::time::timeout(WAIT, ws.next()).await {
            Err(_) => panic!("still open after {WAIT:?}, {pings} pings answered"),
            Ok(Some(Ok(Message::Ping(_)))) => pings += 1,
            Ok(Some(Ok(Message::Close(frame)))) => break frame,
            Ok(Some(Ok(_))) => {}
            Ok(other) => panic!("the connection ended without a Close frame: {other:?}"),
        }
    };
    let elapsed = t0.elapsed();
    assert!(pings >= 1, "the receiver pings a quiet client");
    assert!(elapsed >= Duration::from_millis(1_400), "{elapsed:?}");
    let frame = close.expect("a Close frame with a reason");
    assert_eq!(frame.code, CloseCode::Away);
    assert!(frame.reason.contains("no message for 1.5 s"), "{frame:?}");

    // A client that streams is not idle.
    let (mut busy, _) = handshake(server.addr, &[]).await.expect("served");
    for _ in 0..12 {
        send_silence(&mut busy).await;
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    send_silence(&mut busy).await;
    // What came meanwhile is pings, not a Close frame.
    let until = tokio::time::Instant::now() + Duration::from_millis(300);
    while let Ok(m) = tokio::time::timeout_at(until, busy.next()).await {
        assert!(
            matches!(m, Some(Ok(Message::Ping(_) | Message::Pong(_)))),
            "a streaming client is still served after 3 s with a 1.5 s idle limit: {m:?}"
        );
    }
}

/// Sends 10 ms of silence at 16 kHz.
async fn send_silence(ws: &mut Ws) {
    futures_util::SinkExt::send(ws, Message::binary(vec![0u8; 320]))
        .await
        .expect("a streaming client is still served");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_silent_handshake_is_given_up() {
    let dir = tempfile::tempdir().unwrap();
    let server = serve(dir.path(), &["--handshake-timeout", "1"], &[]);
    let mut tcp = TcpStream::connect(server.addr).await.unwrap();
    let t0 = Instant::now();
    // Half a request, never finished.
    tcp.write_all(b"GET / HTTP/1.1\r\nHost: x\r\n")
        .await
        .unwrap();
    let mut buf = [0u8; 64];
    let n = tokio::time::timeout(WAIT, tcp.read(&mut buf))
        .await
        .expect("the receiver closes a handshake that never ends");
    assert!(matches!(n, Ok(0) | Err(_)), "{n:?}");
    assert!(
        t0.elapsed() >= Duration::from_millis(900),
        "{:?}",
        t0.elapsed()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn half_sent_huge_frames_hold_no_memory() {
    let dir = tempfile::tempdir().unwrap();
    let server = serve(dir.path(), &[], &[]);
    let pid = server.guard.id();
    let (mut warm, _) = handshake(server.addr, &[]).await.expect("served");
    warm.close(None).await.unwrap();
    let before = status_kb(pid, "VmHWM:");

    // 24 clients, each announcing an 8 MiB binary frame and sending half of it.
    const CLIENTS: usize = 24;
    const ANNOUNCED: u64 = 8 << 20;
    const SENT: usize = 4 << 20;
    let mut held = Vec::new();
    for _ in 0..CLIENTS {
        let (mut ws, _) = handshake(server.addr, &[]).await.expect("served");
        let MaybeTlsStream::Plain(tcp) = ws.get_mut() else {
            panic!("plain ws://")
        };
        let mut header = vec![0x82u8, 0x80 | 127];
        header.extend_from_slice(&ANNOUNCED.to_be_bytes());
        header.extend_from_slice(&[0, 0, 0, 0]); // mask key: the payload goes as it is
        let payload = vec![0u8; SENT];
        // The receiver may refuse the frame at its header and close: then writing fails.
        let _ = tokio::time::timeout(WAIT, async {
            tcp.write_all(&header).await?;
            tcp.write_all(&payload).await?;
            tcp.flush().await
        })
        .await;
        held.push(ws);
    }
    // Let the receiver read what it is going to read.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let peak = status_kb(pid, "VmHWM:");
    let grown_mb = peak.saturating_sub(before) / 1024;
    eprintln!("receiver peak memory grew by {grown_mb} MB for {CLIENTS} half-sent 8 MiB frames");
    assert!(
        grown_mb < 48,
        "{CLIENTS} half-sent frames grew the receiver by {grown_mb} MB"
    );
    drop(held);
    // The receiver still serves.
    let (mut ws, _) = handshake(
        server.addr,
        &[
            ("X-Clearvox-Session", "after-1"),
            ("X-Clearvox-Resume", "1"),
        ],
    )
    .await
    .expect("served after the huge frames");
    assert_eq!(next_json(&mut ws).await.unwrap()["type"], "clearvox.resume");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn out_of_file_descriptors_a_client_is_still_served_or_refused_cleanly() {
    if !cfg!(target_os = "linux") {
        eprintln!("note: skipped: the open-file limit is read from /proc on Linux only");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let server = try_serve(dir.path(), &["--listen", "127.0.0.1:0"], &[], Some(100))
        .unwrap_or_else(|e| panic!("clearvox serve under ulimit -n 100: {e}"));
    let pid = server.guard.id();

    // 60 streams that stay open and idle, each with its files (log and WAV).
    let mut idle = Vec::new();
    let (mut served, mut refused) = (0, 0);
    for i in 0..60 {
        let id = format!("fd-{i}");
        match handshake(
            server.addr,
            &[
                ("X-Clearvox-Session", id.as_str()),
                ("X-Clearvox-Resume", "1"),
            ],
        )
        .await
        {
            Ok((mut ws, _)) => match next_json(&mut ws).await {
                Some(hello) => {
                    assert_eq!(hello["type"], "clearvox.resume");
                    send_silence(&mut ws).await;
                    served += 1;
                    idle.push(ws);
                }
                None => panic!("stream {i} was accepted, then closed: {}", server.stderr()),
            },
            Err((503, body)) => {
                assert_eq!(body.lines().count(), 1, "{body}");
                refused += 1;
            }
            Err(other) => panic!("stream {i}: neither served nor refused cleanly: {other:?}"),
        }
    }
    eprintln!("under ulimit -n 100: {served} served, {refused} refused with HTTP 503");
    assert!(served >= 4, "{served} served");

    // No busy loop while full.
    let ticks = cpu_ticks(pid);
    tokio::time::sleep(Duration::from_secs(2)).await;
    let spent = cpu_ticks(pid) - ticks;
    assert!(
        spent < 50,
        "the full receiver spent {spent} ticks of CPU in 2 s"
    );

    // A normal client now: served or refused cleanly (no hang, no reset).
    match handshake(server.addr, &[]).await {
        Ok(_) => {}
        Err((503, _)) => {}
        Err(other) => panic!("a client of a full receiver: {other:?}"),
    }
    // Once the idle streams leave, a client is served again.
    drop(idle);
    let t0 = Instant::now();
    loop {
        match handshake(
            server.addr,
            &[
                ("X-Clearvox-Session", "fd-after"),
                ("X-Clearvox-Resume", "1"),
            ],
        )
        .await
        {
            Ok((mut ws, _)) => {
                assert_eq!(next_json(&mut ws).await.unwrap()["type"], "clearvox.resume");
                break;
            }
            Err((503, _)) if t0.elapsed() < WAIT => {
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            Err(other) => panic!("after the idle streams left: {other:?}"),
        }
    }
    let mut server = server;
    assert!(!server.guard.has_exited(), "{}", server.stderr());
}
