//! Writes the held-out digits (the test split, 360 rows) as `graphs/digits/test.parquet`
//! with columns `id` (Int64), `pixels` (FixedSizeList<Float32, 64>) and `target` (Int64, the true label):
//! the README's replay example. Run: `cargo run --release --example digits_parquet`.
#![allow(clippy::unwrap_used)] // a test or benchmark fails loudly on the first surprise

use std::sync::Arc;

use arrow_array::builder::{FixedSizeListBuilder, Float32Builder};
use arrow_array::{ArrayRef, Int64Array, RecordBatch};
use weir::datasets::{digits, graphs_dir, Split};

fn main() -> anyhow::Result<()> {
    let set = digits(Split::Test)?;
    let mut pixels = FixedSizeListBuilder::new(Float32Builder::new(), 64);
    for d in &set {
        pixels.values().append_slice(&d.pixels);
        pixels.append(true);
    }
    let batch = RecordBatch::try_from_iter([
        ("id", Arc::new(Int64Array::from_iter_values(0..set.len() as i64)) as ArrayRef),
        ("pixels", Arc::new(pixels.finish()) as ArrayRef),
        ("target", Arc::new(Int64Array::from_iter_values(set.iter().map(|d| i64::from(d.label)))) as ArrayRef),
    ])?;
    let path = graphs_dir().join("digits/test.parquet");
    let mut writer = parquet::arrow::ArrowWriter::try_new(std::fs::File::create(&path)?, batch.schema(), None)?;
    writer.write(&batch)?;
    writer.close()?;
    println!("wrote {} rows to {}", batch.num_rows(), path.display());
    Ok(())
}
