//! Online learning through the graph: `graphs/phishing-online.yaml` learns River's
//! phishing stream from scratch, predict then learn, with its labels fed back by key
//! around the dataflow's feedback loop.
#![allow(clippy::unwrap_used)] // a test or benchmark fails loudly on the first surprise

mod common;

use std::time::{Duration, Instant};

use weir::datasets::{graphs_dir, phishing, Page};
use weir_engine::plan::StepOp;
use weir_engine::prequential::{prequential, PrequentialRun};
use weir_engine::spec::{CheckpointSpec, GraphSpec, NodeKind};
use weir_engine::{yaml, Engine, EngineConfig, Feedback, Plan};
use weir_operators::kernel::learn::{OnlineLinear, Optimizer, RunningScaler, Weights};
use weir_operators::{Column, Value};

/// The rows of a prequential run's blocks (the last one what is left).
const MAX_BLOCK: usize = 32;

fn spec() -> GraphSpec {
    yaml::load_file(&graphs_dir().join("phishing-online.yaml")).expect("graph loads")
}

fn columns(pages: &[Page]) -> (Vec<Column>, Vec<i64>) {
    let ids = Column::I64((0..pages.len() as i64).collect());
    let features = Column::Tensor { width: 9, data: pages.iter().flat_map(|p| p.features.iter().copied()).collect() };
    (vec![ids, features], pages.iter().map(|p| i64::from(p.phishing)).collect())
}

fn run(spec: &GraphSpec, workers: usize, pages: &[Page]) -> (PrequentialRun, u64) {
    run_blocks(spec, workers, pages, MAX_BLOCK)
}

fn run_blocks(spec: &GraphSpec, workers: usize, pages: &[Page], max_block: usize) -> (PrequentialRun, u64) {
    let config = EngineConfig { workers, deterministic: true, ..EngineConfig::default() };
    let engine = Engine::start(vec![Plan::new(spec).expect("plan")], config).expect("engine starts");
    let graph = engine.graph("phishing_online").expect("graph");
    let (inputs, labels) = columns(pages);
    let run = prequential(&graph, &inputs, &labels, max_block).expect("prequential run");
    // Shutting down lets the learner take the last labels in.
    engine.shutdown();
    (run, graph.learn_stats().expect("the graph learns").1.version)
}

/// The same arithmetic without a graph, River's order: each row predicted with the
/// weights learned from every row before it, then learned.
fn kernel_prequential(pages: &[Page]) -> Vec<f32> {
    let mut scaler = RunningScaler::new(9);
    let mut model = OnlineLinear::logistic(9, Optimizer::Sgd { lr: 0.02 }, 0.0);
    let mut x = [0.0f32; 9];
    let mut predictions = Vec::new();
    for p in pages {
        scaler.transform(&p.features, &mut x);
        predictions.push(model.predict(&x)[1]);
        scaler.update(&p.features);
        scaler.transform(&p.features, &mut x);
        model.learn(&x, &[usize::from(p.phishing)]);
    }
    predictions
}

fn outputs(run: &PrequentialRun) -> (Vec<f32>, Vec<i64>) {
    let mut p = Vec::new();
    let mut versions = Vec::new();
    for chunk in &run.blocks {
        assert!(!chunk.has_errors(), "no row fails");
        match (&*chunk.columns[0], &*chunk.columns[2]) {
            (Column::F32(probs), Column::I64(v)) => {
                p.extend_from_slice(probs);
                versions.extend_from_slice(v);
            }
            other => panic!("unexpected output columns {other:?}"),
        }
    }
    (p, versions)
}

#[test]
fn learns_the_phishing_stream_prequentially_and_versions_advance() {
    let pages = phishing().expect("phishing stream");
    let (run, version) = run(&spec(), 1, &pages);
    println!("prequential accuracy through the graph: {:.4} ({} rows)", run.accuracy(), run.rows);
    assert_eq!(run.rows, 1250);
    assert_eq!(version, 1250, "one step per label");
    // River's StandardScaler | LogisticRegression scores 0.8928 on this stream
    // (cargo bench --bench learn).
    assert!(run.accuracy() >= 0.89, "prequential accuracy {}", run.accuracy());

    let (p, versions) = outputs(&run);
    assert_eq!(p, kernel_prequential(&pages), "the graph computes what the kernel does, bit for bit");
    // Blocks of 32 rows go in with their labels, yet row i is predicted by
    // version i: the labels of every row before it, those of its own block too.
    assert_eq!(versions, (0..1250).collect::<Vec<i64>>());
}

#[test]
fn same_streams_same_weights_and_answers_at_one_and_two_workers() {
    let pages = phishing().expect("phishing stream");
    let pages = &pages[..400];
    let (one, v1) = run(&spec(), 1, pages);
    let (two, v2) = run(&spec(), 2, pages);
    assert_eq!(v1, v2);
    let (p1, versions1) = outputs(&one);
    let (p2, versions2) = outputs(&two);
    assert_eq!(versions1, versions2);
    // Nor do the answers depend on the blocks the rows travel in, at either count.
    for (workers, max_block) in [(1, 1), (1, 7), (2, 1), (2, 7)] {
        let (other, _) = run_blocks(&spec(), workers, pages, max_block);
        let blocks = format!("{workers} workers, blocks of up to {max_block} rows");
        assert_eq!(outputs(&other), (p1.clone(), versions1.clone()), "{blocks}");
    }
    assert_eq!(p1, kernel_prequential(pages), "each row saw every label before it");
    // And the weights they end with, saved at shutdown, are the same too.
    let base = std::env::temp_dir().join(format!("weir-online-workers-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&base);
    let mut weights = Vec::new();
    for workers in [1, 2] {
        let dir = base.join(workers.to_string());
        run(&checkpointed(&dir), workers, pages);
        weights.push(final_weights(&dir, &checkpointed(&dir)));
    }
    assert_eq!(weights[0].version, 400);
    assert_eq!(weights[0], weights[1]);
    let _ = std::fs::remove_dir_all(&base);
    assert_eq!(p1.iter().map(|p| p.to_bits()).collect::<Vec<_>>(), p2.iter().map(|p| p.to_bits()).collect::<Vec<_>>());
}

/// The spec with checkpoints in `dir` every 50 versions.
fn checkpointed(dir: &std::path::Path) -> GraphSpec {
    let mut spec = spec();
    let learn = spec.nodes.iter_mut().find_map(|n| match &mut n.kind {
        NodeKind::Model(m) => m.learn.as_mut(),
        _ => None,
    });
    learn.expect("the model learns").checkpoint = Some(CheckpointSpec { dir: dir.to_path_buf(), every: 50 });
    spec
}

fn final_weights(dir: &std::path::Path, spec: &GraphSpec) -> Weights {
    let plan = Plan::new(spec).expect("plan");
    let learner = plan.steps.iter().find_map(|s| match &s.op {
        StepOp::Learn { learner, .. } => Some(learner.clone()),
        _ => None,
    });
    assert!(dir.join("latest.safetensors").exists());
    learner.expect("a learning step").weights()
}

#[test]
fn a_restart_resumes_from_the_checkpoint() {
    let pages = phishing().expect("phishing stream");
    let pages = &pages[..300];
    let base = std::env::temp_dir().join(format!("weir-online-checkpoint-{}", std::process::id()));
    let (straight_dir, broken_dir) = (base.join("straight"), base.join("broken"));
    let _ = std::fs::remove_dir_all(&base);
    // An unbroken run; and one stopped after 100 rows, then resumed by a new engine over
    // the other 200. Learning goes row by row, so both end with the same weights.
    let (_, straight_version) = run(&checkpointed(&straight_dir), 1, pages);
    let (_, stopped_at) = run(&checkpointed(&broken_dir), 1, &pages[..100]);
    assert_eq!((straight_version, stopped_at), (300, 100));
    let description = weir_engine::render::describe(&Plan::new(&checkpointed(&broken_dir)).expect("plan"));
    assert!(description.contains("resumed at version 100"), "{description}");
    let (resumed, version) = run(&checkpointed(&broken_dir), 1, &pages[100..]);
    assert_eq!(version, 300);
    assert_eq!(outputs(&resumed).1[0], 100, "the first row after the restart is predicted by version 100");
    let straight = final_weights(&straight_dir, &checkpointed(&straight_dir));
    let broken = final_weights(&broken_dir, &checkpointed(&broken_dir));
    assert_eq!(straight.version, 300);
    assert_eq!(straight, broken, "the restart continued exactly where it stopped");
    let _ = std::fs::remove_dir_all(&base);
}

#[test]
fn feedback_for_unknown_or_expired_keys_is_counted_not_fatal() {
    let mut spec = spec();
    let learn = spec.nodes.iter_mut().find_map(|n| match &mut n.kind {
        NodeKind::Model(m) => m.learn.as_mut(),
        _ => None,
    });
    learn.expect("the model learns").keep_rows = 4;
    let engine = Engine::start(vec![Plan::new(&spec).expect("plan")], EngineConfig::default()).expect("engine");
    let graph = engine.graph("phishing_online").expect("graph");
    let pages = phishing().expect("phishing stream");
    let row = |id: i64| vec![Value::I64(id), Value::Tensor(pages[id as usize].features.clone().into())];
    for id in 0..10 {
        let answer = graph.call(row(id)).expect("submitted").expect("answered");
        assert_eq!(answer[2], Value::I64(0), "nothing learned yet");
    }
    let kinds = graph.feedback_kinds().expect("the graph learns").clone();
    let mut feedback = Feedback::new(&kinds);
    // Rows 0 to 5 were dropped for room; the keeper remembers the last 4 of them.
    feedback.push(Some(&Value::I64(5)), 1, None).expect("fits"); // dropped for room: expired
    feedback.push(Some(&Value::I64(100)), 1, None).expect("fits"); // never predicted: unknown
    feedback.push(Some(&Value::I64(8)), 7, None).expect("fits"); // not a class: invalid
    feedback.push(Some(&Value::I64(9)), 1, None).expect("fits"); // learned
    feedback.push(Some(&Value::I64(9)), 1, None).expect("fits"); // taken already: unknown
    graph.submit_feedback(feedback, true).expect("feedback accepted");
    let deadline = Instant::now() + Duration::from_secs(10);
    let stats = loop {
        let (_, s) = graph.learn_stats().expect("the graph learns");
        if s.feedback == 5 || Instant::now() > deadline {
            break s;
        }
        std::thread::sleep(Duration::from_millis(5));
    };
    assert_eq!((stats.feedback, stats.learned, stats.unknown_key, stats.expired_key, stats.invalid), (5, 1, 2, 1, 1));
    // The graph still serves, now with the weights learned from the one good label.
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let answer = graph.call(row(10)).expect("submitted").expect("answered");
        if answer[2] == Value::I64(1) {
            break;
        }
        assert!(Instant::now() < deadline, "the new weights reach the model: {answer:?}");
        std::thread::sleep(Duration::from_millis(5));
    }
    engine.shutdown();
}

mod http_feedback {
    use axum::body::Body;
    use axum::http::{Request, StatusCode};
    use http_body_util::BodyExt;
    use serde_json::{json, Value as Json};
    use tower::ServiceExt;
    use weir_connectors::http::{self, AppState, ServerConfig};
    use weir_engine::{load_plan, Engine, EngineConfig};

    async fn call(app: &axum::Router, req: Request<Body>) -> (StatusCode, Json) {
        let res = app.clone().oneshot(req).await.expect("a response");
        let status = res.status();
        let bytes = res.into_body().collect().await.expect("a body").to_bytes();
        (
            status,
            serde_json::from_slice(&bytes).unwrap_or_else(|_| Json::String(String::from_utf8_lossy(&bytes).into())),
        )
    }

    fn post(path: &str, body: &Json) -> Request<Body> {
        Request::post(path)
            .header("content-type", "application/json")
            .body(Body::from(body.to_string()))
            .expect("request")
    }

    #[tokio::test]
    async fn labels_posted_as_feedback_move_the_served_version() {
        let graphs = weir::datasets::graphs_dir();
        let plans = ["phishing-online", "diamond"].map(|n| load_plan(&graphs.join(format!("{n}.yaml"))).expect("plan"));
        // Two workers: predictions reach the learner from both, its weights go to both.
        let engine =
            Engine::start(plans.to_vec(), EngineConfig { workers: 2, ..EngineConfig::default() }).expect("engine");
        let app =
            http::router(AppState::new(engine.graphs(), ServerConfig::default(), weir_operators::Shutdown::new()));
        let pages = weir::datasets::phishing().expect("phishing stream");
        let rows: Vec<Json> =
            pages[..20].iter().enumerate().map(|(i, p)| json!({"id": i, "features": p.features})).collect();
        let (status, answers) = call(&app, post("/graphs/phishing_online", &Json::Array(rows))).await;
        assert_eq!(status, StatusCode::OK, "{answers}");
        assert!(answers.as_array().expect("an array").iter().all(|a| a["model_version"] == json!(0)));
        let labels: Vec<Json> =
            pages[..20].iter().enumerate().map(|(i, p)| json!({"key": i, "label": i64::from(p.phishing)})).collect();
        let (status, body) = call(&app, post("/graphs/phishing_online/feedback", &Json::Array(labels))).await;
        assert_eq!((status, body), (StatusCode::ACCEPTED, json!({"accepted": 20})));
        // The learner steps once per label and sends its weights around the loop.
        let probe = json!({"id": 99, "features": pages[20].features});
        let started = std::time::Instant::now();
        loop {
            let (status, answer) = call(&app, post("/graphs/phishing_online", &probe)).await;
            assert_eq!(status, StatusCode::OK);
            if answer["model_version"] == json!(20) {
                break;
            }
            assert!(started.elapsed().as_secs() < 10, "the served version reaches 20: {answer}");
            tokio::time::sleep(std::time::Duration::from_millis(5)).await;
        }
        let metrics = app
            .clone()
            .oneshot(Request::get("/metrics").body(Body::empty()).expect("request"))
            .await
            .expect("metrics")
            .into_body()
            .collect()
            .await
            .expect("a body")
            .to_bytes();
        let metrics = String::from_utf8_lossy(&metrics);
        assert!(
            metrics.contains(r#"weir_feedback_total{graph="phishing_online",node="model",outcome="learned"} 20"#),
            "{metrics}"
        );
        assert!(metrics.contains(r#"weir_model_version{graph="phishing_online",node="model"} 20"#), "{metrics}");

        // Bad feedback is refused whole, naming the field; a graph that does not learn
        // has no feedback route.
        let cases = [
            (
                "/graphs/phishing_online/feedback",
                json!({"key": 1, "label": "yes"}),
                StatusCode::UNPROCESSABLE_ENTITY,
                Some("label"),
            ),
            (
                "/graphs/phishing_online/feedback",
                json!({"key": 1, "lable": 1}),
                StatusCode::UNPROCESSABLE_ENTITY,
                Some("lable"),
            ),
            (
                "/graphs/phishing_online/feedback",
                json!({"key": "a", "label": 1}),
                StatusCode::UNPROCESSABLE_ENTITY,
                Some("key"),
            ),
            ("/graphs/phishing_online/feedback", json!({"label": 1}), StatusCode::UNPROCESSABLE_ENTITY, None),
            ("/graphs/diamond/feedback", json!({"key": 1, "label": 1}), StatusCode::NOT_FOUND, None),
        ];
        for (path, body, want, field) in cases {
            let (status, answer) = call(&app, post(path, &body)).await;
            assert_eq!(status, want, "{body} -> {answer}");
            assert_eq!(answer["error"]["field"].as_str(), field, "{answer}");
        }
        engine.shutdown();
    }
}

mod replay_prequential {

    fn weir(args: &[&str]) -> std::process::Output {
        std::process::Command::new(env!("CARGO_BIN_EXE_weir"))
            .args(args)
            .current_dir(env!("CARGO_MANIFEST_DIR"))
            .output()
            .expect("weir runs")
    }

    #[test]
    fn weir_replay_backtests_the_labelled_stream_at_one_and_two_workers() {
        let dir = std::env::temp_dir().join(format!("weir-prequential-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("dir");
        let file = dir.join("phishing.arrow");
        crate::common::streams::phishing_labelled(&file);
        let mut finals = Vec::new();
        for workers in ["1", "2"] {
            let args = [
                "replay",
                "graphs/phishing-online.yaml",
                "--input",
                file.to_str().expect("utf-8"),
                "--prequential",
                "is_phishing",
                "--workers",
                workers,
            ];
            let out = weir(&args);
            let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
            assert!(out.status.success(), "{stderr}");
            assert!(stderr.contains("weir: prequential: 250 rows, running accuracy"), "{stderr}");
            let last = stderr.lines().last().expect("a summary").to_string();
            assert!(last.contains("1250 rows, accuracy 0.9008, model version 1250"), "{last}");
            finals.push(last.split(", model version").next().map(str::to_string));
        }
        assert_eq!(finals[0], finals[1]);
        // A missing label column is refused before anything runs, naming the file.
        let out = weir(&[
            "replay",
            "graphs/phishing-online.yaml",
            "--input",
            file.to_str().expect("utf-8"),
            "--prequential",
            "label",
        ]);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{stderr}");
        assert!(stderr.contains("phishing.arrow") && stderr.contains("no label column 'label'"), "{stderr}");
        let _ = std::fs::remove_dir_all(&dir);
    }
}

/// Softmax regression over 10 classes, built in Rust: scikit-learn's digits, predict then
/// learn, the feedback carrying its own features (no key).
#[test]
fn softmax_regression_built_in_rust_learns_the_digits() {
    use weir_engine::builder::{GraphBuilder, Model};
    use weir_engine::spec::LearnSpec;
    use weir_operators::FieldType;

    let mut g = GraphBuilder::new("digits_online");
    let pixels = g.input("pixels", FieldType::vector(64));
    let model =
        g.node("model", Model::learning(LearnSpec::new(10, Optimizer::adam(0.01))).output("probs").bind(pixels));
    g.output("probs", model.field("probs"));
    g.output("version", model.field("model_version"));
    let plan = g.plan().expect("the builder's graph plans");
    let config = EngineConfig { workers: 2, deterministic: true, ..EngineConfig::default() };
    let engine = Engine::start(vec![plan], config).expect("engine");
    let graph = engine.graph("digits_online").expect("graph");
    let digits = weir::datasets::digits(weir::datasets::Split::Train).expect("digits");
    let inputs =
        vec![Column::Tensor { width: 64, data: digits.iter().flat_map(|d| d.pixels.iter().copied()).collect() }];
    let labels: Vec<i64> = digits.iter().map(|d| i64::from(d.label)).collect();
    let run = prequential(&graph, &inputs, &labels, MAX_BLOCK).expect("prequential run");
    engine.shutdown();
    println!("digits, softmax regression learned online: prequential accuracy {:.4}", run.accuracy());
    assert_eq!(run.rows, 1437);
    assert!(run.accuracy() >= 0.85, "prequential accuracy {}", run.accuracy());
    let learned = graph.learn_stats().expect("learns").1;
    assert_eq!((learned.learned, learned.version), (1437, 1437));
    // The node counts its predictions in a deterministic engine too (no cycle there:
    // one operator predicts and learns).
    let stats = graph.node_stats();
    let (_, model) = stats.iter().find(|(name, _)| name == "model").expect("the learning node's counters");
    assert_eq!((model.rows_in, model.rows_out), (1437, 1437), "{model:?}");
    assert!(model.busy_ns > 0, "{model:?}");
}

/// With `update_every_ms`, labels that do not fill a minibatch are stepped on once the
/// first has waited that long (serving mode).
#[test]
fn a_partial_minibatch_is_stepped_on_after_update_every_ms() {
    let mut spec = spec();
    let learn = spec.nodes.iter_mut().find_map(|n| match &mut n.kind {
        NodeKind::Model(m) => m.learn.as_mut(),
        _ => None,
    });
    let learn = learn.expect("the model learns");
    learn.update_every = 1000;
    learn.update_every_ms = Some(300);
    let engine = Engine::start(vec![Plan::new(&spec).expect("plan")], EngineConfig::default()).expect("engine");
    let graph = engine.graph("phishing_online").expect("graph");
    let pages = phishing().expect("phishing stream");
    for id in 0..5 {
        let row = vec![Value::I64(id), Value::Tensor(pages[id as usize].features.clone().into())];
        graph.call(row).expect("submitted").expect("answered");
    }
    let mut feedback = Feedback::new(graph.feedback_kinds().expect("learns"));
    for id in 0..5 {
        feedback.push(Some(&Value::I64(id)), i64::from(pages[id as usize].phishing), None).expect("fits");
    }
    let sent = Instant::now();
    graph.submit_feedback(feedback, true).expect("accepted");
    let stats = loop {
        let (_, s) = graph.learn_stats().expect("learns");
        if s.version > 0 {
            break s;
        }
        if s.learned == 5 && sent.elapsed() < Duration::from_millis(250) {
            assert_eq!(s.version, 0, "five labels do not fill a minibatch of 1000");
        }
        assert!(sent.elapsed() < Duration::from_secs(10), "the partial minibatch is stepped on: {s:?}");
        std::thread::sleep(Duration::from_millis(2));
    };
    assert!(sent.elapsed() >= Duration::from_millis(300), "not before update_every_ms");
    assert_eq!((stats.learned, stats.version), (5, 1), "one step with all five");
    engine.shutdown();
}

mod replay_two_streams {
    use std::sync::Arc;

    use arrow_array::{Array, ArrayRef, Float32Array, Int64Array, RecordBatch};

    /// How many rows later a label arrives than its prediction.
    const DELAY: usize = 50;

    fn column(batch: &RecordBatch, name: &str) -> ArrayRef {
        Arc::clone(batch.column_by_name(name).unwrap_or_else(|| panic!("column {name}")))
    }

    #[test]
    fn predictions_and_late_labels_from_two_files_replay_identically_at_any_block_size_and_worker_count() {
        let dir = std::env::temp_dir().join(format!("weir-two-streams-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("dir");
        let (p_path, l_path) = crate::common::streams::phishing_two_streams(&dir, 600, DELAY);
        let mut answers = Vec::new();
        for (workers, chunk_rows) in [("1", "1024"), ("2", "1024"), ("2", "7")] {
            let out = dir.join(format!("out-{workers}-{chunk_rows}.arrow"));
            let args = [
                "replay",
                "graphs/phishing-online.yaml",
                "--input",
                p_path.to_str().expect("utf-8"),
                "--feedback",
                l_path.to_str().expect("utf-8"),
                "--order-by",
                "ts",
                "--output",
                out.to_str().expect("utf-8"),
                "--workers",
                workers,
                "--chunk-rows",
                chunk_rows,
            ];
            let run = std::process::Command::new(env!("CARGO_BIN_EXE_weir"))
                .args(args)
                .current_dir(env!("CARGO_MANIFEST_DIR"))
                .output()
                .expect("weir runs");
            let stderr = String::from_utf8_lossy(&run.stderr);
            assert!(run.status.success(), "{stderr}");
            assert!(stderr.contains("600 rows, 0 errors") && stderr.contains("model version 600"), "{stderr}");
            let batch = crate::common::streams::read(&out);
            let p = column(&batch, "p_phishing");
            let p = p.as_any().downcast_ref::<Float32Array>().expect("f32");
            let v = column(&batch, "model_version");
            let v = v.as_any().downcast_ref::<Int64Array>().expect("i64");
            // Row i is predicted with every label that came before it: rows 0 to i - DELAY - 1.
            for i in 0..600 {
                assert_eq!(v.value(i), i.saturating_sub(DELAY) as i64, "row {i}");
            }
            answers.push((0..p.len()).map(|i| p.value(i).to_bits()).collect::<Vec<_>>());
        }
        assert_eq!(answers[0], answers[1], "1 and 2 workers");
        assert_eq!(answers[1], answers[2], "blocks of 1024 and of 7 rows");
        let _ = std::fs::remove_dir_all(&dir);
    }
}
