//! The batching operator of `model` nodes.
//!
//! Chunks are held in the operator and their rows queue; a batch leaves for the node's
//! replica threads when it is full (`max_batch_size`, taking rows of as many chunks as
//! it needs) or when its oldest row has waited `max_wait`. With `max_wait` zero a
//! partial batch leaves as soon as one of the node's replicas is free (this operator has
//! fewer batches out than the node has replicas): a lone row goes at once, and under
//! load rows gather while the replicas compute, so batches grow with the load without a
//! fixed wait (like Triton's dynamic batcher with no queue delay). At most
//! `max_in_flight` batches of one operator are out at a time (the engine allows several
//! per replica, so a replica finds its next batch queued); while they are, rows keep
//! queueing, so under load batches fill.
//!
//! A batch is runs of rows of the chunks' input columns (shared, not copied), sent to a
//! replica, which copies them into the batch's own column; the output column comes back
//! and its rows are copied into each chunk's output column. A chunk leaves, with the model's output as a new column, once all its rows
//! are answered, so chunks stay whole. The operator holds a capability for the time of
//! every held chunk and releases it when the chunk is sent on, so downstream frontiers
//! never pass an unanswered row. Replicas wake the operator through its doorbell; a
//! partial batch wakes it with a delayed activation. Nothing here blocks the worker.
//!
//! Deadlines: a row whose deadline has passed when its batch leaves is not computed; it
//! fails at once with a `deadline_exceeded` error naming the node. A replica that
//! reaches a batch after the deadline of every row in it skips it the same way. A
//! partial batch also leaves early when its earliest deadline, less one mean forward
//! pass and a small slack, comes before its oldest row's `max_wait`.
//!
//! Failed rows are not computed (their output is a filler). A failed forward pass, or
//! one that returns the wrong number or type of outputs, fails every row of its batch
//! with a `model_failed` error naming the node; the operator keeps running.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::rc::Rc;
use std::sync::Arc;
use std::time::{Duration, Instant};

use crossbeam_channel::{bounded, Receiver, Sender, TrySendError};
use timely::container::CapacityContainerBuilder;
use timely::dataflow::channels::pact::Pipeline;
use timely::dataflow::operators::generic::Operator;
use timely::dataflow::operators::generic::OutputBuilderSession;
use timely::dataflow::operators::Capability;

use super::doorbell::Doorbell;
use super::{RowStream, Time};
use crate::chunk::Chunk;
use crate::column::Column;
use crate::replica::{BatchRows, Completion, Job};
use crate::row::{ErrorCode, RowError};
use crate::stats::BatchStats;
use crate::value::FieldType;

/// How one model node batches.
#[derive(Clone, Debug)]
pub struct BatchConfig {
    /// The node's name, for errors.
    pub node: Arc<str>,
    /// Index of the input field in the incoming chunks.
    pub input: usize,
    /// The type of the model's output, appended to every chunk.
    pub output: FieldType,
    /// A batch never holds more rows.
    pub max_batch_size: usize,
    /// A partial batch leaves once its oldest row has waited this long. Zero: it leaves
    /// as soon as a replica is free (see the module docs).
    pub max_wait: Duration,
    /// The node's replica threads.
    pub replicas: usize,
    /// Batches of this operator out at the replicas at once.
    pub max_in_flight: usize,
}

/// Extension trait: run a model node's forward passes on batches of the stream.
pub trait BatchForward<'scope> {
    /// Appends the model's output to every chunk, computed in batches by the replicas
    /// behind `jobs`.
    fn batch_forward(self, config: BatchConfig, jobs: Sender<Job>, stats: Arc<BatchStats>) -> RowStream<'scope>;
}

/// A chunk waiting for its rows' outputs.
struct Held {
    chunk: Chunk,
    time: Time,
    arrived: Instant,
    /// The model's output, one row per chunk row (fillers until computed).
    output: Column,
    /// Rows queued or in a batch.
    remaining: usize,
}

/// Consecutive rows of one held chunk, queued or in a batch: the chunk's key, the first
/// row, and how many.
#[derive(Clone, Copy, Debug)]
struct Run {
    key: u64,
    start: usize,
    len: usize,
}

/// The operator's state.
struct State {
    config: BatchConfig,
    held: HashMap<u64, Held>,
    /// Queued rows, oldest first.
    queue: VecDeque<Run>,
    /// Rows in `queue`.
    queued: usize,
    /// Per batch out at the replicas, its rows in batch order.
    in_flight: HashMap<u64, Vec<Run>>,
    /// One capability per time with held chunks, and how many chunks hold it.
    caps: BTreeMap<Time, (Capability<Time>, usize)>,
    next_key: u64,
    next_ticket: u64,
}

type Output<'a> = OutputBuilderSession<'a, Time, CapacityContainerBuilder<Vec<Chunk>>>;

impl<'scope> BatchForward<'scope> for RowStream<'scope> {
    fn batch_forward(self, config: BatchConfig, jobs: Sender<Job>, stats: Arc<BatchStats>) -> RowStream<'scope> {
        let scope = self.scope();
        let name = format!("Batch({})", config.node);
        self.unary(Pipeline, &name, move |_cap, info| {
            let activator = scope.activator_for(Rc::clone(&info.address));
            let bell = Arc::new(Doorbell::new(scope.worker().sync_activator_for(info.address.to_vec())));
            let (done_tx, done_rx): (Sender<Completion>, Receiver<Completion>) = bounded(config.max_in_flight.max(1));
            let mut st = State {
                config,
                held: HashMap::new(),
                queue: VecDeque::new(),
                queued: 0,
                in_flight: HashMap::new(),
                caps: BTreeMap::new(),
                next_key: 0,
                next_ticket: 0,
            };

            move |input, output| {
                let arrived = Instant::now();
                input.for_each_stamp(|cap, data| {
                    let Some(&time) = cap.least() else {
                        // Only a message sent without a capability has no time; weir's
                        // operators never send one. Say so rather than drop rows quietly.
                        tracing::error!(
                            node = &*st.config.node,
                            "rows without a timestamp reached a batching operator"
                        );
                        return;
                    };
                    for chunk in data.flat_map(|d| d.drain(..)) {
                        let runs = ok_runs(&chunk);
                        let remaining: usize = runs.iter().map(|&(_, len)| len).sum();
                        let output_column = Column::filler(&st.config.output, chunk.len());
                        if remaining == 0 {
                            // Nothing to compute: on at once, with the output column.
                            let mut chunk = chunk;
                            chunk.columns.push(Arc::new(output_column));
                            output.session(&cap).give(chunk);
                            continue;
                        }
                        let key = st.next_key;
                        st.next_key += 1;
                        st.queue.extend(runs.iter().map(|&(start, len)| Run { key, start, len }));
                        st.queued += remaining;
                        st.held.insert(key, Held { chunk, time, arrived, output: output_column, remaining });
                        // Every held chunk holds the capability for its time.
                        if let Some(retained) = st.caps.get_mut(&time) {
                            retained.1 += 1;
                        } else if let Some(held) = cap.retain_least(output.output_index()) {
                            st.caps.insert(time, (held, 1));
                        }
                    }
                });

                // Until no batch is out, or the doorbell is armed with none finished: a batch
                // that finishes after the arming rings it (see `doorbell.rs`).
                loop {
                    // Results of finished batches go into their chunks.
                    while let Ok(done) = done_rx.try_recv() {
                        st.complete(output, done, &stats);
                    }

                    // Send batches: full ones, or a partial one whose oldest row has waited
                    // enough or whose earliest deadline needs it to leave now.
                    let now = Instant::now();
                    while st.in_flight.len() < st.config.max_in_flight {
                        let Some(&Run { key: oldest, .. }) = st.queue.front() else { break };
                        if st.queued < st.config.max_batch_size {
                            if st.config.max_wait.is_zero() {
                                // Partial batches wait for a free replica; a completion wakes
                                // the operator.
                                if st.in_flight.len() >= st.config.replicas.max(1) {
                                    break;
                                }
                            } else {
                                let mut close_at = st.held[&oldest].arrived + st.config.max_wait;
                                if let Some(d) = st.earliest_deadline() {
                                    // Leave one forward pass's time to compute before it, and
                                    // room for a late timer.
                                    let lead = stats.mean_forward() + DEADLINE_SLACK;
                                    close_at = close_at.min(d.checked_sub(lead).unwrap_or(d));
                                }
                                if now < close_at {
                                    activator.activate_after(close_at - now);
                                    break;
                                }
                            }
                        }
                        if !st.send_batch(output, &jobs, &done_tx, &bell, &stats, now) {
                            activator.activate_after(Duration::from_millis(1));
                            break;
                        }
                    }

                    if st.in_flight.is_empty() {
                        break;
                    }
                    bell.arm();
                    if done_rx.is_empty() {
                        break;
                    }
                    bell.disarm();
                }
            }
        })
    }
}

/// How much earlier than (its deadline minus one forward pass) a partial batch leaves:
/// a delayed activation may fire a little late.
const DEADLINE_SLACK: Duration = Duration::from_millis(2);

impl State {
    /// The earliest deadline of a held chunk with rows still to compute.
    fn earliest_deadline(&self) -> Option<Instant> {
        self.held.values().filter_map(|h| h.chunk.deadline).min()
    }

    /// Sends the next batch from the front of the queue. Returns false when every
    /// replica is busy with other workers' batches (the rows stay queued: retry soon).
    fn send_batch(
        &mut self,
        output: &mut Output<'_>,
        jobs: &Sender<Job>,
        done_tx: &Sender<Completion>,
        bell: &Arc<Doorbell>,
        stats: &BatchStats,
        now: Instant,
    ) -> bool {
        // Take up to a batch of rows from the front, splitting the last run if needed.
        let mut take = self.queued.min(self.config.max_batch_size);
        let mut runs: Vec<Run> = Vec::new();
        let mut late: Vec<Run> = Vec::new();
        while take > 0 {
            let Some(front) = self.queue.front_mut() else { break };
            let n = front.len.min(take);
            let run = Run { len: n, ..*front };
            front.start += n;
            front.len -= n;
            if front.len == 0 {
                self.queue.pop_front();
            }
            take -= n;
            self.queued -= n;
            let deadline = self.held[&run.key].chunk.deadline;
            if deadline.is_none_or(|d| d > now) {
                runs.push(run);
            } else {
                late.push(run);
            }
        }
        if !late.is_empty() {
            // Past their deadline: failed at once, not computed.
            let error = Arc::new(RowError::new(
                ErrorCode::DeadlineExceeded,
                &*self.config.node,
                "the row's deadline passed before its batch was computed",
            ));
            self.answer(output, &late, Err(&error));
            if runs.is_empty() {
                return true;
            }
        }
        // The rows' inputs: runs of the chunks' input columns, shared (the replica copies).
        let mut inputs = BatchRows { runs: Vec::with_capacity(runs.len()) };
        let mut expires: Option<Instant> = None;
        let mut every_row_has_deadline = true;
        let mut waits: Vec<(u64, usize)> = Vec::with_capacity(runs.len());
        for run in &runs {
            let held = &self.held[&run.key];
            inputs.runs.push((Arc::clone(&held.chunk.columns[self.config.input]), run.start, run.len));
            waits.push((now.saturating_duration_since(held.arrived).as_micros() as u64, run.len));
            match held.chunk.deadline {
                Some(d) => expires = Some(expires.map_or(d, |e: Instant| e.max(d))),
                None => every_row_has_deadline = false,
            }
        }
        if inputs.is_empty() {
            return true;
        }
        let ticket = self.next_ticket;
        let job = Job {
            ticket,
            inputs,
            reply: done_tx.clone(),
            wake: Arc::clone(bell),
            expires: expires.filter(|_| every_row_has_deadline),
        };
        match jobs.try_send(job) {
            Ok(()) => {
                self.next_ticket += 1;
                stats.record_batch(waits.iter().flat_map(|&(wait, n)| std::iter::repeat_n(wait, n)));
                self.in_flight.insert(ticket, runs);
                true
            }
            Err(TrySendError::Full(_)) => {
                for run in runs.into_iter().rev() {
                    self.queued += run.len;
                    self.queue.push_front(run);
                }
                false
            }
            Err(TrySendError::Disconnected(_)) => {
                let error = Arc::new(RowError::new(
                    ErrorCode::Unavailable,
                    &*self.config.node,
                    "the node's replicas have stopped",
                ));
                self.answer(output, &runs, Err(&error));
                true
            }
        }
    }

    /// Takes a finished batch's results into its chunks.
    fn complete(&mut self, output: &mut Output<'_>, done: Completion, stats: &BatchStats) {
        let Some(runs) = self.in_flight.remove(&done.ticket) else { return };
        let result = match done.result {
            Ok(column) if column.fits(&self.config.output) => Ok(column),
            Ok(column) => {
                Err(format!("the model returned {}, the node declares {}", column.type_name(), self.config.output))
            }
            Err(reason) => Err(reason.to_string()),
        };
        match result {
            Ok(column) => self.answer(output, &runs, Ok(&column)),
            Err(reason) => {
                let code = if done.expired {
                    ErrorCode::DeadlineExceeded
                } else {
                    stats.record_failure();
                    ErrorCode::ModelFailed
                };
                let error = Arc::new(RowError::new(code, &*self.config.node, reason));
                self.answer(output, &runs, Err(&error));
            }
        }
    }

    /// Records the answers of the rows of `runs` (in batch order: the rows of `outputs`,
    /// or `error`), and sends on every chunk whose rows are all answered.
    fn answer(&mut self, output: &mut Output<'_>, runs: &[Run], result: Result<&Column, &Arc<RowError>>) {
        let mut at = 0;
        for run in runs {
            let Some(held) = self.held.get_mut(&run.key) else { continue };
            match result {
                Ok(outputs) => held.output.set_range(run.start, outputs, at, run.len),
                Err(error) => (run.start..run.start + run.len).for_each(|row| held.chunk.fail(row, Arc::clone(error))),
            }
            at += run.len;
            held.remaining -= run.len;
            if held.remaining == 0 {
                if let Some(Held { mut chunk, time, output: column, .. }) = self.held.remove(&run.key) {
                    chunk.columns.push(Arc::new(column));
                    self.emit(output, time, chunk);
                }
            }
        }
    }

    /// Sends a finished chunk downstream and releases its hold on its time.
    fn emit(&mut self, output: &mut Output<'_>, time: Time, chunk: Chunk) {
        let Some((cap, held)) = self.caps.get_mut(&time) else { return };
        output.session(&*cap).give(chunk);
        *held -= 1;
        if *held == 0 {
            self.caps.remove(&time);
        }
    }
}

/// The runs of rows of `chunk` that have not failed, as (first row, count).
fn ok_runs(chunk: &Chunk) -> Vec<(usize, usize)> {
    if !chunk.has_errors() {
        return if chunk.is_empty() { Vec::new() } else { vec![(0, chunk.len())] };
    }
    let mut runs: Vec<(usize, usize)> = Vec::new();
    for row in (0..chunk.len()).filter(|&r| chunk.is_ok(r)) {
        match runs.last_mut() {
            Some((start, len)) if *start + *len == row => *len += 1,
            _ => runs.push((row, 1)),
        }
    }
    runs
}
