//! The engine's player on the real ALSA device (the `file` plugin over a paced
//! PulseAudio daemon, `tests/support/alsa_fixture.rs`), in process, with the other core
//! busy: what reaches the echo canceller's render input is bit for bit what the device
//! played, `cancel` silences the output within one callback, an answer at 24 kHz plays
//! for exactly its duration at 48 kHz, and the monitor and the player mix.
//!
//! The device's default output configuration is stereo f32 at 48 kHz.

use std::time::{Duration, Instant};

use crate::support::alsa_fixture::{AlsaFixture, CpuBurner, RawAudio};
use crate::support::audio::{load, testdata};
use clearvox::dsp::resample::{ResamplerKind, StreamResampler};
use clearvox::engine::{
    DeviceFormat, DeviceSelector, Engine, EngineConfig, EngineError, EnginePlayer, EngineReport,
};
use clearvox::pipeline::ResponsePlayer;
use clearvox::Config;

const TIMEOUT: Duration = Duration::from_secs(30);

/// A tone that is never exactly zero on its first samples.
fn tone(rate: u32, seconds: f64, amplitude: f32) -> Vec<f32> {
    let n = (rate as f64 * seconds) as usize;
    (0..n)
        .map(|i| {
            amplitude * (2.0 * std::f32::consts::PI * 440.0 * i as f32 / rate as f32 + 0.5).sin()
        })
        .collect()
}

/// The engine's configuration for the fixture's device: capture s16 mono 48 kHz.
fn config(monitor: bool) -> EngineConfig {
    let mut pipeline = Config::default();
    pipeline.echo.enabled = true;
    EngineConfig {
        pipeline,
        input_rate: Some(48_000),
        input_channels: Some(1),
        input_format: Some(DeviceFormat::I16),
        output: monitor.then_some(DeviceSelector::Default),
        playback: true,
        ..EngineConfig::default()
    }
}

/// Plays `samples` at `rate` in 10 ms pieces as a backend's answer arrives, then ends it.
fn play_answer(player: &mut EnginePlayer, samples: &[f32], rate: u32) {
    for piece in samples.chunks(rate as usize / 100) {
        assert_eq!(
            player.play(piece, rate),
            piece.len(),
            "the queue is large enough"
        );
    }
    player.finish();
}

fn wait_until_played(player: &EnginePlayer) {
    let until = Instant::now() + TIMEOUT;
    while player.is_playing() {
        assert!(Instant::now() < until, "still playing after {TIMEOUT:?}");
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// The left channel of interleaved stereo, checking that both channels are equal.
fn left(played: &[f32]) -> Vec<f32> {
    assert!(
        played.chunks_exact(2).all(|f| f[0] == f[1]),
        "mono on both channels"
    );
    played.chunks_exact(2).map(|f| f[0]).collect()
}

fn check_clean(report: &EngineReport) {
    let s = &report.stats;
    assert_eq!(s.overruns, 0, "{s:?}");
    assert_eq!(s.player_dropped, 0, "{s:?}");
    assert_eq!(s.render_dropped, 0, "{s:?}");
    assert_eq!(s.render_overruns, 0, "{s:?}");
}

#[test]
fn the_render_feed_is_exactly_what_the_device_played() {
    let fx = AlsaFixture::paced(&RawAudio::s16(&vec![0i16; 48_000 * 4], 1).at_rate(48_000));
    let _burner = CpuBurner::start_in(fx.slot(), 1);
    let _env = fx.apply_to_current_process();
    let mut engine = Engine::new(config(false)).unwrap();
    assert!(matches!(engine.player(), Err(EngineError::NotRunning)));
    let mut tap = engine.render_tap(48_000 * 2 * 10);
    engine.start().unwrap();
    let info = engine.stream_info().unwrap();
    assert_eq!(
        (
            info.monitor_rate,
            info.monitor_channels,
            info.monitoring,
            info.playback
        ),
        (Some(48_000), Some(2), false, true)
    );
    let mut player = engine.player().unwrap();
    assert!(matches!(engine.player(), Err(EngineError::PlayerTaken)));
    let answer = tone(48_000, 1.0, 0.5);
    play_answer(&mut player, &answer, 48_000);
    wait_until_played(&player);
    std::thread::sleep(Duration::from_millis(100));
    let report = engine.stop().unwrap();
    assert!(!player.is_playing());
    assert_eq!(
        player.play(&answer[..480], 48_000),
        0,
        "the session is over"
    );
    check_clean(&report);

    let rendered = tap.take_all();
    assert_eq!(tap.dropped(), 0);
    let played = fx.playback_raw_f32();
    let s = &report.stats;
    eprintln!(
        "render: {} samples, played {}, output callbacks {} ({} frames), render underruns {}",
        rendered.len(),
        played.len(),
        s.output_callbacks,
        s.output_frames,
        s.render_underruns
    );
    assert_eq!(rendered.len() as u64, s.output_frames * 2);
    // The file holds what the device played; its last period may still be in the
    // device's buffer when the stream closes.
    assert!(played.len() <= rendered.len());
    assert!(
        rendered.len() - played.len() <= 2 * 48_000 / 10,
        "{} vs {}",
        rendered.len(),
        played.len()
    );
    let first = rendered
        .iter()
        .zip(&played)
        .position(|(a, b)| a.to_bits() != b.to_bits());
    assert_eq!(first, None, "the render differs from what was played");
    // The whole answer is in it, exactly, once.
    let l = left(&played);
    let start = l
        .iter()
        .position(|v| *v != 0.0)
        .expect("the answer was played");
    assert_eq!(&l[start..start + answer.len()], &answer[..]);
    assert!(l[start + answer.len()..].iter().all(|v| *v == 0.0));
}

#[test]
fn cancel_stops_playback_within_one_callback() {
    let fx = AlsaFixture::paced(&RawAudio::s16(&vec![0i16; 48_000 * 4], 1).at_rate(48_000));
    let _burner = CpuBurner::start_in(fx.slot(), 1);
    let _env = fx.apply_to_current_process();
    let mut engine = Engine::new(config(false)).unwrap();
    engine.start().unwrap();
    let mut player = engine.player().unwrap();
    let answer = tone(48_000, 3.0, 0.5);
    assert_eq!(player.play(&answer, 48_000), answer.len());
    // Wait until it sounds, then half a second more.
    let until = Instant::now() + TIMEOUT;
    while player.queued_samples() == answer.len() {
        assert!(Instant::now() < until);
        std::thread::sleep(Duration::from_millis(1));
    }
    std::thread::sleep(Duration::from_millis(500));
    let before = engine.stats().output_frames;
    player.cancel();
    let after = engine.stats().output_frames;
    assert!(!player.is_playing(), "nothing queued after cancel");
    std::thread::sleep(Duration::from_millis(300));
    // The player plays again after a cancel.
    let beep = tone(48_000, 0.1, 0.25);
    assert_eq!(player.play(&beep, 48_000), beep.len());
    wait_until_played(&player);
    std::thread::sleep(Duration::from_millis(100));
    let report = engine.stop().unwrap();
    check_clean(&report);
    let s = &report.stats;
    let callback = (s.output_frames / s.output_callbacks.max(1)) as usize;
    let l = left(&fx.playback_raw_f32());
    let start = l.iter().position(|v| *v != 0.0).unwrap();
    // The answer played without a gap until the cancel, and stopped within the callback
    // that was running at that moment.
    let stop = start + l[start..].iter().position(|v| *v == 0.0).unwrap();
    eprintln!(
        "cancel at frame {before}..{after}, answer silent from {stop}, callbacks of {callback} frames"
    );
    assert_eq!(&l[start..stop], &answer[..stop - start]);
    assert!(stop + callback >= before as usize, "{stop} {before}");
    assert!(
        stop <= after as usize + callback,
        "{stop} > {after} + {callback}"
    );
    // Then silence until the beep, which plays whole.
    let beep_at = stop + l[stop..].iter().position(|v| *v != 0.0).unwrap();
    assert!(beep_at >= after as usize + 48_000 / 10);
    assert_eq!(&l[beep_at..beep_at + beep.len()], &beep[..]);
    assert!(l[beep_at + beep.len()..].iter().all(|v| *v == 0.0));
}

#[test]
fn a_24k_answer_plays_for_exactly_its_duration_at_48k() {
    let fx = AlsaFixture::paced(&RawAudio::s16(&vec![0i16; 48_000 * 4], 1).at_rate(48_000));
    let _burner = CpuBurner::start_in(fx.slot(), 1);
    let _env = fx.apply_to_current_process();
    let mut engine = Engine::new(config(false)).unwrap();
    engine.start().unwrap();
    let mut player = engine.player().unwrap();
    assert_eq!(player.device_rate(), 48_000);
    let answer = tone(24_000, 1.0, 0.5);
    play_answer(&mut player, &answer, 24_000);
    wait_until_played(&player);
    std::thread::sleep(Duration::from_millis(100));
    let report = engine.stop().unwrap();
    check_clean(&report);

    // What the same resampler makes of the answer offline, its delay skipped.
    let kind = ResamplerKind::default();
    let mut r = StreamResampler::new(24_000, 48_000, kind).unwrap();
    let mut offline = Vec::new();
    r.process(&answer, &mut |x| offline.extend_from_slice(x))
        .unwrap();
    r.process(&[0.0; 4_800], &mut |x| offline.extend_from_slice(x))
        .unwrap();
    let offline = &offline[r.latency()..r.latency() + 48_000];

    let l = left(&fx.playback_raw_f32());
    let start = l.iter().position(|v| *v != 0.0).unwrap();
    let lead = offline.iter().position(|v| *v != 0.0).unwrap();
    let begin = start - lead;
    let end = begin + 48_000;
    assert_eq!(&l[begin..end], offline, "the answer as resampled offline");
    assert!(
        l[end..].iter().all(|v| *v == 0.0),
        "silence after exactly one second"
    );
}

#[test]
fn the_monitor_and_the_player_mix() {
    let (x, rate, ch) = load(&testdata("noisy/us_male__cafe__snr5__48k_f32.wav"));
    assert_eq!((rate, ch), (48_000, 1));
    let voice: Vec<i16> = x[..48_000 * 3]
        .iter()
        .map(|v| (v * 32_768.0).round().clamp(-32_768.0, 32_767.0) as i16)
        .collect();
    let fx = AlsaFixture::paced(&RawAudio::s16(&voice, 1).at_rate(48_000));
    let _burner = CpuBurner::start_in(fx.slot(), 1);
    let _env = fx.apply_to_current_process();
    let mut cfg = config(true);
    cfg.duration = Some(Duration::from_secs(3));
    // The mix, not the monitor's latency, is under test here (`alsa_device.rs` holds the
    // monitor to its small cushion): a generous one keeps the two signals aligned
    // whatever else loads the machine.
    cfg.monitor_cushion_ms = 150;
    let mut engine = Engine::new(cfg).unwrap();
    let frames = engine.frame_channel(10_000);
    engine.start().unwrap();
    let mut player = engine.player().unwrap();
    std::thread::sleep(Duration::from_millis(700));
    // Loud enough that the sum clips on the voice's peaks.
    let answer = tone(48_000, 1.0, 0.9);
    play_answer(&mut player, &answer, 48_000);
    let until = Instant::now() + TIMEOUT;
    while !engine.is_finished() {
        assert!(Instant::now() < until);
        std::thread::sleep(Duration::from_millis(10));
    }
    wait_until_played(&player);
    std::thread::sleep(Duration::from_millis(300));
    let report = engine.stop().unwrap();
    check_clean(&report);
    assert_eq!(report.stats.underruns, 0, "{:?}", report.stats);
    let enhanced: Vec<f32> = frames
        .iter_timeout(Duration::from_millis(50))
        .flat_map(|f| f.samples)
        .collect();
    let l = left(&fx.playback_raw_f32());

    // The monitor's first sound is the enhanced signal's; from there, the device played
    // the enhanced signal alone until the answer began, then the clipped sum.
    let start = l.iter().position(|v| *v != 0.0).unwrap();
    let lead = enhanced.iter().position(|v| *v != 0.0).unwrap();
    let m = |i: usize| enhanced.get(i + lead - start).copied().unwrap_or(0.0);
    let t = (start..l.len())
        .find(|&i| l[i] != m(i))
        .expect("the answer was played");
    assert!(
        t > start + 48_000 / 4,
        "the answer began {} samples after the monitor",
        t - start
    );
    let mut clipped = 0;
    for (k, a) in answer.iter().enumerate() {
        let sum = m(t + k) + a;
        clipped += usize::from(sum.abs() > 1.0);
        assert_eq!(l[t + k], sum.clamp(-1.0, 1.0), "sample {k} of the answer");
    }
    let end = t + answer.len();
    let rest = (end..l.len()).find(|&i| l[i] != m(i));
    assert_eq!(rest, None, "the monitor alone after the answer");
    eprintln!("mix: answer from {t}, {clipped} samples clipped");
}
