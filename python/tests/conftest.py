"""Shared fixtures: the repository's test recordings, a minimal WAV reader (16-bit PCM
and 32-bit float, what the comparisons need), and the CLI binary when one is built."""

import os
import struct
from pathlib import Path

import numpy as np
import pytest

REPO = Path(__file__).resolve().parents[2]
NOISY = REPO / "testdata" / "noisy"


def read_wav(path):
    """(samples, rate, channels): int16 for 16-bit PCM, float32 for 32-bit float."""
    data = Path(path).read_bytes()
    assert data[:4] == b"RIFF" and data[8:12] == b"WAVE", path
    pos, fmt, samples = 12, None, None
    while pos + 8 <= len(data):
        chunk, size = data[pos : pos + 4], struct.unpack("<I", data[pos + 4 : pos + 8])[0]
        body = data[pos + 8 : pos + 8 + size]
        if chunk == b"fmt ":
            tag, channels, rate = struct.unpack("<HHI", body[:8])
            bits = struct.unpack("<H", body[14:16])[0]
            if tag == 0xFFFE:
                tag = struct.unpack("<H", body[24:26])[0]
            fmt = (tag, channels, rate, bits)
        elif chunk == b"data":
            samples = body
        pos += 8 + size + (size & 1)
    tag, channels, rate, bits = fmt
    if (tag, bits) == (1, 16):
        x = np.frombuffer(samples, dtype="<i2").astype(np.int16)
    elif (tag, bits) == (3, 32):
        x = np.frombuffer(samples, dtype="<f4").astype(np.float32)
    else:
        raise ValueError(f"{path}: format {tag}/{bits} bits not read by the tests")
    if channels > 1:
        x = x.reshape(-1, channels)
    return x, rate, channels


@pytest.fixture(scope="session")
def speech16k():
    """4 s of a voice in café noise, 16 kHz mono int16."""
    x, rate, _ = read_wav(NOISY / "us_deep__cafe__snr0__16k_s16.wav")
    assert rate == 16000
    return x


@pytest.fixture(scope="session")
def cli():
    """The clearvox CLI built by cargo (target/release or target/debug)."""
    for profile in ("release", "debug"):
        exe = REPO / "target" / profile / "clearvox"
        if exe.is_file() and os.access(exe, os.X_OK):
            return exe
    message = "no clearvox CLI built: run `cargo build` (or `cargo test`) at the repository root first"
    if os.environ.get("CI") == "true":
        # CI builds the CLI before these tests: a comparison skipped there is a bug.
        pytest.fail(message)
    pytest.skip(message)
