//! A custom kernel end to end: `examples/custom_kernel.rs` (weir's command line plus a
//! kernel written with candle) is built, serves `examples/custom_kernel/digits.yaml`
//! over HTTP, and answers the held-out digits exactly as weir's own dense model with the
//! same weights does; the plain `weir` refuses the graph, naming the unknown kernel.
#![allow(clippy::unwrap_used)] // a test fails loudly on the first surprise

mod common;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::path::PathBuf;
use std::process::{Command, Stdio};

use common::process::Running;
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

/// `POST path` with a JSON body to `addr`: the status and the body.
fn post(addr: &str, path: &str, body: &str) -> (u16, String) {
    let mut s = TcpStream::connect(addr).unwrap();
    write!(
        s,
        "POST {path} HTTP/1.1\r\nHost: {addr}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )
    .unwrap();
    let mut response = String::new();
    s.read_to_string(&mut response).unwrap();
    let status = response[9..12].parse().unwrap();
    let body = response.split_once("\r\n\r\n").map_or("", |(_, b)| b).to_string();
    (status, body)
}

/// The body may be chunked: the JSON between the first `[` and the last `]`.
fn json_array(body: &str) -> serde_json::Value {
    let (start, end) = (body.find('[').unwrap(), body.rfind(']').unwrap());
    serde_json::from_str(&body[start..=end]).unwrap()
}

#[test]
fn a_custom_kernel_serves_over_http_and_matches_the_builtin_model() {
    let example = build_example();
    let mut child = Running(
        Command::new(&example)
            .args(["serve", GRAPH, "--port", "0"])
            .current_dir(env!("CARGO_MANIFEST_DIR"))
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap(),
    );
    let mut lines = BufReader::new(child.stderr.take().unwrap()).lines();
    let addr = loop {
        let line = lines.next().expect("the example starts listening").unwrap();
        if let Some(addr) = line.strip_prefix("weir: listening on http://") {
            break addr.to_string();
        }
    };
    std::thread::spawn(move || lines.for_each(drop));

    let test = digits(Split::Test).unwrap();
    let rows: Vec<serde_json::Value> = test.iter().map(|d| serde_json::json!({ "pixels": d.pixels })).collect();
    let (status, body) = post(&addr, "/graphs/digits-custom", &serde_json::Value::from(rows).to_string());
    assert_eq!(status, 200, "{body}");
    let answers = json_array(&body);
    let answers = answers.as_array().unwrap();
    assert_eq!(answers.len(), test.len());

    // The same weights through weir's own nodes, in process.
    let spec = yaml::parse(BUILTIN, "builtin.yaml", weir::datasets::graphs_dir()).unwrap();
    let (_engine, builtin) = common::start(weir_engine::Plan::new(&spec).unwrap(), 1);
    let inputs = test.iter().map(|d| vec![Value::Tensor(d.pixels.clone().into())]).collect();
    let expected = builtin.call_many(inputs, 64);
    let mut correct = 0;
    for ((answer, expected), digit) in answers.iter().zip(expected).zip(&test) {
        let expected = expected.unwrap();
        let label = answer["label"].as_i64().unwrap();
        assert_eq!(Value::I64(label), expected[0], "{answer}");
        let probs: Vec<f64> = answer["probs"].as_array().unwrap().iter().map(|p| p.as_f64().unwrap()).collect();
        let Value::Tensor(want) = &expected[1] else { panic!("probabilities are a tensor: {:?}", expected[1]) };
        for (got, want) in probs.iter().zip(want.iter()) {
            assert!((got - f64::from(*want)).abs() < 1e-5, "{probs:?} vs {want:?}");
        }
        correct += usize::from(label == i64::from(digit.label));
    }
    let accuracy = correct as f64 / test.len() as f64;
    assert!(accuracy > 0.95, "held-out accuracy {accuracy}");
    common::kafka::stop(child);
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
