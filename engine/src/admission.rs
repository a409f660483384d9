//! Admission control: a bound on the rows of one graph that are admitted and not yet
//! answered.
//!
//! Every submission takes as many permits as it has rows and gives them back when its
//! reply is called. [`Admission::try_acquire`] refuses at once when the permits run
//! out (an HTTP server answers 503 and stays responsive); [`Admission::acquire`] waits
//! (a file replay or a Kafka consumer slows down instead). A submission larger than the
//! whole bound is admitted alone, when nothing else is in flight, so it cannot wait
//! forever. Together with the bounded channels and queues inside the dataflow, this
//! keeps a graph's memory bounded under any offered load.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Condvar, Mutex};
use std::time::Duration;

use weir_operators::Shutdown;

/// The in-flight bound of one graph.
#[derive(Debug)]
pub struct Admission {
    limit: usize,
    in_flight: AtomicUsize,
    /// Waiting submitters sleep here; `waiting` says whether a release must wake them.
    lock: Mutex<()>,
    freed: Condvar,
    waiting: AtomicUsize,
}

impl Admission {
    /// A bound of `limit` rows (at least 1).
    pub fn new(limit: usize) -> Self {
        Admission {
            limit: limit.max(1),
            in_flight: AtomicUsize::new(0),
            lock: Mutex::new(()),
            freed: Condvar::new(),
            waiting: AtomicUsize::new(0),
        }
    }

    /// The bound.
    pub fn limit(&self) -> usize {
        self.limit
    }

    /// Rows admitted and not yet answered.
    pub fn in_flight(&self) -> usize {
        self.in_flight.load(Ordering::Acquire)
    }

    /// Takes `n` permits if they are free (or if nothing is in flight); never waits.
    pub fn try_acquire(&self, n: usize) -> bool {
        let mut current = self.in_flight.load(Ordering::Acquire);
        loop {
            if current != 0 && current + n > self.limit {
                return false;
            }
            match self.in_flight.compare_exchange_weak(current, current + n, Ordering::AcqRel, Ordering::Acquire) {
                Ok(_) => return true,
                Err(now) => current = now,
            }
        }
    }

    /// Takes `n` permits, waiting until they are free; gives up (false) once `shutdown`
    /// is requested.
    pub fn acquire(&self, n: usize, shutdown: &Shutdown) -> bool {
        if self.try_acquire(n) {
            return true;
        }
        self.waiting.fetch_add(1, Ordering::SeqCst);
        let mut guard = self.lock.lock().unwrap_or_else(|p| p.into_inner());
        let admitted = loop {
            if shutdown.is_requested() {
                break false;
            }
            if self.try_acquire(n) {
                break true;
            }
            // The timeout only guards against a missed shutdown; releases notify.
            guard = self.freed.wait_timeout(guard, Duration::from_millis(50)).unwrap_or_else(|p| p.into_inner()).0;
        };
        drop(guard);
        self.waiting.fetch_sub(1, Ordering::SeqCst);
        admitted
    }

    /// Gives `n` permits back and wakes waiting submitters.
    pub fn release(&self, n: usize) {
        self.in_flight.fetch_sub(n, Ordering::AcqRel);
        if self.waiting.load(Ordering::SeqCst) > 0 {
            // Taking the lock orders this notify after a waiter's last check.
            drop(self.lock.lock().unwrap_or_else(|p| p.into_inner()));
            self.freed.notify_all();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    #[test]
    fn refuses_beyond_the_bound_and_admits_after_release() {
        let a = Admission::new(10);
        assert!(a.try_acquire(6));
        assert!(!a.try_acquire(5), "6 + 5 exceeds 10");
        assert!(a.try_acquire(4));
        assert_eq!(a.in_flight(), 10);
        a.release(6);
        assert!(a.try_acquire(5));
        assert_eq!(a.in_flight(), 9);
    }

    #[test]
    fn an_oversized_submission_goes_alone() {
        let a = Admission::new(4);
        assert!(a.try_acquire(100), "nothing in flight: admitted");
        assert!(!a.try_acquire(1));
        a.release(100);
        assert_eq!(a.in_flight(), 0);
    }

    #[test]
    fn a_waiting_submitter_is_woken_by_a_release() {
        let a = Arc::new(Admission::new(2));
        assert!(a.try_acquire(2));
        let stop = Shutdown::new();
        let waiter = {
            let (a, stop) = (Arc::clone(&a), stop.clone());
            std::thread::spawn(move || a.acquire(1, &stop))
        };
        while a.waiting.load(Ordering::SeqCst) == 0 {
            std::thread::yield_now();
        }
        a.release(1);
        assert!(waiter.join().expect("waiter"));
        assert_eq!(a.in_flight(), 2);
    }

    #[test]
    fn a_waiting_submitter_gives_up_at_stop() {
        let a = Arc::new(Admission::new(1));
        assert!(a.try_acquire(1));
        let stop = Shutdown::new();
        let waiter = {
            let (a, stop) = (Arc::clone(&a), stop.clone());
            std::thread::spawn(move || a.acquire(1, &stop))
        };
        stop.request();
        assert!(!waiter.join().expect("waiter"));
    }
}
