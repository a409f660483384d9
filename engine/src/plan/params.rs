//! Checks of node parameters that live outside the graph file: batching ranges,
//! devices, activations, and parameter vectors in safetensors files.

use std::path::Path;

use weir_operators::kernel::device::DeviceSpec;
use weir_operators::kernel::model::{Activation, Arch, WeightsError};

use super::resolve::NodeResult;
use crate::error::Problem;
use crate::spec::{Batching, ModelSource};

pub(super) fn check_batching(b: &Batching) -> NodeResult<()> {
    if !(1..=65536).contains(&b.max_batch_size) {
        return Err((
            Some("max_batch_size".into()),
            Problem::Option(format!("{} is out of range (1 to 65536)", b.max_batch_size)),
        ));
    }
    if b.max_wait_ms > 60_000 {
        return Err((
            Some("max_wait_ms".into()),
            Problem::Option(format!("{} is out of range (0 to 60000)", b.max_wait_ms)),
        ));
    }
    if !(1..=256).contains(&b.replicas) {
        return Err((Some("replicas".into()), Problem::Option(format!("{} is out of range (1 to 256)", b.replicas))));
    }
    if let DeviceSpec::Cuda(n) = b.device {
        if !candle_core::utils::cuda_is_available() {
            return Err((
                Some("device".into()),
                Problem::Option(format!(
                    "device cuda:{n} needs weir built with the 'cuda' feature; this build has CPU only"
                )),
            ));
        }
    }
    Ok(())
}

/// A linear model has one layer, so a hidden activation would be ignored: refused.
pub(super) fn check_activation(source: &ModelSource) -> NodeResult<()> {
    let (arch, hidden) = match source {
        ModelSource::File { arch, hidden_activation, .. } => (*arch, *hidden_activation),
        ModelSource::Loaded(model) => (model.arch, model.hidden_activation),
        _ => return Ok(()),
    };
    if arch == Arch::Linear && hidden != Activation::None {
        return Err((
            Some("activation".into()),
            Problem::Option(format!(
                "'activation' ({hidden}) does not apply to a linear model: it has one layer, no hidden activation"
            )),
        ));
    }
    Ok(())
}

/// Reads a 1-D f32 tensor `name` from a safetensors file.
pub(super) fn load_vector(path: &Path, name: &str) -> Result<Vec<f32>, Problem> {
    let bytes = std::fs::read(path)
        .map_err(|e| WeightsError::Unreadable { path: path.to_path_buf(), reason: e.to_string() })?;
    let tensors = candle_core::safetensors::load_buffer(&bytes, &candle_core::Device::Cpu)
        .map_err(|e| WeightsError::Malformed { path: path.to_path_buf(), reason: e.to_string() })?;
    let t = tensors.get(name).ok_or_else(|| {
        let mut found: Vec<&str> = tensors.keys().map(String::as_str).collect();
        found.sort();
        WeightsError::MissingTensor { path: path.to_path_buf(), name: name.into(), found: found.join(", ") }
    })?;
    let bad = || WeightsError::BadTensor {
        path: path.to_path_buf(),
        name: name.into(),
        found: format!("{:?} {:?}", t.dtype(), t.dims()),
        expected: "F32 with one dimension".into(),
    };
    if t.dtype() != candle_core::DType::F32 || t.rank() != 1 {
        return Err(bad().into());
    }
    Ok(t.to_vec1::<f32>().map_err(|_| bad())?)
}
