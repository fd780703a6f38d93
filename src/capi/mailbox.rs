//! Configuration changes handed from control threads to the thread that processes a
//! [`CvPipeline`](super::CvPipeline), with no lock and no heap operation on the
//! processing side.
//!
//! A control call (under a mutex that only control calls take) merges its change into
//! the pending [`Change`] and publishes it through an atomic pointer; the processing
//! side takes the whole of it with one atomic swap at the start of its next call. The
//! boxes travel back the same way, carrying the pipelines that left the stream, so that
//! they are freed on a control thread: the processing side pushes them on a lock-free
//! list that the next control call (or the handle's free) empties.

use std::ptr::null_mut;
use std::sync::atomic::AtomicPtr;
use std::sync::atomic::Ordering::{AcqRel, Acquire, Relaxed, Release};
use std::sync::{Mutex, MutexGuard};

use crate::pipeline::Pipeline;

/// What the control side asks of the stream, in the order the stream applies it: a new
/// pipeline, then the strength, then bypass. A later configuration replaces the whole
/// (it sets strength and bypass itself); a later strength or bypass, its own field.
#[derive(Debug)]
pub(super) struct Change {
    /// A built pipeline to cross-fade to; on the way back, one that left the stream.
    pub pipeline: Option<Pipeline>,
    /// A wet/dry mix, already checked.
    pub strength: Option<f32>,
    /// Bypass on or off.
    pub bypass: Option<bool>,
    /// The next box of the list of returned boxes.
    next: *mut Change,
}

impl Default for Change {
    fn default() -> Self {
        Self {
            pipeline: None,
            strength: None,
            bypass: None,
            next: null_mut(),
        }
    }
}

// SAFETY: `next` links boxes owned by the list that holds them; a `Change` moves
// between threads whole, never shared.
unsafe impl Send for Change {}

/// The two lists between the control side and the processing side.
#[derive(Debug, Default)]
pub(super) struct Mailbox {
    /// The pending change (a `Box<Change>` or NULL).
    inbox: AtomicPtr<Change>,
    /// Boxes the processing side is done with, linked by `next`.
    returned: AtomicPtr<Change>,
    /// Serialises the control side (its calls may come from several threads).
    control: Mutex<()>,
}

impl Mailbox {
    /// Control side: the lock of the control calls, with the returned boxes freed.
    pub fn control(&self) -> MutexGuard<'_, ()> {
        // The mutex guards no data: a panic while it was held left nothing broken.
        let guard = self.control.lock().unwrap_or_else(|e| e.into_inner());
        self.free_returned();
        guard
    }

    /// Control side, under [`Mailbox::control`]: merges a change into the pending one.
    pub fn post(&self, _control: &MutexGuard<'_, ()>, merge: impl FnOnce(&mut Change)) {
        let pending = self.inbox.swap(null_mut(), Acquire);
        let mut change = if pending.is_null() {
            Box::default()
        } else {
            // SAFETY: a pointer from `Box::into_raw` below, taken back by this swap alone
            // (the processing side swaps in NULL, and only one control call runs).
            unsafe { Box::from_raw(pending) }
        };
        merge(&mut change);
        // Only this call stores a non-NULL pointer, and the inbox is NULL since the swap
        // above (the processing side only takes): nothing is overwritten.
        self.inbox.store(Box::into_raw(change), Release);
    }

    /// Control side, under [`Mailbox::control`]: changes the pending change, if there
    /// is one, where it waits (nothing is posted when none is pending). For a stream
    /// call (which alone takes changes) that holds the control lock as well: it brings
    /// a pipeline built before its own change up to date (the render format).
    pub fn amend_pending<T>(
        &self,
        _control: &MutexGuard<'_, ()>,
        amend: impl FnOnce(&mut Change) -> T,
    ) -> Option<T> {
        let pending = self.inbox.swap(null_mut(), Acquire);
        if pending.is_null() {
            return None;
        }
        // SAFETY: as in `post`: a pointer from `Box::into_raw`, taken back by this swap
        // alone while the control lock is held.
        let mut change = unsafe { Box::from_raw(pending) };
        let result = amend(&mut change);
        // As in `post`: only a control-lock holder stores, and the inbox is NULL since
        // the swap above.
        self.inbox.store(Box::into_raw(change), Release);
        Some(result)
    }

    /// Processing side: takes the pending change, if any. No heap operation.
    pub fn take(&self) -> Option<Box<Change>> {
        let pending = self.inbox.swap(null_mut(), Acquire);
        // SAFETY: a pointer from `Box::into_raw` in `post`, now owned by this side only.
        (!pending.is_null()).then(|| unsafe { Box::from_raw(pending) })
    }

    /// Processing side: hands a box back to be freed on the control side. Lock-free,
    /// no heap operation.
    pub fn give_back(&self, change: Box<Change>) {
        let change = Box::into_raw(change);
        let mut head = self.returned.load(Relaxed);
        loop {
            // SAFETY: `change` is ours until the exchange below publishes it.
            unsafe { (*change).next = head };
            match self
                .returned
                .compare_exchange_weak(head, change, Release, Relaxed)
            {
                Ok(_) => return,
                Err(now) => head = now,
            }
        }
    }

    /// Frees the boxes the processing side gave back (and the pipelines in them).
    fn free_returned(&self) {
        let mut at = self.returned.swap(null_mut(), AcqRel);
        while !at.is_null() {
            // SAFETY: each box of the list came from `Box::into_raw`, and the swap made
            // the whole list ours.
            let change = unsafe { Box::from_raw(at) };
            at = change.next;
        }
    }
}

impl Drop for Mailbox {
    fn drop(&mut self) {
        self.free_returned();
        drop(self.take());
    }
}
