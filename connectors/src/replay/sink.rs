//! Replay outputs: an Arrow IPC file or stream, or a Parquet file, written batch by batch.

use std::fs::File;
use std::io::BufWriter;
use std::path::{Path, PathBuf};

use arrow_array::RecordBatch;
use arrow_schema::SchemaRef;
use parquet::arrow::ArrowWriter;

use super::error::ReplayError;
use super::files::FileFormat;
use super::replaced::{set_aside, Replaced};

/// The write buffer of Arrow IPC outputs: Arrow's writer issues a write per buffer and
/// per padding, and 8 KiB (`BufWriter`'s default) passed most of them to the kernel one by
/// one (BENCHMARKS.md, "Issue 22, item 1: 2026-12-05 morning": the files alone 1.36-1.44x).
const WRITE_BUFFER: usize = 1 << 20;

enum Writer {
    ArrowFile(arrow_ipc::writer::FileWriter<BufWriter<File>>),
    ArrowStream(arrow_ipc::writer::StreamWriter<BufWriter<File>>),
    Parquet(Box<ArrowWriter<File>>),
}

/// An output file being written.
pub struct Sink {
    path: PathBuf,
    writer: Writer,
    /// The file this one replaced, being deleted; joined after the writer is done.
    _replaced: Replaced,
}

impl Sink {
    /// Creates `path` (replacing it: a regular file there is moved aside and deleted in
    /// the background, see [`super::replaced`]) in `format` for batches of `schema`.
    pub fn create(path: &Path, format: FileFormat, schema: &SchemaRef) -> Result<Sink, ReplayError> {
        let failed = |e: &dyn std::fmt::Display| ReplayError::Write { path: path.to_path_buf(), reason: e.to_string() };
        let replaced = set_aside(path);
        let file = File::create(path).map_err(|e| failed(&e))?;
        let writer = match format {
            FileFormat::ArrowFile => Writer::ArrowFile(
                arrow_ipc::writer::FileWriter::try_new(BufWriter::with_capacity(WRITE_BUFFER, file), schema)
                    .map_err(|e| failed(&e))?,
            ),
            FileFormat::ArrowStream => Writer::ArrowStream(
                arrow_ipc::writer::StreamWriter::try_new(BufWriter::with_capacity(WRITE_BUFFER, file), schema)
                    .map_err(|e| failed(&e))?,
            ),
            FileFormat::Parquet => {
                Writer::Parquet(Box::new(ArrowWriter::try_new(file, schema.clone(), None).map_err(|e| failed(&e))?))
            }
        };
        Ok(Sink { path: path.to_path_buf(), writer, _replaced: replaced })
    }

    /// The file's path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Appends a batch.
    pub fn write(&mut self, batch: &RecordBatch) -> Result<(), ReplayError> {
        let result = match &mut self.writer {
            Writer::ArrowFile(w) => w.write(batch).map_err(|e| e.to_string()),
            Writer::ArrowStream(w) => w.write(batch).map_err(|e| e.to_string()),
            Writer::Parquet(w) => w.write(batch).map_err(|e| e.to_string()),
        };
        result.map_err(|reason| ReplayError::Write { path: self.path.clone(), reason })
    }

    /// Writes the footer and flushes.
    pub fn finish(self) -> Result<(), ReplayError> {
        let result = match self.writer {
            Writer::ArrowFile(mut w) => w.finish().map_err(|e| e.to_string()),
            Writer::ArrowStream(mut w) => w.finish().map_err(|e| e.to_string()),
            Writer::Parquet(w) => w.close().map(drop).map_err(|e| e.to_string()),
        };
        result.map_err(|reason| ReplayError::Write { path: self.path, reason })
    }
}
