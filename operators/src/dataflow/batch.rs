//! The batching operator of `model` nodes.
//!
//! Rows queue in the operator; a batch leaves for the node's replica threads when it is
//! full (`max_batch_size`) or when its oldest row has waited `max_wait`. With `max_wait`
//! zero a partial batch leaves as soon as one of the node's replicas is free (this
//! operator has fewer batches out than the node has replicas): a lone row goes at once,
//! and under load rows gather while the replicas compute, so batches grow with the load
//! without a fixed wait (like Triton's dynamic batcher with no queue delay). At most `max_in_flight` batches of one operator are out at a time
//! (the engine allows four per replica, so a replica finds its next batch queued); while
//! they are, rows keep queueing, so under load batches fill. The operator holds a
//! capability for the time of every queued or in-flight row and releases it when the
//! row's result has been sent on, so downstream frontiers never pass an unanswered row.
//! Replicas wake the operator through its doorbell; a partial batch wakes it with a
//! delayed activation. A batch's inputs move to the replica and back, so no reference
//! count is touched from two threads. Nothing here blocks the worker.
//!
//! Deadlines: a row whose deadline has passed when its batch leaves is not computed; it
//! is answered at once with a `deadline_exceeded` error naming the node. A replica that
//! reaches a batch after the deadline of every row in it skips it the same way. A partial batch
//! also leaves early when its earliest deadline, less one mean forward pass and a small
//! slack, comes before its oldest row's `max_wait`.
//!
//! Error rows pass through at once. A failed forward pass fails every row of its batch
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
use crate::replica::{Completion, Job};
use crate::row::{ErrorCode, Row, RowError, RowId};
use crate::stats::BatchStats;
use crate::value::Value;

/// How one model node batches.
#[derive(Clone, Debug)]
pub struct BatchConfig {
    /// The node's name, for errors.
    pub node: Arc<str>,
    /// Index of the input field in the incoming rows.
    pub input: usize,
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
    /// Appends the model's output to every row, computed in batches by the replicas
    /// behind `jobs`.
    fn batch_forward(self, config: BatchConfig, jobs: Sender<Job>, stats: Arc<BatchStats>) -> RowStream<'scope>;
}

struct Queued {
    id: RowId,
    values: Vec<Value>,
    time: Time,
    arrived: Instant,
    deadline: Option<Instant>,
}

impl<'scope> BatchForward<'scope> for RowStream<'scope> {
    fn batch_forward(self, config: BatchConfig, jobs: Sender<Job>, stats: Arc<BatchStats>) -> RowStream<'scope> {
        let scope = self.scope();
        let name = format!("Batch({})", config.node);
        self.unary(Pipeline, &name, move |_cap, info| {
            let activator = scope.activator_for(Rc::clone(&info.address));
            let bell = Arc::new(Doorbell::new(scope.worker().sync_activator_for(info.address.to_vec())));
            let (done_tx, done_rx): (Sender<Completion>, Receiver<Completion>) = bounded(config.max_in_flight.max(1));
            let mut queue: VecDeque<Queued> = VecDeque::new();
            let mut in_flight: HashMap<u64, Vec<Queued>> = HashMap::new();
            // One capability per time with queued or in-flight rows, and how many rows hold it.
            let mut caps = HeldCaps::new();
            let mut next_ticket = 0u64;

            move |input, output| {
                let arrived = Instant::now();
                input.for_each_stamp(|cap, data| {
                    let Some(&time) = cap.least() else {
                        // Only a message sent without a capability has no time; weir's
                        // operators never send one. Say so rather than drop rows quietly.
                        tracing::error!(node = &*config.node, "rows without a timestamp reached a batching operator");
                        return;
                    };
                    let before = queue.len();
                    for row in data.flat_map(|d| d.drain(..)) {
                        match row.data {
                            Ok(values) => {
                                queue.push_back(Queued { id: row.id, values, time, arrived, deadline: row.deadline })
                            }
                            Err(_) => output.session(&cap).give(row),
                        }
                    }
                    // Every row queued from this message holds the capability for its time.
                    let queued = queue.len() - before;
                    if queued > 0 {
                        if let Some(retained) = caps.get_mut(&time) {
                            retained.1 += queued;
                        } else if let Some(held) = cap.retain_least(output.output_index()) {
                            caps.insert(time, (held, queued));
                        }
                    }
                });

                // Until no batch is out, or the doorbell is armed with none finished: a batch
                // that finishes after the arming rings it (see `doorbell.rs`).
                loop {
                    // Results of finished batches go downstream, releasing capabilities.
                    while let Ok(done) = done_rx.try_recv() {
                        let Some(rows) = in_flight.remove(&done.ticket) else { continue };
                        let outputs = match done.result {
                            Ok(outputs) => outputs.into_iter().map(Ok).collect::<Vec<_>>(),
                            Err(reason) if done.expired => {
                                let error = Arc::new(RowError::new(ErrorCode::DeadlineExceeded, &*config.node, reason));
                                vec![Err(error); rows.len()]
                            }
                            Err(reason) => {
                                stats.record_failure();
                                let error = Arc::new(RowError::new(ErrorCode::ModelFailed, &*config.node, reason));
                                vec![Err(error); rows.len()]
                            }
                        };
                        let answered =
                            rows.into_iter().zip(done.inputs).zip(outputs).map(|((queued, input), result)| {
                                let Queued { id, mut values, time, deadline, .. } = queued;
                                values[config.input] = input;
                                let data = result.map(|out| {
                                    values.push(out);
                                    values
                                });
                                (time, Row { id, data, deadline })
                            });
                        emit(output, &mut caps, answered);
                    }

                    // Send batches: full ones, or a partial one whose oldest row has waited
                    // enough or whose earliest deadline needs it to leave now.
                    let now = Instant::now();
                    while in_flight.len() < config.max_in_flight {
                        let Some(oldest) = queue.front() else { break };
                        if queue.len() < config.max_batch_size && config.max_wait.is_zero() {
                            // Partial batches wait for a free replica; a completion wakes
                            // the operator.
                            if in_flight.len() >= config.replicas.max(1) {
                                break;
                            }
                        } else if queue.len() < config.max_batch_size {
                            let mut close_at = oldest.arrived + config.max_wait;
                            if let Some(d) = queue.iter().filter_map(|q| q.deadline).min() {
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
                        let take = queue.len().min(config.max_batch_size);
                        let (mut rows, late): (Vec<Queued>, Vec<Queued>) =
                            queue.drain(..take).partition(|q| q.deadline.is_none_or(|d| d > now));
                        if !late.is_empty() {
                            // Past their deadline: answered at once, not computed.
                            let error = RowError::new(
                                ErrorCode::DeadlineExceeded,
                                &*config.node,
                                "the row's deadline passed before its batch was computed",
                            );
                            emit(output, &mut caps, failed(late, error));
                            if rows.is_empty() {
                                continue;
                            }
                        }
                        // The inputs move to the replica and come back with the result; a
                        // placeholder holds their place in the row meanwhile.
                        let inputs = rows
                            .iter_mut()
                            .map(|q| std::mem::replace(&mut q.values[config.input], Value::Bool(false)))
                            .collect();
                        let ticket = next_ticket;
                        let expires = rows.iter().map(|q| q.deadline).try_fold(None, |latest: Option<Instant>, d| {
                            d.map(|d| Some(latest.map_or(d, |l| l.max(d))))
                        });
                        let job = Job {
                            ticket,
                            inputs,
                            reply: done_tx.clone(),
                            wake: Arc::clone(&bell),
                            expires: expires.flatten(),
                        };
                        match jobs.try_send(job) {
                            Ok(()) => {
                                next_ticket += 1;
                                stats.record_batch(
                                    rows.iter().map(|q| now.saturating_duration_since(q.arrived).as_micros() as u64),
                                );
                                in_flight.insert(ticket, rows);
                            }
                            Err(TrySendError::Full(job)) => {
                                // Every replica is busy with other workers' batches: retry shortly.
                                for (mut q, input) in rows.into_iter().zip(job.inputs).rev() {
                                    q.values[config.input] = input;
                                    queue.push_front(q);
                                }
                                activator.activate_after(Duration::from_millis(1));
                                break;
                            }
                            Err(TrySendError::Disconnected(_)) => {
                                let error = RowError::new(
                                    ErrorCode::Unavailable,
                                    &*config.node,
                                    "the node's replicas have stopped",
                                );
                                emit(output, &mut caps, failed(rows, error));
                            }
                        }
                    }

                    if in_flight.is_empty() {
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

/// Capabilities held for queued and in-flight rows: one per time, with a row count.
type HeldCaps = BTreeMap<Time, (Capability<Time>, usize)>;

/// Queued rows answered with one error, ready for [`emit`].
fn failed(rows: Vec<Queued>, error: RowError) -> impl Iterator<Item = (Time, Row)> {
    let error = Arc::new(error);
    rows.into_iter().map(move |q| (q.time, Row { id: q.id, data: Err(Arc::clone(&error)), deadline: q.deadline }))
}

/// Sends answered rows downstream and releases their hold on their time's capability.
/// Rows are sent in one output session per run of equal times, so containers stay full
/// (a session per row would ship one-row containers through the rest of the graph).
fn emit(
    output: &mut OutputBuilderSession<'_, Time, CapacityContainerBuilder<Vec<Row>>>,
    caps: &mut HeldCaps,
    rows: impl Iterator<Item = (Time, Row)>,
) {
    let mut rows = rows.peekable();
    while let Some((time, row)) = rows.next() {
        let Some((cap, held)) = caps.get_mut(&time) else { continue };
        let mut session = output.session(&*cap);
        session.give(row);
        *held -= 1;
        while let Some((_, row)) = rows.next_if(|(t, _)| *t == time) {
            session.give(row);
            *held -= 1;
        }
        drop(session);
        if *held == 0 {
            caps.remove(&time);
        }
    }
}
