"""The README's Python example runs as written, from the repository's root."""

import re
import subprocess
import sys

from conftest import REPO


def test_the_readme_python_example_runs():
    readme = (REPO / "README.md").read_text(encoding="utf-8")
    section = readme[readme.index("### In Python") :]
    example = re.search(r"```python\n(.*?)```", section, re.S).group(1)
    run = subprocess.run(
        [sys.executable, "-c", example],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert run.returncode == 0, run.stderr
    si_sdr = re.search(r"SI-SDR (-?\d+\.\d) -> (-?\d+\.\d) dB", run.stdout)
    assert si_sdr, run.stdout
    before, after = map(float, si_sdr.groups())
    assert after > before + 3.0, run.stdout
    assert "speech_start" in run.stdout and "speech_end" in run.stdout
    assert "ms of latency removed" in run.stdout
