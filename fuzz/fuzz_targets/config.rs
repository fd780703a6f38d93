//! The configuration's TOML and JSON parsers and its validation: whatever parses is
//! valid (the parsers validate), whatever is refused is refused with one line, a valid
//! configuration survives its own TOML, and it builds a pipeline that processes audio
//! at a couple of input rates without a panic and without a non-finite sample.
#![no_main]

use clearvox::{Config, Pipeline};
use libfuzzer_sys::fuzz_target;

fn one_line(e: &impl std::fmt::Display) {
    let text = e.to_string();
    assert!(!text.is_empty() && !text.contains('\n'), "{text:?}");
}

fuzz_target!(|input: &[u8]| {
    // The first byte picks the syntax; the rest is the text.
    let Some((&which, rest)) = input.split_first() else {
        return;
    };
    let text = String::from_utf8_lossy(rest);
    let parsed = if which & 1 == 0 {
        Config::from_toml_str(&text)
    } else {
        Config::from_json_str(&text)
    };
    let config = match parsed {
        Ok(c) => c,
        Err(e) => {
            one_line(&e);
            return;
        }
    };
    if let Err(e) = config.validate() {
        panic!("a parsed configuration does not validate: {e}");
    }
    let toml = config
        .to_toml_string()
        .expect("a valid configuration as TOML");
    match Config::from_toml_str(&toml) {
        Ok(again) => assert!(
            again == config,
            "the configuration changed through its TOML:\n{toml}"
        ),
        Err(e) => panic!("a valid configuration's TOML is refused: {e}\n{toml}"),
    }

    // Building pipelines is slow: only some of the valid inputs (by the second byte).
    if which & 2 != 0 {
        return;
    }
    for (rate, channels) in [(48_000u32, 1usize), (16_000, 2)] {
        let mut p = match Pipeline::new(&config, rate, channels) {
            Ok(p) => p,
            Err(e) => {
                one_line(&e);
                continue;
            }
        };
        let frames = rate as usize / 50;
        let input: Vec<f32> = (0..frames * channels)
            .map(|n| 0.3 * ((n as f32) * 0.05).sin() + if n % 7 == 0 { 0.1 } else { -0.02 })
            .collect();
        let mut out = Vec::new();
        p.process(&input, &mut out).expect("processing valid audio");
        p.flush(&mut out).expect("flushing");
        assert!(
            out.iter().all(|s| s.is_finite()),
            "a non-finite output sample"
        );
    }
});
