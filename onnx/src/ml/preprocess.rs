//! Per-value preprocessing: `Scaler` (`(x - offset) * scale`), `Normalizer` (rows divided by
//! their max, L1 or L2 norm), `Binarizer` (`x > threshold`), `Imputer` (a marker value
//! replaced per column). All take `[N, C]` (or `[C]`) numbers and return floats.

use super::{f32_tensor, per_column, rows_f32};
use crate::error::{KernelError, OnnxError};
use crate::node::NodeCtx;
use crate::ops::{input, Kernel};
use crate::value::Value;

/// `Scaler`: `(x - offset[j]) * scale[j]` (one value may stand for all columns).
#[derive(Debug)]
struct Scaler {
    offset: Vec<f32>,
    scale: Vec<f32>,
}

/// Compiles `Scaler` (`offset` default 0, `scale` default 1).
pub(crate) fn scaler(ctx: &NodeCtx) -> Result<Box<dyn Kernel>, OnnxError> {
    ctx.inputs_between(1, 1)?;
    ctx.outputs_at_most(1)?;
    let offset = ctx.floats("offset").filter(|v| !v.is_empty()).unwrap_or_else(|| vec![0.0]);
    let scale = ctx.floats("scale").filter(|v| !v.is_empty()).unwrap_or_else(|| vec![1.0]);
    if offset.len() != 1 && scale.len() != 1 && offset.len() != scale.len() {
        return Err(ctx.err("attribute scale", format!("{} values, but offset has {}", scale.len(), offset.len())));
    }
    Ok(Box::new(Scaler { offset, scale }))
}

/// The value for column `j` of a per-column list (one value stands for all).
fn at(values: &[f32], j: usize) -> f32 {
    if values.len() == 1 {
        values[0]
    } else {
        values[j]
    }
}

impl Kernel for Scaler {
    fn run(&self, inputs: &[Option<&Value>]) -> Result<Vec<Value>, KernelError> {
        let x = input(inputs, 0)?;
        let (_, c, mut data) = rows_f32(x, 0)?;
        per_column(&self.offset, c, 0, "offset")?;
        per_column(&self.scale, c, 0, "scale")?;
        for (i, v) in data.iter_mut().enumerate() {
            let j = i % c.max(1);
            *v = (*v - at(&self.offset, j)) * at(&self.scale, j);
        }
        Ok(vec![f32_tensor(data, x.shape(), x)?])
    }
}

/// The norm a `Normalizer` divides each row by.
#[derive(Debug, Clone, Copy)]
enum Norm {
    Max,
    L1,
    L2,
}

/// `Normalizer`: each row divided by its norm (left as is when the norm is 0).
#[derive(Debug)]
struct Normalizer(Norm);

/// Compiles `Normalizer` (`norm` is `MAX`, `L1` or `L2`).
pub(crate) fn normalizer(ctx: &NodeCtx) -> Result<Box<dyn Kernel>, OnnxError> {
    ctx.inputs_between(1, 1)?;
    ctx.outputs_at_most(1)?;
    let norm = match ctx.string("norm")?.as_deref() {
        Some("MAX") => Norm::Max,
        Some("L1") => Norm::L1,
        Some("L2") => Norm::L2,
        other => return Err(ctx.err("attribute norm", format!("{other:?}: expected MAX, L1 or L2"))),
    };
    Ok(Box::new(Normalizer(norm)))
}

impl Kernel for Normalizer {
    fn run(&self, inputs: &[Option<&Value>]) -> Result<Vec<Value>, KernelError> {
        let x = input(inputs, 0)?;
        let (_, c, mut data) = rows_f32(x, 0)?;
        for row in data.chunks_mut(c.max(1)) {
            let norm = match self.0 {
                Norm::Max => row.iter().copied().fold(f32::NEG_INFINITY, f32::max),
                Norm::L1 => row.iter().map(|v| v.abs()).sum(),
                Norm::L2 => row.iter().map(|v| v * v).sum::<f32>().sqrt(),
            };
            if norm != 0.0 {
                row.iter_mut().for_each(|v| *v /= norm);
            }
        }
        Ok(vec![f32_tensor(data, x.shape(), x)?])
    }
}

/// `Binarizer`: 1 where `x > threshold`, else 0.
#[derive(Debug)]
struct Binarizer {
    threshold: f32,
}

/// Compiles `Binarizer` (`threshold` default 0).
pub(crate) fn binarizer(ctx: &NodeCtx) -> Result<Box<dyn Kernel>, OnnxError> {
    ctx.inputs_between(1, 1)?;
    ctx.outputs_at_most(1)?;
    Ok(Box::new(Binarizer { threshold: ctx.float("threshold", 0.0) }))
}

impl Kernel for Binarizer {
    fn run(&self, inputs: &[Option<&Value>]) -> Result<Vec<Value>, KernelError> {
        let x = input(inputs, 0)?;
        let (_, _, mut data) = rows_f32(x, 0)?;
        data.iter_mut().for_each(|v| *v = if *v > self.threshold { 1.0 } else { 0.0 });
        Ok(vec![f32_tensor(data, x.shape(), x)?])
    }
}

/// `Imputer`: values equal to `replaced` (or NaN when `replaced` is NaN) become `imputed[j]`.
#[derive(Debug)]
struct Imputer {
    imputed: Vec<f32>,
    replaced: f32,
}

/// Compiles `Imputer` (float form: `imputed_value_floats`, `replaced_value_float`).
pub(crate) fn imputer(ctx: &NodeCtx) -> Result<Box<dyn Kernel>, OnnxError> {
    ctx.inputs_between(1, 1)?;
    ctx.outputs_at_most(1)?;
    let imputed = ctx
        .floats("imputed_value_floats")
        .filter(|v| !v.is_empty())
        .ok_or_else(|| ctx.err("attribute imputed_value_floats", "missing (the integer form is not supported)"))?;
    Ok(Box::new(Imputer { imputed, replaced: ctx.float("replaced_value_float", 0.0) }))
}

impl Kernel for Imputer {
    fn run(&self, inputs: &[Option<&Value>]) -> Result<Vec<Value>, KernelError> {
        let x = input(inputs, 0)?;
        let (_, c, mut data) = rows_f32(x, 0)?;
        per_column(&self.imputed, c, 0, "imputed_value_floats")?;
        let nan = self.replaced.is_nan();
        for (i, v) in data.iter_mut().enumerate() {
            if (nan && v.is_nan()) || *v == self.replaced {
                *v = at(&self.imputed, i % c.max(1));
            }
        }
        Ok(vec![f32_tensor(data, x.shape(), x)?])
    }
}
