//! [`GraphHandle`]: a running graph, as submitters see it; and `Graph`, what the
//! submitters and the workers share of it.
//!
//! A submission ([`GraphHandle::submit`], on the submitter's thread: a tokio task, a
//! Kafka loop, a replay reader) is checked against the graph's [`GraphSchema`], takes
//! one permit per row from the graph's admission bound (`serving.max_in_flight`, see
//! `admission.rs`; it waits or is refused, as the submission says), and gets a
//! reply slot whose id is encoded in its rows' ids (see [`crate::replies`]). Its chunk
//! then goes into one worker's channel (`ingress.rs`), which wakes that worker's
//! source. The graph's sink, on the worker thread, finds the slot by row id and, when
//! the batch is complete, calls the reply there and gives the permits back.
//!
//! Every submitted row is answered exactly once: by the graph, or, if the engine shuts
//! down first, with an `unavailable` error.
//!
//! Identity on this path: a submission's *slot* (a `u64`, per graph) names its reply; a
//! row's *id* is its slot and its index in the submission (`replies::row_id`); the
//! chunk's *time* is the timely time it enters at. Model nodes batch rows by time and
//! replicas answer batches by their own tickets, but both carry row ids through.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crossbeam_channel::{bounded, TryRecvError};
use weir_operators::learn_stats::LearnStatsSnapshot;
use weir_operators::node_stats::{NodeStats, NodeStatsSnapshot};
use weir_operators::stats::{BatchStats, BatchStatsSnapshot};
use weir_operators::{Chunk, RowId, Value};

use crate::admission::Admission;
use crate::cluster::Placement;
use crate::feedback::{Feedback, FeedbackKinds};
use crate::ingress::{Ingress, Source};
use crate::plan::Plan;
use crate::replies::{row_id, ReplyTable};
use crate::schema::{check_size, GraphSchema};
use crate::submit::{Input, RowResult, Submission, SubmitError, WhenFull};
use crate::tables;

/// One running graph: its plan, where its submissions enter, where its answers go, and
/// its model nodes' counters. Shared by its handles (submitters) and by every worker
/// (which builds its dataflow from it, see `compile::build_graph`). The replicas' job
/// queues are not in it: only the workers hold them, so the replicas stop once the
/// workers have, however long handles live.
pub(crate) struct Graph {
    pub(crate) plan: Arc<Plan>,
    pub(crate) schema: GraphSchema,
    pub(crate) ingress: Ingress,
    pub(crate) replies: ReplyTable,
    /// Each model node's name and batch counters, in plan order.
    stats: Vec<(String, Arc<BatchStats>)>,
    /// Every step's row and time counters, by step index (a model step's stay at zero:
    /// it counts in `stats`).
    pub(crate) nodes: Vec<Arc<NodeStats>>,
    pub(crate) admission: Arc<Admission>,
    /// Where this process's submissions are numbered and computed (see `cluster.rs`).
    pub(crate) placement: Placement,
    next_slot: AtomicU64,
    /// Rows submitted through this process (admitted and sent into the graph).
    rows_submitted: AtomicU64,
    /// Rows this process computed for submissions that entered at another process.
    pub(crate) rows_from_peers: Arc<AtomicU64>,
}

impl Graph {
    /// A graph of `plan` entering through `ingress`, whose model nodes count their
    /// batches in `stats` (name and counters, in plan order).
    pub(crate) fn new(
        plan: Arc<Plan>,
        ingress: Ingress,
        stats: Vec<(String, Arc<BatchStats>)>,
        placement: Placement,
    ) -> Graph {
        let schema = GraphSchema::of(&plan);
        let nodes = plan.steps.iter().map(|_| NodeStats::new()).collect();
        let admission = Arc::new(Admission::new(plan.serving.max_in_flight));
        Graph {
            replies: ReplyTable::new(schema.output_types(), Arc::clone(&admission)),
            admission,
            schema,
            stats,
            nodes,
            plan,
            ingress,
            placement,
            next_slot: AtomicU64::new(0),
            rows_submitted: AtomicU64::new(0),
            rows_from_peers: Arc::new(AtomicU64::new(0)),
        }
    }

    fn slot(&self) -> u64 {
        self.placement.slot(self.next_slot.fetch_add(1, Ordering::Relaxed))
    }

    /// A chunk of `n` rows for a new slot, with their ids.
    fn chunk(&self, n: usize, columns: Vec<weir_operators::Column>) -> Chunk {
        let slot = self.slot();
        Chunk::new(slot, (0..n).map(|i| row_id(slot, i)).collect(), columns)
    }
}

/// How long [`GraphHandle::call`] waits for its answer awake before it sleeps. A thread
/// woken from sleep by the answer takes the waker a system call and the sleeper a
/// reschedule: on these VMs about 10 µs more per call, more than a lone row of a small
/// graph takes (BENCHMARKS.md, "Feature lookups", thirteenth session). A graph that
/// answers later costs the caller at most this much CPU a call, yielded to any thread
/// that needs the core.
pub const CALL_SPIN: Duration = Duration::from_micros(50);

/// A handle on one running graph; cheap to clone, usable from any thread.
#[derive(Clone)]
pub struct GraphHandle {
    graph: Arc<Graph>,
}

impl GraphHandle {
    pub(crate) fn new(graph: Arc<Graph>) -> GraphHandle {
        GraphHandle { graph }
    }

    /// The graph this handle submits to.
    pub(crate) fn graph(&self) -> &Graph {
        &self.graph
    }

    /// The graph's name.
    pub fn name(&self) -> &str {
        &self.graph.plan.name
    }

    /// The graph's inputs and outputs.
    pub fn schema(&self) -> &GraphSchema {
        &self.graph.schema
    }

    /// The graph's plan (its steps, serving settings, tables).
    pub fn plan(&self) -> &Plan {
        &self.graph.plan
    }

    /// Rows admitted and not yet answered.
    pub fn in_flight(&self) -> usize {
        self.graph.admission.in_flight()
    }

    /// The bound on [`GraphHandle::in_flight`] (the plan's `serving.max_in_flight`).
    pub fn max_in_flight(&self) -> usize {
        self.graph.admission.limit()
    }

    /// This process's place in its cluster (one process of its workers without one).
    pub fn placement(&self) -> Placement {
        self.graph.placement
    }

    /// Rows submitted to the graph through this process so far (admitted and sent in;
    /// feedback and table changes not counted).
    pub fn rows_submitted(&self) -> u64 {
        self.graph.rows_submitted.load(Ordering::Relaxed)
    }

    /// Rows this process computed for submissions that entered at another process of
    /// its cluster (0 without one).
    pub fn rows_from_peers(&self) -> u64 {
        self.graph.rows_from_peers.load(Ordering::Relaxed)
    }

    /// Submits rows, as `submission` says (see [`Submission`]): waiting for room or
    /// refusing, with or without a deadline, with or without feedback. Returns the id of
    /// the first row. The reply is called exactly once with the answers, unless this
    /// returns an error (then never).
    pub fn submit(&self, submission: Submission) -> Result<RowId, SubmitError> {
        let g = &*self.graph;
        let Submission { input, reply, when_full, deadline, feedback } = submission;
        let (n, columns) = match input {
            Input::Rows(rows) => (rows.len(), g.schema.rows_to_columns(&rows)?),
            Input::Columns(columns) => (g.schema.check_columns(&columns)?, columns),
        };
        let labels = match (feedback, &g.ingress.feedback) {
            (None, _) => None,
            (Some(f), Some(ingress)) => {
                check_size(f.len())?;
                Some((&ingress.source, g.chunk(f.len(), f.into_columns())))
            }
            (Some(_), None) => return Err(not_learning(&g.plan.name)),
        };
        let shutdown = &g.ingress.shutdown;
        if shutdown.is_requested() {
            return Err(SubmitError::Closed);
        }
        let wait = when_full == WhenFull::Wait;
        let admitted = if wait { g.admission.acquire(n, shutdown) } else { g.admission.try_acquire(n) };
        if !admitted {
            return Err(if shutdown.is_requested() {
                SubmitError::Closed
            } else {
                SubmitError::Full(g.plan.name.clone())
            });
        }
        // The reply table gives the permits back when it answers the slot (or cancels it,
        // below, if the rows never enter).
        let mut chunk = g.chunk(n, columns);
        chunk.deadline = deadline;
        let slot = chunk.slot;
        g.replies.open(slot, n, reply);
        let mut parts = vec![(&g.ingress.rows, chunk)];
        parts.extend(labels);
        if let Err(e) = g.ingress.send(parts, wait) {
            g.replies.cancel(slot);
            return Err(e);
        }
        g.rows_submitted.fetch_add(n as u64, Ordering::Relaxed);
        Ok(row_id(slot, 0))
    }

    /// What feedback for this graph looks like, if it has a learning node.
    pub fn feedback_kinds(&self) -> Option<&FeedbackKinds> {
        self.graph.ingress.feedback.as_ref().map(|f| &f.kinds)
    }

    /// Sends feedback rows to the graph's learning node, waiting for room in the
    /// feedback channel when `wait` is set (else refusing with [`SubmitError::Full`]).
    /// Returns how many rows went in. In a deterministic engine the rows take the next
    /// time of the graph's clock, after every submission made before.
    pub fn submit_feedback(&self, feedback: Feedback, wait: bool) -> Result<usize, SubmitError> {
        let g = &*self.graph;
        let Some(ingress) = &g.ingress.feedback else { return Err(not_learning(&g.plan.name)) };
        let n = feedback.len();
        check_size(n)?;
        self.send_one(&ingress.source, g.chunk(n, feedback.into_columns()), wait)?;
        Ok(n)
    }

    /// Changes the graph's table `table`: each change is a key and its new values (in
    /// the table's value-field order), or `None` to delete the key. The batch takes the
    /// graph's next clock time: rows submitted after this call returns see it, rows
    /// submitted before do not. Waits for room in the table's channel. Returns how many
    /// changes went in; a key or value of the wrong type refuses the whole batch
    /// ([`SubmitError::Invalid`], naming the change and the field).
    pub fn upsert(&self, table: &str, changes: &[(Value, Option<Vec<Value>>)]) -> Result<usize, SubmitError> {
        let g = &*self.graph;
        let Some(ingress) = g.ingress.tables.iter().find(|t| t.spec.name == table) else {
            let known: Vec<&str> = g.ingress.tables.iter().map(|t| t.spec.name.as_str()).collect();
            let message = format!("graph '{}' has no table '{table}' (tables: {})", g.plan.name, known.join(", "));
            return Err(SubmitError::invalid("tables", None, message));
        };
        if g.ingress.shutdown.is_requested() {
            return Err(SubmitError::Closed);
        }
        let chunk = tables::updates_chunk(&ingress.spec, g.slot(), changes).map_err(SubmitError::Invalid)?;
        self.send_one(&ingress.source, chunk, true)?;
        Ok(changes.len())
    }

    fn send_one(&self, source: &Source, chunk: Chunk, wait: bool) -> Result<(), SubmitError> {
        if self.graph.ingress.shutdown.is_requested() {
            return Err(SubmitError::Closed);
        }
        self.graph.ingress.send(vec![(source, chunk)], wait)
    }

    /// Each table's name and how many keys it holds (after the upserts the dataflow has
    /// taken in so far).
    pub fn table_sizes(&self) -> Vec<(String, i64)> {
        self.graph.ingress.tables.iter().map(|t| (t.spec.name.clone(), t.keys.load(Ordering::Relaxed))).collect()
    }

    /// The learning node's name and counters, if the graph learns.
    pub fn learn_stats(&self) -> Option<(String, LearnStatsSnapshot)> {
        self.graph.ingress.feedback.as_ref().map(|f| (f.node.clone(), f.stats.snapshot()))
    }

    /// The learning node's learner as of its latest version, if the graph has one that
    /// learned while serving (what a reload carries over to the graph's next revision).
    pub fn latest_learner(&self) -> Option<weir_operators::kernel::learner::Learner> {
        self.graph.ingress.feedback.as_ref().and_then(|f| f.stats.latest_learner())
    }

    /// Stops the learning node's checkpoints (if it has any): a reload's next revision
    /// of this graph writes them from now on (see [`LearnStats::hand_over_checkpoints`]).
    ///
    /// [`LearnStats::hand_over_checkpoints`]: weir_operators::learn_stats::LearnStats::hand_over_checkpoints
    pub fn hand_over_checkpoints(&self) {
        if let Some(f) = &self.graph.ingress.feedback {
            f.stats.hand_over_checkpoints();
        }
    }

    /// Batch counters of every model node, by node name, in plan order.
    pub fn batch_stats(&self) -> Vec<(String, BatchStatsSnapshot)> {
        self.graph.stats.iter().map(|(n, s)| (n.clone(), s.snapshot())).collect()
    }

    /// Row and time counters of every node that is not a model node (map, route,
    /// combine, merge, lookup, and a learning node's predictions), by node name, in plan
    /// order.
    pub fn node_stats(&self) -> Vec<(String, NodeStatsSnapshot)> {
        let g = &self.graph;
        g.plan
            .steps
            .iter()
            .zip(&g.nodes)
            .filter(|(step, _)| !matches!(step.op, crate::plan::StepOp::Model { .. }))
            .map(|(step, s)| (step.name.clone(), s.snapshot()))
            .collect()
    }

    /// Computes one row and waits for its answer: for up to [`CALL_SPIN`] without
    /// sleeping (yielding the core to any thread that needs it), then asleep until the
    /// answer wakes it.
    pub fn call(&self, values: Vec<Value>) -> Result<RowResult, SubmitError> {
        let (tx, rx) = bounded(1);
        self.submit(Submission::row(values, Box::new(move |r| drop(tx.send(r)))))?;
        let asked = Instant::now();
        loop {
            match rx.try_recv() {
                Ok(answer) => return Ok(answer),
                Err(TryRecvError::Disconnected) => return Err(SubmitError::Closed),
                Err(TryRecvError::Empty) if asked.elapsed() < CALL_SPIN => std::thread::yield_now(),
                Err(TryRecvError::Empty) => return rx.recv().map_err(|_| SubmitError::Closed),
            }
        }
    }

    /// Computes many rows, submitted in batches of up to 256 with at most `in_flight`
    /// rows outstanding, and returns the answers in input order. A batch refused at
    /// submission is answered with the refusal.
    pub fn call_many(&self, rows: Vec<Vec<Value>>, in_flight: usize) -> Vec<RowResult> {
        let chunk = in_flight.clamp(1, 256);
        let n = rows.len();
        let batches = n.div_ceil(chunk);
        let max_batches = (in_flight / chunk).max(1);
        let (tx, rx) = bounded::<(usize, Vec<RowResult>)>(max_batches);
        let mut results: Vec<Vec<RowResult>> = (0..batches).map(|_| Vec::new()).collect();
        let mut outstanding = 0;
        let mut rows = rows.into_iter();
        for b in 0..batches {
            if outstanding == max_batches {
                if let Ok((j, r)) = rx.recv() {
                    results[j] = r;
                    outstanding -= 1;
                }
            }
            let batch: Vec<Vec<Value>> = rows.by_ref().take(chunk).collect();
            let size = batch.len();
            let tx = tx.clone();
            match self.submit(Submission::rows(batch, Box::new(move |r| drop(tx.send((b, r)))))) {
                Ok(_) => outstanding += 1,
                Err(e) => {
                    let e = Arc::new(e.into_row_error());
                    results[b] = (0..size).map(|_| Err(Arc::clone(&e))).collect();
                }
            }
        }
        drop(tx);
        while outstanding > 0 {
            match rx.recv() {
                Ok((j, r)) => {
                    results[j] = r;
                    outstanding -= 1;
                }
                Err(_) => break,
            }
        }
        results.into_iter().flatten().collect()
    }
}

/// The refusal of feedback for a graph without a learning node.
fn not_learning(graph: &str) -> SubmitError {
    SubmitError::invalid("feedback", None, format!("graph '{graph}' has no learning node; it takes no feedback"))
}
