//! Quality on the development set of real noisy speech (`../shared/data`, or the folder
//! in `CLEARVOX_DEVSET`; see `support::devset`). It is not part of the repository
//! (licences): without it the test says it is skipped and passes, except under `CI=true`,
//! where a missing development set is a failure.
//!
//! On every file the default preset must improve SI-SDR, cost at most 0.02 STOI, and
//! stay within a small margin of the numbers measured when the defaults were chosen.

use crate::support::audio::*;
use clearvox::metrics::{si_sdr_db, stoi};
use clearvox::pipeline::enhance;
use clearvox::Config;

/// Noisy input SI-SDR and STOI, then the default preset's, as measured (STOI at 48 kHz).
const EXPECTED: [(&str, f64, f64, f64, f64); 27] = [
    (
        "ljspeech_lj050__cafe_babble__snr0.wav",
        -1.32,
        0.655,
        0.98,
        0.722,
    ),
    (
        "ljspeech_lj050__cafe_babble__snr10.wav",
        8.65,
        0.883,
        10.91,
        0.915,
    ),
    (
        "ljspeech_lj050__cafe_babble__snr5.wav",
        3.70,
        0.775,
        6.71,
        0.834,
    ),
    (
        "ljspeech_lj050__fan_exercise_bike__snr0.wav",
        -1.32,
        0.674,
        5.11,
        0.753,
    ),
    (
        "ljspeech_lj050__fan_exercise_bike__snr10.wav",
        8.66,
        0.852,
        13.83,
        0.895,
    ),
    (
        "ljspeech_lj050__fan_exercise_bike__snr5.wav",
        3.68,
        0.768,
        10.21,
        0.828,
    ),
    ("ljspeech_lj050__hum__snr0.wav", -1.34, 0.756, 7.99, 0.816),
    ("ljspeech_lj050__hum__snr10.wav", 8.67, 0.926, 15.49, 0.949),
    ("ljspeech_lj050__hum__snr5.wav", 3.66, 0.861, 12.23, 0.897),
    ("sb_spk1__cafe_babble__snr0.wav", -1.38, 0.626, 1.24, 0.672),
    ("sb_spk1__cafe_babble__snr10.wav", 8.65, 0.854, 11.15, 0.888),
    ("sb_spk1__cafe_babble__snr5.wav", 3.63, 0.763, 6.94, 0.805),
    (
        "sb_spk1__fan_exercise_bike__snr0.wav",
        -1.36,
        0.681,
        6.67,
        0.701,
    ),
    (
        "sb_spk1__fan_exercise_bike__snr10.wav",
        8.64,
        0.850,
        13.65,
        0.883,
    ),
    (
        "sb_spk1__fan_exercise_bike__snr5.wav",
        3.65,
        0.790,
        10.98,
        0.844,
    ),
    ("sb_spk1__hum__snr0.wav", -1.38, 0.757, 8.40, 0.776),
    ("sb_spk1__hum__snr10.wav", 8.65, 0.928, 15.62, 0.938),
    ("sb_spk1__hum__snr5.wav", 3.65, 0.836, 12.57, 0.884),
    ("sb_spk2__cafe_babble__snr0.wav", -1.14, 0.665, 1.24, 0.694),
    ("sb_spk2__cafe_babble__snr10.wav", 8.93, 0.865, 11.06, 0.907),
    ("sb_spk2__cafe_babble__snr5.wav", 3.97, 0.770, 5.74, 0.833),
    (
        "sb_spk2__fan_exercise_bike__snr0.wav",
        -1.05,
        0.682,
        6.45,
        0.747,
    ),
    (
        "sb_spk2__fan_exercise_bike__snr10.wav",
        8.97,
        0.892,
        13.54,
        0.936,
    ),
    (
        "sb_spk2__fan_exercise_bike__snr5.wav",
        3.94,
        0.793,
        10.21,
        0.853,
    ),
    ("sb_spk2__hum__snr0.wav", -1.05, 0.786, 7.95, 0.832),
    ("sb_spk2__hum__snr10.wav", 8.99, 0.921, 14.19, 0.948),
    ("sb_spk2__hum__snr5.wav", 4.02, 0.866, 10.70, 0.912),
];

const SI_SDR_MARGIN_DB: f64 = 0.3;
const STOI_MARGIN: f64 = 0.005;
const STOI_MAX_LOSS: f64 = 0.02;

#[test]
fn default_preset_on_every_devset_file() {
    let Some(dir) = crate::support::devset() else {
        return;
    };
    let mut failures = Vec::new();
    let (mut gain, mut stoi_gain) = (0.0, 0.0);
    for (name, si_sdr_in, stoi_in, si_sdr_out, stoi_out) in EXPECTED {
        let (x, rate, ch) = load(&dir.join("noisy").join(name));
        let (c, _, cch) = load(&dir.join("clean").join(name));
        let clean = mono(&c, cch);
        let noisy = mono(&x, ch);
        let (y, _) = enhance(&Config::default(), &x, rate, ch).unwrap();
        let (si, st) = (si_sdr_db(&clean, &y), stoi(&clean, &y, rate).unwrap());
        let (si0, st0) = (
            si_sdr_db(&clean, &noisy),
            stoi(&clean, &noisy, rate).unwrap(),
        );
        assert!(
            (si0 - si_sdr_in).abs() < 0.01 && (st0 - stoi_in).abs() < 0.001,
            "{name}: the development set changed"
        );
        println!("    (\"{name}\", {si0:.2}, {st0:.3}, {si:.2}, {st:.3}),");
        gain += si - si0;
        stoi_gain += st - st0;
        if si <= si0 {
            failures.push(format!("{name}: SI-SDR {si0:.2} -> {si:.2}"));
        }
        if st < st0 - STOI_MAX_LOSS {
            failures.push(format!("{name}: STOI {st0:.3} -> {st:.3}"));
        }
        if si < si_sdr_out - SI_SDR_MARGIN_DB {
            failures.push(format!("{name}: SI-SDR {si:.2}, measured {si_sdr_out:.2}"));
        }
        if st < stoi_out - STOI_MARGIN {
            failures.push(format!("{name}: STOI {st:.3}, measured {stoi_out:.3}"));
        }
    }
    let n = EXPECTED.len() as f64;
    println!(
        "mean SI-SDR gain {:.2} dB, mean STOI gain {:.3}",
        gain / n,
        stoi_gain / n
    );
    assert!(failures.is_empty(), "{failures:#?}");
}
