"""clearvox.Pipeline: streaming equals whole, threads, echo reference, bad input."""

import threading
import time

import numpy as np
import pytest

import clearvox


def stream(pipeline, x, chunk):
    parts = [pipeline.process(x[i : i + chunk]) for i in range(0, len(x), chunk)]
    parts.append(pipeline.flush())
    return np.concatenate(parts)


def test_streaming_is_the_aligned_offline_result_shifted_by_the_latency(speech16k):
    x = speech16k[:32000]
    p = clearvox.Pipeline(16000, 1, "voice-chat")
    out = stream(p, x, 4096)
    assert out.dtype == np.float32
    assert len(out) == len(x) + p.latency
    offline = clearvox.enhance(x, 16000, "voice-chat")
    assert np.array_equal(out[p.latency :], offline)


@pytest.mark.parametrize("chunk", [1, 7, 480, 4096])
def test_any_chunk_size_gives_the_same_samples(speech16k, chunk):
    x = speech16k[: 16000 if chunk == 1 else 48000]
    whole = clearvox.Pipeline(16000, 1, "voice-chat")
    expected = np.concatenate([whole.process(x), whole.flush()])
    p = clearvox.Pipeline(16000, 1, "voice-chat")
    assert np.array_equal(stream(p, x, chunk), expected)


def test_properties_events_reset_and_controls(speech16k):
    p = clearvox.Pipeline(16000, 1, {"preset": "voice-chat", "output_rate": 48000})
    assert (p.input_rate, p.output_rate, p.channels) == (16000, 48000, 1)
    names = [name for name, _ in p.stage_latencies]
    assert names[0] == "resample_in" and names[-1] == "resample_out"
    assert 20 * 48 <= p.latency < 25 * 48
    first = p.process(speech16k)
    events = p.pop_events()
    assert events and events[0][0] == "speech_start" and p.pop_events() == []
    assert p.events == p.pop_events
    assert p.flush().size > 0
    with pytest.raises(clearvox.ClearvoxError, match="reset"):
        p.process(speech16k[:160])
    p.reset()
    assert np.array_equal(p.process(speech16k), first)
    p.set_strength(0.0)
    p.set_bypass(True)
    with pytest.raises(clearvox.ConfigError, match="strength = 1.5"):
        p.set_strength(1.5)
    assert "latency=" in repr(p)


def test_echo_reference_reaches_the_canceller(speech16k):
    rate = 16000
    far = speech16k[:rate].astype(np.float32) / 32768.0
    p = clearvox.Pipeline(rate, 1, "voice-chat", echo={"enabled": True})
    assert p.echo_stats is not None and set(p.echo_stats) == {"delay", "erle_db", "active"}
    for i in range(0, rate, 1600):
        p.echo_reference(far[i : i + 1600])
        p.process(0.5 * far[i : i + 1600])
    # A stereo render at another rate declares its own format.
    p.echo_reference(np.zeros((480, 2), np.int16), rate=48000)
    assert clearvox.Pipeline(rate, 1, "voice-chat").echo_stats is None


def test_echo_reference_cancels_the_echo(speech16k):
    """The microphone hears only the loudspeaker (2.5 ms later, 6 dB down): given what
    was played, the canceller removes it; without it, the voice-chat chain keeps it as
    the voice it is."""
    rate = 16000
    far = speech16k.astype(np.float32) / 32768.0
    mic = np.zeros_like(far)
    mic[40:] = 0.5 * far[:-40]

    def run(with_reference):
        p = clearvox.Pipeline(rate, 1, "voice-chat", echo={"enabled": True})
        out = []
        for i in range(0, len(far), 320):
            if with_reference:
                p.echo_reference(far[i : i + 320])
            out.append(p.process(mic[i : i + 320]))
        return np.concatenate(out)

    kept, cancelled = run(False), run(True)
    last = slice(len(kept) - 3 * rate // 2, len(kept))  # after 2.5 s to converge
    erle = 10 * np.log10(np.mean(kept[last] ** 2) / (np.mean(cancelled[last] ** 2) + 1e-20))
    assert erle > 20.0, erle  # 75 dB measured


def test_threads_with_their_own_pipelines_match_sequential(speech16k):
    x = speech16k[:32000]

    def run():
        p = clearvox.Pipeline(16000, 1, "voice-chat")
        return stream(p, x, 960)

    expected = run()
    results = [None] * 4

    def work(i):
        results[i] = run()

    threads = [threading.Thread(target=work, args=(i,)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for r in results:
        assert np.array_equal(r, expected)


def test_the_gil_is_released_while_processing(speech16k):
    x = np.tile(speech16k, 10)  # 40 s: well over 100 ms of work
    done = threading.Event()
    ticks = [0, 0]

    def count():
        while not done.is_set():
            ticks[0] += 1

    counter = threading.Thread(target=count)
    counter.start()
    try:
        time.sleep(0.05)
        ticks[1] = ticks[0]
        start = time.perf_counter()
        clearvox.enhance(x, 16000, "voice-chat")
        elapsed = time.perf_counter() - start
        during = ticks[0] - ticks[1]
    finally:
        done.set()
        counter.join()
    assert elapsed > 0.1
    # Holding the GIL for the whole call would leave the counter near zero.
    assert during > 10_000, (during, elapsed)


def test_a_shared_pipeline_serialises_calls_without_crashing(speech16k):
    p = clearvox.Pipeline(16000, 1, "voice-chat")
    chunk = speech16k[:1600]
    outputs, errors = [], []

    def work():
        try:
            for _ in range(10):
                outputs.append(len(p.process(chunk)))
                p.pop_events()
                _ = p.latency
        except Exception as e:  # noqa: BLE001 - any exception is a failure here
            errors.append(e)

    threads = [threading.Thread(target=work) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    # 40 chunks went in, in some order: all of their output came out.
    assert sum(outputs) + len(p.flush()) == 40 * len(chunk) + p.latency


BAD = [
    (np.zeros(160, np.float64), TypeError, "float32 .* or int16, not float64"),
    (np.zeros(160, np.int32), TypeError, "not int32"),
    (np.array([object()] * 4), TypeError, "not object"),
    ([0.0, "a"], TypeError, "a list of <U32 values"),
    ([0, 1000, -1000], TypeError, "a list of int64 values: pass a numpy array, np.int16 for PCM"),
    ("noise", TypeError, "must be a numpy array, not str"),
    (np.float32(0.5), TypeError, "must be a numpy array, not float32"),
    (np.array(0.5, np.float32), ValueError, "0-d array"),
    (np.zeros((2, 2, 2), np.float32), ValueError, "3 dimensions"),
    (np.array([0, 0, 0, np.nan], np.float32), ValueError, r"non-finite sample \(nan\) at index 3"),
    (np.array([[0], [np.inf]], np.float32), ValueError, r"\(inf\) at index \(1, 0\)"),
    (np.zeros((160, 2), np.float32), ValueError, "has 2 channels .* but channels=1"),
    (np.lib.stride_tricks.as_strided(np.zeros(1, np.float32), (2**40,), (0,)), ValueError, "at most 2147483647"),
    (np.broadcast_to(np.int16(0), (2**20, 2**20)), ValueError, "at most 2147483647"),
]


@pytest.mark.parametrize("x,error,message", BAD)
def test_bad_arrays_are_refused_with_a_clear_exception(x, error, message):
    p = clearvox.Pipeline(16000, 1, "voice-chat")
    with pytest.raises(error, match=message):
        p.process(x)
    with pytest.raises(error, match=message):
        clearvox.enhance(x, 16000, "voice-chat", channels=1)
    assert len(p.process(np.zeros(1600, np.float32))) > 0  # still usable


def test_bad_channel_layouts():
    stereo = clearvox.Pipeline(16000, 2, "voice-chat")
    with pytest.raises(clearvox.AudioFormatError, match="not a whole number of 2-channel frames"):
        stereo.process(np.zeros(3, np.float32))
    assert stereo.process(np.zeros((1600, 2), np.int16)).dtype == np.float32
    with pytest.raises(ValueError, match="has 3 channels"):
        stereo.process(np.zeros((10, 3), np.float32))
    with pytest.raises(clearvox.AudioFormatError, match="supported are 1 to 8"):
        clearvox.enhance(np.zeros((10, 9), np.float32), 16000, "voice-chat")
    with pytest.raises(clearvox.AudioFormatError):
        clearvox.Pipeline(16000, 0)
    with pytest.raises(clearvox.AudioFormatError, match="unsupported sample rate"):
        clearvox.Pipeline(1000, 1)
    with pytest.raises(OverflowError):
        clearvox.Pipeline(-1, 1)
    with pytest.raises(ValueError, match="output would hold"):
        big = np.lib.stride_tricks.as_strided(np.zeros(1, np.float32), (2**30,), (0,))
        clearvox.enhance(big, 8000, "voice-chat", output_rate=192000)
