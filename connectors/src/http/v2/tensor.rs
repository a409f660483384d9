//! The protocol's tensors and weir's columns: a field's datatype and shape, and a
//! tensor's values in each of the protocol's three encodings (JSON, raw little-endian
//! bytes, gRPC's typed contents), decoded into a [`Column`] and encoded from one.
//!
//! A graph field is one tensor whose first dimension is the rows: an `f32[64]` field is
//! an `FP32` tensor of shape `[-1, 64]`, an `f32` scalar one of shape `[-1]` (a request
//! may also send it as `[n, 1]`), `i64` is `INT64`, `bool` is `BOOL`, `str` is `BYTES`.
//! Datatypes are not converted: an `FP64` tensor for an `FP32` input is refused, naming
//! the input, as the protocol's servers do.

use std::sync::Arc;

use serde::ser::{Serialize, SerializeSeq, Serializer};
use serde_json::Value as Json;
use weir_operators::{Column, DType, FieldType};

use super::error::V2Error;
use super::proto::InferTensorContents;

/// The protocol's datatypes that weir's fields have.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Datatype {
    /// `f32` fields and tensors.
    Fp32,
    /// `i64` fields.
    Int64,
    /// `bool` fields.
    Bool,
    /// `str` fields (UTF-8).
    Bytes,
}

impl Datatype {
    /// The datatype of a field of type `ty`.
    pub fn of(ty: &FieldType) -> Datatype {
        match ty.dtype {
            DType::F32 => Datatype::Fp32,
            DType::I64 => Datatype::Int64,
            DType::Bool => Datatype::Bool,
            DType::Str => Datatype::Bytes,
        }
    }

    /// Its name in the protocol: `FP32`, `INT64`, `BOOL`, `BYTES`.
    pub fn as_str(self) -> &'static str {
        match self {
            Datatype::Fp32 => "FP32",
            Datatype::Int64 => "INT64",
            Datatype::Bool => "BOOL",
            Datatype::Bytes => "BYTES",
        }
    }
}

/// The shape of a field's tensor in model metadata: `-1` for the rows, then the field's
/// own dimensions.
pub fn metadata_shape(ty: &FieldType) -> Vec<i64> {
    std::iter::once(-1).chain(ty.shape.iter().map(|&d| d as i64)).collect()
}

/// The shape of `rows` rows of a field of type `ty`.
pub fn shape_of(ty: &FieldType, rows: usize) -> Vec<i64> {
    std::iter::once(rows as i64).chain(ty.shape.iter().map(|&d| d as i64)).collect()
}

/// The most elements one input tensor may hold (2^32): far above any body a server
/// takes, and low enough that no byte count computed from it overflows.
const MAX_ELEMENTS: usize = 1 << 32;

/// Where a tensor's values are.
pub enum Data<'a> {
    /// The JSON `data` member: flat, or nested row-major.
    Json(&'a Json),
    /// Raw little-endian bytes (the binary extension, gRPC's `raw_input_contents`).
    Raw(&'a [u8]),
    /// gRPC's typed contents.
    Contents(&'a InferTensorContents),
}

/// A request's input tensor, before it is checked against the graph.
pub struct Tensor<'a> {
    /// The input's name.
    pub name: &'a str,
    /// Its datatype as the request names it.
    pub datatype: &'a str,
    /// Its shape as the request gives it.
    pub shape: &'a [i64],
    /// Its values.
    pub data: Data<'a>,
}

impl Tensor<'_> {
    /// The tensor as a column of the field of type `ty` (rows along the first
    /// dimension), or what is wrong with it, naming the input.
    pub fn decode(&self, ty: &FieldType) -> Result<Column, V2Error> {
        let name = self.name;
        let expected = Datatype::of(ty);
        if self.datatype != expected.as_str() {
            return Err(V2Error::invalid(format!(
                "input '{name}': datatype {} given, the model takes {}",
                self.datatype,
                expected.as_str()
            )));
        }
        let rows = rows_of(name, ty, self.shape)?;
        let width = ty.shape.iter().product::<usize>();
        // The shape is the client's: a count past what any body holds is refused here,
        // before anything is sized by it.
        let elements = rows.checked_mul(width).filter(|&n| n <= MAX_ELEMENTS).ok_or_else(|| {
            V2Error::invalid(format!("input '{name}': shape {:?} holds more elements than a request may", self.shape))
        })?;
        let count_error = |given: usize| {
            V2Error::invalid(format!(
                "input '{name}': shape {:?} holds {elements} elements, the data has {given}",
                self.shape
            ))
        };
        let column = match (&self.data, expected) {
            (Data::Raw(bytes), Datatype::Bytes) => Column::Str(raw_strings(name, bytes, elements)?),
            (Data::Raw(bytes), _) => {
                let size = match expected {
                    Datatype::Fp32 => 4,
                    Datatype::Int64 => 8,
                    _ => 1,
                };
                if bytes.len() != elements * size {
                    return Err(V2Error::invalid(format!(
                        "input '{name}': shape {:?} of {} takes {} bytes, {} given",
                        self.shape,
                        expected.as_str(),
                        elements * size,
                        bytes.len()
                    )));
                }
                match expected {
                    Datatype::Fp32 => f32_column(
                        ty,
                        bytes.chunks_exact(4).map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]])).collect(),
                    ),
                    Datatype::Int64 => Column::I64(
                        bytes.chunks_exact(8).map(|b| i64::from_le_bytes(b.try_into().unwrap_or([0; 8]))).collect(),
                    ),
                    _ => Column::Bool(bytes.iter().map(|&b| b != 0).collect()),
                }
            }
            (Data::Json(json), _) => {
                let mut flat = Vec::new();
                flatten(json, &mut flat);
                if flat.len() != elements {
                    return Err(count_error(flat.len()));
                }
                let wrong = |i: usize, what: &str| {
                    V2Error::invalid(format!("input '{name}': element {i} is not {what}: {}", flat[i]))
                };
                match expected {
                    Datatype::Fp32 => f32_column(
                        ty,
                        (0..elements)
                            .map(|i| flat[i].as_f64().map(|x| x as f32).ok_or_else(|| wrong(i, "a number")))
                            .collect::<Result<_, _>>()?,
                    ),
                    Datatype::Int64 => Column::I64(
                        (0..elements)
                            .map(|i| flat[i].as_i64().ok_or_else(|| wrong(i, "a whole number")))
                            .collect::<Result<_, _>>()?,
                    ),
                    Datatype::Bool => Column::Bool(
                        (0..elements)
                            .map(|i| flat[i].as_bool().ok_or_else(|| wrong(i, "true or false")))
                            .collect::<Result<_, _>>()?,
                    ),
                    Datatype::Bytes => Column::Str(
                        (0..elements)
                            .map(|i| flat[i].as_str().map(Arc::from).ok_or_else(|| wrong(i, "a string")))
                            .collect::<Result<_, _>>()?,
                    ),
                }
            }
            (Data::Contents(c), _) => {
                let given = match expected {
                    Datatype::Fp32 => c.fp32_contents.len(),
                    Datatype::Int64 => c.int64_contents.len(),
                    Datatype::Bool => c.bool_contents.len(),
                    Datatype::Bytes => c.bytes_contents.len(),
                };
                if given != elements {
                    return Err(count_error(given));
                }
                match expected {
                    Datatype::Fp32 => f32_column(ty, c.fp32_contents.clone()),
                    Datatype::Int64 => Column::I64(c.int64_contents.clone()),
                    Datatype::Bool => Column::Bool(c.bool_contents.clone()),
                    Datatype::Bytes => Column::Str(
                        c.bytes_contents.iter().enumerate().map(|(i, b)| utf8(name, i, b)).collect::<Result<_, _>>()?,
                    ),
                }
            }
        };
        Ok(column)
    }
}

/// The rows of a tensor of `shape` for a field of type `ty`: its first dimension, after
/// checking that the others are the field's (a scalar may come as `[n]` or `[n, 1]`).
fn rows_of(name: &str, ty: &FieldType, shape: &[i64]) -> Result<usize, V2Error> {
    let expected = metadata_shape(ty);
    let fits = match shape.split_first() {
        Some((&rows, rest)) if rows >= 0 => {
            rest.iter().map(|&d| d as usize).eq(ty.shape.iter().copied()) || (ty.is_scalar() && rest == [1])
        }
        _ => false,
    };
    if !fits {
        return Err(V2Error::invalid(format!(
            "input '{name}': shape {shape:?} given, the model takes {expected:?} (rows first)"
        )));
    }
    Ok(shape[0] as usize)
}

fn f32_column(ty: &FieldType, data: Vec<f32>) -> Column {
    if ty.is_scalar() {
        Column::F32(data)
    } else {
        Column::Tensor { width: ty.shape.iter().product(), data }
    }
}

/// Every leaf of a JSON value, nested arrays flattened row-major.
fn flatten<'a>(json: &'a Json, out: &mut Vec<&'a Json>) {
    match json {
        Json::Array(items) => items.iter().for_each(|item| flatten(item, out)),
        leaf => out.push(leaf),
    }
}

fn utf8(name: &str, i: usize, bytes: &[u8]) -> Result<Arc<str>, V2Error> {
    std::str::from_utf8(bytes)
        .map(Arc::from)
        .map_err(|e| V2Error::invalid(format!("input '{name}': element {i} is not UTF-8 text: {e}")))
}

/// `elements` BYTES elements, each a 4-byte little-endian length and its bytes, filling
/// `bytes` exactly.
fn raw_strings(name: &str, mut bytes: &[u8], elements: usize) -> Result<Vec<Arc<str>>, V2Error> {
    let mut out = Vec::with_capacity(elements.min(bytes.len() / 4));
    for i in 0..elements {
        let short = || V2Error::invalid(format!("input '{name}': its raw data ends inside element {i}"));
        let (len, rest) = bytes.split_first_chunk::<4>().ok_or_else(short)?;
        let len = u32::from_le_bytes(*len) as usize;
        if rest.len() < len {
            return Err(short());
        }
        out.push(utf8(name, i, &rest[..len])?);
        bytes = &rest[len..];
    }
    if !bytes.is_empty() {
        return Err(V2Error::invalid(format!(
            "input '{name}': {} bytes of raw data are left after its {elements} elements",
            bytes.len()
        )));
    }
    Ok(out)
}

/// A column's values as raw little-endian bytes (BYTES: each with its 4-byte length).
pub fn raw(column: &Column) -> Vec<u8> {
    match column {
        Column::F32(v) | Column::Tensor { data: v, .. } => v.iter().flat_map(|x| x.to_le_bytes()).collect(),
        Column::I64(v) => v.iter().flat_map(|x| x.to_le_bytes()).collect(),
        Column::Bool(v) => v.iter().map(|&b| u8::from(b)).collect(),
        Column::Str(v) => {
            let mut out = Vec::with_capacity(v.iter().map(|s| s.len() + 4).sum());
            for s in v {
                out.extend_from_slice(&(s.len() as u32).to_le_bytes());
                out.extend_from_slice(s.as_bytes());
            }
            out
        }
    }
}

/// A column's values as a flat JSON array (serialized without building JSON values;
/// `f32` in its shortest form; a non-finite number as `null`).
pub struct JsonData<'a>(pub &'a Column);

impl Serialize for JsonData<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self.0 {
            Column::F32(v) | Column::Tensor { data: v, .. } => v.serialize(s),
            Column::I64(v) => v.serialize(s),
            Column::Bool(v) => v.serialize(s),
            Column::Str(v) => {
                let mut seq = s.serialize_seq(Some(v.len()))?;
                for x in v {
                    seq.serialize_element(&**x)?;
                }
                seq.end()
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn tensor<'a>(datatype: &'a str, shape: &'a [i64], data: Data<'a>) -> Tensor<'a> {
        Tensor { name: "x", datatype, shape, data }
    }

    #[test]
    fn json_raw_and_contents_give_one_column() {
        let ty = FieldType::vector(2);
        let json = json!([[1.0, 2.0], [3.0, 4.5]]);
        let raw: Vec<u8> = [1.0f32, 2.0, 3.0, 4.5].iter().flat_map(|x| x.to_le_bytes()).collect();
        let contents = InferTensorContents { fp32_contents: vec![1.0, 2.0, 3.0, 4.5], ..Default::default() };
        let want = Column::Tensor { width: 2, data: vec![1.0, 2.0, 3.0, 4.5] };
        for data in [Data::Json(&json), Data::Raw(&raw), Data::Contents(&contents)] {
            assert_eq!(tensor("FP32", &[2, 2], data).decode(&ty).unwrap(), want);
        }
        assert_eq!(raw, super::raw(&want));
    }

    #[test]
    fn strings_round_trip_through_raw_bytes() {
        let column = Column::Str(vec![Arc::from("héllo"), Arc::from("")]);
        let bytes = raw(&column);
        let ty = FieldType::scalar(DType::Str);
        assert_eq!(tensor("BYTES", &[2], Data::Raw(&bytes)).decode(&ty).unwrap(), column);
        let err = tensor("BYTES", &[3], Data::Raw(&bytes)).decode(&ty).unwrap_err();
        assert!(err.to_string().contains("ends inside element 2"), "{err}");
    }

    #[test]
    fn wrong_datatype_shape_or_count_names_the_input() {
        let ty = FieldType::vector(2);
        let json = json!([1.0, 2.0, 3.0]);
        let cases = [
            tensor("FP32", &[i64::MAX, 2], Data::Json(&json)).decode(&ty),
            tensor("FP64", &[1, 2], Data::Json(&json)).decode(&ty),
            tensor("FP32", &[1, 3], Data::Json(&json)).decode(&ty),
            tensor("FP32", &[2, 2], Data::Json(&json)).decode(&ty),
        ];
        let wanted = [
            "more elements than a request may",
            "datatype FP64 given, the model takes FP32",
            "the model takes [-1, 2]",
            "the data has 3",
        ];
        for (result, want) in cases.into_iter().zip(wanted) {
            let err = result.unwrap_err().to_string();
            assert!(err.starts_with("input 'x': ") && err.contains(want), "{err}");
        }
    }

    #[test]
    fn a_scalar_comes_as_n_or_n_by_1() {
        let ty = FieldType::scalar(DType::F32);
        let json = json!([1.0, 2.0]);
        for shape in [&[2][..], &[2, 1]] {
            assert_eq!(tensor("FP32", shape, Data::Json(&json)).decode(&ty).unwrap(), Column::F32(vec![1.0, 2.0]));
        }
    }

    #[test]
    fn json_data_is_flat_and_short() {
        let column = Column::Tensor { width: 2, data: vec![0.1, 2.0] };
        assert_eq!(serde_json::to_string(&JsonData(&column)).unwrap(), "[0.1,2.0]");
    }
}
