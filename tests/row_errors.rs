//! Errors are rows: a failing or panicking node fails only its rows, names itself, and
//! the graph keeps serving. A combine never answers with a partial ensemble.
#![allow(clippy::unwrap_used)] // a test or benchmark fails loudly on the first surprise

use std::sync::Arc;

use weir_engine::builder::{combine, map, route, GraphBuilder, Model};
use weir_engine::spec::{Batching, ModelSource};
use weir_engine::{Engine, EngineConfig, GraphHandle, Submission, SubmitError};
use weir_operators::kernel::aggregate::Aggregate;
use weir_operators::kernel::condition::Condition;
use weir_operators::kernel::{single_input, BatchKernel, KernelError};
use weir_operators::{Column, DType, ErrorCode, FieldType, Value};

fn scalar() -> FieldType {
    FieldType::scalar(DType::F32)
}

fn num(v: &Value) -> f32 {
    v.as_f64().unwrap_or(f64::NAN) as f32
}

/// Fails batches containing 13 and panics on batches containing 666.
struct Picky;

impl BatchKernel for Picky {
    fn forward(&mut self, inputs: Vec<Column>) -> Result<Vec<Column>, KernelError> {
        let inputs = single_input("test kernel", inputs)?;
        let inputs = inputs.values();
        if inputs.iter().any(|v| num(v) == 666.0) {
            panic!("the devil's number");
        }
        if inputs.iter().any(|v| num(v) == 13.0) {
            return Err("unlucky batch".into());
        }
        Ok(vec![Column::F32(inputs.iter().map(|v| num(v) + 1.0).collect())])
    }
}

fn start(g: GraphBuilder) -> (Engine, GraphHandle) {
    let engine =
        Engine::start(vec![g.plan().unwrap()], EngineConfig { workers: 2, ..EngineConfig::default() }).unwrap();
    let handle = engine.graphs()[0].clone();
    (engine, handle)
}

/// x -> picky model (batch 1) and a map that panics on negatives, in parallel, summed.
fn graph() -> (Engine, GraphHandle) {
    let mut g = GraphBuilder::new("errors");
    let x = g.input("x", scalar());
    let source = ModelSource::Custom {
        description: "picky".into(),
        factory: Arc::new(|| Ok(Box::new(Picky) as Box<dyn BatchKernel>)),
        input: scalar(),
        output: scalar(),
    };
    let batching = Batching { max_batch_size: 1, max_wait_ms: Some(0), ..Batching::default() };
    let m = g.node("picky", Model::file(source).batching(batching).bind(x.clone()));
    let sq = g.node(
        "sqrt",
        map::function([("y", scalar())], |v| {
            let x = num(v[0]);
            if x < 0.0 {
                panic!("sqrt of {x}");
            }
            Ok(vec![Value::F32(x.sqrt())])
        })
        .bind([x]),
    );
    let s = g.node("sum", combine(Aggregate::Sum).bind([m.field("y"), sq.field("y")]));
    g.output("y", s.field("y"));
    start(g)
}

#[test]
fn a_failed_branch_fails_the_row_with_its_error_and_nothing_else() {
    let (_e, g) = graph();
    let rows = [4.0f32, 13.0, -1.0, 666.0, 9.0].iter().map(|&x| vec![Value::F32(x)]).collect();
    let results = g.call_many(rows, 8);
    assert_eq!(results[0].as_ref().unwrap(), &vec![Value::F32(5.0 + 2.0)]);
    let e = results[1].as_ref().unwrap_err();
    assert_eq!((e.code, e.node.as_str()), (ErrorCode::ModelFailed, "picky"));
    assert!(e.message.contains("unlucky batch"));
    let e = results[2].as_ref().unwrap_err();
    assert_eq!((e.code, e.node.as_str()), (ErrorCode::NodeFailed, "sqrt"));
    assert!(e.message.contains("panicked: sqrt of -1"), "{}", e.message);
    let e = results[3].as_ref().unwrap_err();
    assert_eq!((e.code, e.node.as_str()), (ErrorCode::ModelFailed, "picky"));
    assert!(e.message.contains("panicked: the devil's number"), "{}", e.message);
    assert_eq!(results[4].as_ref().unwrap(), &vec![Value::F32(10.0 + 3.0)]);
}

#[test]
fn the_graph_keeps_serving_after_failures() {
    let (_e, g) = graph();
    for round in 0..3 {
        let bad = g.call(vec![Value::F32(666.0)]).unwrap();
        assert!(bad.is_err(), "round {round}");
        let good = g.call(vec![Value::F32(16.0)]).unwrap().unwrap();
        assert_eq!(good, vec![Value::F32(17.0 + 4.0)], "round {round}");
    }
}

#[test]
fn error_rows_pass_through_routes_and_merges() {
    // x -> check (fails on negatives) -> route by x: big / small -> merge -> output.
    let mut g = GraphBuilder::new("routed");
    let x = g.input("x", scalar());
    let check = g.node(
        "check",
        map::function(
            [("x", scalar())],
            |v| if num(v[0]) < 0.0 { Err("negative".into()) } else { Ok(vec![v[0].clone()]) },
        )
        .bind([x]),
    );
    let gate = g.node("gate", route(check.field("x")).when("big", Condition::Gt(10.0)).otherwise("small"));
    let half = g.node(
        "half",
        map::function([("y", scalar())], |v| Ok(vec![Value::F32(num(v[0]) / 2.0)]))
            .bind([check.field("x")])
            .from([gate.branch("big")]),
    );
    let same = g.node(
        "same",
        map::function([("y", scalar())], |v| Ok(vec![v[0].clone()]))
            .bind([check.field("x")])
            .from([gate.branch("small")]),
    );
    let merged = g.node(
        "merged",
        weir_engine::builder::merge()
            .field("y", [half.field("y"), same.field("y")])
            .bind([half.stream(), same.stream()]),
    );
    g.output("y", merged.field("y"));
    let (_e, g) = start(g);
    let results = g.call_many(vec![vec![Value::F32(20.0)], vec![Value::F32(-5.0)], vec![Value::F32(3.0)]], 8);
    assert_eq!(results[0].as_ref().unwrap(), &vec![Value::F32(10.0)]);
    let e = results[1].as_ref().unwrap_err();
    assert_eq!((e.code, e.node.as_str(), e.message.as_str()), (ErrorCode::NodeFailed, "check", "negative"));
    assert_eq!(results[2].as_ref().unwrap(), &vec![Value::F32(3.0)]);
}

#[test]
fn bad_values_are_refused_at_submission_naming_the_field() {
    let (_e, g) = graph();
    match g.call(vec![Value::Str("one".into())]) {
        Err(SubmitError::Invalid(e)) => {
            assert_eq!(e.field.as_deref(), Some("x"));
            assert!(e.message.contains("expected f32, got str"));
        }
        other => panic!("expected an invalid-input refusal, got {other:?}"),
    }
}

#[test]
fn shutdown_answers_every_accepted_row() {
    let (engine, g) = graph();
    let (tx, rx) = crossbeam_channel::bounded(1000);
    for i in 0..1000 {
        let tx = tx.clone();
        g.submit(Submission::row(vec![Value::F32(i as f32)], Box::new(move |r| drop(tx.send(r))))).unwrap();
    }
    drop(tx);
    engine.shutdown();
    let answers: Vec<_> = rx.iter().collect();
    assert_eq!(answers.len(), 1000, "every accepted row is answered exactly once");
    assert!(matches!(g.call(vec![Value::F32(1.0)]), Err(SubmitError::Closed)));
}
