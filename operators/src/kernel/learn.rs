//! Online learners: linear classifiers whose weights are updated from labelled rows
//! while they serve, the arithmetic of `learn:` model nodes.
//!
//! - [`RunningScaler`]: per-feature running mean and variance (Welford's algorithm);
//!   standardizes with the statistics seen so far, as River's `StandardScaler` does.
//! - [`OnlineLinear`]: logistic regression (two classes, one sigmoid output: the
//!   probability of class 1) or softmax regression (`k` classes), trained by log loss
//!   with an optional L2 penalty, by [`Optimizer`] steps (SGD or Adam), one step per
//!   call of [`OnlineLinear::learn`] with the mean gradient of the rows given.
//!
//! Everything is deterministic: the same rows in the same order give the same weights,
//! bit for bit. Each step advances [`OnlineLinear::version`]; the weights export as a
//! [`DenseLayer`] that a model kernel serves.

use serde::{Deserialize, Serialize};

use super::model::DenseLayer;

/// How a step turns a gradient into a weight update.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Optimizer {
    /// Plain gradient descent: `w -= lr * g`.
    Sgd {
        /// Learning rate.
        lr: f32,
    },
    /// Adam (Kingma and Ba), with bias correction.
    Adam {
        /// Learning rate.
        lr: f32,
        /// Decay of the first moment.
        beta1: f32,
        /// Decay of the second moment.
        beta2: f32,
        /// Added to the root of the second moment.
        eps: f32,
    },
}

impl Optimizer {
    /// Adam with the usual constants and learning rate `lr`.
    pub fn adam(lr: f32) -> Optimizer {
        Optimizer::Adam { lr, beta1: 0.9, beta2: 0.999, eps: 1e-8 }
    }
}

/// Per-feature running mean and variance.
#[derive(Clone, Debug, PartialEq)]
pub struct RunningScaler {
    pub(crate) count: f64,
    pub(crate) mean: Vec<f64>,
    pub(crate) m2: Vec<f64>,
}

impl RunningScaler {
    /// A scaler for `width` features that has seen nothing.
    pub fn new(width: usize) -> RunningScaler {
        RunningScaler { count: 0.0, mean: vec![0.0; width], m2: vec![0.0; width] }
    }

    /// Takes one row into the statistics.
    pub fn update(&mut self, x: &[f32]) {
        self.count += 1.0;
        for ((m, m2), &x) in self.mean.iter_mut().zip(&mut self.m2).zip(x) {
            let x = f64::from(x);
            let delta = x - *m;
            *m += delta / self.count;
            *m2 += delta * (x - *m);
        }
    }

    /// The means and population standard deviations so far, as [`Scale`] applies them.
    pub fn scale(&self) -> Scale {
        let mut scale = Scale { mean: Vec::new(), std: Vec::new() };
        self.scale_into(&mut scale);
        scale
    }

    /// [`RunningScaler::scale`] into `scale`, reusing its buffers.
    pub fn scale_into(&self, scale: &mut Scale) {
        scale.mean.clone_from(&self.mean);
        scale.std.clear();
        scale.std.extend(self.m2.iter().map(|m2| if self.count > 0.0 { (m2 / self.count).sqrt() } else { 0.0 }));
    }

    /// `(x - mean) / std` with the statistics so far (population variance); a feature
    /// whose variance is still zero gives 0.
    pub fn transform(&self, x: &[f32], out: &mut [f32]) {
        if self.count <= 0.0 {
            out.iter_mut().for_each(|o| *o = 0.0);
            return;
        }
        // Without branches, so that the divisions run side by side (SIMD): a feature
        // of zero variance divides by zero, and its result is then replaced by 0.
        for (((o, &x), m), m2) in out.iter_mut().zip(x).zip(&self.mean).zip(&self.m2) {
            let var = m2 / self.count;
            let z = ((f64::from(x) - m) / var.sqrt()) as f32;
            *o = if var > 0.0 { z } else { 0.0 };
        }
    }
}

/// A linear classifier learned online.
#[derive(Clone, Debug, PartialEq)]
pub struct OnlineLinear {
    pub(crate) inputs: usize,
    /// 1 (logistic: the probability of class 1) or the number of classes (softmax).
    pub(crate) outputs: usize,
    /// Row-major `[outputs, inputs]`, as [`DenseLayer`].
    pub(crate) weight: Vec<f32>,
    pub(crate) bias: Vec<f32>,
    optimizer: Optimizer,
    l2: f32,
    /// Adam's moments, for the weights then the biases.
    pub(crate) first: Vec<f32>,
    pub(crate) second: Vec<f32>,
    pub(crate) version: u64,
    scratch: Scratch,
}

/// Working space of a step: not state (equal to any other, empty when cloned).
#[derive(Default)]
struct Scratch(Vec<f32>);

impl Clone for Scratch {
    fn clone(&self) -> Scratch {
        Scratch::default()
    }
}

impl PartialEq for Scratch {
    fn eq(&self, _: &Scratch) -> bool {
        true
    }
}

impl std::fmt::Debug for Scratch {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Scratch")
    }
}

impl OnlineLinear {
    /// Logistic regression over `inputs` features, all weights zero.
    pub fn logistic(inputs: usize, optimizer: Optimizer, l2: f32) -> OnlineLinear {
        OnlineLinear::with_outputs(inputs, 1, optimizer, l2)
    }

    /// Softmax regression over `inputs` features and `classes` classes (at least 2),
    /// all weights zero.
    pub fn softmax(inputs: usize, classes: usize, optimizer: Optimizer, l2: f32) -> OnlineLinear {
        OnlineLinear::with_outputs(inputs, classes.max(2), optimizer, l2)
    }

    fn with_outputs(inputs: usize, outputs: usize, optimizer: Optimizer, l2: f32) -> OnlineLinear {
        let params = outputs * (inputs + 1);
        let moments = if matches!(optimizer, Optimizer::Adam { .. }) { params } else { 0 };
        OnlineLinear {
            inputs,
            outputs,
            weight: vec![0.0; outputs * inputs],
            bias: vec![0.0; outputs],
            optimizer,
            l2,
            first: vec![0.0; moments],
            second: vec![0.0; moments],
            version: 0,
            scratch: Scratch::default(),
        }
    }

    /// Replaces the weights (`[outputs, inputs]` row-major) and biases, e.g. with a
    /// trained model's to fine-tune it. Fails if the shapes differ.
    pub fn set_params(&mut self, weight: Vec<f32>, bias: Vec<f32>) -> Result<(), String> {
        if weight.len() != self.weight.len() || bias.len() != self.bias.len() {
            return Err(format!(
                "expected {} weights and {} biases ([{}, {}]), got {} and {}",
                self.weight.len(),
                self.bias.len(),
                self.outputs,
                self.inputs,
                weight.len(),
                bias.len()
            ));
        }
        self.weight = weight;
        self.bias = bias;
        Ok(())
    }

    /// How many steps have been taken: 0 for the initial weights.
    pub fn version(&self) -> u64 {
        self.version
    }

    /// The number of classes (2 for logistic regression).
    pub fn classes(&self) -> usize {
        self.outputs.max(2)
    }

    /// Class probabilities of one row (`classes()` numbers).
    pub fn predict(&self, x: &[f32]) -> Vec<f32> {
        let z = self.scores(x);
        if self.outputs == 1 {
            let p = sigmoid(z[0]);
            vec![1.0 - p, p]
        } else {
            softmax(&z)
        }
    }

    /// One step with the mean log-loss gradient of `rows` (`labels.len()` rows of
    /// `inputs` features, flat). Labels outside `0..classes()` are skipped; returns how
    /// many rows counted. A step with no row counted changes nothing.
    pub fn learn(&mut self, rows: &[f32], labels: &[usize]) -> usize {
        let (n_in, n_out) = (self.inputs, self.outputs);
        // The gradient, then per row the scores turned into errors: one buffer kept
        // between steps (no allocation per step).
        let mut scratch = std::mem::take(&mut self.scratch.0);
        scratch.clear();
        scratch.resize(n_out * n_in + 2 * n_out, 0.0);
        let (grad, errors) = scratch.split_at_mut(n_out * (n_in + 1));
        let (grad_w, grad_b) = grad.split_at_mut(n_out * n_in);
        let mut counted = 0usize;
        for (x, &label) in rows.chunks_exact(n_in.max(1)).zip(labels) {
            if label >= self.classes() {
                continue;
            }
            counted += 1;
            // d(loss)/d(score) = p - y, per output.
            self.scores_into(x, errors);
            if n_out == 1 {
                errors[0] = sigmoid(errors[0]) - if label == 1 { 1.0 } else { 0.0 };
            } else {
                softmax_in_place(errors);
                errors[label] -= 1.0;
            }
            for (o, e) in errors.iter().enumerate() {
                for (g, xi) in grad_w[o * n_in..(o + 1) * n_in].iter_mut().zip(x) {
                    *g += e * xi;
                }
                grad_b[o] += e;
            }
        }
        if counted > 0 {
            self.step(grad_w, grad_b, counted);
        }
        self.scratch.0 = scratch;
        counted
    }

    /// Applies the summed gradient of `counted` rows (their mean, plus the L2 term).
    fn step(&mut self, grad_w: &mut [f32], grad_b: &mut [f32], counted: usize) {
        let scale = 1.0 / counted as f32;
        for (g, w) in grad_w.iter_mut().zip(&self.weight) {
            *g = *g * scale + self.l2 * w;
        }
        grad_b.iter_mut().for_each(|g| *g *= scale);
        self.version += 1;
        let t = self.version as i32;
        match self.optimizer {
            Optimizer::Sgd { lr } => {
                self.weight.iter_mut().zip(&*grad_w).for_each(|(w, g)| *w -= lr * g);
                self.bias.iter_mut().zip(&*grad_b).for_each(|(b, g)| *b -= lr * g);
            }
            Optimizer::Adam { lr, beta1, beta2, eps } => {
                let (c1, c2) = (1.0 - beta1.powi(t), 1.0 - beta2.powi(t));
                let params = self.weight.iter_mut().chain(self.bias.iter_mut());
                let grads = grad_w.iter().chain(&*grad_b);
                for (((p, g), m), v) in params.zip(grads).zip(&mut self.first).zip(&mut self.second) {
                    *m = beta1 * *m + (1.0 - beta1) * g;
                    *v = beta2 * *v + (1.0 - beta2) * g * g;
                    *p -= lr * (*m / c1) / ((*v / c2).sqrt() + eps);
                }
            }
        }
    }

    /// The weights as a dense layer (`[outputs, inputs]`), for a model kernel to serve
    /// with a sigmoid (logistic) or softmax output.
    pub fn to_layer(&self) -> DenseLayer {
        DenseLayer { weight: self.weight.clone(), bias: self.bias.clone(), inputs: self.inputs, outputs: self.outputs }
    }

    fn scores(&self, x: &[f32]) -> Vec<f32> {
        let mut z = vec![0.0; self.outputs];
        self.scores_into(x, &mut z);
        z
    }

    /// `bias + weight · x` per output, into `z` (`outputs` numbers).
    fn scores_into(&self, x: &[f32], z: &mut [f32]) {
        for (o, z) in z.iter_mut().enumerate() {
            let w = &self.weight[o * self.inputs..(o + 1) * self.inputs];
            *z = self.bias[o] + w.iter().zip(x).map(|(w, x)| w * x).sum::<f32>();
        }
    }
}

/// Per-feature means and standard deviations: `x` becomes `(x - mean) / std`, or 0
/// where `std` is 0. Computed in `f64`, as [`RunningScaler::transform`] does.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Scale {
    /// Per feature.
    pub mean: Vec<f64>,
    /// Per feature (population).
    pub std: Vec<f64>,
}

impl Scale {
    /// Standardizes one row into `out`.
    pub fn apply(&self, x: &[f32], out: &mut [f32]) {
        // Without branches (see `RunningScaler::transform`).
        for (((o, &x), m), s) in out.iter_mut().zip(x).zip(&self.mean).zip(&self.std) {
            let z = ((f64::from(x) - m) / s) as f32;
            *o = if *s > 0.0 { z } else { 0.0 };
        }
    }
}

/// What a learning model node serves: one version of a learner's parameters, as sent
/// from the learner to the model operators. Immutable; shared behind an `Arc`.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Weights {
    /// Learning steps behind these weights (0: the initial ones).
    pub version: u64,
    /// Input width.
    pub inputs: usize,
    /// 1 (logistic regression: the probability of class 1) or the number of classes.
    pub outputs: usize,
    /// Row-major `[outputs, inputs]`.
    pub weight: Vec<f32>,
    /// `[outputs]`.
    pub bias: Vec<f32>,
    /// The input standardisation learned with the weights, if the node standardizes.
    pub scale: Option<Scale>,
}

impl Weights {
    /// The outputs of `rows` rows of `inputs` features (flat): per row the probability
    /// of class 1 (logistic) or the probabilities of every class (softmax), flat.
    pub fn predict(&self, x: &[f32], rows: usize) -> Vec<f32> {
        let mut out = Vec::with_capacity(rows * self.outputs);
        let mut scratch = RowScratch::default();
        for row in x.chunks_exact(self.inputs.max(1)).take(rows) {
            self.predict_row(row, &mut scratch, &mut out);
        }
        out
    }

    /// The outputs of one row (`inputs` features), appended to `out`: what
    /// [`Weights::predict`] gives for it, with `scratch` reused between rows.
    pub fn predict_row(&self, x: &[f32], scratch: &mut RowScratch, out: &mut Vec<f32>) {
        let RowScratch { scaled, z } = scratch;
        scaled.resize(self.inputs, 0.0);
        z.resize(self.outputs, 0.0);
        let row = match &self.scale {
            Some(scale) => {
                scale.apply(x, scaled);
                &scaled[..]
            }
            None => x,
        };
        for (o, z) in z.iter_mut().enumerate() {
            let w = &self.weight[o * self.inputs..(o + 1) * self.inputs];
            *z = self.bias[o] + w.iter().zip(row).map(|(w, x)| w * x).sum::<f32>();
        }
        if self.outputs == 1 {
            out.push(sigmoid(z[0]));
        } else {
            softmax_in_place(z);
            out.extend_from_slice(z);
        }
    }
}

/// Buffers [`Weights::predict_row`] reuses from row to row.
#[derive(Clone, Debug, Default)]
pub struct RowScratch {
    scaled: Vec<f32>,
    z: Vec<f32>,
}

fn sigmoid(z: f32) -> f32 {
    1.0 / (1.0 + (-z).exp())
}

fn softmax(z: &[f32]) -> Vec<f32> {
    let mut p = z.to_vec();
    softmax_in_place(&mut p);
    p
}

/// Scores into probabilities, in place.
fn softmax_in_place(z: &mut [f32]) {
    let max = z.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    z.iter_mut().for_each(|z| *z = (*z - max).exp());
    let total: f32 = z.iter().sum();
    z.iter_mut().for_each(|e| *e /= total);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scaler_matches_the_two_pass_statistics() {
        let rows = [[1.0f32, 10.0], [3.0, 10.0], [5.0, 10.0]];
        let mut s = RunningScaler::new(2);
        rows.iter().for_each(|r| s.update(r));
        let mut out = [0.0; 2];
        s.transform(&[5.0, 10.0], &mut out);
        // mean 3, population std sqrt(8/3); the constant feature gives 0.
        assert!((out[0] - 2.0 / (8.0f32 / 3.0).sqrt()).abs() < 1e-6, "{out:?}");
        assert_eq!(out[1], 0.0);
    }

    #[test]
    fn sgd_step_matches_hand_computation() {
        // Zero weights: p = 0.5, label 1: error -0.5; w -= 0.1 * (-0.5 * x).
        let mut m = OnlineLinear::logistic(2, Optimizer::Sgd { lr: 0.1 }, 0.0);
        assert_eq!(m.learn(&[2.0, -4.0], &[1]), 1);
        assert_eq!(m.to_layer().weight, vec![0.1, -0.2]);
        assert_eq!(m.to_layer().bias, vec![0.05]);
        assert_eq!(m.version(), 1);
        assert_eq!(m.learn(&[1.0, 1.0], &[7]), 0, "an unknown label is skipped");
        assert_eq!(m.version(), 1);
    }

    #[test]
    fn softmax_regression_separates_three_blobs() {
        let mut m = OnlineLinear::softmax(2, 3, Optimizer::adam(0.05), 1e-4);
        let centre = [[0.0f32, 3.0], [3.0, -2.0], [-3.0, -2.0]];
        for step in 0..300 {
            let label = step % 3;
            let wobble = ((step * 7919) % 13) as f32 / 13.0 - 0.5;
            m.learn(&[centre[label][0] + wobble, centre[label][1] - wobble], &[label]);
        }
        for (label, c) in centre.iter().enumerate() {
            let p = m.predict(c);
            assert!(p[label] > 0.9, "class {label}: {p:?}");
        }
    }
}
