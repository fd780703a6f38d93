//! Streaming equals offline: any chunking of the input gives the same output samples
//! and the same VAD events, bit for bit, for every preset and rate combination.

use crate::support::audio::*;
use clearvox::{Config, Preset};

fn check(file: &str, config: &Config) {
    let (x, rate, ch) = load(&testdata(file));
    let frames = x.len() / ch;
    let (reference, ref_events) = run_in_chunks(config, &x, rate, ch, &[frames]);
    assert!(!reference.is_empty());
    let chunkings: Vec<(String, Vec<usize>)> = vec![
        ("1".into(), chunks(frames, &[1])),
        ("7".into(), chunks(frames, &[7])),
        ("480".into(), chunks(frames, &[480])),
        ("4096".into(), chunks(frames, &[4096])),
        ("random".into(), random_chunks(frames, 3000, 7)),
    ];
    for (name, c) in chunkings {
        let (out, events) = run_in_chunks(config, &x, rate, ch, &c);
        assert_eq!(
            out.len(),
            reference.len(),
            "{file} {:?} chunks of {name}: length",
            config.preset
        );
        let first_diff = out
            .iter()
            .zip(&reference)
            .position(|(a, b)| a.to_bits() != b.to_bits());
        assert_eq!(
            first_diff, None,
            "{file} {:?} chunks of {name}: first differing sample",
            config.preset
        );
        assert_eq!(
            events, ref_events,
            "{file} {:?} chunks of {name}: events",
            config.preset
        );
    }
}

#[test]
fn every_preset_at_48k() {
    for p in Preset::ALL {
        check("noisy/us_male__cafe__snr5__48k_f32.wav", &p.config());
    }
}

#[test]
fn stereo_44k1_in_16k_out() {
    for p in [Preset::VoiceChat, Preset::MaxQuality] {
        let config = clearvox::Config {
            output_rate: Some(16_000),
            ..p.config()
        };
        check("noisy/gb_female__traffic__snr10__44k1_s24.wav", &config);
    }
}

#[test]
fn narrowband_8k_in_48k_out() {
    let config = clearvox::Config {
        output_rate: Some(48_000),
        ..Preset::VoiceChat.config()
    };
    check("noisy/rp_female__keyboard__snr5__8k_s16.wav", &config);
    check(
        "noisy/rp_female__keyboard__snr5__8k_s16.wav",
        &Preset::LowCpu.config(),
    );
}

#[test]
fn i16_input_equals_f32_input() {
    let (x, rate, ch) = load(&testdata("noisy/us_deep__hum__snr5__16k_s16.wav"));
    let as_i16: Vec<i16> = x.iter().map(|v| (v * 32768.0).round() as i16).collect();
    let config = Config::default();
    let mut a = clearvox::Pipeline::new(&config, rate, ch).unwrap();
    let mut b = clearvox::Pipeline::new(&config, rate, ch).unwrap();
    let (mut ya, mut yb) = (Vec::new(), Vec::new());
    a.process(&x, &mut ya).unwrap();
    b.process(&as_i16, &mut yb).unwrap();
    assert_eq!(ya, yb);
}
