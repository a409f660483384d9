//! A learning node in a deterministic engine (a replay, a backtest): its predictions
//! and its learning in one operator, without the feedback loop.
//!
//! The general node is a cycle (`predict.rs` → `samples.rs` → `learner.rs` → back to
//! `predict.rs` one time step later), so every time costs a trip around the dataflow:
//! a prequential backtest, whose every block of rows is a time, paid several rounds of
//! the worker per block. In a deterministic engine the node's rows and feedback all go
//! to one worker, worker 0 (where the cycle's learner is too; with one worker they are
//! there already), so this operator does both, for every time whose rows and labels
//! are all in (both inputs' frontiers past it), oldest first, as many as are ready in
//! one activation:
//!
//! 1. the time's rows are predicted with the weights learned from every label before
//!    them, and sent on, each with `model_version` (the version that predicted it);
//! 2. their keys and features are kept for the labels that name them;
//! 3. the time's labels are learned, in submission order.
//!
//! A time that has both rows and labels is a submission sent with its own feedback
//! (`Submission::then_feedback`: a prequential block). Its steps go row by row: row
//! `i` is predicted, kept, then the time's `i`-th label is learned, so every row is
//! predicted with the labels of the rows before it in the block too: River's
//! predict-then-learn order, whatever the block's size. Labels beyond the rows are
//! learned after the last row. When a time's labels name exactly its own rows, in
//! order, and nothing is kept from before (every block of a prequential run), the
//! keeping is skipped and each label is learned from its row's features directly:
//! what keeping the row and taking it back at once would give, without a hash-map
//! probe per row each way (`State::own_rows`).
//!
//! That is the order the cycle gives (a time's predictions first, then its feedback)
//! wherever a time has at most one row. A time's chunks are taken in submission order
//! (by their first row's id), whichever worker each came from, so the answers, the
//! versions and the final weights are bit-identical at any number of workers and
//! processes (`tests/online.rs`, `tests/cluster.rs`).

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Instant;

use timely::dataflow::channels::pact::Pipeline;
use timely::dataflow::operators::generic::Operator;
use timely::dataflow::operators::Capability;

use super::labels::{LabelStream, Labels};
use super::learner::{LearnConfig, State};
use super::predict::predict;
use super::vec_builder::VecBuilder;
use super::{RowStream, Time};
use crate::chunk::Chunk;
use crate::column::Column;
use crate::kernel::learn::{RowScratch, Weights};
use crate::node_stats::NodeStats;

/// A time's capability, chunks and labels, until both inputs have passed it.
type Held = (Option<Capability<Time>>, Vec<Chunk>, Vec<Labels>);

/// Extension trait: predict and learn in one operator (a deterministic engine; the
/// caller brings every row and label to one worker).
pub trait LearnInPlace<'scope> {
    /// Predicts the rows with `initial`'s weights and those learned from `feedback`
    /// before each row's time (see the module docs). `key` and `input` index the
    /// chunks' key and features columns. `stats` counts the rows predicted (in and out)
    /// and the time spent on each time's predictions and learning, as the node's
    /// predict operator counts them in the cycle.
    fn learn_in_place(
        self,
        feedback: LabelStream<'scope>,
        key: Option<usize>,
        input: usize,
        config: LearnConfig,
        stats: Arc<NodeStats>,
    ) -> RowStream<'scope>;
}

impl<'scope> LearnInPlace<'scope> for RowStream<'scope> {
    fn learn_in_place(
        self,
        feedback: LabelStream<'scope>,
        key: Option<usize>,
        input: usize,
        config: LearnConfig,
        stats: Arc<NodeStats>,
    ) -> RowStream<'scope> {
        let name = format!("LearnInPlace({})", config.node);
        self.binary_frontier::<_, VecBuilder<Chunk>, _, _, _, _>(
            feedback,
            Pipeline,
            Pipeline,
            &name,
            move |_cap, _info| {
                let mut current: Arc<Weights> = Arc::new(config.learner.weights());
                let mut st = State::new(config, true);
                let mut pending: BTreeMap<Time, Held> = BTreeMap::new();
                move |(rows, rows_frontier), (labels, labels_frontier), output| {
                    rows.for_each_stamp(|cap, data| {
                        let Some(&time) = cap.least() else { return };
                        let held = pending.entry(time).or_insert_with(|| (None, Vec::new(), Vec::new()));
                        if held.0.is_none() {
                            held.0 = cap.retain_least(output.output_index());
                        }
                        held.1.extend(data.flat_map(|d| d.drain(..)));
                    });
                    labels.for_each_stamp(|cap, data| {
                        let Some(&time) = cap.least() else { return };
                        let held = pending.entry(time).or_insert_with(|| (None, Vec::new(), Vec::new()));
                        held.2.extend(data.flat_map(|d| d.drain(..)));
                    });
                    let now = Instant::now();
                    while let Some((&time, _)) = pending.first_key_value() {
                        if rows_frontier.less_equal(&time) || labels_frontier.less_equal(&time) {
                            break;
                        }
                        let Some((cap, mut chunks, mut fed)) = pending.remove(&time) else { break };
                        let started = Instant::now();
                        // In submission order, whichever worker each came from.
                        chunks.sort_by_key(|c| c.ids.first().copied());
                        fed.sort_by_key(|l| l.first_id);
                        let rows: usize = chunks.iter().map(Chunk::len).sum();
                        let answers = one_time(&mut st, &mut current, chunks, &fed, (key, input), now);
                        stats.record(rows, rows, started);
                        if let Some(cap) = cap {
                            let mut session = output.session_with_builder(&cap);
                            answers.into_iter().for_each(|answer| session.give(answer));
                        }
                        st.stepped();
                    }
                    if rows_frontier.is_empty() && labels_frontier.is_empty() {
                        st.finish();
                    }
                }
            },
        )
    }
}

/// Predicts and learns one complete time: its `chunks` and its feedback `fed` (in
/// learning order), with the node's key and features columns `(key, input)`. Returns
/// the answers, one chunk per chunk.
///
/// Without feedback, every row is predicted with `current` (and kept for the labels to
/// come). With feedback (rows and their labels sent at one time: a prequential block),
/// row after row: row `i` is predicted, then the time's `i`-th label is learned (by
/// its key, through the keeper, or from row `i`'s own features where
/// [`State::own_rows`] vouches that this is the same), so each row is predicted with
/// every label before it; labels beyond the rows are learned after the last row.
fn one_time(
    st: &mut State,
    current: &mut Arc<Weights>,
    chunks: Vec<Chunk>,
    fed: &[Labels],
    (key, input): (Option<usize>, usize),
    now: Instant,
) -> Vec<Chunk> {
    if fed.is_empty() {
        return chunks
            .into_iter()
            .map(|chunk| {
                if let Some(k) = key {
                    st.keep_chunk(&chunk, k, input, now);
                }
                predict(chunk, input, current)
            })
            .collect();
    }
    let own = key.is_some_and(|k| st.own_rows(&chunks, k, input, fed));
    let mut labels = fed.iter().flat_map(|l| l.keys.iter().zip(&l.labels).zip(&l.features));
    let mut answers = Vec::with_capacity(chunks.len());
    for chunk in chunks {
        let mut rows = RowByRow::new(&chunk, input, current);
        for row in 0..chunk.len() {
            rows.predict(&chunk, row, current);
            if let (false, Some(k)) = (own, key) {
                st.keep_row(&chunk, row, k, input, now);
            }
            if let Some(((k, &label), features)) = labels.next() {
                match (own, rows.features(&chunk, row)) {
                    (true, Some(x)) => st.learn_features(x, label),
                    _ => st.learn_label(k, label, features.as_deref(), now),
                }
                st.refresh(current);
            }
        }
        answers.push(rows.finish(chunk));
    }
    for ((k, &label), features) in labels {
        st.learn_label(k, label, features.as_deref(), now);
    }
    st.refresh(current);
    answers
}

/// A chunk's outputs and versions, built row by row as the weights change under it:
/// row by row what [`predict`] gives a whole chunk with one version of the weights.
struct RowByRow {
    /// The features column.
    input: usize,
    /// Per row, the model's outputs (`outputs` numbers).
    out: Vec<f32>,
    /// Per row, the version that predicted it.
    versions: Vec<i64>,
    outputs: usize,
    scratch: RowScratch,
}

impl RowByRow {
    fn new(chunk: &Chunk, input: usize, weights: &Weights) -> RowByRow {
        RowByRow {
            input,
            out: Vec::with_capacity(chunk.len() * weights.outputs),
            versions: Vec::with_capacity(chunk.len()),
            outputs: weights.outputs,
            scratch: RowScratch::default(),
        }
    }

    /// Row `row`'s features, if it did not fail.
    fn features<'c>(&self, chunk: &'c Chunk, row: usize) -> Option<&'c [f32]> {
        let (data, width) = chunk.columns[self.input].f32s()?;
        chunk.is_ok(row).then(|| &data[row * width..(row + 1) * width])
    }

    /// Predicts row `row` of `chunk` with `weights` (a failed row, or features of
    /// another width, gives zeros, as [`predict`] does).
    fn predict(&mut self, chunk: &Chunk, row: usize, weights: &Weights) {
        match self.features(chunk, row) {
            Some(x) if x.len() == weights.inputs => weights.predict_row(x, &mut self.scratch, &mut self.out),
            _ => self.out.extend(std::iter::repeat_n(0.0, self.outputs)),
        }
        self.versions.push(i64::try_from(weights.version).unwrap_or(i64::MAX));
    }

    /// `chunk` with its outputs and versions appended.
    fn finish(self, mut chunk: Chunk) -> Chunk {
        let output = if self.outputs == 1 {
            Column::F32(self.out)
        } else {
            Column::Tensor { width: self.outputs, data: self.out }
        };
        chunk.columns.push(Arc::new(output));
        chunk.columns.push(Arc::new(Column::I64(self.versions)));
        chunk
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dataflow::learner::tests::{labelled, predicted, state};

    /// The zero weights of the tests' learner (one feature, no standardisation).
    fn zero() -> Arc<Weights> {
        Arc::new(Weights { version: 0, inputs: 1, outputs: 1, weight: vec![0.0], bias: vec![0.0], scale: None })
    }

    /// Per answered row, (probability, version).
    fn answers(chunks: &[Chunk]) -> Vec<(f32, i64)> {
        let mut rows = Vec::new();
        for chunk in chunks {
            let n = chunk.columns.len();
            match (&*chunk.columns[n - 2], &*chunk.columns[n - 1]) {
                (Column::F32(p), Column::I64(v)) => rows.extend(p.iter().copied().zip(v.iter().copied())),
                other => panic!("unexpected answer columns {other:?}"),
            }
        }
        rows
    }

    #[test]
    fn a_block_sent_with_its_labels_is_predicted_and_learned_row_by_row() {
        let now = Instant::now();
        // Its own rows' labels, in order: every row predicted after the labels before it.
        let (mut st, mut current) = (state(10), zero());
        let block = vec![predicted(&[3, 5], &[1.0, 2.0]), predicted(&[8], &[3.0])];
        let got =
            answers(&one_time(&mut st, &mut current, block, &[labelled(0, &[3, 5, 8], false)], (Some(0), 1), now));
        assert_eq!(got.iter().map(|a| a.1).collect::<Vec<_>>(), vec![0, 1, 2]);
        assert_eq!(got[0].0, 0.5, "zero weights");
        assert!(got[1].0 > 0.5 && got[2].0 > got[1].0, "label 1 learned before each next row: {got:?}");
        assert_eq!(current.version, 3, "the weights at hand are the learner's");
        // Through the keeper (a row kept from before), the same answers.
        let (mut kept, mut kept_current) = (state(10), zero());
        kept.keep_chunk(&predicted(&[1], &[0.9]), 0, 1, now);
        let block = vec![predicted(&[3, 5], &[1.0, 2.0]), predicted(&[8], &[3.0])];
        let fed = [labelled(0, &[3, 5, 8], false)];
        let through = answers(&one_time(&mut kept, &mut kept_current, block, &fed, (Some(0), 1), now));
        assert_eq!(through, got);
        // Labels go by position: the first label is learned right after the first row,
        // so a label naming a later row of the block finds it not kept yet; labels
        // beyond the rows are learned after the last row.
        let (mut st, mut current) = (state(10), zero());
        st.keep_chunk(&predicted(&[1], &[0.9]), 0, 1, now);
        let block = vec![predicted(&[3, 5], &[1.0, 2.0])];
        let fed = [labelled(0, &[5, 3], false), labelled(2, &[1], false)];
        let got = answers(&one_time(&mut st, &mut current, block, &fed, (Some(0), 1), now));
        assert_eq!(got.iter().map(|a| a.1).collect::<Vec<_>>(), vec![0, 0], "key 5 was not kept yet");
        assert_eq!(current.version, 2, "key 3, then key 1 kept from before");
    }
}
