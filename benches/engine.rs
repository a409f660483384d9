//! Engine benchmarks: what the dataflow costs around the models.
//!
//! Run: `cargo bench --bench engine` (add `-- --quick` for a short run). Prints a
//! markdown table; every figure is paired with a baseline measured in the same run,
//! because these machines are shared and noisy.
//!
//! Experiments:
//! 1. **diamond throughput**: rows/s through `graphs/diamond.yaml` in-process at 1 and 2
//!    workers (4096 rows in flight), against computing `a + 2b + c` in a plain loop over
//!    the same rows (the floor no engine can beat).
//! 2. **batching efficiency**: the digits MLP as the only node of a graph
//!    (`max_batch_size` B, saturated so batches fill) against calling the same candle
//!    forward directly on batches of B rows, same rows, same thread count. Target ≥ 90%.
//! 3. **lone-row latency**: one row at a time through `graphs/digits.yaml`
//!    (`max_wait_ms` 2): p50/p99 of the time in the graph, against `max_wait_ms` plus one
//!    direct forward pass of both models.

use std::sync::Arc;
use std::time::{Duration, Instant};

use weir::datasets::{digits, Split};
use weir_engine::builder::{GraphBuilder, Model};
use weir_engine::spec::Batching;
use weir_engine::{load_plan, Engine, EngineConfig, GraphHandle};
use weir_operators::kernel::model::{Activation, Arch, DenseModel};
use weir_operators::kernel::BatchKernel;
use weir_operators::{FieldType, Value};

fn start(plan: weir_engine::Plan, workers: usize) -> (Engine, GraphHandle) {
    let engine = Engine::start(vec![plan], EngineConfig { workers, ..EngineConfig::default() }).expect("engine");
    let g = engine.graphs()[0].clone();
    (engine, g)
}

/// Pushes pre-built rows through `g` in batches of `chunk`, at most `in_flight` rows
/// outstanding, like a server that answers and forgets: answers are checked and dropped
/// on the worker thread. Returns once every row is answered.
fn drive(g: &GraphHandle, rows: Vec<Vec<Value>>, chunk: usize, in_flight: usize) {
    let max_batches = (in_flight / chunk).max(1);
    let (tx, rx) = crossbeam_channel::bounded::<usize>(max_batches);
    let mut outstanding = 0;
    let mut rows = rows.into_iter();
    loop {
        let batch: Vec<Vec<Value>> = rows.by_ref().take(chunk).collect();
        if batch.is_empty() {
            break;
        }
        if outstanding == max_batches {
            rx.recv().expect("answers");
            outstanding -= 1;
        }
        let tx = tx.clone();
        g.submit_batch(batch, Box::new(move |r| drop(tx.send(r.iter().filter(|x| x.is_err()).count()))))
            .expect("submit");
        outstanding += 1;
    }
    for _ in 0..outstanding {
        assert_eq!(rx.recv().expect("answers"), 0, "every row succeeds");
    }
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
    let plain = best_rate(n, 3, || {
        let mut acc = 0.0f32;
        for r in &rows {
            let (Value::F32(a), Value::F32(b), Value::F32(c)) = (&r[0], &r[1], &r[2]) else { unreachable!() };
            acc += std::hint::black_box(a + 2.0 * b + c);
        }
        std::hint::black_box(acc);
    });
    println!("| diamond | plain loop `a + 2b + c` (baseline) | {plain:.0} rows/s | 1.00 |");
    let path = weir::datasets::graphs_dir().join("diamond.yaml");
    let mut one = 0.0;
    for workers in [1, 2] {
        let (_e, g) = start(load_plan(&path).expect("diamond"), workers);
        let mut copies: Vec<Vec<Vec<Value>>> = (0..3).map(|_| rows.clone()).collect();
        let rate = best_rate(n, 3, || drive(&g, copies.pop().unwrap_or_default(), 256, 4096));
        if workers == 1 {
            one = rate;
        }
        let stats = g.batch_stats();
        println!(
            "| diamond | weir, {workers} worker(s), 4096 in flight | {rate:.0} rows/s | {:.4} of plain, {:.2}x 1 worker; mean batch m1 {:.1} |",
            rate / plain,
            rate / one,
            stats[0].1.mean_batch()
        );
    }
}

fn mlp_model() -> Arc<DenseModel> {
    let path = weir::datasets::graphs_dir().join("digits/mlp.safetensors");
    Arc::new(DenseModel::load(&path, Arch::Mlp, None, Activation::Relu, Activation::Softmax).expect("mlp weights"))
}

fn batching(quick: bool) {
    let set = digits(Split::Train).expect("digits");
    let reps = if quick { 4 } else { 40 };
    let rows: Vec<Vec<Value>> = (0..reps)
        .flat_map(|_| set.iter().map(|d| vec![Value::Tensor(d.pixels.clone().into())]))
        .collect();
    let n = rows.len();
    let model = mlp_model();
    for batch in [32usize, 128] {
        let mut direct = model.instantiate(&candle_core::Device::Cpu).expect("instantiate");
        let inputs: Vec<Value> = rows.iter().map(|r| r[0].clone()).collect();
        let direct_rate = best_rate(n, 3, || {
            for chunk in inputs.chunks(batch) {
                std::hint::black_box(direct.forward(chunk).expect("forward"));
            }
        });
        let mut g = GraphBuilder::new("mlp_only");
        let x = g.input("pixels", FieldType::vector(64));
        let batching = Batching { max_batch_size: batch, max_wait_ms: 1, replicas: 1, ..Batching::default() };
        let m = g.node("mlp", Model::loaded(Arc::clone(&model)).batching(batching).bind(x));
        g.output("probs", m.field("y"));
        let (_e, h) = start(g.plan().expect("plan"), 1);
        // Copies of the input for every timed run, made before the clock starts (the
        // direct baseline reads prepared inputs too).
        let mut copies: Vec<Vec<Vec<Value>>> = (0..3).map(|_| rows.clone()).collect();
        let graph_rate = best_rate(n, 3, || drive(&h, copies.pop().unwrap_or_default(), 256, 8 * batch.max(256)));
        let stats = &h.batch_stats()[0].1;
        println!(
            "| batching | MLP 64-32-10, batch {batch}: direct forward (baseline) | {direct_rate:.0} rows/s | 1.00 |\n\
             | batching | MLP 64-32-10, batch {batch}: in the graph, 1 worker | {graph_rate:.0} rows/s | {:.3} of direct; mean batch {:.1} |",
            graph_rate / direct_rate,
            stats.mean_batch()
        );
    }
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    sorted[((sorted.len() - 1) as f64 * p).round() as usize]
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
    // Baseline: max_wait_ms plus one direct forward of both models on one row.
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
    let one = [Value::Tensor(set[0].pixels.clone().into())];
    let t = Instant::now();
    for _ in 0..100 {
        std::hint::black_box(a.forward(&one).expect("forward"));
        std::hint::black_box(b.forward(&one).expect("forward"));
    }
    let forward = t.elapsed() / 100;
    let floor = Duration::from_millis(2) + forward;
    for (name, p) in [("p50", 0.5), ("p99", 0.99)] {
        let v = percentile(&times, p);
        println!(
            "| lone row | digits.yaml, max_wait_ms 2, {name} | {:.3} ms | {:.2}x of max_wait + forward ({:.3} ms) |",
            v.as_secs_f64() * 1e3,
            v.as_secs_f64() / floor.as_secs_f64(),
            floor.as_secs_f64() * 1e3
        );
    }
}

fn main() {
    weir::one_thread_per_forward_pass();
    let args: Vec<String> = std::env::args().collect();
    let quick = args.iter().any(|a| a == "--quick");
    let only = args.iter().skip(1).find(|a| !a.starts_with("--")).cloned();
    println!("| experiment | configuration | result | ratio to baseline |\n|---|---|---|---|");
    let run = |name: &str| only.as_deref().is_none_or(|o| name.contains(o));
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
