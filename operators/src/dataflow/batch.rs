//! The batching operator of `model` nodes.
//!
//! Rows queue in the operator; a batch leaves for the node's replica threads when it is
//! full (`max_batch_size`), when its oldest row has waited `max_wait`, or at once when
//! `max_wait` is zero. At most `max_in_flight` batches of one operator are out at a time
//! (the engine allows four per replica, so a replica finds its next batch queued); while
//! they are, rows keep queueing, so under load batches fill. The operator holds a
//! capability for the time of every queued or in-flight row and releases it when the
//! row's result has been sent on, so downstream frontiers never pass an unanswered row.
//! Replicas wake the operator with a `SyncActivator`; a partial batch wakes it with a
//! delayed activation. Nothing here blocks the worker.
//!
//! Error rows pass through at once. A failed forward pass fails every row of its batch
//! with a `model_failed` error naming the node; the operator keeps running.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::rc::Rc;
use std::sync::Arc;
use std::time::{Duration, Instant};

use crossbeam_channel::{bounded, Receiver, Sender, TrySendError};
use timely::dataflow::channels::pact::Pipeline;
use timely::dataflow::operators::generic::Operator;
use timely::dataflow::operators::Capability;

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
    /// A partial batch leaves once its oldest row has waited this long.
    pub max_wait: Duration,
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
}

impl<'scope> BatchForward<'scope> for RowStream<'scope> {
    fn batch_forward(self, config: BatchConfig, jobs: Sender<Job>, stats: Arc<BatchStats>) -> RowStream<'scope> {
        let scope = self.scope();
        let name = format!("Batch({})", config.node);
        self.unary(Pipeline, &name, move |_cap, info| {
            let activator = scope.activator_for(Rc::clone(&info.address));
            let wake = scope.worker().sync_activator_for(info.address.to_vec());
            let (done_tx, done_rx): (Sender<Completion>, Receiver<Completion>) = bounded(config.max_in_flight.max(1));
            let mut queue: VecDeque<Queued> = VecDeque::new();
            let mut in_flight: HashMap<u64, Vec<Queued>> = HashMap::new();
            // One capability per time with queued or in-flight rows, and how many rows hold it.
            let mut caps: BTreeMap<Time, (Capability<Time>, usize)> = BTreeMap::new();
            let mut next_ticket = 0u64;

            move |input, output| {
                let arrived = Instant::now();
                input.for_each_stamp(|cap, data| {
                    let Some(&time) = cap.least() else { return };
                    for row in data.flat_map(|d| d.drain(..)) {
                        let values = match row.data {
                            Ok(values) => values,
                            Err(_) => {
                                output.session(&cap).give(row);
                                continue;
                            }
                        };
                        if let Some(retained) = caps.get_mut(&time) {
                            retained.1 += 1;
                        } else if let Some(held) = cap.retain_least(output.output_index()) {
                            caps.insert(time, (held, 1));
                        }
                        queue.push_back(Queued { id: row.id, values, time, arrived });
                    }
                });

                // Results of finished batches go downstream, releasing their capabilities.
                while let Ok(done) = done_rx.try_recv() {
                    let Some(rows) = in_flight.remove(&done.ticket) else { continue };
                    let outputs = match done.result {
                        Ok(outputs) => outputs.into_iter().map(Ok).collect::<Vec<_>>(),
                        Err(reason) => {
                            stats.record_failure();
                            let error = Arc::new(RowError::new(ErrorCode::ModelFailed, &*config.node, reason));
                            vec![Err(error); rows.len()]
                        }
                    };
                    for (queued, result) in rows.into_iter().zip(outputs) {
                        let Queued { id, mut values, time, .. } = queued;
                        let data = result.map(|out| {
                            values.push(out);
                            values
                        });
                        if let Some((cap, held)) = caps.get_mut(&time) {
                            output.session(&*cap).give(Row { id, data });
                            *held -= 1;
                            if *held == 0 {
                                caps.remove(&time);
                            }
                        }
                    }
                }

                // Send batches: full ones, or a partial one whose oldest row has waited enough.
                let now = Instant::now();
                while in_flight.len() < config.max_in_flight {
                    let Some(oldest) = queue.front() else { break };
                    let waited = now.saturating_duration_since(oldest.arrived);
                    if queue.len() < config.max_batch_size && waited < config.max_wait {
                        activator.activate_after(config.max_wait - waited);
                        break;
                    }
                    let take = queue.len().min(config.max_batch_size);
                    let rows: Vec<Queued> = queue.drain(..take).collect();
                    let inputs = rows.iter().map(|q| q.values[config.input].clone()).collect();
                    let ticket = next_ticket;
                    let job = Job { ticket, inputs, reply: done_tx.clone(), wake: wake.clone() };
                    match jobs.try_send(job) {
                        Ok(()) => {
                            next_ticket += 1;
                            let wait_us: u64 =
                                rows.iter().map(|q| now.saturating_duration_since(q.arrived).as_micros() as u64).sum();
                            stats.record_batch(rows.len(), wait_us);
                            in_flight.insert(ticket, rows);
                        }
                        Err(TrySendError::Full(_)) => {
                            // Every replica is busy with other workers' batches: retry shortly.
                            for q in rows.into_iter().rev() {
                                queue.push_front(q);
                            }
                            activator.activate_after(Duration::from_millis(1));
                            break;
                        }
                        Err(TrySendError::Disconnected(_)) => {
                            let error = Arc::new(RowError::new(
                                ErrorCode::Unavailable,
                                &*config.node,
                                "the node's replicas have stopped",
                            ));
                            for q in rows {
                                if let Some((cap, held)) = caps.get_mut(&q.time) {
                                    output.session(&*cap).give(Row { id: q.id, data: Err(Arc::clone(&error)) });
                                    *held -= 1;
                                    if *held == 0 {
                                        caps.remove(&q.time);
                                    }
                                }
                            }
                        }
                    }
                }
            }
        })
    }
}
