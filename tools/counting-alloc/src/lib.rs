//! A global allocator that forwards every call to [`System`] and counts.
//!
//! Two kinds of counts, for two kinds of question:
//!
//! - **Heap operations of one thread** ([`AllocCounts`]: allocations, reallocations,
//!   frees and bytes requested), kept in thread-local counters. "Does this code touch
//!   the heap?" is asked of the thread that runs it, so the answer does not depend on
//!   what other threads of the process do meanwhile (the test harness runs tests in
//!   parallel threads of one process). [`thread_counts`] reads the calling thread's
//!   counters, [`count_on_this_thread`] counts what a closure does on the calling thread.
//! - **Bytes live on the heap, process-wide** (allocated and not yet freed, whatever the
//!   thread), and their peak: "how much memory does this structure hold?"
//!   ([`live_bytes`], [`peak_live_bytes`], [`reset_peak`], and [`heap_use`] for a
//!   closure). Memory freed on another thread than the one that allocated it is
//!   accounted for correctly here, which per-thread byte counts could not do.
//!
//! A program (a test binary, a benchmark harness) installs the allocator once:
//!
//! ```
//! use counting_alloc::CountingAlloc;
//!
//! #[global_allocator]
//! static ALLOC: CountingAlloc = CountingAlloc;
//!
//! fn main() {
//!     let (v, counts) = counting_alloc::count_on_this_thread(|| vec![0u8; 64]);
//!     assert_eq!((counts.allocs, counts.bytes), (1, 64));
//!     assert_eq!(v.len(), 64);
//! }
//! ```
//!
//! Without it every count stays at 0; [`is_installed`] tells whether it is.

#![deny(missing_docs)]

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::ops::{Add, AddAssign};
use std::sync::atomic::{AtomicI64, Ordering};

/// The counting global allocator: [`System`] underneath, counters beside it.
///
/// Declare it once in the program with `#[global_allocator]` (see the crate's
/// documentation). It keeps no state of its own: all of its instances share the
/// process's counters.
#[derive(Clone, Copy, Debug, Default)]
pub struct CountingAlloc;

/// Heap operations counted on one thread.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct AllocCounts {
    /// `alloc` and `alloc_zeroed` calls.
    pub allocs: u64,
    /// `realloc` calls (a growing `Vec`, for instance).
    pub reallocs: u64,
    /// `dealloc` calls.
    pub frees: u64,
    /// Bytes requested by allocations and reallocations (the new size of a
    /// reallocation).
    pub bytes: u64,
}

impl AllocCounts {
    /// All heap operations: allocations, reallocations and frees.
    pub fn total(&self) -> u64 {
        self.allocs + self.reallocs + self.frees
    }

    /// What was counted between `earlier` and `self`, two readings of the same thread's
    /// counters.
    pub fn since(self, earlier: AllocCounts) -> AllocCounts {
        AllocCounts {
            allocs: self.allocs.wrapping_sub(earlier.allocs),
            reallocs: self.reallocs.wrapping_sub(earlier.reallocs),
            frees: self.frees.wrapping_sub(earlier.frees),
            bytes: self.bytes.wrapping_sub(earlier.bytes),
        }
    }
}

impl Add for AllocCounts {
    type Output = AllocCounts;

    fn add(self, other: AllocCounts) -> AllocCounts {
        AllocCounts {
            allocs: self.allocs + other.allocs,
            reallocs: self.reallocs + other.reallocs,
            frees: self.frees + other.frees,
            bytes: self.bytes + other.bytes,
        }
    }
}

impl AddAssign for AllocCounts {
    fn add_assign(&mut self, other: AllocCounts) {
        *self = *self + other;
    }
}

/// The calling thread's counters since it started (all 0 without the allocator).
pub fn thread_counts() -> AllocCounts {
    COUNTERS
        .try_with(|c| AllocCounts {
            allocs: c.allocs.get(),
            reallocs: c.reallocs.get(),
            frees: c.frees.get(),
            bytes: c.bytes.get(),
        })
        .unwrap_or_default()
}

/// Runs `f` and returns its result with the heap operations made on the calling thread
/// meanwhile. Operations of other threads, including threads `f` starts, are not
/// counted.
pub fn count_on_this_thread<R>(f: impl FnOnce() -> R) -> (R, AllocCounts) {
    let before = thread_counts();
    let result = f();
    let counts = thread_counts().since(before);
    (result, counts)
}

/// Whether the program's global allocator is [`CountingAlloc`]: allocates and frees a
/// small buffer and checks that the calling thread's counters saw both.
pub fn is_installed() -> bool {
    let (_, d) = count_on_this_thread(|| drop(std::hint::black_box(Box::new(0u64))));
    d.allocs >= 1 && d.frees >= 1
}

/// Bytes live on the heap now, process-wide: allocated through the allocator and not
/// yet freed, by any thread (0 without the allocator).
pub fn live_bytes() -> u64 {
    LIVE_BYTES.load(Ordering::Relaxed).max(0) as u64
}

/// The highest [`live_bytes`] since the last [`reset_peak`] (or since the program
/// started).
pub fn peak_live_bytes() -> u64 {
    PEAK_LIVE_BYTES.load(Ordering::Relaxed).max(0) as u64
}

/// Starts a new peak at the bytes live now, and returns them.
///
/// The peak is process-wide: two measurements of it at once, on two threads, disturb
/// each other.
pub fn reset_peak() -> u64 {
    let live = LIVE_BYTES.load(Ordering::Relaxed);
    PEAK_LIVE_BYTES.store(live, Ordering::Relaxed);
    live.max(0) as u64
}

/// The heap a closure used, process-wide: see [`heap_use`].
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct HeapUse {
    /// Bytes live when the closure returned minus bytes live when it started: what it
    /// still holds, in what it returned for instance. Negative if it freed more than it
    /// allocated.
    pub held: i64,
    /// The highest number of bytes live while it ran, above those live when it started.
    pub peak: u64,
}

/// Runs `f` and returns its result with the heap it used: what is still held when it
/// returns (its result is not dropped yet) and the peak while it ran, both above what
/// was live before.
///
/// The numbers are process-wide: they are the closure's only while no other thread
/// allocates or frees meanwhile, and the peak is reset (see [`reset_peak`]).
pub fn heap_use<R>(f: impl FnOnce() -> R) -> (R, HeapUse) {
    let before = reset_peak();
    let result = f();
    let after = LIVE_BYTES.load(Ordering::Relaxed);
    let use_ = HeapUse {
        held: after - before as i64,
        peak: peak_live_bytes().saturating_sub(before),
    };
    (result, use_)
}

struct ThreadCounters {
    allocs: Cell<u64>,
    reallocs: Cell<u64>,
    frees: Cell<u64>,
    bytes: Cell<u64>,
}

thread_local! {
    // Const-initialised, no destructor: touching it never allocates and never registers
    // a destructor, so the allocator may use it at any point of a thread's life.
    static COUNTERS: ThreadCounters = const {
        ThreadCounters {
            allocs: Cell::new(0),
            reallocs: Cell::new(0),
            frees: Cell::new(0),
            bytes: Cell::new(0),
        }
    };
}

static LIVE_BYTES: AtomicI64 = AtomicI64::new(0);
static PEAK_LIVE_BYTES: AtomicI64 = AtomicI64::new(0);

fn bump(f: impl FnOnce(&ThreadCounters)) {
    // `try_with`: the allocator also runs while a thread's locals are being torn down;
    // those operations go uncounted.
    let _ = COUNTERS.try_with(f);
}

fn add(c: &Cell<u64>, n: u64) {
    c.set(c.get().wrapping_add(n));
}

fn count_alloc(size: usize) {
    bump(|c| {
        add(&c.allocs, 1);
        add(&c.bytes, size as u64);
    });
}

fn live_changed(delta: i64) {
    let now = LIVE_BYTES.fetch_add(delta, Ordering::Relaxed) + delta;
    if delta > 0 {
        PEAK_LIVE_BYTES.fetch_max(now, Ordering::Relaxed);
    }
}

// SAFETY: every method forwards its arguments unchanged to `System`, which upholds the
// `GlobalAlloc` contract, and returns what `System` returned; the counting beside it
// touches only atomics and const-initialised thread-locals without destructors, so it
// never allocates, never re-enters the allocator and never unwinds.
unsafe impl GlobalAlloc for CountingAlloc {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        count_alloc(layout.size());
        // SAFETY: the caller's guarantees for `layout` are passed on unchanged.
        let p = unsafe { System.alloc(layout) };
        if !p.is_null() {
            live_changed(layout.size() as i64);
        }
        p
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        count_alloc(layout.size());
        // SAFETY: the caller's guarantees for `layout` are passed on unchanged.
        let p = unsafe { System.alloc_zeroed(layout) };
        if !p.is_null() {
            live_changed(layout.size() as i64);
        }
        p
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        bump(|c| add(&c.frees, 1));
        // SAFETY: `ptr` was allocated by this allocator, that is by `System`, with
        // `layout`, as the caller guarantees.
        unsafe { System.dealloc(ptr, layout) };
        live_changed(-(layout.size() as i64));
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        bump(|c| {
            add(&c.reallocs, 1);
            add(&c.bytes, new_size as u64);
        });
        // SAFETY: as for `dealloc`, and the caller's guarantees for `new_size` are
        // passed on unchanged; `System` moves the block if it must.
        let p = unsafe { System.realloc(ptr, layout, new_size) };
        if !p.is_null() {
            live_changed(new_size as i64 - layout.size() as i64);
        }
        p
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicBool, AtomicU64};
    use std::sync::{Arc, Mutex, MutexGuard};

    #[global_allocator]
    static ALLOC: CountingAlloc = CountingAlloc;

    /// The process-wide counters see every thread: the tests that read them run one at
    /// a time, and the others take the lock too so that they do not allocate meanwhile.
    fn one_at_a_time() -> MutexGuard<'static, ()> {
        static LOCK: Mutex<()> = Mutex::new(());
        LOCK.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    #[test]
    fn counts_allocations_reallocations_frees_and_bytes() {
        let _one = one_at_a_time();
        assert!(is_installed());
        let ((), counts) = count_on_this_thread(|| {
            let mut v: Vec<u8> = Vec::with_capacity(100);
            v.reserve_exact(1_000);
            drop(std::hint::black_box(v));
        });
        assert_eq!(
            counts,
            AllocCounts {
                allocs: 1,
                reallocs: 1,
                frees: 1,
                bytes: 100 + 1_000,
            }
        );
        assert_eq!(counts.total(), 3);
    }

    #[test]
    fn zeroed_allocations_count_as_allocations() {
        let _one = one_at_a_time();
        let (v, counts) = count_on_this_thread(|| vec![0u32; 256]);
        assert_eq!((counts.allocs, counts.bytes), (1, 1_024));
        assert!(v.iter().all(|&x| x == 0));
    }

    #[test]
    fn code_that_does_not_allocate_counts_nothing() {
        let _one = one_at_a_time();
        let mut buffer = vec![0.0f32; 4_096];
        let ((), counts) = count_on_this_thread(|| {
            for (i, x) in buffer.iter_mut().enumerate() {
                *x = i as f32 * 0.5;
            }
        });
        assert_eq!(counts, AllocCounts::default());
        assert_eq!(buffer[4_095], 2_047.5);
    }

    #[test]
    fn another_threads_operations_are_not_counted_on_this_one() {
        let _one = one_at_a_time();
        let stop = Arc::new(AtomicBool::new(false));
        let made = Arc::new(AtomicU64::new(0));
        let other = {
            let (stop, made) = (stop.clone(), made.clone());
            std::thread::spawn(move || {
                let ((), counts) = count_on_this_thread(|| {
                    while !stop.load(Ordering::Relaxed) {
                        drop(std::hint::black_box(vec![1u8; 64]));
                        made.fetch_add(1, Ordering::Relaxed);
                    }
                });
                counts
            })
        };
        // This thread only watches (no allocation) while the other one makes a thousand
        // allocations more.
        let ((), here) = count_on_this_thread(|| {
            let start = made.load(Ordering::Relaxed);
            while made.load(Ordering::Relaxed) < start + 1_000 {
                std::hint::spin_loop();
            }
        });
        stop.store(true, Ordering::Relaxed);
        let there = other.join().expect("the allocating thread does not panic");
        assert_eq!(here, AllocCounts::default());
        assert!(there.allocs >= 1_000 && there.frees >= 1_000, "{there:?}");
    }

    #[test]
    fn live_bytes_follow_allocations_and_frees_across_threads() {
        let _one = one_at_a_time();
        let before = live_bytes();
        let block = vec![7u8; 1 << 20];
        let during = live_bytes();
        // Freed on another thread than the one that allocated it.
        std::thread::spawn(move || drop(block))
            .join()
            .expect("the freeing thread does not panic");
        let after = live_bytes();
        // The harness's own bookkeeping moves the count by a few kilobytes at most.
        let slack = 64 * 1024;
        assert!(during >= before + (1 << 20) - slack, "{before} -> {during}");
        assert!(after + (1 << 20) <= during + slack, "{during} -> {after}");
    }

    #[test]
    fn heap_use_reports_what_is_held_and_the_peak() {
        let _one = one_at_a_time();
        let (kept, used) = heap_use(|| {
            drop(std::hint::black_box(vec![0u8; 4 << 20]));
            let mut kept: Vec<u8> = Vec::with_capacity(1 << 10);
            kept.reserve_exact(1 << 20);
            kept
        });
        // Other test threads (the harness's own) allocate and free a few bytes while
        // this runs: every figure is checked within a slack, in both directions.
        let slack = 64 * 1024;
        assert!(used.peak + slack >= 4 << 20, "{used:?}");
        assert!(used.peak < (4 << 20) + (1 << 20) + slack, "{used:?}");
        assert!(
            (used.held - (1 << 20)).unsigned_abs() < slack,
            "{used:?}, capacity {}",
            kept.capacity()
        );
        drop(kept);
        let ((), freed) = heap_use(|| drop(std::hint::black_box(vec![0u8; 1 << 20])));
        assert!(freed.held.unsigned_abs() < slack, "{freed:?}");
        assert!(freed.peak + slack >= 1 << 20, "{freed:?}");
    }

    #[test]
    fn reset_peak_starts_from_the_live_bytes() {
        let _one = one_at_a_time();
        drop(std::hint::black_box(vec![0u8; 8 << 20]));
        let live = reset_peak();
        assert!(
            peak_live_bytes() < live + (8 << 20),
            "the old peak is forgotten"
        );
        assert!(peak_live_bytes() >= live);
    }

    #[test]
    fn counts_add_and_subtract() {
        let a = AllocCounts {
            allocs: 3,
            reallocs: 1,
            frees: 2,
            bytes: 300,
        };
        let b = AllocCounts {
            allocs: 1,
            reallocs: 0,
            frees: 1,
            bytes: 8,
        };
        let mut sum = a;
        sum += b;
        assert_eq!(sum, a + b);
        assert_eq!(
            sum,
            AllocCounts {
                allocs: 4,
                reallocs: 1,
                frees: 3,
                bytes: 308,
            }
        );
        assert_eq!(sum.since(a), b);
        assert_eq!(sum.total(), 8);
    }
}
