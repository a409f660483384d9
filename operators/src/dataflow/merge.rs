//! The operator of `merge` nodes: the union of a route's branches.
//!
//! Each row arrives on exactly one of the inputs (a route sent it down one branch). Its
//! record is rebuilt in the merge's layout: the fields common to every branch, then the
//! merge's own fields, each taken from the branch-specific field the graph names.

use timely::dataflow::operators::core::{Concatenate, Map};

use timely::dataflow::Scope;

use super::{RowStream, Time};
use crate::row::Row;

/// Merges branch streams: `inputs[i]` is a branch stream and `layouts[i]` the indices,
/// in that branch's rows, of the merged record's fields.
pub fn merge_rows<'scope>(
    scope: Scope<'scope, Time>,
    inputs: Vec<RowStream<'scope>>,
    layouts: Vec<Vec<usize>>,
) -> RowStream<'scope> {
    {
        let projected: Vec<RowStream<'scope>> = inputs
            .into_iter()
            .zip(layouts)
            .map(|(stream, layout)| {
                stream.map(move |row: Row| Row {
                    id: row.id,
                    data: row.data.map(|values| layout.iter().map(|&i| values[i].clone()).collect()),
                    deadline: row.deadline,
                })
            })
            .collect();
        scope.concatenate(projected)
    }
}
