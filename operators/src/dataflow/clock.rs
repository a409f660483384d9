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

//!
//! In a cluster of processes that all take requests, each process has its own clock, and
//! a table's rows must still see every upsert acknowledged before them at any process.
//! There the clock runs on the wall clock ([`EventClock::wall`]): a time is the
//! microseconds since the Unix epoch, made strictly increasing (a hybrid logical clock),
//! and a submission returns only once the wall clock has passed its time (or after a
//! millisecond, if the wall clock was stepped back), so a submission made after
//! another's return, at any process of one machine (or of machines whose clocks agree),
//! gets a later time. Its sources also move their
//! capabilities up to the wall clock on their own, every [`WALL_TICK`], so that another
//! process's rows do not wait for this one's next submission.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// How often a source of a wall clock moves its capability up to the wall clock while
/// idle: the most a lookup at another process waits for this process's tables. Each tick
/// costs the worker a step and the cluster a progress message: 5 ms keeps an idle
/// cluster's CPU low.
pub const WALL_TICK: Duration = Duration::from_millis(5);

/// The longest a submission on a wall clock waits for the wall clock to pass its time.
const MAX_COMMIT_WAIT: Duration = Duration::from_millis(1);

/// A graph's logical clock.
#[derive(Debug, Default)]
pub struct EventClock {
    next: Mutex<u64>,
    watermark: AtomicU64,
    /// Times are wall-clock microseconds (see the module docs).
    wall: bool,
}

/// Microseconds since the Unix epoch.
fn now_us() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_micros() as u64)
}

impl EventClock {
    /// A clock at time 0.
    pub fn new() -> EventClock {
        EventClock::default()
    }

    /// A clock on the wall clock, for a graph with tables served by a cluster of
    /// processes (see the module docs).
    pub fn wall() -> EventClock {
        let now = now_us();
        EventClock { next: Mutex::new(now), watermark: AtomicU64::new(now), wall: true }
    }

    /// Whether this clock runs on the wall clock.
    pub fn is_wall(&self) -> bool {
        self.wall
    }

    /// A wall clock's watermark moved up to now, unless a submission is taking its time
    /// (then the watermark as it is); any other clock's watermark.
    pub fn advance(&self) -> u64 {
        if self.wall {
            if let Ok(mut next) = self.next.try_lock() {
                *next = (*next).max(now_us());
                self.watermark.store(*next, Ordering::SeqCst);
            }
        }
        self.watermark()
    }

    /// Runs `send` with the next time, then publishes that every later submission has
    /// a greater time (whether `send` sent anything or not). Submissions are
    /// serialized: `send` must hand its chunk to a source's channel before returning,
    /// and should not wait for room (every other submitter waits on this lock; sources
    /// never do).
    pub fn stamp<R>(&self, send: impl FnOnce(u64) -> R) -> R {
        let mut next = self.next.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        let time = if self.wall { (*next).max(now_us()) } else { *next };
        let result = send(time);
        *next = time + 1;
        // SeqCst, like the doorbells: a source that arms its bell and then reads the
        // watermark either sees this store or is rung after it.
        self.watermark.store(time + 1, Ordering::SeqCst);
        drop(next);
        // On the wall clock, whatever is submitted after this returns gets a later time:
        // normally within a microsecond. A wall clock stepped back (times then run ahead
        // of it) is not waited out: the wait stops after `MAX_COMMIT_WAIT`.
        if self.wall {
            let started = Instant::now();
            while now_us() <= time && started.elapsed() < MAX_COMMIT_WAIT {
                std::hint::spin_loop();
            }
        }
        result
    }

    /// No submission still to come has a time below this.
    pub fn watermark(&self) -> u64 {
        self.watermark.load(Ordering::SeqCst)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_wall_clock_stamps_increasing_times_past_the_wall_clock_on_return() {
        let clock = EventClock::wall();
        let mut last = 0;
        for _ in 0..1000 {
            let t = clock.stamp(|t| t);
            assert!(t > last, "{t} after {last}");
            assert!(now_us() > t, "returned only once the wall clock passed its time");
            last = t;
        }
        let before = clock.watermark();
        std::thread::sleep(Duration::from_millis(2));
        let w = clock.advance();
        assert!(w >= before + 1000, "an idle wall clock's watermark follows the wall clock");
        assert!(clock.stamp(|t| t) >= w, "no submission after it gets a time below the watermark");
    }

    #[test]
    fn a_logical_clock_does_not_move_on_its_own() {
        let clock = EventClock::new();
        assert_eq!((clock.stamp(|t| t), clock.stamp(|t| t)), (0, 1));
        assert_eq!(clock.advance(), 2);
    }
}
