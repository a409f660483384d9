//! The graph output: hands finished chunks, a container at a time, to a callback on the
//! worker thread.

use timely::dataflow::channels::pact::Pipeline;
use timely::dataflow::operators::generic::Operator;

use super::RowStream;
use crate::chunk::Chunk;

/// Extension trait: consume rows.
pub trait SinkRows<'scope> {
    /// Calls `deliver` with each arriving container of chunks (to drain), in arrival
    /// order. `deliver` must not block.
    fn sink_rows(self, name: &str, deliver: impl FnMut(&mut Vec<Chunk>) + 'static);
}

impl<'scope> SinkRows<'scope> for RowStream<'scope> {
    fn sink_rows(self, name: &str, mut deliver: impl FnMut(&mut Vec<Chunk>) + 'static) {
        self.sink(Pipeline, name, move |(input, _frontier)| {
            input.for_each(|_cap, data| deliver(data));
        });
    }
}
