//! `route` nodes: every row takes the first branch whose condition holds on the `by`
//! field, else the default branch (the last). Branch names are unique, there is at
//! least one conditional branch, and every condition fits the field's type. A route
//! adds no fields; the walk ([`super`]) registers one stream per branch.

use super::scope::{at, NodeResult, Resolved, Scope};
use crate::error::Problem;
use crate::plan::names::unique;
use crate::plan::step::StepOp;
use crate::spec::RouteSpec;

/// Resolves route node `rt` reading from `scope`.
pub(super) fn resolve(rt: &RouteSpec, scope: &Scope) -> NodeResult<Resolved> {
    let (by, ty) = scope.index("by", &rt.by)?;
    let mut branches: Vec<String> = rt.branches.iter().map(|(n, _)| n.clone()).collect();
    branches.push(rt.default.clone());
    at("branches", unique(branches.iter().map(String::as_str), "branch"))?;
    if rt.branches.is_empty() {
        return Err((Some("branches".into()), Problem::Option("a route needs at least one conditional branch".into())));
    }
    for (name, c) in &rt.branches {
        c.check(&ty).map_err(|m| (Some(format!("branches.{name}.when")), Problem::Type(m)))?;
    }
    let conditions = rt.branches.iter().map(|(_, c)| c.clone()).collect();
    Ok(Resolved { op: StepOp::Route { by, branches, conditions }, outputs: Vec::new() })
}
