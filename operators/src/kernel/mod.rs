//! Node kernels: the computations that nodes perform on rows, independent of timely.
//!
//! - [`model`]: candle models (softmax/logistic regression, MLP) loaded from safetensors,
//!   run on batches by replica threads.
//! - [`onnx`]: ONNX graphs (ONNX-ML operators included) on `weir_onnx`.
//! - [`trees`]: tree ensembles (XGBoost JSON, LightGBM text) on `weir_trees`.
//! - [`sentence`]: BERT-family sentence embeddings (tokenizers, on [`bert`]).
//! - [`bert`]: a BERT encoder on candle, tuned for serving on the CPU.
//! - [`builtin`]: the built-in business-logic functions of `map` nodes.
//! - [`aggregate`]: the ensemble functions of `combine` nodes.
//! - [`condition`]: the branch conditions of `route` nodes.
//! - [`device`]: where a model's forward passes run and in which precision; GPUs
//!   opened once per process, weights once per GPU.
//! - [`error`]: [`KernelError`], why a kernel or a model node's replicas failed.
//! - [`learn`]: online learners (running standardisation, logistic and softmax
//!   regression by SGD or Adam) and the [`learn::Weights`] they serve.
//! - [`learner`]: a learning node's update policy around them.
//! - [`checkpoint`]: a learner saved to and resumed from safetensors, and the
//!   [`checkpoint::CheckpointError`] that stops either.
//! - [`keeper`]: the features of predictions kept until their labels come.
//! - [`signature`]: a model's named inputs and outputs, and [`signature::LoadedKernel`],
//!   a model ready to serve.

pub mod aggregate;
pub mod bert;
pub mod builtin;
pub mod checkpoint;
pub mod condition;
pub mod dense_host;
pub mod device;
pub mod error;
pub mod keeper;
pub mod learn;
pub mod learner;
pub mod model;
pub mod onnx;
pub mod product;
pub mod sentence;
pub mod signature;
pub mod softmax;
pub mod trees;

use std::sync::Arc;

use crate::column::Column;
use crate::value::Value;
use builtin::Builtin;
pub use error::KernelError;

/// A row function: the values of a node's input fields in, its output fields out.
/// An `Err` becomes an error row naming the node; a panic is caught and does the same.
pub type MapFn = Arc<dyn Fn(&[&Value]) -> Result<Vec<Value>, String> + Send + Sync>;

/// What a `map` node computes: a built-in over whole columns, or a row function called
/// once per row.
#[derive(Clone)]
pub enum MapKernel {
    /// A built-in function, applied to columns.
    Builtin(Builtin),
    /// A user function, applied to each row.
    Rows(MapFn),
}

impl std::fmt::Debug for MapKernel {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            MapKernel::Builtin(b) => f.write_str(b.name()),
            MapKernel::Rows(_) => f.write_str("<fn>"),
        }
    }
}

/// A batch computation owned by one replica thread: the batch's input columns in (one
/// per input of the node, in the node's input order, each with one row per batch row
/// and of that input's type), one column per output of the node out (in its output
/// order, each of that output's type, one row per input row in order); or an error
/// that fails every row of the batch.
pub trait BatchKernel: Send {
    /// Computes the outputs of a batch. A custom kernel can fail with its own text
    /// (`Err("...".into())`, [`KernelError::Custom`]).
    fn forward(&mut self, inputs: Vec<Column>) -> Result<Vec<Column>, KernelError>;
}

/// The one input column of a kernel that takes one, or [`KernelError::InputCount`]
/// naming `op`.
pub fn single_input(op: &'static str, inputs: Vec<Column>) -> Result<Column, KernelError> {
    let found = inputs.len();
    let mut inputs = inputs.into_iter();
    match (inputs.next(), inputs.next()) {
        (Some(column), None) => Ok(column),
        _ => Err(KernelError::InputCount { op, expected: 1, found }),
    }
}

/// Builds one kernel per replica thread (each replica owns its own model instance).
pub type KernelFactory = Arc<dyn Fn() -> Result<Box<dyn BatchKernel>, KernelError> + Send + Sync>;
