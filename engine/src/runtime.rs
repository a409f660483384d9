//! The engine's lifecycle: [`Engine::start`] builds every graph and starts the threads,
//! [`Engine::shutdown`] (or dropping the engine) stops them.
//!
//! Threads, and what runs on them:
//! - the caller's thread runs `start` and `shutdown`;
//! - `workers` timely worker threads each build one dataflow per graph
//!   (`compile::build_graph`) and then run its operators, including every
//!   source, the sink and the reply callbacks (see [`crate::replies`]);
//! - each model node's replica threads run its forward passes
//!   (`weir_operators::replica`), fed by the node's batching operators;
//! - submitters ([`crate::GraphHandle`]) run on whatever thread calls them.
//!
//! Each graph (`handle::Graph`) is made whole before the workers start: its
//! plan, its sources (channels and doorbells, see `ingress.rs`), its reply table,
//! its replica pools. Workers only take their part of it.
//!
//! A worker that runs out of work, while its rows come one chunk at a time, polls its
//! channels for `EngineConfig::idle_spin` (200 µs by default) before it parks: a row
//! that comes within that time is picked up without the wake-up of a parked thread,
//! which on a virtual machine costs more than the rest of a small graph's work
//! (BENCHMARKS.md, "The path from socket to model"). Under load (several chunks per
//! activation, or more threads ready to run than cores) it parks at once. An idle engine
//! parks its workers and uses no CPU.

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use timely::WorkerConfig;
use weir_operators::dataflow::clock::EventClock;
use weir_operators::dataflow::inline::InlineFactory;
use weir_operators::kernel::device::DeviceSpec;
use weir_operators::kernel::KernelError;
use weir_operators::learn_stats::LearnStats;
use weir_operators::replica::ReplicaPool;
use weir_operators::stats::BatchStats;
use weir_operators::Shutdown;

use crate::cluster::{Cluster, LostPeer, Placement};
use crate::compile::{build_graph, ModelResources, BATCHES_PER_REPLICA};
use crate::contention::Contention;
use crate::error::{GraphError, Problem};
use crate::feedback::FeedbackKinds;
use crate::handle::{Graph, GraphHandle};
use crate::ingress::{FeedbackIngress, Ingress, Source, TableIngress};
use crate::plan::{Plan, StepOp};

/// Engine settings.
#[derive(Clone, Debug)]
pub struct EngineConfig {
    /// Timely worker threads.
    pub workers: usize,
    /// Chunks each worker's ingress channel holds per graph before a submission waits
    /// (or, if it refuses when full, is refused).
    pub ingress_capacity: usize,
    /// Deterministic: every submission (rows and feedback) takes the next time of its
    /// graph's clock, and learning nodes predict a row at time `t` only with what was
    /// learned from feedback before `t`. Answers and weights then depend only on the
    /// order of submissions, not on the number of workers (replay). Otherwise (serving)
    /// a row enters at time 0 and is predicted with the latest weights at hand.
    pub deterministic: bool,
    /// How long a worker that ran out of work polls for more before it parks, while its
    /// rows come one chunk at a time (see `run_worker`). The polling holds a core
    /// (yielding it to threads that are ready), so this bounds the CPU an idle worker
    /// burns each time it goes idle; zero parks at once (every row then wakes a parked
    /// thread).
    pub idle_spin: Duration,
    /// This process's place in a cluster of processes that run the same graphs (timely's
    /// cluster mode, see [`crate::cluster`]); `None`: this process alone. `workers` is
    /// then per process.
    pub cluster: Option<Cluster>,
}

/// [`EngineConfig::idle_spin`]'s default: longer than the gap between two requests of
/// one client that sends the next when the last is answered (about 100 µs over
/// loopback), so such a client never finds the worker parked.
pub const DEFAULT_IDLE_SPIN: Duration = Duration::from_micros(200);

impl Default for EngineConfig {
    fn default() -> Self {
        EngineConfig {
            workers: 1,
            ingress_capacity: 4096,
            deterministic: false,
            idle_spin: DEFAULT_IDLE_SPIN,
            cluster: None,
        }
    }
}

/// Why the engine did not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// Two graphs have one name (the second graph's file is to blame).
    #[error(transparent)]
    Graph(#[from] GraphError),
    /// A model node's replicas could not start (its device, its threads).
    #[error("{origin}: node '{node}': cannot start its replicas: {source}")]
    Replicas {
        /// The graph's file.
        origin: String,
        /// The model node.
        node: String,
        /// What failed.
        source: Box<KernelError>,
    },
    /// The timely workers could not start.
    #[error("cannot start the engine's workers: {0}")]
    Workers(String),
    /// A deterministic engine where every process of a cluster takes requests (a
    /// replay, where only process 0 submits, runs one).
    #[error("{origin}: {what} cannot run in a cluster of processes that all take requests; run it in one process")]
    NotInCluster {
        /// The graph's file.
        origin: String,
        /// What it uses.
        what: String,
    },
}

/// A running engine. Dropping it shuts it down (see [`Engine::shutdown`]).
pub struct Engine {
    graphs: Vec<GraphHandle>,
    shutdown: Shutdown,
    guards: Option<timely::communication::WorkerGuards<()>>,
    pools: Vec<ReplicaPool>,
}

impl Engine {
    /// Starts `plans` on `config.workers` timely workers. Fails if two graphs share a
    /// name, a model cannot be built on its device, or a thread cannot start.
    pub fn start(plans: Vec<Plan>, config: EngineConfig) -> Result<Engine, StartError> {
        let workers = config.workers.max(1);
        for (i, plan) in plans.iter().enumerate() {
            if let Some(other) = plans[..i].iter().find(|p| p.name == plan.name) {
                let problem =
                    Problem::Duplicate(format!("graph name '{}' is also used by {}", plan.name, other.origin));
                return Err(GraphError::new(&plan.origin, problem).at_field("name").into());
            }
        }
        let placement = match &config.cluster {
            Some(c) => Placement { process: c.process, processes: c.processes(), threads: workers },
            None => Placement::single(workers),
        };
        if placement.processes > 1 && !config.cluster.as_ref().is_some_and(|c| c.sole_submitter) {
            for plan in &plans {
                let what = config
                    .deterministic
                    .then(|| "a deterministic engine (replay with feedback, prequential)".to_string());
                if let Some(what) = what {
                    return Err(StartError::NotInCluster { origin: plan.origin.clone(), what });
                }
            }
        }
        let shutdown = Shutdown::new();
        let mut pools = Vec::new();
        let mut builds = Vec::new();
        for plan in plans {
            let plan = Arc::new(plan);
            let models = start_replicas(&plan, workers, &mut pools)?;
            let stats = (0..plan.steps.len())
                .filter_map(|i| models.get(&i).map(|m| (plan.steps[i].name.clone(), Arc::clone(&m.stats))))
                .collect();
            let ingress = ingress(&plan, &config, placement.processes, &shutdown);
            let graph = Arc::new(Graph::new(Arc::clone(&plan), ingress, stats, placement));
            builds.push((graph, models));
        }
        let graphs = builds.iter().map(|(g, _)| GraphHandle::new(Arc::clone(g))).collect();
        let deterministic = config.deterministic;
        let idle_spin = config.idle_spin;
        let communication = match config.cluster {
            Some(Cluster { process, addresses, .. }) if addresses.len() > 1 => timely::CommunicationConfig::Cluster {
                threads: workers,
                process,
                addresses,
                report: false,
                zerocopy: false,
            },
            _ => timely::CommunicationConfig::Process(workers),
        };
        if placement.processes > 1 {
            crate::cluster::watch_peers();
        }
        let timely_config = timely::Config {
            communication,
            // The idle polling is `run_worker`'s own, which yields the core while it polls.
            worker: WorkerConfig::default().idle_spin(Duration::ZERO),
        };
        let guards = timely::execute(timely_config, move |worker| {
            let drained = Arc::new(AtomicUsize::new(0));
            for (graph, models) in &builds {
                build_graph(worker, graph, models, deterministic, &drained);
            }
            run_worker(worker, idle_spin, &drained);
        })
        .map_err(StartError::Workers)?;
        Ok(Engine { graphs, shutdown, guards: Some(guards), pools })
    }

    /// The graph named `name`.
    pub fn graph(&self, name: &str) -> Option<GraphHandle> {
        self.graphs.iter().find(|g| g.name() == name).cloned()
    }

    /// All graphs, in the order given to [`Engine::start`].
    pub fn graphs(&self) -> &[GraphHandle] {
        &self.graphs
    }

    /// In a cluster, the peer this process lost the connection to, once it has (the
    /// cluster cannot go on; see [`crate::cluster`]).
    pub fn lost_peer(&self) -> Option<LostPeer> {
        crate::cluster::lost_peer()
    }

    /// Answers every row in flight with an `unavailable` error and refuses new ones,
    /// without waiting for the workers: what a process of a cluster that lost a peer
    /// can still do (its workers cannot finish).
    pub fn abandon(&self) {
        self.abandoner().abandon();
    }

    /// [`Engine::abandon`], for another thread to call.
    pub fn abandoner(&self) -> Abandoner {
        Abandoner { shutdown: self.shutdown.clone(), graphs: self.graphs.clone() }
    }

    /// Stops accepting rows, lets the workers finish every row already accepted, joins
    /// them and the replica threads. Rows that were never taken in are answered with
    /// an `unavailable` error.
    pub fn shutdown(mut self) {
        self.stop();
    }

    fn stop(&mut self) {
        self.shutdown.request();
        for bell in self.graphs.iter().flat_map(|g| g.graph().ingress.all_doorbells()) {
            bell.wake();
        }
        if let Some(guards) = self.guards.take() {
            drop(guards.join());
        }
        self.pools.clear();
        for g in &self.graphs {
            g.graph().replies.fail_all();
        }
    }
}

/// Abandons an engine's rows in flight from any thread ([`Engine::abandon`]).
#[derive(Clone)]
pub struct Abandoner {
    shutdown: Shutdown,
    graphs: Vec<GraphHandle>,
}

impl Abandoner {
    /// See [`Engine::abandon`].
    pub fn abandon(&self) {
        self.shutdown.request();
        for g in &self.graphs {
            g.graph().replies.fail_all();
        }
    }
}

impl Drop for Engine {
    fn drop(&mut self) {
        self.stop();
    }
}

/// Starts the replica pool of every model step of `plan` (into `pools`); returns each
/// step's queue and counters, by step index.
fn start_replicas(
    plan: &Plan,
    workers: usize,
    pools: &mut Vec<ReplicaPool>,
) -> Result<HashMap<usize, ModelResources>, StartError> {
    let mut models = HashMap::new();
    for (i, step) in plan.steps.iter().enumerate() {
        let StepOp::Model { factory, batching, .. } = &step.op else { continue };
        let stats = Arc::new(BatchStats::new(batching.max_batch_size));
        let pool = ReplicaPool::start(
            &step.name,
            batching.replicas,
            // Room for every worker's operator to have all its batches out.
            BATCHES_PER_REPLICA * workers * batching.replicas,
            Arc::clone(&factory.0),
            Arc::clone(&stats),
        )
        .map_err(|source| StartError::Replicas {
            origin: plan.origin.clone(),
            node: step.name.clone(),
            source: Box::new(source),
        })?;
        // A CPU node's workers may compute its cheapest batches themselves; a GPU
        // node's passes stay with the replicas that hold its device.
        let inline = (batching.device == DeviceSpec::Cpu).then(|| InlineFactory(Arc::clone(&factory.0)));
        models.insert(i, ModelResources { jobs: pool.sender(), stats, inline });
        pools.push(pool);
    }
    Ok(models)
}

/// The sources of `plan`'s graph: its rows, its learning node's feedback, its tables.
fn ingress(plan: &Plan, config: &EngineConfig, processes: usize, shutdown: &Shutdown) -> Ingress {
    let workers = config.workers.max(1);
    let feedback = plan.steps.iter().find_map(|s| match &s.op {
        StepOp::Learn { .. } => FeedbackKinds::of(s).map(|kinds| FeedbackIngress {
            node: s.name.clone(),
            source: Source::new(workers, config.ingress_capacity, processes),
            kinds,
            stats: Arc::new(LearnStats::new()),
        }),
        _ => None,
    });
    // Tables need one order of times for rows and updates (see `tables.rs`).
    let clock = (config.deterministic || !plan.tables.is_empty()).then(|| {
        // Tables served by several processes: their clocks follow the wall clock.
        let shared = processes > 1 && !config.cluster.as_ref().is_some_and(|c| c.sole_submitter);
        Arc::new(if shared { EventClock::wall() } else { EventClock::new() })
    });
    // A live graph's rows go to whichever worker is free first (in one process: a
    // cluster's slots say which process computes them).
    let rows = if clock.is_none() && processes == 1 && workers > 1 {
        Source::with_shared(workers, config.ingress_capacity)
    } else {
        Source::new(workers, config.ingress_capacity, processes)
    };
    Ingress {
        graph: plan.name.clone(),
        rows,
        feedback,
        tables: plan.tables.iter().map(|spec| TableIngress::new(spec, workers)).collect(),
        clock,
        shutdown: shutdown.clone(),
    }
}

/// The machine's cores (1 where it cannot tell): `weir replay`'s default worker count,
/// and the count at which workers compute cheap models themselves even under load.
pub fn cores() -> usize {
    std::thread::available_parallelism().map_or(1, usize::from)
}

/// Runs `worker`'s dataflows until they are all complete.
///
/// When it runs out of work, a worker whose sources took one chunk at a time lately
/// (`drained`: the chunks of the latest activation of a rows source that took any)
/// polls for `idle_spin` before it parks, yielding its core to any thread that is ready
/// between polls: a client that sends its next request when the last is answered finds
/// it awake instead of paying a wake-up. One whose sources took several chunks at once
/// parks at once: rows come faster than it turns around, so a wake-up is paid once per
/// group, and on a machine with few cores the threads that produce the rows need the
/// core more than the worker needs to be awake.
///
/// Nor does it poll while every core is taken ([`Contention`]: more threads ready to run
/// than cores): the threads that make and answer the requests need the core, and a
/// worker that stays awake there takes each request alone (one chunk per activation, so
/// it would keep polling) at about twice the CPU per request of one that parks.
///
/// Before each park it yields its core once and looks again: under load the threads
/// that submit rows run meanwhile, and what they submitted is taken at once, as one
/// group, without the sleep and the futex wake-up a parked worker costs them (diamond at
/// 16 connections: a third less worker CPU, batches of 5.5 rows instead of 2.8; see
/// BENCHMARKS.md). On an idle machine the yield returns at once.
fn run_worker(worker: &mut timely::worker::Worker, idle_spin: Duration, drained: &AtomicUsize) {
    let mut idle_since: Option<Instant> = None;
    let mut contention = Contention::new(cores());
    loop {
        let alive = match idle_since {
            Some(since)
                if drained.load(Ordering::Relaxed) > 1 || since.elapsed() >= idle_spin || contention.cores_taken() =>
            {
                idle_since = None;
                // One turn of the core to the threads that make the rows before the park: a
                // chunk they submit meanwhile is taken at the step without a sleep and a
                // wake-up (its doorbell only marks this thread, which is not parked yet).
                std::thread::yield_now();
                worker.step_or_park(None)
            }
            // Never parks: receives what other threads sent, runs what is active.
            _ => worker.step_or_park(Some(Duration::ZERO)),
        };
        if !alive {
            return;
        }
        // The step's active set stays until the next step: empty, the step found no work
        // (and no operator asked to run again).
        if worker.activations().borrow().empty_for() == Some(Duration::ZERO) {
            idle_since = None;
        } else if idle_since.is_none() {
            idle_since = Some(Instant::now());
        } else {
            std::thread::yield_now();
        }
    }
}
