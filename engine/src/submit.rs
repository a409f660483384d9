//! The words of the submit path: what goes into a graph ([`Submission`]), what comes
//! back ([`RowResult`], through a [`Reply`], [`BatchReply`] or [`ChunkReply`]), and why
//! a submission was refused ([`SubmitError`]).
//!
//! This module names things and the rest of the engine uses it
//! ([`crate::GraphHandle::submit`] takes a submission, the reply table calls its
//! reply); it imports nothing of the submit path but the [`Feedback`] rows a submission
//! may carry.
//!
//! Replies are called exactly once, on a timely worker thread (or, at shutdown, on the
//! thread that shuts the engine down); they must not block.

use std::sync::Arc;
use std::time::Instant;

use weir_operators::{Chunk, Column, RowError, Value};

use crate::feedback::Feedback;

/// An answer: the output fields in the graph's output order, or the row's error.
pub type RowResult = Result<Vec<Value>, Arc<RowError>>;

/// Called once with a row's answer, on a worker thread; must not block.
pub type Reply = Box<dyn FnOnce(RowResult) + Send>;

/// Called once with the answers of a batch, in input order, on a worker thread; must
/// not block.
pub type BatchReply = Box<dyn FnOnce(Vec<RowResult>) + Send>;

/// Called once with the answers of a batch as one chunk: the graph's output columns in
/// the output order, rows in input order, and per row the error if it failed (its
/// column slots then hold fillers). On a worker thread; must not block.
pub type ChunkReply = Box<dyn FnOnce(Chunk) + Send>;

/// Why a submission was not accepted.
#[derive(Debug, thiserror::Error)]
pub enum SubmitError {
    /// The rows do not match the graph's inputs (the caller's fault).
    #[error("{0}")]
    Invalid(RowError),
    /// The graph has its maximum of rows in flight, or its ingress channel is full
    /// (retry later).
    #[error("graph '{0}' is at capacity")]
    Full(String),
    /// The engine is shutting down.
    #[error("the engine is shutting down")]
    Closed,
}

impl SubmitError {
    /// The error to answer the refused rows with: the caller's [`RowError`] for invalid
    /// rows, else `unavailable` from the engine.
    pub fn into_row_error(self) -> RowError {
        match self {
            SubmitError::Invalid(r) => r,
            other => RowError::engine_unavailable(other.to_string()),
        }
    }

    /// An invalid submission: `message` about the input `field` (if one is to blame).
    pub(crate) fn invalid(stage: &str, field: Option<&str>, message: String) -> SubmitError {
        let error = RowError::invalid_input(stage, message);
        SubmitError::Invalid(match field {
            Some(f) => error.with_field(f),
            None => error,
        })
    }
}

/// What to do when the graph has no room for a submission now.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum WhenFull {
    /// Wait for room (admission bound, ingress channel). The default.
    #[default]
    Wait,
    /// Refuse at once with [`SubmitError::Full`].
    Refuse,
}

/// The rows of a submission.
pub(crate) enum Input {
    /// One `Vec` of values per row, in the graph's input order.
    Rows(Vec<Vec<Value>>),
    /// One column per input field, in the graph's input order, all of one length.
    Columns(Vec<Column>),
}

/// How a submission wants its answers.
pub(crate) enum Replier {
    /// As one row (a submission of one row).
    Row(Reply),
    /// As rows.
    Rows(BatchReply),
    /// As one chunk.
    Chunk(ChunkReply),
}

/// Rows for one graph, all answered together through one reply; see
/// [`crate::GraphHandle::submit`].
///
/// ```
/// use std::time::{Duration, Instant};
/// use weir_engine::{Submission, WhenFull};
/// use weir_operators::Value;
///
/// let one = Submission::row(vec![Value::F32(1.0)], Box::new(|answer| println!("{answer:?}")))
///     .when_full(WhenFull::Refuse)
///     .deadline(Some(Instant::now() + Duration::from_millis(50)));
/// # drop(one);
/// ```
pub struct Submission {
    pub(crate) input: Input,
    pub(crate) reply: Replier,
    pub(crate) when_full: WhenFull,
    pub(crate) deadline: Option<Instant>,
    pub(crate) feedback: Option<Feedback>,
}

impl Submission {
    fn new(input: Input, reply: Replier) -> Submission {
        Submission { input, reply, when_full: WhenFull::Wait, deadline: None, feedback: None }
    }

    /// One row (its values in the graph's input order), answered through `reply`.
    pub fn row(values: Vec<Value>, reply: Reply) -> Submission {
        Submission::new(Input::Rows(vec![values]), Replier::Row(reply))
    }

    /// Rows (all or none enter), answered together through `reply`, in input order.
    /// They travel together to one worker; model nodes may still batch them with others.
    pub fn rows(rows: Vec<Vec<Value>>, reply: BatchReply) -> Submission {
        Submission::new(Input::Rows(rows), Replier::Rows(reply))
    }

    /// Rows given by column (one per input field, in the graph's input order, all of
    /// one length), answered as one chunk of output columns. The bulk path (replay):
    /// no value is built per row on the way in or out.
    pub fn columns(columns: Vec<Column>, reply: ChunkReply) -> Submission {
        Submission::new(Input::Columns(columns), Replier::Chunk(reply))
    }

    /// What to do when the graph is full (by default, wait).
    pub fn when_full(mut self, when_full: WhenFull) -> Submission {
        self.when_full = when_full;
        self
    }

    /// The rows' deadline: a model node does not compute them after it, and closes a
    /// partial batch early to meet it. A row past it is answered `deadline_exceeded`.
    pub fn deadline(mut self, deadline: Option<Instant>) -> Submission {
        self.deadline = deadline;
        self
    }

    /// Feedback for the graph's learning node, sent with the rows, its `i`-th row
    /// labelling row `i` (by key, or with its features): in a deterministic engine,
    /// row after row, each row is predicted with what was learned before it, then the
    /// `i`-th feedback row is learned, so row `i + 1` is predicted with the labels of
    /// rows `0..=i` and of every earlier submission (feedback beyond the rows is
    /// learned after the last row), all before any later submission is predicted. One
    /// step of the clock for a whole block of predict-then-learn: what a prequential
    /// run sends per block, at any number of workers (a deterministic engine learns on
    /// one worker, where the rows and their feedback go).
    pub fn then_feedback(mut self, feedback: Feedback) -> Submission {
        self.feedback = Some(feedback);
        self
    }
}
