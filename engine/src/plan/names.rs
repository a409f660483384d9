//! Names and uniqueness: which names may name a graph, a node or a table, and the error
//! for a name declared twice. A leaf of [`super`], used by the graph-level checks and by
//! the node kinds that declare names (a route's branches).

use std::collections::BTreeSet;

use crate::error::Problem;

/// Whether `name` may name a graph, a node or a table: non-empty, only ASCII letters,
/// digits, `_` and `-`. Such names go into URLs (`/graphs/{name}/tables/{table}`) and
/// metric label values as they are.
pub fn is_valid_name(name: &str) -> bool {
    !name.is_empty() && name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
}

/// [`is_valid_name`], or the error naming `what` and the name.
pub(super) fn check_name(what: &'static str, name: &str) -> Result<(), Problem> {
    if is_valid_name(name) {
        Ok(())
    } else {
        Err(Problem::Name { what, name: name.to_string() })
    }
}

/// `Ok` if no name repeats; else the error naming the first repeated one as a `what`.
pub(super) fn unique<'a>(names: impl Iterator<Item = &'a str>, what: &str) -> Result<(), Problem> {
    let mut seen = BTreeSet::new();
    for n in names {
        if !seen.insert(n) {
            return Err(Problem::Duplicate(format!("{what} '{n}' is declared twice")));
        }
    }
    Ok(())
}
