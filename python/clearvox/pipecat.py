"""clearvox as a pipecat audio filter.

pipecat's input transports run an audio filter on the user's microphone before the
VAD, the speech recogniser and the language model hear it::

    from pipecat.transports.base_transport import TransportParams
    from clearvox.pipecat import ClearvoxFilter

    params = TransportParams(audio_in_enabled=True, audio_in_filter=ClearvoxFilter())

The filter takes and returns 16-bit mono PCM at the transport's rate (pipecat's input
transports are mono unless ``audio_in_channels`` says otherwise, and a filter is not
told the channel count: keep it at 1 with this filter). The output is
the enhanced voice, ``latency`` samples late (20 ms with the default ``voice-chat``
preset); it is never dropped or shortened, so the timeline stays continuous.

Control frames:

- ``FilterEnableFrame(False)`` passes the microphone through untouched and
  ``FilterEnableFrame(True)`` enhances again. Both switch with a 10 ms cross-fade and
  keep the latency, so switching makes neither a click nor a gap.
- ``FilterUpdateSettingsFrame(settings={"strength": 0.7})`` changes the wet/dry mix
  (0 = the input, 1 = fully enhanced) with a 10 ms cross-fade. ``"enabled"`` is also
  understood. Unknown settings are logged and ignored.

Processing runs in the Rust library, with the GIL released; 20 ms of audio takes well
under a millisecond with the ``voice-chat`` preset, so the filter runs inline in the
transport's audio task rather than on a thread pool.
"""

from __future__ import annotations

import logging
from typing import Any, Mapping, Optional

import numpy as np

try:
    from pipecat.audio.filters.base_audio_filter import BaseAudioFilter
    from pipecat.frames.frames import (
        FilterControlFrame,
        FilterEnableFrame,
        FilterUpdateSettingsFrame,
    )
except ImportError as e:  # pragma: no cover - depends on the environment
    raise ImportError(
        "clearvox.pipecat needs the pipecat-ai package: pip install pipecat-ai"
    ) from e

from . import ClearvoxError, Pipeline, preset_config

__all__ = ["ClearvoxFilter"]

_log = logging.getLogger(__name__)


def _merged(base: dict, overrides: Mapping[str, Any]) -> dict:
    """``base`` with ``overrides`` applied; nested tables are merged key by key."""
    out = dict(base)
    for key, value in overrides.items():
        if isinstance(value, Mapping) and isinstance(out.get(key), dict):
            out[key] = _merged(out[key], value)
        else:
            out[key] = value
    return out


class ClearvoxFilter(BaseAudioFilter):
    """Enhances the user's voice in a pipecat input transport.

    Args:
        preset: A clearvox preset: ``"voice-chat"`` (default, RNNoise and the spectral
            gate, 20 ms), ``"max-quality"`` (DeepFilterNet3, 30 ms, about five times
            the CPU), ``"low-cpu"`` or ``"bypass"``.
        **overrides: Configuration fields over the preset, as in
            :func:`clearvox.enhance` (for example ``strength=0.8`` or
            ``gate={"max_attenuation_db": 12}``). ``output_rate`` is always the
            transport's rate.

    The configuration is checked when the filter is made, so a typo raises here
    rather than when the call starts.
    """

    def __init__(self, preset: str = "voice-chat", **overrides: Any) -> None:
        if "output_rate" in overrides:
            raise ValueError(
                "output_rate: the filter's output rate is the transport's rate"
            )
        self._config = _merged(preset_config(preset), overrides)
        # The whole configuration is validated now, at an ordinary rate.
        Pipeline(16_000, 1, self._config)
        self._pipeline: Optional[Pipeline] = None
        self._latency = 0
        self._enabled = not self._config.get("bypass", False)
        # An odd byte left over from a chunk that split a sample in two.
        self._pending = b""

    @property
    def latency(self) -> int:
        """Samples (at the transport's rate) by which the output lags the input; 0
        before the first :meth:`start`."""
        return self._latency

    @property
    def enabled(self) -> bool:
        """Whether the voice is enhanced (``False``: passed through, still delayed)."""
        return self._enabled

    async def start(self, sample_rate: int) -> None:
        """Builds the pipeline for the transport's rate (any rate clearvox accepts)."""
        config = dict(self._config, output_rate=sample_rate, bypass=not self._enabled)
        self._pipeline = Pipeline(sample_rate, 1, config)
        self._latency = self._pipeline.latency
        self._pending = b""

    async def stop(self) -> None:
        """Drops the pipeline; audio still inside it is not wanted after the call."""
        self._pipeline = None
        self._pending = b""

    async def process_frame(self, frame: FilterControlFrame) -> None:
        """Applies ``FilterEnableFrame`` and ``FilterUpdateSettingsFrame``."""
        if isinstance(frame, FilterEnableFrame):
            self._set_enabled(bool(frame.enable))
        elif isinstance(frame, FilterUpdateSettingsFrame):
            for key, value in frame.settings.items():
                if key == "strength":
                    # A bad value from the app is refused and logged: raising here
                    # would end the transport's frame task, and the user's audio.
                    try:
                        strength = float(value)
                        if self._pipeline is not None:
                            self._pipeline.set_strength(strength)
                        else:
                            Pipeline(16_000, 1, dict(self._config, strength=strength))
                    except (TypeError, ValueError, ClearvoxError) as e:
                        _log.warning("clearvox filter: strength %r refused: %s", value, e)
                        continue
                    self._config["strength"] = strength
                elif key == "enabled":
                    self._set_enabled(bool(value))
                else:
                    _log.warning("clearvox filter: unknown setting %r ignored", key)

    def _set_enabled(self, enabled: bool) -> None:
        self._enabled = enabled
        if self._pipeline is not None:
            self._pipeline.set_bypass(not enabled)

    async def filter(self, audio: bytes) -> bytes:
        """Enhances a chunk of 16-bit mono PCM; returns the enhanced chunk.

        The output has about as many samples as the input (the resamplers may move a
        sample from one call to the next). Before :meth:`start` the audio is returned
        unchanged.
        """
        if self._pipeline is None:
            return audio
        data = self._pending + audio
        usable = len(data) - len(data) % 2
        self._pending = data[usable:]
        if usable == 0:
            return b""
        samples = np.frombuffer(data[:usable], dtype=np.int16)
        enhanced = self._pipeline.process(samples)
        return _to_pcm16(enhanced)


def _to_pcm16(x: np.ndarray) -> bytes:
    """Float samples in -1..1 to 16-bit PCM exactly as the library converts them
    (scaled by 32768, rounded half away from zero, saturated)."""
    y = x.astype(np.float32) * np.float32(32768.0)  # exact: a power of two
    y = y.astype(np.float64)
    rounded = np.trunc(y + np.copysign(0.5, y))
    return np.clip(rounded, -32768, 32767).astype("<i2").tobytes()
