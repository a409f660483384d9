//! Column selection and encoding: `ArrayFeatureExtractor` (columns of the last axis picked by
//! index) and `OneHotEncoder` (a category per value, one column per known category).

use std::sync::Arc;

use candle_core::{DType, Tensor};

use crate::error::{KernelError, OnnxError};
use crate::node::NodeCtx;
use crate::ops::{input, Kernel};
use crate::value::Value;

/// `ArrayFeatureExtractor`: `X[..., Y]` along the last axis. The output's shape is `X`'s with
/// the last dimension replaced by `Y`'s length; a 1-D `X` gives `[1, len(Y)]`.
#[derive(Debug)]
struct ArrayFeatureExtractor;

/// Compiles `ArrayFeatureExtractor`.
pub(crate) fn array_feature_extractor(ctx: &NodeCtx) -> Result<Box<dyn Kernel>, OnnxError> {
    ctx.inputs_between(2, 2)?;
    ctx.outputs_at_most(1)?;
    Ok(Box::new(ArrayFeatureExtractor))
}

impl Kernel for ArrayFeatureExtractor {
    fn run(&self, inputs: &[Option<&Value>]) -> Result<Vec<Value>, KernelError> {
        let x = input(inputs, 0)?;
        let idx_t = input(inputs, 1)?.tensor(1)?;
        let idx = idx_t.flatten_all()?.to_dtype(DType::I64)?.to_vec1::<i64>()?;
        let dims = x.shape().to_vec();
        let last = *dims.last().ok_or_else(|| KernelError::input(0, "a scalar has no columns"))?;
        let cols = idx
            .iter()
            .map(|&i| {
                usize::try_from(i)
                    .ok()
                    .filter(|&i| i < last)
                    .ok_or_else(|| KernelError::input(1, format!("index {i} is out of range for {last} columns")))
            })
            .collect::<Result<Vec<usize>, _>>()?;
        let mut shape = if dims.len() == 1 { vec![1] } else { dims[..dims.len() - 1].to_vec() };
        shape.push(cols.len());
        let out = match x {
            Value::Tensor(t) => {
                let ids: Vec<u32> = cols.iter().map(|&c| c as u32).collect();
                let ids = Tensor::new(ids.as_slice(), t.device())?;
                Value::Tensor(t.index_select(&ids, t.rank() - 1)?.reshape(shape)?)
            }
            Value::Str { data, .. } => {
                let picked: Vec<String> =
                    data.chunks(last).flat_map(|row| cols.iter().map(|&c| row[c].clone())).collect();
                Value::Str { shape, data: Arc::from(picked) }
            }
        };
        Ok(vec![out])
    }
}

/// The categories of a `OneHotEncoder`.
#[derive(Debug)]
enum Categories {
    Ints(Vec<i64>),
    Strings(Vec<String>),
}

/// `OneHotEncoder`: output shape is the input's plus one axis of the categories' length; a
/// value not among the categories gives zeros (`zeros=1`) or an error (`zeros=0`).
#[derive(Debug)]
struct OneHotEncoder {
    categories: Categories,
    zeros: bool,
}

/// Compiles `OneHotEncoder` (`cats_int64s` or `cats_strings`).
pub(crate) fn one_hot_encoder(ctx: &NodeCtx) -> Result<Box<dyn Kernel>, OnnxError> {
    ctx.inputs_between(1, 1)?;
    ctx.outputs_at_most(1)?;
    let categories = match (
        ctx.ints("cats_int64s").filter(|v| !v.is_empty()),
        ctx.strings("cats_strings")?.filter(|v| !v.is_empty()),
    ) {
        (Some(i), None) => Categories::Ints(i),
        (None, Some(s)) => Categories::Strings(s),
        _ => return Err(ctx.err("attribute cats_int64s", "exactly one of cats_int64s or cats_strings is needed")),
    };
    Ok(Box::new(OneHotEncoder { categories, zeros: ctx.int("zeros", 1) != 0 }))
}

impl Kernel for OneHotEncoder {
    fn run(&self, inputs: &[Option<&Value>]) -> Result<Vec<Value>, KernelError> {
        let x = input(inputs, 0)?;
        let positions: Vec<Option<usize>> = match (&self.categories, x) {
            (Categories::Ints(cats), Value::Tensor(t)) => t
                .flatten_all()?
                .to_dtype(DType::I64)?
                .to_vec1::<i64>()?
                .iter()
                .map(|v| cats.iter().position(|c| c == v))
                .collect(),
            (Categories::Strings(cats), Value::Str { data, .. }) => {
                data.iter().map(|v| cats.iter().position(|c| c == v)).collect()
            }
            _ => {
                return Err(KernelError::input(
                    0,
                    "the input's type does not match the categories (integers or strings)",
                ))
            }
        };
        let k = match &self.categories {
            Categories::Ints(c) => c.len(),
            Categories::Strings(c) => c.len(),
        };
        let mut out = vec![0f32; positions.len() * k];
        for (i, p) in positions.iter().enumerate() {
            match p {
                Some(j) => out[i * k + j] = 1.0,
                None if self.zeros => {}
                None => return Err(KernelError::input(0, format!("value {i} is not one of the categories (zeros=0)"))),
            }
        }
        let mut shape = x.shape().to_vec();
        shape.push(k);
        let device = match x {
            Value::Tensor(t) => t.device().clone(),
            Value::Str { .. } => candle_core::Device::Cpu,
        };
        Ok(vec![Value::Tensor(Tensor::from_vec(out, shape, &device)?)])
    }
}
