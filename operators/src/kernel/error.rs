//! [`KernelError`]: why a kernel could not be built or could not compute a batch, and why
//! a model node's replica threads could not start.
//!
//! Written the candle way: one enum whose variants carry the operation and the shapes or
//! files involved, so a message says what failed and where without a backtrace. Whose
//! fault it is depends on the variant: a weights file that cannot be read is the graph
//! author's (or the installation's); an input of the wrong type or shape is a bug in the
//! plan (types are checked when a graph is built) or in a custom kernel; a candle error
//! during a forward pass is the server's, and a retry may help. The batching operator
//! turns a batch's error into a `model_failed` (or, for [`KernelError::Expired`],
//! `deadline_exceeded`) error row for each of its rows, with this error's text as the
//! message.

use std::path::PathBuf;

use super::device::PlacementError;

/// Why a kernel or a replica failed.
#[derive(Debug, thiserror::Error)]
pub enum KernelError {
    /// A batch's input column is not of the type the kernel takes.
    #[error("{op}: expected {expected} input, got {found}")]
    InputType {
        /// The kernel (e.g. `dense model`).
        op: &'static str,
        /// The type it takes.
        expected: &'static str,
        /// The type of the column it was given.
        found: String,
    },
    /// A batch's rows have the wrong number of values.
    #[error("{op}: expected {expected} inputs per row, got {found}")]
    ShapeMismatch {
        /// The kernel.
        op: &'static str,
        /// Values per row the kernel takes.
        expected: usize,
        /// Values per row it was given.
        found: usize,
    },
    /// A batch has another number of input columns than the kernel takes.
    #[error("{op}: expected {expected} input columns, got {found}")]
    InputCount {
        /// The kernel.
        op: &'static str,
        /// Input columns the kernel takes.
        expected: usize,
        /// Input columns it was given.
        found: usize,
    },
    /// A kernel returned another number of output columns than its node declares.
    #[error("the model returned {found} output columns, the node declares {expected}")]
    OutputColumns {
        /// Output columns the node declares.
        expected: usize,
        /// Output columns the kernel returned.
        found: usize,
    },
    /// A kernel returned a column whose length is not the batch's.
    #[error("the model returned {outputs} outputs for {rows} rows")]
    OutputCount {
        /// Rows in the batch.
        rows: usize,
        /// Rows in the column returned.
        outputs: usize,
    },
    /// A candle operation failed.
    #[error("{op}: {source}")]
    Candle {
        /// What the kernel was doing (e.g. `dense model: forward`).
        op: &'static str,
        /// candle's error.
        #[source]
        source: candle_core::Error,
    },
    /// The tokenizer could not encode the texts.
    #[error("tokenizer: {source}")]
    Tokenizer {
        /// The tokenizer's error.
        #[source]
        source: tokenizers::Error,
    },
    /// A weights file cannot be read.
    #[error("cannot read weights file {}: {source}", path.display())]
    WeightsUnreadable {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// A weights file was read but cannot be loaded into the model (not safetensors, a
    /// tensor missing or of the wrong shape).
    #[error("weights file {}: {source}", path.display())]
    WeightsInvalid {
        /// The file.
        path: PathBuf,
        /// What candle said.
        #[source]
        source: candle_core::Error,
    },
    /// The node cannot run on the device or in the precision its graph names.
    #[error(transparent)]
    Placement(#[from] PlacementError),
    /// A replica's one-thread rayon pool could not be built.
    #[error("cannot start the replica's thread pool: {source}")]
    ThreadPool {
        /// rayon's error.
        #[source]
        source: rayon::ThreadPoolBuildError,
    },
    /// The operating system refused a replica thread.
    #[error("cannot start replica thread for node '{node}': {source}")]
    ThreadSpawn {
        /// The model node.
        node: String,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// A replica could not build its kernel.
    #[error("node '{node}': cannot build its model: {source}")]
    Build {
        /// The model node.
        node: String,
        /// Why the kernel could not be built.
        #[source]
        source: Box<KernelError>,
    },
    /// A replica thread ended before reporting whether its kernel was built.
    #[error("node '{node}': a replica thread died while loading")]
    ReplicaDied {
        /// The model node.
        node: String,
    },
    /// The forward pass was skipped: every row of the batch was past its deadline.
    #[error("every row of the batch was past its deadline")]
    Expired,
    /// The forward pass panicked (the panic fails only its batch).
    #[error("the forward pass panicked: {message}")]
    Panicked {
        /// The panic's message.
        message: String,
    },
    /// A custom kernel's own error, as text.
    #[error("{0}")]
    Custom(String),
}

impl KernelError {
    /// A candle error met while doing `op`.
    pub fn candle(op: &'static str) -> impl Fn(candle_core::Error) -> KernelError {
        move |source| KernelError::Candle { op, source }
    }
}

impl From<String> for KernelError {
    /// A custom kernel's message.
    fn from(message: String) -> Self {
        KernelError::Custom(message)
    }
}

impl From<&str> for KernelError {
    /// A custom kernel's message.
    fn from(message: &str) -> Self {
        KernelError::Custom(message.to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_name_the_op_and_the_shapes() {
        let e = KernelError::ShapeMismatch { op: "dense model", expected: 2, found: 1 };
        assert_eq!(e.to_string(), "dense model: expected 2 inputs per row, got 1");
        let e = KernelError::InputType { op: "sentence model", expected: "str", found: "f32".into() };
        assert_eq!(e.to_string(), "sentence model: expected str input, got f32");
        assert_eq!(
            KernelError::OutputCount { rows: 3, outputs: 2 }.to_string(),
            "the model returned 2 outputs for 3 rows"
        );
    }

    #[test]
    fn build_errors_name_the_node_and_keep_the_cause() {
        let cause = KernelError::WeightsUnreadable {
            path: PathBuf::from("/m/model.safetensors"),
            source: std::io::Error::new(std::io::ErrorKind::NotFound, "gone"),
        };
        let e = KernelError::Build { node: "embed".into(), source: Box::new(cause) };
        assert_eq!(
            e.to_string(),
            "node 'embed': cannot build its model: cannot read weights file /m/model.safetensors: gone"
        );
        assert!(std::error::Error::source(&e).is_some());
    }

    #[test]
    fn custom_kernels_keep_their_text() {
        let e: KernelError = "unlucky batch".into();
        assert_eq!(e.to_string(), "unlucky batch");
        assert!(matches!(KernelError::from(String::from("x")), KernelError::Custom(m) if m == "x"));
    }
}
