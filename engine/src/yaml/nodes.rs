//! The node kinds that are not models: `map`, `route`, `combine`, `merge`, `lookup`.

use std::collections::BTreeMap;
use std::path::PathBuf;

use serde::Deserialize;
use serde_yaml::{Mapping, Value as Yaml};
use weir_operators::kernel::aggregate::Aggregate;
use weir_operators::kernel::builtin::Builtin;
use weir_operators::kernel::condition::{Condition, Literal};

use super::{key_str, parse_ref, yaml_value, NodeResult};
use crate::error::Problem;
use crate::spec::*;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct LookupFile {
    table: String,
    key: String,
    #[serde(default)]
    missing: Option<String>,
    #[serde(default)]
    defaults: Mapping,
}

/// `kind: lookup`.
pub(super) fn lookup(f: LookupFile) -> NodeResult<LookupSpec> {
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

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct MapFile {
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

pub(super) fn map_node(f: MapFile) -> NodeResult<MapSpec> {
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
    // The keys of one op or another: each op takes its own and refuses the rest.
    let given = [
        ("mean", f.mean.is_some()),
        ("std", f.std.is_some()),
        ("params", f.params.is_some()),
        ("labels", f.labels.is_some()),
        ("threshold", f.threshold.is_some()),
        ("fields", f.fields.is_some()),
    ];
    let takes: &[&str] = match f.op.as_str() {
        "standardize" => &["mean", "std", "params"],
        "argmax" => &["labels"],
        "threshold" => &["threshold", "labels"],
        "select" => &["fields"],
        "concat" => &[],
        _ => &["mean", "std", "params", "labels", "threshold", "fields"], // an unknown op is refused below
    };
    if let Some((field, _)) = given.iter().find(|(key, present)| *present && !takes.contains(key)) {
        return Err((Some(field.to_string()), Problem::Option(format!("'{field}' does not apply to op '{}'", f.op))));
    }
    let op = match f.op.as_str() {
        "standardize" => {
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
        "argmax" => MapOp::Builtin(Builtin::Argmax { labels: f.labels }),
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
pub(super) struct RouteFile {
    by: String,
    branches: Vec<BranchFile>,
    default: String,
}

pub(super) fn route(f: RouteFile) -> NodeResult<RouteSpec> {
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
pub(super) struct CombineFile {
    aggregate: String,
    inputs: Vec<String>,
    #[serde(default)]
    weights: Option<Vec<f32>>,
    #[serde(default)]
    output: Option<String>,
}

pub(super) fn combine(f: CombineFile) -> NodeResult<CombineSpec> {
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
pub(super) struct MergeFile {
    fields: BTreeMap<String, Vec<String>>,
}

pub(super) fn merge(f: MergeFile) -> NodeResult<MergeSpec> {
    let mut fields = Vec::new();
    for (name, refs) in f.fields {
        let refs = refs.iter().map(|s| parse_ref(s, &format!("fields.{name}"))).collect::<Result<_, _>>()?;
        fields.push((name, refs));
    }
    Ok(MergeSpec { fields })
}
