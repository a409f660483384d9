//! The operator of `route` nodes: dynamic dispatch, each row to exactly one branch.
//!
//! Branch conditions are tested in order against the `by` field; the first that holds
//! wins, and a row that matches none takes the default branch (the last output). Failed
//! rows take the default branch too, so they still reach a `merge` and the sink. A
//! chunk whose rows all take one branch moves whole; otherwise it splits into one chunk
//! per branch taken.

use timely::container::CapacityContainerBuilder;
use timely::dataflow::operators::core::{Map, Partition};

use super::RowStream;
use crate::chunk::Chunk;
use crate::kernel::condition::Condition;

/// Extension trait: split a stream by conditions on one field.
pub trait RouteRows<'scope> {
    /// Returns one stream per condition, then the default branch's stream.
    fn route_rows(self, by: usize, conditions: Vec<Condition>) -> Vec<RowStream<'scope>>;
}

impl<'scope> RouteRows<'scope> for RowStream<'scope> {
    fn route_rows(self, by: usize, conditions: Vec<Condition>) -> Vec<RowStream<'scope>> {
        let default = conditions.len();
        let split = move |chunk: Chunk| -> Vec<(u64, Chunk)> {
            let branch: Vec<usize> = (0..chunk.len())
                .map(|row| {
                    if !chunk.is_ok(row) {
                        return default;
                    }
                    let value = chunk.columns[by].value(row);
                    conditions.iter().position(|c| c.matches(&value)).unwrap_or(default)
                })
                .collect();
            match branch.first() {
                Some(&b) if branch.iter().all(|&x| x == b) => vec![(b as u64, chunk)],
                _ => (0..=default)
                    .filter_map(|b| {
                        let rows: Vec<usize> = (0..chunk.len()).filter(|&r| branch[r] == b).collect();
                        (!rows.is_empty()).then(|| (b as u64, chunk.gather(&rows)))
                    })
                    .collect(),
            }
        };
        // Each chunk is split first, then every piece goes to its branch.
        let pieces: timely::dataflow::Stream<'scope, super::Time, Vec<(u64, Chunk)>> = self.flat_map(split);
        pieces.partition::<CapacityContainerBuilder<Vec<Chunk>>, _, _>(
            default as u64 + 1,
            |(branch, chunk): (u64, Chunk)| (branch, chunk),
        )
    }
}
