//! The batching policy under load: the adaptive policy (the default, no `max_wait_ms`)
//! against every fixed `max_wait_ms` of 0, 1, 2 and 5, at 1, 4, 16, 64 and 256
//! connections, for three bundled graphs: `digits.yaml` (two small dense models),
//! `diamond.yaml` (two 1x1 models: a batch costs only its overhead) and `embed.yaml`
//! (MiniLM: a forward pass of milliseconds).
//!
//! Per graph, the five servers run side by side (each `weir serve`'s router on its own
//! runtime, as `weir serve` starts it by default, one timely worker, the plan as bundled
//! but for `max_wait_ms`), and at each connection count they take turns in rounds (`benches/support/load.rs`), so
//! the machine's drift hits them alike. For each point the table gives the adaptive
//! policy's throughput and p99 against the best fixed setting at that point (the one with
//! the highest throughput in the even rounds), compared in the odd rounds: the medians
//! of the odd rounds' ratios (adaptive over that setting, round by round, as every
//! other bench here), with the floor: throughput ≥ 0.9 of it and p99 ≤ 1.2 × its
//! p99. A sixth server, adaptive again, is the control: adaptive over it, by the same
//! statistic on the same rounds, shows how far two identical servers land apart in the
//! run (it is in the JSON and the plot as `adaptive (control)`). The JSON and the plot
//! pool every round. Every policy's figures also go to
//! `target/batching-sweep.json`, from which `scripts/plot-batching` draws
//! `batching-sweep.png`.
//!
//! Run: `cargo bench --bench batching` (about 25 minutes; `-- --quick` for a smoke run,
//! a graph's name to run one). `embed` needs `scripts/fetch-minilm`.
#![allow(clippy::unwrap_used)] // a test or benchmark fails loudly on the first surprise

#[path = "support/load.rs"]
mod load;
#[path = "support/texts.rs"]
mod texts;

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use load::{alternate_rounds, policy_label as label, pooled, sanity, with_policy, Load, Server};
use serde_json::{json, Value as JsonValue};
use weir::bench::median;
use weir::datasets::{digits, Split};
use weir_engine::load_plan;

/// The servers' policies, as `max_wait_ms` (`None`: adaptive): adaptive, the fixed
/// settings it is compared with, and the control (see [`CONTROL`]).
const POLICIES: [Option<u64>; 6] = [None, Some(0), Some(1), Some(2), Some(5), None];

/// The control server's index: adaptive again, so that adaptive over it (the same
/// statistic as the verdict's, on the same rounds) shows how far two identical servers
/// land apart in this run. A verdict within that distance of the floor is the noise's.
const CONTROL: usize = POLICIES.len() - 1;

const CONNECTIONS: [usize; 5] = [1, 4, 16, 64, 256];

/// One graph's sweep: its figures as JSON.
fn sweep(
    client: &tokio::runtime::Runtime,
    graph: &str,
    bodies: Vec<Bytes>,
    check: fn(&JsonValue),
    (rounds, duration): (usize, Duration),
) -> JsonValue {
    let file = weir::datasets::graphs_dir().join(format!("{graph}.yaml"));
    let path: &'static str = Box::leak(format!("/graphs/{graph}").into_boxed_str());
    let servers: Vec<Server> =
        POLICIES.iter().map(|&p| Server::weir(with_policy(load_plan(&file).expect("bundled graph"), p))).collect();
    let refs: Vec<&Server> = servers.iter().collect();
    let bodies = Arc::new(bodies);
    sanity(client, &refs, path, &bodies[0], check);
    let mut points = Vec::new();
    for conns in CONNECTIONS {
        let (by_round, batches) = alternate_rounds(client, &refs, path, &bodies, conns, rounds, duration);
        let figures_of = |rounds: Vec<Vec<Load>>| -> Vec<(f64, f64)> {
            pooled(rounds.into_iter())
                .into_iter()
                .map(|mut l| (l.rate(), l.percentile(0.99).as_secs_f64() * 1e3))
                .collect()
        };
        let half = |parity: usize| by_round.iter().skip(parity).step_by(2).cloned().collect::<Vec<_>>();
        // The best fixed setting is chosen on the even rounds and compared with on the odd
        // ones: chosen and compared on the same rounds, the largest of four noisy figures
        // would sit above its setting's true rate, and an adaptive policy that runs the
        // same code as that setting would fall short of it by the noise alone.
        let chosen = figures_of(half(0));
        let best = (1..CONTROL).max_by(|&a, &b| chosen[a].0.total_cmp(&chosen[b].0)).unwrap_or(1);
        // Round by round, adaptive against the chosen setting; the medians decide.
        let (mut ratios, mut p99_ratios) = (Vec::new(), Vec::new());
        let (mut control_ratios, mut control_p99_ratios) = (Vec::new(), Vec::new());
        for round in half(1) {
            let figures = figures_of(vec![round]);
            ratios.push(figures[0].0 / figures[best].0);
            p99_ratios.push(figures[0].1 / figures[best].1);
            control_ratios.push(figures[0].0 / figures[CONTROL].0);
            control_p99_ratios.push(figures[0].1 / figures[CONTROL].1);
        }
        let (ratio, p99_ratio) = (median(ratios), median(p99_ratios));
        let (control, control_p99) = (median(control_ratios), median(control_p99_ratios));
        let compared = figures_of(half(1));
        let figures = figures_of(by_round);
        let (rate, p99) = compared[0];
        let adaptive_batches = &batches[0];
        let (best_rate, best_p99) = compared[best];
        let met = ratio >= 0.9 && p99_ratio <= 1.2;
        println!(
            "| {graph}, {conns} conn | adaptive: {rate:.0} req/s, p99 {p99:.3} ms, mean batch {adaptive_batches} | best fixed: \
             {} ({best_rate:.0} req/s, p99 {best_p99:.3} ms) | {ratio:.2} of its throughput, {p99_ratio:.2}x its p99 \
             (medians of the odd rounds' ratios): {}; control (adaptive over a second adaptive server, likewise): \
             {control:.2}, {control_p99:.2}x |",
            label(POLICIES[best]),
            if met { "met" } else { "NOT met" }
        );
        let policies: Vec<JsonValue> = POLICIES
            .iter()
            .zip(figures.iter().zip(&batches))
            .enumerate()
            .map(|(k, (p, ((rate, p99), batches)))| {
                let policy = if k == CONTROL { "adaptive (control)".to_string() } else { label(*p) };
                json!({"policy": policy, "rate": rate, "p99_ms": p99, "batches": batches})
            })
            .collect();
        points.push(json!({
            "connections": conns, "policies": policies, "ratio": ratio, "p99_ratio": p99_ratio, "met": met,
            "control": {"ratio": control, "p99_ratio": control_p99},
        }));
    }
    json!({"graph": graph, "points": points})
}

/// The allocator the `weir` binary uses.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() {
    let args = weir::bench::BenchArgs::start();
    let client = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("client runtime");
    let json_body = |v: JsonValue| Bytes::from(serde_json::to_vec(&v).expect("JSON"));
    // Sixteen rounds: the median of eight odd rounds' ratios. With eight rounds (four
    // odd), adaptive over the control, two identical servers, ranged 0.82-1.48 in
    // throughput and up to 1.45x in p99 across one evening's sweeps.
    let short = (if args.quick { 2 } else { 16 }, Duration::from_millis(if args.quick { 300 } else { 1000 }));
    let mut graphs = Vec::new();
    if args.runs("digits") {
        let set = digits(Split::Test).expect("digits");
        let bodies = set.iter().map(|d| json_body(json!({ "pixels": d.pixels }))).collect();
        graphs.push(sweep(&client, "digits", bodies, |v| assert!(v["label"].is_u64(), "{v}"), short));
    }
    if args.runs("diamond") {
        let bodies = (0..64).map(|i| json_body(json!({"a": i, "b": 2, "c": 3}))).collect();
        graphs.push(sweep(&client, "diamond", bodies, |v| assert!(v["y"].is_f64(), "{v}"), short));
    }
    if args.runs("embed") {
        let bodies = texts::sentences(256).into_iter().map(|t| json_body(json!({ "text": t }))).collect();
        let long = (if args.quick { 2 } else { 4 }, Duration::from_millis(if args.quick { 1000 } else { 3000 }));
        graphs.push(sweep(&client, "embed", bodies, |v| assert!(v["embedding"].is_array(), "{v}"), long));
    }
    let out = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("target/batching-sweep.json");
    std::fs::write(&out, serde_json::to_vec_pretty(&json!({ "graphs": graphs })).expect("JSON")).expect("write");
    eprintln!("figures: {}", out.display());
}
