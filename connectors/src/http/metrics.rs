//! `GET /metrics`: Prometheus text format.
//!
//! Per graph: requests by status (`weir_requests_total`), request latency
//! (`weir_request_duration_seconds`), rows in flight (`weir_rows_in_flight`) and its
//! bound, and failed rows by the node that failed them and their code
//! (`weir_row_errors_total`). Per model node: batch sizes (`weir_batch_size`), the
//! time rows waited for their batch (`weir_queue_wait_seconds`), forward passes and
//! the time they took (`weir_forward_passes_total`, `weir_forward_seconds_total`).

use std::collections::BTreeMap;
use std::fmt::Write;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;

use weir_engine::GraphHandle;
use weir_operators::learn_stats::LearnStatsSnapshot;
use weir_operators::stats::WAIT_BUCKETS_US;
use weir_operators::RowError;

use super::histogram::{render_buckets, Histogram, LATENCY_BUCKETS};

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

    /// Records rows that failed inside the graph.
    pub fn row_errors<'a>(&self, errors: impl Iterator<Item = &'a RowError>) {
        let mut map = self.row_errors.lock().unwrap_or_else(|p| p.into_inner());
        for e in errors {
            *map.entry((e.node.clone(), e.code.as_str())).or_insert(0) += 1;
        }
    }
}

/// Renders every graph's metrics.
pub fn render(graphs: &[(GraphHandle, &GraphMetrics)]) -> String {
    let mut out = String::new();
    out.push_str(
        "# HELP weir_requests_total HTTP requests to a graph, by status.\n# TYPE weir_requests_total counter\n",
    );
    for (g, m) in graphs {
        for (status, n) in STATUSES.iter().zip(&m.statuses) {
            let status = if *status == 0 { "other".to_string() } else { status.to_string() };
            let _ = writeln!(
                out,
                "weir_requests_total{{graph=\"{}\",status=\"{status}\"}} {}",
                g.name(),
                n.load(Ordering::Relaxed)
            );
        }
    }
    out.push_str(
        "# HELP weir_request_duration_seconds Time from request to answer.\n# TYPE weir_request_duration_seconds histogram\n",
    );
    for (g, m) in graphs {
        m.latency.render(&mut out, "weir_request_duration_seconds", &format!("graph=\"{}\"", g.name()));
    }
    out.push_str("# HELP weir_rows_in_flight Rows admitted and not yet answered.\n# TYPE weir_rows_in_flight gauge\n");
    for (g, _) in graphs {
        let _ = writeln!(out, "weir_rows_in_flight{{graph=\"{}\"}} {}", g.name(), g.in_flight());
    }
    out.push_str("# HELP weir_max_rows_in_flight The admission bound.\n# TYPE weir_max_rows_in_flight gauge\n");
    for (g, _) in graphs {
        let _ = writeln!(out, "weir_max_rows_in_flight{{graph=\"{}\"}} {}", g.name(), g.max_in_flight());
    }
    out.push_str(
        "# HELP weir_row_errors_total Rows that failed, by the node that failed them.\n# TYPE weir_row_errors_total counter\n",
    );
    for (g, m) in graphs {
        let map = m.row_errors.lock().unwrap_or_else(|p| p.into_inner());
        for ((node, code), n) in map.iter() {
            let _ =
                writeln!(out, "weir_row_errors_total{{graph=\"{}\",node=\"{node}\",code=\"{code}\"}} {n}", g.name());
        }
    }
    render_nodes(&mut out, graphs);
    render_learning(&mut out, graphs);
    render_tables(&mut out, graphs);
    out
}

fn render_tables(out: &mut String, graphs: &[(GraphHandle, &GraphMetrics)]) {
    let tables: Vec<(&str, String, i64)> =
        graphs.iter().flat_map(|(g, _)| g.table_sizes().into_iter().map(move |(t, n)| (g.name(), t, n))).collect();
    if tables.is_empty() {
        return;
    }
    out.push_str("# HELP weir_table_keys Keys a table holds.\n# TYPE weir_table_keys gauge\n");
    for (graph, table, n) in tables {
        let _ = writeln!(out, "weir_table_keys{{graph=\"{graph}\",table=\"{table}\"}} {n}");
    }
}

fn render_learning(out: &mut String, graphs: &[(GraphHandle, &GraphMetrics)]) {
    let nodes: Vec<(&str, String, LearnStatsSnapshot)> =
        graphs.iter().filter_map(|(g, _)| g.learn_stats().map(|(node, s)| (g.name(), node, s))).collect();
    if nodes.is_empty() {
        return;
    }
    out.push_str(
        "# HELP weir_feedback_total Feedback rows by what became of them.\n# TYPE weir_feedback_total counter\n",
    );
    for (graph, node, s) in &nodes {
        for (outcome, n) in [
            ("learned", s.learned),
            ("unknown_key", s.unknown_key),
            ("expired_key", s.expired_key),
            ("invalid", s.invalid),
        ] {
            let _ = writeln!(out, "weir_feedback_total{{graph=\"{graph}\",node=\"{node}\",outcome=\"{outcome}\"}} {n}");
        }
    }
    let gauges = [
        ("weir_model_version", "The version of a learning node's latest weights (optimizer steps).", "gauge"),
        ("weir_kept_predictions", "Predictions a learning node keeps for their feedback.", "gauge"),
        ("weir_checkpoints_total", "Checkpoints a learning node has written.", "counter"),
    ];
    for (i, (name, help, kind)) in gauges.iter().enumerate() {
        let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}");
        for (graph, node, s) in &nodes {
            let value = [s.version, s.kept, s.checkpoints][i];
            let _ = writeln!(out, "{name}{{graph=\"{graph}\",node=\"{node}\"}} {value}");
        }
    }
}

fn render_nodes(out: &mut String, graphs: &[(GraphHandle, &GraphMetrics)]) {
    let nodes: Vec<(String, String, weir_operators::stats::BatchStatsSnapshot)> = graphs
        .iter()
        .flat_map(|(g, _)| g.batch_stats().into_iter().map(move |(node, s)| (g.name().to_string(), node, s)))
        .collect();
    out.push_str("# HELP weir_batch_size Rows per forward pass of a model node.\n# TYPE weir_batch_size histogram\n");
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
        let labels = format!("graph=\"{graph}\",node=\"{node}\"");
        render_buckets(out, "weir_batch_size", &labels, &bounds, &counts, s.rows as f64);
    }
    out.push_str(
        "# HELP weir_queue_wait_seconds Time a row waited for its batch to leave.\n# TYPE weir_queue_wait_seconds histogram\n",
    );
    let wait_bounds: Vec<f64> = WAIT_BUCKETS_US.iter().map(|&us| us as f64 / 1e6).collect();
    for (graph, node, s) in &nodes {
        let labels = format!("graph=\"{graph}\",node=\"{node}\"");
        render_buckets(
            out,
            "weir_queue_wait_seconds",
            &labels,
            &wait_bounds,
            &s.wait_buckets,
            s.queue_wait_us as f64 / 1e6,
        );
    }
    out.push_str("# HELP weir_forward_passes_total Forward passes run.\n# TYPE weir_forward_passes_total counter\n");
    for (graph, node, s) in &nodes {
        let _ = writeln!(out, "weir_forward_passes_total{{graph=\"{graph}\",node=\"{node}\"}} {}", s.forwards);
    }
    out.push_str(
        "# HELP weir_forward_seconds_total Time replicas spent in forward passes.\n# TYPE weir_forward_seconds_total counter\n",
    );
    for (graph, node, s) in &nodes {
        let _ = writeln!(
            out,
            "weir_forward_seconds_total{{graph=\"{graph}\",node=\"{node}\"}} {}",
            s.compute_ns as f64 / 1e9
        );
    }
    out.push_str(
        "# HELP weir_failed_batches_total Forward passes that failed.\n# TYPE weir_failed_batches_total counter\n",
    );
    for (graph, node, s) in &nodes {
        let _ = writeln!(out, "weir_failed_batches_total{{graph=\"{graph}\",node=\"{node}\"}} {}", s.failed_batches);
    }
}
