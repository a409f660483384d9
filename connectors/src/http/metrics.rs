//! `GET /metrics`: Prometheus text format (written by [`MetricsText`], which escapes
//! every label value).
//!
//! `weir_build_info{version, arch, os}` is 1: the workspace version (every weir crate
//! shares it) and the platform the binary was built for.
//!
//! Per graph: requests by status (`weir_requests_total`), request latency
//! (`weir_request_duration_seconds`), rows in flight (`weir_rows_in_flight`) and its
//! bound (`weir_max_rows_in_flight`), and failed rows by the node that failed them and
//! their code (`weir_row_errors_total`). Per model node: batch sizes
//! (`weir_batch_size`), the time rows waited for their batch
//! (`weir_queue_wait_seconds`), forward passes, the time they took and those that failed
//! (`weir_forward_passes_total`, `weir_forward_seconds_total`,
//! `weir_failed_batches_total`), batches by why they left (`weir_batches_total{reason}`:
//! full, now, waited, max_wait, behind, deadline) and the adaptive policy's waits
//! (`weir_batch_waits_total`), and batches a worker computed itself
//! (`weir_inline_batches_total`). Per learning node, when a graph has one: feedback rows by
//! outcome (`weir_feedback_total`), the weights' version (`weir_model_version`), the
//! predictions kept for feedback (`weir_kept_predictions`) and checkpoints written
//! (`weir_checkpoints_total`). Per table, when a graph has one: its keys
//! (`weir_table_keys`). Then the families other parts of the server add
//! ([`super::AppState::add_metrics`]).
//!
//! In a cluster of processes (`weir serve --processes N`) every sample carries the
//! process's index as its first label, `process`, and `weir_rows_from_peers_total{graph}`
//! counts the rows this process computed for requests that entered at another.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use weir_engine::GraphHandle;
use weir_operators::dataflow::policy::SendReason;
use weir_operators::learn_stats::LearnStatsSnapshot;
use weir_operators::stats::{BatchStatsSnapshot, WAIT_BUCKETS_US};
use weir_operators::RowError;

use super::exposition::{MetricFamilies, MetricType, MetricsText};
use super::histogram::{Histogram, LATENCY_BUCKETS};

/// The statuses counted one by one; others count as `other`.
const STATUSES: [u16; 12] = [200, 400, 404, 405, 408, 413, 415, 422, 500, 503, 504, 0];

/// Request metrics of one graph.
#[derive(Debug)]
pub struct GraphMetrics {
    statuses: [AtomicU64; STATUSES.len()],
    latency: Histogram,
    /// Failed rows by (node, code).
    row_errors: Mutex<BTreeMap<(String, &'static str), u64>>,
}

impl Default for GraphMetrics {
    fn default() -> Self {
        GraphMetrics {
            statuses: std::array::from_fn(|_| AtomicU64::new(0)),
            latency: Histogram::new(&LATENCY_BUCKETS),
            row_errors: Mutex::new(BTreeMap::new()),
        }
    }
}

impl GraphMetrics {
    /// Records a finished request.
    pub fn request(&self, status: u16, seconds: f64) {
        let i = STATUSES.iter().position(|&s| s == status).unwrap_or(STATUSES.len() - 1);
        self.statuses[i].fetch_add(1, Ordering::Relaxed);
        self.latency.observe(seconds);
    }

    /// Requests by status so far (0: another status).
    pub fn statuses(&self) -> Vec<(u16, u64)> {
        STATUSES.iter().zip(&self.statuses).map(|(&s, n)| (s, n.load(Ordering::Relaxed))).collect()
    }

    /// Requests by latency bucket so far ([`LATENCY_BUCKETS`], not cumulative, plus one
    /// for longer ones).
    pub fn latency_counts(&self) -> Vec<u64> {
        self.latency.counts()
    }

    /// Failed rows so far, by node and code.
    pub fn row_error_counts(&self) -> BTreeMap<(String, String), u64> {
        let map = self.row_errors.lock().unwrap_or_else(|p| p.into_inner());
        map.iter().map(|((node, code), n)| ((node.clone(), code.to_string()), *n)).collect()
    }

    /// Records rows that failed inside the graph.
    pub fn row_errors<'a>(&self, errors: impl Iterator<Item = &'a RowError>) {
        // Most requests have none: the lock is taken only for the first error.
        let mut errors = errors.peekable();
        if errors.peek().is_none() {
            return;
        }
        let mut map = self.row_errors.lock().unwrap_or_else(|p| p.into_inner());
        for e in errors {
            *map.entry((e.node.clone(), e.code.as_str())).or_insert(0) += 1;
        }
    }
}

/// The labels of `weir_build_info`: what was built, and for which platform.
pub fn build_labels() -> [(&'static str, &'static str); 3] {
    [("version", env!("CARGO_PKG_VERSION")), ("arch", std::env::consts::ARCH), ("os", std::env::consts::OS)]
}

/// Renders `weir_build_info`, every graph's metrics, then the `extra` families.
pub fn render(graphs: &[(GraphHandle, u64, &GraphMetrics)], extra: &[Arc<dyn MetricFamilies>]) -> String {
    let placement = graphs.first().map(|(g, _, _)| g.placement()).filter(|p| p.processes > 1);
    let mut text = match placement {
        Some(p) => MetricsText::with_constant_label("process", p.process.to_string()),
        None => MetricsText::new(),
    };
    text.family(
        "weir_build_info",
        MetricType::Gauge,
        "Always 1; the labels say which weir this is (the workspace version) and the platform it was built for.",
    );
    text.sample("weir_build_info", &build_labels(), 1u64);
    text.family("weir_requests_total", MetricType::Counter, "HTTP requests to a graph, by status.");
    for (g, _, m) in graphs {
        for (status, n) in STATUSES.iter().zip(&m.statuses) {
            let status = if *status == 0 { "other".to_string() } else { status.to_string() };
            text.sample("weir_requests_total", &[("graph", g.name()), ("status", &status)], n.load(Ordering::Relaxed));
        }
    }
    text.family("weir_request_duration_seconds", MetricType::Histogram, "Time from request to answer.");
    for (g, _, m) in graphs {
        m.latency.render(&mut text, "weir_request_duration_seconds", &[("graph", g.name())]);
    }
    text.family(
        "weir_graph_revision",
        MetricType::Gauge,
        "The graph's revision serving now: 1, then one more per reload that changed it.",
    );
    for (g, revision, _) in graphs {
        text.sample("weir_graph_revision", &[("graph", g.name())], *revision);
    }
    text.family("weir_rows_in_flight", MetricType::Gauge, "Rows admitted and not yet answered.");
    for (g, _, _) in graphs {
        text.sample("weir_rows_in_flight", &[("graph", g.name())], g.in_flight());
    }
    text.family("weir_max_rows_in_flight", MetricType::Gauge, "The admission bound.");
    for (g, _, _) in graphs {
        text.sample("weir_max_rows_in_flight", &[("graph", g.name())], g.max_in_flight());
    }
    text.family("weir_row_errors_total", MetricType::Counter, "Rows that failed, by the node that failed them.");
    for (g, _, m) in graphs {
        let map = m.row_errors.lock().unwrap_or_else(|p| p.into_inner());
        for ((node, code), n) in map.iter() {
            text.sample("weir_row_errors_total", &[("graph", g.name()), ("node", node), ("code", code)], *n);
        }
    }
    if placement.is_some() {
        text.family(
            "weir_rows_from_peers_total",
            MetricType::Counter,
            "Rows this process computed for requests that entered at another process of the cluster.",
        );
        for (g, _, _) in graphs {
            text.sample("weir_rows_from_peers_total", &[("graph", g.name())], g.rows_from_peers());
        }
    }
    render_nodes(&mut text, graphs);
    render_learning(&mut text, graphs);
    render_tables(&mut text, graphs);
    for families in extra {
        families.render(&mut text);
    }
    text.into_string()
}

fn render_tables(text: &mut MetricsText, graphs: &[(GraphHandle, u64, &GraphMetrics)]) {
    let tables: Vec<(&str, String, i64)> =
        graphs.iter().flat_map(|(g, _, _)| g.table_sizes().into_iter().map(move |(t, n)| (g.name(), t, n))).collect();
    if tables.is_empty() {
        return;
    }
    text.family("weir_table_keys", MetricType::Gauge, "Keys a table holds.");
    for (graph, table, n) in tables {
        text.sample("weir_table_keys", &[("graph", graph), ("table", &table)], n);
    }
}

fn render_learning(text: &mut MetricsText, graphs: &[(GraphHandle, u64, &GraphMetrics)]) {
    let nodes: Vec<(&str, String, LearnStatsSnapshot)> =
        graphs.iter().filter_map(|(g, _, _)| g.learn_stats().map(|(node, s)| (g.name(), node, s))).collect();
    if nodes.is_empty() {
        return;
    }
    text.family("weir_feedback_total", MetricType::Counter, "Feedback rows by what became of them.");
    for (graph, node, s) in &nodes {
        for (outcome, n) in [
            ("learned", s.learned),
            ("unknown_key", s.unknown_key),
            ("expired_key", s.expired_key),
            ("invalid", s.invalid),
        ] {
            text.sample("weir_feedback_total", &[("graph", graph), ("node", node), ("outcome", outcome)], n);
        }
    }
    let gauges = [
        ("weir_model_version", "The version of a learning node's latest weights (optimizer steps).", MetricType::Gauge),
        ("weir_kept_predictions", "Predictions a learning node keeps for their feedback.", MetricType::Gauge),
        ("weir_checkpoints_total", "Checkpoints a learning node has written.", MetricType::Counter),
    ];
    for (i, (name, help, kind)) in gauges.into_iter().enumerate() {
        text.family(name, kind, help);
        for (graph, node, s) in &nodes {
            let value = [s.version, s.kept, s.checkpoints][i];
            text.sample(name, &[("graph", graph), ("node", node)], value);
        }
    }
}

/// A model node's counter in `/metrics`: its name, its help, and its value.
type NodeCounter = (&'static str, &'static str, fn(&BatchStatsSnapshot) -> u64);

fn render_nodes(text: &mut MetricsText, graphs: &[(GraphHandle, u64, &GraphMetrics)]) {
    let nodes: Vec<(&str, String, BatchStatsSnapshot)> = graphs
        .iter()
        .flat_map(|(g, _, _)| g.batch_stats().into_iter().map(move |(node, s)| (g.name(), node, s)))
        .collect();
    text.family("weir_batch_size", MetricType::Histogram, "Rows per forward pass of a model node.");
    for (graph, node, s) in &nodes {
        // Buckets at powers of two up to the node's max_batch_size.
        let max = s.sizes.len().saturating_sub(1).max(1);
        let bounds: Vec<f64> = std::iter::successors(Some(1usize), |b| Some(b * 2))
            .take_while(|&b| b < max)
            .chain([max])
            .map(|b| b as f64)
            .collect();
        let mut counts = vec![0u64; bounds.len() + 1];
        for (size, n) in s.sizes.iter().enumerate().skip(1) {
            counts[bounds.partition_point(|&b| b < size as f64)] += n;
        }
        text.histogram("weir_batch_size", &[("graph", graph), ("node", node)], &bounds, &counts, s.rows as f64);
    }
    text.family("weir_queue_wait_seconds", MetricType::Histogram, "Time a row waited for its batch to leave.");
    let wait_bounds: Vec<f64> = WAIT_BUCKETS_US.iter().map(|&us| us as f64 / 1e6).collect();
    for (graph, node, s) in &nodes {
        text.histogram(
            "weir_queue_wait_seconds",
            &[("graph", graph), ("node", node)],
            &wait_bounds,
            &s.wait_buckets,
            s.queue_wait_us as f64 / 1e6,
        );
    }
    text.family("weir_forward_seconds_total", MetricType::Counter, "Time replicas spent in forward passes.");
    for (graph, node, s) in &nodes {
        text.sample("weir_forward_seconds_total", &[("graph", graph), ("node", node)], s.compute_ns as f64 / 1e9);
    }
    text.family(
        "weir_batches_total",
        MetricType::Counter,
        "Batches sent to a model node's replicas, by why they left: full; now (a replica was free and waiting \
         would not pay, or max_wait_ms 0); waited (after an adaptive wait); max_wait; behind (queued behind busy \
         replicas after one mean forward pass); deadline.",
    );
    for (graph, node, s) in &nodes {
        for (reason, n) in SendReason::ALL.iter().zip(&s.reasons) {
            text.sample("weir_batches_total", &[("graph", graph), ("node", node), ("reason", reason.label())], *n);
        }
    }
    let counters: [NodeCounter; 4] = [
        ("weir_forward_passes_total", "Forward passes run.", |s| s.forwards),
        ("weir_failed_batches_total", "Forward passes that failed.", |s| s.failed_batches),
        (
            "weir_batch_waits_total",
            "Times the adaptive batching policy held a partial batch back for more rows.",
            |s| s.waits,
        ),
        (
            "weir_inline_batches_total",
            "Batches a timely worker computed itself, the node's forward pass being cheaper than the trip to a \
             replica.",
            |s| s.inline,
        ),
    ];
    for (name, help, value) in counters {
        text.family(name, MetricType::Counter, help);
        for (graph, node, s) in &nodes {
            text.sample(name, &[("graph", graph), ("node", node)], value(s));
        }
    }
}
