//! The split of a lookup with `missing: route`: found rows one way, missing rows the
//! other.
//!
//! A lookup ([`super::LookupRows`]) appends the table's value columns and a `found`
//! column. Rows whose `found` is true take the first stream, with every column. The
//! others take the second: missing rows, and rows that failed upstream or in the
//! lookup (the default branch of a route, so they still reach a `merge` and the sink).
//! The second stream's chunks lose the value columns (the fillers of the missing rows),
//! which the missing branch's layout leaves out; `found` stays. A chunk whose rows all
//! go one way moves whole; otherwise it splits in two, as in [`super::RouteRows`].

use std::ops::Range;

use timely::dataflow::operators::core::Map;

use super::{RouteRows, RowStream};
use crate::chunk::Chunk;
use crate::kernel::condition::{Condition, Literal};
use crate::node_stats::NodeStats;

/// Extension trait: split looked-up rows on `found`.
pub trait SplitFound<'scope> {
    /// Returns the rows found, then the rest without the `values` columns that come
    /// just before the `found` column at index `found` (see the module docs).
    ///
    /// # Examples
    ///
    /// ```
    /// use timely::dataflow::operators::capture::{Capture, Event};
    /// use timely::dataflow::operators::ToStream;
    /// use weir_operators::dataflow::SplitFound;
    /// use weir_operators::{Chunk, Column};
    ///
    /// let (found, missing) = timely::example(|scope| {
    ///     // Columns: a key, one value, `found`.
    ///     let columns = vec![Column::I64(vec![1, 2]), Column::F32(vec![0.5, 0.0]), Column::Bool(vec![true, false])];
    ///     let (found, missing) = vec![Chunk::new(0, vec![0, 1], columns)].to_stream(scope).split_found(2, 1);
    ///     (found.capture(), missing.capture())
    /// });
    /// let rows = |captured: std::sync::mpsc::Receiver<Event<u64, Vec<Chunk>>>| -> Vec<Chunk> {
    ///     captured
    ///         .iter()
    ///         .flat_map(|event| match event {
    ///             Event::Messages(_, chunks) => chunks,
    ///             Event::Progress(_) => Vec::new(),
    ///         })
    ///         .collect()
    /// };
    /// let (found, missing) = (rows(found), rows(missing));
    /// assert_eq!(found[0].ids, vec![0]);
    /// assert_eq!(found[0].columns.len(), 3);
    /// assert_eq!(missing[0].ids, vec![1]);
    /// // The key and `found`.
    /// assert_eq!(missing[0].columns.len(), 2);
    /// ```
    fn split_found(self, found: usize, values: usize) -> (RowStream<'scope>, RowStream<'scope>);
}

impl<'scope> SplitFound<'scope> for RowStream<'scope> {
    fn split_found(self, found: usize, values: usize) -> (RowStream<'scope>, RowStream<'scope>) {
        let mut branches =
            self.route_rows(found, vec![Condition::Eq(Literal::Bool(true))], NodeStats::new()).into_iter();
        // A route has one branch per condition, then its default branch.
        let hit = branches.next().expect("a route has a branch per condition");
        let miss = branches.next().expect("a route has a default branch");
        let dropped: Range<usize> = found - values..found;
        let miss = miss.map(move |mut chunk: Chunk| {
            chunk.columns.drain(dropped.clone());
            chunk
        });
        (hit, miss)
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use timely::dataflow::operators::capture::Capture;
    use timely::dataflow::operators::ToStream;

    use super::*;
    use crate::column::Column;
    use crate::dataflow::testing::captured;
    use crate::row::RowError;

    #[test]
    fn found_rows_go_first_and_the_rest_lose_the_values() {
        let (found, missing) = timely::example(|scope| {
            // Columns: a key, two values, `found`. Row 2 failed upstream.
            let mut mixed = Chunk::new(
                0,
                vec![0, 1, 2],
                vec![
                    Column::I64(vec![1, 2, 3]),
                    Column::F32(vec![0.5, 0.0, 0.0]),
                    Column::I64(vec![9, 0, 0]),
                    Column::Bool(vec![true, false, false]),
                ],
            );
            mixed.fail(2, Arc::new(RowError::node_failed("upstream", "broke")));
            let all_found = Chunk::new(
                1,
                vec![10],
                vec![Column::I64(vec![4]), Column::F32(vec![1.5]), Column::I64(vec![8]), Column::Bool(vec![true])],
            );
            let (found, missing) = vec![mixed, all_found].to_stream(scope).split_found(3, 2);
            (found.capture(), missing.capture())
        });
        let chunks = |events| -> Vec<Chunk> { captured(events).into_iter().map(|(_, chunk)| chunk).collect() };
        let (found, missing) = (chunks(found), chunks(missing));
        let ids: Vec<Vec<u64>> = found.iter().map(|c| c.ids.clone()).collect();
        assert_eq!(ids, vec![vec![0], vec![10]]);
        assert!(found.iter().all(|c| c.columns.len() == 4));
        assert_eq!(found[0].columns[1].values(), vec![crate::value::Value::F32(0.5)]);
        assert_eq!(missing.len(), 1);
        assert_eq!(missing[0].ids, vec![1, 2]);
        assert_eq!(*missing[0].columns[0], Column::I64(vec![2, 3]));
        assert_eq!(*missing[0].columns[1], Column::Bool(vec![false, false]));
        assert!(missing[0].is_ok(0));
        assert_eq!(missing[0].error(1).map(|e| e.message.as_str()), Some("broke"));
    }
}
