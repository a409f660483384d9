//! Bad models fail at load with an error naming the file, the node and what is wrong; bad
//! batches fail at run naming the input, and leave the session usable.
#![allow(clippy::unwrap_used)]

mod common;

use candle_core::Device;
use common::{init_f32, io, model, node, repo, A};
use prost::Message;
use weir_onnx::{HostTensor, OnnxError, OnnxModel};

fn temp_file(name: &str, bytes: &[u8]) -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!("weir-onnx-tests-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join(name);
    std::fs::write(&path, bytes).unwrap();
    path
}

#[test]
fn a_truncated_file_is_a_decode_error_naming_the_file() {
    let bytes = std::fs::read(repo().join("graphs/zoo/digits_mlp.onnx")).unwrap();
    let path = temp_file("truncated.onnx", &bytes[..bytes.len() / 2]);
    let err = OnnxModel::load(&path).unwrap_err();
    assert!(matches!(err, OnnxError::Decode { .. }), "{err}");
    let msg = err.to_string();
    assert!(msg.contains("truncated.onnx") && msg.contains("not an ONNX model"), "{msg}");
}

#[test]
fn a_file_of_another_format_is_refused() {
    let path = repo().join("graphs/data/digits.csv.gz");
    let err = OnnxModel::load(&path).unwrap_err();
    assert!(matches!(err, OnnxError::Decode { .. } | OnnxError::Model { .. }), "{err}");
    assert!(err.to_string().contains("digits.csv.gz"), "{err}");
}

#[test]
fn a_missing_file_is_a_read_error() {
    let err = OnnxModel::load(&repo().join("graphs/zoo/no_such_model.onnx")).unwrap_err();
    assert!(matches!(err, OnnxError::Read { .. }), "{err}");
}

#[test]
fn an_unsupported_op_fails_at_load_naming_op_node_and_file() {
    // A valid first node, then an operator weir-onnx does not run.
    let m = model(
        vec![
            node("", "Relu", "first", &["x"], &["r"], vec![]),
            node("", "Einsum", "mixer", &["r", "r"], &["y"], vec![("equation", A::S("ij,ij->ij"))]),
        ],
        vec![],
        vec![io("x", 1, &[None, Some(4)])],
        vec![io("y", 1, &[None, Some(4)])],
    );
    let path = temp_file("einsum.onnx", &m.encode_to_vec());
    let err = OnnxModel::load(&path).unwrap_err();
    match &err {
        OnnxError::UnsupportedOp { node, domain, op, opset, .. } => {
            assert_eq!((node.as_str(), domain.as_str(), op.as_str(), *opset), ("mixer", "ai.onnx", "Einsum", 17));
        }
        other => panic!("expected UnsupportedOp, got {other}"),
    }
    let msg = err.to_string();
    assert!(msg.contains("einsum.onnx") && msg.contains("ai.onnx:Einsum") && msg.contains("mixer"), "{msg}");
}

#[test]
fn an_unsupported_ml_op_is_named_with_its_domain() {
    let m = model(
        vec![node("ai.onnx.ml", "LabelEncoder", "encode", &["x"], &["y"], vec![])],
        vec![],
        vec![io("x", 1, &[None, Some(1)])],
        vec![io("y", 1, &[None, Some(1)])],
    );
    let err = OnnxModel::from_proto(&m, std::path::Path::new("labels.onnx")).unwrap_err();
    assert!(err.to_string().contains("ai.onnx.ml:LabelEncoder"), "{err}");
}

#[test]
fn a_zipmap_names_the_exporter_option() {
    let path = repo().join("graphs/zoo/bad/zipmap.onnx");
    let err = OnnxModel::load(&path).unwrap_err();
    assert!(matches!(err, OnnxError::ZipMap { .. }), "{err}");
    let msg = err.to_string();
    assert!(msg.contains("zipmap.onnx") && msg.contains(r#"options={"zipmap": False}"#), "{msg}");
}

#[test]
fn a_value_read_before_it_is_produced_is_a_wiring_error() {
    let m = model(
        vec![
            node("", "Add", "early", &["x", "later"], &["y"], vec![]),
            node("", "Relu", "late", &["x"], &["later"], vec![]),
        ],
        vec![],
        vec![io("x", 1, &[None, Some(2)])],
        vec![io("y", 1, &[None, Some(2)])],
    );
    let err = OnnxModel::from_proto(&m, std::path::Path::new("wired.onnx")).unwrap_err();
    match &err {
        OnnxError::Wiring { node, what, .. } => {
            assert_eq!(node, "early");
            assert!(what.contains("\"later\""), "{what}");
        }
        other => panic!("expected Wiring, got {other}"),
    }
}

#[test]
fn an_output_nothing_produces_is_a_wiring_error() {
    let m = model(
        vec![node("", "Relu", "r", &["x"], &["y"], vec![])],
        vec![],
        vec![io("x", 1, &[None, Some(2)])],
        vec![io("z", 1, &[None, Some(2)])],
    );
    let err = OnnxModel::from_proto(&m, std::path::Path::new("out.onnx")).unwrap_err();
    assert!(matches!(err, OnnxError::Wiring { .. }) && err.to_string().contains("\"z\""), "{err}");
}

#[test]
fn a_bad_attribute_names_the_node_and_attribute() {
    let m = model(
        vec![node("", "Conv", "conv1", &["x", "w"], &["y"], vec![("auto_pad", A::S("SAME_UPPER"))])],
        vec![init_f32("w", &[1, 1, 3, 3], vec![0.0; 9])],
        vec![io("x", 1, &[None, Some(1), Some(8), Some(8)])],
        vec![io("y", 1, &[None, Some(1), Some(8), Some(8)])],
    );
    let err = OnnxModel::from_proto(&m, std::path::Path::new("conv.onnx")).unwrap_err();
    let msg = err.to_string();
    assert!(matches!(err, OnnxError::Node { .. }), "{msg}");
    assert!(msg.contains("conv1") && msg.contains("auto_pad") && msg.contains("conv.onnx"), "{msg}");
}

#[test]
fn a_bad_batch_names_the_input_and_leaves_the_session_usable() {
    let model = OnnxModel::load(&repo().join("graphs/zoo/digits_mlp.onnx")).unwrap();
    let mut session = model.session(&Device::Cpu).unwrap();
    let wrong_width = session.run(vec![HostTensor::F32 { shape: vec![2, 63], data: vec![0.0; 126] }]).unwrap_err();
    assert!(matches!(&wrong_width, OnnxError::Input { input, .. } if input == "pixels"), "{wrong_width}");
    let wrong_type = session.run(vec![HostTensor::I64 { shape: vec![1, 64], data: vec![0; 64] }]).unwrap_err();
    assert!(matches!(wrong_type, OnnxError::Input { .. }), "{wrong_type}");
    let short = session.run(vec![HostTensor::F32 { shape: vec![2, 64], data: vec![0.0; 64] }]).unwrap_err();
    assert!(matches!(short, OnnxError::Input { .. }), "{short}");
    let too_many = session.run(vec![]).unwrap_err();
    assert!(matches!(too_many, OnnxError::Input { .. }), "{too_many}");
    let ok = session.run(vec![HostTensor::F32 { shape: vec![2, 64], data: vec![0.0; 128] }]).unwrap();
    assert_eq!(ok[1].shape(), &[2, 10]);
}

#[test]
fn a_model_is_shared_across_threads_and_a_session_moves_to_one() {
    fn shared<T: Send + Sync>() {}
    fn sent<T: Send>() {}
    shared::<OnnxModel>();
    sent::<weir_onnx::Session>();
    // Two replicas of one loaded model, each on its own thread, agree.
    let model = std::sync::Arc::new(OnnxModel::load(&repo().join("graphs/zoo/digits_logreg.onnx")).unwrap());
    let answers: Vec<Vec<HostTensor>> = (0..2)
        .map(|_| {
            let model = std::sync::Arc::clone(&model);
            std::thread::spawn(move || {
                let mut s = model.session(&Device::Cpu).unwrap();
                s.run(vec![HostTensor::F32 { shape: vec![1, 64], data: (0..64).map(|i| (i % 16) as f32).collect() }])
                    .unwrap()
            })
        })
        .collect::<Vec<_>>()
        .into_iter()
        .map(|h| h.join().unwrap())
        .collect();
    assert_eq!(answers[0], answers[1]);
}
