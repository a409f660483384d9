//! Matrix products: `MatMul` (numpy `matmul` semantics: 1-D operands promoted, batch
//! dimensions broadcast) and `Gemm` (`alpha * A' B' + beta * C`, `C` broadcast).
//!
//! Both run candle's `matmul` (the `gemm` crate on the CPU). A `[..., K] x [K, N]` product,
//! the common case (a dense layer on a batch), is done as one 2-D product over the flattened
//! leading dimensions.

use candle_core::Tensor;

use super::{input, Kernel};
use crate::error::{KernelError, OnnxError};
use crate::node::NodeCtx;
use crate::value::Value;

/// `MatMul`.
#[derive(Debug)]
struct MatMul;

/// Compiles `MatMul`.
pub(crate) fn matmul(ctx: &NodeCtx) -> Result<Box<dyn Kernel>, OnnxError> {
    ctx.inputs_between(2, 2)?;
    ctx.outputs_at_most(1)?;
    Ok(Box::new(MatMul))
}

/// `a @ b` with numpy's rules.
pub(crate) fn matmul_nd(a: &Tensor, b: &Tensor) -> Result<Tensor, KernelError> {
    let (ra, rb) = (a.rank(), b.rank());
    if ra == 0 || rb == 0 {
        return Err(KernelError::input(0, "MatMul of a scalar"));
    }
    // Promote 1-D operands, remembering to drop the added axes.
    let a2 = if ra == 1 { a.unsqueeze(0)? } else { a.clone() };
    let b2 = if rb == 1 { b.unsqueeze(1)? } else { b.clone() };
    let out = if b2.rank() == 2 {
        let dims = a2.dims().to_vec();
        let k = dims[dims.len() - 1];
        let rows: usize = dims[..dims.len() - 1].iter().product();
        let flat = a2.reshape((rows, k))?.matmul(&b2)?;
        let mut shape = dims[..dims.len() - 1].to_vec();
        shape.push(b2.dims()[1]);
        flat.reshape(shape)?
    } else {
        a2.broadcast_matmul(&b2)?
    };
    let out = if rb == 1 { out.squeeze(out.rank() - 1)? } else { out };
    let out = if ra == 1 { out.squeeze(out.rank().saturating_sub(2))? } else { out };
    Ok(out)
}

impl Kernel for MatMul {
    fn run(&self, inputs: &[Option<&Value>]) -> Result<Vec<Value>, KernelError> {
        let a = input(inputs, 0)?.tensor(0)?;
        let b = input(inputs, 1)?.tensor(1)?;
        Ok(vec![Value::Tensor(matmul_nd(a, b)?)])
    }
}

/// `Gemm` with its attributes.
#[derive(Debug)]
struct Gemm {
    alpha: f64,
    beta: f64,
    trans_a: bool,
    trans_b: bool,
}

/// Compiles `Gemm` (`alpha`, `beta` default 1, `transA`, `transB` default 0).
pub(crate) fn gemm(ctx: &NodeCtx) -> Result<Box<dyn Kernel>, OnnxError> {
    ctx.inputs_between(2, 3)?;
    ctx.outputs_at_most(1)?;
    Ok(Box::new(Gemm {
        alpha: f64::from(ctx.float("alpha", 1.0)),
        beta: f64::from(ctx.float("beta", 1.0)),
        trans_a: ctx.int("transA", 0) != 0,
        trans_b: ctx.int("transB", 0) != 0,
    }))
}

impl Kernel for Gemm {
    fn run(&self, inputs: &[Option<&Value>]) -> Result<Vec<Value>, KernelError> {
        let a = input(inputs, 0)?.tensor(0)?;
        let b = input(inputs, 1)?.tensor(1)?;
        if a.rank() != 2 || b.rank() != 2 {
            return Err(KernelError::input(
                0,
                format!("Gemm takes 2-D operands, got {:?} and {:?}", a.dims(), b.dims()),
            ));
        }
        let a = if self.trans_a { a.t()? } else { a.clone() };
        let b = if self.trans_b { b.t()? } else { b.clone() };
        let mut y = a.matmul(&b)?;
        if self.alpha != 1.0 {
            y = (y * self.alpha)?;
        }
        if let Some(c) = inputs.get(2).copied().flatten() {
            let c = c.tensor(2)?;
            let c = if self.beta != 1.0 { (c * self.beta)? } else { c.clone() };
            y = y.broadcast_add(&c)?;
        }
        Ok(vec![Value::Tensor(y)])
    }
}
