//! Counters of a learning model node (atomics, shared with the HTTP metrics and tests),
//! its learner as of its latest version (what a reload hands to the graph's next
//! revision), and whether it still writes its checkpoints (a revision that a reload
//! replaced hands its checkpoint directory to its successor).

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Mutex;

use crate::kernel::learner::Learner;

/// What a learning node's learner has done.
#[derive(Debug, Default)]
pub struct LearnStats {
    feedback: AtomicU64,
    learned: AtomicU64,
    unknown_key: AtomicU64,
    expired_key: AtomicU64,
    invalid: AtomicU64,
    version: AtomicU64,
    kept: AtomicU64,
    checkpoints: AtomicU64,
    /// The learner as of its latest version, kept by a serving (not deterministic)
    /// learning operator.
    latest: Mutex<Option<Learner>>,
    /// Set once the graph's next revision writes the checkpoints.
    handed_over: AtomicBool,
}

/// A copy of [`LearnStats`] at one moment.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct LearnStatsSnapshot {
    /// Feedback rows received.
    pub feedback: u64,
    /// Feedback rows learned from.
    pub learned: u64,
    /// Feedback rows whose key no kept prediction had.
    pub unknown_key: u64,
    /// Feedback rows whose prediction was dropped (too old, or for room) before it came.
    pub expired_key: u64,
    /// Feedback rows refused: a label that is not a class, or features of the wrong
    /// width.
    pub invalid: u64,
    /// The version of the latest weights (optimizer steps taken).
    pub version: u64,
    /// Predictions kept for feedback now.
    pub kept: u64,
    /// Checkpoints written.
    pub checkpoints: u64,
}

/// What became of one feedback row.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FeedbackOutcome {
    /// Learned from.
    Learned,
    /// No kept prediction had its key.
    UnknownKey,
    /// Its prediction was dropped before it came.
    ExpiredKey,
    /// Its label or features were refused.
    Invalid,
}

impl LearnStats {
    /// Zeroed counters.
    pub fn new() -> LearnStats {
        LearnStats::default()
    }

    /// Keeps a copy of `learner`, at a new version.
    pub fn keep_learner(&self, learner: &Learner) {
        let copy = learner.clone();
        *self.latest.lock().unwrap_or_else(|p| p.into_inner()) = Some(copy);
    }

    /// The learner as of its latest version, if one was kept (see
    /// [`LearnStats::keep_learner`]).
    pub fn latest_learner(&self) -> Option<Learner> {
        self.latest.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// Stops this node's checkpoints for good: a reload's next revision of the graph
    /// writes to the same directory from now on, and a save of this (older) learner
    /// would overwrite its newer one.
    pub fn hand_over_checkpoints(&self) {
        self.handed_over.store(true, Ordering::SeqCst);
    }

    /// Whether this node still writes its checkpoints (see
    /// [`LearnStats::hand_over_checkpoints`]).
    pub fn writes_checkpoints(&self) -> bool {
        !self.handed_over.load(Ordering::SeqCst)
    }

    /// Counts one feedback row.
    pub fn record(&self, outcome: FeedbackOutcome) {
        self.feedback.fetch_add(1, Ordering::Relaxed);
        let counter = match outcome {
            FeedbackOutcome::Learned => &self.learned,
            FeedbackOutcome::UnknownKey => &self.unknown_key,
            FeedbackOutcome::ExpiredKey => &self.expired_key,
            FeedbackOutcome::Invalid => &self.invalid,
        };
        counter.fetch_add(1, Ordering::Relaxed);
    }

    /// Records the state after a round of learning.
    pub fn set_state(&self, version: u64, kept: usize) {
        self.version.store(version, Ordering::Relaxed);
        self.kept.store(kept as u64, Ordering::Relaxed);
    }

    /// Counts a checkpoint written.
    pub fn record_checkpoint(&self) {
        self.checkpoints.fetch_add(1, Ordering::Relaxed);
    }

    /// The counters now.
    pub fn snapshot(&self) -> LearnStatsSnapshot {
        let get = |c: &AtomicU64| c.load(Ordering::Relaxed);
        LearnStatsSnapshot {
            feedback: get(&self.feedback),
            learned: get(&self.learned),
            unknown_key: get(&self.unknown_key),
            expired_key: get(&self.expired_key),
            invalid: get(&self.invalid),
            version: get(&self.version),
            kept: get(&self.kept),
            checkpoints: get(&self.checkpoints),
        }
    }
}
