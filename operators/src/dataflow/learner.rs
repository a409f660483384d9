//! The learner of a learning model node: a timely operator on the graph's feedback
//! edge.
//!
//! It reads the node's predictions (their keys and features, [`super::PredictionSamples`],
//! kept by a [`Keeper`] until their labels come) and the graph's feedback (a key and a
//! label per row, and optionally the row's own features, [`super::FeedbackLabels`]), all
//! on worker 0, so one learner sees every row
//! in one order. Each feedback row is joined with its prediction's features (or uses its
//! own), learned by the node's [`Learner`], and every new version of the weights is sent
//! on at the feedback's time; the engine broadcasts that stream to every worker and
//! closes the loop into the node's operator ([`super::predict`]), one time step later.
//!
//! Rows are learned as they arrive (serving). With `update_every_ms`, rows that wait
//! longer than that for a full minibatch are stepped on anyway. A deterministic engine
//! builds no cycle: its learning nodes predict and learn in one operator instead
//! ([`super::learn_in_place`]), on this module's `State` made deterministic (no timer,
//! no age limit on kept predictions: wall clocks are not reproducible).
//!
//! Feedback that cannot be learned (unknown or expired key, a label that is not a class,
//! features of the wrong width) is counted in [`LearnStats`], never fatal.

use std::sync::Arc;
use std::time::{Duration, Instant};

use timely::dataflow::channels::pact::Exchange;
use timely::dataflow::operators::generic::{Operator, OutputBuilderSession};
use timely::dataflow::operators::Capability;

use super::labels::{LabelStream, Labels};
use super::predict::WeightStream;
use super::samples::{each_sample, sample_at, SampleStream, Samples};
use super::vec_builder::VecBuilder;
use super::Time;
use crate::chunk::Chunk;
use crate::kernel::keeper::{Keeper, Key, Miss};
use crate::kernel::learn::Weights;
use crate::kernel::learner::Learner;
use crate::learn_stats::{FeedbackOutcome, LearnStats};

/// Something that saves the learner: called every `every` versions and at shutdown.
pub type CheckpointFn = Arc<dyn Fn(&Learner) -> Result<(), String> + Send + Sync>;

/// How one node learns.
#[derive(Clone)]
pub struct LearnConfig {
    /// The node's name, for logs.
    pub node: Arc<str>,
    /// The learner, at its starting weights.
    pub learner: Learner,
    /// Predictions kept for feedback, at most.
    pub keep_rows: usize,
    /// How long a prediction is kept (live only).
    pub keep_for: Option<Duration>,
    /// Step on a partial minibatch once its first row waited this long (live only).
    pub update_every_ms: Option<Duration>,
    /// Counters.
    pub stats: Arc<LearnStats>,
    /// Saves the learner every so many versions (and at shutdown).
    pub checkpoint: Option<(u64, CheckpointFn)>,
}

type Output<'a> = OutputBuilderSession<'a, Time, VecBuilder<Arc<Weights>>>;

pub(super) struct State {
    config: LearnConfig,
    /// In a deterministic engine ([`super::learn_in_place`]): no age limit on kept
    /// predictions, and no learner kept for a reload.
    deterministic: bool,
    keeper: Keeper,
    /// The version last sent on.
    sent: u64,
    /// The version last checkpointed.
    saved: u64,
    /// With `update_every_ms`: when the first row of the partial minibatch came,
    /// and a capability to send its step at.
    partial: Option<(Instant, Capability<Time>)>,
    finished: bool,
}

/// Extension trait: learn from a learning node's predictions and feedback.
pub trait LearnOnline<'scope> {
    /// Builds the learner on worker 0, fed with these samples of the node's predictions
    /// and `feedback`, and returns the stream of its weight versions (see the module
    /// docs). Other workers' instances forward their inputs to worker 0 and send
    /// nothing.
    ///
    /// # Examples
    ///
    /// ```
    /// use std::sync::Arc;
    ///
    /// use timely::dataflow::operators::capture::{Capture, Event};
    /// use timely::dataflow::operators::ToStream;
    /// use weir_operators::dataflow::{LearnConfig, LearnOnline, Labels, Samples};
    /// use weir_operators::kernel::keeper::Key;
    /// use weir_operators::kernel::learn::Optimizer;
    /// use weir_operators::kernel::learner::{Learner, LearnerConfig};
    /// use weir_operators::learn_stats::LearnStats;
    ///
    /// let learner = Learner::new(
    ///     1,
    ///     LearnerConfig { classes: 2, optimizer: Optimizer::Sgd { lr: 0.1 }, l2: 0.0, standardize: false, update_every: 1 },
    /// );
    /// let config = LearnConfig {
    ///     node: "scorer".into(),
    ///     learner,
    ///     keep_rows: 100,
    ///     keep_for: None,
    ///     update_every_ms: None,
    ///     stats: Arc::new(LearnStats::new()),
    ///     checkpoint: None,
    /// };
    /// let captured = timely::example(move |scope| {
    ///     // Key 7 was predicted from the features [2.0]; its label is 1.
    ///     let samples = vec![Samples { keys: vec![Key::Int(7)], features: vec![2.0] }].to_stream(scope);
    ///     let labels = Labels { first_id: 0, keys: vec![Key::Int(7)], labels: vec![1], features: vec![None] };
    ///     samples.learn_online(vec![labels].to_stream(scope), config).capture()
    /// });
    /// let versions: Vec<u64> = captured
    ///     .iter()
    ///     .flat_map(|event| match event {
    ///         Event::Messages(_, weights) => weights.iter().map(|w| w.version).collect(),
    ///         Event::Progress(_) => Vec::new(),
    ///     })
    ///     .collect();
    /// // One row, one step.
    /// assert_eq!(versions, vec![1]);
    /// ```
    fn learn_online(self, feedback: LabelStream<'scope>, config: LearnConfig) -> WeightStream<'scope>;
}

impl<'scope> LearnOnline<'scope> for SampleStream<'scope> {
    fn learn_online(self, feedback: LabelStream<'scope>, config: LearnConfig) -> WeightStream<'scope> {
        learn(self, feedback, config)
    }
}

/// The learner operator (see [`LearnOnline::learn_online`]).
fn learn<'scope>(
    samples: SampleStream<'scope>,
    feedback: LabelStream<'scope>,
    config: LearnConfig,
) -> WeightStream<'scope> {
    let scope = samples.scope();
    let name = format!("Learn({})", config.node);
    let worker = scope.index();
    samples.binary_frontier::<_, VecBuilder<Arc<Weights>>, _, _, _, _>(
        feedback,
        Exchange::new(|_: &Samples| 0),
        Exchange::new(|_: &Labels| 0),
        &name,
        move |_cap, info| {
            let activator = scope.activator_for(info.address.clone());
            let mut st = State::new(config, false);
            move |(samples, samples_frontier), (feedback, feedback_frontier), output| {
                let now = Instant::now();
                samples.for_each_stamp(|_, data| data.flat_map(|d| d.drain(..)).for_each(|s| st.keep(s, now)));
                feedback.for_each_stamp(|cap, data| {
                    for l in data.flat_map(|d| d.drain(..)) {
                        if let Some(retained) = cap.retain_least(output.output_index()) {
                            st.learn(l, now);
                            st.send(output, &retained);
                            if st.config.update_every_ms.is_some()
                                && st.config.learner.pending() > 0
                                && st.partial.is_none()
                            {
                                st.partial = Some((now, retained));
                            }
                        }
                    }
                });
                // A partial minibatch that waited long enough is stepped on.
                if let (Some(wait), Some((since, _))) = (st.config.update_every_ms, &st.partial) {
                    let due = *since + wait;
                    if st.config.learner.pending() == 0 {
                        st.partial = None;
                    } else if now >= due {
                        st.config.learner.flush();
                        if let Some((_, cap)) = st.partial.take() {
                            st.send(output, &cap);
                        }
                    } else {
                        activator.activate_after(due - now);
                    }
                }
                if samples_frontier.is_empty() && feedback_frontier.is_empty() && !st.finished {
                    // Shutdown: learn what is pending and save it.
                    st.finished = true;
                    st.partial = None;
                    st.config.learner.flush();
                    if worker == 0 {
                        st.checkpoint(true);
                    }
                }
            }
        },
    )
}

impl State {
    /// The learner's state before any data, for one worker's operator; `deterministic`
    /// in a deterministic engine (see the field).
    pub(super) fn new(config: LearnConfig, deterministic: bool) -> State {
        let keep_for = if deterministic { None } else { config.keep_for };
        State {
            keeper: Keeper::new(config.learner.inputs(), config.keep_rows, keep_for),
            sent: config.learner.version(),
            saved: config.learner.version(),
            config,
            deterministic,
            partial: None,
            finished: false,
        }
    }

    /// The weights now, if they changed since last taken (and then saved when due).
    pub(super) fn take_weights(&mut self) -> Option<Weights> {
        self.stepped().then(|| self.config.learner.weights())
    }

    /// Whether the weights changed since last taken; then saves them when due. Counts
    /// the learner's state either way.
    pub(super) fn stepped(&mut self) -> bool {
        let version = self.config.learner.version();
        self.config.stats.set_state(version, self.keeper.len());
        if version == self.sent {
            return false;
        }
        self.sent = version;
        self.checkpoint(false);
        if !self.deterministic {
            // A serving node's latest state, for a reload to carry on from.
            self.config.stats.keep_learner(&self.config.learner);
        }
        true
    }

    /// Learns what is pending and saves it (at the end of the input).
    pub(super) fn finish(&mut self) {
        if !self.finished {
            self.finished = true;
            self.config.learner.flush();
            self.checkpoint(true);
        }
    }

    fn keep(&mut self, samples: Samples, now: Instant) {
        let width = self.config.learner.inputs().max(1);
        for (key, x) in samples.keys.into_iter().zip(samples.features.chunks_exact(width)) {
            self.keeper.insert(key, x, now);
        }
    }

    /// Keeps the keys (column `key`) and features (column `input`) of a prediction
    /// chunk's rows, as [`Samples`] would carry them, without building them first.
    pub(super) fn keep_chunk(&mut self, chunk: &Chunk, key: usize, input: usize, now: Instant) {
        each_sample(chunk, key, input, |k, x| self.keeper.insert(k, x, now));
    }

    /// Whether a time's feedback `fed` (in learning order) labels exactly its
    /// prediction `chunks`' rows (key column `key`, features column `input`), one label
    /// per row in row order: integer keys rising from row to row, no failed row, no
    /// label bringing its own features, no more rows than the keeper holds, and nothing
    /// kept or ever dropped before. Keeping each row and taking it back by its label's
    /// key right after would then hand the learner that row's own features, with nothing
    /// else in the keeper touched (a prequential run's every block is such a time), so
    /// the labels can be learned from the rows ([`State::learn_features`]) without the
    /// keeper.
    pub(super) fn own_rows(&self, chunks: &[Chunk], key: usize, input: usize, fed: &[Labels]) -> bool {
        let width = self.config.learner.inputs();
        if width == 0 || !self.keeper.is_pristine_empty() || chunks.iter().any(Chunk::has_errors) {
            return false;
        }
        let mut labelled = fed.iter().flat_map(|l| l.keys.iter().zip(&l.features));
        let (mut rows, mut last, mut matched) = (0usize, None::<i64>, true);
        for chunk in chunks {
            each_sample(chunk, key, input, |k, x| {
                let rising = matches!(k, Key::Int(k) if last.is_none_or(|l| l < k));
                matched &= rising && x.len() == width && matches!(labelled.next(), Some((l, None)) if *l == k);
                if matched {
                    last = if let Key::Int(k) = k { Some(k) } else { last };
                    rows += 1;
                }
            });
            if !matched {
                return false;
            }
        }
        labelled.next().is_none()
            && rows == chunks.iter().map(Chunk::len).sum::<usize>()
            && rows <= self.keeper.max_rows()
    }

    fn learn(&mut self, labels: Labels, now: Instant) {
        for ((key, label), own) in labels.keys.iter().zip(&labels.labels).zip(&labels.features) {
            self.learn_label(key, *label, own.as_deref(), now);
        }
    }

    /// Learns one feedback row: `label` for the features `own`, or for those kept under
    /// `key` (taken out of the keeper), counting what became of it.
    pub(super) fn learn_label(&mut self, key: &Key, label: i64, own: Option<&[f32]>, now: Instant) {
        let stats = &self.config.stats;
        let features = match own {
            Some(x) => x,
            None => match self.keeper.take(key, now) {
                Ok(x) => x,
                Err(Miss::Unknown) => return stats.record(FeedbackOutcome::UnknownKey),
                Err(Miss::Expired) => return stats.record(FeedbackOutcome::ExpiredKey),
            },
        };
        learn_row(&mut self.config.learner, stats, features, label);
    }

    /// Keeps row `row` of a prediction chunk (key column `key`, features column
    /// `input`) for the labels that name it, as [`State::keep_chunk`] keeps every row.
    pub(super) fn keep_row(&mut self, chunk: &Chunk, row: usize, key: usize, input: usize, now: Instant) {
        if let Some((k, x)) = sample_at(chunk, key, input, row) {
            self.keeper.insert(k, x, now);
        }
    }

    /// Learns one labelled row from `features` (its own row's, as [`State::own_rows`]
    /// vouched for), without the keeper.
    pub(super) fn learn_features(&mut self, features: &[f32], label: i64) {
        learn_row(&mut self.config.learner, &self.config.stats, features, label);
    }

    /// Makes `current` the learner's weights if a step was taken since it was made.
    pub(super) fn refresh(&self, current: &mut Arc<Weights>) {
        if self.config.learner.version() != current.version {
            self.config.learner.weights_into(Arc::make_mut(current));
        }
    }

    /// Sends the weights on at `cap` if they changed since last sent; saves them when
    /// due.
    fn send(&mut self, output: &mut Output<'_>, cap: &Capability<Time>) {
        if let Some(weights) = self.take_weights() {
            output.session_with_builder(cap).give(Arc::new(weights));
        }
    }

    /// Saves the learner if `every` versions passed since the last save, or if `now`;
    /// never once the node handed its checkpoints over to a reload's next revision.
    fn checkpoint(&mut self, now: bool) {
        let Some((every, save)) = &self.config.checkpoint else { return };
        if !self.config.stats.writes_checkpoints() {
            return;
        }
        let version = self.config.learner.version();
        let due = version >= self.saved + (*every).max(1) || (now && version != self.saved);
        if !due {
            return;
        }
        match save(&self.config.learner) {
            Ok(()) => {
                self.saved = version;
                self.config.stats.record_checkpoint();
            }
            Err(e) => tracing::error!(node = &*self.config.node, "cannot write a checkpoint: {e}"),
        }
    }
}

/// Gives `learner` one labelled row and counts what became of it.
fn learn_row(learner: &mut Learner, stats: &LearnStats, x: &[f32], label: i64) {
    match learner.push(x, label) {
        Ok(_) => stats.record(FeedbackOutcome::Learned),
        Err(_) => stats.record(FeedbackOutcome::Invalid),
    }
}

#[cfg(test)]
pub(in crate::dataflow) mod tests {
    use timely::dataflow::operators::capture::Capture;
    use timely::dataflow::operators::Input;

    use super::*;
    use crate::column::Column;
    use crate::dataflow::testing::captured;
    use crate::kernel::learn::Optimizer;
    use crate::kernel::learner::LearnerConfig;
    use crate::learn_stats::LearnStatsSnapshot;

    /// A learner of one feature (SGD at 0.1, a step per label), keeping at most
    /// `keep_rows` rows, counting into `stats`.
    fn config(keep_rows: usize, stats: Arc<LearnStats>) -> LearnConfig {
        let learner = Learner::new(
            1,
            LearnerConfig {
                classes: 2,
                optimizer: Optimizer::Sgd { lr: 0.1 },
                l2: 0.0,
                standardize: false,
                update_every: 1,
            },
        );
        LearnConfig {
            node: "scorer".into(),
            learner,
            keep_rows,
            keep_for: None,
            update_every_ms: None,
            stats,
            checkpoint: None,
        }
    }

    /// Learns at `workers` workers: samples come from the last worker, feedback from
    /// the first, all of it sent before the dataflow runs. Returns the weight versions
    /// sent, with their times, and the counters.
    fn run(workers: usize) -> (Vec<(Time, u64)>, LearnStatsSnapshot) {
        let stats = Arc::new(LearnStats::new());
        let config = config(10, Arc::clone(&stats));
        let workers = timely::execute(timely::Config::process(workers), move |worker| {
            let config = config.clone();
            let (mut samples, mut feedback, weights) = worker.dataflow::<Time, _, _>(move |scope| {
                let (samples, sample_stream) = scope.new_input::<Vec<Samples>>();
                let (feedback, label_stream) = scope.new_input::<Vec<Labels>>();
                (samples, feedback, sample_stream.learn_online(label_stream, config).capture())
            });
            let labels = |keys: Vec<Key>, labels: Vec<i64>, features: Vec<Option<Vec<f32>>>| Labels {
                first_id: 0,
                keys,
                labels,
                features,
            };
            let (predicts, labels_rows) = (worker.index() + 1 == worker.peers(), worker.index() == 0);
            // t0: key 7 predicted and labelled; key 8 labelled, never predicted.
            if predicts {
                samples.send(Samples { keys: vec![Key::Int(7)], features: vec![2.0] });
            }
            if labels_rows {
                feedback.send(labels(vec![Key::Int(7), Key::Int(8)], vec![1, 0], vec![None, None]));
            }
            // t1: a row with its own features, and a label that is not a class.
            samples.advance_to(1);
            feedback.advance_to(1);
            if labels_rows {
                let own = vec![Some(vec![1.0]), Some(vec![1.0])];
                feedback.send(labels(vec![Key::Int(9), Key::Int(9)], vec![0, 5], own));
            }
            // t2: feedback for key 7 again: it was taken at t0.
            samples.advance_to(2);
            feedback.advance_to(2);
            if labels_rows {
                feedback.send(labels(vec![Key::Int(7)], vec![1], vec![None]));
            }
            weights
        })
        .expect("timely runs");
        let versions = workers
            .join()
            .into_iter()
            .flat_map(|weights| captured(weights.expect("a worker")))
            .map(|(time, w)| (time, w.version))
            .collect();
        (versions, stats.snapshot())
    }

    /// A deterministic engine's learner state, as [`config`] makes it.
    pub(in crate::dataflow) fn state(keep_rows: usize) -> State {
        State::new(config(keep_rows, Arc::new(LearnStats::new())), true)
    }

    /// A prediction chunk: keys in column 0, one feature per row in column 1.
    pub(in crate::dataflow) fn predicted(keys: &[i64], features: &[f32]) -> Chunk {
        let ids = (0..keys.len() as u64).collect();
        Chunk::new(0, ids, vec![Column::I64(keys.to_vec()), Column::F32(features.to_vec())])
    }

    /// Labels (class 1) for `keys`, `own` of them with their own features.
    pub(in crate::dataflow) fn labelled(first_id: u64, keys: &[i64], own: bool) -> Labels {
        Labels {
            first_id,
            keys: keys.iter().map(|&k| Key::Int(k)).collect(),
            labels: vec![1; keys.len()],
            features: keys.iter().map(|_| own.then(|| vec![0.5])).collect(),
        }
    }

    #[test]
    fn a_time_whose_labels_name_its_own_rows_in_order_is_learnt_from_them() {
        let st = state(10);
        let chunks = [predicted(&[3, 5], &[0.1, 0.2]), predicted(&[8], &[0.3])];
        let fed = [labelled(0, &[3, 5], false), labelled(2, &[8], false)];
        assert!(st.own_rows(&chunks, 0, 1, &fed));
        // Not when the labels name other rows, in another order, fewer or more of them.
        for keys in [&[3, 5, 9][..], &[5, 3, 8], &[3, 5], &[3, 5, 8, 9]] {
            assert!(!st.own_rows(&chunks, 0, 1, &[labelled(0, keys, false)]), "{keys:?}");
        }
        // Not when a key repeats (the keeper would give both labels the later row's
        // features), when a label brings its own, or with more rows than are kept.
        let repeated = [predicted(&[3, 3], &[0.1, 0.2])];
        assert!(!st.own_rows(&repeated, 0, 1, &[labelled(0, &[3, 3], false)]));
        assert!(!st.own_rows(&chunks[..1], 0, 1, &[labelled(0, &[3, 5], true)]));
        assert!(!state(1).own_rows(&chunks[..1], 0, 1, &[labelled(0, &[3, 5], false)]));
    }

    #[test]
    fn rows_kept_from_before_send_a_time_through_the_keeper() {
        let now = Instant::now();
        let mut st = state(10);
        let chunks = [predicted(&[3], &[0.1])];
        st.keep_chunk(&predicted(&[1], &[0.9]), 0, 1, now);
        assert!(!st.own_rows(&chunks, 0, 1, &[labelled(0, &[3], false)]), "a row is kept");
        st.learn(labelled(0, &[1], false), now);
        assert!(st.own_rows(&chunks, 0, 1, &[labelled(0, &[3], false)]), "taken again");
        let mut full = state(1);
        full.keep_chunk(&predicted(&[1, 2], &[0.9, 0.8]), 0, 1, now);
        full.learn(labelled(0, &[2], false), now);
        assert!(full.keeper.is_empty());
        assert!(!full.own_rows(&chunks, 0, 1, &[labelled(0, &[3], false)]), "key 1 was dropped for room");
    }

    #[test]
    fn feedback_is_learned_as_it_comes_and_what_cannot_be_learned_is_counted() {
        // One worker: each time's samples come before its feedback.
        let (versions, counts) = run(1);
        assert_eq!(versions, vec![(0, 1), (1, 2)]);
        assert_eq!((counts.learned, counts.unknown_key, counts.invalid), (2, 2, 1));
        assert_eq!(counts.version, 2);
        // Two: the samples cross to worker 0 and may come after the labels naming them
        // (an unknown key then), but every label is counted once, and the label that is
        // not a class is invalid either way.
        let (_, counts) = run(2);
        assert_eq!(counts.learned + counts.unknown_key + counts.invalid, 5);
        assert_eq!(counts.invalid, 1);
    }
}
