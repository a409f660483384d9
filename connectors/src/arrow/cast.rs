//! The Arrow types each input field takes, and their cast to the one type it is decoded
//! from, with arrow's cast kernels (`arrow-cast`).
//!
//! | field | accepted Arrow types | decoded from |
//! |---|---|---|
//! | `f32` | Float16, Float32, Float64, Int8–Int64, UInt8–UInt64 | Float32 |
//! | `f32[N]` | List, LargeList, ListView, LargeListView, or FixedSizeList of exactly N, of any of those numbers | FixedSizeList(N) of Float32 |
//! | `i64` | Int8–Int64, UInt8–UInt64 | Int64 |
//! | `bool` | Boolean | Boolean |
//! | `str` | Utf8, LargeUtf8, Utf8View, or a Dictionary of one of them | the strings |
//!
//! A column that already has the decoded type is not cast, nor copied here.
//!
//! Rounding: a number becomes the nearest `f32` (ties to even), as Rust's `as f32`:
//! Float16, Int8, Int16, UInt8 and UInt16 exactly; Float64, the 32- and 64-bit integers
//! rounded when they have more significant bits than an `f32` holds (24). NaN and ±inf
//! stay NaN and ±inf. Integers become `i64` exactly.
//!
//! What fails, by type (the whole column: refused before any row runs in replay and
//! snapshots, the whole payload for Kafka): anything not in the table, notably floats
//! into `i64` (they would be truncated), text into numbers (it would be parsed), numbers
//! into `str` or `bool`, a FixedSizeList of another size than N, decimals, times,
//! dictionaries of numbers, and lists of lists.
//!
//! What fails, by value (only that row, naming the field and the row; see [`Cast`]):
//! - a finite Float64 beyond `f32`'s range (|x| > 3.4028235e38 after rounding): not
//!   silently ±inf;
//! - a UInt64 above `i64::MAX` (checked per value: a UInt64 column of small numbers is
//!   fine);
//! - a list of a length other than N.
//!
//! Nulls are not this module's business: a null value, or a null element of a list,
//! fails its row when the column is decoded, whatever the column's type (a null in a
//! dictionary's values is a null value).

use std::sync::Arc;

use arrow_array::cast::AsArray;
use arrow_array::types::{Float32Type, Float64Type};
use arrow_array::{Array, ArrayRef};
use arrow_cast::display::{ArrayFormatter, FormatOptions};
use arrow_cast::{cast_with_options, CastOptions};
use arrow_schema::{ArrowError, DataType, Field};
use weir_operators::{DType, FieldType};

/// A column cast to the type its field is decoded from (see the module docs), and the
/// rows whose value does not convert. Such a row holds a null or ±inf in `array`.
pub struct Cast {
    /// The column, of the decoded type.
    pub array: ArrayRef,
    /// Rows (not null in the input) whose value does not convert, with why, in row order.
    pub failed: Vec<(usize, String)>,
}

/// Whether a column of Arrow type `found` can feed a field of type `ty`.
pub fn accepts(ty: &FieldType, found: &DataType) -> bool {
    match (ty.dtype, ty.is_scalar(), found) {
        (DType::F32, true, t) => is_number(t),
        (DType::F32, false, DataType::FixedSizeList(item, n)) => {
            Some(*n as usize) == ty.width() && is_number(item.data_type())
        }
        (
            DType::F32,
            false,
            DataType::List(item) | DataType::LargeList(item) | DataType::ListView(item) | DataType::LargeListView(item),
        ) => is_number(item.data_type()),
        (DType::I64, _, t) => t.is_integer(),
        (DType::Bool, _, DataType::Boolean) => true,
        (DType::Str, _, DataType::Dictionary(_, values)) => is_text(values),
        (DType::Str, _, t) => is_text(t),
        _ => false,
    }
}

/// The Arrow types a field of type `ty` accepts, in words.
pub fn accepted(ty: &FieldType) -> String {
    const NUMBERS: &str = "Float16, Float32, Float64, Int8 to Int64 or UInt8 to UInt64";
    match (ty.dtype, ty.is_scalar()) {
        (DType::F32, true) => format!("a number ({NUMBERS})"),
        (DType::F32, false) => {
            format!("a List, LargeList, ListView or FixedSizeList({}) of numbers ({NUMBERS})", ty.width().unwrap_or(1))
        }
        (DType::I64, _) => "an integer (Int8 to Int64 or UInt8 to UInt64)".into(),
        (DType::Bool, _) => "Boolean".into(),
        (DType::Str, _) => "text (Utf8, LargeUtf8, Utf8View or a Dictionary of them)".into(),
    }
}

fn is_number(t: &DataType) -> bool {
    t.is_integer() || t.is_floating()
}

fn is_text(t: &DataType) -> bool {
    matches!(t, DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View)
}

/// The type a column of type `found` is cast to for a field of type `ty`; `None` where
/// it is decoded as it is.
fn decoded_type(ty: &FieldType, found: &DataType) -> Option<DataType> {
    match (ty.dtype, ty.is_scalar(), found) {
        (DType::F32, true, DataType::Float32)
        | (DType::I64, _, DataType::Int64)
        | (DType::Bool, _, _)
        | (DType::Str, _, DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View) => None,
        (DType::F32, true, _) => Some(DataType::Float32),
        (DType::F32, false, DataType::FixedSizeList(item, _)) if item.data_type() == &DataType::Float32 => None,
        (DType::F32, false, _) => Some(DataType::FixedSizeList(
            Arc::new(Field::new_list_field(DataType::Float32, true)),
            ty.width().unwrap_or(1) as i32,
        )),
        (DType::I64, _, _) => Some(DataType::Int64),
        (DType::Str, _, DataType::Dictionary(_, values)) => Some((**values).clone()),
        (DType::Str, _, _) => None,
    }
}

/// Casts `array`, of a type [`accepts`] takes for `ty`, to the type `ty` is decoded
/// from. An error only where arrow cannot cast at all (a bug: every accepted type casts).
pub fn cast(ty: &FieldType, array: &ArrayRef) -> Result<Cast, ArrowError> {
    let Some(to) = decoded_type(ty, array.data_type()) else {
        return Ok(Cast { array: Arc::clone(array), failed: Vec::new() });
    };
    // Safe: a value that does not fit becomes null, found below, instead of failing the
    // whole column.
    let options = CastOptions { safe: true, format_options: FormatOptions::default() };
    let cast = cast_with_options(array.as_ref(), &to, &options)?;
    let mut failed = Vec::new();
    if cast.logical_null_count() > array.logical_null_count() {
        let (before, after) = (array.logical_nulls(), cast.logical_nulls());
        let newly_null =
            |r: usize| after.as_ref().is_some_and(|n| n.is_null(r)) && before.as_ref().is_none_or(|n| n.is_valid(r));
        for r in (0..array.len()).filter(|&r| newly_null(r)) {
            let why = match list_row(array.as_ref(), r) {
                Some(list) => format!("expected {} numbers ({ty}), got {}", ty.width().unwrap_or(1), list.len()),
                None => format!(
                    "value {} does not fit {ty}",
                    ArrayFormatter::try_new(array, &options.format_options)?.value(r)
                ),
            };
            failed.push((r, why));
        }
    }
    failed.extend(beyond_f32(array.as_ref(), cast.as_ref()));
    failed.sort_by_key(|(r, _)| *r);
    Ok(Cast { array: cast, failed })
}

/// The rows of `source` (Float64, or a list of Float64) holding a finite number that
/// became ±inf in `cast` (Float32, or a FixedSizeList of Float32).
fn beyond_f32(source: &dyn Array, cast: &dyn Array) -> Vec<(usize, String)> {
    let beyond = |x: f64| format!("value {x:e} is outside f32's range (±{:e})", f32::MAX);
    let overflowed = |x: f64, y: f32| x.is_finite() && y.is_infinite();
    match (source.data_type(), cast.data_type()) {
        (DataType::Float64, DataType::Float32) => {
            let (x, y) = (source.as_primitive::<Float64Type>(), cast.as_primitive::<Float32Type>());
            if !y.values().iter().any(|v| v.is_infinite()) {
                return Vec::new();
            }
            (0..x.len())
                .filter(|&r| x.is_valid(r) && overflowed(x.value(r), y.value(r)))
                .map(|r| (r, beyond(x.value(r))))
                .collect()
        }
        (_, DataType::FixedSizeList(_, _)) => {
            let list = cast.as_fixed_size_list();
            let Some(y) = list.values().as_primitive_opt::<Float32Type>() else { return Vec::new() };
            if !y.values().iter().any(|v| v.is_infinite()) {
                return Vec::new();
            }
            let n = list.value_length() as usize;
            let mut rows = Vec::new();
            for r in (0..list.len()).filter(|&r| list.is_valid(r)) {
                let ys = &y.values()[list.value_offset_at(r)..][..n];
                let Some(xs) = list_row(source, r) else { continue };
                let Some(xs) = xs.as_primitive_opt::<Float64Type>() else { return Vec::new() };
                if let Some(k) = (0..n).find(|&k| xs.is_valid(k) && overflowed(xs.value(k), ys[k])) {
                    rows.push((r, format!("element {k}: {}", beyond(xs.value(k)))));
                }
            }
            rows
        }
        _ => Vec::new(),
    }
}

/// Row `r` of a list column of any list type; `None` if `array` is not a list.
fn list_row(array: &dyn Array, r: usize) -> Option<ArrayRef> {
    Some(match array.data_type() {
        DataType::List(_) => array.as_list::<i32>().value(r),
        DataType::LargeList(_) => array.as_list::<i64>().value(r),
        DataType::ListView(_) => array.as_list_view::<i32>().value(r),
        DataType::LargeListView(_) => array.as_list_view::<i64>().value(r),
        DataType::FixedSizeList(_, _) => array.as_fixed_size_list().value(r),
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow_array::{BooleanArray, Float64Array, Int8Array, ListArray, RecordBatch, StringArray, UInt64Array};
    use weir_engine::spec::PayloadFormat;
    use weir_operators::Value;

    const NUMBERS: [DataType; 11] = [
        DataType::Float16,
        DataType::Float32,
        DataType::Float64,
        DataType::Int8,
        DataType::Int16,
        DataType::Int32,
        DataType::Int64,
        DataType::UInt8,
        DataType::UInt16,
        DataType::UInt32,
        DataType::UInt64,
    ];

    fn list_of(t: DataType) -> Arc<Field> {
        Arc::new(Field::new_list_field(t, true))
    }

    /// Column `x` of type `ty` decoded from `column` as rows 10, 11, ...: each row's
    /// value or error message; `Err` when the column as a whole is refused.
    fn decode(ty: &FieldType, column: ArrayRef) -> Result<Vec<Result<Value, String>>, String> {
        let batch = RecordBatch::try_from_iter([("x", column)]).unwrap();
        let rows =
            crate::arrow::decode_batch(&[weir_engine::GraphField::new("x", ty)], &batch, 10).map_err(|e| e.message)?;
        Ok(rows
            .into_iter()
            .map(|r| r.map(|mut v| v.remove(0)).map_err(|e| format!("{:?}: {}", e.field, e.message)))
            .collect())
    }

    fn cast_to(array: &dyn Array, t: &DataType) -> ArrayRef {
        arrow_cast::cast(array, t).unwrap()
    }

    #[test]
    fn every_float_and_integer_type_feeds_an_f32_field() {
        let f32 = FieldType::scalar(DType::F32);
        let small = Int8Array::from(vec![0, 1, 100]);
        for t in NUMBERS {
            let got = decode(&f32, cast_to(&small, &t)).unwrap();
            assert_eq!(got, [0.0, 1.0, 100.0].map(|x| Ok(Value::F32(x))), "{t}");
        }
    }

    #[test]
    fn numbers_round_to_the_nearest_f32_and_one_beyond_its_range_fails_its_row() {
        let f32 = FieldType::scalar(DType::F32);
        let x: ArrayRef = Arc::new(Float64Array::from(vec![0.1, 1e39, f64::INFINITY, -1e300, 3.4028235e38]));
        let got = decode(&f32, x).unwrap();
        assert_eq!(got[0], Ok(Value::F32(0.1_f64 as f32)));
        assert_eq!(got[1], Err(r#"Some("x"): row 11: value 1e39 is outside f32's range (±3.4028235e38)"#.into()));
        assert_eq!(got[2], Ok(Value::F32(f32::INFINITY)), "an infinity stays one");
        assert_eq!(got[3], Err(r#"Some("x"): row 13: value -1e300 is outside f32's range (±3.4028235e38)"#.into()));
        assert_eq!(got[4], Ok(Value::F32(f32::MAX)));
        let big: ArrayRef = Arc::new(arrow_array::Int64Array::from(vec![(1 << 24) + 1, i64::MAX]));
        let got = decode(&f32, big).unwrap();
        assert_eq!(got, [Ok(Value::F32(16777216.0)), Ok(Value::F32(i64::MAX as f32))], "ties to even, as `as f32`");
    }

    #[test]
    fn every_integer_type_feeds_an_i64_field_and_a_uint64_that_does_not_fit_fails_its_row() {
        let i64 = FieldType::scalar(DType::I64);
        let small = Int8Array::from(vec![0, 1, 100]);
        for t in NUMBERS.iter().filter(|t| t.is_integer()) {
            let got = decode(&i64, cast_to(&small, t)).unwrap();
            assert_eq!(got, [0, 1, 100].map(|x| Ok(Value::I64(x))), "{t}");
        }
        let big: ArrayRef = Arc::new(UInt64Array::from(vec![Some(7), None, Some(u64::MAX)]));
        let got = decode(&i64, big).unwrap();
        assert_eq!(got[0], Ok(Value::I64(7)));
        assert_eq!(got[1], Err(r#"Some("x"): row 11: null value"#.into()), "nulls as before");
        assert_eq!(got[2], Err(r#"Some("x"): row 12: value 18446744073709551615 does not fit i64"#.into()));
    }

    #[test]
    fn a_float_into_i64_text_into_f32_and_numbers_into_str_or_bool_are_refused_naming_the_column() {
        let floats: ArrayRef = Arc::new(Float64Array::from(vec![1.0]));
        let e = decode(&FieldType::scalar(DType::I64), floats.clone()).unwrap_err();
        assert_eq!(e, "column 'x' (i64) must be an integer (Int8 to Int64 or UInt8 to UInt64), got Float64");
        let text: ArrayRef = Arc::new(StringArray::from(vec!["1"]));
        let e = decode(&FieldType::scalar(DType::F32), text).unwrap_err();
        assert!(e.starts_with("column 'x' (f32) must be a number (Float16, ") && e.ends_with("got Utf8"), "{e}");
        let e = decode(&FieldType::scalar(DType::Str), floats.clone()).unwrap_err();
        assert!(e.ends_with("got Float64"), "{e}");
        let e =
            decode(&FieldType::scalar(DType::Bool), cast_to(&Int8Array::from(vec![1]), &DataType::Int8)).unwrap_err();
        assert_eq!(e, "column 'x' (bool) must be Boolean, got Int8");
        let bools: ArrayRef = Arc::new(BooleanArray::from(vec![true, false]));
        let got = decode(&FieldType::scalar(DType::Bool), bools).unwrap();
        assert_eq!(got, [Ok(Value::Bool(true)), Ok(Value::Bool(false))]);
    }

    #[test]
    fn utf8_large_utf8_utf8_view_and_dictionaries_of_them_feed_a_str_field() {
        let str = FieldType::scalar(DType::Str);
        let utf8 = StringArray::from(vec![Some("acc-1"), None, Some("acc-1")]);
        let dictionary = |values: DataType| DataType::Dictionary(Box::new(DataType::Int32), Box::new(values));
        for t in [
            DataType::Utf8,
            DataType::LargeUtf8,
            DataType::Utf8View,
            dictionary(DataType::Utf8),
            dictionary(DataType::LargeUtf8),
            dictionary(DataType::Utf8View),
        ] {
            let got = decode(&str, cast_to(&utf8, &t)).unwrap();
            assert_eq!(got[0], Ok(Value::Str("acc-1".into())), "{t}");
            assert_eq!(got[1], Err(r#"Some("x"): row 11: null value"#.into()), "{t}");
            assert_eq!(got[2], Ok(Value::Str("acc-1".into())), "{t}");
        }
    }

    /// Rows [1, 2, 3], [4, 5, 6] (or `second` instead) as a List of Float64.
    fn lists(second: Option<Vec<Option<f64>>>) -> ListArray {
        ListArray::from_iter_primitive::<Float64Type, _, _>(vec![
            Some(vec![Some(1.0), Some(2.0), Some(3.0)]),
            second.or(Some(vec![Some(4.0), Some(5.0), Some(6.0)])),
        ])
    }

    #[test]
    fn lists_of_any_numbers_feed_a_tensor_field() {
        let v3 = FieldType::vector(3);
        let want = [Ok(Value::Tensor(vec![1.0, 2.0, 3.0].into())), Ok(Value::Tensor(vec![4.0, 5.0, 6.0].into()))];
        for item in NUMBERS {
            for t in [
                DataType::List(list_of(item.clone())),
                DataType::LargeList(list_of(item.clone())),
                DataType::ListView(list_of(item.clone())),
                DataType::LargeListView(list_of(item.clone())),
                DataType::FixedSizeList(list_of(item.clone()), 3),
            ] {
                let got = decode(&v3, cast_to(&lists(None), &t)).unwrap();
                assert_eq!(got, want, "{t}");
            }
        }
    }

    #[test]
    fn a_list_of_the_wrong_length_a_null_or_a_number_beyond_f32_fails_only_its_row() {
        let v3 = FieldType::vector(3);
        let fails = |second: Vec<Option<f64>>, t: DataType| {
            let got = decode(&v3, cast_to(&lists(Some(second)), &t)).unwrap();
            assert_eq!(got[0], Ok(Value::Tensor(vec![1.0, 2.0, 3.0].into())));
            got[1].clone().unwrap_err()
        };
        for t in [DataType::List(list_of(DataType::Float64)), DataType::LargeList(list_of(DataType::Float32))] {
            assert_eq!(
                fails(vec![Some(1.0); 2], t.clone()),
                r#"Some("x"): row 11: expected 3 numbers (f32[3]), got 2"#
            );
            assert_eq!(
                fails(vec![Some(1.0); 4], t.clone()),
                r#"Some("x"): row 11: expected 3 numbers (f32[3]), got 4"#
            );
            assert_eq!(fails(vec![Some(1.0), None, Some(1.0)], t), r#"Some("x"): row 11: null element"#);
        }
        let t = DataType::List(list_of(DataType::Float64));
        assert_eq!(
            fails(vec![Some(1.0), Some(-1e39), Some(1.0)], t),
            r#"Some("x"): row 11: element 1: value -1e39 is outside f32's range (±3.4028235e38)"#
        );
        let with_null = ListArray::from_iter_primitive::<Float64Type, _, _>(vec![None, Some(vec![Some(1.0); 3])]);
        let got = decode(&v3, Arc::new(with_null)).unwrap();
        assert_eq!(got[0], Err(r#"Some("x"): row 10: null value"#.into()));
    }

    #[test]
    fn a_fixed_size_list_of_another_size_or_a_list_of_text_is_refused() {
        let v3 = FieldType::vector(3);
        let e =
            decode(&v3, cast_to(&lists(None), &DataType::FixedSizeList(list_of(DataType::Float32), 2))).unwrap_err();
        assert!(
            e.starts_with("column 'x' (f32[3]) must be a List, LargeList, ListView or FixedSizeList(3) of numbers"),
            "{e}"
        );
        let text = cast_to(&lists(None), &DataType::List(list_of(DataType::Utf8)));
        assert!(decode(&v3, text).unwrap_err().ends_with("got List(Utf8)"));
    }

    #[test]
    fn every_accepted_type_is_one_arrow_casts() {
        let fields = [FieldType::scalar(DType::F32), FieldType::vector(3), FieldType::scalar(DType::I64)];
        for ty in &fields {
            for item in NUMBERS {
                for t in
                    [item.clone(), DataType::List(list_of(item.clone())), DataType::FixedSizeList(list_of(item), 3)]
                {
                    if accepts(ty, &t) {
                        let to = decoded_type(ty, &t).unwrap_or(t.clone());
                        assert!(arrow_cast::can_cast_types(&t, &to), "{t} to {to}");
                    }
                }
            }
        }
    }

    /// The Kafka source's decoding of an Arrow payload goes through the same casts.
    #[test]
    fn a_kafka_arrow_payload_takes_a_list_of_float64() {
        let inputs = vec![weir_engine::GraphField::new("x", &FieldType::vector(3))];
        let batch = |column: ArrayRef| RecordBatch::try_from_iter([("x", column)]).unwrap();
        let payload = crate::arrow::write_stream(&batch(Arc::new(lists(Some(vec![Some(1.0); 2]))))).unwrap();
        let rows = crate::kafka::decode_payload(&inputs, PayloadFormat::Arrow, &payload).unwrap();
        assert_eq!(rows[0].as_ref().unwrap(), &vec![Value::Tensor(vec![1.0, 2.0, 3.0].into())]);
        let e = rows[1].as_ref().unwrap_err();
        assert_eq!((e.field.as_deref(), e.message.as_str()), (Some("x"), "row 1: expected 3 numbers (f32[3]), got 2"));
        let text = cast_to(&lists(None), &DataType::List(list_of(DataType::Utf8)));
        let e = crate::kafka::decode_payload(
            &inputs,
            PayloadFormat::Arrow,
            &crate::arrow::write_stream(&batch(text)).unwrap(),
        )
        .unwrap_err();
        assert!(e.message.contains("column 'x' (f32[3]) must be"), "the whole payload is refused: {}", e.message);
    }
}
