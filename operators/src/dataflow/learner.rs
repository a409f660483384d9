//! The learner of a learning model node: a timely operator on the graph's feedback
//! edge.
//!
//! It reads the node's predictions (their keys and features, kept by a [`Keeper`] until
//! their labels come) and the graph's feedback (a key and a label per row, and
//! optionally the row's own features), all on worker 0, so one learner sees every row
//! in one order. Each feedback row is joined with its prediction's features (or uses its
//! own), learned by the node's [`Learner`], and every new version of the weights is sent
//! on at the feedback's time; the engine broadcasts that stream to every worker and
//! closes the loop into the node's operator ([`super::predict`]), one time step later.
//!
//! - Live: rows are learned as they arrive. With `update_every_ms`, rows that wait
//!   longer than that for a full minibatch are stepped on anyway.
//! - Deterministic: a time's predictions and feedback are learned once both inputs'
//!   frontiers have passed it, predictions first, then feedback in submission order; no
//!   timer and no age limit on kept predictions (wall clocks are not reproducible).
//!
//! Feedback that cannot be learned (unknown or expired key, a label that is not a class,
//! features of the wrong width) is counted in [`LearnStats`], never fatal.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};
use timely::container::CapacityContainerBuilder;
use timely::dataflow::channels::pact::Exchange;
use timely::dataflow::operators::generic::{Operator, OutputBuilderSession};
use timely::dataflow::operators::{Capability, InputCapability};
use timely::dataflow::Stream;

use super::predict::WeightStream;
use super::Time;
use crate::chunk::Chunk;
use crate::column::Column;
use crate::kernel::keeper::{Keeper, Key, Miss};
use crate::kernel::learn::Weights;
use crate::kernel::learner::Learner;
use crate::learn_stats::{FeedbackOutcome, LearnStats};

/// Predictions a learner keeps for their feedback: keys and features (flat), of rows
/// that did not fail.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct Samples {
    /// Per row.
    pub keys: Vec<Key>,
    /// `keys.len() × width` numbers.
    pub features: Vec<f32>,
}

/// Feedback rows.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct Labels {
    /// The id of the first row (orders a time's feedback in deterministic mode).
    pub first_id: u64,
    /// Per row, the key of the prediction it labels.
    pub keys: Vec<Key>,
    /// Per row, the class.
    pub labels: Vec<i64>,
    /// Per row, its own features (then its key is not looked up), or none.
    pub features: Vec<Option<Vec<f32>>>,
}

/// A stream of [`Samples`].
pub type SampleStream<'scope> = Stream<'scope, Time, Vec<Samples>>;
/// A stream of [`Labels`].
pub type LabelStream<'scope> = Stream<'scope, Time, Vec<Labels>>;

/// Something that saves the learner: called every `every` versions and at shutdown.
pub type CheckpointFn = Arc<dyn Fn(&Learner) -> Result<(), String> + Send + Sync>;

/// How one node learns.
#[derive(Clone)]
pub struct LearnConfig {
    /// The node's name, for logs.
    pub node: Arc<str>,
    /// The learner, at its starting weights.
    pub learner: Learner,
    /// Learn a time only once it is complete (see the module docs).
    pub deterministic: bool,
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

/// The keys and features of the rows of a prediction chunk that did not fail; `None`
/// when it has none. `key` and `input` index the chunk's columns.
pub fn samples(chunk: &Chunk, key: usize, input: usize) -> Option<Samples> {
    let (data, width) = chunk.columns[input].f32s()?;
    let keys = &chunk.columns[key];
    let mut out = Samples::default();
    for row in (0..chunk.len()).filter(|&r| chunk.is_ok(r)) {
        let Some(k) = key_at(keys, row) else { continue };
        out.keys.push(k);
        out.features.extend_from_slice(&data[row * width..(row + 1) * width]);
    }
    (!out.keys.is_empty()).then_some(out)
}

/// The feedback rows of a chunk laid out as `[key, label, features, has_features]`.
pub fn labels(chunk: &Chunk) -> Labels {
    let [keys, labels, features, has] = &chunk.columns[..] else { return Labels::default() };
    let (data, width) = features.f32s().unwrap_or((&[], 0));
    let mut out = Labels { first_id: chunk.ids.first().copied().unwrap_or(0), ..Labels::default() };
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

fn key_at(column: &Column, row: usize) -> Option<Key> {
    match column {
        Column::I64(v) => Some(Key::Int(v[row])),
        Column::Str(v) => Some(Key::Text(v[row].to_string())),
        _ => None,
    }
}

/// A time's capability, predictions and feedback, held until the time is complete.
type Held = (Capability<Time>, Vec<Samples>, Vec<Labels>);

type Output<'a> = OutputBuilderSession<'a, Time, CapacityContainerBuilder<Vec<Arc<Weights>>>>;

struct State {
    config: LearnConfig,
    keeper: Keeper,
    /// The version last sent on.
    sent: u64,
    /// The version last checkpointed.
    saved: u64,
    /// Deterministic: per time, its capability, predictions and feedback.
    pending: BTreeMap<Time, Held>,
    /// Live, with `update_every_ms`: when the first row of the partial minibatch came,
    /// and a capability to send its step at.
    partial: Option<(Instant, Capability<Time>)>,
    finished: bool,
}

/// Builds the learner on worker 0 and returns the stream of its weight versions.
pub fn learn_online<'scope>(
    samples: SampleStream<'scope>,
    feedback: LabelStream<'scope>,
    config: LearnConfig,
) -> WeightStream<'scope> {
    let scope = samples.scope();
    let name = format!("Learn({})", config.node);
    let worker = scope.index();
    samples.binary_frontier::<_, CapacityContainerBuilder<Vec<Arc<Weights>>>, _, _, _, _>(
        feedback,
        Exchange::new(|_: &Samples| 0),
        Exchange::new(|_: &Labels| 0),
        &name,
        move |_cap, info| {
            let activator = scope.activator_for(info.address.clone());
            let keep_for = if config.deterministic { None } else { config.keep_for };
            let mut st = State {
                keeper: Keeper::new(config.keep_rows, keep_for),
                sent: config.learner.version(),
                saved: config.learner.version(),
                config,
                pending: BTreeMap::new(),
                partial: None,
                finished: false,
            };
            move |(samples, samples_frontier), (feedback, feedback_frontier), output| {
                let now = Instant::now();
                let deterministic = st.config.deterministic;
                samples.for_each_stamp(|cap, data| {
                    for s in data.flat_map(|d| d.drain(..)) {
                        if deterministic {
                            if let Some(held) = st.hold(&cap) {
                                held.1.push(s);
                            }
                        } else {
                            st.keep(s, now);
                        }
                    }
                });
                feedback.for_each_stamp(|cap, data| {
                    for l in data.flat_map(|d| d.drain(..)) {
                        if deterministic {
                            if let Some(held) = st.hold(&cap) {
                                held.2.push(l);
                            }
                        } else {
                            let retained = cap.retain_least(output.output_index());
                            if let Some(retained) = retained {
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
                    }
                });
                // Deterministic: complete times, in order.
                while let Some((&time, _)) = st.pending.first_key_value() {
                    if samples_frontier.less_equal(&time) || feedback_frontier.less_equal(&time) {
                        break;
                    }
                    if let Some((cap, kept, mut fed)) = st.pending.remove(&time) {
                        kept.into_iter().for_each(|s| st.keep(s, now));
                        fed.sort_by_key(|l| l.first_id);
                        fed.into_iter().for_each(|l| st.learn(l, now));
                        st.send(output, &cap);
                    }
                }
                // Live: a partial minibatch that waited long enough is stepped on.
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
    /// The entry of `cap`'s time, retaining the capability the first time.
    fn hold(&mut self, cap: &InputCapability<Time>) -> Option<&mut Held> {
        let time = *cap.least()?;
        match self.pending.entry(time) {
            std::collections::btree_map::Entry::Occupied(held) => Some(held.into_mut()),
            std::collections::btree_map::Entry::Vacant(slot) => {
                Some(slot.insert((cap.retain_least(0)?, Vec::new(), Vec::new())))
            }
        }
    }

    fn keep(&mut self, samples: Samples, now: Instant) {
        let width = self.config.learner.inputs().max(1);
        for (key, x) in samples.keys.into_iter().zip(samples.features.chunks_exact(width)) {
            self.keeper.insert(key, x.to_vec(), now);
        }
    }

    fn learn(&mut self, labels: Labels, now: Instant) {
        let stats = Arc::clone(&self.config.stats);
        for ((key, label), own) in labels.keys.iter().zip(&labels.labels).zip(labels.features) {
            let features = match own {
                Some(x) => x,
                None => match self.keeper.take(key, now) {
                    Ok(x) => x,
                    Err(Miss::Unknown) => {
                        stats.record(FeedbackOutcome::UnknownKey);
                        continue;
                    }
                    Err(Miss::Expired) => {
                        stats.record(FeedbackOutcome::ExpiredKey);
                        continue;
                    }
                },
            };
            match self.config.learner.push(&features, *label) {
                Ok(_) => stats.record(FeedbackOutcome::Learned),
                Err(_) => stats.record(FeedbackOutcome::Invalid),
            }
        }
    }

    /// Sends the weights on at `cap` if they changed since last sent; saves them when
    /// due.
    fn send(&mut self, output: &mut Output<'_>, cap: &Capability<Time>) {
        let version = self.config.learner.version();
        self.config.stats.set_state(version, self.keeper.len());
        if version == self.sent {
            return;
        }
        self.sent = version;
        output.session(cap).give(Arc::new(self.config.learner.weights()));
        self.checkpoint(false);
    }

    /// Saves the learner if `every` versions passed since the last save, or if `now`.
    fn checkpoint(&mut self, now: bool) {
        let Some((every, save)) = &self.config.checkpoint else { return };
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
