//! Admission control and deadlines in the engine: the in-flight bound refuses or waits,
//! rows past their deadline are not computed, and a deadline closes a batch early.
#![allow(clippy::unwrap_used)] // a test or benchmark fails loudly on the first surprise

mod common;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::gate::Gate;
use common::slow::{gated_plan, slow_plan};
use crossbeam_channel::bounded;
use weir_engine::spec::{Batching, Serving};
use weir_engine::{Engine, EngineConfig, GraphHandle, Submission, SubmitError, WhenFull};
use weir_operators::{ErrorCode, Value};

fn engine(batching: Batching, serving: Serving, per_batch: Duration) -> (Engine, GraphHandle, Arc<AtomicUsize>) {
    let (plan, computed) = slow_plan(per_batch, batching, serving);
    let engine = Engine::start(vec![plan], EngineConfig::default()).unwrap();
    let handle = engine.graphs()[0].clone();
    (engine, handle, computed)
}

/// Longer than anything here takes on a loaded machine; far shorter than the failures
/// the tests look for.
const PATIENCE: Duration = Duration::from_secs(10);

fn rows(n: usize) -> Vec<Vec<Value>> {
    (0..n).map(|i| vec![Value::F32(i as f32)]).collect()
}

#[test]
fn beyond_max_in_flight_a_submission_is_refused_at_once_and_admitted_after() {
    let batching = Batching { max_batch_size: 4, max_wait_ms: Some(1), replicas: 1, ..Batching::default() };
    let serving = Serving { max_in_flight: 8, timeout_ms: None };
    // The rows in flight stay in their forward pass until the gate opens, so "at once"
    // is "while they are still computing", whatever the machine's load.
    let gate = Gate::new();
    gate.open_after(PATIENCE);
    let engine = Engine::start(vec![gated_plan(&gate, batching, serving).0], EngineConfig::default()).unwrap();
    let g = engine.graphs()[0].clone();
    let (tx, rx) = bounded(4);
    let reply = |tx: crossbeam_channel::Sender<usize>| {
        Box::new(move |r: Vec<_>| {
            let _ = tx.send(r.len());
        })
    };
    g.submit(Submission::rows(rows(8), reply(tx.clone())).when_full(WhenFull::Refuse)).expect("8 rows fit the bound");
    assert_eq!(g.in_flight(), 8);
    match g.submit(Submission::rows(rows(1), reply(tx.clone())).when_full(WhenFull::Refuse)) {
        Err(SubmitError::Full(name)) => assert_eq!(name, "slow"),
        other => panic!("expected Full, got {other:?}"),
    }
    assert!(!gate.is_open(), "refused at once, not after the rows in flight were answered");
    gate.open();
    assert_eq!(rx.recv_timeout(PATIENCE).expect("answers"), 8);
    // The permits come back with the answers.
    g.submit(Submission::rows(rows(8), reply(tx)).when_full(WhenFull::Refuse))
        .expect("admitted once the first batch is answered");
    assert_eq!(rx.recv_timeout(PATIENCE).expect("answers"), 8);
    assert_eq!(g.in_flight(), 0);
}

#[test]
fn a_waiting_submission_waits_for_room_instead_of_failing() {
    let batching = Batching { max_batch_size: 4, max_wait_ms: Some(1), replicas: 1, ..Batching::default() };
    let serving = Serving { max_in_flight: 4, timeout_ms: None };
    let (_e, g, computed) = engine(batching, serving, Duration::from_millis(5));
    let results = g.call_many(rows(64), 16);
    assert!(results.iter().all(Result::is_ok));
    assert_eq!(computed.load(Ordering::SeqCst), 64);
}

#[test]
fn a_row_past_its_deadline_is_answered_deadline_exceeded_and_not_computed() {
    let batching = Batching { max_batch_size: 4, max_wait_ms: Some(1), replicas: 1, ..Batching::default() };
    let (_e, g, computed) = engine(batching, Serving::default(), Duration::from_millis(1));
    let (tx, rx) = bounded(1);
    let submission = Submission::rows(rows(3), Box::new(move |r| drop(tx.send(r))));
    g.submit(submission.when_full(WhenFull::Refuse).deadline(Some(Instant::now()))).expect("submitted");
    let answers = rx.recv_timeout(PATIENCE).expect("answered");
    for a in &answers {
        let e = a.as_ref().expect_err("past its deadline");
        assert_eq!(e.code, ErrorCode::DeadlineExceeded);
        assert_eq!(e.node, "double");
    }
    assert_eq!(computed.load(Ordering::SeqCst), 0, "no forward pass ran for them");
    assert_eq!(g.in_flight(), 0);
}

#[test]
fn a_deadline_closes_a_partial_batch_before_max_wait() {
    // max_wait 60 s: without the deadline the lone row would wait that long, far beyond
    // the patience of the test.
    let batching = Batching { max_batch_size: 64, max_wait_ms: Some(60_000), replicas: 1, ..Batching::default() };
    let (_e, g, computed) = engine(batching, Serving::default(), Duration::from_millis(200));
    // A full batch first, so the node knows a forward pass takes 200 ms: a partial
    // batch then leaves that long before its deadline, and its replica starts it long
    // before the deadline even on a loaded machine.
    let full = g.call_many(rows(64), 64);
    assert!(full.iter().all(Result::is_ok));
    let (tx, rx) = bounded(1);
    let submission = Submission::rows(rows(1), Box::new(move |r| drop(tx.send(r))));
    let deadline = Some(Instant::now() + Duration::from_secs(1));
    g.submit(submission.when_full(WhenFull::Refuse).deadline(deadline)).expect("submitted");
    let answers = rx.recv_timeout(PATIENCE).expect("the batch left for the deadline, not max_wait");
    assert_eq!(answers[0].as_ref().expect("computed in time"), &vec![Value::F32(0.0)]);
    assert_eq!(computed.load(Ordering::SeqCst), 65);
}
