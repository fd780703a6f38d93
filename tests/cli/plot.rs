//! `--plot`: the spectrogram picture of `enhance` and `metrics`, decoded and looked at.

use std::path::Path;

use crate::support::cli::*;

/// Colour of the speech segments in the band over the output panel.
const SPEECH: [u8; 3] = [230, 97, 1];

/// A decoded PNG as RGB rows.
struct Picture {
    width: usize,
    height: usize,
    rgb: Vec<u8>,
}

impl Picture {
    fn read(path: &Path) -> Self {
        let bytes = std::fs::read(path).unwrap();
        let mut decoder = png::Decoder::new(std::io::Cursor::new(bytes));
        decoder.set_transformations(png::Transformations::EXPAND);
        let mut reader = decoder.read_info().unwrap();
        let mut buf = vec![0; reader.output_buffer_size().unwrap()];
        let info = reader.next_frame(&mut buf).unwrap();
        assert_eq!(info.color_type, png::ColorType::Rgb, "expanded to RGB");
        buf.truncate(info.buffer_size());
        Self {
            width: info.width as usize,
            height: info.height as usize,
            rgb: buf,
        }
    }

    fn at(&self, x: usize, y: usize) -> [u8; 3] {
        let i = (y * self.width + x) * 3;
        [self.rgb[i], self.rgb[i + 1], self.rgb[i + 2]]
    }

    /// Spectrogram pixels are coloured; the text, axes and background are grey.
    fn coloured(&self, x: usize, y: usize) -> bool {
        let [r, g, b] = self.at(x, y);
        r.max(g).max(b) - r.min(g).min(b) > 40 && self.at(x, y) != SPEECH
    }

    /// Checks that each half (panel) holds a spectrogram of many colours, and returns
    /// the mean luminance of each over the first 7 % of its width (before the speech).
    fn two_panels(&self) -> (f64, f64) {
        let (top, bottom) = (0..self.height / 2, self.height / 2..self.height);
        for rows in [top.clone(), bottom.clone()] {
            let n = self.colours(rows.clone());
            assert!(n > 40, "{n} colours in rows {rows:?}");
        }
        (
            self.lead_luminance(top, 0.07),
            self.lead_luminance(bottom, 0.07),
        )
    }

    /// The distinct colours of the spectrogram in `rows`.
    fn colours(&self, rows: std::ops::Range<usize>) -> usize {
        let mut seen = std::collections::HashSet::new();
        for y in rows {
            for x in 0..self.width {
                if self.coloured(x, y) {
                    seen.insert(self.at(x, y));
                }
            }
        }
        seen.len()
    }

    /// The columns of the panel in `rows`: the first run of columns mostly coloured
    /// (the colour bar beyond it is separated by white).
    fn panel_columns(&self, rows: &std::ops::Range<usize>) -> std::ops::Range<usize> {
        let mostly = |x: usize| {
            let n = rows.clone().filter(|&y| self.coloured(x, y)).count();
            n * 3 > rows.len()
        };
        let start = (0..self.width).find(|&x| mostly(x)).expect("a panel");
        let end = (start..self.width)
            .find(|&x| !mostly(x))
            .unwrap_or(self.width);
        start..end
    }

    /// Mean luminance (0..255) of the spectrogram pixels in `rows` over the first
    /// `fraction` of the panel's time axis: viridis grows brighter with the level.
    fn lead_luminance(&self, rows: std::ops::Range<usize>, fraction: f64) -> f64 {
        let cols = self.panel_columns(&rows);
        let lead = cols.start + 1..cols.start + ((cols.len() as f64 * fraction) as usize);
        let (mut sum, mut n) = (0.0, 0usize);
        for y in rows {
            for x in lead.clone() {
                if self.coloured(x, y) {
                    let [r, g, b] = self.at(x, y);
                    sum += 0.299 * f64::from(r) + 0.587 * f64::from(g) + 0.114 * f64::from(b);
                    n += 1;
                }
            }
        }
        assert!(n > 1000, "only {n} spectrogram pixels in the lead");
        sum / n as f64
    }

    fn has(&self, colour: [u8; 3]) -> bool {
        self.rgb.chunks_exact(3).any(|p| p == colour)
    }
}

fn one_error_line(run: &std::process::Output) -> String {
    assert!(!run.status.success());
    let err = stderr_of(run);
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(err.starts_with("error: "), "{err}");
    err
}

#[test]
fn enhance_draws_the_input_above_a_quieter_output() {
    let dir = tempfile::tempdir().unwrap();
    let (out, png) = (dir.path().join("out.wav"), dir.path().join("p.png"));
    let run = clearvox()
        .args(["enhance", "-q", "--preset", "voice-chat"])
        .arg(testdata(S16_16K))
        .arg("-o")
        .arg(&out)
        .arg("--plot")
        .arg(&png)
        .args(["--plot-size", "900x600"])
        .output()
        .unwrap();
    assert!(run.status.success(), "{}", stderr_of(&run));
    assert!(out.exists());
    let p = Picture::read(&png);
    assert_eq!((p.width, p.height), (900, 600));
    // The file holds 0.5 s of fan noise before the speech (4.18 s in all): over the
    // first 0.3 s, the output panel is much darker than the input's.
    let (before, after) = p.two_panels();
    assert!(
        after + 30.0 < before,
        "input {before:.1}, output {after:.1}"
    );
    // The speech the VAD found is marked.
    assert!(p.has(SPEECH));
}

#[test]
fn metrics_draws_the_reference_above_the_test() {
    let dir = tempfile::tempdir().unwrap();
    let png = dir.path().join("m.png");
    let clean = testdata("clean/us_deep__fan__snr10__16k_s16.wav");
    let run = clearvox()
        .args(["metrics", "--reference"])
        .arg(&clean)
        .arg("--test")
        .arg(testdata(S16_16K))
        .arg("--plot")
        .arg(&png)
        .output()
        .unwrap();
    assert!(run.status.success(), "{}", stderr_of(&run));
    assert!(String::from_utf8_lossy(&run.stdout).contains("SI-SDR"));
    let p = Picture::read(&png);
    assert_eq!((p.width, p.height), (1200, 800));
    // Before the speech the reference is silent and the test holds the fan noise.
    let (reference, test) = p.two_panels();
    assert!(
        reference + 30.0 < test,
        "reference {reference:.1}, test {test:.1}"
    );
    // The speech the VAD finds in the reference is marked.
    assert!(p.has(SPEECH));
}

#[test]
fn a_plot_that_cannot_be_written_is_refused_before_any_work() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("out.wav");
    let input = testdata(S16_16K);
    let cases = [
        (
            dir.path().join("missing/p.png"),
            "plot folder does not exist",
        ),
        (dir.path().to_path_buf(), "is a folder"),
        (out.clone(), "choose another plot path"),
        (input.clone(), "choose another plot path"),
    ];
    for (plot, expected) in cases {
        let run = clearvox()
            .args(["enhance", "-q"])
            .arg(&input)
            .arg("-o")
            .arg(&out)
            .arg("--plot")
            .arg(&plot)
            .output()
            .unwrap();
        let err = one_error_line(&run);
        assert!(err.contains(expected), "{err}");
        assert!(!out.exists(), "{err}");
    }
    // Several inputs: refused, nothing written.
    let run = clearvox()
        .args(["enhance", "-q"])
        .arg(&input)
        .arg(testdata(S16_8K))
        .arg("-o")
        .arg(dir.path())
        .arg("--plot")
        .arg(dir.path().join("p.png"))
        .output()
        .unwrap();
    let err = one_error_line(&run);
    assert!(err.contains("one input file"), "{err}");
    assert_eq!(listing(dir.path()), Vec::<String>::new());
    // A size out of range is a usage error.
    let run = clearvox()
        .args(["enhance", "-q"])
        .arg(&input)
        .arg("-o")
        .arg(&out)
        .arg("--plot")
        .arg(dir.path().join("p.png"))
        .args(["--plot-size", "20x20"])
        .output()
        .unwrap();
    assert!(one_error_line(&run).contains("too small"));
    assert_eq!(listing(dir.path()), Vec::<String>::new());
}

#[test]
fn no_plot_when_processing_fails() {
    let dir = tempfile::tempdir().unwrap();
    let bad = dir.path().join("bad.wav");
    std::fs::write(&bad, b"RIFF\x10\x00\x00\x00WAVEjunk").unwrap();
    let png = dir.path().join("p.png");
    let run = clearvox()
        .args(["enhance", "-q"])
        .arg(&bad)
        .arg("-o")
        .arg(dir.path().join("out.wav"))
        .arg("--plot")
        .arg(&png)
        .output()
        .unwrap();
    one_error_line(&run);
    let run = clearvox()
        .args(["metrics", "--reference"])
        .arg(&bad)
        .arg("--test")
        .arg(testdata(S16_16K))
        .arg("--plot")
        .arg(&png)
        .output()
        .unwrap();
    one_error_line(&run);
    assert_eq!(listing(dir.path()), ["bad.wav"]);
}

/// The rows of the panel in `half` (0 upper, 1 lower) at column `x`: the run of
/// coloured pixels (a silent spectrogram is the scale's darkest colour, still coloured).
fn panel_rows(p: &Picture, half: usize, x: usize) -> std::ops::Range<usize> {
    let rows = if half == 0 {
        0..p.height / 2
    } else {
        p.height / 2..p.height
    };
    let coloured: Vec<usize> = rows.filter(|&y| p.coloured(x, y)).collect();
    let (first, last) = (coloured[0], coloured[coloured.len() - 1]);
    first..last + 1
}

#[test]
fn both_panels_put_a_tone_at_its_frequency() {
    // A 2 kHz tone at 16 kHz, passed through untouched (bypass): each panel must show
    // it a quarter of the way up its frequency axis (0 to 8 kHz), whatever the panel's
    // height.
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("tone.wav");
    let spec = hound::WavSpec {
        channels: 1,
        sample_rate: 16_000,
        bits_per_sample: 32,
        sample_format: hound::SampleFormat::Float,
    };
    let mut w = hound::WavWriter::create(&input, spec).unwrap();
    for n in 0..32_000 {
        let t = n as f32 / 16_000.0;
        w.write_sample(0.5 * (2.0 * std::f32::consts::PI * 2000.0 * t).sin())
            .unwrap();
    }
    w.finalize().unwrap();
    let png = dir.path().join("tone.png");
    let run = clearvox()
        .args(["enhance", "--preset", "bypass", "-q"])
        .arg(&input)
        .arg("-o")
        .arg(dir.path().join("out.wav"))
        .arg("--plot")
        .arg(&png)
        .output()
        .unwrap();
    assert!(run.status.success(), "{}", stderr_of(&run));
    let p = Picture::read(&png);
    for half in [0, 1] {
        let rows = if half == 0 {
            0..p.height / 2
        } else {
            p.height / 2..p.height
        };
        let cols = p.panel_columns(&rows);
        let x = cols.start + cols.len() / 2;
        let panel = panel_rows(&p, half, x);
        let luminance = |y: usize| {
            let [r, g, b] = p.at(x, y);
            0.299 * f64::from(r) + 0.587 * f64::from(g) + 0.114 * f64::from(b)
        };
        let brightest = panel
            .clone()
            .max_by(|&a, &b| luminance(a).total_cmp(&luminance(b)))
            .unwrap();
        let height = (panel.end - panel.start) as f64;
        let up = (panel.end - 1 - brightest) as f64 / height;
        assert!(
            (up - 0.25).abs() < 0.02,
            "panel {half}: the tone is {up:.3} of the way up rows {panel:?}, not 0.25"
        );
    }
}
