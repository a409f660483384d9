//! The running engine: timely workers, replica pools, and the submit/reply path.
//!
//! [`Engine::start`] compiles every plan into one dataflow per graph on each of `workers`
//! timely worker threads, and starts each model node's replica threads. A row enters
//! through [`GraphHandle::submit`]: it gets an id, its reply callback is registered under
//! that id, the row goes into the bounded channel of one worker (round-robin by id) and
//! that worker's source is woken. The graph's sink operator takes the reply by id and
//! calls it on the worker thread with the answer or the row's error.
//!
//! Every submitted row is answered exactly once: by the graph, or, if the engine shuts
//! down first, with an `unavailable` error. Workers park when idle and use no CPU.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc::sync_channel;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crossbeam_channel::{bounded, Receiver, Sender, TrySendError};
use timely::scheduling::SyncActivator;
use timely::WorkerConfig;
use weir_operators::dataflow::sink::SinkRows;
use weir_operators::dataflow::source::row_source;
use weir_operators::replica::ReplicaPool;
use weir_operators::stats::{BatchStats, BatchStatsSnapshot};
use weir_operators::{ErrorCode, Row, RowError, RowId, Value};

use crate::compile::{compile, ModelResources};
use crate::error::{GraphError, Problem};
use crate::plan::{Plan, StepOp};

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
}

impl Default for EngineConfig {
    fn default() -> Self {
        EngineConfig { workers: 1, ingress_capacity: 4096 }
    }
}

/// Why a row was not accepted.
#[derive(Debug, thiserror::Error)]
pub enum SubmitError {
    /// The row does not match the graph's inputs (the caller's fault).
    #[error("{0}")]
    Invalid(RowError),
    /// The ingress channel is full (retry later).
    #[error("graph '{0}' is at capacity")]
    Full(String),
    /// The engine is shutting down.
    #[error("the engine is shutting down")]
    Closed,
}

const SHARDS: usize = 16;

/// Reply callbacks of rows in flight, by id, in shards to spread lock contention.
struct ReplyTable {
    shards: Vec<Mutex<HashMap<RowId, Reply>>>,
}

impl ReplyTable {
    fn new() -> Self {
        ReplyTable { shards: (0..SHARDS).map(|_| Mutex::new(HashMap::new())).collect() }
    }

    fn shard(&self, id: RowId) -> std::sync::MutexGuard<'_, HashMap<RowId, Reply>> {
        // A poisoned shard only means a reply callback panicked; the map is intact.
        self.shards[id as usize % SHARDS].lock().unwrap_or_else(|p| p.into_inner())
    }

    fn insert(&self, id: RowId, reply: Reply) {
        self.shard(id).insert(id, reply);
    }

    fn take(&self, id: RowId) -> Option<Reply> {
        self.shard(id).remove(&id)
    }

    fn drain(&self) -> Vec<Reply> {
        let mut all = Vec::new();
        for s in &self.shards {
            all.extend(s.lock().unwrap_or_else(|p| p.into_inner()).drain().map(|(_, r)| r));
        }
        all
    }
}

struct GraphShared {
    plan: Arc<Plan>,
    senders: Vec<Sender<Row>>,
    activators: Vec<SyncActivator>,
    replies: Arc<ReplyTable>,
    next_id: AtomicU64,
    stop: Arc<AtomicBool>,
    stats: Vec<(String, Arc<BatchStats>)>,
}

/// A handle on one running graph; cheap to clone, usable from any thread.
#[derive(Clone)]
pub struct GraphHandle {
    shared: Arc<GraphShared>,
}

/// Everything a worker needs to build one graph's dataflow.
struct GraphBuild {
    plan: Arc<Plan>,
    receivers: Vec<Mutex<Option<Receiver<Row>>>>,
    activators: Mutex<std::sync::mpsc::SyncSender<(usize, SyncActivator)>>,
    models: HashMap<usize, ModelResources>,
    replies: Arc<ReplyTable>,
    stop: Arc<AtomicBool>,
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
        let mut pools = Vec::new();
        let mut builds = Vec::new();
        let mut waiting = Vec::new();
        for plan in plans {
            let plan = Arc::new(plan);
            let mut models = HashMap::new();
            let mut stats = Vec::new();
            for (i, step) in plan.steps.iter().enumerate() {
                if let StepOp::Model { factory, batching, .. } = &step.op {
                    let pool = ReplicaPool::start(
                        &step.name,
                        batching.replicas,
                        workers * batching.replicas,
                        Arc::clone(&factory.0),
                    )
                    .map_err(|e| GraphError::new(&plan.origin, Problem::Start(e)).at_node(&step.name))?;
                    let s = Arc::new(BatchStats::new(batching.max_batch_size));
                    models.insert(i, ModelResources { jobs: pool.sender(), stats: Arc::clone(&s) });
                    stats.push((step.name.clone(), s));
                    pools.push(pool);
                }
            }
            let (senders, receivers): (Vec<_>, Vec<_>) =
                (0..workers).map(|_| bounded::<Row>(config.ingress_capacity.max(1))).unzip();
            let (act_tx, act_rx) = sync_channel(workers);
            let replies = Arc::new(ReplyTable::new());
            let stop = Arc::new(AtomicBool::new(false));
            builds.push(GraphBuild {
                plan: Arc::clone(&plan),
                receivers: receivers.into_iter().map(|r| Mutex::new(Some(r))).collect(),
                activators: Mutex::new(act_tx),
                models,
                replies: Arc::clone(&replies),
                stop: Arc::clone(&stop),
            });
            waiting.push((plan, senders, act_rx, replies, stop, stats));
        }
        let builds = Arc::new(builds);
        let config = timely::Config {
            communication: timely::CommunicationConfig::Process(workers),
            worker: WorkerConfig::default(),
        };
        let guards = timely::execute(config, move |worker| {
            let index = worker.index();
            for build in builds.iter() {
                let Some(rows) = build.receivers[index].lock().ok().and_then(|mut r| r.take()) else { continue };
                let Ok(activators) = build.activators.lock().map(|a| a.clone()) else { continue };
                let replies = Arc::clone(&build.replies);
                worker.dataflow_named::<u64, _, _>(&build.plan.name, |scope| {
                    let input = row_source(scope, "Input", rows, 1024, activators, Arc::clone(&build.stop));
                    compile(&build.plan, input, &build.models).sink_rows("Output", move |row: Row| {
                        if let Some(reply) = replies.take(row.id) {
                            reply(row.data);
                        }
                    });
                });
            }
            while worker.step_or_park(None) {}
        })
        .map_err(|e| GraphError::new("engine", Problem::Start(e)))?;

        let mut graphs = Vec::new();
        for (plan, senders, act_rx, replies, stop, stats) in waiting {
            let mut activators: Vec<Option<SyncActivator>> = vec![None; workers];
            for _ in 0..workers {
                let (i, a) = act_rx
                    .recv_timeout(Duration::from_secs(30))
                    .map_err(|_| GraphError::new(&plan.origin, Problem::Start("a worker did not start".into())))?;
                activators[i] = Some(a);
            }
            graphs.push(GraphHandle {
                shared: Arc::new(GraphShared {
                    plan,
                    senders,
                    activators: activators.into_iter().flatten().collect(),
                    replies,
                    next_id: AtomicU64::new(0),
                    stop,
                    stats,
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
            for a in &g.shared.activators {
                let _ = a.activate();
            }
        }
        if let Some(guards) = self.guards.take() {
            drop(guards.join());
        }
        self.pools.clear();
        for g in &self.graphs {
            for reply in g.shared.replies.drain() {
                reply(Err(Arc::new(RowError::new(ErrorCode::Unavailable, "engine", "the engine shut down"))));
            }
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

    /// The graph's plan (input and output schemas, steps).
    pub fn plan(&self) -> &Plan {
        &self.shared.plan
    }

    /// Submits a row, waiting while the ingress channel is full. `reply` is called
    /// exactly once with the answer (unless this returns an error, in which case it is
    /// never called).
    pub fn submit(&self, values: Vec<Value>, reply: Reply) -> Result<RowId, SubmitError> {
        self.enter(values, reply, true)
    }

    /// Submits a row, refusing with [`SubmitError::Full`] instead of waiting.
    pub fn try_submit(&self, values: Vec<Value>, reply: Reply) -> Result<RowId, SubmitError> {
        self.enter(values, reply, false)
    }

    fn enter(&self, values: Vec<Value>, reply: Reply, wait: bool) -> Result<RowId, SubmitError> {
        let s = &*self.shared;
        if s.stop.load(Ordering::Acquire) {
            return Err(SubmitError::Closed);
        }
        check_inputs(&s.plan, &values).map_err(SubmitError::Invalid)?;
        let id = s.next_id.fetch_add(1, Ordering::Relaxed);
        let worker = (id % s.senders.len() as u64) as usize;
        s.replies.insert(id, reply);
        let row = Row::new(id, values);
        let sent = if wait {
            s.senders[worker].send(row).map_err(|_| SubmitError::Closed)
        } else {
            s.senders[worker].try_send(row).map_err(|e| match e {
                TrySendError::Full(_) => SubmitError::Full(s.plan.name.clone()),
                TrySendError::Disconnected(_) => SubmitError::Closed,
            })
        };
        if let Err(e) = sent {
            s.replies.take(id);
            return Err(e);
        }
        let _ = s.activators[worker].activate();
        Ok(id)
    }

    /// Computes one row and waits for its answer.
    pub fn call(&self, values: Vec<Value>) -> Result<RowResult, SubmitError> {
        let (tx, rx) = bounded(1);
        self.submit(values, Box::new(move |r| drop(tx.send(r))))?;
        rx.recv().map_err(|_| SubmitError::Closed)
    }

    /// Computes many rows with at most `in_flight` outstanding, and returns the answers
    /// in input order. A row refused at submission is answered with its error.
    pub fn call_many(&self, rows: Vec<Vec<Value>>, in_flight: usize) -> Vec<RowResult> {
        let in_flight = in_flight.max(1);
        let n = rows.len();
        let (tx, rx) = bounded::<(usize, RowResult)>(in_flight);
        let mut results: Vec<Option<RowResult>> = (0..n).map(|_| None).collect();
        let mut outstanding = 0;
        for (i, values) in rows.into_iter().enumerate() {
            if outstanding == in_flight {
                if let Ok((j, r)) = rx.recv() {
                    results[j] = Some(r);
                    outstanding -= 1;
                }
            }
            let tx = tx.clone();
            match self.submit(values, Box::new(move |r| drop(tx.send((i, r))))) {
                Ok(_) => outstanding += 1,
                Err(e) => results[i] = Some(Err(Arc::new(refusal(e)))),
            }
        }
        drop(tx);
        while outstanding > 0 {
            match rx.recv() {
                Ok((j, r)) => {
                    results[j] = Some(r);
                    outstanding -= 1;
                }
                Err(_) => break,
            }
        }
        results
            .into_iter()
            .map(|r| r.unwrap_or_else(|| Err(Arc::new(RowError::new(ErrorCode::Unavailable, "engine", "no answer")))))
            .collect()
    }

    /// Batch counters of every model node, by node name.
    pub fn batch_stats(&self) -> Vec<(String, BatchStatsSnapshot)> {
        self.shared.stats.iter().map(|(n, s)| (n.clone(), s.snapshot())).collect()
    }
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
            return Err(RowError::new(ErrorCode::InvalidInput, "input", format!("expected {ty}, got {}", v.type_name()))
                .with_field(name));
        }
    }
    Ok(())
}
