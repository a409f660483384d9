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

use arrow_array::RecordBatch;

use super::error::ReplayError;
use super::sink::Sink;

/// Batches waiting for the writing thread, at most (each a block of `chunk_rows`).
pub const QUEUED: usize = 8;

/// An output file written by a thread of its own, batch by batch in the order given.
pub struct SinkThread {
    /// `None` once the thread stopped or was told to finish.
    tx: Option<SyncSender<RecordBatch>>,
    thread: Option<JoinHandle<Result<(), ReplayError>>>,
    path: PathBuf,
}

impl SinkThread {
    /// Starts the thread that writes to `sink`.
    pub fn start(sink: Sink) -> std::io::Result<SinkThread> {
        let path = sink.path().to_path_buf();
        let (tx, rx) = sync_channel::<RecordBatch>(QUEUED);
        let thread = std::thread::Builder::new().name("weir-write".to_string()).spawn(move || {
            let mut sink = sink;
            let mut written = Ok(());
            for batch in rx {
                written = sink.write(&batch);
                if written.is_err() {
                    break;
                }
            }
            // The footer also after an error: what was written stays readable.
            let finished = sink.finish();
            written.and(finished)
        })?;
        Ok(SinkThread { tx: Some(tx), thread: Some(thread), path })
    }

    /// Hands `batch` to the thread, waiting while [`QUEUED`] batches wait already. The
    /// error of an earlier batch the thread could not write, if any.
    pub fn write(&mut self, batch: RecordBatch) -> Result<(), ReplayError> {
        let Some(tx) = &self.tx else {
            return Err(ReplayError::Write {
                path: self.path.clone(),
                reason: "not written: the file was closed after an earlier error".to_string(),
            });
        };
        if tx.send(batch).is_ok() {
            return Ok(());
        }
        // The thread stopped at an error: that error.
        self.stop()
    }

    /// Writes what is queued and the footer; the first error writing, if any.
    pub fn finish(mut self) -> Result<(), ReplayError> {
        self.stop()
    }

    fn stop(&mut self) -> Result<(), ReplayError> {
        self.tx = None;
        match self.thread.take().map(JoinHandle::join) {
            None => Ok(()),
            Some(Ok(result)) => result,
            Some(Err(panic)) => std::panic::resume_unwind(panic),
        }
    }
}

impl Drop for SinkThread {
    /// Lets the thread write what it was given and the footer.
    fn drop(&mut self) {
        self.tx = None;
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
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
        thread.finish().expect("finish");
        assert_eq!(read(&path), batches);
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
