//! A spectrogram measured while streaming, in bounded memory.
//!
//! The STFT is the library's [`StftAnalyzer`] with a Hann window scaled so that a
//! full-scale sine peaks at 0 dB in its bin: the colours read as dBFS. Frames are
//! summed (as power) into time columns; when the columns reach their cap, neighbours
//! are merged in pairs and each column covers twice as many frames from then on. So a
//! file of any length, stdin included, costs at most `max_columns × bins` numbers, and
//! the columns are still at least as many as the picture has pixels across.

use anyhow::Result;
use clearvox::dsp::stft::{StftAnalyzer, WindowPair};
use realfft::RealFftPlanner;

/// Length of the analysis window, seconds (rounded to a power of two in samples):
/// short enough to show syllables, long enough to resolve a voice's harmonics.
const WINDOW_S: f64 = 0.032;

/// Power added before taking logarithms: digital silence shows as -200 dB.
const POWER_FLOOR: f32 = 1e-20;

/// Power spectra of a mono stream, averaged into time columns.
pub struct Spectrogram {
    rate: u32,
    analyzer: StftAnalyzer,
    fft_size: usize,
    hop: usize,
    /// Frames still to skip at the start: those centred before the first sample.
    lead_frames: usize,
    /// Samples waiting for a whole hop.
    pending: Vec<f32>,
    /// `columns × bins` sums of power.
    power: Vec<f32>,
    bins: usize,
    frames_per_column: usize,
    /// Frames summed into the last column.
    last_fill: usize,
    max_columns: usize,
    samples: u64,
}

impl Spectrogram {
    /// A spectrogram of a stream at `rate` Hz kept in at most `max_columns` columns
    /// (made even, at least 2).
    pub fn new(rate: u32, max_columns: usize) -> Result<Self> {
        let target = (f64::from(rate) * WINDOW_S).max(64.0);
        let fft_size = 1usize << (target.log2().round() as u32).clamp(6, 15);
        let hop = fft_size / 4;
        let mut windows = WindowPair::symmetric(fft_size, hop)?;
        windows.analysis = hann_for_peaks(fft_size);
        let analyzer = StftAnalyzer::new(&mut RealFftPlanner::new(), &windows)?;
        let bins = analyzer.bins();
        Ok(Self {
            rate,
            analyzer,
            fft_size,
            hop,
            // Frame k ends at sample (k + 1) hop: its centre is (k + 1) hop - fft/2.
            lead_frames: fft_size / 2 / hop - 1,
            pending: Vec::with_capacity(hop),
            power: Vec::new(),
            bins,
            frames_per_column: 1,
            last_fill: 0,
            max_columns: (max_columns.max(2) + 1) & !1,
            samples: 0,
        })
    }

    /// Adds samples.
    pub fn push(&mut self, mut x: &[f32]) {
        self.samples += x.len() as u64;
        while !x.is_empty() {
            let take = (self.hop - self.pending.len()).min(x.len());
            self.pending.extend_from_slice(&x[..take]);
            x = &x[take..];
            if self.pending.len() == self.hop {
                self.analyze_pending();
            }
        }
    }

    /// Analyses the last samples: the frames centred on them need half a window of
    /// silence after the end.
    pub fn finish(&mut self) {
        let samples = self.samples;
        let tail = self.hop - self.pending.len() + self.fft_size / 2;
        let zeros = vec![0.0f32; tail];
        self.push(&zeros);
        self.samples = samples;
    }

    fn analyze_pending(&mut self) {
        self.analyzer.analyze(&self.pending);
        self.pending.clear();
        if self.lead_frames > 0 {
            self.lead_frames -= 1;
            return;
        }
        if self.power.is_empty() || self.last_fill == self.frames_per_column {
            if self.columns() == self.max_columns {
                self.merge_pairs();
            }
            self.power.resize(self.power.len() + self.bins, 0.0);
            self.last_fill = 0;
        }
        let start = self.power.len() - self.bins;
        for (p, c) in self.power[start..].iter_mut().zip(self.analyzer.spectrum()) {
            *p += c.norm_sqr();
        }
        self.last_fill += 1;
    }

    /// Halves the columns (all full when this runs): each covers twice the frames.
    fn merge_pairs(&mut self) {
        let bins = self.bins;
        let columns = self.columns();
        for c in 0..columns / 2 {
            for b in 0..bins {
                self.power[c * bins + b] =
                    self.power[2 * c * bins + b] + self.power[(2 * c + 1) * bins + b];
            }
        }
        self.power.truncate(columns / 2 * bins);
        self.frames_per_column *= 2;
    }

    fn columns(&self) -> usize {
        self.power.len() / self.bins
    }

    /// Sample rate, Hz.
    pub fn rate(&self) -> u32 {
        self.rate
    }

    /// Length of the stream, seconds.
    pub fn duration_s(&self) -> f64 {
        self.samples as f64 / f64::from(self.rate)
    }

    /// Level in dB (relative to a full-scale sine) on a `width × height` grid, row 0
    /// at the top: columns span 0..`duration_s`, rows 0..`top_hz`. Each cell is the
    /// mean power over the frames whose centres fall inside it and the largest over its
    /// bins (a tone keeps its level however many bins a row holds), taking the nearest
    /// frame or bin when none falls inside; `None` above the Nyquist frequency or past
    /// the stream's end.
    pub fn grid(
        &self,
        width: usize,
        height: usize,
        duration_s: f64,
        top_hz: f64,
    ) -> Vec<Option<f32>> {
        let columns = self.columns();
        let mut out = vec![None; width * height];
        if columns == 0 || width == 0 || height == 0 {
            return out;
        }
        let col_s = (self.frames_per_column * self.hop) as f64 / f64::from(self.rate);
        let bin_hz = f64::from(self.rate) / (2 * (self.bins - 1)) as f64;
        let nyquist = f64::from(self.rate) / 2.0;
        // Column c holds the frames centred on c·col_s .. (c + 1)·col_s (less half a hop).
        let span = |lo: f64, hi: f64, step: f64, n: usize| -> (usize, usize) {
            let a = (lo / step).ceil().max(0.0) as usize;
            let b = ((hi / step).ceil().max(0.0) as usize).min(n);
            if a < b {
                (a, b)
            } else {
                let nearest = ((lo + hi) / 2.0 / step).floor().max(0.0) as usize;
                (nearest.min(n - 1), nearest.min(n - 1) + 1)
            }
        };
        let time_end = self.duration_s().min(duration_s);
        let mut column_power = vec![0.0f32; self.bins];
        for x in 0..width {
            let t0 = x as f64 * duration_s / width as f64;
            let t1 = (x + 1) as f64 * duration_s / width as f64;
            if t0 >= time_end {
                break;
            }
            let (c0, c1) = span(t0, t1, col_s, columns);
            column_power.fill(0.0);
            let mut frames = 0usize;
            for c in c0..c1 {
                let n = if c + 1 == columns {
                    self.last_fill
                } else {
                    self.frames_per_column
                };
                frames += n;
                for (acc, &p) in column_power
                    .iter_mut()
                    .zip(&self.power[c * self.bins..(c + 1) * self.bins])
                {
                    *acc += p;
                }
            }
            let frames = frames.max(1) as f32;
            for y in 0..height {
                let f1 = (height - y) as f64 * top_hz / height as f64;
                let f0 = (height - y - 1) as f64 * top_hz / height as f64;
                if f0 >= nyquist {
                    continue;
                }
                let (b0, b1) = span(f0, f1, bin_hz, self.bins);
                let peak = column_power[b0..b1].iter().fold(0.0f32, |a, &p| a.max(p)) / frames;
                out[y * width + x] = Some(10.0 * (peak + POWER_FLOOR).log10());
            }
        }
        out
    }
}

/// A periodic Hann window scaled by `2 / Σw`, so that a sine of amplitude A has a
/// peak bin of magnitude A.
fn hann_for_peaks(len: usize) -> Vec<f32> {
    let w: Vec<f64> = (0..len)
        .map(|n| 0.5 - 0.5 * (std::f64::consts::TAU * n as f64 / len as f64).cos())
        .collect();
    let scale = 2.0 / w.iter().sum::<f64>();
    w.iter().map(|&v| (v * scale) as f32).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tone(rate: u32, hz: f64, amplitude: f64, n: usize) -> Vec<f32> {
        (0..n)
            .map(|i| {
                (amplitude * (std::f64::consts::TAU * hz * i as f64 / f64::from(rate)).sin()) as f32
            })
            .collect()
    }

    #[test]
    fn a_full_scale_sine_peaks_near_0_db_in_its_row() {
        let rate = 16_000;
        let mut s = Spectrogram::new(rate, 100).unwrap();
        s.push(&tone(rate, 1_000.0, 1.0, rate as usize));
        s.finish();
        // 80 rows of 100 Hz: 1 kHz is in row 80 - 10 - 1 from the top.
        let g = s.grid(10, 80, 1.0, 8_000.0);
        let row = |y: usize| g[y * 10 + 5].unwrap();
        assert!(row(69) > -3.0 && row(69) < 0.5, "{}", row(69));
        assert!(row(20) < -60.0, "{}", row(20));
    }

    #[test]
    fn long_input_stays_within_the_column_cap_and_keeps_time() {
        let rate = 8_000;
        let mut s = Spectrogram::new(rate, 64).unwrap();
        // 10 s: silence, then a tone in the second half.
        s.push(&vec![0.0; 5 * rate as usize]);
        s.push(&tone(rate, 500.0, 0.5, 5 * rate as usize));
        s.finish();
        assert!(s.columns() <= 64);
        assert_eq!(s.samples, 10 * u64::from(rate));
        let g = s.grid(10, 8, 10.0, 4_000.0);
        // Row 7 (0..500 Hz) holds the 500 Hz edge bin; row 6 (500..1000) holds it too.
        let level = |x: usize| g[6 * 10 + x].unwrap().max(g[7 * 10 + x].unwrap());
        assert!(level(2) < -100.0, "{}", level(2));
        assert!(level(8) > -20.0, "{}", level(8));
        // Nothing above the Nyquist frequency.
        assert!(s.grid(4, 4, 10.0, 8_000.0)[0].is_none());
    }
}
