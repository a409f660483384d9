//! Prequential evaluation (backtesting) of a learning graph: each row of a labelled
//! stream is predicted, then its label is fed back, in stream order: row `i` is
//! predicted with the labels of rows `0..i`, River's `progressive_val_score` order.
//!
//! Rows go in blocks: a block's rows are submitted as one batch with their labels as
//! its feedback (`Submission::then_feedback`), which the learning node takes row by row
//! (predict a row, learn its label, predict the next), so the block is a unit of
//! transport, not of learning: the answers depend only on the stream, whatever the
//! block size. Blocks are `max_block` rows (the last one what is left), at any number
//! of workers: a deterministic engine learns on one worker, where the block's rows and
//! labels all go. The run pipelines: blocks are submitted without waiting for answers,
//! up to the graph's `max_in_flight` rows.
//!
//! Feedback names each row by the learning node's key when that key is a graph input
//! field; otherwise it carries the row's features, which must then be a graph input.

use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

use weir_operators::{Chunk, Column, RowError};

use crate::feedback::Feedback;
use crate::handle::GraphHandle;
use crate::plan::StepOp;
use crate::replies::MAX_BATCH_ROWS;
use crate::spec::INPUT;
use crate::submit::{Submission, SubmitError};

/// What a prequential run saw.
#[derive(Debug)]
pub struct PrequentialRun {
    /// The graph's answers, one chunk of output columns per block, in stream order.
    pub blocks: Vec<Chunk>,
    /// The index, among the graph's outputs, of the learning node's prediction.
    pub prediction: usize,
    /// Rows whose predicted class was their label.
    pub right: usize,
    /// Rows predicted (failed rows are not right).
    pub rows: usize,
    /// Seconds from the first submission until every row is answered and every label
    /// taken by the learner.
    pub seconds: f64,
}

impl PrequentialRun {
    /// The share of rows predicted right.
    pub fn accuracy(&self) -> f64 {
        self.right as f64 / self.rows.max(1) as f64
    }
}

/// The answers of a run's blocks as they come. Only the last one wakes the thread
/// waiting for them: a wake-up per block cost the run more than its rows' learning.
struct Answers {
    /// Per block, its answer; and how many came.
    state: Mutex<(Vec<Option<Chunk>>, usize)>,
    all_in: Condvar,
}

impl Answers {
    fn new(blocks: usize) -> Answers {
        Answers { state: Mutex::new(((0..blocks).map(|_| None).collect(), 0)), all_in: Condvar::new() }
    }

    /// Block `block`'s answer (`None`: its reply was dropped without an answer).
    fn put(&self, block: usize, chunk: Option<Chunk>) {
        let mut state = self.state.lock().unwrap_or_else(|p| p.into_inner());
        state.0[block] = chunk;
        state.1 += 1;
        if state.1 == state.0.len() {
            self.all_in.notify_one();
        }
    }

    /// Every block's answer, once all came.
    fn wait(&self) -> Vec<Option<Chunk>> {
        let mut state = self.state.lock().unwrap_or_else(|p| p.into_inner());
        while state.1 < state.0.len() {
            state = self.all_in.wait(state).unwrap_or_else(|p| p.into_inner());
        }
        std::mem::take(&mut state.0)
    }
}

/// A block's place in [`Answers`], held by its reply: filled when the reply is called,
/// or, if the reply is dropped uncalled, counted as come without an answer, so that the
/// wait for every block still ends.
struct Place {
    answers: Arc<Answers>,
    block: usize,
    filled: bool,
}

impl Place {
    fn fill(mut self, chunk: Chunk) {
        self.answers.put(self.block, Some(chunk));
        self.filled = true;
    }
}

impl Drop for Place {
    fn drop(&mut self) {
        if !self.filled {
            self.answers.put(self.block, None);
        }
    }
}

/// Why a prequential run could not go.
#[derive(Debug, thiserror::Error)]
pub enum PrequentialError {
    /// The graph cannot be evaluated this way (the caller's fault).
    #[error("{0}")]
    Graph(String),
    /// A submission was refused.
    #[error(transparent)]
    Submit(#[from] SubmitError),
}

/// Runs `inputs` (one column per graph input, all of one length) with `labels`
/// prequentially through `graph`, in blocks of at most `max_block` rows (at most a
/// batch's largest, `MAX_BATCH_ROWS`).
pub fn prequential(
    graph: &GraphHandle,
    inputs: &[Column],
    labels: &[i64],
    max_block: usize,
) -> Result<PrequentialRun, PrequentialError> {
    let plan = graph.plan();
    let bad = |m: String| PrequentialError::Graph(format!("graph '{}': {m}", plan.name));
    let Some(step) = plan.steps.iter().find(|s| matches!(s.op, StepOp::Learn { .. })) else {
        return Err(bad("it has no learning node".into()));
    };
    let StepOp::Learn { input, key, spec, .. } = &step.op else { unreachable!("found above") };
    let kinds = graph.feedback_kinds().ok_or_else(|| bad("it takes no feedback".into()))?.clone();
    // The graph input a field of the learning node's stream comes from, if any.
    let from_input = |index: usize| -> Option<usize> {
        let (field, _) = step.schema.fields.get(index)?;
        (field.node == INPUT).then(|| plan.inputs.iter().position(|(n, _)| *n == field.field)).flatten()
    };
    let key_input = key.and_then(from_input);
    let features_input = from_input(*input);
    if key_input.is_none() && features_input.is_none() {
        return Err(bad(format!(
            "the learning node '{}' reads computed features by a computed key; prequential runs need one of them to be a graph input",
            step.name
        )));
    }
    // A learning step adds its prediction, then its version, last in its schema.
    let fields = &step.schema.fields;
    let predicted = fields.get(fields.len().saturating_sub(2)).map(|(f, _)| f.clone());
    let prediction = plan
        .output
        .fields
        .iter()
        .position(|(_, i, _)| predicted.is_some() && plan.output_field(*i) == predicted)
        .ok_or_else(|| bad(format!("no output reads the prediction of '{}'", step.name)))?;
    let rows = labels.len();
    if inputs.len() != plan.inputs.len() || inputs.iter().any(|c| c.len() != rows) {
        return Err(bad(format!("expected {} input columns of {rows} rows", plan.inputs.len())));
    }
    let learned_before = graph.learn_stats().map_or(0, |(_, s)| s.feedback);
    let started = Instant::now();
    // The blocks: `(first row, rows)`, `max_block` rows each but the last.
    let max_block = max_block.clamp(1, MAX_BATCH_ROWS);
    let cuts: Vec<(usize, usize)> = (0..rows).step_by(max_block).map(|at| (at, max_block.min(rows - at))).collect();
    let answers = Arc::new(Answers::new(cuts.len()));
    for (block, &(at, n)) in cuts.iter().enumerate() {
        let slice = |c: &Column| {
            let mut out = c.empty_like(n);
            out.extend_range(c, at, n);
            out
        };
        let mut feedback = Feedback::new(&kinds);
        // By key where the key is a graph input, otherwise with the row's own features.
        let labelled = &labels[at..at + n];
        let added = match (key_input, features_input) {
            (Some(k), _) => feedback.extend_by_key(&inputs[k], at, labelled),
            (None, Some(f)) => feedback.extend_with_features(&inputs[f], at, labelled),
            (None, None) => unreachable!("refused above"),
        };
        added.map_err(|m| {
            SubmitError::Invalid(RowError::invalid_input("feedback", format!("rows {at}..{}: {m}", at + n)))
        })?;
        let place = Place { answers: Arc::clone(&answers), block, filled: false };
        // The block's rows, then its labels, at one time of the clock.
        let reply = Box::new(move |chunk| place.fill(chunk));
        graph.submit(Submission::columns(inputs.iter().map(slice).collect(), reply).then_feedback(feedback))?;
    }
    let answers = answers.wait();
    // Every prediction is answered; the last block's labels may still be on their way
    // to the learner. The run ends when it has taken every one.
    let wait_until = Instant::now() + Duration::from_secs(60);
    while graph.learn_stats().is_some_and(|(_, s)| s.feedback < learned_before + rows as u64)
        && Instant::now() < wait_until
    {
        std::thread::yield_now();
    }
    let seconds = started.elapsed().as_secs_f64();
    let blocks: Vec<Chunk> = answers.into_iter().flatten().collect();
    let classes = spec.classes;
    let mut right = 0;
    let mut row = 0;
    for chunk in &blocks {
        for r in 0..chunk.len() {
            if chunk.is_ok(r) && predicted_class(&chunk.columns[prediction], r, classes) == Some(labels[row]) {
                right += 1;
            }
            row += 1;
        }
    }
    Ok(PrequentialRun { blocks, prediction, right, rows, seconds })
}

/// The class a learning node's output predicts for row `r`: 1 where the probability of
/// class 1 is above one half (logistic; a tie is class 0, as River's and scikit-learn's
/// classifiers and weir's tree models decide it), or the most probable class, the
/// first of equals (softmax).
pub fn predicted_class(column: &Column, r: usize, classes: usize) -> Option<i64> {
    match column {
        Column::F32(p) if classes == 2 => Some(i64::from(p[r] > 0.5)),
        Column::Tensor { width, data } => {
            let row = &data[r * width..(r + 1) * width];
            let best =
                row.iter().enumerate().fold((0, f32::NEG_INFINITY), |b, (i, &p)| if p > b.1 { (i, p) } else { b });
            Some(best.0 as i64)
        }
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_wait_ends_when_every_reply_is_called_or_dropped() {
        let answers = Arc::new(Answers::new(2));
        let (first, second) = (
            Place { answers: Arc::clone(&answers), block: 0, filled: false },
            Place { answers: Arc::clone(&answers), block: 1, filled: false },
        );
        let filler = std::thread::spawn(move || {
            first.fill(Chunk::new(0, vec![7], vec![Column::I64(vec![1])]));
            drop(second);
        });
        let got = answers.wait();
        filler.join().expect("the filling thread");
        assert_eq!(got.iter().map(Option::is_some).collect::<Vec<_>>(), vec![true, false]);
    }
}
