//! The library's signal path, in process: each stage's behaviour, latency, chunking,
//! heap use on the real-time path, quality against measured numbers (on the committed
//! test data and on the development set), the metrics against reference
//! implementations, and WAV input/output.
//!
//! The global allocator of this binary counts heap operations per thread
//! (`counting-alloc`) for `no_alloc`; the other tests only pay for the counting.

#[path = "../support/mod.rs"]
mod support;

#[global_allocator]
static ALLOC: counting_alloc::CountingAlloc = counting_alloc::CountingAlloc;

/// Streaming equals offline for any chunking of the input.
mod chunk_invariance;
/// The default preset on the development set of real recordings.
mod devset;
/// The echo canceller on a synthetic room: ERLE, double talk, chunking, render faults,
/// false barge-ins.
mod echo;
/// Measured delay of every stage and preset equals its reported latency.
mod latency;
/// STOI, SNR, SI-SDR and delay estimation against pystoi and the scoring harness.
mod metrics_stoi;
/// No heap operation on the real-time path after warm-up; DeepFilterNet's bounded.
mod no_alloc;
/// Per-file quality of the presets on the committed test data.
mod quality;
/// RNNoise denoises float input in ±1.0.
mod rnnoise_scaling;
/// The spectral gate's behaviours on controlled signals.
mod spectral_gate;
/// The WAV reader and writer through the public API.
mod wav_io;
