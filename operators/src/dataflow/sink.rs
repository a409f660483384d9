//! The graph output: hands finished rows, a container at a time, to a callback on the
//! worker thread.

use timely::dataflow::channels::pact::Pipeline;
use timely::dataflow::operators::generic::Operator;

use super::RowStream;
use crate::row::Row;

/// Extension trait: consume rows.
pub trait SinkRows<'scope> {
    /// Calls `deliver` with each arriving container of rows (to drain), in arrival
    /// order. `deliver` must not block.
    fn sink_rows(self, name: &str, deliver: impl FnMut(&mut Vec<Row>) + 'static);
}

impl<'scope> SinkRows<'scope> for RowStream<'scope> {
    fn sink_rows(self, name: &str, mut deliver: impl FnMut(&mut Vec<Row>) + 'static) {
        self.sink(Pipeline, name, move |(input, _frontier)| {
            input.for_each(|_cap, data| deliver(data));
        });
    }
}
