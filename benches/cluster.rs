//! Cluster benchmark: one graph served by 1, 2 and 4 `weir serve` processes on this
//! machine (timely's cluster mode, 1 worker each), and what it costs a row to cross
//! processes.
//!
//! Run: `cargo bench --bench cluster` (add `-- --quick` for a short run).
//!
//! 1. **Scaling**: diamond and digits (one held-out image per request) over HTTP, at 1,
//!    16 and 64 keep-alive connections spread evenly over the processes (as a load
//!    balancer would), for 1, 2 and 4 processes, alternating in rounds. Throughput,
//!    latency, and the CPU of every `weir` process per request. On a 2-core machine more processes cannot add
//!    cores: the figure shows what the exchange costs, not what more machines give.
//! 2. **The exchange**: the same load, all sent to process 0 of the 2-process cluster
//!    (its rows go round-robin over both processes' workers, so half cross and come
//!    back), against the 1-process server: the CPU a crossing adds per row, from the
//!    processes' CPU and `weir_rows_from_peers_total`.
//!
//! Prints a markdown table; BENCHMARKS.md ("A graph over a cluster") adds what eight
//! machines would give from these figures.
#![allow(clippy::unwrap_used)] // a test or benchmark fails loudly on the first surprise

// The tests' helpers, of which the benchmark uses a part.
#[allow(dead_code)]
#[path = "../tests/common/cluster.rs"]
mod cluster;
#[path = "support/load.rs"]
mod load;
#[allow(dead_code)]
#[path = "../tests/common/process.rs"]
mod process;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use load::Load;
use serde_json::json;
use weir::bench::{median, percentile, range};
use weir::datasets::{digits, Split};

/// A running server: its processes' pids and HTTP addresses.
struct Served {
    label: String,
    pids: Vec<u32>,
    addrs: Vec<SocketAddr>,
    _members: Vec<cluster::Member>,
    _single: Option<process::Running>,
}

impl Served {
    fn start(dir: &std::path::Path, graphs: &[&str], processes: usize) -> Served {
        let label = format!("{processes} process{}", if processes == 1 { "" } else { "es" });
        if processes == 1 {
            let (child, addr) = process::serve_http(std::path::Path::new(env!("CARGO_BIN_EXE_weir")), graphs);
            return Served {
                label,
                pids: vec![child.id()],
                addrs: vec![addr.parse().unwrap()],
                _members: vec![],
                _single: Some(child),
            };
        }
        let members = cluster::cluster(dir, graphs, processes, 1);
        Served {
            label,
            pids: members.iter().map(|m| m.child.id()).collect(),
            addrs: members.iter().map(|m| m.addr.parse().unwrap()).collect(),
            _members: members,
            _single: None,
        }
    }

    /// CPU time of every process so far.
    fn cpu(&self) -> Duration {
        self.pids.iter().map(|&pid| pid_cpu(pid)).sum()
    }

    /// `weir_rows_from_peers_total{graph}` summed over the processes.
    fn rows_from_peers(&self, graph: &str) -> f64 {
        let needle = "weir_rows_from_peers_total{process=";
        self.addrs
            .iter()
            .map(|a| {
                let text = get(*a, "/metrics");
                text.lines()
                    .filter(|l| l.starts_with(needle) && l.contains(&format!("graph=\"{graph}\"")))
                    .filter_map(|l| l.rsplit_once(' ').and_then(|(_, v)| v.parse::<f64>().ok()))
                    .sum::<f64>()
            })
            .sum()
    }
}

/// User and system CPU of process `pid` (ticks of 10 ms).
fn pid_cpu(pid: u32) -> Duration {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    let Some((_, rest)) = stat.rsplit_once(')') else { return Duration::ZERO };
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let ticks = |i: usize| fields.get(i).and_then(|f| f.parse::<u64>().ok()).unwrap_or(0);
    Duration::from_millis(10 * (ticks(11) + ticks(12)))
}

fn get(addr: SocketAddr, path: &str) -> String {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(addr).unwrap();
    write!(s, "GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n").unwrap();
    let mut text = String::new();
    s.read_to_string(&mut text).unwrap();
    text
}

/// `conns` connections spread evenly over `addrs`, for `duration`; with the servers' CPU.
fn spread_load(
    client: &tokio::runtime::Runtime,
    served: &Served,
    addrs: &[SocketAddr],
    path: &'static str,
    bodies: &Arc<Vec<Bytes>>,
    conns: usize,
    duration: Duration,
) -> (Load, Duration) {
    let cpu = served.cpu();
    let loads: Vec<Load> = client.block_on(async {
        let tasks: Vec<_> = addrs
            .iter()
            .enumerate()
            .map(|(i, &addr)| {
                let bodies = Arc::clone(bodies);
                let n = conns / addrs.len() + usize::from(i < conns % addrs.len());
                tokio::spawn(async move { load::load(addr, path, &bodies, n, duration).await })
            })
            .collect();
        let mut out = Vec::new();
        for t in tasks {
            out.push(t.await.unwrap());
        }
        out
    });
    let server_cpu = served.cpu().saturating_sub(cpu);
    let mut merged = Load::default();
    for l in loads {
        let elapsed = merged.elapsed.max(l.elapsed);
        merged.add(l);
        merged.elapsed = elapsed;
    }
    (merged, server_cpu)
}

fn main() {
    let args = weir::bench::BenchArgs::start();
    let client = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let graphs = ["graphs/diamond.yaml", "graphs/digits.yaml"];
    let servers: Vec<Served> = [1, 2, 4].iter().map(|&p| Served::start(dir.path(), &graphs, p)).collect();
    let test = digits(Split::Test).unwrap();
    let experiments: [(&str, &'static str, Arc<Vec<Bytes>>); 2] = [
        ("diamond", "/graphs/diamond", Arc::new(vec![Bytes::from_static(br#"{"a":1,"b":2,"c":3}"#)])),
        (
            "digits",
            "/graphs/digits",
            Arc::new(test.iter().take(64).map(|d| Bytes::from(json!({"pixels": d.pixels}).to_string())).collect()),
        ),
    ];
    let (rounds, duration) = if args.quick { (2, Duration::from_millis(500)) } else { (3, Duration::from_secs(2)) };
    for ((name, path, bodies), conns) in experiments.iter().flat_map(|e| [1, 16, 64].map(move |c| (e, c))) {
        if !args.runs(name) {
            continue;
        }
        // Warm every process of every server.
        for s in &servers {
            spread_load(&client, s, &s.addrs, path, bodies, conns, Duration::from_millis(300));
        }
        let mut per_round: Vec<Vec<f64>> = Vec::new();
        let mut totals: Vec<(Load, Duration)> = servers.iter().map(|_| (Load::default(), Duration::ZERO)).collect();
        for round in 0..rounds {
            let mut rates = vec![0.0; servers.len()];
            for i in 0..servers.len() {
                let k = (round + i) % servers.len();
                let (l, cpu) = spread_load(&client, &servers[k], &servers[k].addrs, path, bodies, conns, duration);
                rates[k] = l.rate();
                let elapsed = totals[k].0.elapsed + l.elapsed;
                totals[k].0.add(l);
                totals[k].0.elapsed = elapsed;
                totals[k].1 += cpu;
            }
            per_round.push(rates);
        }
        for (k, s) in servers.iter().enumerate() {
            let ratios: Vec<f64> = per_round.iter().map(|r| r[k] / r[0]).collect();
            let (lo, hi) = range(&ratios);
            let (load, cpu) = &mut totals[k];
            let per_request = cpu.as_secs_f64() * 1e6 / load.requests.max(1) as f64;
            load.latencies.sort();
            let p50 = percentile(&load.latencies, 0.5).as_secs_f64() * 1e3;
            let p99 = percentile(&load.latencies, 0.99).as_secs_f64() * 1e3;
            let baseline = if k == 0 { " (baseline)" } else { "" };
            println!(
                "| cluster | {name}, {}, 1 worker each, {conns} connections spread over them{baseline} | {:.0} req/s; p50 {p50:.3} ms, p99 {p99:.3} ms; \
                 weir CPU {per_request:.1} µs/request | {:.2} (range {lo:.2} to {hi:.2}) |",
                s.label,
                load.rate(),
                median(ratios)
            );
        }
    }

    // The exchange: everything to process 0 of 2 (half the rows cross), against 1 process.
    if args.runs("exchange") {
        let (name, path, bodies) = &experiments[0];
        let conns = 16;
        let (one, two) = (&servers[0], &servers[1]);
        let crossed_before = two.rows_from_peers(name);
        let mut cpu = [(0usize, Duration::ZERO); 2];
        for _ in 0..rounds {
            for (i, s) in [one, two].into_iter().enumerate() {
                let (l, c) = spread_load(&client, s, &s.addrs[..1], path, bodies, conns, duration);
                cpu[i].0 += l.requests;
                cpu[i].1 += c;
            }
        }
        let crossed = two.rows_from_peers(name) - crossed_before;
        let per = |(n, c): (usize, Duration)| c.as_secs_f64() * 1e6 / n.max(1) as f64;
        let (a, b) = (per(cpu[0]), per(cpu[1]));
        let share = crossed / cpu[1].0.max(1) as f64;
        println!(
            "| cluster exchange | {name}, {conns} connections to process 0 of 2 ({:.0}% of rows crossed and came back) vs 1 process | \
             {b:.1} vs {a:.1} µs of weir CPU/request | {:.1} µs more per crossing row |",
            share * 100.0,
            (b - a) / share.max(1e-9)
        );
    }
}
