//! What resolving one node sees, shared by the walk ([`super`]) and every node kind's
//! file: the fields the node can read, the route branches a stream sits on, and the
//! error type that names the YAML key at fault. A leaf: it imports no resolution code.

use std::collections::HashMap;

use weir_operators::FieldType;

use crate::error::Problem;
use crate::plan::step::{Schema, StepOp};
use crate::spec::{FieldRef, INPUT};

/// A result whose error names the YAML key at fault, if any, and the problem.
pub(super) type NodeResult<T> = Result<T, (Option<String>, Problem)>;

/// `r`'s problem, at YAML key `field`.
pub(super) fn at<T>(field: &str, r: Result<T, Problem>) -> NodeResult<T> {
    r.map_err(|p| (Some(field.to_string()), p))
}

/// The route branches a stream sits on: (route step, branch) pairs, outermost first.
pub(super) type Context = Vec<(usize, usize)>;

/// A node kind's resolved parts: its operator and the fields it adds to the rows.
pub(super) struct Resolved {
    /// The operator.
    pub(super) op: StepOp,
    /// The fields the node adds, by name (unqualified) and type.
    pub(super) outputs: Vec<(String, FieldType)>,
}

/// The fields a node reads from: a record layout, the streams it comes from, and the
/// fields every node resolved so far declares (to say why a field is missing).
pub(super) struct Scope<'a> {
    /// The record's layout.
    pub(super) schema: &'a Schema,
    /// The streams read, for errors (`'a' and 'b'`).
    pub(super) path: &'a str,
    /// Output field names of `input` and of every node resolved so far.
    pub(super) declared: &'a HashMap<String, Vec<String>>,
}

impl Scope<'_> {
    /// The index and type of `r` in the record, read under YAML key `key`; else an error
    /// saying whether the node `r` names lacks the field, or the field is not on the
    /// path the record comes from.
    pub(super) fn index(&self, key: &str, r: &FieldRef) -> NodeResult<(usize, FieldType)> {
        if let Some(i) = self.schema.index_of(r) {
            return Ok((i, self.schema.fields[i].1.clone()));
        }
        let problem = match self.declared.get(&r.node) {
            Some(names) if !names.contains(&r.field) => Problem::UnknownField(format!(
                "{} '{}' has no field '{}' (its fields: {})",
                if r.node == INPUT { "the graph" } else { "node" },
                r.node,
                r.field,
                if names.is_empty() { "none".into() } else { names.join(", ") }
            )),
            _ => Problem::Topology(format!("field '{r}' is not on this node's path (it reads {})", self.path)),
        };
        Err((Some(key.to_string()), problem))
    }
}
