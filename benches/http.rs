//! HTTP benchmarks: what a request through `weir serve` costs, on real sockets.
//!
//! Run: `cargo bench --bench http` (add `-- --quick` for a short run, and a name such as
//! `diamond` or `digits` to run one experiment). Prints a markdown table; every figure is
//! paired with a baseline measured in the same run, because these machines are shared
//! and noisy.
//!
//! The load generator: a fixed number of keep-alive HTTP/1.1 connections to
//! `127.0.0.1` (hyper's low-level client, `TCP_NODELAY`), one task per connection, each
//! sending its next request as soon as the previous answer's body is read, for a fixed
//! time. Latency is per request, from sending it to having its whole answer; every answer
//! must be 200. Request bodies are serialized before the clock starts. Throughput is
//! requests answered over the time the connections ran.
//!
//! Client and servers run in this one process: each server on its own two-thread tokio
//! runtime (the weir engine adds its timely worker and one replica thread per model
//! node), the load generator on a one-thread tokio runtime (the main thread). They all
//! share the machine's cores (two on the reference machine), so absolute numbers are
//! lower than with a separate load machine; the ratios compare servers that pay the
//! same client costs.
//!
//! Experiments:
//! 1. **diamond over HTTP**: `POST /graphs/diamond` (`graphs/diamond.yaml`, one timely
//!    worker) against a plain axum handler that decodes the same JSON and answers
//!    `y = a + 2b + c` itself, at 16 connections and at 1. The two alternate in short
//!    rounds and the ratio is the median of the per-round ratios, since the machine's
//!    speed drifts. Targets: weir ≥ 50% of the plain handler's throughput at 16
//!    connections, p50 ≤ 0.5 ms at 1 connection.
//! 2. **digits over HTTP**: `POST /graphs/digits` (`graphs/digits.yaml`) at 1, 16 and 64
//!    connections, batching on (as the file says: `max_batch_size` 32, `max_wait_ms` 2)
//!    against batching off (the same plan with every model node at `max_batch_size` 1,
//!    `max_wait_ms` 0) and dynamic batching (`max_batch_size` 32, `max_wait_ms` 0: a
//!    batch leaves whenever a replica is free), alternating in rounds likewise. Mean batch size per model node
//!    is over the measured requests only.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};
use weir::bench::{median, percentile, range};

use axum::http::StatusCode;
use axum::routing::post;
use axum::{Json, Router};
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::header::{CONTENT_TYPE, HOST};
use serde_json::{json, Value as JsonValue};
use weir::datasets::{digits, Split};
use weir_connectors::http::{self, AppState, ServerConfig};
use weir_engine::plan::StepOp;
use weir_engine::{load_plan, Engine, EngineConfig, Plan};
use weir_operators::stats::BatchStatsSnapshot;

/// A server on its own two-thread runtime; for weir, the engine behind it.
struct Server {
    /// Declared first: dropped (connections closed) before the engine stops.
    _runtime: tokio::runtime::Runtime,
    addr: SocketAddr,
    engine: Option<Engine>,
}

impl Server {
    fn start(router: Router, engine: Option<Engine>) -> Server {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .thread_name("bench-server")
            .enable_all()
            .build()
            .expect("server runtime");
        let addr = runtime.block_on(async {
            let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind 127.0.0.1");
            let addr = listener.local_addr().expect("local address");
            let serve = axum::serve(listener, router);
            tokio::spawn(async move { serve.await });
            addr
        });
        Server { _runtime: runtime, addr, engine }
    }

    /// Serves `plan` with one timely worker, as `weir serve` does.
    fn weir(plan: Plan) -> Server {
        let engine = Engine::start(vec![plan], EngineConfig { workers: 1, ..EngineConfig::default() }).expect("engine");
        let state = AppState::new(engine.graphs(), ServerConfig::default());
        Server::start(http::router(state), Some(engine))
    }

    /// The plain handler: `POST /graphs/diamond` answers `y = a + 2b + c` itself.
    fn plain() -> Server {
        Server::start(Router::new().route("/graphs/diamond", post(plain_diamond)), None)
    }

    /// Batch statistics of the model nodes (none for the plain handler).
    fn stats(&self) -> Vec<(String, BatchStatsSnapshot)> {
        self.engine.as_ref().map(|e| e.graphs()[0].batch_stats()).unwrap_or_default()
    }
}

/// Decodes the JSON body as weir's handler does (to a `serde_json::Value`: this package
/// has no serde derive), reads three numbers, answers their weighted sum.
async fn plain_diamond(Json(body): Json<JsonValue>) -> Result<Json<JsonValue>, StatusCode> {
    let field = |k: &str| body.get(k).and_then(JsonValue::as_f64).ok_or(StatusCode::UNPROCESSABLE_ENTITY);
    let (a, b, c) = (field("a")?, field("b")?, field("c")?);
    Ok(Json(json!({ "y": a + 2.0 * b + c })))
}

/// What one load run measured.
#[derive(Default)]
struct Load {
    requests: usize,
    elapsed: Duration,
    /// Per request; sorted once the runs are merged.
    latencies: Vec<Duration>,
}

impl Load {
    fn rate(&self) -> f64 {
        self.requests as f64 / self.elapsed.as_secs_f64()
    }

    fn add(&mut self, other: Load) {
        self.requests += other.requests;
        self.elapsed += other.elapsed;
        self.latencies.extend(other.latencies);
    }

    /// Throughput and latency percentiles, for the result column.
    fn summary(&mut self) -> String {
        self.latencies.sort_unstable();
        let ms = |p: f64| percentile(&self.latencies, p).as_secs_f64() * 1e3;
        format!("{:.0} req/s; p50 {:.3} ms, p99 {:.3} ms, p99.9 {:.3} ms", self.rate(), ms(0.5), ms(0.99), ms(0.999))
    }
}

/// One keep-alive connection to `addr`.
async fn connect(addr: SocketAddr) -> hyper::client::conn::http1::SendRequest<Full<Bytes>> {
    let stream = tokio::net::TcpStream::connect(addr).await.expect("connect");
    stream.set_nodelay(true).expect("TCP_NODELAY");
    let (sender, conn) =
        hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(stream)).await.expect("handshake");
    tokio::spawn(async move {
        let _ = conn.await;
    });
    sender
}

fn request(path: &'static str, body: &Bytes) -> hyper::Request<Full<Bytes>> {
    hyper::Request::post(path)
        .header(HOST, "127.0.0.1")
        .header(CONTENT_TYPE, "application/json")
        .body(Full::new(body.clone()))
        .expect("request")
}

/// Sends one request and returns the answer's status and body.
async fn send(
    sender: &mut hyper::client::conn::http1::SendRequest<Full<Bytes>>,
    path: &'static str,
    body: &Bytes,
) -> (StatusCode, Bytes) {
    sender.ready().await.expect("connection ready");
    let response = sender.send_request(request(path, body)).await.expect("response");
    let status = response.status();
    let body = response.into_body().collect().await.expect("response body").to_bytes();
    (status, body)
}

/// `conns` connections to `addr` sending `bodies` (round robin, each connection from its
/// own offset) to `path` back to back for `duration`. Panics if any answer is not 200.
async fn load(
    addr: SocketAddr,
    path: &'static str,
    bodies: &Arc<Vec<Bytes>>,
    conns: usize,
    duration: Duration,
) -> Load {
    let mut senders = Vec::with_capacity(conns);
    for _ in 0..conns {
        senders.push(connect(addr).await);
    }
    let start = Instant::now();
    let end = start + duration;
    let tasks: Vec<_> = senders
        .into_iter()
        .enumerate()
        .map(|(k, mut sender)| {
            let bodies = Arc::clone(bodies);
            tokio::spawn(async move {
                let mut latencies = Vec::with_capacity(1 << 14);
                let mut failures = 0usize;
                let mut i = k * 7;
                while Instant::now() < end {
                    let body = &bodies[i % bodies.len()];
                    i += 1;
                    let t = Instant::now();
                    let (status, _) = send(&mut sender, path, body).await;
                    latencies.push(t.elapsed());
                    if status != StatusCode::OK {
                        failures += 1;
                    }
                }
                (latencies, failures, Instant::now())
            })
        })
        .collect();
    let mut out = Load::default();
    let (mut failures, mut last) = (0, start);
    for task in tasks {
        let (latencies, failed, finished) = task.await.expect("connection task");
        out.latencies.extend(latencies);
        failures += failed;
        last = last.max(finished);
    }
    assert_eq!(failures, 0, "{failures} of {} requests to {path} were not answered 200", out.latencies.len());
    out.requests = out.latencies.len();
    out.elapsed = last - start;
    out
}

/// Rows and batches each model node took between two snapshots, as mean batch sizes.
fn mean_batches(before: &[(String, BatchStatsSnapshot)], after: &[(String, BatchStatsSnapshot)]) -> String {
    after
        .iter()
        .zip(before)
        .map(|((name, a), (_, b))| {
            let batches = a.batches() - b.batches();
            let mean = if batches == 0 { 0.0 } else { (a.rows - b.rows) as f64 / batches as f64 };
            format!("{name} {mean:.2}")
        })
        .collect::<Vec<_>>()
        .join(", ")
}

/// Alternates `servers` for `rounds` rounds of `duration` each at `conns` connections
/// (after a short warm-up of each), returning each server's merged load, its model
/// nodes' mean batch sizes over the measured requests, and per round every server's
/// throughput.
fn alternate(
    client: &tokio::runtime::Runtime,
    servers: &[&Server],
    path: &'static str,
    bodies: &Arc<Vec<Bytes>>,
    conns: usize,
    rounds: usize,
    duration: Duration,
) -> (Vec<(Load, String)>, Vec<Vec<f64>>) {
    for s in servers {
        client.block_on(load(s.addr, path, bodies, conns, Duration::from_millis(300)));
    }
    let before: Vec<_> = servers.iter().map(|s| s.stats()).collect();
    let mut loads: Vec<Load> = servers.iter().map(|_| Load::default()).collect();
    let mut per_round = Vec::with_capacity(rounds);
    for _ in 0..rounds {
        let mut rates = Vec::with_capacity(servers.len());
        for (k, s) in servers.iter().enumerate() {
            let l = client.block_on(load(s.addr, path, bodies, conns, duration));
            rates.push(l.rate());
            loads[k].add(l);
        }
        per_round.push(rates);
    }
    let out = loads.into_iter().zip(servers.iter().zip(&before)).map(|(l, (s, b))| (l, mean_batches(b, &s.stats())));
    (out.collect(), per_round)
}

/// Checks one answer of each server to `body` with `check`.
fn sanity(
    client: &tokio::runtime::Runtime,
    servers: &[&Server],
    path: &'static str,
    body: &Bytes,
    check: fn(&JsonValue),
) {
    for s in servers {
        let (status, answer) = client.block_on(async { send(&mut connect(s.addr).await, path, body).await });
        assert_eq!(status, StatusCode::OK, "{path}: {}", String::from_utf8_lossy(&answer));
        check(&serde_json::from_slice(&answer).expect("JSON answer"));
    }
}

fn diamond(client: &tokio::runtime::Runtime, quick: bool) {
    let weir = Server::weir(load_plan(&weir::datasets::graphs_dir().join("diamond.yaml")).expect("diamond"));
    let plain = Server::plain();
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
        let plain_summary = loads[1].0.summary();
        let (weir_load, batches) = &mut loads[0];
        let weir_summary = weir_load.summary();
        let target = if conns == 1 {
            let p50 = percentile(&weir_load.latencies, 0.5).as_secs_f64() * 1e3;
            format!("; p50 target ≤ 0.5 ms: {}", if p50 <= 0.5 { "met" } else { "missed" })
        } else {
            format!("; target ≥ 0.50: {}", if ratio >= 0.5 { "met" } else { "missed" })
        };
        println!(
            "| diamond over HTTP | plain axum handler, y = a + 2b + c, {conns} conn (baseline) | {plain_summary} | 1.00 |"
        );
        println!(
            "| diamond over HTTP | weir, diamond.yaml, 1 worker, {conns} conn; mean batch {batches} | {weir_summary} | \
             {ratio:.2} of plain throughput (median of {rounds} rounds; range {lo:.2} to {hi:.2}){target} |"
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
            batching.max_wait_ms = 0;
        }
    }
    plan
}

fn digits_http(client: &tokio::runtime::Runtime, quick: bool) {
    let path = weir::datasets::graphs_dir().join("digits.yaml");
    let plan = load_plan(&path).expect("digits");
    let batching = plan
        .steps
        .iter()
        .find_map(|s| match &s.op {
            StepOp::Model { batching, .. } => {
                Some(format!("max_batch_size {}, max_wait_ms {}", batching.max_batch_size, batching.max_wait_ms))
            }
            _ => None,
        })
        .expect("digits has model nodes");
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
}
