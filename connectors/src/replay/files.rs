//! Replay files: their formats, the inputs a command line names, and batch readers.
//!
//! Formats: an Arrow IPC file (`.arrow`, `.ipc`, `.feather`), an Arrow IPC stream
//! (`.arrows`), or Parquet (`.parquet`, `.pq`), by extension unless a flag says. An
//! `.arrow` file that turns out to be an IPC stream (no `ARROW1` magic) is read as one.
//! A directory stands for its files of a known format, in name order (not recursive).

use std::fs::File;
use std::io::{BufReader, Read, Seek};
use std::path::{Path, PathBuf};
use std::str::FromStr;

use arrow_array::RecordBatch;
use arrow_schema::{ArrowError, SchemaRef};
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;

use super::error::ReplayError;
use super::ipc_file::IpcFile;
use super::row_groups;

/// A file format replay reads and writes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FileFormat {
    /// The Arrow IPC file format (random access, with a footer).
    ArrowFile,
    /// The Arrow IPC streaming format.
    ArrowStream,
    /// Apache Parquet.
    Parquet,
}

impl FromStr for FileFormat {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "arrow" | "ipc" | "feather" => Ok(FileFormat::ArrowFile),
            "arrows" | "stream" => Ok(FileFormat::ArrowStream),
            "parquet" | "pq" => Ok(FileFormat::Parquet),
            other => Err(format!("unknown file format '{other}' (expected arrow, arrows or parquet)")),
        }
    }
}

impl FileFormat {
    /// The format a file's extension names, if any.
    pub fn of_path(path: &Path) -> Option<FileFormat> {
        path.extension()?.to_str()?.to_ascii_lowercase().parse().ok()
    }

    /// The format's name in messages.
    pub fn name(self) -> &'static str {
        match self {
            FileFormat::ArrowFile => "Arrow IPC",
            FileFormat::ArrowStream => "Arrow IPC stream",
            FileFormat::Parquet => "Parquet",
        }
    }
}

/// An input file, opened once to read its schema.
#[derive(Clone, Debug)]
pub struct InputFile {
    /// Where it is.
    pub path: PathBuf,
    /// How it is read.
    pub format: FileFormat,
    /// Its columns.
    pub schema: SchemaRef,
    /// Its row count, where the format records it up front (Parquet).
    pub rows: Option<u64>,
}

/// Batches of one input file, in order.
pub type Batches = Box<dyn Iterator<Item = Result<RecordBatch, ArrowError>> + Send>;

/// The input files `paths` name (directories expanded), each opened for its schema.
/// `format` overrides the extensions.
pub fn discover(paths: &[PathBuf], format: Option<FileFormat>) -> Result<Vec<InputFile>, ReplayError> {
    let mut files = Vec::new();
    for path in paths {
        if path.is_dir() {
            let entries = std::fs::read_dir(path).map_err(|e| io(path, "cannot list the directory", &e))?;
            let mut found: Vec<PathBuf> = entries
                .filter_map(|e| e.ok().map(|e| e.path()))
                .filter(|p| p.is_file() && (format.is_some() || FileFormat::of_path(p).is_some()))
                .collect();
            if found.is_empty() {
                return Err(ReplayError::NoInputs { path: path.clone() });
            }
            found.sort();
            for p in found {
                files.push(inspect(&p, format)?);
            }
        } else {
            files.push(inspect(path, format)?);
        }
    }
    Ok(files)
}

fn io(path: &Path, what: &str, e: &std::io::Error) -> ReplayError {
    ReplayError::Io { path: path.to_path_buf(), reason: format!("{what}: {e}") }
}

fn unreadable(path: &Path, format: FileFormat, row: Option<u64>, reason: impl ToString) -> ReplayError {
    ReplayError::Unreadable { path: path.to_path_buf(), format: format.name(), row, reason: reason.to_string() }
}

/// Opens `path` for its format, schema and row count.
fn inspect(path: &Path, format: Option<FileFormat>) -> Result<InputFile, ReplayError> {
    let format = format
        .or_else(|| FileFormat::of_path(path))
        .ok_or_else(|| ReplayError::UnknownFormat { path: path.to_path_buf() })?;
    let mut file = File::open(path).map_err(|e| io(path, "cannot open", &e))?;
    let format =
        if format == FileFormat::ArrowFile && !has_file_magic(&mut file) { FileFormat::ArrowStream } else { format };
    file.rewind().map_err(|e| io(path, "cannot read", &e))?;
    let (schema, rows) = match format {
        FileFormat::ArrowFile => {
            let reader = IpcFile::open(file).map_err(|e| unreadable(path, format, None, e))?;
            (reader.schema(), None)
        }
        FileFormat::ArrowStream => {
            let reader = arrow_ipc::reader::StreamReader::try_new(BufReader::new(file), None)
                .map_err(|e| unreadable(path, format, None, e))?;
            (reader.schema(), None)
        }
        FileFormat::Parquet => {
            let builder =
                ParquetRecordBatchReaderBuilder::try_new(file).map_err(|e| unreadable(path, format, None, e))?;
            let rows = u64::try_from(builder.metadata().file_metadata().num_rows()).ok();
            (builder.schema().clone(), rows)
        }
    };
    Ok(InputFile { path: path.to_path_buf(), format, schema, rows })
}

/// Whether the file starts with the Arrow IPC file magic (reads its first bytes).
fn has_file_magic(file: &mut File) -> bool {
    let mut magic = [0u8; 6];
    file.read_exact(&mut magic).is_ok() && &magic == b"ARROW1"
}

/// Reads `file` batch by batch; Parquet is decoded `batch_rows` rows at a time, row
/// group by row group (Arrow IPC batches come as they were written).
pub fn open(file: &InputFile, batch_rows: usize) -> Result<Batches, ReplayError> {
    let path = &file.path;
    let open = || File::open(path).map_err(|e| io(path, "cannot open", &e));
    Ok(match file.format {
        FileFormat::ArrowFile => Box::new(open_ipc(file)?),
        FileFormat::ArrowStream => Box::new(
            arrow_ipc::reader::StreamReader::try_new(BufReader::new(open()?), None)
                .map_err(|e| unreadable(path, file.format, None, e))?,
        ),
        // Row group by row group: a batch never spans two, so a damaged row group
        // ends the file after every row before it.
        FileFormat::Parquet => Box::new(row_groups::InOrder::new(
            row_groups::Units::open(path.clone(), file.format, batch_rows)
                .map_err(|e| unreadable(path, file.format, None, e))?,
        )),
    })
}

/// Opens an Arrow IPC file (of [`FileFormat::ArrowFile`]) to read batch by batch, on
/// this thread or, handing its footer over ([`IpcFile::into_parts`]), on threads of
/// their own.
pub fn open_ipc(file: &InputFile) -> Result<IpcFile, ReplayError> {
    let path = &file.path;
    let handle = File::open(path).map_err(|e| io(path, "cannot open", &e))?;
    IpcFile::open(handle).map_err(|e| unreadable(path, file.format, None, e))
}

/// The error for a batch that could not be read at `row` of `file`.
pub fn damaged(file: &InputFile, row: u64, e: ArrowError) -> ReplayError {
    unreadable(&file.path, file.format, Some(row), e)
}
