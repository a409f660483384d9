//! The batching operator of `model` nodes.
//!
//! Chunks are held in the operator and their rows queue; a batch leaves for the node's
//! replica threads when it is full (`max_batch_size`, taking rows of as many chunks as
//! it needs), and a partial one when the node's [`BatchPolicy`] says (`policy.rs`): by
//! default when one of the node's replicas is free (this operator has fewer batches out
//! than the node has replicas), at once unless the measured costs say that waiting a
//! little serves more rows; with a fixed `max_wait`, when its oldest row has waited that
//! long (zero: when a replica is free). So a lone row goes at once, and under load rows
//! gather while the replicas compute and batches grow with the load. At most
//! `max_in_flight` batches of one operator are out at a time (the engine allows several
//! per replica, so a replica finds its next batch queued); while they are, rows keep
//! queueing, so under load batches fill.
//!
//! A batch is runs of rows of the chunks' input columns (shared, not copied), sent to a
//! replica, which copies them into the batch's own columns (one per input of the node);
//! the output columns (one per output of the node) come back and their rows are copied
//! into each chunk's output columns. A chunk leaves, with the model's outputs as new
//! columns (in the node's output order), once all its rows are answered, so chunks stay
//! whole. The operator holds a capability for the time of
//! every held chunk and releases it when the chunk is sent on, so downstream frontiers
//! never pass an unanswered row. Replicas wake the operator through its doorbell; a
//! partial batch wakes it with a delayed activation. Nothing here blocks the worker.
//!
//! Deadlines: a row whose deadline has passed when its batch leaves is not computed; it
//! fails at once with a `deadline_exceeded` error naming the node. A replica that
//! reaches a batch after the deadline of every row in it skips it the same way. A
//! partial batch also leaves early when its earliest deadline, less one mean forward
//! pass and a small slack, comes before the policy would send it.
//!
//! With a worker per core (a replay: `inline_under_load`), a cheap CPU model computes
//! its batches on the worker (`inline.rs`); a chunk that arrives with no rows queued and
//! no deadline, and whose rows fill whole batches, is then computed whole as it arrives,
//! batch after batch (the batches the queue would make), and sent on: the queue, the
//! held chunk and the batch in flight would only be bookkeeping (about 3% of a replay's
//! CPU).
//!
//! Failed rows are not computed (their output is a filler). A failed forward pass, or
//! one that returns the wrong number or type of outputs, fails every row of its batch
//! with a `model_failed` error naming the node; the operator keeps running.

use std::collections::{BTreeMap, VecDeque};
use std::rc::Rc;
use std::sync::Arc;
use std::time::{Duration, Instant};

use crossbeam_channel::{bounded, Receiver, Sender, TrySendError};
use timely::dataflow::channels::pact::Pipeline;
use timely::dataflow::operators::generic::Operator;
use timely::dataflow::operators::generic::OutputBuilderSession;
use timely::dataflow::operators::Capability;

use super::doorbell::Doorbell;
use super::inline::{Inline, InlineFactory};
use super::policy::{Adaptive, BatchPolicy, Decision, SendReason};
use super::vec_builder::VecBuilder;
use super::{RowStream, Time};
use crate::chunk::Chunk;
use crate::column::Column;
use crate::id_map::IdMap;
use crate::kernel::KernelError;
use crate::replica::{compute, compute_from, BatchRows, Completion, Computed, Job};
use crate::row::{ErrorCode, RowError};
use crate::stats::{BatchStats, BatchTally};
use crate::value::FieldType;

/// How one model node batches.
#[derive(Clone, Debug)]
pub struct BatchConfig {
    /// The node's name, for errors.
    pub node: Arc<str>,
    /// Indices of the input fields in the incoming chunks, in the model's input order.
    pub inputs: Vec<usize>,
    /// The types of the model's outputs, appended to every chunk in this order.
    pub outputs: Vec<FieldType>,
    /// A batch never holds more rows.
    pub max_batch_size: usize,
    /// When a partial batch leaves (see [`BatchPolicy`]).
    pub policy: BatchPolicy,
    /// The node's replica threads.
    pub replicas: usize,
    /// Batches of this operator out at the replicas at once.
    pub max_in_flight: usize,
    /// The node's kernel factory if the worker may compute its batches itself when they
    /// are cheaper than the trip to a replica (a CPU node; see `inline.rs`); `None`:
    /// every batch goes to a replica.
    pub inline: Option<InlineFactory>,
    /// Compute cheap batches on the worker even while others wait (the workers already
    /// occupy every core, so a replica's thread would only add hops); otherwise only a
    /// batch with nothing else waiting is computed here.
    pub inline_under_load: bool,
}

impl BatchConfig {
    /// Output columns of `rows` fillers, one per output: the slots a chunk's rows get
    /// before (or instead of) their model outputs.
    fn fillers(&self, rows: usize) -> Vec<Column> {
        self.outputs.iter().map(|ty| Column::filler(ty, rows)).collect()
    }
}

/// Extension trait: run a model node's forward passes on batches of the stream.
///
/// # Examples
///
/// A model node that doubles its input, on one replica thread, in batches of up to two
/// rows: three rows leave as a full batch of two, then a batch of one once it has waited
/// `max_wait`; the chunk leaves whole, with the output as its new column.
///
/// ```
/// use std::sync::Arc;
/// use std::time::Duration;
///
/// use timely::dataflow::operators::capture::{Capture, Event};
/// use timely::dataflow::operators::ToStream;
/// use weir_operators::dataflow::{BatchConfig, BatchForward, RowStream};
/// use weir_operators::dataflow::policy::BatchPolicy;
/// use weir_operators::kernel::{BatchKernel, KernelError, KernelFactory};
/// use weir_operators::replica::ReplicaPool;
/// use weir_operators::stats::BatchStats;
/// use weir_operators::{Chunk, Column, DType, FieldType};
///
/// struct Double;
///
/// impl BatchKernel for Double {
///     fn forward(&mut self, inputs: Vec<Column>) -> Result<Vec<Column>, KernelError> {
///         match weir_operators::kernel::single_input("double", inputs)? {
///             Column::F32(x) => Ok(vec![Column::F32(x.iter().map(|x| 2.0 * x).collect())]),
///             other => Err(format!("expected f32, got {}", other.type_name()).into()),
///         }
///     }
/// }
///
/// let stats = Arc::new(BatchStats::new(2));
/// let factory: KernelFactory = Arc::new(|| Ok(Box::new(Double) as Box<dyn BatchKernel>));
/// let pool = ReplicaPool::start("double", 1, 4, factory, Arc::clone(&stats))?;
/// let (outputs, policy) = (vec![FieldType::scalar(DType::F32)], BatchPolicy::Fixed(Duration::from_millis(1)));
/// let config = BatchConfig {
///     node: "double".into(), inputs: vec![0], outputs, max_batch_size: 2, policy, replicas: 1, max_in_flight: 1,
///     inline: None, inline_under_load: false,
/// };
/// let (jobs, node_stats) = (pool.sender(), Arc::clone(&stats));
/// let captured = timely::example(move |scope| {
///     let chunk = Chunk::new(0, vec![1, 2, 3], vec![Column::F32(vec![1.0, 2.0, 3.0])]);
///     let rows: RowStream = vec![chunk].to_stream(scope);
///     rows.batch_forward(config, jobs, node_stats).capture()
/// });
/// let chunks: Vec<Chunk> = captured.iter().flat_map(|event| match event {
///     Event::Messages(_, chunks) => chunks,
///     Event::Progress(_) => Vec::new(),
/// }).collect();
/// assert_eq!(chunks.len(), 1);
/// assert_eq!(*chunks[0].columns[1], Column::F32(vec![2.0, 4.0, 6.0]));
/// assert_eq!(stats.snapshot().sizes, vec![0, 1, 1]);
/// # Ok::<(), KernelError>(())
/// ```
pub trait BatchForward<'scope> {
    /// Appends the model's outputs to every chunk, computed in batches by the replicas
    /// behind `jobs`.
    fn batch_forward(self, config: BatchConfig, jobs: Sender<Job>, stats: Arc<BatchStats>) -> RowStream<'scope>;
}

/// A chunk waiting for its rows' outputs.
struct Held {
    chunk: Chunk,
    time: Time,
    arrived: Instant,
    /// The model's outputs, one row per chunk row each (fillers until computed).
    outputs: Vec<Column>,
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
    held: IdMap<Held>,
    /// Queued rows, oldest first.
    queue: VecDeque<Run>,
    /// Rows in `queue`.
    queued: usize,
    /// Per batch out at the replicas: its rows in batch order, and when it left if a
    /// replica was free then (its round trip measures the cost of a batch).
    in_flight: IdMap<(Vec<Run>, Option<Instant>)>,
    /// The adaptive policy's measurements.
    adaptive: Adaptive,
    /// Whether this worker computes the node's batches itself, and its kernel.
    inline: Inline,
    /// One capability per time with held chunks, and how many chunks hold it.
    caps: BTreeMap<Time, (Capability<Time>, usize)>,
    next_key: u64,
    next_ticket: u64,
}

type Output<'a> = OutputBuilderSession<'a, Time, VecBuilder<Chunk>>;

impl<'scope> BatchForward<'scope> for RowStream<'scope> {
    fn batch_forward(self, config: BatchConfig, jobs: Sender<Job>, stats: Arc<BatchStats>) -> RowStream<'scope> {
        let scope = self.scope();
        let name = format!("Batch({})", config.node);
        self.unary::<VecBuilder<Chunk>, _, _, _>(Pipeline, &name, move |_cap, info| {
            let activator = scope.activator_for(Rc::clone(&info.address));
            let bell = Arc::new(Doorbell::bound(scope.worker().sync_activator_for(info.address.to_vec())));
            let (done_tx, done_rx): (Sender<Completion>, Receiver<Completion>) = bounded(config.max_in_flight.max(1));
            let mut st = State {
                inline: Inline::new(config.inline.clone()),
                config,
                held: IdMap::default(),
                queue: VecDeque::new(),
                queued: 0,
                in_flight: IdMap::default(),
                adaptive: Adaptive::default(),
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
                        if remaining == 0 {
                            // Nothing to compute: on at once, with the output columns.
                            let mut chunk = chunk;
                            let fillers = st.config.fillers(chunk.len());
                            chunk.columns.extend(fillers.into_iter().map(Arc::new));
                            output.session_with_builder(&cap).give(chunk);
                            continue;
                        }
                        // Computed whole, here and now (see `compute_whole`): nothing
                        // is queued before it, and its rows fill whole batches, so the
                        // queue would make the same batches of it.
                        let mut chunk = chunk;
                        let max = st.config.max_batch_size.max(1);
                        let whole_batches = remaining.is_multiple_of(max);
                        if st.config.inline_under_load
                            && whole_batches
                            && st.queue.is_empty()
                            && chunk.deadline.is_none()
                            && st.compute_whole(&mut chunk, &runs, arrived, &stats)
                        {
                            output.session_with_builder(&cap).give(chunk);
                            continue;
                        }
                        let output_columns = st.config.fillers(chunk.len());
                        st.adaptive.arrived(arrived, remaining);
                        let key = st.next_key;
                        st.next_key += 1;
                        st.queue.extend(runs.iter().map(|&(start, len)| Run { key, start, len }));
                        st.queued += remaining;
                        st.held.insert(key, Held { chunk, time, arrived, outputs: output_columns, remaining });
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

                    // Send batches: full ones, or a partial one when the policy says.
                    let now = Instant::now();
                    while st.in_flight.len() < st.config.max_in_flight {
                        let Some(&Run { key: oldest, start, .. }) = st.queue.front() else { break };
                        let mut reason = SendReason::Full;
                        if st.queued < st.config.max_batch_size {
                            let replica_free = st.in_flight.len() < st.config.replicas.max(1);
                            // The last moment the batch may leave for its rows' deadlines:
                            // one forward pass before the earliest, and room for a late timer.
                            let latest = st.earliest_deadline().map(|d| {
                                let lead = stats.mean_forward() + DEADLINE_SLACK;
                                d.checked_sub(lead).unwrap_or(d)
                            });
                            let leave = match st.config.policy {
                                // Partial batches wait for a free replica; a completion wakes
                                // the operator.
                                BatchPolicy::Fixed(wait) if wait.is_zero() => {
                                    if replica_free {
                                        Ok(SendReason::Now)
                                    } else {
                                        Err(None)
                                    }
                                }
                                BatchPolicy::Fixed(wait) => {
                                    let waited = st.held[&oldest].arrived + wait;
                                    leave_at(now, Some((waited, SendReason::MaxWait)), latest)
                                }
                                BatchPolicy::Adaptive if !replica_free => {
                                    // Every replica is busy: the rows gather. While fewer
                                    // than one batch per replica waits in line, once the
                                    // oldest row has waited one mean forward pass the batch
                                    // queues too, so a replica finds it when it frees; with
                                    // a line that long the rows keep gathering (a completion
                                    // wakes the operator), into fuller batches. A model whose
                                    // mean pass is known to be shorter than MIN_BEHIND frees
                                    // its replica before that: its completion wakes the
                                    // operator, and a timer would only wake the worker again
                                    // for nothing (one spurious wake-up per batch cost diamond
                                    // at 4 connections a tenth of its throughput against
                                    // `max_wait_ms 0`).
                                    let replicas = st.config.replicas.max(1);
                                    let mean = stats.mean_forward();
                                    let slow = mean.is_zero() || mean >= MIN_BEHIND;
                                    let behind = (st.in_flight.len() < 2 * replicas && slow)
                                        .then(|| (st.held[&oldest].arrived + mean.max(MIN_BEHIND), SendReason::Behind));
                                    leave_at(now, behind, latest)
                                }
                                BatchPolicy::Adaptive => {
                                    let max = st.config.max_batch_size;
                                    st.adaptive.computed(now, stats.compute_time(), st.config.replicas);
                                    match st.adaptive.decide(now, st.queued, (oldest, start), max, latest) {
                                        Decision::Send(why) => Ok(why),
                                        Decision::StartWait(until) => {
                                            stats.record_wait();
                                            Err(Some(until))
                                        }
                                        Decision::WaitUntil(until) => Err(Some(until)),
                                    }
                                }
                            };
                            match leave {
                                Ok(why) => reason = why,
                                Err(look) => {
                                    if let Some(at) = look {
                                        activator.activate_after(at.saturating_duration_since(now));
                                    }
                                    break;
                                }
                            }
                        }
                        if !st.send_batch(output, (&jobs, &done_tx, &bell), &stats, now, reason) {
                            activator.activate_after(Duration::from_millis(1));
                            break;
                        }
                        if reason == SendReason::Full {
                            st.adaptive.left_full(now);
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

/// Where a batch for the replicas goes: their job queue, and the operator's completion
/// channel and doorbell, which the job carries back.
type Replicas<'a> = (&'a Sender<Job>, &'a Sender<Completion>, &'a Arc<Doorbell>);

/// Whether a partial batch leaves now: at `due` (a moment and why), or at `latest` for
/// its rows' deadlines, whichever comes first. `Err`: not yet, and when to look again
/// (`None`: only when something wakes the operator).
fn leave_at(
    now: Instant,
    due: Option<(Instant, SendReason)>,
    latest: Option<Instant>,
) -> Result<SendReason, Option<Instant>> {
    let first = match (due, latest) {
        (Some((at, _)), Some(l)) if l < at => Some((l, SendReason::Deadline)),
        (Some(due), _) => Some(due),
        (None, l) => l.map(|l| (l, SendReason::Deadline)),
    };
    match first {
        Some((at, why)) if at <= now => Ok(why),
        other => Err(other.map(|(at, _)| at)),
    }
}

/// The adaptive policy queues a partial batch behind busy replicas after one mean forward
/// pass or this, whichever is longer; not at all for a model whose passes are known to
/// take less than this.
const MIN_BEHIND: Duration = Duration::from_micros(200);

/// How much earlier than (its deadline minus one forward pass) a partial batch leaves:
/// a delayed activation may fire a little late.
const DEADLINE_SLACK: Duration = Duration::from_millis(2);

impl State {
    /// The earliest deadline of a held chunk with rows still to compute.
    fn earliest_deadline(&self) -> Option<Instant> {
        self.held.values().filter_map(|h| h.chunk.deadline).min()
    }

    /// Computes every batch of `chunk` (its rows not failed, `runs`) on the worker, one
    /// after the other, and returns it with the model's outputs: what queueing its rows
    /// and sending batch after batch to the inline kernel would do, without the queue,
    /// the held chunk and the batch in flight that each batch costs. Only for a node that
    /// computes inline under load (a replay with a worker per core), a chunk without a
    /// deadline whose rows fill whole batches (small chunks, as requests are, queue and
    /// share batches), and nothing queued before it. `false`: not inline now; the chunk
    /// is untouched, to queue.
    ///
    /// A chunk with no failed row gets its output columns as the batches' outputs one
    /// after the other; one with failed rows, columns of fillers with each batch's rows
    /// written at their places.
    fn compute_whole(
        &mut self,
        chunk: &mut Chunk,
        runs: &[(usize, usize)],
        arrived: Instant,
        stats: &BatchStats,
    ) -> bool {
        let Some(kernel) = self.inline.kernel(&self.config.node) else { return false };
        self.adaptive.arrived(arrived, runs.iter().map(|&(_, len)| len).sum());
        // Each pass is timed from the end of the one before (one clock read a pass).
        let mut started = Instant::now();
        // A batch's rows waited for the passes before theirs.
        let mut waited = started.saturating_duration_since(arrived);
        let inputs: Vec<Arc<Column>> = self.config.inputs.iter().map(|&i| Arc::clone(&chunk.columns[i])).collect();
        let max = self.config.max_batch_size.max(1);
        // Batches as the queue would make them: up to `max` rows, across runs.
        let mut batches: Vec<Vec<(usize, usize)>> = vec![Vec::new()];
        let mut room = max;
        for &(mut start, mut len) in runs {
            while len > 0 {
                if room == 0 {
                    batches.push(Vec::new());
                    room = max;
                }
                let n = len.min(room);
                if let Some(batch) = batches.last_mut() {
                    batch.push((start, n));
                }
                (start, len, room) = (start + n, len - n, room - n);
            }
        }
        let mut passes = Vec::with_capacity(batches.len());
        // The node's counters get the chunk's batches at once (see `BatchTally`).
        let mut tally = BatchTally::default();
        for batch in batches {
            let n = batch.iter().map(|&(_, n)| n).sum();
            let (pass, ended) = compute_from(kernel, n, || BatchRows::gather_runs(&inputs, &batch), started);
            started = ended;
            tally.compute(pass.took);
            tally.inline_batch(n, waited.as_micros() as u64, if n == max { SendReason::Full } else { SendReason::Now });
            waited += pass.took;
            passes.push((batch, n, pass));
        }
        let now = started;
        // The batches cover every row, in order: their outputs are appended.
        let in_order = runs == [(0, chunk.len())];
        let mut outputs: Vec<Column> = if in_order {
            self.config.outputs.iter().map(|ty| Column::with_capacity(ty, chunk.len())).collect()
        } else {
            self.config.fillers(chunk.len())
        };
        for (batch, n, Computed { result, took }) in passes {
            self.adaptive.completed(now, n, took);
            if result.is_ok() {
                self.inline.measured(took);
                self.adaptive.measured(n, took);
            }
            match result.map_err(|e| e.to_string()).and_then(|columns| self.check_outputs(columns)) {
                Ok(computed) => {
                    let mut from = 0;
                    for (at, n) in batch {
                        for (column, computed) in outputs.iter_mut().zip(&computed) {
                            if in_order {
                                column.extend_range(computed, from, n);
                            } else {
                                column.set_range(at, computed, from, n);
                            }
                        }
                        from += n;
                    }
                }
                Err(reason) => {
                    tally.failure();
                    let error = Arc::new(RowError::new(ErrorCode::ModelFailed, &*self.config.node, reason));
                    for (at, n) in batch {
                        if in_order {
                            outputs.iter_mut().for_each(|column| column.push_fillers(n));
                        }
                        (at..at + n).for_each(|row| chunk.fail(row, Arc::clone(&error)));
                    }
                }
            }
        }
        stats.add(&tally);
        chunk.columns.extend(outputs.into_iter().map(Arc::new));
        true
    }

    /// Sends the next batch from the front of the queue. Returns false when every
    /// replica is busy with other workers' batches (the rows stay queued: retry soon).
    fn send_batch(
        &mut self,
        output: &mut Output<'_>,
        (jobs, done_tx, bell): Replicas<'_>,
        stats: &BatchStats,
        now: Instant,
        reason: SendReason,
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
            let error = Arc::new(RowError::deadline_exceeded(
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
            let columns = self.config.inputs.iter().map(|&i| Arc::clone(&held.chunk.columns[i])).collect();
            inputs.runs.push((columns, run.start, run.len));
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
        let expires = expires.filter(|_| every_row_has_deadline);
        let record = |stats: &BatchStats| {
            stats.record_batch(&waits);
            stats.record_reason(reason);
        };
        // Cheaper here than at a replica (see `inline.rs`), while nothing else waits:
        // under load the replicas compute in parallel with the worker, unless the
        // workers already occupy every core.
        let alone = self.config.inline_under_load || (self.in_flight.is_empty() && self.queued == 0);
        if let Some(kernel) = self.inline.kernel(&self.config.node).filter(|_| alone) {
            // Computed now, answered now.
            let pass = compute(kernel, &inputs, expires, stats);
            self.next_ticket += 1;
            record(stats);
            stats.record_inline();
            if pass.result.is_ok() {
                self.adaptive.measured(inputs.len(), pass.took);
            }
            self.in_flight.insert(ticket, (runs, None));
            self.complete(output, Completion { ticket, pass }, stats);
            return true;
        }
        let job = Job { ticket, inputs, reply: done_tx.clone(), wake: Arc::clone(bell), expires };
        match jobs.try_send(job) {
            Ok(()) => {
                self.next_ticket += 1;
                record(stats);
                // Timed only when a replica was free: a batch queued behind another would
                // measure the other's cost too.
                let replica_free = self.in_flight.len() < self.config.replicas.max(1);
                self.in_flight.insert(ticket, (runs, replica_free.then_some(now)));
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
                let error = Arc::new(RowError::unavailable(&*self.config.node, "the node's replicas have stopped"));
                self.answer(output, &runs, Err(&error));
                true
            }
        }
    }

    /// Takes a finished batch's results into its chunks.
    fn complete(&mut self, output: &mut Output<'_>, done: Completion, stats: &BatchStats) {
        let Some((runs, sent)) = self.in_flight.remove(&done.ticket) else { return };
        let Computed { result, took } = done.pass;
        self.adaptive.completed(Instant::now(), runs.iter().map(|r| r.len).sum(), took);
        let expired = matches!(result, Err(KernelError::Expired));
        if result.is_ok() {
            self.inline.measured(took);
            if let Some(sent) = sent {
                self.adaptive.measured(runs.iter().map(|r| r.len).sum(), sent.elapsed());
            }
        }
        let result = match result {
            Ok(columns) => self.check_outputs(columns),
            Err(reason) => Err(reason.to_string()),
        };
        match result {
            Ok(columns) => self.answer(output, &runs, Ok(&columns)),
            Err(reason) => {
                let code = if expired {
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

    /// The columns a kernel returned, if they are the node's outputs: as many, each of
    /// its output's type; else why not.
    fn check_outputs(&self, columns: Vec<Column>) -> Result<Vec<Column>, String> {
        let declared = &self.config.outputs;
        if columns.len() != declared.len() {
            return Err(KernelError::OutputColumns { expected: declared.len(), found: columns.len() }.to_string());
        }
        match columns.iter().zip(declared).position(|(c, ty)| !c.fits(ty)) {
            None => Ok(columns),
            Some(i) => Err(format!(
                "the model returned {} as output {}, the node declares {}",
                columns[i].type_name(),
                i + 1,
                declared[i]
            )),
        }
    }

    /// Records the answers of the rows of `runs` (in batch order: the rows of the output
    /// columns, or `error`), and sends on every chunk whose rows are all answered.
    fn answer(&mut self, output: &mut Output<'_>, runs: &[Run], result: Result<&[Column], &Arc<RowError>>) {
        let mut at = 0;
        for run in runs {
            let Some(held) = self.held.get_mut(&run.key) else { continue };
            match result {
                Ok(outputs) => {
                    for (column, computed) in held.outputs.iter_mut().zip(outputs) {
                        column.set_range(run.start, computed, at, run.len);
                    }
                }
                Err(error) => (run.start..run.start + run.len).for_each(|row| held.chunk.fail(row, Arc::clone(error))),
            }
            at += run.len;
            held.remaining -= run.len;
            if held.remaining == 0 {
                if let Some(Held { mut chunk, time, outputs, .. }) = self.held.remove(&run.key) {
                    chunk.columns.extend(outputs.into_iter().map(Arc::new));
                    self.emit(output, time, chunk);
                }
            }
        }
    }

    /// Sends a finished chunk downstream and releases its hold on its time.
    fn emit(&mut self, output: &mut Output<'_>, time: Time, chunk: Chunk) {
        let Some((cap, held)) = self.caps.get_mut(&time) else { return };
        output.session_with_builder(&*cap).give(chunk);
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

#[cfg(test)]
mod tests;
