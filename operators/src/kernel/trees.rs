//! Tree-ensemble model nodes: an XGBoost JSON model or a LightGBM text model, run by
//! [`weir_trees`] on each batch (blocks of rows down each tree, no allocation per row:
//! one per batch, the output column).
//!
//! The node's input is `features`: the model's feature count of `f32` per row (NaN is a
//! missing value and goes each tree's default way). Its outputs depend on the model's
//! objective, and are what the library's own `predict` gives:
//! - binary: `probability` (`f32`, P(class 1)) and `label` (`i64`, 1 when the
//!   probability is above 0.5, as the libraries' scikit-learn wrappers decide);
//! - multiclass: `probabilities` (`f32[K]`) and `label` (`i64`, the most probable class,
//!   the first on a tie);
//! - regression: `value` (`f32`).

use std::path::Path;
use std::sync::Arc;

use weir_trees::{Ensemble, Objective, TreeError};

use super::signature::{Accepts, LoadedKernel, Signature};
use super::{single_input, BatchKernel, KernelError, KernelFactory};
use crate::column::Column;
use crate::value::{DType, FieldType};

/// The file formats of tree ensembles.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TreeFormat {
    /// XGBoost's JSON model (`Booster.save_model("m.json")`).
    XGBoost,
    /// LightGBM's text model (`Booster.save_model("m.txt")`).
    LightGBM,
}

impl TreeFormat {
    /// The name graphs use (`format: xgboost`).
    pub fn name(self) -> &'static str {
        match self {
            TreeFormat::XGBoost => "xgboost",
            TreeFormat::LightGBM => "lightgbm",
        }
    }
}

/// Loads a tree model file: the node's kernel factory and signature.
pub fn load(format: TreeFormat, path: &Path) -> Result<LoadedKernel, TreeError> {
    let ensemble = match format {
        TreeFormat::XGBoost => weir_trees::load_xgboost(path)?,
        TreeFormat::LightGBM => weir_trees::load_lightgbm(path)?,
    };
    let objective = match ensemble.objective() {
        Objective::Regression => "regression".to_string(),
        Objective::Binary => "binary".to_string(),
        Objective::Multiclass { classes } => format!("{classes} classes"),
    };
    let description = format!(
        "{} {} ({} trees, {} features, {objective})",
        format.name(),
        path.display(),
        ensemble.n_trees(),
        ensemble.n_features()
    );
    let signature = signature(&ensemble);
    let ensemble = Arc::new(ensemble);
    let factory: KernelFactory =
        Arc::new(move || Ok(Box::new(TreeKernel { ensemble: Arc::clone(&ensemble) }) as Box<dyn BatchKernel>));
    Ok(LoadedKernel { description, factory, signature })
}

/// The node's input and outputs for a model's objective (see the module docs).
fn signature(ensemble: &Ensemble) -> Signature {
    let f32_ = FieldType::scalar(DType::F32);
    let label = ("label".to_string(), FieldType::scalar(DType::I64));
    let outputs = match ensemble.objective() {
        Objective::Regression => vec![("value".to_string(), f32_)],
        Objective::Binary => vec![("probability".to_string(), f32_), label],
        Objective::Multiclass { classes } => vec![("probabilities".to_string(), FieldType::vector(classes)), label],
    };
    Signature { inputs: vec![("features".to_string(), Accepts::Width(ensemble.n_features()))], outputs }
}

/// One replica's kernel: the ensemble, shared by the node's replicas.
struct TreeKernel {
    ensemble: Arc<Ensemble>,
}

const OP: &str = "tree ensemble";

impl BatchKernel for TreeKernel {
    fn forward(&mut self, inputs: Vec<Column>) -> Result<Vec<Column>, KernelError> {
        let rows = inputs.first().map_or(0, Column::len);
        let (features, width) = match single_input(OP, inputs)? {
            Column::F32(x) => (x, 1),
            Column::Tensor { width, data } => (data, width),
            other => return Err(KernelError::InputType { op: OP, expected: "f32", found: other.type_name() }),
        };
        if width != self.ensemble.n_features() {
            return Err(KernelError::ShapeMismatch { op: OP, expected: self.ensemble.n_features(), found: width });
        }
        // The scores become the output column: one allocation per batch, no copy.
        let mut scores = Vec::with_capacity(rows * self.ensemble.n_outputs());
        self.ensemble.predict(&features, rows, &mut scores).map_err(|e| KernelError::Custom(e.to_string()))?;
        Ok(match self.ensemble.objective() {
            Objective::Regression => vec![Column::F32(scores)],
            Objective::Binary => {
                let labels = scores.iter().map(|&p| i64::from(p > 0.5)).collect();
                vec![Column::F32(scores), Column::I64(labels)]
            }
            Objective::Multiclass { classes } => {
                let labels = scores.chunks_exact(classes.max(1)).map(|row| argmax(row) as i64).collect();
                vec![Column::Tensor { width: classes, data: scores }, Column::I64(labels)]
            }
        })
    }
}

/// The index of the largest value (the first of equals; NaN never wins).
fn argmax(row: &[f32]) -> usize {
    let mut best = 0;
    for (i, &v) in row.iter().enumerate().skip(1) {
        if v > row[best] {
            best = i;
        }
    }
    best
}

#[cfg(test)]
mod tests {
    use super::argmax;

    #[test]
    fn argmax_takes_the_first_of_equals() {
        assert_eq!(argmax(&[0.2, 0.4, 0.4]), 1);
        assert_eq!(argmax(&[0.5]), 0);
    }
}
