//! One test per way a graph can be wrong: each must fail `Plan::new` (what `weir check`
//! runs) with an error naming the file, the node and the field, and saying what was
//! expected.
//!
//! Over 600 lines, and one concept: the catalogue of graph errors, one short test each.
#![allow(clippy::unwrap_used)] // a test or benchmark fails loudly on the first surprise

use std::collections::HashMap;
use std::path::Path;

use candle_core::{Device, Tensor};
use weir_engine::builder::{combine, GraphBuilder, Model};
use weir_engine::load_plan;
use weir_operators::kernel::aggregate::Aggregate;
use weir_operators::kernel::model::{Activation, Arch, DenseLayer, DenseModel};
use weir_operators::{DType, FieldType};

/// A valid diamond-shaped graph; tests replace one piece of it.
const BASE: &str = r#"
name: broken
inputs:
  a: f32
  b: f32
  s: str
  v: f32[3]
nodes:
  m1:
    kind: model
    arch: linear
    weights: m1.safetensors
    input: input.a
  m2:
    kind: model
    arch: linear
    weights: m2.safetensors
    input: input.b
  sum:
    kind: combine
    aggregate: sum
    inputs: [m1.y, m2.y]
outputs:
  y: sum.y
"#;

fn save(dir: &Path, name: &str, tensors: &[(&str, Tensor)]) {
    let map: HashMap<String, Tensor> = tensors.iter().map(|(n, t)| (n.to_string(), t.clone())).collect();
    candle_core::safetensors::save(&map, dir.join(name)).unwrap();
}

fn linear(w: f32) -> Vec<(&'static str, Tensor)> {
    vec![
        ("layers.0.weight", Tensor::new(&[[w]], &Device::Cpu).unwrap()),
        ("layers.0.bias", Tensor::new(&[0.0f32], &Device::Cpu).unwrap()),
    ]
}

/// Writes `yaml` (after replacing `from` with `to`) and valid weights into a fresh
/// directory, lets `setup` break more, and returns the planning error's text.
fn error_of(from: &str, to: &str, setup: impl FnOnce(&Path)) -> String {
    assert!(BASE.contains(from), "the base graph contains {from:?}");
    let dir = tempfile::tempdir().unwrap();
    save(dir.path(), "m1.safetensors", &linear(1.0));
    save(dir.path(), "m2.safetensors", &linear(2.0));
    setup(dir.path());
    let path = dir.path().join("graph.yaml");
    std::fs::write(&path, BASE.replace(from, to)).unwrap();
    let err = load_plan(&path).expect_err("the broken graph must be rejected").to_string();
    assert!(err.contains("graph.yaml"), "the error names the file: {err}");
    err
}

fn assert_has(err: &str, parts: &[&str]) {
    for p in parts {
        assert!(err.contains(p), "error should contain {p:?}:\n{err}");
    }
}

#[test]
fn the_base_graph_is_valid() {
    let dir = tempfile::tempdir().unwrap();
    save(dir.path(), "m1.safetensors", &linear(1.0));
    save(dir.path(), "m2.safetensors", &linear(2.0));
    let path = dir.path().join("graph.yaml");
    std::fs::write(&path, BASE.replace("  s: str\n  v: f32[3]\n", "")).unwrap();
    load_plan(&path).unwrap();
}

#[test]
fn unknown_node_kind() {
    let err = error_of("kind: combine", "kind: combined", |_| {});
    assert_has(
        &err,
        &["node 'sum'", "field 'kind'", "unknown node kind 'combined'", "expected one of: model, embed, map"],
    );
}

#[test]
fn unknown_yaml_key() {
    let err = error_of("    input: input.b", "    input: input.b\n    max_batch: 4", |_| {});
    assert_has(&err, &["node 'm2'", "unknown field `max_batch`"]);
}

#[test]
fn dangling_input_unknown_node() {
    let err = error_of("inputs: [m1.y, m2.y]", "inputs: [m1.y, m3.y]", |_| {});
    assert_has(&err, &["node 'sum'", "field 'inputs[1]'", "unknown node 'm3'", "nodes are: input, m1, m2, sum"]);
}

#[test]
fn dangling_input_unknown_field() {
    let err = error_of("input: input.b", "input: input.bee", |_| {});
    assert_has(&err, &["node 'm2'", "field 'input'", "the graph 'input' has no field 'bee'", "a, b, s, v"]);
}

#[test]
fn duplicate_input() {
    let err = error_of("inputs: [m1.y, m2.y]", "inputs: [m1.y, m1.y]", |_| {});
    assert_has(&err, &["node 'sum'", "field 'inputs[0]'", "input 'm1.y' is listed twice"]);
}

#[test]
fn duplicate_node_name_in_builder() {
    let model = std::sync::Arc::new(DenseModel::from_layers(
        Arch::Linear,
        vec![DenseLayer { weight: vec![1.0], bias: vec![0.0], inputs: 1, outputs: 1 }],
        Activation::None,
        Activation::None,
    ));
    let mut g = GraphBuilder::new("dup");
    let a = g.input("a", FieldType::scalar(DType::F32));
    let m = g.node("m", Model::loaded(model.clone()).bind(a.clone()));
    g.node("m", Model::loaded(model).bind(a));
    g.output("y", m.field("y"));
    let err = g.plan().unwrap_err().to_string();
    assert_has(&err, &["builder", "node 'm' is declared twice"]);
}

#[test]
fn cycle() {
    let err = error_of("input: input.a", "input: sum.y", |_| {});
    assert_has(&err, &["cycle", "m1 -> sum -> m1"]);
}

#[test]
fn type_mismatch_between_connected_nodes() {
    let err = error_of("inputs: [m1.y, m2.y]", "inputs: [m1.y, input.s]", |_| {});
    assert_has(&err, &["node 'sum'", "field 'inputs'", "type mismatch", "input 1 is str, but input 0 is f32"]);
}

#[test]
fn shape_mismatch_model_width() {
    let err = error_of("input: input.b", "input: input.v", |_| {});
    assert_has(
        &err,
        &["node 'm2'", "field 'input'", "the model takes 1 numbers per row (f32[1]), but 'input.v' is f32[3]"],
    );
}

#[test]
fn shape_mismatch_declared_layers() {
    let err = error_of("    input: input.b", "    input: input.b\n    layers: [1, 2]", |_| {});
    assert_has(&err, &["node 'm2'", "field 'weights'", "declares layer sizes [1, 2], the file has [1, 1]"]);
}

#[test]
fn missing_weights_file() {
    let err = error_of("weights: m2.safetensors", "weights: nowhere.safetensors", |_| {});
    assert_has(&err, &["node 'm2'", "field 'weights'", "cannot read weights file", "nowhere.safetensors"]);
}

#[test]
fn malformed_weights_file() {
    let err = error_of("weights: m2.safetensors", "weights: junk.safetensors", |d| {
        std::fs::write(d.join("junk.safetensors"), b"definitely not safetensors").unwrap();
    });
    assert_has(&err, &["node 'm2'", "field 'weights'", "not a valid safetensors file"]);
}

#[test]
fn wrong_tensor_names() {
    let err = error_of("weights: m2.safetensors", "weights: renamed.safetensors", |d| {
        save(d, "renamed.safetensors", &[("w", Tensor::new(&[[2.0f32]], &Device::Cpu).unwrap())]);
    });
    assert_has(&err, &["node 'm2'", "field 'weights'", "no tensor 'layers.0.weight' (it has: w)"]);
}

#[test]
fn wrong_tensor_shapes() {
    let err = error_of("weights: m2.safetensors", "weights: bad.safetensors", |d| {
        save(
            d,
            "bad.safetensors",
            &[
                ("layers.0.weight", Tensor::new(&[[2.0f32]], &Device::Cpu).unwrap()),
                ("layers.0.bias", Tensor::new(&[0.0f32, 1.0], &Device::Cpu).unwrap()),
            ],
        );
    });
    assert_has(&err, &["node 'm2'", "tensor 'layers.0.bias' is F32 [2], expected F32 [1]"]);
}

#[test]
fn invalid_batching_size() {
    let err = error_of("    input: input.b", "    input: input.b\n    max_batch_size: 0", |_| {});
    assert_has(&err, &["node 'm2'", "field 'max_batch_size'", "0 is out of range (1 to 65536)"]);
}

#[test]
fn invalid_batching_wait() {
    let err = error_of("    input: input.b", "    input: input.b\n    max_wait_ms: 90000", |_| {});
    assert_has(&err, &["node 'm2'", "field 'max_wait_ms'", "out of range (0 to 60000)"]);
}

#[test]
fn invalid_batching_negative_wait() {
    let err = error_of("    input: input.b", "    input: input.b\n    max_wait_ms: -1", |_| {});
    assert_has(&err, &["node 'm2'", "invalid value: integer `-1`"]);
}

#[test]
fn invalid_replicas() {
    let err = error_of("    input: input.b", "    input: input.b\n    replicas: 0", |_| {});
    assert_has(&err, &["node 'm2'", "field 'replicas'", "out of range (1 to 256)"]);
}

#[test]
fn invalid_device() {
    let err = error_of("    input: input.b", "    input: input.b\n    device: tpu:0", |_| {});
    assert_has(&err, &["node 'm2'", "field 'device'", "unknown device 'tpu:0' (expected 'cpu' or 'cuda:N')"]);
}

#[cfg(not(feature = "cuda"))]
#[test]
fn cuda_device_without_cuda_build() {
    let err = error_of("    input: input.b", "    input: input.b\n    device: cuda:0", |_| {});
    assert_has(&err, &["node 'm2'", "field 'device'", "cuda:0 needs weir built with the 'cuda' feature"]);
    assert_has(&err, &["scripts/build-cuda"]);
}

#[test]
fn invalid_dtype() {
    let err = error_of("    input: input.b", "    input: input.b\n    dtype: int8", |_| {});
    assert_has(&err, &["node 'm2'", "field 'dtype'", "unknown dtype 'int8' (expected f32, bf16 or f16)"]);
}

#[test]
fn bad_input_type() {
    let err = error_of("  v: f32[3]", "  v: f32[three]", |_| {});
    assert_has(&err, &["node 'input'", "field 'v'", "dimension 'three' is not a positive integer"]);
}

#[test]
fn parallel_reads_need_a_combine() {
    let err = error_of(
        "  sum:\n    kind: combine\n    aggregate: sum\n    inputs: [m1.y, m2.y]",
        "  sum:\n    kind: map\n    op: concat\n    inputs: [m1.y, m2.y]",
        |_| {},
    );
    assert_has(&err, &["node 'sum'", "reads fields from parallel paths 'm1' and 'm2'", "combine"]);
}

#[test]
fn unused_node() {
    let err = error_of(
        "outputs:\n  y: sum.y",
        "  extra:\n    kind: map\n    op: argmax\n    input: input.v\noutputs:\n  y: sum.y",
        |_| {},
    );
    assert_has(&err, &["node 'extra'", "does not lead to the outputs"]);
}

const ROUTED: &str = "  gate:\n    kind: route\n    by: input.a\n    branches:\n      - name: big\n        when: {gt: 10}\n    default: small\n  m3:\n    kind: model\n    from: gate.big\n    arch: linear\n    weights: m1.safetensors\n    input: input.b\n";

#[test]
fn route_branch_not_merged_before_output() {
    let err = error_of("outputs:\n  y: sum.y", &format!("{ROUTED}outputs:\n  y: m3.y"), |_| {});
    assert_has(&err, &["node 'outputs'", "inside branch 'gate.big'", "merge the route's branches first"]);
}

#[test]
fn route_branch_leading_nowhere() {
    let err = error_of("outputs:\n  y: sum.y", &format!("{ROUTED}outputs:\n  y: sum.y"), |_| {});
    assert_has(&err, &["node 'gate'", "does not lead to the outputs"]);
}

#[test]
fn outputs_from_parallel_paths() {
    let err = error_of("outputs:\n  y: sum.y", "outputs:\n  y: m1.y\n  z: m2.y", |_| {});
    assert_has(&err, &["node 'outputs'", "the outputs read parallel paths 'm1' and 'm2'"]);
}

#[test]
fn combine_across_route_branches() {
    let base = "outputs:\n  y: sum.y";
    let err = error_of(base, &format!("{ROUTED}  after:\n    kind: combine\n    aggregate: sum\n    inputs: [m3.y, sum.y]\noutputs:\n  y: after.y"), |_| {});
    assert_has(&err, &["node 'after'", "joins 'm3' and 'sum', which sit on different route branches"]);
}

#[test]
fn merge_missing_a_branch() {
    let merge = "  both:\n    kind: merge\n    from: [m3]\n    fields:\n      y: [m3.y]\n";
    let err = error_of("outputs:\n  y: sum.y", &format!("{ROUTED}{merge}outputs:\n  y: sum.y\n"), |_| {});
    assert_has(&err, &["node 'both'", "field 'from'", "misses branch 'gate.small'"]);
}

#[test]
fn condition_type_mismatch() {
    let err = error_of(
        "outputs:\n  y: sum.y",
        &format!("{}outputs:\n  y: sum.y", ROUTED.replace("by: input.a", "by: input.s")),
        |_| {},
    );
    assert_has(&err, &["node 'gate'", "field 'branches.big.when'", "condition '> 10' cannot be tested on a str field"]);
}

#[test]
fn builder_combine_of_mismatched_shapes() {
    let mut g = GraphBuilder::new("shapes");
    let v = g.input("v", FieldType::vector(3));
    let w = g.input("w", FieldType::vector(4));
    let c = g.node("c", combine(Aggregate::Mean).bind([v, w]));
    g.output("y", c.field("y"));
    let err = g.plan().unwrap_err().to_string();
    assert_has(&err, &["builder", "node 'c'", "field 'inputs'", "input 1 is f32[4], but input 0 is f32[3]"]);
}

/// What the name rule says of a name that breaks it.
const NAME_RULE: &str = "must be non-empty and use only ASCII letters, digits, '_' and '-'";

#[test]
fn graph_names_outside_letters_digits_underscore_and_hyphen() {
    for (yaml, shown) in [
        (r#"'bro"ken'"#, r#""bro\"ken""#),
        ("'a b'", r#""a b""#),
        ("a.b", r#""a.b""#),
        ("a/b", r#""a/b""#),
        ("'a\\b'", r#""a\\b""#),
        ("\"a\\nb\"", r#""a\nb""#),
        ("naïve", r#""naïve""#),
        ("''", r#""""#),
    ] {
        let err = error_of("name: broken", &format!("name: {yaml}"), |_| {});
        assert_has(&err, &["field 'name'", &format!("graph name {shown} {NAME_RULE}"), "metric labels"]);
    }
    let mut g = GraphBuilder::new("two words");
    let a = g.input("a", FieldType::scalar(DType::F32));
    g.output("y", a);
    assert_has(&g.plan().unwrap_err().to_string(), &["builder", &format!("graph name \"two words\" {NAME_RULE}")]);
}

#[test]
fn node_names_outside_letters_digits_underscore_and_hyphen() {
    for (yaml, shown) in [(r#"'m"1'"#, r#""m\"1""#), ("'m 1'", r#""m 1""#), ("m:1", r#""m:1""#)] {
        let err = error_of("  m1:\n    kind", &format!("  {yaml}:\n    kind"), |_| {});
        assert_has(&err, &[&format!("node name {shown} {NAME_RULE}")]);
    }
    let err = error_of("  m1:\n    kind", "  input:\n    kind", |_| {});
    assert_has(&err, &["node 'input'", "'input' cannot name a node (reserved)"]);
}

#[test]
fn table_names_outside_letters_digits_underscore_and_hyphen() {
    let table =
        |name: &str| format!("tables:\n  {name}:\n    key: k\n    key_type: str\n    values: {{mean: f32}}\nnodes:\n");
    let err = error_of("nodes:\n", &table("acc.ounts"), |_| {});
    assert_has(&err, &["node 'tables'", &format!("table name \"acc.ounts\" {NAME_RULE}")]);
}

#[test]
fn names_with_hyphens_and_underscores_are_valid() {
    let dir = tempfile::tempdir().unwrap();
    save(dir.path(), "m1.safetensors", &linear(1.0));
    save(dir.path(), "m2.safetensors", &linear(2.0));
    let path = dir.path().join("graph.yaml");
    let yaml = BASE
        .replace("name: broken", "name: Risk-score_v2")
        .replace("  m1:\n    kind", "  first-model_1:\n    kind")
        .replace("[m1.y, m2.y]", "[first-model_1.y, m2.y]")
        .replace("  s: str\n  v: f32[3]\n", "");
    std::fs::write(&path, yaml).unwrap();
    let plan = load_plan(&path).unwrap();
    assert_eq!(plan.name, "Risk-score_v2");
    assert!(plan.step("first-model_1").is_some());
}

#[test]
fn serving_bound_of_zero() {
    let err = error_of("outputs:\n  y: sum.y\n", "outputs:\n  y: sum.y\nserving:\n  max_in_flight: 0\n", |_| {});
    assert_has(&err, &["node 'serving'", "field 'max_in_flight'", "at least 1"]);
}

#[test]
fn serving_unknown_key() {
    let err = error_of("outputs:\n  y: sum.y\n", "outputs:\n  y: sum.y\nserving:\n  timeout: 5\n", |_| {});
    assert_has(&err, &["serving", "unknown field `timeout`", "expected `max_in_flight` or `timeout_ms`"]);
}

#[test]
fn kafka_unknown_payload_format() {
    let section = "kafka:\n  bootstrap_servers: 127.0.0.1:9092\n  input_topics: [in]\n  output_topic: out\n  group_id: g\n  dead_letter_topic: dlq\n  format: avro\n";
    let err = error_of("outputs:\n  y: sum.y\n", &format!("outputs:\n  y: sum.y\n{section}"), |_| {});
    assert_has(&err, &["node 'kafka'", "field 'format'", "unknown payload format 'avro'", "json"]);
}

#[test]
fn kafka_without_input_topics() {
    let section = "kafka:\n  bootstrap_servers: 127.0.0.1:9092\n  input_topics: []\n  output_topic: out\n  group_id: g\n  dead_letter_topic: dlq\n";
    let err = error_of("outputs:\n  y: sum.y\n", &format!("outputs:\n  y: sum.y\n{section}"), |_| {});
    assert_has(&err, &["node 'kafka'", "field 'input_topics'", "at least one input topic"]);
}

/// m1 as a learning node: `extra` is added to its `learn:` section.
fn learning_m1(extra: &str) -> String {
    format!("    weights: m1.safetensors\n    input: input.a\n    learn:\n      lr: 0.1\n{extra}")
}

#[test]
fn learning_node_without_a_learning_rate() {
    let err = error_of(
        "    weights: m1.safetensors\n    input: input.a\n",
        "    input: input.a\n    learn:\n      optimizer: adam\n",
        |_| {},
    );
    assert_has(&err, &["node 'm1'", "missing field `lr`"]);
}

#[test]
fn learning_node_with_a_key_of_the_wrong_type() {
    let err = error_of(
        "    weights: m1.safetensors\n    input: input.a\n",
        &learning_m1("      key: input.b\n").replace("    weights: m1.safetensors\n", ""),
        |_| {},
    );
    assert_has(&err, &["node 'm1'", "field 'learn.key'", "a feedback key is i64 or str, but it is f32"]);
}

#[test]
fn learning_node_with_an_unknown_optimizer_or_too_few_classes() {
    let err = error_of(
        "    weights: m1.safetensors\n    input: input.a\n",
        &learning_m1("      optimizer: rmsprop\n"),
        |_| {},
    );
    assert_has(&err, &["node 'm1'", "field 'learn.optimizer'", "unknown optimizer 'rmsprop' (expected sgd or adam)"]);
    let err = error_of("    weights: m1.safetensors\n    input: input.a\n", &learning_m1("      classes: 1\n"), |_| {});
    assert_has(&err, &["field 'learn.classes'", "at least 2 classes, got 1"]);
}

#[test]
fn learning_node_starting_from_weights_of_another_shape() {
    // m1.safetensors is [1, 1]; softmax over 3 classes needs [1, 3].
    let err = error_of("    weights: m1.safetensors\n    input: input.a\n", &learning_m1("      classes: 3\n"), |_| {});
    assert_has(&err, &["node 'm1'", "field 'weights'", "linear model of sizes [1, 3]", "[1, 1]"]);
}

#[test]
fn two_learning_nodes_in_one_graph() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("graph.yaml");
    let yaml = BASE
        .replace("    weights: m1.safetensors\n    input: input.a\n", "    input: input.a\n    learn: {lr: 0.1}\n")
        .replace("    weights: m2.safetensors\n    input: input.b\n", "    input: input.b\n    learn: {lr: 0.1}\n");
    std::fs::write(&path, yaml).unwrap();
    let err = load_plan(&path).expect_err("two learning nodes").to_string();
    assert_has(&err, &["field 'learn'", "a graph has one learning node", "already learns"]);
}

#[test]
fn a_model_with_neither_weights_nor_learn() {
    let err = error_of("    weights: m1.safetensors\n", "", |_| {});
    assert_has(&err, &["node 'm1'", "field 'weights'", "needs 'weights'", "or 'learn:'"]);
}

// Keys a node would accept and ignore are refused: one test per key, each naming the
// node and the key.

/// The error of m1 as a learning node without weights, with `node` added at the node's
/// level and `learn` in its `learn:` section.
fn learning_m1_error(node: &str, learn: &str) -> String {
    let m1 = format!("    input: input.a\n{node}    learn:\n      lr: 0.1\n{learn}");
    error_of("    weights: m1.safetensors\n    input: input.a\n", &m1, |_| {})
}

/// A learning node computes inline on the worker: batching and placement keys do not
/// apply (they were accepted and ignored), even at their defaults.
fn assert_inline_only(key: &str, values: &[&str]) {
    for value in values {
        let err = learning_m1_error(&format!("    {key}: {value}\n"), "");
        assert_has(&err, &["node 'm1'", &format!("field '{key}'"), "does not apply to this learning node", "inline"]);
    }
}

#[test]
fn learning_node_with_replicas() {
    assert_inline_only("replicas", &["4", "1"]);
}

#[test]
fn learning_node_with_a_device() {
    assert_inline_only("device", &["cuda:0", "cpu"]);
}

#[test]
fn learning_node_with_a_dtype() {
    assert_inline_only("dtype", &["bf16", "f32"]);
}

#[test]
fn learning_node_with_max_batch_size() {
    assert_inline_only("max_batch_size", &["64", "32"]);
}

#[test]
fn learning_node_with_max_wait_ms() {
    assert_inline_only("max_wait_ms", &["0", "2"]);
}

#[test]
fn learning_node_with_a_hidden_activation() {
    let err = learning_m1_error("    activation: tanh\n", "");
    assert_has(&err, &["node 'm1'", "field 'activation'", "its model is linear: one layer, no hidden activation"]);
}

#[test]
fn learning_node_with_an_output_activation() {
    let err = learning_m1_error("    output_activation: softmax\n", "");
    assert_has(&err, &["node 'm1'", "field 'output_activation'", "logistic or softmax, as 'learn.classes' says"]);
}

#[test]
fn learning_node_without_weights_with_layers() {
    let err = learning_m1_error("    layers: [1, 1]\n", "");
    assert_has(&err, &["node 'm1'", "field 'layers'", "without 'weights' its sizes are its input's width"]);
}

/// With weights, a learning node's `layers` are checked against the file, as a plain
/// model's are (they were ignored).
#[test]
fn learning_node_with_layers_that_its_weights_do_not_have() {
    let err = error_of(
        "    weights: m1.safetensors\n    input: input.a\n",
        &format!("    layers: [1, 2]\n{}", learning_m1("")),
        |_| {},
    );
    assert_has(&err, &["node 'm1'", "field 'weights'", "declares layer sizes [1, 2], the file has [1, 1]"]);
}

/// Without `learn.key`, feedback carries its own features and no prediction is kept.
#[test]
fn learning_node_keeping_rows_without_a_key() {
    for value in ["10", "100000"] {
        let err = learning_m1_error("", &format!("      keep_rows: {value}\n"));
        assert_has(&err, &["node 'm1'", "field 'learn.keep_rows'", "only for feedback that names them by 'learn.key'"]);
    }
}

#[test]
fn learning_node_keeping_rows_for_a_time_without_a_key() {
    let err = learning_m1_error("", "      keep_ms: 1000\n");
    assert_has(&err, &["node 'm1'", "field 'learn.keep_ms'", "only for feedback that names them by 'learn.key'"]);
}

#[test]
fn learning_node_with_a_minibatch_timer_and_one_label_per_step() {
    let err = learning_m1_error("", "      update_every_ms: 100\n");
    assert_has(&err, &["node 'm1'", "field 'learn.update_every_ms'", "with 'update_every' 1 every label is a step"]);
}

#[test]
fn linear_model_with_a_hidden_activation() {
    let err = error_of("    input: input.b\n", "    input: input.b\n    activation: tanh\n", |_| {});
    assert_has(&err, &["node 'm2'", "field 'activation'", "does not apply to a linear model"]);
}

/// Plans a graph of one map node (`op` with `keys`) over inputs `v: f32[3]` and `a: f32`,
/// answering with its field `output`.
fn plan_map(op: &str, keys: &str, output: &str) -> Result<(), String> {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("graph.yaml");
    let yaml = format!(
        "name: map\ninputs:\n  v: f32[3]\n  a: f32\nnodes:\n  m:\n    kind: map\n    op: {op}\n{keys}outputs:\n  out: m.{output}\n"
    );
    std::fs::write(&path, yaml).unwrap();
    load_plan(&path).map(|_| ()).map_err(|e| e.to_string())
}

/// Each map op takes its own keys; given to another op, `key: value` would be ignored.
/// Returns how many ops refused it.
fn assert_map_ops_refuse(key: &str, value: &str) -> usize {
    // Each op, a valid node of it, its first output and its own keys.
    let ops = [
        (
            "standardize",
            "    input: input.v\n    mean: [0, 0, 0]\n    std: [1, 1, 1]\n",
            "y",
            &["mean", "std", "params"][..],
        ),
        ("argmax", "    input: input.v\n", "label", &["labels"]),
        ("threshold", "    input: input.a\n    threshold: 0.5\n", "label", &["threshold", "labels"]),
        ("select", "    fields: {w: input.a}\n", "w", &["fields"]),
        ("concat", "    inputs: [input.v, input.a]\n", "y", &[]),
    ];
    let mut refused = 0;
    for (op, node, output, _) in ops.into_iter().filter(|(_, _, _, own)| !own.contains(&key)) {
        plan_map(op, node, output).unwrap_or_else(|e| panic!("the {op} node plans: {e}"));
        let err = plan_map(op, &format!("{node}    {key}: {value}\n"), output).expect_err("refused");
        assert_has(
            &err,
            &["graph.yaml", "node 'm'", &format!("field '{key}'"), &format!("'{key}' does not apply to op '{op}'")],
        );
        refused += 1;
    }
    refused
}

#[test]
fn map_op_with_mean() {
    assert_eq!(assert_map_ops_refuse("mean", "[0, 0, 0]"), 4);
}

#[test]
fn map_op_with_std() {
    assert_eq!(assert_map_ops_refuse("std", "[1, 1, 1]"), 4);
}

#[test]
fn map_op_with_params() {
    assert_eq!(assert_map_ops_refuse("params", "p.safetensors"), 4);
}

#[test]
fn map_op_with_labels() {
    assert_eq!(assert_map_ops_refuse("labels", "[x, y]"), 3);
}

#[test]
fn map_op_with_a_threshold() {
    assert_eq!(assert_map_ops_refuse("threshold", "0.5"), 4);
}

#[test]
fn map_op_with_fields() {
    assert_eq!(assert_map_ops_refuse("fields", "{w: input.a}"), 4);
}

/// The error of planning the builder graph `x: f32[3]` → `m` (`model`) → `p`.
fn builder_error(model: Model) -> String {
    let mut g = GraphBuilder::new("learns");
    let x = g.input("x", FieldType::vector(3));
    let m = g.node("m", model.bind(x));
    g.output("p", m.field("y"));
    let err = g.plan().expect_err("the builder's graph must be rejected").to_string();
    assert!(err.starts_with("builder: node 'm'"), "the error names the builder and the node: {err}");
    err
}

fn learning() -> weir_engine::spec::LearnSpec {
    weir_engine::spec::LearnSpec::new(2, weir_operators::kernel::learn::Optimizer::Sgd { lr: 0.1 })
}

/// The builder can set what a learning node ignores: the plan refuses it too.
#[test]
fn builder_learning_node_with_batching() {
    use weir_engine::spec::Batching;
    use weir_operators::kernel::device::{DeviceSpec, Precision};
    let batching = [
        ("replicas", Batching { replicas: 4, ..Batching::default() }),
        ("device", Batching { device: DeviceSpec::Cuda(0), ..Batching::default() }),
        ("dtype", Batching { dtype: Precision::F16, ..Batching::default() }),
        ("max_batch_size", Batching { max_batch_size: 8, ..Batching::default() }),
        ("max_wait_ms", Batching { max_wait_ms: Some(0), ..Batching::default() }),
    ];
    for (key, b) in batching {
        let err = builder_error(Model::learning(learning()).batching(b));
        assert_has(&err, &[&format!("field '{key}'"), "does not apply to this learning node", "inline"]);
    }
}

#[test]
fn builder_learning_node_keeping_rows_without_a_key() {
    let learn = weir_engine::spec::LearnSpec { keep_rows: 10, ..learning() };
    let err = builder_error(Model::learning(learn));
    assert_has(&err, &["field 'learn.keep_rows'", "'learn.key'"]);
}

#[test]
fn builder_learning_node_keeping_rows_for_a_time_without_a_key() {
    let learn = weir_engine::spec::LearnSpec { keep_ms: None, ..learning() };
    let err = builder_error(Model::learning(learn));
    assert_has(&err, &["field 'learn.keep_ms'", "'learn.key'"]);
}

#[test]
fn builder_learning_node_with_a_minibatch_timer_and_one_label_per_step() {
    let learn = weir_engine::spec::LearnSpec { update_every_ms: Some(50), ..learning() };
    let err = builder_error(Model::learning(learn));
    assert_has(&err, &["field 'learn.update_every_ms'", "with 'update_every' 1"]);
}

/// A linear model built in Rust with a hidden activation: it has no hidden layer.
#[test]
fn builder_linear_model_with_a_hidden_activation() {
    let model = std::sync::Arc::new(DenseModel::from_layers(
        Arch::Linear,
        vec![DenseLayer { weight: vec![1.0, 1.0, 1.0], bias: vec![0.0], inputs: 3, outputs: 1 }],
        Activation::Tanh,
        Activation::None,
    ));
    let err = builder_error(Model::loaded(model));
    assert_has(&err, &["field 'activation'", "(tanh) does not apply to a linear model"]);
}

/// A kernel given as a Rust closure builds its own instances: a `dtype` the plan would
/// not pass on is refused, not ignored.
#[test]
fn builder_custom_kernel_with_a_dtype() {
    use weir_engine::spec::{Batching, ModelSource};
    use weir_operators::kernel::device::Precision;
    let ty = FieldType::vector(3);
    let source = ModelSource::Custom {
        description: "never built".into(),
        factory: std::sync::Arc::new(|| Err(weir_operators::kernel::KernelError::Custom("never built".into()))),
        input: ty.clone(),
        output: ty,
    };
    let model = Model::file(source).batching(Batching { dtype: Precision::Bf16, ..Batching::default() });
    let err = builder_error(model);
    assert_has(&err, &["field 'dtype'", "'dtype: bf16' does not apply to a kernel given as a Rust closure"]);
}
