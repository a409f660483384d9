//! Operators that move, relabel or convert data without arithmetic: `Identity`, `Constant`,
//! `Cast`, `Reshape`, `Flatten`, `Squeeze`, `Unsqueeze`, `Transpose`, `Concat`, `Gather` and
//! `Shape`.
//!
//! Axes given as inputs (`Reshape`'s shape, `Squeeze`/`Unsqueeze` axes from opset 13) are read
//! per batch; they are constants in exported models, so the plan folds these nodes at load
//! whenever their data input is constant too.

use std::sync::Arc;

use candle_core::{DType, Device, Tensor};

use super::{axis, input, Kernel};
use crate::error::{KernelError, OnnxError};
use crate::node::NodeCtx;
use crate::tensor::ElemType;
use crate::value::{dtype_of, Value};

/// A layout operator with its attributes.
#[derive(Debug)]
enum Layout {
    /// Returns its input.
    Identity,
    /// Returns a value fixed at load.
    Constant(Value),
    /// Converts to an element type (booleans: nonzero is true).
    Cast(ElemType),
    /// Reshapes to the shape in input 1 (`0` copies a dimension unless `allowzero`, `-1` is
    /// inferred).
    Reshape { allowzero: bool },
    /// Flattens to 2D around `axis`.
    Flatten { axis: i64 },
    /// Removes size-1 axes: those listed (attribute, or input 1 when `None`), or all.
    Squeeze { axes: Option<Vec<i64>> },
    /// Inserts size-1 axes at the listed positions (attribute, or input 1 when `None`).
    Unsqueeze { axes: Option<Vec<i64>> },
    /// Permutes the axes (reversed when `None`).
    Transpose { perm: Option<Vec<usize>> },
    /// Concatenates along `axis`.
    Concat { axis: i64 },
    /// Takes the entries of input 1 along `axis`.
    Gather { axis: i64 },
    /// The input's shape, sliced to `[start, end)`.
    Shape { start: i64, end: Option<i64> },
}

/// Compiles one of the layout operators.
pub(crate) fn compile(ctx: &NodeCtx) -> Result<Box<dyn Kernel>, OnnxError> {
    ctx.outputs_at_most(1)?;
    let kernel = match ctx.node.op_type() {
        "Identity" => {
            ctx.inputs_between(1, 1)?;
            Layout::Identity
        }
        "Constant" => {
            ctx.inputs_between(0, 0)?;
            Layout::Constant(constant(ctx)?)
        }
        "Cast" => {
            ctx.inputs_between(1, 1)?;
            let code = ctx.int("to", 0) as i32;
            let elem = ElemType::from_onnx(code).ok_or_else(|| {
                ctx.err("attribute to", format!("casts to {}, which weir-onnx does not run", ElemType::onnx_name(code)))
            })?;
            if elem == ElemType::Str {
                return Err(ctx.err("attribute to", "casts to string, which weir-onnx does not run"));
            }
            Layout::Cast(elem)
        }
        "Reshape" => {
            ctx.inputs_between(2, 2)?;
            Layout::Reshape { allowzero: ctx.int("allowzero", 0) != 0 }
        }
        "Flatten" => {
            ctx.inputs_between(1, 1)?;
            Layout::Flatten { axis: ctx.int("axis", 1) }
        }
        "Squeeze" | "Unsqueeze" => {
            let axes = if ctx.opset >= 13 {
                ctx.inputs_between(1, 2)?;
                None
            } else {
                ctx.inputs_between(1, 1)?;
                Some(ctx.ints("axes").unwrap_or_default())
            };
            if ctx.node.op_type() == "Squeeze" {
                Layout::Squeeze { axes }
            } else {
                if ctx.opset >= 13 && !ctx.has_input(1) {
                    return Err(ctx.err("input 1", "Unsqueeze needs its axes"));
                }
                Layout::Unsqueeze { axes }
            }
        }
        "Transpose" => {
            ctx.inputs_between(1, 1)?;
            let perm = ctx
                .ints("perm")
                .map(|p| {
                    p.into_iter()
                        .map(|a| {
                            usize::try_from(a).map_err(|_| ctx.err("attribute perm", format!("negative axis {a}")))
                        })
                        .collect::<Result<Vec<usize>, OnnxError>>()
                })
                .transpose()?;
            Layout::Transpose { perm }
        }
        "Concat" => {
            ctx.inputs_between(1, usize::MAX)?;
            Layout::Concat {
                axis: ctx.attr("axis").and_then(|a| a.i).ok_or_else(|| ctx.err("attribute axis", "missing"))?,
            }
        }
        "Gather" => {
            ctx.inputs_between(2, 2)?;
            Layout::Gather { axis: ctx.int("axis", 0) }
        }
        _ => {
            ctx.inputs_between(1, 1)?;
            Layout::Shape { start: ctx.int("start", 0), end: ctx.attr("end").and_then(|a| a.i) }
        }
    };
    Ok(Box::new(kernel))
}

/// The value of a `Constant` node (`value`, `value_float(s)` or `value_int(s)`).
fn constant(ctx: &NodeCtx) -> Result<Value, OnnxError> {
    let cpu = &Device::Cpu;
    let wrap =
        |r: candle_core::Result<Tensor>| r.map(Value::Tensor).map_err(|e| ctx.err("attribute value", e.to_string()));
    if let Some(v) = ctx.tensor("value")? {
        return Ok(v);
    }
    if let Some(a) = ctx.attr("value_float") {
        return wrap(Tensor::new(a.f.unwrap_or(0.0), cpu));
    }
    if let Some(a) = ctx.attr("value_int") {
        return wrap(Tensor::new(a.i.unwrap_or(0), cpu));
    }
    if let Some(f) = ctx.floats("value_floats") {
        return wrap(Tensor::new(f.as_slice(), cpu));
    }
    if let Some(i) = ctx.ints("value_ints") {
        return wrap(Tensor::new(i.as_slice(), cpu));
    }
    Err(ctx.err("attribute value", "missing (or a kind of constant weir-onnx does not read)"))
}

/// The integers of input `index` (a shape or a list of axes).
fn ints(inputs: &[Option<&Value>], index: usize) -> Result<Vec<i64>, KernelError> {
    let t = input(inputs, index)?.tensor(index)?;
    Ok(t.flatten_all()?.to_dtype(DType::I64)?.to_vec1::<i64>()?)
}

impl Kernel for Layout {
    fn run(&self, inputs: &[Option<&Value>]) -> Result<Vec<Value>, KernelError> {
        let out = match self {
            Self::Identity => input(inputs, 0)?.clone(),
            Self::Constant(v) => v.clone(),
            Self::Cast(elem) => cast(input(inputs, 0)?, *elem)?,
            Self::Reshape { allowzero } => {
                let x = input(inputs, 0)?;
                let shape = reshape_target(x.shape(), &ints(inputs, 1)?, *allowzero)?;
                reshape(x, shape)?
            }
            Self::Flatten { axis: a } => {
                let x = input(inputs, 0)?;
                let dims = x.shape();
                let a = if *a == dims.len() as i64 { dims.len() } else { axis(*a, dims.len())? };
                let outer: usize = dims[..a].iter().product();
                let inner: usize = dims[a..].iter().product();
                reshape(x, vec![outer, inner])?
            }
            Self::Squeeze { axes } => {
                let x = input(inputs, 0)?;
                let dims = x.shape();
                let listed = match axes {
                    Some(a) => a.clone(),
                    None if inputs.get(1).copied().flatten().is_some() => ints(inputs, 1)?,
                    None => Vec::new(),
                };
                let drop = listed.iter().map(|&a| axis(a, dims.len())).collect::<Result<Vec<_>, _>>()?;
                let shape: Vec<usize> = dims
                    .iter()
                    .enumerate()
                    .filter(|&(i, &d)| if drop.is_empty() { d != 1 } else { !drop.contains(&i) })
                    .map(|(_, &d)| d)
                    .collect();
                reshape(x, shape)?
            }
            Self::Unsqueeze { axes } => {
                let x = input(inputs, 0)?;
                let listed = match axes {
                    Some(a) => a.clone(),
                    None => ints(inputs, 1)?,
                };
                let rank = x.shape().len() + listed.len();
                let mut at = listed.iter().map(|&a| axis(a, rank)).collect::<Result<Vec<_>, _>>()?;
                at.sort_unstable();
                let mut shape = x.shape().to_vec();
                for a in at {
                    shape.insert(a, 1);
                }
                reshape(x, shape)?
            }
            Self::Transpose { perm } => {
                let x = input(inputs, 0)?.tensor(0)?;
                let perm = perm.clone().unwrap_or_else(|| (0..x.rank()).rev().collect());
                Value::Tensor(x.permute(perm)?.contiguous()?)
            }
            Self::Concat { axis: a } => {
                let ts = (0..inputs.len())
                    .map(|i| input(inputs, i).and_then(|v| v.tensor(i)))
                    .collect::<Result<Vec<&Tensor>, _>>()?;
                let rank = ts.first().map(|t| t.rank()).unwrap_or(0);
                Value::Tensor(Tensor::cat(&ts, axis(*a, rank)?)?)
            }
            Self::Gather { axis: a } => gather(inputs, *a)?,
            Self::Shape { start, end } => {
                let x = input(inputs, 0)?;
                let dims = x.shape();
                let device = match x {
                    Value::Tensor(t) => t.device().clone(),
                    Value::Str { .. } => Device::Cpu,
                };
                let r = dims.len() as i64;
                let clamp = |v: i64| (if v < 0 { v + r } else { v }).clamp(0, r) as usize;
                let (s, e) = (clamp(*start), clamp(end.unwrap_or(r)));
                let out: Vec<i64> = dims[s..e.max(s)].iter().map(|&d| d as i64).collect();
                Value::Tensor(Tensor::new(out.as_slice(), &device)?)
            }
        };
        Ok(vec![out])
    }
}

/// `x` converted to `elem` (floats to integers truncate toward zero; to bool, nonzero is true).
fn cast(x: &Value, elem: ElemType) -> Result<Value, KernelError> {
    let t = x.tensor(0)?;
    let out = match (elem, dtype_of(elem)) {
        (ElemType::Bool, _) => t.ne(0.0)?,
        (_, Some(dtype)) => t.to_dtype(dtype)?,
        (_, None) => return Err(KernelError::input(0, "cast to string")),
    };
    Ok(Value::Tensor(out))
}

/// `x` with the dimensions `shape` (same number of elements).
fn reshape(x: &Value, shape: Vec<usize>) -> Result<Value, KernelError> {
    Ok(match x {
        Value::Tensor(t) => Value::Tensor(t.reshape(shape)?),
        Value::Str { data, .. } => {
            if shape.iter().product::<usize>() != data.len() {
                return Err(KernelError::input(0, format!("{} strings cannot take the shape {shape:?}", data.len())));
            }
            Value::Str { shape, data: Arc::clone(data) }
        }
    })
}

/// The dimensions a `Reshape` to `target` gives `dims`.
fn reshape_target(dims: &[usize], target: &[i64], allowzero: bool) -> Result<Vec<usize>, KernelError> {
    let total: usize = dims.iter().product();
    let mut shape = Vec::with_capacity(target.len());
    let mut infer = None;
    for (i, &d) in target.iter().enumerate() {
        match d {
            -1 if infer.is_none() => {
                infer = Some(i);
                shape.push(1);
            }
            0 if !allowzero => shape.push(
                *dims
                    .get(i)
                    .ok_or_else(|| KernelError::input(1, format!("0 at {i} copies a dimension the input lacks")))?,
            ),
            d if d >= 0 => shape.push(d as usize),
            d => return Err(KernelError::input(1, format!("dimension {d} in the target shape"))),
        }
    }
    if let Some(i) = infer {
        let known: usize = shape.iter().product();
        if known == 0 || !total.is_multiple_of(known) {
            return Err(KernelError::input(1, format!("cannot reshape {dims:?} to {target:?}")));
        }
        shape[i] = total / known;
    }
    Ok(shape)
}

/// `Gather` along `axis`: the output's shape is the data's with `axis` replaced by the
/// indices' shape; negative indices count from the end.
fn gather(inputs: &[Option<&Value>], a: i64) -> Result<Value, KernelError> {
    let data = input(inputs, 0)?.tensor(0)?;
    let dims = data.dims().to_vec();
    let a = axis(a, dims.len())?;
    let idx_t = input(inputs, 1)?.tensor(1)?;
    let idx_shape = idx_t.dims().to_vec();
    let n = dims[a] as i64;
    let idx = idx_t
        .flatten_all()?
        .to_dtype(DType::I64)?
        .to_vec1::<i64>()?
        .into_iter()
        .map(|i| {
            let j = if i < 0 { i + n } else { i };
            if (0..n).contains(&j) {
                Ok(j as u32)
            } else {
                Err(KernelError::input(1, format!("index {i} is out of range for a dimension of {n}")))
            }
        })
        .collect::<Result<Vec<u32>, _>>()?;
    let ids = Tensor::new(idx.as_slice(), data.device())?;
    let picked = data.index_select(&ids, a)?;
    let mut shape = dims[..a].to_vec();
    shape.extend_from_slice(&idx_shape);
    shape.extend_from_slice(&dims[a + 1..]);
    Ok(Value::Tensor(picked.reshape(shape)?))
}
