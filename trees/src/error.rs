//! [`TreeError`]: everything that can go wrong loading or running a tree ensemble.
//!
//! Every variant names where the problem is: the model's source (a file path, or
//! `NodeArrays` for ONNX attributes), and where it helps the tree, the node, the field or
//! the line. All are the model author's or the caller's fault; none is fixed by retrying.

use std::path::PathBuf;

/// An error loading a tree model or predicting with it.
#[derive(Debug, thiserror::Error)]
pub enum TreeError {
    /// The model file could not be read.
    #[error("{path}: cannot read the model: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The file is not valid JSON (truncated, or not JSON at all).
    #[error("{path}: not valid JSON: {source}")]
    Json {
        /// The file.
        path: PathBuf,
        /// The parser's error, with line and column.
        source: serde_json::Error,
    },
    /// A field of the model is missing or has an impossible value.
    #[error("{model}: field `{field}`: {reason}")]
    Field {
        /// Where the model came from (a path, or `NodeArrays`).
        model: String,
        /// The field (e.g. `learner.learner_model_param.num_class`, `nodes_modes`).
        field: String,
        /// What is wrong with it.
        reason: String,
    },
    /// A line of a text model (LightGBM) is malformed.
    #[error("{model}: line {line}: {reason}")]
    Line {
        /// Where the model came from.
        model: String,
        /// The 1-based line number.
        line: usize,
        /// What is wrong with it.
        reason: String,
    },
    /// A tree's structure is wrong: a child out of range, a node reached twice, a feature
    /// past the model's features, a leaf writing to a missing output.
    #[error("{model}: tree {tree}, node {node}: {reason}")]
    Node {
        /// Where the model came from.
        model: String,
        /// The tree's index (or id, for ONNX arrays).
        tree: i64,
        /// The node's id as the model numbers it.
        node: i64,
        /// What is wrong with it.
        reason: String,
    },
    /// The model uses something this crate does not implement (an objective, a multi-target
    /// tree, linear leaves); it is refused rather than answered wrongly.
    #[error("{model}: unsupported {what} `{value}`")]
    Unsupported {
        /// Where the model came from.
        model: String,
        /// The kind of thing (e.g. `objective`, `split_type`).
        what: String,
        /// Its value in the model.
        value: String,
    },
    /// The input does not hold `rows` rows of the model's feature count.
    #[error("input has {got} values; {rows} rows of {n_features} features need {expected}")]
    Shape {
        /// Rows asked for.
        rows: usize,
        /// Features the model needs per row.
        n_features: usize,
        /// Values needed (`rows * n_features`).
        expected: usize,
        /// Values given.
        got: usize,
    },
}
