//! Hot reload for `weir serve`: on SIGHUP or `POST /admin/reload`, every graph file is
//! read and checked again, and each graph whose file (or a file it names: weights,
//! parameters, a table's snapshot) changed is compiled into a new engine beside the
//! running one and swapped in (see `weir_connectors::live`).
//!
//! - All or nothing: a file that fails `weir check`, a graph whose `name` or `kafka:`
//!   section changed (a restart's business), or a new engine that cannot start refuses
//!   the whole reload with the reason, and every graph keeps serving as it was. So does
//!   a graph that answers Kafka whose outputs changed.
//! - A graph that did not change is left alone: its engine, its tables, its learning
//!   node's weights and version carry on. A changed graph's learning node starts from
//!   the serving revision's learner, unless the file changed the node's settings or
//!   starting weights ([`carry_learner`]); labels the old revision learns from after
//!   that copy are not carried. From the swap on, only the new revision writes the
//!   node's checkpoint directory: the old one's saves would overwrite it with older
//!   weights.
//! - A changed graph's tables are filled before the switch, as at start (snapshot, then
//!   its topic to the end); changes sent to the old revision over HTTP are not carried
//!   over. Its Kafka consumer, feedback consumer and routes switch at once: each
//!   submission after the swap goes to the new revision, and the consumer's offsets
//!   are committed as answers are produced, by either revision, so none is lost or
//!   consumed twice.
//! - The old revision is dropped once nothing uses it ([`Revision::is_drained`]): its
//!   requests are answered, then its engine stops and its table feeds end.
//!
//! Reloads run one at a time, on one task ([`Reloader::run`]).

use std::any::Any;
use std::collections::hash_map::DefaultHasher;
use std::hash::Hasher;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::{mpsc, oneshot, Notify};
use weir_connectors::http::admin::{GraphReload, ReloadOutcome, ReloadRequest};
use weir_connectors::kafka::stats::KafkaMetrics;
use weir_connectors::kafka::table::TableFeed;
use weir_connectors::live::{LiveGraph, Revision};
use weir_engine::plan::StepOp;
use weir_engine::spec::LearnSpec;
use weir_engine::{yaml, Engine, EngineConfig, GraphSpec, Kernels, Plan};
use weir_operators::kernel::learner::Learner;
use weir_operators::Shutdown;

use super::serve::Overrides;
use super::tables::{fill_tables, follow_tables};

/// Files larger than this are fingerprinted by length and modification time, not
/// content.
const HASH_LIMIT: u64 = 64 << 20;

/// One long-lived thread for a reload's blocking work (loading plans, starting engines,
/// dropping retired ones), so that their memory is allocated and freed by one thread.
#[derive(Clone)]
struct Blocking(std::sync::mpsc::Sender<Box<dyn FnOnce() + Send>>);

impl Blocking {
    fn start() -> Blocking {
        let (tx, rx) = std::sync::mpsc::channel::<Box<dyn FnOnce() + Send>>();
        let _ = std::thread::Builder::new().name("weir-reload".into()).spawn(move || {
            for job in rx {
                job();
            }
        });
        Blocking(tx)
    }

    /// Runs `f` on the thread; `Err` if the thread is gone.
    async fn run<T: Send + 'static>(&self, f: impl FnOnce() -> T + Send + 'static) -> Result<T, String> {
        let (tx, rx) = oneshot::channel();
        self.0.send(Box::new(move || drop(tx.send(f())))).map_err(|_| "the reload thread is gone".to_string())?;
        rx.await.map_err(|_| "the reload thread failed".to_string())
    }
}

/// How often a retired revision is checked for being drained.
const DRAIN_POLL: Duration = Duration::from_millis(10);

/// A graph file as last loaded: its path, what it serves as, and its fingerprint.
struct Watched {
    path: PathBuf,
    live: Arc<LiveGraph>,
    fingerprint: u64,
    /// Stops the table feeds of the revision serving now, if a reload started them
    /// (those `weir serve` started with end with it).
    feeds: Option<Shutdown>,
}

/// Everything a reload needs to load and start graphs as `weir serve` did.
pub struct Reloader {
    watched: Vec<Watched>,
    kernels: Kernels,
    config: EngineConfig,
    overrides: Overrides,
    stop: Shutdown,
    blocking: Blocking,
    /// `/metrics`' Kafka families, which list the table feeds of the revisions serving.
    metrics: Arc<KafkaMetrics>,
}

/// A graph file read for a reload (or at start): its fingerprint, then its plan.
pub struct Loaded {
    /// The fingerprint of the file and every file it names.
    pub fingerprint: u64,
    /// The checked plan, with `weir serve`'s flags applied.
    pub plan: Plan,
}

/// Reads `path`, fingerprints it and the files it names, and plans it with `kernels`,
/// with `overrides` applied. The error names the file and what is wrong with it.
pub fn load(path: &Path, kernels: &Kernels, overrides: &Overrides) -> Result<Loaded, String> {
    let spec = yaml::load_file(path).map_err(|e| e.to_string())?;
    let fingerprint = fingerprint(path, &spec);
    plan(&spec, fingerprint, kernels, overrides)
}

/// Plans `spec` (read from a file whose fingerprint is `fingerprint`) with `kernels`,
/// with `overrides` applied.
fn plan(spec: &GraphSpec, fingerprint: u64, kernels: &Kernels, overrides: &Overrides) -> Result<Loaded, String> {
    let mut plan = Plan::with_kernels(spec, kernels).map_err(|e| e.to_string())?;
    overrides.apply(&mut plan)?;
    Ok(Loaded { fingerprint, plan })
}

impl Reloader {
    /// Watches `files` (the graph files `weir serve` was given, in order), each with the
    /// fingerprint it was loaded with and the graph it serves as.
    pub fn new(
        files: Vec<(PathBuf, u64, Arc<LiveGraph>)>,
        kernels: Kernels,
        config: EngineConfig,
        overrides: Overrides,
        stop: Shutdown,
        metrics: Arc<KafkaMetrics>,
    ) -> Reloader {
        let watched = files
            .into_iter()
            .map(|(path, fingerprint, live)| Watched { path, live, fingerprint, feeds: None })
            .collect();
        Reloader { watched, kernels, config, overrides, stop, blocking: Blocking::start(), metrics }
    }

    /// Reloads on every SIGHUP (`hangups`) and every admin request, one at a time, until
    /// the server stops.
    pub async fn run(mut self, hangups: Arc<Notify>, mut requests: mpsc::Receiver<ReloadRequest>) {
        loop {
            let reply: Option<oneshot::Sender<ReloadOutcome>> = tokio::select! {
                () = self.stop.requested() => return,
                () = hangups.notified() => None,
                request = requests.recv() => match request {
                    Some(reply) => Some(reply),
                    None => return,
                },
            };
            let outcome = self.reload().await;
            match &outcome {
                Ok(graphs) => {
                    for g in graphs.iter().filter(|g| g.reloaded) {
                        eprintln!("weir: reloaded graph '{}' from {}: revision {}", g.name, g.file, g.revision);
                    }
                    if graphs.iter().all(|g| !g.reloaded) {
                        eprintln!("weir: reload: no graph file changed");
                    }
                }
                Err(reason) => eprintln!("weir: reload refused, every graph serving as before: {reason}"),
            }
            if let Some(reply) = reply {
                let _ = reply.send(outcome);
            }
        }
    }

    /// One reload (see the module docs).
    async fn reload(&mut self) -> ReloadOutcome {
        if self.config.cluster.is_some() {
            return Err("a process of a cluster cannot reload alone: restart every process".into());
        }
        // Read and check every file, off the async threads (weights load here).
        let files: Vec<(PathBuf, u64)> = self.watched.iter().map(|w| (w.path.clone(), w.fingerprint)).collect();
        let kernels = self.kernels.clone();
        let overrides = self.overrides.clone();
        let loaded = self
            .blocking
            .run(move || -> Result<Vec<Option<Loaded>>, String> {
                files
                    .iter()
                    .map(|(path, old)| {
                        // Read once; a file that does not parse is reported, changed or not.
                        let spec = yaml::load_file(path).map_err(|e| e.to_string())?;
                        let now = fingerprint(path, &spec);
                        if now == *old {
                            return Ok(None);
                        }
                        plan(&spec, now, &kernels, &overrides).map(Some)
                    })
                    .collect()
            })
            .await??;
        let mut changed = Vec::new();
        for (i, loaded) in loaded.into_iter().enumerate() {
            let Some(loaded) = loaded else { continue };
            let w = &self.watched[i];
            let serving = w.live.current();
            if loaded.plan.name != w.live.name() {
                return Err(format!(
                    "{}: the graph's name changed from '{}' to '{}'; renaming a served graph needs a restart",
                    w.path.display(),
                    w.live.name(),
                    loaded.plan.name
                ));
            }
            if loaded.plan.kafka != serving.handle().plan().kafka {
                return Err(format!(
                    "{}: graph '{}': its kafka: section (with the Kafka flags applied) changed; that needs a restart",
                    w.path.display(),
                    w.live.name()
                ));
            }
            if loaded.plan.kafka.is_some()
                && weir_engine::GraphSchema::of(&loaded.plan).outputs != serving.handle().schema().outputs
            {
                return Err(format!(
                    "{}: graph '{}': its outputs changed while it answers Kafka; that needs a restart",
                    w.path.display(),
                    w.live.name()
                ));
            }
            changed.push((i, loaded));
        }
        let reloaded: Vec<usize> = changed.iter().map(|(i, _)| *i).collect();
        if !changed.is_empty() {
            self.swap(changed).await?;
        }
        Ok(self
            .watched
            .iter()
            .enumerate()
            .map(|(i, w)| GraphReload {
                name: w.live.name().to_string(),
                file: w.path.display().to_string(),
                revision: w.live.current().number(),
                reloaded: reloaded.contains(&i),
            })
            .collect())
    }

    /// Starts `changed` (by index into `watched`) in one new engine, fills their tables,
    /// then swaps each in and retires the revision it replaces.
    async fn swap(&mut self, changed: Vec<(usize, Loaded)>) -> Result<(), String> {
        let (picked, mut plans): (Vec<(usize, u64)>, Vec<Plan>) =
            changed.into_iter().map(|(i, l)| ((i, l.fingerprint), l.plan)).unzip();
        for ((i, _), plan) in picked.iter().zip(&mut plans) {
            carry_learner(&self.watched[*i].live.current(), plan);
        }
        let config = self.config.clone();
        let stop = self.stop.clone();
        let bootstrap = self.overrides.bootstrap().map(str::to_string);
        let (engine, tables) = self
            .blocking
            .run(move || {
                let engine = Engine::start(plans, config).map_err(|e| e.to_string())?;
                // Dropping the engine on an error stops it: nothing was admitted.
                let tables = fill_tables(engine.graphs(), bootstrap.as_deref(), &stop).map_err(|e| e.to_string())?;
                Ok::<_, String>((engine, tables))
            })
            .await??;
        let feeds = Shutdown::new();
        let feed_stats: Vec<_> = tables.iter().map(TableFeed::stats).collect();
        follow_tables(tables, &feeds);
        let handles = engine.graphs().to_vec();
        let engine: Arc<dyn Any + Send + Sync> = Arc::new(Mutex::new(engine));
        let mut retired = Vec::new();
        for ((i, fingerprint), handle) in picked.into_iter().zip(handles) {
            let w = &mut self.watched[i];
            let graph = handle.name().to_string();
            let graph_feeds = feed_stats.iter().filter(|f| f.graph() == graph).cloned().collect();
            self.metrics.replace_feeds(&graph, graph_feeds);
            let new_dir = learning_node(handle.plan()).and_then(|n| n.checkpoint.cloned());
            let old = w.live.replace(handle, Arc::clone(&engine));
            // The new revision writes the checkpoints from now on, if to the same place.
            if new_dir.is_some() && learning_node(old.handle().plan()).and_then(|n| n.checkpoint) == new_dir.as_ref() {
                old.handle().hand_over_checkpoints();
            }
            retired.push((old, w.feeds.replace(feeds.clone())));
            w.fingerprint = fingerprint;
        }
        // The new feeds end with the server too.
        let stop = self.stop.clone();
        tokio::spawn(async move {
            stop.requested().await;
            feeds.request();
        });
        tokio::spawn(retire(retired, self.blocking.clone()));
        Ok(())
    }
}

/// Starts `plan`'s learning node from where the serving revision's learner is now, if
/// the file did not change the learner: the same settings and the same starting point
/// as the serving revision's plan had. The same starting point is the same starting
/// weights (its weights file, or zeros), or, for a node with `checkpoint:`, the same
/// checkpoint directory at a version no later than the serving learner's: the serving
/// revision wrote that checkpoint, so it is an earlier state of the learner that serves.
/// Otherwise, or if the serving learner has learned nothing, the node starts as its file
/// says.
fn carry_learner(serving: &Revision, plan: &mut Plan) {
    let old = learning_node(serving.handle().plan());
    let Some(latest) = serving.handle().latest_learner() else { return };
    for step in &mut plan.steps {
        if let StepOp::Learn { learner, spec, checkpoint, .. } = &mut step.op {
            let same = old.as_ref().is_some_and(|old| {
                let resumed = checkpoint.is_some()
                    && old.checkpoint == checkpoint.as_ref()
                    && learner.version() <= latest.version();
                old.name == step.name && old.spec == &**spec && (old.learner.weights() == learner.weights() || resumed)
            });
            if same && latest.inputs() == learner.inputs() {
                **learner = latest.clone();
            }
        }
    }
}

/// A plan's learning node, as a reload compares it with the next revision's.
struct LearningNode<'a> {
    name: &'a str,
    /// Its learner at its starting point.
    learner: &'a Learner,
    spec: &'a LearnSpec,
    /// The directory it writes its checkpoints to, if any.
    checkpoint: Option<&'a PathBuf>,
}

/// `plan`'s learning node, if it has one.
fn learning_node(plan: &Plan) -> Option<LearningNode<'_>> {
    plan.steps.iter().find_map(|s| match &s.op {
        StepOp::Learn { learner, spec, checkpoint, .. } => {
            Some(LearningNode { name: &s.name, learner, spec, checkpoint: checkpoint.as_ref() })
        }
        _ => None,
    })
}

/// Waits until each revision is drained, then stops its table feeds (if a reload
/// started them) and drops it, stopping its engine once no revision of it is left.
async fn retire(retired: Vec<(Arc<Revision>, Option<Shutdown>)>, blocking: Blocking) {
    for (revision, feeds) in retired {
        while !revision.is_drained() {
            tokio::time::sleep(DRAIN_POLL).await;
        }
        if let Some(feeds) = feeds {
            feeds.request();
        }
        if let Some(engine) = revision.into_engine() {
            // Stopping an engine joins its threads: off the async threads. What they
            // freed goes back to the operating system at once.
            let _ = blocking
                .run(move || {
                    drop(engine);
                    super::allocator::release_freed();
                })
                .await;
        }
    }
}

/// A fingerprint of graph file `path` and of every file its `spec` names (resolved
/// against its directory): content for files up to [`HASH_LIMIT`], else length and
/// modification time; a directory by its entries' names, lengths and times. A file
/// that cannot be read counts as its error (the plan reports it).
pub fn fingerprint(path: &Path, spec: &GraphSpec) -> u64 {
    let mut h = DefaultHasher::new();
    hash_path(&mut h, path);
    for file in spec.files() {
        hash_path(&mut h, &file);
    }
    h.finish()
}

fn hash_path(h: &mut DefaultHasher, path: &Path) {
    h.write(path.as_os_str().as_encoded_bytes());
    let Ok(meta) = std::fs::metadata(path) else {
        h.write_u8(0);
        return;
    };
    let stamp = |h: &mut DefaultHasher, meta: &std::fs::Metadata| {
        h.write_u64(meta.len());
        if let Ok(t) = meta.modified().map(|t| t.duration_since(std::time::UNIX_EPOCH).unwrap_or_default()) {
            h.write_u128(t.as_nanos());
        }
    };
    if meta.is_dir() {
        let mut entries: Vec<_> =
            std::fs::read_dir(path).map(|d| d.flatten().map(|e| e.path()).collect()).unwrap_or_default();
        entries.sort();
        for entry in entries {
            h.write(entry.as_os_str().as_encoded_bytes());
            if let Ok(meta) = std::fs::metadata(&entry) {
                stamp(h, &meta);
            }
        }
    } else if meta.len() > HASH_LIMIT {
        stamp(h, &meta);
    } else if let Ok(mut file) = std::fs::File::open(path) {
        let mut buf = Vec::with_capacity(meta.len() as usize);
        if file.read_to_end(&mut buf).is_ok() {
            h.write(&buf);
        }
    }
}
