//! Rebalances: partitions that leave or join this consumer reset their offset tracking.
//!
//! librdkafka runs the rebalance callbacks inside the consumer's poll, i.e. inside the
//! loop's `recv`, between two messages. The loop records every message in the
//! [`OffsetTracker`] as soon as `recv` returns it, so a callback sees the tracker exactly
//! as of the messages handed out before the rebalance:
//!
//! - **Revoke**: the partitions' pending messages are forgotten. librdkafka commits the
//!   positions stored so far (each the first unacknowledged message), and the next owner
//!   consumes from there; answers that land later for these messages are not stored.
//! - **Assign**: the partitions start afresh. Without this a partition that comes back
//!   would keep its old state, and its first acknowledgement could store a position past
//!   messages of the new assignment not yet received, which a crash would then lose.

use std::sync::{Arc, Mutex, MutexGuard};

use rdkafka::consumer::{BaseConsumer, ConsumerContext, Rebalance};
use rdkafka::error::{KafkaError, KafkaResult, RDKafkaErrorCode};
use rdkafka::{ClientContext, TopicPartitionList};

use super::offsets::OffsetTracker;
use super::stats::KafkaStats;

/// The consumer's context: holds the offset tracker, which the loop reaches through
/// `consumer.context()`, and takes librdkafka's statistics and commit results into the
/// loop's [`KafkaStats`].
pub struct Rebalances {
    tracker: Mutex<OffsetTracker>,
    stats: Arc<KafkaStats>,
}

impl Rebalances {
    /// A context for the consumer of the graph `stats` counts for, with an empty tracker.
    pub fn new(stats: Arc<KafkaStats>) -> Self {
        Rebalances { tracker: Mutex::default(), stats }
    }

    /// The tracker (held briefly: the rebalance callback takes it too).
    pub fn tracker(&self) -> MutexGuard<'_, OffsetTracker> {
        // The tracker's operations cannot panic midway; a poisoned lock holds valid state.
        self.tracker.lock().unwrap_or_else(|p| p.into_inner())
    }
}

impl ClientContext for Rebalances {
    fn stats(&self, statistics: rdkafka::Statistics) {
        self.stats.observe(&statistics);
    }
}

impl ConsumerContext for Rebalances {
    fn commit_callback(&self, result: KafkaResult<()>, offsets: &TopicPartitionList) {
        match result {
            // Nothing new was stored since the last commit.
            Ok(()) | Err(KafkaError::ConsumerCommit(RDKafkaErrorCode::NoOffset)) => {}
            Err(e) => {
                let offsets: Vec<String> = offsets
                    .elements()
                    .iter()
                    .map(|e| format!("{}/{}: {:?}", e.topic(), e.partition(), e.offset()))
                    .collect();
                tracing::warn!(graph = %self.stats.graph(), error = %e, ?offsets, "Kafka commit failed; the next commit retries");
            }
        }
    }

    fn pre_rebalance(&self, _consumer: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        let (what, list) = match rebalance {
            Rebalance::Assign(list) => ("assigned", list),
            Rebalance::Revoke(list) => ("revoked", list),
            Rebalance::Error(e) => {
                tracing::warn!(graph = %self.stats.graph(), error = %e, "Kafka rebalance error");
                return;
            }
        };
        let mut tracker = self.tracker();
        for e in list.elements() {
            let tp = (e.topic().to_string(), e.partition());
            let pending = tracker.forget(&tp);
            tracing::info!(graph = %self.stats.graph(), consumer = self.stats.role().as_str(), topic = %tp.0, partition = tp.1, pending, "partition {what}");
        }
    }
}
