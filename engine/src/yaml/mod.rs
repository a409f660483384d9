//! The YAML front end: a graph file becomes a [`GraphSpec`].
//!
//! ```yaml
//! name: diamond
//! inputs:            # field: type (f32, i64, bool, str, f32[N])
//!   a: f32
//! nodes:             # name: {kind: model|embed|map|route|combine|merge|lookup, ...}
//!   m1: {kind: model, arch: linear, weights: diamond/m1.safetensors, input: input.a}
//! outputs:           # output field: node.field
//!   y: m1.y
//! ```
//!
//! Unknown keys are errors (a typo never silently means "default"), and so are keys a
//! node would ignore where they are given (a learning node's batching keys, a map op's
//! keys of another op). Paths are relative to the file's directory. The keys of every node kind are listed in `graphs/README.md`.
//! Model nodes are read in `yaml/models.rs`, the other kinds in `yaml/nodes.rs`; the
//! batching keys of the kinds that batch in `yaml/batching.rs`.

use std::path::{Path, PathBuf};

use serde::de::DeserializeOwned;
use serde::Deserialize;
use serde_yaml::{Mapping, Value as Yaml};
use weir_operators::FieldType;

use crate::error::{GraphError, Problem};
use crate::spec::*;

mod batching;
mod models;
mod nodes;

use models::{embed, model};
use nodes::{combine, lookup, map_node, merge, route};

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
