#!/usr/bin/env python3
"""Regenerate clearvox's own test data (everything in testdata/ except this
script and README.md): synthetic speech from espeak-ng, mixed with noises that
are synthesised from scratch, at known speech-active SNRs.

Nothing here comes from a recording: the speech is espeak-ng, the noises are
numpy (the café babble is itself made of espeak-ng voices).

Set-up on a fresh Debian/Ubuntu machine:

    apt-get install espeak-ng
    python3 -m venv /tmp/tdvenv
    /tmp/tdvenv/bin/pip install numpy scipy soundfile

Regenerate (from the repository root; the output folder is the folder of this
script, whatever the current directory):

    /tmp/tdvenv/bin/python testdata/make_testdata.py

The script is deterministic: every random choice comes from a numpy
Generator seeded with a fixed number derived from the item's name, so two runs
with the same versions of espeak-ng, numpy and scipy write the same bytes.
(Generated with espeak-ng 1.51, numpy 2.4, scipy 1.17, soundfile 0.14; another
espeak-ng version may pronounce a little differently.)  Old outputs are
deleted first.  The script reads every file back, measures the SNR and writes
manifest.json; it fails if a measured SNR is off target by more than 0.01 dB
or if testdata/ grows past its 5 MB budget.

Conventions (see README.md):
  * speech is scaled to an active level of -26 dBFS (mean power over the
    speech-active frames, below);
  * speech-active SNR = 10 log10(P_speech / P_noise), where P_speech is the
    mean power of the clean speech over its active frames (20 ms frames whose
    energy is within 40 dB of the loudest frame) and P_noise the mean power of
    the added noise over the whole file; for the stereo files it is measured
    on the mono downmix (L+R)/2;
  * every mixture starts with >= 0.5 s of noise alone and ends with >= 0.3 s.
"""

import json
import os
import shutil
import struct
import subprocess
import sys
import tempfile
import zlib

import numpy as np
import scipy
import soundfile as sf
from scipy.signal import butter, fftconvolve, resample_poly, sosfilt

OUT = os.path.dirname(os.path.abspath(__file__))
SR = 48000                      # every signal is synthesised at 48 kHz, then resampled
BASE_SEED = 20240611
SPEECH_LEVEL_DBFS = -26.0       # active speech level, as in the development set
NOISE_ONLY_DBFS = -30.0         # RMS of the noise_only clips, as in the development set
FRAME_S = 0.020                 # frames for the speech-activity decision
ACTIVE_RANGE_DB = 40.0          # active = within this of the loudest frame
LEAD_S = 0.5                    # noise alone before the speech (plus 0..60 ms)
TAIL_S = 0.3                    # at least this much noise alone after it
MIN_DURATION_S = 4.0
BUDGET_BYTES = 5_000_000

# ---------------------------------------------------------------------------
# what is made

# Target talkers: espeak-ng voice, speed in words per minute, pitch 0..99.
VOICES = {
    "us_male":   {"voice": "en-us",         "speed": 150, "pitch": 45},
    "gb_female": {"voice": "en-gb+f3",      "speed": 160, "pitch": 60},
    "us_deep":   {"voice": "en-us+m4",      "speed": 140, "pitch": 30},
    "rp_female": {"voice": "en-gb-x-rp+f2", "speed": 160, "pitch": 55},
}
# One sentence per talker (the clean speech of a talker at a rate is the same
# in all of that rate's mixtures, so it is stored once).
SENTENCES = {
    "us_male":   "Turn on the lights, then check the back door.",
    "gb_female": "My train was late again, so I took a taxi.",
    "us_deep":   "We should leave early, before the traffic starts.",
    "rp_female": "Could you read that number back to me, please?",
}

# (rate, format) -> soundfile subtype, channels
FORMATS = {
    (48000, "f32"): ("FLOAT", 1),
    (44100, "s24"): ("PCM_24", 2),
    (16000, "s16"): ("PCM_16", 1),
    (8000, "s16"):  ("PCM_16", 1),
}

# (voice, noise, snr dB, rate, format).  48 kHz f32 and 44.1 kHz stereo s24
# cost 6-8x more per second than 16 kHz s16, so the noise x SNR spread is
# carried mostly by the cheap rates; every noise appears at >= 2 SNRs and
# every SNR at >= 3 noises.
MIXTURES = [
    ("us_male",   "cafe",     5,  48000, "f32"),   # the main example
    ("us_male",   "fan",      0,  48000, "f32"),
    ("gb_female", "traffic",  10, 44100, "s24"),
    ("us_deep",   "cafe",     0,  16000, "s16"),
    ("us_deep",   "fan",      10, 16000, "s16"),
    ("us_deep",   "hum",      5,  16000, "s16"),
    ("us_deep",   "keyboard", 0,  16000, "s16"),
    ("us_deep",   "traffic",  5,  16000, "s16"),
    ("rp_female", "cafe",     10, 8000,  "s16"),
    ("rp_female", "hum",      10, 8000,  "s16"),
    ("rp_female", "keyboard", 5,  8000,  "s16"),
]
RATE_TAG = {48000: "48k", 44100: "44k1", 16000: "16k", 8000: "8k"}
MAIN_EXAMPLE = "noisy/us_male__cafe__snr5__48k_f32.wav"

NOISE_ONLY_RATE = 16000
NOISE_ONLY_S = 3.0

# Stereo (44.1 kHz) files: the speech is identical in both channels; the
# noise in the right channel arrives later and a little quieter, and partly
# decorrelated by a short diffuse tail (a second microphone a few centimetres
# away in a room), so that the downmix shows no deep comb filter.
STEREO_NOISE_DELAY = 4          # samples at 44.1 kHz (0.09 ms, 3 cm)
STEREO_NOISE_DIRECT = 0.85      # share of the delayed copy in the right channel's noise
STEREO_NOISE_TAIL_S = 0.004     # length of its diffuse part
STEREO_NOISE_GAIN_DB = -1.0

# ---------------------------------------------------------------------------
# small helpers


def seed_for(*names):
    """A fixed seed for a named thing (Python's hash() is salted per process)."""
    return [BASE_SEED] + [zlib.crc32(str(n).encode()) for n in names]


def rng_for(*names):
    return np.random.default_rng(seed_for(*names))


def rms(x):
    return float(np.sqrt(np.mean(np.square(x))))


def db(p):
    return float(10.0 * np.log10(p))


def hp(x, fc, order=2, sr=SR):
    return sosfilt(butter(order, fc, "highpass", fs=sr, output="sos"), x)


def lp(x, fc, order=2, sr=SR):
    return sosfilt(butter(order, fc, "lowpass", fs=sr, output="sos"), x)


def bp(x, lo, hi, order=2, sr=SR):
    return sosfilt(butter(order, [lo, hi], "bandpass", fs=sr, output="sos"), x)


def shaped_noise(rng, n, mag):
    """Gaussian noise whose amplitude spectrum follows mag(f) (f in Hz)."""
    spec = np.fft.rfft(rng.standard_normal(n))
    f = np.fft.rfftfreq(n, 1.0 / SR)
    f[0] = f[1]
    y = np.fft.irfft(spec * mag(f), n)
    return y / rms(y)


def pink(rng, n):
    return shaped_noise(rng, n, lambda f: 1.0 / np.sqrt(f))


def resample(x, sr_from, sr_to):
    if sr_from == sr_to:
        return x
    g = np.gcd(sr_from, sr_to)
    return resample_poly(x, sr_to // g, sr_from // g, axis=0)


def frame_powers(x, sr):
    fl = int(round(FRAME_S * sr))
    nf = len(x) // fl
    return np.mean(np.square(x[: nf * fl].reshape(nf, fl)), axis=1), fl


def active_frames(clean, sr):
    e, fl = frame_powers(clean, sr)
    return e > e.max() * 10 ** (-ACTIVE_RANGE_DB / 10), fl


def speech_active_power(clean, sr):
    e, _ = frame_powers(clean, sr)
    act, _ = active_frames(clean, sr)
    return float(e[act].mean())


def speech_active_snr(clean, noise, sr):
    """The project's SNR: speech over its active frames / noise over the whole file."""
    return db(speech_active_power(clean, sr) / np.mean(np.square(noise)))


def snr_noise_over_active(clean, noise, sr):
    """Alternative, for information: noise power over the same active frames."""
    act, fl = active_frames(clean, sr)
    en, _ = frame_powers(noise, sr)
    return db(speech_active_power(clean, sr) / en[act].mean())


# ---------------------------------------------------------------------------
# espeak-ng

_TTS_CACHE = {}


def espeak_version():
    out = subprocess.run(["espeak-ng", "--version"], capture_output=True, text=True, check=True)
    words = out.stdout.split()
    return words[words.index("text-to-speech:") + 1] if "text-to-speech:" in words else out.stdout.strip()


def tts(text, voice, speed, pitch):
    """Speech from espeak-ng at 48 kHz, silence trimmed, 5 ms fades."""
    key = (text, voice, speed, pitch)
    if key not in _TTS_CACHE:
        with tempfile.TemporaryDirectory() as d:
            path = os.path.join(d, "s.wav")
            subprocess.run(["espeak-ng", "-v", voice, "-s", str(speed), "-p", str(pitch),
                            "-w", path, text], check=True, capture_output=True)
            x, sr = sf.read(path, dtype="float64")
        x = resample(x - np.mean(x), sr, SR)
        env = np.abs(x) > np.abs(x).max() * 10 ** (-50 / 20)
        idx = np.flatnonzero(env)
        x = x[max(idx[0] - 96, 0): idx[-1] + 96].copy()
        fade = int(0.005 * SR)
        ramp = 0.5 - 0.5 * np.cos(np.linspace(0, np.pi, fade))
        x[:fade] *= ramp
        x[-fade:] *= ramp[::-1]
        _TTS_CACHE[key] = x
    return _TTS_CACHE[key]


# ---------------------------------------------------------------------------
# noises, all at 48 kHz, unit RMS.  `n` samples, randomness from `rng`.

BABBLE_SENTENCES = [
    "I told him the soup was cold, but he did not listen.",
    "Did you see the game last night?",
    "She is moving to Berlin in the spring.",
    "Two coffees and a slice of the lemon cake, please.",
    "The rent went up again this year.",
    "We could meet at the station around six.",
    "Honestly, I think the first film was better.",
    "My sister just started a new job at the hospital.",
    "Is anyone sitting here?",
    "They finally fixed the heating in our office.",
    "I will have the same as yesterday.",
    "The kids loved the museum, especially the dinosaurs.",
    "Do you want to split the bill?",
    "It rained the whole weekend, so we stayed in.",
    "He says the new phone is much faster.",
    "We are thinking about a trip to the coast.",
    "Can I get that to take away?",
    "The bus was so crowded this morning.",
    "You should try the tomato soup here.",
    "I forgot my umbrella at home again.",
]
BABBLE_VOICES = [
    ("en-us+m1", 165, 40), ("en-gb+f1", 170, 65), ("en-us+m3", 155, 35),
    ("en-gb+f4", 175, 70), ("en-gb-scotland+m2", 160, 45), ("en-us+f2", 170, 60),
    ("en-029+m5", 150, 50), ("en-us-nyc+m6", 175, 40), ("en-gb+f5", 160, 55),
]


def room_ir(rng, rt60, drr_db):
    """Exponentially decaying noise tail with a direct path (distant talker)."""
    n = int(rt60 * SR)
    t = np.arange(n) / SR
    tail = rng.standard_normal(n) * np.exp(-6.9 * t / rt60)
    tail = lp(tail, 4000, order=1)          # high frequencies die away faster
    tail[: int(0.004 * SR)] = 0.0           # first reflections after ~4 ms
    h = tail / np.sqrt(np.sum(tail ** 2))
    h[0] = 10 ** (drr_db / 20)
    return h


def noise_cafe(rng, n):
    """Café: 7 distant, reverberant talkers, a clink now and then, a low floor."""
    total = np.zeros(n)
    voices = rng.permutation(len(BABBLE_VOICES))[:7]
    for vi in voices:
        voice, speed, pitch = BABBLE_VOICES[vi]
        speed += int(rng.integers(-15, 16))
        pitch += int(rng.integers(-8, 9))
        track = np.zeros(n + 2 * SR)
        pos = -int(rng.uniform(0.0, 2.0) * SR)      # start mid-sentence
        while pos < len(track):
            s = tts(BABBLE_SENTENCES[rng.integers(len(BABBLE_SENTENCES))], voice, speed, pitch)
            a, b = max(pos, 0), min(pos + len(s), len(track))
            if b > a:
                track[a:b] += s[a - pos: b - pos]
            pos += len(s) + int(rng.uniform(0.15, 0.9) * SR)
        h = room_ir(rng, rng.uniform(0.45, 0.8), rng.uniform(-8.0, -2.0))
        wet = fftconvolve(track, h)[SR: SR + n]
        total += wet / (rms(wet) + 1e-12) * 10 ** (rng.uniform(-6.0, 0.0) / 20)
    total = lp(hp(total, 120), 7000)          # distance: less low end, less top
    total /= rms(total)
    # cups and cutlery: short, bright, damped partials
    clinks = np.zeros(n)
    t = np.arange(int(0.25 * SR)) / SR
    for _ in range(rng.poisson(0.5 * n / SR)):
        c = np.zeros_like(t)
        for _ in range(3):
            c += np.sin(2 * np.pi * rng.uniform(2500, 7000) * t + rng.uniform(0, 6.3)) \
                * np.exp(-t / rng.uniform(0.02, 0.09)) * rng.uniform(0.3, 1.0)
        c = fftconvolve(c, room_ir(rng, 0.5, -4.0))[: len(t)]
        at = int(rng.integers(0, n))
        m = min(len(t), n - at)
        clinks[at: at + m] += c[:m] / np.abs(c).max() * rng.uniform(0.3, 1.0)
    # room floor: ventilation and distant clatter, up to the top of the band
    floor = hp(shaped_noise(rng, n, lambda f: 1.0 / (1 + (f / 400) ** 2) ** 0.35), 80)
    out = total + 0.6 * clinks + 0.3 * floor / rms(floor)
    return out / rms(out)


def noise_fan(rng, n):
    """Fan: broadband air noise, blade-pass tone and harmonics, motor whine, slow beats."""
    t = np.arange(n) / SR
    air = shaped_noise(rng, n, lambda f: (f / 70) ** 2 / (1 + (f / 70) ** 2)
                       / (1 + (f / 700) ** 2) ** 0.35 / (1 + (f / 9000) ** 2))
    hiss = hp(rng.standard_normal(n), 3000)
    hiss /= rms(hiss)
    broad = air + 0.15 * hiss
    broad /= rms(broad)
    beat = 1 + 0.12 * np.sin(2 * np.pi * rng.uniform(0.3, 0.5) * t + rng.uniform(0, 6.3)) \
        + 0.05 * np.sin(2 * np.pi * rng.uniform(0.9, 1.3) * t + rng.uniform(0, 6.3))
    f_bp = rng.uniform(105, 135)                 # blade-pass frequency
    wobble = 1 + 0.004 * np.sin(2 * np.pi * 0.13 * t + rng.uniform(0, 6.3))
    phase = 2 * np.pi * np.cumsum(f_bp * wobble) / SR
    tone = np.zeros(n)
    for k in range(1, 8):
        tone += np.sin(k * phase + rng.uniform(0, 6.3)) / k ** 1.3
    tone *= 1 + 0.2 * np.sin(2 * np.pi * 0.25 * t + rng.uniform(0, 6.3))
    tone /= rms(tone)
    whine = np.sin(2 * np.pi * rng.uniform(1150, 1400) * t + rng.uniform(0, 6.3))
    out = broad * beat + 10 ** (-10 / 20) * tone + 10 ** (-30 / 20) * np.sqrt(2) * whine
    return out / rms(out)


def noise_hum(rng, n):
    """Mains hum: 50 Hz and harmonics (odd ones stronger), slow drift, a little hiss."""
    t = np.arange(n) / SR
    f0 = 50.0 + 0.03 * np.sin(2 * np.pi * 0.05 * t + rng.uniform(0, 6.3))
    phase = 2 * np.pi * np.cumsum(f0) / SR
    levels_db = {1: 0, 2: -7, 3: -4, 4: -15, 5: -9, 6: -19, 7: -14, 8: -24, 9: -18}
    hum = np.zeros(n)
    for k in range(1, 40):
        lvl = levels_db.get(k, -18 - 0.9 * k - (6 if k % 2 == 0 else 0))
        hum += 10 ** (lvl / 20) * np.sin(k * phase + rng.uniform(0, 6.3))
    hum *= 1 + 0.03 * np.sin(2 * np.pi * 0.2 * t + rng.uniform(0, 6.3))
    hum /= rms(hum)
    hiss = pink(rng, n) + 0.08 * rng.standard_normal(n)
    hiss = hp(hiss, 40)
    hiss /= rms(hiss)
    out = hum + 10 ** (-14 / 20) * hiss
    return out / rms(out)


def key_click(rng, strength, low):
    """One key transient: a noise snap, a few plastic resonances, a thump."""
    m = int(0.04 * SR)
    t = np.arange(m) / SR
    snap = bp(rng.standard_normal(m), 1500, 9000) * np.exp(-t / rng.uniform(0.0008, 0.002))
    body = np.zeros(m)
    lo, hi = (400, 1800) if low else (1200, 5500)
    for _ in range(3):
        body += np.sin(2 * np.pi * rng.uniform(lo, hi) * t + rng.uniform(0, 6.3)) \
            * np.exp(-t / rng.uniform(0.003, 0.012)) * rng.uniform(0.2, 0.6)
    thump = np.sin(2 * np.pi * rng.uniform(150, 300) * t) * np.exp(-t / 0.006) * 0.5
    c = snap / (np.abs(snap).max() + 1e-12) + body + thump
    return strength * c / np.abs(c).max()


def noise_keyboard(rng, n):
    """Typing: words of 2-9 keys, a space bar, thinking pauses, over a room floor."""
    out = np.zeros(n)

    def add(at, click):
        m = min(len(click), n - at)
        if m > 0:
            out[at: at + m] += click[:m]

    pos = rng.uniform(0.0, 0.4)
    while pos * SR < n:
        for _ in range(int(rng.integers(2, 10))):
            amp = 10 ** (rng.uniform(-5, 0) / 20)
            at = int(pos * SR)
            add(at, key_click(rng, amp, False))                            # key press
            add(at + int(rng.uniform(0.06, 0.11) * SR), key_click(rng, 0.4 * amp, False))  # release
            pos += max(rng.gamma(4.0, 0.035), 0.06)
        add(int(pos * SR), key_click(rng, 1.3 * 10 ** (rng.uniform(-3, 0) / 20), True))  # space bar
        pos += rng.gamma(4.0, 0.05)
        if rng.random() < 0.25:
            pos += rng.uniform(0.4, 1.2)                                   # thinking
    clicks = fftconvolve(out, room_ir(rng, 0.3, 6.0))[:n]       # desk and room
    clicks /= rms(clicks)
    floor = lp(hp(pink(rng, n), 50), 6000)
    floor /= rms(floor)
    out = clicks + 10 ** (-15 / 20) * floor
    return out / rms(out)


def noise_traffic(rng, n):
    """Street: brown rumble with slow swells, passing vehicles with Doppler-shifted engines."""
    t = np.arange(n) / SR
    w = rng.standard_normal(n + SR)
    brown = sosfilt(butter(1, 8, "lowpass", fs=SR, output="sos"), w)[SR:]
    brown = hp(brown, 25)
    brown /= rms(brown)
    roar = bp(pink(rng, n), 250, 2500)          # distant tyres
    roar /= rms(roar)
    swell = 1 + 0.45 * np.sin(2 * np.pi * rng.uniform(0.05, 0.12) * t + rng.uniform(0, 6.3))
    base = (brown + 0.35 * roar) * swell
    base /= rms(base)
    passes = np.zeros(n)
    dur = n / SR
    n_cars = max(1, rng.poisson(0.35 * (dur + 4)))
    for i in range(n_cars):
        tc = rng.uniform(0.1, dur - 0.1) if i == 0 else rng.uniform(-2.0, dur + 2.0)
        v = rng.uniform(8, 18)                  # m/s
        d = rng.uniform(6, 20)                  # closest distance, m
        x = v * (t - tc)
        r = np.sqrt(x ** 2 + d ** 2)
        vr = v * x / r                          # receding speed
        env = (d / r) ** 1.5
        f0 = rng.uniform(25, 45) * 343.0 / (343.0 + vr)
        phase = 2 * np.pi * np.cumsum(f0) / SR
        engine = sum(np.sin(k * phase + rng.uniform(0, 6.3)) / k for k in range(1, 7))
        tyres = bp(rng.standard_normal(n), 200, 1800)
        car = 0.6 * engine / rms(engine) + tyres / rms(tyres)
        passes += car * env * 10 ** (rng.uniform(-4, 2) / 20)
    out = 0.6 * base + 1.5 * passes
    return out / rms(out)


NOISES = {
    "cafe": noise_cafe,
    "fan": noise_fan,
    "hum": noise_hum,
    "keyboard": noise_keyboard,
    "traffic": noise_traffic,
}
NOISE_DESCRIPTIONS = {k: f.__doc__.strip() for k, f in NOISES.items()}


def make_noise(kind, n48, *names):
    """`n48` samples of noise `kind` at 48 kHz, seeded by `names`."""
    return NOISES[kind](rng_for("noise", kind, *names), n48)


# ---------------------------------------------------------------------------
# mixtures


def speech_at(voice, sr):
    """Clean speech of `voice` at rate `sr`: lead silence, speech, tail; level set."""
    v = VOICES[voice]
    s48 = tts(SENTENCES[voice], v["voice"], v["speed"], v["pitch"])
    rng = rng_for("lead", voice, sr)
    lead = int(round((LEAD_S + rng.uniform(0.0, 0.06)) * sr))
    s = resample(s48, SR, sr)
    total = max(int(np.ceil(MIN_DURATION_S * sr)), lead + len(s) + int(np.ceil(TAIL_S * sr)))
    total += int(rng.integers(0, int(0.02 * sr)))   # lengths that are not whole frames
    clean = np.zeros(total)
    clean[lead: lead + len(s)] = s
    clean *= 10 ** (SPEECH_LEVEL_DBFS / 20) / np.sqrt(speech_active_power(clean, sr))
    # the actual onset/offset, from the samples
    nz = np.flatnonzero(np.abs(clean) > 10 ** (-70 / 20))
    return clean, nz[0] / sr, (nz[-1] + 1) / sr


def noise_at(kind, n, sr, stereo, *names):
    """`n` samples of noise at rate `sr` (shape (n,) or (n, 2))."""
    margin = int(0.1 * sr)
    n48 = int(np.ceil((n + 2 * margin) * SR / sr)) + 16
    x = resample(make_noise(kind, n48, *names), SR, sr)
    if not stereo:
        return x[margin: margin + n]
    rng = rng_for("stereo", kind, *names)
    m = int(STEREO_NOISE_TAIL_S * sr)
    tail = rng.standard_normal(m) * np.exp(-np.arange(m) / (m / 3))
    h = np.zeros(STEREO_NOISE_DELAY + 1 + m)
    h[STEREO_NOISE_DELAY] = STEREO_NOISE_DIRECT
    h[STEREO_NOISE_DELAY + 1:] = tail * np.sqrt(1 - STEREO_NOISE_DIRECT ** 2) / np.sqrt(np.sum(tail ** 2))
    left = x[margin: margin + n]
    right = 10 ** (STEREO_NOISE_GAIN_DB / 20) * np.convolve(x, h)[margin: margin + n]
    return np.stack([left, right], axis=1)


def downmix(x):
    return x.mean(axis=1) if x.ndim == 2 else x


def rel(path):
    return os.path.relpath(path, OUT)


def write_float_wav(path, data, sr):
    """32-bit float WAV written by hand: libsndfile adds a PEAK chunk holding the
    current time, which would make the files differ from run to run."""
    x = np.asarray(data, dtype="<f4")
    channels = 1 if x.ndim == 1 else x.shape[1]
    frames = x.shape[0]
    payload = x.tobytes()
    fmt = struct.pack("<HHIIHHH", 3, channels, sr, sr * 4 * channels, 4 * channels, 32, 0)
    with open(path, "wb") as f:
        f.write(b"RIFF" + struct.pack("<I", 4 + 8 + len(fmt) + 12 + 8 + len(payload)) + b"WAVE")
        f.write(b"fmt " + struct.pack("<I", len(fmt)) + fmt)
        f.write(b"fact" + struct.pack("<II", 4, frames))
        f.write(b"data" + struct.pack("<I", len(payload)) + payload)


def write(path, data, sr, subtype):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    peak = np.abs(data).max()
    if peak >= 1.0:
        raise SystemExit(f"{rel(path)} would clip (peak {peak:.3f})")
    if subtype == "FLOAT":
        write_float_wav(path, data, sr)
    else:
        sf.write(path, data, sr, subtype=subtype)


def check_read(path, sr, subtype, channels):
    info = sf.info(path)
    assert (info.samplerate, info.subtype, info.channels) == (sr, subtype, channels), (path, info)
    x, got_sr = sf.read(path, dtype="float64", always_2d=False)
    return x


def main():
    for sub in ("noisy", "clean", "noise_only"):
        shutil.rmtree(os.path.join(OUT, sub), ignore_errors=True)
    os.makedirs(os.path.join(OUT, "clean", "voices"))

    items = []
    cleans = {}
    for voice, noise, snr, sr, fmt in MIXTURES:
        subtype, channels = FORMATS[(sr, fmt)]
        name = f"{voice}__{noise}__snr{snr}__{RATE_TAG[sr]}_{fmt}.wav"
        # clean speech: once per (voice, rate), 16-bit mono
        if (voice, sr) not in cleans:
            clean, t0, t1 = speech_at(voice, sr)
            cpath = os.path.join(OUT, "clean", "voices", f"{voice}__{RATE_TAG[sr]}_s16.wav")
            write(cpath, clean, sr, "PCM_16")
            cleans[(voice, sr)] = (clean, t0, t1, cpath)
        clean, t0, t1, cpath = cleans[(voice, sr)]
        n = len(clean)
        nz = noise_at(noise, n, sr, channels == 2, voice, noise, snr, sr)
        # scale the noise so that the (downmixed) mixture has exactly the target SNR
        p_s = speech_active_power(clean, sr)
        nz *= np.sqrt(p_s / 10 ** (snr / 10) / np.mean(np.square(downmix(nz))))
        mix = clean[:, None] + nz if channels == 2 else clean + nz
        npath = os.path.join(OUT, "noisy", name)
        write(npath, mix, sr, subtype)
        # mirrored name in clean/: a link to the one clean file of that voice and rate
        link = os.path.join(OUT, "clean", name)
        os.symlink(os.path.relpath(cpath, os.path.dirname(link)), link)

        # read back and measure
        m = check_read(npath, sr, subtype, channels)
        c = check_read(link, sr, "PCM_16", 1)
        assert len(m) == len(c) == n
        added = downmix(m) - c
        got = speech_active_snr(c, added, sr)
        if abs(got - snr) > 0.01:
            raise SystemExit(f"{name}: SNR {got:.3f} dB, wanted {snr}")
        item = {
            "noisy": rel(npath),
            "clean": rel(link),
            "clean_file": rel(cpath),
            "voice": voice,
            "espeak_voice": VOICES[voice]["voice"],
            "espeak_speed_wpm": VOICES[voice]["speed"],
            "espeak_pitch": VOICES[voice]["pitch"],
            "text": SENTENCES[voice],
            "noise": noise,
            "snr_db": snr,
            "snr_measured_db": round(got, 3),
            "snr_noise_over_active_frames_db": round(snr_noise_over_active(c, added, sr), 2),
            "sample_rate": sr,
            "format": fmt,
            "subtype": subtype,
            "channels": channels,
            "clean_format": "s16",
            "samples": n,
            "duration_s": round(n / sr, 4),
            "speech_start_s": round(t0, 3),
            "speech_end_s": round(t1, 3),
            "speech_active_level_dbfs": round(db(speech_active_power(c, sr)), 2),
            "noise_rms_dbfs": round(db(np.mean(np.square(added))), 2),
            "peak_dbfs": round(20 * np.log10(np.abs(m).max()), 2),
            "main_example": rel(npath) == MAIN_EXAMPLE,
        }
        if channels == 2:
            item["stereo"] = {
                "speech": "identical in both channels",
                "noise_right_delay_samples": STEREO_NOISE_DELAY,
                "noise_right_gain_db": STEREO_NOISE_GAIN_DB,
                "noise_right": (f"{STEREO_NOISE_DIRECT} x the left noise delayed by {STEREO_NOISE_DELAY} samples "
                                f"+ a {STEREO_NOISE_TAIL_S * 1000:g} ms diffuse tail, then {STEREO_NOISE_GAIN_DB} dB"),
                "noise_interchannel_correlation": round(float(np.corrcoef(m[:, 0] - c, m[:, 1] - c)[0, 1]), 3),
                "snr_left_db": round(speech_active_snr(c, m[:, 0] - c, sr), 2),
                "snr_right_db": round(speech_active_snr(c, m[:, 1] - c, sr), 2),
                "snr_measured_on": "downmix (L+R)/2",
            }
        items.append(item)
        print(f"{rel(npath):48s} SNR {got:6.3f} dB  (noise over active frames "
              f"{item['snr_noise_over_active_frames_db']:6.2f})  peak {item['peak_dbfs']:6.1f} dBFS")

    noise_only = []
    for kind in NOISES:
        sr = NOISE_ONLY_RATE
        n = int(NOISE_ONLY_S * sr)
        x = noise_at(kind, n, sr, False, "noise_only")
        x *= 10 ** (NOISE_ONLY_DBFS / 20) / rms(x)
        path = os.path.join(OUT, "noise_only", f"{kind}__16k_s16.wav")
        write(path, x, sr, "PCM_16")
        y = check_read(path, sr, "PCM_16", 1)
        noise_only.append({
            "file": rel(path), "noise": kind, "sample_rate": sr, "format": "s16",
            "channels": 1, "samples": n, "duration_s": n / sr,
            "rms_dbfs": round(db(np.mean(np.square(y))), 2),
            "peak_dbfs": round(20 * np.log10(np.abs(y).max()), 2),
        })
        print(f"{rel(path):48s} RMS {noise_only[-1]['rms_dbfs']:.2f} dBFS")

    manifest = {
        "generator": "testdata/make_testdata.py",
        "made_with": {
            "espeak-ng": espeak_version(),
            "numpy": np.__version__,
            "scipy": scipy.__version__,
            "soundfile": sf.__version__,
            "libsndfile": sf.__libsndfile_version__,
        },
        "main_example": MAIN_EXAMPLE,
        "snr_definition": (
            "speech-active SNR: mean power of the clean speech over its active 20 ms frames "
            "(frames within 40 dB of the loudest frame) divided by the mean power of the added "
            "noise over the whole file; stereo files are measured on the downmix (L+R)/2. "
            "Same definition as the development set."),
        "speech_level": f"clean speech active level {SPEECH_LEVEL_DBFS} dBFS (same power definition)",
        "clean_references": (
            "mono, 16-bit, same rate and length as the mixture, sample-aligned, same scaling: "
            "mixture = clean + noise. clean/<name> mirrors noisy/<name> as a symbolic link to "
            "clean/voices/<voice>__<rate>_s16.wav (the clean speech does not depend on the noise "
            "or the SNR); clean_file names the real file."),
        "voices": VOICES,
        "noises": NOISE_DESCRIPTIONS,
        "items": items,
        "noise_only": noise_only,
    }
    with open(os.path.join(OUT, "manifest.json"), "w", encoding="utf-8") as f:
        json.dump(manifest, f, indent=1, ensure_ascii=False)
        f.write("\n")

    size = os.lstat(OUT).st_size
    for root, dirs, files in os.walk(OUT):
        for fn in files + dirs:
            size += os.lstat(os.path.join(root, fn)).st_size
    print(f"testdata/: {size} bytes (apparent, symbolic links not followed)")
    if size > BUDGET_BYTES:
        raise SystemExit(f"testdata/ is over its budget of {BUDGET_BYTES} bytes")


if __name__ == "__main__":
    sys.exit(main())
