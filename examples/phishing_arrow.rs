//! Writes River's phishing stream (`graphs/data/phishing.csv.gz`) as an Arrow IPC file
//! for `weir replay --prequential`: columns `id` (Int64, the row number), `features`
//! (FixedSizeList of 9 Float32) and `is_phishing` (Int64, the label), in stream order.
//!
//! Run: `cargo run --release --example phishing_arrow -- phishing.arrow [TIMES]` (TIMES:
//! the stream that many times over, one after the other, ids running on; default 1)
#![allow(clippy::unwrap_used)] // a test or benchmark fails loudly on the first surprise

use std::fs::File;
use std::sync::Arc;

use arrow_array::builder::{FixedSizeListBuilder, Float32Builder};
use arrow_array::{ArrayRef, Int64Array, RecordBatch};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let path = std::env::args().nth(1).unwrap_or_else(|| "phishing.arrow".into());
    let times: usize = match std::env::args().nth(2) {
        Some(n) => n.parse().map_err(|e| format!("TIMES '{n}': {e}"))?,
        None => 1,
    };
    let pages = weir::datasets::phishing()?;
    let rows = pages.len() * times;
    let mut features = FixedSizeListBuilder::new(Float32Builder::new(), 9);
    for p in pages.iter().cycle().take(rows) {
        features.values().append_slice(&p.features);
        features.append(true);
    }
    let ids: ArrayRef = Arc::new(Int64Array::from_iter_values(0..rows as i64));
    let labels = pages.iter().cycle().take(rows).map(|p| i64::from(p.phishing));
    let labels: ArrayRef = Arc::new(Int64Array::from_iter_values(labels));
    let batch = RecordBatch::try_from_iter([
        ("id", ids),
        ("features", Arc::new(features.finish()) as ArrayRef),
        ("is_phishing", labels),
    ])?;
    let mut writer = arrow_ipc::writer::FileWriter::try_new(File::create(&path)?, &batch.schema())?;
    writer.write(&batch)?;
    writer.finish()?;
    println!("wrote {rows} rows to {path}");
    Ok(())
}
