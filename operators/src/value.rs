//! Values and their types: what one field of a row holds.
//!
//! Inside a graph, fields travel by column ([`Column`](crate::column::Column)); a
//! `Value` is one field of one row where code sees rows: submissions and answers, user
//! closures, aggregates and conditions. Every edge of the compiled graph has a fixed
//! layout (names and types), so operators address fields by index.

use std::fmt;
use std::sync::Arc;

use serde::{Deserialize, Serialize};

/// The element type of a field.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum DType {
    /// 32-bit float; the only element type a tensor field can have.
    F32,
    /// 64-bit signed integer (class indices, counts, ids).
    I64,
    /// Boolean (thresholds).
    Bool,
    /// UTF-8 string (labels, categories, text).
    Str,
}

impl DType {
    /// The name used in graph files (`f32`, `i64`, `bool`, `str`).
    pub fn name(self) -> &'static str {
        match self {
            DType::F32 => "f32",
            DType::I64 => "i64",
            DType::Bool => "bool",
            DType::Str => "str",
        }
    }
}

/// The type of a field: an element type and a shape. The empty shape is a scalar; a
/// non-empty shape is only allowed for `f32` (a tensor, stored flat in row-major order).
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct FieldType {
    /// Element type.
    pub dtype: DType,
    /// Dimensions; empty for a scalar.
    pub shape: Vec<usize>,
}

impl FieldType {
    /// A scalar of `dtype`.
    pub fn scalar(dtype: DType) -> Self {
        FieldType { dtype, shape: Vec::new() }
    }

    /// An `f32` vector of `len` elements.
    pub fn vector(len: usize) -> Self {
        FieldType { dtype: DType::F32, shape: vec![len] }
    }

    /// Whether this is a scalar.
    pub fn is_scalar(&self) -> bool {
        self.shape.is_empty()
    }

    /// The number of `f32` elements a numeric field feeds to a model: 1 for an `f32`
    /// scalar, the product of the shape for a tensor, `None` for other types.
    pub fn width(&self) -> Option<usize> {
        (self.dtype == DType::F32).then(|| self.shape.iter().product())
    }

    /// Parses the graph-file notation: `f32`, `i64`, `bool`, `str`, `f32[64]`, `f32[8,8]`.
    pub fn parse(text: &str) -> Result<Self, String> {
        let text = text.trim();
        let (base, dims) = match text.find('[') {
            Some(open) => {
                let close = text
                    .strip_suffix(']')
                    .ok_or_else(|| format!("type '{text}' opens '[' but does not end with ']'"))?;
                (&text[..open], Some(&close[open + 1..]))
            }
            None => (text, None),
        };
        let dtype = match base.trim() {
            "f32" | "float" => DType::F32,
            "i64" | "int" => DType::I64,
            "bool" => DType::Bool,
            "str" | "string" => DType::Str,
            other => return Err(format!("unknown type '{other}' (expected f32, i64, bool, str or f32[N])")),
        };
        let mut shape = Vec::new();
        if let Some(dims) = dims {
            if dtype != DType::F32 {
                return Err(format!("type '{text}': only f32 fields can have a shape"));
            }
            for dim in dims.split(',') {
                let n: usize = dim
                    .trim()
                    .parse()
                    .map_err(|_| format!("type '{text}': dimension '{}' is not a positive integer", dim.trim()))?;
                if n == 0 {
                    return Err(format!("type '{text}': dimensions must be at least 1"));
                }
                shape.push(n);
            }
        }
        Ok(FieldType { dtype, shape })
    }
}

impl fmt::Display for FieldType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.dtype.name())?;
        if !self.shape.is_empty() {
            let dims: Vec<String> = self.shape.iter().map(|d| d.to_string()).collect();
            write!(f, "[{}]", dims.join(","))?;
        }
        Ok(())
    }
}

/// One field's value.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum Value {
    /// An `f32` scalar.
    F32(f32),
    /// An `i64` scalar.
    I64(i64),
    /// A boolean.
    Bool(bool),
    /// A string.
    Str(Arc<str>),
    /// An `f32` tensor, flat, row-major.
    Tensor(Arc<[f32]>),
}

impl Value {
    /// Whether this value has type `ty` (element type, and element count for tensors).
    pub fn conforms_to(&self, ty: &FieldType) -> bool {
        match (self, ty.dtype) {
            (Value::F32(_), DType::F32) => ty.shape.is_empty(),
            (Value::Tensor(t), DType::F32) => !ty.shape.is_empty() && t.len() == ty.shape.iter().product::<usize>(),
            (Value::I64(_), DType::I64) | (Value::Bool(_), DType::Bool) | (Value::Str(_), DType::Str) => {
                ty.shape.is_empty()
            }
            _ => false,
        }
    }

    /// A short description of this value's type, for error messages.
    pub fn type_name(&self) -> String {
        match self {
            Value::F32(_) => "f32".into(),
            Value::I64(_) => "i64".into(),
            Value::Bool(_) => "bool".into(),
            Value::Str(_) => "str".into(),
            Value::Tensor(t) => format!("f32[{}]", t.len()),
        }
    }

    /// The numeric elements of an `f32` scalar or tensor, `None` otherwise.
    pub fn as_f32s(&self) -> Option<&[f32]> {
        match self {
            Value::F32(x) => Some(std::slice::from_ref(x)),
            Value::Tensor(t) => Some(t),
            _ => None,
        }
    }

    /// The value as an `f64` if it is a number (`f32`, `i64`) or a boolean (0 or 1).
    pub fn as_f64(&self) -> Option<f64> {
        match self {
            Value::F32(x) => Some(f64::from(*x)),
            Value::I64(x) => Some(*x as f64),
            Value::Bool(b) => Some(if *b { 1.0 } else { 0.0 }),
            _ => None,
        }
    }

    /// Builds an `f32` value of type `ty` from elements: a scalar when `ty` is scalar.
    pub fn from_f32s(ty: &FieldType, data: &[f32]) -> Value {
        match data {
            [x] if ty.shape.is_empty() => Value::F32(*x),
            _ => Value::Tensor(Arc::from(data)),
        }
    }
}

impl fmt::Display for Value {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Value::F32(x) => write!(f, "{x}"),
            Value::I64(x) => write!(f, "{x}"),
            Value::Bool(x) => write!(f, "{x}"),
            Value::Str(s) => write!(f, "{s:?}"),
            Value::Tensor(t) => write!(f, "f32[{}]", t.len()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_types() {
        assert_eq!(FieldType::parse("f32").unwrap(), FieldType::scalar(DType::F32));
        assert_eq!(FieldType::parse("f32[64]").unwrap(), FieldType::vector(64));
        assert_eq!(FieldType::parse("f32[8, 8]").unwrap().shape, vec![8, 8]);
        assert_eq!(FieldType::parse("str").unwrap(), FieldType::scalar(DType::Str));
        assert!(FieldType::parse("i64[3]").unwrap_err().contains("only f32"));
        assert!(FieldType::parse("f32[0]").is_err());
        assert!(FieldType::parse("f64").unwrap_err().contains("unknown type 'f64'"));
        assert!(FieldType::parse("f32[3").is_err());
        assert_eq!(FieldType::parse("f32[8,8]").unwrap().to_string(), "f32[8,8]");
    }

    #[test]
    fn conformance() {
        let v = Value::Tensor(vec![1.0; 64].into());
        assert!(v.conforms_to(&FieldType::vector(64)));
        assert!(!v.conforms_to(&FieldType::vector(63)));
        assert!(!Value::F32(1.0).conforms_to(&FieldType::vector(1)));
        assert!(Value::F32(1.0).conforms_to(&FieldType::scalar(DType::F32)));
    }
}
