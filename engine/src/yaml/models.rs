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
        arch: String,
        #[serde(default)]
        weights: Option<PathBuf>,
        input: String,
        #[serde(default)]
        output: Option<String>,
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

/// An `embed` node's default `max_wait_ms`: a transformer's forward pass takes
/// milliseconds to hundreds of them, so a partial batch goes as soon as a replica is
/// free and rows gather while it computes; waiting 2 ms first cost throughput at one
/// connection (BENCHMARKS.md, "Sentence embeddings", change 3).
const EMBED_MAX_WAIT_MS: u64 = 0;

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
        input: parse_ref(&f.input, "input")?,
        output: f.output.unwrap_or_else(|| "embedding".into()),
        batching: batching.resolve(Batching { max_wait_ms: EMBED_MAX_WAIT_MS, ..Batching::default() })?,
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

pub(super) fn model(f: ModelFile) -> NodeResult<ModelSpec> {
    let batching = f.batching();
    if f.learn.is_some() {
        given_but_unused_by_learning(&f)?;
    }
    let arch = parse_enum(&f.arch, "arch")?;
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
                    Problem::Option(format!("a learning model is 'linear', got '{}'", f.arch)),
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
        input: parse_ref(&f.input, "input")?,
        output: f.output.unwrap_or_else(|| "y".into()),
        batching: batching.resolve(Batching::default())?,
    })
}
