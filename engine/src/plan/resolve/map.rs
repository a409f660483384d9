//! `map` nodes: a row function over the fields the node reads. A builtin's output types
//! follow from its input types; `standardize` may read its parameters from a
//! safetensors file; a custom function declares its own.

use std::path::Path;
use std::sync::Arc;

use weir_operators::kernel::builtin::Builtin;
use weir_operators::kernel::model::WeightsError;
use weir_operators::kernel::MapKernel;
use weir_operators::FieldType;

use super::scope::{at, NodeResult, Resolved, Scope};
use crate::error::Problem;
use crate::plan::step::StepOp;
use crate::spec::{FieldRef, MapOp, MapSpec};

/// Resolves map node `m` reading `refs` (each with its YAML key) from `scope`, its
/// files relative to `base_dir`.
pub(super) fn resolve(
    m: &MapSpec,
    refs: &[(String, &FieldRef)],
    scope: &Scope,
    base_dir: &Path,
) -> NodeResult<Resolved> {
    let mut inputs = Vec::new();
    let mut types = Vec::new();
    for (key, r) in refs {
        let (i, ty) = scope.index(key, r)?;
        inputs.push(i);
        types.push(ty);
    }
    let (name, f, out_types): (&'static str, MapKernel, Vec<FieldType>) = match &m.op {
        MapOp::Builtin(b) => {
            let out = at("inputs", b.output_types(&types).map_err(Problem::Type))?;
            (b.name(), MapKernel::Builtin(b.clone()), out)
        }
        MapOp::StandardizeFile(p) => {
            let path = base_dir.join(p);
            let mean = at("params", load_vector(&path, "mean"))?;
            let std = at("params", load_vector(&path, "std"))?;
            let b = Builtin::Standardize { mean, std };
            let out = at("inputs", b.output_types(&types).map_err(Problem::Type))?;
            (b.name(), MapKernel::Builtin(b), out)
        }
        MapOp::Custom(f, out) => ("custom", MapKernel::Rows(Arc::clone(f)), out.clone()),
    };
    let names: Vec<String> = if m.outputs.is_empty() {
        match &m.op {
            MapOp::Builtin(b) => b.default_outputs().iter().map(|s| s.to_string()).collect(),
            MapOp::StandardizeFile(_) => vec!["y".into()],
            MapOp::Custom(..) => Vec::new(),
        }
    } else {
        m.outputs.clone()
    };
    if names.len() != out_types.len() {
        return Err((
            Some("outputs".into()),
            Problem::Option(format!("{name} produces {} fields, {} names given", out_types.len(), names.len())),
        ));
    }
    let outputs = names.into_iter().zip(out_types.iter().cloned()).collect();
    Ok(Resolved { op: StepOp::Map { op: name, inputs, outputs: out_types, f }, outputs })
}

/// Reads a 1-D f32 tensor `name` from a safetensors file.
fn load_vector(path: &Path, name: &str) -> Result<Vec<f32>, Problem> {
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
