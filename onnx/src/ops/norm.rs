//! Normalisations: `BatchNormalization` (inference form, running statistics) and `Softmax`.

use candle_core::Tensor;

use super::{axis, input, Kernel};
use crate::error::{KernelError, OnnxError};
use crate::node::NodeCtx;
use crate::value::Value;

/// `BatchNormalization` in inference mode: `(x - mean) / sqrt(var + epsilon) * scale + bias`
/// per channel (axis 1).
#[derive(Debug)]
struct BatchNorm {
    epsilon: f64,
}

/// Compiles `BatchNormalization` (`training_mode` must be 0; only output 0).
pub(crate) fn batch_norm(ctx: &NodeCtx) -> Result<Box<dyn Kernel>, OnnxError> {
    ctx.inputs_between(5, 5)?;
    ctx.outputs_at_most(1)?;
    if ctx.int("training_mode", 0) != 0 {
        return Err(ctx.err("attribute training_mode", "training mode is not supported"));
    }
    Ok(Box::new(BatchNorm { epsilon: f64::from(ctx.float("epsilon", 1e-5)) }))
}

impl Kernel for BatchNorm {
    fn run(&self, inputs: &[Option<&Value>]) -> Result<Vec<Value>, KernelError> {
        let x = input(inputs, 0)?.tensor(0)?;
        if x.rank() < 2 {
            return Err(KernelError::input(0, format!("BatchNormalization takes [N, C, ...], got {:?}", x.dims())));
        }
        let mut shape = vec![1; x.rank()];
        shape[1] = x.dims()[1];
        let param =
            |i: usize| -> Result<Tensor, KernelError> { Ok(input(inputs, i)?.tensor(i)?.reshape(shape.clone())?) };
        let (scale, bias, mean, var) = (param(1)?, param(2)?, param(3)?, param(4)?);
        let factor = scale.broadcast_div(&(var + self.epsilon)?.sqrt()?)?;
        let y = x.broadcast_sub(&mean)?.broadcast_mul(&factor)?.broadcast_add(&bias)?;
        Ok(vec![Value::Tensor(y)])
    }
}

/// `Softmax` along `axis`; before opset 13 the input is seen as 2-D (axes before `axis`
/// flattened into rows, the rest into columns).
#[derive(Debug)]
struct Softmax {
    axis: i64,
    coerce_2d: bool,
}

/// Compiles `Softmax` (`axis` defaults to -1 from opset 13, to 1 before).
pub(crate) fn softmax(ctx: &NodeCtx) -> Result<Box<dyn Kernel>, OnnxError> {
    ctx.inputs_between(1, 1)?;
    ctx.outputs_at_most(1)?;
    let coerce_2d = ctx.opset < 13;
    Ok(Box::new(Softmax { axis: ctx.int("axis", if coerce_2d { 1 } else { -1 }), coerce_2d }))
}

/// The softmax of `x` along `dim`, shifted by the maximum for stability.
pub(crate) fn softmax_along(x: &Tensor, dim: usize) -> candle_core::Result<Tensor> {
    let e = x.broadcast_sub(&x.max_keepdim(dim)?)?.exp()?;
    e.broadcast_div(&e.sum_keepdim(dim)?)
}

impl Kernel for Softmax {
    fn run(&self, inputs: &[Option<&Value>]) -> Result<Vec<Value>, KernelError> {
        let x = input(inputs, 0)?.tensor(0)?;
        let a = axis(self.axis, x.rank())?;
        let y = if self.coerce_2d && x.rank() > 2 {
            let rows: usize = x.dims()[..a].iter().product();
            let flat = x.reshape((rows, x.elem_count() / rows.max(1)))?;
            softmax_along(&flat, 1)?.reshape(x.dims())?
        } else {
            softmax_along(x, a)?
        };
        Ok(vec![Value::Tensor(y)])
    }
}
