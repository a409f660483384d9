//! The `weir` binary as a user runs it: real processes, real files.
#![allow(clippy::unwrap_used)] // a test or benchmark fails loudly on the first surprise

mod common;

use std::path::Path;

use common::{text, weir_cli as weir};

#[test]
fn check_prints_the_plan_of_every_bundled_graph() {
    let out = weir(&["check", "graphs/diamond.yaml", "graphs/digits.yaml", "graphs/digits-early-exit.yaml"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let stdout = text(&out.stdout);
    assert!(stdout.contains("graph 'digits' (graphs/digits.yaml): OK"));
    assert!(stdout.contains("mlp (mlp [64, 32, 10], batch 32, adaptive, x1 cpu)  <- scaled"));
    assert!(stdout.contains("branch sure: when >= 0.9"));
}

#[test]
fn check_fails_with_exit_1_on_a_broken_graph() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("bad.yaml");
    std::fs::write(&path, "name: bad\ninputs: {a: f32}\nnodes:\n  m: {kind: magic}\noutputs: {y: m.y}\n").unwrap();
    let out = weir(&["check", path.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1));
    let stderr = text(&out.stderr);
    assert!(stderr.contains("bad.yaml: node 'm', field 'kind': unknown node kind 'magic'"), "{stderr}");
}

#[test]
fn graph_draws_dot_and_mermaid() {
    let dot = weir(&["graph", "graphs/digits-early-exit.yaml", "--format", "dot"]);
    assert!(dot.status.success());
    let dot = text(&dot.stdout);
    assert!(dot.starts_with("digraph \"digits_early_exit\""));
    assert!(dot.contains("\"gate\" -> \"mlp\" [label=\"unsure\"];"));
    let mermaid = text(&weir(&["graph", "graphs/diamond.yaml", "--format", "mermaid"]).stdout);
    assert!(mermaid.starts_with("flowchart LR"));
    assert!(mermaid.contains("m1 --> sum"));
}

#[test]
fn run_answers_every_line_in_order_with_errors_as_lines() {
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("rows.jsonl");
    let output = dir.path().join("out.jsonl");
    let mut lines = String::new();
    for i in 0..300 {
        match i % 50 {
            7 => lines.push_str("{\"a\": 1, \"b\": \"two\", \"c\": 3}\n"),
            8 => lines.push_str("not json\n"),
            _ => lines.push_str(&format!("{{\"a\": {i}, \"b\": 2, \"c\": 3}}\n")),
        }
    }
    std::fs::write(&input, lines).unwrap();
    let out = weir(&[
        "run",
        "graphs/diamond.yaml",
        "--input",
        input.to_str().unwrap(),
        "--output",
        output.to_str().unwrap(),
        "--workers",
        "2",
    ]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(text(&out.stderr).contains("300 rows, 12 errors"), "{}", text(&out.stderr));
    let answers: Vec<serde_json::Value> =
        std::fs::read_to_string(&output).unwrap().lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    assert_eq!(answers.len(), 300);
    for (i, a) in answers.iter().enumerate() {
        match i % 50 {
            7 => assert_eq!(a["error"]["field"], "b", "line {i}: {a}"),
            8 => assert_eq!(a["error"]["code"], "invalid_input", "line {i}: {a}"),
            _ => assert_eq!(a["y"].as_f64(), Some(i as f64 + 7.0), "line {i}: {a}"),
        }
    }
}

#[test]
fn run_fails_with_exit_2_on_a_missing_input_file() {
    let out = weir(&["run", "graphs/diamond.yaml", "--input", "no/such/file.jsonl"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(text(&out.stderr).contains("cannot open input no/such/file.jsonl"));
}

#[test]
fn the_bundled_sample_runs() {
    let sample = Path::new(env!("CARGO_MANIFEST_DIR")).join("graphs/digits/sample.jsonl");
    let out = weir(&["run", "graphs/digits.yaml", "--input", sample.to_str().unwrap()]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let labels: Vec<i64> = text(&out.stdout)
        .lines()
        .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap()["label"].as_i64().unwrap())
        .collect();
    assert_eq!(labels, vec![0, 1, 2, 3, 4]);
}
