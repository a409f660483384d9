//! Reductions: `ArgMax` (first maximum, `int64` indices) and `ReduceSum`.

use candle_core::DType;

use super::{axis, input, Kernel};
use crate::error::{KernelError, OnnxError};
use crate::node::NodeCtx;
use crate::value::Value;

/// `ArgMax` along `axis`.
#[derive(Debug)]
struct ArgMax {
    axis: i64,
    keepdims: bool,
}

/// Compiles `ArgMax` (`select_last_index=1` is not supported).
pub(crate) fn argmax(ctx: &NodeCtx) -> Result<Box<dyn Kernel>, OnnxError> {
    ctx.inputs_between(1, 1)?;
    ctx.outputs_at_most(1)?;
    if ctx.int("select_last_index", 0) != 0 {
        return Err(ctx.err("attribute select_last_index", "select_last_index=1 is not supported"));
    }
    Ok(Box::new(ArgMax { axis: ctx.int("axis", 0), keepdims: ctx.int("keepdims", 1) != 0 }))
}

impl Kernel for ArgMax {
    fn run(&self, inputs: &[Option<&Value>]) -> Result<Vec<Value>, KernelError> {
        let x = input(inputs, 0)?.tensor(0)?;
        let a = axis(self.axis, x.rank())?;
        let idx = if self.keepdims { x.argmax_keepdim(a)? } else { x.argmax(a)? };
        Ok(vec![Value::Tensor(idx.to_dtype(DType::I64)?)])
    }
}

/// `ReduceSum` over the axes of input 1 (opset 13 on) or of the `axes` attribute.
#[derive(Debug)]
struct ReduceSum {
    axes: Option<Vec<i64>>,
    keepdims: bool,
    noop_with_empty_axes: bool,
}

/// Compiles `ReduceSum`.
pub(crate) fn reduce_sum(ctx: &NodeCtx) -> Result<Box<dyn Kernel>, OnnxError> {
    ctx.inputs_between(1, 2)?;
    ctx.outputs_at_most(1)?;
    Ok(Box::new(ReduceSum {
        axes: if ctx.opset >= 13 { None } else { ctx.ints("axes") },
        keepdims: ctx.int("keepdims", 1) != 0,
        noop_with_empty_axes: ctx.int("noop_with_empty_axes", 0) != 0,
    }))
}

impl Kernel for ReduceSum {
    fn run(&self, inputs: &[Option<&Value>]) -> Result<Vec<Value>, KernelError> {
        let x = input(inputs, 0)?.tensor(0)?;
        let listed = match (&self.axes, inputs.get(1).copied().flatten()) {
            (Some(a), _) => a.clone(),
            (None, Some(v)) => v.tensor(1)?.flatten_all()?.to_dtype(DType::I64)?.to_vec1::<i64>()?,
            (None, None) => Vec::new(),
        };
        if listed.is_empty() && self.noop_with_empty_axes {
            return Ok(vec![Value::Tensor(x.clone())]);
        }
        let mut axes = if listed.is_empty() {
            (0..x.rank()).collect()
        } else {
            listed.iter().map(|&a| axis(a, x.rank())).collect::<Result<Vec<usize>, _>>()?
        };
        axes.sort_unstable();
        axes.dedup();
        let y = if self.keepdims { x.sum_keepdim(axes)? } else { x.sum(axes)? };
        Ok(vec![Value::Tensor(y)])
    }
}
