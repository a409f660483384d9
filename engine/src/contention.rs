//! Whether the machine's cores are all taken: what a worker asks before it polls for work
//! instead of parking (`runtime::run_worker`).
//!
//! A polling worker holds a core. That is free while a core is idle, and costly when the
//! threads that make the requests (HTTP, the client on the same machine) wait for one:
//! on a 2-core machine at 16 connections a worker that polled took each request alone,
//! at twice the CPU per request of one that parks and takes them in groups
//! (BENCHMARKS.md, "The path from socket to model"). Linux counts the threads running or
//! ready to run, machine-wide, in the fourth field of `/proc/loadavg` (`running/total`);
//! the cores are taken when that count, which includes the asking thread, exceeds them.
//! The file is read at most once per [`Contention::REFRESH`]; where it cannot be read (not
//! Linux), the cores count as free.

use std::fs::File;
use std::os::unix::fs::FileExt;
use std::time::{Duration, Instant};

/// A worker's view of the machine's load, refreshed at most once per [`Self::REFRESH`].
pub(crate) struct Contention {
    loadavg: Option<File>,
    cores: usize,
    checked: Option<Instant>,
    taken: bool,
}

impl Contention {
    /// How long an answer is reused: reading the file costs a few microseconds.
    pub const REFRESH: Duration = Duration::from_millis(1);

    pub fn new(cores: usize) -> Contention {
        Contention { loadavg: File::open("/proc/loadavg").ok(), cores, checked: None, taken: false }
    }

    /// Whether more threads are running or ready to run than the machine has cores.
    pub fn cores_taken(&mut self) -> bool {
        if self.checked.is_none_or(|at| at.elapsed() >= Self::REFRESH) {
            self.checked = Some(Instant::now());
            self.taken = self.runnable().is_some_and(|n| n > self.cores);
        }
        self.taken
    }

    /// Threads running or ready to run, machine-wide (including this one).
    fn runnable(&self) -> Option<usize> {
        let mut buf = [0u8; 128];
        let n = self.loadavg.as_ref()?.read_at(&mut buf, 0).ok()?;
        runnable_in(std::str::from_utf8(&buf[..n]).ok()?)
    }
}

/// The running count of a `/proc/loadavg` line: `0.52 0.58 0.59 3/467 12345` → 3.
fn runnable_in(line: &str) -> Option<usize> {
    line.split_whitespace().nth(3)?.split_once('/')?.0.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_running_count_is_the_fourth_fields_numerator() {
        assert_eq!(runnable_in("0.52 0.58 0.59 3/467 12345\n"), Some(3));
        assert_eq!(runnable_in("0.00 0.00 0.00 1/80 7"), Some(1));
        assert_eq!(runnable_in("garbage"), None);
    }

    #[test]
    fn this_thread_counts_itself_as_running() {
        let mut c = Contention::new(usize::MAX);
        if c.loadavg.is_some() {
            assert!(c.runnable().is_some_and(|n| n >= 1));
        }
        assert!(!c.cores_taken(), "no machine has more runnable threads than usize::MAX cores");
    }
}
