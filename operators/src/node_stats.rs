//! Counters of a node that is not a model node (map, route, combine, merge, lookup):
//! rows in, rows out, and the time its operator spent on them, summed over the workers.
//! Shared by the node's operator instances on every worker (atomics, no locks); the
//! admin listener's stats read them. A model node counts its rows and time in
//! [`crate::stats::BatchStats`] instead.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Instant;

/// The counters of one node.
#[derive(Debug, Default)]
pub struct NodeStats {
    rows_in: AtomicU64,
    rows_out: AtomicU64,
    busy_ns: AtomicU64,
}

/// A copy of [`NodeStats`] at one moment.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct NodeStatsSnapshot {
    /// Rows the node took in.
    pub rows_in: u64,
    /// Rows it gave out (over all its branches).
    pub rows_out: u64,
    /// Nanoseconds its operators spent on them, over all workers.
    pub busy_ns: u64,
}

impl NodeStats {
    /// Counters shared by the operators of one node.
    pub fn new() -> Arc<NodeStats> {
        Arc::new(NodeStats::default())
    }

    /// Records work that took `rows_in` rows and gave `rows_out`, begun at `started`.
    pub fn record(&self, rows_in: usize, rows_out: usize, started: Instant) {
        self.rows_in.fetch_add(rows_in as u64, Ordering::Relaxed);
        self.rows_out.fetch_add(rows_out as u64, Ordering::Relaxed);
        self.busy_ns.fetch_add(started.elapsed().as_nanos() as u64, Ordering::Relaxed);
    }

    /// The counters now.
    pub fn snapshot(&self) -> NodeStatsSnapshot {
        NodeStatsSnapshot {
            rows_in: self.rows_in.load(Ordering::Relaxed),
            rows_out: self.rows_out.load(Ordering::Relaxed),
            busy_ns: self.busy_ns.load(Ordering::Relaxed),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_add_up() {
        let stats = NodeStats::new();
        let started = Instant::now();
        stats.record(3, 2, started);
        stats.record(4, 4, started);
        let s = stats.snapshot();
        assert_eq!((s.rows_in, s.rows_out), (7, 6));
        assert!(s.busy_ns > 0);
    }
}
