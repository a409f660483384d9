//! `kind: model` and `kind: embed` (and a model's `learn:` section).

use std::path::PathBuf;

use serde::Deserialize;
use weir_operators::kernel::learn::Optimizer;
use weir_operators::kernel::model::Arch;

use super::batching::node_file_with_batching;
use super::{parse_enum, parse_ref, NodeResult};
use crate::error::Problem;
use crate::plan::unused_by_learning;
use crate::spec::*;

node_file_with_batching! {
    #[derive(Deserialize)]
    #[serde(deny_unknown_fields)]
    pub(super) struct ModelFile {
        #[serde(default)]
        arch: Option<String>,
        #[serde(default)]
        format: Option<String>,
        #[serde(default)]
        path: Option<PathBuf>,
        #[serde(default)]
        params: Option<serde_yaml::Value>,
        #[serde(default)]
        weights: Option<PathBuf>,
        #[serde(default)]
        input: Option<String>,
        #[serde(default)]
        inputs: Option<serde_yaml::Mapping>,
        #[serde(default)]
        output: Option<String>,
        #[serde(default)]
        outputs: Option<serde_yaml::Mapping>,
        #[serde(default)]
        layers: Option<Vec<usize>>,
        #[serde(default)]
        activation: Option<String>,
        #[serde(default)]
        output_activation: Option<String>,
        ..batching,
        #[serde(default)]
        learn: Option<LearnFile>,
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct LearnFile {
    #[serde(default)]
    classes: Option<usize>,
    #[serde(default)]
    optimizer: Option<String>,
    lr: f32,
    #[serde(default)]
    l2: Option<f32>,
    #[serde(default)]
    standardize: Option<bool>,
    #[serde(default)]
    update_every: Option<usize>,
    #[serde(default)]
    update_every_ms: Option<u64>,
    #[serde(default)]
    key: Option<String>,
    #[serde(default)]
    keep_rows: Option<usize>,
    #[serde(default)]
    keep_ms: Option<u64>,
    #[serde(default)]
    checkpoint: Option<CheckpointFile>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct CheckpointFile {
    dir: PathBuf,
    every: u64,
}

fn learn(f: LearnFile) -> NodeResult<LearnSpec> {
    let field = |name: &str| Some(format!("learn.{name}"));
    // Predictions are kept only for feedback that names them by key.
    for (name, given) in [("keep_rows", f.keep_rows.is_some()), ("keep_ms", f.keep_ms.is_some())] {
        if given && f.key.is_none() {
            let key = format!("learn.{name}");
            return Err((field(name), unused_by_learning(&key)));
        }
    }
    let optimizer = match f.optimizer.as_deref().unwrap_or("sgd") {
        "sgd" => Optimizer::Sgd { lr: f.lr },
        "adam" => Optimizer::adam(f.lr),
        other => {
            return Err((
                field("optimizer"),
                Problem::Option(format!("unknown optimizer '{other}' (expected sgd or adam)")),
            ))
        }
    };
    if !(f.lr.is_finite() && f.lr > 0.0) {
        return Err((field("lr"), Problem::Option(format!("the learning rate must be positive, got {}", f.lr))));
    }
    let mut spec = LearnSpec::new(f.classes.unwrap_or(2), optimizer);
    if spec.classes < 2 {
        return Err((
            field("classes"),
            Problem::Option(format!("a classifier needs at least 2 classes, got {}", spec.classes)),
        ));
    }
    if let Some(l2) = f.l2 {
        if !(l2.is_finite() && l2 >= 0.0) {
            return Err((field("l2"), Problem::Option(format!("l2 must be 0 or more, got {l2}"))));
        }
        spec.l2 = l2;
    }
    spec.standardize = f.standardize.unwrap_or(spec.standardize);
    if let Some(n) = f.update_every {
        if !(1..=65536).contains(&n) {
            return Err((field("update_every"), Problem::Option(format!("update_every is 1 to 65536 rows, got {n}"))));
        }
        spec.update_every = n;
    }
    spec.update_every_ms = f.update_every_ms;
    spec.key = f.key.as_deref().map(|k| parse_ref(k, "learn.key")).transpose()?;
    if let Some(n) = f.keep_rows {
        if n == 0 {
            return Err((field("keep_rows"), Problem::Option("keep_rows must be at least 1".into())));
        }
        spec.keep_rows = n;
    }
    if f.keep_ms.is_some() {
        spec.keep_ms = f.keep_ms;
    }
    if let Some(c) = f.checkpoint {
        if c.every == 0 {
            return Err((field("checkpoint.every"), Problem::Option("checkpoint.every must be at least 1".into())));
        }
        spec.checkpoint = Some(CheckpointSpec { dir: c.dir, every: c.every });
    }
    Ok(spec)
}

node_file_with_batching! {
    #[derive(Deserialize)]
    #[serde(deny_unknown_fields)]
    pub(super) struct EmbedFile {
        model: PathBuf,
        input: String,
        #[serde(default)]
        output: Option<String>,
        #[serde(default)]
        max_length: Option<usize>,
        #[serde(default)]
        normalize: Option<bool>,
        ..batching,
    }
}

/// `kind: embed`: a model node whose model is a sentence-embedding directory.
pub(super) fn embed(f: EmbedFile) -> NodeResult<ModelSpec> {
    let max_length = f.max_length.unwrap_or(256);
    if !(2..=8192).contains(&max_length) {
        return Err((Some("max_length".into()), Problem::Option(format!("{max_length} is out of range (2 to 8192)"))));
    }
    let batching = f.batching();
    Ok(ModelSpec {
        source: ModelSource::Sentence { dir: f.model, max_length, normalize: f.normalize.unwrap_or(true) },
        learn: None,
        inputs: ModelInputs::One(parse_ref(&f.input, "input")?),
        outputs: ModelOutputs::One(f.output.unwrap_or_else(|| "embedding".into())),
        batching: batching.resolve(Batching::default())?,
    })
}

/// A learning node's keys that it would ignore, refused whenever given (even at their
/// default): see [`unused_by_learning`].
fn given_but_unused_by_learning(f: &ModelFile) -> NodeResult<()> {
    let mut given = f.batching().given().into_iter().chain([
        ("activation", f.activation.is_some()),
        ("output_activation", f.output_activation.is_some()),
        ("layers", f.layers.is_some() && f.weights.is_none()),
    ]);
    match given.find(|(_, given)| *given) {
        Some((key, _)) => Err((Some(key.into()), unused_by_learning(key))),
        None => Ok(()),
    }
}

/// `kind: model`: weir's dense models (`arch:`), or a model of a registered format or
/// kernel (`format:`).
pub(super) fn model(f: ModelFile) -> NodeResult<ModelSpec> {
    match (&f.arch, &f.format) {
        (Some(_), None) => dense(f),
        (None, Some(_)) => format_model(f),
        (Some(_), Some(_)) => Err((
            Some("format".into()),
            Problem::Option(
                "a model node has either 'arch' (weir's dense models) or 'format' (a model file or kernel), not both"
                    .into(),
            ),
        )),
        (None, None) => Err((
            Some("format".into()),
            Problem::Option(
                "a model node needs 'format' (onnx, xgboost, lightgbm or a registered kernel) or 'arch' (linear, mlp)"
                    .into(),
            ),
        )),
    }
}

/// `format:` models: the file and parameters go to the format when the graph is
/// planned; inputs and outputs are wired by the model's names.
fn format_model(f: ModelFile) -> NodeResult<ModelSpec> {
    refuse_given(
        &[
            ("weights", f.weights.is_some()),
            ("layers", f.layers.is_some()),
            ("activation", f.activation.is_some()),
            ("output_activation", f.output_activation.is_some()),
            ("learn", f.learn.is_some()),
        ],
        "is for weir's dense models ('arch:'); a 'format:' model reads its file from 'path'",
    )?;
    let inputs = match (&f.input, &f.inputs) {
        (Some(input), None) => ModelInputs::One(parse_ref(input, "input")?),
        (None, Some(map)) => ModelInputs::Named(
            pairs(map, "inputs")?
                .into_iter()
                .map(|(name, field)| Ok((name.clone(), parse_ref(&field, &format!("inputs.{name}"))?)))
                .collect::<NodeResult<_>>()?,
        ),
        (Some(_), Some(_)) => {
            return Err((
                Some("inputs".into()),
                Problem::Option(
                    "give 'input' (a model with one input) or 'inputs' (by the model's names), not both".into(),
                ),
            ))
        }
        (None, None) => {
            return Err((
                Some("input".into()),
                Problem::Syntax("missing field `input` (or `inputs`, by the model's input names)".into()),
            ))
        }
    };
    let outputs = match (&f.output, &f.outputs) {
        (Some(output), None) => ModelOutputs::One(output.clone()),
        (None, Some(map)) => ModelOutputs::Named(pairs(map, "outputs")?),
        (None, None) => ModelOutputs::Own,
        (Some(_), Some(_)) => {
            return Err((
                Some("outputs".into()),
                Problem::Option(
                    "give 'output' (a model with one output) or 'outputs' (by the model's names), not both".into(),
                ),
            ))
        }
    };
    let batching = f.batching().resolve(Batching::default())?;
    Ok(ModelSpec {
        source: ModelSource::Format {
            format: f.format.unwrap_or_default(),
            path: f.path,
            params: f.params.unwrap_or(serde_yaml::Value::Null),
        },
        learn: None,
        inputs,
        outputs,
        batching,
    })
}

/// An error naming the first of `keys` that was given: `'KEY' WHY`.
fn refuse_given(keys: &[(&str, bool)], why: &str) -> NodeResult<()> {
    match keys.iter().find(|(_, given)| *given) {
        Some((key, _)) => Err((Some((*key).into()), Problem::Option(format!("'{key}' {why}")))),
        None => Ok(()),
    }
}

/// A mapping of names to names (`inputs:`, `outputs:`), in file order.
fn pairs(map: &serde_yaml::Mapping, key: &str) -> NodeResult<Vec<(String, String)>> {
    map.iter()
        .map(|(k, v)| match (k.as_str(), v.as_str()) {
            (Some(k), Some(v)) => Ok((k.to_string(), v.to_string())),
            _ => Err((Some(key.into()), Problem::Syntax(format!("'{key}' maps names to names, got {k:?}: {v:?}")))),
        })
        .collect()
}

/// `arch:` models: weir's dense models, from safetensors weights or learned.
fn dense(f: ModelFile) -> NodeResult<ModelSpec> {
    let batching = f.batching();
    refuse_given(
        &[
            ("format", f.format.is_some()),
            ("path", f.path.is_some()),
            ("params", f.params.is_some()),
            ("inputs", f.inputs.is_some()),
            ("outputs", f.outputs.is_some()),
        ],
        "is for 'format:' models; a dense model ('arch:') reads 'weights', 'input' and 'output'",
    )?;
    let Some(input) = &f.input else {
        return Err((Some("input".into()), Problem::Syntax("missing field `input`".into())));
    };
    if f.learn.is_some() {
        given_but_unused_by_learning(&f)?;
    }
    let arch_name = f.arch.clone().unwrap_or_default();
    let arch = parse_enum(&arch_name, "arch")?;
    if arch == Arch::Linear && f.activation.is_some() {
        return Err((
            Some("activation".into()),
            Problem::Option(
                "'activation' does not apply to a linear model: it has one layer, no hidden activation".into(),
            ),
        ));
    }
    // A linear model has no hidden activation; an MLP's defaults to relu.
    let hidden = f.activation.as_deref().unwrap_or(if arch == Arch::Linear { "none" } else { "relu" });
    let learn = f.learn.map(learn).transpose()?.map(Box::new);
    let source = match (f.weights, &learn) {
        (Some(path), _) => ModelSource::File {
            path,
            arch,
            sizes: f.layers,
            hidden_activation: parse_enum(hidden, "activation")?,
            output_activation: parse_enum(f.output_activation.as_deref().unwrap_or("none"), "output_activation")?,
        },
        (None, Some(_)) => {
            if arch != Arch::Linear {
                return Err((
                    Some("arch".into()),
                    Problem::Option(format!("a learning model is 'linear', got '{arch_name}'")),
                ));
            }
            ModelSource::Untrained
        }
        (None, None) => {
            return Err((
                Some("weights".into()),
                Problem::Option(
                    "a model node needs 'weights' (a safetensors file), or 'learn:' to learn them from feedback".into(),
                ),
            ))
        }
    };
    Ok(ModelSpec {
        source,
        learn,
        inputs: ModelInputs::One(parse_ref(input, "input")?),
        outputs: ModelOutputs::One(f.output.unwrap_or_else(|| "y".into())),
        batching: batching.resolve(Batching::default())?,
    })
}
