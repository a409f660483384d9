//! Batching semantics of model nodes: size bound, wait bound, filling under load.
//!
//! The model here is a custom kernel that takes a fixed time per batch (like a real
//! forward pass), so that rows pile up while replicas are busy.

use std::sync::Arc;
use std::time::{Duration, Instant};

use weir_engine::builder::{GraphBuilder, Model};
use weir_engine::spec::{Batching, ModelSource};
use weir_engine::{Engine, EngineConfig, GraphHandle};
use weir_operators::kernel::BatchKernel;
use weir_operators::{Column, DType, FieldType, Value};

/// Doubles its input, taking `per_batch` for every batch.
struct Slow {
    per_batch: Duration,
}

impl BatchKernel for Slow {
    fn forward(&mut self, inputs: Column) -> Result<Column, String> {
        std::thread::sleep(self.per_batch);
        let (xs, _) = inputs.f32s().ok_or("expected f32 inputs")?;
        Ok(Column::F32(xs.iter().map(|x| 2.0 * x).collect()))
    }
}

fn engine(batching: Batching, per_batch: Duration, workers: usize) -> (Engine, GraphHandle) {
    let scalar = FieldType::scalar(DType::F32);
    let mut g = GraphBuilder::new("slow");
    let x = g.input("x", scalar.clone());
    let source = ModelSource::Custom {
        description: "slow doubler".into(),
        factory: Arc::new(move || Ok(Box::new(Slow { per_batch }) as Box<dyn BatchKernel>)),
        input: scalar.clone(),
        output: scalar,
    };
    let m = g.node("m", Model::file(source).batching(batching).bind(x));
    g.output("y", m.field("y"));
    let engine = Engine::start(vec![g.plan().unwrap()], EngineConfig { workers, ..EngineConfig::default() }).unwrap();
    let handle = engine.graphs()[0].clone();
    (engine, handle)
}

#[test]
fn a_batch_never_exceeds_max_batch_size_and_fills_under_load() {
    for workers in [1, 2] {
        let batching = Batching { max_batch_size: 8, max_wait_ms: 5, replicas: 1, ..Batching::default() };
        let (_e, g) = engine(batching, Duration::from_millis(2), workers);
        let rows: Vec<Vec<Value>> = (0..400).map(|i| vec![Value::F32(i as f32)]).collect();
        let results = g.call_many(rows, 400);
        for (i, r) in results.iter().enumerate() {
            assert_eq!(r.as_ref().unwrap(), &vec![Value::F32(2.0 * i as f32)]);
        }
        let stats = &g.batch_stats()[0].1;
        assert_eq!(stats.rows, 400);
        assert_eq!(
            stats.max_batch(),
            8,
            "under load batches fill to the maximum ({workers} workers): {:?}",
            stats.sizes
        );
        assert!(stats.mean_batch() > 6.0, "mean batch {} with {workers} workers", stats.mean_batch());
    }
}

#[test]
fn a_lone_row_leaves_after_max_wait_and_not_much_later() {
    let batching = Batching { max_batch_size: 32, max_wait_ms: 40, replicas: 1, ..Batching::default() };
    let (_e, g) = engine(batching, Duration::ZERO, 1);
    for i in 0..5 {
        let start = Instant::now();
        let out = g.call(vec![Value::F32(i as f32)]).unwrap().unwrap();
        let waited = start.elapsed();
        assert_eq!(out, vec![Value::F32(2.0 * i as f32)]);
        assert!(waited >= Duration::from_millis(40), "left after {waited:?}, before max_wait_ms");
        assert!(waited < Duration::from_millis(40 + 150), "left after {waited:?}, far beyond max_wait_ms");
    }
    let stats = &g.batch_stats()[0].1;
    assert_eq!(stats.sizes[1], 5, "each lone row is its own batch");
}

#[test]
fn zero_wait_sends_at_once() {
    let batching = Batching { max_batch_size: 32, max_wait_ms: 0, replicas: 1, ..Batching::default() };
    let (_e, g) = engine(batching, Duration::ZERO, 1);
    let start = Instant::now();
    g.call(vec![Value::F32(1.0)]).unwrap().unwrap();
    assert!(start.elapsed() < Duration::from_millis(100), "took {:?}", start.elapsed());
}

#[test]
fn zero_wait_gathers_rows_while_the_replica_is_busy() {
    // Rows arrive one at a time while each forward pass takes 20 ms: the first leaves
    // alone, the next ones gather behind it instead of queueing as one-row batches.
    let batching = Batching { max_batch_size: 16, max_wait_ms: 0, replicas: 1, ..Batching::default() };
    let (_e, g) = engine(batching, Duration::from_millis(20), 1);
    let (tx, rx) = crossbeam_channel::unbounded();
    for i in 0..40 {
        let tx = tx.clone();
        g.submit(vec![Value::F32(i as f32)], Box::new(move |r| drop(tx.send((i, r))))).unwrap();
        std::thread::sleep(Duration::from_millis(1));
    }
    for _ in 0..40 {
        let (i, r) = rx.recv_timeout(Duration::from_secs(10)).unwrap();
        assert_eq!(r.unwrap(), vec![Value::F32(2.0 * i as f32)]);
    }
    let stats = &g.batch_stats()[0].1;
    // Sending at once regardless would give at least eight one-row batches (eight may be
    // out per replica).
    assert!(stats.sizes[1] <= 3, "rows did not leave one by one: {:?}", stats.sizes);
    assert!(stats.max_batch() > 4, "rows gathered while the replica was busy: {:?}", stats.sizes);
    assert!(stats.batches() <= 10, "few batches for 40 rows: {:?}", stats.sizes);
}

#[test]
fn replicas_run_batches_in_parallel() {
    // Four replicas and 20 ms per batch of at most 4 rows: 64 rows are 16 batches, about
    // 80 ms on four replicas, at least 320 ms on one.
    let batching = Batching { max_batch_size: 4, max_wait_ms: 1, replicas: 4, ..Batching::default() };
    let (_e, g) = engine(batching, Duration::from_millis(20), 1);
    let start = Instant::now();
    let results = g.call_many((0..64).map(|i| vec![Value::F32(i as f32)]).collect(), 64);
    assert!(results.iter().all(|r| r.is_ok()));
    assert!(start.elapsed() < Duration::from_millis(300), "4 replicas took {:?}", start.elapsed());
}
