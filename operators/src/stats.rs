//! Counters a model node keeps about its batches, shared by its operator instances on
//! every worker (atomics, no locks). The HTTP layer exports them as Prometheus metrics;
//! tests read them to check batching semantics.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use crate::dataflow::policy::SendReason;

/// Upper bounds (inclusive, microseconds) of the queue-wait histogram's buckets; a last
/// bucket takes longer waits.
pub const WAIT_BUCKETS_US: [u64; 12] =
    [100, 250, 500, 1_000, 2_500, 5_000, 10_000, 25_000, 50_000, 100_000, 250_000, 1_000_000];

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
    /// Forward passes run (failed ones included).
    forwards: AtomicU64,
    /// Rows by queue wait: `wait_buckets[i]` counts waits up to `WAIT_BUCKETS_US[i]`, the
    /// last entry longer ones.
    wait_buckets: Vec<AtomicU64>,
    /// Batches sent, by why they left (indexed by [`SendReason::index`]).
    reasons: [AtomicU64; SendReason::ALL.len()],
    /// Times the adaptive policy held a partial batch back for more rows.
    waits: AtomicU64,
    /// Batches computed on a timely worker instead of a replica (see `dataflow/inline.rs`).
    inline: AtomicU64,
}

/// Batch counters kept by one thread for a while, then added to the node's
/// [`BatchStats`] at once ([`BatchStats::add`]). The node's counters are shared by its
/// operators on every worker: a worker that computes a chunk's thirty-two batches
/// itself would otherwise make about 250 atomic additions on cache lines the other
/// worker is writing too, where the tally makes one per counter.
#[derive(Debug, Default)]
pub struct BatchTally {
    /// `(rows, batches)`: batches of the same size counted together.
    sizes: Vec<(usize, u64)>,
    rows: u64,
    queue_wait_us: u64,
    failed_batches: u64,
    compute_ns: u64,
    forwards: u64,
    wait_buckets: [u64; WAIT_BUCKETS_US.len() + 1],
    reasons: [u64; SendReason::ALL.len()],
    inline: u64,
}

impl BatchTally {
    /// A batch of `rows` rows that waited `wait_us` microseconds, sent for `reason`,
    /// computed on a worker.
    pub fn inline_batch(&mut self, rows: usize, wait_us: u64, reason: SendReason) {
        match self.sizes.iter_mut().find(|(n, _)| *n == rows) {
            Some((_, batches)) => *batches += 1,
            None => self.sizes.push((rows, 1)),
        }
        let (rows, total) = count_waits(&mut self.wait_buckets, &[(wait_us, rows)]);
        self.rows += rows as u64;
        self.queue_wait_us += total;
        self.reasons[reason.index()] += 1;
        self.inline += 1;
    }

    /// A forward pass that took `took`.
    pub fn compute(&mut self, took: Duration) {
        self.compute_ns += took.as_nanos() as u64;
        self.forwards += 1;
    }

    /// A failed forward pass.
    pub fn failure(&mut self) {
        self.failed_batches += 1;
    }
}

/// Counts a batch's runs of rows (`(microseconds waited, rows)` each) into `buckets`
/// (rows per bucket of [`WAIT_BUCKETS_US`], then longer waits); returns the rows and
/// their total wait in microseconds.
fn count_waits(buckets: &mut [u64; WAIT_BUCKETS_US.len() + 1], waits_us: &[(u64, usize)]) -> (usize, u64) {
    let (mut rows, mut total) = (0usize, 0u64);
    // A run's rows arrived together: one bucket search per run, not per row.
    for &(wait, n) in waits_us {
        buckets[WAIT_BUCKETS_US.partition_point(|&b| b < wait)] += n as u64;
        rows += n;
        total += wait * n as u64;
    }
    (rows, total)
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
    /// Forward passes run.
    pub forwards: u64,
    /// Rows by queue wait, per bucket of [`WAIT_BUCKETS_US`] (not cumulative), plus
    /// one for longer waits.
    pub wait_buckets: Vec<u64>,
    /// Batches sent, by why they left, in the order of [`SendReason::ALL`].
    pub reasons: Vec<u64>,
    /// Times the adaptive policy held a partial batch back for more rows.
    pub waits: u64,
    /// Batches computed on a timely worker instead of a replica.
    pub inline: u64,
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
            forwards: AtomicU64::new(0),
            wait_buckets: (0..=WAIT_BUCKETS_US.len()).map(|_| AtomicU64::new(0)).collect(),
            reasons: Default::default(),
            waits: AtomicU64::new(0),
            inline: AtomicU64::new(0),
        }
    }

    /// Records why a batch left.
    pub fn record_reason(&self, reason: SendReason) {
        self.reasons[reason.index()].fetch_add(1, Ordering::Relaxed);
    }

    /// Records that the adaptive policy held a partial batch back.
    pub fn record_wait(&self) {
        self.waits.fetch_add(1, Ordering::Relaxed);
    }

    /// Records a batch computed on a worker.
    pub fn record_inline(&self) {
        self.inline.fetch_add(1, Ordering::Relaxed);
    }

    /// Adds what a [`BatchTally`] counted: one atomic addition per counter it moved,
    /// however many batches it saw.
    pub fn add(&self, tally: &BatchTally) {
        let add = |counter: &AtomicU64, n: u64| {
            if n > 0 {
                counter.fetch_add(n, Ordering::Relaxed);
            }
        };
        for &(rows, n) in &tally.sizes {
            add(&self.sizes[rows.min(self.sizes.len() - 1)], n);
        }
        add(&self.rows, tally.rows);
        add(&self.queue_wait_us, tally.queue_wait_us);
        add(&self.failed_batches, tally.failed_batches);
        add(&self.compute_ns, tally.compute_ns);
        add(&self.forwards, tally.forwards);
        self.wait_buckets.iter().zip(tally.wait_buckets).for_each(|(counter, n)| add(counter, n));
        self.reasons.iter().zip(tally.reasons).for_each(|(counter, n)| add(counter, n));
        add(&self.inline, tally.inline);
    }

    /// Records a batch of runs of rows: `(microseconds waited, rows)` per run.
    pub fn record_batch(&self, waits_us: &[(u64, usize)]) {
        let mut buckets = [0u64; WAIT_BUCKETS_US.len() + 1];
        let (rows, total) = count_waits(&mut buckets, waits_us);
        let slot = rows.min(self.sizes.len() - 1);
        self.sizes[slot].fetch_add(1, Ordering::Relaxed);
        self.rows.fetch_add(rows as u64, Ordering::Relaxed);
        self.queue_wait_us.fetch_add(total, Ordering::Relaxed);
        for (counter, n) in self.wait_buckets.iter().zip(buckets) {
            if n > 0 {
                counter.fetch_add(n, Ordering::Relaxed);
            }
        }
    }

    /// The mean time of one forward pass so far (zero before the first).
    pub fn mean_forward(&self) -> Duration {
        let n = self.forwards.load(Ordering::Relaxed);
        Duration::from_nanos(self.compute_ns.load(Ordering::Relaxed).checked_div(n).unwrap_or(0))
    }

    /// The time of every forward pass so far, together.
    pub fn compute_time(&self) -> Duration {
        Duration::from_nanos(self.compute_ns.load(Ordering::Relaxed))
    }

    /// Records a failed forward pass.
    pub fn record_failure(&self) {
        self.failed_batches.fetch_add(1, Ordering::Relaxed);
    }

    /// Records the time one forward pass took (on a replica or a worker).
    pub fn record_compute(&self, took: std::time::Duration) {
        self.compute_ns.fetch_add(took.as_nanos() as u64, Ordering::Relaxed);
        self.forwards.fetch_add(1, Ordering::Relaxed);
    }

    /// A copy of the counters.
    pub fn snapshot(&self) -> BatchStatsSnapshot {
        BatchStatsSnapshot {
            sizes: self.sizes.iter().map(|n| n.load(Ordering::Relaxed)).collect(),
            rows: self.rows.load(Ordering::Relaxed),
            queue_wait_us: self.queue_wait_us.load(Ordering::Relaxed),
            failed_batches: self.failed_batches.load(Ordering::Relaxed),
            compute_ns: self.compute_ns.load(Ordering::Relaxed),
            forwards: self.forwards.load(Ordering::Relaxed),
            wait_buckets: self.wait_buckets.iter().map(|n| n.load(Ordering::Relaxed)).collect(),
            reasons: self.reasons.iter().map(|n| n.load(Ordering::Relaxed)).collect(),
            waits: self.waits.load(Ordering::Relaxed),
            inline: self.inline.load(Ordering::Relaxed),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A tally added at once leaves the counters where recording each batch as it went
    /// leaves them.
    #[test]
    fn a_tally_adds_what_recording_batch_by_batch_adds() {
        let batches = [(32, 0, SendReason::Full), (32, 300, SendReason::Full), (7, 2_000_000, SendReason::Now)];
        let (one_by_one, at_once) = (BatchStats::new(32), BatchStats::new(32));
        let mut tally = BatchTally::default();
        for (i, &(rows, wait_us, reason)) in batches.iter().enumerate() {
            let took = Duration::from_micros(10 + i as u64);
            one_by_one.record_compute(took);
            one_by_one.record_batch(&[(wait_us, rows)]);
            one_by_one.record_reason(reason);
            one_by_one.record_inline();
            tally.compute(took);
            tally.inline_batch(rows, wait_us, reason);
        }
        one_by_one.record_failure();
        tally.failure();
        at_once.add(&tally);
        let (a, b) = (one_by_one.snapshot(), at_once.snapshot());
        assert_eq!(a, b);
        assert_eq!((b.batches(), b.rows, b.inline, b.failed_batches), (3, 71, 3, 1));
    }
}
