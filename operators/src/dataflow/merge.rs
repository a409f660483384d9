//! The operator of `merge` nodes: the union of a route's branches.
//!
//! Each row arrives on exactly one of the inputs (a route sent it down one branch). Its
//! chunk's columns are rearranged into the merge's layout: the fields common to every
//! branch, then the merge's own fields, each taken from the branch-specific field the
//! graph names. Columns are shared, not copied. Chunks keep their times; their order
//! across inputs is the order the operator reads them in, not the order rows entered.

use std::sync::Arc;
use std::time::Instant;

use timely::dataflow::operators::core::{Concatenate, Map};

use super::RowStream;
use crate::chunk::Chunk;
use crate::node_stats::NodeStats;

/// Extension trait: the union of branch streams, in one layout.
pub trait MergeRows<'scope> {
    /// Merges `self` with `others`: `layouts[0]` lists the indices, in `self`'s chunks,
    /// of the merged record's fields, and `layouts[i + 1]` those in `others[i]`'s. A
    /// stream without a layout is left out. Each chunk's rows and time count in `stats`.
    ///
    /// # Examples
    ///
    /// ```
    /// use timely::dataflow::operators::capture::{Capture, Event};
    /// use timely::dataflow::operators::ToStream;
    /// use weir_operators::dataflow::MergeRows;
    /// use weir_operators::node_stats::NodeStats;
    /// use weir_operators::{Chunk, Column};
    ///
    /// let captured = timely::example(|scope| {
    ///     // Each branch added its own field last; the merge keeps the key and that field.
    ///     let high = Chunk::new(0, vec![0], vec![Column::I64(vec![1]), Column::F32(vec![0.9])]);
    ///     let low = Chunk::new(0, vec![1], vec![Column::I64(vec![2]), Column::Bool(vec![true]), Column::F32(vec![0.1])]);
    ///     let (high, low) = (vec![high].to_stream(scope), vec![low].to_stream(scope));
    ///     high.merge_rows(vec![low], vec![vec![0, 1], vec![0, 2]], NodeStats::new()).capture()
    /// });
    /// let mut chunks: Vec<Chunk> = captured
    ///     .iter()
    ///     .flat_map(|event| match event {
    ///         Event::Messages(_, chunks) => chunks,
    ///         Event::Progress(_) => Vec::new(),
    ///     })
    ///     .collect();
    /// chunks.sort_by_key(|c| c.ids[0]);
    /// assert_eq!(*chunks[1].columns[1], Column::F32(vec![0.1]));
    /// assert_eq!(chunks[1].columns.len(), 2);
    /// ```
    fn merge_rows(
        self,
        others: Vec<RowStream<'scope>>,
        layouts: Vec<Vec<usize>>,
        stats: Arc<NodeStats>,
    ) -> RowStream<'scope>;
}

impl<'scope> MergeRows<'scope> for RowStream<'scope> {
    fn merge_rows(
        self,
        others: Vec<RowStream<'scope>>,
        layouts: Vec<Vec<usize>>,
        stats: Arc<NodeStats>,
    ) -> RowStream<'scope> {
        let scope = self.scope();
        let projected: Vec<RowStream<'scope>> = std::iter::once(self)
            .chain(others)
            .zip(layouts)
            .map(|(stream, layout)| {
                let stats = Arc::clone(&stats);
                stream.map(move |chunk: Chunk| {
                    let started = Instant::now();
                    let out = chunk.project(&layout);
                    stats.record(out.len(), out.len(), started);
                    out
                })
            })
            .collect();
        scope.concatenate(projected)
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use timely::dataflow::operators::capture::Capture;
    use timely::dataflow::operators::Input;

    use super::*;
    use crate::column::Column;
    use crate::dataflow::testing::captured;
    use crate::dataflow::Time;
    use crate::row::RowError;

    #[test]
    fn every_branch_is_projected_to_the_merged_layout_keeping_its_time() {
        let merged = timely::execute_directly(|worker| {
            let (mut a, mut b, merged) = worker.dataflow::<Time, _, _>(|scope| {
                let (a, a_rows) = scope.new_input::<Vec<Chunk>>();
                let (b, b_rows) = scope.new_input::<Vec<Chunk>>();
                (a, b, a_rows.merge_rows(vec![b_rows], vec![vec![0, 2], vec![1, 0]], NodeStats::new()).capture())
            });
            a.send(Chunk::new(
                0,
                vec![0],
                vec![Column::I64(vec![1]), Column::Bool(vec![true]), Column::F32(vec![0.5])],
            ));
            b.advance_to(4);
            let mut failed = Chunk::new(1, vec![1, 2], vec![Column::F32(vec![0.0, 2.5]), Column::I64(vec![2, 3])]);
            failed.fail(0, Arc::new(RowError::node_failed("upstream", "broke")));
            b.send(failed);
            merged
        });
        let mut got = captured(merged);
        got.sort_by_key(|(time, _)| *time);
        let columns = |c: &Chunk| c.columns.iter().map(|c| (**c).clone()).collect::<Vec<_>>();
        assert_eq!(got.len(), 2);
        assert_eq!(got[0].0, 0);
        assert_eq!(columns(&got[0].1), vec![Column::I64(vec![1]), Column::F32(vec![0.5])]);
        assert_eq!(got[1].0, 4);
        assert_eq!(columns(&got[1].1), vec![Column::I64(vec![2, 3]), Column::F32(vec![0.0, 2.5])]);
        assert_eq!(got[1].1.error(0).map(|e| e.message.as_str()), Some("broke"));
    }
}
