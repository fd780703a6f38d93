//! The live engine (feature `device`) on audio devices made for the tests: a scripted
//! fake host (`support::fake_device`) and a real ALSA device paced by a private
//! PulseAudio daemon (`support::alsa_fixture`), the fixtures' own tests, and what runs on
//! them: `clearvox live`, the engine through the C ABI (feature `capi`), `clearvox live
//! --stream`, the voice-chat loop and the examples (feature `stream`).
//!
//! Real-time tests hold a real-time slot (`support::realtime_slot`) for as long as their
//! device lives, and so do the other tests of this binary that keep a core busy: a paced
//! test never shares the machine with more than it states. The in-process ALSA tests
//! also serialise on the fixture's process-wide lock (`ALSA_CONFIG_PATH`).
//!
//! The global allocator counts heap operations per thread (`counting-alloc`), for the
//! checks of the audio callbacks.

#[path = "../support/mod.rs"]
mod support;

#[global_allocator]
static ALLOC: counting_alloc::CountingAlloc = counting_alloc::CountingAlloc;

/// `clearvox live` on the paced ALSA device: the recording equals offline.
mod alsa_device;
/// The ALSA test device itself: exact, paced capture and playback.
mod alsa_fixture_selftest;
/// The engine through the C ABI on the paced ALSA device.
#[cfg(feature = "capi")]
mod c_abi;
/// Every example runs and says what it should.
#[cfg(feature = "stream")]
mod examples;
/// The scripted fake host itself, through cpal's traits.
mod fake_device_selftest;
/// The whole voice-chat loop: `clearvox live --play-responses` answered by `clearvox
/// serve --respond-with`, the answer's echo through a room on the PulseAudio daemon.
#[cfg(feature = "stream")]
mod live_loop;
/// The engine's player and render feed on the paced ALSA device.
mod player;
/// The engine on the scripted device: offline equality, faults, no heap use in callbacks.
mod scripted_device;
/// `clearvox live --stream` into `clearvox serve`.
#[cfg(feature = "stream")]
mod stream_live;
