//! The graph output: hands finished chunks, a container at a time, to a callback on the
//! worker thread.

use timely::dataflow::channels::pact::Pipeline;
use timely::dataflow::operators::generic::Operator;

use super::RowStream;
use crate::chunk::Chunk;

/// Extension trait: consume rows.
///
/// # Examples
///
/// ```
/// use std::sync::{Arc, Mutex};
///
/// use timely::dataflow::operators::ToStream;
/// use weir_operators::dataflow::{RowStream, SinkRows};
/// use weir_operators::{Chunk, Column};
///
/// let answered = Arc::new(Mutex::new(Vec::new()));
/// let sink = Arc::clone(&answered);
/// timely::example(move |scope| {
///     let chunk = Chunk::new(0, vec![7, 8], vec![Column::I64(vec![70, 80])]);
///     let rows: RowStream = vec![chunk].to_stream(scope);
///     rows.sink_rows("Output", move |chunks| {
///         let mut answered = sink.lock().expect("not poisoned");
///         answered.extend(chunks.drain(..).flat_map(|chunk| chunk.ids));
///     });
/// });
/// assert_eq!(*answered.lock().expect("not poisoned"), vec![7, 8]);
/// ```
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

#[cfg(test)]
mod tests {
    use std::sync::{Arc, Mutex};

    use super::*;
    use crate::dataflow::testing::{f32_chunk, run};
    use crate::row::RowId;

    /// The slot and row ids of each chunk delivered, in order.
    type Delivered = Arc<Mutex<Vec<(u64, Vec<RowId>)>>>;

    #[test]
    fn every_chunk_is_delivered_once_in_arrival_order() {
        let delivered: Delivered = Arc::default();
        let sink = Arc::clone(&delivered);
        let inputs = (0..3).map(|t| (t, f32_chunk(t + 1, &[0., 1.]))).collect();
        // The sink consumes the stream; the harness watches a copy of it.
        run(inputs, move |_, rows| {
            rows.clone().sink_rows("Output", move |chunks| {
                sink.lock().unwrap().extend(chunks.drain(..).map(|c| (c.slot, c.ids)));
            });
            rows
        });
        let got = delivered.lock().unwrap().clone();
        assert_eq!(got, vec![(1, vec![100, 101]), (2, vec![200, 201]), (3, vec![300, 301])]);
    }
}
