//! `model` nodes (and `embed` nodes, which are models of a sentence-embedding
//! directory): the input field fits the model, the batching options are in range, the
//! weights load. A model node with `learn:` is resolved by [`super::learn`].

use std::path::Path;
use std::sync::Arc;

use weir_operators::kernel::device::DeviceSpec;
use weir_operators::kernel::model::{Activation, Arch, DenseModel};
use weir_operators::kernel::sentence::{SentenceModel, SentenceModelError};
use weir_operators::kernel::KernelFactory;
use weir_operators::{DType, FieldType};

use super::learn;
use super::scope::{NodeResult, Resolved, Scope};
use crate::error::Problem;
use crate::plan::step::{KernelFactoryDebug, StepOp};
use crate::spec::{Batching, ModelSource, ModelSpec};

/// What input a model accepts: any f32 field of a width (dense models), or one type.
enum Accepts {
    Width(usize),
    Type(FieldType),
}

/// Resolves model node `m` reading from `scope`, its files relative to `base_dir`;
/// `learning` names the graph's learning node so far, if any (a graph has one).
pub(super) fn resolve(m: &ModelSpec, scope: &Scope, learning: Option<&str>, base_dir: &Path) -> NodeResult<Resolved> {
    if let Some(spec) = &m.learn {
        return learn::resolve(m, spec, scope, learning, base_dir);
    }
    let (input, ty) = scope.index("input", &m.input)?;
    check_batching(&m.batching)?;
    check_activation(&m.source)?;
    let (description, factory, accepts, out_ty) = load_model(m, base_dir)?;
    let fits = match &accepts {
        Accepts::Width(w) => ty.width() == Some(*w),
        Accepts::Type(t) => &ty == t,
    };
    if !fits {
        let wanted = match &accepts {
            Accepts::Width(w) => format!("{w} numbers per row (f32[{w}])"),
            Accepts::Type(t) => t.to_string(),
        };
        return Err((
            Some("input".into()),
            Problem::Type(format!("the model takes {wanted}, but '{}' is {ty}", m.input)),
        ));
    }
    let op = StepOp::Model { input, description, factory: KernelFactoryDebug(factory), batching: m.batching.clone() };
    Ok(Resolved { op, outputs: vec![(m.output.clone(), out_ty)] })
}

/// The batching options are in range, and the device is one this build has.
fn check_batching(b: &Batching) -> NodeResult<()> {
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

/// The model's description (for plans), kernel factory, accepted input and output type;
/// files are read relative to `base_dir`.
fn load_model(m: &ModelSpec, base_dir: &Path) -> NodeResult<(String, KernelFactory, Accepts, FieldType)> {
    let dense = |model: Arc<DenseModel>| {
        let description = format!("{} {:?}", model.arch, model.sizes());
        let accepts = Accepts::Width(model.input_width());
        let out = model.output_type();
        (description, model.factory(m.batching.device), accepts, out)
    };
    match &m.source {
        ModelSource::Loaded(model) => Ok(dense(Arc::clone(model))),
        ModelSource::File { path, arch, sizes, hidden_activation, output_activation } => {
            let full = base_dir.join(path);
            DenseModel::load(&full, *arch, sizes.as_deref(), *hidden_activation, *output_activation)
                .map(|model| dense(Arc::new(model)))
                .map_err(|e| (Some("weights".into()), Problem::Weights(e)))
        }
        ModelSource::Custom { description, factory, input, output } => {
            Ok((description.clone(), Arc::clone(factory), Accepts::Type(input.clone()), output.clone()))
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
            Ok((description, model.factory(m.batching.device), Accepts::Type(FieldType::scalar(DType::Str)), output))
        }
        ModelSource::Untrained => Err((
            Some("weights".into()),
            Problem::Option("an untrained model needs 'learn:' to learn its weights".into()),
        )),
    }
}
