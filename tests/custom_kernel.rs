//! A custom kernel end to end: `examples/custom_kernel.rs` (weir's command line plus a
//! kernel written with candle) is built, serves `examples/custom_kernel/digits.yaml`
//! over HTTP, and answers the held-out digits exactly as weir's own dense model with the
//! same weights does, scores the same images from a Kafka topic, and replays the held-out Parquet file with the same answers; the plain `weir` refuses the graph, naming the unknown kernel.
#![allow(clippy::unwrap_used)] // a test fails loudly on the first surprise

mod common;

use std::path::PathBuf;
use std::process::Command;

use arrow_array::cast::AsArray;
use arrow_array::types::{Float32Type, Int64Type};
use common::kafka::{binary_logged, distinct_keys, read_until, Broker};
use common::process::{http_post, serve_http};
use rdkafka::producer::{FutureProducer, FutureRecord};
use std::time::Duration;
use weir::datasets::{digits, Split};
use weir_engine::yaml;
use weir_operators::Value;

const GRAPH: &str = "examples/custom_kernel/digits.yaml";

/// The same model as the kernel, from weir's own nodes: standardize, an MLP with softmax.
const BUILTIN: &str = r#"
name: digits-builtin
inputs:
  pixels: f32[64]
nodes:
  scaled:
    kind: map
    op: standardize
    input: input.pixels
    params: digits/standardize.safetensors
  mlp:
    kind: model
    arch: mlp
    layers: [64, 32, 10]
    activation: relu
    output_activation: softmax
    weights: digits/mlp.safetensors
    input: scaled.y
    output: probs
  top:
    kind: map
    op: argmax
    input: mlp.probs
outputs:
  label: top.label
  probs: mlp.probs
"#;

/// Builds the example (with the profile of this test's `weir`) and returns its path.
fn build_example() -> PathBuf {
    let weir = PathBuf::from(env!("CARGO_BIN_EXE_weir"));
    let profile_dir = weir.parent().unwrap();
    let release = profile_dir.file_name().is_some_and(|n| n == "release");
    let mut cargo = Command::new(env!("CARGO"));
    cargo.args(["build", "--locked", "--example", "custom_kernel"]).current_dir(env!("CARGO_MANIFEST_DIR"));
    if release {
        cargo.arg("--release");
    }
    assert!(cargo.status().unwrap().success(), "the example builds");
    profile_dir.join("examples").join("custom_kernel")
}

#[test]
fn a_custom_kernel_serves_over_http_and_matches_the_builtin_model() {
    let example = build_example();
    let (child, addr) = serve_http(&example, &[GRAPH]);

    let test = digits(Split::Test).unwrap();
    let rows: Vec<serde_json::Value> = test.iter().map(|d| serde_json::json!({ "pixels": d.pixels })).collect();
    let (status, body) = http_post(&addr, "/graphs/digits-custom", &serde_json::Value::from(rows).to_string());
    assert_eq!(status, 200, "{body}");
    let answers: serde_json::Value = serde_json::from_str(&body).unwrap();
    let answers = answers.as_array().unwrap();
    assert_eq!(answers.len(), test.len());

    // The same weights through weir's own nodes, in process.
    let mut correct = 0;
    for ((answer, (label, want)), digit) in answers.iter().zip(builtin_answers(&test)).zip(&test) {
        assert_eq!(answer["label"].as_i64().unwrap(), label, "{answer}");
        let probs: Vec<f64> = answer["probs"].as_array().unwrap().iter().map(|p| p.as_f64().unwrap()).collect();
        for (got, want) in probs.iter().zip(&want) {
            assert!((got - f64::from(*want)).abs() < 1e-5, "{probs:?} vs {want:?}");
        }
        correct += usize::from(label == i64::from(digit.label));
    }
    let accuracy = correct as f64 / test.len() as f64;
    assert!(accuracy > 0.95, "held-out accuracy {accuracy}");
    common::kafka::stop(child);

    // The same binary replays the held-out Parquet file: the answers HTTP gave, in order.
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("scored.arrow");
    let replay = Command::new(&example)
        .args(["replay", GRAPH, "--input", "graphs/digits/test.parquet", "--output", out.to_str().unwrap()])
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .unwrap();
    assert!(replay.status.success(), "{}", common::text(&replay.stderr));
    let mut replayed = Vec::new();
    for batch in arrow_ipc::reader::FileReader::try_new(std::fs::File::open(&out).unwrap(), None).unwrap() {
        let batch = batch.unwrap();
        let labels = batch.column_by_name("label").unwrap().as_primitive::<Int64Type>();
        let probs = batch.column_by_name("probs").unwrap().as_fixed_size_list();
        for row in 0..batch.num_rows() {
            let p = probs.value(row);
            let p: Vec<f32> = p.as_primitive::<Float32Type>().values().to_vec();
            replayed.push((labels.value(row), p));
        }
    }
    assert_eq!(replayed.len(), answers.len());
    for ((label, probs), answer) in replayed.iter().zip(answers) {
        assert_eq!(*label, answer["label"].as_i64().unwrap(), "{answer}");
        let http: Vec<f32> = answer["probs"].as_array().unwrap().iter().map(|p| p.as_f64().unwrap() as f32).collect();
        assert_eq!(probs, &http, "replay and HTTP answer alike");
    }
}

/// The held-out digits through weir's own nodes with the kernel's weights: label and
/// probabilities per image.
fn builtin_answers(test: &[weir::datasets::Digit]) -> Vec<(i64, Vec<f32>)> {
    let spec = yaml::parse(BUILTIN, "builtin.yaml", weir::datasets::graphs_dir()).unwrap();
    let (_engine, builtin) = common::start(weir_engine::Plan::new(&spec).unwrap(), 1);
    let inputs = test.iter().map(|d| vec![Value::Tensor(d.pixels.clone().into())]).collect();
    builtin
        .call_many(inputs, 64)
        .into_iter()
        .map(|r| {
            let r = r.unwrap();
            let (Value::I64(label), Value::Tensor(probs)) = (&r[0], &r[1]) else { panic!("{r:?}") };
            (*label, probs.to_vec())
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_custom_kernel_scores_a_kafka_stream() {
    let example = build_example();
    let test = digits(Split::Test).unwrap();
    let broker = Broker::start();
    broker.create_topics(&["in", "out", "dlq"], 2).await;
    let producer: FutureProducer = broker.config().create().unwrap();
    for (i, d) in test.iter().enumerate() {
        let payload = serde_json::json!({ "pixels": d.pixels }).to_string();
        producer
            .send(FutureRecord::to("in").key(&format!("d{i}")).payload(&payload), Duration::from_secs(10))
            .await
            .unwrap();
    }
    let (child, _log) = binary_logged(&example, &broker, GRAPH, &[]);
    let out = read_until(&broker, "out", 2, Duration::from_secs(60), distinct_keys(test.len()));
    common::kafka::stop(child);
    let want = builtin_answers(&test);
    let mut seen = vec![false; test.len()];
    for o in &out {
        let i: usize = o.key[1..].parse().unwrap();
        seen[i] = true;
        let answer: serde_json::Value = serde_json::from_slice(&o.payload).unwrap();
        assert_eq!(answer["label"].as_i64().unwrap(), want[i].0, "{answer}");
        for (got, w) in answer["probs"].as_array().unwrap().iter().zip(&want[i].1) {
            assert!((got.as_f64().unwrap() - f64::from(*w)).abs() < 1e-5, "{answer} vs {:?}", want[i].1);
        }
    }
    assert!(seen.iter().all(|s| *s), "every image answered");
}

#[test]
fn plain_weir_refuses_the_graph_naming_the_unknown_kernel() {
    let out = common::weir_cli(&["check", GRAPH]);
    assert_eq!(out.status.code(), Some(1));
    let err = common::text(&out.stderr);
    for part in ["digits.yaml", "node 'net'", "field 'format'", "unknown model format or kernel 'digits_net'"] {
        assert!(err.contains(part), "{part:?} in: {err}");
    }
}
