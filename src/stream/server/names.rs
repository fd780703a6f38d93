//! Stream ids that cannot name files everywhere: the device names Windows reserves.

/// Names Windows takes for devices, whatever the case and extension: a file `NUL.wav`
/// or `com1.jsonl` is the device, not a file.
const RESERVED: [&str; 4] = ["con", "prn", "aux", "nul"];
/// Reserved with a digit after them (`COM1`, `LPT9`; `COM0` and `LPT0` too).
const RESERVED_NUMBERED: [&str; 2] = ["com", "lpt"];

/// Whether `id` is (before any `.`) a device name of Windows, in any case.
pub(crate) fn is_reserved_name(id: &str) -> bool {
    let stem = id
        .split('.')
        .next()
        .unwrap_or_default()
        .to_ascii_lowercase();
    let stem = stem.trim_end_matches([' ', '.']);
    RESERVED.contains(&stem)
        || RESERVED_NUMBERED.iter().any(|prefix| {
            stem.strip_prefix(prefix)
                .is_some_and(|n| n.len() == 1 && n.as_bytes()[0].is_ascii_digit())
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn windows_device_names_are_reserved_in_any_case() {
        for id in [
            "CON", "nul", "Aux", "prn", "COM1", "com9", "LPT1", "lpt0", "nul.txt", "CoM3.wav",
        ] {
            assert!(is_reserved_name(id), "{id}");
        }
        for id in [
            "console", "null", "com", "com10", "lpt-1", "a-nul", "nul_", "conn-1",
        ] {
            assert!(!is_reserved_name(id), "{id}");
        }
    }
}
