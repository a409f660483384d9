//! The HTTP load generator the HTTP benchmarks share (`benches/http.rs`,
//! `benches/embed.rs`): servers on their own runtimes, and keep-alive connections that
//! send requests back to back.
//!
//! The load generator: a fixed number of keep-alive HTTP/1.1 connections to
//! `127.0.0.1` (hyper's low-level client, `TCP_NODELAY`), one task per connection, each
//! sending its next request as soon as the previous answer's body is read, for a fixed
//! time. Latency is per request, from sending it to having its whole answer; every answer
//! must be 200. Request bodies are serialized before the clock starts. Throughput is
//! requests answered over the time the connections ran.

// Each benchmark that includes this module uses part of it.
#![allow(dead_code)]

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::http::StatusCode;
use axum::Router;
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::header::{CONTENT_TYPE, HOST};
use serde_json::Value as JsonValue;
use weir::bench::percentile;
use weir_connectors::http::{self, AppState, ServerConfig};
use weir_engine::plan::StepOp;
use weir_engine::{Engine, EngineConfig, Plan};
use weir_operators::stats::BatchStatsSnapshot;
use weir_operators::Shutdown;

/// A server on its own multi-thread runtime; for weir, the engine behind it.
pub struct Server {
    /// Declared first: dropped (connections closed) before the engine stops.
    _runtime: tokio::runtime::Runtime,
    pub addr: SocketAddr,
    engine: Option<Engine>,
}

impl Server {
    /// Serves `router` on a runtime of `threads` threads.
    pub fn start(router: Router, engine: Option<Engine>, threads: usize) -> Server {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(threads)
            .thread_name("bench-server")
            .enable_all()
            .build()
            .expect("server runtime");
        let addr = runtime.block_on(async {
            let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind 127.0.0.1");
            let addr = listener.local_addr().expect("local address");
            // As `weir_connectors::http::serve` does: TCP_NODELAY on every connection.
            let listener = axum::serve::ListenerExt::tap_io(listener, |tcp| drop(tcp.set_nodelay(true)));
            let serve = axum::serve(listener, router);
            tokio::spawn(async move { serve.await });
            addr
        });
        Server { _runtime: runtime, addr, engine }
    }

    /// Serves `plan` as `weir serve` does by default: one timely worker (or
    /// `BENCH_WORKERS`, as `--workers`), and the HTTP runtime's threads it leaves
    /// ([`http::default_threads`]).
    pub fn weir(plan: Plan) -> Server {
        Server::weir_on(plan, http::default_threads(bench_workers(), false))
    }

    /// As [`Server::weir`], with the HTTP runtime on `threads` threads.
    pub fn weir_on(plan: Plan, threads: usize) -> Server {
        let config = EngineConfig { workers: bench_workers(), ..EngineConfig::default() };
        let engine = Engine::start(vec![plan], config).expect("engine");
        let state = AppState::new(engine.graphs(), ServerConfig::default(), Shutdown::new());
        Server::start(http::router(state), Some(engine), threads)
    }

    /// Serves a plain handler's `router` on a runtime of one thread per core (what
    /// `#[tokio::main]` starts).
    pub fn plain(router: Router) -> Server {
        Server::start(router, None, weir_engine::cores())
    }

    /// Batch statistics of the model nodes (none for the plain handler).
    pub fn stats(&self) -> Vec<(String, BatchStatsSnapshot)> {
        self.engine.as_ref().map(|e| e.graphs()[0].batch_stats()).unwrap_or_default()
    }
}

/// The timely workers weir's servers run: `BENCH_WORKERS` if set (as `weir serve
/// --workers`), else 1, `weir serve`'s default.
pub fn bench_workers() -> usize {
    std::env::var("BENCH_WORKERS").ok().and_then(|v| v.parse().ok()).filter(|&n| n > 0).unwrap_or(1)
}

/// What one load run measured.
#[derive(Clone, Default)]
pub struct Load {
    pub requests: usize,
    pub elapsed: Duration,
    /// Per request; sorted once the runs are merged.
    pub latencies: Vec<Duration>,
    /// CPU time this process (client and servers, every thread) used meanwhile.
    pub cpu: Duration,
    /// The same, per thread name (threads of one name summed), most first.
    pub threads: Vec<(String, Duration)>,
}

impl Load {
    pub fn rate(&self) -> f64 {
        self.requests as f64 / self.elapsed.as_secs_f64()
    }

    pub fn add(&mut self, other: Load) {
        self.requests += other.requests;
        self.elapsed += other.elapsed;
        self.cpu += other.cpu;
        for (name, t) in other.threads {
            match self.threads.iter_mut().find(|(n, _)| *n == name) {
                Some((_, sum)) => *sum += t,
                None => self.threads.push((name, t)),
            }
        }
        self.threads.sort_by_key(|t| std::cmp::Reverse(t.1));
        self.latencies.extend(other.latencies);
    }

    /// The latency at percentile `p` (0 to 1); sorts the latencies.
    pub fn percentile(&mut self, p: f64) -> Duration {
        self.latencies.sort_unstable();
        percentile(&self.latencies, p)
    }

    /// Throughput and latency percentiles, for the result column.
    pub fn summary(&mut self) -> String {
        let rate = self.rate();
        let mut ms = |p: f64| self.percentile(p).as_secs_f64() * 1e3;
        format!("{rate:.0} req/s; p50 {:.3} ms, p99 {:.3} ms, p99.9 {:.3} ms", ms(0.5), ms(0.99), ms(0.999))
    }
}

/// One keep-alive connection to `addr`.
pub async fn connect(addr: SocketAddr) -> hyper::client::conn::http1::SendRequest<Full<Bytes>> {
    let stream = tokio::net::TcpStream::connect(addr).await.expect("connect");
    stream.set_nodelay(true).expect("TCP_NODELAY");
    let (sender, conn) =
        hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(stream)).await.expect("handshake");
    tokio::spawn(async move {
        let _ = conn.await;
    });
    sender
}

pub fn request(path: &'static str, body: &Bytes) -> hyper::Request<Full<Bytes>> {
    hyper::Request::post(path)
        .header(HOST, "127.0.0.1")
        .header(CONTENT_TYPE, "application/json")
        .body(Full::new(body.clone()))
        .expect("request")
}

/// Sends one request and returns the answer's status and body.
pub async fn send(
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
pub async fn load(
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
    let cpu = process_cpu();
    let threads = thread_cpu();
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
    out.cpu = process_cpu().saturating_sub(cpu);
    let mut after = thread_cpu();
    for (name, t) in &mut after {
        *t = t.saturating_sub(threads.iter().find(|(n, _)| n == name).map_or(Duration::ZERO, |(_, t)| *t));
    }
    after.retain(|(_, t)| !t.is_zero());
    after.sort_by_key(|t| std::cmp::Reverse(t.1));
    out.threads = after;
    out
}

/// The CPU time each thread of this process has used, summed by thread name, from
/// `/proc/self/task/*/stat` (ticks of 10 ms).
pub fn thread_cpu() -> Vec<(String, Duration)> {
    let mut out: Vec<(String, Duration)> = Vec::new();
    for task in std::fs::read_dir("/proc/self/task").into_iter().flatten().flatten() {
        let stat = std::fs::read_to_string(task.path().join("stat")).unwrap_or_default();
        let Some((head, rest)) = stat.rsplit_once(')') else { continue };
        let name = head.split_once('(').map_or("", |(_, n)| n).to_string();
        let t = stat_cpu(rest);
        match out.iter_mut().find(|(n, _)| *n == name) {
            Some((_, sum)) => *sum += t,
            None => out.push((name, t)),
        }
    }
    out
}

/// User and system time from the fields of a `stat` file after the command name.
fn stat_cpu(rest: &str) -> Duration {
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let ticks = |i: usize| fields.get(i).and_then(|f| f.parse::<u64>().ok()).unwrap_or(0);
    Duration::from_millis(10 * (ticks(11) + ticks(12)))
}

/// The CPU time (user and system) this process has used, from `/proc/self/stat` (in
/// ticks of 10 ms, Linux's `USER_HZ`); zero where that file is missing.
pub fn process_cpu() -> Duration {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    // The fields after the command name (which may hold spaces), from the state on.
    stat.rsplit_once(')').map_or(Duration::ZERO, |(_, rest)| stat_cpu(rest))
}

/// Rows and batches each model node took between two snapshots, as mean batch sizes
/// (and the share of batches the adaptive policy held back, when it did).
pub fn mean_batches(before: &[(String, BatchStatsSnapshot)], after: &[(String, BatchStatsSnapshot)]) -> String {
    after
        .iter()
        .zip(before)
        .map(|((name, a), (_, b))| {
            let batches = a.batches() - b.batches();
            let mean = if batches == 0 { 0.0 } else { (a.rows - b.rows) as f64 / batches as f64 };
            let waits = a.waits - b.waits;
            match waits {
                0 => format!("{name} {mean:.2}"),
                w => format!("{name} {mean:.2} ({:.0}% waited)", 100.0 * w as f64 / batches.max(1) as f64),
            }
        })
        .collect::<Vec<_>>()
        .join(", ")
}

/// Alternates `servers` for `rounds` rounds of `duration` each at `conns` connections
/// (after a short warm-up of each; each round starts one server later than the last),
/// returning each server's merged load, its model
/// nodes' mean batch sizes over the measured requests, and per round every server's
/// throughput.
pub fn alternate(
    client: &tokio::runtime::Runtime,
    servers: &[&Server],
    path: &'static str,
    bodies: &Arc<Vec<Bytes>>,
    conns: usize,
    rounds: usize,
    duration: Duration,
) -> (Vec<(Load, String)>, Vec<Vec<f64>>) {
    let (rounds, batches) = alternate_rounds(client, servers, path, bodies, conns, rounds, duration);
    let per_round = rounds.iter().map(|r| r.iter().map(Load::rate).collect()).collect();
    (pooled(rounds.into_iter()).into_iter().zip(batches).collect(), per_round)
}

/// [`alternate`], with every round's loads apart (`rounds[r][k]`: server `k` in round `r`).
pub fn alternate_rounds(
    client: &tokio::runtime::Runtime,
    servers: &[&Server],
    path: &'static str,
    bodies: &Arc<Vec<Bytes>>,
    conns: usize,
    rounds: usize,
    duration: Duration,
) -> (Vec<Vec<Load>>, Vec<String>) {
    for s in servers {
        client.block_on(load(s.addr, path, bodies, conns, Duration::from_millis(300)));
    }
    let before: Vec<_> = servers.iter().map(|s| s.stats()).collect();
    let mut all = Vec::with_capacity(rounds);
    for round in 0..rounds {
        // Each round starts one server later, so no server always follows the same one.
        let mut loads: Vec<Option<Load>> = servers.iter().map(|_| None).collect();
        for i in 0..servers.len() {
            let k = (round + i) % servers.len();
            loads[k] = Some(client.block_on(load(servers[k].addr, path, bodies, conns, duration)));
        }
        all.push(loads.into_iter().map(Option::unwrap_or_default).collect());
    }
    let batches = servers.iter().zip(&before).map(|(s, b)| mean_batches(b, &s.stats())).collect();
    (all, batches)
}

/// Each server's loads over the given rounds, merged.
pub fn pooled(rounds: impl Iterator<Item = Vec<Load>>) -> Vec<Load> {
    let mut merged: Vec<Load> = Vec::new();
    for round in rounds {
        if merged.is_empty() {
            merged = round.iter().map(|_| Load::default()).collect();
        }
        for (m, l) in merged.iter_mut().zip(round) {
            m.add(l);
        }
    }
    merged
}

/// Checks one answer of each server to `body` with `check`.
pub fn sanity(
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

/// How `plan`'s first model node batches, for the result tables:
/// `max_batch_size N, max_wait_ms W` (or `adaptive`).
pub fn batching_setting(plan: &Plan) -> String {
    plan.steps
        .iter()
        .find_map(|s| match &s.op {
            StepOp::Model { batching, .. } => {
                Some(format!("max_batch_size {}, {}", batching.max_batch_size, policy_label(batching.max_wait_ms)))
            }
            _ => None,
        })
        .expect("the graph has a model node")
}

/// A batching policy as `max_wait_ms` says it: `max_wait_ms W`, or `adaptive` (`None`).
pub fn policy_label(max_wait_ms: Option<u64>) -> String {
    max_wait_ms.map_or("adaptive".into(), |ms| format!("max_wait_ms {ms}"))
}

/// `plan` with every model node at `max_wait_ms` (`None`: the adaptive policy).
pub fn with_policy(mut plan: Plan, max_wait_ms: Option<u64>) -> Plan {
    for step in &mut plan.steps {
        if let StepOp::Model { batching, .. } = &mut step.op {
            batching.max_wait_ms = max_wait_ms;
        }
    }
    plan
}
