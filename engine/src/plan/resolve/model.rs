//! `model` nodes (and `embed` nodes, which are models of a sentence-embedding
//! directory): the model loads (weights, a file of a registered format, a custom
//! kernel), the node's fields fit the model's named inputs, its outputs are named, the
//! batching options are in range. A model node with `learn:` is resolved by
//! [`super::learn`].

use std::path::Path;
use std::sync::Arc;

use weir_operators::kernel::device::PlacementError;
use weir_operators::kernel::model::{Activation, Arch, DenseModel};
use weir_operators::kernel::sentence::{SentenceModel, SentenceModelError};
use weir_operators::kernel::signature::{Accepts, LoadedKernel, Signature};
use weir_operators::{DType, FieldType};

use super::learn;
use super::scope::{NodeResult, Resolved, Scope};
use crate::error::Problem;
use crate::kernels::{FormatArgs, Kernels};
use crate::plan::step::{KernelFactoryDebug, StepOp};
use crate::spec::{Batching, ModelInputs, ModelOutputs, ModelSource, ModelSpec};

/// Resolves model node `name` (`m`) reading from `scope`, its files relative to
/// `base_dir`, its format found in `kernels`; `learning` names the graph's learning
/// node so far, if any (a graph has one).
pub(super) fn resolve(
    name: &str,
    m: &ModelSpec,
    scope: &Scope,
    learning: Option<&str>,
    base_dir: &Path,
    kernels: &Kernels,
) -> NodeResult<Resolved> {
    if let Some(spec) = &m.learn {
        return learn::resolve(m, spec, scope, learning, base_dir);
    }
    check_batching(&m.batching)?;
    check_activation(&m.source)?;
    check_placement(m)?;
    let loaded = load_model(name, m, base_dir, kernels)?;
    let inputs = wire_inputs(&m.inputs, &loaded.signature, scope)?;
    let (keep, names) = wire_outputs(&m.outputs, &loaded.signature)?;
    let loaded = loaded.select_outputs(keep);
    let outputs: Vec<(String, FieldType)> =
        names.into_iter().zip(loaded.signature.outputs.iter().map(|(_, ty)| ty.clone())).collect();
    let op = StepOp::Model {
        inputs,
        outputs: outputs.iter().map(|(_, ty)| ty.clone()).collect(),
        description: loaded.description,
        factory: KernelFactoryDebug(loaded.factory),
        batching: m.batching.clone(),
    };
    Ok(Resolved { op, outputs })
}

/// The model's inputs in its order, each fed by the node's field for it: the field's
/// index in the scope, checked against what the input accepts.
fn wire_inputs(wiring: &ModelInputs, sig: &Signature, scope: &Scope) -> NodeResult<Vec<usize>> {
    let listed = || list(sig.inputs.iter().map(|(n, a)| format!("{n}: {a}")));
    let pairs: Vec<(String, &crate::spec::FieldRef, &String, &Accepts)> = match wiring {
        ModelInputs::One(field) => match sig.inputs.as_slice() {
            [(name, accepts)] => vec![("input".to_string(), field, name, accepts)],
            _ => {
                return Err((
                    Some("input".into()),
                    Problem::Type(format!(
                        "the model has {} inputs ({}): wire each with 'inputs: {{name: field}}'",
                        sig.inputs.len(),
                        listed()
                    )),
                ))
            }
        },
        ModelInputs::Named(named) => {
            if let Some((unknown, _)) = named.iter().find(|(n, _)| !sig.inputs.iter().any(|(i, _)| i == n)) {
                return Err((
                    Some(format!("inputs.{unknown}")),
                    Problem::UnknownField(format!("the model has no input '{unknown}' (its inputs: {})", listed())),
                ));
            }
            let mut pairs = Vec::with_capacity(sig.inputs.len());
            for (name, accepts) in &sig.inputs {
                let mut fields = named.iter().filter(|(n, _)| n == name);
                match (fields.next(), fields.next()) {
                    (Some((_, field)), None) => pairs.push((format!("inputs.{name}"), field, name, accepts)),
                    (None, _) => {
                        return Err((
                            Some("inputs".into()),
                            Problem::Topology(format!(
                                "the model's input '{name}' ({accepts}) is not wired (its inputs: {})",
                                listed()
                            )),
                        ))
                    }
                    (Some(_), Some(_)) => {
                        return Err((
                            Some(format!("inputs.{name}")),
                            Problem::Duplicate(format!("the model's input '{name}' is wired twice")),
                        ))
                    }
                }
            }
            pairs
        }
    };
    let mut indices = Vec::with_capacity(pairs.len());
    for (key, field, name, accepts) in pairs {
        let (index, ty) = scope.index(&key, field)?;
        if !accepts.fits(&ty) {
            let model = match wiring {
                ModelInputs::One(_) => "the model".to_string(),
                ModelInputs::Named(_) => format!("the model's input '{name}'"),
            };
            return Err((Some(key), Problem::Type(format!("{model} takes {accepts}, but '{field}' is {ty}"))));
        }
        indices.push(index);
    }
    Ok(indices)
}

/// Which of the model's outputs the node keeps (indices into the signature's outputs)
/// and the names of the fields they become.
fn wire_outputs(wiring: &ModelOutputs, sig: &Signature) -> NodeResult<(Vec<usize>, Vec<String>)> {
    let listed = || list(sig.outputs.iter().map(|(n, ty)| format!("{n}: {ty}")));
    let (keep, names): (Vec<usize>, Vec<String>) = match wiring {
        ModelOutputs::One(field) if sig.outputs.len() == 1 => (vec![0], vec![field.clone()]),
        ModelOutputs::One(_) => {
            return Err((
                Some("output".into()),
                Problem::Option(format!(
                    "the model has {} outputs ({}): name those to keep with 'outputs: {{name: field}}', or leave \
                     'output' out to keep them all under their own names",
                    sig.outputs.len(),
                    listed()
                )),
            ))
        }
        ModelOutputs::Named(named) => {
            let mut keep = Vec::with_capacity(named.len());
            for (name, _) in named {
                let Some(i) = sig.outputs.iter().position(|(n, _)| n == name) else {
                    return Err((
                        Some(format!("outputs.{name}")),
                        Problem::UnknownField(format!("the model has no output '{name}' (its outputs: {})", listed())),
                    ));
                };
                if keep.contains(&i) {
                    return Err((
                        Some(format!("outputs.{name}")),
                        Problem::Duplicate(format!("the model's output '{name}' is named twice")),
                    ));
                }
                keep.push(i);
            }
            (keep, named.iter().map(|(_, field)| field.clone()).collect())
        }
        ModelOutputs::Own => ((0..sig.outputs.len()).collect(), sig.outputs.iter().map(|(n, _)| n.clone()).collect()),
    };
    let key = match wiring {
        ModelOutputs::One(_) => "output",
        _ => "outputs",
    };
    // A field is read as `node.field`: its name cannot hold a dot (ONNX names may).
    if let Some(bad) = names.iter().find(|n| n.is_empty() || n.contains('.') || n.trim() != n.as_str()) {
        return Err((
            Some(key.into()),
            Problem::Option(format!(
                "'{bad}' cannot name a field (fields are read as 'node.field'): rename it with \
                 'outputs: {{\"{bad}\": a_name}}'"
            )),
        ));
    }
    super::super::names::unique(names.iter().map(String::as_str), "output field").map_err(|p| (Some(key.into()), p))?;
    Ok((keep, names))
}

/// `a, b, c`, or `none`.
fn list(items: impl Iterator<Item = String>) -> String {
    let items: Vec<String> = items.collect();
    if items.is_empty() {
        "none".into()
    } else {
        items.join(", ")
    }
}

/// The batching options are in range.
fn check_batching(b: &Batching) -> NodeResult<()> {
    if !(1..=65536).contains(&b.max_batch_size) {
        return Err((
            Some("max_batch_size".into()),
            Problem::Option(format!("{} is out of range (1 to 65536)", b.max_batch_size)),
        ));
    }
    if let Some(ms) = b.max_wait_ms.filter(|&ms| ms > 60_000) {
        return Err((Some("max_wait_ms".into()), Problem::Option(format!("{ms} is out of range (0 to 60000)"))));
    }
    if !(1..=256).contains(&b.replicas) {
        return Err((Some("replicas".into()), Problem::Option(format!("{} is out of range (1 to 256)", b.replicas))));
    }
    Ok(())
}

/// The node's device opens (so a missing GPU, or an ordinal beyond the GPUs present,
/// fails `weir check` here, not a replica later), and a kernel given as a Rust closure
/// (which builds its own instances) is not asked for a precision it would not see. A
/// model of a registered format is the format's to place ([`FormatArgs`]).
fn check_placement(m: &ModelSpec) -> NodeResult<()> {
    let placed = match &m.source {
        ModelSource::Format { .. } => return Ok(()),
        ModelSource::Custom { .. } => m.batching.dtype.f32_only(
            "a kernel given as a Rust closure",
            "it builds its own instances: set their precision in its factory",
        ),
        _ => Ok(()),
    };
    placed.and_then(|()| m.batching.device.candle().map(drop)).map_err(placement)
}

/// A placement error at its key.
fn placement(e: PlacementError) -> (Option<String>, Problem) {
    (Some(e.key().into()), Problem::Option(e.to_string()))
}

/// A linear model has one layer, so a hidden activation would be ignored: refused.
fn check_activation(source: &ModelSource) -> NodeResult<()> {
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

/// Loads the node's model: weights, a file of a registered format, a kernel.
fn load_model(name: &str, m: &ModelSpec, base_dir: &Path, kernels: &Kernels) -> NodeResult<LoadedKernel> {
    let dense = |model: Arc<DenseModel>| LoadedKernel {
        description: format!("{} {:?}", model.arch, model.sizes()),
        factory: model.factory(m.batching.device, m.batching.dtype),
        signature: Signature::single(("input", Accepts::Width(model.input_width())), ("y", model.output_type())),
    };
    match &m.source {
        ModelSource::Loaded(model) => Ok(dense(Arc::clone(model))),
        ModelSource::File { path, arch, sizes, hidden_activation, output_activation } => {
            let full = base_dir.join(path);
            DenseModel::load(&full, *arch, sizes.as_deref(), *hidden_activation, *output_activation)
                .map(|model| dense(Arc::new(model)))
                .map_err(|e| (Some("weights".into()), Problem::Weights(e)))
        }
        ModelSource::Custom { description, factory, input, output } => Ok(LoadedKernel {
            description: description.clone(),
            factory: Arc::clone(factory),
            signature: Signature::single(("input", Accepts::Type(input.clone())), ("y", output.clone())),
        }),
        ModelSource::Format { format, path, params } => {
            let Some(loader) = kernels.get(format) else {
                return Err((
                    Some("format".into()),
                    Problem::Option(format!(
                        "unknown model format or kernel '{format}' (known: {})",
                        list(kernels.names().into_iter().map(String::from))
                    )),
                ));
            };
            let args = FormatArgs {
                node: name,
                path: path.as_ref().map(|p| base_dir.join(p)),
                base_dir,
                params,
                device: m.batching.device,
                dtype: m.batching.dtype,
            };
            loader.load(&args).map_err(|e| match e.downcast::<PlacementError>() {
                Ok(e) => placement(*e),
                Err(e) => (Some("format".into()), Problem::Model { format: format.clone(), reason: e.to_string() }),
            })
        }
        ModelSource::Sentence { dir, max_length, normalize } => {
            let full = base_dir.join(dir);
            let model = SentenceModel::load(&full, *max_length, *normalize).map_err(|e| {
                let fetch = match e {
                    SentenceModelError::Missing { .. } => "; install all-MiniLM-L6-v2 with: scripts/fetch-minilm",
                    SentenceModelError::Invalid { .. } => "",
                };
                (Some("model".into()), Problem::Option(format!("{e}{fetch}")))
            })?;
            let description = format!(
                "sentence embeddings {} [{}], up to {} tokens{}",
                dir.display(),
                model.width(),
                model.max_length,
                if model.normalize { ", normalized" } else { "" }
            );
            let output = FieldType::vector(model.width());
            let model = Arc::new(model);
            Ok(LoadedKernel {
                description,
                factory: model.factory(m.batching.device, m.batching.dtype),
                signature: Signature::single(
                    ("input", Accepts::Type(FieldType::scalar(DType::Str))),
                    ("embedding", output),
                ),
            })
        }
        ModelSource::Untrained => Err((
            Some("weights".into()),
            Problem::Option("an untrained model needs 'learn:' to learn its weights".into()),
        )),
    }
}
