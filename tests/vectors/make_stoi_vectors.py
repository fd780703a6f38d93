#!/usr/bin/env python3
"""Reference numbers for tests/dsp/metrics_stoi.rs, from pystoi 0.4.1 and the scoring
harness's own definitions (../shared/eval/eval.py).

    python tests/vectors/make_stoi_vectors.py                      # synthetic vectors
    python tests/vectors/make_stoi_vectors.py --devset ../shared/data  # the 27 dev files

Needs numpy, scipy, pystoi (and soundfile for --devset); prints Rust constants to
paste into tests/dsp/metrics_stoi.rs.

The synthetic signals are generated here and in the Rust test with the same scalar
operations in the same order, using only +, -, *, / and sqrt (which IEEE 754 rounds
exactly, the same way in both languages) and integer arithmetic: no sin/cos/pow, whose
last bit may differ between math libraries. Each signal is rounded to float32 at the
end, the type the Rust metrics take. An FNV-1a checksum of the float32 bytes proves
that the Rust test scores the very samples pystoi scored.
"""
import argparse
import math
import os
import sys

import numpy as np
from pystoi import stoi

MASK64 = (1 << 64) - 1

# 10^(-snr/20) for 0, 5 and 10 dB, as decimal literals (parsed identically everywhere).
GAIN_DB = {0: 1.0, 5: 0.5623413251903491, 10: 0.31622776601683794}


class Lcg:
    """64-bit linear congruential generator (Knuth's MMIX constants); 24-bit outputs."""

    def __init__(self, seed):
        self.state = seed & MASK64

    def next(self):
        self.state = (self.state * 6364136223846793005 + 1442695040888963407) & MASK64
        return self.state >> 40

    def below(self, n):
        return self.next() % n

    def uniform(self):
        return self.next() / 16777216.0


def speech(fs, n, seed):
    """Syllable-like bursts: five harmonics of a random pitch plus three formant-like
    tones, under a smooth rise-and-fall envelope, some with a noise burst at the onset;
    2-4 syllables per word, short gaps within words, longer pauses between them."""
    rng = Lcg(seed)
    out = [0.0] * n
    pos = fs * (150 + rng.below(200)) // 1000
    left_in_word = 2 + rng.below(3)
    while pos < n:
        length = fs * (120 + rng.below(180)) // 1000
        end = min(pos + length, n)
        amp = 0.1 + 0.3 * rng.uniform()
        f0 = 100 + rng.below(120)
        comps = [(f0 * h, 1.0 / h) for h in range(1, 6)]
        comps.append((500 + rng.below(500), 0.6))
        comps.append((1200 + rng.below(1600), 0.4))
        comps.append((2800 + rng.below(1000), 0.25))
        for freq, weight in comps:
            # A rotation by the angle 2·atan(t), t ≈ π·freq/fs, with a rational
            # tangent so that the coefficients need no trigonometry.
            k = freq * 12868 // fs
            t = k / 4096.0
            den = 1.0 + t * t
            c = (1.0 - t * t) / den
            s = 2.0 * t / den
            re, im = 1.0, 0.0
            g = amp * weight
            for i in range(pos, end):
                p = (i - pos) / length
                e = 4.0 * p * (1.0 - p)
                out[i] += g * (e * e) * im
                re, im = re * c - im * s, re * s + im * c
        if rng.below(2) == 0:
            blen = fs * (20 + rng.below(40)) // 1000
            bend = min(pos + blen, n)
            prev = 0.0
            for i in range(pos, bend):
                u = rng.uniform() - 0.5
                out[i] += 0.5 * amp * (u - prev) * ((bend - i) / blen)
                prev = u
        left_in_word -= 1
        if left_in_word == 0:
            gap = 150 + rng.below(250)
            left_in_word = 2 + rng.below(3)
        else:
            gap = 20 + rng.below(40)
        pos = end + fs * gap // 1000
    return out


def noise(n, seed):
    """Low-pass tilted noise: sums of four uniforms through a one-pole filter."""
    rng = Lcg(seed)
    out = [0.0] * n
    s = 0.0
    for i in range(n):
        g = rng.uniform() + rng.uniform() + rng.uniform() + rng.uniform() - 2.0
        s = 0.6 * s + g
        out[i] = s
    return out


def energy(x):
    e = 0.0
    for v in x:
        e += v * v
    return e


def noise_gain(clean, nz, snr_db):
    return math.sqrt(energy(clean) / energy(nz)) * GAIN_DB[snr_db]


def vectors(fs, kinds):
    """(name, clean, test) for one sample rate; 3 s each."""
    n = 3 * fs
    clean = speech(fs, n, 1)
    nz = noise(n, 2)
    out = []
    for snr in (0, 5, 10):
        name = f"noisy_{snr}db"
        if name in kinds:
            g = noise_gain(clean, nz, snr)
            out.append((name, clean, [c + g * v for c, v in zip(clean, nz)]))
    if "delayed_filtered" in kinds:
        # 2 ms late, smoothed by a [1/4, 1/2, 1/4] filter, plus other noise at 10 dB
        d = fs // 500
        nz2 = noise(n, 3)
        g = noise_gain(clean, nz2, 10)

        def at(j):
            return clean[j] if 0 <= j < n else 0.0

        test = [0.25 * at(i - d - 1) + 0.5 * at(i - d) + 0.25 * at(i - d + 1) + g * nz2[i]
                for i in range(n)]
        out.append(("delayed_filtered", clean, test))
    if "gated" in kinds:
        # the 0 dB mixture, attenuated by 20 dB in 20 ms blocks where the noise is
        # stronger than the speech: a crude time-domain ideal binary mask
        g = noise_gain(clean, nz, 0)
        block = fs // 50
        test = [0.0] * n
        for b0 in range(0, n, block):
            b1 = min(b0 + block, n)
            ec = 0.0
            en = 0.0
            for i in range(b0, b1):
                gn = g * nz[i]
                ec += clean[i] * clean[i]
                en += gn * gn
            w = 1.0 if ec >= en else 0.1
            for i in range(b0, b1):
                test[i] = (clean[i] + g * nz[i]) * w
        out.append(("gated", clean, test))
    return out


def fnv1a(x32):
    h = 0xCBF29CE484222325
    for b in x32.astype("<f4").tobytes():
        h = ((h ^ b) * 0x100000001B3) & MASK64
    return h


def si_sdr(est, ref):
    """eval.py's definition."""
    est = est - est.mean()
    ref = ref - ref.mean()
    alpha = np.dot(est, ref) / (np.dot(ref, ref) + 1e-12)
    target = alpha * ref
    res = est - target
    return float(10 * np.log10((np.dot(target, target) + 1e-12) / (np.dot(res, res) + 1e-12)))


def estimate_delay(out, ref, max_lag):
    """eval.py's definition, plus the normalised correlation at the chosen lag."""
    from scipy.signal import correlate

    c = correlate(out, ref, mode="full", method="fft")
    lags = np.arange(-(len(ref) - 1), len(out))
    keep = np.abs(lags) <= max_lag
    c, lags = c[keep], lags[keep]
    i = int(np.argmax(np.abs(c)))
    return int(lags[i]), float(c[i] / math.sqrt(np.dot(out, out) * np.dot(ref, ref)))


def synthetic():
    sets = [
        (16000, ["noisy_0db", "noisy_5db", "noisy_10db", "delayed_filtered", "gated"]),
        (48000, ["noisy_0db", "noisy_5db", "noisy_10db", "delayed_filtered", "gated"]),
        (8000, ["noisy_5db"]),
        (44100, ["noisy_5db"]),
    ]
    print("const VECTORS: &[Vector] = &[")
    for fs, kinds in sets:
        for name, clean, test in vectors(fs, kinds):
            r32 = np.array(clean, dtype=np.float64).astype(np.float32)
            t32 = np.array(test, dtype=np.float64).astype(np.float32)
            r, t = r32.astype(np.float64), t32.astype(np.float64)
            s = float(stoi(r, t, fs, extended=False))
            snr = float(10 * np.log10(np.dot(r, r) / np.dot(t - r, t - r)))
            lag, corr = estimate_delay(t, r, fs // 10)
            print("    Vector {")
            print(f'        name: "{name}",')
            print(f"        rate: {fs},")
            print(f"        reference_fnv: 0x{fnv1a(r32):016x},")
            print(f"        test_fnv: 0x{fnv1a(t32):016x},")
            print(f"        stoi: {s!r},")
            print(f"        snr_db: {snr!r},")
            print(f"        si_sdr_db: {si_sdr(t, r)!r},")
            print(f"        lag: {lag},")
            print(f"        correlation: {corr!r},")
            print("    },")
            sys.stdout.flush()
    print("];")


def devset(root):
    import soundfile as sf
    from scipy.signal import resample_poly

    names = sorted(os.listdir(os.path.join(root, "clean")))
    print("const DEVSET: &[DevItem] = &[")
    for name in names:
        if not name.endswith(".wav"):
            continue
        c, fs = sf.read(os.path.join(root, "clean", name), dtype="float64")
        y, fs_y = sf.read(os.path.join(root, "noisy", name), dtype="float64")
        assert fs == fs_y == 48000, name
        direct = float(stoi(c, y, fs, extended=False))
        # the harness's route: resample_poly to 16 kHz, then pystoi
        via16 = float(stoi(resample_poly(c, 1, 3), resample_poly(y, 1, 3), 16000, extended=False))
        print(f'    DevItem {{ name: "{name}", stoi_48k: {direct!r}, stoi_16k: {via16!r} }},')
        sys.stdout.flush()
    print("];")


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--devset", help="folder with clean/ and noisy/ (the development set)")
    a = ap.parse_args()
    synthetic()
    if a.devset:
        devset(a.devset)


if __name__ == "__main__":
    main()
