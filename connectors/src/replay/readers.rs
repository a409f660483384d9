//! An Arrow IPC file read and decoded on several threads, handed back in file order.
//!
//! A replay's own thread submits blocks to the graph, collects their answers and hands
//! them in order to the thread that writes them. When it also read and decoded the
//! file, that one thread capped a replay whatever the cores: about 95 ns of it per row
//! of the replay bench's digits file, at most about 10 M rows/s, which four cores of
//! forward passes already exceed (BENCHMARKS.md, "Replay", eleventh session). An Arrow
//! IPC file's footer says where every record batch lies, so its batches can be read
//! independently: here a thread per core takes the file's batches in turn, reads each
//! through its own handle on the file, cuts it into slices of `chunk_rows` rows and
//! decodes every slice by the graph's input fields; the replay takes the batches back
//! strictly in file order.
//!
//! - A slice's decoding errors name its rows by their place in the whole input, so a
//!   batch is decoded once the row counts of the batches before it are known (each
//!   thread publishes its batch's count as soon as the batch is read).
//! - Bounded: the threads hold at most `2 × threads` batches the replay has not taken,
//!   and at most [`BUDGET`] bytes of them (always at least one batch, whatever its size).
//! - A batch that cannot be read ends the file there, as it does for the sequential
//!   reader: the replay gets every batch before it, then its error; a block without a
//!   record batch ends the file (as arrow's own `FileReader`).
//! - Dropping the reader stops its threads and waits for them.

use std::collections::BTreeMap;
use std::fs::File;
use std::path::PathBuf;
use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use arrow_array::{ArrayRef, RecordBatch};
use arrow_schema::ArrowError;
use weir_engine::GraphField;
use weir_operators::RowError;

use super::ipc_file::IpcLayout;
use crate::arrow::{decode_columns, DecodedColumns};

/// The most bytes of the file's batches the threads hold before the replay takes them
/// (a batch larger than this is still read, alone).
pub const BUDGET: u64 = 32 << 20;

/// At most `chunk_rows` rows of a batch, decoded.
pub struct DecodedSlice {
    /// The input row number of its first row (counted over all inputs).
    pub first_row: u64,
    /// The number of rows.
    pub rows: usize,
    /// The columns to keep beside the answers, as read.
    pub kept: Vec<ArrayRef>,
    /// Its input columns decoded, or why the batch's columns do not fit the graph.
    pub decoded: Result<DecodedColumns, RowError>,
}

/// `batch`, whose first row is input row `first`, cut into slices of at most
/// `chunk_rows` rows, each decoded by `inputs`, with the columns `keep` as read.
pub(super) fn decode_slices(
    inputs: &[GraphField],
    keep: &[String],
    chunk_rows: usize,
    batch: &RecordBatch,
    first: u64,
) -> Vec<DecodedSlice> {
    let chunk_rows = chunk_rows.max(1);
    let mut slices = Vec::with_capacity(batch.num_rows().div_ceil(chunk_rows));
    let mut offset = 0;
    while offset < batch.num_rows() {
        let len = chunk_rows.min(batch.num_rows() - offset);
        let slice = batch.slice(offset, len);
        let first_row = first + offset as u64;
        let decoded = decode_columns(inputs, &slice, first_row);
        let kept = keep.iter().filter_map(|k| slice.column_by_name(k).cloned()).collect();
        slices.push(DecodedSlice { first_row, rows: len, kept, decoded });
        offset += len;
    }
    slices
}

/// What became of a batch: its slices; `None` where the file ends; or why it could not
/// be read.
type Outcome = Result<Option<Vec<DecodedSlice>>, ArrowError>;

struct State {
    /// The next batch a thread takes.
    next: usize,
    /// Batches the replay has taken.
    taken: usize,
    /// Bytes of the batches handed to threads and not yet taken.
    held: u64,
    /// The first batch read here (those before it were read elsewhere).
    first: usize,
    /// The first input row of batches `first..first + starts.len()`.
    starts: Vec<u64>,
    /// Each batch's row count, once read.
    rows: Vec<Option<u64>>,
    /// The batch at which the file ends (one that failed, or held no record batch):
    /// no batch after it is read or decoded.
    end: Option<usize>,
    /// Batches done, not yet taken.
    done: BTreeMap<usize, Outcome>,
    /// The reader was dropped.
    stop: bool,
}

impl State {
    /// Records that batch `i` has `rows` rows, and extends the known first rows.
    fn counted(&mut self, i: usize, rows: u64) {
        self.rows[i] = Some(rows);
        while let (Some(&start), Some(Some(n))) =
            (self.starts.last(), self.rows.get(self.first + self.starts.len() - 1))
        {
            self.starts.push(start + n);
        }
    }

    /// The first input row of batch `i`, once known.
    fn start_of(&self, i: usize) -> Option<u64> {
        self.starts.get(i.checked_sub(self.first)?).copied()
    }

    /// Marks the file as ending at batch `i` (or before, if it already did).
    fn ends_at(&mut self, i: usize) {
        self.end = Some(self.end.map_or(i, |e| e.min(i)));
    }

    /// Whether batch `i` lies past the file's end.
    fn past_end(&self, i: usize) -> bool {
        self.end.is_some_and(|e| i > e)
    }
}

struct Shared {
    layout: IpcLayout,
    path: PathBuf,
    inputs: Vec<GraphField>,
    /// The columns to keep beside the answers.
    keep: Vec<String>,
    chunk_rows: usize,
    /// Batches the threads may hold beyond those taken.
    ahead: usize,
    state: Mutex<State>,
    /// Rung when a batch is done, a first row becomes known, a batch is taken, or the
    /// reader stops; the replay and the threads wait on it.
    changed: Condvar,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn wait<'a>(&self, state: MutexGuard<'a, State>) -> MutexGuard<'a, State> {
        self.changed.wait(state).unwrap_or_else(PoisonError::into_inner)
    }

    /// The next batch for a thread to read, once there is room; `None` when there is
    /// none left or the reader stops.
    fn take_work(&self) -> Option<usize> {
        let mut state = self.lock();
        loop {
            if state.stop || state.next >= self.layout.batches() || state.past_end(state.next) {
                return None;
            }
            let (out, size) = (state.next - state.taken, self.layout.size_of(state.next));
            if out == 0 || (out < self.ahead && state.held + size <= BUDGET) {
                let i = state.next;
                state.next += 1;
                state.held += size;
                return Some(i);
            }
            state = self.wait(state);
        }
    }

    fn publish(&self, i: usize, outcome: Outcome) {
        let mut state = self.lock();
        if !matches!(outcome, Ok(Some(_))) {
            state.ends_at(i);
        }
        state.done.insert(i, outcome);
        drop(state);
        self.changed.notify_all();
    }

    /// Reads batch `i` through `file`, publishes its row count, waits for its first row
    /// and decodes its slices.
    fn read(&self, file: &mut Option<File>, i: usize) -> Outcome {
        let handle = match file {
            Some(f) => f,
            None => file.insert(
                File::open(&self.path)
                    .map_err(|e| ArrowError::IoError(format!("cannot open {}: {e}", self.path.display()), e))?,
            ),
        };
        let Some(batch) = self.layout.batch(handle, i)? else { return Ok(None) };
        let mut state = self.lock();
        state.counted(i, batch.num_rows() as u64);
        self.changed.notify_all();
        let first = loop {
            if let Some(first) = state.start_of(i) {
                break first;
            }
            if state.stop || state.past_end(i) {
                // The replay never takes this batch.
                return Ok(None);
            }
            state = self.wait(state);
        };
        drop(state);
        let slices = decode_slices(&self.inputs, &self.keep, self.chunk_rows, &batch, first);
        // Without kept columns, the bytes read are freed here, on the thread that
        // allocated them, which reuses them for its next batch (freed on the replay's
        // thread, each batch took fresh pages: 4% of a replay's samples).
        drop(batch);
        Ok(Some(slices))
    }
}

/// Publishes an error for the batch a thread holds if the thread unwinds before it
/// publishes the batch, so that the replay waiting for it does not wait forever.
struct Holding<'a> {
    shared: &'a Shared,
    batch: Option<usize>,
}

impl Drop for Holding<'_> {
    fn drop(&mut self) {
        if let Some(i) = self.batch.take() {
            self.shared.publish(i, Err(ArrowError::ExternalError("the thread reading this batch failed".into())));
        }
    }
}

fn run(shared: &Shared) {
    let mut file = None;
    while let Some(i) = shared.take_work() {
        let mut holding = Holding { shared, batch: Some(i) };
        let outcome = shared.read(&mut file, i);
        holding.batch = None;
        shared.publish(i, outcome);
    }
}

/// The batches of an Arrow IPC file, read and decoded on several threads, in file order:
/// each as its slices, or the error that ends the file there.
pub struct ParallelBatches {
    shared: Arc<Shared>,
    threads: Vec<JoinHandle<()>>,
}

impl ParallelBatches {
    /// Starts `threads` threads (at most one per batch) reading the file at `path`, whose
    /// footer `layout` is, from its batch `from` on (whose first row is input row
    /// `first_row`), into slices of `chunk_rows` rows decoded by `inputs`, with the
    /// columns `keep` as read.
    pub fn start(
        path: PathBuf,
        layout: IpcLayout,
        (inputs, keep): (Vec<GraphField>, Vec<String>),
        chunk_rows: usize,
        (from, first_row): (usize, u64),
        threads: usize,
    ) -> std::io::Result<ParallelBatches> {
        let batches = layout.batches();
        let from = from.min(batches);
        let threads = threads.clamp(1, (batches - from).max(1));
        let state = State {
            next: from,
            taken: from,
            held: 0,
            first: from,
            starts: vec![first_row],
            rows: vec![None; batches],
            end: None,
            done: BTreeMap::new(),
            stop: false,
        };
        let shared = Arc::new(Shared {
            layout,
            path,
            inputs,
            keep,
            chunk_rows: chunk_rows.max(1),
            ahead: 2 * threads,
            state: Mutex::new(state),
            changed: Condvar::new(),
        });
        let mut reader = ParallelBatches { shared, threads: Vec::with_capacity(threads) };
        for k in 0..threads {
            let shared = Arc::clone(&reader.shared);
            // On a failure to start a thread, those started are stopped (by drop).
            let thread = std::thread::Builder::new().name(format!("weir-read-{k}")).spawn(move || run(&shared))?;
            reader.threads.push(thread);
        }
        Ok(reader)
    }

    /// The threads reading (at most one per batch left).
    pub fn threads(&self) -> usize {
        self.threads.len()
    }
}

impl Iterator for ParallelBatches {
    type Item = Result<Vec<DecodedSlice>, ArrowError>;

    /// The next batch in file order, once read and decoded; `None` after the last, or
    /// where a block holds no record batch.
    fn next(&mut self) -> Option<Self::Item> {
        let shared = &self.shared;
        let mut state = shared.lock();
        let i = state.taken;
        if i >= shared.layout.batches() || state.past_end(i) {
            return None;
        }
        let outcome = loop {
            if let Some(outcome) = state.done.remove(&i) {
                break outcome;
            }
            state = shared.wait(state);
        };
        state.taken += 1;
        state.held = state.held.saturating_sub(shared.layout.size_of(i));
        drop(state);
        shared.changed.notify_all();
        outcome.transpose()
    }
}

impl Drop for ParallelBatches {
    fn drop(&mut self) {
        self.shared.lock().stop = true;
        self.shared.changed.notify_all();
        for thread in self.threads.drain(..) {
            // A thread that panicked has published an error for its batch already.
            let _ = thread.join();
        }
    }
}

/// Whether the replay's own thread, reading and decoding the file itself, holds the graph
/// back: it then hardly ever waits for the graph's answers, because the graph answers
/// each block before the next is ready. Checked after each batch over windows of at
/// least a given time ([`Starved::WINDOW`] by default) and [`Starved::BATCHES`]
/// batches: starved when the thread waited for answers less than [`Starved::SHARE`] of
/// the window.
///
/// A graph that keeps the cores busy is not starved (a replay of `digits.yaml` on 2
/// cores waits for it 58% of the time), and its replay keeps reading on its own thread.
/// Reading threads are only tried on [`Starved::CORES`] cores or more: on 2 cores no
/// setting gained (`cargo bench --bench replay`, "replay readers": reading threads gave
/// 0.82-0.96 of the replay's own thread's rows/s even for a graph that costs next to
/// nothing, the copies out of the page cache contending with each other and the workers).
pub struct Starved {
    since: Instant,
    waited: Duration,
    batches: usize,
    window: Duration,
}

impl Starved {
    /// The shortest window by default.
    pub const WINDOW: Duration = Duration::from_millis(20);
    /// The fewest batches in a window.
    pub const BATCHES: usize = 4;
    /// Below this share of a window spent waiting for answers, the graph is starved.
    pub const SHARE: f64 = 0.1;
    /// The fewest cores on which a starved graph's replay moves to reading threads.
    pub const CORES: usize = 4;

    /// Starts watching over windows of at least `window`; `waited` is the time the
    /// thread has waited for answers so far.
    pub fn new(waited: Duration, window: Duration) -> Starved {
        Starved { since: Instant::now(), waited, batches: 0, window }
    }

    /// After a batch, with `waited` the time waited for answers so far: whether the
    /// window that just ended found the graph starved (`false` while a window lasts).
    pub fn after_batch(&mut self, waited: Duration) -> bool {
        self.batches += 1;
        let elapsed = self.since.elapsed();
        if elapsed < self.window || self.batches < Self::BATCHES {
            return false;
        }
        let share = waited.saturating_sub(self.waited).as_secs_f64() / elapsed.as_secs_f64().max(1e-9);
        *self = Starved::new(waited, self.window);
        share < Self::SHARE
    }
}

#[cfg(test)]
mod tests {
    use arrow_array::builder::{FixedSizeListBuilder, Float32Builder};
    use arrow_array::{Float32Array, RecordBatch};
    use weir_operators::{Column, FieldType};

    use super::*;
    use crate::replay::ipc_file::IpcFile;

    /// Batches of `sizes` rows: `x` (f32, null at the rows `nulls` name by input row)
    /// and `v` (f32[3]); row r holds r, and r, r + 0.5, r + 0.25.
    fn batches(sizes: &[usize], nulls: &[usize]) -> Vec<RecordBatch> {
        let mut first = 0;
        sizes
            .iter()
            .map(|&n| {
                let x: Float32Array = (first..first + n).map(|r| (!nulls.contains(&r)).then_some(r as f32)).collect();
                let mut v = FixedSizeListBuilder::new(Float32Builder::new(), 3);
                for r in first..first + n {
                    v.values().append_slice(&[r as f32, r as f32 + 0.5, r as f32 + 0.25]);
                    v.append(true);
                }
                first += n;
                RecordBatch::try_from_iter([("x", Arc::new(x) as ArrayRef), ("v", Arc::new(v.finish()) as ArrayRef)])
                    .expect("batch")
            })
            .collect()
    }

    fn write(path: &std::path::Path, batches: &[RecordBatch]) {
        let file = File::create(path).expect("create");
        let mut writer = arrow_ipc::writer::FileWriter::try_new(file, &batches[0].schema()).expect("writer");
        batches.iter().for_each(|b| writer.write(b).expect("write"));
        writer.finish().expect("finish");
    }

    fn inputs() -> Vec<GraphField> {
        ["x: f32", "v: f32[3]"]
            .iter()
            .map(|f| {
                let (name, ty) = f.split_once(": ").expect("field");
                GraphField { name: name.into(), ty: FieldType::parse(ty).expect("type") }
            })
            .collect()
    }

    fn layout(path: &std::path::Path) -> IpcLayout {
        IpcLayout::read(&mut File::open(path).expect("open")).expect("layout")
    }

    /// Every slice as (first row, rows, kept, columns, failed rows' messages), or the
    /// error that ended the file.
    type Seen = Vec<Result<(u64, usize, Vec<ArrayRef>, Vec<Column>, Vec<String>), String>>;

    fn seen(batches: impl Iterator<Item = Result<Vec<DecodedSlice>, ArrowError>>) -> Seen {
        let mut seen = Vec::new();
        for batch in batches {
            match batch {
                Ok(slices) => seen.extend(slices.into_iter().map(|s| {
                    let d = s.decoded.expect("decoded");
                    let failed = d.failed.into_iter().map(|(r, e)| format!("{r}: {}", e.message)).collect();
                    Ok((s.first_row, s.rows, s.kept, d.columns, failed))
                })),
                Err(e) => seen.push(Err(e.to_string())),
            }
        }
        seen
    }

    /// What the replay's own thread sees reading `path` from batch `from` on (whose
    /// first row is `first_row`), in slices of `chunk` rows.
    fn sequential(path: &std::path::Path, from: usize, first_row: u64, chunk: usize) -> Seen {
        let mut row = first_row;
        let inputs = inputs();
        let file = IpcFile::open(File::open(path).expect("open")).expect("ipc file");
        seen(file.skip(from).map(|batch| {
            let batch = batch?;
            let mut slices = Vec::new();
            for offset in (0..batch.num_rows()).step_by(chunk) {
                let slice = batch.slice(offset, chunk.min(batch.num_rows() - offset));
                let decoded = decode_columns(&inputs, &slice, row);
                let kept = vec![Arc::clone(slice.column(0))];
                slices.push(DecodedSlice { first_row: row, rows: slice.num_rows(), kept, decoded });
                row += slice.num_rows() as u64;
            }
            Ok(slices)
        }))
    }

    fn parallel(path: &std::path::Path, from: usize, first_row: u64, chunk: usize, threads: usize) -> Seen {
        let reader = ParallelBatches::start(
            path.to_path_buf(),
            layout(path),
            (inputs(), vec!["x".into()]),
            chunk,
            (from, first_row),
            threads,
        )
        .expect("start");
        seen(reader)
    }

    #[test]
    fn batches_come_back_in_file_order_as_the_replays_own_thread_decodes_them() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("in.arrow");
        write(&path, &batches(&[100, 7, 250, 1, 64, 300, 33, 90], &[5, 107, 400, 799]));
        for (from, first_row) in [(0, 0), (3, 357), (7, 10_000), (8, 0)] {
            let want = sequential(&path, from, first_row, 64);
            assert_eq!(want.len(), [17, 10, 2, 0][[0, 3, 7, 8].iter().position(|&f| f == from).expect("from")]);
            for threads in [1, 2, 3, 8] {
                assert_eq!(parallel(&path, from, first_row, 64, threads), want, "from {from}, {threads} threads");
            }
        }
        // A failed row is named by its place in the whole input.
        let failed: Vec<String> = parallel(&path, 0, 0, 64, 4).into_iter().flat_map(|s| s.expect("slice").4).collect();
        assert_eq!(failed.len(), 4, "{failed:?}");
        for (message, row) in failed.iter().zip([5, 107, 400, 799]) {
            assert!(message.contains(&format!("row {row}:")), "{message}");
        }
    }

    #[test]
    fn a_batch_that_cannot_be_read_ends_the_file_after_every_batch_before_it() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("in.arrow");
        write(&path, &batches(&[500, 500, 500, 500], &[]));
        // The footer stays whole, but the file loses 4 KiB before it: the last block it
        // lists now runs past the end.
        let bytes = std::fs::read(&path).expect("read");
        let footer_at = bytes.len() - 600;
        let short = [&bytes[..footer_at - 4096], &bytes[footer_at..]].concat();
        std::fs::write(&path, &short).expect("write");
        let want = sequential(&path, 0, 0, 200);
        for threads in [1, 2, 4] {
            let got = parallel(&path, 0, 0, 200, threads);
            assert_eq!(got, want, "{threads} threads");
            let (last, before) = got.split_last().expect("slices");
            assert!(last.as_ref().is_err_and(|e| e.contains("past the end of the file")), "{last:?}");
            assert_eq!(before.len(), 9, "three whole batches of three slices");
            assert!(before.iter().all(Result::is_ok));
        }
    }

    #[test]
    fn a_reader_dropped_midway_stops_its_threads() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("in.arrow");
        write(&path, &batches(&[100; 64], &[]));
        let mut reader =
            ParallelBatches::start(path.clone(), layout(&path), (inputs(), vec![]), 50, (0, 0), 4).expect("start");
        assert!(reader.next().is_some_and(|b| b.is_ok()));
        // The threads wait for room; dropping the reader ends them (the test would hang
        // if it did not).
        drop(reader);
    }

    #[test]
    fn a_graph_is_starved_when_the_thread_hardly_waited_for_answers_over_a_window() {
        let mut starved = Starved::new(Duration::ZERO, Starved::WINDOW);
        // No verdict before a window has lasted its time and its batches.
        for _ in 0..Starved::BATCHES + 2 {
            assert!(!starved.after_batch(Duration::ZERO));
        }
        std::thread::sleep(Starved::WINDOW);
        assert!(starved.after_batch(Duration::ZERO), "never waited");
        // A window in which the thread waited half the time: not starved.
        let mut starved = Starved::new(Duration::from_secs(1), Starved::WINDOW);
        std::thread::sleep(Starved::WINDOW);
        for _ in 0..Starved::BATCHES - 1 {
            assert!(!starved.after_batch(Duration::from_secs(1)));
        }
        let waited = Duration::from_secs(1) + starved.since.elapsed() / 2;
        assert!(!starved.after_batch(waited));
    }
}
