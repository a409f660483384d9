//! Feature lookups: what a table and a `lookup` node cost, at 10^4, 10^6 and 10^7 keys.
//!
//! Run: `cargo bench --bench tables` (add `-- --quick` for 10^4 and 10^6 keys only).
//! Prints markdown tables; every figure is paired with a baseline measured in the same
//! run, because these machines are shared and noisy. One worker, as `weir serve` runs.
//!
//! The graph: `{account: i64, amount: f32}` → `lookup` in a table of accounts (values
//! `mean`, `std`, `count`: f32, `country`: str; missing keys get defaults) → `concat`
//! `[amount, mean, std]`. The baseline is the same graph without the table: `concat`
//! `[amount, amount, amount]` (same output, same map). A third graph declares the table
//! and never reads it: what the event clock of a graph with tables costs by itself.
//!
//! Per table size N:
//! 1. **fill**: N keys upserted in batches of 8192, until the table counts N keys:
//!    upserts/s, and the growth of resident memory per key (in a fresh process, after
//!    2 s idle: what the table holds, allocator overhead included); then again after
//!    handing the pages mimalloc holds free back to the system (`mi_collect`, as a
//!    reload does): the fill's batches, freed, stay resident until the allocator's next
//!    event on their thread, which an idle process does not have. Then the same for
//!    the product: the `weir` binary serving the lookup graph (`weir serve`, which hands
//!    freed pages back once it goes idle), filled with the same keys over HTTP, 8192 a
//!    request: resident memory added per key after 2 s idle. `--served N` runs that
//!    alone.
//! 2. **throughput**: 200k rows with uniformly random keys in 256-row submissions
//!    (4096 rows in flight), through the three graphs in turn, 5 rounds: the median
//!    rows/s with the lookup, and the medians of the per-round ratios to the baseline.
//! 3. **latency**: 2000 lone rows, one at a time, in blocks of 100 alternating between
//!    the baseline and the lookup graph: p50/p99 of each; the difference of the p50s is
//!    the latency a lookup adds per row.
//! 4. **updates while serving**: one thread upserts random keys in batches of 1024 as
//!    fast as the graph takes them while the rows of experiment 2 go through once:
//!    updates/s applied, and rows/s against experiment 2's median.
#![allow(clippy::unwrap_used)] // a test or benchmark fails loudly on the first surprise

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use weir::bench::percentile;
use weir_engine::{yaml, Engine, EngineConfig, GraphHandle, Plan};
use weir_operators::{Column, FieldType, Value};

#[path = "support/drive.rs"]
mod drive;
// The tests' helpers, of which the benchmark uses a part.
#[allow(dead_code)]
#[path = "../tests/common/process.rs"]
mod process;
use drive::{drive, submissions};

const TABLE: &str = "tables:\n  accounts:\n    key: account\n    key_type: i64\n    values:\n      mean: f32\n      std: f32\n      count: f32\n      country: str\n";

fn plan(text: &str) -> Plan {
    Plan::new(&yaml::parse(text, "bench.yaml", ".".into()).expect("parses")).expect("plans")
}

const INPUTS: &str = "name: g\ninputs:\n  account: i64\n  amount: f32\n";

/// The lookup graph's YAML.
fn lookup_text() -> String {
    format!(
        "{INPUTS}{TABLE}nodes:\n  features:\n    kind: lookup\n    table: accounts\n    key: input.account\n    missing: default\n    defaults: {{mean: 0.0, std: 1.0, count: 0.0, country: unknown}}\n  vector:\n    kind: map\n    op: concat\n    inputs: [input.amount, features.mean, features.std]\noutputs:\n  vector: vector.y\n"
    )
}

/// The lookup graph, the baseline without a table, and the baseline with an unread table.
fn graphs() -> [Plan; 3] {
    let lookup = lookup_text();
    let baseline = format!(
        "{INPUTS}nodes:\n  vector:\n    kind: map\n    op: concat\n    inputs: [input.amount, input.amount, input.amount]\noutputs:\n  vector: vector.y\n"
    );
    let clock_only = baseline.replace("nodes:\n", &format!("{TABLE}nodes:\n"));
    [plan(&lookup), plan(&baseline), plan(&clock_only)]
}

fn start(plan: Plan) -> (Engine, GraphHandle) {
    let engine = Engine::start(vec![plan], EngineConfig { workers: 1, ..EngineConfig::default() }).expect("engine");
    let g = engine.graphs()[0].clone();
    (engine, g)
}

/// A fast deterministic generator (splitmix64).
struct Keys(u64);

impl Keys {
    fn next(&mut self, n: u64) -> i64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        ((z ^ (z >> 31)) % n) as i64
    }
}

const COUNTRIES: [&str; 4] = ["PT", "ES", "FR", "DE"];

/// Account `key`'s values: mean, std, count and country.
fn account_fields(key: i64) -> (f32, f32, f32, &'static str) {
    let k = key as f32;
    (k * 0.5, 1.0 + k * 0.001, k, COUNTRIES[(key % 4) as usize])
}

fn account(key: i64) -> Option<Vec<Value>> {
    let (mean, std, count, country) = account_fields(key);
    Some(vec![Value::F32(mean), Value::F32(std), Value::F32(count), Value::Str(country.into())])
}

/// Upserts keys `0..n` in batches of 8192; returns once the table holds them all.
fn fill(g: &GraphHandle, n: u64) {
    let mut key = 0;
    while key < n {
        let end = (key + 8192).min(n);
        let batch: Vec<_> = (key..end).map(|k| (Value::I64(k as i64), account(k as i64))).collect();
        g.upsert("accounts", &batch).expect("upserts");
        key = end;
    }
    while g.table_sizes()[0].1 < n as i64 {
        std::thread::sleep(Duration::from_millis(5));
    }
}

fn rows(n_keys: u64, count: usize, seed: u64) -> Vec<Vec<Value>> {
    let mut keys = Keys(seed);
    (0..count).map(|i| vec![Value::I64(keys.next(n_keys)), Value::F32(i as f32)]).collect()
}

fn types() -> [FieldType; 2] {
    [FieldType::scalar(weir_operators::DType::I64), FieldType::scalar(weir_operators::DType::F32)]
}

/// Rows/s of `rows` through `g`, 256 per submission, 4096 in flight.
fn throughput(g: &GraphHandle, rows: &[Vec<Value>]) -> f64 {
    let batches: Vec<Vec<Column>> = submissions(rows, &types(), 256);
    let t = Instant::now();
    drive(g, batches, 4096);
    rows.len() as f64 / t.elapsed().as_secs_f64()
}

fn mib(bytes: u64) -> f64 {
    bytes as f64 / (1 << 20) as f64
}

/// `--memory N`: in a fresh process (so no earlier experiment's freed memory is reused),
/// fills a table of N keys; prints upserts/s and resident bytes added per key, after 2 s
/// idle and then after handing freed pages back.
fn memory(n: u64) {
    let [lookup_plan, _, _] = graphs();
    let (engine, g) = start(lookup_plan);
    std::thread::sleep(Duration::from_millis(200));
    let before = weir::rss_bytes().expect("/proc/self/status");
    let t = Instant::now();
    fill(&g, n);
    let rate = n as f64 / t.elapsed().as_secs_f64();
    // Idle, as a server between bursts, then read.
    std::thread::sleep(Duration::from_secs(2));
    let after = weir::rss_bytes().expect("/proc/self/status");
    weir::cli::allocator::release_freed();
    let collected = weir::rss_bytes().expect("/proc/self/status");
    println!(
        "{rate} {} {}",
        after.saturating_sub(before) as f64 / n as f64,
        collected.saturating_sub(before) as f64 / n as f64
    );
    drop(g);
    engine.shutdown();
}

/// The `weir` binary serving the lookup graph (one worker, its default), filled with
/// keys `0..n` over HTTP (`POST /graphs/g/tables/accounts`, 8192 keys a request, the
/// values [`account_fields`] gives) until `/metrics` counts them all: resident bytes added per
/// key after 2 s idle. The keys arrive as a server's do, on its HTTP threads.
fn served_memory(n: u64) -> f64 {
    use std::fmt::Write;
    let dir = tempfile::tempdir().expect("a temporary directory");
    let graph = dir.path().join("g.yaml");
    std::fs::write(&graph, lookup_text()).expect("the graph file");
    let weir = std::path::Path::new(env!("CARGO_BIN_EXE_weir"));
    let (child, addr) = process::serve_http(weir, &[graph.to_str().expect("a UTF-8 path")]);
    std::thread::sleep(Duration::from_millis(200));
    let before = weir::rss_bytes_of(child.id()).expect("/proc/PID/status");
    let mut key = 0;
    while key < n {
        let end = (key + 8192).min(n);
        let mut body = String::from("[");
        for k in key..end {
            let (mean, std, count, country) = account_fields(k as i64);
            let comma = if k == key { "" } else { "," };
            let _ = write!(
                body,
                r#"{comma}{{"key":{k},"values":{{"mean":{mean},"std":{std},"count":{count},"country":"{country}"}}}}"#
            );
        }
        body.push(']');
        let (status, answer) = process::http_post(&addr, "/graphs/g/tables/accounts", &body);
        assert_eq!(status, 202, "upserting keys {key}..{end}: {answer}");
        key = end;
    }
    let counted = format!("weir_table_keys{{graph=\"g\",table=\"accounts\"}} {n}\n");
    let t = Instant::now();
    while !process::http_get(&addr, "/metrics").1.contains(&counted) {
        assert!(t.elapsed() < Duration::from_secs(120), "the served table counts {n} keys");
        std::thread::sleep(Duration::from_millis(20));
    }
    std::thread::sleep(Duration::from_secs(2));
    let after = weir::rss_bytes_of(child.id()).expect("/proc/PID/status");
    after.saturating_sub(before) as f64 / n as f64
}

/// Runs [`memory`] in a child process.
fn memory_in_child(n: u64) -> (f64, f64, f64) {
    let exe = std::env::current_exe().expect("this bench");
    let out = std::process::Command::new(exe).args(["--memory", &n.to_string()]).output().expect("runs");
    let text = String::from_utf8_lossy(&out.stdout);
    let mut it = text.split_whitespace().map(|x| x.parse::<f64>().expect("a number"));
    (it.next().expect("rate"), it.next().expect("bytes per key"), it.next().expect("bytes per key, collected"))
}

/// The allocator the `weir` binary uses.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() {
    // As `weir` does (the `--memory` child inherits it).
    weir::no_transparent_huge_pages();
    let args: Vec<String> = std::env::args().collect();
    if let Some(i) = args.iter().position(|a| a == "--memory") {
        memory(args[i + 1].parse().expect("--memory N"));
        return;
    }
    if let Some(i) = args.iter().position(|a| a == "--served") {
        println!("{}", served_memory(args[i + 1].parse().expect("--served N")));
        return;
    }
    let quick = args.iter().any(|a| a == "--quick");
    let sizes: &[u64] = if quick { &[10_000, 1_000_000] } else { &[10_000, 1_000_000, 10_000_000] };
    let n_rows = if quick { 50_000 } else { 200_000 };
    let lone = if quick { 500 } else { 2000 };
    let rounds = if quick { 3 } else { 5 };
    let [lookup_plan, baseline_plan, clock_plan] = graphs();
    let (_base_engine, base) = start(baseline_plan);
    let (_clock_engine, clock) = start(clock_plan);

    println!("| keys | fill: upserts/s | memory per key: resident after 2 s idle (after handing freed pages back) | memory per key, `weir serve` filled over HTTP: after 2 s idle | lookups/s (rows/s through the lookup graph) | vs baseline graph | clock only vs baseline | lone row p50 / p99: lookup | baseline | added per row (p50) | updates/s while serving | rows/s while updating vs without |");
    println!("|---|---|---|---|---|---|---|---|---|---|---|---|");
    for &n in sizes {
        let (fill_rate, per_key, collected) = memory_in_child(n);
        let served = served_memory(n);
        let (engine, g) = start(lookup_plan.clone());
        fill(&g, n);
        let rows = rows(n, n_rows, 7);
        for h in [&base, &clock, &g] {
            let _ = throughput(h, &rows[..n_rows / 10]); // warm-up
        }
        // Rounds interleave the three graphs; each ratio is of the same round.
        let mut rates = Vec::new();
        let (mut vs_base, mut clock_vs_base) = (Vec::new(), Vec::new());
        for _ in 0..rounds {
            let b = throughput(&base, &rows);
            let c = throughput(&clock, &rows);
            let l = throughput(&g, &rows);
            rates.push(l);
            vs_base.push(l / b);
            clock_vs_base.push(c / b);
        }
        // Lone rows, in blocks of 100 alternating between the graphs (a block keeps
        // its engine's worker awake, as steady traffic does).
        let (mut with, mut without) = (Vec::new(), Vec::new());
        for block in rows[..lone].chunks(100) {
            for (h, times) in [(&base, &mut without), (&g, &mut with)] {
                for r in block {
                    let t = Instant::now();
                    h.call(r.clone()).expect("accepted").expect("answered");
                    times.push(t.elapsed());
                }
            }
        }
        with.sort();
        without.sort();
        // Updates while serving, against the rounds' lookup rate.
        let stop = Arc::new(AtomicBool::new(false));
        let applied = Arc::new(AtomicU64::new(0));
        let writer = {
            let (g, stop, applied) = (g.clone(), Arc::clone(&stop), Arc::clone(&applied));
            std::thread::spawn(move || {
                let mut keys = Keys(99);
                let t = Instant::now();
                while !stop.load(Ordering::Acquire) {
                    let batch: Vec<_> = (0..1024)
                        .map(|_| {
                            let k = keys.next(n);
                            (Value::I64(k), account(k + 1))
                        })
                        .collect();
                    g.upsert("accounts", &batch).expect("upserts");
                    applied.fetch_add(1024, Ordering::Relaxed);
                }
                applied.load(Ordering::Relaxed) as f64 / t.elapsed().as_secs_f64()
            })
        };
        std::thread::sleep(Duration::from_millis(200));
        let busy_rate = throughput(&g, &rows);
        stop.store(true, Ordering::Release);
        let update_rate = writer.join().expect("writer");
        // Compaction keeps one row per key: re-upserting keys does not grow the table.
        std::thread::sleep(Duration::from_millis(200));
        assert_eq!(g.table_sizes()[0].1, n as i64, "the table still counts {n} keys");
        let rate = median(&mut rates);
        let us = |d: Duration| d.as_secs_f64() * 1e6;
        println!(
            "| 10^{} | {:.0} | {:.0} B (+{:.0} MiB) ({:.0} B) | {:.0} B | {:.0} | {:.2} | {:.2} | {:.1} / {:.1} µs | {:.1} / {:.1} µs | {:.1} µs | {:.0} | {:.0} ({:.2}) |",
            (n as f64).log10().round(),
            fill_rate,
            per_key,
            mib((per_key * n as f64) as u64),
            collected,
            served,
            rate,
            median(&mut vs_base),
            median(&mut clock_vs_base),
            us(percentile(&with, 0.5)),
            us(percentile(&with, 0.99)),
            us(percentile(&without, 0.5)),
            us(percentile(&without, 0.99)),
            us(percentile(&with, 0.5)) - us(percentile(&without, 0.5)),
            update_rate,
            busy_rate,
            busy_rate / rate,
        );
        drop(g);
        engine.shutdown();
    }
}

fn median(xs: &mut [f64]) -> f64 {
    xs.sort_by(f64::total_cmp);
    xs[xs.len() / 2]
}
