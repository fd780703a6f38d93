"""A pipecat pipeline whose input transport cleans the user's voice with clearvox.

In a voice agent, the filter goes into the input transport's parameters, and
everything after it (the VAD, the speech recogniser, the LLM) hears the enhanced
voice::

    from clearvox.pipecat import ClearvoxFilter
    from pipecat.transports.base_transport import TransportParams

    params = TransportParams(
        audio_in_enabled=True,
        audio_in_filter=ClearvoxFilter(preset="voice-chat"),
        # ... your VAD analyzer, audio_out_enabled=True, etc.
    )
    transport = SmallWebRTCTransport(webrtc_connection=connection, params=params)
    pipeline = Pipeline([transport.input(), stt, user_aggregator, llm, tts,
                         transport.output(), assistant_aggregator])

This script runs the same input side without a network or an API key: a WAV file is
played into a pipecat input transport in 20 ms frames, as a WebRTC or telephony
transport would deliver them, and the frames that leave the pipeline are written to a
WAV file. Two seconds in, a ``FilterEnableFrame(False)`` turns the filter off for
two seconds, as an app's "noise cancellation" switch would.

    pip install pipecat-ai clearvox   # the clearvox wheel built from python/
    python examples/pipecat_agent.py testdata/noisy/us_deep__cafe__snr0__16k_s16.wav -o enhanced.wav
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
import tempfile
import wave

from loguru import logger

from clearvox.pipecat import ClearvoxFilter
from pipecat.frames.frames import (
    EndFrame,
    FilterEnableFrame,
    Frame,
    InputAudioRawFrame,
)
from pipecat.pipeline.pipeline import Pipeline
from pipecat.pipeline.runner import PipelineRunner
from pipecat.pipeline.task import PipelineTask
from pipecat.processors.frame_processor import FrameDirection, FrameProcessor
from pipecat.transports.base_input import BaseInputTransport
from pipecat.transports.base_transport import TransportParams

FRAME_MS = 20


class WavInputTransport(BaseInputTransport):
    """Plays a 16-bit mono WAV file into the pipeline, in real time, 20 ms at a time."""

    def __init__(self, pcm: bytes, rate: int, params: TransportParams):
        super().__init__(params)
        self._pcm, self._rate = pcm, rate
        self.started = asyncio.Event()
        self.done = asyncio.Event()

    async def start(self, frame):
        await super().start(frame)
        await self.set_transport_ready(frame)
        self.create_task(self._feed())

    async def _feed(self):
        self.started.set()
        step = self._rate * FRAME_MS // 1000 * 2
        try:
            for pos in range(0, len(self._pcm), step):
                chunk = self._pcm[pos : pos + step]
                await self.push_audio_frame(
                    InputAudioRawFrame(audio=chunk, sample_rate=self._rate, num_channels=1)
                )
                await asyncio.sleep(FRAME_MS / 1000)
        finally:
            # Also when feeding fails or is cancelled: the pipeline is ended either way.
            self.done.set()


class WavRecorder(FrameProcessor):
    """Collects the audio that reaches the end of the pipeline."""

    def __init__(self):
        super().__init__()
        self.chunks: list[bytes] = []

    async def process_frame(self, frame: Frame, direction: FrameDirection):
        await super().process_frame(frame, direction)
        if isinstance(frame, InputAudioRawFrame):
            self.chunks.append(frame.audio)
        await self.push_frame(frame, direction)


def read_pcm16_mono(path: str) -> tuple[bytes, int]:
    with wave.open(path, "rb") as w:
        if w.getsampwidth() != 2 or w.getnchannels() != 1:
            sys.exit(f"error: {path}: this example reads 16-bit mono WAV files")
        return w.readframes(w.getnframes()), w.getframerate()


def write_atomically(path: str, pcm: bytes, rate: int) -> None:
    folder = os.path.dirname(os.path.abspath(path))
    fd, tmp = tempfile.mkstemp(dir=folder, suffix=".wav.tmp")
    try:
        with os.fdopen(fd, "wb") as f, wave.open(f, "wb") as w:
            w.setnchannels(1)
            w.setsampwidth(2)
            w.setframerate(rate)
            w.writeframes(pcm)
        os.replace(tmp, path)
    except BaseException:
        os.unlink(tmp)
        raise


async def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("input", help="a 16-bit mono WAV file (any rate)")
    ap.add_argument("-o", "--output", required=True, help="where to write what the pipeline hears")
    ap.add_argument("--preset", default="voice-chat")
    ap.add_argument(
        "--switch-off-at",
        type=float,
        default=2.0,
        metavar="SECONDS",
        help="turn the filter off for 2 s from here (0: never)",
    )
    args = ap.parse_args()
    # pipecat logs every link and start at DEBUG; warnings and errors are enough here.
    logger.remove()
    logger.add(sys.stderr, level="WARNING")

    pcm, rate = read_pcm16_mono(args.input)
    filt = ClearvoxFilter(preset=args.preset)
    transport = WavInputTransport(
        pcm,
        rate,
        TransportParams(audio_in_enabled=True, audio_in_sample_rate=rate, audio_in_filter=filt),
    )
    recorder = WavRecorder()
    task = PipelineTask(Pipeline([transport, recorder]))

    async def control():
        # The app's switch: control frames are queued like any other frame and reach
        # the filter through the input transport.
        await transport.started.wait()
        if args.switch_off_at > 0:
            await asyncio.sleep(args.switch_off_at)
            await task.queue_frame(FilterEnableFrame(enable=False))
            await asyncio.sleep(2.0)
            await task.queue_frame(FilterEnableFrame(enable=True))
        await transport.done.wait()
        await asyncio.sleep(0.2)  # the last frames leave the filter
        await task.queue_frame(EndFrame())

    await asyncio.gather(PipelineRunner(handle_sigint=False).run(task), control())

    out = b"".join(recorder.chunks)
    write_atomically(args.output, out, rate)
    seconds = len(out) / 2 / rate
    print(
        f"{args.output}: {seconds:.2f} s at {rate} Hz, "
        f"{filt.latency / rate * 1000:.1f} ms behind the microphone"
    )


if __name__ == "__main__":
    asyncio.run(main())
