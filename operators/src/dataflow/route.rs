//! The operator of `route` nodes: dynamic dispatch, each row to exactly one branch.
//!
//! Branch conditions are tested in order against the `by` field; the first that holds
//! wins, and a row that matches none takes the default branch (the last output). Failed
//! rows take the default branch too, so they still reach a `merge` and the sink. A
//! chunk whose rows all take one branch moves whole; otherwise it splits into one chunk
//! per branch taken.

use std::sync::Arc;
use std::time::Instant;

use timely::dataflow::operators::core::{Map, Partition};

use super::vec_builder::VecBuilder;
use super::RowStream;
use crate::chunk::Chunk;
use crate::kernel::condition::Condition;
use crate::node_stats::NodeStats;

/// Extension trait: split a stream by conditions on one field.
///
/// # Examples
///
/// Scores of at least 0.5 take the first branch, the others the default one:
///
/// ```
/// use timely::dataflow::operators::capture::{Capture, Event};
/// use timely::dataflow::operators::ToStream;
/// use weir_operators::dataflow::{RouteRows, RowStream};
/// use weir_operators::kernel::condition::Condition;
/// use weir_operators::node_stats::NodeStats;
/// use weir_operators::{Chunk, Column};
///
/// let (high, low) = timely::example(|scope| {
///     let chunk = Chunk::new(0, vec![1, 2, 3], vec![Column::F32(vec![0.9, 0.1, 0.7])]);
///     let rows: RowStream = vec![chunk].to_stream(scope);
///     let mut branches = rows.route_rows(0, vec![Condition::Ge(0.5)], NodeStats::new()).into_iter();
///     let (high, low) = (branches.next().unwrap(), branches.next().unwrap());
///     (high.capture(), low.capture())
/// });
/// let ids = |captured: std::sync::mpsc::Receiver<_>| -> Vec<u64> {
///     captured
///         .iter()
///         .flat_map(|event| match event {
///             Event::Messages(_, chunks) => chunks,
///             Event::Progress(_) => Vec::<Chunk>::new(),
///         })
///         .flat_map(|chunk| chunk.ids)
///         .collect()
/// };
/// assert_eq!(ids(high), vec![1, 3]);
/// assert_eq!(ids(low), vec![2]);
/// ```
pub trait RouteRows<'scope> {
    /// Returns one stream per condition, then the default branch's stream. Each chunk's
    /// rows and time count in `stats`.
    fn route_rows(self, by: usize, conditions: Vec<Condition>, stats: Arc<NodeStats>) -> Vec<RowStream<'scope>>;
}

impl<'scope> RouteRows<'scope> for RowStream<'scope> {
    fn route_rows(self, by: usize, conditions: Vec<Condition>, stats: Arc<NodeStats>) -> Vec<RowStream<'scope>> {
        let default = conditions.len();
        let split = move |chunk: Chunk| -> Vec<(u64, Chunk)> {
            let started = Instant::now();
            let branch: Vec<usize> = (0..chunk.len())
                .map(|row| {
                    if !chunk.is_ok(row) {
                        return default;
                    }
                    let value = chunk.columns[by].value(row);
                    conditions.iter().position(|c| c.matches(&value)).unwrap_or(default)
                })
                .collect();
            stats.record(chunk.len(), chunk.len(), started);
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
        pieces.partition::<VecBuilder<Chunk>, _, _>(default as u64 + 1, |(branch, chunk): (u64, Chunk)| (branch, chunk))
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use timely::dataflow::operators::core::{Concatenate, Map};

    use super::*;
    use crate::column::Column;
    use crate::dataflow::testing::{errors, f32_chunk, failed_at, run, Out};
    use crate::row::{ErrorCode, RowId};

    /// Routes `inputs` by field 0 with `conditions`; each chunk out gets its branch
    /// appended as an `i64` column.
    fn route(inputs: Vec<(u64, Chunk)>, conditions: Vec<Condition>) -> Vec<Out> {
        run(inputs, move |scope, rows| {
            let branches =
                rows.route_rows(0, conditions, NodeStats::new()).into_iter().enumerate().map(|(b, stream)| {
                    stream.map(move |mut chunk: Chunk| {
                        chunk.columns.push(Arc::new(Column::I64(vec![b as i64; chunk.len()])));
                        chunk
                    })
                });
            scope.concatenate(branches.collect::<Vec<RowStream>>())
        })
    }

    /// Per branch, the ids of its rows in the order they came out.
    fn by_branch(out: &[Out], branches: usize) -> Vec<Vec<RowId>> {
        let mut ids = vec![Vec::new(); branches];
        for (_, chunk) in out {
            let Column::I64(tags) = &*chunk.columns[1] else { panic!("a branch column") };
            tags.iter().zip(&chunk.ids).for_each(|(&b, &id)| ids[b as usize].push(id));
        }
        ids
    }

    #[test]
    fn each_row_takes_exactly_one_branch_and_failed_rows_take_the_default() {
        let conditions = vec![Condition::Lt(0.0), Condition::Ge(10.0)];
        // Row 4 would match the first condition, but it has failed.
        let chunk = failed_at(f32_chunk(1, &[-1., 5., 20., -2., -3., 12.]), &[4]);
        let out = route(vec![(0, chunk)], conditions);
        assert_eq!(by_branch(&out, 3), vec![vec![100, 103], vec![102, 105], vec![101, 104]]);
        let failed: Vec<(ErrorCode, RowId)> = out
            .iter()
            .flat_map(|(_, c)| errors(c).into_iter().zip(c.ids.clone()))
            .filter_map(|(error, id)| error.map(|(code, _)| (code, id)))
            .collect();
        assert_eq!(failed, vec![(ErrorCode::InvalidInput, 104)]);
    }

    #[test]
    fn a_chunk_whose_rows_take_one_branch_moves_whole() {
        let chunk = f32_chunk(1, &[20., 30.]);
        let column = Arc::clone(&chunk.columns[0]);
        let out = route(vec![(3, chunk)], vec![Condition::Lt(0.0), Condition::Ge(10.0)]);
        let [(3, whole)] = &out[..] else { panic!("one chunk at time 3: {out:?}") };
        assert_eq!(by_branch(&out, 3), vec![vec![], vec![100, 101], vec![]]);
        assert!(Arc::ptr_eq(&whole.columns[0], &column), "the chunk's column is not copied");
    }
}
