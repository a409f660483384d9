//! The ONNX-ML operators (domain `ai.onnx.ml`) that scikit-learn's exporter emits, computed on
//! the host row by row over `[N, C]` batches, as onnxruntime computes them:
//! - [`preprocess`]: Scaler, Normalizer, Binarizer, Imputer;
//! - [`features`]: ArrayFeatureExtractor, OneHotEncoder;
//! - [`linear`]: LinearClassifier, LinearRegressor (with [`transform`]'s post transforms);
//! - [`trees`]: TreeEnsembleClassifier, TreeEnsembleRegressor, on `weir-trees`.
//!
//! `ZipMap` is refused at load ([`crate::OnnxError::ZipMap`]).

pub(crate) mod features;
pub(crate) mod linear;
pub(crate) mod preprocess;
pub(crate) mod transform;
pub(crate) mod trees;

use candle_core::{DType, Device, Tensor};

use crate::error::{KernelError, OnnxError};
use crate::node::NodeCtx;
use crate::ops::Kernel;
use crate::value::Value;

/// The kernel of an ONNX-ML node, or `None` when the operator is not one weir-onnx runs.
pub(crate) fn compile(ctx: &NodeCtx) -> Option<Result<Box<dyn Kernel>, OnnxError>> {
    Some(match ctx.node.op_type() {
        "Scaler" => preprocess::scaler(ctx),
        "Normalizer" => preprocess::normalizer(ctx),
        "Binarizer" => preprocess::binarizer(ctx),
        "Imputer" => preprocess::imputer(ctx),
        "ArrayFeatureExtractor" => features::array_feature_extractor(ctx),
        "OneHotEncoder" => features::one_hot_encoder(ctx),
        "LinearClassifier" => linear::classifier(ctx),
        "LinearRegressor" => linear::regressor(ctx),
        "TreeEnsembleClassifier" => trees::classifier(ctx),
        "TreeEnsembleRegressor" => trees::regressor(ctx),
        _ => return None,
    })
}

/// A numeric input as `f32` rows: `(rows, columns, data)`. A 1-D input is one row.
pub(crate) fn rows_f32(v: &Value, index: usize) -> Result<(usize, usize, Vec<f32>), KernelError> {
    let t = v.tensor(index)?;
    let (n, c) = match *t.dims() {
        [c] => (1, c),
        [n, c] => (n, c),
        ref d => return Err(KernelError::input(index, format!("a [N, C] tensor, got shape {d:?}"))),
    };
    let data = t.flatten_all()?.to_dtype(DType::F32)?.to_vec1::<f32>()?;
    Ok((n, c, data))
}

/// `data` as an `f32` tensor of `shape` on `like`'s device (the CPU for strings).
pub(crate) fn f32_tensor(data: Vec<f32>, shape: &[usize], like: &Value) -> Result<Value, KernelError> {
    let device = match like {
        Value::Tensor(t) => t.device().clone(),
        Value::Str { .. } => Device::Cpu,
    };
    Ok(Value::Tensor(Tensor::from_vec(data, shape, &device)?))
}

/// Reads per-column parameters (one value for all columns, or one per column) for `columns`.
pub(crate) fn per_column(values: &[f32], columns: usize, index: usize, name: &str) -> Result<(), KernelError> {
    if values.len() == 1 || values.len() == columns {
        Ok(())
    } else {
        Err(KernelError::input(index, format!("{columns} columns, but {name} has {} values", values.len())))
    }
}
