"""The pipecat filter inside a real pipecat pipeline (the ``pipecat-ai`` package).

Audio enters as pipecat's own ``InputAudioRawFrame``s through an input transport whose
``audio_in_filter`` is :class:`clearvox.pipecat.ClearvoxFilter`; what comes out at the
end of the pipeline is compared with the library's ``Pipeline`` fed the same chunks.
"""

from __future__ import annotations

import asyncio
import subprocess
import sys
import wave
from pathlib import Path

import numpy as np
import pytest

import clearvox
from clearvox.pipecat import ClearvoxFilter

from pipecat.frames.frames import (
    FilterEnableFrame,
    FilterUpdateSettingsFrame,
    InputAudioRawFrame,
)
from pipecat.tests.utils import SleepFrame, run_test
from pipecat.transports.base_input import BaseInputTransport
from pipecat.transports.base_transport import TransportParams

TESTDATA = Path(__file__).resolve().parents[2] / "testdata"
ITEM = "us_deep__cafe__snr0__16k_s16.wav"
RATE = 16_000
CHUNK = 320  # 20 ms, what pipecat's transports deliver
# Long enough for every queued audio frame to pass the filter before the next
# control frame (the filter takes well under a millisecond per chunk).
SETTLE = SleepFrame(sleep=0.3)


def read_s16(path: Path) -> np.ndarray:
    with wave.open(str(path), "rb") as w:
        assert w.getsampwidth() == 2 and w.getnchannels() == 1
        assert w.getframerate() == RATE
        return np.frombuffer(w.readframes(w.getnframes()), dtype="<i2").copy()


@pytest.fixture(scope="module")
def noisy() -> np.ndarray:
    return read_s16(TESTDATA / "noisy" / ITEM)


@pytest.fixture(scope="module")
def clean() -> np.ndarray:
    return read_s16(TESTDATA / "clean" / ITEM)


class ReplayInputTransport(BaseInputTransport):
    """An input transport with no device: audio arrives as frames from upstream,
    which pipecat's input transports feed through the same filter as captured
    audio."""

    async def start(self, frame):
        await super().start(frame)
        await self.set_transport_ready(frame)


def chunks(x: np.ndarray):
    return [x[i : i + CHUNK] for i in range(0, len(x), CHUNK)]


def audio_frames(x: np.ndarray):
    return [
        InputAudioRawFrame(audio=c.astype("<i2").tobytes(), sample_rate=RATE, num_channels=1)
        for c in chunks(x)
    ]


def run_filter(filt: ClearvoxFilter, frames) -> np.ndarray:
    """Runs ``frames`` through a pipeline with ``filt`` in its input transport and
    returns the audio that reached the pipeline's end."""
    transport = ReplayInputTransport(
        TransportParams(
            audio_in_enabled=True,
            audio_in_passthrough=True,
            audio_in_sample_rate=RATE,
            audio_in_filter=filt,
        )
    )
    # The transport filters audio on a task of its own, and an EndFrame cancels that
    # task: the last sleep lets it finish the queue first.
    down, _ = asyncio.run(
        run_test(transport, frames_to_send=[*frames, SETTLE], start_timeout=10.0)
    )
    out = [f.audio for f in down if isinstance(f, InputAudioRawFrame)]
    return np.frombuffer(b"".join(out), dtype="<i2")


def direct(x_parts, switches, **config) -> np.ndarray:
    """The library's Pipeline fed the same 20 ms chunks; ``switches[i]`` is applied
    before part ``i``."""
    cfg = dict(clearvox.preset_config("voice-chat"), output_rate=RATE, **config)
    p = clearvox.Pipeline(RATE, 1, cfg)
    out = []
    for part, switch in zip(x_parts, switches):
        if switch is not None:
            switch(p)
        for c in chunks(part):
            y = p.process(c)
            out.append(np.frombuffer(_pcm16(y), dtype="<i2"))
    return np.concatenate(out)


def _pcm16(y: np.ndarray) -> bytes:
    from clearvox.pipecat import _to_pcm16

    return _to_pcm16(y)


def rms_db(x: np.ndarray) -> float:
    x = x.astype(np.float64) / 32768.0
    return 10.0 * np.log10(np.mean(x * x) + 1e-20)


def test_the_filter_enhances_inside_a_pipecat_pipeline(noisy, clean):
    filt = ClearvoxFilter()
    got = run_filter(filt, audio_frames(noisy))
    want = direct([noisy], [None])
    # Every chunk reached the end of the pipeline, enhanced exactly as the library
    # enhances it.
    assert len(got) == len(want)
    assert abs(len(got) - len(noisy)) <= CHUNK
    np.testing.assert_array_equal(got, want)

    # And it is enhanced: against the clean reference (the output is `latency`
    # samples late), SI-SDR rises by more than 3 dB in café babble at 0 dB SNR
    # (-1.4 -> 2.6 dB measured) and STOI rises too.
    lat = filt.latency
    assert 0 < lat < 0.05 * RATE
    n = min(len(clean), len(got) - lat)
    ref = clean[:n].astype(np.float32) / 32768.0
    before = clearvox.metrics(ref, noisy[:n].astype(np.float32) / 32768.0, RATE)
    after = clearvox.metrics(ref, got[lat : lat + n].astype(np.float32) / 32768.0, RATE)
    assert after["si_sdr_db"] > before["si_sdr_db"] + 3.0, (before, after)
    assert after["stoi"] > before["stoi"], (before, after)


def test_disable_and_enable_frames_switch_without_a_gap(noisy):
    third = len(noisy) // 3 // CHUNK * CHUNK
    a, b, c = noisy[:third], noisy[third : 2 * third], noisy[2 * third :]
    filt = ClearvoxFilter()
    frames = (
        audio_frames(a)
        + [SETTLE, FilterEnableFrame(enable=False), SETTLE]
        + audio_frames(b)
        + [SETTLE, FilterEnableFrame(enable=True), SETTLE]
        + audio_frames(c)
    )
    got = run_filter(filt, frames)
    want = direct(
        [a, b, c],
        [None, lambda p: p.set_bypass(True), lambda p: p.set_bypass(False)],
    )
    np.testing.assert_array_equal(got, want)

    # While disabled, the output is the input itself, `latency` samples late (after
    # the 10 ms cross-fade); enhanced before and after, it is not.
    lat = filt.latency
    start, end = third + lat + 2 * CHUNK, 2 * third
    passed = got[start:end].astype(np.float64)
    dry = noisy[start - lat : end - lat].astype(np.float64)
    residual_db = 10 * np.log10(np.sum((passed - dry) ** 2) / np.sum(dry**2))
    assert residual_db < -30.0, residual_db
    enhanced = got[lat + 2 * CHUNK : third].astype(np.float64)
    dry_a = noisy[2 * CHUNK : third - lat].astype(np.float64)
    enhanced_db = 10 * np.log10(np.sum((enhanced - dry_a) ** 2) / np.sum(dry_a**2))
    assert enhanced_db > -10.0, enhanced_db


def test_update_settings_frame_changes_the_strength(noisy):
    half = len(noisy) // 2 // CHUNK * CHUNK
    a, b = noisy[:half], noisy[half:]
    filt = ClearvoxFilter()
    frames = (
        audio_frames(a)
        + [SETTLE, FilterUpdateSettingsFrame(settings={"strength": 0.0}), SETTLE]
        + audio_frames(b)
    )
    got = run_filter(filt, frames)
    want = direct([a, b], [None, lambda p: p.set_strength(0.0)])
    np.testing.assert_array_equal(got, want)


def test_a_bad_strength_from_the_app_is_refused_without_stopping_the_audio(noisy):
    async def go():
        filt = ClearvoxFilter()
        await filt.start(RATE)
        for bad in (2.0, "loud", None):
            await filt.process_frame(FilterUpdateSettingsFrame(settings={"strength": bad}))
        await filt.process_frame(FilterUpdateSettingsFrame(settings={"strength": 0.5}))
        out = await filt.filter(noisy[:3200].astype("<i2").tobytes())
        await filt.stop()
        return filt._config["strength"], out

    strength, out = asyncio.run(go())
    assert strength == 0.5
    assert len(out) > 0


def test_a_sample_split_across_chunks_is_kept(noisy):
    """pipecat hands over bytes; a chunk may end in the middle of a sample."""

    async def go():
        whole, split = ClearvoxFilter(), ClearvoxFilter()
        await whole.start(RATE)
        await split.start(RATE)
        data = noisy[:4000].astype("<i2").tobytes()
        a = await whole.filter(data)
        pieces = [data[0:641], data[641:1283], data[1283:]]
        b = b"".join([await split.filter(p) for p in pieces])
        await whole.stop()
        await split.stop()
        return a, b

    a, b = asyncio.run(go())
    assert a == b
    assert abs(len(a) - 8000) <= 2 * CHUNK


def test_any_transport_rate(noisy):
    """The transport's rate is the filter's input and output rate."""

    async def go(rate):
        filt = ClearvoxFilter()
        await filt.start(rate)
        x = np.zeros(rate, dtype="<i2").tobytes()
        y = await filt.filter(x)
        return len(y) // 2

    for rate in (8_000, 16_000, 24_000, 44_100, 48_000):
        n = asyncio.run(go(rate))
        assert abs(n - rate) <= rate // 50, (rate, n)


def test_a_bad_configuration_fails_when_the_filter_is_made():
    with pytest.raises(clearvox.ClearvoxError, match="strength"):
        ClearvoxFilter(strength=2.0)
    with pytest.raises(ValueError, match="output_rate"):
        ClearvoxFilter(output_rate=16_000)
    with pytest.raises(clearvox.ClearvoxError):
        ClearvoxFilter(preset="no-such-preset")


def test_before_start_audio_passes_unchanged():
    async def go():
        return await ClearvoxFilter().filter(b"\x01\x02\x03\x04")

    assert asyncio.run(go()) == b"\x01\x02\x03\x04"


def test_the_example_pipeline_runs(tmp_path, noisy):
    """examples/pipecat_agent.py: a WAV file played in real time through a pipecat
    input transport with the filter, switched off and on by the app's frames."""
    example = Path(__file__).resolve().parents[2] / "examples" / "pipecat_agent.py"
    out = tmp_path / "heard.wav"
    run = subprocess.run(
        [sys.executable, str(example), str(TESTDATA / "noisy" / ITEM), "-o", str(out)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert run.returncode == 0, run.stderr
    assert "ms behind the microphone" in run.stdout
    heard = read_s16(out)
    # Every 20 ms frame came out, none twice.
    assert abs(len(heard) - len(noisy)) <= CHUNK
    assert not list(tmp_path.glob("*.tmp"))
