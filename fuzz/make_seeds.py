#!/usr/bin/env python3
"""Writes the fuzz targets' seed corpora (fuzz/corpus/<target>/seed-*): small WAV files
and hostile headers, the presets as TOML and JSON, protocol scripts and log lines.
Run from anywhere; the committed seeds are its output."""
import json
import math
import os
import struct

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)


def out(target, name, data):
    d = os.path.join(HERE, "corpus", target)
    os.makedirs(d, exist_ok=True)
    if isinstance(data, str):
        data = data.encode()
    with open(os.path.join(d, "seed-" + name), "wb") as f:
        f.write(data)


def chunk(cid, body, pad=True):
    c = cid + struct.pack("<I", len(body)) + body
    if pad and len(body) % 2:
        c += b"\0"
    return c


def fmt(tag, ch, rate, bits, ext=None, block=None):
    block = block or ch * bits // 8
    body = struct.pack("<HHIIHH", tag, ch, rate, rate * block, block, bits)
    if ext is not None:
        body += ext
    return chunk(b"fmt ", body)


def riff(*chunks, size=None):
    body = b"WAVE" + b"".join(chunks)
    return b"RIFF" + struct.pack("<I", len(body) if size is None else size) + body


def tone(n, ch=1):
    return [0.5 * math.sin(k * 0.07 + c) for k in range(n) for c in range(ch)]


def s16(xs):
    return b"".join(struct.pack("<h", int(x * 32767)) for x in xs)


def s24(xs):
    return b"".join(struct.pack("<i", int(x * 8388607))[:3] for x in xs)


def f32(xs):
    return b"".join(struct.pack("<f", x) for x in xs)


GUID_PCM = bytes.fromhex("0100000000001000800000aa00389b71")
GUID_FLOAT = bytes.fromhex("0300000000001000800000aa00389b71")

wavs = {
    "s16-mono-16k": riff(fmt(1, 1, 16000, 16), chunk(b"data", s16(tone(200)))),
    "s24-stereo-44k1": riff(fmt(1, 2, 44100, 24), chunk(b"data", s24(tone(100, 2)))),
    "f32-nan-inf": riff(fmt(3, 1, 48000, 32), chunk(b"data", f32([0.1, float("nan"), float("inf"), -float("inf"), 2.0, -0.5]))),
    "u8-8k": riff(fmt(1, 1, 8000, 8), chunk(b"data", bytes(range(0, 256, 3)))),
    "s32-mono": riff(fmt(1, 1, 22050, 32), chunk(b"data", b"".join(struct.pack("<i", k * 99991) for k in range(64)))),
    "extensible-24in32": riff(
        fmt(0xFFFE, 2, 48000, 32, ext=struct.pack("<HHI", 22, 24, 3) + GUID_PCM),
        chunk(b"data", b"".join(struct.pack("<i", k << 8) for k in range(-50, 50))),
    ),
    "extensible-float": riff(
        fmt(0xFFFE, 1, 32000, 32, ext=struct.pack("<HHI", 22, 32, 4) + GUID_FLOAT),
        chunk(b"data", f32(tone(40))),
    ),
    "list-odd-chunk": riff(fmt(1, 1, 16000, 16), chunk(b"LIST", b"INFOISFT\x05\0\0\0abcde"), chunk(b"junk", b"xyz"), chunk(b"data", s16(tone(30)))),
    "data-size-zero-streamed": riff(fmt(1, 1, 16000, 16), b"data" + struct.pack("<I", 0) + s16(tone(40)), size=0),
    "data-size-max": riff(fmt(1, 1, 16000, 16), b"data" + struct.pack("<I", 0xFFFFFFFF) + s16(tone(40)), size=0xFFFFFFFF),
    "truncated-data": riff(fmt(1, 2, 16000, 16), b"data" + struct.pack("<I", 4000) + s16(tone(21))),
    "odd-bytes": riff(fmt(1, 2, 16000, 16), chunk(b"data", s16(tone(11)) + b"\x01", pad=False)),
    "no-data": riff(fmt(1, 1, 16000, 16)),
    "fmt-after-data": riff(chunk(b"data", s16(tone(10))), fmt(1, 1, 16000, 16)),
    "zero-channels": riff(fmt(1, 0, 16000, 16), chunk(b"data", s16(tone(10)))),
    "zero-rate": riff(fmt(1, 1, 0, 16), chunk(b"data", s16(tone(10)))),
    "huge-channels": riff(fmt(1, 65535, 16000, 16, block=2), chunk(b"data", s16(tone(10)))),
    "block-align-lies": riff(fmt(1, 2, 16000, 16, block=3), chunk(b"data", s16(tone(10)))),
    "bits-12": riff(fmt(1, 1, 16000, 12, block=2), chunk(b"data", s16(tone(10)))),
    "alaw": riff(fmt(6, 1, 8000, 8), chunk(b"data", bytes(40))),
    "short-fmt": riff(chunk(b"fmt ", b"\x01\x00\x01\x00"), chunk(b"data", s16(tone(10)))),
    "rifx": b"RIFX" + riff(fmt(1, 1, 16000, 16), chunk(b"data", s16(tone(10))))[4:],
    "chunk-size-huge": riff(fmt(1, 1, 16000, 16), b"LIST" + struct.pack("<I", 0xFFFFFFF0) + b"abc"),
    "not-wave": b"RIFF\x10\0\0\0AVI LIST\0\0\0\0",
    "empty": b"",
}
for name, data in wavs.items():
    # Two bytes first: the streaming reader's read size and buffer size.
    out("wav_reader", name, bytes([0, 255]) + data)
out("wav_reader", "trickle-1-byte", bytes([0, 0]) + wavs["s24-stereo-44k1"])
out("wav_reader", "trickle-7-buffer-3", bytes([6, 2]) + wavs["extensible-24in32"])
for src in ["us_deep__16k_s16.wav", "gb_female__44k1_s16.wav"]:
    path = os.path.join(ROOT, "testdata", "clean", "voices", src)
    if os.path.exists(path):
        with open(path, "rb") as f:
            data = f.read(3000)  # the header's sizes now overstate: a truncated file
        out("wav_reader", "testdata-" + src.replace(".wav", ""), bytes([255, 255]) + data)

# The configuration: byte 0 even = TOML, odd = JSON; bit 1 clear = also build pipelines.
tomls = {
    "preset-voice-chat": 'preset = "voice-chat"\n',
    "preset-max-quality": 'preset = "max-quality"\nstrength = 0.8\n[gate]\nmax_attenuation_db = 8.0\n',
    "preset-low-cpu": 'preset = "low-cpu"\noutput_rate = 16000\n',
    "preset-bypass": 'preset = "bypass"\nbypass = true\n',
    "overrides": 'strength = 0.5\natten_limit_db = 12.0\noutput_rate = 8000\nresampler = "linear"\nchannel = "left"\n[highpass]\nenabled = true\ncutoff_hz = 120.0\nq = 0.7\n[agc]\n[vad]\n',
    "out-of-range": "strength = 2.0\n",
    "nan": "strength = nan\n",
    "inf-atten": "atten_limit_db = inf\n",
    "deepfilter": 'denoiser = "deepfilter"\n[deepfilter]\n',
    "unknown-key": "[gate]\nfft_sise = 3\n",
    "wrong-type": 'output_rate = "fast"\n',
    "nested-tables": "[gate]\n[gate.x]\ny = 1\n",
}
for name, text in tomls.items():
    out("config", "toml-" + name, b"\0" + text.encode())
jsons = {
    "preset": {"preset": "max-quality", "output_rate": 48000},
    "overrides": {"strength": 0.25, "bypass": False, "gate": {"max_attenuation_db": 30.0}, "vad": {}},
    "huge-rate": {"output_rate": 768000},
    "negative": {"atten_limit_db": -1},
    "preset-not-string": {"preset": 5},
    "array": [1, 2],
    "null-field": {"output_rate": None},
}
for name, value in jsons.items():
    out("config", "json-" + name, b"\x01" + json.dumps(value).encode())
out("config", "json-deep", b"\x03" + b"[" * 200 + b"]" * 200)

# The C ABI: op bytes (see c_abi_sequence.rs); a create, some audio, a flush.
out("c_abi_sequence", "create-process-flush", bytes([0, 0, 0, 1, 1, 0xE0, 0x01, 2, 5, 0, 0x40, 0, 3, 1, 0x00, 0x10, 9, 6]))
out("c_abi_sequence", "two-handles", bytes([0, 2, 1, 2, 0x80, 1, 3, 2, 1, 0x80, 0x02, 2, 0, 0x81, 0x80, 0x02, 2, 1, 0x10, 11, 0x8B, 0x40, 4, 10, 0x84, 6, 5, 0x85, 3, 0, 0]))
out("c_abi_sequence", "nan-input", bytes([0, 3, 0, 1, 1, 0xC0, 0x03, 2, 0, 0, 7, 0, 7, 1, 9, 3, 1, 0xFF, 0x0F]))
out("c_abi_sequence", "set-config-resample", bytes([0, 6, 3, 1, 4, 7, 1, 0x80, 0x07, 2, 1, 0, 0x40, 3, 2, 200]))
out("c_abi_sequence", "odd-rates", bytes([0, 0, 250, 0x44, 0xAC, 0, 0, 2, 0, 9, 1, 1, 1, 0x10, 0x00, 2, 0]))

raw = "\n".join([
    "#R",
    'T{"type":"start","rate":16000,"encoding":"pcm_s16le","channels":1,"sample":0}',
    "B" + "\x01\x02" * 160,
    'T{"type":"speech_started","sample":40}',
    "B" + "\x03\x04" * 160,
    'T{"type":"speech_stopped","sample":300}',
    'T{"type":"stop","samples":320}',
])
out("receiver_messages", "raw-events", raw)
out("receiver_messages", "raw-binary-query", "#?rate=8000\nB" + "\x05\x06" * 80 + "\nB" + "\x07\x08" * 80 + "\nP")
out("receiver_messages", "resume-two-connections", "\n".join([
    "#R",
    'T{"type":"clearvox.resume_from","sample":0}',
    "B" + "\x11\x22" * 100,
    "-R",
    'T{"type":"clearvox.resume_from","sample":50}',
    "B" + "\x11\x22" * 100,
    "-RX",
    'T{"type":"clearvox.resume_from","sample":400}',
    'T{"type":"stop","samples":500}',
]))
out("receiver_messages", "openai", "\n".join([
    "#",
    'T{"type":"session.update","session":{"audio":{"input":{"format":{"type":"audio/pcm","rate":24000}}}}}',
    'T{"type":"input_audio_buffer.append","audio":"AAABAAIAAwAEAAUA","event_id":"a1"}',
    'T{"type":"input_audio_buffer.commit","event_id":"c1"}',
    'T{"type":"input_audio_buffer.append","audio":"not base64!"}',
    'T{"type":"input_audio_buffer.clear"}',
    'T{"type":"input_audio_buffer.commit"}',
    'T{"type":"conversation.item.create","item":{"content":[{"type":"input_audio","audio":"AAAA"}]}}',
]))
out("receiver_messages", "hostile", "\n".join([
    "#N?rate=abc",
    "Tnot json",
    'T{"type":7}',
    'T{"type":"start","rate":0,"encoding":"pcm_f32le","channels":2,"sample":-1}',
    'T{"type":"clearvox.ack","received":5}',
    'T{"type":"clearvox.resume","session":"x","received":18446744073709551615}',
    'T{"type":"start","rate":16000,"encoding":"pcm_s16le","channels":1,"sample":18446744073709551615}',
    "B\x01",
    'T{"type":"stop","samples":18446744073709551615}',
]))

log = "\n".join(json.dumps(l, separators=(",", ":")) for l in [
    {"type": "connected", "t": 1, "resume": True, "received": 0},
    {"type": "format", "t": 2, "protocol": "raw", "rate": 16000, "events": True},
    {"type": "start", "t": 3, "rate": 16000, "encoding": "pcm_s16le", "channels": 1, "sample": 0},
    {"type": "speech_started", "t": 4, "sample": 40},
    {"type": "gap", "t": 5, "from": 100, "to": 150},
    {"type": "disconnected", "t": 6, "reason": "connection ended", "received": 150},
]) + "\n"
wav16 = riff(fmt(1, 1, 16000, 16), chunk(b"data", s16(tone(100))))
out("session_replay", "raw-with-wav", log.encode() + b"\0" + wav16)
out("session_replay", "raw-log-only", log)
out("session_replay", "cut-short-line", (log + '{"type":"gap","fr').encode() + b"\0" + wav16[:60] + b"\x01")
oa = "\n".join(json.dumps(l, separators=(",", ":")) for l in [
    {"type": "format", "t": 2, "protocol": "openai", "rate": 24000, "events": False},
    {"type": "input_audio_buffer.commit", "t": 3, "sample": 2400, "item_id": "item_1"},
    {"type": "input_audio_buffer.clear", "t": 4, "sample": 2600},
    {"type": "input_audio_buffer.commit", "t": 5, "sample": 3000, "error": "too short"},
    {"type": "stop", "t": 6, "samples": 4000},
]) + "\n"
out("session_replay", "openai-finished", "\x02" + oa)
out("session_replay", "odd-format", '{"type":"format","protocol":"telepathy","rate":4294967296}\n{"type":"gap","from":5,"to":1}\n')
out("session_replay", "wav-not-pcm16", log.encode() + b"\0" + riff(fmt(3, 2, 48000, 32), chunk(b"data", f32(tone(10, 2)))))

# The client: one options byte, then the server's script.
out("client_events", "resume-acked", bytes([0x01 | 0x10 | 0x20]) + b'T{"type":"clearvox.resume","session":"s","received":0}\n')
out("client_events", "resume-offsets", bytes([0x01 | 0x08 | 0x40]) + b'T{"type":"clearvox.resume","session":"s","received":480}\nT{"type":"clearvox.ack","received":320}\n-\nT{"type":"clearvox.resume","session":"s","received":99999999}\nT{"type":"clearvox.ack","received":18446744073709551615}\n-\nT{"type":"clearvox.resume","session":"s","received":0}\n')
out("client_events", "raw-events-close", bytes([0x04 | 0x08]) + b'T{"type":"error","message":"nope"}\nBabc\nP\nC\n')
out("client_events", "openai", bytes([0x02 | 0x20]) + b'T{"type":"session.created","session":{}}\nT{"type":"input_audio_buffer.committed","item_id":"i1"}\nT{"type":"error","error":{"message":"buffer too small"}}\n')
out("client_events", "resampled-ack", bytes([0x80 | 0x10 | 0x01]) + b'T{"type":"clearvox.resume","session":"s","received":0}\nT{"type":"clearvox.ack","received":0}\n')
out("client_events", "hostile", bytes([0x01 | 0x04]) + b'Tnot json\nT{"type":"clearvox.resume","received":"x"}\nT{"type":"clearvox.ack","received":-1}\nB\nC\n')
