//! The crate's errors: [`OnnxError`] for loading and running a model, [`KernelError`] for what
//! went wrong inside one operator (wrapped with the node's name and op by [`OnnxError::Run`]).

use std::path::PathBuf;

/// Why a model could not be loaded or a batch could not be run.
///
/// Load errors (everything but [`OnnxError::Run`] and [`OnnxError::Input`]) are the model
/// file's fault: retrying does not help, fixing or re-exporting the model does. `Input` is the
/// caller's fault (a batch that does not match the declared inputs). `Run` names the node whose
/// operator failed on this batch.
#[derive(Debug, thiserror::Error)]
pub enum OnnxError {
    /// The file could not be read.
    #[error("{file}: cannot read the ONNX file: {source}")]
    Read {
        /// The model file.
        file: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The bytes are not an ONNX `ModelProto` (a truncated file, or another format).
    #[error("{file}: not an ONNX model (protobuf decoding failed; truncated or another format?): {source}")]
    Decode {
        /// The model file.
        file: PathBuf,
        /// The protobuf decoder's error.
        source: prost::DecodeError,
    },
    /// The model is well-formed protobuf but not a usable graph (no graph, an input without a
    /// tensor type, an initializer whose data does not match its shape, ...).
    #[error("{file}: {what}")]
    Model {
        /// The model file.
        file: PathBuf,
        /// What is wrong.
        what: String,
    },
    /// A node runs an operator this crate does not implement (checked for every node at load).
    #[error("{file}: node {node:?} runs the operator {domain}:{op} (opset {opset}), which weir-onnx does not run")]
    UnsupportedOp {
        /// The model file.
        file: PathBuf,
        /// The node's name (or its first output when it has no name).
        node: String,
        /// The operator's domain (`ai.onnx` for the default domain).
        domain: String,
        /// The operator's type.
        op: String,
        /// The opset version the model imports for that domain.
        opset: i64,
    },
    /// A classifier exported with a `ZipMap` (a list of dictionaries) instead of a tensor.
    #[error("{file}: node {node:?} is a ZipMap (probabilities as a list of maps), which weir-onnx does not run: export the classifier with zipmap off, skl2onnx's options={{\"zipmap\": False}} (or options={{id(classifier): {{\"zipmap\": False}}}})")]
    ZipMap {
        /// The model file.
        file: PathBuf,
        /// The node's name.
        node: String,
    },
    /// A node's attribute or input is missing or invalid for its operator.
    #[error("{file}: node {node:?} ({op}): {field}: {what}")]
    Node {
        /// The model file.
        file: PathBuf,
        /// The node's name.
        node: String,
        /// The operator (`domain:type`).
        op: String,
        /// The attribute, input or output concerned (e.g. `attribute kernel_shape`, `input 1`).
        field: String,
        /// What is wrong.
        what: String,
    },
    /// The graph is not wired: a node reads a value that no input, initializer or earlier node
    /// produces, a value is produced twice, or a graph output is never produced.
    #[error("{file}: node {node:?}: {what}")]
    Wiring {
        /// The model file.
        file: PathBuf,
        /// The node concerned (`graph output` for an output never produced).
        node: String,
        /// What is wrong.
        what: String,
    },
    /// The model's constants could not be placed on the session's device (out of memory, a
    /// dtype the device lacks).
    #[error("cannot place the model's constants on the device: {source}")]
    Device {
        /// candle's error.
        source: Box<candle_core::Error>,
    },
    /// A batch does not match the declared inputs (count, element type, shape).
    #[error("input {input:?}: {what}")]
    Input {
        /// The declared input's name (or its position when there are too many).
        input: String,
        /// What is wrong.
        what: String,
    },
    /// A node's operator failed on this batch (or while folding constants at load).
    #[error("node {node:?} ({op}): {source}")]
    Run {
        /// The node's name.
        node: String,
        /// The operator (`domain:type`).
        op: String,
        /// What went wrong.
        source: KernelError,
    },
}

/// What went wrong inside one operator while it ran.
#[derive(Debug, thiserror::Error)]
pub enum KernelError {
    /// A candle operation failed (shapes, dtypes, device).
    #[error(transparent)]
    Candle(Box<candle_core::Error>),
    /// An input has a shape, element type or value the operator cannot take.
    #[error("input {index}: {what}")]
    Input {
        /// The input's position in the node.
        index: usize,
        /// What is wrong.
        what: String,
    },
}

impl From<candle_core::Error> for KernelError {
    fn from(e: candle_core::Error) -> Self {
        Self::Candle(Box::new(e))
    }
}

impl KernelError {
    /// An input error for the node's input at `index`.
    pub(crate) fn input(index: usize, what: impl Into<String>) -> Self {
        Self::Input { index, what: what.into() }
    }
}
