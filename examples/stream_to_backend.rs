//! Streaming enhanced speech to a conversation backend, from a file or the microphone.
//!
//! ```sh
//! clearvox serve --listen 127.0.0.1:9000 --out received/ &          # a local receiver
//! cargo run --release --example stream_to_backend -- ws://127.0.0.1:9000/ testdata/noisy/us_male__cafe__snr5__48k_f32.wav
//! CLEARVOX_TOKEN=... cargo run --release --example stream_to_backend -- \
//!     "wss://api.openai.com/v1/realtime?model=gpt-realtime" --openai     # live microphone, 10 s
//! ```
//!
//! The token comes from `CLEARVOX_TOKEN`, never from the command line.

use std::time::Duration;

use clearvox::engine::{Engine, EngineConfig};
use clearvox::io::WavReader;
use clearvox::stream::source::run_wav;
use clearvox::stream::{connect, Protocol, StreamConfig, StreamEvent, Token};
use clearvox::{Config, Preset};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let Some(url) = args.first() else {
        return Err("usage: stream_to_backend URL [FILE.wav] [--openai]".into());
    };
    let openai = args.iter().any(|a| a == "--openai");
    let file = args[1..].iter().find(|a| !a.starts_with("--"));

    let mut stream = StreamConfig::new(url.as_str());
    if openai {
        stream.protocol = Protocol::Openai;
    }
    // The pipeline produces the backend's rate directly: no second resampling.
    let pipeline = Config {
        output_rate: Some(stream.rate()),
        ..Preset::VoiceChat.config()
    };

    let (mut sink, handle) = connect(&stream, Token::from_env("CLEARVOX_TOKEN"))?;
    match file {
        Some(path) => {
            // A file, paced like a microphone.
            let reader = WavReader::new(std::io::BufReader::new(std::fs::File::open(path)?))?;
            let report = run_wav(reader, &pipeline, &mut sink, true)?;
            println!("sent {:.2} s of enhanced audio", report.duration_s);
        }
        None => {
            // The microphone for ten seconds; the engine hands every frame to the sink.
            let mut engine = Engine::new(EngineConfig {
                pipeline,
                ..EngineConfig::default()
            })?;
            engine.set_frame_sink(Box::new(sink));
            engine.start()?;
            std::thread::sleep(Duration::from_secs(10));
            engine.stop()?;
        }
    }
    while let Some(event) = handle.poll_event() {
        if let StreamEvent::ServerMessage(text) = event {
            println!("server: {text}");
        }
    }
    let stats = handle.wait()?;
    println!(
        "{} packets, {} reconnects, {} samples resent, {} dropped, ack round trip {:.1} ms",
        stats.packets_sent,
        stats.reconnects,
        stats.resent_samples,
        stats.dropped_samples,
        stats.ack_rtt_mean_ms
    );
    Ok(())
}
