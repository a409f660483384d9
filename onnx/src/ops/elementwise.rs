//! Element-wise operators: the four arithmetic ones with numpy-style (multidirectional)
//! broadcasting, the unary activations, `LeakyRelu` and `Clip`.

use candle_core::{DType, Tensor};

use super::{input, Kernel};
use crate::error::{KernelError, OnnxError};
use crate::node::NodeCtx;
use crate::value::Value;

/// A binary arithmetic operator.
#[derive(Debug, Clone, Copy)]
enum BinaryOp {
    Add,
    Sub,
    Mul,
    Div,
}

/// `Add`, `Sub`, `Mul`, `Div` on two tensors of the same element type, broadcast.
#[derive(Debug)]
struct Binary(BinaryOp);

/// Compiles `Add`, `Sub`, `Mul` or `Div`.
pub(crate) fn binary(ctx: &NodeCtx) -> Result<Box<dyn Kernel>, OnnxError> {
    ctx.inputs_between(2, 2)?;
    ctx.outputs_at_most(1)?;
    let op = match ctx.node.op_type() {
        "Add" => BinaryOp::Add,
        "Sub" => BinaryOp::Sub,
        "Mul" => BinaryOp::Mul,
        _ => BinaryOp::Div,
    };
    Ok(Box::new(Binary(op)))
}

impl Kernel for Binary {
    fn run(&self, inputs: &[Option<&Value>]) -> Result<Vec<Value>, KernelError> {
        let a = input(inputs, 0)?.tensor(0)?;
        let b = input(inputs, 1)?.tensor(1)?;
        if a.dtype() != b.dtype() {
            return Err(KernelError::input(
                1,
                format!("element type {:?} differs from input 0's {:?}", b.dtype(), a.dtype()),
            ));
        }
        let out = if a.dims() == b.dims() {
            match self.0 {
                BinaryOp::Add => (a + b)?,
                BinaryOp::Sub => (a - b)?,
                BinaryOp::Mul => (a * b)?,
                BinaryOp::Div => (a / b)?,
            }
        } else {
            match self.0 {
                BinaryOp::Add => a.broadcast_add(b)?,
                BinaryOp::Sub => a.broadcast_sub(b)?,
                BinaryOp::Mul => a.broadcast_mul(b)?,
                BinaryOp::Div => a.broadcast_div(b)?,
            }
        };
        Ok(vec![Value::Tensor(out)])
    }
}

/// A unary operator.
#[derive(Debug, Clone, Copy)]
enum UnaryOp {
    Relu,
    Sigmoid,
    Tanh,
    Exp,
    Log,
    Sqrt,
    Neg,
    Abs,
    LeakyRelu(f64),
}

/// A unary operator on a float tensor.
#[derive(Debug)]
struct Unary(UnaryOp);

/// Compiles `Relu`, `Sigmoid`, `Tanh`, `Exp`, `Log`, `Sqrt`, `Neg`, `Abs` or `LeakyRelu`
/// (attribute `alpha`, default 0.01).
pub(crate) fn unary(ctx: &NodeCtx) -> Result<Box<dyn Kernel>, OnnxError> {
    ctx.inputs_between(1, 1)?;
    ctx.outputs_at_most(1)?;
    let op = match ctx.node.op_type() {
        "Relu" => UnaryOp::Relu,
        "Sigmoid" => UnaryOp::Sigmoid,
        "Tanh" => UnaryOp::Tanh,
        "Exp" => UnaryOp::Exp,
        "Log" => UnaryOp::Log,
        "Sqrt" => UnaryOp::Sqrt,
        "Neg" => UnaryOp::Neg,
        "Abs" => UnaryOp::Abs,
        _ => UnaryOp::LeakyRelu(f64::from(ctx.float("alpha", 0.01))),
    };
    Ok(Box::new(Unary(op)))
}

impl Kernel for Unary {
    fn run(&self, inputs: &[Option<&Value>]) -> Result<Vec<Value>, KernelError> {
        let x = input(inputs, 0)?.tensor(0)?;
        let out = match self.0 {
            UnaryOp::Relu => x.relu()?,
            UnaryOp::Sigmoid => sigmoid(x)?,
            UnaryOp::Tanh => x.tanh()?,
            UnaryOp::Exp => x.exp()?,
            UnaryOp::Log => x.log()?,
            UnaryOp::Sqrt => x.sqrt()?,
            UnaryOp::Neg => x.neg()?,
            UnaryOp::Abs => x.abs()?,
            UnaryOp::LeakyRelu(alpha) => (x.relu()? + (x.minimum(0.0)? * alpha)?)?,
        };
        Ok(vec![Value::Tensor(out)])
    }
}

/// `1 / (1 + exp(-x))`.
pub(crate) fn sigmoid(x: &Tensor) -> candle_core::Result<Tensor> {
    (x.neg()?.exp()? + 1.0)?.recip()
}

/// `Clip`: bounds from inputs 1 and 2 (opset 11 on, each optional) or from the attributes
/// `min` and `max` (before opset 11).
#[derive(Debug)]
struct Clip {
    /// The bounds given as attributes (opset < 11).
    attrs: Option<(f64, f64)>,
}

/// Compiles `Clip`.
pub(crate) fn clip(ctx: &NodeCtx) -> Result<Box<dyn Kernel>, OnnxError> {
    ctx.outputs_at_most(1)?;
    if ctx.opset < 11 {
        ctx.inputs_between(1, 1)?;
        let min = f64::from(ctx.float("min", f32::MIN));
        let max = f64::from(ctx.float("max", f32::MAX));
        return Ok(Box::new(Clip { attrs: Some((min, max)) }));
    }
    ctx.inputs_between(1, 3)?;
    Ok(Box::new(Clip { attrs: None }))
}

impl Kernel for Clip {
    fn run(&self, inputs: &[Option<&Value>]) -> Result<Vec<Value>, KernelError> {
        let x = input(inputs, 0)?.tensor(0)?;
        let (min, max) = match self.attrs {
            Some(bounds) => bounds,
            None => (bound(inputs, 1)?.unwrap_or(f64::NEG_INFINITY), bound(inputs, 2)?.unwrap_or(f64::INFINITY)),
        };
        let mut out = x.clone();
        if min.is_finite() {
            out = out.maximum(min)?;
        }
        if max.is_finite() {
            out = out.minimum(max)?;
        }
        Ok(vec![Value::Tensor(out)])
    }
}

/// The scalar at input `index`, if given.
fn bound(inputs: &[Option<&Value>], index: usize) -> Result<Option<f64>, KernelError> {
    match inputs.get(index).copied().flatten() {
        None => Ok(None),
        Some(v) => {
            let t = v.tensor(index)?.flatten_all()?.to_dtype(DType::F64)?;
            match t.to_vec1::<f64>()?.as_slice() {
                [x] => Ok(Some(*x)),
                other => Err(KernelError::input(index, format!("a bound of {} elements, not a scalar", other.len()))),
            }
        }
    }
}
