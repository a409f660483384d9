//! Counters a model node keeps about its batches, shared by its operator instances on
//! every worker (atomics, no locks). The HTTP layer exports them as Prometheus metrics;
//! tests read them to check batching semantics.

use std::sync::atomic::{AtomicU64, Ordering};

/// Batch statistics of one model node.
#[derive(Debug)]
pub struct BatchStats {
    /// `sizes[n]` counts batches of exactly `n` rows (index 0 unused).
    sizes: Vec<AtomicU64>,
    /// Rows that went through forward passes.
    rows: AtomicU64,
    /// Total microseconds rows waited in the queue before their batch left.
    queue_wait_us: AtomicU64,
    /// Batches whose forward pass failed.
    failed_batches: AtomicU64,
    /// Total nanoseconds the node's replicas spent in forward passes.
    compute_ns: AtomicU64,
}

/// A copy of [`BatchStats`] at one moment.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct BatchStatsSnapshot {
    /// `sizes[n]` counts batches of exactly `n` rows.
    pub sizes: Vec<u64>,
    /// Rows that went through forward passes.
    pub rows: u64,
    /// Total microseconds rows waited before their batch left.
    pub queue_wait_us: u64,
    /// Batches whose forward pass failed.
    pub failed_batches: u64,
    /// Total nanoseconds the node's replicas spent in forward passes (busy time: divided
    /// by the wall time and the replica count, how busy the replicas were).
    pub compute_ns: u64,
}

impl BatchStatsSnapshot {
    /// Number of batches.
    pub fn batches(&self) -> u64 {
        self.sizes.iter().sum()
    }

    /// The largest batch seen, 0 if none.
    pub fn max_batch(&self) -> usize {
        self.sizes.iter().rposition(|&n| n > 0).unwrap_or(0)
    }

    /// Mean rows per batch, 0 if none.
    pub fn mean_batch(&self) -> f64 {
        let batches = self.batches();
        if batches == 0 {
            0.0
        } else {
            self.rows as f64 / batches as f64
        }
    }
}

impl BatchStats {
    /// Stats for batches of at most `max_batch_size` rows.
    pub fn new(max_batch_size: usize) -> Self {
        BatchStats {
            sizes: (0..=max_batch_size).map(|_| AtomicU64::new(0)).collect(),
            rows: AtomicU64::new(0),
            queue_wait_us: AtomicU64::new(0),
            failed_batches: AtomicU64::new(0),
            compute_ns: AtomicU64::new(0),
        }
    }

    /// Records a batch of `rows` rows whose rows waited `wait_us` microseconds in total.
    pub fn record_batch(&self, rows: usize, wait_us: u64) {
        let slot = rows.min(self.sizes.len() - 1);
        self.sizes[slot].fetch_add(1, Ordering::Relaxed);
        self.rows.fetch_add(rows as u64, Ordering::Relaxed);
        self.queue_wait_us.fetch_add(wait_us, Ordering::Relaxed);
    }

    /// Records a failed forward pass.
    pub fn record_failure(&self) {
        self.failed_batches.fetch_add(1, Ordering::Relaxed);
    }

    /// Records the time one forward pass took on a replica.
    pub fn record_compute(&self, took: std::time::Duration) {
        self.compute_ns.fetch_add(took.as_nanos() as u64, Ordering::Relaxed);
    }

    /// A copy of the counters.
    pub fn snapshot(&self) -> BatchStatsSnapshot {
        BatchStatsSnapshot {
            sizes: self.sizes.iter().map(|n| n.load(Ordering::Relaxed)).collect(),
            rows: self.rows.load(Ordering::Relaxed),
            queue_wait_us: self.queue_wait_us.load(Ordering::Relaxed),
            failed_batches: self.failed_batches.load(Ordering::Relaxed),
            compute_ns: self.compute_ns.load(Ordering::Relaxed),
        }
    }
}
