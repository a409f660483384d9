//! The Open Inference Protocol (KServe v2; Triton's HTTP/REST and gRPC API): the binary
//! tensor data extension and the protocol's errors through the router, admission and
//! metrics as weir's own route has them, and Triton's own Python clients
//! (`tritonclient[http,grpc]`, pinned and installed by scripts/test under
//! `.tools/triton`) against `weir serve` over HTTP and gRPC (tests/protocol/
//! triton_clients.py), every answer compared with weir's own route's.

#![allow(clippy::unwrap_used)] // a test fails loudly on the first surprise

mod common;

use std::time::Duration;

use axum::body::Body;
use axum::http::{Request, StatusCode};
use common::gate::Gate;
use common::python::{parse_metrics, sample};
use common::slow::gated_plan;
use http_body_util::BodyExt;
use serde_json::{json, Value as Json};
use tower::ServiceExt;
use weir_connectors::http::{router, AppState, ServerConfig};
use weir_engine::spec::{Batching, Serving};
use weir_engine::{load_plan, Engine, EngineConfig};
use weir_operators::Shutdown;

fn diamond() -> (Engine, axum::Router) {
    let plan = load_plan(&weir::datasets::graphs_dir().join("diamond.yaml")).unwrap();
    let engine = Engine::start(vec![plan], EngineConfig::default()).unwrap();
    let app = router(AppState::new(engine.graphs(), ServerConfig::default(), Shutdown::new()));
    (engine, app)
}

/// The status, the `Inference-Header-Content-Length` header and the body of a request.
async fn call(app: &axum::Router, req: Request<Body>) -> (StatusCode, Option<usize>, Vec<u8>) {
    let res = app.clone().oneshot(req).await.unwrap();
    let header =
        res.headers().get("inference-header-content-length").map(|v| v.to_str().unwrap().parse::<usize>().unwrap());
    (res.status(), header, res.into_body().collect().await.unwrap().to_bytes().to_vec())
}

fn infer(path: &str, json: &Json, binary: &[u8]) -> Request<Body> {
    let header = serde_json::to_vec(json).unwrap();
    let mut body = header.clone();
    body.extend_from_slice(binary);
    let mut req = Request::post(path).header("content-type", "application/octet-stream");
    if !binary.is_empty() {
        req = req.header("inference-header-content-length", header.len());
    }
    req.body(Body::from(body)).unwrap()
}

fn raw(xs: &[f32]) -> Vec<u8> {
    xs.iter().flat_map(|x| x.to_le_bytes()).collect()
}

#[tokio::test]
async fn the_binary_extension_carries_raw_tensors_both_ways() {
    let (_engine, app) = diamond();
    // a and b raw after the JSON, c in the JSON, y asked for raw.
    let request = json!({
        "id": "r-1",
        "inputs": [
            {"name": "a", "shape": [3], "datatype": "FP32", "parameters": {"binary_data_size": 12}},
            {"name": "c", "shape": [3, 1], "datatype": "FP32", "data": [[3], [4], [0.5]]},
            {"name": "b", "shape": [3], "datatype": "FP32", "parameters": {"binary_data_size": 12}},
        ],
        "outputs": [{"name": "y", "parameters": {"binary_data": true}}],
    });
    let binary = [raw(&[1.0, 2.0, 10.0]), raw(&[2.0, 3.0, -1.0])].concat();
    let (status, header, body) = call(&app, infer("/v2/models/diamond/infer", &request, &binary)).await;
    assert_eq!(status, StatusCode::OK, "{}", String::from_utf8_lossy(&body));
    let length = header.expect("the answer gives its JSON's length");
    let head: Json = serde_json::from_slice(&body[..length]).unwrap();
    assert_eq!(
        head,
        json!({"model_name": "diamond", "model_version": "1", "id": "r-1", "outputs": [
            {"name": "y", "datatype": "FP32", "shape": [3], "parameters": {"binary_data_size": 12}}]})
    );
    assert_eq!(body[length..], raw(&[8.0, 12.0, 8.5]));
    // The same request in JSON only, at the version's path, answers the same numbers.
    let request = json!({"inputs": [
        {"name": "a", "shape": [3], "datatype": "FP32", "data": [1, 2, 10]},
        {"name": "b", "shape": [3], "datatype": "FP32", "data": [2, 3, -1]},
        {"name": "c", "shape": [3], "datatype": "FP32", "data": [3, 4, 0.5]}]});
    let (status, header, body) = call(&app, infer("/v2/models/diamond/versions/1/infer", &request, &[])).await;
    assert_eq!((status, header), (StatusCode::OK, None));
    let answer: Json = serde_json::from_slice(&body).unwrap();
    assert_eq!(answer["outputs"][0]["data"], json!([8.0, 12.0, 8.5]));
}

#[tokio::test]
async fn bad_requests_get_the_protocol_s_error_naming_what_was_wrong() {
    let (_engine, app) = diamond();
    let a = json!({"name": "a", "shape": [1], "datatype": "FP32", "data": [1]});
    let b = json!({"name": "b", "shape": [1], "datatype": "FP32", "data": [2]});
    let c = json!({"name": "c", "shape": [1], "datatype": "FP32", "data": [3]});
    let raw_c = json!({"name": "c", "shape": [1], "datatype": "FP32", "parameters": {"binary_data_size": 4}});
    let cases: Vec<(&str, Request<Body>, StatusCode, &str)> = vec![
        (
            "malformed JSON",
            Request::post("/v2/models/diamond/infer").body(Body::from("{\"inputs\": [")).unwrap(),
            StatusCode::BAD_REQUEST,
            "not the protocol's inference JSON",
        ),
        (
            "a field the protocol does not have",
            infer("/v2/models/diamond/infer", &json!({"inputs": [a, b, c], "input": []}), &[]),
            StatusCode::BAD_REQUEST,
            "unknown field `input`",
        ),
        (
            "unknown version",
            infer("/v2/models/diamond/versions/7/infer", &json!({"inputs": [a, b, c]}), &[]),
            StatusCode::NOT_FOUND,
            "model 'diamond' has no version '7'",
        ),
        (
            "unknown output",
            infer("/v2/models/diamond/infer", &json!({"inputs": [a, b, c], "outputs": [{"name": "z"}]}), &[]),
            StatusCode::BAD_REQUEST,
            "no output 'z'",
        ),
        (
            "an input with no data",
            infer(
                "/v2/models/diamond/infer",
                &json!({"inputs": [a, b, {"name": "c", "shape": [1], "datatype": "FP32"}]}),
                &[],
            ),
            StatusCode::BAD_REQUEST,
            "input 'c' has neither data nor binary_data_size",
        ),
        (
            "binary data shorter than claimed",
            infer("/v2/models/diamond/infer", &json!({"inputs": [a, b, raw_c]}), &[0, 0]),
            StatusCode::BAD_REQUEST,
            "input 'c': binary_data_size is 4 bytes, but only 2",
        ),
        (
            "binary data no input claims",
            infer("/v2/models/diamond/infer", &json!({"inputs": [a, b, raw_c]}), &[0; 9]),
            StatusCode::BAD_REQUEST,
            "5 bytes of binary data after the JSON belong to no input",
        ),
        (
            "a header length past the body",
            Request::post("/v2/models/diamond/infer")
                .header("inference-header-content-length", "999")
                .body(Body::from("{}"))
                .unwrap(),
            StatusCode::BAD_REQUEST,
            "Inference-Header-Content-Length",
        ),
        (
            "a string for a number",
            infer(
                "/v2/models/diamond/infer",
                &json!({"inputs": [a, b, {"name": "c", "shape": [1], "datatype": "FP32", "data": ["3"]}]}),
                &[],
            ),
            StatusCode::BAD_REQUEST,
            "input 'c': element 0 is not a number",
        ),
        (
            "a route of Triton's the protocol does not have",
            Request::get("/v2/models/diamond/config").body(Body::empty()).unwrap(),
            StatusCode::NOT_FOUND,
            "GET /v2/models/diamond/config: not a route of the Open Inference Protocol",
        ),
        (
            "unknown model's metadata",
            Request::get("/v2/models/nope").body(Body::empty()).unwrap(),
            StatusCode::NOT_FOUND,
            "no model named 'nope'",
        ),
    ];
    for (what, request, status, needle) in cases {
        let (got, _, body) = call(&app, request).await;
        let body: Json = serde_json::from_slice(&body).unwrap_or_else(|_| panic!("{what}: a JSON body"));
        let message = body["error"].as_str().unwrap_or_else(|| panic!("{what}: {{\"error\": \"...\"}}, got {body}"));
        assert_eq!(got, status, "{what}: {message}");
        assert!(message.contains(needle), "{what}: '{message}' should say '{needle}'");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn admission_readiness_and_metrics_are_those_of_weir_s_own_route() {
    let batching = Batching { max_batch_size: 4, max_wait_ms: Some(1), replicas: 1, ..Batching::default() };
    let gate = Gate::new();
    let (plan, _) = gated_plan(&gate, batching, Serving { max_in_flight: 4, timeout_ms: None });
    let engine = Engine::start(vec![plan], EngineConfig::default()).unwrap();
    let shutdown = Shutdown::new();
    let app = router(AppState::new(engine.graphs(), ServerConfig::default(), shutdown.clone()));
    let rows = |n: usize| json!({"inputs": [{"name": "x", "shape": [n], "datatype": "FP32", "data": vec![1.0; n]}]});
    // Four rows fill the bound while the gate holds them; a fifth is refused at once.
    let held = tokio::spawn({
        let app = app.clone();
        async move { call(&app, infer("/v2/models/slow/infer", &rows(4), &[])).await }
    });
    while engine.graphs()[0].in_flight() < 4 {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let (status, _, body) = call(&app, infer("/v2/models/slow/infer", &rows(1), &[])).await;
    let body: Json = serde_json::from_slice(&body).unwrap();
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{body}");
    assert!(body["error"].as_str().unwrap().contains("maximum of rows in flight (4)"), "{body}");
    gate.open();
    let (status, _, body) = held.await.unwrap();
    let body: Json = serde_json::from_slice(&body).unwrap();
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body["outputs"][0]["data"], json!([2.0, 2.0, 2.0, 2.0]));
    let res = app.clone().oneshot(Request::get("/metrics").body(Body::empty()).unwrap()).await.unwrap();
    let text = String::from_utf8(res.into_body().collect().await.unwrap().to_bytes().to_vec()).unwrap();
    let samples = parse_metrics(&text);
    let count = |status| sample(&samples, "weir_requests_total", &[("graph", "slow"), ("status", status)]);
    assert_eq!((count("200"), count("503")), (Some(1.0), Some(1.0)), "{text}");
    // Shutting down: not ready, over the protocol too.
    shutdown.request();
    for path in ["/v2/health/ready", "/v2/models/slow/ready"] {
        let (status, _, _) = call(&app, Request::get(path).body(Body::empty()).unwrap()).await;
        assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{path}");
    }
    let (status, _, _) = call(&app, Request::get("/v2/health/live").body(Body::empty()).unwrap()).await;
    assert_eq!(status, StatusCode::OK);
}

/// `python3` with the tritonclient packages scripts/test installs under `.tools/triton`.
fn triton_python() -> std::process::Command {
    let tools = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join(".tools/triton");
    assert!(
        tools.join("tritonclient").is_dir(),
        "tritonclient is not installed under .tools/triton: run scripts/test, which installs it (pinned)"
    );
    let mut python = std::process::Command::new("python3");
    python.arg("-S").env("PYTHONPATH", tools);
    python
}

#[test]
fn triton_s_clients_infer_over_http_and_grpc_what_weir_s_own_route_answers() {
    use std::io::Write;
    let grpc_port = common::process::free_port().to_string();
    let (_server, addr) = common::process::serve_http(
        std::path::Path::new(env!("CARGO_BIN_EXE_weir")),
        &["graphs/diamond.yaml", "graphs/digits.yaml", "graphs/embed.yaml", "--grpc-port", &grpc_port],
    );
    let digits = weir::datasets::digits(weir::datasets::Split::Test).unwrap();
    let digits = &digits[..100];
    let config = json!({
        "http": addr,
        "grpc": format!("127.0.0.1:{grpc_port}"),
        "grpc_same_port": addr,
        "digits": digits.iter().map(|d| d.pixels.clone()).collect::<Vec<_>>(),
        "labels": digits.iter().map(|d| d.label).collect::<Vec<_>>(),
    });
    let mut child = triton_python()
        .arg(std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/protocol/triton_clients.py"))
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("python3 runs");
    child.stdin.take().unwrap().write_all(config.to_string().as_bytes()).unwrap();
    let out = child.wait_with_output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    println!("{stdout}");
    assert!(
        out.status.success() && stdout.contains("all checks passed"),
        "the tritonclient checks failed:\n{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
}
