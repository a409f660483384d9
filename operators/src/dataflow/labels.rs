//! The feedback a learning node's learner learns from, read off the graph's feedback
//! rows.
//!
//! The engine lays out feedback rows as `[key, label, features, has_features]`. Per
//! chunk, the operator gives one [`Labels`] at the chunk's time, with, for every row
//! that did not fail and whose label is an `i64`: the key of the prediction it labels
//! (an `i64` or `str` key; any other reads as `0`), the label, and the row's own
//! features where `has_features` is true (then the learner does not look the key up).
//! A chunk laid out otherwise gives empty labels. Rows keep their order, and each
//! [`Labels`] carries its chunk's first row id, which orders a time's feedback in
//! deterministic engines.

use serde::{Deserialize, Serialize};
use timely::dataflow::channels::pact::Pipeline;
use timely::dataflow::operators::generic::Operator;
use timely::dataflow::Stream;

use super::samples::key_at;
use super::vec_builder::VecBuilder;
use super::{RowStream, Time};
use crate::chunk::Chunk;
use crate::column::Column;
use crate::kernel::keeper::Key;

/// Feedback rows.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Labels {
    /// The id of the first row (orders a time's feedback in a deterministic engine, see
    /// [`super::learn_in_place`]).
    pub first_id: u64,
    /// Per row, the key of the prediction it labels.
    pub keys: Vec<Key>,
    /// Per row, the class.
    pub labels: Vec<i64>,
    /// Per row, its own features (then its key is not looked up), or none.
    pub features: Vec<Option<Vec<f32>>>,
}

/// A stream of [`Labels`].
pub type LabelStream<'scope> = Stream<'scope, Time, Vec<Labels>>;

/// Extension trait: the labels of feedback rows.
pub trait FeedbackLabels<'scope> {
    /// The [`Labels`] of every chunk of feedback rows (see the module docs).
    ///
    /// # Examples
    ///
    /// ```
    /// use timely::dataflow::operators::capture::{Capture, Event};
    /// use timely::dataflow::operators::ToStream;
    /// use weir_operators::dataflow::{FeedbackLabels, Labels};
    /// use weir_operators::kernel::keeper::Key;
    /// use weir_operators::{Chunk, Column};
    ///
    /// let captured = timely::example(|scope| {
    ///     // Key 7 is labelled 1; the feedback for key 8 brings its own features.
    ///     let columns = vec![
    ///         Column::I64(vec![7, 8]),
    ///         Column::I64(vec![1, 0]),
    ///         Column::Tensor { width: 2, data: vec![0.0, 0.0, 0.5, 0.6] },
    ///         Column::Bool(vec![false, true]),
    ///     ];
    ///     vec![Chunk::new(0, vec![40, 41], columns)].to_stream(scope).feedback_labels().capture()
    /// });
    /// let labels: Vec<Labels> = captured
    ///     .iter()
    ///     .flat_map(|event| match event {
    ///         Event::Messages(_, labels) => labels,
    ///         Event::Progress(_) => Vec::new(),
    ///     })
    ///     .collect();
    /// assert_eq!(
    ///     labels,
    ///     vec![Labels {
    ///         first_id: 40,
    ///         keys: vec![Key::Int(7), Key::Int(8)],
    ///         labels: vec![1, 0],
    ///         features: vec![None, Some(vec![0.5, 0.6])],
    ///     }]
    /// );
    /// ```
    fn feedback_labels(self) -> LabelStream<'scope>;
}

impl<'scope> FeedbackLabels<'scope> for RowStream<'scope> {
    fn feedback_labels(self) -> LabelStream<'scope> {
        self.unary::<VecBuilder<Labels>, _, _, _>(Pipeline, "Labels", |_, _| {
            |rows, output| {
                rows.for_each_stamp(|cap, data| {
                    let mut session = output.session_with_builder(&cap);
                    for chunk in data.flat_map(|d| d.iter()) {
                        session.give(labels(chunk));
                    }
                });
            }
        })
    }
}

/// The feedback rows of a chunk laid out as `[key, label, features, has_features]`.
fn labels(chunk: &Chunk) -> Labels {
    let [keys, labels, features, has] = &chunk.columns[..] else { return Labels::default() };
    let (data, width) = features.f32s().unwrap_or((&[], 0));
    let n = chunk.len();
    let mut out = Labels {
        first_id: chunk.ids.first().copied().unwrap_or(0),
        keys: Vec::with_capacity(n),
        labels: Vec::with_capacity(n),
        features: Vec::with_capacity(n),
    };
    for row in (0..chunk.len()).filter(|&r| chunk.is_ok(r)) {
        let label = match &**labels {
            Column::I64(v) => v[row],
            _ => continue,
        };
        out.keys.push(key_at(keys, row).unwrap_or(Key::Int(0)));
        out.labels.push(label);
        let own = matches!(&**has, Column::Bool(v) if v[row]);
        out.features.push(own.then(|| data[row * width..(row + 1) * width].to_vec()));
    }
    out
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use timely::dataflow::operators::capture::Capture;
    use timely::dataflow::operators::ToStream;

    use super::*;
    use crate::dataflow::testing::captured;
    use crate::row::RowError;

    #[test]
    fn failed_rows_are_left_out_and_other_layouts_give_empty_labels() {
        let mut feedback = Chunk::new(
            0,
            vec![5, 6, 7],
            vec![
                Column::Str(vec![Arc::from("a"), Arc::from("b"), Arc::from("c")]),
                Column::I64(vec![1, 0, 1]),
                Column::F32(vec![0.0, 0.0, 0.25]),
                Column::Bool(vec![false, false, true]),
            ],
        );
        feedback.fail(1, Arc::new(RowError::invalid_input("feedback", "no label")));
        let other = Chunk::new(0, vec![9], vec![Column::I64(vec![1])]);
        let got =
            captured(timely::example(move |scope| vec![feedback, other].to_stream(scope).feedback_labels().capture()));
        let text = |k: &str| Key::Text(k.to_string());
        assert_eq!(
            got,
            vec![
                (
                    0,
                    Labels {
                        first_id: 5,
                        keys: vec![text("a"), text("c")],
                        labels: vec![1, 1],
                        features: vec![None, Some(vec![0.25])],
                    }
                ),
                (0, Labels::default()),
            ]
        );
    }
}
