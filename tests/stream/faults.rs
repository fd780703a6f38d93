//! The stream across faults, over loopback: a `--realtime` stream of a 15 s input (test
//! data one after the other) while
//!
//! - the receiver (`clearvox serve`) is killed with SIGKILL, some times after hanging
//!   (SIGSTOP) so that audio is stuck in its socket, and restarted on the same port and
//!   folder, five times;
//! - a TCP proxy between client and receiver (written here, with 30 ms of delay each way
//!   so that audio is always in flight) cuts every connection at random moments (seeded);
//! - the proxy loses everything for 2 s (a blackhole, then refusals) while the client's
//!   buffer holds only 0.5 s.
//!
//! In the first two the receiver's file is the offline enhancement, complete, in order and
//! without duplicates, and the client says how often it reconnected and how much it sent
//! again; in the third, exactly what the client says it dropped is missing, where the
//! receiver's gap lines say, and everything else is intact (and the command fails,
//! saying how much did not reach the backend).

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::atomic::{AtomicU64, AtomicU8, Ordering};
use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio::time::{sleep_until, Instant};

use crate::support::stream::*;
use crate::support::{f64_field, u64_field};

/// Length of the faulted streams, s.
const SECONDS: f64 = 15.0;

/// A 15 s input of the 48 kHz test voices, one after the other.
fn long_input(dir: &Path) -> std::path::PathBuf {
    let path = dir.join("long.wav");
    let seconds = concatenate(&[F32_48K, F32_48K_FAN], SECONDS, &path);
    assert!((seconds - SECONDS).abs() < 1e-3);
    path
}

/// Sleeps until `at` after `t0`.
fn sleep_until_std(t0: std::time::Instant, at: f64) {
    let due = t0 + Duration::from_secs_f64(at);
    if let Some(wait) = due.checked_duration_since(std::time::Instant::now()) {
        std::thread::sleep(wait);
    }
}

/// What a faulted run must show when nothing may be lost: one stream, no gap, equal to
/// the offline enhancement (and to the library's whole output stream), the pipeline's
/// events once each, and a client that dropped nothing.
fn assert_complete(out: &Path, input: &Path, run: &StreamRun, dir: &Path) -> serde_json::Value {
    run.assert_success();
    let stats = run.stats();
    let id = the_stream(out).id;
    let connections = u64_field(&stats, "reconnects") as usize + 1;
    wait_ended(out, &id);
    let s = the_stream(out);
    assert_eq!(s.gaps(), [], "gaps: {:?}", s.log);
    assert_eq!(s.lines("connected").len(), connections, "{stats}");
    let expected = expected_stream(input, 16_000);
    let off = offline(input, 16_000, dir);
    assert_equals_offline(&s.samples, &off, expected.latency, "after the faults");
    assert_eq!(first_difference(&s.samples, &expected.stream), None);
    assert_eq!(
        s.speech_events(),
        expected.events,
        "each event once, in order"
    );
    assert_eq!(s.lines("stop").len(), 1);
    assert_eq!(s.lines("stop")[0]["samples"], expected.stream.len());
    assert_eq!(stats["dropped_samples"], 0, "{stats}");
    assert_eq!(stats["dropped_frames"], 0, "{stats}");
    assert_eq!(stats["acked_samples"], expected.stream.len(), "{stats}");
    stats
}

// ---------------------------------------------------------------------------------------
// (a) The receiver killed and restarted.

#[test]
fn a_receiver_killed_and_restarted_five_times_loses_and_duplicates_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let input = long_input(dir.path());
    let out = dir.path().join("out");
    let mut serve = Serve::start(&out);
    let listen = serve.addr.to_string();
    let client = StreamChild::spawn(
        &input,
        &serve.url(),
        &["--realtime", "--events", "--json"],
        &[],
    );
    let t0 = std::time::Instant::now();
    // (when, whether it hangs first): a hung receiver has audio stuck in its socket that
    // it never wrote, so the client must send it again.
    let kills = [
        (2.0, true),
        (4.6, false),
        (7.2, true),
        (9.8, false),
        (12.4, true),
    ];
    for (at, hang) in kills {
        sleep_until_std(t0, at);
        if hang {
            signal(serve.pid(), libc::SIGSTOP);
            std::thread::sleep(Duration::from_millis(300));
        }
        serve.kill();
        std::thread::sleep(Duration::from_millis(400));
        serve = Serve::start_with(&out, &listen, &[]);
    }
    let run = client.wait();
    drop(serve);
    let stats = assert_complete(&out, &input, &run, dir.path());
    let reconnects = u64_field(&stats, "reconnects");
    let resent = u64_field(&stats, "resent_samples");
    assert!(reconnects >= kills.len() as u64, "{stats}");
    // Each hang left at least 100 ms of audio unwritten.
    assert!(resent >= 3 * 1_600, "{stats}");
    eprintln!(
        "{} kills: {reconnects} reconnects, {resent} samples ({:.2} s) resent, 0 dropped, \
         wall {:.2} s",
        kills.len(),
        resent as f64 / 16_000.0,
        run.wall.as_secs_f64()
    );
}

// ---------------------------------------------------------------------------------------
// A TCP proxy that delays, cuts, blackholes and refuses.

const FORWARD: u8 = 0;
/// Connections stay open but everything read is discarded, both ways.
const BLACKHOLE: u8 = 1;
/// New connections are reset at once.
const REFUSE: u8 = 2;

struct ProxyShared {
    upstream: SocketAddr,
    delay: Duration,
    mode: AtomicU8,
    cut: watch::Sender<u64>,
    /// Connections relayed.
    connections: AtomicU64,
    /// Connections that a cut ended.
    cut_connections: AtomicU64,
    /// Bytes from the client that a cut caught in the delay line.
    cut_bytes: AtomicU64,
    /// Connections refused.
    refused: AtomicU64,
}

/// A TCP proxy on its own runtime; dropping it drops every connection.
struct Proxy {
    runtime: Option<tokio::runtime::Runtime>,
    addr: SocketAddr,
    shared: Arc<ProxyShared>,
}

impl Proxy {
    fn start(upstream: SocketAddr, delay: Duration) -> Proxy {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .unwrap();
        let listener = runtime.block_on(TcpListener::bind("127.0.0.1:0")).unwrap();
        let addr = listener.local_addr().unwrap();
        let shared = Arc::new(ProxyShared {
            upstream,
            delay,
            mode: AtomicU8::new(FORWARD),
            cut: watch::channel(0).0,
            connections: AtomicU64::new(0),
            cut_connections: AtomicU64::new(0),
            cut_bytes: AtomicU64::new(0),
            refused: AtomicU64::new(0),
        });
        runtime.spawn(accept(listener, shared.clone()));
        Proxy {
            runtime: Some(runtime),
            addr,
            shared,
        }
    }

    fn url(&self) -> String {
        format!("ws://{}/", self.addr)
    }

    fn set_mode(&self, mode: u8) {
        self.shared.mode.store(mode, Ordering::SeqCst);
    }

    /// Resets every open connection (what is in the delay line is lost).
    fn cut(&self) {
        self.shared.cut.send_modify(|epoch| *epoch += 1);
    }

    fn count(&self, c: &AtomicU64) -> u64 {
        c.load(Ordering::SeqCst)
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        if let Some(rt) = self.runtime.take() {
            rt.shutdown_timeout(Duration::from_secs(1));
        }
    }
}

async fn accept(listener: TcpListener, shared: Arc<ProxyShared>) {
    loop {
        let Ok((client, _)) = listener.accept().await else {
            continue;
        };
        if shared.mode.load(Ordering::SeqCst) == REFUSE {
            shared.refused.fetch_add(1, Ordering::SeqCst);
            let _ = client.set_zero_linger();
            drop(client);
            continue;
        }
        let cut = shared.cut.subscribe();
        let shared = shared.clone();
        tokio::spawn(async move {
            match TcpStream::connect(shared.upstream).await {
                Ok(upstream) => {
                    shared.connections.fetch_add(1, Ordering::SeqCst);
                    let _ = client.set_nodelay(true);
                    let _ = upstream.set_nodelay(true);
                    relay(client, upstream, &shared, cut).await;
                }
                Err(_) => {
                    let _ = client.set_zero_linger();
                }
            }
        });
    }
}

/// Relays both ways, each byte `delay` late, until both sides have ended or a cut.
async fn relay(
    mut client: TcpStream,
    mut upstream: TcpStream,
    shared: &ProxyShared,
    mut cut: watch::Receiver<u64>,
) {
    let mut up: VecDeque<(Instant, Vec<u8>)> = VecDeque::new();
    let mut down: VecDeque<(Instant, Vec<u8>)> = VecDeque::new();
    let mut client_buf = vec![0u8; 1 << 16];
    let mut upstream_buf = vec![0u8; 1 << 16];
    let (mut client_eof, mut upstream_eof) = (false, false);
    let (mut up_shut, mut down_shut) = (false, false);
    let reset = |a: &TcpStream, b: &TcpStream| {
        let _ = a.set_zero_linger();
        let _ = b.set_zero_linger();
    };
    loop {
        let up_due = up.front().map(|(t, _)| *t);
        let down_due = down.front().map(|(t, _)| *t);
        let blackhole = || shared.mode.load(Ordering::SeqCst) == BLACKHOLE;
        tokio::select! {
            _ = cut.changed() => {
                shared.cut_connections.fetch_add(1, Ordering::SeqCst);
                let bytes: usize = up.iter().map(|(_, b)| b.len()).sum();
                shared.cut_bytes.fetch_add(bytes as u64, Ordering::SeqCst);
                reset(&client, &upstream);
                return;
            }
            r = client.read(&mut client_buf), if !client_eof => match r {
                Ok(0) => client_eof = true,
                Ok(n) => if !blackhole() {
                    up.push_back((Instant::now() + shared.delay, client_buf[..n].to_vec()));
                },
                Err(_) => {
                    reset(&client, &upstream);
                    return;
                }
            },
            r = upstream.read(&mut upstream_buf), if !upstream_eof => match r {
                Ok(0) => upstream_eof = true,
                Ok(n) => if !blackhole() {
                    down.push_back((Instant::now() + shared.delay, upstream_buf[..n].to_vec()));
                },
                Err(_) => {
                    reset(&client, &upstream);
                    return;
                }
            },
            _ = sleep_until(up_due.unwrap_or_else(Instant::now)), if up_due.is_some() => {
                let (_, bytes) = up.pop_front().unwrap();
                if upstream.write_all(&bytes).await.is_err() {
                    reset(&client, &upstream);
                    return;
                }
            }
            _ = sleep_until(down_due.unwrap_or_else(Instant::now)), if down_due.is_some() => {
                let (_, bytes) = down.pop_front().unwrap();
                if client.write_all(&bytes).await.is_err() {
                    reset(&client, &upstream);
                    return;
                }
            }
        }
        if client_eof && up.is_empty() && !up_shut {
            let _ = upstream.shutdown().await;
            up_shut = true;
        }
        if upstream_eof && down.is_empty() && !down_shut {
            let _ = client.shutdown().await;
            down_shut = true;
        }
        if up_shut && down_shut {
            return;
        }
    }
}

// ---------------------------------------------------------------------------------------
// (b) Every connection cut at random moments.

#[test]
fn connections_cut_at_random_moments_lose_and_duplicate_nothing() {
    let seed = 0x00c1_ea7f_0c5e_ed01;
    let mut rng = Rng::new(seed);
    let cuts = rng.range_u64(5, 10) as usize;
    // Moments at least a second apart (a reconnect takes a few hundred ms at most).
    let moments: Vec<f64> = loop {
        let mut m: Vec<f64> = (0..cuts).map(|_| rng.range_f64(1.0, 13.5)).collect();
        m.sort_by(f64::total_cmp);
        if m.windows(2).all(|w| w[1] - w[0] >= 1.0) {
            break m;
        }
    };

    let dir = tempfile::tempdir().unwrap();
    let input = long_input(dir.path());
    let out = dir.path().join("out");
    let serve = Serve::start(&out);
    let proxy = Proxy::start(serve.addr, Duration::from_millis(30));
    let client = StreamChild::spawn(
        &input,
        &proxy.url(),
        &["--realtime", "--events", "--json"],
        &[],
    );
    let t0 = std::time::Instant::now();
    for &at in &moments {
        sleep_until_std(t0, at);
        proxy.cut();
    }
    let run = client.wait();
    let stats = assert_complete(&out, &input, &run, dir.path());
    let reconnects = u64_field(&stats, "reconnects");
    let resent = u64_field(&stats, "resent_samples");
    let hit = proxy.count(&proxy.shared.cut_connections);
    let in_flight = proxy.count(&proxy.shared.cut_bytes);
    assert_eq!(hit, cuts as u64, "every cut ends a connection");
    assert!(reconnects >= hit, "{stats}");
    assert_eq!(
        proxy.count(&proxy.shared.connections),
        reconnects + 1,
        "{stats}"
    );
    // 30 ms of audio are in the delay line at every cut: sent again.
    assert!(in_flight > 0);
    assert!(resent >= cuts as u64 * 320, "{stats}");
    // The acks came through the delay line both ways.
    assert!(f64_field(&stats, "ack_rtt_mean_ms") >= 55.0, "{stats}");
    eprintln!(
        "seed {seed:#x}: {cuts} cuts at {:?} s: {reconnects} reconnects, {resent} samples \
         ({:.2} s) resent, {in_flight} bytes caught in flight, 0 dropped, wall {:.2} s",
        moments
            .iter()
            .map(|m| format!("{m:.2}"))
            .collect::<Vec<_>>(),
        resent as f64 / 16_000.0,
        run.wall.as_secs_f64()
    );
}

// ---------------------------------------------------------------------------------------
// (c) An outage longer than the buffer.

#[test]
fn an_outage_longer_than_the_buffer_drops_exactly_what_is_said() {
    let dir = tempfile::tempdir().unwrap();
    let input = long_input(dir.path());
    let out = dir.path().join("out");
    let serve = Serve::start(&out);
    let proxy = Proxy::start(serve.addr, Duration::from_millis(10));
    let client = StreamChild::spawn(
        &input,
        &proxy.url(),
        &["--realtime", "--events", "--json", "--buffer-s", "0.5"],
        &[],
    );
    let t0 = std::time::Instant::now();
    // 1 s of blackhole (the client sends into the void and hears nothing), then the
    // connection is reset and new ones are refused for another second.
    sleep_until_std(t0, 4.0);
    proxy.set_mode(BLACKHOLE);
    sleep_until_std(t0, 5.0);
    proxy.set_mode(REFUSE);
    proxy.cut();
    sleep_until_std(t0, 6.0);
    proxy.set_mode(FORWARD);
    let run = client.wait();
    // Audio was lost: the command says how much, and fails.
    let last = run.stderr.lines().last().unwrap_or_default();
    assert!(!run.status.success(), "{}", run.stderr);
    assert!(
        last.starts_with("error: ") && last.contains("did not reach the backend"),
        "{}",
        run.stderr
    );
    let stats = run.stats();
    let id = the_stream(&out).id;
    let connections = u64_field(&stats, "reconnects") as usize + 1;
    wait_ended(&out, &id);
    let s = the_stream(&out);
    assert_eq!(s.lines("connected").len(), connections, "{stats}");

    let expected = expected_stream(&input, 16_000);
    let off = offline(&input, 16_000, dir.path());
    // The whole stream is the offline enhancement after the latency...
    assert_eq!(&expected.stream[expected.latency..], &off[..]);
    let total = expected.stream.len() as u64;
    let dropped = u64_field(&stats, "dropped_samples");
    let gaps = s.gaps();
    // ... the client dropped what is missing, and the receiver's gap lines say where.
    assert!(!gaps.is_empty(), "{:?}", s.log);
    assert_eq!(dropped, total - s.samples.len() as u64, "{stats}");
    assert_eq!(dropped, s.lost(), "gaps {gaps:?}, {stats}");
    // About the outage less the buffer, give or take the reconnect's backoff.
    assert!(
        (16_000..=64_000).contains(&dropped),
        "{dropped} samples dropped for a 2 s outage with a 0.5 s buffer"
    );
    assert!(gaps.iter().all(|&(a, b)| a < b && b <= total), "{gaps:?}");
    // Everything else arrived, in order: the stream without the gaps.
    let mut kept = Vec::new();
    let mut at = 0u64;
    for &(from, to) in &gaps {
        kept.extend_from_slice(&expected.stream[at as usize..from as usize]);
        at = to;
    }
    kept.extend_from_slice(&expected.stream[at as usize..]);
    assert_eq!(kept.len(), s.samples.len());
    assert_eq!(
        first_difference(&s.samples, &kept),
        None,
        "the audio that arrived is the offline audio less the gaps"
    );
    // The client said so, in the same numbers.
    let said: u64 = run
        .stderr
        .lines()
        .filter_map(|l| l.strip_prefix("warning: dropped "))
        .filter_map(|l| l.split(' ').next()?.parse::<u64>().ok())
        .sum();
    assert_eq!(said, dropped, "{}", run.stderr);
    assert!(
        run.stderr.contains("did not reach the backend"),
        "{}",
        run.stderr
    );
    let refused = proxy.count(&proxy.shared.refused);
    eprintln!(
        "2 s outage, 0.5 s buffer: {dropped} samples ({:.3} s) dropped in gaps {gaps:?}, \
         {} reconnects ({refused} attempts refused), {} samples resent",
        dropped as f64 / 16_000.0,
        stats["reconnects"],
        stats["resent_samples"],
    );
}
