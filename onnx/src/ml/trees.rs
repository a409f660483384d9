//! `TreeEnsembleClassifier` and `TreeEnsembleRegressor`, run by the `weir-trees` kernel.
//!
//! The node attributes (`nodes_*`, `class_*` / `target_*`, `base_values`, with their
//! `*_as_tensor` double forms of ONNX-ML opset 3) become a [`weir_trees::NodeArrays`] and an
//! [`weir_trees::Ensemble`] at load; a batch is one `predict` call over all rows. The
//! ensemble reads `max(feature id) + 1` columns; wider inputs are cut to that.
//!
//! Classifier outputs follow onnxruntime: `label` (`[N]`, the class of the first highest
//! score) and `probabilities` (`[N, classes]`, after `post_transform`). The binary case (two
//! labels, leaves weighting one class) has one score `s` per row: the label is the second
//! class when `s > 0.5` (all weights positive) or `s > 0`, and the two scores are
//! `[1 - p, p]` with `p` the transformed score (`[-s, s]` untransformed with negative
//! weights).

use candle_core::{Device, Tensor};
use weir_trees::{Aggregate, Ensemble, Mode, NodeArrays, Transform};

use super::linear::{first_max, Labels};
use super::rows_f32;
use crate::error::{KernelError, OnnxError};
use crate::node::NodeCtx;
use crate::ops::{input, Kernel};
use crate::value::Value;

/// The `nodes_*` attributes and `post_transform`, with target arrays read from `prefix`
/// (`class` or `target`).
fn node_arrays(ctx: &NodeCtx, prefix: &str) -> Result<NodeArrays, OnnxError> {
    let ints = |name: &str| ctx.ints(name).ok_or_else(|| ctx.err(format!("attribute {name}"), "missing"));
    let reals = |name: &str| ctx.reals(name)?.ok_or_else(|| ctx.err(format!("attribute {name}"), "missing"));
    let modes = ctx
        .strings("nodes_modes")?
        .ok_or_else(|| ctx.err("attribute nodes_modes", "missing"))?
        .iter()
        .map(|m| Mode::from_onnx(m).ok_or_else(|| ctx.err("attribute nodes_modes", format!("unknown mode {m:?}"))))
        .collect::<Result<Vec<Mode>, OnnxError>>()?;
    let transform = match ctx.string("post_transform")?.as_deref() {
        None | Some("NONE") => Transform::None,
        Some("LOGISTIC") => Transform::Logistic,
        Some("SOFTMAX") => Transform::Softmax,
        Some("SOFTMAX_ZERO") => Transform::SoftmaxZero,
        Some("PROBIT") => Transform::Probit,
        Some(other) => return Err(ctx.err("attribute post_transform", format!("unknown transform {other:?}"))),
    };
    Ok(NodeArrays {
        tree_ids: ints("nodes_treeids")?,
        node_ids: ints("nodes_nodeids")?,
        feature_ids: ints("nodes_featureids")?,
        modes,
        values: reals("nodes_values")?,
        true_ids: ints("nodes_truenodeids")?,
        false_ids: ints("nodes_falsenodeids")?,
        missing_tracks_true: ctx
            .ints("nodes_missing_value_tracks_true")
            .unwrap_or_default()
            .into_iter()
            .map(|b| b != 0)
            .collect(),
        target_tree_ids: ints(&format!("{prefix}_treeids"))?,
        target_node_ids: ints(&format!("{prefix}_nodeids"))?,
        target_ids: ints(&format!("{prefix}_ids"))?,
        target_weights: reals(&format!("{prefix}_weights"))?,
        n_targets: 0,
        base_values: ctx.reals("base_values")?.unwrap_or_default(),
        aggregate: Aggregate::Sum,
        transform,
    })
}

/// The ensemble of `arrays`, reading `max(feature id) + 1` features.
fn ensemble(ctx: &NodeCtx, arrays: &NodeArrays) -> Result<Ensemble, OnnxError> {
    let n_features = arrays.feature_ids.iter().copied().max().unwrap_or(0).max(0) as usize + 1;
    Ensemble::from_node_arrays(arrays, n_features).map_err(|e| ctx.err("tree attributes", e.to_string()))
}

/// The input as rows of exactly `ensemble.n_features()` columns: `(rows, data)`.
fn features(x: &Value, ensemble: &Ensemble) -> Result<(usize, Vec<f32>), KernelError> {
    let (n, c, data) = rows_f32(x, 0)?;
    let f = ensemble.n_features();
    if c < f {
        return Err(KernelError::input(0, format!("{c} columns; the trees read feature {}", f - 1)));
    }
    if c == f {
        return Ok((n, data));
    }
    Ok((n, data.chunks(c).flat_map(|row| row[..f].iter().copied()).collect()))
}

/// The device of a tensor value (the CPU for strings).
fn device_of(x: &Value) -> Device {
    match x {
        Value::Tensor(t) => t.device().clone(),
        Value::Str { .. } => Device::Cpu,
    }
}

/// `TreeEnsembleClassifier`.
#[derive(Debug)]
struct TreeClassifier {
    ensemble: Ensemble,
    labels: Labels,
    /// `Some(all weights positive)` in the binary case (one score per row).
    binary: Option<bool>,
    transform: Transform,
}

/// Compiles `TreeEnsembleClassifier`.
pub(crate) fn classifier(ctx: &NodeCtx) -> Result<Box<dyn Kernel>, OnnxError> {
    ctx.inputs_between(1, 1)?;
    ctx.outputs_at_most(2)?;
    let labels = Labels::of(ctx, "classlabels_int64s")?;
    let mut arrays = node_arrays(ctx, "class")?;
    let transform = arrays.transform;
    let first = arrays.target_ids.first().copied();
    let one_class = arrays.target_ids.iter().all(|&c| Some(c) == first);
    let binary = if labels.len() == 2 && one_class {
        let positive = arrays.target_weights.iter().all(|&w| w >= 0.0);
        arrays.target_ids.iter_mut().for_each(|c| *c = 0);
        arrays.n_targets = 1;
        arrays.base_values.truncate(1);
        arrays.transform = Transform::None;
        Some(positive)
    } else {
        arrays.n_targets = labels.len();
        None
    };
    if let Some(&c) = arrays.target_ids.iter().find(|&&c| c < 0 || c as usize >= arrays.n_targets) {
        return Err(ctx.err("attribute class_ids", format!("class {c} for {} class labels", labels.len())));
    }
    Ok(Box::new(TreeClassifier { ensemble: ensemble(ctx, &arrays)?, labels, binary, transform }))
}

impl Kernel for TreeClassifier {
    fn run(&self, inputs: &[Option<&Value>]) -> Result<Vec<Value>, KernelError> {
        let x = input(inputs, 0)?;
        let (n, rows) = features(x, &self.ensemble)?;
        let mut scores = Vec::new();
        let tree_err = |e: weir_trees::TreeError| KernelError::input(0, e.to_string());
        let device = device_of(x);
        let (picks, out) = match self.binary {
            Some(positive) => {
                self.ensemble.predict_raw(&rows, n, &mut scores).map_err(tree_err)?;
                let threshold = if positive { 0.5 } else { 0.0 };
                let picks = scores.iter().map(|&s| usize::from(s > threshold)).collect();
                let out = scores
                    .iter()
                    .flat_map(|&s| match self.transform {
                        Transform::Logistic => {
                            let p = super::transform::logistic(s);
                            [1.0 - p, p]
                        }
                        _ if positive => [1.0 - s, s],
                        _ => [-s, s],
                    })
                    .collect::<Vec<f32>>();
                (picks, out)
            }
            None => {
                self.ensemble.predict(&rows, n, &mut scores).map_err(tree_err)?;
                let k = self.labels.len();
                (scores.chunks(k).map(first_max).collect::<Vec<usize>>(), scores)
            }
        };
        let width = out.len() / n.max(1);
        Ok(vec![self.labels.pick(&picks, &device)?, Value::Tensor(Tensor::from_vec(out, (n, width), &device)?)])
    }
}

/// `TreeEnsembleRegressor`.
#[derive(Debug)]
struct TreeRegressor {
    ensemble: Ensemble,
}

/// Compiles `TreeEnsembleRegressor` (`aggregate_function` SUM, AVERAGE, MIN or MAX).
pub(crate) fn regressor(ctx: &NodeCtx) -> Result<Box<dyn Kernel>, OnnxError> {
    ctx.inputs_between(1, 1)?;
    ctx.outputs_at_most(1)?;
    let mut arrays = node_arrays(ctx, "target")?;
    let n_targets = ctx.int("n_targets", 1);
    if n_targets < 1 {
        return Err(ctx.err("attribute n_targets", format!("{n_targets}")));
    }
    arrays.n_targets = n_targets as usize;
    arrays.aggregate = match ctx.string("aggregate_function")?.as_deref() {
        None | Some("SUM") => Aggregate::Sum,
        Some("AVERAGE") => Aggregate::Average,
        Some("MIN") => Aggregate::Min,
        Some("MAX") => Aggregate::Max,
        Some(other) => return Err(ctx.err("attribute aggregate_function", format!("unknown function {other:?}"))),
    };
    Ok(Box::new(TreeRegressor { ensemble: ensemble(ctx, &arrays)? }))
}

impl Kernel for TreeRegressor {
    fn run(&self, inputs: &[Option<&Value>]) -> Result<Vec<Value>, KernelError> {
        let x = input(inputs, 0)?;
        let (n, rows) = features(x, &self.ensemble)?;
        let mut out = Vec::new();
        self.ensemble.predict(&rows, n, &mut out).map_err(|e| KernelError::input(0, e.to_string()))?;
        let k = self.ensemble.n_outputs();
        Ok(vec![Value::Tensor(Tensor::from_vec(out, (n, k), &device_of(x))?)])
    }
}
