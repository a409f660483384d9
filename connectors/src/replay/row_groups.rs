//! A Parquet file's row groups, or an Arrow IPC stream, read and decoded on threads of
//! their own, handed back in file order.
//!
//! Decoding Parquet costs far more than reading an Arrow IPC file: about 150 ns a row of
//! the replay bench's digits pixels (a list of 64 floats, dictionary-encoded), on the
//! replay's own thread, which also submits every block and collects every answer. That
//! thread then capped a Parquet replay at about 4 M rows/s whatever the cores
//! (BENCHMARKS.md, "Replay", twelfth session). Here the file is read in units that
//! decode independently: a Parquet file's row groups (each through its own handle on
//! the file, with the footer read once), or an Arrow IPC stream as one unit (a stream
//! says nowhere where its batches lie, so it is read in order, on one thread of its
//! own). A thread per core takes the next unit, cuts its batches into slices of
//! `chunk_rows` rows and decodes each slice by the graph's input fields; the replay
//! takes the slices back strictly in file order.
//!
//! - A unit's first row is known before it is read (a Parquet footer gives every row
//!   group's row count), so its decoding errors name rows by their place in the whole
//!   input.
//! - A replay that read part of a unit on its own thread hands the unit's reader over
//!   where it stopped ([`Handover`]); the threads go on from there.
//! - Bounded: each unit in progress holds at most [`AHEAD`] slices the replay has not
//!   taken; at most one unit per thread is in progress.
//! - A batch that cannot be read ends the file there: the replay gets every slice
//!   before it, then its error, and no unit after it is started. A thread that fails
//!   (panics) ends the file at its unit, with an error saying so.
//! - Dropping the reader stops its threads and waits for them.

use std::fs::File;
use std::path::PathBuf;
use std::sync::mpsc::{sync_channel, Receiver, SyncSender};
use std::sync::{Arc, Mutex, PoisonError};
use std::thread::JoinHandle;

use arrow_schema::ArrowError;
use parquet::arrow::arrow_reader::{ArrowReaderMetadata, ArrowReaderOptions, ParquetRecordBatchReaderBuilder};
use weir_engine::GraphField;

use super::files::{Batches, FileFormat};
use super::readers::{decode_slices, DecodedSlice};

/// The most decoded slices a unit in progress holds before the replay takes them.
pub const AHEAD: usize = 4;

/// A file read unit by unit: a Parquet file's row groups, or an Arrow IPC stream as a
/// single unit.
pub struct Units {
    path: PathBuf,
    /// A Parquet file's footer (`None`: an Arrow IPC stream).
    parquet: Option<ArrowReaderMetadata>,
    /// Rows per batch a Parquet row group is decoded in.
    batch_rows: usize,
}

impl Units {
    /// Opens the file at `path` of `format` (Parquet or an Arrow IPC stream); a Parquet
    /// footer is read here, once.
    pub fn open(path: PathBuf, format: FileFormat, batch_rows: usize) -> Result<Units, ArrowError> {
        let parquet = match format {
            FileFormat::Parquet => {
                let file = open(&path)?;
                Some(ArrowReaderMetadata::load(&file, ArrowReaderOptions::new()).map_err(ArrowError::from)?)
            }
            FileFormat::ArrowStream => None,
            FileFormat::ArrowFile => {
                return Err(ArrowError::InvalidArgumentError(
                    "an Arrow IPC file is read by its footer's batches (readers.rs), not in units".into(),
                ))
            }
        };
        Ok(Units { path, parquet, batch_rows: batch_rows.max(1) })
    }

    /// How many units: row groups, or 1 for a stream.
    pub fn len(&self) -> usize {
        self.parquet.as_ref().map_or(1, |m| m.metadata().num_row_groups())
    }

    /// Whether there are none (a Parquet file without row groups).
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The rows of unit `i`, where the file says (a Parquet row group).
    fn rows(&self, i: usize) -> Option<u64> {
        let groups = self.parquet.as_ref()?.metadata().row_groups();
        u64::try_from(groups.get(i)?.num_rows()).ok()
    }

    /// Unit `i` in messages.
    fn name(&self, i: usize) -> String {
        match self.parquet {
            Some(_) => format!("row group {i}"),
            None => "the stream".into(),
        }
    }

    /// The batches of unit `i`, read through a handle of their own.
    pub fn batches(&self, i: usize) -> Result<Batches, ArrowError> {
        let file = open(&self.path)?;
        Ok(match &self.parquet {
            Some(metadata) => Box::new(
                ParquetRecordBatchReaderBuilder::new_with_metadata(file, metadata.clone())
                    .with_row_groups(vec![i])
                    .with_batch_size(self.batch_rows)
                    .build()?,
            ),
            None => Box::new(arrow_ipc::reader::StreamReader::try_new(std::io::BufReader::new(file), None)?),
        })
    }
}

/// A file's units read one after the other (on the replay's own thread): a batch never
/// spans two row groups, so a damaged row group ends the file after every row before it.
pub struct InOrder {
    units: Units,
    next: usize,
    current: Option<Batches>,
}

impl InOrder {
    /// Reads `units` from the first.
    pub fn new(units: Units) -> InOrder {
        InOrder { units, next: 0, current: None }
    }
}

impl Iterator for InOrder {
    type Item = Result<arrow_array::RecordBatch, ArrowError>;

    fn next(&mut self) -> Option<Self::Item> {
        loop {
            if let Some(batch) = self.current.as_mut().and_then(Iterator::next) {
                if batch.is_err() {
                    // The file ends at its first error.
                    self.next = self.units.len();
                    self.current = None;
                }
                return Some(batch);
            }
            if self.next >= self.units.len() {
                return None;
            }
            self.next += 1;
            match self.units.batches(self.next - 1) {
                Ok(batches) => self.current = Some(batches),
                Err(e) => {
                    self.next = self.units.len();
                    self.current = None;
                    return Some(Err(e));
                }
            }
        }
    }
}

fn open(path: &std::path::Path) -> Result<File, ArrowError> {
    File::open(path).map_err(|e| ArrowError::IoError(format!("cannot open {}: {e}", path.display()), e))
}

/// Part of a unit already read on the replay's own thread: the unit, its reader where
/// the replay stopped, and the input row of the reader's next row.
pub struct Handover {
    /// The unit.
    pub unit: usize,
    /// Its reader, positioned after the rows the replay read.
    pub batches: Batches,
    /// The input row number of its next row.
    pub first_row: u64,
}

/// What a thread sends for its unit.
enum Piece {
    Slice(DecodedSlice),
    /// The unit cannot be read on from here; the file ends.
    Failed(ArrowError),
    /// The unit is done.
    Done,
}

struct Shared {
    units: Units,
    inputs: Vec<GraphField>,
    keep: Vec<String>,
    chunk_rows: usize,
    /// The first input row of each unit from the first read here on (`None` where the
    /// file does not say, past a stream's only unit).
    first_rows: Vec<Option<u64>>,
    /// The first unit read here.
    from: usize,
    work: Mutex<Work>,
}

struct Work {
    /// The next unit a thread takes.
    next: usize,
    /// The unit at which the file ends (one that failed): none after it is started.
    end: Option<usize>,
    /// Each unit's sender, until a thread takes the unit.
    senders: Vec<Option<SyncSender<Piece>>>,
    /// The handed-over part of the first unit.
    handover: Option<Batches>,
    stop: bool,
}

impl Shared {
    /// The next unit for a thread: its index, where its rows go, and its reader if the
    /// replay handed it over; `None` when none is left or the reader stops.
    fn take_work(&self) -> Option<(usize, SyncSender<Piece>, Option<Batches>)> {
        let mut work = self.work.lock().unwrap_or_else(PoisonError::into_inner);
        let i = work.next;
        if work.stop || i >= self.units.len() || work.end.is_some_and(|e| i > e) {
            return None;
        }
        work.next += 1;
        let sender = work.senders.get_mut(i - self.from)?.take()?;
        let handover = if i == self.from { work.handover.take() } else { None };
        Some((i, sender, handover))
    }

    fn ends_at(&self, i: usize) {
        let mut work = self.work.lock().unwrap_or_else(PoisonError::into_inner);
        work.end = Some(work.end.map_or(i, |e| e.min(i)));
    }

    /// Reads unit `i` into `sender`; `false` if the replay no longer takes them.
    fn read(&self, i: usize, sender: &SyncSender<Piece>, handover: Option<Batches>) -> bool {
        let first = self.first_rows.get(i - self.from).copied().flatten();
        let opened = match handover {
            Some(batches) => Ok(batches),
            None => self.units.batches(i),
        };
        let (mut row, batches) = match (first, opened) {
            (Some(row), Ok(batches)) => (row, batches),
            (_, Err(e)) => {
                self.ends_at(i);
                return sender.send(Piece::Failed(e)).is_ok();
            }
            (None, Ok(_)) => {
                self.ends_at(i);
                let e = format!("where {} starts in the input is not known", self.units.name(i));
                return sender.send(Piece::Failed(ArrowError::ExternalError(e.into()))).is_ok();
            }
        };
        for batch in batches {
            let batch = match batch {
                Ok(batch) => batch,
                Err(e) => {
                    self.ends_at(i);
                    return sender.send(Piece::Failed(e)).is_ok();
                }
            };
            let rows = batch.num_rows() as u64;
            for slice in decode_slices(&self.inputs, &self.keep, self.chunk_rows, &batch, row) {
                if sender.send(Piece::Slice(slice)).is_err() {
                    return false;
                }
            }
            row += rows;
        }
        sender.send(Piece::Done).is_ok()
    }
}

fn run(shared: &Shared) {
    while let Some((i, sender, handover)) = shared.take_work() {
        if !shared.read(i, &sender, handover) {
            return;
        }
    }
}

/// The slices of a file's units, read and decoded on several threads, in file order:
/// each slice, or the error that ends the file there.
pub struct ParallelUnits {
    shared: Arc<Shared>,
    /// Each unit's slices, from the first read here on.
    receivers: Vec<Receiver<Piece>>,
    /// The unit whose slices come next (an index into `receivers`).
    current: usize,
    /// The file has ended (after its last unit, or an error).
    ended: bool,
    threads: Vec<JoinHandle<()>>,
}

impl ParallelUnits {
    /// Starts `threads` threads (at most one per unit) reading `units` into slices of
    /// `chunk_rows` rows decoded by `inputs`, with the columns `keep` as read: from
    /// `handover`'s unit on, that one from its reader, or from the first unit when
    /// there is none. `first_row` is the input row number of the file's first row.
    pub fn start(
        units: Units,
        (inputs, keep): (Vec<GraphField>, Vec<String>),
        chunk_rows: usize,
        first_row: u64,
        handover: Option<Handover>,
        threads: usize,
    ) -> std::io::Result<ParallelUnits> {
        let from = handover.as_ref().map_or(0, |h| h.unit).min(units.len());
        let count = units.len() - from;
        // Each unit's first row: the handed-over one's where the replay stopped; the
        // ones after it from the row counts before them.
        let mut first_rows = Vec::with_capacity(count);
        let mut start = Some(first_row);
        for i in 0..from {
            start = start.zip(units.rows(i)).map(|(s, n)| s + n);
        }
        for i in from..units.len() {
            let here = match &handover {
                Some(h) if i == h.unit => Some(h.first_row),
                _ => start,
            };
            first_rows.push(here);
            start = start.zip(units.rows(i)).map(|(s, n)| s + n);
        }
        let (senders, receivers): (Vec<_>, Vec<_>) = (0..count)
            .map(|_| {
                let (tx, rx) = sync_channel(AHEAD);
                (Some(tx), rx)
            })
            .unzip();
        let threads = threads.clamp(1, count.max(1)).min(count);
        let work = Work { next: from, end: None, senders, handover: handover.map(|h| h.batches), stop: false };
        let shared = Arc::new(Shared {
            units,
            inputs,
            keep,
            chunk_rows: chunk_rows.max(1),
            first_rows,
            from,
            work: Mutex::new(work),
        });
        let mut reader =
            ParallelUnits { shared, receivers, current: 0, ended: count == 0, threads: Vec::with_capacity(threads) };
        for k in 0..threads {
            let shared = Arc::clone(&reader.shared);
            // On a failure to start a thread, those started are stopped (by drop).
            let thread = std::thread::Builder::new().name(format!("weir-read-{k}")).spawn(move || run(&shared))?;
            reader.threads.push(thread);
        }
        Ok(reader)
    }

    /// The threads reading (at most one per unit left).
    pub fn threads(&self) -> usize {
        self.threads.len()
    }
}

impl Iterator for ParallelUnits {
    type Item = Result<DecodedSlice, ArrowError>;

    /// The next slice in file order, once read and decoded; `None` after the last.
    fn next(&mut self) -> Option<Self::Item> {
        while !self.ended {
            let unit = self.shared.from + self.current;
            let piece = self.receivers.get(self.current)?.recv();
            match piece {
                Ok(Piece::Slice(slice)) => return Some(Ok(slice)),
                Ok(Piece::Done) => {
                    self.current += 1;
                    self.ended = self.current >= self.receivers.len();
                }
                Ok(Piece::Failed(e)) => {
                    self.ended = true;
                    return Some(Err(e));
                }
                Err(_) => {
                    // Its thread dropped the unit without finishing it: it failed.
                    self.ended = true;
                    let e = format!("the thread reading {} failed", self.shared.units.name(unit));
                    return Some(Err(ArrowError::ExternalError(e.into())));
                }
            }
        }
        None
    }
}

impl Drop for ParallelUnits {
    fn drop(&mut self) {
        self.shared.work.lock().unwrap_or_else(PoisonError::into_inner).stop = true;
        // A thread waiting to send finds the replay gone.
        self.receivers.clear();
        for thread in self.threads.drain(..) {
            let _ = thread.join();
        }
    }
}

#[cfg(test)]
mod tests {
    use arrow_array::{ArrayRef, Float32Array, RecordBatch};
    use weir_operators::{Column, FieldType};

    use super::*;

    /// A Parquet file of `groups` row groups of `rows` rows: `x` (f32, row r holds r,
    /// null at the rows `nulls` name).
    fn write(path: &std::path::Path, groups: usize, rows: usize, nulls: &[usize]) {
        let props = parquet::file::properties::WriterProperties::builder().set_max_row_group_row_count(Some(rows));
        let x: Float32Array = (0..groups * rows).map(|r| (!nulls.contains(&r)).then_some(r as f32)).collect();
        let batch = RecordBatch::try_from_iter([("x", Arc::new(x) as ArrayRef)]).expect("batch");
        let file = File::create(path).expect("create");
        let mut writer =
            parquet::arrow::ArrowWriter::try_new(file, batch.schema(), Some(props.build())).expect("writer");
        writer.write(&batch).expect("write");
        writer.close().expect("close");
    }

    fn inputs() -> Vec<GraphField> {
        vec![GraphField { name: "x".into(), ty: FieldType::parse("f32").expect("type") }]
    }

    /// Every slice as (first row, rows, x, failed rows' messages), or the error that
    /// ended the file.
    type Seen = Vec<Result<(u64, usize, Column, Vec<String>), String>>;

    fn seen(slices: impl Iterator<Item = Result<DecodedSlice, ArrowError>>) -> Seen {
        slices
            .map(|slice| {
                let s = slice.map_err(|e| e.to_string())?;
                let mut d = s.decoded.expect("decoded");
                let failed = d.failed.into_iter().map(|(r, e)| format!("{r}: {}", e.message)).collect();
                Ok((s.first_row, s.rows, d.columns.remove(0), failed))
            })
            .collect()
    }

    fn units(path: &std::path::Path, batch_rows: usize) -> Units {
        Units::open(path.to_path_buf(), FileFormat::Parquet, batch_rows).expect("units")
    }

    /// What the replay's own thread sees reading the file from input row `first_row`.
    fn in_order(path: &std::path::Path, chunk: usize, first_row: u64) -> Seen {
        let mut row = first_row;
        seen(InOrder::new(units(path, chunk)).flat_map(|batch| match batch {
            Ok(batch) => {
                let slices = decode_slices(&inputs(), &[], chunk, &batch, row);
                row += batch.num_rows() as u64;
                slices.into_iter().map(Ok).collect::<Vec<_>>()
            }
            Err(e) => vec![Err(e)],
        }))
    }

    #[test]
    fn row_groups_come_back_in_file_order_as_the_replays_own_thread_decodes_them() {
        let dir = tempfile::tempdir().expect("dir");
        let path = dir.path().join("groups.parquet");
        // Seven row groups of 100 rows; rows 150 and 612 do not decode.
        write(&path, 7, 100, &[150, 612]);
        assert_eq!(units(&path, 64).len(), 7);
        let expected = in_order(&path, 64, 1000);
        assert_eq!(expected.len(), 14, "two slices a row group (64 and 36 rows)");
        assert_eq!(
            expected[2].as_ref().map(|s| s.3.clone()),
            Ok(vec!["50: row 1150: null value".to_string()]),
            "named by its place in the input"
        );
        for threads in [1, 2, 3, 8] {
            let inputs = (inputs(), Vec::new());
            let parallel = ParallelUnits::start(units(&path, 64), inputs, 64, 1000, None, threads).expect("start");
            assert_eq!(seen(parallel), expected, "{threads} threads");
        }
        // Handed over after the first slice of row group 2: the threads go on from there.
        for threads in [1, 3] {
            let units = units(&path, 64);
            let mut batches = units.batches(2).expect("batches");
            assert_eq!(batches.next().expect("a batch").expect("read").num_rows(), 64);
            let handover = Handover { unit: 2, batches, first_row: 1264 };
            let inputs = (inputs(), Vec::new());
            let parallel = ParallelUnits::start(units, inputs, 64, 1000, Some(handover), threads).expect("start");
            assert_eq!(seen(parallel), expected[5..], "handed over, {threads} threads");
        }
    }

    #[test]
    fn a_row_group_that_cannot_be_read_ends_the_file_after_every_row_before_it() {
        let dir = tempfile::tempdir().expect("dir");
        let path = dir.path().join("damaged.parquet");
        write(&path, 5, 100, &[]);
        let metadata =
            ArrowReaderMetadata::load(&File::open(&path).expect("open"), ArrowReaderOptions::new()).expect("footer");
        let column = metadata.metadata().row_group(3).column(0);
        let at = column.dictionary_page_offset().unwrap_or(column.data_page_offset()) as usize;
        let mut bytes = std::fs::read(&path).expect("read");
        bytes[at..at + 32].fill(0xff);
        std::fs::write(&path, bytes).expect("write");
        let expected = in_order(&path, 100, 0);
        assert_eq!(expected.len(), 4, "three row groups, then the error");
        assert!(expected[3].is_err(), "{:?}", expected[3]);
        for threads in [1, 2, 5] {
            let inputs = (inputs(), Vec::new());
            let parallel = ParallelUnits::start(units(&path, 100), inputs, 100, 0, None, threads).expect("start");
            assert_eq!(seen(parallel), expected, "{threads} threads");
        }
    }

    #[test]
    fn a_reader_dropped_midway_stops_its_threads() {
        let dir = tempfile::tempdir().expect("dir");
        let path = dir.path().join("groups.parquet");
        write(&path, 20, 1000, &[]);
        let inputs = (inputs(), Vec::new());
        let mut parallel = ParallelUnits::start(units(&path, 100), inputs, 100, 0, None, 4).expect("start");
        assert_eq!(parallel.next().expect("a slice").expect("read").rows, 100);
        // The threads wait with full queues; dropping the reader must end them.
        drop(parallel);
    }
}
