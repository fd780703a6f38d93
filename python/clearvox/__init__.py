"""clearvox: real-time voice enhancement on numpy arrays.

The Rust library ``clearvox`` does all the work; this package hands it numpy arrays
(float32 in +-1.0 or int16; any supported rate; mono 1-D or interleaved 2-D
``(frames, channels)``) and gives back float32 mono arrays. The GIL is released while
the library processes.

Configurations are the library's: a preset name, plus overrides given as keyword
arguments, a dict, or a TOML string, merged over the preset and validated by the
library itself, so names, ranges and error messages are those of the CLI and the Rust
API.

    >>> import numpy as np, clearvox
    >>> noisy = np.zeros(16000, dtype=np.float32)
    >>> clean = clearvox.enhance(noisy, 16000, preset="voice-chat", strength=0.8)
    >>> clean.shape
    (16000,)
"""

from __future__ import annotations

import json
import math
import os
from typing import Any, Dict, List, Mapping, Optional, Tuple, Union

import numpy as np

from clearvox import _native
from clearvox._errors import (
    AudioFormatError,
    ClearvoxError,
    ConfigError,
    MetricError,
    WavError,
)

__version__: str = _native.__version__

#: The preset names, in documentation order.
PRESETS: Tuple[str, ...] = tuple(_native.PRESETS)

#: Most samples one call takes (input, or output after resampling): 2**31 - 1, about
#: 12 hours of 48 kHz mono. Larger arrays are refused before anything is allocated.
MAX_SAMPLES: int = 2**31 - 1

#: Highest channel count of an input.
MAX_CHANNELS: int = _native.MAX_CHANNELS

__all__ = [
    "AudioFormatError",
    "ClearvoxError",
    "ConfigError",
    "MAX_SAMPLES",
    "MetricError",
    "PRESETS",
    "Pipeline",
    "WavError",
    "__version__",
    "enhance",
    "enhance_file",
    "metrics",
    "preset_config",
]

ConfigLike = Union[None, str, Mapping[str, Any]]
VadEvent = Tuple[str, int]


def preset_config(name: str) -> Dict[str, Any]:
    """The full configuration of a preset, as a dict (every field).

    Raises ConfigError for an unknown name (the message lists the valid ones).
    """
    return json.loads(_native.preset_json(name))


def _merge(base: Dict[str, Any], over: Mapping[str, Any]) -> None:
    """Merges ``over`` into ``base``, nested tables key by key (as the library merges
    overrides into a preset)."""
    for key, value in over.items():
        if isinstance(value, Mapping) and isinstance(base.get(key), dict):
            _merge(base[key], value)
        elif isinstance(value, Mapping):
            base[key] = {}
            _merge(base[key], value)
        else:
            base[key] = value


def _config_table(config: ConfigLike) -> Dict[str, Any]:
    """``config`` (None, a preset name, a TOML text or a dict) as a table of overrides."""
    if config is None:
        return {}
    if isinstance(config, str):
        if config in PRESETS:
            return {"preset": config}
        return json.loads(_native.toml_to_json(config))
    if isinstance(config, Mapping):
        table: Dict[str, Any] = {}
        _merge(table, config)
        return table
    raise TypeError(
        f"config must be a preset name, a TOML string or a dict, not {type(config).__name__}"
    )


def _config_json(
    preset: Optional[str], config: ConfigLike, overrides: Mapping[str, Any], default: str
) -> str:
    """The JSON overrides the library merges over their preset and validates.

    Order: the preset (the argument, else a ``preset`` key of ``config``, else
    ``default``), then ``config``, then the keyword overrides.
    """
    table = _config_table(config)
    _merge(table, overrides)
    named = table.get("preset")
    if preset is not None and named is not None and named != preset:
        raise ConfigError(
            f"invalid configuration: preset given twice ('{preset}' and '{named}' in the"
            " configuration): give one"
        )
    table["preset"] = preset or named or default
    try:
        return json.dumps(table, allow_nan=False)
    except (TypeError, ValueError) as e:
        raise ConfigError(f"invalid configuration: {e}") from None


def _samples(
    x: Any,
    channels: Optional[int],
    what: str = "audio",
    rate: int = 0,
    output_rate: Optional[int] = None,
) -> Tuple[np.ndarray, int]:
    """Checks an input array and returns it as a C-contiguous 1-D interleaved array
    (float32 or int16) and its channel count.

    Refuses, with TypeError or ValueError: another dtype, a 0-d or >2-D array, a 2-D
    array whose columns do not match ``channels``, more than MAX_SAMPLES samples,
    NaN or infinite samples (naming the first; the library would replace them by
    silence, which hides the bug that made them).
    """
    if not isinstance(x, np.ndarray):
        if isinstance(x, (list, tuple)):
            # Only a list of floats is float audio: a list of integers is most likely
            # 16-bit PCM, which read as floats would be thousands of times full scale.
            kinds = np.asarray(x).dtype.kind
            if kinds not in "f":
                raise TypeError(
                    f"{what} is a list of {np.asarray(x).dtype} values: pass a numpy"
                    " array, np.int16 for PCM or np.float32 in +-1.0"
                )
            x = np.asarray(x, dtype=np.float32)
        else:
            raise TypeError(f"{what} must be a numpy array, not {type(x).__name__}")
    if x.dtype not in (np.float32, np.int16):
        raise TypeError(
            f"{what} must be float32 (in +-1.0) or int16, not {x.dtype}: convert it,"
            " e.g. x.astype(np.float32)"
        )
    if x.ndim == 0:
        raise ValueError(f"{what} is a 0-d array (a scalar): pass a 1-D or 2-D array")
    if x.ndim > 2:
        raise ValueError(
            f"{what} has {x.ndim} dimensions: pass mono 1-D or interleaved 2-D (frames, channels)"
        )
    if x.size > MAX_SAMPLES:
        raise ValueError(
            f"{what} holds {x.size} samples: at most {MAX_SAMPLES} are taken in one call;"
            " process it in chunks with Pipeline"
        )
    if x.ndim == 2:
        columns = x.shape[1]
        if channels is not None and channels != columns:
            raise ValueError(
                f"{what} has {columns} channels (shape {x.shape}) but channels={channels}:"
                " a 2-D array is (frames, channels)"
            )
        channels = columns
        if not 1 <= channels <= MAX_CHANNELS:
            raise AudioFormatError(
                f"{what} has {channels} channels (shape {x.shape}): supported are 1 to"
                f" {MAX_CHANNELS}; a 2-D array is (frames, channels)"
            )
    elif channels is None:
        channels = 1
    _check_output_size(x.size, channels, rate, output_rate)
    if x.dtype == np.float32:
        flat = _first_non_finite(x)
        if flat is not None:
            index = np.unravel_index(flat, x.shape)
            where = index[0] if x.ndim == 1 else tuple(int(i) for i in index)
            raise ValueError(
                f"{what} holds a non-finite sample ({x.ravel()[flat]}) at index {where}:"
                " clean it first (e.g. np.nan_to_num)"
            )
    return np.ascontiguousarray(x).reshape(-1), channels


def _first_non_finite(x: np.ndarray) -> Optional[int]:
    """The flat index of the first NaN or infinite sample, checked a block at a time
    (a long signal needs no mask of its own size)."""
    flat = x.reshape(-1)
    block = 1 << 20
    for start in range(0, flat.size, block):
        part = flat[start : start + block]
        if not np.isfinite(part).all():
            return start + int(np.flatnonzero(~np.isfinite(part))[0])
    return None


def _check_output_size(samples: int, channels: int, rate: int, output_rate: Optional[int]) -> None:
    frames = samples // max(channels, 1)
    if output_rate and rate > 0:
        out = math.ceil(frames * output_rate / rate)
        if out > MAX_SAMPLES:
            raise ValueError(
                f"the output would hold {out} samples: at most {MAX_SAMPLES} are made in one"
                " call; process the input in chunks with Pipeline"
            )


def enhance(
    x: np.ndarray,
    rate: int,
    preset: Optional[str] = None,
    *,
    channels: Optional[int] = None,
    config: ConfigLike = None,
    return_events: bool = False,
    **overrides: Any,
) -> Union[np.ndarray, Tuple[np.ndarray, List[VadEvent]]]:
    """Enhances a whole signal and returns float32 mono, aligned with the input.

    ``x``: float32 (+-1.0) or int16, mono 1-D or interleaved 2-D (frames, channels).
    ``rate``: its sample rate, Hz. ``preset``: one of PRESETS (default "max-quality",
    or the ``preset`` key of ``config``). ``config``: a TOML string or a dict of
    overrides; ``overrides``: Config fields (``output_rate=16000``, ``strength=0.8``,
    ``gate={"max_attenuation_db": 8.0}``), applied last.

    The latency is removed: the output has the input's duration at the output rate
    (``output_rate``, else ``rate``). With ``return_events=True``, returns
    ``(audio, events)``, events being ("speech_start" | "speech_end", output sample).
    """
    config_json = _config_json(preset, config, overrides, "max-quality")
    output_rate = json.loads(config_json).get("output_rate")
    samples, channels = _samples(x, channels, "audio", rate, output_rate)
    audio, events = _native.enhance(samples, rate, channels, config_json)
    return (audio, events) if return_events else audio


def enhance_file(
    input_path: Union[str, os.PathLike],
    output_path: Union[str, os.PathLike],
    preset: Optional[str] = None,
    *,
    config: ConfigLike = None,
    format: Optional[str] = None,
    **overrides: Any,
) -> Dict[str, Any]:
    """Enhances a WAV file into a mono WAV file (latency removed), like ``clearvox enhance``.

    Reads with the library's reader and writes with its atomic writer: on any failure
    the output path is left as it was (no half-written file). ``format``: "s16", "s24"
    or "f32" (default: follows the input). Returns a summary dict: input_rate,
    output_rate, channels, frames, duration_s, output_samples, output_format,
    latency_samples, latency_ms, events, warnings.
    """
    config_json = _config_json(preset, config, overrides, "max-quality")
    return _native.enhance_file(
        os.fspath(input_path), os.fspath(output_path), config_json, format
    )


def metrics(
    reference: np.ndarray, test: np.ndarray, rate: int, max_lag: Optional[int] = None
) -> Dict[str, float]:
    """Scores ``test`` against ``reference`` (both mono, float32 or int16, at ``rate``).

    The delay is estimated within +-``max_lag`` samples (default 500 ms, as the CLI's
    ``clearvox metrics``) and removed; then SNR, SI-SDR, segmental SNR (dB) and STOI
    (0..1) are computed. Returns a dict: delay_samples, snr_db, si_sdr_db, seg_snr_db,
    stoi. Raises MetricError for signals it cannot score (e.g. under 384 ms of speech).
    """
    ref, ref_channels = _samples(reference, None, "reference")
    tst, test_channels = _samples(test, None, "test")
    if ref_channels != 1 or test_channels != 1:
        raise ValueError("metrics score mono signals: pass 1-D arrays")
    if max_lag is None:
        max_lag = max(int(rate), 0) * 500 // 1000
    if max_lag < 0:
        raise ValueError(f"max_lag = {max_lag}: must be >= 0")
    return _native.metrics(ref, tst, rate, max_lag)


class Pipeline:
    """A streaming enhancement pipeline (the Rust ``clearvox::Pipeline``).

    ``Pipeline(rate, channels=1, config=None)``: input at ``rate`` Hz with ``channels``
    interleaved channels; ``config`` is None (voice-chat), a preset name, a dict of
    overrides or a TOML string. ``process(chunk)`` takes any number of whole frames
    (float32 or int16; 1-D interleaved or 2-D (frames, channels)) and returns float32
    mono output that is ``latency`` samples late; the output does not depend on how the
    input is split. ``flush()`` drains the tail; ``reset()`` starts a new stream.

    The GIL is released while it processes. One pipeline per stream (per thread); a
    pipeline shared between threads serialises its calls.
    """

    def __init__(self, rate: int, channels: int = 1, config: ConfigLike = None, **overrides: Any):
        self._native = _native.Pipeline(
            rate, channels, _config_json(None, config, overrides, "voice-chat")
        )

    def process(self, chunk: np.ndarray) -> np.ndarray:
        """Processes a chunk (whole frames); returns the float32 mono output it completes."""
        samples, _ = _samples(chunk, self._native.channels)
        return self._native.process(samples)

    def flush(self) -> np.ndarray:
        """Drains the tail (``latency`` samples). The pipeline then takes no input until ``reset()``."""
        return self._native.flush()

    def reset(self) -> None:
        """Back to the freshly-built state (pending input, history, events and render dropped)."""
        self._native.reset()

    def pop_events(self) -> List[VadEvent]:
        """The VAD events since the last call, oldest first: ("speech_start" |
        "speech_end", position in output samples, latency included)."""
        return self._native.pop_events()

    events = pop_events

    def set_strength(self, strength: float) -> None:
        """Changes the wet/dry mix (0 = dry input, 1 = fully enhanced), with a 10 ms cross-fade."""
        self._native.set_strength(strength)

    def set_bypass(self, bypass: bool) -> None:
        """Passes the latency-aligned input through (or not), with a 10 ms cross-fade."""
        self._native.set_bypass(bool(bypass))

    def echo_reference(
        self, chunk: np.ndarray, rate: Optional[int] = None, channels: Optional[int] = None
    ) -> None:
        """Pushes what the loudspeaker played, for the echo canceller (``echo={"enabled": True}``).

        Push it before the capture it may be heard in, on the capture's clock. ``rate``
        defaults to the last one given (at first, the input rate); ``channels`` to the
        2-D array's columns, else the last one given (at first, 1). Without the echo
        canceller in the configuration the render is ignored.
        """
        if chunk is not None and isinstance(chunk, np.ndarray) and chunk.ndim == 2 and channels is None:
            channels = chunk.shape[1]
        if channels is None:
            channels = self._native.render_channels
        if rate is None:
            rate = self._native.render_rate
        samples, channels = _samples(chunk, channels, "echo reference")
        self._native.push_render(samples, rate, channels)

    @property
    def echo_stats(self) -> Optional[Dict[str, Any]]:
        """The echo canceller's state (delay in 48 kHz samples or None, erle_db, active),
        or None without an echo canceller."""
        return self._native.echo_stats

    @property
    def latency(self) -> int:
        """Total latency in output samples: output sample n belongs to input instant n - latency."""
        return self._native.latency

    @property
    def input_rate(self) -> int:
        """Input rate, Hz."""
        return self._native.input_rate

    @property
    def output_rate(self) -> int:
        """Output rate, Hz."""
        return self._native.output_rate

    @property
    def channels(self) -> int:
        """Channels per input frame."""
        return self._native.channels

    @property
    def stage_latencies(self) -> List[Tuple[str, int]]:
        """The latency of each stage, in order: (name, samples at 48 kHz)."""
        return self._native.stage_latencies

    @property
    def in_speech(self) -> bool:
        """Whether the voice activity detector is in speech."""
        return self._native.in_speech

    @property
    def events_dropped(self) -> int:
        """VAD events dropped because they were not collected in time."""
        return self._native.events_dropped

    @property
    def config(self) -> Dict[str, Any]:
        """The effective configuration (every field)."""
        return json.loads(self._native.config_json())

    def __repr__(self) -> str:
        return (
            f"Pipeline(rate={self.input_rate}, channels={self.channels},"
            f" output_rate={self.output_rate}, latency={self.latency})"
        )
