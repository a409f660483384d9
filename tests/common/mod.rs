//! Helpers shared by the integration tests.
#![allow(dead_code)]

pub mod cluster;
pub mod gate;
pub mod kafka;
pub mod process;
pub mod python;
pub mod slow;
pub mod streams;

use std::path::PathBuf;
use std::process::{Command, Output};

use weir::datasets::{digits, Digit, Split};
use weir_engine::{load_plan, Engine, EngineConfig, GraphHandle, Plan, RowResult};
use weir_operators::Value;

/// Runs the `weir` binary with `args` in the repository root, to completion.
pub fn weir_cli(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_weir"))
        .args(args)
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .expect("weir runs")
}

/// Bytes as text, lossily.
pub fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// `graphs/NAME`.
pub fn graph_path(name: &str) -> PathBuf {
    weir::datasets::graphs_dir().join(name)
}

/// Plans a bundled graph file.
pub fn plan(name: &str) -> Plan {
    load_plan(&graph_path(name)).unwrap_or_else(|e| panic!("{name} should be valid: {e}"))
}

/// Starts an engine with one graph on `workers` workers.
pub fn start(plan: Plan, workers: usize) -> (Engine, GraphHandle) {
    let engine = Engine::start(vec![plan], EngineConfig { workers, ..EngineConfig::default() }).expect("engine starts");
    let graph = engine.graphs()[0].clone();
    (engine, graph)
}

/// The test split of digits as input rows.
pub fn digit_rows(split: Split) -> (Vec<Vec<Value>>, Vec<Digit>) {
    let set = digits(split).expect("bundled digits data");
    let rows = set.iter().map(|d| vec![Value::Tensor(d.pixels.clone().into())]).collect();
    (rows, set)
}

/// The accuracy of `label` answers (output 0, an `i64`) against the digits labels.
pub fn accuracy(results: &[RowResult], set: &[Digit]) -> f64 {
    let hits = results
        .iter()
        .zip(set)
        .filter(|(r, d)| matches!(r.as_ref().map(|v| &v[0]), Ok(Value::I64(l)) if *l == i64::from(d.label)))
        .count();
    hits as f64 / set.len() as f64
}
