//! The reference receiver's handling of a client's messages: scripts of text (JSON of
//! both protocols, the resume extension, and anything else), binary and ping messages,
//! over up to four connections of one stream, with or without the resume header and a
//! URL query, played to a real receiver on loopback. The receiver must neither panic nor
//! hang, must end every connection, and must leave WAV files that read back whole.
//!
//! Script (see `clearvox_fuzz::parse_script`): an optional first line `#` of options for
//! the first connection (`R` resume, `X` no Close frame, `N` an unnamed stream, `?QUERY`),
//! then lines `T<text>`, `B<bytes>`, `P`, and `-<options>` for the next connection.
#![no_main]

use std::sync::atomic::{AtomicU64, Ordering};

use clearvox_fuzz::{parse_script, receiver};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    static STREAMS: AtomicU64 = AtomicU64::new(0);
    let receiver = receiver();
    let unnamed = data
        .split(|&b| b == b'\n')
        .next()
        .is_some_and(|l| l.starts_with(b"#") && l.contains(&b'N'));
    // A fresh stream per input, so that one input's files never meet another's.
    let id = format!("fz{}", STREAMS.fetch_add(1, Ordering::Relaxed));
    let connections = parse_script(data, 64);
    let reports = receiver.play((!unnamed).then_some(id.as_str()), &connections);
    for r in &reports {
        assert!(r.received >= r.samples, "{r:?}");
        assert!(!r.reason.is_empty() && !r.reason.contains('\n'), "{r:?}");
    }
    receiver.check_and_clear();
});
