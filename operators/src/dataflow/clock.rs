//! The event clock of a deterministic engine: logical times given by the submitter.
//!
//! In a deterministic engine every submission (rows or feedback) takes the next time
//! from its graph's clock, in the order the submissions are made, and the clock's
//! watermark then says that no submission will come with an earlier time. Each source
//! emits a chunk at the time it was given, and moves its capability up to the
//! watermark it read *before* draining its channel: every chunk stamped below that
//! watermark was already in the channel (times are taken and chunks sent under one
//! lock), so draining it all leaves nothing earlier behind. Times and the order of
//! submissions, not the worker that happened to take a chunk, then decide what a
//! prediction sees, so answers and learned weights are the same at any worker count.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;

/// A graph's logical clock.
#[derive(Debug, Default)]
pub struct EventClock {
    next: Mutex<u64>,
    watermark: AtomicU64,
}

impl EventClock {
    /// A clock at time 0.
    pub fn new() -> EventClock {
        EventClock::default()
    }

    /// Runs `send` with the next time, then publishes that every later submission has
    /// a greater time (whether `send` sent anything or not). Submissions are
    /// serialized: `send` must hand its chunk to a source's channel before returning,
    /// and should not wait for room (every other submitter waits on this lock; sources
    /// never do).
    pub fn stamp<R>(&self, send: impl FnOnce(u64) -> R) -> R {
        let mut next = self.next.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        let time = *next;
        let result = send(time);
        *next = time + 1;
        // SeqCst, like the doorbells: a source that arms its bell and then reads the
        // watermark either sees this store or is rung after it.
        self.watermark.store(time + 1, Ordering::SeqCst);
        result
    }

    /// No submission still to come has a time below this.
    pub fn watermark(&self) -> u64 {
        self.watermark.load(Ordering::SeqCst)
    }
}
