//! Node kernels: the computations that nodes perform on rows, independent of timely.
//!
//! - [`model`]: candle models (softmax/logistic regression, MLP) loaded from safetensors,
//!   run on batches by replica threads.
//! - [`builtin`]: the built-in business-logic functions of `map` nodes.
//! - [`aggregate`]: the ensemble functions of `combine` nodes.
//! - [`condition`]: the branch conditions of `route` nodes.
//! - [`device`]: where a model's forward passes run.

pub mod aggregate;
pub mod builtin;
pub mod condition;
pub mod device;
pub mod model;

use std::sync::Arc;

use crate::value::Value;

/// A row function: the values of a node's input fields in, its output fields out.
/// An `Err` becomes an error row naming the node; a panic is caught and does the same.
pub type MapFn = Arc<dyn Fn(&[&Value]) -> Result<Vec<Value>, String> + Send + Sync>;

/// A batch computation owned by one replica thread: one output value per input value,
/// in order, or an error that fails every row of the batch.
pub trait BatchKernel: Send {
    /// Computes the outputs of a batch.
    fn forward(&mut self, inputs: &[Value]) -> Result<Vec<Value>, String>;
}

/// Builds one kernel per replica thread (each replica owns its own model instance).
pub type KernelFactory = Arc<dyn Fn() -> Result<Box<dyn BatchKernel>, String> + Send + Sync>;
