//! The adaptive linear echo path: a partitioned-block frequency-domain filter (overlap-
//! save, one 10 ms partition per block), in two copies.
//!
//! The *background* filter adapts every block by normalised LMS in each frequency bin
//! (the step divided by the render power the bin's partitions hold). It follows an
//! echo path quickly, and is thrown off by double talk: the near end's voice looks like
//! an error to correct. The *foreground* filter, whose estimate is what the canceller
//! subtracts, never adapts: it takes the background's coefficients when the background
//! has cancelled clearly better for a few blocks, and gives them back when the
//! background has gone astray. Double talk therefore costs the output nothing; an echo
//! path that changed is taken up within tens of milliseconds.

use realfft::num_complex::Complex32;

/// Adaptation step of the background filter (normalised, 0..1).
const STEP: f32 = 1.0;
/// Smoothing of the block energies that decide between the two filters.
const ENERGY_SMOOTHING: f32 = 0.7;

/// The two filters' coefficients, `parts` partitions of `bins` bins each.
#[derive(Debug)]
pub(super) struct EchoPath {
    parts: usize,
    bins: usize,
    foreground: Vec<Complex32>,
    background: Vec<Complex32>,
    fg_energy: f32,
    bg_energy: f32,
    mic_energy: f32,
    /// Partition whose gradient constraint is applied next (one per block).
    next_constrained: usize,
    step: f32,
}

/// Which filter an estimate is taken with.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Which {
    Foreground,
    Background,
}

impl EchoPath {
    pub(super) fn new(parts: usize, bins: usize) -> Self {
        Self {
            parts,
            bins,
            foreground: vec![Complex32::default(); parts * bins],
            background: vec![Complex32::default(); parts * bins],
            fg_energy: 0.0,
            bg_energy: 0.0,
            mic_energy: 0.0,
            next_constrained: 0,
            step: STEP,
        }
    }

    pub(super) fn parts(&self) -> usize {
        self.parts
    }

    /// The echo spectrum: the sum over partitions of coefficients × render spectrum,
    /// `render(p)` giving the spectrum `p` blocks before the filter's first.
    pub(super) fn estimate<'a>(
        &self,
        which: Which,
        render: impl Fn(usize) -> &'a [Complex32],
        out: &mut [Complex32],
    ) {
        let w = match which {
            Which::Foreground => &self.foreground,
            Which::Background => &self.background,
        };
        out.fill(Complex32::default());
        for p in 0..self.parts {
            let x = render(p);
            let wp = &w[p * self.bins..(p + 1) * self.bins];
            for ((o, a), b) in out.iter_mut().zip(wp).zip(x) {
                *o += a * b;
            }
        }
    }

    /// One NLMS step of the background filter on `error` (the spectrum of the zero-
    /// padded error block), normalised by `power` (render power summed over the
    /// partitions, per bin, regularised).
    pub(super) fn adapt<'a>(
        &mut self,
        render: impl Fn(usize) -> &'a [Complex32],
        error: &[Complex32],
        power: &[f32],
    ) {
        for p in 0..self.parts {
            let step = self.step;
            let x = render(p);
            let wp = &mut self.background[p * self.bins..(p + 1) * self.bins];
            for (((w, x), e), s) in wp.iter_mut().zip(x).zip(error).zip(power) {
                *w += x.conj() * e * (step / s);
            }
        }
    }

    /// Moves the constraint to the next partition (round robin) and returns its
    /// coefficients.
    pub(super) fn next_constraint(&mut self) -> &mut [Complex32] {
        self.next_constrained = (self.next_constrained + 1) % self.parts;
        self.current_constraint()
    }

    /// The coefficients of the partition being constrained.
    pub(super) fn current_constraint(&mut self) -> &mut [Complex32] {
        let p = self.next_constrained;
        &mut self.background[p * self.bins..(p + 1) * self.bins]
    }

    /// Compares the block energies of the two filters' errors and of the microphone,
    /// and hands coefficients over when one filter is clearly better.
    pub(super) fn arbitrate(&mut self, fg_error: f32, bg_error: f32, mic: f32) {
        let a = ENERGY_SMOOTHING;
        self.fg_energy = a * self.fg_energy + (1.0 - a) * fg_error;
        self.bg_energy = a * self.bg_energy + (1.0 - a) * bg_error;
        self.mic_energy = a * self.mic_energy + (1.0 - a) * mic;
        if self.bg_energy < 0.6 * self.fg_energy && self.bg_energy < self.mic_energy {
            self.foreground.copy_from_slice(&self.background);
            self.fg_energy = self.bg_energy;
        } else if self.bg_energy > 8.0 * self.fg_energy.max(1e-9) {
            self.background.copy_from_slice(&self.foreground);
            self.bg_energy = self.fg_energy;
        }
    }

    /// Moves both filters by `shift` partitions (the delay estimate changed): the
    /// coefficient of partition `p` becomes that of `p + shift`.
    pub(super) fn shift(&mut self, shift: isize) {
        let parts = self.parts as isize;
        let bins = self.bins;
        for w in [&mut self.foreground, &mut self.background] {
            if shift > 0 {
                let s = (shift.min(parts) as usize) * bins;
                w.copy_within(s.., 0);
                let len = w.len();
                w[len - s..].fill(Complex32::default());
            } else if shift < 0 {
                let s = ((-shift).min(parts) as usize) * bins;
                let len = w.len();
                w.copy_within(..len - s, s);
                w[..s].fill(Complex32::default());
            }
        }
    }

    pub(super) fn reset(&mut self) {
        self.foreground.fill(Complex32::default());
        self.background.fill(Complex32::default());
        self.fg_energy = 0.0;
        self.bg_energy = 0.0;
        self.mic_energy = 0.0;
        self.next_constrained = 0;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shifting_moves_partitions_and_clears_the_rest() {
        let mut path = EchoPath::new(3, 2);
        for (i, w) in path.background.iter_mut().enumerate() {
            *w = Complex32::new(i as f32 + 1.0, 0.0);
        }
        path.shift(1);
        let re: Vec<f32> = path.background.iter().map(|c| c.re).collect();
        assert_eq!(re, [3.0, 4.0, 5.0, 6.0, 0.0, 0.0]);
        path.shift(-2);
        let re: Vec<f32> = path.background.iter().map(|c| c.re).collect();
        assert_eq!(re, [0.0, 0.0, 0.0, 0.0, 3.0, 4.0]);
    }

    #[test]
    fn the_foreground_takes_a_better_background_and_returns_a_diverged_one() {
        let mut path = EchoPath::new(1, 1);
        path.background[0] = Complex32::new(1.0, 0.0);
        for _ in 0..5 {
            path.arbitrate(1.0, 0.1, 1.0);
        }
        assert_eq!(path.foreground[0], Complex32::new(1.0, 0.0));
        path.background[0] = Complex32::new(9.0, 0.0);
        for _ in 0..10 {
            path.arbitrate(0.1, 5.0, 1.0);
        }
        assert_eq!(path.background[0], Complex32::new(1.0, 0.0));
    }
}
