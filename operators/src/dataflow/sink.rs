//! The graph output: hands every finished row to a callback on the worker thread.

use timely::dataflow::channels::pact::Pipeline;
use timely::dataflow::operators::generic::Operator;

use super::RowStream;
use crate::row::Row;

/// Extension trait: consume rows.
pub trait SinkRows<'scope> {
    /// Calls `deliver` with every row, in arrival order. `deliver` must not block.
    fn sink_rows(self, name: &str, deliver: impl FnMut(Row) + 'static);
}

impl<'scope> SinkRows<'scope> for RowStream<'scope> {
    fn sink_rows(self, name: &str, mut deliver: impl FnMut(Row) + 'static) {
        self.sink(Pipeline, name, move |(input, _frontier)| {
            input.for_each(|_cap, data| {
                for row in data.drain(..) {
                    deliver(row);
                }
            });
        });
    }
}
