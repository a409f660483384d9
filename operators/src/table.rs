//! Tables: keyed rows kept inside the dataflow, which `lookup` nodes join requests with.
//!
//! A table maps a [`TableKey`] (an integer or a string) to a [`TableRow`] (the values of
//! the table's value fields, in order). It changes by upserts: a key gets a new row, or
//! (`None`) leaves the table. Each worker keeps its part in a `table_store.rs`; the
//! dataflow side is `dataflow/store.rs` and `dataflow/lookup.rs`.

use std::cmp::Ordering;
use std::fmt;
use std::sync::Arc;

use serde::{Deserialize, Serialize};

use crate::value::Value;

/// A table's key.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum TableKey {
    /// An integer key.
    I64(i64),
    /// A string key.
    Str(Arc<str>),
}

impl TableKey {
    /// Which worker owns the key: a hash of it that is the same in every process and
    /// every run (not seeded), for routing upserts and lookups by key.
    pub fn route(&self) -> u64 {
        match self {
            TableKey::I64(k) => crate::id_map::fold(*k as u64),
            // FNV-1a, then folded.
            TableKey::Str(s) => crate::id_map::fold(
                s.bytes().fold(0xcbf2_9ce4_8422_2325u64, |h, b| (h ^ u64::from(b)).wrapping_mul(0x100_0000_01b3)),
            ),
        }
    }

    /// The key a value names: an `i64` or a `str`; `None` for other types.
    pub fn from_value(value: &Value) -> Option<TableKey> {
        match value {
            Value::I64(i) => Some(TableKey::I64(*i)),
            Value::Str(s) => Some(TableKey::Str(Arc::clone(s))),
            _ => None,
        }
    }
}

impl fmt::Display for TableKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TableKey::I64(i) => write!(f, "{i}"),
            TableKey::Str(s) => write!(f, "{s:?}"),
        }
    }
}

/// The values of one table row, in the order of the table's value fields.
///
/// Ordered by value (a total order, for tests and sorted output), floats by
/// `total_cmp`: the order means nothing beyond being total and consistent.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct TableRow(pub Arc<[Value]>);

impl TableRow {
    /// A row of these values.
    pub fn new(values: Vec<Value>) -> TableRow {
        TableRow(values.into())
    }
}

impl PartialEq for TableRow {
    fn eq(&self, other: &Self) -> bool {
        self.cmp(other) == Ordering::Equal
    }
}

impl Eq for TableRow {}

impl PartialOrd for TableRow {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for TableRow {
    fn cmp(&self, other: &Self) -> Ordering {
        self.0.len().cmp(&other.0.len()).then_with(|| {
            self.0
                .iter()
                .zip(other.0.iter())
                .map(|(a, b)| value_cmp(a, b))
                .find(|o| o.is_ne())
                .unwrap_or(Ordering::Equal)
        })
    }
}

/// A total order on values: by type, then by value (floats by `total_cmp`).
fn value_cmp(a: &Value, b: &Value) -> Ordering {
    fn rank(v: &Value) -> u8 {
        match v {
            Value::F32(_) => 0,
            Value::I64(_) => 1,
            Value::Bool(_) => 2,
            Value::Str(_) => 3,
            Value::Tensor(_) => 4,
        }
    }
    match (a, b) {
        (Value::F32(x), Value::F32(y)) => x.total_cmp(y),
        (Value::I64(x), Value::I64(y)) => x.cmp(y),
        (Value::Bool(x), Value::Bool(y)) => x.cmp(y),
        (Value::Str(x), Value::Str(y)) => x.cmp(y),
        (Value::Tensor(x), Value::Tensor(y)) => x.len().cmp(&y.len()).then_with(|| {
            x.iter().zip(y.iter()).map(|(p, q)| p.total_cmp(q)).find(|o| o.is_ne()).unwrap_or(Ordering::Equal)
        }),
        _ => rank(a).cmp(&rank(b)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rows_order_totally_even_with_nan() {
        let a = TableRow::new(vec![Value::F32(f32::NAN), Value::Str("x".into())]);
        let b = TableRow::new(vec![Value::F32(1.0), Value::Str("x".into())]);
        assert_eq!(a, a.clone());
        assert_ne!(a, b);
        assert_eq!(a.cmp(&b), b.cmp(&a).reverse());
    }

    #[test]
    fn a_keys_route_is_the_same_in_every_process() {
        // Fixed numbers: a seeded hash would send a key to different workers in two
        // processes of one cluster.
        assert_eq!(TableKey::I64(1).route(), 0x9E37_79B9_7F4A_7C15);
        assert_eq!(TableKey::Str("a".into()).route(), TableKey::Str("a".into()).route());
        assert_ne!(TableKey::Str("a".into()).route(), TableKey::Str("b".into()).route());
    }

    #[test]
    fn keys_come_from_integers_and_strings_only() {
        assert_eq!(TableKey::from_value(&Value::I64(7)), Some(TableKey::I64(7)));
        assert_eq!(TableKey::from_value(&Value::Str("a".into())), Some(TableKey::Str("a".into())));
        assert_eq!(TableKey::from_value(&Value::F32(1.0)), None);
        assert_eq!(TableKey::Str("acc-1".into()).to_string(), "\"acc-1\"");
    }
}
