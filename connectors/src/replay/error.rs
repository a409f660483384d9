//! Why a replay could not start or stopped: each names the file, and the column or row.

use std::path::PathBuf;

/// A replay's failure. Rows that fail are not failures of the replay: they go to the
/// errors file.
#[derive(Debug, thiserror::Error)]
pub enum ReplayError {
    /// A directory given as input holds no file of a known format.
    #[error("{path}: no .arrow, .arrows, .ipc, .feather or .parquet files in this directory")]
    NoInputs {
        /// The directory.
        path: PathBuf,
    },
    /// The format of a file is not given and its extension does not say.
    #[error("{path}: cannot tell the format from the extension; give --input-format or --output-format (arrow, arrows, parquet)")]
    UnknownFormat {
        /// The file.
        path: PathBuf,
    },
    /// A file cannot be opened, created or read.
    #[error("{path}: {reason}")]
    Io {
        /// The file.
        path: PathBuf,
        /// What went wrong.
        reason: String,
    },
    /// An input file is not valid Arrow IPC or Parquet, or is damaged at `rows`.
    #[error("{path}: not a readable {format} file{}: {reason}", at_row(*.row))]
    Unreadable {
        /// The file.
        path: PathBuf,
        /// The format it was read as.
        format: &'static str,
        /// The first row that could not be read, when reading stopped mid-file.
        row: Option<u64>,
        /// What the reader said.
        reason: String,
    },
    /// An input file's columns do not fit the graph's input fields (checked before any
    /// row runs).
    #[error("{path}: the columns do not fit graph '{graph}': {reason}")]
    Schema {
        /// The file.
        path: PathBuf,
        /// The graph.
        graph: String,
        /// Every missing or mistyped column, what was expected and what was found.
        reason: String,
    },
    /// A `--keep` column is absent, clashes with an output, or changes type between files.
    #[error("{path}: --keep {column}: {reason}")]
    Keep {
        /// The file.
        path: PathBuf,
        /// The column.
        column: String,
        /// What is wrong.
        reason: String,
    },
    /// A feedback file does not fit the graph's learning node, is not sorted by its
    /// event time, or its rows could not be sent.
    #[error("{path}: feedback: {reason}")]
    Feedback {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },
    /// A table's snapshot file does not fit the table, has a row that cannot be read
    /// (a null or mistyped key or value), or its rows could not be sent.
    #[error("{path}: snapshot of table '{table}': {reason}")]
    Snapshot {
        /// The file.
        path: PathBuf,
        /// The table.
        table: String,
        /// What is wrong (the row and column where it is a row's).
        reason: String,
    },
    /// The output or errors file is one of the inputs, or they are one file: writing it
    /// would destroy rows before they are read (refused before anything is written).
    #[error("{path}: the {role} file is {what} (give another --output or --errors)")]
    Overwrites {
        /// The file.
        path: PathBuf,
        /// `output` or `errors`.
        role: &'static str,
        /// What else it is, and what writing it would do.
        what: &'static str,
    },
    /// The output or errors file cannot be written.
    #[error("{path}: cannot write: {reason}")]
    Write {
        /// The file.
        path: PathBuf,
        /// What the writer said.
        reason: String,
    },
}

fn at_row(row: Option<u64>) -> String {
    row.map(|r| format!(" (at row {r})")).unwrap_or_default()
}
