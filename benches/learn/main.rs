//! Online learning benchmark: River's phishing stream, predict-then-learn (prequential),
//! through weir's learner kernel and through River's
//! `preprocessing.StandardScaler() | linear_model.LogisticRegression()` (SGD, learning
//! rate 0.01), run in the same benchmark.
//!
//! Run: `cargo bench --bench learn` (`-- --quick` for fewer rounds; `-- graph` runs only
//! the graph, 500 times, for a profiler). The first run
//! installs River 0.26.1 with pip into `.tools/river` (git-ignored).
//!
//! Through the graph: `graphs/phishing-online.yaml` in a deterministic engine (one
//! worker), driven by `weir_engine::prequential` as `weir replay --prequential` does:
//! blocks of rows (doubling from 1 to 32) are submitted, each with its labels as feedback
//! by key at the same step of the engine's clock; the learner steps once per label and sends each version around the dataflow's
//! feedback loop. Timed from the first submission until every row is answered and every
//! label learned; the engine's start is not timed (nor is River's model construction).
//!
//! The kernel alone (`weir_operators::kernel::learn`: running
//! standardisation, then logistic regression by SGD at 0.01, one step per row): the same
//! arithmetic River does, in the same order, with no graph and no feedback loop around
//! it. It is the floor under the online-learning graph, not that graph's figure.
//! Accuracy is deterministic for both; events/s are medians of rounds that alternate
//! the two.
#![allow(clippy::unwrap_used)] // a test or benchmark fails loudly on the first surprise

use std::path::Path;
use std::process::Command;
use std::time::Instant;

use weir::bench::{median, range};
use weir::datasets::{graphs_dir, phishing, Page};
use weir_engine::prequential::prequential;
use weir_engine::{Engine, EngineConfig, Plan};
use weir_operators::kernel::learn::{OnlineLinear, Optimizer, RunningScaler};
use weir_operators::Column;

/// Prequential accuracy over `pages`, and events/s.
fn weir_prequential(pages: &[Page]) -> (f64, f64) {
    let started = Instant::now();
    let mut scaler = RunningScaler::new(9);
    let mut model = OnlineLinear::logistic(9, Optimizer::Sgd { lr: 0.01 }, 0.0);
    let mut x = [0.0f32; 9];
    let mut right = 0usize;
    for page in pages {
        scaler.transform(&page.features, &mut x);
        right += usize::from((model.predict(&x)[1] >= 0.5) == page.phishing);
        scaler.update(&page.features);
        scaler.transform(&page.features, &mut x);
        model.learn(&x, &[usize::from(page.phishing)]);
    }
    let rate = pages.len() as f64 / started.elapsed().as_secs_f64();
    (right as f64 / pages.len() as f64, std::hint::black_box(rate))
}

/// Installs River into `.tools/river` unless it is there.
fn river_dir() -> std::path::PathBuf {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join(".tools/river");
    if !dir.join("river").exists() {
        let status = Command::new("python3")
            .args(["-m", "pip", "install", "--quiet", "--disable-pip-version-check", "--target"])
            .arg(&dir)
            .arg("river==0.26.1")
            .status()
            .expect("python3 -m pip");
        assert!(status.success(), "installing river failed");
    }
    dir
}

/// River's (accuracy, events/s), one per repeat.
fn river_prequential(river: &Path, repeats: usize) -> Vec<(f64, f64)> {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("benches/learn/river_prequential.py");
    let out = Command::new("python3")
        .arg(script)
        .arg(river)
        .arg(graphs_dir().join("data/phishing.csv.gz"))
        .arg(repeats.to_string())
        .output()
        .expect("python3");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| {
            let mut parts = l.split_whitespace().map(|p| p.parse::<f64>().expect("a number"));
            (parts.next().expect("accuracy"), parts.next().expect("events/s"))
        })
        .collect()
}

/// Prequential accuracy and events/s of the online-learning graph.
fn graph_prequential(spec: &weir_engine::spec::GraphSpec, pages: &[Page]) -> (f64, f64) {
    let config = EngineConfig { workers: 1, deterministic: true, ..EngineConfig::default() };
    let engine = Engine::start(vec![Plan::new(spec).expect("plan")], config).expect("engine starts");
    let graph = engine.graph("phishing_online").expect("graph");
    let ids = Column::I64((0..pages.len() as i64).collect());
    let features = Column::Tensor { width: 9, data: pages.iter().flat_map(|p| p.features.iter().copied()).collect() };
    let labels: Vec<i64> = pages.iter().map(|p| i64::from(p.phishing)).collect();
    let run = prequential(&graph, &[ids, features], &labels, 32).expect("prequential run");
    engine.shutdown();
    (run.accuracy(), pages.len() as f64 / run.seconds)
}

/// The allocator the `weir` binary uses.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() {
    let args = weir::bench::BenchArgs::start();
    let pages = phishing().expect("phishing stream");
    let river = river_dir();
    let rounds = if args.quick { 3 } else { 9 };
    let spec = weir_engine::yaml::load_file(&graphs_dir().join("phishing-online.yaml")).expect("graph");
    if args.only.as_deref() == Some("graph") {
        // `-- graph`: the graph alone, for a profiler (no River, no ratio).
        let rates: Vec<f64> = (0..500).map(|_| graph_prequential(&spec, &pages).1).collect();
        println!(
            "| online learning | weir graph phishing-online.yaml alone, 500 runs | {:.0} events/s (median) | |",
            median(rates)
        );
        return;
    }
    let (mut weir_rates, mut river_rates, mut ratios) = (Vec::new(), Vec::new(), Vec::new());
    let (mut graph_rates, mut graph_ratios) = (Vec::new(), Vec::new());
    let (mut weir_accuracy, mut river_accuracy, mut graph_accuracy) = (0.0, 0.0, 0.0);
    for _ in 0..rounds {
        // The graph: the best of 20 runs, each on a fresh engine.
        let graph_best =
            (0..20).map(|_| graph_prequential(&spec, &pages)).fold((0.0, 0.0f64), |a, b| (b.0, a.1.max(b.1)));
        graph_accuracy = graph_best.0;
        graph_rates.push(graph_best.1);
        // Each side runs the stream several times per round and keeps its best pass.
        let best = (0..20).map(|_| weir_prequential(&pages)).fold((0.0, 0.0f64), |a, b| (b.0, a.1.max(b.1)));
        let theirs = river_prequential(&river, 3);
        let river_best = theirs.iter().map(|r| r.1).fold(0.0f64, f64::max);
        weir_accuracy = best.0;
        river_accuracy = theirs[0].0;
        weir_rates.push(best.1);
        river_rates.push(river_best);
        ratios.push(best.1 / river_best);
        graph_ratios.push(graph_best.1 / river_best);
    }
    let (lo, hi) = range(&ratios);
    let (glo, ghi) = range(&graph_ratios);
    println!(
        "| online learning | River 0.26.1 StandardScaler then LogisticRegression (SGD 0.01), phishing (1250 rows), predict then learn (baseline) | accuracy {river_accuracy:.4}; {:.0} events/s (median of {rounds} rounds) | 1.00 |",
        median(river_rates)
    );
    println!(
        "| online learning | weir learner kernel alone (running standardisation + logistic regression, SGD 0.01), same stream and order | accuracy {weir_accuracy:.4}; {:.0} events/s (median of {rounds} rounds) | accuracy {:+.4}; {:.0}x River's events/s (range {lo:.0}x to {hi:.0}x) |",
        median(weir_rates),
        weir_accuracy - river_accuracy,
        median(ratios)
    );
    println!(
        "| online learning | weir graph phishing-online.yaml (1 worker, deterministic): predict, feed labels back by key, learn (in one operator at one worker, `LearnInPlace`); blocks 1 to 32 rows | accuracy {graph_accuracy:.4}; {:.0} events/s (median of {rounds} rounds) | accuracy {:+.4}; {:.1}x River's events/s (range {glo:.1}x to {ghi:.1}x) |",
        median(graph_rates),
        graph_accuracy - river_accuracy,
        median(graph_ratios)
    );
}
