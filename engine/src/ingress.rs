//! Where submissions enter a graph's dataflow: its [`Source`]s (the rows, the learning
//! node's feedback, each table's updates), and the send that puts chunks into them
//! ([`Ingress::send`]), in a clocked graph under the clock's lock.
//!
//! A source is made whole before the workers start: one bounded channel per worker and
//! one [`Doorbell`] per worker. While it builds its dataflow, each worker takes its
//! channel's receiving end and binds its doorbell to the source operator it made
//! ([`Source::feed`]); submitters send through the source from the moment it exists.
//! A chunk sent before its worker is ready waits in the channel, and the operator's
//! first activation drains it.
//!
//! Threads: [`Ingress::send`] runs on the submitter's thread (a tokio task, a Kafka
//! loop, a replay reader); the source operators run on the timely workers.

use std::sync::atomic::{AtomicI64, AtomicUsize};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crossbeam_channel::{bounded, Receiver, Sender, TrySendError};
use weir_operators::dataflow::clock::EventClock;
use weir_operators::dataflow::doorbell::Doorbell;
use weir_operators::dataflow::source::SourceFeed;
use weir_operators::learn_stats::LearnStats;
use weir_operators::{Chunk, Shutdown};

use crate::feedback::FeedbackKinds;
use crate::spec::TableSpec;
use crate::submit::SubmitError;

/// Rows one activation of a source operator emits, about.
const ROWS_PER_ACTIVATION: usize = 1024;

/// One source: a bounded channel and a doorbell per worker. A chunk goes to worker
/// `slot / stride % workers` (`stride`: the cluster's processes, whose slots interleave;
/// 1 in one process), so one submission's chunks keep their order.
///
/// The rows of a live graph (no clock) in one process of several workers also have a
/// channel every worker reads ([`Source::with_shared`]): a submission of rows alone
/// goes there, and the first worker free takes it. Pinned to a worker, a chunk waits
/// while that worker is busy or has lost its core to another thread (a replay's reading
/// thread, on a machine with as many workers as cores) although the other worker is
/// idle: a replay of `digits.yaml` on 2 workers kept 1.83-1.86 cores busy, and 1.89
/// with the shared channel (BENCHMARKS.md, "Issue 22, item 1: 2026-12-06").
pub(crate) struct Source {
    senders: Vec<Sender<Chunk>>,
    /// The channel every worker reads, and its receiving end for each worker's feed.
    shared: Option<(Sender<Chunk>, Receiver<Chunk>)>,
    stride: u64,
    /// Each worker's receiver, until that worker takes it.
    receivers: Vec<Mutex<Option<Receiver<Chunk>>>>,
    doorbells: Vec<Arc<Doorbell>>,
}

impl Source {
    /// A source for `workers` workers, each channel holding `capacity` chunks, in a
    /// cluster of `processes` processes.
    pub(crate) fn new(workers: usize, capacity: usize, processes: usize) -> Source {
        let (senders, receivers): (Vec<_>, Vec<_>) = (0..workers).map(|_| bounded::<Chunk>(capacity.max(1))).unzip();
        Source {
            senders,
            shared: None,
            stride: processes.max(1) as u64,
            receivers: receivers.into_iter().map(|r| Mutex::new(Some(r))).collect(),
            doorbells: (0..workers).map(|_| Arc::new(Doorbell::new())).collect(),
        }
    }

    /// [`Source::new`] for one process, with a channel every worker reads, holding
    /// `capacity` chunks per worker (see the type's docs).
    pub(crate) fn with_shared(workers: usize, capacity: usize) -> Source {
        let mut source = Source::new(workers, capacity, 1);
        source.shared = Some(bounded::<Chunk>(capacity.max(1).saturating_mul(workers.max(1))));
        source
    }

    /// What worker `index`'s source operator reads; `None` once taken.
    pub(crate) fn feed(
        &self,
        index: usize,
        shutdown: &Shutdown,
        clock: Option<&Arc<EventClock>>,
        drained: Option<Arc<AtomicUsize>>,
    ) -> Option<SourceFeed> {
        let chunks = self.receivers.get(index)?.lock().ok()?.take()?;
        Some(SourceFeed {
            chunks,
            shared: self.shared.as_ref().map(|(_, receiver)| receiver.clone()),
            doorbell: Arc::clone(&self.doorbells[index]),
            shutdown: shutdown.clone(),
            clock: clock.cloned(),
            rows_per_activation: ROWS_PER_ACTIVATION,
            drained,
        })
    }

    /// Every worker's doorbell.
    pub(crate) fn doorbells(&self) -> &[Arc<Doorbell>] {
        &self.doorbells
    }

    fn worker(&self, chunk: &Chunk) -> usize {
        (chunk.slot / self.stride % self.senders.len() as u64) as usize
    }

    /// Whether `chunk`'s channel has room now.
    fn has_room(&self, chunk: &Chunk) -> bool {
        let to = &self.senders[self.worker(chunk)];
        to.capacity().is_none_or(|c| to.len() < c)
    }

    /// Sends `chunk` to its worker, waiting for room if `wait` (else refusing with
    /// [`SubmitError::Full`], naming `graph`), and rings that worker's doorbell if
    /// `ring`.
    fn put(&self, chunk: Chunk, wait: bool, ring: bool, graph: &str) -> Result<(), SubmitError> {
        let worker = self.worker(&chunk);
        send(&self.senders[worker], chunk, wait, graph)?;
        if ring {
            self.doorbells[worker].ring();
        }
        Ok(())
    }

    /// Sends `chunk` into the channel every worker reads, if the source has one (else
    /// to its worker, as [`Source::put`]), and wakes one idle worker: the first whose
    /// source is armed, from the chunk's own worker on (so an idle engine spreads
    /// requests as `put` does). With no source armed, every worker's source is running
    /// or will run again, and looks at the shared channel before it arms.
    fn put_any(&self, chunk: Chunk, wait: bool, graph: &str) -> Result<(), SubmitError> {
        let Some((shared, _)) = &self.shared else { return self.put(chunk, wait, true, graph) };
        let first = self.worker(&chunk);
        send(shared, chunk, wait, graph)?;
        let workers = self.doorbells.len();
        let _ = (0..workers).any(|i| self.doorbells[(first + i) % workers].ring());
        Ok(())
    }
}

/// Sends `chunk` on `to`, waiting for room if `wait`, else refusing when full.
fn send(to: &Sender<Chunk>, chunk: Chunk, wait: bool, graph: &str) -> Result<(), SubmitError> {
    if wait {
        to.send(chunk).map_err(|_| SubmitError::Closed)
    } else {
        to.try_send(chunk).map_err(|e| match e {
            TrySendError::Full(_) => SubmitError::Full(graph.to_string()),
            TrySendError::Disconnected(_) => SubmitError::Closed,
        })
    }
}

/// Where a graph's feedback enters: the learning node's name, its source and counters.
pub(crate) struct FeedbackIngress {
    /// The learning node's name.
    pub(crate) node: String,
    pub(crate) source: Source,
    pub(crate) kinds: FeedbackKinds,
    pub(crate) stats: Arc<LearnStats>,
}

/// Upsert batches queued per worker, at most. Rows submitted after a batch wait for it
/// (they must see it), so a short queue keeps a flood of updates from holding rows back
/// behind a long backlog: a writer beyond the graph's pace waits instead.
const BATCHES_QUEUED: usize = 8;

/// One table's source, as submitters and workers use it.
pub(crate) struct TableIngress {
    pub(crate) spec: TableSpec,
    pub(crate) source: Source,
    /// Keys in the table, counted by every worker's part of it.
    pub(crate) keys: Arc<AtomicI64>,
}

impl TableIngress {
    /// The table `spec`'s source for `workers` workers.
    pub(crate) fn new(spec: &TableSpec, workers: usize) -> TableIngress {
        TableIngress {
            spec: spec.clone(),
            source: Source::new(workers, BATCHES_QUEUED, 1),
            keys: Arc::new(AtomicI64::new(0)),
        }
    }
}

/// A graph's sources, its clock if it has one, and the engine's shutdown.
pub(crate) struct Ingress {
    /// The graph's name, for refusals.
    pub(crate) graph: String,
    pub(crate) rows: Source,
    pub(crate) feedback: Option<FeedbackIngress>,
    pub(crate) tables: Vec<TableIngress>,
    /// Set when every submission must take a time (deterministic engines, and graphs
    /// with tables): see `weir_operators::dataflow::clock`.
    pub(crate) clock: Option<Arc<EventClock>>,
    pub(crate) shutdown: Shutdown,
}

impl Ingress {
    /// Every source's doorbells: the rows', the feedback's, the tables'.
    pub(crate) fn all_doorbells(&self) -> impl Iterator<Item = &Arc<Doorbell>> {
        self.rows
            .doorbells()
            .iter()
            .chain(self.feedback.iter().flat_map(|f| f.source.doorbells().iter()))
            .chain(self.tables.iter().flat_map(|t| t.source.doorbells().iter()))
    }

    /// Sends each `(source, chunk)` into one worker's channel of its source
    /// (round-robin by slot), in order, and wakes that worker's source; stops at the
    /// first that cannot be sent. A lone chunk of a source with a shared channel (a live
    /// graph's rows on several workers) goes there instead ([`Source::with_shared`]). `wait` waits for room, else a full channel refuses
    /// with [`SubmitError::Full`]. In a clocked graph the chunks all take the clock's
    /// next time, and every source is woken, as the watermark moved for all.
    pub(crate) fn send(&self, parts: Vec<(&Source, Chunk)>, wait: bool) -> Result<(), SubmitError> {
        let graph = &self.graph;
        let Some(clock) = &self.clock else {
            // Rows alone may go to any worker; rows with their labels stay together.
            return match <[_; 1]>::try_from(parts) {
                Ok([(source, chunk)]) => source.put_any(chunk, wait, graph),
                Err(parts) => parts.into_iter().try_for_each(|(source, chunk)| source.put(chunk, wait, true, graph)),
            };
        };
        // Every send of a clocked graph holds the clock's lock, so room seen under it
        // stays. A submission that must wait for room waits outside the lock: a full
        // table channel must not stop rows from taking their times.
        let mut parts = Some(parts);
        let mut pause = Duration::from_micros(20);
        loop {
            let sent = clock.stamp(|time| {
                let Some(ready) = parts.take() else { return Err(SubmitError::Closed) };
                if !ready.iter().all(|(source, chunk)| source.has_room(chunk)) {
                    parts = Some(ready);
                    return Err(SubmitError::Full(graph.clone()));
                }
                ready.into_iter().try_for_each(|(source, mut chunk)| {
                    chunk.time = Some(time);
                    source.put(chunk, false, false, graph)
                })
            });
            self.all_doorbells().for_each(|b| {
                b.ring();
            });
            match sent {
                Err(SubmitError::Full(_)) if wait && !self.shutdown.is_requested() => {
                    std::thread::sleep(pause);
                    pause = (pause * 2).min(Duration::from_millis(1));
                }
                other => return other,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use weir_operators::{Chunk, Column, Shutdown};

    use super::*;

    fn chunk(slot: u64) -> Chunk {
        Chunk::new(slot, vec![slot << 20], vec![Column::I64(vec![slot as i64])])
    }

    /// Every chunk worker `index`'s source can take now, in order: its own, then the
    /// shared ones.
    fn take_all(feed: &weir_operators::dataflow::source::SourceFeed) -> Vec<u64> {
        let own = feed.chunks.try_iter().map(|c| c.slot);
        let shared: Vec<u64> = feed.shared.iter().flat_map(|s| s.try_iter().map(|c| c.slot)).collect();
        own.chain(shared).collect()
    }

    #[test]
    fn a_live_graphs_rows_go_to_whichever_worker_takes_them_first() {
        let shutdown = Shutdown::new();
        let source = Source::with_shared(2, 4);
        let feeds: Vec<_> = (0..2).map(|i| source.feed(i, &shutdown, None, None).unwrap()).collect();
        for slot in 0..6 {
            source.put_any(chunk(slot), false, "g").unwrap();
        }
        // Worker 0 is busy: worker 1 takes every chunk, in order.
        assert_eq!(take_all(&feeds[1]), (0..6).collect::<Vec<_>>());
        assert_eq!(take_all(&feeds[0]), Vec::<u64>::new());

        // Pinned (a source without the shared channel, or rows with their labels), each
        // worker has only its own slots.
        let pinned = Source::new(2, 4, 1);
        let feeds: Vec<_> = (0..2).map(|i| pinned.feed(i, &shutdown, None, None).unwrap()).collect();
        for slot in 0..6 {
            pinned.put_any(chunk(slot), false, "g").unwrap();
        }
        assert_eq!(take_all(&feeds[1]), vec![1, 3, 5]);
        assert_eq!(take_all(&feeds[0]), vec![0, 2, 4]);
    }

    #[test]
    fn a_shared_chunk_wakes_one_idle_worker_from_its_own_on() {
        let shutdown = Shutdown::new();
        let source = Source::with_shared(2, 4);
        let _feeds: Vec<_> = (0..2).map(|i| source.feed(i, &shutdown, None, None).unwrap()).collect();
        // Both sources armed (idle): slot 1's chunk rings worker 1 only.
        source.put_any(chunk(1), false, "g").unwrap();
        assert!(!source.doorbells[1].ring(), "rung already");
        source.doorbells[1].arm();
        assert!(source.doorbells[0].ring(), "worker 0 was left asleep");
        // Worker 0 busy (not armed): slot 0's chunk rings worker 1, the idle one.
        source.put_any(chunk(0), false, "g").unwrap();
        assert!(!source.doorbells[1].ring(), "the idle worker was rung");
    }

    #[test]
    fn a_full_shared_channel_refuses_a_submission_that_does_not_wait() {
        let source = Source::with_shared(1, 2);
        source.put_any(chunk(0), false, "g").unwrap();
        source.put_any(chunk(1), false, "g").unwrap();
        assert!(matches!(source.put_any(chunk(2), false, "g"), Err(SubmitError::Full(g)) if g == "g"));
    }
}
