//! The blocks of a replay between reading and writing: each block's rows are submitted
//! to the graph as one submission, at most `max_chunks` out at once; answers come back
//! in any order and are written strictly in input order, with the rows that failed
//! (to decode, or in the graph) in the errors file.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use arrow_array::{ArrayRef, RecordBatch, StringArray, UInt32Array, UInt64Array};
use arrow_schema::SchemaRef;
use weir_engine::{GraphField, GraphHandle, Submission};
use weir_operators::{Chunk, Column, RowError};

use super::progress::Progress;
use super::sink::Sink;
use super::writer::SinkThread;
use super::{InputFile, ReplayError, ReplayOptions, ReplaySummary};

/// A block of input rows read and not yet written.
struct Block {
    /// The input row number of its first row (counted over all inputs).
    first_row: u64,
    /// The number of input rows.
    rows: usize,
    /// The kept columns of its rows.
    kept: Vec<ArrayRef>,
    /// The rows that could not be decoded (by index in the block), with why; the
    /// others were submitted, in order.
    undecoded: Vec<(usize, Arc<RowError>)>,
    /// The answers of the submitted rows (output columns), once back.
    answers: Option<Chunk>,
}

/// The two files being written, and their schemas.
pub(super) struct Outputs<'a> {
    pub(super) fields: &'a [GraphField],
    pub(super) output: SinkThread,
    pub(super) output_schema: SchemaRef,
    pub(super) errors: Sink,
    pub(super) errors_schema: SchemaRef,
    pub(super) options: &'a ReplayOptions,
}

/// The blocks between reading and writing: submitted in input order, answered in any,
/// written in input order.
pub(super) struct Flow<'a> {
    graph: &'a GraphHandle,
    out: Outputs<'a>,
    /// Where the graph's answers come, by block number.
    tx: std::sync::mpsc::SyncSender<(u64, Chunk)>,
    rx: std::sync::mpsc::Receiver<(u64, Chunk)>,
    /// Submissions out at once, at most.
    max_chunks: usize,
    /// Blocks read and not yet written, by number.
    pending: BTreeMap<u64, Block>,
    /// The next block's number.
    next_seq: u64,
    /// The number of the next block to write.
    write_seq: u64,
    /// Blocks submitted and not yet answered.
    submitted: usize,
    /// The time spent waiting for answers.
    pub(super) waited: Duration,
    /// The input row number of the next row read.
    pub(super) row: u64,
    /// What the replay did so far.
    pub(super) summary: ReplaySummary,
    progress: Progress,
}

impl<'a> Flow<'a> {
    /// Nothing in flight yet: blocks go to `graph`, at most `max_chunks` out at once,
    /// and their answers to `out`.
    pub(super) fn new(graph: &'a GraphHandle, out: Outputs<'a>, max_chunks: usize, progress: Progress) -> Flow<'a> {
        // Each outstanding submission sends once; the room means a reply never blocks a
        // worker. std's channel, not crossbeam's: crossbeam's `recv` yields the core a
        // few times before it sleeps, and with every core busy computing, a thread that
        // yields waits out a worker's whole time slice while the rows in flight run out
        // (the workers then idle); one that sleeps is woken, and runs, as soon as an
        // answer comes (BENCHMARKS.md, "Replay", 2026-12-06, fifth session).
        let (tx, rx) = std::sync::mpsc::sync_channel::<(u64, Chunk)>(max_chunks);
        Flow {
            graph,
            out,
            tx,
            rx,
            max_chunks,
            pending: BTreeMap::new(),
            next_seq: 0,
            write_seq: 0,
            submitted: 0,
            waited: Duration::ZERO,
            row: 0,
            summary: ReplaySummary::default(),
            progress,
        }
    }

    /// After the last block, or an error `fed` that stopped reading: waits for every
    /// answer, writes it, and closes both files (their footers written, so that what
    /// was written stays readable). The first error, if any.
    pub(super) fn finish(mut self, fed: Result<(), ReplayError>) -> Result<ReplaySummary, ReplayError> {
        let mut fed = fed;
        // Every row read is answered and written, also when reading stopped at an error.
        while self.submitted > 0 {
            self.receive();
            if let Err(e) = self.write_ready() {
                fed = fed.and(Err(e));
                break;
            }
        }
        self.progress.finish();
        let (output, errors) = (self.out.output.finish(), self.out.errors.finish());
        let writing_cpu = fed.and(output.and_then(|cpu| errors.map(|()| cpu)))?;
        Ok(ReplaySummary { writing_cpu, ..self.summary })
    }

    /// Waits for one answer.
    fn receive(&mut self) {
        let asked = Instant::now();
        let answer = self.rx.recv();
        self.waited += asked.elapsed();
        if let Ok((seq, answers)) = answer {
            self.submitted -= 1;
            if let Some(block) = self.pending.get_mut(&seq) {
                block.answers = Some(answers);
            }
        }
    }

    /// Writes every block that is complete and next in input order.
    fn write_ready(&mut self) -> Result<(), ReplayError> {
        while self.pending.get(&self.write_seq).is_some_and(|c| c.answers.is_some()) {
            let Some(block) = self.pending.remove(&self.write_seq) else { break };
            self.write_seq += 1;
            write_block(block, &mut self.out, &mut self.summary)?;
            self.progress.update(self.summary.rows);
        }
        Ok(())
    }

    /// Waits (writing what is answered meanwhile) until fewer than `max_chunks` blocks
    /// are out.
    pub(super) fn room(&mut self) -> Result<(), ReplayError> {
        while self.submitted >= self.max_chunks {
            self.receive();
            self.write_ready()?;
        }
        Ok(())
    }

    /// Enters the next `len` rows of the input, from `file` (their input columns decoded
    /// as `decoded`, and the columns to keep): the rows that decoded are submitted as
    /// one block, the others answered with their errors.
    pub(super) fn enter(
        &mut self,
        file: &InputFile,
        len: usize,
        kept: Vec<ArrayRef>,
        decoded: Result<crate::arrow::DecodedColumns, RowError>,
    ) -> Result<(), ReplayError> {
        let fields = &self.out.fields;
        let no_answers =
            |rows: usize| Chunk::new(0, vec![0; rows], fields.iter().map(|f| Column::filler(&f.ty, rows)).collect());
        self.room()?;
        let decoded = decoded.map_err(|e| ReplayError::Schema {
            path: file.path.clone(),
            graph: self.graph.plan().name.clone(),
            reason: e.message,
        })?;
        let undecoded: Vec<(usize, Arc<RowError>)> =
            decoded.failed.into_iter().map(|(r, e)| (r, Arc::new(e))).collect();
        let columns: Vec<Column> = if undecoded.is_empty() {
            decoded.columns
        } else {
            let good: Vec<usize> = (0..len).filter(|r| !undecoded.iter().any(|(u, _)| u == r)).collect();
            decoded.columns.iter().map(|c| c.gather(&good)).collect()
        };
        let n = len - undecoded.len();
        let seq = self.next_seq;
        self.next_seq += 1;
        let mut block = Block { first_row: self.row, rows: len, kept, undecoded, answers: None };
        self.row += len as u64;
        if n == 0 {
            block.answers = Some(no_answers(0));
        } else {
            let tx = self.tx.clone();
            let reply = Box::new(move |answers| drop(tx.send((seq, answers))));
            match self.graph.submit(Submission::columns(columns, reply)) {
                Ok(_) => self.submitted += 1,
                Err(e) => {
                    let mut refused = no_answers(n);
                    refused.fail_all(Arc::new(e.into_row_error()));
                    block.answers = Some(refused);
                }
            }
        }
        self.pending.insert(seq, block);
        self.write_ready()
    }
}

/// The answers of every row of a block, in input order: the graph's for the rows
/// submitted, the decoding error for the others.
fn answers_in_order(block: &mut Block, outputs: &[GraphField]) -> Chunk {
    let fillers = |rows: usize| outputs.iter().map(|f| Column::filler(&f.ty, rows)).collect::<Vec<_>>();
    let mut answers = block.answers.take().unwrap_or_else(|| Chunk::new(0, Vec::new(), fillers(0)));
    let submitted = block.rows - block.undecoded.len();
    if answers.len() != submitted {
        // The graph answers every row it takes; say so rather than misalign rows.
        answers = Chunk::new(0, vec![0; submitted], fillers(submitted));
        answers.fail_all(Arc::new(RowError::no_answer()));
    }
    if block.undecoded.is_empty() {
        return answers;
    }
    let mut failed = Chunk::new(0, vec![0; block.undecoded.len()], fillers(block.undecoded.len()));
    for (k, (_, e)) in block.undecoded.iter().enumerate() {
        failed.fail(k, Arc::clone(e));
    }
    answers.append(&failed);
    let (mut next_answer, mut undecoded) = (0, block.undecoded.iter().map(|(r, _)| *r).enumerate().peekable());
    let order: Vec<usize> = (0..block.rows)
        .map(|r| match undecoded.next_if(|(_, u)| *u == r) {
            Some((k, _)) => submitted + k,
            None => {
                next_answer += 1;
                next_answer - 1
            }
        })
        .collect();
    answers.gather(&order)
}

fn write_block(mut block: Block, out: &mut Outputs<'_>, summary: &mut ReplaySummary) -> Result<(), ReplayError> {
    let answers = answers_in_order(&mut block, out.fields);
    let failed: Vec<(u32, Arc<RowError>)> =
        (0..answers.len()).filter_map(|i| answers.error(i).map(|e| (i as u32, Arc::clone(e)))).collect();
    let rows = answers.len();
    let broken = |reason: String| ReplayError::Write { path: out.options.output.clone(), reason };
    let (_, mut columns) = crate::arrow::chunk_columns(out.fields, answers).map_err(broken)?;
    let Block { first_row, kept, .. } = block;
    columns.extend(kept.iter().cloned());
    let batch = RecordBatch::try_new(Arc::clone(&out.output_schema), columns).map_err(|e| broken(e.to_string()))?;
    out.output.write(batch)?;
    summary.rows += rows as u64;

    if failed.is_empty() {
        return Ok(());
    }
    summary.errors += failed.len() as u64;
    let broken = |reason: String| ReplayError::Write { path: out.options.errors.clone(), reason };
    let indices = UInt32Array::from_iter_values(failed.iter().map(|(i, _)| *i));
    let mut columns: Vec<ArrayRef> =
        vec![Arc::new(UInt64Array::from_iter_values(failed.iter().map(|(i, _)| first_row + u64::from(*i))))];
    for column in &kept {
        columns.push(arrow_select::take::take(column, &indices, None).map_err(|e| broken(e.to_string()))?);
    }
    columns.push(Arc::new(StringArray::from_iter_values(failed.iter().map(|(_, e)| e.code.as_str()))));
    columns.push(Arc::new(StringArray::from_iter_values(failed.iter().map(|(_, e)| e.node.as_str()))));
    columns.push(Arc::new(StringArray::from_iter(failed.iter().map(|(_, e)| e.field.as_deref()))));
    columns.push(Arc::new(StringArray::from_iter_values(failed.iter().map(|(_, e)| e.message.as_str()))));
    let batch = RecordBatch::try_new(Arc::clone(&out.errors_schema), columns).map_err(|e| broken(e.to_string()))?;
    out.errors.write(&batch)
}
