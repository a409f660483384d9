//! The phishing stream as two files, predictions and late labels, each sorted by an
//! event-time column: what `weir replay --feedback --order-by ts` merges.

use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use arrow_array::builder::{FixedSizeListBuilder, Float32Builder};
use arrow_array::{ArrayRef, Int64Array, RecordBatch};

/// Writes `dir/predictions.arrow` (the first `n` pages: `id`, `features`, `ts` = 2i) and
/// `dir/labels.arrow` (`id`, `label`, `ts` = 2(i + delay) + 1: row i's label arrives
/// `delay` rows after it); returns their paths.
pub fn phishing_two_streams(dir: &Path, n: usize, delay: usize) -> (PathBuf, PathBuf) {
    let pages = weir::datasets::phishing().expect("phishing stream");
    let pages = &pages[..n];
    let mut features = FixedSizeListBuilder::new(Float32Builder::new(), 9);
    for p in pages {
        features.values().append_slice(&p.features);
        features.append(true);
    }
    let n = n as i64;
    let predictions = RecordBatch::try_from_iter([
        ("id", Arc::new(Int64Array::from_iter_values(0..n)) as ArrayRef),
        ("features", Arc::new(features.finish()) as ArrayRef),
        ("ts", Arc::new(Int64Array::from_iter_values((0..n).map(|i| 2 * i))) as ArrayRef),
    ])
    .expect("batch");
    let labels = RecordBatch::try_from_iter([
        ("id", Arc::new(Int64Array::from_iter_values(0..n)) as ArrayRef),
        ("label", Arc::new(Int64Array::from_iter_values(pages.iter().map(|p| i64::from(p.phishing)))) as ArrayRef),
        ("ts", Arc::new(Int64Array::from_iter_values((0..n).map(|i| 2 * (i + delay as i64) + 1))) as ArrayRef),
    ])
    .expect("batch");
    let (p_path, l_path) = (dir.join("predictions.arrow"), dir.join("labels.arrow"));
    write(&p_path, &predictions);
    write(&l_path, &labels);
    (p_path, l_path)
}

/// The whole phishing stream as an Arrow IPC file at `path`: `id`, `features` (f32[9])
/// and the label `is_phishing`, in two record batches (what `--prequential` reads).
pub fn phishing_labelled(path: &Path) {
    let pages = weir::datasets::phishing().expect("phishing stream");
    let batch = |range: std::ops::Range<usize>| {
        let mut features = FixedSizeListBuilder::new(Float32Builder::new(), 9);
        for p in &pages[range.clone()] {
            features.values().append_slice(&p.features);
            features.append(true);
        }
        let ids: ArrayRef = Arc::new(Int64Array::from_iter_values(range.clone().map(|i| i as i64)));
        let labels: ArrayRef =
            Arc::new(Int64Array::from_iter_values(pages[range].iter().map(|p| i64::from(p.phishing))));
        RecordBatch::try_from_iter([
            ("id", ids),
            ("features", Arc::new(features.finish()) as ArrayRef),
            ("is_phishing", labels),
        ])
        .expect("batch")
    };
    let batches = [batch(0..700), batch(700..pages.len())];
    let mut w = arrow_ipc::writer::FileWriter::try_new(File::create(path).expect("file"), &batches[0].schema())
        .expect("writer");
    batches.iter().for_each(|b| w.write(b).expect("write"));
    w.finish().expect("footer");
}

/// Writes `batch` as an Arrow IPC file.
pub fn write(path: &Path, batch: &RecordBatch) {
    let mut w =
        arrow_ipc::writer::FileWriter::try_new(File::create(path).expect("file"), &batch.schema()).expect("writer");
    w.write(batch).expect("write");
    w.finish().expect("footer");
}

/// Every batch of the Arrow IPC file at `path`, as one.
pub fn read(path: &Path) -> RecordBatch {
    let file = File::open(path).expect("output");
    let batches: Vec<RecordBatch> =
        arrow_ipc::reader::FileReader::try_new(file, None).expect("reader").map(|b| b.expect("batch")).collect();
    arrow_select::concat::concat_batches(&batches[0].schema(), &batches).expect("concat")
}
