//! Standard operators against from-scratch references written here (plain loops over the
//! same inputs), on small models built with the generated protobuf types: convolution and
//! pooling with padding, matrix products with broadcasting and transposes, normalisation,
//! layout operators (including PyTorch's Shape/Gather/Concat/Reshape flatten), element-wise
//! broadcasting, reductions, casts and constant folding.
#![allow(clippy::unwrap_used, clippy::needless_range_loop)]

mod common;

use candle_core::Device;
use common::{floats, init_f32, init_i64, io, model, node, A};
use weir_onnx::proto::{ModelProto, NodeProto, TensorProto};
use weir_onnx::{HostTensor, OnnxModel};

/// Loads `m` and runs it once on float inputs.
fn run(m: &ModelProto, inputs: Vec<(Vec<usize>, Vec<f32>)>) -> Vec<HostTensor> {
    let model = OnnxModel::from_proto(m, std::path::Path::new("test.onnx")).unwrap();
    let mut session = model.session(&Device::Cpu).unwrap();
    session.run(inputs.into_iter().map(|(shape, data)| HostTensor::F32 { shape, data }).collect()).unwrap()
}

fn f32s(t: &HostTensor) -> (&[usize], &[f32]) {
    match t {
        HostTensor::F32 { shape, data } => (shape, data),
        other => panic!("expected f32, got {other:?}"),
    }
}

fn close(got: &[f32], want: &[f32]) {
    assert_eq!(got.len(), want.len(), "length");
    for (i, (a, b)) in got.iter().zip(want).enumerate() {
        assert!((a - b).abs() <= 1e-5 * b.abs().max(1.0), "element {i}: got {a}, want {b}");
    }
}

/// A one-node model with float input `x` of `x_dims` and output `y`.
fn one(n: NodeProto, inits: Vec<TensorProto>, x_dims: &[Option<i64>]) -> ModelProto {
    model(vec![n], inits, vec![io("x", 1, x_dims)], vec![io("y", 1, &[])])
}

/// Naive NCHW convolution with pads [top, left, bottom, right], a stride and a dilation.
#[allow(clippy::too_many_arguments)]
fn conv_ref(
    x: &[f32],
    xd: [usize; 4],
    w: &[f32],
    wd: [usize; 4],
    b: &[f32],
    pads: [usize; 4],
    stride: usize,
    dilation: usize,
) -> (Vec<usize>, Vec<f32>) {
    let [n, c, h, wi] = xd;
    let [m, _, kh, kw] = wd;
    let oh = (h + pads[0] + pads[2] - dilation * (kh - 1) - 1) / stride + 1;
    let ow = (wi + pads[1] + pads[3] - dilation * (kw - 1) - 1) / stride + 1;
    let mut out = vec![0f32; n * m * oh * ow];
    for bn in 0..n {
        for o in 0..m {
            for y in 0..oh {
                for xx in 0..ow {
                    let mut s = b[o];
                    for ci in 0..c {
                        for i in 0..kh {
                            for j in 0..kw {
                                let (r, q) = (
                                    (y * stride + i * dilation) as isize - pads[0] as isize,
                                    (xx * stride + j * dilation) as isize - pads[1] as isize,
                                );
                                if r >= 0 && q >= 0 && (r as usize) < h && (q as usize) < wi {
                                    s += x[((bn * c + ci) * h + r as usize) * wi + q as usize]
                                        * w[((o * c + ci) * kh + i) * kw + j];
                                }
                            }
                        }
                    }
                    out[((bn * m + o) * oh + y) * ow + xx] = s;
                }
            }
        }
    }
    (vec![n, m, oh, ow], out)
}

#[test]
fn conv_with_asymmetric_padding_and_strides_matches_the_direct_sum() {
    let (x, w, b) = (floats(2 * 2 * 5 * 6, 1), floats(3 * 2 * 3 * 3, 2), floats(3, 3));
    for (pads, stride, dilation) in
        [([1usize, 0, 2, 1], 1usize, 1usize), ([1, 1, 1, 1], 2, 1), ([0, 0, 0, 0], 1, 1), ([2, 1, 0, 2], 1, 2)]
    {
        let n = node(
            "",
            "Conv",
            "conv",
            &["x", "w", "b"],
            &["y"],
            vec![
                ("kernel_shape", A::Ints(vec![3, 3])),
                ("pads", A::Ints(vec![pads[0] as i64, pads[1] as i64, pads[2] as i64, pads[3] as i64])),
                ("strides", A::Ints(vec![stride as i64; 2])),
                ("dilations", A::Ints(vec![dilation as i64; 2])),
            ],
        );
        let m = one(
            n,
            vec![init_f32("w", &[3, 2, 3, 3], w.clone()), init_f32("b", &[3], b.clone())],
            &[None, Some(2), Some(5), Some(6)],
        );
        let out = run(&m, vec![(vec![2, 2, 5, 6], x.clone())]);
        let (want_shape, want) = conv_ref(&x, [2, 2, 5, 6], &w, [3, 2, 3, 3], &b, pads, stride, dilation);
        let (shape, got) = f32s(&out[0]);
        assert_eq!(shape, want_shape.as_slice(), "pads {pads:?} stride {stride} dilation {dilation}");
        close(got, &want);
    }
}

#[test]
fn pools_match_the_direct_max_and_mean() {
    let x = floats(2 * 3 * 5 * 5, 4);
    let at = |n: usize, c: usize, r: isize, q: isize| -> Option<f32> {
        (r >= 0 && q >= 0 && r < 5 && q < 5).then(|| x[((n * 3 + c) * 5 + r as usize) * 5 + q as usize])
    };
    // MaxPool 2x2 stride 2 with pads [1, 1, 0, 0]: output 3x3; padding never wins.
    let m = one(
        node(
            "",
            "MaxPool",
            "pool",
            &["x"],
            &["y"],
            vec![
                ("kernel_shape", A::Ints(vec![2, 2])),
                ("strides", A::Ints(vec![2, 2])),
                ("pads", A::Ints(vec![1, 1, 0, 0])),
            ],
        ),
        vec![],
        &[None, Some(3), Some(5), Some(5)],
    );
    let out = run(&m, vec![(vec![2, 3, 5, 5], x.clone())]);
    let mut want = Vec::new();
    for n in 0..2 {
        for c in 0..3 {
            for y in 0..3 {
                for xx in 0..3 {
                    let cells = (0..2).flat_map(|i| (0..2).map(move |j| (i, j)));
                    let v = cells
                        .filter_map(|(i, j)| at(n, c, (2 * y + i) as isize - 1, (2 * xx + j) as isize - 1))
                        .fold(f32::NEG_INFINITY, f32::max);
                    want.push(v);
                }
            }
        }
    }
    assert_eq!(f32s(&out[0]).0, &[2, 3, 3, 3]);
    close(f32s(&out[0]).1, &want);

    // AveragePool 3x3 stride 1, no padding: output 3x3.
    let m = one(
        node("", "AveragePool", "avg", &["x"], &["y"], vec![("kernel_shape", A::Ints(vec![3, 3]))]),
        vec![],
        &[None, Some(3), Some(5), Some(5)],
    );
    let out = run(&m, vec![(vec![2, 3, 5, 5], x.clone())]);
    let mut want = Vec::new();
    for n in 0..2 {
        for c in 0..3 {
            for y in 0..3 {
                for xx in 0..3 {
                    let s: f32 = (0..3)
                        .flat_map(|i| (0..3).map(move |j| (i, j)))
                        .map(|(i, j)| at(n, c, (y + i) as isize, (xx + j) as isize).unwrap())
                        .sum();
                    want.push(s / 9.0);
                }
            }
        }
    }
    close(f32s(&out[0]).1, &want);

    // GlobalAveragePool: one mean per (n, c).
    let m =
        one(node("", "GlobalAveragePool", "gap", &["x"], &["y"], vec![]), vec![], &[None, Some(3), Some(5), Some(5)]);
    let out = run(&m, vec![(vec![2, 3, 5, 5], x.clone())]);
    let want: Vec<f32> = x.chunks(25).map(|p| p.iter().sum::<f32>() / 25.0).collect();
    assert_eq!(f32s(&out[0]).0, &[2, 3, 1, 1]);
    close(f32s(&out[0]).1, &want);
}

#[test]
fn gemm_transposes_scales_and_broadcasts_c() {
    let (a, b, c) = (floats(3 * 4, 5), floats(5 * 4, 6), floats(5, 7));
    let m = one(
        node(
            "",
            "Gemm",
            "gemm",
            &["x", "b", "c"],
            &["y"],
            vec![("alpha", A::F(0.5)), ("beta", A::F(2.0)), ("transB", A::I(1))],
        ),
        vec![init_f32("b", &[5, 4], b.clone()), init_f32("c", &[5], c.clone())],
        &[None, Some(4)],
    );
    let out = run(&m, vec![(vec![3, 4], a.clone())]);
    let mut want = vec![0f32; 15];
    for i in 0..3 {
        for j in 0..5 {
            let dot: f32 = (0..4).map(|k| a[i * 4 + k] * b[j * 4 + k]).sum();
            want[i * 5 + j] = 0.5 * dot + 2.0 * c[j];
        }
    }
    assert_eq!(f32s(&out[0]).0, &[3, 5]);
    close(f32s(&out[0]).1, &want);
}

#[test]
fn matmul_broadcasts_batch_dimensions() {
    let (a, b2, b3) = (floats(2 * 3 * 4, 8), floats(4 * 5, 9), floats(2 * 4 * 5, 10));
    let product = |b: &[f32], batched: bool| {
        let mut out = vec![0f32; 2 * 3 * 5];
        for n in 0..2 {
            for i in 0..3 {
                for j in 0..5 {
                    let off = if batched { n * 20 } else { 0 };
                    out[(n * 3 + i) * 5 + j] = (0..4).map(|k| a[(n * 3 + i) * 4 + k] * b[off + k * 5 + j]).sum();
                }
            }
        }
        out
    };
    let m = one(
        node("", "MatMul", "mm", &["x", "w"], &["y"], vec![]),
        vec![init_f32("w", &[4, 5], b2.clone())],
        &[None, Some(3), Some(4)],
    );
    let out = run(&m, vec![(vec![2, 3, 4], a.clone())]);
    assert_eq!(f32s(&out[0]).0, &[2, 3, 5]);
    close(f32s(&out[0]).1, &product(&b2, false));
    let m = one(
        node("", "MatMul", "mm", &["x", "w"], &["y"], vec![]),
        vec![init_f32("w", &[2, 4, 5], b3.clone())],
        &[None, Some(3), Some(4)],
    );
    let out = run(&m, vec![(vec![2, 3, 4], a.clone())]);
    close(f32s(&out[0]).1, &product(&b3, true));
}

#[test]
fn batch_normalization_uses_the_running_statistics() {
    let x = floats(2 * 3 * 2 * 2, 11);
    let (scale, bias, mean) = (floats(3, 12), floats(3, 13), floats(3, 14));
    let var: Vec<f32> = floats(3, 15).iter().map(|v| v.abs() + 0.1).collect();
    let m = one(
        node("", "BatchNormalization", "bn", &["x", "s", "b", "m", "v"], &["y"], vec![("epsilon", A::F(1e-3))]),
        vec![
            init_f32("s", &[3], scale.clone()),
            init_f32("b", &[3], bias.clone()),
            init_f32("m", &[3], mean.clone()),
            init_f32("v", &[3], var.clone()),
        ],
        &[None, Some(3), Some(2), Some(2)],
    );
    let out = run(&m, vec![(vec![2, 3, 2, 2], x.clone())]);
    let want: Vec<f32> = x
        .iter()
        .enumerate()
        .map(|(i, v)| {
            let c = (i / 4) % 3;
            (v - mean[c]) / (var[c] + 1e-3).sqrt() * scale[c] + bias[c]
        })
        .collect();
    close(f32s(&out[0]).1, &want);
}

#[test]
fn pytorch_flatten_through_shape_gather_concat_reshape() {
    // y = Reshape(x, Concat(Unsqueeze(Gather(Shape(x), 0)), [-1])): x.view(x.size(0), -1).
    let nodes = vec![
        node("", "Shape", "shape", &["x"], &["s"], vec![]),
        node("", "Gather", "batch", &["s", "zero"], &["n"], vec![("axis", A::I(0))]),
        node("", "Unsqueeze", "unsq", &["n", "axes"], &["n1"], vec![]),
        node("", "Concat", "cat", &["n1", "minus_one"], &["target"], vec![("axis", A::I(0))]),
        node("", "Reshape", "reshape", &["x", "target"], &["y"], vec![]),
    ];
    let inits = vec![init_i64("zero", &[], &[0]), init_i64("axes", &[1], &[0]), init_i64("minus_one", &[1], &[-1])];
    let m = model(nodes, inits, vec![io("x", 1, &[None, Some(2), Some(3)])], vec![io("y", 1, &[None, Some(6)])]);
    let x = floats(4 * 6, 16);
    let out = run(&m, vec![(vec![4, 2, 3], x.clone())]);
    assert_eq!(f32s(&out[0]).0, &[4, 6]);
    close(f32s(&out[0]).1, &x);
}

#[test]
fn transpose_concat_gather_squeeze_and_flatten_move_the_right_elements() {
    let x = floats(2 * 3 * 4, 17);
    let at = |i: usize, j: usize, k: usize| x[(i * 3 + j) * 4 + k];
    // Transpose [2,3,4] -> [4,2,3].
    let m = one(
        node("", "Transpose", "t", &["x"], &["y"], vec![("perm", A::Ints(vec![2, 0, 1]))]),
        vec![],
        &[None, Some(3), Some(4)],
    );
    let out = run(&m, vec![(vec![2, 3, 4], x.clone())]);
    let want: Vec<f32> = (0..4)
        .flat_map(|k| (0..2).flat_map(move |i| (0..3).map(move |j| (i, j, k))))
        .map(|(i, j, k)| at(i, j, k))
        .collect();
    assert_eq!(f32s(&out[0]).0, &[4, 2, 3]);
    close(f32s(&out[0]).1, &want);
    // Gather along axis 2 with a negative index, then Squeeze the gathered axis.
    let nodes = vec![
        node("", "Gather", "g", &["x", "idx"], &["g"], vec![("axis", A::I(2))]),
        node("", "Squeeze", "sq", &["g", "axes"], &["y"], vec![]),
    ];
    let m = model(
        nodes,
        vec![init_i64("idx", &[1], &[-1]), init_i64("axes", &[1], &[2])],
        vec![io("x", 1, &[None, Some(3), Some(4)])],
        vec![io("y", 1, &[])],
    );
    let out = run(&m, vec![(vec![2, 3, 4], x.clone())]);
    let want: Vec<f32> = (0..2).flat_map(|i| (0..3).map(move |j| (i, j))).map(|(i, j)| at(i, j, 3)).collect();
    assert_eq!(f32s(&out[0]).0, &[2, 3]);
    close(f32s(&out[0]).1, &want);
    // Concat x with itself on axis 1, then Flatten from axis 2.
    let nodes = vec![
        node("", "Concat", "c", &["x", "x"], &["c"], vec![("axis", A::I(1))]),
        node("", "Flatten", "f", &["c"], &["y"], vec![("axis", A::I(2))]),
    ];
    let m = model(nodes, vec![], vec![io("x", 1, &[None, Some(3), Some(4)])], vec![io("y", 1, &[])]);
    let out = run(&m, vec![(vec![2, 3, 4], x.clone())]);
    let want: Vec<f32> = (0..2)
        .flat_map(|i| (0..6).flat_map(move |j| (0..4).map(move |k| (i, j % 3, k))))
        .map(|(i, j, k)| at(i, j, k))
        .collect();
    assert_eq!(f32s(&out[0]).0, &[12, 4]);
    close(f32s(&out[0]).1, &want);
}

#[test]
fn elementwise_ops_broadcast_like_numpy() {
    let (x, row, col) = (floats(2 * 3, 18), floats(3, 19), floats(2, 20));
    let nodes = vec![
        node("", "Add", "add", &["x", "row"], &["a"], vec![]),
        node("", "Sub", "sub", &["a", "col"], &["b"], vec![]),
        node("", "Mul", "mul", &["b", "row"], &["c"], vec![]),
        node("", "LeakyRelu", "lrelu", &["c"], &["d"], vec![("alpha", A::F(0.2))]),
        node("", "Sigmoid", "sig", &["d"], &["e"], vec![]),
        node("", "Tanh", "tanh", &["e"], &["f"], vec![]),
        node("", "Exp", "exp", &["f"], &["g"], vec![]),
        node("", "Log", "log", &["g"], &["h"], vec![]),
        node("", "Sqrt", "sqrt", &["g"], &["i"], vec![]),
        node("", "Div", "div", &["h", "i"], &["j"], vec![]),
        node("", "Clip", "clip", &["j", "lo"], &["y"], vec![]),
    ];
    let inits = vec![
        init_f32("row", &[3], row.clone()),
        init_f32("col", &[2, 1], col.clone()),
        init_f32("lo", &[], vec![0.25]),
    ];
    let m = model(nodes, inits, vec![io("x", 1, &[None, Some(3)])], vec![io("y", 1, &[None, Some(3)])]);
    let out = run(&m, vec![(vec![2, 3], x.clone())]);
    let want: Vec<f32> = (0..6)
        .map(|k| {
            let (i, j) = (k / 3, k % 3);
            let c = ((x[k] + row[j]) - col[i]) * row[j];
            let d = if c >= 0.0 { c } else { 0.2 * c };
            let g = (1.0 / (1.0 + (-d).exp())).tanh().exp();
            (g.ln() / g.sqrt()).max(0.25)
        })
        .collect();
    close(f32s(&out[0]).1, &want);
}

#[test]
fn softmax_argmax_reducesum_and_cast() {
    let x = floats(3 * 4, 21);
    let nodes = vec![
        node("", "Softmax", "sm", &["x"], &["p"], vec![("axis", A::I(0))]),
        node("", "ReduceSum", "rs", &["p", "axes"], &["s"], vec![("keepdims", A::I(0))]),
        node("", "ArgMax", "am", &["x"], &["k"], vec![("axis", A::I(1)), ("keepdims", A::I(0))]),
        node("", "Cast", "cast", &["x"], &["t"], vec![("to", A::I(7))]),
    ];
    let m = model(
        nodes,
        vec![init_i64("axes", &[1], &[0])],
        vec![io("x", 1, &[Some(3), Some(4)])],
        vec![io("p", 1, &[]), io("s", 1, &[]), io("k", 7, &[]), io("t", 7, &[])],
    );
    let scaled: Vec<f32> = x.iter().map(|v| v * 5.0).collect();
    let out = run(&m, vec![(vec![3, 4], scaled.clone())]);
    let mut want = vec![0f32; 12];
    for j in 0..4 {
        let col: Vec<f32> = (0..3).map(|i| scaled[i * 4 + j]).collect();
        let max = col.iter().copied().fold(f32::NEG_INFINITY, f32::max);
        let sum: f32 = col.iter().map(|v| (v - max).exp()).sum();
        for i in 0..3 {
            want[i * 4 + j] = (col[i] - max).exp() / sum;
        }
    }
    close(f32s(&out[0]).1, &want);
    close(f32s(&out[1]).1, &[1.0; 4]);
    let argmax: Vec<i64> =
        scaled.chunks(4).map(|r| (0..4).fold(0, |b, j| if r[j] > r[b] { j } else { b }) as i64).collect();
    assert_eq!(out[2], HostTensor::I64 { shape: vec![3], data: argmax });
    let truncated: Vec<i64> = scaled.iter().map(|v| v.trunc() as i64).collect();
    assert_eq!(out[3], HostTensor::I64 { shape: vec![3, 4], data: truncated });
}

#[test]
fn constants_are_folded_at_load() {
    // w2 = Constant + Mul(Constant, w): both folded, one step (Add) left per batch.
    let nodes = vec![
        node("", "Constant", "two", &[], &["two"], vec![("value_float", A::F(2.0))]),
        node("", "Mul", "double", &["w", "two"], &["w2"], vec![]),
        node("", "Add", "add", &["x", "w2"], &["y"], vec![]),
    ];
    let w = floats(3, 22);
    let m = model(
        nodes,
        vec![init_f32("w", &[3], w.clone())],
        vec![io("x", 1, &[None, Some(3)])],
        vec![io("y", 1, &[None, Some(3)])],
    );
    let model_ = OnnxModel::from_proto(&m, std::path::Path::new("fold.onnx")).unwrap();
    assert_eq!(model_.steps(), 1);
    assert_eq!(model_.ops(), vec!["Constant", "Mul", "Add"]);
    let x = floats(6, 23);
    let out = run(&m, vec![(vec![2, 3], x.clone())]);
    let want: Vec<f32> = x.iter().enumerate().map(|(i, v)| v + 2.0 * w[i % 3]).collect();
    close(f32s(&out[0]).1, &want);
}
