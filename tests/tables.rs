//! Tables and lookups (`tables:` and `kind: lookup`): rows joined with a table kept by
//! a store inside the graph, changed by upserts while the graph serves.
#![allow(clippy::unwrap_used)] // a test or benchmark fails loudly on the first surprise

mod common;

use std::path::PathBuf;
use std::sync::mpsc::channel;

use arrow_schema::DataType;
use weir_engine::{yaml, Engine, EngineConfig, Plan, Submission};
use weir_operators::{Shutdown, Value};

/// Transactions enriched with their account's features; `missing` is the lookup's
/// missing-key policy (YAML lines).
fn graph(missing: &str) -> Plan {
    let text = format!(
        "name: enrich\ninputs:\n  account: str\n  amount: f32\ntables:\n  accounts:\n    key: account\n    values:\n      mean: f32\n      country: str\nnodes:\n  features:\n    kind: lookup\n    table: accounts\n    key: input.account\n{missing}outputs:\n  mean: features.mean\n  country: features.country\n  found: features.found\n"
    );
    Plan::new(&yaml::parse(&text, "enrich.yaml", PathBuf::from(".")).expect("parses")).expect("plans")
}

const DEFAULTS: &str = "    missing: default\n    defaults: {mean: 0.0, country: unknown}\n";

fn engine(missing: &str, workers: usize) -> Engine {
    Engine::start(vec![graph(missing)], EngineConfig { workers, ..EngineConfig::default() }).expect("starts")
}

fn row(account: &str) -> Vec<Value> {
    vec![Value::Str(account.into()), Value::F32(10.0)]
}

fn features(mean: f32, country: &str) -> Option<Vec<Value>> {
    Some(vec![Value::F32(mean), Value::Str(country.into())])
}

#[test]
fn upserts_deletes_and_missing_keys_with_defaults() {
    for workers in [1, 2] {
        let e = engine(DEFAULTS, workers);
        let g = e.graph("enrich").expect("graph");
        let answer = |account: &str| g.call(row(account)).expect("accepted").expect("answered");
        assert_eq!(answer("a"), vec![Value::F32(0.0), Value::Str("unknown".into()), Value::Bool(false)]);
        g.upsert("accounts", &[(Value::Str("a".into()), features(42.5, "PT"))]).expect("upserts");
        assert_eq!(answer("a"), vec![Value::F32(42.5), Value::Str("PT".into()), Value::Bool(true)]);
        g.upsert("accounts", &[(Value::Str("a".into()), features(7.0, "FR"))]).expect("upserts");
        assert_eq!(answer("a"), vec![Value::F32(7.0), Value::Str("FR".into()), Value::Bool(true)]);
        g.upsert("accounts", &[(Value::Str("a".into()), None)]).expect("deletes");
        assert_eq!(
            answer("a"),
            vec![Value::F32(0.0), Value::Str("unknown".into()), Value::Bool(false)],
            "{workers} workers"
        );
        e.shutdown();
    }
}

#[test]
fn a_missing_key_can_fail_the_row_naming_table_and_key() {
    let e = engine("    missing: error\n", 2);
    let g = e.graph("enrich").expect("graph");
    let err = g.call(row("nobody")).expect("accepted").expect_err("no such account");
    assert_eq!(err.node, "features");
    assert!(err.message.contains("key \"nobody\" is not in table 'accounts'"), "{err:?}");
    e.shutdown();
}

/// Upserts and rows interleaved without waiting for answers: row `i` must see exactly
/// the value written just before it, at one and two workers.
#[test]
fn every_row_sees_the_updates_submitted_before_it_and_none_after() {
    for workers in [1, 2] {
        let e = engine(DEFAULTS, workers);
        let g = e.graph("enrich").expect("graph");
        let (tx, rx) = channel();
        let keys = ["a", "b", "c"];
        for i in 0..300usize {
            let key = keys[i % 3];
            g.upsert("accounts", &[(Value::Str(key.into()), features(i as f32, "PT"))]).expect("upserts");
            let tx = tx.clone();
            g.submit(Submission::row(row(key), Box::new(move |r| drop(tx.send((i, r)))))).expect("accepted");
            if i % 50 == 49 {
                // A delete: the next row of that key gets the default.
                g.upsert("accounts", &[(Value::Str(key.into()), None)]).expect("deletes");
            }
        }
        drop(tx);
        let mut got: Vec<(usize, Vec<Value>)> = rx.iter().map(|(i, r)| (i, r.expect("answered"))).collect();
        got.sort_by_key(|(i, _)| *i);
        assert_eq!(got.len(), 300);
        for (i, values) in got {
            assert_eq!(values[0], Value::F32(i as f32), "row {i} at {workers} workers");
        }
        e.shutdown();
    }
}

/// Several changes to one key in one batch: the last wins, whatever the values' order.
#[test]
fn the_last_change_to_a_key_in_a_batch_wins() {
    for workers in [1, 2] {
        let e = engine(DEFAULTS, workers);
        let g = e.graph("enrich").expect("graph");
        let a = || Value::Str("a".into());
        let mean = |account: &str| g.call(row(account)).expect("accepted").expect("answered")[0].clone();
        g.upsert("accounts", &[(a(), features(3.0, "PT")), (a(), features(1.0, "PT"))]).expect("upserts");
        assert_eq!(mean("a"), Value::F32(1.0), "{workers} workers");
        g.upsert("accounts", &[(a(), features(5.0, "PT")), (a(), None)]).expect("upserts");
        assert_eq!(mean("a"), Value::F32(0.0), "a deleted last is gone ({workers} workers)");
        g.upsert("accounts", &[(a(), None), (a(), features(2.0, "PT")), (Value::Str("b".into()), features(9.0, "ES"))])
            .expect("upserts");
        assert_eq!((mean("a"), mean("b")), (Value::F32(2.0), Value::F32(9.0)), "{workers} workers");
        assert_eq!(g.table_sizes(), vec![("accounts".to_string(), 2)]);
        // A wrong change refuses the batch even when a later one replaces it.
        let wrong = Some(vec![Value::I64(1), Value::Str("PT".into())]);
        assert!(g.upsert("accounts", &[(a(), wrong), (a(), features(4.0, "PT"))]).is_err());
        assert_eq!(mean("a"), Value::F32(2.0));
        e.shutdown();
    }
}

/// `missing: route`: found rows take branch `found` with the value fields, missing rows
/// branch `missing` without them; a merge joins them. At one and two workers.
#[test]
fn a_missing_key_can_take_its_own_branch() {
    let text = "name: enrich\ninputs:\n  account: str\n  amount: f32\ntables:\n  accounts:\n    key: account\n    values:\n      mean: f32\n      country: str\nnodes:\n  features:\n    kind: lookup\n    table: accounts\n    key: input.account\n    missing: route\n  known:\n    kind: map\n    from: features.found\n    op: concat\n    inputs: [input.amount, features.mean]\n  unknown:\n    kind: map\n    from: features.missing\n    op: concat\n    inputs: [input.amount, input.amount]\n  both:\n    kind: merge\n    from: [known, unknown]\n    fields: {vector: [known.y, unknown.y]}\noutputs:\n  vector: both.vector\n  found: features.found\n";
    let plan = Plan::new(&yaml::parse(text, "route.yaml", PathBuf::from(".")).expect("parses")).expect("plans");
    for workers in [1, 2] {
        let e = Engine::start(vec![plan.clone()], EngineConfig { workers, ..EngineConfig::default() }).expect("starts");
        let g = e.graph("enrich").expect("graph");
        g.upsert("accounts", &[(Value::Str("a".into()), features(42.5, "PT"))]).expect("upserts");
        let rows: Vec<Vec<Value>> = ["a", "b", "a", "b"].iter().map(|k| row(k)).collect();
        let got: Vec<Vec<Value>> = g.call_many(rows, 4).into_iter().map(|r| r.expect("answered")).collect();
        let found = vec![Value::Tensor(vec![10.0, 42.5].into()), Value::Bool(true)];
        let missing = vec![Value::Tensor(vec![10.0, 10.0].into()), Value::Bool(false)];
        assert_eq!(got, vec![found.clone(), missing.clone(), found, missing], "{workers} workers");
        e.shutdown();
    }
    // The missing branch has no value fields; a wrong branch name is named.
    let broken = |from: &str, input: &str| {
        let t = text.replace("from: features.missing", from).replace("inputs: [input.amount, input.amount]", input);
        Plan::new(&yaml::parse(&t, "route.yaml", PathBuf::from(".")).expect("parses")).expect_err("broken").to_string()
    };
    let err = broken("from: features.missing", "inputs: [input.amount, features.mean]");
    assert!(
        err.contains("node 'unknown'") && err.contains("features.mean") && err.contains("features.missing"),
        "{err}"
    );
    let err = broken("from: features.absent", "inputs: [input.amount, input.amount]");
    assert!(err.contains("lookup 'features' has no branch 'absent' (branches: found, missing)"), "{err}");
    let err =
        yaml::parse(&text.replace("missing: route", "missing: route\n    defaults: {mean: 1.0}"), "r.yaml", ".".into())
            .expect_err("defaults with route")
            .to_string();
    assert!(err.contains("'defaults' apply only with missing: default"), "{err}");
}

#[test]
fn upserts_of_the_wrong_type_are_refused_naming_the_field() {
    let e = engine(DEFAULTS, 1);
    let g = e.graph("enrich").expect("graph");
    let err =
        g.upsert("accounts", &[(Value::Str("a".into()), Some(vec![Value::Str("x".into()), Value::Str("PT".into())]))]);
    let msg = format!("{:?}", err.expect_err("mean is f32"));
    assert!(msg.contains("mean") && msg.contains("change 0"), "{msg}");
    let msg = format!("{:?}", g.upsert("nope", &[]).expect_err("no such table"));
    assert!(msg.contains("no table 'nope'"), "{msg}");
    e.shutdown();
}

#[test]
fn lookup_graphs_that_cannot_work_fail_at_plan_time() {
    let plan = |missing: &str| {
        let text = format!(
            "name: e\ninputs:\n  account: f32\ntables:\n  accounts:\n    key: account\n    values: {{mean: f32}}\nnodes:\n  f:\n    kind: lookup\n    table: accounts\n    key: input.account\n{missing}outputs:\n  m: f.mean\n"
        );
        match yaml::parse(&text, "e.yaml", PathBuf::from(".")) {
            Ok(spec) => Plan::new(&spec).map(|_| ()).map_err(|e| e.to_string()),
            Err(e) => Err(e.to_string()),
        }
    };
    let err = plan("    missing: error\n").expect_err("an f32 key");
    assert!(err.contains("node 'f'") && err.contains("field 'key'") && err.contains("str keys"), "{err}");
}

/// One request on a fresh connection to `addr`: status and body.
async fn send(addr: std::net::SocketAddr, method: &str, path: &str, body: &str) -> (u16, bytes::Bytes) {
    use http_body_util::BodyExt;
    let stream = tokio::net::TcpStream::connect(addr).await.expect("connects");
    let (mut sender, conn) =
        hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(stream)).await.expect("handshake");
    tokio::spawn(conn);
    let req = hyper::Request::builder()
        .method(method)
        .uri(path)
        .header("host", "localhost")
        .header("content-type", "application/json")
        .body(http_body_util::Full::new(bytes::Bytes::from(body.to_string())))
        .expect("request");
    let res = sender.send_request(req).await.expect("response");
    let status = res.status().as_u16();
    (status, res.into_body().collect().await.expect("body").to_bytes())
}

/// A POST: status and JSON body.
async fn post(addr: std::net::SocketAddr, path: &str, body: &str) -> (u16, serde_json::Value) {
    let (status, bytes) = send(addr, "POST", path, body).await;
    (status, serde_json::from_slice(&bytes).unwrap_or(serde_json::Value::Null))
}

/// A GET: the body as text.
async fn get(addr: std::net::SocketAddr, path: &str) -> String {
    String::from_utf8_lossy(&send(addr, "GET", path, "").await.1).into_owned()
}

/// Over real sockets: `POST /graphs/enrich/tables/accounts` changes what the next
/// request to `POST /graphs/enrich` sees.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http_upserts_change_what_the_next_request_sees() {
    use serde_json::json;
    use weir_connectors::http::{self, AppState, ServerConfig};

    let engine =
        Engine::start(vec![graph(DEFAULTS)], EngineConfig { workers: 2, ..EngineConfig::default() }).expect("starts");
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("binds");
    let addr = listener.local_addr().expect("address");
    let stop = Shutdown::new();
    let state = AppState::new(engine.graphs(), ServerConfig::default(), stop.clone());
    let server = tokio::spawn(http::serve(listener, state, std::time::Duration::from_secs(5)));
    let request = r#"{"account": "acc-7", "amount": 12.5}"#;
    let (status, body) = post(addr, "/graphs/enrich", request).await;
    assert_eq!((status, &body), (200, &json!({"mean": 0.0, "country": "unknown", "found": false})));
    let (status, body) = post(
        addr,
        "/graphs/enrich/tables/accounts",
        r#"[{"key": "acc-7", "values": {"mean": 31.5, "country": "PT"}}, {"key": "acc-8", "values": {"mean": 1.0, "country": "ES"}}]"#,
    )
    .await;
    assert_eq!((status, &body), (202, &json!({"accepted": 2})));
    let (status, body) = post(addr, "/graphs/enrich", request).await;
    assert_eq!((status, &body), (200, &json!({"mean": 31.5, "country": "PT", "found": true})));
    let (status, _) = post(addr, "/graphs/enrich/tables/accounts", r#"{"key": "acc-7", "values": null}"#).await;
    assert_eq!(status, 202);
    let (_, body) = post(addr, "/graphs/enrich", request).await;
    assert_eq!(body, json!({"mean": 0.0, "country": "unknown", "found": false}));
    // Bad changes: 422 naming the field; nothing of the batch goes in.
    let (status, body) = post(
        addr,
        "/graphs/enrich/tables/accounts",
        r#"[{"key": "acc-9", "values": {"mean": 2.0, "country": "IT"}}, {"key": "acc-7", "values": {"mean": "high", "country": "PT"}}]"#,
    )
    .await;
    assert_eq!(status, 422, "{body}");
    assert_eq!(body["error"]["field"], json!("values.mean"), "{body}");
    assert!(body["error"]["message"].as_str().is_some_and(|m| m.starts_with("change 1:")), "{body}");
    let (_, body) = post(addr, "/graphs/enrich", r#"{"account": "acc-9", "amount": 1.0}"#).await;
    assert_eq!(body["found"], json!(false), "the refused batch left acc-9 out");
    let (status, _) = post(addr, "/graphs/enrich/tables/nope", r#"{"key": "a", "values": null}"#).await;
    assert_eq!(status, 404);
    // acc-8 is left: the table's size in /metrics (counted as its batches settle).
    let line = "weir_table_keys{graph=\"enrich\",table=\"accounts\"} 1";
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        let metrics = get(addr, "/metrics").await;
        if metrics.contains(line) {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "{metrics}");
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    stop.request();
    server.await.expect("server task").expect("server");
    engine.shutdown();
}

#[test]
fn the_bundled_accounts_graph_enriches_a_transaction() {
    let plan = weir_engine::load_plan(&weir::datasets::graphs_dir().join("accounts.yaml")).expect("plans");
    let e = Engine::start(vec![plan], EngineConfig::default()).expect("starts");
    let g = e.graph("accounts").expect("graph");
    let tx = || vec![Value::Str("acc-7".into()), Value::F32(40.0)];
    let before = g.call(tx()).expect("accepted").expect("answered");
    assert_eq!(before[0], Value::Tensor(vec![40.0, 0.0, 1.0].into()));
    assert_eq!(before[2], Value::Bool(false));
    let row = vec![Value::F32(31.5), Value::F32(12.0), Value::Str("PT".into())];
    g.upsert("accounts", &[(Value::Str("acc-7".into()), Some(row))]).expect("upserts");
    let after = g.call(tx()).expect("accepted").expect("answered");
    assert_eq!(after, vec![Value::Tensor(vec![40.0, 31.5, 12.0].into()), Value::Str("PT".into()), Value::Bool(true)]);
    e.shutdown();
}

/// An Arrow IPC file of accounts: `rows` as (account, mean, country), `None` for a null.
fn write_snapshot(path: &std::path::Path, rows: &[(Option<&str>, f32, &str)]) {
    use arrow_array::{Float32Array, RecordBatch, StringArray};
    use std::sync::Arc;
    let batch = RecordBatch::try_from_iter(vec![
        ("account", Arc::new(StringArray::from(rows.iter().map(|r| r.0).collect::<Vec<_>>())) as _),
        ("mean", Arc::new(Float32Array::from(rows.iter().map(|r| r.1).collect::<Vec<_>>())) as _),
        ("country", Arc::new(StringArray::from(rows.iter().map(|r| Some(r.2)).collect::<Vec<_>>())) as _),
    ])
    .expect("batch");
    let file = std::fs::File::create(path).expect("file");
    let mut writer = arrow_ipc::writer::FileWriter::try_new(file, &batch.schema()).expect("writer");
    writer.write(&batch).expect("writes");
    writer.finish().expect("finishes");
}

/// Writes `batch` as an Arrow IPC file at `path`.
fn write_arrow(path: &std::path::Path, batch: &arrow_array::RecordBatch) {
    let file = std::fs::File::create(path).expect("file");
    let mut writer = arrow_ipc::writer::FileWriter::try_new(file, &batch.schema()).expect("writer");
    writer.write(batch).expect("writes");
    writer.finish().expect("finishes");
}

/// The enrich graph with its table starting from `snapshot`.
fn graph_with_snapshot(snapshot: &std::path::Path) -> Plan {
    let text = format!(
        "name: enrich\ninputs:\n  account: str\n  amount: f32\ntables:\n  accounts:\n    key: account\n    values:\n      mean: f32\n      country: str\n    snapshot: {}\nnodes:\n  features:\n    kind: lookup\n    table: accounts\n    key: input.account\n{DEFAULTS}outputs:\n  mean: features.mean\n  country: features.country\n  found: features.found\n",
        snapshot.display()
    );
    Plan::new(&yaml::parse(&text, "enrich.yaml", PathBuf::from(".")).expect("parses")).expect("plans")
}

#[test]
fn a_snapshot_fills_the_table_before_any_row_and_upserts_change_it_after() {
    let dir = tempfile::tempdir().expect("dir");
    let path = dir.path().join("accounts.arrow");
    // acc-1 twice: the later row wins.
    write_snapshot(&path, &[(Some("acc-1"), 1.0, "PT"), (Some("acc-2"), 2.0, "ES"), (Some("acc-1"), 3.0, "FR")]);
    let e = Engine::start(vec![graph_with_snapshot(&path)], EngineConfig { workers: 2, ..EngineConfig::default() })
        .expect("starts");
    let g = e.graph("enrich").expect("graph");
    let loaded = weir_connectors::snapshot::load_snapshots(&g).expect("loads");
    assert_eq!(loaded, vec![("accounts".to_string(), 3)]);
    let answer = |account: &str| g.call(row(account)).expect("accepted").expect("answered");
    assert_eq!(answer("acc-1"), vec![Value::F32(3.0), Value::Str("FR".into()), Value::Bool(true)]);
    assert_eq!(answer("acc-2"), vec![Value::F32(2.0), Value::Str("ES".into()), Value::Bool(true)]);
    g.upsert("accounts", &[(Value::Str("acc-2".into()), features(9.0, "IT"))]).expect("upserts");
    assert_eq!(answer("acc-2"), vec![Value::F32(9.0), Value::Str("IT".into()), Value::Bool(true)]);
    e.shutdown();
}

#[test]
fn a_bad_snapshot_stops_the_load_naming_file_row_and_column() {
    let dir = tempfile::tempdir().expect("dir");
    let path = dir.path().join("accounts.arrow");
    write_snapshot(&path, &[(Some("acc-1"), 1.0, "PT"), (None, 2.0, "ES")]);
    let e = Engine::start(vec![graph_with_snapshot(&path)], EngineConfig::default()).expect("starts");
    let err = weir_connectors::snapshot::load_snapshots(&e.graphs()[0]).expect_err("a null key").to_string();
    for part in ["accounts.arrow", "snapshot of table 'accounts'", "row 1", "account"] {
        assert!(err.contains(part), "{part:?} in {err}");
    }
    e.shutdown();
    // A missing snapshot is a plan error naming the table and the field.
    let text = "name: e\ninputs:\n  k: str\ntables:\n  t:\n    key: k\n    values: {v: f32}\n    snapshot: nowhere.arrow\nnodes:\n  l: {kind: lookup, table: t, key: input.k, defaults: {v: 0}}\noutputs:\n  v: l.v\n";
    let err = Plan::new(&yaml::parse(text, "e.yaml", PathBuf::from(".")).expect("parses")).expect_err("no file");
    let err = err.to_string();
    assert!(err.contains("tables.t") && err.contains("snapshot") && err.contains("nowhere.arrow"), "{err}");
}

/// pandas writes text as LargeUtf8 (or a dictionary) and numbers as Float64: a snapshot
/// of such columns loads as one of Utf8 and Float32 does.
#[test]
fn a_snapshot_of_large_utf8_float64_and_dictionary_columns_loads() {
    use arrow_array::{ArrayRef, Float64Array, LargeStringArray, RecordBatch, StringArray};
    use std::sync::Arc;
    let dir = tempfile::tempdir().expect("dir");
    let path = dir.path().join("accounts.arrow");
    let country: ArrayRef = Arc::new(StringArray::from(vec!["PT", "ES"]));
    let dictionary = DataType::Dictionary(Box::new(DataType::Int8), Box::new(DataType::Utf8));
    let batch = RecordBatch::try_from_iter(vec![
        ("account", Arc::new(LargeStringArray::from(vec!["acc-1", "acc-2"])) as ArrayRef),
        ("mean", Arc::new(Float64Array::from(vec![1.25, 1e30])) as ArrayRef),
        ("country", arrow_cast::cast(&country, &dictionary).expect("casts")),
    ])
    .expect("batch");
    write_arrow(&path, &batch);
    let e = Engine::start(vec![graph_with_snapshot(&path)], EngineConfig::default()).expect("starts");
    let g = e.graph("enrich").expect("graph");
    assert_eq!(weir_connectors::snapshot::load_snapshots(&g).expect("loads"), vec![("accounts".to_string(), 2)]);
    let answer = |account: &str| g.call(row(account)).expect("accepted").expect("answered");
    assert_eq!(answer("acc-1"), vec![Value::F32(1.25), Value::Str("PT".into()), Value::Bool(true)]);
    assert_eq!(answer("acc-2"), vec![Value::F32(1e30), Value::Str("ES".into()), Value::Bool(true)]);
    e.shutdown();

    // A Float64 beyond f32's range stops the load, naming the file, the row and the column.
    let batch = RecordBatch::try_from_iter(vec![
        ("account", Arc::new(StringArray::from(vec!["acc-1", "acc-2"])) as ArrayRef),
        ("mean", Arc::new(Float64Array::from(vec![1.0, 1e300])) as ArrayRef),
        ("country", country),
    ])
    .expect("batch");
    write_arrow(&path, &batch);
    let e = Engine::start(vec![graph_with_snapshot(&path)], EngineConfig::default()).expect("starts");
    let err = weir_connectors::snapshot::load_snapshots(&e.graphs()[0]).expect_err("beyond f32").to_string();
    for part in ["accounts.arrow", "snapshot of table 'accounts'", "mean", "row 1: value 1e300 is outside f32's range"]
    {
        assert!(err.contains(part), "{part:?} in {err}");
    }
    e.shutdown();
}

/// `weir run` loads the snapshot before the first row (real process, real files).
#[test]
fn weir_run_answers_from_the_snapshot() {
    let dir = tempfile::tempdir().expect("dir");
    let snapshot = dir.path().join("accounts.arrow");
    write_snapshot(&snapshot, &[(Some("acc-1"), 5.5, "PT")]);
    let graph = dir.path().join("enrich.yaml");
    let text = format!(
        "name: enrich\ninputs:\n  account: str\n  amount: f32\ntables:\n  accounts:\n    key: account\n    values:\n      mean: f32\n      country: str\n    snapshot: accounts.arrow\nnodes:\n  features:\n    kind: lookup\n    table: accounts\n    key: input.account\n{DEFAULTS}outputs:\n  mean: features.mean\n  found: features.found\n"
    );
    std::fs::write(&graph, text).expect("graph file");
    let input = dir.path().join("rows.jsonl");
    std::fs::write(&input, "{\"account\": \"acc-1\", \"amount\": 1}\n{\"account\": \"acc-9\", \"amount\": 1}\n")
        .expect("rows");
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_weir"))
        .args(["run", graph.to_str().expect("utf-8"), "--input", input.to_str().expect("utf-8")])
        .output()
        .expect("weir runs");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert!(stderr.contains("table 'accounts': 1 rows from its snapshot"), "{stderr}");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let lines: Vec<&str> = stdout.lines().collect();
    assert_eq!(lines, vec![r#"{"found":true,"mean":5.5}"#, r#"{"found":false,"mean":0.0}"#], "{stdout}");
}

/// A server filled over HTTP and then left idle hands back what the fill freed (the
/// table's outgrown index and columns, the upserts' batches): its allocator would keep
/// them resident until its next allocation, which an idle server does not make. 10^6 keys
/// of the `accounts` schema of `cargo bench --bench tables`, which hold about 66 B a key:
/// 70-73 B a key resident within a second of idle with the release, 85-109 B without it
/// (this test's build, three runs each, 2026-12-06).
#[test]
fn an_idle_server_hands_back_what_filling_its_table_freed() {
    use common::process::{http_get, http_post, serve_http};
    const KEYS: u64 = 1_000_000;
    let dir = tempfile::tempdir().expect("dir");
    let graph = dir.path().join("g.yaml");
    std::fs::write(
        &graph,
        "name: g\ninputs:\n  account: i64\n  amount: f32\ntables:\n  accounts:\n    key: account\n    key_type: i64\n    values:\n      mean: f32\n      std: f32\n      count: f32\n      country: str\nnodes:\n  features:\n    kind: lookup\n    table: accounts\n    key: input.account\n    missing: default\n    defaults: {mean: 0.0, std: 1.0, count: 0.0, country: unknown}\noutputs:\n  mean: features.mean\n",
    )
    .expect("graph file");
    let (child, addr) = serve_http(std::path::Path::new(env!("CARGO_BIN_EXE_weir")), &[graph.to_str().expect("utf-8")]);
    std::thread::sleep(std::time::Duration::from_millis(300));
    let before = weir::rss_bytes_of(child.id()).expect("/proc/PID/status");
    for start in (0..KEYS).step_by(8192) {
        let rows: Vec<String> = (start..(start + 8192).min(KEYS))
            .map(|k| {
                let country = ["PT", "ES", "FR", "DE"][(k % 4) as usize];
                format!(r#"{{"key":{k},"values":{{"mean":{},"std":1.5,"count":{k},"country":"{country}"}}}}"#, k / 2)
            })
            .collect();
        let (status, body) = http_post(&addr, "/graphs/g/tables/accounts", &format!("[{}]", rows.join(",")));
        assert_eq!(status, 202, "{body}");
    }
    let counted = format!("weir_table_keys{{graph=\"g\",table=\"accounts\"}} {KEYS}\n");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    while !http_get(&addr, "/metrics").1.contains(&counted) {
        assert!(std::time::Instant::now() < deadline, "the table counts {KEYS} keys");
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    // Idle: the release comes within a second or so of the last busy half-second.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
    let per_key = loop {
        let per_key = weir::rss_bytes_of(child.id()).expect("/proc/PID/status").saturating_sub(before) / KEYS;
        if per_key <= 84 || std::time::Instant::now() > deadline {
            break per_key;
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
    };
    assert!(per_key <= 84, "{per_key} B a key resident after 5 s idle (the table holds about 66)");
    common::kafka::stop(child);
}
