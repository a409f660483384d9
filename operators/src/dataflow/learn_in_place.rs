//! A learning node on one worker in a deterministic engine (a replay, a backtest): its
//! predictions and its learning in one operator, without the feedback loop.
//!
//! The general node is a cycle (`predict.rs` → `samples.rs` → `learner.rs` → back to
//! `predict.rs` one time step later), so every time costs a trip around the dataflow:
//! a prequential backtest, whose every block of rows is a time, paid several rounds of
//! the worker per block. With one worker the learner and the predictions live in the
//! same place, so this operator does both, for every time whose rows and labels are all
//! in (both inputs' frontiers past it), oldest first, as many as are ready in one
//! activation:
//!
//! 1. the time's chunks are predicted with the weights learned from every label before
//!    it, and sent on, each with `model_version`;
//! 2. their keys and features are kept for the labels that name them;
//! 3. the time's labels are learned, in submission order.
//!
//! When a time's labels name exactly its own rows, in order, and nothing is kept from
//! before (every block of a prequential run), step 2 is skipped and the labels are
//! learned from the rows' features directly: what keeping and taking them back would
//! give, without a hash-map probe per row each way (`State::own_rows`).
//!
//! That is the order the cycle gives (a time's predictions first, then its feedback),
//! so the answers, the versions and the final weights are bit-identical to the cycle's
//! at any number of workers (`tests/online.rs`).

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
use crate::kernel::learn::Weights;

/// A time's capability, chunks and labels, until both inputs have passed it.
type Held = (Option<Capability<Time>>, Vec<Chunk>, Vec<Labels>);

/// Extension trait: predict and learn in one operator (one worker, deterministic).
pub trait LearnInPlace<'scope> {
    /// Predicts the rows with `initial`'s weights and those learned from `feedback`
    /// before each row's time (see the module docs). `key` and `input` index the
    /// chunks' key and features columns.
    fn learn_in_place(
        self,
        feedback: LabelStream<'scope>,
        key: Option<usize>,
        input: usize,
        config: LearnConfig,
    ) -> RowStream<'scope>;
}

impl<'scope> LearnInPlace<'scope> for RowStream<'scope> {
    fn learn_in_place(
        self,
        feedback: LabelStream<'scope>,
        key: Option<usize>,
        input: usize,
        config: LearnConfig,
    ) -> RowStream<'scope> {
        let name = format!("LearnInPlace({})", config.node);
        self.binary_frontier::<_, VecBuilder<Chunk>, _, _, _, _>(
            feedback,
            Pipeline,
            Pipeline,
            &name,
            move |_cap, _info| {
                let mut current: Arc<Weights> = Arc::new(config.learner.weights());
                let mut st = State::new(config);
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
                        let Some((cap, chunks, mut fed)) = pending.remove(&time) else { break };
                        fed.sort_by_key(|l| l.first_id);
                        // Labels of exactly this time's rows (a prequential block): learnt
                        // from the rows' features, not kept and taken back by key.
                        let own = key.and_then(|k| st.own_rows(&chunks, k, input, &fed));
                        if let Some(cap) = cap {
                            let mut session = output.session_with_builder(&cap);
                            for chunk in chunks {
                                if let (Some(k), None) = (key, &own) {
                                    st.keep_chunk(&chunk, k, input, now);
                                }
                                session.give(predict(chunk, input, &current));
                            }
                        }
                        match &own {
                            Some(features) => st.learn_own_rows(features, &fed),
                            None => st.learn_in_order(fed, now),
                        }
                        if let Some(w) = st.take_weights() {
                            current = Arc::new(w);
                        }
                    }
                    if rows_frontier.is_empty() && labels_frontier.is_empty() {
                        st.finish();
                    }
                }
            },
        )
    }
}
