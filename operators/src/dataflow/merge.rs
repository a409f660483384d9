//! The operator of `merge` nodes: the union of a route's branches.
//!
//! Each row arrives on exactly one of the inputs (a route sent it down one branch). Its
//! chunk's columns are rearranged into the merge's layout: the fields common to every
//! branch, then the merge's own fields, each taken from the branch-specific field the
//! graph names. Columns are shared, not copied.

use timely::dataflow::operators::core::{Concatenate, Map};

use timely::dataflow::Scope;

use super::{RowStream, Time};
use crate::chunk::Chunk;

/// Merges branch streams: `inputs[i]` is a branch stream and `layouts[i]` the indices,
/// in that branch's chunks, of the merged record's fields.
pub fn merge_rows<'scope>(
    scope: Scope<'scope, Time>,
    inputs: Vec<RowStream<'scope>>,
    layouts: Vec<Vec<usize>>,
) -> RowStream<'scope> {
    let projected: Vec<RowStream<'scope>> = inputs
        .into_iter()
        .zip(layouts)
        .map(|(stream, layout)| stream.map(move |chunk: Chunk| chunk.project(&layout)))
        .collect();
    scope.concatenate(projected)
}
