//! Online learning benchmark: River's streams, predict-then-learn (prequential), through
//! weir's learner kernel, through the online-learning graph and through River's
//! `preprocessing.StandardScaler() | linear_model.LogisticRegression()` (SGD, learning
//! rate 0.01), run in the same benchmark. Binary streams: phishing (River's bundled
//! dataset, 1250 rows, `graphs/data/phishing.csv.gz`), then by default hyperplane (River's
//! `datasets.synth.Hyperplane`, seed 42, 10 features, 10,000 rows, written by River when
//! the bench starts, `river_stream.py`); `LEARN_STREAMS=hyperplane,sea,agrawal,sine,random_rbf,bananas`
//! picks River's streams to run after phishing (the first 10,000 events of each, seed 42).
//!
//! Run: `cargo bench --bench learn` (`-- --quick` for fewer rounds; `-- graph` runs only
//! the phishing graph, 500 times, for a profiler). The first run
//! installs River 0.26.1 with pip into `.tools/river` (git-ignored).
//!
//! Through the graph: `graphs/phishing-online.yaml` as bundled (learning at 0.02, chosen
//! on phishing), then the same graph at River's rate, 0.01, on phishing and (with 10
//! features) on hyperplane, in a deterministic engine (one worker), driven by
//! `weir_engine::prequential` as `weir replay --prequential` does:
//! blocks of 1024 rows (`weir replay --prequential`'s default) are
//! submitted, each with its labels as feedback
//! by key at the same step of the engine's clock; the learning node (`LearnInPlace` at
//! one worker) predicts a row, learns its label (one step per label), predicts the next,
//! so every row is predicted with the labels of every row before it, as River does.
//! Timed from the first submission until every row is answered and every label learned;
//! the engine's start is not timed (nor is River's model construction). Then the
//! bundled graph on phishing at 2 workers against 1, alternating: the same accuracy,
//! and what the second worker costs (the learning node runs on worker 0).
//!
//! The kernel alone (`weir_operators::kernel::learn`: running
//! standardisation, then logistic regression by SGD at 0.01, one step per row): the same
//! arithmetic River does, in the same order, with no graph and no feedback loop around
//! it. It is the floor under the online-learning graph, not that graph's figure.
//! Accuracy is deterministic for all three; events/s are medians of rounds that
//! alternate them.
#![allow(clippy::unwrap_used)] // a test or benchmark fails loudly on the first surprise

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

use weir::bench::{median, range};
use weir::datasets::{graphs_dir, read_numbers};
use weir_engine::prequential::prequential;
use weir_engine::spec::GraphSpec;
use weir_engine::{Engine, EngineConfig, Plan};
use weir_operators::kernel::learn::{OnlineLinear, Optimizer, RunningScaler};
use weir_operators::Column;

/// A labelled binary stream, in order, and the graph that learns it.
struct Stream {
    /// Its name in the tables.
    name: String,
    /// The gzipped CSV River reads (features, then the label, 1 or 0, last).
    csv: PathBuf,
    /// Numbers per row.
    width: usize,
    /// The features, row after row.
    features: Vec<f32>,
    /// The labels.
    labels: Vec<bool>,
    /// The online-learning graph for its rows.
    spec: GraphSpec,
    /// The graph, as the tables name it.
    graph: String,
}

impl Stream {
    /// Reads `csv` (a header, then numbers; the label last) and builds the graph of
    /// `phishing-online.yaml` for its width, learning at `lr` (`None`: the YAML's 0.02).
    fn load(name: &str, csv: PathBuf, lr: Option<&str>) -> Stream {
        let rows = read_numbers(&csv, 1, None).expect("the stream's CSV");
        let width = rows[0].len() - 1;
        let features: Vec<f32> = rows.iter().flat_map(|r| r[..width].iter().copied()).collect();
        let labels: Vec<bool> = rows.iter().map(|r| r[width] == 1.0).collect();
        let path = graphs_dir().join("phishing-online.yaml");
        let yaml = std::fs::read_to_string(&path).expect("phishing-online.yaml");
        let yaml = yaml.replace("features: f32[9]", &format!("features: f32[{width}]"));
        let yaml = yaml.replace("name: phishing_online", &format!("name: {name}_online"));
        assert!(yaml.contains("lr: 0.02"), "phishing-online.yaml no longer learns at 0.02");
        let graph = match lr {
            None => "phishing-online.yaml".to_string(),
            Some(lr) => format!("phishing-online.yaml with f32[{width}] features, lr {lr}"),
        };
        let yaml = yaml.replace("lr: 0.02", &format!("lr: {}", lr.unwrap_or("0.02")));
        let spec = weir_engine::yaml::parse(&yaml, &path.display().to_string(), graphs_dir()).expect("graph");
        Stream { name: name.to_string(), csv, width, features, labels, spec, graph }
    }

    fn rows(&self) -> usize {
        self.labels.len()
    }
}

/// Prequential accuracy of weir's learner kernel over `stream`, and events/s.
fn weir_prequential(stream: &Stream) -> (f64, f64) {
    let width = stream.width;
    let started = Instant::now();
    let mut scaler = RunningScaler::new(width);
    let mut model = OnlineLinear::logistic(width, Optimizer::Sgd { lr: 0.01 }, 0.0);
    let mut x = vec![0.0f32; width];
    let mut right = 0usize;
    for (features, &label) in stream.features.chunks_exact(width).zip(&stream.labels) {
        scaler.transform(features, &mut x);
        right += usize::from((model.predict(&x)[1] > 0.5) == label);
        scaler.update(features);
        scaler.transform(features, &mut x);
        model.learn(&x, &[usize::from(label)]);
    }
    let rate = stream.rows() as f64 / started.elapsed().as_secs_f64();
    (right as f64 / stream.rows() as f64, std::hint::black_box(rate))
}

/// Writes River's synthetic stream `name` (`rows` events, seed 42) to `out`.
fn river_stream(river: &Path, name: &str, rows: usize, out: &Path) {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("benches/learn/river_stream.py");
    let status = Command::new("python3")
        .arg(script)
        .arg(river)
        .args([name, &rows.to_string(), "42"])
        .arg(out)
        .status()
        .expect("python3");
    assert!(status.success(), "writing River's {name} stream failed");
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
fn river_prequential(river: &Path, stream: &Stream, repeats: usize) -> Vec<(f64, f64)> {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("benches/learn/river_prequential.py");
    let out = Command::new("python3")
        .arg(script)
        .arg(river)
        .arg(&stream.csv)
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

/// Prequential accuracy and events/s of the online-learning graph over `stream`.
fn graph_prequential(stream: &Stream, workers: usize) -> (f64, f64) {
    let config = EngineConfig { workers, deterministic: true, ..EngineConfig::default() };
    let engine = Engine::start(vec![Plan::new(&stream.spec).expect("plan")], config).expect("engine starts");
    let graph = engine.graph(&stream.spec.name).expect("graph");
    let ids = Column::I64((0..stream.rows() as i64).collect());
    let features = Column::Tensor { width: stream.width, data: stream.features.clone() };
    let labels: Vec<i64> = stream.labels.iter().map(|&l| i64::from(l)).collect();
    let run = prequential(&graph, &[ids, features], &labels, 1024).expect("prequential run");
    engine.shutdown();
    (run.accuracy(), stream.rows() as f64 / run.seconds)
}

/// The allocator the `weir` binary uses.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() {
    let args = weir::bench::BenchArgs::start();
    let river = river_dir();
    let rounds = if args.quick { 3 } else { 9 };
    let phishing = Stream::load("phishing", graphs_dir().join("data/phishing.csv.gz"), None);
    if args.only.as_deref() == Some("graph") {
        // `-- graph`: the graph alone, for a profiler (no River, no ratio).
        let rates: Vec<f64> = (0..500).map(|_| graph_prequential(&phishing, 1).1).collect();
        println!(
            "| online learning | weir graph phishing-online.yaml alone, 500 runs | {:.0} events/s (median) | |",
            median(rates)
        );
        return;
    }
    // Phishing at River's rate: the graph then does River's arithmetic, in its order.
    let phishing_river_rate = Stream::load("phishing", graphs_dir().join("data/phishing.csv.gz"), Some("0.01"));
    for stream in [&phishing, &phishing_river_rate] {
        report(stream, &river, rounds);
    }
    two_workers(&phishing, rounds);
    // River's other streams: the graph's 0.02 was chosen on phishing; on a stream it was
    // not chosen on, the graph learns at River's own rate.
    let dir = tempfile::tempdir().expect("tempdir");
    for name in other_streams() {
        let csv = dir.path().join(format!("{name}.csv.gz"));
        river_stream(&river, &name, 10_000, &csv);
        report(&Stream::load(&name, csv, Some("0.01")), &river, rounds);
    }
}

/// The names in `LEARN_STREAMS` (comma-separated, any of `river_stream.py`'s: hyperplane,
/// sea, agrawal, sine, random_rbf, bananas), by default hyperplane.
fn other_streams() -> Vec<String> {
    let names = std::env::var("LEARN_STREAMS").unwrap_or_else(|_| "hyperplane".to_string());
    names.split(',').map(str::trim).filter(|n| !n.is_empty()).map(str::to_string).collect()
}

/// `runs` runs of `run` (each an accuracy and events/s): the accuracy (the same every
/// run) and the best events/s.
fn best_of(runs: usize, mut run: impl FnMut() -> (f64, f64)) -> (f64, f64) {
    (0..runs).map(|_| run()).fold((0.0, 0.0f64), |a, b| (b.0, a.1.max(b.1)))
}

/// Runs the three on `stream` for `rounds` alternating rounds and prints their lines.
fn report(stream: &Stream, river: &Path, rounds: usize) {
    let (mut weir_rates, mut river_rates, mut ratios) = (Vec::new(), Vec::new(), Vec::new());
    let (mut graph_rates, mut graph_ratios) = (Vec::new(), Vec::new());
    let (mut weir_accuracy, mut river_accuracy, mut graph_accuracy) = (0.0, 0.0, 0.0);
    for _ in 0..rounds {
        // The graph: the best of 20 runs, each on a fresh engine.
        let graph_best = best_of(20, || graph_prequential(stream, 1));
        graph_accuracy = graph_best.0;
        graph_rates.push(graph_best.1);
        // Each side runs the stream several times per round and keeps its best pass.
        let best = best_of(20, || weir_prequential(stream));
        let theirs = river_prequential(river, stream, 3);
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
    let (name, rows, graph) = (&stream.name, stream.rows(), &stream.graph);
    println!(
        "| online learning | River 0.26.1 StandardScaler then LogisticRegression (SGD 0.01), {name} ({rows} rows), predict then learn (baseline) | accuracy {river_accuracy:.4}; {:.0} events/s (median of {rounds} rounds) | 1.00 |",
        median(river_rates)
    );
    println!(
        "| online learning | weir learner kernel alone (running standardisation + logistic regression, SGD 0.01), same stream and order | accuracy {weir_accuracy:.4}; {:.0} events/s (median of {rounds} rounds) | accuracy {:+.4}; {:.0}x River's events/s (range {lo:.0}x to {hi:.0}x) |",
        median(weir_rates),
        weir_accuracy - river_accuracy,
        median(ratios)
    );
    println!(
        "| online learning | weir graph {graph} (1 worker, deterministic): each row predicted then its label learned, in one operator at one worker (`LearnInPlace`), rows sent in blocks of 1024 with their labels | accuracy {graph_accuracy:.4}; {:.0} events/s (median of {rounds} rounds) | accuracy {:+.4}; {:.1}x River's events/s (range {glo:.1}x to {ghi:.1}x) |",
        median(graph_rates),
        graph_accuracy - river_accuracy,
        median(graph_ratios)
    );
}

/// The graph on `stream` at one worker and at two, alternating: the same accuracy (the
/// same answers, `tests/online.rs`), and the events/s of each.
fn two_workers(stream: &Stream, rounds: usize) {
    let (mut one, mut two, mut ratios) = (Vec::new(), Vec::new(), Vec::new());
    let mut accuracy = (0.0, 0.0);
    for _ in 0..rounds {
        let (a, b) = (best_of(20, || graph_prequential(stream, 1)), best_of(20, || graph_prequential(stream, 2)));
        accuracy = (a.0, b.0);
        one.push(a.1);
        two.push(b.1);
        ratios.push(b.1 / a.1);
    }
    let (lo, hi) = range(&ratios);
    println!(
        "| online learning | weir graph {} at 2 workers against 1 (deterministic; the learning node on worker 0) | accuracy {:.4} at 2, {:.4} at 1; {:.0} events/s at 2, {:.0} at 1 (medians of {rounds} rounds) | {:.2}x the events/s of 1 worker (range {lo:.2}x to {hi:.2}x) |",
        stream.graph,
        accuracy.1,
        accuracy.0,
        median(two),
        median(one),
        median(ratios)
    );
}
