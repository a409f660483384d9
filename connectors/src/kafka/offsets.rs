//! Which offsets may be committed: per partition, the messages handed to the graph whose
//! outputs the broker has not acknowledged yet.
//!
//! A partition's committable position is its lowest pending offset, or one past the
//! highest offset seen when none is pending. Outputs are acknowledged out of order (rows
//! finish in any order across batches and workers), so a message's acknowledgement only
//! moves the position when every earlier message of its partition is acknowledged too:
//! a crash then re-delivers everything after the committed position, and loses nothing.

use std::collections::{BTreeSet, HashMap};

/// A topic and partition.
pub type TopicPartition = (String, i32);

#[derive(Debug, Default)]
struct Partition {
    pending: BTreeSet<i64>,
    /// One past the highest offset begun.
    next: i64,
    /// The last position reported by [`OffsetTracker::finish`].
    committed: Option<i64>,
}

impl Partition {
    fn position(&self) -> i64 {
        self.pending.first().copied().unwrap_or(self.next)
    }
}

/// Pending offsets of every assigned partition.
#[derive(Debug, Default)]
pub struct OffsetTracker {
    partitions: HashMap<TopicPartition, Partition>,
}

impl OffsetTracker {
    /// Records that the message at `offset` entered the graph.
    pub fn begin(&mut self, tp: &TopicPartition, offset: i64) {
        // A partition's first message is where consumption started: its position.
        let p = self
            .partitions
            .entry(tp.clone())
            .or_insert_with(|| Partition { committed: Some(offset), ..Partition::default() });
        p.pending.insert(offset);
        p.next = p.next.max(offset + 1);
    }

    /// Records that the output of the message at `offset` is acknowledged; returns the
    /// partition's new committable position if it moved.
    pub fn finish(&mut self, tp: &TopicPartition, offset: i64) -> Option<i64> {
        let p = self.partitions.get_mut(tp)?;
        if !p.pending.remove(&offset) {
            return None;
        }
        let position = p.position();
        if p.committed == Some(position) {
            return None;
        }
        p.committed = Some(position);
        Some(position)
    }

    /// Messages begun and not finished, over all partitions.
    pub fn pending(&self) -> usize {
        self.partitions.values().map(|p| p.pending.len()).sum()
    }

    /// Forgets a partition (revoked in a rebalance): its pending messages will be
    /// consumed again by its next owner from the last committed position.
    pub fn revoke(&mut self, tp: &TopicPartition) {
        self.partitions.remove(tp);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tp() -> TopicPartition {
        ("in".into(), 0)
    }

    #[test]
    fn the_position_waits_for_every_earlier_message() {
        let mut t = OffsetTracker::default();
        for o in 5..9 {
            t.begin(&tp(), o);
        }
        assert_eq!(t.finish(&tp(), 6), None, "5 is still pending: the position stays at 5");
        assert_eq!(t.finish(&tp(), 7), None);
        assert_eq!(t.finish(&tp(), 5), Some(8), "5, 6, 7 done: resume at 8");
        assert_eq!(t.finish(&tp(), 8), Some(9));
        assert_eq!(t.pending(), 0);
    }

    #[test]
    fn unknown_and_repeated_acknowledgements_change_nothing() {
        let mut t = OffsetTracker::default();
        t.begin(&tp(), 0);
        assert_eq!(t.finish(&("other".into(), 0), 0), None);
        assert_eq!(t.finish(&tp(), 0), Some(1));
        assert_eq!(t.finish(&tp(), 0), None);
    }

    #[test]
    fn partitions_are_independent_and_revocation_forgets() {
        let mut t = OffsetTracker::default();
        let (a, b) = (("in".to_string(), 0), ("in".to_string(), 1));
        t.begin(&a, 10);
        t.begin(&b, 3);
        assert_eq!(t.finish(&b, 3), Some(4));
        t.revoke(&a);
        assert_eq!(t.finish(&a, 10), None);
        assert_eq!(t.pending(), 0);
    }
}
