//! The operators: the [`Kernel`] trait a compiled node implements, and [`compile`], the table
//! from `(domain, op type)` to the module that checks the node's attributes and builds its
//! kernel. An op missing from the table is an error at load.
//!
//! Standard operators (domain `ai.onnx`), one family per module:
//! - [`elementwise`]: Add, Sub, Mul, Div (numpy broadcasting), Relu, Sigmoid, Tanh, Exp, Log,
//!   Sqrt, Neg, Abs, LeakyRelu, Clip;
//! - [`layout`]: Identity, Constant, Cast, Reshape, Flatten, Squeeze, Unsqueeze, Transpose,
//!   Concat, Gather, Shape;
//! - [`linalg`]: MatMul, Gemm;
//! - [`conv`]: Conv (2D), MaxPool, AveragePool, GlobalAveragePool;
//! - [`norm`]: BatchNormalization, Softmax;
//! - [`reduce`]: ArgMax, ReduceSum.
//!
//! The ONNX-ML operators are in [`crate::ml`].

pub(crate) mod conv;
pub(crate) mod elementwise;
pub(crate) mod layout;
pub(crate) mod linalg;
pub(crate) mod norm;
pub(crate) mod reduce;

use crate::error::{KernelError, OnnxError};
use crate::ml;
use crate::node::{NodeCtx, ML};
use crate::value::Value;

/// A compiled node: attributes checked and converted at load, run on each batch.
pub(crate) trait Kernel: Send + Sync + std::fmt::Debug {
    /// Computes the node's outputs (in order) from its inputs (`None` for an omitted optional
    /// input).
    fn run(&self, inputs: &[Option<&Value>]) -> Result<Vec<Value>, KernelError>;
}

/// The input at `index`, or an error saying it is missing.
pub(crate) fn input<'a>(inputs: &[Option<&'a Value>], index: usize) -> Result<&'a Value, KernelError> {
    inputs.get(index).copied().flatten().ok_or_else(|| KernelError::input(index, "missing"))
}

/// Resolves a possibly negative `axis` against `rank` (`-1` is the last axis).
pub(crate) fn axis(axis: i64, rank: usize) -> Result<usize, KernelError> {
    let r = rank as i64;
    let a = if axis < 0 { axis + r } else { axis };
    if a < 0 || a >= r {
        return Err(KernelError::input(0, format!("axis {axis} is out of range for rank {rank}")));
    }
    Ok(a as usize)
}

/// Builds the kernel of the node in `ctx`, checking its attributes; an operator weir-onnx
/// does not run is [`OnnxError::UnsupportedOp`], a `ZipMap` is [`OnnxError::ZipMap`].
pub(crate) fn compile(ctx: &NodeCtx) -> Result<Box<dyn Kernel>, OnnxError> {
    let op = ctx.node.op_type();
    match ctx.domain() {
        "ai.onnx" => match op {
            "Add" | "Sub" | "Mul" | "Div" => elementwise::binary(ctx),
            "Relu" | "Sigmoid" | "Tanh" | "Exp" | "Log" | "Sqrt" | "Neg" | "Abs" | "LeakyRelu" => {
                elementwise::unary(ctx)
            }
            "Clip" => elementwise::clip(ctx),
            "Identity" | "Constant" | "Cast" | "Reshape" | "Flatten" | "Squeeze" | "Unsqueeze" | "Transpose"
            | "Concat" | "Gather" | "Shape" => layout::compile(ctx),
            "MatMul" => linalg::matmul(ctx),
            "Gemm" => linalg::gemm(ctx),
            "Conv" => conv::conv(ctx),
            "MaxPool" | "AveragePool" | "GlobalAveragePool" => conv::pool(ctx),
            "BatchNormalization" => norm::batch_norm(ctx),
            "Softmax" => norm::softmax(ctx),
            "ArgMax" => reduce::argmax(ctx),
            "ReduceSum" => reduce::reduce_sum(ctx),
            _ => Err(unsupported(ctx)),
        },
        ML => match op {
            "ZipMap" => Err(OnnxError::ZipMap { file: ctx.file.to_path_buf(), node: ctx.name() }),
            _ => ml::compile(ctx).unwrap_or_else(|| Err(unsupported(ctx))),
        },
        _ => Err(unsupported(ctx)),
    }
}

/// The error for an operator weir-onnx does not run.
pub(crate) fn unsupported(ctx: &NodeCtx) -> OnnxError {
    OnnxError::UnsupportedOp {
        file: ctx.file.to_path_buf(),
        node: ctx.name(),
        domain: ctx.domain().to_string(),
        op: ctx.node.op_type().to_string(),
        opset: ctx.opset,
    }
}
