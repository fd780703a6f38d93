"""The exceptions of the clearvox package.

Library errors carry the library's own message (one line that names the offending
value and what is accepted). They live here, in Python, so that a class can also be a
built-in exception: a ConfigError is a ValueError too.
"""


class ClearvoxError(Exception):
    """Any error reported by the clearvox library."""


class ConfigError(ClearvoxError, ValueError):
    """An invalid configuration: an unknown preset or field, a value out of range, bad TOML,
    or a part this build leaves out."""


class AudioFormatError(ClearvoxError, ValueError):
    """A sample rate or channel count outside what clearvox accepts, or an interleaved
    buffer that is not a whole number of frames."""


class WavError(ClearvoxError):
    """A WAV file that could not be read or written (the output is never left half-written)."""


class MetricError(ClearvoxError, ValueError):
    """Signals a quality metric cannot score (too short, non-finite, bad rate)."""
