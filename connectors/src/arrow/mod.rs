//! Arrow ↔ columns and row values, by the graph's schema: record batches in (Kafka
//! payloads, replay files, table snapshots), record batches out.
//!
//! Decoding: input fields are matched to columns by name; other columns are ignored.
//! Each field takes every Arrow type that converts to it without losing more than an
//! `f32`'s rounding ([`cast`] has the table): `f32` any float or integer column, `f32[N]`
//! a List, LargeList, ListView or FixedSizeList(N) of them, `i64` any integer column,
//! `bool` a Boolean column, `str` a Utf8, LargeUtf8 or Utf8View column or a dictionary
//! of one. A missing column or one of another type fails the whole batch (the payload
//! does not fit the graph); a null value, a list of the wrong length or a number that
//! does not fit fails only its row (`invalid_input`, naming the field and the row).
//!
//! Encoding: the output fields as columns (`f32` Float32, `i64` Int64, `bool` Boolean,
//! `str` Utf8, tensors FixedSizeList of Float32), null where a row failed, and an
//! `error` Utf8 column holding the failed row's error as JSON (null for answered rows).

pub mod cast;

use std::io::Cursor;
use std::sync::Arc;

use arrow_array::cast::AsArray;
use arrow_array::types::{Float32Type, Int64Type};
use arrow_array::{
    Array, ArrayRef, BooleanArray, FixedSizeListArray, Float32Array, Int64Array, RecordBatch, StringArray,
};
use arrow_buffer::NullBuffer;
use arrow_schema::{ArrowError, DataType, Field, Schema};
use weir_engine::GraphField;
use weir_operators::{Chunk, Column, DType, FieldType, RowError, Value};

/// A decoded row, or why that row could not be decoded.
pub type Decoded = Result<Vec<Value>, RowError>;

fn invalid(field: Option<&str>, message: String) -> RowError {
    let e = RowError::invalid_input("input", message);
    match field {
        Some(f) => e.with_field(f),
        None => e,
    }
}

/// Reads every record batch of an Arrow IPC stream.
pub fn read_stream(bytes: &[u8]) -> Result<Vec<RecordBatch>, RowError> {
    let reader = arrow_ipc::reader::StreamReader::try_new(Cursor::new(bytes), None)
        .map_err(|e| invalid(None, format!("the payload is not an Arrow IPC stream: {e}")))?;
    reader.collect::<Result<Vec<_>, _>>().map_err(|e| invalid(None, format!("the Arrow IPC stream is damaged: {e}")))
}

/// Writes record batches as an Arrow IPC stream.
pub fn write_stream(batch: &RecordBatch) -> Result<Vec<u8>, String> {
    let mut writer = arrow_ipc::writer::StreamWriter::try_new(Vec::new(), &batch.schema())
        .map_err(|e| format!("cannot write an Arrow stream: {e}"))?;
    writer.write(batch).map_err(|e| format!("cannot write an Arrow batch: {e}"))?;
    writer.into_inner().map_err(|e| format!("cannot finish an Arrow stream: {e}"))
}

/// Checks that `schema` has a column of a fitting type for every input field; the
/// error lists every missing or mistyped column, what was expected and what was found.
pub fn check_columns(inputs: &[GraphField], schema: &Schema) -> Result<(), String> {
    let mut problems = Vec::new();
    for GraphField { name, ty } in inputs {
        match schema.column_with_name(name) {
            None => problems.push(format!("missing column '{name}'")),
            Some((_, field)) => {
                if let Err(e) = check_type(name, ty, field.data_type()) {
                    problems.push(e.message);
                }
            }
        }
    }
    if problems.is_empty() {
        return Ok(());
    }
    let expected: Vec<String> =
        inputs.iter().map(|f| format!("{}: {} ({})", f.name, f.ty, cast::accepted(&f.ty))).collect();
    let found: Vec<String> = schema.fields().iter().map(|f| format!("{}: {}", f.name(), f.data_type())).collect();
    Err(format!(
        "{}; the graph expects {}; the input has {}",
        problems.join("; "),
        expected.join(", "),
        if found.is_empty() { "no columns".to_string() } else { found.join(", ") }
    ))
}

/// The input columns of a record batch, decoded: one [`Column`] per input field, and the
/// rows that could not be decoded (their slots hold fillers), in row order.
pub struct DecodedColumns {
    /// One column per input field, in the graph's input order.
    pub columns: Vec<Column>,
    /// Rows that could not be decoded, with why.
    pub failed: Vec<(usize, RowError)>,
}

/// Decodes the input columns of `batch` as columns. A row's error names it as row
/// `first_row + i` (its place in the whole input).
pub fn decode_columns(inputs: &[GraphField], batch: &RecordBatch, first_row: u64) -> Result<DecodedColumns, RowError> {
    let mut columns = Vec::with_capacity(inputs.len());
    let mut failed: Vec<(usize, RowError)> = Vec::new();
    for GraphField { name, ty } in inputs {
        let array = batch.column_by_name(name).ok_or_else(|| {
            let found: Vec<String> =
                batch.schema().fields().iter().map(|f| format!("{}: {}", f.name(), f.data_type())).collect();
            invalid(Some(name), format!("missing column '{name}' ({ty}); the batch has {}", found.join(", ")))
        })?;
        check_type(name, ty, array.data_type())?;
        let (column, bad) = column_of(ty, array).map_err(|e| {
            invalid(Some(name), format!("column '{name}' ({ty}): cannot convert {}: {e}", array.data_type()))
        })?;
        for (row, message) in bad {
            // One error per row: the first field that fails.
            if !failed.iter().any(|(r, _)| *r == row) {
                failed.push((row, invalid(Some(name), format!("row {}: {message}", first_row + row as u64))));
            }
        }
        columns.push(column);
    }
    failed.sort_by_key(|(r, _)| *r);
    Ok(DecodedColumns { columns, failed })
}

/// Decodes the rows of `batch` (see [`decode_columns`]).
pub fn decode_batch(inputs: &[GraphField], batch: &RecordBatch, first_row: u64) -> Result<Vec<Decoded>, RowError> {
    let DecodedColumns { columns, failed } = decode_columns(inputs, batch, first_row)?;
    let mut failed = failed.into_iter().peekable();
    Ok((0..batch.num_rows())
        .map(|row| match failed.next_if(|(r, _)| *r == row) {
            Some((_, e)) => Err(e),
            None => Ok(columns.iter().map(|c| c.value(row)).collect()),
        })
        .collect())
}

/// One Arrow array (of a type [`check_type`] accepts for `ty`) as a column, and the rows
/// whose value is missing or does not convert. A column already of the decoded type (a
/// Float32 column for `f32`, say) is read as it is; others are cast first ([`cast`]).
fn column_of(ty: &FieldType, array: &ArrayRef) -> Result<(Column, Vec<(usize, String)>), ArrowError> {
    let rows = array.len();
    let nulls = array.logical_nulls();
    let mut bad: Vec<(usize, String)> = match &nulls {
        Some(n) if n.null_count() > 0 => {
            (0..rows).filter(|&r| n.is_null(r)).map(|r| (r, "null value".into())).collect()
        }
        _ => Vec::new(),
    };
    let cast::Cast { array, failed } = cast::cast(ty, array)?;
    bad.extend(failed);
    let column = match array.data_type() {
        DataType::Float32 => Column::F32(array.as_primitive::<Float32Type>().values().to_vec()),
        DataType::Int64 => Column::I64(array.as_primitive::<Int64Type>().values().to_vec()),
        DataType::Boolean => Column::Bool(array.as_boolean().iter().map(|b| b.unwrap_or(false)).collect()),
        DataType::Utf8 => Column::Str(array.as_string::<i32>().iter().map(|s| Arc::from(s.unwrap_or(""))).collect()),
        DataType::LargeUtf8 => {
            Column::Str(array.as_string::<i64>().iter().map(|s| Arc::from(s.unwrap_or(""))).collect())
        }
        DataType::Utf8View => Column::Str(array.as_string_view().iter().map(|s| Arc::from(s.unwrap_or(""))).collect()),
        DataType::FixedSizeList(item, n)
            if item.data_type() == &DataType::Float32 && Some(*n as usize) == ty.width() =>
        {
            let list = array.as_fixed_size_list();
            let n = *n as usize;
            let values = list.values().as_primitive::<Float32Type>();
            let start = if rows == 0 { 0 } else { list.value_offset_at(0) };
            let data = values.values()[start..start + rows * n].to_vec();
            if values.null_count() > 0 {
                for r in 0..rows {
                    let first = list.value_offset_at(r);
                    if !list.is_null(r) && (first..first + n).any(|i| values.is_null(i)) {
                        bad.push((r, "null element".into()));
                    }
                }
            }
            Column::Tensor { width: n, data }
        }
        other => {
            return Err(ArrowError::CastError(format!("{other} is not a decoded type of {ty}")));
        }
    };
    bad.sort_by_key(|(r, _)| *r);
    Ok((column, bad))
}

fn check_type(name: &str, ty: &FieldType, found: &DataType) -> Result<(), RowError> {
    if cast::accepts(ty, found) {
        Ok(())
    } else {
        Err(invalid(Some(name), format!("column '{name}' ({ty}) must be {}, got {found}", cast::accepted(ty))))
    }
}

/// The Arrow type of an output field.
pub fn arrow_type(ty: &FieldType) -> DataType {
    match (ty.dtype, ty.is_scalar()) {
        (DType::F32, true) => DataType::Float32,
        (DType::F32, false) => DataType::FixedSizeList(
            Arc::new(Field::new("item", DataType::Float32, false)),
            ty.shape.iter().product::<usize>() as i32,
        ),
        (DType::I64, _) => DataType::Int64,
        (DType::Bool, _) => DataType::Boolean,
        (DType::Str, _) => DataType::Utf8,
    }
}

/// Encodes answers (output values in `outputs` order, or the row's error) as a batch.
pub fn encode_answers(
    outputs: &[GraphField],
    answers: &[Result<Vec<Value>, Arc<RowError>>],
) -> Result<RecordBatch, String> {
    let (mut fields, mut columns) = output_columns(outputs, answers)?;
    fields.push(Field::new("error", DataType::Utf8, true));
    columns.push(Arc::new(StringArray::from_iter(
        answers.iter().map(|a| a.as_ref().err().map(|e| crate::json::encode_error(e).to_string())),
    )));
    RecordBatch::try_new(Arc::new(Schema::new(fields)), columns)
        .map_err(|e| format!("cannot build the answer batch: {e}"))
}

/// The output fields of answers as columns (see [`arrow_type`]), null where a row failed.
pub fn output_columns(
    outputs: &[GraphField],
    answers: &[Result<Vec<Value>, Arc<RowError>>],
) -> Result<(Vec<Field>, Vec<ArrayRef>), String> {
    let columns = outputs
        .iter()
        .enumerate()
        .map(|(k, GraphField { ty, .. })| {
            let mut c = Column::with_capacity(ty, answers.len());
            for a in answers {
                match a.as_ref().ok().and_then(|v| v.get(k)) {
                    Some(v) => {
                        c.push(v);
                    }
                    None => c.push_fillers(1),
                }
            }
            Arc::new(c)
        })
        .collect();
    let errors = answers.iter().map(|a| a.as_ref().err().cloned()).collect();
    let chunk = Chunk { slot: 0, ids: vec![0; answers.len()], columns, errors, deadline: None, time: None };
    chunk_columns(outputs, chunk)
}

/// The output columns of an answered chunk as Arrow columns (see [`arrow_type`]), null
/// where a row failed. Numeric columns move into Arrow buffers without a copy when the
/// chunk holds the only reference to them.
pub fn chunk_columns(outputs: &[GraphField], chunk: Chunk) -> Result<(Vec<Field>, Vec<ArrayRef>), String> {
    let nulls =
        chunk.has_errors().then(|| NullBuffer::from((0..chunk.len()).map(|r| chunk.is_ok(r)).collect::<Vec<_>>()));
    let mut fields = Vec::new();
    let mut arrays: Vec<ArrayRef> = Vec::new();
    for (GraphField { name, ty }, column) in outputs.iter().zip(chunk.columns) {
        let column = Arc::try_unwrap(column).unwrap_or_else(|shared| (*shared).clone());
        if !column.fits(ty) {
            return Err(format!("output '{name}' is {}, the graph declares {ty}", column.type_name()));
        }
        let nulls = nulls.clone();
        let array: ArrayRef = match column {
            Column::F32(v) => Arc::new(Float32Array::new(v.into(), nulls)),
            Column::Tensor { width, data } => {
                let item = Arc::new(Field::new("item", DataType::Float32, false));
                let values = Arc::new(Float32Array::new(data.into(), None));
                Arc::new(
                    FixedSizeListArray::try_new(item, width as i32, values, nulls)
                        .map_err(|e| format!("output '{name}': {e}"))?,
                )
            }
            Column::I64(v) => Arc::new(Int64Array::new(v.into(), nulls)),
            Column::Bool(v) => Arc::new(BooleanArray::new(v.into(), nulls)),
            Column::Str(v) => Arc::new(StringArray::from_iter(
                v.iter().enumerate().map(|(r, s)| nulls.as_ref().is_none_or(|n| n.is_valid(r)).then(|| &**s)),
            )),
        };
        fields.push(Field::new(name, arrow_type(ty), true));
        arrays.push(array);
    }
    Ok((fields, arrays))
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow_array::builder::{FixedSizeListBuilder, Float32Builder};
    use arrow_array::Float64Array;

    fn inputs() -> Vec<GraphField> {
        vec![GraphField::new("a", &FieldType::scalar(DType::F32)), GraphField::new("v", &FieldType::vector(2))]
    }

    fn batch() -> RecordBatch {
        let mut v = FixedSizeListBuilder::new(Float32Builder::new(), 2);
        for row in [[1.0, 2.0], [3.0, 4.0], [5.0, 6.0]] {
            v.values().append_slice(&row);
            v.append(true);
        }
        let a: ArrayRef = Arc::new(Float64Array::from(vec![Some(0.5), None, Some(2.0)]));
        let extra: ArrayRef = Arc::new(StringArray::from(vec!["x", "y", "z"]));
        RecordBatch::try_from_iter([("extra", extra), ("v", Arc::new(v.finish()) as ArrayRef), ("a", a)]).unwrap()
    }

    #[test]
    fn rows_decode_by_column_name_and_a_null_fails_only_its_row() {
        let bytes = write_stream(&batch()).unwrap();
        let batches = read_stream(&bytes).unwrap();
        let rows = decode_batch(&inputs(), &batches[0], 0).unwrap();
        assert_eq!(rows[0].as_ref().unwrap(), &vec![Value::F32(0.5), Value::Tensor(vec![1.0, 2.0].into())]);
        let e = rows[1].as_ref().unwrap_err();
        assert_eq!((e.field.as_deref(), e.message.as_str()), (Some("a"), "row 1: null value"));
        assert_eq!(rows[2].as_ref().unwrap()[0], Value::F32(2.0));
    }

    #[test]
    fn a_missing_or_mistyped_column_fails_the_batch() {
        let wrong = vec![GraphField::new("a", &FieldType::scalar(DType::Str))];
        let e = decode_batch(&wrong, &batch(), 0).unwrap_err();
        assert!(
            e.message.contains("must be text (Utf8, LargeUtf8, Utf8View or a Dictionary of them), got Float64"),
            "{}",
            e.message
        );
        let missing = vec![GraphField::new("b", &FieldType::scalar(DType::F32))];
        let e = decode_batch(&missing, &batch(), 0).unwrap_err();
        assert!(e.message.contains("missing column 'b'") && e.message.contains("a: Float64"), "{}", e.message);
        assert!(read_stream(b"not arrow").is_err());
    }

    #[test]
    fn answers_encode_with_an_error_column() {
        let outputs =
            vec![GraphField::new("y", &FieldType::scalar(DType::F32)), GraphField::new("p", &FieldType::vector(2))];
        let answers = vec![
            Ok(vec![Value::F32(1.5), Value::Tensor(vec![0.25, 0.75].into())]),
            Err(Arc::new(RowError::model_failed("m", "boom"))),
        ];
        let b = encode_answers(&outputs, &answers).unwrap();
        let back = read_stream(&write_stream(&b).unwrap()).unwrap().remove(0);
        assert_eq!(back.num_rows(), 2);
        let y = back.column_by_name("y").unwrap().as_primitive::<Float32Type>();
        assert_eq!((y.value(0), y.is_null(1)), (1.5, true));
        let p = back.column_by_name("p").unwrap().as_fixed_size_list();
        assert_eq!(p.value(0).as_primitive::<Float32Type>().values().to_vec(), vec![0.25, 0.75]);
        let err = back.column_by_name("error").unwrap().as_string::<i32>();
        assert!(err.is_null(0));
        assert!(err.value(1).contains("\"node\":\"m\""), "{}", err.value(1));
    }
}
