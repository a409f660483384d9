//! Rows: their ids, and the errors that end them.
//!
//! Rows travel in [`Chunk`](crate::chunk::Chunk)s; a row that fails carries a
//! [`RowError`] that says what went wrong, where, and whose fault it is.

use serde::{Deserialize, Serialize};
use std::fmt;

/// Identifies a row from the moment it enters an engine until its answer leaves.
pub type RowId = u64;

/// What kind of failure a row met, and so whose fault it is.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ErrorCode {
    /// The row's own values were wrong (missing field, wrong type or shape, a value
    /// a node cannot accept). The caller's fault; retrying the same row will fail again.
    InvalidInput,
    /// A model's forward pass failed. The server's fault; a retry may help.
    ModelFailed,
    /// User code in a node (a closure, an aggregator) panicked or returned an error.
    NodeFailed,
    /// The row's deadline passed before it was answered.
    DeadlineExceeded,
    /// The engine is shutting down and the row was not computed.
    Unavailable,
}

impl ErrorCode {
    /// The snake-case name used in JSON error bodies.
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorCode::InvalidInput => "invalid_input",
            ErrorCode::ModelFailed => "model_failed",
            ErrorCode::NodeFailed => "node_failed",
            ErrorCode::DeadlineExceeded => "deadline_exceeded",
            ErrorCode::Unavailable => "unavailable",
        }
    }
}

/// Why a row failed, and where.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct RowError {
    /// The kind of failure.
    pub code: ErrorCode,
    /// The node that failed (or `input` when the row could not be decoded).
    pub node: String,
    /// The field at fault, where one is.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub field: Option<String>,
    /// A human-readable explanation.
    pub message: String,
}

impl RowError {
    /// An error of `code` at `node`. The constructors named after each code below say the
    /// same more briefly.
    pub fn new(code: ErrorCode, node: impl Into<String>, message: impl Into<String>) -> Self {
        RowError { code, node: node.into(), field: None, message: message.into() }
    }

    /// An [`ErrorCode::InvalidInput`] error at `node`: the row's own values were wrong.
    pub fn invalid_input(node: impl Into<String>, message: impl Into<String>) -> Self {
        RowError::new(ErrorCode::InvalidInput, node, message)
    }

    /// An [`ErrorCode::ModelFailed`] error at `node`: its forward pass failed.
    pub fn model_failed(node: impl Into<String>, message: impl Into<String>) -> Self {
        RowError::new(ErrorCode::ModelFailed, node, message)
    }

    /// An [`ErrorCode::NodeFailed`] error at `node`: its user code panicked or failed.
    pub fn node_failed(node: impl Into<String>, message: impl Into<String>) -> Self {
        RowError::new(ErrorCode::NodeFailed, node, message)
    }

    /// An [`ErrorCode::DeadlineExceeded`] error at `node`: the row's deadline passed
    /// before it was answered.
    pub fn deadline_exceeded(node: impl Into<String>, message: impl Into<String>) -> Self {
        RowError::new(ErrorCode::DeadlineExceeded, node, message)
    }

    /// An [`ErrorCode::Unavailable`] error at `node`: the row was not computed.
    pub fn unavailable(node: impl Into<String>, message: impl Into<String>) -> Self {
        RowError::new(ErrorCode::Unavailable, node, message)
    }

    /// An [`ErrorCode::Unavailable`] error at the pseudo-node `engine`: the engine
    /// stopped, refused the row, or gave no answer for it. A retry may help once the
    /// engine serves again.
    pub fn engine_unavailable(message: impl Into<String>) -> Self {
        RowError::unavailable("engine", message)
    }

    /// The error of a row the graph gave no answer for, though its submission was
    /// answered (an [`RowError::engine_unavailable`]); a connector fills such a gap with it.
    pub fn no_answer() -> Self {
        RowError::engine_unavailable("the graph gave no answer for this row")
    }

    /// The same error, naming `field`.
    pub fn with_field(mut self, field: impl Into<String>) -> Self {
        self.field = Some(field.into());
        self
    }
}

impl fmt::Display for RowError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} at node '{}'", self.code.as_str(), self.node)?;
        if let Some(field) = &self.field {
            write!(f, ", field '{field}'")?;
        }
        write!(f, ": {}", self.message)
    }
}

impl std::error::Error for RowError {}

/// Renders a caught panic payload as text.
pub fn panic_message(payload: &(dyn std::any::Any + Send)) -> String {
    if let Some(s) = payload.downcast_ref::<&str>() {
        (*s).to_string()
    } else if let Some(s) = payload.downcast_ref::<String>() {
        s.clone()
    } else {
        "panic with a non-string payload".to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_constructor_sets_its_code() {
        let cases = [
            (RowError::invalid_input("input", "m"), ErrorCode::InvalidInput, "input"),
            (RowError::model_failed("m1", "m"), ErrorCode::ModelFailed, "m1"),
            (RowError::node_failed("f", "m"), ErrorCode::NodeFailed, "f"),
            (RowError::deadline_exceeded("m1", "m"), ErrorCode::DeadlineExceeded, "m1"),
            (RowError::unavailable("m1", "m"), ErrorCode::Unavailable, "m1"),
            (RowError::engine_unavailable("m"), ErrorCode::Unavailable, "engine"),
        ];
        for (e, code, node) in cases {
            assert_eq!(e, RowError::new(code, node, "m"));
        }
    }

    #[test]
    fn display_names_code_node_and_field() {
        let e = RowError::invalid_input("input", "not a number").with_field("x");
        assert_eq!(e.to_string(), "invalid_input at node 'input', field 'x': not a number");
    }
}
