//! The HTTP endpoint: handlers through the `Router` without sockets, then real sockets
//! on 127.0.0.1:0 for concurrency, overload, deadlines and shutdown, and the `weir serve`
//! binary stopped by SIGTERM.
//!
//! Over 600 lines, and one concept: the HTTP endpoint's behaviour, end to end.
#![allow(clippy::unwrap_used)] // a test or benchmark fails loudly on the first surprise

mod common;

use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::body::Body;
use axum::http::{Request, StatusCode};
use common::gate::Gate;
use common::python::{parse_metrics, python_tools, require_python_module, sample, Sample};
use common::slow::{gated_plan, slow_plan};
use http_body_util::BodyExt;
use serde_json::{json, Value as Json};
use tower::ServiceExt;
use weir_connectors::http::exposition::{MetricType, MetricsText};
use weir_connectors::http::{self, AppState, ServerConfig};
use weir_engine::spec::{Batching, Serving};
use weir_engine::{load_plan, Engine, EngineConfig, Plan};
use weir_operators::Shutdown;

fn bundled(names: &[&str]) -> Engine {
    let plans =
        names.iter().map(|n| load_plan(&weir::datasets::graphs_dir().join(format!("{n}.yaml"))).unwrap()).collect();
    Engine::start(plans, EngineConfig::default()).unwrap()
}

async fn call(app: &axum::Router, req: Request<Body>) -> (StatusCode, axum::http::HeaderMap, Json) {
    let res = app.clone().oneshot(req).await.unwrap();
    let status = res.status();
    let headers = res.headers().clone();
    let bytes = res.into_body().collect().await.unwrap().to_bytes();
    let json = serde_json::from_slice(&bytes).unwrap_or_else(|_| Json::String(String::from_utf8_lossy(&bytes).into()));
    (status, headers, json)
}

fn post(path: &str, body: &str) -> Request<Body> {
    Request::post(path).header("content-type", "application/json").body(Body::from(body.to_string())).unwrap()
}

fn get(path: &str) -> Request<Body> {
    Request::get(path).body(Body::empty()).unwrap()
}

#[tokio::test]
async fn diamond_and_digits_answer_one_row_and_arrays_in_order() {
    let engine = bundled(&["diamond", "digits"]);
    let app = http::router(AppState::new(engine.graphs(), ServerConfig::default(), Shutdown::new()));
    let (status, _, body) = call(&app, post("/graphs/diamond", r#"{"a":1,"b":2,"c":3}"#)).await;
    assert_eq!((status, body), (StatusCode::OK, json!({"y": 8.0})));
    let rows: Vec<Json> = (0..50).map(|i| json!({"a": i, "b": 1, "c": 0.5})).collect();
    let (status, _, body) = call(&app, post("/graphs/diamond", &Json::Array(rows).to_string())).await;
    assert_eq!(status, StatusCode::OK);
    let ys: Vec<f64> = body.as_array().unwrap().iter().map(|o| o["y"].as_f64().unwrap()).collect();
    assert_eq!(ys, (0..50).map(|i| i as f64 + 2.5).collect::<Vec<_>>());

    let digits = weir::datasets::digits(weir::datasets::Split::Test).unwrap();
    let mut correct = 0;
    for d in digits.iter().take(40) {
        let (status, _, body) = call(&app, post("/graphs/digits", &json!({"pixels": d.pixels}).to_string())).await;
        assert_eq!(status, StatusCode::OK, "{body}");
        let probs = body["probs"].as_array().unwrap();
        assert_eq!(probs.len(), 10);
        let sum: f64 = probs.iter().map(|p| p.as_f64().unwrap()).sum();
        assert!((sum - 1.0).abs() < 1e-4, "probabilities sum to 1: {sum}");
        correct += usize::from(body["label"].as_i64().unwrap() == i64::from(d.label));
    }
    assert!(correct >= 37, "{correct}/40 held-out digits right over HTTP");
}

#[tokio::test]
async fn bad_input_gets_a_4xx_json_error_naming_what_was_wrong() {
    let engine = bundled(&["diamond", "digits"]);
    let config = ServerConfig { body_limit: 1024, ..ServerConfig::default() };
    let app = http::router(AppState::new(engine.graphs(), config, Shutdown::new()));
    let cases: Vec<(Request<Body>, StatusCode, &str, Option<&str>)> = vec![
        (post("/graphs/diamond", r#"{"a":1,"b":"#), StatusCode::BAD_REQUEST, "malformed_json", None),
        (
            Request::post("/graphs/diamond").header("content-type", "text/plain").body(Body::from("{}")).unwrap(),
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "unsupported_media_type",
            None,
        ),
        (
            Request::post("/graphs/diamond").body(Body::from("{}")).unwrap(),
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "unsupported_media_type",
            None,
        ),
        (
            post("/graphs/diamond", &format!(r#"{{"a":1,"b":2,"c":3,"pad":"{}"}}"#, "x".repeat(2000))),
            StatusCode::PAYLOAD_TOO_LARGE,
            "body_too_large",
            None,
        ),
        (post("/graphs/diamond", r#"{"a":1,"b":2}"#), StatusCode::UNPROCESSABLE_ENTITY, "invalid_input", Some("c")),
        (
            post("/graphs/diamond", r#"{"a":1,"b":"two","c":3}"#),
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_input",
            Some("b"),
        ),
        (
            post("/graphs/diamond", r#"[{"a":1,"b":2,"c":3},{"a":1,"c":3}]"#),
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_input",
            Some("b"),
        ),
        (
            post("/graphs/digits", r#"{"pixels":[1,2,3]}"#),
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_input",
            Some("pixels"),
        ),
        (post("/graphs/diamond", "42"), StatusCode::UNPROCESSABLE_ENTITY, "invalid_input", None),
        (post("/graphs/nope", "{}"), StatusCode::NOT_FOUND, "unknown_graph", None),
        (get("/graphs/diamond"), StatusCode::METHOD_NOT_ALLOWED, "method_not_allowed", None),
        (get("/nothing/here"), StatusCode::NOT_FOUND, "not_found", None),
        (
            Request::post("/graphs/diamond")
                .header("content-type", "application/json")
                .header("x-request-timeout-ms", "soon")
                .body(Body::from(r#"{"a":1,"b":2,"c":3}"#))
                .unwrap(),
            StatusCode::BAD_REQUEST,
            "invalid_header",
            Some("x-request-timeout-ms"),
        ),
    ];
    for (req, status, code, field) in cases {
        let what = format!("{} {}", req.method(), req.uri());
        let (got, _, body) = call(&app, req).await;
        assert_eq!(got, status, "{what}: {body}");
        assert_eq!(body["error"]["code"], code, "{what}: {body}");
        assert!(!body["error"]["message"].as_str().unwrap().is_empty());
        if let Some(f) = field {
            assert_eq!(body["error"]["field"], f, "{what}: {body}");
        }
    }
    let (_, _, body) = call(&app, post("/graphs/diamond", r#"[{"a":1,"b":2,"c":3},{"a":1,"c":3}]"#)).await;
    assert!(body["error"]["message"].as_str().unwrap().starts_with("row 1:"), "{body}");
}

#[tokio::test]
async fn a_failing_or_panicking_model_answers_500_naming_the_node_and_others_are_unaffected() {
    let batching = Batching { max_batch_size: 1, max_wait_ms: Some(0), replicas: 1, ..Batching::default() };
    let (plan, _) = slow_plan(Duration::ZERO, batching, Serving::default());
    let engine = Engine::start(vec![plan], EngineConfig::default()).unwrap();
    let app = http::router(AppState::new(engine.graphs(), ServerConfig::default(), Shutdown::new()));
    for bad in ["-1", "666"] {
        let (status, _, body) = call(&app, post("/graphs/slow", &format!(r#"{{"x":{bad}}}"#))).await;
        assert_eq!(status, StatusCode::INTERNAL_SERVER_ERROR, "{body}");
        assert_eq!(body["error"]["node"], "double");
        assert_eq!(body["error"]["code"], "model_failed");
        let (status, _, body) = call(&app, post("/graphs/slow", r#"{"x":4}"#)).await;
        assert_eq!((status, body), (StatusCode::OK, json!({"y": 8.0})), "the server keeps serving");
    }
    // In an array, the failed row is an error element; the others are answers.
    let (status, _, body) = call(&app, post("/graphs/slow", r#"[{"x":1},{"x":-1},{"x":2}]"#)).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body[0], json!({"y": 2.0}));
    assert_eq!(body[1]["error"]["node"], "double");
    assert_eq!(body[2], json!({"y": 4.0}));
    let (_, _, metrics) = call(&app, get("/metrics")).await;
    let metrics = metrics.as_str().unwrap().to_string();
    assert!(
        metrics.contains(r#"weir_row_errors_total{graph="slow",node="double",code="model_failed"} 3"#),
        "{metrics}"
    );
    assert!(metrics.contains(r#"weir_requests_total{graph="slow",status="500"} 2"#), "{metrics}");
}

#[tokio::test]
async fn graphs_openapi_health_readiness_and_metrics() {
    let engine = bundled(&["diamond", "digits", "accounts"]);
    let stop = Shutdown::new();
    let state = AppState::new(engine.graphs(), ServerConfig::default(), stop.clone());
    let app = http::router(Arc::clone(&state));
    let (status, _, body) = call(&app, get("/graphs")).await;
    assert_eq!(status, StatusCode::OK);
    let names: Vec<&str> = body["graphs"].as_array().unwrap().iter().map(|g| g["name"].as_str().unwrap()).collect();
    assert_eq!(names, ["diamond", "digits", "accounts"]);
    assert_eq!(body["graphs"][1]["inputs"]["properties"]["pixels"]["maxItems"], 64);
    assert_eq!(body["graphs"][1]["outputs"]["required"], json!(["label", "probs"]));

    let (status, _, doc) = call(&app, get("/openapi.json")).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(doc["openapi"], "3.0.3");
    assert!(doc["paths"]["/graphs/digits"]["post"].is_object());
    let upsert = &doc["paths"]["/graphs/accounts/tables/accounts"]["post"];
    assert!(upsert["responses"]["202"].is_object(), "{upsert}");
    let change = &doc["components"]["schemas"]["accounts_accounts_change"];
    assert_eq!(change["properties"]["key"]["type"], "string");
    assert_eq!(change["properties"]["values"]["required"], json!(["mean", "std", "country"]));
    validate_openapi(&doc);

    assert_eq!(call(&app, get("/healthz")).await.0, StatusCode::OK);
    assert_eq!(call(&app, get("/readyz")).await.0, StatusCode::OK);
    call(&app, post("/graphs/digits", &json!({"pixels": vec![0.0; 64]}).to_string())).await;
    let (status, headers, metrics) = call(&app, get("/metrics")).await;
    assert_eq!(status, StatusCode::OK);
    assert!(headers["content-type"].to_str().unwrap().starts_with("text/plain"));
    let metrics = metrics.as_str().unwrap().to_string();
    for needle in [
        r#"weir_requests_total{graph="digits",status="200"} 1"#,
        r#"weir_request_duration_seconds_count{graph="digits"} 1"#,
        r#"weir_rows_in_flight{graph="digits"} 0"#,
        r#"weir_batch_size_count{graph="digits",node="mlp"} 1"#,
        r#"weir_queue_wait_seconds_count{graph="digits",node="softmax"} 1"#,
        r#"weir_forward_passes_total{graph="digits",node="mlp"} 1"#,
    ] {
        assert!(metrics.contains(needle), "missing {needle} in\n{metrics}");
    }
    stop.request();
    assert_eq!(call(&app, get("/readyz")).await.0, StatusCode::SERVICE_UNAVAILABLE);
}

/// Checks the document with the Python `openapi-spec-validator` (a standard validator).
fn validate_openapi(doc: &Json) {
    require_python_module("openapi_spec_validator");
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("openapi.json");
    std::fs::write(&path, doc.to_string()).unwrap();
    let out = python_tools().args(["-m", "openapi_spec_validator"]).arg(&path).output().expect("python3 runs");
    assert!(
        out.status.success(),
        "openapi-spec-validator rejected the document:\n{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Whether `path` (of the OpenAPI document) is route `template` with each `{parameter}`
/// filled by one non-empty segment.
fn fills(template: &str, path: &str) -> bool {
    let (template, path): (Vec<&str>, Vec<&str>) = (template.split('/').collect(), path.split('/').collect());
    template.len() == path.len()
        && template.iter().zip(&path).all(|(t, p)| t == p || (t.starts_with('{') && t.ends_with('}') && !p.is_empty()))
}

#[tokio::test]
async fn openapi_documents_every_route_the_router_serves_and_nothing_else() {
    // A graph with tables and a learning graph, so every per-graph route applies.
    let engine = bundled(&["digits", "accounts", "phishing-online"]);
    let app = http::router(AppState::new(engine.graphs(), ServerConfig::default(), Shutdown::new()));
    let (status, _, doc) = call(&app, get("/openapi.json")).await;
    assert_eq!(status, StatusCode::OK);
    let paths = doc["paths"].as_object().unwrap();
    let routes = http::routes();
    assert!(routes.contains(&(http::RouteMethod::Post, "/graphs/{name}/feedback")), "{routes:?}");
    for (method, template) in &routes {
        let method = method.openapi_key();
        assert!(
            paths.iter().any(|(path, item)| fills(template, path) && item[method].is_object()),
            "the router serves {method} {template}, which /openapi.json does not document: {:?}",
            paths.keys().collect::<Vec<_>>()
        );
    }
    for (path, item) in paths {
        for method in item.as_object().unwrap().keys() {
            assert!(
                routes.iter().any(|(m, template)| m.openapi_key() == method && fills(template, path)),
                "/openapi.json documents {method} {path}, which no route serves"
            );
        }
    }
    // Per graph, the routes that apply to it, and only those.
    for path in ["/graphs/digits", "/graphs/accounts", "/graphs/phishing_online", "/graphs/phishing_online/feedback"] {
        assert!(doc["paths"][path]["post"].is_object(), "{path}");
    }
    assert!(doc["paths"]["/graphs/accounts/tables/accounts"]["post"].is_object());
    assert!(doc["paths"].get("/graphs/digits/feedback").is_none(), "digits does not learn");
    let label = &doc["components"]["schemas"]["phishing_online_feedback"];
    assert_eq!(label["properties"]["key"]["type"], "integer", "{label}");
    assert_eq!(label["properties"]["features"]["maxItems"], 9, "{label}");
    assert_eq!(label["required"], json!(["label"]), "{label}");
    validate_openapi(&doc);
}

/// A graph whose graph, table and node names have `-` and `_`; a key missing from
/// its table fails the row at the lookup.
const RISK_GRAPH: &str = r#"
name: risk-score_v2
inputs:
  account: str
  amount: f32
tables:
  account-stats_v1:
    key: account
    key_type: str
    values:
      mean: f32
nodes:
  look-up_1:
    kind: lookup
    table: account-stats_v1
    key: input.account
    missing: error
  z-score:
    kind: map
    op: concat
    inputs: [input.amount, look-up_1.mean]
outputs:
  y: z-score.y
"#;

/// `GET /metrics`: its text and its samples as the parser reads them.
async fn scrape(app: &axum::Router) -> (String, Vec<Sample>) {
    let res = app.clone().oneshot(get("/metrics")).await.unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    let content_type = res.headers()["content-type"].to_str().unwrap().to_string();
    assert!(content_type.starts_with("text/plain; version=0.0.4"), "{content_type}");
    let text = String::from_utf8(res.into_body().collect().await.unwrap().to_bytes().to_vec()).unwrap();
    let samples = parse_metrics(&text);
    (text, samples)
}

#[tokio::test]
async fn metrics_parse_with_the_prometheus_parser_and_count_what_was_served() {
    let dir = tempfile::tempdir().unwrap();
    let risk = dir.path().join("risk.yaml");
    std::fs::write(&risk, RISK_GRAPH).unwrap();
    let graphs = weir::datasets::graphs_dir();
    let plans = vec![
        load_plan(&risk).unwrap(),
        load_plan(&graphs.join("phishing-online.yaml")).unwrap(),
        load_plan(&graphs.join("digits.yaml")).unwrap(),
    ];
    let engine = Engine::start(plans, EngineConfig::default()).unwrap();
    let state = AppState::new(engine.graphs(), ServerConfig::default(), Shutdown::new());
    // A family added from outside, with a label value that needs every escape.
    let awkward = "a \"quoted\" C:\\path\nand a second line";
    state.add_metrics(Arc::new(move |text: &mut MetricsText| {
        text.family("weir_test_awkward_total", MetricType::Counter, "Added by the test.");
        text.sample("weir_test_awkward_total", &[("topic", awkward)], 7u64);
    }));
    let app = http::router(Arc::clone(&state));

    // risk-score_v2: two keys in its table; of four rows, two have a key it lacks.
    let changes = r#"[{"key": "acc-1", "values": {"mean": 2.0}}, {"key": "acc-2", "values": {"mean": 3.0}}]"#;
    let (status, _, body) = call(&app, post("/graphs/risk-score_v2/tables/account-stats_v1", changes)).await;
    assert_eq!((status, body), (StatusCode::ACCEPTED, json!({"accepted": 2})));
    let (status, _, body) = call(&app, post("/graphs/risk-score_v2", r#"{"account": "acc-1", "amount": 5}"#)).await;
    assert_eq!((status, body), (StatusCode::OK, json!({"y": [5.0, 2.0]})));
    let (status, _, body) = call(&app, post("/graphs/risk-score_v2", r#"{"account": "nobody", "amount": 5}"#)).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
    assert_eq!(body["error"]["node"], "look-up_1", "{body}");
    let rows = r#"[{"account": "acc-2", "amount": 1}, {"account": "nobody", "amount": 1}]"#;
    let (status, _, body) = call(&app, post("/graphs/risk-score_v2", rows)).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body[1]["error"]["node"], "look-up_1", "{body}");

    // phishing_online: two predictions; labels for one of them, for an id never
    // predicted, and a class the node does not have.
    for id in [1, 2] {
        let row = json!({"id": id, "features": vec![0.5; 9]}).to_string();
        assert_eq!(call(&app, post("/graphs/phishing_online", &row)).await.0, StatusCode::OK);
    }
    let labels = r#"[{"key": 1, "label": 1}, {"key": 99, "label": 0}, {"key": 2, "label": 5}]"#;
    let (status, _, body) = call(&app, post("/graphs/phishing_online/feedback", labels)).await;
    assert_eq!((status, body), (StatusCode::ACCEPTED, json!({"accepted": 3})));

    // digits: one request, one forward pass per model node.
    let (status, _, _) = call(&app, post("/graphs/digits", &json!({"pixels": vec![0.0; 64]}).to_string())).await;
    assert_eq!(status, StatusCode::OK);

    // Feedback is counted once the learner has taken it: scrape until it has.
    let outcome = |samples: &[Sample], outcome: &str| {
        sample(samples, "weir_feedback_total", &[("graph", "phishing_online"), ("node", "model"), ("outcome", outcome)])
    };
    let waited = Instant::now();
    let (text, samples) = loop {
        let (text, samples) = scrape(&app).await;
        let counted: f64 = ["learned", "unknown_key", "expired_key", "invalid"]
            .iter()
            .map(|o| outcome(&samples, o).expect("every outcome is a sample"))
            .sum();
        if counted == 3.0 {
            break (text, samples);
        }
        assert!(waited.elapsed() < Duration::from_secs(60), "the learner takes 3 labels:\n{text}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    };
    let has = |name: &str, labels: &[(&str, &str)], value: f64| {
        assert_eq!(sample(&samples, name, labels), Some(value), "{name}{labels:?} in\n{text}");
    };

    let version = env!("CARGO_PKG_VERSION");
    let platform = [("arch", std::env::consts::ARCH), ("os", std::env::consts::OS)];
    has("weir_build_info", &[("version", version), platform[0], platform[1]], 1.0);

    let risk = ("graph", "risk-score_v2");
    has("weir_requests_total", &[risk, ("status", "200")], 2.0);
    has("weir_requests_total", &[risk, ("status", "422")], 1.0);
    has("weir_requests_total", &[risk, ("status", "other")], 0.0);
    has("weir_request_duration_seconds_bucket", &[risk, ("le", "+Inf")], 3.0);
    has("weir_request_duration_seconds_count", &[risk], 3.0);
    has("weir_row_errors_total", &[risk, ("node", "look-up_1"), ("code", "invalid_input")], 2.0);
    has("weir_table_keys", &[risk, ("table", "account-stats_v1")], 2.0);
    has("weir_rows_in_flight", &[risk], 0.0);
    has("weir_max_rows_in_flight", &[risk], 8192.0);

    let phishing = [("graph", "phishing_online"), ("node", "model")];
    assert_eq!(outcome(&samples, "learned"), Some(1.0), "{text}");
    assert_eq!(outcome(&samples, "unknown_key"), Some(1.0), "{text}");
    assert_eq!(outcome(&samples, "invalid"), Some(1.0), "{text}");
    has("weir_model_version", &phishing, 1.0);
    // Both predictions were taken by their labels (the one with a class the node lacks too).
    has("weir_kept_predictions", &phishing, 0.0);
    has("weir_checkpoints_total", &phishing, 0.0);

    let mlp = [("graph", "digits"), ("node", "mlp")];
    has("weir_batch_size_count", &mlp, 1.0);
    has("weir_batch_size_sum", &mlp, 1.0);
    has("weir_batch_size_bucket", &[mlp[0], mlp[1], ("le", "1")], 1.0);
    has("weir_forward_passes_total", &mlp, 1.0);
    has("weir_failed_batches_total", &mlp, 0.0);
    // The bundled digits graph batches adaptively: its lone row left at once.
    has("weir_batches_total", &[mlp[0], mlp[1], ("reason", "now")], 1.0);
    has("weir_batches_total", &[mlp[0], mlp[1], ("reason", "waited")], 0.0);
    has("weir_batch_waits_total", &mlp, 0.0);
    // One pass measured is too few to compute on the worker (see operators' inline.rs).
    has("weir_inline_batches_total", &mlp, 0.0);

    has("weir_test_awkward_total", &[("topic", awkward)], 7.0);

    let kind = |family: &str| samples.iter().find(|s| s.family == family).map(|s| s.kind.as_str());
    assert_eq!(kind("weir_requests"), Some("counter"));
    assert_eq!(kind("weir_request_duration_seconds"), Some("histogram"));
    assert_eq!(kind("weir_rows_in_flight"), Some("gauge"));
    assert_eq!(kind("weir_build_info"), Some("gauge"));
    assert_eq!(kind("weir_test_awkward"), Some("counter"));
}

// ---- real sockets ----

/// A server on 127.0.0.1:0; requesting its shutdown stops it.
struct Running {
    addr: SocketAddr,
    stop: Shutdown,
    done: tokio::task::JoinHandle<std::io::Result<()>>,
    state: Arc<AppState>,
    _engine: Engine,
}

async fn start(plan: Plan, config: ServerConfig, grace: Duration) -> Running {
    let engine = Engine::start(vec![plan], EngineConfig::default()).unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let stop = Shutdown::new();
    let state = AppState::new(engine.graphs(), config, stop.clone());
    let done = tokio::spawn(http::serve(listener, Arc::clone(&state), grace));
    Running { addr, stop, done, state, _engine: engine }
}

/// Waits until `graph` has `rows` rows in flight (at most a minute: then panics).
async fn in_flight_reaches(graph: &weir_engine::GraphHandle, rows: usize) {
    let waited = Instant::now();
    while graph.in_flight() != rows {
        assert!(waited.elapsed() < Duration::from_secs(60), "{rows} rows in flight within a minute");
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
}

/// One request on a fresh connection: status, Retry-After, body.
async fn send(addr: SocketAddr, path: &str, body: String, timeout_ms: Option<u64>) -> (u16, Option<String>, Json) {
    let stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    let (mut sender, conn) = hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(stream)).await.unwrap();
    tokio::spawn(conn);
    let mut req = Request::post(path).header("host", "localhost").header("content-type", "application/json");
    if let Some(ms) = timeout_ms {
        req = req.header("x-request-timeout-ms", ms.to_string());
    }
    let res =
        sender.send_request(req.body(http_body_util::Full::new(bytes::Bytes::from(body))).unwrap()).await.unwrap();
    let status = res.status().as_u16();
    let retry = res.headers().get("retry-after").map(|v| v.to_str().unwrap().to_string());
    let bytes = res.into_body().collect().await.unwrap().to_bytes();
    (status, retry, serde_json::from_slice(&bytes).unwrap_or(Json::Null))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_requests_share_batches() {
    // A batch leaves when it has 16 rows (or after 5 s, on a machine too loaded to send
    // 16 requests by then), so batching does not depend on requests arriving close together.
    let batching = Batching { max_batch_size: 16, max_wait_ms: Some(5_000), replicas: 1, ..Batching::default() };
    let (plan, _) = slow_plan(Duration::from_millis(20), batching, Serving::default());
    let server = start(plan, ServerConfig::default(), Duration::from_secs(5)).await;
    // (The kernel panics on 13: inputs start at 20.)
    let tasks: Vec<_> =
        (20..68).map(|i| tokio::spawn(send(server.addr, "/graphs/slow", format!(r#"{{"x":{i}}}"#), None))).collect();
    for (i, t) in (20..).zip(tasks) {
        let (status, _, body) = t.await.unwrap();
        assert_eq!(status, 200);
        assert_eq!(body, json!({"y": 2.0 * f64::from(i)}));
    }
    let stats = &server._engine.graphs()[0].batch_stats()[0].1;
    assert_eq!(stats.rows, 48);
    assert!(stats.max_batch() > 1, "concurrent requests were batched together: {:?}", stats.sizes);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn overload_is_refused_at_once_with_retry_after_while_admitted_requests_succeed() {
    let batching = Batching { max_batch_size: 4, max_wait_ms: Some(1), replicas: 1, ..Batching::default() };
    let gate = Gate::new();
    let (plan, _) = gated_plan(&gate, batching, Serving { max_in_flight: 4, timeout_ms: None });
    let server = start(plan, ServerConfig::default(), Duration::from_secs(5)).await;
    let admitted: Vec<_> =
        (0..4).map(|i| tokio::spawn(send(server.addr, "/graphs/slow", format!(r#"{{"x":{i}}}"#), None))).collect();
    in_flight_reaches(&server._engine.graphs()[0], 4).await;
    // The model holds the admitted rows until the gate opens, so a refusal that waited
    // for room would never come: each must come while all four are still held.
    for _ in 0..10 {
        let refusal = send(server.addr, "/graphs/slow", r#"{"x":1}"#.into(), None);
        let (status, retry, body) = tokio::time::timeout(Duration::from_secs(60), refusal)
            .await
            .expect("refused at once, not after waiting for room");
        assert_eq!(status, 503, "{body}");
        assert_eq!(retry.as_deref(), Some("1"));
        assert_eq!(body["error"]["code"], "overloaded");
    }
    assert!(admitted.iter().all(|t| !t.is_finished()), "the admitted rows were held all along");
    gate.open();
    for (i, t) in admitted.into_iter().enumerate() {
        let (status, _, body) = t.await.unwrap();
        assert_eq!((status, body), (200, json!({"y": 2.0 * i as f64})));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_deadline_answers_504_and_a_queued_row_past_it_is_not_computed() {
    let batching = Batching { max_batch_size: 1, max_wait_ms: Some(0), replicas: 1, ..Batching::default() };
    let gate = Gate::new();
    let (plan, computed) = gated_plan(&gate, batching, Serving::default());
    let server = start(plan, ServerConfig::default(), Duration::from_secs(5)).await;
    // The first row holds the only replica at the gate; the second waits behind it.
    let first = tokio::spawn(send(server.addr, "/graphs/slow", r#"{"x":1}"#.into(), None));
    gate.reached(1).await;
    let (status, _, body) = send(server.addr, "/graphs/slow", r#"{"x":2}"#.into(), Some(100)).await;
    assert_eq!(status, 504, "{body}");
    assert_eq!(body["error"]["code"], "deadline_exceeded");
    assert!(!first.is_finished(), "answered at its deadline, while the row before it still held the model");
    gate.open();
    assert_eq!(first.await.unwrap().0, 200);
    // The second row reached the model after its deadline: it was not computed.
    in_flight_reaches(&server._engine.graphs()[0], 0).await;
    assert_eq!(computed.load(Ordering::SeqCst), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_stops_accepting_and_finishes_requests_in_flight() {
    let batching = Batching { max_batch_size: 8, max_wait_ms: Some(1), replicas: 1, ..Batching::default() };
    let gate = Gate::new();
    let (plan, _) = gated_plan(&gate, batching, Serving::default());
    let mut server = start(plan, ServerConfig::default(), Duration::from_secs(60)).await;
    let in_flight: Vec<_> =
        (0..4).map(|i| tokio::spawn(send(server.addr, "/graphs/slow", format!(r#"{{"x":{i}}}"#), None))).collect();
    in_flight_reaches(&server._engine.graphs()[0], 4).await;
    server.stop.request();
    // Shutdown has begun once the server says it is not ready.
    let app = http::router(Arc::clone(&server.state));
    let waited = Instant::now();
    while call(&app, get("/readyz")).await.0 != StatusCode::SERVICE_UNAVAILABLE {
        assert!(waited.elapsed() < Duration::from_secs(60), "shutdown begins");
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    assert!(!server.done.is_finished(), "the server waits for the requests in flight");
    gate.open();
    for (i, t) in in_flight.into_iter().enumerate() {
        let (status, _, body) = t.await.unwrap();
        assert_eq!((status, body), (200, json!({"y": 2.0 * i as f64})), "finished after shutdown began");
    }
    tokio::time::timeout(Duration::from_secs(60), &mut server.done).await.unwrap().unwrap().unwrap();
    assert!(tokio::net::TcpStream::connect(server.addr).await.is_err(), "no longer accepting");
}

#[test]
fn weir_serve_answers_the_readme_requests_and_exits_0_on_sigterm() {
    use std::io::{BufRead, BufReader};
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_weir"))
        .args(["serve", "graphs/diamond.yaml", "graphs/digits.yaml", "--port", "0"])
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stderr.take().unwrap()).lines();
    let addr: SocketAddr = loop {
        let line = lines.next().expect("weir serve prints its address").unwrap();
        if let Some(rest) = line.strip_prefix("weir: listening on http://") {
            break rest.trim().parse().unwrap();
        }
    };
    let rt = tokio::runtime::Runtime::new().unwrap();
    let (status, _, body) = rt.block_on(send(addr, "/graphs/diamond", r#"{"a":1,"b":2,"c":3}"#.into(), None));
    assert_eq!((status, body), (200, json!({"y": 8.0})));
    // The README's curl line: the bundled request file to digits.
    let request = std::fs::read_to_string(weir::datasets::graphs_dir().join("digits/request.json")).unwrap();
    let (status, _, body) = rt.block_on(send(addr, "/graphs/digits", request, None));
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["label"], 0, "{body}");
    let kill = std::process::Command::new("kill").args(["-TERM", &child.id().to_string()]).status().unwrap();
    assert!(kill.success());
    let t = Instant::now();
    let status = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break s;
        }
        assert!(t.elapsed() < Duration::from_secs(60), "weir serve exits after SIGTERM");
        std::thread::sleep(Duration::from_millis(20));
    };
    assert!(status.success(), "exit code {status:?}");
    let rest: Vec<String> = lines.map_while(Result::ok).collect();
    assert!(rest.iter().any(|l| l.contains("weir: stopped")), "{rest:?}");
}

/// The threads of process `pid` whose name starts with `prefix`.
fn threads_named(pid: u32, prefix: &str) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/task"))
        .unwrap()
        .filter(|t| {
            let comm = std::fs::read_to_string(t.as_ref().unwrap().path().join("comm")).unwrap_or_default();
            comm.starts_with(prefix)
        })
        .count()
}

#[test]
fn weir_serve_runs_http_on_the_threads_the_workers_leave_or_those_it_is_given() {
    use std::io::{BufRead, BufReader};
    for (flags, expected) in [(vec![], http::default_threads(1, false)), (vec!["--http-threads", "3"], 3)] {
        let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_weir"))
            .args(["serve", "graphs/diamond.yaml", "--port", "0"])
            .args(&flags)
            .current_dir(env!("CARGO_MANIFEST_DIR"))
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        let mut lines = BufReader::new(child.stderr.take().unwrap()).lines();
        while !lines.next().expect("weir serve prints its address").unwrap().starts_with("weir: listening on") {}
        // tokio spawns its threads with the runtime, before the listener binds, and each
        // names itself once it runs: wait for the names, then check the count holds.
        let t = Instant::now();
        while threads_named(child.id(), "weir-http") < expected && t.elapsed() < Duration::from_secs(20) {
            std::thread::sleep(Duration::from_millis(20));
        }
        std::thread::sleep(Duration::from_millis(200));
        let threads = threads_named(child.id(), "weir-http");
        child.kill().unwrap();
        child.wait().unwrap();
        assert_eq!(threads, expected, "{flags:?}");
    }
    let out = common::weir_cli(&["serve", "graphs/diamond.yaml", "--port", "0", "--http-threads", "0"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(common::text(&out.stderr).contains("--http-threads must be at least 1"), "{}", common::text(&out.stderr));
}
