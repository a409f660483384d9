//! Dynamic dispatch from a YAML graph: rows routed by a string field's value, each
//! branch computing something else, merged back, every row answered once.
#![allow(clippy::unwrap_used)] // a test or benchmark fails loudly on the first surprise

use weir_engine::{yaml, Engine, EngineConfig, Plan};
use weir_operators::{ErrorCode, Value};

const GRAPH: &str = r#"
name: by_kind
inputs:
  kind: str
  x: f32[3]
nodes:
  gate:
    kind: route
    by: input.kind
    branches:
      - name: vectors
        when: {in: [vec, vector]}
      - name: scalars
        when: {eq: scalar}
    default: other
  total:
    kind: map
    from: gate.vectors
    op: concat
    inputs: [input.x, input.x]
  first:
    kind: map
    from: gate.scalars
    op: argmax
    input: input.x
    labels: [a, b, c]
  echo:
    kind: map
    from: gate.other
    op: select
    fields: {same: input.kind}
  joined:
    kind: merge
    from: [total, first, echo]
    fields:
      kind: [input.kind, first.label, echo.same]
outputs:
  kind: joined.kind
"#;

#[test]
fn rows_take_the_branch_their_field_names_and_merge_back() {
    let spec = yaml::parse(GRAPH, "by_kind.yaml", ".".into()).expect("parses");
    let plan = Plan::new(&spec).expect("valid");
    for workers in [1, 2] {
        let engine = Engine::start(vec![plan.clone()], EngineConfig { workers, ..EngineConfig::default() }).unwrap();
        let g = engine.graph("by_kind").unwrap();
        let row = |kind: &str| vec![Value::Str(kind.into()), Value::Tensor(vec![0.1, 0.7, 0.2].into())];
        let kinds = ["vec", "scalar", "vector", "blob", "scalar"];
        let results = g.call_many(kinds.iter().map(|k| row(k)).collect(), 16);
        let got: Vec<Value> = results.into_iter().map(|r| r.unwrap().remove(0)).collect();
        let s = |x: &str| Value::Str(x.into());
        assert_eq!(got, vec![s("vec"), s("b"), s("vector"), s("blob"), s("b")], "{workers} workers");
    }
}

#[test]
fn a_graph_with_a_routed_error_still_answers_every_row() {
    // A NaN makes threshold fail before the route: the error row takes the default
    // branch, passes the merge, and is answered.
    let graph = r#"
name: th
inputs: {x: f32}
nodes:
  t: {kind: map, op: threshold, input: input.x, threshold: 0.5, labels: [low, high]}
  gate:
    kind: route
    by: t.label
    branches: [{name: high, when: {eq: high}}]
    default: low
  hi: {kind: map, from: gate.high, op: select, fields: {v: t.label}}
  lo: {kind: map, from: gate.low, op: select, fields: {v: t.label}}
  m: {kind: merge, from: [hi, lo], fields: {v: [hi.v, lo.v]}}
outputs: {v: m.v}
"#;
    let plan = Plan::new(&yaml::parse(graph, "th.yaml", ".".into()).unwrap()).unwrap();
    let engine = Engine::start(vec![plan], EngineConfig::default()).unwrap();
    let g = engine.graph("th").unwrap();
    let results = g.call_many(vec![vec![Value::F32(0.9)], vec![Value::F32(f32::NAN)], vec![Value::F32(0.1)]], 8);
    assert_eq!(results[0].as_ref().unwrap(), &vec![Value::Str("high".into())]);
    let e = results[1].as_ref().unwrap_err();
    assert_eq!((e.code, e.node.as_str()), (ErrorCode::NodeFailed, "t"));
    assert_eq!(results[2].as_ref().unwrap(), &vec![Value::Str("low".into())]);
}
