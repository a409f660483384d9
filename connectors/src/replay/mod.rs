//! Replay: Arrow IPC and Parquet files through a graph, offline, with the same compiled
//! graph and operators as serving.
//!
//! 1. Every input file's schema is checked against the graph's input fields (and the
//!    `--keep` columns) before any row runs ([`crate::arrow::check_columns`]).
//! 2. Files are read batch by batch ([`files::open`]); each batch is cut into blocks of
//!    `chunk_rows`, decoded by the graph's schema into columns, and a block's decodable
//!    rows enter the graph as one submission by column
//!    ([`weir_engine::Submission::columns`]), answered by column: no value is built per row.
//!    A column not of its field's type is cast first ([`crate::arrow::cast`]: a List of
//!    Float64 for `f32[64]`, say); one whose type cannot convert without losing
//!    information was refused in step 1. A row that does not decode (a null, a list of
//!    the wrong length, a number that does not fit) fails at its place, naming the field
//!    and the row.
//! 3. Answers come back per block, in any order; blocks are written strictly in input
//!    order (the output by a thread of its own, [`writer`]): one output row per input
//!    row (the graph's outputs, null where the row failed, then the kept columns), and
//!    one errors-file row per failed row (its input row number, the kept columns, and
//!    the error's code, node, field and message).
//! 4. At most `in_flight` rows are between reading and writing (by default four blocks
//!    per worker, at least 8192: [`default_in_flight`]), so memory does not grow with
//!    the input: a block is read only when there is room for it.
//! 5. If a file turns out damaged midway (or a file cannot be written), the replay stops
//!    with that error, after answering and writing every row read before it; both files
//!    get their footers, so what was written stays readable.
//!
//! Prequential mode (`--prequential LABEL`, [`labelled`]): a labelled stream through a
//! graph with a learning node, each block predicted, then its labels fed back, in a
//! deterministic engine; reports the running accuracy.
//!
//! Blocks are large (1024 rows by default) and the replay keeps the graph full, so model
//! nodes see full batches of `max_batch_size` rows; the input's last partial batch leaves
//! by the node's batching policy (at once when a replica is free, by default).

pub mod error;
pub mod feedback;
pub mod files;
mod flow;
pub mod ipc_file;
pub mod labelled;
pub mod progress;
pub mod readers;
pub mod replaced;
pub mod row_groups;
pub mod sink;
pub mod writer;

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use arrow_array::RecordBatch;
use arrow_schema::{DataType, Field, Schema};
use weir_engine::{GraphField, GraphHandle};

pub use error::ReplayError;
pub use feedback::FeedbackStream;
pub use files::{discover, FileFormat, InputFile};

use flow::{Flow, Outputs};
use progress::Progress;
use sink::Sink;
use writer::SinkThread;

/// The columns of the errors file after the row number and the kept columns.
const ERROR_COLUMNS: [&str; 4] = ["code", "node", "field", "message"];

/// How to replay.
#[derive(Clone, Debug)]
pub struct ReplayOptions {
    /// The output file.
    pub output: PathBuf,
    /// Its format.
    pub output_format: FileFormat,
    /// The errors file (same format as the output).
    pub errors: PathBuf,
    /// Input columns copied to the output and errors files, after the graph's outputs.
    pub keep: Vec<String>,
    /// Rows per submission (1 to 65536).
    pub chunk_rows: usize,
    /// Rows between reading and writing, at most; `None`: [`default_in_flight`] for the
    /// graph's workers. The graph's own bound (`serving.max_in_flight`) bounds them too:
    /// `weir replay` raises it to this.
    pub in_flight: Option<usize>,
    /// Draw a progress line on stderr.
    pub progress: bool,
    /// Who reads and decodes the input files (without a feedback stream: with one,
    /// the replay's own thread).
    pub readers: Readers,
}

/// The rows of `batch` (of `file`, from input row `row`), their event times checked
/// against `last` (the previous row's) when a feedback stream is merged in.
fn checked_times<'a>(
    feedback: Option<&FeedbackStream>,
    batch: &'a RecordBatch,
    file: &InputFile,
    row: u64,
    last: &mut Option<i64>,
) -> Result<Option<&'a [i64]>, ReplayError> {
    let Some(fb) = feedback else { return Ok(None) };
    let times = feedback::event_times(batch, &fb.order_by, &file.path, row)?;
    for (r, &t) in times.iter().enumerate() {
        if last.is_some_and(|l| t < l) {
            return Err(ReplayError::Feedback {
                path: file.path.clone(),
                reason: format!("row {}: not sorted by '{}'", row + r as u64, fb.order_by),
            });
        }
        *last = Some(t);
    }
    Ok(Some(times))
}

impl ReplayOptions {
    /// Options writing `output` (format by extension, else Arrow IPC) and its errors
    /// beside it (`NAME.errors.EXT`), with default chunking, no kept columns and no
    /// progress line.
    pub fn new(output: impl Into<PathBuf>) -> ReplayOptions {
        let output = output.into();
        let output_format = FileFormat::of_path(&output).unwrap_or(FileFormat::ArrowFile);
        let errors = errors_path(&output);
        ReplayOptions {
            output,
            output_format,
            errors,
            keep: Vec::new(),
            chunk_rows: 1024,
            in_flight: None,
            progress: false,
            readers: Readers::auto(),
        }
    }
}

/// Who reads and decodes the input files of a replay.
///
/// Threads of their own read an Arrow IPC file's batches ([`readers::ParallelBatches`]),
/// a Parquet file's row groups, or an Arrow IPC stream (one thread, as a stream is read
/// in order; [`row_groups::ParallelUnits`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Readers {
    /// The replay's own thread, which also submits the blocks and collects the answers
    /// (a thread of its own writes them: [`writer::SinkThread`]).
    Own,
    /// This many threads of their own, from the start (at most one per batch, row
    /// group or stream).
    Threads(usize),
    /// The replay's own thread until, over a window of at least `window`, it is found
    /// to hold the graph back ([`readers::Starved`]); then `threads` threads of their
    /// own read the rest of the file (of a Parquet file, from the row where the replay
    /// stopped, in the row group it was reading).
    OnceStarved {
        /// The threads that then read.
        threads: usize,
        /// The shortest window.
        window: Duration,
    },
}

impl Readers {
    /// The most threads [`Readers::auto`] moves a file to. The replay's own thread,
    /// which still submits and collects, then takes about 21 ns a row of digits (48 M
    /// rows/s at most; 33 ns when it also wrote the output), and reading and decoding
    /// about 45 ns on a core of their own (22 M rows/s; the bench's "files alone"),
    /// more where reading threads share the memory bus: a few reading threads keep up
    /// with it, and more would only wait for room (BENCHMARKS.md, "Replay", eleventh
    /// session).
    pub const AUTO_THREADS: usize = 4;

    /// The default: on a machine of [`readers::Starved::CORES`] cores or more, the
    /// replay's own thread until it holds the graph back, then one thread per core but
    /// one, at most [`Readers::AUTO_THREADS`]; on fewer cores, the replay's own thread.
    pub fn auto() -> Readers {
        match weir_engine::cores() {
            cores if cores >= readers::Starved::CORES => {
                Readers::OnceStarved { threads: (cores - 1).min(Self::AUTO_THREADS), window: readers::Starved::WINDOW }
            }
            _ => Readers::Own,
        }
    }
}

/// The rows a replay keeps between reading and writing by default: four blocks of
/// `chunk_rows` per worker of the graph's engine (`workers`, over the whole cluster),
/// so that every worker has a block to compute while the answers of the next ones are
/// written, and at least [`MIN_IN_FLIGHT`]. A bound of fewer blocks than workers would
/// leave workers idle whatever the cores (8192 rows, the bound before it scaled, are 8
/// blocks: half of 16 workers).
pub fn default_in_flight(workers: usize, chunk_rows: usize) -> usize {
    (4 * workers.max(1)).saturating_mul(chunk_rows.clamp(1, 1 << 16)).max(MIN_IN_FLIGHT)
}

/// The fewest rows [`default_in_flight`] keeps between reading and writing.
pub const MIN_IN_FLIGHT: usize = 8192;

/// `out.arrow` → `out.errors.arrow`.
pub fn errors_path(output: &std::path::Path) -> PathBuf {
    let stem = output.file_stem().map(|s| s.to_string_lossy().into_owned()).unwrap_or_else(|| "replay".into());
    let name = match output.extension() {
        Some(ext) => format!("{stem}.errors.{}", ext.to_string_lossy()),
        None => format!("{stem}.errors"),
    };
    output.with_file_name(name)
}

/// What a replay did.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ReplaySummary {
    /// Rows read (= rows written to the output).
    pub rows: u64,
    /// Rows that failed (= rows of the errors file).
    pub errors: u64,
    /// The most threads that read and decoded an input beside the replay's own (0 when
    /// it read every input itself).
    pub readers: usize,
    /// The CPU time of the thread that wrote the output ([`writer::SinkThread`]), where
    /// the system says (Linux).
    pub writing_cpu: Option<std::time::Duration>,
}

/// Replays `inputs` through `graph` as `options` say. Fails before any row runs if an
/// input does not fit the graph; fails midway only if a file cannot be read or written
/// (the rows read up to then are written). Rows that fail are counted and written to the
/// errors file.
pub fn replay(
    graph: &GraphHandle,
    inputs: &[InputFile],
    options: &ReplayOptions,
) -> Result<ReplaySummary, ReplayError> {
    replay_with_feedback(graph, inputs, None, options)
}

/// [`replay`], with a feedback stream merged into the rows by event time (see
/// [`feedback`]); the graph's engine should be deterministic.
pub fn replay_with_feedback(
    graph: &GraphHandle,
    inputs: &[InputFile],
    mut feedback: Option<FeedbackStream>,
    options: &ReplayOptions,
) -> Result<ReplaySummary, ReplayError> {
    let fields = graph.schema().outputs.clone();
    let kept_fields = check_inputs(graph, inputs, &options.keep, &fields)?;
    refuse_overwriting(inputs, options)?;
    let output_schema = Arc::new(Schema::new(
        fields
            .iter()
            .map(|f| Field::new(&f.name, crate::arrow::arrow_type(&f.ty), true))
            .chain(kept_fields.iter().cloned())
            .collect::<Vec<_>>(),
    ));
    let errors_schema = Arc::new(Schema::new(
        std::iter::once(Field::new("row", DataType::UInt64, false))
            .chain(kept_fields.iter().cloned())
            .chain(ERROR_COLUMNS.iter().map(|c| Field::new(*c, DataType::Utf8, *c == "field")))
            .collect::<Vec<_>>(),
    ));
    let out = Outputs {
        fields: &fields,
        output: SinkThread::start(Sink::create(&options.output, options.output_format, &output_schema)?).map_err(
            |e| ReplayError::Write {
                path: options.output.clone(),
                reason: format!("cannot start the thread writing it: {e}"),
            },
        )?,
        output_schema,
        errors: Sink::create(&options.errors, options.output_format, &errors_schema)?,
        errors_schema,
        options,
    };

    let chunk_rows = options.chunk_rows.clamp(1, 1 << 16);
    let in_flight = options.in_flight.unwrap_or_else(|| default_in_flight(graph.placement().workers(), chunk_rows));
    let max_chunks = (in_flight / chunk_rows).max(1);
    let total = inputs.iter().map(|f| f.rows).sum::<Option<u64>>();
    let mut flow = Flow::new(graph, out, max_chunks, Progress::new(options.progress, total));
    let mut last_time: Option<i64> = None;
    // On an error midway, the rows read so far are still written, and the files get their
    // footers: the output stays readable.
    let mut feed = |flow: &mut Flow<'_>| -> Result<(), ReplayError> {
        let threads_may_read = feedback.is_none();
        // A batch read on this thread, cut into blocks and entered.
        let mut enter_batch = |flow: &mut Flow<'_>, file: &InputFile, batch: RecordBatch| {
            let times = checked_times(feedback.as_ref(), &batch, file, flow.row, &mut last_time)?;
            let mut offset = 0;
            while offset < batch.num_rows() {
                let mut len = chunk_rows.min(batch.num_rows() - offset);
                if let (Some(fb), Some(times)) = (feedback.as_mut(), times) {
                    // The feedback before this row goes first; the block ends before
                    // the first row after the next feedback.
                    fb.submit_before(graph, Some(times[offset]))?;
                    if let Some(next) = fb.next_time() {
                        if let Some(cut) = times[offset..offset + len].iter().position(|&t| t > next) {
                            len = cut.max(1);
                        }
                    }
                }
                let slice = batch.slice(offset, len);
                offset += len;
                // Room first: at most max_chunks submissions out at once.
                flow.room()?;
                let decoded = crate::arrow::decode_columns(&graph.schema().inputs, &slice, flow.row);
                let kept = options.keep.iter().filter_map(|k| slice.column_by_name(k).cloned()).collect();
                flow.enter(file, len, kept, decoded)?;
            }
            Ok::<(), ReplayError>(())
        };
        for file in inputs {
            let readers = match options.readers {
                Readers::Threads(0) => Readers::Own,
                _ if !threads_may_read => Readers::Own,
                readers => readers,
            };
            if readers == Readers::Own {
                for batch in files::open(file, chunk_rows)? {
                    enter_batch(flow, file, batch.map_err(|e| files::damaged(file, flow.row, e))?)?;
                }
                continue;
            }
            if file.format != FileFormat::ArrowFile {
                // A Parquet file's row groups, or an Arrow IPC stream, on threads of their own.
                let units = row_groups::Units::open(file.path.clone(), file.format, chunk_rows)
                    .map_err(|e| files::damaged(file, flow.row, e))?;
                let first_row = flow.row;
                let (threads, handover) = match readers {
                    Readers::OnceStarved { threads, window } => {
                        let mut starved = readers::Starved::new(flow.waited, window);
                        let mut handover = None;
                        'units: for unit in 0..units.len() {
                            let mut batches = units.batches(unit).map_err(|e| files::damaged(file, flow.row, e))?;
                            while let Some(batch) = batches.next() {
                                enter_batch(flow, file, batch.map_err(|e| files::damaged(file, flow.row, e))?)?;
                                if starved.after_batch(flow.waited) {
                                    // This thread holds the graph back: the rest of the
                                    // file is read on threads of their own, from here.
                                    handover = Some(row_groups::Handover { unit, batches, first_row: flow.row });
                                    break 'units;
                                }
                            }
                        }
                        match handover {
                            Some(handover) => (threads, Some(handover)),
                            None => continue,
                        }
                    }
                    Readers::Threads(n) => (n, None),
                    Readers::Own => continue,
                };
                let inputs = (graph.schema().inputs.clone(), options.keep.clone());
                let parallel =
                    row_groups::ParallelUnits::start(units, inputs, chunk_rows, first_row, handover, threads)
                        .map_err(|e| cannot_start(file, &e))?;
                flow.summary.readers = flow.summary.readers.max(parallel.threads());
                enter_slices(flow, file, parallel)?;
                continue;
            }
            let mut ipc = files::open_ipc(file)?;
            let threads = match readers {
                Readers::OnceStarved { threads, window } => {
                    let mut starved = readers::Starved::new(flow.waited, window);
                    let mut moved = 0;
                    for batch in &mut ipc {
                        enter_batch(flow, file, batch.map_err(|e| files::damaged(file, flow.row, e))?)?;
                        if starved.after_batch(flow.waited) {
                            // This thread holds the graph back: the rest of the file is
                            // read and decoded on threads of their own.
                            moved = threads;
                            break;
                        }
                    }
                    moved
                }
                Readers::Threads(n) => n,
                Readers::Own => 0,
            };
            if threads == 0 {
                continue;
            }
            let (layout, from) = ipc.into_parts();
            let parallel = readers::ParallelBatches::start(
                file.path.clone(),
                layout,
                (graph.schema().inputs.clone(), options.keep.clone()),
                chunk_rows,
                (from, flow.row),
                threads,
            )
            .map_err(|e| cannot_start(file, &e))?;
            flow.summary.readers = flow.summary.readers.max(parallel.threads());
            // Each batch's slices in turn; a batch that cannot be read ends the file.
            let slices = parallel.flat_map(|batch| match batch {
                Ok(slices) => slices.into_iter().map(Ok).collect(),
                Err(e) => vec![Err(e)],
            });
            enter_slices(flow, file, slices)?;
        }
        // Feedback after the last row still trains the model.
        if let Some(fb) = feedback.as_mut() {
            fb.submit_before(graph, None)?;
        }
        Ok(())
    };
    let fed = feed(&mut flow);
    flow.finish(fed)
}

/// Enters `slices` of `file`, read and decoded on threads of their own, in file order;
/// stops at the first that could not be read, with its error.
fn enter_slices(
    flow: &mut Flow<'_>,
    file: &InputFile,
    slices: impl Iterator<Item = Result<readers::DecodedSlice, arrow_schema::ArrowError>>,
) -> Result<(), ReplayError> {
    for slice in slices {
        let readers::DecodedSlice { first_row, rows, kept, decoded } =
            slice.map_err(|e| files::damaged(file, flow.row, e))?;
        debug_assert_eq!(first_row, flow.row);
        flow.enter(file, rows, kept, decoded)?;
    }
    Ok(())
}

fn cannot_start(file: &InputFile, e: &std::io::Error) -> ReplayError {
    ReplayError::Io { path: file.path.clone(), reason: format!("cannot start a thread to read it: {e}") }
}

/// Checks every input against the graph's input fields and the kept columns; returns
/// the kept columns' fields (nullable, typed as in the first input).
fn check_inputs(
    graph: &GraphHandle,
    inputs: &[InputFile],
    keep: &[String],
    outputs: &[GraphField],
) -> Result<Vec<Field>, ReplayError> {
    let plan = graph.plan();
    let mut kept: Vec<Field> = Vec::new();
    for file in inputs {
        crate::arrow::check_columns(&graph.schema().inputs, &file.schema).map_err(|reason| ReplayError::Schema {
            path: file.path.clone(),
            graph: plan.name.clone(),
            reason,
        })?;
        for (i, column) in keep.iter().enumerate() {
            let keep_error =
                |reason: String| ReplayError::Keep { path: file.path.clone(), column: column.clone(), reason };
            if outputs.iter().any(|f| &f.name == column) || column == "row" || ERROR_COLUMNS.contains(&column.as_str())
            {
                return Err(keep_error(format!(
                    "the graph's output or the errors file already has a column '{column}'"
                )));
            }
            if keep[..i].contains(column) {
                return Err(keep_error("given twice".into()));
            }
            let Some((_, field)) = file.schema.column_with_name(column) else {
                let found: Vec<&str> = file.schema.fields().iter().map(|f| f.name().as_str()).collect();
                return Err(keep_error(format!("no such column; the input has {}", found.join(", "))));
            };
            match kept.get(i) {
                None => kept.push(Field::new(column, field.data_type().clone(), true)),
                Some(first) if first.data_type() != field.data_type() => {
                    return Err(keep_error(format!(
                        "the column is {} here but {} in {}",
                        field.data_type(),
                        first.data_type(),
                        inputs[0].path.display()
                    )));
                }
                Some(_) => {}
            }
        }
    }
    Ok(kept)
}

/// Refuses an output or errors file that is one of the inputs (the same file by device
/// and inode, so also through a link), or an errors file that is the output: replacing
/// it would destroy the rows before they are read.
fn refuse_overwriting(inputs: &[InputFile], options: &ReplayOptions) -> Result<(), ReplayError> {
    use std::os::unix::fs::MetadataExt;
    const INPUT: &str = "also an input of this replay: writing it would destroy the rows before they are read";
    const OUTPUT: &str = "also the output: the two would overwrite each other";
    let id = |path: &std::path::Path| std::fs::metadata(path).ok().map(|m| (m.dev(), m.ino()));
    let same = |a: &std::path::Path, b: &std::path::Path| id(a).is_some_and(|a| Some(a) == id(b));
    for (role, path) in [("output", &options.output), ("errors", &options.errors)] {
        if inputs.iter().any(|input| same(path, &input.path)) {
            return Err(ReplayError::Overwrites { path: path.clone(), role, what: INPUT });
        }
    }
    let errors_is_output = options.errors == options.output || same(&options.errors, &options.output);
    if errors_is_output {
        return Err(ReplayError::Overwrites { path: options.errors.clone(), role: "errors", what: OUTPUT });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_default_in_flight_keeps_four_blocks_a_worker_and_at_least_8192_rows() {
        // On the 2 cores of the bench's machine, the bound before it scaled.
        assert_eq!(default_in_flight(2, 1024), 8192);
        assert_eq!(default_in_flight(1, 1024), MIN_IN_FLIGHT);
        // 16 workers: 64 blocks, so that none waits for one.
        assert_eq!(default_in_flight(16, 1024), 65_536);
        assert_eq!(default_in_flight(16, 1024) / 1024, 4 * 16);
        assert_eq!(default_in_flight(64, 100), 25_600);
        // Degenerate settings still give a bound of at least one block.
        assert_eq!(default_in_flight(0, 0), MIN_IN_FLIGHT);
        assert_eq!(default_in_flight(3, usize::MAX), 12 << 16);
    }
}
