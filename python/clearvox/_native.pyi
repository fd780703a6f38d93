"""The native module of clearvox: the Rust library over numpy arrays.

Use the package's public API (``clearvox.enhance``, ``clearvox.Pipeline``, ...), which
checks arrays and builds configurations before calling these. Inputs here are 1-D,
C-contiguous float32 or int16 arrays of interleaved samples; configurations are JSON
overrides (an optional "preset" key and any Config fields), merged over the preset and
validated by the library.
"""

from typing import Dict, List, Optional, Tuple, Union

import numpy as np
import numpy.typing as npt

__version__: str
PRESETS: List[str]
MAX_CHANNELS: int
MIN_SAMPLE_RATE: int
MAX_SAMPLE_RATE: int

_Samples = Union[npt.NDArray[np.float32], npt.NDArray[np.int16]]
_Event = Tuple[str, int]

def enhance(
    samples: _Samples, rate: int, channels: int, config_json: str
) -> Tuple[npt.NDArray[np.float32], List[_Event]]:
    """Enhances a whole interleaved signal; returns the aligned mono output and the VAD
    events (positions in output samples)."""

def enhance_file(
    input: str, output: str, config_json: str, format: Optional[str] = None
) -> Dict[str, object]:
    """Reads a WAV file, enhances it and writes a mono WAV atomically; returns a summary."""

def metrics(
    reference: _Samples, test: _Samples, rate: int, max_lag: int
) -> Dict[str, float]:
    """Delay (within +-max_lag samples) removed, then SNR, SI-SDR, segmental SNR and STOI."""

def preset_json(name: str) -> str:
    """The full configuration of a preset, as JSON."""

def config_json(json: str) -> str:
    """The effective configuration of JSON overrides, as JSON with every field."""

def toml_to_json(text: str) -> str:
    """A TOML configuration text as a JSON object (not merged, not validated)."""

class Pipeline:
    """A streaming pipeline behind a lock; calls release the GIL."""

    def __init__(self, rate: int, channels: int, config_json: str) -> None: ...
    def process(self, samples: _Samples) -> npt.NDArray[np.float32]:
        """Processes interleaved input (whole frames); the output is mono, `latency` late."""
    def flush(self) -> npt.NDArray[np.float32]:
        """Drains the tail; the pipeline then takes no input until reset()."""
    def reset(self) -> None:
        """Back to the freshly-built state."""
    def pop_events(self) -> List[_Event]:
        """The pending VAD events, oldest first."""
    def set_strength(self, strength: float) -> None:
        """Changes the wet/dry mix (0..1)."""
    def set_bypass(self, bypass: bool) -> None:
        """Switches bypass on or off."""
    def push_render(self, samples: _Samples, rate: int, channels: int) -> None:
        """Pushes render for the echo canceller, declaring its format when it changed."""
    def config_json(self) -> str:
        """The effective configuration, as JSON."""
    @property
    def echo_stats(self) -> Optional[Dict[str, object]]:
        """The echo canceller's state, or None without one."""
    @property
    def latency(self) -> int:
        """Total latency in output samples."""
    @property
    def input_rate(self) -> int:
        """Input rate, Hz."""
    @property
    def output_rate(self) -> int:
        """Output rate, Hz."""
    @property
    def channels(self) -> int:
        """Channels per input frame."""
    @property
    def render_rate(self) -> int:
        """Render rate, Hz."""
    @property
    def render_channels(self) -> int:
        """Channels per render frame."""
    @property
    def stage_latencies(self) -> List[Tuple[str, int]]:
        """The latency of each stage at 48 kHz: (name, samples)."""
    @property
    def in_speech(self) -> bool:
        """Whether the VAD is in speech."""
    @property
    def events_dropped(self) -> int:
        """VAD events dropped because they were not collected in time."""
    @property
    def input_frames(self) -> int:
        """Input frames taken since the last reset."""
