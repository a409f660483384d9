//! Batching semantics of model nodes: size bound, wait bound, filling under load.
//!
//! The model here is a custom kernel that takes a fixed time per batch (like a real
//! forward pass), so that rows pile up while replicas are busy; where a test needs rows
//! held in a forward pass until it has seen what it checks, the model waits behind a
//! gate (`common::gate`). Wall-clock bounds are lower bounds (a row cannot leave before
//! its `max_wait_ms`) or generous enough for a loaded 2-core machine.
#![allow(clippy::unwrap_used)] // a test or benchmark fails loudly on the first surprise

mod common;

use std::sync::Arc;
use std::time::{Duration, Instant};

use common::gate::Gate;
use common::slow::gated_plan;
use weir_engine::builder::{GraphBuilder, Model};
use weir_engine::spec::{Batching, ModelSource, Serving};
use weir_engine::{Engine, EngineConfig, GraphHandle, Submission};
use weir_operators::dataflow::policy::SendReason;
use weir_operators::kernel::{single_input, BatchKernel, KernelError};
use weir_operators::stats::BatchStatsSnapshot;
use weir_operators::{Column, DType, FieldType, Value};

/// Doubles its input, taking `per_batch` for every batch.
struct Slow {
    per_batch: Duration,
}

impl BatchKernel for Slow {
    fn forward(&mut self, inputs: Vec<Column>) -> Result<Vec<Column>, KernelError> {
        let inputs = single_input("test kernel", inputs)?;
        std::thread::sleep(self.per_batch);
        let (xs, _) = inputs.f32s().ok_or("expected f32 inputs")?;
        Ok(vec![Column::F32(xs.iter().map(|x| 2.0 * x).collect())])
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
        let batching = Batching { max_batch_size: 8, max_wait_ms: Some(5), replicas: 1, ..Batching::default() };
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

/// Longer than any row takes on a loaded machine; far shorter than the failures the
/// tests look for (a row waiting for a full batch or another row waits forever, a
/// timer in the wrong unit for seconds).
const PATIENCE: Duration = Duration::from_secs(10);

/// Submits a lone row and waits for its answer (at most [`PATIENCE`]): the answer and
/// how long it took.
fn lone_row(g: &GraphHandle, x: f32) -> (Vec<Value>, Duration) {
    let (tx, rx) = crossbeam_channel::bounded(1);
    let start = Instant::now();
    g.submit(Submission::row(vec![Value::F32(x)], Box::new(move |r| drop(tx.send(r))))).unwrap();
    let out = rx.recv_timeout(PATIENCE).expect("the lone row is answered").unwrap();
    (out, start.elapsed())
}

#[test]
fn call_answers_rows_quicker_and_slower_than_its_wait_awake() {
    // 0 ms: answered while `call` waits awake; 5 ms: after it has gone to sleep.
    for per_batch in [Duration::ZERO, Duration::from_millis(5)] {
        assert!(per_batch.is_zero() || per_batch > 10 * weir_engine::handle::CALL_SPIN);
        let batching = Batching { max_batch_size: 1, max_wait_ms: Some(0), replicas: 1, ..Batching::default() };
        let (_e, g) = engine(batching, per_batch, 1);
        for i in 0..20 {
            let start = Instant::now();
            let out = g.call(vec![Value::F32(i as f32)]).expect("accepted").expect("answered");
            assert_eq!(out, vec![Value::F32(2.0 * i as f32)]);
            assert!(start.elapsed() >= per_batch);
        }
    }
}

#[test]
fn a_lone_row_leaves_after_max_wait() {
    let batching = Batching { max_batch_size: 32, max_wait_ms: Some(40), replicas: 1, ..Batching::default() };
    let (_e, g) = engine(batching, Duration::ZERO, 1);
    for i in 0..5 {
        let (out, waited) = lone_row(&g, i as f32);
        assert_eq!(out, vec![Value::F32(2.0 * i as f32)]);
        assert!(waited >= Duration::from_millis(40), "left after {waited:?}, before max_wait_ms");
    }
    let stats = &g.batch_stats()[0].1;
    assert_eq!(stats.sizes[1], 5, "each lone row is its own batch");
}

#[test]
fn zero_wait_and_the_adaptive_policy_send_a_lone_row_at_once() {
    // With max_wait_ms 0 nothing but a busy replica holds a partial batch: a lone row
    // that waited for company (a full batch, a second row) would never be answered. The
    // adaptive policy (no max_wait_ms) sees no other rows coming: the same.
    for max_wait_ms in [Some(0), None] {
        let batching = Batching { max_batch_size: 32, max_wait_ms, replicas: 1, ..Batching::default() };
        let (_e, g) = engine(batching, Duration::ZERO, 1);
        for i in 0..5 {
            let (out, _) = lone_row(&g, i as f32);
            assert_eq!(out, vec![Value::F32(2.0 * i as f32)]);
        }
        let stats = &g.batch_stats()[0].1;
        assert_eq!(stats.sizes[1], 5, "each lone row is its own batch");
        assert_eq!((reason(stats, SendReason::Now), stats.waits), (5, 0), "{max_wait_ms:?}: sent at once, no wait");
    }
}

/// Batches sent for `why`.
fn reason(stats: &BatchStatsSnapshot, why: SendReason) -> u64 {
    stats.reasons[why.index()]
}

/// Starts the gated graph on one worker.
fn gated(gate: &Arc<Gate>, batching: Batching) -> (Engine, GraphHandle) {
    let (plan, _) = gated_plan(gate, batching, Serving::default());
    let engine = Engine::start(vec![plan], EngineConfig::default()).unwrap();
    let handle = engine.graphs()[0].clone();
    (engine, handle)
}

/// Waits (at most [`PATIENCE`]) until the node has sent `batches` batches.
fn await_batches_sent(g: &GraphHandle, batches: u64) {
    let deadline = Instant::now() + PATIENCE;
    while g.batch_stats()[0].1.batches() < batches {
        assert!(Instant::now() < deadline, "{batches} batches sent: {:?}", g.batch_stats()[0].1.sizes);
        std::thread::sleep(Duration::from_millis(1));
    }
}

#[test]
fn zero_wait_gathers_rows_while_the_replica_is_busy() {
    gathers_rows_while_the_replica_is_busy(Some(0));
}

#[test]
fn the_adaptive_policy_gathers_rows_while_the_replica_is_busy() {
    gathers_rows_while_the_replica_is_busy(None);
}

fn gathers_rows_while_the_replica_is_busy(max_wait_ms: Option<u64>) {
    // The first row leaves alone and holds the only replica; 32 more rows arrive one at
    // a time while it computes. They gather into two full batches instead of leaving one
    // by one as they come (a partial batch waits for a free replica).
    let batching = Batching { max_batch_size: 16, max_wait_ms, replicas: 1, ..Batching::default() };
    let gate = Gate::new();
    gate.open_after(PATIENCE);
    let (_e, g) = gated(&gate, batching);
    let (tx, rx) = crossbeam_channel::bounded(64);
    let submit = |i: usize| {
        let tx = tx.clone();
        g.submit(Submission::row(vec![Value::F32(i as f32)], Box::new(move |r| drop(tx.send((i, r)))))).unwrap();
    };
    submit(0);
    assert_eq!(gate.next_started(PATIENCE), Some(1), "the first row leaves alone");
    (1..33).for_each(submit);
    await_batches_sent(&g, 3);
    assert!(!gate.is_open(), "the batches formed while the first one computed");
    gate.open();
    for _ in 0..33 {
        let (i, r) = rx.recv_timeout(PATIENCE).unwrap();
        assert_eq!(r.unwrap(), vec![Value::F32(2.0 * i as f32)]);
    }
    let stats = &g.batch_stats()[0].1;
    assert_eq!((stats.sizes[1], stats.sizes[16], stats.batches()), (1, 2, 3), "{:?}", stats.sizes);
    assert_eq!((reason(stats, SendReason::Now), reason(stats, SendReason::Full)), (1, 2), "{:?}", stats.reasons);
}

#[test]
fn replicas_run_batches_in_parallel() {
    // Four replicas and four full batches: all four forward passes are under way at
    // once, before any of them may finish.
    let batching = Batching { max_batch_size: 4, max_wait_ms: Some(1), replicas: 4, ..Batching::default() };
    let gate = Gate::new();
    gate.open_after(PATIENCE);
    let (_e, g) = gated(&gate, batching);
    let (tx, rx) = crossbeam_channel::bounded(1);
    g.submit(Submission::rows(
        (0..16).map(|i| vec![Value::F32(i as f32)]).collect(),
        Box::new(move |r| drop(tx.send(r))),
    ))
    .unwrap();
    for pass in 1..=4 {
        assert_eq!(gate.next_started(PATIENCE), Some(4), "forward pass {pass} of 4 started");
    }
    assert!(!gate.is_open(), "four forward passes at once");
    gate.open();
    let answers = rx.recv_timeout(PATIENCE).unwrap();
    assert!(answers.iter().all(|r| r.is_ok()));
}
