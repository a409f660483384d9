//! `GET /admin/stats`: what every graph and node did in the last second.
//!
//! A [`Sampler`] reads the server's counters every [`INTERVAL`] (the same counters
//! `/metrics` exposes, plus each graph's rows submitted) and keeps the figures of the
//! last interval, as rates and means over it:
//!
//! - per graph: its revision; requests per second by HTTP status; the p50 and p99 of
//!   the latencies of the requests that finished in the interval (interpolated in
//!   `/metrics`' histogram buckets; null without requests); rows in flight and the
//!   bound;
//! - per node (as `/admin/graphs` lists them): rows per second in and out, rows failed
//!   per second and in all by error code; for a model node, the mean batch size, queue
//!   wait and forward pass of its batches in the interval, its replicas and their
//!   busy share; for a learning node, its weights' version; for a lookup node, the
//!   rows of its table. `input` counts the rows submitted, `output` the rows answered.
//!
//! - for a map, route, combine, merge or lookup node, and a learning node's predictions:
//!   `busy`, the share of one core its operators took (over all workers; a lookup's
//!   asking of other workers, and a learner's learning, not counted).
//!
//! A reload restarts a graph's node counters with its new revision: the first
//! interval after it counts from zero.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::{json, Map, Value as Json};
use weir_engine::plan::StepOp;
use weir_engine::GraphHandle;
use weir_operators::learn_stats::LearnStatsSnapshot;
use weir_operators::node_stats::NodeStatsSnapshot;
use weir_operators::stats::BatchStatsSnapshot;

use super::super::histogram::LATENCY_BUCKETS;
use super::super::AppState;

/// How often the counters are read.
pub const INTERVAL: Duration = Duration::from_secs(1);

/// The counters of one graph at one moment, and the revision they are of.
struct GraphSample {
    handle: GraphHandle,
    revision: u64,
    statuses: Vec<(u16, u64)>,
    latency: Vec<u64>,
    row_errors: BTreeMap<(String, String), u64>,
    submitted: u64,
    in_flight: usize,
    max_in_flight: usize,
    batches: BTreeMap<String, BatchStatsSnapshot>,
    nodes: BTreeMap<String, NodeStatsSnapshot>,
    learn: Option<(String, LearnStatsSnapshot)>,
    tables: BTreeMap<String, i64>,
}

/// All graphs' counters at one moment.
struct Sample {
    at: Instant,
    graphs: Vec<GraphSample>,
}

/// Reads the counters every [`INTERVAL`] and keeps the last interval's figures.
#[derive(Default)]
pub struct Sampler {
    last: Mutex<Option<Sample>>,
    latest: Mutex<Json>,
}

impl Sampler {
    /// A sampler with no sample yet (its figures are all zero until two are taken).
    pub fn new() -> Arc<Sampler> {
        Arc::new(Sampler::default())
    }

    /// Reads every graph's counters and computes the figures since the last reading.
    pub fn sample(&self, state: &AppState) {
        let now = take(state);
        let mut last = self.last.lock().unwrap_or_else(|p| p.into_inner());
        let figures = figures(last.as_ref(), &now);
        *self.latest.lock().unwrap_or_else(|p| p.into_inner()) = figures;
        *last = Some(now);
    }

    /// The figures of the last interval (`{"graphs": []}` before the first sample).
    pub fn latest(&self) -> Json {
        let latest = self.latest.lock().unwrap_or_else(|p| p.into_inner());
        if latest.is_null() {
            json!({ "interval_s": INTERVAL.as_secs_f64(), "graphs": [] })
        } else {
            latest.clone()
        }
    }
}

fn take(state: &AppState) -> Sample {
    let graphs = state
        .served()
        .iter()
        .map(|g| {
            let handle = g.handle();
            GraphSample {
                handle: handle.clone(),
                revision: g.revision.number(),
                statuses: g.metrics.statuses(),
                latency: g.metrics.latency_counts(),
                row_errors: g.metrics.row_error_counts(),
                submitted: handle.rows_submitted(),
                in_flight: handle.in_flight(),
                max_in_flight: handle.max_in_flight(),
                batches: handle.batch_stats().into_iter().collect(),
                nodes: handle.node_stats().into_iter().collect(),
                learn: handle.learn_stats(),
                tables: handle.table_sizes().into_iter().collect(),
            }
        })
        .collect();
    Sample { at: Instant::now(), graphs }
}

/// The figures from `before` (if any) to `now`.
fn figures(before: Option<&Sample>, now: &Sample) -> Json {
    let secs = before.map_or(0.0, |b| now.at.duration_since(b.at).as_secs_f64());
    let rate = |d: u64| if secs > 0.0 { d as f64 / secs } else { 0.0 };
    let graphs: Vec<Json> = now
        .graphs
        .iter()
        .map(|g| {
            let prev = before.and_then(|b| b.graphs.iter().find(|p| p.handle.name() == g.handle.name()));
            // Node counters restart with a new revision.
            let prev_nodes = prev.filter(|p| p.revision == g.revision);
            let mut requests = Map::new();
            for &(status, n) in &g.statuses {
                let was = prev.and_then(|p| p.statuses.iter().find(|s| s.0 == status)).map_or(0, |s| s.1);
                if n > was {
                    let key = if status == 0 { "other".to_string() } else { status.to_string() };
                    requests.insert(key, json!(rate(n - was)));
                }
            }
            let latency: Vec<u64> =
                g.latency.iter().enumerate().map(|(i, n)| n.saturating_sub(prev.map_or(0, |p| p.latency[i]))).collect();
            let submitted = g.submitted.saturating_sub(prev_nodes.map_or(0, |p| p.submitted));
            let answered = submitted as i64 - g.in_flight as i64 + prev_nodes.map_or(0, |p| p.in_flight as i64);
            let plan = g.handle.plan();
            let mut nodes = vec![node_json("input", rate(submitted), rate(submitted), &Map::new(), &Map::new())];
            for step in &plan.steps {
                let (failed_rate, failed_total) = failures(g, prev, &step.name, &rate);
                let mut node = match &step.op {
                    StepOp::Model { batching, .. } => {
                        let s = g.batches.get(&step.name);
                        let p = prev_nodes.and_then(|p| p.batches.get(&step.name));
                        model_json(s, p, batching.replicas, secs, &failed_rate, &failed_total)
                    }
                    _ => {
                        let now = g.nodes.get(&step.name).copied().unwrap_or_default();
                        let was = prev_nodes.and_then(|p| p.nodes.get(&step.name)).copied().unwrap_or_default();
                        let d = |f: fn(&NodeStatsSnapshot) -> u64| f(&now).saturating_sub(f(&was));
                        let mut node = node_json(
                            &step.name,
                            rate(d(|s| s.rows_in)),
                            rate(d(|s| s.rows_out)),
                            &failed_rate,
                            &failed_total,
                        );
                        node["busy"] = json!((secs > 0.0).then(|| d(|s| s.busy_ns) as f64 / 1e9 / secs));
                        node
                    }
                };
                node["name"] = json!(step.name);
                match &step.op {
                    StepOp::Learn { .. } => {
                        node["version"] = json!(g.learn.as_ref().map(|(_, s)| s.version));
                    }
                    StepOp::Lookup { table, .. } => {
                        let name = &plan.tables[*table].name;
                        node["table_rows"] = json!(g.tables.get(name));
                    }
                    _ => {}
                }
                nodes.push(node);
            }
            let answered = answered.max(0) as u64;
            nodes.push(node_json("output", rate(answered), rate(answered), &Map::new(), &Map::new()));
            json!({
                "name": g.handle.name(),
                "revision": g.revision,
                "in_flight": g.in_flight,
                "max_in_flight": g.max_in_flight,
                "requests_per_s": requests,
                "latency_ms": {
                    "p50": quantile(&latency, 0.5).map(|s| s * 1e3),
                    "p99": quantile(&latency, 0.99).map(|s| s * 1e3),
                },
                "nodes": nodes,
            })
        })
        .collect();
    json!({ "interval_s": secs, "graphs": graphs })
}

/// Node `name`'s failed rows by code: per second in the interval, and in all.
fn failures(
    g: &GraphSample,
    prev: Option<&GraphSample>,
    name: &str,
    rate: &dyn Fn(u64) -> f64,
) -> (Map<String, Json>, Map<String, Json>) {
    let mut per_s = Map::new();
    let mut total = Map::new();
    for ((node, code), &n) in g.row_errors.range((name.to_string(), String::new())..) {
        if node != name {
            break;
        }
        let was = prev.and_then(|p| p.row_errors.get(&(node.clone(), code.clone()))).copied().unwrap_or(0);
        total.insert(code.clone(), json!(n));
        if n > was {
            per_s.insert(code.clone(), json!(rate(n - was)));
        }
    }
    (per_s, total)
}

fn node_json(name: &str, rows_in: f64, rows_out: f64, failed: &Map<String, Json>, total: &Map<String, Json>) -> Json {
    json!({
        "name": name,
        "rows_in_per_s": rows_in,
        "rows_out_per_s": rows_out,
        "failed_per_s": failed,
        "failed_total": total,
        "busy": null,
    })
}

/// A model node's figures from its batch counters now (`s`) and before (`p`).
fn model_json(
    s: Option<&BatchStatsSnapshot>,
    p: Option<&BatchStatsSnapshot>,
    replicas: usize,
    secs: f64,
    failed: &Map<String, Json>,
    total: &Map<String, Json>,
) -> Json {
    let d = |f: fn(&BatchStatsSnapshot) -> u64| s.map_or(0, f).saturating_sub(p.map_or(0, f));
    let rows = d(|s| s.rows);
    let batches = d(BatchStatsSnapshot::batches);
    let forwards = d(|s| s.forwards);
    let compute_ns = d(|s| s.compute_ns);
    let per_s = if secs > 0.0 { rows as f64 / secs } else { 0.0 };
    let mut node = node_json("", per_s, per_s, failed, total);
    node["batch_size"] = json!((batches > 0).then(|| rows as f64 / batches as f64));
    node["queue_wait_ms"] = json!((rows > 0).then(|| d(|s| s.queue_wait_us) as f64 / rows as f64 / 1e3));
    node["forward_ms"] = json!((forwards > 0).then(|| compute_ns as f64 / forwards as f64 / 1e6));
    node["replicas"] = json!(replicas);
    node["replicas_busy"] = json!((secs > 0.0).then(|| compute_ns as f64 / 1e9 / secs / replicas.max(1) as f64));
    node
}

/// The `q` quantile of the values counted per bucket of [`LATENCY_BUCKETS`] (plus one
/// for larger ones), in seconds, interpolated within its bucket; `None` without values.
fn quantile(counts: &[u64], q: f64) -> Option<f64> {
    let total: u64 = counts.iter().sum();
    if total == 0 {
        return None;
    }
    let target = q * total as f64;
    let mut below = 0.0;
    for (i, &n) in counts.iter().enumerate() {
        let n = n as f64;
        if n > 0.0 && below + n >= target {
            let low = if i == 0 { 0.0 } else { LATENCY_BUCKETS[i - 1] };
            let Some(&high) = LATENCY_BUCKETS.get(i) else { return Some(low) };
            return Some(low + (high - low) * ((target - below) / n).clamp(0.0, 1.0));
        }
        below += n;
    }
    LATENCY_BUCKETS.last().copied()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quantiles_interpolate_within_their_bucket() {
        let mut counts = vec![0u64; LATENCY_BUCKETS.len() + 1];
        assert_eq!(quantile(&counts, 0.5), None);
        // 100 values in (0.5 ms, 1 ms]: the median is halfway.
        counts[3] = 100;
        let p50 = quantile(&counts, 0.5).unwrap();
        assert!((p50 - 0.00075).abs() < 1e-9, "{p50}");
        // One value beyond the last bound counts as the last bound.
        let mut over = vec![0u64; LATENCY_BUCKETS.len() + 1];
        over[LATENCY_BUCKETS.len()] = 1;
        assert_eq!(quantile(&over, 0.99), Some(10.0));
    }
}
