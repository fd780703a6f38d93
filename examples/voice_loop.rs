//! The whole voice-chat loop in a program: the microphone, enhanced and echo-cancelled,
//! streams to an OpenAI Realtime backend; the backend's spoken answers play on the
//! loudspeaker, and what the loudspeaker plays is the echo canceller's reference.
//!
//! ```sh
//! export CLEARVOX_TOKEN=...     # read from the environment, never from the command line
//! cargo run --release --example voice_loop -- "wss://api.openai.com/v1/realtime?model=gpt-realtime" 30
//! # or against the reference receiver: clearvox serve --respond-with answer.wav
//! cargo run --release --example voice_loop -- ws://127.0.0.1:9000/ 10
//! ```

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use clearvox::engine::{Engine, EngineConfig, EnginePlayer};
use clearvox::pipeline::ResponsePlayer;
use clearvox::stream::{
    connect_with_player, Protocol, StreamConfig, StreamEvent, Token, TurnDetection,
};
use clearvox::Preset;

/// The engine's player exists once the engine runs, but the stream (the engine's frame
/// sink) is connected before: share a slot that is filled after `start`.
#[derive(Clone, Default)]
struct Player(Arc<Mutex<Option<EnginePlayer>>>);

impl Player {
    fn with<R>(&self, f: impl FnOnce(&mut EnginePlayer) -> R) -> Option<R> {
        let mut slot = self.0.lock().unwrap_or_else(|e| e.into_inner());
        slot.as_mut().map(f)
    }
}

impl ResponsePlayer for Player {
    fn play(&mut self, samples: &[f32], rate: u32) -> usize {
        self.with(|p| p.play(samples, rate)).unwrap_or(0)
    }
    fn cancel(&mut self) {
        self.with(|p| p.cancel());
    }
    fn is_playing(&self) -> bool {
        self.with(|p| p.is_playing()).unwrap_or(false)
    }
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let url = args
        .next()
        .ok_or("usage: voice_loop URL [SECONDS] (wss://..., or ws:// to loopback)")?;
    let seconds: f64 = args.next().map(|s| s.parse()).transpose()?.unwrap_or(10.0);

    let stream = StreamConfig {
        protocol: Protocol::Openai,
        // Ask for an answer at each end of the user's speech; stop it when they talk over it.
        turn_detection: TurnDetection::Client,
        barge_in: true,
        ..StreamConfig::new(url)
    };
    let mut pipeline = Preset::VoiceChat.config();
    pipeline.output_rate = Some(stream.rate());
    // The answers come back into the microphone: cancel them.
    pipeline.echo.enabled = true;
    let mut engine = Engine::new(EngineConfig {
        pipeline,
        playback: true, // the default output device plays the answers
        ..EngineConfig::default()
    })?;

    let player = Player::default();
    let token = Token::from_env("CLEARVOX_TOKEN");
    let (sink, mut handle) = connect_with_player(&stream, token, Box::new(player.clone()))?;
    let events = handle.take_events().ok_or("the stream's events")?;
    engine.set_frame_sink(Box::new(sink));
    engine.start()?; // nothing is captured before this
    let engine_player = engine.player()?;
    player
        .0
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .replace(engine_player);

    let until = Instant::now() + Duration::from_secs_f64(seconds);
    let mut answers = 0;
    while Instant::now() < until {
        let Ok(event) = events.recv_timeout(Duration::from_millis(100)) else {
            continue;
        };
        match event {
            StreamEvent::ResponseStarted => println!("answer started"),
            StreamEvent::ResponseFinished { status, samples } => {
                // All of the answer was handed to the player: play its last milliseconds.
                player.with(|p| p.finish());
                answers += 1;
                let s = samples as f64 / stream.rate() as f64;
                println!("answer finished ({status:?}, {s:.2} s)");
            }
            StreamEvent::ResponseCancelled { .. } => println!("answer stopped: the user spoke"),
            StreamEvent::ServerMessage(_) => {}
            other => eprintln!("{other:?}"),
        }
    }

    let report = engine.stop()?; // the tail goes to the backend
    let stats = handle.wait()?;
    println!(
        "{answers} answer(s); {} overruns, {} render underruns; {} samples sent",
        report.stats.overruns, report.stats.render_underruns, stats.samples_sent
    );
    Ok(())
}
