//! Engine benchmarks: what the dataflow costs around the models.
//!
//! Run: `cargo bench --bench engine` (add `-- --quick` for a short run). Prints a
//! markdown table; every figure is paired with a baseline measured in the same run,
//! because these machines are shared and noisy.
//!
//! Experiments:
//! 1. **diamond throughput**: rows/s through `graphs/diamond.yaml` in-process at 1 and 2
//!    workers (4096 rows in flight), against calling its two models directly on batches
//!    of 64 and summing on one thread (the same work without the engine).
//! 2. **batching efficiency**: the digits MLP as the only node of a graph
//!    (`max_batch_size` B, fed 1024-row submissions by column with 8192 rows in flight, so batches
//!    fill) against calling the same candle forward directly on batches of B rows, same
//!    rows, each in a one-thread rayon pool. Target ≥ 90%. A wide synthetic MLP shows the
//!    same ratio for a costlier model.
//! 3. **lone-row latency**: one row at a time through `graphs/digits.yaml` (adaptive
//!    batching: a lone row leaves at once): p50/p99 of the time in the graph, against one
//!    direct forward pass of both models.
#![allow(clippy::unwrap_used)] // a test or benchmark fails loudly on the first surprise

use std::sync::Arc;
use std::time::{Duration, Instant};
use weir::bench::percentile;

use weir::datasets::{digits, Split};
use weir_engine::builder::{GraphBuilder, Model};
use weir_engine::spec::Batching;
use weir_engine::{load_plan, Engine, EngineConfig, GraphHandle};
use weir_operators::kernel::model::{Activation, Arch, DenseLayer, DenseModel};
use weir_operators::kernel::BatchKernel;
use weir_operators::{Column, FieldType, Value};

#[path = "support/drive.rs"]
mod drive;
use drive::{drive, submissions};

fn start(plan: weir_engine::Plan, workers: usize) -> (Engine, GraphHandle) {
    let engine = Engine::start(vec![plan], EngineConfig { workers, ..EngineConfig::default() }).expect("engine");
    let g = engine.graphs()[0].clone();
    (engine, g)
}

/// Best of `reps` runs of `f`, in rows/s.
fn best_rate(rows: usize, reps: usize, mut f: impl FnMut()) -> f64 {
    (0..reps)
        .map(|_| {
            let t = Instant::now();
            f();
            rows as f64 / t.elapsed().as_secs_f64()
        })
        .fold(0.0, f64::max)
}

fn diamond(quick: bool) {
    let n = if quick { 50_000 } else { 400_000 };
    let rows: Vec<Vec<Value>> =
        (0..n).map(|i| vec![Value::F32(i as f32), Value::F32(0.5 * i as f32), Value::F32(1.0)]).collect();
    // Baseline: the same two models called directly on batches of 64 (diamond.yaml's
    // max_batch_size), and the sum, on one thread: the work without the engine.
    let dir = weir::datasets::graphs_dir().join("diamond");
    let load = |name: &str| {
        DenseModel::load(&dir.join(name), Arch::Linear, None, Activation::None, Activation::None)
            .map(|m| m.instantiate(&candle_core::Device::Cpu).expect("cpu"))
            .expect("diamond weights")
    };
    let (mut m1, mut m2) = (load("m1.safetensors"), load("m2.safetensors"));
    let column = |f: usize| -> Vec<f32> { rows.iter().map(|r| r[f].as_f64().unwrap_or(0.0) as f32).collect() };
    let (a, b, c) = (column(0), column(1), column(2));
    let pool = rayon::ThreadPoolBuilder::new().num_threads(1).build().expect("pool");
    let direct = pool.install(|| {
        best_rate(n, 3, || {
            for start in (0..n).step_by(64) {
                let end = (start + 64).min(n);
                let ya = m1.forward(vec![Column::F32(a[start..end].to_vec())]).expect("m1");
                let yb = m2.forward(vec![Column::F32(b[start..end].to_vec())]).expect("m2");
                let (ya, yb) = (ya[0].f32s().expect("f32").0, yb[0].f32s().expect("f32").0);
                for ((x, y), c) in ya.iter().zip(yb).zip(&c[start..end]) {
                    std::hint::black_box(x + y + c);
                }
            }
        })
    });
    println!("| diamond | m1, m2 forward on batches of 64 + sum, one thread (baseline) | {direct:.0} rows/s | 1.00 |");
    let path = weir::datasets::graphs_dir().join("diamond.yaml");
    // Both engines stay up (an idle engine parks its threads); rounds alternate them.
    let engines: Vec<(Engine, GraphHandle)> =
        [1, 2].iter().map(|&w| start(load_plan(&path).expect("diamond"), w)).collect();
    let types: Vec<FieldType> = engines[0].1.plan().inputs.iter().map(|(_, t)| t.clone()).collect();
    let mut best = [0.0f64; 2];
    let mut ratios = Vec::new();
    for _ in 0..if quick { 3 } else { 7 } {
        let mut round = [0.0f64; 2];
        for (k, (_, g)) in engines.iter().enumerate() {
            let mut copy = Some(submissions(&rows, &types, 256));
            round[k] = best_rate(n, 1, || drive(g, copy.take().unwrap_or_default(), 4096));
            best[k] = best[k].max(round[k]);
        }
        ratios.push(round[1] / round[0]);
    }
    ratios.sort_by(f64::total_cmp);
    for (k, workers) in [1, 2].iter().enumerate() {
        let stats = engines[k].1.batch_stats();
        let scaling = if k == 0 {
            "".to_string()
        } else {
            format!(", {:.2}x 1 worker (median of rounds)", ratios[ratios.len() / 2])
        };
        println!(
            "| diamond | weir, {workers} worker(s), 4096 in flight | {:.0} rows/s | {:.3} of direct{scaling}; mean batch m1 {:.1} |",
            best[k],
            best[k] / direct,
            stats[0].1.mean_batch()
        );
    }
}

fn mlp_model() -> Arc<DenseModel> {
    let path = weir::datasets::graphs_dir().join("digits/mlp.safetensors");
    Arc::new(DenseModel::load(&path, Arch::Mlp, None, Activation::Relu, Activation::Softmax).expect("mlp weights"))
}

/// A wider MLP (64-1024-1024-10) with deterministic pseudo-random weights: the same
/// engine work per row as the digits MLP (64-32-10), about 475 times its multiply-adds
/// (1124352 against 2368 per row). It is only a cost
/// model (its answers mean nothing); it shows where the engine's per-row cost stops
/// mattering.
fn wide_model() -> Arc<DenseModel> {
    let mut state = 7u32;
    let mut layer = |inputs: usize, outputs: usize| {
        let weight = (0..inputs * outputs)
            .map(|_| {
                state = state.wrapping_mul(1_664_525).wrapping_add(1_013_904_223);
                (state >> 8) as f32 / (1u32 << 24) as f32 * 0.1 - 0.05
            })
            .collect();
        DenseLayer { weight, bias: vec![0.0; outputs], inputs, outputs }
    };
    let layers = vec![layer(64, 1024), layer(1024, 1024), layer(1024, 10)];
    Arc::new(DenseModel::from_layers(Arch::Mlp, layers, Activation::Relu, Activation::Softmax))
}

fn batching(quick: bool) {
    let set = digits(Split::Train).expect("digits");
    let reps = if quick { 10 } else { 100 };
    let rows: Vec<Vec<Value>> =
        (0..reps).flat_map(|_| set.iter().map(|d| vec![Value::Tensor(d.pixels.clone().into())])).collect();
    let n = rows.len();
    for (label, model, batch) in [
        ("digits MLP 64-32-10", mlp_model(), 32usize),
        ("digits MLP 64-32-10", mlp_model(), 128),
        ("wide MLP 64-1024-1024-10 (cost model)", wide_model(), 32),
    ] {
        // The wide model is slow: fewer rows keep the run short.
        let n = if label.starts_with("wide") { n / 20 } else { n };
        let rows: Vec<Vec<Value>> = rows[..n].to_vec();
        let mut direct = model.instantiate(&candle_core::Device::Cpu).expect("instantiate");
        let pixels: Vec<f32> = rows.iter().flat_map(|r| r[0].as_f32s().unwrap_or_default().to_vec()).collect();
        let mut g = GraphBuilder::new("mlp_only");
        let x = g.input("pixels", FieldType::vector(64));
        let batching = Batching { max_batch_size: batch, max_wait_ms: Some(1), replicas: 1, ..Batching::default() };
        let m = g.node("mlp", Model::loaded(Arc::clone(&model)).batching(batching).bind(x));
        g.output("probs", m.field("y"));
        let (_e, h) = start(g.plan().expect("plan"), 1);
        // Alternate the two, back to back, and take the median of the per-round ratios:
        // this machine's speed drifts by tens of percent over seconds, and a drift hits
        // both halves of a round alike. The baseline runs in a one-thread rayon pool, as
        // replicas do, so that candle's loops stay on the calling thread in both.
        let pool = rayon::ThreadPoolBuilder::new().num_threads(1).build().expect("pool");
        let (mut direct_rate, mut graph_rate, mut ratios) = (0.0f64, 0.0f64, Vec::new());
        // How busy the replica was with forward passes while the graph ran: what the
        // engine leaves of the model's own speed.
        let (mut graph_wall, mut graph_compute) = (Duration::ZERO, Duration::ZERO);
        for _ in 0..if quick { 3 } else { 21 } {
            let d = pool.install(|| {
                best_rate(n, 1, || {
                    for part in pixels.chunks(batch * 64) {
                        let x = Column::Tensor { width: 64, data: part.to_vec() };
                        std::hint::black_box(direct.forward(vec![x]).expect("forward"));
                    }
                })
            });
            let mut copy = Some(submissions(&rows, &[FieldType::vector(64)], 1024));
            let (compute_before, started) = (h.batch_stats()[0].1.compute_ns, Instant::now());
            let g = best_rate(n, 1, || drive(&h, copy.take().unwrap_or_default(), 8192));
            graph_wall += started.elapsed();
            graph_compute += Duration::from_nanos(h.batch_stats()[0].1.compute_ns - compute_before);
            direct_rate = direct_rate.max(d);
            graph_rate = graph_rate.max(g);
            ratios.push(g / d);
        }
        ratios.sort_by(f64::total_cmp);
        let ratio = ratios[ratios.len() / 2];
        let stats = &h.batch_stats()[0].1;
        println!(
            "| batching | {label}, batch {batch}: direct forward (baseline) | {direct_rate:.0} rows/s | 1.00 |\n\
             | batching | {label}, batch {batch}: in the graph, 1 worker | {graph_rate:.0} rows/s | {ratio:.3} of direct (median of rounds; range {:.2} to {:.2}); mean batch {:.1}; replica in forward passes {:.0}% of the time |",
            ratios[0],
            ratios[ratios.len() - 1],
            stats.mean_batch(),
            100.0 * graph_compute.as_secs_f64() / graph_wall.as_secs_f64()
        );
    }
}

fn lone_row(quick: bool) {
    let set = digits(Split::Test).expect("digits");
    let count = if quick { 100 } else { 1000 };
    let (_e, g) = start(load_plan(&weir::datasets::graphs_dir().join("digits.yaml")).expect("digits"), 1);
    let mut times = Vec::with_capacity(count);
    for d in set.iter().cycle().take(count) {
        let t = Instant::now();
        let r = g.call(vec![Value::Tensor(d.pixels.clone().into())]).expect("submit");
        times.push(t.elapsed());
        assert!(r.is_ok());
    }
    times.sort();
    // Baseline: one direct forward of both models on one row.
    let softmax = DenseModel::load(
        &weir::datasets::graphs_dir().join("digits/softmax.safetensors"),
        Arch::Linear,
        None,
        Activation::None,
        Activation::Softmax,
    )
    .expect("softmax");
    let mut a = softmax.instantiate(&candle_core::Device::Cpu).expect("softmax");
    let mut b = mlp_model().instantiate(&candle_core::Device::Cpu).expect("mlp");
    let one = Column::Tensor { width: 64, data: set[0].pixels.clone() };
    let t = Instant::now();
    for _ in 0..100 {
        std::hint::black_box(a.forward(vec![one.clone()]).expect("forward"));
        std::hint::black_box(b.forward(vec![one.clone()]).expect("forward"));
    }
    let forward = t.elapsed() / 100;
    let floor = forward;
    for (name, p) in [("p50", 0.5), ("p99", 0.99)] {
        let v = percentile(&times, p);
        println!(
            "| lone row | digits.yaml (adaptive), {name} | {:.3} ms | {:.2}x of one forward of both models ({:.3} ms) |",
            v.as_secs_f64() * 1e3,
            v.as_secs_f64() / floor.as_secs_f64(),
            floor.as_secs_f64() * 1e3
        );
    }
}

/// The allocator the `weir` binary uses.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() {
    let args = weir::bench::BenchArgs::start();
    let quick = args.quick;
    let run = |name: &str| args.runs(name);
    if run("diamond") {
        diamond(quick);
    }
    if run("batching") {
        batching(quick);
    }
    if run("lone") {
        lone_row(quick);
    }
}
