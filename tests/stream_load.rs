//! Load: 50 `clearvox stream --realtime` processes at once, 30 s of audio each, into one
//! `clearvox serve` over loopback. Every stream's file equals the offline enhancement, no
//! stream drops or reconnects, each keeps real time; the CPU time the clients took (per
//! stream) and the receiver's are printed.
//!
//! It runs with the default `cargo test` (about 35 s of wall time on 2 cores), and in a
//! test binary of its own: it loads both cores on purpose, which would starve tests run
//! beside it in the same binary, and it reads the CPU time of the process's reaped
//! children (`getrusage(RUSAGE_CHILDREN)`), which would include theirs.

mod support;

use std::time::{Duration, Instant};

use support::stream::*;

const STREAMS: usize = 50;
const SECONDS: f64 = 30.0;

/// User + system CPU time of this process's reaped children so far.
fn children_cpu() -> Duration {
    // SAFETY: getrusage(2) fills the struct it is given.
    let usage = unsafe {
        let mut u: libc::rusage = std::mem::zeroed();
        assert_eq!(libc::getrusage(libc::RUSAGE_CHILDREN, &mut u), 0);
        u
    };
    let tv = |t: libc::timeval| Duration::new(t.tv_sec as u64, t.tv_usec as u32 * 1_000);
    tv(usage.ru_utime) + tv(usage.ru_stime)
}

#[test]
fn fifty_realtime_streams_into_one_receiver_are_each_the_offline_result() {
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("long.wav");
    let seconds = concatenate(&ALL_16K, SECONDS, &input);
    let off = offline(&input, 16_000, dir.path());
    let latency = pipeline_latency(&input, 16_000);
    let out = dir.path().join("out");
    let serve = Serve::start(&out);

    let cpu0 = children_cpu();
    let t0 = Instant::now();
    let clients: Vec<StreamChild> = (0..STREAMS)
        .map(|_| StreamChild::spawn(&input, &serve.url(), &["--realtime", "--json"], &[]))
        .collect();
    let runs: Vec<StreamRun> = clients.into_iter().map(StreamChild::wait).collect();
    let wall = t0.elapsed();
    let client_cpu = children_cpu() - cpu0;

    for (i, run) in runs.iter().enumerate() {
        run.assert_success();
        let stats = run.stats();
        for zero in [
            "dropped_samples",
            "dropped_frames",
            "reconnects",
            "resent_samples",
        ] {
            assert_eq!(stats[zero], 0, "stream {i}: {zero}: {stats}");
        }
        assert_eq!(
            stats["acked_samples"],
            off.len() + latency,
            "stream {i}: {stats}"
        );
        assert!(
            run.wall.as_secs_f64() >= 0.95 * seconds,
            "stream {i} took {:?} for {seconds} s",
            run.wall
        );
    }
    let streams = received_streams(&out);
    assert_eq!(streams.len(), STREAMS);
    for s in &streams {
        wait_ended(&out, &s.id);
    }
    let streams = received_streams(&out);
    for s in &streams {
        assert_eq!(s.gaps(), [], "{}", s.id);
        assert_equals_offline(&s.samples, &off, latency, &s.id);
    }
    let slowest = runs.iter().map(|r| r.wall).max().unwrap();
    // Every stream kept up with real time (start-up and the final acks aside).
    assert!(
        slowest.as_secs_f64() < seconds + 10.0,
        "the slowest stream took {slowest:?} for {seconds} s"
    );

    let cpu1 = children_cpu();
    let pid = serve.pid();
    let (_, serve_err) = serve.interrupt();
    let server_cpu = children_cpu() - cpu1;
    assert_eq!(
        serve_err.matches("session ").count(),
        STREAMS,
        "{serve_err}"
    );
    let per_stream = client_cpu / STREAMS as u32;
    eprintln!(
        "{STREAMS} streams of {seconds:.0} s (16 kHz input, raw 16 kHz): wall {:.2} s \
         (slowest stream {:.2} s); clients {:.2} s CPU in all, {:.3} s per stream \
         ({:.2} % of a core each); receiver (pid {pid}) {:.2} s CPU ({:.2} % of a core, \
         {:.1} ms per stream)",
        wall.as_secs_f64(),
        slowest.as_secs_f64(),
        client_cpu.as_secs_f64(),
        per_stream.as_secs_f64(),
        100.0 * per_stream.as_secs_f64() / seconds,
        server_cpu.as_secs_f64(),
        100.0 * server_cpu.as_secs_f64() / wall.as_secs_f64(),
        1_000.0 * server_cpu.as_secs_f64() / STREAMS as f64,
    );
}
