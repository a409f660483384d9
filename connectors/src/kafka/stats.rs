//! What a graph's Kafka loop has done, read by `/metrics` while it runs and by the
//! closing summary: messages consumed, answered and dead-lettered, and for each
//! partition assigned to this process its committed offset and how far it lags behind
//! the partition's end.
//!
//! The counters move as the loop works. The partitions come from librdkafka's
//! statistics (`statistics.interval.ms`, every second unless the graph's properties say
//! otherwise), so they are at most that old; a partition revoked leaves the list at the
//! next statistics.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use super::KafkaSummary;

/// One assigned partition, as of the last statistics.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PartitionStats {
    /// The topic.
    pub topic: String,
    /// The partition.
    pub partition: i32,
    /// The group's committed offset (the next message to consume after a restart), if
    /// any was committed.
    pub committed: Option<i64>,
    /// One past the partition's last message (the high watermark), if known yet.
    pub end: Option<i64>,
}

impl PartitionStats {
    /// Messages after the committed offset: what a restart would consume again or anew.
    pub fn lag(&self) -> Option<i64> {
        Some((self.end? - self.committed?).max(0))
    }
}

/// A graph's Kafka counters.
#[derive(Debug)]
pub struct KafkaStats {
    graph: String,
    consumed: AtomicU64,
    answered: AtomicU64,
    dead_lettered: AtomicU64,
    partitions: Mutex<Vec<PartitionStats>>,
}

impl KafkaStats {
    /// Counters at zero for `graph`.
    pub fn new(graph: &str) -> Arc<KafkaStats> {
        Arc::new(KafkaStats {
            graph: graph.to_string(),
            consumed: AtomicU64::new(0),
            answered: AtomicU64::new(0),
            dead_lettered: AtomicU64::new(0),
            partitions: Mutex::new(Vec::new()),
        })
    }

    /// The graph.
    pub fn graph(&self) -> &str {
        &self.graph
    }

    /// The counters so far.
    pub fn summary(&self) -> KafkaSummary {
        KafkaSummary {
            consumed: self.consumed.load(Ordering::Relaxed),
            answered: self.answered.load(Ordering::Relaxed),
            dead_lettered: self.dead_lettered.load(Ordering::Relaxed),
        }
    }

    /// The assigned partitions, by topic and partition, as of the last statistics.
    pub fn partitions(&self) -> Vec<PartitionStats> {
        self.partitions.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    pub(crate) fn consumed(&self, n: u64) {
        self.consumed.fetch_add(n, Ordering::Relaxed);
    }

    pub(crate) fn answered(&self, n: u64) {
        self.answered.fetch_add(n, Ordering::Relaxed);
    }

    pub(crate) fn dead_lettered(&self, n: u64) {
        self.dead_lettered.fetch_add(n, Ordering::Relaxed);
    }

    /// Takes the assigned partitions from librdkafka's statistics.
    pub(crate) fn observe(&self, statistics: &rdkafka::Statistics) {
        let known = |o: i64| (o >= 0).then_some(o);
        let mut partitions: Vec<PartitionStats> = statistics
            .topics
            .values()
            .flat_map(|t| {
                t.partitions.values().filter(|p| p.partition >= 0 && p.desired).map(|p| PartitionStats {
                    topic: t.topic.clone(),
                    partition: p.partition,
                    committed: known(p.committed_offset),
                    end: known(p.hi_offset),
                })
            })
            .collect();
        partitions.sort_by(|a, b| (&a.topic, a.partition).cmp(&(&b.topic, b.partition)));
        *self.partitions.lock().unwrap_or_else(|p| p.into_inner()) = partitions;
    }
}
