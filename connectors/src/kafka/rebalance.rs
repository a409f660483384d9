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

use std::sync::{Mutex, MutexGuard};

use rdkafka::consumer::{BaseConsumer, ConsumerContext, Rebalance};
use rdkafka::ClientContext;

use super::offsets::OffsetTracker;

/// The consumer's context: holds the offset tracker, which the loop reaches through
/// `consumer.context()`.
pub struct Rebalances {
    tracker: Mutex<OffsetTracker>,
    graph: String,
}

impl Rebalances {
    /// A context for `graph`'s consumer, with an empty tracker.
    pub fn new(graph: &str) -> Self {
        Rebalances { tracker: Mutex::default(), graph: graph.to_string() }
    }

    /// The tracker (held briefly: the rebalance callback takes it too).
    pub fn tracker(&self) -> MutexGuard<'_, OffsetTracker> {
        // The tracker's operations cannot panic midway; a poisoned lock holds valid state.
        self.tracker.lock().unwrap_or_else(|p| p.into_inner())
    }
}

impl ClientContext for Rebalances {}

impl ConsumerContext for Rebalances {
    fn pre_rebalance(&self, _consumer: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        let (what, list) = match rebalance {
            Rebalance::Assign(list) => ("assigned", list),
            Rebalance::Revoke(list) => ("revoked", list),
            Rebalance::Error(e) => {
                tracing::warn!(graph = %self.graph, error = %e, "Kafka rebalance error");
                return;
            }
        };
        let mut tracker = self.tracker();
        for e in list.elements() {
            let tp = (e.topic().to_string(), e.partition());
            let pending = tracker.forget(&tp);
            tracing::info!(graph = %self.graph, topic = %tp.0, partition = tp.1, pending, "partition {what}");
        }
    }
}
