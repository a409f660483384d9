//! Models people export, served as they are: every file of the zoo (`graphs/zoo`, made by
//! `scripts/make-zoo`: scikit-learn pipelines and a CNN exported to ONNX, XGBoost JSON and
//! LightGBM text models) answers its held-out rows as the reference implementation did
//! (onnxruntime, the libraries' own `predict`: `tests/golden/zoo`); and the bundled zoo
//! graphs answer the same over HTTP, Kafka and `weir replay`.
#![allow(clippy::unwrap_used)] // a test fails loudly on the first surprise

mod common;

use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use arrow_array::builder::{Float64Builder, ListBuilder};
use arrow_array::cast::AsArray;
use arrow_array::types::{Float32Type, Int64Type};
use arrow_array::{Array, ArrayRef, RecordBatch};
use arrow_schema::DataType;
use common::kafka::{distinct_keys, produce, read_until, stop, weir_logged, Broker};
use common::process::http_post;
use serde_json::{json, Value as Json};
use weir_engine::{yaml, Plan};
use weir_operators::Value;

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn golden(stem: &str) -> Json {
    let path = root().join("tests/golden/zoo").join(format!("{stem}.json"));
    serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap()
}

/// The shape of a golden row (`[64]`, `[1, 8, 8]`).
fn shape(row: &Json) -> Vec<usize> {
    match row {
        Json::Array(items) => {
            std::iter::once(items.len()).chain(items.first().map(shape).unwrap_or_default()).collect()
        }
        _ => Vec::new(),
    }
}

/// A row's numbers, flat, `null` as NaN.
fn flat(v: &Json, out: &mut Vec<f64>) {
    match v {
        Json::Array(items) => items.iter().for_each(|i| flat(i, out)),
        Json::Null => out.push(f64::NAN),
        other => out.push(other.as_f64().unwrap()),
    }
}

/// How close an output must be: the 1e-5 for ONNX and 1e-6 for tree
/// probabilities, relative to the value where it is above 1 (a regression's values are
/// in the hundreds, where one f32 step is above 1e-5); regression trees 1e-5 relative.
fn tolerance(stem: &str, output: &str, want: f64) -> f64 {
    let trees = stem.contains("_xgb") || stem.contains("_lgbm");
    let bound = if trees && output != "value" { 1e-6 } else { 1e-5 };
    bound * want.abs().max(1.0)
}

/// Asserts that `got` (an answer's value, as JSON) is the golden `want`.
fn assert_close(stem: &str, output: &str, row: usize, got: &Json, want: &Json) {
    let (mut g, mut w) = (Vec::new(), Vec::new());
    flat(got, &mut g);
    flat(want, &mut w);
    assert_eq!(g.len(), w.len(), "{stem} row {row} {output}: {got} vs {want}");
    for (a, b) in g.iter().zip(&w) {
        let ok = if output == "label" { a == b } else { (a - b).abs() <= tolerance(stem, output, *b) };
        assert!(ok, "{stem} row {row} {output}: weir {got}, reference {want}");
    }
}

/// The format of a zoo file, by its name.
fn format_of(model: &str) -> &'static str {
    if model.ends_with(".onnx") {
        "onnx"
    } else if model.ends_with(".json") {
        "xgboost"
    } else {
        "lightgbm"
    }
}

fn value_json(v: &Value) -> Json {
    weir_connectors::json::encode_value(v)
}

#[test]
fn every_zoo_model_answers_as_its_reference_implementation() {
    let mut checked = Vec::new();
    for entry in std::fs::read_dir(root().join("tests/golden/zoo")).unwrap() {
        let path = entry.unwrap().path();
        let stem = path.file_stem().unwrap().to_str().unwrap().to_string();
        let g = golden(&stem);
        let model = g["model"].as_str().unwrap();
        let inputs = g["inputs"].as_object().unwrap();
        let outputs = g["outputs"].as_object().unwrap();
        // One model node, its inputs wired by their ONNX (or `features`) names.
        let mut text = String::from("name: zoo\ninputs:\n");
        for (name, rows) in inputs {
            let dims: Vec<String> = shape(&rows[0]).iter().map(usize::to_string).collect();
            text += &format!("  {name}: f32[{}]\n", dims.join(","));
        }
        text += &format!(
            "nodes:\n  m:\n    kind: model\n    format: {}\n    path: {}\n    max_wait_ms: 0\n    inputs:\n",
            format_of(model),
            root().join(model).display()
        );
        for name in inputs.keys() {
            text += &format!("      {name}: input.{name}\n");
        }
        text += "outputs:\n";
        for name in outputs.keys() {
            text += &format!("  {name}: m.{name}\n");
        }
        let spec = yaml::parse(&text, &format!("{stem}.yaml"), root()).unwrap();
        let plan = Plan::new(&spec).unwrap_or_else(|e| panic!("{stem}: {e}"));
        let (_engine, graph) = common::start(plan, 1);
        let n = inputs.values().next().unwrap().as_array().unwrap().len();
        let rows: Vec<Vec<Value>> = (0..n)
            .map(|i| {
                inputs
                    .values()
                    .map(|rows| {
                        let mut x = Vec::new();
                        flat(&rows[i], &mut x);
                        Value::Tensor(x.into_iter().map(|x| x as f32).collect::<Vec<f32>>().into())
                    })
                    .collect()
            })
            .collect();
        let answers = graph.call_many(rows, 64);
        for (i, answer) in answers.into_iter().enumerate() {
            let answer = answer.unwrap_or_else(|e| panic!("{stem} row {i}: {e:?}"));
            for ((name, want), got) in outputs.iter().zip(&answer) {
                assert_close(&stem, name, i, &value_json(got), &want[i]);
            }
        }
        checked.push(stem);
    }
    // Every model the issue names, and one of each ONNX-ML operator.
    checked.sort();
    for stem in [
        "digits_logreg",
        "digits_mlp",
        "digits_gbc",
        "digits_cnn",
        "ops_binarizer",
        "ops_columns",
        "ops_gbr",
        "ops_imputer",
        "ops_normalizer",
        "ops_onehot",
        "phishing_xgb",
        "phishing_xgb_cat",
        "phishing_lgbm",
        "phishing_lgbm_cat",
        "digits_xgb",
        "digits_lgbm",
        "diabetes_xgb",
        "diabetes_lgbm",
    ] {
        assert!(checked.iter().any(|c| c == stem), "{stem} was checked ({checked:?})");
    }
}

/// A list column of float64, as pandas and pyarrow write one (NaN kept).
fn float64_lists(rows: &[Json]) -> ArrayRef {
    let mut b = ListBuilder::new(Float64Builder::new());
    for row in rows {
        let mut x = Vec::new();
        flat(row, &mut x);
        b.values().append_slice(&x);
        b.append(true);
    }
    Arc::new(b.finish())
}

/// `weir replay GRAPH` over an Arrow IPC file of `input` (float64 lists): the answers,
/// one JSON object per row, in order.
fn replay(dir: &Path, graph: &str, input: &str, rows: &[Json]) -> Vec<Json> {
    let batch = RecordBatch::try_from_iter([(input, float64_lists(rows))]).unwrap();
    let (inp, out) = (dir.join(format!("{input}.arrow")), dir.join("answers.arrow"));
    let mut w = arrow_ipc::writer::FileWriter::try_new(File::create(&inp).unwrap(), &batch.schema()).unwrap();
    w.write(&batch).unwrap();
    w.finish().unwrap();
    let status =
        common::weir_cli(&["replay", graph, "--input", inp.to_str().unwrap(), "--output", out.to_str().unwrap()]);
    assert!(status.status.success(), "{}", common::text(&status.stderr));
    let batches: Vec<RecordBatch> = arrow_ipc::reader::FileReader::try_new(File::open(&out).unwrap(), None)
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap();
    let mut answers = Vec::new();
    for b in &batches {
        for row in 0..b.num_rows() {
            let mut obj = serde_json::Map::new();
            for (field, col) in b.schema().fields().iter().zip(b.columns()) {
                obj.insert(field.name().clone(), cell(col, row));
            }
            answers.push(Json::Object(obj));
        }
    }
    answers
}

/// One cell of a replay's output, as weir's JSON encodes it.
fn cell(col: &ArrayRef, row: usize) -> Json {
    let f32_json = |x: f32| weir_connectors::json::f32_json(x);
    match col.data_type() {
        DataType::Int64 => json!(col.as_primitive::<Int64Type>().value(row)),
        DataType::Float32 => f32_json(col.as_primitive::<Float32Type>().value(row)),
        DataType::FixedSizeList(..) => {
            let v = col.as_fixed_size_list().value(row);
            Json::Array(v.as_primitive::<Float32Type>().values().iter().map(|x| f32_json(*x)).collect())
        }
        other => panic!("unexpected output column type {other}"),
    }
}

/// Checks answers (JSON objects named like the golden's outputs) against the golden.
fn check(stem: &str, how: &str, answers: &[Json], g: &Json) {
    let outputs = g["outputs"].as_object().unwrap();
    let n = outputs.values().next().unwrap().as_array().unwrap().len();
    assert_eq!(answers.len(), n, "{stem} over {how}: one answer per row");
    for (i, answer) in answers.iter().enumerate() {
        for (name, want) in outputs {
            assert_close(&format!("{stem} over {how}"), name, i, &answer[name], &want[i]);
        }
    }
}

/// Serves `graph` (its model's outputs named like the golden's) over Kafka, HTTP and
/// `weir replay` on the golden's held-out rows of `input`; checks each way's answers
/// against the golden and the three ways against each other.
async fn three_ways(dir: &Path, graph: &str, route: &str, stem: &str, input: &str) {
    let g = golden(stem);
    let rows = g["inputs"][input].as_array().unwrap().clone();
    let broker = Broker::start();
    broker.create_topics(&["in", "out", "dlq"], 2).await;
    let messages: Vec<(String, Vec<u8>)> =
        rows.iter().enumerate().map(|(i, r)| (format!("p{i}"), json!({ input: r }).to_string().into_bytes())).collect();
    produce(&broker, &messages).await;
    let (child, log) = weir_logged(&broker, graph, &[]);
    let out = read_until(&broker, "out", 2, Duration::from_secs(60), distinct_keys(rows.len()));
    let mut kafka = vec![Json::Null; rows.len()];
    for o in &out {
        kafka[o.key[1..].parse::<usize>().unwrap()] = serde_json::from_slice(&o.payload).unwrap();
    }
    check(stem, "Kafka", &kafka, &g);
    let addr = common::kafka::address(&log);
    let body: Vec<Json> = rows.iter().map(|r| json!({ input: r })).collect();
    let (status, answer) = http_post(&addr, &format!("/graphs/{route}"), &Json::from(body).to_string());
    assert_eq!(status, 200, "{answer}");
    let http: Vec<Json> = serde_json::from_str(&answer).unwrap();
    check(stem, "HTTP", &http, &g);
    stop(child);
    let replayed = replay(dir, graph, input, &rows);
    check(stem, "replay", &replayed, &g);
    assert_eq!(http, kafka, "{graph}: HTTP and Kafka answer alike");
    assert_eq!(http, replayed, "{graph}: HTTP and replay answer alike");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_bundled_zoo_graphs_answer_alike_over_http_kafka_and_replay() {
    let dir = tempfile::tempdir().unwrap();
    // Gradient-boosted trees, rows with missing features (null in JSON, NaN in Arrow).
    three_ways(dir.path(), "graphs/phishing-xgboost.yaml", "phishing-xgboost", "phishing_xgb", "features").await;
    // A scikit-learn pipeline exported to ONNX.
    three_ways(dir.path(), "graphs/digits-onnx.yaml", "digits-onnx", "digits_mlp", "pixels").await;
    // A LightGBM text model, from a graph the test writes.
    let graph = dir.path().join("phishing-lightgbm.yaml");
    std::fs::write(
        &graph,
        format!(
            "name: phishing-lightgbm\ninputs:\n  features: f32[9]\nnodes:\n  trees:\n    kind: model\n    \
             format: lightgbm\n    path: {}\n    input: input.features\noutputs:\n  probability: trees.probability\n  \
             label: trees.label\n",
            root().join("graphs/zoo/phishing_lgbm.txt").display()
        ),
    )
    .unwrap();
    three_ways(dir.path(), graph.to_str().unwrap(), "phishing-lightgbm", "phishing_lgbm", "features").await;
}
