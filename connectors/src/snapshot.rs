//! Table snapshots: the Arrow IPC or Parquet files a graph's tables start from.
//!
//! A table with `snapshot: PATH` (a file, or a directory of files in name order) is
//! filled from it before the graph takes any row: each file must have a column named
//! after the table's key and one per value field, of types that convert to the fields'
//! (those [`crate::arrow::cast`] lists: Float64 for `f32`, LargeUtf8 for `str`...;
//! checked before any row is read); each record batch becomes one upsert batch, so later
//! rows of a file overwrite earlier ones with the same key. A row with a null or
//! unreadable key or value, or one that does not convert (a Float64 beyond `f32`'s
//! range, say), stops the load with an error naming the file, the row and the column: a
//! snapshot is loaded whole or the command does not start.

use weir_engine::spec::TableSpec;
use weir_engine::{GraphField, GraphHandle};

use crate::arrow::{check_columns, decode_columns};
use crate::replay::files::{damaged, discover, open};
use crate::replay::ReplayError;

/// Record batches of Parquet snapshots are decoded this many rows at a time.
const BATCH_ROWS: usize = 8192;

/// Fills every table of `graph` that names a snapshot; returns the rows loaded per
/// table, in the plan's table order (tables without a snapshot are left out).
pub fn load_snapshots(graph: &GraphHandle) -> Result<Vec<(String, u64)>, ReplayError> {
    let plan = graph.plan();
    let mut loaded = Vec::new();
    for table in &plan.tables {
        if let Some(path) = &table.snapshot {
            loaded.push((table.name.clone(), load(graph, table, path)?));
        }
    }
    Ok(loaded)
}

fn load(graph: &GraphHandle, table: &TableSpec, path: &std::path::Path) -> Result<u64, ReplayError> {
    let fields: Vec<GraphField> = std::iter::once(GraphField::new(&table.key, &table.key_type))
        .chain(table.values.iter().map(|(name, ty)| GraphField::new(name, ty)))
        .collect();
    let mut rows = 0u64;
    for file in discover(&[path.to_path_buf()], None)? {
        let wrong =
            |reason: String| ReplayError::Snapshot { path: file.path.clone(), table: table.name.clone(), reason };
        check_columns(&fields, &file.schema).map_err(&wrong)?;
        let mut row = 0u64;
        for batch in open(&file, BATCH_ROWS)? {
            let batch = batch.map_err(|e| damaged(&file, row, e))?;
            let decoded = decode_columns(&fields, &batch, row).map_err(|e| wrong(e.to_string()))?;
            if let Some((_, e)) = decoded.failed.first() {
                return Err(wrong(e.to_string()));
            }
            let changes: Vec<_> = (0..batch.num_rows())
                .map(|r| {
                    let mut values = decoded.columns.iter().map(|c| c.value(r));
                    let key = values.next().expect("the key column is first");
                    (key, Some(values.collect()))
                })
                .collect();
            graph.upsert(&table.name, &changes).map_err(|e| wrong(format!("cannot send rows: {e}")))?;
            row += batch.num_rows() as u64;
        }
        rows += row;
    }
    Ok(rows)
}
