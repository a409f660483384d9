//! ONNX benchmark: weir-onnx's `Session::run` against onnxruntime on the same model and rows.
//!
//! Run: `cargo bench --bench onnx` (add `-- --quick` for a short run). Needs the zoo's Python
//! packages for the baseline (`scripts/make-zoo` installs them into `.tools/zoo`); without
//! them the onnxruntime column is skipped with a message. Prints a markdown table.
//!
//! What is measured: rows/s of one `Session::run` per batch over consecutive batches of the
//! golden's held-out rows (`tests/golden/zoo/<model>.json`, repeated in order as needed), for
//! the digits MLP (`digits_mlp.onnx`: Scaler, MatMul, Add, Relu, Softmax, ArgMax,
//! ArrayFeatureExtractor...) and the CNN (`digits_cnn.onnx`: Conv, Relu, MaxPool, Gemm,
//! Softmax), at batch 1, 32 and 256. Inputs are built from the rows inside the timed loop
//! (what a model node does per batch). Baseline, in the same run:
//! `benches/reference/onnx_speed.py` (onnxruntime, CPU provider, one intra-op and one
//! inter-op thread, sequential), timed the same way (`benches/reference/timing.py`).
//!
//! One thread: `RAYON_NUM_THREADS=1` is set before candle starts its thread pool (candle's
//! CPU matmul and convolution size their parallelism from it) and the runs happen inside a
//! one-thread rayon pool.
//!
//! Also printed: the fixed cost of a run, measured on a one-node model (`Identity` on
//! `[B, 64]`): input conversion, the plan loop and output conversion, against which the
//! models' per-batch times can be read.
#![allow(clippy::unwrap_used)] // a benchmark fails loudly on the first surprise

#[path = "support/reference.rs"]
mod reference;

use std::path::{Path, PathBuf};

use weir_onnx::proto::{
    tensor_shape_proto::{dimension, Dimension},
    type_proto, GraphProto, ModelProto, NodeProto, OperatorSetIdProto, TensorShapeProto, TypeProto, ValueInfoProto,
};
use weir_onnx::{HostTensor, OnnxModel};

const BATCHES: [usize; 3] = [1, 32, 256];

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// The golden's first input rows, flattened (f32) with the per-row shape.
fn golden_rows(model: &str) -> (Vec<f32>, Vec<usize>, usize) {
    let path = repo().join(format!("tests/golden/zoo/{model}.json"));
    let g: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    let rows = g["inputs"].as_object().unwrap().values().next().unwrap().as_array().unwrap().clone();
    fn walk(j: &serde_json::Value, shape: &mut Vec<usize>, depth: usize, out: &mut Vec<f32>) {
        match j {
            serde_json::Value::Array(a) => {
                if shape.len() == depth {
                    shape.push(a.len());
                }
                a.iter().for_each(|x| walk(x, shape, depth + 1, out));
            }
            other => out.push(other.as_f64().map(|v| v as f32).unwrap_or(f32::NAN)),
        }
    }
    let (mut shape, mut data) = (Vec::new(), Vec::new());
    for r in &rows {
        let mut s = Vec::new();
        walk(r, &mut s, 0, &mut data);
        shape = s;
    }
    (data, shape, rows.len())
}

/// rows/s of `run` over consecutive batches of `batch` rows (of `n` rows of `width` values,
/// cycled), timed as the reference is (`reference::batches_per_s`).
fn measure(data: &[f32], n: usize, width: usize, batch: usize, seconds: f64, mut run: impl FnMut(Vec<f32>)) -> f64 {
    let mut next = 0usize;
    let per_s = reference::batches_per_s(seconds, |_| {
        let mut x = Vec::with_capacity(batch * width);
        for _ in 0..batch {
            x.extend_from_slice(&data[next * width..(next + 1) * width]);
            next = (next + 1) % n;
        }
        run(x);
    });
    per_s * batch as f64
}

/// weir's rows/s for `model` at each batch size.
fn weir_rates(model: &str, seconds: f64) -> Vec<f64> {
    let onnx = OnnxModel::load(&repo().join(format!("graphs/zoo/{model}.onnx"))).unwrap();
    let mut session = onnx.session(&candle_core::Device::Cpu).unwrap();
    let (data, row_shape, n) = golden_rows(model);
    let width: usize = row_shape.iter().product();
    BATCHES
        .iter()
        .map(|&b| {
            measure(&data, n, width, b, seconds, |x| {
                let mut shape = vec![b];
                shape.extend_from_slice(&row_shape);
                std::hint::black_box(session.run(vec![HostTensor::F32 { shape, data: x }]).unwrap());
            })
        })
        .collect()
}

/// onnxruntime's rows/s for `model` at each batch size, or why there are none.
fn onnxruntime_rates(model: &str, seconds: f64) -> Result<Vec<f64>, String> {
    let args = [format!("graphs/zoo/{model}.onnx"), "--rows".into(), format!("tests/golden/zoo/{model}.json")]
        .into_iter()
        .chain(["--batch".into(), "1,32,256".into(), "--seconds".into(), seconds.to_string()])
        .collect::<Vec<String>>();
    let mut rates = vec![f64::NAN; BATCHES.len()];
    for j in reference::run_script("onnx_speed.py", &args)? {
        let b = j["batch"].as_u64().unwrap_or(0) as usize;
        if let Some(i) = BATCHES.iter().position(|&x| x == b) {
            rates[i] = j["rows_per_s"].as_f64().unwrap_or(f64::NAN);
        }
    }
    Ok(rates)
}

/// A one-node model: `y = Identity(x)` on `[N, 64]` floats.
fn identity_model() -> OnnxModel {
    let io = |name: &str| ValueInfoProto {
        name: Some(name.into()),
        r#type: Some(TypeProto {
            value: Some(type_proto::Value::TensorType(type_proto::Tensor {
                elem_type: Some(1),
                shape: Some(TensorShapeProto {
                    dim: [None, Some(64)]
                        .iter()
                        .map(|d| Dimension {
                            value: Some(match d {
                                Some(v) => dimension::Value::DimValue(*v),
                                None => dimension::Value::DimParam("N".into()),
                            }),
                            ..Default::default()
                        })
                        .collect(),
                }),
            })),
            ..Default::default()
        }),
        ..Default::default()
    };
    let model = ModelProto {
        ir_version: Some(8),
        opset_import: vec![OperatorSetIdProto { domain: Some(String::new()), version: Some(17) }],
        graph: Some(GraphProto {
            node: vec![NodeProto {
                input: vec!["x".into()],
                output: vec!["y".into()],
                op_type: Some("Identity".into()),
                ..Default::default()
            }],
            input: vec![io("x")],
            output: vec![io("y")],
            ..Default::default()
        }),
        ..Default::default()
    };
    OnnxModel::from_proto(&model, Path::new("identity.onnx")).unwrap()
}

/// The allocator the `weir` binary uses (a batch's tensors are large enough that the
/// system allocator maps and unmaps them on every run).
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() {
    // Before candle or rayon start any thread: one thread for candle's CPU kernels.
    std::env::set_var("RAYON_NUM_THREADS", "1");
    let quick = std::env::args().any(|a| a == "--quick");
    let seconds = if quick { 0.3 } else { 1.0 };
    let pool = rayon::ThreadPoolBuilder::new().num_threads(1).build().unwrap();
    println!("| model | batch | weir rows/s | onnxruntime rows/s | weir / onnxruntime |");
    println!("|---|---:|---:|---:|---:|");
    for model in ["digits_mlp", "digits_cnn"] {
        let weir = pool.install(|| weir_rates(model, seconds));
        let ort = onnxruntime_rates(model, seconds);
        if let Err(why) = &ort {
            eprintln!("{model}: onnxruntime skipped: {why}");
        }
        for (i, b) in BATCHES.iter().enumerate() {
            let (ort_cell, ratio) = match &ort {
                Ok(r) => (format!("{:.0}", r[i]), format!("{:.2}", weir[i] / r[i])),
                Err(_) => ("skipped".to_string(), "-".to_string()),
            };
            println!("| {model} | {b} | {:.0} | {ort_cell} | {ratio} |", weir[i]);
        }
    }
    // The fixed cost of a run: a model with one Identity node.
    let identity = identity_model();
    let mut session = identity.session(&candle_core::Device::Cpu).unwrap();
    let data: Vec<f32> = (0..256 * 64).map(|i| i as f32).collect();
    for b in BATCHES {
        let rate = pool.install(|| {
            measure(&data, 256, 64, b, seconds, |x| {
                std::hint::black_box(session.run(vec![HostTensor::F32 { shape: vec![b, 64], data: x }]).unwrap());
            })
        });
        println!(
            "| run overhead (Identity on [B, 64]) | {b} | {rate:.0} | - | {:.2} us per run |",
            1e6 * b as f64 / rate
        );
    }
}
