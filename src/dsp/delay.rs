//! A fixed delay line: the dry path of the strength mix, aligned with the wet path.

/// Delays a signal by a fixed number of samples (allocates only in [`DelayLine::new`]).
///
/// # Examples
///
/// ```
/// use clearvox::dsp::delay::DelayLine;
///
/// let mut line = DelayLine::new(2);
/// let mut out = [0.0f32; 4];
/// line.process(&[1.0, 2.0, 3.0, 4.0], &mut out);
/// assert_eq!(out, [0.0, 0.0, 1.0, 2.0]);
///
/// // The history carries over to the next call.
/// line.process(&[5.0, 6.0], &mut out[..2]);
/// assert_eq!(out[..2], [3.0, 4.0]);
/// ```
#[derive(Clone, Debug)]
pub struct DelayLine {
    buf: Vec<f32>,
    pos: usize,
}

impl DelayLine {
    /// A delay line of `delay` samples, initially silent.
    pub fn new(delay: usize) -> Self {
        Self {
            buf: vec![0.0; delay],
            pos: 0,
        }
    }

    /// The delay in samples.
    pub fn delay(&self) -> usize {
        self.buf.len()
    }

    /// Writes `input` into the line and the delayed signal into `output` (same length).
    pub fn process(&mut self, input: &[f32], output: &mut [f32]) {
        debug_assert_eq!(input.len(), output.len());
        if self.buf.is_empty() {
            output.copy_from_slice(input);
            return;
        }
        for (x, y) in input.iter().zip(output.iter_mut()) {
            *y = std::mem::replace(&mut self.buf[self.pos], *x);
            self.pos += 1;
            if self.pos == self.buf.len() {
                self.pos = 0;
            }
        }
    }

    /// Silences the line.
    pub fn reset(&mut self) {
        self.buf.fill(0.0);
        self.pos = 0;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn delays_by_exactly_n() {
        let mut d = DelayLine::new(3);
        let x: Vec<f32> = (1..=8).map(|v| v as f32).collect();
        let mut y = vec![0.0; 8];
        d.process(&x[..5], &mut y[..5]);
        d.process(&x[5..], &mut y[5..]);
        assert_eq!(y, [0.0, 0.0, 0.0, 1.0, 2.0, 3.0, 4.0, 5.0]);
    }

    #[test]
    fn zero_delay_is_identity() {
        let mut d = DelayLine::new(0);
        let mut y = [0.0; 2];
        d.process(&[0.5, -0.5], &mut y);
        assert_eq!(y, [0.5, -0.5]);
    }
}
