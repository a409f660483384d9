//! `merge` nodes: the union of a route's branches. The node reads exactly one stream
//! per branch of one route (each inside that branch, at the same depth), and emits the
//! fields every stream carries with one type, then the fields it names, each taken from
//! one field per stream (in `from` order) of one type.

use std::collections::HashMap;

use weir_operators::FieldType;

use super::scope::{Context, NodeResult, Resolved, Scope};
use crate::error::Problem;
use crate::plan::step::{Schema, Step, StepOp};
use crate::spec::{FieldRef, MergeSpec};

/// One stream a merge reads.
pub(super) struct MergedStream<'a> {
    /// The stream's name, for errors (`route.branch`, or a node inside the branch).
    pub(super) name: String,
    /// The layout of its rows.
    pub(super) schema: &'a Schema,
    /// The route branches it sits on.
    pub(super) context: &'a Context,
}

/// A merge's resolved parts.
pub(super) struct Merged {
    /// Its operator and the fields it names.
    pub(super) resolved: Resolved,
    /// The layout of its rows before the fields it names: what every stream carries.
    pub(super) common: Schema,
    /// The route branches it sits on: the merged route's.
    pub(super) context: Context,
}

/// Resolves merge node `m` reading `streams` (in `from` order, at least one), given the
/// `steps` resolved so far and the output field names `declared` by every node.
pub(super) fn resolve(
    m: &MergeSpec,
    streams: &[MergedStream],
    steps: &[Step],
    declared: &HashMap<String, Vec<String>>,
) -> NodeResult<Merged> {
    let outer = merged_route(streams, steps)?;
    let schemas: Vec<&Schema> = streams.iter().map(|s| s.schema).collect();
    let common: Vec<(FieldRef, FieldType)> = schemas[0]
        .fields
        .iter()
        .filter(|(f, t)| schemas.iter().all(|s| s.index_of(f).is_some_and(|i| &s.fields[i].1 == t)))
        .cloned()
        .collect();
    let mut layouts: Vec<Vec<usize>> =
        schemas.iter().map(|s| common.iter().filter_map(|(f, _)| s.index_of(f)).collect()).collect();
    let mut outputs = Vec::new();
    for (name, refs) in &m.fields {
        let key = format!("fields.{name}");
        if refs.len() != streams.len() {
            return Err((
                Some(key),
                Problem::Option(format!(
                    "names {} fields for {} merged streams (one per 'from' stream, in order)",
                    refs.len(),
                    streams.len()
                )),
            ));
        }
        let mut ty: Option<FieldType> = None;
        for (k, r) in refs.iter().enumerate() {
            let path = format!("'{}'", streams[k].name);
            let scope = Scope { schema: schemas[k], path: &path, declared };
            let (i, t) = scope.index(&format!("{key}[{k}]"), r)?;
            if let Some(prev) = &ty {
                if prev != &t {
                    return Err((
                        Some(format!("{key}[{k}]")),
                        Problem::Type(format!("'{r}' is {t}, but '{}' is {prev}", refs[0])),
                    ));
                }
            }
            ty = Some(t);
            layouts[k].push(i);
        }
        if let Some(t) = ty {
            outputs.push((name.clone(), t));
        }
    }
    Ok(Merged {
        resolved: Resolved { op: StepOp::Merge { layouts }, outputs },
        common: Schema { fields: common },
        context: outer,
    })
}

/// The route branches the merged route sits on, once checked that every stream is
/// inside one branch of one route, at the same depth, and every branch has exactly one.
fn merged_route(streams: &[MergedStream], steps: &[Step]) -> NodeResult<Context> {
    let first = streams[0].context;
    let Some(&(route, _)) = first.last() else {
        return Err((
            Some("from".into()),
            Problem::Topology(format!("'{}' is not inside a route branch", streams[0].name)),
        ));
    };
    let outer = first[..first.len() - 1].to_vec();
    let mut covered = Vec::new();
    for s in streams {
        match s.context.split_last() {
            Some((&(r, b), rest)) if r == route && rest == outer.as_slice() => covered.push(b),
            _ => {
                return Err((
                    Some("from".into()),
                    Problem::Topology(format!(
                        "'{}' is not on a branch of route '{}' (a merge takes one stream per branch of one route; merge inner routes first)",
                        s.name,
                        steps[route].name
                    )),
                ))
            }
        }
    }
    let Some(branches) = steps[route].op.branches() else {
        return Err((None, Problem::Topology("internal: merge context is not a route".into())));
    };
    for (b, name) in branches.iter().enumerate() {
        match covered.iter().filter(|&&c| c == b).count() {
            1 => {}
            0 => {
                return Err((
                    Some("from".into()),
                    Problem::Topology(format!(
                        "misses branch '{}.{name}': rows on it would never reach the output",
                        steps[route].name
                    )),
                ))
            }
            _ => {
                return Err((
                    Some("from".into()),
                    Problem::Duplicate(format!("takes two streams from branch '{}.{name}'", steps[route].name)),
                ))
            }
        }
    }
    Ok(outer)
}
