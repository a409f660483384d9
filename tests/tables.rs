//! Tables and lookups (`tables:` and `kind: lookup`): rows joined with a table kept by
//! differential dataflow inside the graph, changed by upserts while the graph serves.

use std::path::PathBuf;
use std::sync::mpsc::channel;

use weir_engine::{yaml, Engine, EngineConfig, Plan};
use weir_operators::Value;

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
            g.submit(row(key), Box::new(move |r| drop(tx.send((i, r))))).expect("accepted");
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
