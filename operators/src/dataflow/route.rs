//! The operator of `route` nodes: dynamic dispatch, each row to exactly one branch.
//!
//! Branch conditions are tested in order against the `by` field; the first that holds
//! wins, and a row that matches none takes the default branch (the last output). Error
//! rows take the default branch too, so they still reach a `merge` and the sink.

use timely::container::CapacityContainerBuilder;
use timely::dataflow::operators::core::Partition;

use super::RowStream;
use crate::kernel::condition::Condition;
use crate::row::Row;

/// Extension trait: split a stream by conditions on one field.
pub trait RouteRows<'scope> {
    /// Returns one stream per condition, then the default branch's stream.
    fn route_rows(self, by: usize, conditions: Vec<Condition>) -> Vec<RowStream<'scope>>;
}

impl<'scope> RouteRows<'scope> for RowStream<'scope> {
    fn route_rows(self, by: usize, conditions: Vec<Condition>) -> Vec<RowStream<'scope>> {
        let default = conditions.len() as u64;
        self.partition::<CapacityContainerBuilder<Vec<Row>>, _, _>(default + 1, move |row: Row| {
            let branch = match &row.data {
                Ok(values) => conditions.iter().position(|c| c.matches(&values[by])).map_or(default, |i| i as u64),
                Err(_) => default,
            };
            (branch, row)
        })
    }
}
