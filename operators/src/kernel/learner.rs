//! A learning model node's learner: labelled rows in, versioned [`Weights`] out.
//!
//! Each labelled row first updates the running standardisation (when the node
//! standardizes) and is standardized with it, then waits in a pending minibatch; every
//! `update_every` rows the minibatch becomes one optimizer step (its mean gradient),
//! which advances the version by one. [`Learner::flush`] takes a step with whatever is
//! pending (the `update_every_ms` policy). The same rows in the same order give the same
//! weights, bit for bit.

use super::learn::{OnlineLinear, Optimizer, RunningScaler, Weights};

/// How a node learns (the `learn:` section of a model node).
#[derive(Clone, Debug, PartialEq)]
pub struct LearnerConfig {
    /// 2: logistic regression; more: softmax regression over that many classes.
    pub classes: usize,
    /// The optimizer and its learning rate.
    pub optimizer: Optimizer,
    /// L2 penalty on the weights (not the biases).
    pub l2: f32,
    /// Standardize inputs with running statistics learned from the labelled rows.
    pub standardize: bool,
    /// Labelled rows per optimizer step (at least 1).
    pub update_every: usize,
}

/// Why a labelled row was not learned from.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum SampleError {
    /// The label is not a class of the node.
    #[error("label {label} is not a class (expected 0 to {})", classes - 1)]
    Label {
        /// The label given.
        label: i64,
        /// The node's classes.
        classes: usize,
    },
    /// The features are not the node's input width.
    #[error("expected {expected} features, got {got}")]
    Width {
        /// The node's input width.
        expected: usize,
        /// What came.
        got: usize,
    },
}

/// The learner of one node.
#[derive(Clone, Debug)]
pub struct Learner {
    config: LearnerConfig,
    inputs: usize,
    pub(crate) scaler: Option<RunningScaler>,
    pub(crate) model: OnlineLinear,
    pub(crate) pending_x: Vec<f32>,
    pub(crate) pending_y: Vec<usize>,
    scaled: Vec<f32>,
}

impl Learner {
    /// A learner over `inputs` features with all weights zero (version 0).
    pub fn new(inputs: usize, config: LearnerConfig) -> Learner {
        let model = if config.classes <= 2 {
            OnlineLinear::logistic(inputs, config.optimizer, config.l2)
        } else {
            OnlineLinear::softmax(inputs, config.classes, config.optimizer, config.l2)
        };
        Learner {
            scaler: config.standardize.then(|| RunningScaler::new(inputs)),
            config,
            inputs,
            model,
            pending_x: Vec::new(),
            pending_y: Vec::new(),
            scaled: vec![0.0; inputs],
        }
    }

    /// Starts from given weights (`[outputs, inputs]`, outputs 1 for logistic
    /// regression) instead of zeros.
    pub fn with_params(mut self, weight: Vec<f32>, bias: Vec<f32>) -> Result<Learner, String> {
        self.model.set_params(weight, bias)?;
        Ok(self)
    }

    /// The input width.
    pub fn inputs(&self) -> usize {
        self.inputs
    }

    /// The configuration.
    pub fn config(&self) -> &LearnerConfig {
        &self.config
    }

    /// Steps taken.
    pub fn version(&self) -> u64 {
        self.model.version()
    }

    /// Labelled rows waiting for the next step.
    pub fn pending(&self) -> usize {
        self.pending_y.len()
    }

    /// Takes one labelled row; returns whether a step was taken. A label that is not a
    /// class, or features of the wrong width, are refused and change nothing.
    pub fn push(&mut self, x: &[f32], label: i64) -> Result<bool, SampleError> {
        let classes = self.config.classes.max(2);
        let class =
            usize::try_from(label).ok().filter(|&c| c < classes).ok_or(SampleError::Label { label, classes })?;
        if x.len() != self.inputs {
            return Err(SampleError::Width { expected: self.inputs, got: x.len() });
        }
        match &mut self.scaler {
            Some(scaler) => {
                scaler.update(x);
                scaler.transform(x, &mut self.scaled);
                self.pending_x.extend_from_slice(&self.scaled);
            }
            None => self.pending_x.extend_from_slice(x),
        }
        self.pending_y.push(class);
        if self.pending_y.len() >= self.config.update_every.max(1) {
            return Ok(self.flush());
        }
        Ok(false)
    }

    /// Takes a step with the pending rows, if any; returns whether it did.
    pub fn flush(&mut self) -> bool {
        if self.pending_y.is_empty() {
            return false;
        }
        let counted = self.model.learn(&self.pending_x, &self.pending_y);
        self.pending_x.clear();
        self.pending_y.clear();
        counted > 0
    }

    /// Makes `weights` the current weights ([`Learner::weights`]), reusing its buffers:
    /// what a learner that predicts between its own steps refreshes after each.
    pub fn weights_into(&self, weights: &mut Weights) {
        weights.version = self.model.version();
        weights.inputs = self.model.inputs;
        weights.outputs = self.model.outputs;
        weights.weight.clone_from(&self.model.weight);
        weights.bias.clone_from(&self.model.bias);
        match (&self.scaler, &mut weights.scale) {
            (Some(scaler), Some(scale)) => scaler.scale_into(scale),
            (scaler, scale) => *scale = scaler.as_ref().map(RunningScaler::scale),
        }
    }

    /// The current weights, to serve.
    pub fn weights(&self) -> Weights {
        let mut weights = Weights::default();
        self.weights_into(&mut weights);
        weights
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(update_every: usize) -> LearnerConfig {
        LearnerConfig { classes: 2, optimizer: Optimizer::Sgd { lr: 0.1 }, l2: 0.0, standardize: true, update_every }
    }

    #[test]
    fn steps_every_n_rows_and_flushes_the_rest() {
        let mut l = Learner::new(2, config(3));
        assert_eq!(l.push(&[1.0, 2.0], 1), Ok(false));
        assert_eq!(l.push(&[2.0, 1.0], 0), Ok(false));
        assert_eq!(l.push(&[3.0, 0.0], 1), Ok(true));
        assert_eq!(l.version(), 1);
        assert_eq!(l.push(&[3.0, 0.0], 1), Ok(false));
        assert_eq!(l.pending(), 1);
        assert!(l.flush());
        assert_eq!(l.version(), 2);
        assert!(!l.flush(), "nothing pending");
    }

    #[test]
    fn refuses_bad_labels_and_widths_without_learning() {
        let mut l = Learner::new(2, config(1));
        assert_eq!(l.push(&[1.0, 2.0], 2), Err(SampleError::Label { label: 2, classes: 2 }));
        assert_eq!(l.push(&[1.0, 2.0], -1), Err(SampleError::Label { label: -1, classes: 2 }));
        assert_eq!(l.push(&[1.0], 0), Err(SampleError::Width { expected: 2, got: 1 }));
        assert_eq!(l.version(), 0);
        assert_eq!(l.weights().scale.map(|s| s.mean), Some(vec![0.0, 0.0]), "the scaler saw nothing");
    }

    #[test]
    fn served_weights_predict_what_the_learner_would() {
        let mut l = Learner::new(3, LearnerConfig { classes: 3, ..config(1) });
        for (i, x) in [[1.0f32, 0.0, 5.0], [0.0, 1.0, 4.0], [0.5, 0.5, 3.0], [2.0, 0.0, 1.0]].iter().enumerate() {
            l.push(x, (i % 3) as i64).unwrap();
        }
        let w = l.weights();
        assert_eq!(w.version, 4);
        let p = w.predict(&[1.0, 0.0, 5.0, 0.0, 1.0, 4.0], 2);
        assert_eq!(p.len(), 6);
        for row in p.chunks(3) {
            assert!((row.iter().sum::<f32>() - 1.0).abs() < 1e-5, "{row:?}");
        }
    }
}
