//! 2-D convolution and pooling over `[N, C, H, W]` tensors: `Conv`, `MaxPool`, `AveragePool`,
//! `GlobalAveragePool`, on candle's `conv2d`, `max_pool2d` and `avg_pool2d`.
//!
//! Limits, checked at load: 2-D only; `auto_pad` `NOTSET` or `VALID`; for `Conv`, equal
//! strides and dilations on both axes; for pools, no dilation, no `ceil_mode`, no `Indices`
//! output, and `AveragePool` padding only with `count_include_pad=1`. Asymmetric padding is
//! done by padding the input (zeros for `Conv` and `AveragePool`, `-inf` for `MaxPool`).

use candle_core::Tensor;

use super::{input, Kernel};
use crate::error::{KernelError, OnnxError};
use crate::node::NodeCtx;
use crate::value::Value;

/// Padding as `[top, left, bottom, right]`.
type Pads = [usize; 4];

/// The `pads` of a 2-D node (zeros when absent or `auto_pad` is `VALID`).
fn pads(ctx: &NodeCtx) -> Result<Pads, OnnxError> {
    match ctx.string("auto_pad")?.as_deref() {
        None | Some("NOTSET") => {}
        Some("VALID") => return Ok([0; 4]),
        Some(other) => return Err(ctx.err("attribute auto_pad", format!("{other} is not supported (NOTSET or VALID)"))),
    }
    match ctx.ints("pads") {
        None => Ok([0; 4]),
        Some(p) if p.len() == 4 && p.iter().all(|&x| x >= 0) => {
            Ok([p[0] as usize, p[1] as usize, p[2] as usize, p[3] as usize])
        }
        Some(p) => Err(ctx.err("attribute pads", format!("{p:?}: weir-onnx runs 2-D nodes with 4 non-negative pads"))),
    }
}

/// A 2-D attribute (`kernel_shape`, `strides`, `dilations`) as `(h, w)`, or `default`.
fn pair(ctx: &NodeCtx, name: &str, default: Option<(usize, usize)>) -> Result<(usize, usize), OnnxError> {
    match (ctx.ints(name), default) {
        (Some(v), _) if v.len() == 2 && v.iter().all(|&x| x > 0) => Ok((v[0] as usize, v[1] as usize)),
        (Some(v), _) => {
            Err(ctx.err(format!("attribute {name}"), format!("{v:?}: weir-onnx runs 2-D nodes (two positive values)")))
        }
        (None, Some(d)) => Ok(d),
        (None, None) => Err(ctx.err(format!("attribute {name}"), "missing")),
    }
}

/// `x` padded on H and W by `pads` with `value`.
fn pad(x: &Tensor, pads: Pads, value: f64) -> Result<Tensor, KernelError> {
    if pads == [0; 4] {
        return Ok(x.clone());
    }
    if value == 0.0 {
        return Ok(x.pad_with_zeros(2, pads[0], pads[2])?.pad_with_zeros(3, pads[1], pads[3])?);
    }
    let mut t = x.clone();
    for (dim, before, after) in [(2, pads[0], pads[2]), (3, pads[1], pads[3])] {
        let mut shape = t.dims().to_vec();
        let mut parts = Vec::with_capacity(3);
        if before > 0 {
            shape[dim] = before;
            parts.push(Tensor::full(value, shape.clone(), t.device())?.to_dtype(t.dtype())?);
        }
        parts.push(t.clone());
        if after > 0 {
            shape[dim] = after;
            parts.push(Tensor::full(value, shape.clone(), t.device())?.to_dtype(t.dtype())?);
        }
        t = Tensor::cat(&parts, dim)?;
    }
    Ok(t)
}

/// `Conv` (2-D) with its attributes.
#[derive(Debug)]
struct Conv {
    pads: Pads,
    stride: usize,
    dilation: usize,
    groups: usize,
}

/// Compiles `Conv`.
pub(crate) fn conv(ctx: &NodeCtx) -> Result<Box<dyn Kernel>, OnnxError> {
    ctx.inputs_between(2, 3)?;
    ctx.outputs_at_most(1)?;
    let (sh, sw) = pair(ctx, "strides", Some((1, 1)))?;
    let (dh, dw) = pair(ctx, "dilations", Some((1, 1)))?;
    if sh != sw || dh != dw {
        return Err(ctx.err("attribute strides", "different strides or dilations on H and W are not supported"));
    }
    if let Some(k) = ctx.ints("kernel_shape") {
        if k.len() != 2 {
            return Err(ctx.err("attribute kernel_shape", format!("{k:?}: weir-onnx runs 2-D convolutions")));
        }
    }
    let groups = ctx.int("group", 1);
    if groups < 1 {
        return Err(ctx.err("attribute group", format!("{groups}")));
    }
    Ok(Box::new(Conv { pads: pads(ctx)?, stride: sh, dilation: dh, groups: groups as usize }))
}

impl Kernel for Conv {
    fn run(&self, inputs: &[Option<&Value>]) -> Result<Vec<Value>, KernelError> {
        let x = input(inputs, 0)?.tensor(0)?;
        let w = input(inputs, 1)?.tensor(1)?;
        if x.rank() != 4 || w.rank() != 4 {
            return Err(KernelError::input(
                0,
                format!("Conv takes 4-D input and weights, got {:?} and {:?}", x.dims(), w.dims()),
            ));
        }
        let [t, l, b, r] = self.pads;
        let (x, p) = if t == b && l == r && t == l { (x.clone(), t) } else { (pad(x, self.pads, 0.0)?, 0) };
        let mut y = x.conv2d(w, p, self.stride, self.dilation, self.groups)?;
        if let Some(bias) = inputs.get(2).copied().flatten() {
            let bias = bias.tensor(2)?;
            y = y.broadcast_add(&bias.reshape((1, bias.elem_count(), 1, 1))?)?;
        }
        Ok(vec![Value::Tensor(y)])
    }
}

/// A pooling operator.
#[derive(Debug)]
enum Pool {
    Max { kernel: (usize, usize), stride: (usize, usize), pads: Pads },
    Average { kernel: (usize, usize), stride: (usize, usize), pads: Pads },
    GlobalAverage,
}

/// Compiles `MaxPool`, `AveragePool` or `GlobalAveragePool`.
pub(crate) fn pool(ctx: &NodeCtx) -> Result<Box<dyn Kernel>, OnnxError> {
    ctx.inputs_between(1, 1)?;
    ctx.outputs_at_most(1)?;
    let op = ctx.node.op_type();
    if op == "GlobalAveragePool" {
        return Ok(Box::new(Pool::GlobalAverage));
    }
    if ctx.int("ceil_mode", 0) != 0 {
        return Err(ctx.err("attribute ceil_mode", "ceil_mode=1 is not supported"));
    }
    if pair(ctx, "dilations", Some((1, 1)))? != (1, 1) {
        return Err(ctx.err("attribute dilations", "dilated pooling is not supported"));
    }
    let kernel = pair(ctx, "kernel_shape", None)?;
    let stride = pair(ctx, "strides", Some((1, 1)))?;
    let pads = pads(ctx)?;
    if op == "MaxPool" {
        return Ok(Box::new(Pool::Max { kernel, stride, pads }));
    }
    if pads != [0; 4] && ctx.int("count_include_pad", 0) == 0 {
        return Err(ctx.err("attribute count_include_pad", "padded AveragePool needs count_include_pad=1"));
    }
    Ok(Box::new(Pool::Average { kernel, stride, pads }))
}

impl Kernel for Pool {
    fn run(&self, inputs: &[Option<&Value>]) -> Result<Vec<Value>, KernelError> {
        let x = input(inputs, 0)?.tensor(0)?;
        if x.rank() != 4 {
            return Err(KernelError::input(0, format!("pooling takes a 4-D input, got {:?}", x.dims())));
        }
        let y = match self {
            Self::Max { kernel, stride, pads } => {
                pad(x, *pads, f64::NEG_INFINITY)?.max_pool2d_with_stride(*kernel, *stride)?
            }
            Self::Average { kernel, stride, pads } => pad(x, *pads, 0.0)?.avg_pool2d_with_stride(*kernel, *stride)?,
            Self::GlobalAverage => x.mean_keepdim(3)?.mean_keepdim(2)?,
        };
        Ok(vec![Value::Tensor(y)])
    }
}
