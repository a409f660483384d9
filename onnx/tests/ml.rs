//! ONNX-ML operators on cases the zoo's models do not reach, against references written here
//! from the ONNX-ML spec (and onnxruntime's reading of it): a binary linear classifier with
//! string labels, a two-target linear regressor behind a one-value Scaler, the MAX and L2
//! normalizers, string one-hot encoding and column extraction, and tree ensembles given as
//! `*_as_tensor` doubles (ONNX-ML opset 3) with averaging, missing values and the binary
//! classifier case.
#![allow(clippy::unwrap_used)]

mod common;

use candle_core::Device;
use common::{doubles, floats, io, model, node, A};
use weir_onnx::proto::ModelProto;
use weir_onnx::{HostTensor, OnnxModel};

fn run(m: &ModelProto, inputs: Vec<HostTensor>) -> Vec<HostTensor> {
    let model = OnnxModel::from_proto(m, std::path::Path::new("ml.onnx")).unwrap();
    model.session(&Device::Cpu).unwrap().run(inputs).unwrap()
}

fn f32s(t: &HostTensor) -> &[f32] {
    match t {
        HostTensor::F32 { data, .. } => data,
        other => panic!("expected f32, got {other:?}"),
    }
}

fn close(got: &[f32], want: &[f32]) {
    assert_eq!(got.len(), want.len());
    for (i, (a, b)) in got.iter().zip(want).enumerate() {
        assert!((a - b).abs() <= 1e-5 * b.abs().max(1.0), "element {i}: got {a}, want {b}");
    }
}

fn logistic(s: f32) -> f32 {
    1.0 / (1.0 + (-s).exp())
}

#[test]
fn binary_linear_classifier_with_string_labels() {
    let (w, x) = (floats(4, 30), floats(5 * 4, 31));
    let n = node(
        "ai.onnx.ml",
        "LinearClassifier",
        "lc",
        &["x"],
        &["label", "p"],
        vec![
            ("coefficients", A::Floats(w.clone())),
            ("intercepts", A::Floats(vec![0.1])),
            ("classlabels_strings", A::Strings(vec!["no", "yes"])),
            ("post_transform", A::S("LOGISTIC")),
        ],
    );
    let m = model(
        vec![n],
        vec![],
        vec![io("x", 1, &[None, Some(4)])],
        vec![io("label", 8, &[None]), io("p", 1, &[None, Some(2)])],
    );
    let out = run(&m, vec![HostTensor::F32 { shape: vec![5, 4], data: x.clone() }]);
    let scores: Vec<f32> = x.chunks(4).map(|r| r.iter().zip(&w).map(|(a, b)| a * b).sum::<f32>() + 0.1).collect();
    let labels: Vec<String> = scores.iter().map(|&s| if s > 0.0 { "yes" } else { "no" }.to_string()).collect();
    assert_eq!(out[0], HostTensor::Str { shape: vec![5], data: labels });
    let probs: Vec<f32> = scores.iter().flat_map(|&s| [1.0 - logistic(s), logistic(s)]).collect();
    close(f32s(&out[1]), &probs);
}

#[test]
fn scaler_then_two_target_linear_regressor() {
    let (w, x) = (floats(2 * 3, 32), floats(4 * 3, 33));
    let nodes = vec![
        node(
            "ai.onnx.ml",
            "Scaler",
            "scale",
            &["x"],
            &["s"],
            vec![("offset", A::Floats(vec![0.5])), ("scale", A::Floats(vec![2.0]))],
        ),
        node(
            "ai.onnx.ml",
            "LinearRegressor",
            "lr",
            &["s"],
            &["y"],
            vec![
                ("coefficients", A::Floats(w.clone())),
                ("intercepts", A::Floats(vec![1.0, -1.0])),
                ("targets", A::I(2)),
            ],
        ),
    ];
    let m = model(nodes, vec![], vec![io("x", 1, &[None, Some(3)])], vec![io("y", 1, &[None, Some(2)])]);
    let out = run(&m, vec![HostTensor::F32 { shape: vec![4, 3], data: x.clone() }]);
    let want: Vec<f32> = x
        .chunks(3)
        .flat_map(|r| {
            let s: Vec<f32> = r.iter().map(|v| (v - 0.5) * 2.0).collect();
            let w = &w;
            (0..2).map(move |t| (0..3).map(|j| s[j] * w[t * 3 + j]).sum::<f32>() + if t == 0 { 1.0 } else { -1.0 })
        })
        .collect();
    close(f32s(&out[0]), &want);
}

#[test]
fn max_and_l2_normalizers() {
    let x = floats(3 * 4, 34);
    for norm in ["MAX", "L2"] {
        let n = node("ai.onnx.ml", "Normalizer", "norm", &["x"], &["y"], vec![("norm", A::S(norm))]);
        let m = model(vec![n], vec![], vec![io("x", 1, &[None, Some(4)])], vec![io("y", 1, &[None, Some(4)])]);
        let out = run(&m, vec![HostTensor::F32 { shape: vec![3, 4], data: x.clone() }]);
        let want: Vec<f32> = x
            .chunks(4)
            .flat_map(|r| {
                let d = if norm == "MAX" {
                    r.iter().copied().fold(f32::NEG_INFINITY, f32::max)
                } else {
                    r.iter().map(|v| v * v).sum::<f32>().sqrt()
                };
                r.iter().map(move |v| v / d)
            })
            .collect();
        close(f32s(&out[0]), &want);
    }
}

#[test]
fn strings_one_hot_encoded_and_extracted() {
    let nodes = vec![
        node("ai.onnx.ml", "ArrayFeatureExtractor", "pick", &["x", "cols"], &["c"], vec![]),
        node(
            "ai.onnx.ml",
            "OneHotEncoder",
            "onehot",
            &["c"],
            &["y"],
            vec![("cats_strings", A::Strings(vec!["red", "green", "blue"])), ("zeros", A::I(1))],
        ),
    ];
    let cols = common::init_i64("cols", &[1], &[1]);
    let m = model(nodes, vec![cols], vec![io("x", 8, &[None, Some(2)])], vec![io("y", 1, &[])]);
    let rows = ["a", "blue", "b", "red", "c", "purple"].map(String::from).to_vec();
    let out = run(&m, vec![HostTensor::Str { shape: vec![3, 2], data: rows }]);
    assert_eq!(out[0], HostTensor::F32 { shape: vec![3, 1, 3], data: vec![0., 0., 1., 1., 0., 0., 0., 0., 0.] });
}

/// Two trees on features 0 and 1 (opset-3 double attributes):
/// tree 0: x0 <= 0.25 ? 1.0 : (x1 < -0.5 ? 2.0 : 3.0), NaN in x0 goes the true way;
/// tree 1: x1 <= 0.0 ? 10.0 : 20.0.
fn tree_attrs(prefix: &'static str) -> Vec<(&'static str, A)> {
    let p = |s: &str| -> &'static str { Box::leak(format!("{prefix}_{s}").into_boxed_str()) };
    vec![
        ("nodes_treeids", A::Ints(vec![0, 0, 0, 0, 0, 1, 1, 1])),
        ("nodes_nodeids", A::Ints(vec![0, 1, 2, 3, 4, 0, 1, 2])),
        ("nodes_featureids", A::Ints(vec![0, 0, 1, 0, 0, 1, 0, 0])),
        (
            "nodes_modes",
            A::Strings(vec!["BRANCH_LEQ", "LEAF", "BRANCH_LT", "LEAF", "LEAF", "BRANCH_LEQ", "LEAF", "LEAF"]),
        ),
        ("nodes_values_as_tensor", A::Tensor(Box::new(doubles(&[8], vec![0.25, 0.0, -0.5, 0.0, 0.0, 0.0, 0.0, 0.0])))),
        ("nodes_truenodeids", A::Ints(vec![1, 0, 3, 0, 0, 1, 0, 0])),
        ("nodes_falsenodeids", A::Ints(vec![2, 0, 4, 0, 0, 2, 0, 0])),
        ("nodes_missing_value_tracks_true", A::Ints(vec![1, 0, 0, 0, 0, 0, 0, 0])),
        (p("treeids"), A::Ints(vec![0, 0, 0, 1, 1])),
        (p("nodeids"), A::Ints(vec![1, 3, 4, 1, 2])),
        (p("ids"), A::Ints(vec![0, 0, 0, 0, 0])),
        (p("weights_as_tensor"), A::Tensor(Box::new(doubles(&[5], vec![1.0, 2.0, 3.0, 10.0, 20.0])))),
    ]
}

/// The two trees' leaf values for a row.
fn leaves(x0: f32, x1: f32) -> (f32, f32) {
    let t0 = if x0.is_nan() || x0 <= 0.25 {
        1.0
    } else if x1 < -0.5 {
        2.0
    } else {
        3.0
    };
    let t1 = if x1 <= 0.0 { 10.0 } else { 20.0 };
    (t0, t1)
}

fn tree_rows() -> Vec<f32> {
    let mut x = floats(6 * 3, 35);
    x[0] = f32::NAN; // row 0: x0 missing
    x[3 * 3] = 0.25; // row 3: x0 exactly on the threshold
    x
}

#[test]
fn tree_regressor_from_double_tensors_averages_and_routes_missing_values() {
    let mut attrs = tree_attrs("target");
    attrs.push(("aggregate_function", A::S("AVERAGE")));
    attrs.push(("base_values_as_tensor", A::Tensor(Box::new(doubles(&[1], vec![0.5])))));
    attrs.push(("n_targets", A::I(1)));
    let n = node("ai.onnx.ml", "TreeEnsembleRegressor", "trees", &["x"], &["y"], attrs);
    let m = model(vec![n], vec![], vec![io("x", 1, &[None, Some(3)])], vec![io("y", 1, &[None, Some(1)])]);
    let x = tree_rows();
    let out = run(&m, vec![HostTensor::F32 { shape: vec![6, 3], data: x.clone() }]);
    let want: Vec<f32> = x
        .chunks(3)
        .map(|r| {
            let (a, b) = leaves(r[0], r[1]);
            (a + b) / 2.0 + 0.5
        })
        .collect();
    close(f32s(&out[0]), &want);
}

#[test]
fn binary_tree_classifier_gives_two_columns_and_the_label() {
    let mut attrs = tree_attrs("class");
    attrs.push(("classlabels_int64s", A::Ints(vec![4, 7])));
    attrs.push(("post_transform", A::S("LOGISTIC")));
    attrs.push(("base_values", A::Floats(vec![-12.0])));
    let n = node("ai.onnx.ml", "TreeEnsembleClassifier", "trees", &["x"], &["label", "p"], attrs);
    let m = model(
        vec![n],
        vec![],
        vec![io("x", 1, &[None, Some(3)])],
        vec![io("label", 7, &[None]), io("p", 1, &[None, Some(2)])],
    );
    let x = tree_rows();
    let out = run(&m, vec![HostTensor::F32 { shape: vec![6, 3], data: x.clone() }]);
    let scores: Vec<f32> = x
        .chunks(3)
        .map(|r| {
            let (a, b) = leaves(r[0], r[1]);
            a + b - 12.0
        })
        .collect();
    // All weights positive: the label is the second class when the score passes 0.5.
    let labels: Vec<i64> = scores.iter().map(|&s| if s > 0.5 { 7 } else { 4 }).collect();
    assert_eq!(out[0], HostTensor::I64 { shape: vec![6], data: labels });
    let probs: Vec<f32> = scores.iter().flat_map(|&s| [1.0 - logistic(s), logistic(s)]).collect();
    close(f32s(&out[1]), &probs);
}
