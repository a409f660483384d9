//! Columns: one field's values for every row of a [`Chunk`](crate::chunk::Chunk).
//!
//! weir's data plane is columnar: a chunk of rows holds one column per field of the
//! edge's schema, so operators work on whole columns (a standardisation is one loop over
//! a flat `f32` buffer, a model batch is a copy of contiguous rows) instead of on one
//! `Vec<Value>` per row. Row-wise code (user closures, conditions) reads a row's value
//! with [`Column::value`] and writes with [`Column::push`].
//!
//! A column's type is fixed by the graph; a row that failed upstream still has a slot in
//! every column, holding a filler (zeros, `false`, the empty string) that no operator
//! reads as data.

use std::sync::Arc;

use crate::value::{DType, FieldType, Value};

/// The values of one field, one per row.
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub enum Column {
    /// `f32` scalars.
    F32(Vec<f32>),
    /// `f32` tensors of `width` elements each, flat, row after row.
    Tensor {
        /// Elements per row (the product of the field's shape).
        width: usize,
        /// `rows * width` numbers.
        data: Vec<f32>,
    },
    /// `i64` scalars.
    I64(Vec<i64>),
    /// Booleans.
    Bool(Vec<bool>),
    /// Strings.
    Str(Vec<Arc<str>>),
}

impl Column {
    /// An empty column of type `ty`, with room for `rows` rows.
    pub fn with_capacity(ty: &FieldType, rows: usize) -> Column {
        match ty.dtype {
            DType::F32 if ty.is_scalar() => Column::F32(Vec::with_capacity(rows)),
            DType::F32 => {
                let width = ty.width().unwrap_or(1);
                Column::Tensor { width, data: Vec::with_capacity(rows * width) }
            }
            DType::I64 => Column::I64(Vec::with_capacity(rows)),
            DType::Bool => Column::Bool(Vec::with_capacity(rows)),
            DType::Str => Column::Str(Vec::with_capacity(rows)),
        }
    }

    /// A column of type `ty` holding `rows` fillers.
    pub fn filler(ty: &FieldType, rows: usize) -> Column {
        let mut c = Column::with_capacity(ty, rows);
        c.push_fillers(rows);
        c
    }

    /// A column of type `ty` from values that conform to it (a value that does not is
    /// stored as a filler).
    pub fn from_values<'a>(ty: &FieldType, values: impl IntoIterator<Item = &'a Value>) -> Column {
        let values = values.into_iter();
        let mut c = Column::with_capacity(ty, values.size_hint().0);
        for v in values {
            c.push(v);
        }
        c
    }

    /// The number of rows.
    pub fn len(&self) -> usize {
        match self {
            Column::F32(v) => v.len(),
            Column::Tensor { width, data } => data.len() / (*width).max(1),
            Column::I64(v) => v.len(),
            Column::Bool(v) => v.len(),
            Column::Str(v) => v.len(),
        }
    }

    /// Whether the column has no rows.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The numbers of an `f32` column and the count per row; `None` for other types.
    pub fn f32s(&self) -> Option<(&[f32], usize)> {
        match self {
            Column::F32(v) => Some((v, 1)),
            Column::Tensor { width, data } => Some((data, *width)),
            _ => None,
        }
    }

    /// The value of row `row` (which must exist).
    pub fn value(&self, row: usize) -> Value {
        match self {
            Column::F32(v) => Value::F32(v[row]),
            Column::Tensor { width, data } => Value::Tensor(Arc::from(&data[row * width..(row + 1) * width])),
            Column::I64(v) => Value::I64(v[row]),
            Column::Bool(v) => Value::Bool(v[row]),
            Column::Str(v) => Value::Str(Arc::clone(&v[row])),
        }
    }

    /// Every value, in row order.
    pub fn values(&self) -> Vec<Value> {
        (0..self.len()).map(|i| self.value(i)).collect()
    }

    /// Appends `v`; returns false (and appends a filler) if `v` does not fit the column.
    pub fn push(&mut self, v: &Value) -> bool {
        match (self, v) {
            (Column::F32(c), Value::F32(x)) => c.push(*x),
            (Column::Tensor { width, data }, Value::Tensor(t)) if t.len() == *width => data.extend_from_slice(t),
            (Column::I64(c), Value::I64(x)) => c.push(*x),
            (Column::Bool(c), Value::Bool(x)) => c.push(*x),
            (Column::Str(c), Value::Str(s)) => c.push(Arc::clone(s)),
            (c, _) => {
                c.push_fillers(1);
                return false;
            }
        }
        true
    }

    /// Appends `n` fillers.
    pub fn push_fillers(&mut self, n: usize) {
        match self {
            Column::F32(c) => c.resize(c.len() + n, 0.0),
            Column::Tensor { width, data } => data.resize(data.len() + n * *width, 0.0),
            Column::I64(c) => c.resize(c.len() + n, 0),
            Column::Bool(c) => c.resize(c.len() + n, false),
            Column::Str(c) => c.resize(c.len() + n, Arc::from("")),
        }
    }

    /// Appends row `row` of `other` (a column of the same type; otherwise a filler).
    pub fn push_from(&mut self, other: &Column, row: usize) {
        match (self, other) {
            (Column::F32(c), Column::F32(o)) => c.push(o[row]),
            (Column::Tensor { width, data }, Column::Tensor { width: w, data: o }) if w == width => {
                data.extend_from_slice(&o[row * *w..(row + 1) * *w])
            }
            (Column::I64(c), Column::I64(o)) => c.push(o[row]),
            (Column::Bool(c), Column::Bool(o)) => c.push(o[row]),
            (Column::Str(c), Column::Str(o)) => c.push(Arc::clone(&o[row])),
            (c, _) => c.push_fillers(1),
        }
    }

    /// Appends every row of `other` (same type; otherwise fillers).
    pub fn extend_from(&mut self, other: &Column) {
        match (self, other) {
            (Column::F32(c), Column::F32(o)) => c.extend_from_slice(o),
            (Column::Tensor { width, data }, Column::Tensor { width: w, data: o }) if w == width => {
                data.extend_from_slice(o)
            }
            (Column::I64(c), Column::I64(o)) => c.extend_from_slice(o),
            (Column::Bool(c), Column::Bool(o)) => c.extend_from_slice(o),
            (Column::Str(c), Column::Str(o)) => c.extend(o.iter().cloned()),
            (c, o) => c.push_fillers(o.len()),
        }
    }

    /// Appends rows `from..from + n` of `other` (same type; otherwise fillers).
    pub fn extend_range(&mut self, other: &Column, from: usize, n: usize) {
        let range = from..from + n;
        match (self, other) {
            (Column::F32(c), Column::F32(o)) => c.extend_from_slice(&o[range]),
            (Column::Tensor { width, data }, Column::Tensor { width: w, data: o }) if w == width => {
                data.extend_from_slice(&o[from * *w..(from + n) * *w])
            }
            (Column::I64(c), Column::I64(o)) => c.extend_from_slice(&o[range]),
            (Column::Bool(c), Column::Bool(o)) => c.extend_from_slice(&o[range]),
            (Column::Str(c), Column::Str(o)) => c.extend(o[range].iter().cloned()),
            (c, _) => c.push_fillers(n),
        }
    }

    /// Overwrites row `row` with `v`; returns false (and leaves it) if `v` does not fit.
    pub fn set(&mut self, row: usize, v: &Value) -> bool {
        match (self, v) {
            (Column::F32(c), Value::F32(x)) => c[row] = *x,
            (Column::Tensor { width, data }, Value::Tensor(t)) if t.len() == *width => {
                data[row * *width..(row + 1) * *width].copy_from_slice(t)
            }
            (Column::I64(c), Value::I64(x)) => c[row] = *x,
            (Column::Bool(c), Value::Bool(x)) => c[row] = *x,
            (Column::Str(c), Value::Str(s)) => c[row] = Arc::clone(s),
            _ => return false,
        }
        true
    }

    /// Overwrites rows `row..row + n` with rows `from..from + n` of `other` (same type;
    /// otherwise unchanged).
    pub fn set_range(&mut self, row: usize, other: &Column, from: usize, n: usize) {
        match (self, other) {
            (Column::F32(c), Column::F32(o)) => c[row..row + n].copy_from_slice(&o[from..from + n]),
            (Column::Tensor { width, data }, Column::Tensor { width: w, data: o }) if w == width => {
                data[row * *w..(row + n) * *w].copy_from_slice(&o[from * *w..(from + n) * *w])
            }
            (Column::I64(c), Column::I64(o)) => c[row..row + n].copy_from_slice(&o[from..from + n]),
            (Column::Bool(c), Column::Bool(o)) => c[row..row + n].copy_from_slice(&o[from..from + n]),
            (Column::Str(c), Column::Str(o)) => c[row..row + n].clone_from_slice(&o[from..from + n]),
            _ => {}
        }
    }

    /// The rows at `rows`, in that order.
    pub fn gather(&self, rows: &[usize]) -> Column {
        let mut out = self.empty_like(rows.len());
        for &r in rows {
            out.push_from(self, r);
        }
        out
    }

    /// An empty column of this column's type, with room for `rows` rows.
    pub fn empty_like(&self, rows: usize) -> Column {
        match self {
            Column::F32(_) => Column::F32(Vec::with_capacity(rows)),
            Column::Tensor { width, .. } => Column::Tensor { width: *width, data: Vec::with_capacity(rows * width) },
            Column::I64(_) => Column::I64(Vec::with_capacity(rows)),
            Column::Bool(_) => Column::Bool(Vec::with_capacity(rows)),
            Column::Str(_) => Column::Str(Vec::with_capacity(rows)),
        }
    }

    /// Whether this column can hold values of type `ty`.
    pub fn fits(&self, ty: &FieldType) -> bool {
        match self {
            Column::F32(_) => ty.dtype == DType::F32 && ty.is_scalar(),
            Column::Tensor { width, .. } => ty.dtype == DType::F32 && !ty.is_scalar() && ty.width() == Some(*width),
            Column::I64(_) => *ty == FieldType::scalar(DType::I64),
            Column::Bool(_) => *ty == FieldType::scalar(DType::Bool),
            Column::Str(_) => *ty == FieldType::scalar(DType::Str),
        }
    }

    /// A short description of the column's type, for error messages.
    pub fn type_name(&self) -> String {
        match self {
            Column::F32(_) => "f32".into(),
            Column::Tensor { width, .. } => format!("f32[{width}]"),
            Column::I64(_) => "i64".into(),
            Column::Bool(_) => "bool".into(),
            Column::Str(_) => "str".into(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_values() {
        let ty = FieldType::vector(2);
        let values = vec![Value::Tensor(vec![1.0, 2.0].into()), Value::Tensor(vec![3.0, 4.0].into())];
        let c = Column::from_values(&ty, &values);
        assert_eq!(c.len(), 2);
        assert_eq!(c.values(), values);
        assert_eq!(c.gather(&[1, 0]).values(), vec![values[1].clone(), values[0].clone()]);
        assert!(c.fits(&ty) && !c.fits(&FieldType::vector(3)));
    }

    #[test]
    fn a_misfit_becomes_a_filler() {
        let mut c = Column::with_capacity(&FieldType::scalar(DType::I64), 2);
        assert!(c.push(&Value::I64(7)));
        assert!(!c.push(&Value::Str("x".into())));
        assert_eq!(c, Column::I64(vec![7, 0]));
        let mut s = Column::filler(&FieldType::scalar(DType::Str), 2);
        s.set_range(1, &Column::Str(vec!["a".into()]), 0, 1);
        assert_eq!(s.value(1), Value::Str("a".into()));
        let mut t = Column::with_capacity(&FieldType::vector(2), 2);
        t.extend_range(&Column::Tensor { width: 2, data: vec![1.0, 2.0, 3.0, 4.0, 5.0, 6.0] }, 1, 2);
        assert_eq!(t, Column::Tensor { width: 2, data: vec![3.0, 4.0, 5.0, 6.0] });
    }
}
