//! Linear models: `LinearClassifier` (scores `X W' + b`, a post transform, and the label of the
//! best score) and `LinearRegressor` (`X W' + b` per target).
//!
//! The products run on candle's `matmul`. The label follows onnxruntime: the class of the
//! first highest score; with a single score column and two labels, the second label when the
//! raw score is positive, and the scores output gets two columns (`[-s, s]` untransformed,
//! `[1 - p, p]` after `LOGISTIC`).

use std::sync::Arc;

use candle_core::{DType, Device, Tensor};

use super::rows_f32;
use super::transform::PostTransform;
use crate::error::{KernelError, OnnxError};
use crate::node::NodeCtx;
use crate::ops::{input, Kernel};
use crate::value::Value;

/// Class labels, integers or strings.
#[derive(Debug, Clone)]
pub(crate) enum Labels {
    /// `classlabels_ints` (or `classlabels_int64s`).
    Ints(Vec<i64>),
    /// `classlabels_strings`.
    Strings(Vec<String>),
}

impl Labels {
    /// The node's labels from `ints_name` or `classlabels_strings`.
    pub(crate) fn of(ctx: &NodeCtx, ints_name: &str) -> Result<Self, OnnxError> {
        match (
            ctx.ints(ints_name).filter(|v| !v.is_empty()),
            ctx.strings("classlabels_strings")?.filter(|v| !v.is_empty()),
        ) {
            (Some(i), None) => Ok(Self::Ints(i)),
            (None, Some(s)) => Ok(Self::Strings(s)),
            _ => Err(ctx.err(
                format!("attribute {ints_name}"),
                "a classifier needs exactly one of integer or string class labels",
            )),
        }
    }

    /// The number of labels.
    pub(crate) fn len(&self) -> usize {
        match self {
            Self::Ints(v) => v.len(),
            Self::Strings(v) => v.len(),
        }
    }

    /// The label value holding the labels at positions `picks`, shape `[N]`.
    pub(crate) fn pick(&self, picks: &[usize], device: &Device) -> Result<Value, KernelError> {
        Ok(match self {
            Self::Ints(v) => {
                let out: Vec<i64> = picks.iter().map(|&i| v[i]).collect();
                Value::Tensor(Tensor::from_vec(out, picks.len(), device)?)
            }
            Self::Strings(v) => Value::Str {
                shape: vec![picks.len()],
                data: Arc::from(picks.iter().map(|&i| v[i].clone()).collect::<Vec<_>>()),
            },
        })
    }
}

/// The position of the first highest value of `row`.
pub(crate) fn first_max(row: &[f32]) -> usize {
    let mut best = 0;
    for (i, &v) in row.iter().enumerate() {
        if v > row[best] {
            best = i;
        }
    }
    best
}

/// Weights `[targets, C]` (transposed once at load to `[C, targets]`) and intercepts.
#[derive(Debug)]
struct Affine {
    /// `W'`, `[C, targets]`, on the CPU.
    weights_t: Tensor,
    /// `[targets]`, or empty for none.
    intercepts: Vec<f32>,
    targets: usize,
    columns: usize,
}

impl Affine {
    /// Reads `coefficients` (`targets * C` values) and `intercepts` (empty or `targets`).
    fn of(ctx: &NodeCtx, targets: usize) -> Result<Self, OnnxError> {
        let coefficients = ctx.floats("coefficients").ok_or_else(|| ctx.err("attribute coefficients", "missing"))?;
        if targets == 0 || coefficients.is_empty() || !coefficients.len().is_multiple_of(targets) {
            return Err(ctx.err(
                "attribute coefficients",
                format!("{} values do not split into {targets} rows", coefficients.len()),
            ));
        }
        let columns = coefficients.len() / targets;
        let intercepts = ctx.floats("intercepts").unwrap_or_default();
        if !intercepts.is_empty() && intercepts.len() != targets {
            return Err(ctx.err("attribute intercepts", format!("{} values for {targets} rows", intercepts.len())));
        }
        let weights_t = Tensor::from_vec(coefficients, (targets, columns), &Device::Cpu)
            .and_then(|w| w.t()?.contiguous())
            .map_err(|e| ctx.err("attribute coefficients", e.to_string()))?;
        Ok(Self { weights_t, intercepts, targets, columns })
    }

    /// `X W' + b` as `[N, targets]` host scores.
    fn scores(&self, x: &Value) -> Result<(usize, Vec<f32>), KernelError> {
        let (n, c, data) = rows_f32(x, 0)?;
        if c != self.columns {
            return Err(KernelError::input(0, format!("{c} columns; the model's coefficients take {}", self.columns)));
        }
        let xs = Tensor::from_vec(data, (n, c), &Device::Cpu)?;
        let mut scores = xs.matmul(&self.weights_t)?.flatten_all()?.to_dtype(DType::F32)?.to_vec1::<f32>()?;
        if !self.intercepts.is_empty() {
            for row in scores.chunks_mut(self.targets) {
                row.iter_mut().zip(&self.intercepts).for_each(|(s, b)| *s += b);
            }
        }
        Ok((n, scores))
    }
}

/// `LinearClassifier`.
#[derive(Debug)]
struct LinearClassifier {
    affine: Affine,
    labels: Labels,
    transform: PostTransform,
}

/// Compiles `LinearClassifier`.
pub(crate) fn classifier(ctx: &NodeCtx) -> Result<Box<dyn Kernel>, OnnxError> {
    ctx.inputs_between(1, 1)?;
    ctx.outputs_at_most(2)?;
    let labels = Labels::of(ctx, "classlabels_ints")?;
    let intercepts = ctx.floats("intercepts").map(|v| v.len()).unwrap_or(0);
    let targets = if intercepts > 0 { intercepts } else { labels.len() };
    let affine = Affine::of(ctx, targets)?;
    if targets != labels.len() && !(targets == 1 && labels.len() == 2) {
        return Err(
            ctx.err("attribute coefficients", format!("{targets} score rows for {} class labels", labels.len()))
        );
    }
    Ok(Box::new(LinearClassifier { affine, labels, transform: PostTransform::of(ctx)? }))
}

impl Kernel for LinearClassifier {
    fn run(&self, inputs: &[Option<&Value>]) -> Result<Vec<Value>, KernelError> {
        let x = input(inputs, 0)?;
        let (n, scores) = self.affine.scores(x)?;
        let device = x.tensor(0)?.device().clone();
        let k = self.affine.targets;
        let (picks, out): (Vec<usize>, Vec<f32>) = if k == 1 {
            let picks = scores.iter().map(|&s| usize::from(s > 0.0)).collect();
            let out = scores
                .iter()
                .flat_map(|&s| match self.transform {
                    PostTransform::Logistic => {
                        let p = super::transform::logistic(s);
                        [1.0 - p, p]
                    }
                    _ => [-s, s],
                })
                .collect();
            (picks, out)
        } else {
            let picks = scores.chunks(k).map(first_max).collect();
            let mut out = scores;
            out.chunks_mut(k).for_each(|row| self.transform.apply(row));
            (picks, out)
        };
        let width = out.len() / n.max(1);
        Ok(vec![self.labels.pick(&picks, &device)?, Value::Tensor(Tensor::from_vec(out, (n, width), &device)?)])
    }
}

/// `LinearRegressor`.
#[derive(Debug)]
struct LinearRegressor {
    affine: Affine,
    transform: PostTransform,
}

/// Compiles `LinearRegressor` (`targets` default 1).
pub(crate) fn regressor(ctx: &NodeCtx) -> Result<Box<dyn Kernel>, OnnxError> {
    ctx.inputs_between(1, 1)?;
    ctx.outputs_at_most(1)?;
    let targets = ctx.int("targets", 1);
    if targets < 1 {
        return Err(ctx.err("attribute targets", format!("{targets}")));
    }
    Ok(Box::new(LinearRegressor { affine: Affine::of(ctx, targets as usize)?, transform: PostTransform::of(ctx)? }))
}

impl Kernel for LinearRegressor {
    fn run(&self, inputs: &[Option<&Value>]) -> Result<Vec<Value>, KernelError> {
        let x = input(inputs, 0)?;
        let (n, mut scores) = self.affine.scores(x)?;
        let k = self.affine.targets;
        scores.chunks_mut(k).for_each(|row| self.transform.apply(row));
        let device = x.tensor(0)?.device().clone();
        Ok(vec![Value::Tensor(Tensor::from_vec(scores, (n, k), &device)?)])
    }
}
