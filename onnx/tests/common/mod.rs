//! Building small ONNX models in tests with the generated protobuf types.
#![allow(dead_code, clippy::unwrap_used)]

use std::path::{Path, PathBuf};

use weir_onnx::proto::{
    attribute_proto::AttributeType,
    tensor_shape_proto::{dimension, Dimension},
    type_proto, AttributeProto, GraphProto, ModelProto, NodeProto, OperatorSetIdProto, TensorProto, TensorShapeProto,
    TypeProto, ValueInfoProto,
};

/// The repository root.
pub fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// An attribute value.
pub enum A {
    I(i64),
    F(f32),
    S(&'static str),
    Ints(Vec<i64>),
    Floats(Vec<f32>),
    Strings(Vec<&'static str>),
    Tensor(Box<TensorProto>),
}

/// A node `op(inputs) -> outputs` named `name`, in `domain` ("" for the default).
pub fn node(domain: &str, op: &str, name: &str, inputs: &[&str], outputs: &[&str], attrs: Vec<(&str, A)>) -> NodeProto {
    NodeProto {
        input: inputs.iter().map(|s| s.to_string()).collect(),
        output: outputs.iter().map(|s| s.to_string()).collect(),
        name: Some(name.into()),
        op_type: Some(op.into()),
        domain: Some(domain.into()),
        attribute: attrs
            .into_iter()
            .map(|(n, a)| {
                let mut p = AttributeProto { name: Some(n.into()), ..Default::default() };
                match a {
                    A::I(i) => {
                        p.i = Some(i);
                        p.r#type = Some(AttributeType::Int as i32);
                    }
                    A::F(f) => {
                        p.f = Some(f);
                        p.r#type = Some(AttributeType::Float as i32);
                    }
                    A::S(s) => {
                        p.s = Some(s.as_bytes().to_vec());
                        p.r#type = Some(AttributeType::String as i32);
                    }
                    A::Ints(v) => {
                        p.ints = v;
                        p.r#type = Some(AttributeType::Ints as i32);
                    }
                    A::Floats(v) => {
                        p.floats = v;
                        p.r#type = Some(AttributeType::Floats as i32);
                    }
                    A::Strings(v) => {
                        p.strings = v.iter().map(|s| s.as_bytes().to_vec()).collect();
                        p.r#type = Some(AttributeType::Strings as i32);
                    }
                    A::Tensor(t) => {
                        p.t = Some(*t);
                        p.r#type = Some(AttributeType::Tensor as i32);
                    }
                }
                p
            })
            .collect(),
        ..Default::default()
    }
}

/// A float initializer.
pub fn init_f32(name: &str, dims: &[i64], data: Vec<f32>) -> TensorProto {
    TensorProto {
        name: Some(name.into()),
        dims: dims.to_vec(),
        data_type: Some(1),
        float_data: data,
        ..Default::default()
    }
}

/// A double tensor (for ONNX-ML `*_as_tensor` attributes).
pub fn doubles(dims: &[i64], data: Vec<f64>) -> TensorProto {
    TensorProto { dims: dims.to_vec(), data_type: Some(11), double_data: data, ..Default::default() }
}

/// An int64 initializer (stored as raw little-endian bytes, as exporters do).
pub fn init_i64(name: &str, dims: &[i64], data: &[i64]) -> TensorProto {
    TensorProto {
        name: Some(name.into()),
        dims: dims.to_vec(),
        data_type: Some(7),
        raw_data: Some(data.iter().flat_map(|v| v.to_le_bytes()).collect()),
        ..Default::default()
    }
}

/// A declared tensor of ONNX element type `elem`; `None` dimensions are dynamic (`N`).
pub fn io(name: &str, elem: i32, dims: &[Option<i64>]) -> ValueInfoProto {
    ValueInfoProto {
        name: Some(name.into()),
        r#type: Some(TypeProto {
            value: Some(type_proto::Value::TensorType(type_proto::Tensor {
                elem_type: Some(elem),
                shape: Some(TensorShapeProto {
                    dim: dims
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
    }
}

/// A model of `nodes` importing opset 17 and ai.onnx.ml 3.
pub fn model(
    nodes: Vec<NodeProto>,
    inits: Vec<TensorProto>,
    inputs: Vec<ValueInfoProto>,
    outputs: Vec<ValueInfoProto>,
) -> ModelProto {
    ModelProto {
        ir_version: Some(8),
        opset_import: vec![
            OperatorSetIdProto { domain: Some(String::new()), version: Some(17) },
            OperatorSetIdProto { domain: Some("ai.onnx.ml".into()), version: Some(3) },
        ],
        graph: Some(GraphProto {
            node: nodes,
            name: Some("test".into()),
            initializer: inits,
            input: inputs,
            output: outputs,
            ..Default::default()
        }),
        ..Default::default()
    }
}

/// Deterministic pseudo-random floats in [-1, 1) (a linear congruential generator).
pub fn floats(n: usize, seed: u64) -> Vec<f32> {
    let mut s = seed.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
    (0..n)
        .map(|_| {
            s = s.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
            ((s >> 40) as f32 / (1u64 << 24) as f32) * 2.0 - 1.0
        })
        .collect()
}
