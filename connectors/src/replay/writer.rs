//! A replay's output written on a thread of its own.
//!
//! Writing the answers was the largest part of what the replay's own thread did once
//! the input was read on threads of their own: about 30 ns a row of digits answers to an
//! Arrow IPC file (mostly the kernel copying them into the page cache), and about 115 ns
//! to Parquet (encoding). That thread also submits every block and collects every
//! answer, so whatever it spends a row bounds the replay's rows/s on any number of
//! cores. Here the batches, already in input order, go through a bounded channel to a
//! thread that encodes and writes them in that order.
//!
//! Bounded: at most [`QUEUED`] batches wait for the thread; the replay waits when they
//! are all taken. An error writing stops the thread; the replay sees it at its next
//! [`SinkThread::write`] (or at [`SinkThread::finish`]), and the file still gets its
//! footer, as when it was written on the replay's own thread.

use std::path::PathBuf;
use std::sync::mpsc::{sync_channel, SyncSender};
use std::thread::JoinHandle;
use std::time::Duration;

use arrow_array::RecordBatch;

use super::error::ReplayError;
use super::sink::Sink;

/// Batches handed to the writing thread at once: one wake-up of it per [`GROUP`] blocks.
pub const GROUP: usize = 4;

/// Batches waiting for the writing thread, at most (each a block of `chunk_rows`): two
/// groups in the channel, and the group being filled.
pub const QUEUED: usize = 3 * GROUP;

/// An output file written by a thread of its own, batch by batch in the order given.
pub struct SinkThread {
    /// `None` once the thread stopped or was told to finish.
    tx: Option<SyncSender<Vec<RecordBatch>>>,
    /// The group being filled.
    group: Vec<RecordBatch>,
    thread: Option<JoinHandle<Result<Option<Duration>, ReplayError>>>,
    path: PathBuf,
}

impl SinkThread {
    /// Starts the thread that writes to `sink`.
    pub fn start(sink: Sink) -> std::io::Result<SinkThread> {
        let path = sink.path().to_path_buf();
        let (tx, rx) = sync_channel::<Vec<RecordBatch>>(QUEUED / GROUP - 1);
        let thread = std::thread::Builder::new().name("weir-write".to_string()).spawn(move || {
            let mut sink = sink;
            let mut written = Ok(());
            for batch in rx.iter().flatten() {
                written = sink.write(&batch);
                if written.is_err() {
                    break;
                }
            }
            // The footer also after an error: what was written stays readable.
            let finished = sink.finish();
            written.and(finished).map(|()| thread_cpu())
        })?;
        Ok(SinkThread { tx: Some(tx), group: Vec::with_capacity(GROUP), thread: Some(thread), path })
    }

    /// Hands `batch` to the thread (with the next ones, [`GROUP`] at a time), waiting
    /// while [`QUEUED`] batches wait already. The error of an earlier batch the thread
    /// could not write, if any.
    pub fn write(&mut self, batch: RecordBatch) -> Result<(), ReplayError> {
        if self.tx.is_none() {
            return Err(ReplayError::Write {
                path: self.path.clone(),
                reason: "not written: the file was closed after an earlier error".to_string(),
            });
        }
        self.group.push(batch);
        if self.group.len() < GROUP || self.hand_over() {
            return Ok(());
        }
        // The thread stopped at an error: that error.
        self.stop().map(drop)
    }

    /// Writes what is queued and the footer; the first error writing, if any. The CPU
    /// time the thread ran, where the system says (Linux).
    pub fn finish(mut self) -> Result<Option<Duration>, ReplayError> {
        self.stop()
    }

    /// Sends the group being filled; false if the thread stopped.
    fn hand_over(&mut self) -> bool {
        let group = std::mem::replace(&mut self.group, Vec::with_capacity(GROUP));
        match &self.tx {
            Some(tx) if !group.is_empty() => tx.send(group).is_ok(),
            _ => true,
        }
    }

    /// Hands over the last group, waits for the thread to write it and the footer.
    fn stop(&mut self) -> Result<Option<Duration>, ReplayError> {
        match self.close() {
            None => Ok(None),
            Some(Ok(result)) => result,
            Some(Err(panic)) => std::panic::resume_unwind(panic),
        }
    }

    /// Hands over the last group, closes the channel and joins the thread (`None` if it
    /// was joined already).
    fn close(&mut self) -> Option<std::thread::Result<Result<Option<Duration>, ReplayError>>> {
        self.hand_over();
        self.tx = None;
        self.thread.take().map(JoinHandle::join)
    }
}

/// The CPU time the calling thread has run (`/proc/thread-self/schedstat`, Linux).
fn thread_cpu() -> Option<Duration> {
    let stat = std::fs::read_to_string("/proc/thread-self/schedstat").ok()?;
    stat.split_whitespace().next()?.parse().ok().map(Duration::from_nanos)
}

impl Drop for SinkThread {
    /// Lets the thread write what it was given and the footer.
    fn drop(&mut self) {
        let _ = self.close();
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use arrow_array::{ArrayRef, Int64Array};

    use super::*;
    use crate::replay::files::FileFormat;

    fn batch(first: i64, rows: i64) -> RecordBatch {
        let x: ArrayRef = Arc::new(Int64Array::from_iter_values(first..first + rows));
        RecordBatch::try_from_iter([("x", x)]).expect("batch")
    }

    fn read(path: &std::path::Path) -> Vec<RecordBatch> {
        let file = std::fs::File::open(path).expect("open");
        arrow_ipc::reader::FileReader::try_new(file, None).expect("reader").collect::<Result<_, _>>().expect("batches")
    }

    #[test]
    fn batches_are_written_in_the_order_given_and_the_footer_at_finish() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("out.arrow");
        let batches: Vec<RecordBatch> = (0..50).map(|i| batch(i * 100, 100)).collect();
        let sink = Sink::create(&path, FileFormat::ArrowFile, &batches[0].schema()).expect("sink");
        let mut thread = SinkThread::start(sink).expect("thread");
        // More than QUEUED: the writes wait for the thread rather than queue them all.
        for b in &batches {
            thread.write(b.clone()).expect("write");
        }
        let cpu = thread.finish().expect("finish");
        assert_eq!(read(&path), batches);
        assert!(cpu.is_some_and(|t| t > Duration::ZERO), "{cpu:?}");
    }

    #[test]
    fn a_batch_that_cannot_be_written_is_an_error_naming_the_file() {
        // A device that takes no byte: each write that reaches it fails (no space).
        let path = std::path::Path::new("/dev/full");
        let big = batch(0, 100_000);
        let sink = Sink::create(path, FileFormat::ArrowFile, &big.schema()).expect("sink");
        let mut thread = SinkThread::start(sink).expect("thread");
        // The thread sees the error after the write that handed it the batch returned:
        // it comes back from a later write. 50 batches of 800 kB are far more than the write buffer and the queue hold.
        let error = (0..50).find_map(|_| thread.write(big.clone()).err()).expect("an error").to_string();
        assert!(error.contains("/dev/full"), "{error}");
        // Once stopped, it takes nothing more, and says why.
        let refused = thread.write(big).expect_err("refused").to_string();
        assert!(refused.contains("closed after an earlier error"), "{refused}");
        assert!(thread.finish().is_ok(), "the error was given once");
    }
}
