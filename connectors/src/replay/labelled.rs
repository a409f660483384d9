//! Labelled streams for prequential replays (`weir replay --prequential LABEL`): the
//! graph's input columns and an integer label column, read from Arrow IPC or Parquet
//! files in order.
//!
//! The whole stream is read before the run starts (a prequential run submits it block
//! by block from memory). Every row must decode and have a label: a prequential score
//! over a stream with holes would not be comparable, so a row that does not is an error
//! naming its file and row.

use arrow_array::{Array, Int64Array};
use arrow_schema::DataType;
use weir_engine::GraphHandle;
use weir_operators::Column;

use super::files::{self, InputFile};
use super::ReplayError;

/// The graph's input columns and the labels of every row of `inputs`.
pub fn read_labelled(
    graph: &GraphHandle,
    inputs: &[InputFile],
    label: &str,
) -> Result<(Vec<Column>, Vec<i64>), ReplayError> {
    let plan = graph.plan();
    let schema_error = |file: &InputFile, reason: String| ReplayError::Schema {
        path: file.path.clone(),
        graph: plan.name.clone(),
        reason,
    };
    let mut columns: Option<Vec<Column>> = None;
    let mut labels = Vec::new();
    let mut row = 0u64;
    for file in inputs {
        crate::arrow::check_columns(&graph.schema().inputs, &file.schema).map_err(|r| schema_error(file, r))?;
        match file.schema.column_with_name(label).map(|(_, f)| f.data_type().clone()) {
            Some(DataType::Int64) => {}
            Some(other) => {
                return Err(schema_error(
                    file,
                    format!("label column '{label}' is {other}, expected Int64 (the class)"),
                ))
            }
            None => return Err(schema_error(file, format!("no label column '{label}'"))),
        }
        for batch in files::open(file, 8192)? {
            let batch = batch.map_err(|e| files::damaged(file, row, e))?;
            let decoded = crate::arrow::decode_columns(&graph.schema().inputs, &batch, row)
                .map_err(|e| schema_error(file, e.message))?;
            if let Some((r, e)) = decoded.failed.first() {
                return Err(schema_error(file, format!("row {}: {}", row + *r as u64, e.message)));
            }
            let Some(array) = batch.column_by_name(label).and_then(|a| a.as_any().downcast_ref::<Int64Array>()) else {
                return Err(schema_error(file, format!("label column '{label}' is not Int64")));
            };
            if let Some(r) = (0..array.len()).find(|&r| array.is_null(r)) {
                return Err(schema_error(file, format!("row {}: the label is null", row + r as u64)));
            }
            labels.extend(array.values().iter().copied());
            match &mut columns {
                None => columns = Some(decoded.columns),
                Some(all) => all.iter_mut().zip(&decoded.columns).for_each(|(a, c)| a.extend_from(c)),
            }
            row += batch.num_rows() as u64;
        }
    }
    let columns = columns.unwrap_or_else(|| graph.schema().inputs.iter().map(|f| Column::filler(&f.ty, 0)).collect());
    Ok((columns, labels))
}
