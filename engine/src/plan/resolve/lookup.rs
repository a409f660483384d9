//! `lookup` nodes: a join with one of the graph's tables by key. The table exists, the
//! key field has the table's key type, and the missing-key policy fits the table's value
//! fields. The node adds the value fields and `found`; with `missing: route` it splits
//! its rows into [`LOOKUP_BRANCHES`], and rows on `missing` carry `found` but no value
//! fields ([`missing_branch_schema`]).

use weir_operators::dataflow::lookup::Missing;
use weir_operators::{Column, DType, FieldType, Value};

use super::scope::{NodeResult, Resolved, Scope};
use crate::error::Problem;
use crate::plan::step::{Schema, StepOp, LOOKUP_BRANCHES};
use crate::spec::{LookupSpec, MissingSpec, TableSpec};

/// Resolves lookup node `l` against the graph's `tables`, reading from `scope`.
pub(super) fn resolve(l: &LookupSpec, tables: &[TableSpec], scope: &Scope) -> NodeResult<Resolved> {
    let Some(table) = tables.iter().position(|t| t.name == l.table) else {
        let known: Vec<&str> = tables.iter().map(|t| t.name.as_str()).collect();
        return Err((
            Some("table".into()),
            Problem::Option(format!("no table '{}' (tables: {})", l.table, known.join(", "))),
        ));
    };
    let t = &tables[table];
    let (key, ty) = scope.index("key", &l.key)?;
    if ty != t.key_type {
        return Err((
            Some("key".into()),
            Problem::Type(format!("table '{}' has {} keys, but '{}' is {ty}", t.name, t.key_type, l.key)),
        ));
    }
    let missing = missing(t, &l.missing)?;
    let mut outputs: Vec<(String, FieldType)> = t.values.clone();
    outputs.push(("found".into(), FieldType::scalar(DType::Bool)));
    let values = t.values.iter().map(|(_, ty)| ty.clone()).collect();
    let branches = match l.missing {
        MissingSpec::Route => LOOKUP_BRANCHES.iter().map(|b| b.to_string()).collect(),
        _ => Vec::new(),
    };
    Ok(Resolved { op: StepOp::Lookup { table, key, values, missing, branches }, outputs })
}

/// The layout of the rows on a routed lookup's `missing` branch: `schema` (the rows it
/// read, then the `values` value fields, then `found`) without the value fields.
pub(super) fn missing_branch_schema(mut schema: Schema, values: usize) -> Schema {
    let found = schema.fields.len() - 1;
    schema.fields.drain(found - values..found);
    schema
}

/// A lookup's missing-key policy against its table: defaults name every value field
/// once, each of the field's type (an integer is taken for an `f32` field). A routed
/// lookup fills missing rows with zero values, which its `missing` branch drops.
fn missing(t: &TableSpec, m: &MissingSpec) -> NodeResult<Missing> {
    let given = match m {
        MissingSpec::Defaults(given) => given,
        MissingSpec::Error => return Ok(Missing::Fail),
        MissingSpec::Route => {
            return Ok(Missing::Defaults(t.values.iter().map(|(_, ty)| Column::filler(ty, 1).value(0)).collect()))
        }
    };
    let mut values = Vec::with_capacity(t.values.len());
    for (name, ty) in &t.values {
        let Some((_, v)) = given.iter().find(|(n, _)| n == name) else {
            return Err((
                Some(format!("defaults.{name}")),
                Problem::Option(format!(
                    "missing: default needs a default for every value field of table '{}'; '{name}' has none",
                    t.name
                )),
            ));
        };
        let v = match (v, ty.dtype) {
            (Value::I64(i), DType::F32) => Value::F32(*i as f32),
            _ => v.clone(),
        };
        if !v.conforms_to(ty) {
            return Err((
                Some(format!("defaults.{name}")),
                Problem::Type(format!("'{name}' is {ty}, the default is {v:?}")),
            ));
        }
        values.push(v);
    }
    if let Some((n, _)) = given.iter().find(|(n, _)| !t.values.iter().any(|(v, _)| v == n)) {
        return Err((
            Some(format!("defaults.{n}")),
            Problem::Option(format!("table '{}' has no value field '{n}'", t.name)),
        ));
    }
    Ok(Missing::Defaults(values))
}
