"""clearvox.enhance and enhance_file against the Rust library (through its CLI), and
their configuration handling."""

import subprocess

import numpy as np
import pytest

import clearvox
from conftest import NOISY, read_wav


def run_cli(cli, wav, out, *args):
    subprocess.run(
        [str(cli), "enhance", str(wav), "-o", str(out), "-q", "--format", "f32", *args],
        check=True,
    )
    audio, rate, channels = read_wav(out)
    assert channels == 1 and audio.dtype == np.float32
    return audio, rate


def test_voice_chat_is_bit_equal_to_the_cli(cli, tmp_path):
    wav = NOISY / "us_deep__cafe__snr0__16k_s16.wav"
    x, rate, _ = read_wav(wav)
    expected, _ = run_cli(cli, wav, tmp_path / "cli.wav", "--preset", "voice-chat")
    got = clearvox.enhance(x, rate, "voice-chat")
    assert got.dtype == np.float32 and got.shape == x.shape
    assert np.array_equal(got, expected)
    # Overrides reach the library: the CLI's --strength and --output-rate.
    expected, out_rate = run_cli(
        cli, wav, tmp_path / "cli2.wav", "--preset", "voice-chat", "--strength", "0.5",
        "--output-rate", "48000",
    )
    got = clearvox.enhance(x, rate, "voice-chat", strength=0.5, output_rate=48000)
    assert out_rate == 48000 and got.shape == (3 * len(x),)
    assert np.array_equal(got, expected)


def test_max_quality_is_bit_equal_to_the_cli(cli, tmp_path):
    wav = NOISY / "us_male__cafe__snr5__48k_f32.wav"
    x, rate, _ = read_wav(wav)
    assert x.dtype == np.float32 and rate == 48000
    expected, _ = run_cli(cli, wav, tmp_path / "cli.wav")  # max-quality: the CLI's default
    got = clearvox.enhance(x, rate)  # and the package's
    assert got.shape == x.shape
    assert np.array_equal(got, expected)


def test_int16_float32_stereo_and_strided_inputs_agree(speech16k):
    x16 = speech16k[:16000]
    xf = x16.astype(np.float32) / 32768.0
    a = clearvox.enhance(x16, 16000, "voice-chat")
    b = clearvox.enhance(xf, 16000, "voice-chat")
    assert np.array_equal(a, b)
    # Interleaved 2-D (frames, channels), identical channels: the downmix is the input.
    stereo = np.stack([xf, xf], axis=1)
    assert np.array_equal(clearvox.enhance(stereo, 16000, "voice-chat"), b)
    # A non-contiguous view is taken as its values.
    wide = np.zeros((len(xf), 3), dtype=np.float32)
    wide[:, 1] = xf
    assert not wide[:, 1].flags.c_contiguous
    assert np.array_equal(clearvox.enhance(wide[:, 1], 16000, "voice-chat"), b)


def test_events_come_with_the_audio(speech16k):
    audio, events = clearvox.enhance(speech16k, 16000, "voice-chat", return_events=True)
    assert len(audio) == len(speech16k)
    kinds = [k for k, _ in events]
    assert kinds and kinds[0] == "speech_start"
    assert all(k in ("speech_start", "speech_end") for k in kinds)
    assert all(0 <= p <= len(audio) for _, p in events)


def test_configuration_forms_and_errors(speech16k):
    x = speech16k[:8000]
    by_kwargs = clearvox.enhance(x, 16000, "low-cpu", gate={"max_attenuation_db": 6.0})
    by_dict = clearvox.enhance(x, 16000, config={"preset": "low-cpu", "gate": {"max_attenuation_db": 6.0}})
    by_toml = clearvox.enhance(x, 16000, config='preset = "low-cpu"\n[gate]\nmax_attenuation_db = 6.0\n')
    plain = clearvox.enhance(x, 16000, "low-cpu")
    assert np.array_equal(by_kwargs, by_dict) and np.array_equal(by_dict, by_toml)
    assert not np.array_equal(by_kwargs, plain)

    with pytest.raises(clearvox.ConfigError, match=r"^invalid configuration: strength = 2: must be in 0..1$"):
        clearvox.enhance(x, 16000, "voice-chat", strength=2.0)
    with pytest.raises(clearvox.ConfigError, match="fft_sise"):
        clearvox.enhance(x, 16000, "voice-chat", gate={"fft_sise": 3})
    with pytest.raises(ValueError, match="unknown preset 'loud'.*voice-chat, max-quality, low-cpu, bypass"):
        clearvox.enhance(x, 16000, "loud")
    with pytest.raises(clearvox.ConfigError, match="invalid configuration"):
        clearvox.enhance(x, 16000, config="strength = ")
    with pytest.raises(clearvox.ConfigError, match="preset given twice"):
        clearvox.enhance(x, 16000, "bypass", config={"preset": "low-cpu"})
    with pytest.raises(clearvox.AudioFormatError, match="unsupported sample rate 4000 Hz"):
        clearvox.enhance(x, 4000, "voice-chat")
    with pytest.raises(ValueError, match="unsupported sample rate 768000 Hz"):
        clearvox.enhance(x, 16000, "voice-chat", output_rate=768000)


def test_presets():
    assert clearvox.PRESETS == ("voice-chat", "max-quality", "low-cpu", "bypass")
    mq = clearvox.preset_config("max-quality")
    assert mq["preset"] == "max-quality" and mq["denoiser"] == "deepfilter"
    assert clearvox.preset_config("bypass")["bypass"] is True
    with pytest.raises(clearvox.ConfigError, match="unknown preset"):
        clearvox.preset_config("nope")
    # A preset's full table round-trips as a configuration.
    p = clearvox.Pipeline(16000, 1, clearvox.preset_config("low-cpu"))
    assert p.config == clearvox.preset_config("low-cpu")
    assert isinstance(clearvox.__version__, str) and clearvox.__version__.count(".") == 2


def test_enhance_file_writes_a_wav_and_never_half_a_file(tmp_path, speech16k):
    wav = NOISY / "us_deep__cafe__snr0__16k_s16.wav"
    out = tmp_path / "out.wav"
    info = clearvox.enhance_file(wav, out, "voice-chat", output_rate=8000)
    audio, rate, channels = read_wav(out)
    assert (rate, channels, audio.dtype) == (8000, 1, np.int16)  # s16 in, s16 out
    assert info["input_rate"] == 16000 and info["output_rate"] == 8000
    assert len(audio) == len(speech16k) // 2 == info["output_samples"]
    assert info["latency_samples"] > 0 and info["duration_s"] == pytest.approx(len(speech16k) / 16000)

    corrupt = tmp_path / "corrupt.wav"
    corrupt.write_bytes(b"RIFF\x10\x00\x00\x00WAVEjunkjunk")
    fresh = tmp_path / "fresh.wav"
    with pytest.raises(clearvox.WavError, match="corrupt.wav"):
        clearvox.enhance_file(corrupt, fresh, "voice-chat")
    assert not fresh.exists()
    before = out.read_bytes()
    with pytest.raises(clearvox.WavError):
        clearvox.enhance_file(corrupt, out, "voice-chat")
    assert out.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["corrupt.wav", "out.wav"]
    with pytest.raises(clearvox.WavError, match="missing.wav"):
        clearvox.enhance_file(tmp_path / "missing.wav", fresh, "voice-chat")
    with pytest.raises(ValueError, match="unknown output format"):
        clearvox.enhance_file(wav, fresh, "voice-chat", format="mp3")
    assert not fresh.exists()


def test_metrics_on_known_signals():
    rate = 16000
    t = np.arange(3 * rate) / rate
    clean = (np.sin(2 * np.pi * 200 * t) * (0.5 + 0.5 * np.sin(8 * t))).astype(np.float32)
    same = clearvox.metrics(clean, clean, rate)
    assert set(same) == {"delay_samples", "snr_db", "si_sdr_db", "seg_snr_db", "stoi"}
    assert same["delay_samples"] == 0 and same["snr_db"] > 100 and same["stoi"] > 0.99
    late = np.concatenate([np.zeros(37, np.float32), 0.5 * clean])
    scores = clearvox.metrics(clean, late, rate)
    assert scores["delay_samples"] == 37
    assert scores["snr_db"] == pytest.approx(6.02, abs=0.01) and scores["si_sdr_db"] > 100
    noisy = clean + 0.1 * np.random.default_rng(1).standard_normal(len(clean)).astype(np.float32)
    assert clearvox.metrics(clean, noisy, rate)["snr_db"] < 30
    with pytest.raises(clearvox.MetricError):
        clearvox.metrics(clean[:100], clean[:100], rate)
    with pytest.raises(ValueError, match="mono"):
        clearvox.metrics(np.stack([clean, clean], 1), clean, rate)
