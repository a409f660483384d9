//! Where submissions enter a graph's dataflow: each source (the rows, the learning
//! node's feedback, each table's updates) has one bounded channel per worker, and each
//! worker's source operator has a doorbell that wakes it when a chunk arrives.
//!
//! At start the engine makes a source's channels ([`channels`]): the build side goes to
//! the workers, each of which takes its receiver ([`SourceBuild::take`]) and reports the
//! doorbell of the source operator it made; the other side waits
//! ([`SourceWait::open`]) for every worker's report and becomes the [`Source`] that
//! submitters send through.

use std::sync::mpsc::{sync_channel, SyncSender};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crossbeam_channel::{bounded, Receiver, Sender, TrySendError};
use weir_operators::dataflow::doorbell::Doorbell;
use weir_operators::Chunk;

use crate::error::{GraphError, Problem};
use crate::runtime::SubmitError;

/// Where a worker reports its source operator's doorbell.
pub(crate) type BellReport = SyncSender<(usize, Arc<Doorbell>)>;

/// A source's channels, as the workers take them while building the dataflow.
pub(crate) struct SourceBuild {
    receivers: Vec<Mutex<Option<Receiver<Chunk>>>>,
    bells: Mutex<BellReport>,
}

impl SourceBuild {
    /// Worker `index`'s receiver, and where to report its doorbell; `None` once taken.
    pub(crate) fn take(&self, index: usize) -> Option<(Receiver<Chunk>, BellReport)> {
        let receiver = self.receivers.get(index)?.lock().ok()?.take()?;
        let bells = self.bells.lock().ok()?.clone();
        Some((receiver, bells))
    }
}

/// A source's senders while the workers start, and where they report their doorbells.
pub(crate) struct SourceWait {
    senders: Vec<Sender<Chunk>>,
    bells: std::sync::mpsc::Receiver<(usize, Arc<Doorbell>)>,
}

impl SourceWait {
    /// Waits for every worker's doorbell (30 s at most: a worker that has not built its
    /// dataflow by then failed to start). `origin` names the graph in the error.
    pub(crate) fn open(self, origin: &str, workers: usize) -> Result<Source, GraphError> {
        let mut doorbells: Vec<Option<Arc<Doorbell>>> = vec![None; workers];
        for _ in 0..workers {
            let (i, bell) = self
                .bells
                .recv_timeout(Duration::from_secs(30))
                .map_err(|_| GraphError::new(origin, Problem::Start("a worker did not start".into())))?;
            doorbells[i] = Some(bell);
        }
        Ok(Source { senders: self.senders, doorbells: doorbells.into_iter().flatten().collect() })
    }
}

/// A source's channels for `workers` workers, each holding `capacity` chunks.
pub(crate) fn channels(workers: usize, capacity: usize) -> (SourceBuild, SourceWait) {
    let (senders, receivers): (Vec<_>, Vec<_>) = (0..workers).map(|_| bounded::<Chunk>(capacity.max(1))).unzip();
    let (bell_tx, bells) = sync_channel(workers);
    let build = SourceBuild {
        receivers: receivers.into_iter().map(|r| Mutex::new(Some(r))).collect(),
        bells: Mutex::new(bell_tx),
    };
    (build, SourceWait { senders, bells })
}

/// A source's senders and doorbells, as submitters use them. A chunk goes to worker
/// `slot % workers`, so one submission's chunks keep their order.
pub(crate) struct Source {
    senders: Vec<Sender<Chunk>>,
    pub(crate) doorbells: Vec<Arc<Doorbell>>,
}

impl Source {
    fn worker(&self, chunk: &Chunk) -> usize {
        (chunk.slot % self.senders.len() as u64) as usize
    }

    /// Whether `chunk`'s channel has room now.
    pub(crate) fn has_room(&self, chunk: &Chunk) -> bool {
        let to = &self.senders[self.worker(chunk)];
        to.capacity().is_none_or(|c| to.len() < c)
    }

    /// Sends `chunk` to its worker, waiting for room if `wait` (else refusing with
    /// [`SubmitError::Full`], naming `graph`), and rings that worker's doorbell if
    /// `ring`.
    pub(crate) fn put(&self, chunk: Chunk, wait: bool, ring: bool, graph: &str) -> Result<(), SubmitError> {
        let worker = self.worker(&chunk);
        if wait {
            self.senders[worker].send(chunk).map_err(|_| SubmitError::Closed)?;
        } else {
            self.senders[worker].try_send(chunk).map_err(|e| match e {
                TrySendError::Full(_) => SubmitError::Full(graph.to_string()),
                TrySendError::Disconnected(_) => SubmitError::Closed,
            })?;
        }
        if ring {
            self.doorbells[worker].ring();
        }
        Ok(())
    }
}
