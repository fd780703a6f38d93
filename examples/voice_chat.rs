//! Embedding the live engine in a voice-chat path: start capture, receive enhanced
//! 10 ms frames with their VAD events, stop.
//!
//! ```sh
//! cargo run --release --example voice_chat -- 5      # listen for 5 seconds
//! ```
//!
//! On a machine without a microphone the engine reports a clear error instead.

use std::time::{Duration, Instant};

use clearvox::dsp::vad::VadEventKind;
use clearvox::engine::{Engine, EngineConfig};
use clearvox::Preset;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let seconds: f64 = std::env::args()
        .nth(1)
        .map(|s| s.parse())
        .transpose()?
        .unwrap_or(5.0);

    // The same configuration as offline processing; 16 kHz is what most speech
    // recognisers take.
    let config = EngineConfig {
        pipeline: clearvox::Config {
            output_rate: Some(16_000),
            ..Preset::VoiceChat.config()
        },
        ..EngineConfig::default()
    };
    let mut engine = Engine::new(config)?;
    // Frames arrive on this channel; a slow consumer loses frames (counted), never
    // stalls the audio.
    let frames = engine.frame_channel(100);

    // Nothing is captured before this call.
    engine.start()?;
    let info = engine.stream_info();
    if let Some(i) = &info {
        println!(
            "capturing from {} at {} Hz; enhanced frames at {} Hz, {:.1} ms algorithmic latency",
            i.input_device,
            i.input_rate,
            i.output_rate,
            i.algorithmic_latency as f64 * 1000.0 / i.output_rate as f64
        );
    }

    let until = Instant::now() + Duration::from_secs_f64(seconds);
    let mut samples = 0usize;
    while Instant::now() < until {
        let Some(frame) = frames.recv_timeout(Duration::from_millis(100)) else {
            continue;
        };
        samples += frame.samples.len();
        for event in &frame.events {
            let at = event.position as f64 / frame.rate as f64;
            match event.kind {
                VadEventKind::SpeechStart => println!("speech starts at {at:.2} s"),
                VadEventKind::SpeechEnd => println!("speech ends at {at:.2} s"),
            }
        }
        // Here an app would send `frame.samples` to its backend.
    }

    // Capture stops; the pipeline's tail is flushed to the channel.
    let report = engine.stop()?;
    for frame in frames.iter_timeout(Duration::from_millis(10)) {
        samples += frame.samples.len();
    }
    println!(
        "received {samples} samples; {} overruns, frame time p50 {} µs, p99 {} µs",
        report.stats.overruns, report.stats.frame_time_p50_us, report.stats.frame_time_p99_us
    );
    Ok(())
}
