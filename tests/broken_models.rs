//! Model files a user brings that cannot serve: each fails `weir check` (exit 1) with a
//! message naming the graph file, the node, and what is wrong, before any row runs.
#![allow(clippy::unwrap_used)] // a test fails loudly on the first surprise

mod common;

use std::path::{Path, PathBuf};

fn zoo(file: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("graphs/zoo").join(file)
}

/// A graph with one model node `m` (`node` is its YAML body after `kind: model`) and
/// input `x: TYPE`, in a fresh directory; `weir check` on it must fail: its stderr.
fn check_fails(dir: &Path, x: &str, node: &str) -> String {
    let graph = dir.join("graph.yaml");
    let text = format!("name: g\ninputs:\n  x: {x}\nnodes:\n  m:\n    kind: model\n{node}outputs:\n  y: m.y\n");
    std::fs::write(&graph, text).unwrap();
    let out = common::weir_cli(&["check", graph.to_str().unwrap()]);
    let err = common::text(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "weir check refuses it: {err}");
    assert!(err.contains("graph.yaml") && err.contains("node 'm'"), "names the file and node: {err}");
    err
}

fn assert_has(err: &str, parts: &[&str]) {
    for p in parts {
        assert!(err.contains(p), "{p:?} in:\n{err}");
    }
}

fn onnx_node(path: &Path) -> String {
    format!("    format: onnx\n    path: {}\n    input: input.x\n    output: y\n", path.display())
}

#[test]
fn a_truncated_onnx_file() {
    let dir = tempfile::tempdir().unwrap();
    let bytes = std::fs::read(zoo("digits_mlp.onnx")).unwrap();
    let cut = dir.path().join("cut.onnx");
    std::fs::write(&cut, &bytes[..bytes.len() / 2]).unwrap();
    let err = check_fails(dir.path(), "f32[64]", &onnx_node(&cut));
    assert_has(&err, &["field 'format'", "cut.onnx", "not an ONNX model"]);
}

#[test]
fn an_onnx_op_weir_does_not_run() {
    let dir = tempfile::tempdir().unwrap();
    let err = check_fails(dir.path(), "f32[4]", &onnx_node(&zoo("bad/unsupported_op.onnx")));
    assert_has(&err, &["unsupported_op.onnx", "Einsum", "mystery"]);
}

#[test]
fn a_zipmap_names_the_exporter_option() {
    let dir = tempfile::tempdir().unwrap();
    let err = check_fails(dir.path(), "f32[64]", &onnx_node(&zoo("bad/zipmap.onnx")));
    assert_has(&err, &["zipmap.onnx", "ZipMap", "zipmap\": False"]);
}

#[test]
fn a_field_that_does_not_fit_the_onnx_input_names_both() {
    let dir = tempfile::tempdir().unwrap();
    let node = format!(
        "    format: onnx\n    path: {}\n    inputs:\n      pixels: input.x\n    outputs:\n      probabilities: y\n",
        zoo("digits_mlp.onnx").display()
    );
    let err = check_fails(dir.path(), "f32[63]", &node);
    assert_has(
        &err,
        &["field 'inputs.pixels'", "the model's input 'pixels' takes 64 numbers per row", "'input.x' is f32[63]"],
    );
}

#[test]
fn an_onnx_input_name_the_model_does_not_have() {
    let dir = tempfile::tempdir().unwrap();
    let node = format!(
        "    format: onnx\n    path: {}\n    inputs:\n      image: input.x\n",
        zoo("digits_mlp.onnx").display()
    );
    let err = check_fails(dir.path(), "f32[64]", &node);
    assert_has(&err, &["field 'inputs.image'", "no input 'image'", "pixels: 64 numbers per row"]);
}

#[test]
fn one_output_named_for_a_model_with_two() {
    let dir = tempfile::tempdir().unwrap();
    let err = check_fails(dir.path(), "f32[64]", &onnx_node(&zoo("digits_mlp.onnx")));
    assert_has(&err, &["field 'output'", "2 outputs (label: i64, probabilities: f32[10])", "outputs: {name: field}"]);
}

#[test]
fn a_tree_model_with_the_wrong_feature_count() {
    let dir = tempfile::tempdir().unwrap();
    let node = format!(
        "    format: xgboost\n    path: {}\n    input: input.x\n    outputs:\n      probability: y\n",
        zoo("phishing_xgb.json").display()
    );
    let err = check_fails(dir.path(), "f32[8]", &node);
    assert_has(&err, &["field 'input'", "the model takes 9 numbers per row (f32[9])", "'input.x' is f32[8]"]);
}

/// Trees compute on the CPU, in f32; an ONNX model in the types its file declares: a
/// graph that asks otherwise is refused at the key, whatever the build.
#[test]
fn placements_a_model_kind_cannot_take() {
    let dir = tempfile::tempdir().unwrap();
    for (file, format) in [("phishing_xgb.json", "xgboost"), ("phishing_lgbm.txt", "lightgbm")] {
        let node = format!(
            "    format: {format}\n    path: {}\n    input: input.x\n    outputs:\n      probability: y\n",
            zoo(file).display()
        );
        let err = check_fails(dir.path(), "f32[9]", &format!("{node}    device: cuda:0\n"));
        assert_has(&err, &["field 'device'", "tree ensembles run on the CPU only: remove 'device: cuda:0'"]);
        let err = check_fails(dir.path(), "f32[9]", &format!("{node}    dtype: bf16\n"));
        assert_has(&err, &["field 'dtype'", "'dtype: bf16' does not apply to a tree ensemble"]);
    }
    let node = format!("{}    dtype: f16\n", onnx_node(&zoo("digits_mlp.onnx")));
    let err = check_fails(dir.path(), "f32[64]", &node);
    assert_has(&err, &["field 'dtype'", "'dtype: f16' does not apply to an ONNX model", "float16"]);
}

#[test]
fn tree_objectives_weir_does_not_run() {
    let dir = tempfile::tempdir().unwrap();
    let xgb = std::fs::read_to_string(zoo("phishing_xgb.json")).unwrap();
    assert!(xgb.contains("\"binary:logistic\""));
    let ranker = dir.path().join("ranker.json");
    std::fs::write(&ranker, xgb.replace("\"binary:logistic\"", "\"rank:pairwise\"")).unwrap();
    let node = format!("    format: xgboost\n    path: {}\n    input: input.x\n    output: y\n", ranker.display());
    let err = check_fails(dir.path(), "f32[9]", &node);
    assert_has(&err, &["field 'format'", "ranker.json", "rank:pairwise"]);

    let lgbm = std::fs::read_to_string(zoo("phishing_lgbm.txt")).unwrap();
    assert!(lgbm.contains("objective=binary"));
    let ranker = dir.path().join("ranker.txt");
    std::fs::write(&ranker, lgbm.replacen("objective=binary sigmoid:1", "objective=poisson", 1)).unwrap();
    let node = format!("    format: lightgbm\n    path: {}\n    input: input.x\n    output: y\n", ranker.display());
    let err = check_fails(dir.path(), "f32[9]", &node);
    assert_has(&err, &["field 'format'", "ranker.txt", "poisson"]);
}

#[test]
fn a_truncated_tree_model() {
    let dir = tempfile::tempdir().unwrap();
    for (file, format) in [("phishing_xgb.json", "xgboost"), ("phishing_lgbm.txt", "lightgbm")] {
        let text = std::fs::read_to_string(zoo(file)).unwrap();
        let cut = dir.path().join(file);
        std::fs::write(&cut, &text[..text.len() / 3]).unwrap();
        let node = format!("    format: {format}\n    path: {}\n    input: input.x\n    output: y\n", cut.display());
        let err = check_fails(dir.path(), "f32[9]", &node);
        assert_has(&err, &["field 'format'", file]);
    }
}

#[test]
fn a_format_node_with_a_dense_key_or_no_path() {
    let dir = tempfile::tempdir().unwrap();
    let err = check_fails(
        dir.path(),
        "f32[9]",
        "    format: xgboost\n    weights: w.safetensors\n    input: input.x\n    output: y\n",
    );
    assert_has(&err, &["field 'weights'", "a 'format:' model reads its file from 'path'"]);
    let err = check_fails(dir.path(), "f32[9]", "    format: xgboost\n    input: input.x\n    output: y\n");
    assert_has(&err, &["field 'format'", "format 'xgboost' reads a model file: give it with 'path:'"]);
    let err =
        check_fails(dir.path(), "f32[9]", "    format: catboost\n    path: m.cbm\n    input: input.x\n    output: y\n");
    assert_has(&err, &["unknown model format or kernel 'catboost'", "lightgbm", "onnx", "xgboost"]);
}
