//! What a learning node's learner keeps of its predictions: the key and the features of
//! every row predicted.
//!
//! The operator reads the node's predicted rows and, per chunk, gives one [`Samples`]
//! with the key and the input features of each row that did not fail, in row order, at
//! the chunk's time. Rows whose key is neither an `i64` nor a string are left out (the
//! plan checks the key field's type), and so are chunks whose input is not an `f32`
//! field or with no row left; a node without a key field gives no samples (its feedback
//! carries its own features). The rows themselves go on unchanged on the node's stream.

use serde::{Deserialize, Serialize};
use timely::dataflow::channels::pact::Pipeline;
use timely::dataflow::operators::generic::Operator;
use timely::dataflow::Stream;

use super::vec_builder::VecBuilder;
use super::{RowStream, Time};
use crate::chunk::Chunk;
use crate::column::Column;
use crate::kernel::keeper::Key;

/// Predictions a learner keeps for their feedback: keys and features (flat), of rows
/// that did not fail.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Samples {
    /// Per row.
    pub keys: Vec<Key>,
    /// `keys.len() × width` numbers.
    pub features: Vec<f32>,
}

/// A stream of [`Samples`].
pub type SampleStream<'scope> = Stream<'scope, Time, Vec<Samples>>;

/// Extension trait: the samples of a learning node's predictions.
pub trait PredictionSamples<'scope> {
    /// The keys (column `key`, if the node has one) and features (column `input`) of
    /// the rows of every chunk (see the module docs).
    ///
    /// # Examples
    ///
    /// ```
    /// use timely::dataflow::operators::capture::{Capture, Event};
    /// use timely::dataflow::operators::ToStream;
    /// use weir_operators::dataflow::{PredictionSamples, Samples};
    /// use weir_operators::kernel::keeper::Key;
    /// use weir_operators::{Chunk, Column};
    ///
    /// let captured = timely::example(|scope| {
    ///     // Keys 7 and 8, two features each.
    ///     let features = Column::Tensor { width: 2, data: vec![0.1, 0.2, 0.3, 0.4] };
    ///     let chunk = Chunk::new(0, vec![0, 1], vec![Column::I64(vec![7, 8]), features]);
    ///     vec![chunk].to_stream(scope).prediction_samples(Some(0), 1).capture()
    /// });
    /// let samples: Vec<Samples> = captured
    ///     .iter()
    ///     .flat_map(|event| match event {
    ///         Event::Messages(_, samples) => samples,
    ///         Event::Progress(_) => Vec::new(),
    ///     })
    ///     .collect();
    /// assert_eq!(samples, vec![Samples { keys: vec![Key::Int(7), Key::Int(8)], features: vec![0.1, 0.2, 0.3, 0.4] }]);
    /// ```
    fn prediction_samples(self, key: Option<usize>, input: usize) -> SampleStream<'scope>;
}

impl<'scope> PredictionSamples<'scope> for RowStream<'scope> {
    fn prediction_samples(self, key: Option<usize>, input: usize) -> SampleStream<'scope> {
        self.unary::<VecBuilder<Samples>, _, _, _>(Pipeline, "Samples", |_, _| {
            move |rows, output| {
                rows.for_each_stamp(|cap, data| {
                    let Some(key) = key else { return };
                    let mut session = output.session_with_builder(&cap);
                    for chunk in data.flat_map(|d| d.iter()) {
                        if let Some(s) = samples(chunk, key, input) {
                            session.give(s);
                        }
                    }
                });
            }
        })
    }
}

/// The keys and features of the rows of a prediction chunk that did not fail; `None`
/// when it has none. `key` and `input` index the chunk's columns.
fn samples(chunk: &Chunk, key: usize, input: usize) -> Option<Samples> {
    let mut out = Samples::default();
    each_sample(chunk, key, input, |k, x| {
        out.keys.push(k);
        out.features.extend_from_slice(x);
    });
    (!out.keys.is_empty()).then_some(out)
}

/// Calls `f` with the key and the features of each row of a prediction chunk that did
/// not fail, in row order (see the module docs for the rows left out).
pub(super) fn each_sample(chunk: &Chunk, key: usize, input: usize, mut f: impl FnMut(Key, &[f32])) {
    for row in 0..chunk.len() {
        if let Some((k, x)) = sample_at(chunk, key, input, row) {
            f(k, x);
        }
    }
}

/// The key and the features of row `row` of a prediction chunk, unless it failed (or
/// is left out for another reason in the module docs).
pub(super) fn sample_at(chunk: &Chunk, key: usize, input: usize, row: usize) -> Option<(Key, &[f32])> {
    let (data, width) = chunk.columns[input].f32s()?;
    if !chunk.is_ok(row) {
        return None;
    }
    Some((key_at(&chunk.columns[key], row)?, &data[row * width..(row + 1) * width]))
}

/// The key of row `row` of a key column: `None` unless the column is `i64` or `str`.
pub(super) fn key_at(column: &Column, row: usize) -> Option<Key> {
    match column {
        Column::I64(v) => Some(Key::Int(v[row])),
        Column::Str(v) => Some(Key::Text(v[row].to_string())),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use timely::dataflow::operators::capture::Capture;
    use timely::dataflow::operators::ToStream;

    use super::*;
    use crate::dataflow::testing::captured;
    use crate::row::RowError;

    /// The samples of `chunks` with `key`, and the times they came at.
    fn run(chunks: Vec<Chunk>, key: Option<usize>) -> Vec<(Time, Samples)> {
        captured(timely::example(move |scope| chunks.to_stream(scope).prediction_samples(key, 1).capture()))
    }

    fn chunk(keys: Column) -> Chunk {
        Chunk::new(0, vec![0, 1, 2], vec![keys, Column::F32(vec![1.0, 2.0, 3.0])])
    }

    #[test]
    fn failed_rows_and_empty_chunks_give_no_samples() {
        let mut failed = chunk(Column::Str(vec![Arc::from("a"), Arc::from("b"), Arc::from("c")]));
        failed.fail(1, Arc::new(RowError::node_failed("upstream", "broke")));
        let mut all_failed = chunk(Column::I64(vec![1, 2, 3]));
        all_failed.fail_all(Arc::new(RowError::node_failed("upstream", "broke")));
        let got = run(vec![failed, all_failed], Some(0));
        let text = |k: &str| Key::Text(k.to_string());
        assert_eq!(got, vec![(0, Samples { keys: vec![text("a"), text("c")], features: vec![1.0, 3.0] })]);
    }

    #[test]
    fn keys_of_another_type_and_nodes_without_keys_give_none() {
        assert_eq!(run(vec![chunk(Column::Bool(vec![true, false, true]))], Some(0)), Vec::new());
        assert_eq!(run(vec![chunk(Column::I64(vec![1, 2, 3]))], None), Vec::new());
    }
}
