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

    /// Forgets a partition, revoked or (re)assigned in a rebalance; returns how many of
    /// its messages were pending. A revoked partition's pending messages are consumed
    /// again by its next owner from the last committed position; a (re)assigned one
    /// starts afresh at its first message, and acknowledgements of messages begun before
    /// are ignored unless the same offset was begun again.
    pub fn forget(&mut self, tp: &TopicPartition) -> usize {
        self.partitions.remove(tp).map_or(0, |p| p.pending.len())
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
        assert_eq!(t.forget(&a), 1);
        assert_eq!(t.finish(&a, 10), None);
        assert_eq!(t.pending(), 0);
    }

    #[test]
    fn a_partition_assigned_again_starts_afresh() {
        // Messages 100..110 were consumed and stored up to 105; then the partition is
        // revoked, and assigned back later, where consumption restarts at 105.
        let mut t = OffsetTracker::default();
        for o in 100..110 {
            t.begin(&tp(), o);
        }
        for o in 100..105 {
            t.finish(&tp(), o);
        }
        assert_eq!(t.forget(&tp()), 5, "revoked with 105..110 pending");
        // Their answers land after the revocation: ignored.
        for o in 105..110 {
            assert_eq!(t.finish(&tp(), o), None);
        }
        t.forget(&tp()); // assigned again
        t.begin(&tp(), 105);
        // Had the old state been kept (one past the highest offset begun: 110), this
        // answer would store 110 while 106..110 are not received again yet, and a crash
        // would lose them.
        assert_eq!(t.finish(&tp(), 105), Some(106));
    }
}
