//! Decoding an ONNX `TensorProto` (an initializer, a `Constant`'s value, a tensor attribute)
//! into a [`Value`] on the CPU.
//!
//! Data may come in `raw_data` (little-endian) or in the typed fields (`float_data`,
//! `int64_data`, `int32_data` for int32 and bool, `double_data`, `string_data`). External data
//! (a separate weights file) is not supported and is an error naming the tensor.

use std::sync::Arc;

use candle_core::{Device, Tensor};

use crate::proto::TensorProto;
use crate::tensor::ElemType;
use crate::value::Value;

/// Decodes `t`; the error says what is wrong (type, data length, external data).
pub(crate) fn decode(t: &TensorProto) -> Result<Value, String> {
    let name = t.name();
    if t.data_location() == crate::proto::tensor_proto::DataLocation::External {
        return Err(format!("tensor {name:?} keeps its data in an external file, which weir-onnx does not read"));
    }
    let shape = t
        .dims
        .iter()
        .map(|&d| usize::try_from(d).map_err(|_| format!("tensor {name:?} has a negative dimension {d}")))
        .collect::<Result<Vec<usize>, String>>()?;
    let count: usize = shape.iter().product();
    let code = t.data_type();
    let elem = ElemType::from_onnx(code).ok_or_else(|| {
        format!("tensor {name:?} has element type {}, which weir-onnx does not run", ElemType::onnx_name(code))
    })?;
    let raw = t.raw_data.as_deref();
    let cpu = &Device::Cpu;
    let check = |len: usize| {
        if len == count {
            Ok(())
        } else {
            Err(format!("tensor {name:?} of shape {shape:?} holds {len} elements, not {count}"))
        }
    };
    let tensor = match elem {
        ElemType::F32 => {
            let data = match raw {
                Some(b) => le_words::<4>(b, name)?.map(f32::from_le_bytes).collect(),
                None => t.float_data.clone(),
            };
            check(data.len())?;
            Tensor::from_vec(data, shape, cpu)
        }
        ElemType::F64 => {
            let data = match raw {
                Some(b) => le_words::<8>(b, name)?.map(f64::from_le_bytes).collect(),
                None => t.double_data.clone(),
            };
            check(data.len())?;
            Tensor::from_vec(data, shape, cpu)
        }
        ElemType::I64 => {
            let data = match raw {
                Some(b) => le_words::<8>(b, name)?.map(i64::from_le_bytes).collect(),
                None => t.int64_data.clone(),
            };
            check(data.len())?;
            Tensor::from_vec(data, shape, cpu)
        }
        ElemType::I32 => {
            let data = match raw {
                Some(b) => le_words::<4>(b, name)?.map(i32::from_le_bytes).collect(),
                None => t.int32_data.clone(),
            };
            check(data.len())?;
            Tensor::from_vec(data, shape, cpu)
        }
        ElemType::Bool => {
            let data: Vec<u8> = match raw {
                Some(b) => b.iter().map(|&x| u8::from(x != 0)).collect(),
                None => t.int32_data.iter().map(|&x| u8::from(x != 0)).collect(),
            };
            check(data.len())?;
            Tensor::from_vec(data, shape, cpu)
        }
        ElemType::Str => {
            let data = t
                .string_data
                .iter()
                .map(|s| {
                    String::from_utf8(s.clone())
                        .map_err(|_| format!("tensor {name:?} holds a string that is not UTF-8"))
                })
                .collect::<Result<Vec<String>, String>>()?;
            check(data.len())?;
            return Ok(Value::Str { shape, data: Arc::from(data) });
        }
    };
    tensor.map(Value::Tensor).map_err(|e| format!("tensor {name:?}: {e}"))
}

/// The little-endian words of `N` bytes in `bytes`, or an error when its length is not a
/// multiple of `N`.
fn le_words<'a, const N: usize>(bytes: &'a [u8], name: &str) -> Result<impl Iterator<Item = [u8; N]> + 'a, String> {
    if !bytes.len().is_multiple_of(N) {
        return Err(format!("tensor {name:?} has {} bytes of raw data, not a multiple of {N}", bytes.len()));
    }
    Ok(bytes.chunks_exact(N).map(|c| {
        let mut w = [0u8; N];
        w.copy_from_slice(c);
        w
    }))
}
