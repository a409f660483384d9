//! What the HTTP handlers share ([`AppState`]): the graphs served, each as a
//! [`LiveGraph`] a reload may replace, their metrics, the settings, readiness; and what
//! one request sees of a graph ([`Served`]).

use std::sync::{Arc, RwLock};
use std::time::Duration;

use weir_engine::GraphHandle;
use weir_operators::Shutdown;

use super::exposition::MetricFamilies;
use super::metrics::GraphMetrics;
use crate::live::{LiveGraph, Revision};

/// Server settings.
#[derive(Clone, Debug)]
pub struct ServerConfig {
    /// The largest request body accepted, in bytes (413 beyond).
    pub body_limit: usize,
    /// A deadline for requests that name none, overriding every graph's
    /// `serving.timeout_ms`.
    pub default_timeout: Option<Duration>,
}

impl Default for ServerConfig {
    fn default() -> Self {
        ServerConfig { body_limit: 4 << 20, default_timeout: None }
    }
}

/// A graph as one request sees it: the revision current when the request started (held
/// until it is answered, see [`crate::live`]), the request's default deadline, and the
/// graph's metrics (which outlive revisions).
pub(crate) struct Served {
    pub(super) revision: Arc<Revision>,
    pub(super) timeout: Option<Duration>,
    pub(super) metrics: Arc<GraphMetrics>,
}

impl Served {
    pub(super) fn handle(&self) -> &GraphHandle {
        self.revision.handle()
    }

    pub(super) fn outputs(&self) -> &[String] {
        self.revision.outputs()
    }

    /// The revision's number as the Open Inference Protocol's model version.
    pub(super) fn version(&self) -> String {
        self.revision.number().to_string()
    }
}

/// A graph served by name: its live revision and its metrics.
struct Entry {
    live: Arc<LiveGraph>,
    metrics: Arc<GraphMetrics>,
}

/// What the handlers share: the graphs, their metrics, the settings, readiness.
pub struct AppState {
    graphs: Vec<Entry>,
    pub(super) config: ServerConfig,
    /// The server's shutdown: once requested, `/readyz` answers 503 and
    /// [`super::serve`] stops.
    pub(super) shutdown: Shutdown,
    /// Families other parts of the server add to `/metrics`.
    pub(super) extra_metrics: RwLock<Vec<Arc<dyn MetricFamilies>>>,
}

impl AppState {
    /// Serves `graphs` (handles of a running engine, which the caller keeps running)
    /// with `config`; ready until `shutdown` is requested. Each is revision 1 of a
    /// [`LiveGraph`] that a reload may replace ([`AppState::live`]).
    pub fn new(graphs: &[GraphHandle], config: ServerConfig, shutdown: Shutdown) -> Arc<Self> {
        Self::owning(graphs, None, config, shutdown)
    }

    /// [`AppState::new`], where the first revisions of `graphs` own `engine`, the engine
    /// they run in: it stops once a reload has replaced every one of them (and they are
    /// drained), or once the state is dropped.
    pub fn owning(
        graphs: &[GraphHandle],
        engine: Option<Arc<dyn std::any::Any + Send + Sync>>,
        config: ServerConfig,
        shutdown: Shutdown,
    ) -> Arc<Self> {
        let graphs = graphs
            .iter()
            .map(|g| Entry {
                live: LiveGraph::new(g.clone(), engine.clone()),
                metrics: Arc::new(GraphMetrics::default()),
            })
            .collect();
        Arc::new(AppState { graphs, config, shutdown, extra_metrics: RwLock::new(Vec::new()) })
    }

    /// Adds `families` to every later scrape of `/metrics`, after weir's own families and
    /// those added before: how another part of the server (the Kafka source and sink)
    /// publishes its counters. See [`MetricFamilies`] for what they must write.
    pub fn add_metrics(&self, families: Arc<dyn MetricFamilies>) {
        self.extra_metrics.write().unwrap_or_else(|p| p.into_inner()).push(families);
    }

    /// Every graph served, in order: what a reload replaces, and what the Kafka loops
    /// submit to.
    pub fn live(&self) -> Vec<Arc<LiveGraph>> {
        self.graphs.iter().map(|e| Arc::clone(&e.live)).collect()
    }

    /// The graph named `name`, as a request that starts now sees it.
    pub(super) fn graph(&self, name: &str) -> Option<Served> {
        self.graphs.iter().find(|e| e.live.name() == name).map(|e| self.view(e))
    }

    fn view(&self, entry: &Entry) -> Served {
        let revision = entry.live.current();
        let timeout =
            self.config.default_timeout.or(revision.handle().plan().serving.timeout_ms.map(Duration::from_millis));
        Served { revision, timeout, metrics: Arc::clone(&entry.metrics) }
    }

    /// Every graph, as a request that starts now sees it.
    pub(super) fn served(&self) -> Vec<Served> {
        self.graphs.iter().map(|e| self.view(e)).collect()
    }
}
