//! HTTP benchmarks: what a request through `weir serve` costs, on real sockets.
//!
//! Run: `cargo bench --bench http` (add `-- --quick` for a short run, and a name such as
//! `diamond` or `digits` to run one experiment; `BENCH_WORKERS=N` serves weir on N timely
//! workers, as `weir serve --workers N`). Prints a markdown table; every figure is
//! paired with a baseline measured in the same run, because these machines are shared
//! and noisy.
//!
//! The load generator is `benches/support/load.rs`. Each row also gives the CPU time
//! per request of this whole process (client and server threads, from `/proc/self/stat`),
//! which the machine's noise moves less than the request rate.
//!
//! Client and servers run in this one process: each server on its own tokio runtime
//! (weir's as `weir serve` starts it by default: the threads its one timely worker leaves
//! of the cores, one on the reference machine; the engine adds its timely worker and one
//! replica thread per model node; the plain handler's of one thread per core, as
//! `#[tokio::main]` starts it), the load generator on a one-thread tokio runtime (the
//! main thread). They all
//! share the machine's cores (two on the reference machine), so absolute numbers are
//! lower than with a separate load machine; the ratios compare servers that pay the
//! same client costs.
//!
//! Experiments:
//! 1. **diamond over HTTP**: `POST /graphs/diamond` (`graphs/diamond.yaml`, one timely
//!    worker) against a plain axum handler that decodes the same JSON and answers
//!    `y = a + 2b + c` itself, at 16 connections and at 1. The two alternate in short
//!    rounds and the ratio is the median of the per-round ratios, since the machine's
//!    speed drifts. Targets (issue 21): weir ≥ 75% of the plain handler's throughput at
//!    16 connections, p50 ≤ the plain handler's p50 + 40 µs at 1 connection.
//! 2. **digits over HTTP**: `POST /graphs/digits` (`graphs/digits.yaml`) at 1, 16 and 64
//!    connections, batching on (as the file says: `max_batch_size` 32, adaptive)
//!    against batching off (the same plan with every model node at `max_batch_size` 1,
//!    `max_wait_ms` 0) and dynamic batching (`max_batch_size` 32, `max_wait_ms` 0: a
//!    batch leaves whenever a replica is free), alternating in rounds likewise. Mean batch size per model node
//!    is over the measured requests only.
//! 3. **zoo over HTTP** (`zoo`): the bundled graphs of exported models,
//!    `digits-onnx.yaml` (scikit-learn's MLP through ONNX) and `phishing-xgboost.yaml`
//!    (XGBoost), as shipped (adaptive batching, the default) against the same graphs at
//!    `max_wait_ms` 2, at 1, 16 and 64 connections.
//! 4. **HTTP threads** (`threads`): `weir serve`'s default HTTP runtime
//!    (`weir_connectors::http::default_threads`: the cores its one timely worker leaves)
//!    against one thread per core (tokio's default, and `weir serve`'s until 2026-12-05),
//!    for digits and diamond as bundled, at 1, 16 and 64 connections: sixteen rounds of
//!    one second, the medians of the per-round ratios of throughput and of p99.
#![allow(clippy::unwrap_used)] // a test or benchmark fails loudly on the first surprise

#[path = "support/load.rs"]
mod load;

use std::sync::Arc;
use std::time::Duration;

use axum::http::StatusCode;
use axum::routing::post;
use axum::{Json, Router};
use bytes::Bytes;
use load::{alternate, sanity, with_policy, Server};
use serde_json::{json, Value as JsonValue};
use weir::bench::{median, percentile, range};
use weir::datasets::{digits, Split};
use weir_engine::plan::StepOp;
use weir_engine::{load_plan, Plan};

/// The plain handler's server: `POST /graphs/diamond` answers `y = a + 2b + c` itself.
fn plain() -> Server {
    Server::plain(Router::new().route("/graphs/diamond", post(plain_diamond)))
}

/// Decodes the JSON body as weir's handler does (to a `serde_json::Value`: this package
/// has no serde derive), reads three numbers, answers their weighted sum.
async fn plain_diamond(Json(body): Json<JsonValue>) -> Result<Json<JsonValue>, StatusCode> {
    let field = |k: &str| body.get(k).and_then(JsonValue::as_f64).ok_or(StatusCode::UNPROCESSABLE_ENTITY);
    let (a, b, c) = (field("a")?, field("b")?, field("c")?);
    Ok(Json(json!({ "y": a + 2.0 * b + c })))
}

fn diamond(client: &tokio::runtime::Runtime, quick: bool) {
    let weir = Server::weir(load_plan(&weir::datasets::graphs_dir().join("diamond.yaml")).expect("diamond"));
    let plain = plain();
    let bodies = Arc::new(vec![Bytes::from_static(br#"{"a":1,"b":2,"c":3}"#)]);
    sanity(client, &[&weir, &plain], "/graphs/diamond", &bodies[0], |v| {
        assert_eq!(v["y"].as_f64(), Some(8.0), "y = 1 + 2*2 + 3: {v}");
    });
    for (conns, rounds) in [(16, if quick { 2 } else { 5 }), (1, if quick { 2 } else { 3 })] {
        let duration = Duration::from_millis(if quick { 500 } else { 2000 });
        let (mut loads, per_round) =
            alternate(client, &[&weir, &plain], "/graphs/diamond", &bodies, conns, rounds, duration);
        let ratios: Vec<f64> = per_round.iter().map(|r| r[0] / r[1]).collect();
        let (lo, hi) = range(&ratios);
        let ratio = median(ratios);
        let per_request = |l: &load::Load| l.cpu.as_secs_f64() * 1e6 / l.requests.max(1) as f64;
        let (weir_cpu, plain_cpu) = (per_request(&loads[0].0), per_request(&loads[1].0));
        let plain_summary = loads[1].0.summary();
        let plain_p50 = percentile(&loads[1].0.latencies, 0.5);
        let (weir_load, batches) = &mut loads[0];
        let weir_summary = weir_load.summary();
        let target = if conns == 1 {
            let p50 = percentile(&weir_load.latencies, 0.5);
            let over = (p50.as_secs_f64() - plain_p50.as_secs_f64()) * 1e6;
            format!(
                "; p50 {over:+.0} µs over plain's, target ≤ +40 µs: {}",
                if over <= 40.0 { "met" } else { "missed" }
            )
        } else {
            format!("; target ≥ 0.75: {}", if ratio >= 0.75 { "met" } else { "missed" })
        };
        println!(
            "| diamond over HTTP | plain axum handler, y = a + 2b + c, {conns} conn (baseline) | {plain_summary}; \
             CPU {plain_cpu:.1} µs/request | 1.00 |"
        );
        println!(
            "| diamond over HTTP | weir, diamond.yaml, 1 worker, {conns} conn; mean batch {batches} | {weir_summary}; \
             CPU {weir_cpu:.1} µs/request | {ratio:.2} of plain throughput (median of {rounds} rounds; range {lo:.2} to \
             {hi:.2}){target}; {:.2}x its CPU per request |",
            weir_cpu / plain_cpu
        );
        let threads = |l: &load::Load| {
            let n = l.requests.max(1) as f64;
            l.threads
                .iter()
                .map(|(name, t)| format!("{name} {:.1}", t.as_secs_f64() * 1e6 / n))
                .collect::<Vec<_>>()
                .join(", ")
        };
        println!(
            "| diamond over HTTP | CPU µs/request by thread, {conns} conn | weir: {}; plain: {} | |",
            threads(&loads[0].0),
            threads(&loads[1].0)
        );
    }
}

/// `plan` with every model node at `max_wait_ms` 0, and at `max_batch_size` 1 unless
/// `keep_size`.
fn no_wait(mut plan: Plan, keep_size: bool) -> Plan {
    for step in &mut plan.steps {
        if let StepOp::Model { batching, .. } = &mut step.op {
            if !keep_size {
                batching.max_batch_size = 1;
            }
            batching.max_wait_ms = Some(0);
        }
    }
    plan
}

fn digits_http(client: &tokio::runtime::Runtime, quick: bool) {
    let path = weir::datasets::graphs_dir().join("digits.yaml");
    let plan = load_plan(&path).expect("digits");
    let batching = load::batching_setting(&plan);
    let on = Server::weir(plan);
    let off = Server::weir(no_wait(load_plan(&path).expect("digits"), false));
    let dynamic = Server::weir(no_wait(load_plan(&path).expect("digits"), true));
    let set = digits(Split::Test).expect("digits");
    let bodies: Vec<Bytes> =
        set.iter().map(|d| Bytes::from(serde_json::to_vec(&json!({ "pixels": d.pixels })).expect("JSON"))).collect();
    let bodies = Arc::new(bodies);
    sanity(client, &[&on, &dynamic, &off], "/graphs/digits", &bodies[0], |v| {
        assert!(v["label"].is_u64() && v["probs"].as_array().is_some_and(|p| p.len() == 10), "digits answer: {v}");
    });
    let rounds = if quick { 2 } else { 3 };
    let duration = Duration::from_millis(if quick { 500 } else { 2000 });
    for conns in [1, 16, 64] {
        let (mut loads, per_round) =
            alternate(client, &[&on, &dynamic, &off], "/graphs/digits", &bodies, conns, rounds, duration);
        let (off_load, off_batches) = &mut loads[2];
        println!(
            "| digits over HTTP | batching off (max_batch_size 1), {conns} conn; mean batch {off_batches} (baseline) | {} | 1.00 |",
            off_load.summary()
        );
        for (k, label) in
            [(0, format!("batching on ({batching})")), (1, "dynamic (max_batch_size 32, max_wait_ms 0)".into())]
        {
            let ratios: Vec<f64> = per_round.iter().map(|r| r[k] / r[2]).collect();
            let (lo, hi) = range(&ratios);
            let ratio = median(ratios);
            let (l, batches) = &mut loads[k];
            println!(
                "| digits over HTTP | {label}, {conns} conn; mean batch {batches} | {} | \
                 {ratio:.2}x off throughput (median of {rounds} rounds; range {lo:.2} to {hi:.2}) |",
                l.summary()
            );
        }
    }
}

/// A bundled graph of a model file (`format:`), as shipped (adaptive batching), against
/// the same graph at `max_wait_ms` 2, at 1, 16 and 64 connections.
fn zoo_http(
    client: &tokio::runtime::Runtime,
    quick: bool,
    (graph, route): (&str, &'static str),
    bodies: Vec<Bytes>,
    check: fn(&JsonValue),
) {
    let path = weir::datasets::graphs_dir().join(format!("{graph}.yaml"));
    let shipped = Server::weir(load_plan(&path).expect("a bundled graph"));
    let waiting = Server::weir(with_policy(load_plan(&path).expect("a bundled graph"), Some(2)));
    let bodies = Arc::new(bodies);
    sanity(client, &[&shipped, &waiting], route, &bodies[0], check);
    let rounds = if quick { 2 } else { 3 };
    let duration = Duration::from_millis(if quick { 500 } else { 2000 });
    for conns in [1, 16, 64] {
        let (mut loads, per_round) = alternate(client, &[&shipped, &waiting], route, &bodies, conns, rounds, duration);
        let ratios: Vec<f64> = per_round.iter().map(|r| r[0] / r[1]).collect();
        let (lo, hi) = range(&ratios);
        let ratio = median(ratios);
        let (w, w_batches) = &mut loads[1];
        println!(
            "| {graph} over HTTP | max_wait_ms 2, {conns} conn; mean batch {w_batches} (baseline) | {} | 1.00 |",
            w.summary()
        );
        let (l, batches) = &mut loads[0];
        println!(
            "| {graph} over HTTP | as bundled (adaptive), {conns} conn; mean batch {batches} | {} | \
             {ratio:.2}x throughput (median of {rounds} rounds; range {lo:.2} to {hi:.2}) |",
            l.summary()
        );
    }
}

/// `weir serve`'s default HTTP threads against one per core (experiment 4).
fn threads(client: &tokio::runtime::Runtime, quick: bool) {
    let (default, cores) = (weir_connectors::http::default_threads(1, false), weir_engine::cores());
    let set = digits(Split::Test).expect("digits");
    let json = |v: JsonValue| Bytes::from(serde_json::to_vec(&v).expect("JSON"));
    let graphs: [(&str, &'static str, Vec<Bytes>); 2] = [
        ("digits", "/graphs/digits", set.iter().map(|d| json(json!({ "pixels": d.pixels }))).collect()),
        ("diamond", "/graphs/diamond", (0..64).map(|i| json(json!({"a": i, "b": 2, "c": 3}))).collect()),
    ];
    let rounds = if quick { 2 } else { 16 };
    let duration = Duration::from_millis(if quick { 300 } else { 1000 });
    for (graph, route, bodies) in graphs {
        let file = weir::datasets::graphs_dir().join(format!("{graph}.yaml"));
        let servers = [default, cores].map(|t| Server::weir_on(load_plan(&file).expect("bundled graph"), t));
        let bodies = Arc::new(bodies);
        sanity(client, &[&servers[0], &servers[1]], route, &bodies[0], |v| assert!(v.is_object(), "{v}"));
        for conns in [1, 16, 64] {
            let (mut by_round, _) =
                load::alternate_rounds(client, &[&servers[0], &servers[1]], route, &bodies, conns, rounds, duration);
            let ratios: Vec<f64> = by_round.iter().map(|r| r[0].rate() / r[1].rate()).collect();
            let p99_ratios: Vec<f64> = by_round
                .iter_mut()
                .map(|r| r[0].percentile(0.99).as_secs_f64() / r[1].percentile(0.99).as_secs_f64())
                .collect();
            let (lo, hi) = range(&ratios);
            let mut pooled = load::pooled(by_round.into_iter());
            println!(
                "| HTTP threads | {graph}, {conns} conn, {cores} threads (one per core; baseline) | {} | 1.00 |",
                pooled[1].summary()
            );
            println!(
                "| HTTP threads | {graph}, {conns} conn, {default} (the default) | {} | {:.2}x throughput (median of \
                 {rounds} rounds; range {lo:.2} to {hi:.2}), {:.2}x p99 |",
                pooled[0].summary(),
                median(ratios),
                median(p99_ratios)
            );
        }
    }
}

/// The allocator the `weir` binary uses.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() {
    let args = weir::bench::BenchArgs::start();
    let quick = args.quick;
    // The load generator: one thread (this one), shared with everything else.
    let client = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("client runtime");
    let run = |name: &str| args.runs(name);
    if run("diamond") {
        diamond(&client, quick);
    }
    if run("digits") {
        digits_http(&client, quick);
    }
    if run("threads") {
        threads(&client, quick);
    }
    if run("zoo") {
        let json = |v: serde_json::Value| Bytes::from(serde_json::to_vec(&v).expect("JSON"));
        let set = digits(Split::Test).expect("digits");
        let pixels = set.iter().map(|d| json(json!({ "pixels": d.pixels }))).collect();
        zoo_http(&client, quick, ("digits-onnx", "/graphs/digits-onnx"), pixels, |v| {
            assert!(v["label"].is_u64() && v["probabilities"].as_array().is_some_and(|p| p.len() == 10), "{v}");
        });
        let pages = weir::datasets::phishing().expect("phishing");
        let features = pages.iter().map(|p| json(json!({ "features": p.features }))).collect();
        zoo_http(&client, quick, ("phishing-xgboost", "/graphs/phishing-xgboost"), features, |v| {
            assert!(v["label"].is_u64() && v["probability"].is_f64(), "{v}");
        });
    }
}
