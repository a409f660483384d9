//! weir-trees: gradient-boosted and random-forest tree ensembles, batched.
//!
//! A model comes in through one of three doors and becomes one [`Ensemble`]:
//! - [`load_xgboost`] (`xgboost`): an XGBoost JSON model (`Booster.save_model("m.json")`);
//! - [`load_lightgbm`] (`lightgbm`): a LightGBM text model (`Booster.save_model("m.txt")`);
//! - [`Ensemble::from_node_arrays`] (`node_arrays`): the attributes of an ONNX-ML
//!   `TreeEnsembleClassifier` or `TreeEnsembleRegressor` ([`NodeArrays`]), for the ONNX crate.
//!
//! Each loader describes its trees node by node and `build` flattens them into one node
//! array, every split rewritten as a "go left" test (`ensemble` states the layout).
//! [`Ensemble::predict_raw`] (`predict`) walks blocks of rows down every tree and gives
//! their raw scores; [`Ensemble::predict`] then applies the model's [`Transform`]
//! (`transform`), giving what the library's own `predict` returns. Errors are
//! [`TreeError`]s (`error`) naming the file, tree, node, field or line.
//!
//! ```no_run
//! # fn main() -> Result<(), weir_trees::TreeError> {
//! let model = weir_trees::load_xgboost(std::path::Path::new("graphs/zoo/phishing_xgb.json"))?;
//! let rows = vec![0.0f32; 2 * model.n_features()]; // two rows, NaN for a missing value
//! let mut probabilities = Vec::new();
//! model.predict(&rows, 2, &mut probabilities)?; // P(class 1) of each row
//! assert_eq!(probabilities.len(), 2);
//! # Ok(())
//! # }
//! ```

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
