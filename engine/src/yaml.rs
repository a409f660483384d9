//! The YAML front end: a graph file becomes a [`GraphSpec`].
//!
//! ```yaml
//! name: diamond
//! inputs:            # field: type (f32, i64, bool, str, f32[N])
//!   a: f32
//! nodes:             # name: {kind: model|map|route|combine|merge, ...}
//!   m1: {kind: model, arch: linear, weights: diamond/m1.safetensors, input: input.a}
//! outputs:           # output field: node.field
//!   y: m1.y
//! ```
//!
//! Unknown keys are errors (a typo never silently means "default"). Paths are relative to
//! the file's directory. The keys of every node kind are listed in `graphs/README.md`.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::de::DeserializeOwned;
use serde::Deserialize;
use serde_yaml::{Mapping, Value as Yaml};
use weir_operators::kernel::aggregate::Aggregate;
use weir_operators::kernel::builtin::Builtin;
use weir_operators::kernel::condition::{Condition, Literal};
use weir_operators::kernel::learn::Optimizer;
use weir_operators::FieldType;

use crate::error::{GraphError, Problem};
use crate::spec::*;

/// Reads and parses a graph file.
pub fn load_file(path: &Path) -> Result<GraphSpec, GraphError> {
    let origin = path.display().to_string();
    let text = std::fs::read_to_string(path).map_err(|e| GraphError::new(&origin, Problem::Io(e.to_string())))?;
    let base_dir = path.parent().map(Path::to_path_buf).unwrap_or_default();
    parse(&text, &origin, base_dir)
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct GraphFile {
    name: String,
    #[serde(default)]
    #[allow(dead_code)]
    description: Option<String>,
    inputs: Mapping,
    nodes: Mapping,
    outputs: Mapping,
    #[serde(default)]
    serving: Option<ServingFile>,
    #[serde(default)]
    kafka: Option<KafkaFile>,
    #[serde(default)]
    tables: Mapping,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct TableFile {
    key: String,
    #[serde(default = "str_type")]
    key_type: String,
    values: Mapping,
    #[serde(default)]
    snapshot: Option<PathBuf>,
    #[serde(default)]
    topic: Option<String>,
}

fn str_type() -> String {
    "str".into()
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct LookupFile {
    table: String,
    key: String,
    #[serde(default)]
    missing: Option<String>,
    #[serde(default)]
    defaults: Mapping,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct KafkaFile {
    bootstrap_servers: String,
    input_topics: Vec<String>,
    output_topic: String,
    group_id: String,
    dead_letter_topic: String,
    #[serde(default)]
    feedback_topic: Option<String>,
    #[serde(default = "json_format")]
    format: String,
    #[serde(default)]
    properties: std::collections::BTreeMap<String, Yaml>,
}

fn json_format() -> String {
    "json".into()
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ServingFile {
    max_in_flight: Option<usize>,
    timeout_ms: Option<u64>,
}

/// Parses graph YAML; `origin` names it in errors, `base_dir` anchors relative paths.
pub fn parse(text: &str, origin: &str, base_dir: PathBuf) -> Result<GraphSpec, GraphError> {
    let err = |p: Problem| GraphError::new(origin, p);
    let file: GraphFile = serde_yaml::from_str(text).map_err(|e| err(Problem::Syntax(e.to_string())))?;

    let mut inputs = Vec::new();
    for (key, value) in &file.inputs {
        let name = key_str(key).map_err(|p| err(p).at_node(INPUT))?;
        let ty = value
            .as_str()
            .ok_or_else(|| "expected a type such as f32 or f32[64]".to_string())
            .and_then(FieldType::parse)
            .map_err(|m| err(Problem::Syntax(m)).at_node(INPUT).at_field(&name))?;
        inputs.push((name, ty));
    }

    let mut nodes = Vec::new();
    for (key, value) in &file.nodes {
        let name = key_str(key).map_err(err)?;
        let node = parse_node(&name, value).map_err(|(field, p)| {
            let e = err(p).at_node(&name);
            match field {
                Some(f) => e.at_field(f),
                None => e,
            }
        })?;
        nodes.push(node);
    }

    let mut outputs = Vec::new();
    for (key, value) in &file.outputs {
        let name = key_str(key).map_err(err)?;
        let r = value
            .as_str()
            .ok_or_else(|| "expected 'node.field'".to_string())
            .and_then(str::parse)
            .map_err(|m| err(Problem::Syntax(m)).at_node("outputs").at_field(&name))?;
        outputs.push((name, r));
    }

    let mut serving = Serving::default();
    if let Some(s) = file.serving {
        if let Some(n) = s.max_in_flight {
            serving.max_in_flight = n;
        }
        if let Some(ms) = s.timeout_ms {
            serving.timeout_ms = Some(ms);
        }
    }
    let kafka = match file.kafka {
        None => None,
        Some(k) => Some(kafka_spec(k).map_err(|(field, m)| err(Problem::Option(m)).at_node("kafka").at_field(&field))?),
    };
    let mut tables = Vec::new();
    for (key, value) in &file.tables {
        let name = key_str(key).map_err(|p| err(p).at_node("tables"))?;
        let at = |field: Option<String>, p: Problem| {
            let e = err(p).at_node(&format!("tables.{name}"));
            match field {
                Some(f) => e.at_field(f),
                None => e,
            }
        };
        let t: TableFile =
            serde_yaml::from_value(value.clone()).map_err(|e| at(None, Problem::Syntax(e.to_string())))?;
        tables.push(table(&name, t, &base_dir).map_err(|(f, p)| at(f, p))?);
    }
    Ok(GraphSpec {
        name: file.name,
        origin: origin.to_string(),
        base_dir,
        inputs,
        nodes,
        outputs,
        serving,
        kafka,
        tables,
    })
}

fn kafka_spec(k: KafkaFile) -> Result<KafkaSpec, (String, String)> {
    let format = match k.format.as_str() {
        "json" => PayloadFormat::Json,
        "arrow" => PayloadFormat::Arrow,
        other => {
            return Err(("format".into(), format!("unknown payload format '{other}', expected one of: json, arrow")))
        }
    };
    if k.input_topics.is_empty() {
        return Err(("input_topics".into(), "name at least one input topic".into()));
    }
    let mut properties = Vec::new();
    for (key, value) in k.properties {
        let value = match value {
            Yaml::String(s) => s,
            Yaml::Number(n) => n.to_string(),
            Yaml::Bool(b) => b.to_string(),
            other => {
                return Err((
                    format!("properties.{key}"),
                    format!("expected a string, number or boolean, got {other:?}"),
                ))
            }
        };
        properties.push((key, value));
    }
    Ok(KafkaSpec {
        bootstrap_servers: k.bootstrap_servers,
        input_topics: k.input_topics,
        output_topic: k.output_topic,
        group_id: k.group_id,
        dead_letter_topic: k.dead_letter_topic,
        feedback_topic: k.feedback_topic,
        format,
        properties,
    })
}

type NodeResult<T> = Result<T, (Option<String>, Problem)>;

fn key_str(key: &Yaml) -> Result<String, Problem> {
    key.as_str().map(str::to_string).ok_or_else(|| Problem::Syntax(format!("expected a name, got {key:?}")))
}

fn parse_node(name: &str, value: &Yaml) -> NodeResult<NodeSpec> {
    let Yaml::Mapping(map) = value else {
        return Err((None, Problem::Syntax("a node is a mapping with a 'kind' key".into())));
    };
    let mut map = map.clone();
    let kind = match map.remove("kind") {
        Some(Yaml::String(k)) => k,
        Some(_) => return Err((Some("kind".into()), Problem::Syntax("'kind' must be a string".into()))),
        None => {
            return Err((
                Some("kind".into()),
                Problem::Syntax("missing 'kind' (one of: model, embed, map, route, combine, merge, lookup)".into()),
            ))
        }
    };
    let from = match map.remove("from") {
        None => Vec::new(),
        Some(Yaml::String(s)) => vec![parse_ref::<StreamRef>(&s, "from")?],
        Some(Yaml::Sequence(items)) => items
            .iter()
            .map(|i| i.as_str().ok_or((Some("from".into()), Problem::Syntax("expected stream names".into()))))
            .map(|s| s.and_then(|s| parse_ref::<StreamRef>(s, "from")))
            .collect::<Result<_, _>>()?,
        Some(_) => return Err((Some("from".into()), Problem::Syntax("expected a stream name or a list".into()))),
    };
    let rest = Yaml::Mapping(map);
    let kind = match kind.as_str() {
        "model" => NodeKind::Model(model(de(rest)?)?),
        "embed" => NodeKind::Model(embed(de(rest)?)?),
        "map" => NodeKind::Map(map_node(de(rest)?)?),
        "route" => NodeKind::Route(route(de(rest)?)?),
        "combine" => NodeKind::Combine(combine(de(rest)?)?),
        "merge" => NodeKind::Merge(merge(de(rest)?)?),
        "lookup" => NodeKind::Lookup(lookup(de(rest)?)?),
        other => return Err((Some("kind".into()), Problem::UnknownKind(other.to_string()))),
    };
    Ok(NodeSpec { name: name.to_string(), from, kind })
}

/// A `tables:` entry.
fn table(name: &str, t: TableFile, base_dir: &Path) -> NodeResult<TableSpec> {
    let key_type = FieldType::parse(&t.key_type).map_err(|m| (Some("key_type".into()), Problem::Syntax(m)))?;
    let mut values = Vec::new();
    for (k, v) in &t.values {
        let field = key_str(k).map_err(|p| (Some("values".into()), p))?;
        let ty = v
            .as_str()
            .ok_or_else(|| "expected a type such as f32 or str".to_string())
            .and_then(FieldType::parse)
            .map_err(|m| (Some(format!("values.{field}")), Problem::Syntax(m)))?;
        values.push((field, ty));
    }
    let snapshot = t.snapshot.map(|p| base_dir.join(p));
    if t.topic.as_deref().is_some_and(|topic| topic.trim().is_empty()) {
        return Err((Some("topic".into()), Problem::Option("the topic's name is empty".into())));
    }
    Ok(TableSpec { name: name.to_string(), key: t.key, key_type, values, snapshot, topic: t.topic })
}

/// `kind: lookup`.
fn lookup(f: LookupFile) -> NodeResult<LookupSpec> {
    let missing = match f.missing.as_deref().unwrap_or("default") {
        "default" => {
            let mut defaults = Vec::new();
            for (k, v) in &f.defaults {
                let field = key_str(k).map_err(|p| (Some("defaults".into()), p))?;
                let value = yaml_value(v).map_err(|m| (Some(format!("defaults.{field}")), Problem::Syntax(m)))?;
                defaults.push((field, value));
            }
            MissingSpec::Defaults(defaults)
        }
        "error" | "route" if !f.defaults.is_empty() => {
            return Err((
                Some("defaults".into()),
                Problem::Option("'defaults' apply only with missing: default".into()),
            ))
        }
        "error" => MissingSpec::Error,
        "route" => MissingSpec::Route,
        other => {
            return Err((
                Some("missing".into()),
                Problem::Option(format!("missing: '{other}' is not one of: default, error, route")),
            ))
        }
    };
    Ok(LookupSpec { table: f.table, key: parse_ref(&f.key, "key")?, missing })
}

/// A scalar YAML value: an integer is `i64`, another number `f32`.
fn yaml_value(v: &Yaml) -> Result<weir_operators::Value, String> {
    use weir_operators::Value;
    match v {
        Yaml::Bool(b) => Ok(Value::Bool(*b)),
        Yaml::Number(n) => match n.as_i64() {
            Some(i) => Ok(Value::I64(i)),
            None => n.as_f64().map(|x| Value::F32(x as f32)).ok_or_else(|| format!("{n} is not a number weir reads")),
        },
        Yaml::String(s) => Ok(Value::Str(s.as_str().into())),
        _ => Err("expected a number, a boolean or a string".into()),
    }
}

fn de<T: DeserializeOwned>(v: Yaml) -> NodeResult<T> {
    serde_yaml::from_value(v).map_err(|e| (None, Problem::Syntax(e.to_string())))
}

fn parse_ref<T: std::str::FromStr<Err = String>>(s: &str, field: &str) -> NodeResult<T> {
    s.parse().map_err(|m| (Some(field.to_string()), Problem::Syntax(m)))
}

fn parse_enum<T: std::str::FromStr<Err = String>>(s: &str, field: &str) -> NodeResult<T> {
    s.parse().map_err(|m| (Some(field.to_string()), Problem::Option(m)))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ModelFile {
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
    #[serde(default)]
    max_batch_size: Option<usize>,
    #[serde(default)]
    max_wait_ms: Option<u64>,
    #[serde(default)]
    replicas: Option<usize>,
    #[serde(default)]
    device: Option<String>,
    #[serde(default)]
    learn: Option<LearnFile>,
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

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct EmbedFile {
    model: PathBuf,
    input: String,
    #[serde(default)]
    output: Option<String>,
    #[serde(default)]
    max_length: Option<usize>,
    #[serde(default)]
    normalize: Option<bool>,
    #[serde(default)]
    max_batch_size: Option<usize>,
    #[serde(default)]
    max_wait_ms: Option<u64>,
    #[serde(default)]
    replicas: Option<usize>,
    #[serde(default)]
    device: Option<String>,
}

/// A model node's batching keys, defaults where absent.
fn batching(
    max_batch_size: Option<usize>,
    max_wait_ms: Option<u64>,
    replicas: Option<usize>,
    device: Option<String>,
) -> NodeResult<Batching> {
    let defaults = Batching::default();
    Ok(Batching {
        max_batch_size: max_batch_size.unwrap_or(defaults.max_batch_size),
        max_wait_ms: max_wait_ms.unwrap_or(defaults.max_wait_ms),
        replicas: replicas.unwrap_or(defaults.replicas),
        device: match device {
            Some(d) => parse_enum(&d, "device")?,
            None => defaults.device,
        },
    })
}

/// An `embed` node's default `max_wait_ms`: a transformer's forward pass takes
/// milliseconds to hundreds of them, so a partial batch goes as soon as a replica is
/// free and rows gather while it computes (waiting 2 ms first cost 15% of the throughput
/// at one connection: BENCHMARKS.md, sentence embeddings).
const EMBED_MAX_WAIT_MS: u64 = 0;

/// `kind: embed`: a model node whose model is a sentence-embedding directory.
fn embed(f: EmbedFile) -> NodeResult<ModelSpec> {
    let max_length = f.max_length.unwrap_or(256);
    if !(2..=8192).contains(&max_length) {
        return Err((Some("max_length".into()), Problem::Option(format!("{max_length} is out of range (2 to 8192)"))));
    }
    Ok(ModelSpec {
        source: ModelSource::Sentence { dir: f.model, max_length, normalize: f.normalize.unwrap_or(true) },
        learn: None,
        input: parse_ref(&f.input, "input")?,
        output: f.output.unwrap_or_else(|| "embedding".into()),
        batching: batching(f.max_batch_size, f.max_wait_ms.or(Some(EMBED_MAX_WAIT_MS)), f.replicas, f.device)?,
    })
}

fn model(f: ModelFile) -> NodeResult<ModelSpec> {
    let learn = f.learn.map(learn).transpose()?.map(Box::new);
    let source = match (f.weights, &learn) {
        (Some(path), _) => ModelSource::File {
            path,
            arch: parse_enum(&f.arch, "arch")?,
            sizes: f.layers,
            hidden_activation: parse_enum(f.activation.as_deref().unwrap_or("relu"), "activation")?,
            output_activation: parse_enum(f.output_activation.as_deref().unwrap_or("none"), "output_activation")?,
        },
        (None, Some(_)) => {
            if f.arch != "linear" {
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
        batching: batching(f.max_batch_size, f.max_wait_ms, f.replicas, f.device)?,
    })
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct MapFile {
    op: String,
    #[serde(default)]
    input: Option<String>,
    #[serde(default)]
    inputs: Option<Vec<String>>,
    #[serde(default)]
    output: Option<String>,
    #[serde(default)]
    outputs: Option<Vec<String>>,
    #[serde(default)]
    mean: Option<Vec<f32>>,
    #[serde(default)]
    std: Option<Vec<f32>>,
    #[serde(default)]
    params: Option<PathBuf>,
    #[serde(default)]
    labels: Option<Vec<String>>,
    #[serde(default)]
    threshold: Option<f32>,
    #[serde(default)]
    fields: Option<BTreeMap<String, String>>,
}

fn map_node(f: MapFile) -> NodeResult<MapSpec> {
    let refs =
        |list: Vec<String>| -> NodeResult<Vec<FieldRef>> { list.iter().map(|s| parse_ref(s, "inputs")).collect() };
    let mut inputs = match (f.input, f.inputs) {
        (Some(one), None) => vec![parse_ref(&one, "input")?],
        (None, Some(many)) => refs(many)?,
        (None, None) if f.op == "select" => Vec::new(),
        (None, None) => {
            return Err((Some("input".into()), Problem::Syntax("a map node needs 'input' or 'inputs'".into())))
        }
        (Some(_), Some(_)) => {
            return Err((Some("inputs".into()), Problem::Syntax("give 'input' or 'inputs', not both".into())))
        }
    };
    let mut outputs = match (f.output, f.outputs) {
        (Some(one), None) => vec![one],
        (None, Some(many)) => many,
        (None, None) => Vec::new(),
        (Some(_), Some(_)) => {
            return Err((Some("outputs".into()), Problem::Syntax("give 'output' or 'outputs', not both".into())))
        }
    };
    let unused = |field: &str, present: bool| -> NodeResult<()> {
        if present {
            Err((Some(field.into()), Problem::Option(format!("'{field}' does not apply to op '{}'", f.op))))
        } else {
            Ok(())
        }
    };
    let op = match f.op.as_str() {
        "standardize" => {
            unused("labels", f.labels.is_some())?;
            unused("threshold", f.threshold.is_some())?;
            match (f.params, f.mean, f.std) {
                (Some(path), None, None) => MapOp::StandardizeFile(path),
                (None, Some(mean), Some(std)) => MapOp::Builtin(Builtin::Standardize { mean, std }),
                _ => {
                    return Err((
                        Some("params".into()),
                        Problem::Option("standardize needs either 'params' (a safetensors file with 'mean' and 'std') or both 'mean' and 'std'".into()),
                    ))
                }
            }
        }
        "argmax" => {
            unused("threshold", f.threshold.is_some())?;
            MapOp::Builtin(Builtin::Argmax { labels: f.labels })
        }
        "threshold" => {
            let threshold =
                f.threshold.ok_or((Some("threshold".into()), Problem::Option("threshold needs 'threshold'".into())))?;
            let labels = match f.labels {
                None => None,
                Some(l) => Some(<[String; 2]>::try_from(l).map_err(|l| {
                    (
                        Some("labels".into()),
                        Problem::Option(format!("threshold takes 2 labels [below, above], got {}", l.len())),
                    )
                })?),
            };
            MapOp::Builtin(Builtin::Threshold { threshold, labels })
        }
        "select" => {
            let fields = f.fields.ok_or((
                Some("fields".into()),
                Problem::Option("select needs 'fields: {new_name: node.field}'".into()),
            ))?;
            for (name, r) in fields {
                outputs.push(name);
                inputs.push(parse_ref(&r, "fields")?);
            }
            MapOp::Builtin(Builtin::Select)
        }
        "concat" => MapOp::Builtin(Builtin::Concat),
        other => {
            return Err((
                Some("op".into()),
                Problem::Option(format!(
                    "unknown map op '{other}' (expected standardize, argmax, threshold, select or concat)"
                )),
            ))
        }
    };
    Ok(MapSpec { op, inputs, outputs })
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct BranchFile {
    name: String,
    when: Mapping,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RouteFile {
    by: String,
    branches: Vec<BranchFile>,
    default: String,
}

fn route(f: RouteFile) -> NodeResult<RouteSpec> {
    let mut branches = Vec::new();
    for b in f.branches {
        let field = format!("branches.{}.when", b.name);
        let cond = condition(&b.when).map_err(|m| (Some(field), Problem::Option(m)))?;
        branches.push((b.name, cond));
    }
    Ok(RouteSpec { by: parse_ref(&f.by, "by")?, branches, default: f.default })
}

fn literal(v: &Yaml) -> Result<Literal, String> {
    match v {
        Yaml::Number(n) => n.as_f64().map(Literal::Number).ok_or_else(|| format!("bad number {n}")),
        Yaml::String(s) => Ok(Literal::Str(s.clone())),
        Yaml::Bool(b) => Ok(Literal::Bool(*b)),
        other => Err(format!("expected a number, string or boolean, got {other:?}")),
    }
}

fn condition(m: &Mapping) -> Result<Condition, String> {
    let mut entries = m.iter();
    let (Some((op, v)), None) = (entries.next(), entries.next()) else {
        return Err("a condition has exactly one operator, e.g. {ge: 0.9} or {in: [a, b]}".into());
    };
    let num = || v.as_f64().ok_or_else(|| format!("expected a number, got {v:?}"));
    Ok(match op.as_str().unwrap_or("") {
        "eq" => Condition::Eq(literal(v)?),
        "ne" => Condition::Ne(literal(v)?),
        "lt" => Condition::Lt(num()?),
        "le" => Condition::Le(num()?),
        "gt" => Condition::Gt(num()?),
        "ge" => Condition::Ge(num()?),
        "in" => {
            Condition::In(v.as_sequence().ok_or("'in' takes a list")?.iter().map(literal).collect::<Result<_, _>>()?)
        }
        other => return Err(format!("unknown condition '{other}' (expected eq, ne, lt, le, gt, ge or in)")),
    })
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct CombineFile {
    aggregate: String,
    inputs: Vec<String>,
    #[serde(default)]
    weights: Option<Vec<f32>>,
    #[serde(default)]
    output: Option<String>,
}

fn combine(f: CombineFile) -> NodeResult<CombineSpec> {
    let aggregate = match (f.aggregate.as_str(), f.weights) {
        ("mean", None) => Aggregate::Mean,
        ("sum", None) => Aggregate::Sum,
        ("vote", None) => Aggregate::Vote,
        ("dot", None) => Aggregate::Dot,
        ("weighted_mean", Some(w)) => Aggregate::WeightedMean(w),
        ("weighted_mean", None) => {
            return Err((Some("weights".into()), Problem::Option("weighted_mean needs 'weights'".into())))
        }
        ("mean" | "sum" | "vote" | "dot", Some(_)) => {
            return Err((
                Some("weights".into()),
                Problem::Option(format!("'weights' does not apply to '{}'", f.aggregate)),
            ))
        }
        (other, _) => {
            return Err((
                Some("aggregate".into()),
                Problem::Option(format!(
                    "unknown aggregate '{other}' (expected mean, weighted_mean, sum, vote or dot)"
                )),
            ))
        }
    };
    let inputs = f.inputs.iter().map(|s| parse_ref(s, "inputs")).collect::<Result<_, _>>()?;
    Ok(CombineSpec { inputs, aggregate, output: f.output.unwrap_or_else(|| "y".into()) })
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct MergeFile {
    fields: BTreeMap<String, Vec<String>>,
}

fn merge(f: MergeFile) -> NodeResult<MergeSpec> {
    let mut fields = Vec::new();
    for (name, refs) in f.fields {
        let refs = refs.iter().map(|s| parse_ref(s, &format!("fields.{name}"))).collect::<Result<_, _>>()?;
        fields.push((name, refs));
    }
    Ok(MergeSpec { fields })
}
