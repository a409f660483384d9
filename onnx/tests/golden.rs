//! Golden tests: every ONNX model of the zoo (`graphs/zoo/*.onnx`) against the outputs
//! onnxruntime computed on held-out rows (`tests/golden/zoo/<stem>.json`, written by
//! `scripts/make_zoo.py`). Floats within 1e-5, labels equal.
#![allow(clippy::unwrap_used)]

use std::path::{Path, PathBuf};

use candle_core::Device;
use serde_json::Value as Json;
use weir_onnx::{ElemType, HostTensor, OnnxModel};

/// Largest difference allowed between weir and onnxruntime: absolute for values up to 1 in
/// magnitude (probabilities), relative above (regression outputs in the hundreds, where one
/// f32 ulp is already above 1e-5).
const TOLERANCE: f64 = 1e-5;

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// Flattens nested JSON arrays into numbers (null as NaN) and their shape.
fn flatten(j: &Json, shape: &mut Vec<usize>, depth: usize, out: &mut Vec<f64>) {
    match j {
        Json::Array(items) => {
            if shape.len() == depth {
                shape.push(items.len());
            }
            for item in items {
                flatten(item, shape, depth + 1, out);
            }
        }
        Json::Null => out.push(f64::NAN),
        Json::Number(n) => out.push(n.as_f64().unwrap()),
        other => panic!("unexpected JSON value {other}"),
    }
}

/// The numbers of an output, as f64, whatever its type.
fn numbers(t: &HostTensor) -> Vec<f64> {
    match t {
        HostTensor::F32 { data, .. } => data.iter().map(|&v| f64::from(v)).collect(),
        HostTensor::F64 { data, .. } => data.clone(),
        HostTensor::I64 { data, .. } => data.iter().map(|&v| v as f64).collect(),
        HostTensor::I32 { data, .. } => data.iter().map(|&v| f64::from(v)).collect(),
        HostTensor::Bool { data, .. } => data.iter().map(|&v| f64::from(u8::from(v))).collect(),
        HostTensor::Str { .. } => panic!("string outputs are not in the zoo"),
    }
}

/// Runs one golden file, returning the largest float difference seen.
fn check(golden: &Path) -> f64 {
    let g: Json = serde_json::from_str(&std::fs::read_to_string(golden).unwrap()).unwrap();
    let model_path = repo().join(g["model"].as_str().unwrap());
    let model = OnnxModel::load(&model_path).unwrap();
    let mut session = model.session(&Device::Cpu).unwrap();
    let inputs = model
        .inputs()
        .iter()
        .map(|spec| {
            let (mut shape, mut data) = (Vec::new(), Vec::new());
            flatten(&g["inputs"][&spec.name], &mut shape, 0, &mut data);
            assert_eq!(spec.elem, ElemType::F32, "{}: input {}", golden.display(), spec.name);
            HostTensor::F32 { shape, data: data.iter().map(|&v| v as f32).collect() }
        })
        .collect();
    let outputs = session.run(inputs).unwrap();
    let mut worst = 0.0f64;
    let expected = g["outputs"].as_object().unwrap();
    for (spec, got) in model.outputs().iter().zip(&outputs) {
        let Some(want) = expected.get(&spec.name) else { continue };
        let (mut shape, mut want_data) = (Vec::new(), Vec::new());
        flatten(want, &mut shape, 0, &mut want_data);
        let got_data = numbers(got);
        assert_eq!(got_data.len(), want_data.len(), "{}: output {} size", golden.display(), spec.name);
        let exact = matches!(got, HostTensor::I64 { .. } | HostTensor::I32 { .. });
        for (i, (a, b)) in got_data.iter().zip(&want_data).enumerate() {
            if exact {
                assert_eq!(a, b, "{}: output {} element {i}", golden.display(), spec.name);
            } else {
                let d = (a - b).abs() / b.abs().max(1.0);
                assert!(
                    d <= TOLERANCE,
                    "{}: output {} element {i}: weir {a}, onnxruntime {b}",
                    golden.display(),
                    spec.name
                );
                worst = worst.max(d);
            }
        }
    }
    for name in expected.keys() {
        assert!(
            model.outputs().iter().any(|s| &s.name == name),
            "{}: golden output {name} not declared",
            golden.display()
        );
    }
    worst
}

#[test]
fn every_zoo_onnx_model_matches_onnxruntime() {
    let zoo = repo().join("graphs/zoo");
    let mut models: Vec<PathBuf> = std::fs::read_dir(&zoo)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "onnx"))
        .collect();
    models.sort();
    assert!(models.len() >= 4, "the zoo has {} ONNX models", models.len());
    for model in models {
        let stem = model.file_stem().unwrap().to_str().unwrap();
        let golden = repo().join(format!("tests/golden/zoo/{stem}.json"));
        assert!(golden.exists(), "{} has no golden file", model.display());
        let worst = check(&golden);
        println!("{stem}: largest difference {worst:.3e}");
    }
}

#[test]
fn a_session_is_reusable_and_batch_size_free() {
    // The same rows one by one and as one batch give the same answers.
    let model = OnnxModel::load(&repo().join("graphs/zoo/digits_mlp.onnx")).unwrap();
    let mut session = model.session(&Device::Cpu).unwrap();
    let g: Json =
        serde_json::from_str(&std::fs::read_to_string(repo().join("tests/golden/zoo/digits_mlp.json")).unwrap())
            .unwrap();
    let (mut shape, mut data) = (Vec::new(), Vec::new());
    flatten(&g["inputs"]["pixels"], &mut shape, 0, &mut data);
    let rows: Vec<f32> = data.iter().take(8 * 64).map(|&v| v as f32).collect();
    let batch = session.run(vec![HostTensor::F32 { shape: vec![8, 64], data: rows.clone() }]).unwrap();
    for r in 0..8 {
        let one = session
            .run(vec![HostTensor::F32 { shape: vec![1, 64], data: rows[r * 64..(r + 1) * 64].to_vec() }])
            .unwrap();
        let (b, o) = (numbers(&batch[1]), numbers(&one[1]));
        for c in 0..10 {
            assert!((b[r * 10 + c] - o[c]).abs() < 1e-6);
        }
        assert_eq!(numbers(&batch[0])[r], numbers(&one[0])[0]);
    }
}
