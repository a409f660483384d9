//! `combine` nodes: join the streams the node reads per row and aggregate one field of
//! each. Inputs are at least one and listed once each; their types must suit the
//! aggregate.

use weir_operators::dataflow::CombineSpec as CombineOp;

use super::scope::{at, NodeResult, Resolved, Scope};
use crate::error::Problem;
use crate::plan::step::StepOp;
use crate::spec::{CombineSpec, FieldRef};

/// Resolves combine node `node` (`c`) reading `refs` (each with its YAML key) from
/// `scope`, the joined record of its streams; `extra_fields` lists, per stream after
/// the first, the indices of the fields only it carries.
pub(super) fn resolve(
    node: &str,
    c: &CombineSpec,
    refs: &[(String, &FieldRef)],
    scope: &Scope,
    extra_fields: Vec<Vec<usize>>,
) -> NodeResult<Resolved> {
    if c.inputs.is_empty() {
        return Err((Some("inputs".into()), Problem::Option("combine needs at least one input".into())));
    }
    let mut parts = Vec::new();
    let mut types = Vec::new();
    for (key, r) in refs {
        if c.inputs.iter().filter(|x| x == r).count() > 1 {
            return Err((Some(key.clone()), Problem::Duplicate(format!("input '{r}' is listed twice"))));
        }
        let (i, ty) = scope.index(key, r)?;
        parts.push(i);
        types.push(ty);
    }
    let ty = at("inputs", c.aggregate.output_type(&types).map_err(Problem::Type))?;
    let op = CombineOp { node: node.into(), extra_fields, parts, aggregate: c.aggregate.clone(), output: ty.clone() };
    Ok(Resolved { op: StepOp::Combine(op), outputs: vec![(c.output.clone(), ty)] })
}
