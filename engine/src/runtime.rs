//! The running engine: timely workers, replica pools, and the submit/reply path.
//!
//! [`Engine::start`] compiles every plan into one dataflow per graph on each of `workers`
//! timely worker threads, and starts each model node's replica threads. A row enters
//! through [`GraphHandle::submit`] (or many through [`GraphHandle::submit_batch`]): the
//! batch gets a reply slot whose id is encoded in its rows' ids (see [`crate::replies`]),
//! goes into the bounded channel of one worker (round-robin by slot) and that worker's
//! source is woken if it sleeps. The graph's sink operator finds the slot by row id and,
//! when the batch is complete, calls its reply on the worker thread.
//!
//! Before that, the batch takes one permit per row from the graph's admission bound
//! (`serving.max_in_flight`, see [`crate::admission`]): [`GraphHandle::try_submit_batch`]
//! refuses with [`SubmitError::Full`] when they run out, [`GraphHandle::submit_batch`]
//! waits. Permits come back when the batch is answered. Rows may carry a deadline
//! ([`SubmitOptions`]); model nodes do not compute rows past it.
//!
//! Every submitted row is answered exactly once: by the graph, or, if the engine shuts
//! down first, with an `unavailable` error. Workers park when idle and use no CPU.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crossbeam_channel::bounded;
use timely::WorkerConfig;
use weir_operators::dataflow::clock::EventClock;
use weir_operators::dataflow::doorbell::Doorbell;
use weir_operators::dataflow::sink::SinkRows;
use weir_operators::dataflow::source::row_source;
use weir_operators::learn_stats::{LearnStats, LearnStatsSnapshot};
use weir_operators::replica::ReplicaPool;
use weir_operators::stats::{BatchStats, BatchStatsSnapshot};
use weir_operators::{Chunk, Column, ErrorCode, RowError, RowId, Value};

use crate::admission::Admission;
use crate::compile::{compile, LearnResources, ModelResources, BATCHES_PER_REPLICA};
use crate::error::{GraphError, Problem};
use crate::feedback::{Feedback, FeedbackBuild, FeedbackIngress, FeedbackKinds, FeedbackWait};
use crate::ingress::{self, Source, SourceBuild, SourceWait};
use crate::plan::{Plan, StepOp};
use crate::replies::{row_id, BatchReply, ChunkReply, Replier, ReplyTable, MAX_BATCH_ROWS};
use crate::spec::TableSpec;
use crate::tables::{self, TableBuild, TableIngress};

/// Adapts a one-row reply to a batch reply.
fn one(reply: Reply) -> BatchReply {
    Box::new(move |mut results: Vec<RowResult>| {
        if let Some(r) = results.pop() {
            reply(r);
        }
    })
}

/// An answer: the output fields in the plan's output order, or the row's error.
pub type RowResult = Result<Vec<Value>, Arc<RowError>>;

/// Called once with a row's answer, on a worker thread; must not block.
pub type Reply = Box<dyn FnOnce(RowResult) + Send>;

/// Engine settings.
#[derive(Clone, Debug)]
pub struct EngineConfig {
    /// Timely worker threads.
    pub workers: usize,
    /// Rows each worker's ingress channel holds per graph before `submit` waits
    /// (and `try_submit` refuses).
    pub ingress_capacity: usize,
    /// Deterministic: every submission (rows and feedback) takes the next time of its
    /// graph's clock, and learning nodes predict a row at time `t` only with what was
    /// learned from feedback before `t`. Answers and weights then depend only on the
    /// order of submissions, not on the number of workers (replay). Otherwise (serving)
    /// a row enters at its worker's current epoch and is predicted with the latest
    /// weights at hand.
    pub deterministic: bool,
}

impl Default for EngineConfig {
    fn default() -> Self {
        EngineConfig { workers: 1, ingress_capacity: 4096, deterministic: false }
    }
}

/// Why a row was not accepted.
#[derive(Debug, thiserror::Error)]
pub enum SubmitError {
    /// The row does not match the graph's inputs (the caller's fault).
    #[error("{0}")]
    Invalid(RowError),
    /// The graph has its maximum of rows in flight, or its ingress channel is full
    /// (retry later).
    #[error("graph '{0}' is at capacity")]
    Full(String),
    /// The engine is shutting down.
    #[error("the engine is shutting down")]
    Closed,
}

struct GraphShared {
    plan: Arc<Plan>,
    rows: Source,
    replies: Arc<ReplyTable>,
    next_slot: AtomicU64,
    stop: Arc<AtomicBool>,
    stats: Vec<(String, Arc<BatchStats>)>,
    admission: Arc<Admission>,
    clock: Option<Arc<EventClock>>,
    feedback: Option<FeedbackIngress>,
    tables: Vec<TableIngress>,
}

/// A chunk on its way in, and its source.
type Outgoing<'a> = (&'a Source, Chunk);

impl GraphShared {
    /// Every source's doorbell: the rows', the feedback's, the tables'.
    fn all_doorbells(&self) -> impl Iterator<Item = &Arc<Doorbell>> {
        self.rows
            .doorbells
            .iter()
            .chain(self.feedback.iter().flat_map(|f| f.source.doorbells.iter()))
            .chain(self.tables.iter().flat_map(|t| t.source.doorbells.iter()))
    }

    /// Sends `chunk` into one worker's channel of `source` (round-robin by slot) and
    /// wakes that worker's source. In a deterministic engine the chunk first takes the
    /// clock's next time, and every source is woken, as the watermark moved for all.
    fn send(&self, source: &Source, chunk: Chunk, wait: bool) -> Result<(), SubmitError> {
        self.send_all(vec![(source, chunk)], wait)
    }

    /// Sends each chunk into one worker's channel of its source (round-robin by slot),
    /// in order, and wakes that worker's source. In a deterministic engine the chunks
    /// all take the clock's next time, and every source is woken, as the watermark
    /// moved for all. Stops at the first that cannot be sent.
    fn send_all(&self, parts: Vec<Outgoing<'_>>, wait: bool) -> Result<(), SubmitError> {
        let graph = &self.plan.name;
        match &self.clock {
            None => parts.into_iter().try_for_each(|(source, chunk)| source.put(chunk, wait, true, graph)),
            Some(clock) => {
                // Every send of a clocked graph holds the clock's lock, so room seen under
                // it stays. A submission that must wait for room waits outside the lock:
                // a full table channel must not stop rows from taking their times.
                let mut parts = Some(parts);
                let mut pause = Duration::from_micros(20);
                loop {
                    let sent = clock.stamp(|time| {
                        let Some(ready) = parts.take() else { return Err(SubmitError::Closed) };
                        if !ready.iter().all(|(source, chunk)| source.has_room(chunk)) {
                            parts = Some(ready);
                            return Err(SubmitError::Full(self.plan.name.clone()));
                        }
                        ready.into_iter().try_for_each(|(source, mut chunk)| {
                            chunk.time = Some(time);
                            source.put(chunk, false, false, graph)
                        })
                    });
                    self.all_doorbells().for_each(|b| b.ring());
                    match sent {
                        Err(SubmitError::Full(_)) if wait && !self.stop.load(Ordering::Acquire) => {
                            std::thread::sleep(pause);
                            pause = (pause * 2).min(Duration::from_millis(1));
                        }
                        other => return other,
                    }
                }
            }
        }
    }
}

/// How a submission enters a graph.
#[derive(Clone, Copy, Debug, Default)]
pub struct SubmitOptions {
    /// Wait for room (admission bound, ingress channel) instead of refusing with
    /// [`SubmitError::Full`].
    pub wait: bool,
    /// The rows' deadline: a model node does not compute them after it, and closes a
    /// partial batch early to meet it. A row past it is answered `deadline_exceeded`.
    pub deadline: Option<Instant>,
}

/// A handle on one running graph; cheap to clone, usable from any thread.
#[derive(Clone)]
pub struct GraphHandle {
    shared: Arc<GraphShared>,
}

/// Everything a worker needs to build one graph's dataflow.
struct GraphBuild {
    plan: Arc<Plan>,
    rows: SourceBuild,
    models: HashMap<usize, ModelResources>,
    replies: Arc<ReplyTable>,
    stop: Arc<AtomicBool>,
    clock: Option<Arc<EventClock>>,
    /// The learning node's feedback channels and counters, if the graph learns.
    feedback: Option<FeedbackBuild>,
    /// Each table's channels, in the plan's table order.
    tables: Vec<TableBuild>,
}

/// One graph's submitters' side while the workers start.
struct Starting {
    plan: Arc<Plan>,
    rows: SourceWait,
    replies: Arc<ReplyTable>,
    stop: Arc<AtomicBool>,
    stats: Vec<(String, Arc<BatchStats>)>,
    clock: Option<Arc<EventClock>>,
    feedback: Option<FeedbackWait>,
    /// Per table: its spec, its senders, its key count.
    tables: Vec<(TableSpec, SourceWait, Arc<AtomicI64>)>,
}

/// A running engine. Dropping it shuts it down (see [`Engine::shutdown`]).
pub struct Engine {
    graphs: Vec<GraphHandle>,
    guards: Option<timely::communication::WorkerGuards<()>>,
    pools: Vec<ReplicaPool>,
}

impl Engine {
    /// Starts `plans` on `config.workers` timely workers. Fails if a model cannot be
    /// built on its device or a thread cannot start.
    pub fn start(plans: Vec<Plan>, config: EngineConfig) -> Result<Engine, GraphError> {
        let workers = config.workers.max(1);
        for (i, plan) in plans.iter().enumerate() {
            if let Some(other) = plans[..i].iter().find(|p| p.name == plan.name) {
                return Err(GraphError::new(
                    &plan.origin,
                    Problem::Duplicate(format!("graph name '{}' is also used by {}", plan.name, other.origin)),
                )
                .at_field("name"));
            }
        }
        let mut pools = Vec::new();
        let mut builds = Vec::new();
        let mut waiting = Vec::new();
        for plan in plans {
            let plan = Arc::new(plan);
            let mut models = HashMap::new();
            let mut stats = Vec::new();
            for (i, step) in plan.steps.iter().enumerate() {
                if let StepOp::Model { factory, batching, .. } = &step.op {
                    let s = Arc::new(BatchStats::new(batching.max_batch_size));
                    let pool = ReplicaPool::start(
                        &step.name,
                        batching.replicas,
                        // Room for every worker's operator to have all its batches out.
                        BATCHES_PER_REPLICA * workers * batching.replicas,
                        Arc::clone(&factory.0),
                        Arc::clone(&s),
                    )
                    .map_err(|e| GraphError::new(&plan.origin, Problem::Start(e.to_string())).at_node(&step.name))?;
                    models.insert(i, ModelResources { jobs: pool.sender(), stats: Arc::clone(&s) });
                    stats.push((step.name.clone(), s));
                    pools.push(pool);
                }
            }
            let (rows_build, rows_wait) = ingress::channels(workers, config.ingress_capacity);
            let learning = plan.steps.iter().find_map(|s| match &s.op {
                StepOp::Learn { .. } => FeedbackKinds::of(s).map(|k| (s.name.clone(), k)),
                _ => None,
            });
            let (feedback_build, feedback_wait) = match learning {
                Some((node, kinds)) => {
                    let (source, wait) = ingress::channels(workers, config.ingress_capacity);
                    let stats = Arc::new(LearnStats::new());
                    let build = FeedbackBuild { source, stats: Arc::clone(&stats) };
                    (Some(build), Some(FeedbackWait { node, source: wait, kinds, stats }))
                }
                None => (None, None),
            };
            let mut table_builds = Vec::new();
            let mut table_wait = Vec::new();
            for spec in &plan.tables {
                let (build, wait) = tables::channels(workers);
                table_wait.push((spec.clone(), wait, Arc::clone(&build.keys)));
                table_builds.push(build);
            }
            // Tables need one order of times for rows and updates (see `tables.rs`).
            let clock = (config.deterministic || !plan.tables.is_empty()).then(|| Arc::new(EventClock::new()));
            let replies = Arc::new(ReplyTable::new(plan.output.fields.iter().map(|(_, _, ty)| ty.clone()).collect()));
            let stop = Arc::new(AtomicBool::new(false));
            builds.push(GraphBuild {
                plan: Arc::clone(&plan),
                rows: rows_build,
                models,
                replies: Arc::clone(&replies),
                stop: Arc::clone(&stop),
                clock: clock.clone(),
                feedback: feedback_build,
                tables: table_builds,
            });
            waiting.push(Starting {
                plan,
                rows: rows_wait,
                replies,
                stop,
                stats,
                clock,
                feedback: feedback_wait,
                tables: table_wait,
            });
        }
        let builds = Arc::new(builds);
        let deterministic = config.deterministic;
        let config = timely::Config {
            communication: timely::CommunicationConfig::Process(workers),
            worker: WorkerConfig::default(),
        };
        let guards = timely::execute(config, move |worker| {
            let index = worker.index();
            for build in builds.iter() {
                let Some((rows, doorbells)) = build.rows.take(index) else { continue };
                let replies = Arc::clone(&build.replies);
                worker.dataflow_named::<u64, _, _>(&build.plan.name, |scope| {
                    let (stop, clock) = (Arc::clone(&build.stop), build.clock.clone());
                    let input = row_source(scope, "Input", rows, 1024, doorbells, Arc::clone(&stop), clock.clone());
                    let tables: Vec<_> = build
                        .plan
                        .tables
                        .iter()
                        .zip(&build.tables)
                        .filter_map(|(spec, t)| {
                            tables::table_dataflow(scope, spec, t, index, Arc::clone(&stop), clock.clone())
                        })
                        .collect();
                    let learn = build.feedback.as_ref().and_then(|fb| {
                        let (rows, bells) = fb.source.take(index)?;
                        Some(LearnResources {
                            feedback: row_source(scope, "Feedback", rows, 1024, bells, stop, clock),
                            stats: Arc::clone(&fb.stats),
                            deterministic,
                        })
                    });
                    let outputs: Vec<usize> = build.plan.output.fields.iter().map(|(_, i, _)| *i).collect();
                    compile(&build.plan, input, &build.models, learn, &tables).sink_rows(
                        "Output",
                        move |chunks: &mut Vec<Chunk>| {
                            for chunk in chunks.drain(..) {
                                replies.deliver(chunk.project(&outputs));
                            }
                        },
                    );
                });
            }
            while worker.step_or_park(None) {}
        })
        .map_err(|e| GraphError::new("engine", Problem::Start(e)))?;

        let mut graphs = Vec::new();
        for g in waiting {
            let origin = g.plan.origin.as_str();
            let mut tables = Vec::new();
            for (spec, wait, keys) in g.tables {
                tables.push(TableIngress { spec, source: wait.open(origin, workers)?, keys });
            }
            let feedback = match g.feedback {
                Some(f) => Some(FeedbackIngress {
                    node: f.node,
                    source: f.source.open(origin, workers)?,
                    kinds: f.kinds,
                    stats: f.stats,
                }),
                None => None,
            };
            let plan_limit = g.plan.serving.max_in_flight;
            graphs.push(GraphHandle {
                shared: Arc::new(GraphShared {
                    rows: g.rows.open(origin, workers)?,
                    plan: g.plan,
                    replies: g.replies,
                    next_slot: AtomicU64::new(0),
                    stop: g.stop,
                    stats: g.stats,
                    admission: Arc::new(Admission::new(plan_limit)),
                    clock: g.clock,
                    feedback,
                    tables,
                }),
            });
        }
        Ok(Engine { graphs, guards: Some(guards), pools })
    }

    /// The graph named `name`.
    pub fn graph(&self, name: &str) -> Option<GraphHandle> {
        self.graphs.iter().find(|g| g.name() == name).cloned()
    }

    /// All graphs, in the order given to [`Engine::start`].
    pub fn graphs(&self) -> &[GraphHandle] {
        &self.graphs
    }

    /// Stops accepting rows, lets the workers finish every row already accepted, joins
    /// them and the replica threads. Rows that were never taken in are answered with
    /// an `unavailable` error.
    pub fn shutdown(mut self) {
        self.stop();
    }

    fn stop(&mut self) {
        for g in &self.graphs {
            g.shared.stop.store(true, Ordering::Release);
            for bell in g.shared.all_doorbells() {
                bell.wake();
            }
        }
        if let Some(guards) = self.guards.take() {
            drop(guards.join());
        }
        self.pools.clear();
        for g in &self.graphs {
            g.shared.replies.fail_all();
        }
    }
}

impl Drop for Engine {
    fn drop(&mut self) {
        self.stop();
    }
}

impl GraphHandle {
    /// The graph's name.
    pub fn name(&self) -> &str {
        &self.shared.plan.name
    }

    /// Rows admitted and not yet answered.
    pub fn in_flight(&self) -> usize {
        self.shared.admission.in_flight()
    }

    /// The bound on [`GraphHandle::in_flight`] (the plan's `serving.max_in_flight`).
    pub fn max_in_flight(&self) -> usize {
        self.shared.admission.limit()
    }

    /// The graph's plan (input and output schemas, steps).
    pub fn plan(&self) -> &Plan {
        &self.shared.plan
    }

    /// Submits a row, waiting while the ingress channel is full. `reply` is called
    /// exactly once with the answer, unless this returns an error (then never).
    pub fn submit(&self, values: Vec<Value>, reply: Reply) -> Result<RowId, SubmitError> {
        self.submit_with(vec![values], SubmitOptions { wait: true, deadline: None }, one(reply))
    }

    /// Submits a row, refusing with [`SubmitError::Full`] instead of waiting.
    pub fn try_submit(&self, values: Vec<Value>, reply: Reply) -> Result<RowId, SubmitError> {
        self.submit_with(vec![values], SubmitOptions::default(), one(reply))
    }

    /// Submits a batch of rows (all or none), waiting while the ingress channel is
    /// full. `reply` is called once with every answer, in input order. The rows travel
    /// together to one worker; their model nodes may still batch them with others.
    pub fn submit_batch(&self, rows: Vec<Vec<Value>>, reply: BatchReply) -> Result<RowId, SubmitError> {
        self.submit_with(rows, SubmitOptions { wait: true, deadline: None }, reply)
    }

    /// Submits a batch, refusing with [`SubmitError::Full`] instead of waiting.
    pub fn try_submit_batch(&self, rows: Vec<Vec<Value>>, reply: BatchReply) -> Result<RowId, SubmitError> {
        self.submit_with(rows, SubmitOptions::default(), reply)
    }

    /// Submits a batch as `options` say: waiting or refusing when the graph is full,
    /// with or without a deadline. Returns the id of the batch's first row.
    pub fn submit_with(
        &self,
        rows: Vec<Vec<Value>>,
        options: SubmitOptions,
        reply: BatchReply,
    ) -> Result<RowId, SubmitError> {
        self.check_size(rows.len())?;
        for values in &rows {
            check_inputs(&self.shared.plan, values).map_err(SubmitError::Invalid)?;
        }
        let columns = self
            .shared
            .plan
            .inputs
            .iter()
            .enumerate()
            .map(|(f, (_, ty))| Column::from_values(ty, rows.iter().map(|r| &r[f])))
            .collect();
        self.enter(rows.len(), columns, Replier::Rows(reply), options, None)
    }

    /// Submits a batch given by column (one column per input field, in the plan's input
    /// order, all of one length), as `options` say. `reply` is called once with the
    /// answers as one chunk of output columns. This is the bulk path (replay): no value
    /// is built per row on the way in or out.
    pub fn submit_columns(
        &self,
        columns: Vec<Column>,
        options: SubmitOptions,
        reply: ChunkReply,
    ) -> Result<RowId, SubmitError> {
        let rows = self.check_columns(&columns)?;
        self.enter(rows, columns, Replier::Chunk(reply), options, None)
    }

    /// [`GraphHandle::submit_columns`], waiting for room, and with `feedback` for the
    /// graph's learning node sent at the same time: in a deterministic engine the rows
    /// are predicted with what was learned before this call, and the feedback is learned
    /// after them (so it can name them by key), before any later submission is
    /// predicted. One step of the clock instead of two: what a prequential run does
    /// per block.
    pub fn submit_columns_then_feedback(
        &self,
        columns: Vec<Column>,
        feedback: Feedback,
        reply: ChunkReply,
    ) -> Result<RowId, SubmitError> {
        let rows = self.check_columns(&columns)?;
        self.enter(rows, columns, Replier::Chunk(reply), SubmitOptions { wait: true, deadline: None }, Some(feedback))
    }

    /// Checks columns against the graph's inputs; returns their common length.
    fn check_columns(&self, columns: &[Column]) -> Result<usize, SubmitError> {
        let plan = &self.shared.plan;
        let invalid = |field: &str, message: String| {
            SubmitError::Invalid(RowError::new(ErrorCode::InvalidInput, "input", message).with_field(field))
        };
        if columns.len() != plan.inputs.len() {
            return Err(SubmitError::Invalid(RowError::new(
                ErrorCode::InvalidInput,
                "input",
                format!("expected {} input columns, got {}", plan.inputs.len(), columns.len()),
            )));
        }
        let rows = columns.first().map_or(0, Column::len);
        for ((name, ty), c) in plan.inputs.iter().zip(columns) {
            if !c.fits(ty) {
                return Err(invalid(name, format!("expected {ty}, got {}", c.type_name())));
            }
            if c.len() != rows {
                return Err(invalid(name, format!("the column has {} rows, the first has {rows}", c.len())));
            }
        }
        self.check_size(rows)?;
        Ok(rows)
    }

    fn check_size(&self, rows: usize) -> Result<(), SubmitError> {
        if rows == 0 || rows > MAX_BATCH_ROWS {
            return Err(SubmitError::Invalid(RowError::new(
                ErrorCode::InvalidInput,
                "input",
                format!("a batch holds 1 to {MAX_BATCH_ROWS} rows, got {rows}"),
            )));
        }
        Ok(())
    }

    /// Admits `n` rows given by (checked) columns and sends them to a worker. Returns
    /// the id of the batch's first row.
    fn enter(
        &self,
        n: usize,
        columns: Vec<Column>,
        reply: Replier,
        options: SubmitOptions,
        feedback: Option<Feedback>,
    ) -> Result<RowId, SubmitError> {
        let wait = options.wait;
        let s = &*self.shared;
        let feedback = match (feedback, &s.feedback) {
            (None, _) => None,
            (Some(f), Some(ingress)) => {
                self.check_size(f.len())?;
                let slot = s.next_slot.fetch_add(1, Ordering::Relaxed);
                let ids = (0..f.len()).map(|i| row_id(slot, i)).collect();
                Some((ingress, Chunk::new(slot, ids, f.into_columns())))
            }
            (Some(_), None) => return Err(not_learning(&s.plan.name)),
        };
        if s.stop.load(Ordering::Acquire) {
            return Err(SubmitError::Closed);
        }
        let admitted = if wait { s.admission.acquire(n, &s.stop) } else { s.admission.try_acquire(n) };
        if !admitted {
            return Err(if s.stop.load(Ordering::Acquire) {
                SubmitError::Closed
            } else {
                SubmitError::Full(s.plan.name.clone())
            });
        }
        // The permits go back when the reply is called (or below, if the rows never enter).
        let admission = Arc::clone(&s.admission);
        let reply = match reply {
            Replier::Rows(reply) => Replier::Rows(Box::new(move |results| {
                admission.release(n);
                reply(results)
            })),
            Replier::Chunk(reply) => Replier::Chunk(Box::new(move |chunk| {
                admission.release(n);
                reply(chunk)
            })),
        };
        let slot = s.next_slot.fetch_add(1, Ordering::Relaxed);
        let mut chunk = Chunk::new(slot, (0..n).map(|i| row_id(slot, i)).collect(), columns);
        chunk.deadline = options.deadline;
        s.replies.open(slot, n, reply);
        let mut parts = vec![(&s.rows, chunk)];
        if let Some((ingress, labels)) = feedback {
            parts.push((&ingress.source, labels));
        }
        if let Err(e) = s.send_all(parts, wait) {
            s.replies.cancel(slot);
            s.admission.release(n);
            return Err(e);
        }
        Ok(row_id(slot, 0))
    }

    /// What feedback for this graph looks like, if it has a learning node.
    pub fn feedback_kinds(&self) -> Option<&FeedbackKinds> {
        self.shared.feedback.as_ref().map(|f| &f.kinds)
    }

    /// Sends feedback rows to the graph's learning node, waiting for room in the
    /// feedback channel when `wait` is set (else refusing with [`SubmitError::Full`]).
    /// Returns how many rows went in. In a deterministic engine the rows take the next
    /// time of the graph's clock, after every submission made before.
    pub fn submit_feedback(&self, feedback: Feedback, wait: bool) -> Result<usize, SubmitError> {
        let s = &*self.shared;
        let Some(ingress) = &s.feedback else { return Err(not_learning(&s.plan.name)) };
        let n = feedback.len();
        self.check_size(n)?;
        if s.stop.load(Ordering::Acquire) {
            return Err(SubmitError::Closed);
        }
        let slot = s.next_slot.fetch_add(1, Ordering::Relaxed);
        let chunk = Chunk::new(slot, (0..n).map(|i| row_id(slot, i)).collect(), feedback.into_columns());
        s.send(&ingress.source, chunk, wait)?;
        Ok(n)
    }

    /// Changes the graph's table `table`: each change is a key and its new values (in
    /// the table's value-field order), or `None` to delete the key. The batch takes the
    /// graph's next clock time: rows submitted after this call returns see it, rows
    /// submitted before do not. Waits for room in the table's channel. Returns how many
    /// changes went in; a key or value of the wrong type refuses the whole batch
    /// ([`SubmitError::Invalid`], naming the change and the field).
    pub fn upsert(&self, table: &str, changes: &[(Value, Option<Vec<Value>>)]) -> Result<usize, SubmitError> {
        let s = &*self.shared;
        let Some(ingress) = s.tables.iter().find(|t| t.spec.name == table) else {
            let known: Vec<&str> = s.tables.iter().map(|t| t.spec.name.as_str()).collect();
            return Err(SubmitError::Invalid(RowError::new(
                ErrorCode::InvalidInput,
                "tables",
                format!("graph '{}' has no table '{table}' (tables: {})", s.plan.name, known.join(", ")),
            )));
        };
        if s.stop.load(Ordering::Acquire) {
            return Err(SubmitError::Closed);
        }
        let slot = s.next_slot.fetch_add(1, Ordering::Relaxed);
        let chunk = tables::updates_chunk(&ingress.spec, slot, changes).map_err(SubmitError::Invalid)?;
        s.send(&ingress.source, chunk, true)?;
        Ok(changes.len())
    }

    /// Each table's name and how many keys it holds (after the upserts the dataflow has
    /// taken in so far).
    pub fn table_sizes(&self) -> Vec<(String, i64)> {
        self.shared.tables.iter().map(|t| (t.spec.name.clone(), t.keys.load(Ordering::Relaxed))).collect()
    }

    /// The learning node's name and counters, if the graph learns.
    pub fn learn_stats(&self) -> Option<(String, LearnStatsSnapshot)> {
        self.shared.feedback.as_ref().map(|f| (f.node.clone(), f.stats.snapshot()))
    }

    /// Computes one row and waits for its answer.
    pub fn call(&self, values: Vec<Value>) -> Result<RowResult, SubmitError> {
        let (tx, rx) = bounded(1);
        self.submit(values, Box::new(move |r| drop(tx.send(r))))?;
        rx.recv().map_err(|_| SubmitError::Closed)
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
            match self.submit_batch(batch, Box::new(move |r| drop(tx.send((b, r))))) {
                Ok(_) => outstanding += 1,
                Err(e) => {
                    let e = Arc::new(refusal(e));
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

    /// Batch counters of every model node, by node name.
    pub fn batch_stats(&self) -> Vec<(String, BatchStatsSnapshot)> {
        self.shared.stats.iter().map(|(n, s)| (n.clone(), s.snapshot())).collect()
    }
}

/// The refusal of feedback for a graph without a learning node.
fn not_learning(graph: &str) -> SubmitError {
    SubmitError::Invalid(RowError::new(
        ErrorCode::InvalidInput,
        "feedback",
        format!("graph '{graph}' has no learning node; it takes no feedback"),
    ))
}

/// The error row for a refused submission.
pub fn refusal(e: SubmitError) -> RowError {
    match e {
        SubmitError::Invalid(r) => r,
        other => RowError::new(ErrorCode::Unavailable, "engine", other.to_string()),
    }
}

/// Checks a row's values against the graph's input fields.
pub fn check_inputs(plan: &Plan, values: &[Value]) -> Result<(), RowError> {
    if values.len() != plan.inputs.len() {
        return Err(RowError::new(
            ErrorCode::InvalidInput,
            "input",
            format!("expected {} input fields, got {}", plan.inputs.len(), values.len()),
        ));
    }
    for ((name, ty), v) in plan.inputs.iter().zip(values) {
        if !v.conforms_to(ty) {
            return Err(RowError::new(
                ErrorCode::InvalidInput,
                "input",
                format!("expected {ty}, got {}", v.type_name()),
            )
            .with_field(name));
        }
    }
    Ok(())
}
