//! One real-time test at a time on the machine: [`RealTimeSlot`].
//!
//! Used by the ALSA test device ([`super::alsa_fixture`], whose fixtures each hold a
//! slot), by the live-engine tests on the scripted device
//! (`tests/engine/scripted_device.rs`) and by the other tests of `tests/engine/main.rs` that
//! keep a core busy.

use std::fs;
use std::io::Write;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// The name of the lock file behind [`RealTimeSlot`], in the temporary directory.
pub const SLOT_LOCK_FILE: &str = "clearvox-realtime-tests.lock";

/// The machine's cores for one real-time test at a time.
///
/// A paced test asserts what the engine promises at a stated load (no overrun, no
/// underrun once primed, at most one other core busy). Two of them at once on a
/// two-core machine, or one beside an unpaced fixture that runs flat out, put a load
/// on the machine that no test stated, and a test then fails for its neighbour's
/// sake. So every fixture holds a slot: an exclusive `flock(2)` on
/// [`SLOT_LOCK_FILE`] in the temporary directory, which serialises the fixtures of
/// the parallel test threads of one binary, of test binaries run at once (nextest),
/// and of several checkouts on one machine. The kernel releases the lock when the
/// holder exits however it exits, so a crashed test never blocks the next one.
///
/// Tests that load the machine on purpose (the ALSA fixture's `CpuBurner`) take a slot
/// too, tests that run several fixtures at once create them in one slot
/// (`AlsaFixture::paced_in`), and the live-engine tests on the scripted device
/// (`tests/engine/scripted_device.rs`), which pace it faster than real time, take one
/// each. The paced tests share their test binary (`tests/engine/main.rs`) with others, and
/// those that keep a core busy for a while hold a slot too. A wait longer than a second
/// is said on stderr.
#[derive(Debug)]
pub struct RealTimeSlot {
    file: fs::File,
}

impl RealTimeSlot {
    /// Waits until no other test holds the slot, then holds it until dropped.
    pub fn acquire() -> Arc<Self> {
        let path = std::env::temp_dir().join(SLOT_LOCK_FILE);
        let file = fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&path)
            .unwrap_or_else(|e| panic!("opening {}: {e}", path.display()));
        let t0 = Instant::now();
        loop {
            // SAFETY: flock(2) on a descriptor this function owns.
            let rc = unsafe { libc::flock(std::os::fd::AsRawFd::as_raw_fd(&file), libc::LOCK_EX) };
            if rc == 0 {
                break;
            }
            let err = std::io::Error::last_os_error();
            if err.kind() != std::io::ErrorKind::Interrupted {
                panic!("locking {}: {err}", path.display());
            }
        }
        let waited = t0.elapsed();
        if waited > Duration::from_secs(1) {
            note(&format!(
                "real-time slot: waited {waited:.1?} for another test's fixture"
            ));
        }
        Arc::new(RealTimeSlot { file })
    }
}

impl Drop for RealTimeSlot {
    fn drop(&mut self) {
        // Closing the descriptor releases the lock too; unlocking first says so plainly.
        // SAFETY: flock(2) on the descriptor this slot owns.
        unsafe {
            libc::flock(std::os::fd::AsRawFd::as_raw_fd(&self.file), libc::LOCK_UN);
        }
    }
}

/// Writes a line to stderr at once (not captured by the test harness).
pub fn note(line: &str) {
    let mut e = std::io::stderr().lock();
    let _ = writeln!(e, "{line}");
}
