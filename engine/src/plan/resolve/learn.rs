//! Learning `model` nodes (with `learn:`): their input width, key, starting
//! weights (zeros, a weights file, or the latest checkpoint) and the fields they add.

use std::path::Path;

use weir_operators::kernel::checkpoint;
use weir_operators::kernel::learner::{Learner, LearnerConfig};
use weir_operators::kernel::model::{Activation, Arch, DenseModel};
use weir_operators::{DType, FieldType};

use super::scope::{NodeResult, Resolved, Scope};
use crate::error::Problem;
use crate::plan::step::StepOp;
use crate::spec::{Batching, LearnSpec, ModelInputs, ModelOutputs, ModelSource, ModelSpec};

/// The name of the field a learning node adds beside its output: the version of the
/// weights that made each prediction.
pub const MODEL_VERSION: &str = "model_version";

/// The error for a key of a learning `model` node that it would ignore: the node
/// computes inline on the worker (no batching, replicas or device), its model is linear
/// with a logistic or softmax output set by `classes`, predictions are kept only for
/// feedback that names them by key, and with one label per step nothing waits for a
/// minibatch. The YAML front end refuses such a key whenever it is given; the plan,
/// whenever its value differs from the default (the builder can set it).
pub(crate) fn unused_by_learning(key: &str) -> Problem {
    let why = match key {
        "max_batch_size" | "max_wait_ms" => "it computes inline on the worker, without batches",
        "replicas" => "it computes inline on the worker, without replica threads",
        "device" => "it computes inline on the worker, on the CPU",
        "dtype" => "it computes inline on the worker, in f32",
        "activation" => "its model is linear: one layer, no hidden activation",
        "output_activation" => "its output is logistic or softmax, as 'learn.classes' says",
        "layers" => "without 'weights' its sizes are its input's width and its classes",
        "learn.keep_rows" | "learn.keep_ms" => {
            "predictions are kept only for feedback that names them by 'learn.key', and it has none"
        }
        "learn.update_every_ms" => "with 'update_every' 1 every label is a step at once: nothing waits",
        _ => "it is not used",
    };
    Problem::Option(format!("'{key}' does not apply to this learning node: {why}"))
}

/// Refuses what a learning node would ignore (see [`unused_by_learning`]), as set in
/// the IR: batching and activations other than the defaults, kept predictions without
/// a key, a minibatch timer with one label per step.
fn check_unused(m: &ModelSpec, learn: &LearnSpec) -> NodeResult<()> {
    let (b, default) = (&m.batching, Batching::default());
    let (hidden, output) = match &m.source {
        ModelSource::File { hidden_activation, output_activation, .. } => (*hidden_activation, *output_activation),
        ModelSource::Loaded(model) => (model.hidden_activation, model.output_activation),
        _ => (Activation::None, Activation::None),
    };
    let defaults = LearnSpec::new(learn.classes, learn.optimizer);
    let keyless = learn.key.is_none();
    let ignored = [
        ("max_batch_size", b.max_batch_size != default.max_batch_size),
        ("max_wait_ms", b.max_wait_ms != default.max_wait_ms),
        ("replicas", b.replicas != default.replicas),
        ("device", b.device != default.device),
        ("dtype", b.dtype != default.dtype),
        ("activation", hidden != Activation::None),
        ("output_activation", output != Activation::None),
        ("learn.keep_rows", keyless && learn.keep_rows != defaults.keep_rows),
        ("learn.keep_ms", keyless && learn.keep_ms != defaults.keep_ms),
        ("learn.update_every_ms", learn.update_every == 1 && learn.update_every_ms.is_some()),
    ];
    match ignored.into_iter().find(|(_, set)| *set) {
        Some((key, _)) => Err((Some(key.into()), unused_by_learning(key))),
        None => Ok(()),
    }
}

/// Resolves model node `m` with `learn:` settings `learn` reading from `scope`, its
/// files relative to `base_dir`; `learning` names the graph's learning node so far, if
/// any: a graph has one (its feedback has one destination).
pub(super) fn resolve(
    m: &ModelSpec,
    learn: &LearnSpec,
    scope: &Scope,
    learning: Option<&str>,
    base_dir: &Path,
) -> NodeResult<Resolved> {
    if let Some(other) = learning {
        return Err((
            Some("learn".into()),
            Problem::Option(format!(
                "a graph has one learning node (its feedback has one destination); '{other}' already learns"
            )),
        ));
    }
    let field = match &m.inputs {
        ModelInputs::One(field) => field,
        ModelInputs::Named(_) => {
            return Err((
                Some("inputs".into()),
                Problem::Option("a learning model has one input: give it with 'input:'".into()),
            ))
        }
    };
    let output = match &m.outputs {
        ModelOutputs::One(name) => name.clone(),
        _ => {
            return Err((
                Some("outputs".into()),
                Problem::Option("a learning model has one output: name it with 'output:'".into()),
            ))
        }
    };
    let (input, ty) = scope.index("input", field)?;
    let key = match &learn.key {
        Some(k) => Some(scope.index("learn.key", k)?),
        None => None,
    };
    check_unused(m, learn)?;
    let width = match (ty.dtype, ty.width()) {
        (DType::F32, Some(w)) if w > 0 => w,
        _ => {
            return Err((
                Some("input".into()),
                Problem::Type(format!("a learning model reads f32 or f32[N] features, but '{field}' is {ty}")),
            ))
        }
    };
    if let Some((_, key_ty)) = &key {
        if !(key_ty.is_scalar() && matches!(key_ty.dtype, DType::I64 | DType::Str)) {
            return Err((
                Some("learn.key".into()),
                Problem::Type(format!("a feedback key is i64 or str, but it is {key_ty}")),
            ));
        }
    }
    let config = LearnerConfig {
        classes: learn.classes,
        optimizer: learn.optimizer,
        l2: learn.l2,
        standardize: learn.standardize,
        update_every: learn.update_every,
    };
    let outputs_per_row = if learn.classes == 2 { 1 } else { learn.classes };
    let mut learner = Learner::new(width, config);
    let mut start = "untrained".to_string();
    match &m.source {
        ModelSource::Untrained => {}
        ModelSource::File { path, arch, sizes, .. } => {
            let full = base_dir.join(path);
            let model = DenseModel::load(&full, *arch, sizes.as_deref(), Default::default(), Default::default())
                .map_err(|e| (Some("weights".into()), Problem::Weights(e)))?;
            learner = start_from(learner, &model, width, outputs_per_row)?;
            start = format!("from {}", path.display());
        }
        ModelSource::Loaded(model) => {
            learner = start_from(learner, model, width, outputs_per_row)?;
            start = "from weights in memory".into();
        }
        ModelSource::Format { format, .. } => {
            return Err((
                Some("learn".into()),
                Problem::Option(format!("only linear models learn; this is a '{format}' model")),
            ))
        }
        ModelSource::Custom { description, .. } => {
            return Err((
                Some("learn".into()),
                Problem::Option(format!("only linear models learn; '{description}' is a custom kernel")),
            ))
        }
        ModelSource::Sentence { .. } => {
            return Err((
                Some("learn".into()),
                Problem::Option("only linear models learn; this is a sentence model".into()),
            ))
        }
    }
    let checkpoint_dir = learn.checkpoint.as_ref().map(|c| base_dir.join(&c.dir));
    if let Some(dir) = &checkpoint_dir {
        let file = checkpoint::latest(dir);
        if file.exists() {
            learner = checkpoint::load(&file, learner.config().clone(), width)
                .map_err(|e| (Some("learn.checkpoint".into()), Problem::Option(e.to_string())))?;
            start = format!("resumed at version {} from {}", learner.version(), file.display());
        }
    }
    let task =
        if learn.classes == 2 { "logistic".to_string() } else { format!("softmax over {} classes", learn.classes) };
    let description = format!("linear [{width}, {outputs_per_row}], {task}, learning, {start}");
    let out_ty = if outputs_per_row == 1 { FieldType::scalar(DType::F32) } else { FieldType::vector(outputs_per_row) };
    let outputs = vec![(output, out_ty), (MODEL_VERSION.to_string(), FieldType::scalar(DType::I64))];
    let op = StepOp::Learn {
        input,
        key: key.map(|(i, _)| i),
        learner: Box::new(learner),
        spec: Box::new(learn.clone()),
        description,
        checkpoint: checkpoint_dir,
    };
    Ok(Resolved { op, outputs })
}

fn start_from(learner: Learner, model: &DenseModel, width: usize, outputs: usize) -> NodeResult<Learner> {
    let sizes = model.sizes();
    if model.arch != Arch::Linear || sizes != [width, outputs] {
        return Err((
            Some("weights".into()),
            Problem::Option(format!(
                "a learning model starts from a linear model of sizes [{width}, {outputs}], the file holds {} {sizes:?}",
                model.arch
            )),
        ));
    }
    let layer = &model.layers[0];
    learner
        .with_params(layer.weight.clone(), layer.bias.clone())
        .map_err(|e| (Some("weights".into()), Problem::Option(e)))
}
