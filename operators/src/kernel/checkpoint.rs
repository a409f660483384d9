//! A learner's checkpoint: everything it needs to continue exactly where it stopped,
//! as one safetensors file.
//!
//! Tensors: `weight` `[outputs, inputs]` and `bias` `[outputs]` (f32, the layout of a
//! `linear` weights file: `layers.0.weight` and `layers.0.bias` are written too, so a
//! checkpoint also serves as a plain model file); `version` (i64 `[1]`); Adam's moments
//! `adam.first` and `adam.second` (f32, when the optimizer is Adam); the running
//! standardisation `scaler.count` (f64 `[1]`), `scaler.mean` and `scaler.m2` (f64, when
//! the node standardizes); and the rows of a partial minibatch, `pending.x` (f32) and
//! `pending.y` (i64). A save writes a temporary file and renames it over the last, so a
//! crash leaves the previous checkpoint whole.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use candle_core::{Device, Tensor};

use super::learn::RunningScaler;
use super::learner::{Learner, LearnerConfig};

/// Why a checkpoint cannot be saved, or cannot resume a learner. Saving fails on the
/// disk (the operator's fault, a retry may help); resuming fails on a file that does
/// not fit the node's configuration (the graph author's).
#[derive(Debug, thiserror::Error)]
pub enum CheckpointError {
    /// The directory cannot be created, or the file written or renamed into place.
    #[error("cannot {action} {}: {reason}", path.display())]
    Unwritable {
        /// What failed: `create`, `write` or `replace`.
        action: &'static str,
        /// The directory or file.
        path: PathBuf,
        /// The I/O (or candle) error.
        reason: String,
    },
    /// The learner's state cannot be put into tensors.
    #[error("cannot encode the learner: {0}")]
    Encode(String),
    /// The file cannot be read or is not a safetensors file.
    #[error("cannot read checkpoint {}: {reason}", path.display())]
    Unreadable {
        /// The file.
        path: PathBuf,
        /// What candle said.
        reason: String,
    },
    /// A tensor the node's configuration needs is absent.
    #[error("checkpoint {} has no tensor '{name}'", path.display())]
    MissingTensor {
        /// The file.
        path: PathBuf,
        /// The tensor expected.
        name: String,
    },
    /// A tensor cannot be read as the type expected.
    #[error("checkpoint {}: tensor '{name}': {reason}", path.display())]
    BadTensor {
        /// The file.
        path: PathBuf,
        /// The tensor.
        name: String,
        /// What candle said.
        reason: String,
    },
    /// The weights have another shape than the node's.
    #[error("checkpoint {} does not fit the node: {reason}", path.display())]
    Unfit {
        /// The file.
        path: PathBuf,
        /// The shapes expected and found.
        reason: String,
    },
    /// The version stored is negative.
    #[error("checkpoint version {version} is negative")]
    NegativeVersion {
        /// The version stored.
        version: i64,
    },
    /// Adam's moments, the scaler or the pending rows do not fit the node.
    #[error("checkpoint {}: {reason}", path.display())]
    Mismatch {
        /// The file.
        path: PathBuf,
        /// What does not fit what.
        reason: String,
    },
}

/// The file of the latest checkpoint in `dir`.
pub fn latest(dir: &Path) -> PathBuf {
    dir.join("latest.safetensors")
}

/// Saves `learner` as `dir`'s latest checkpoint, creating `dir` if needed.
pub fn save(learner: &Learner, dir: &Path) -> Result<(), CheckpointError> {
    let err = |e: candle_core::Error| CheckpointError::Encode(e.to_string());
    let unwritable = |action: &'static str, path: &Path, reason: String| CheckpointError::Unwritable {
        action,
        path: path.to_path_buf(),
        reason,
    };
    std::fs::create_dir_all(dir).map_err(|e| unwritable("create", dir, e.to_string()))?;
    let m = &learner.model;
    let mut tensors: HashMap<String, Tensor> = HashMap::new();
    let weight = Tensor::from_slice(&m.weight, (m.outputs, m.inputs), &Device::Cpu).map_err(err)?;
    let bias = Tensor::from_slice(&m.bias, m.outputs, &Device::Cpu).map_err(err)?;
    tensors.insert("layers.0.weight".into(), weight.clone());
    tensors.insert("layers.0.bias".into(), bias.clone());
    tensors.insert("weight".into(), weight);
    tensors.insert("bias".into(), bias);
    let version = i64::try_from(m.version).map_err(|e| CheckpointError::Encode(e.to_string()))?;
    tensors.insert("version".into(), Tensor::from_slice(&[version], 1, &Device::Cpu).map_err(err)?);
    if !m.first.is_empty() {
        tensors.insert("adam.first".into(), Tensor::from_slice(&m.first, m.first.len(), &Device::Cpu).map_err(err)?);
        tensors.insert("adam.second".into(), Tensor::from_slice(&m.second, m.second.len(), &Device::Cpu).map_err(err)?);
    }
    if let Some(s) = &learner.scaler {
        tensors.insert("scaler.count".into(), Tensor::from_slice(&[s.count], 1, &Device::Cpu).map_err(err)?);
        tensors.insert("scaler.mean".into(), Tensor::from_slice(&s.mean, s.mean.len(), &Device::Cpu).map_err(err)?);
        tensors.insert("scaler.m2".into(), Tensor::from_slice(&s.m2, s.m2.len(), &Device::Cpu).map_err(err)?);
    }
    if !learner.pending_y.is_empty() {
        let y: Vec<i64> = learner.pending_y.iter().map(|&y| y as i64).collect();
        let x = &learner.pending_x;
        tensors.insert("pending.x".into(), Tensor::from_slice(x, x.len(), &Device::Cpu).map_err(err)?);
        tensors.insert("pending.y".into(), Tensor::from_slice(&y, y.len(), &Device::Cpu).map_err(err)?);
    }
    let file = latest(dir);
    // A name no other save uses: two learners of one directory (a revision a reload
    // replaced, finishing a save, and its successor) never write the same file.
    static SAVES: AtomicU64 = AtomicU64::new(0);
    let n = SAVES.fetch_add(1, Ordering::Relaxed);
    let temporary = dir.join(format!("latest.safetensors.{}-{n}.tmp", std::process::id()));
    let written = candle_core::safetensors::save(&tensors, &temporary)
        .map_err(|e| unwritable("write", &temporary, e.to_string()))
        .and_then(|()| std::fs::rename(&temporary, &file).map_err(|e| unwritable("replace", &file, e.to_string())));
    if written.is_err() {
        let _ = std::fs::remove_file(&temporary);
    }
    written
}

/// Loads a checkpoint written by [`save`] for a learner configured by `config` over
/// `inputs` features. Fails, naming the tensor, if the file does not fit the config.
pub fn load(file: &Path, config: LearnerConfig, inputs: usize) -> Result<Learner, CheckpointError> {
    let tensors = candle_core::safetensors::load(file, &Device::Cpu)
        .map_err(|e| CheckpointError::Unreadable { path: file.to_path_buf(), reason: e.to_string() })?;
    let f32s = |name: &str| vector::<f32>(&tensors, file, name);
    let f64s = |name: &str| vector::<f64>(&tensors, file, name);
    let i64s = |name: &str| vector::<i64>(&tensors, file, name);
    let missing = |name: &str| CheckpointError::MissingTensor { path: file.to_path_buf(), name: name.to_string() };
    let mismatch = |reason: String| CheckpointError::Mismatch { path: file.to_path_buf(), reason };
    let weight = f32s("weight")?.ok_or_else(|| missing("weight"))?;
    let bias = f32s("bias")?.ok_or_else(|| missing("bias"))?;
    let mut learner = Learner::new(inputs, config)
        .with_params(weight, bias)
        .map_err(|reason| CheckpointError::Unfit { path: file.to_path_buf(), reason })?;
    let version = i64s("version")?.and_then(|v| v.first().copied()).ok_or_else(|| missing("version"))?;
    learner.model.version = u64::try_from(version).map_err(|_| CheckpointError::NegativeVersion { version })?;
    if !learner.model.first.is_empty() {
        let first = f32s("adam.first")?.ok_or_else(|| missing("adam.first"))?;
        let second = f32s("adam.second")?.ok_or_else(|| missing("adam.second"))?;
        if first.len() != learner.model.first.len() || second.len() != learner.model.second.len() {
            return Err(mismatch("Adam's moments do not fit the node".into()));
        }
        learner.model.first = first;
        learner.model.second = second;
    }
    if learner.scaler.is_some() {
        let count = f64s("scaler.count")?.and_then(|v| v.first().copied()).ok_or_else(|| missing("scaler.count"))?;
        let mean = f64s("scaler.mean")?.ok_or_else(|| missing("scaler.mean"))?;
        let m2 = f64s("scaler.m2")?.ok_or_else(|| missing("scaler.m2"))?;
        if mean.len() != inputs || m2.len() != inputs {
            return Err(mismatch(format!("the scaler does not fit {inputs} features")));
        }
        learner.scaler = Some(RunningScaler { count, mean, m2 });
    }
    if let (Some(x), Some(y)) = (f32s("pending.x")?, i64s("pending.y")?) {
        if x.len() != y.len() * inputs {
            return Err(mismatch(format!("the pending rows do not fit {inputs} features")));
        }
        learner.pending_x = x;
        learner.pending_y = y.into_iter().map(|y| y.max(0) as usize).collect();
    }
    Ok(learner)
}

/// The values of tensor `name`, flattened, if the checkpoint has it.
fn vector<T: candle_core::WithDType>(
    tensors: &HashMap<String, Tensor>,
    file: &Path,
    name: &str,
) -> Result<Option<Vec<T>>, CheckpointError> {
    tensors.get(name).map(|t| t.flatten_all().and_then(|t| t.to_vec1::<T>())).transpose().map_err(|e| {
        CheckpointError::BadTensor { path: file.to_path_buf(), name: name.to_string(), reason: e.to_string() }
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kernel::learn::Optimizer;

    #[test]
    fn a_loaded_checkpoint_continues_exactly() {
        let config = LearnerConfig {
            classes: 3,
            optimizer: Optimizer::adam(0.05),
            l2: 1e-4,
            standardize: true,
            update_every: 2,
        };
        let rows: Vec<([f32; 2], i64)> = (0..41).map(|i| ([i as f32 * 0.1, (i % 7) as f32], i % 3)).collect();
        let mut straight = Learner::new(2, config.clone());
        rows.iter().for_each(|(x, y)| drop(straight.push(x, *y)));
        let dir = std::env::temp_dir().join(format!("weir-checkpoint-test-{}", std::process::id()));
        let mut first = Learner::new(2, config.clone());
        rows[..21].iter().for_each(|(x, y)| drop(first.push(x, *y)));
        assert_eq!(first.pending(), 1, "an odd row waits for its minibatch");
        save(&first, &dir).unwrap();
        let mut resumed = load(&latest(&dir), config, 2).unwrap();
        rows[21..].iter().for_each(|(x, y)| drop(resumed.push(x, *y)));
        assert_eq!(resumed.weights(), straight.weights());
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn a_checkpoint_that_does_not_fit_names_file_and_tensor() {
        let config = LearnerConfig {
            classes: 2,
            optimizer: Optimizer::adam(0.05),
            l2: 0.0,
            standardize: false,
            update_every: 1,
        };
        let dir = std::env::temp_dir().join(format!("weir-checkpoint-unfit-{}", std::process::id()));
        let err = load(&latest(&dir), config.clone(), 2).unwrap_err();
        assert!(matches!(err, CheckpointError::Unreadable { .. }), "{err}");
        assert!(err.to_string().contains("cannot read checkpoint"), "{err}");
        save(&Learner::new(2, config.clone()), &dir).unwrap();
        let err = load(&latest(&dir), config, 3).unwrap_err();
        assert!(matches!(err, CheckpointError::Unfit { .. }), "{err}");
        assert!(err.to_string().contains("does not fit the node"), "{err}");
        let _ = std::fs::remove_dir_all(&dir);
    }
}
