//! The replay of a stream's files when a connection names a stream the receiver holds on
//! disk (after a disconnect or a restart): a fuzzed JSONL log and a fuzzed WAV file are
//! left in the receiver's folder, then a connection resumes the stream and sends a
//! little audio. The receiver must neither panic nor hang, must report the stream, and
//! must leave a WAV file that reads back whole.
//!
//! Input: the log's bytes, then optionally a NUL byte and the WAV file's bytes (none
//! after the NUL: no WAV file). The log's first byte also picks the connection's script.
#![no_main]

use std::sync::atomic::{AtomicU64, Ordering};

use clearvox_fuzz::{plant_key, receiver, Connect, Step};
use libfuzzer_sys::fuzz_target;

fn script(pick: u8) -> Vec<Connect> {
    let audio = Step::Binary((0..640u32).map(|n| (n * 37) as u8).collect());
    let text = |t: &str| Step::Text(t.to_string());
    let steps = match pick % 4 {
        // Raw with events, resuming where the receiver says.
        0 => vec![
            text(r#"{"type":"start","rate":16000,"encoding":"pcm_s16le","channels":1,"sample":0}"#),
            audio.clone(),
            text(r#"{"type":"stop","samples":320}"#),
        ],
        // Resume extension: from an offset of the client's.
        1 => vec![
            text(r#"{"type":"clearvox.resume_from","sample":160}"#),
            audio.clone(),
            text(r#"{"type":"speech_started","sample":200}"#),
        ],
        // OpenAI.
        2 => vec![
            text(
                r#"{"type":"session.update","session":{"audio":{"input":{"format":{"type":"audio/pcm","rate":24000}}}}}"#,
            ),
            text(r#"{"type":"input_audio_buffer.append","audio":"AAABAAIAAwA="}"#),
            text(r#"{"type":"input_audio_buffer.commit","event_id":"e1"}"#),
        ],
        // Plain binary audio.
        _ => vec![audio],
    };
    vec![
        Connect {
            resume: pick & 4 == 0,
            query: None,
            steps,
            close: true,
        },
        // And once more, on the files the first connection left.
        Connect {
            resume: true,
            query: None,
            steps: vec![text(r#"{"type":"stop","samples":0}"#)],
            close: true,
        },
    ]
}

fuzz_target!(|data: &[u8]| {
    static STREAMS: AtomicU64 = AtomicU64::new(0);
    let receiver = receiver();
    let id = format!("fz{}", STREAMS.fetch_add(1, Ordering::Relaxed));
    let (log, wav) = match data.iter().position(|&b| b == 0) {
        Some(at) => (&data[..at], Some(&data[at + 1..])),
        None => (data, None),
    };
    std::fs::write(receiver.out().join(format!("{id}.jsonl")), log).expect("the log");
    if let Some(wav) = wav.filter(|w| !w.is_empty()) {
        std::fs::write(receiver.out().join(format!("{id}.wav")), wav).expect("the WAV file");
    }
    plant_key(receiver.out(), &id);
    // The replay alone, in process, on the same bytes: it never fails, and what it
    // keeps is within range.
    let wav_samples = wav.map_or(0, |w| (w.len().saturating_sub(44) / 2) as u64);
    let summary = clearvox::stream::server::replay_log(log, wav_samples);
    if let Some(rate) = summary.rate {
        assert!(
            clearvox::limits::is_supported_sample_rate(rate),
            "{summary:?}"
        );
    }
    let pick = log.first().copied().unwrap_or(0);
    let reports = receiver.play(Some(&id), &script(pick));
    for r in &reports {
        assert_eq!(r.id, id);
        assert!(r.received >= r.samples, "{r:?}");
        assert!(!r.reason.is_empty() && !r.reason.contains('\n'), "{r:?}");
    }
    receiver.check_and_clear();
});
