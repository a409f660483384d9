//! weir-trees: gradient-boosted and random-forest tree ensembles, batched.
//!
//! A model comes in through one of three doors and becomes one [`Ensemble`]:
//! - [`load_xgboost`]: an XGBoost JSON model (`Booster.save_model("m.json")`);
//! - [`load_lightgbm`]: a LightGBM text model (`Booster.save_model("m.txt")`);
//! - [`Ensemble::from_node_arrays`]: the attributes of an ONNX-ML `TreeEnsembleClassifier`
//!   or `TreeEnsembleRegressor` ([`NodeArrays`]), for the ONNX crate.
//!
//! [`Ensemble::predict_raw`] gives the raw scores of a batch of rows, and
//! [`Ensemble::predict`] what the library's own `predict` returns (probabilities for
//! classifiers). `build` flattens the trees into one node array; `predict` walks it over
//! blocks of rows; `transform` turns scores into probabilities. Errors are [`TreeError`]s
//! that name the file, tree, node, field or line.

mod build;
mod ensemble;
mod error;
mod lightgbm;
mod node_arrays;
mod predict;
mod transform;
mod xgboost;

pub use ensemble::{Aggregate, Ensemble, Objective, Transform};
pub use error::TreeError;
pub use lightgbm::load_lightgbm;
pub use node_arrays::{Mode, NodeArrays};
pub use xgboost::load_xgboost;
