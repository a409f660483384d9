//! Replica threads: where forward passes run, off the timely workers.
//!
//! A [`ReplicaPool`] owns `replicas` named threads for one model node, each with its own
//! kernel instance built by the node's [`KernelFactory`] and its own one-thread rayon
//! pool (candle's CPU loops stay on the replica's thread). Batching operators (one per
//! timely worker) send [`Job`]s through a bounded queue; a replica runs the batch, sends
//! the [`Completion`] back on the job's own channel and rings the operator's doorbell.
//! A panic inside a kernel is caught and fails only that batch.
//!
//! Shutdown: the threads exit when every job sender is gone (the operators' and the
//! pool's own); dropping the pool joins them.

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crossbeam_channel::{bounded, Receiver, Sender};

use crate::column::Column;
use crate::dataflow::doorbell::Doorbell;
use crate::kernel::{BatchKernel, KernelError, KernelFactory};
use crate::row::panic_message;
use crate::stats::BatchStats;

/// Makes the calling thread (a timely worker that computes a cheap node's batches
/// itself, see `dataflow/inline.rs`) a one-thread rayon pool of its own, as a replica's
/// is, so candle's data-parallel loops run in place instead of hopping to rayon's global
/// pool and back (which made such passes about three times slower). Once per thread;
/// the pool lives as long as the thread (rayon leaks a pool built on a thread it did not
/// start). A failure is logged and leaves the thread as it was.
pub fn rayon_in_place() {
    thread_local! {
        static POOL: std::cell::OnceCell<Option<rayon::ThreadPool>> = const { std::cell::OnceCell::new() };
    }
    POOL.with(|pool| {
        pool.get_or_init(|| match rayon::ThreadPoolBuilder::new().num_threads(1).use_current_thread().build() {
            Ok(pool) => Some(pool),
            Err(error) => {
                tracing::warn!(%error, "cannot make this worker a one-thread rayon pool; its inline passes use rayon's global pool");
                None
            }
        });
    });
}

/// The rows of a batch: runs of consecutive rows of the node's input columns, in batch
/// order. The columns are shared with the chunks they belong to; the replica copies the
/// rows into the batch's own columns, so the copy, its allocation and its release all
/// happen on the replica's thread.
pub struct BatchRows {
    /// Per run: (the input columns of its chunk, in the node's input order, first row,
    /// rows).
    pub runs: Vec<(Vec<Arc<Column>>, usize, usize)>,
}

impl BatchRows {
    /// The number of rows.
    pub fn len(&self) -> usize {
        self.runs.iter().map(|r| r.2).sum()
    }

    /// Whether the batch has no rows.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Rows `runs` (first row, rows) of `inputs` (one chunk's input columns) as one
    /// column per input: [`BatchRows::gather`] for rows of one chunk.
    pub fn gather_runs(inputs: &[Arc<Column>], runs: &[(usize, usize)]) -> Vec<Column> {
        gather(runs.iter().map(|&(start, n)| (inputs, start, n)))
    }

    /// The rows as one column per input.
    pub fn gather(&self) -> Vec<Column> {
        gather(self.runs.iter().map(|(inputs, start, n)| (&inputs[..], *start, *n)))
    }
}

/// Runs of rows (their chunk's input columns, first row, rows) as one column per input.
fn gather<'a>(runs: impl Iterator<Item = (&'a [Arc<Column>], usize, usize)> + Clone) -> Vec<Column> {
    let rows = runs.clone().map(|(_, _, n)| n).sum();
    let mut runs = runs.peekable();
    let Some(&(first, _, _)) = runs.peek() else { return Vec::new() };
    let mut columns: Vec<Column> = first.iter().map(|c| c.empty_like(rows)).collect();
    for (inputs, start, n) in runs {
        for (column, input) in columns.iter_mut().zip(inputs) {
            column.extend_range(input, start, n);
        }
    }
    columns
}

/// A batch for a replica: the input fields of each row, in order.
pub struct Job {
    /// Identifies the batch within its operator.
    pub ticket: u64,
    /// The rows' input fields, one row per batch row.
    pub inputs: BatchRows,
    /// Where the result goes.
    pub reply: Sender<Completion>,
    /// Wakes the operator that sent the job, if it waits.
    pub wake: Arc<Doorbell>,
    /// When every row of the batch is past its deadline (the latest of them), if all
    /// have one: a replica that reaches the job after it skips the forward pass.
    pub expires: Option<Instant>,
}

/// The result of a [`Job`]: its ticket and its forward pass.
pub struct Completion {
    /// The job's ticket.
    pub ticket: u64,
    /// The output columns, or why the batch failed.
    pub pass: Computed,
}

/// The replica threads of one model node.
pub struct ReplicaPool {
    jobs: Option<Sender<Job>>,
    threads: Vec<JoinHandle<()>>,
}

impl ReplicaPool {
    /// Starts `replicas` threads named `weir-{node}-{i}`, each building its kernel with
    /// `factory`; returns once all are built, or the first build error
    /// ([`KernelError::Build`], naming the node; every thread started is joined first).
    /// The job queue holds at most `queue` batches. Forward-pass times go to `stats`.
    pub fn start(
        node: &str,
        replicas: usize,
        queue: usize,
        factory: KernelFactory,
        stats: Arc<BatchStats>,
    ) -> Result<Self, KernelError> {
        let (jobs, rx) = bounded::<Job>(queue.max(1));
        let (ready_tx, ready_rx) = bounded::<Result<(), KernelError>>(replicas);
        let mut threads = Vec::with_capacity(replicas);
        for i in 0..replicas {
            let rx = rx.clone();
            let factory = Arc::clone(&factory);
            let ready = ready_tx.clone();
            let stats = Arc::clone(&stats);
            let name = format!("weir-{node}-{i}");
            let handle = std::thread::Builder::new()
                .name(name.clone())
                .spawn(move || {
                    // The replica runs inside a one-thread rayon pool of its own, so the
                    // data-parallel loops candle runs through rayon execute right here
                    // instead of bouncing to a shared pool's thread and back.
                    let pool =
                        match rayon::ThreadPoolBuilder::new().num_threads(1).thread_name(move |_| name.clone()).build()
                        {
                            Ok(pool) => pool,
                            Err(e) => {
                                let _ = ready.send(Err(KernelError::ThreadPool { source: e }));
                                return;
                            }
                        };
                    pool.install(move || match factory() {
                        Ok(kernel) => {
                            // The pool waits for every replica's report; it cannot be gone yet.
                            let _ = ready.send(Ok(()));
                            drop(ready);
                            serve(kernel, rx, &stats);
                        }
                        Err(e) => {
                            let _ = ready.send(Err(e));
                        }
                    })
                })
                .map_err(|source| KernelError::ThreadSpawn { node: node.to_string(), source })?;
            threads.push(handle);
        }
        drop(ready_tx);
        let mut pool = ReplicaPool { jobs: Some(jobs), threads };
        for _ in 0..replicas {
            match ready_rx.recv() {
                Ok(Ok(())) => {}
                Ok(Err(e)) => {
                    pool.shutdown();
                    return Err(KernelError::Build { node: node.to_string(), source: Box::new(e) });
                }
                Err(_) => {
                    pool.shutdown();
                    return Err(KernelError::ReplicaDied { node: node.to_string() });
                }
            }
        }
        Ok(pool)
    }

    /// A sender for the job queue (one per batching operator).
    pub fn sender(&self) -> Sender<Job> {
        // Only `shutdown` takes the sender, and it consumes the pool's use.
        self.jobs.clone().expect("a running pool has a job sender")
    }

    fn shutdown(&mut self) {
        self.jobs = None;
        for t in self.threads.drain(..) {
            let _ = t.join();
        }
    }
}

impl Drop for ReplicaPool {
    fn drop(&mut self) {
        self.shutdown();
    }
}

/// Runs jobs until every sender is gone.
///
/// Waking the operator costs more than a small batch's forward pass (an unpark, a
/// context switch, a timely step), so a replica rings only when the operator has a
/// reason to run: it rings after a batch unless its next job is another batch of the
/// same operator, more jobs are queued behind that one, and fewer than half of that
/// operator's batches wait to be collected. A result therefore waits for at most one
/// more forward pass, and only while its operator has more work queued; a replica that
/// starts its last queued batch rings (its operator may line up the next one: see the
/// adaptive policy in `dataflow/batch.rs`), and so does one about to idle.
fn serve(mut kernel: Box<dyn BatchKernel>, jobs: Receiver<Job>, stats: &BatchStats) {
    let Ok(mut job) = jobs.recv() else { return };
    loop {
        let pass = compute(&mut *kernel, &job.inputs, job.expires, stats);
        let Job { ticket, reply, wake, .. } = job;
        // The operator may be gone at shutdown; then nobody waits for this result.
        let delivered = reply.send(Completion { ticket, pass }).is_ok();
        let next = jobs.try_recv().ok();
        let defer =
            next.as_ref().is_some_and(|n| Arc::ptr_eq(&n.wake, &wake) && !half_full(&reply)) && !jobs.is_empty();
        if delivered && !defer {
            wake.ring();
        }
        job = match next {
            Some(next) => next,
            None => match jobs.recv() {
                Ok(next) => next,
                Err(_) => return,
            },
        };
    }
}

/// What one batch's forward pass gave.
pub struct Computed {
    /// The output columns, one row per input row each, or the failure:
    /// [`KernelError::Expired`] if the pass was skipped, every row being past its
    /// deadline.
    pub result: Result<Vec<Column>, KernelError>,
    /// How long the forward pass took (zero if skipped).
    pub took: Duration,
}

/// Runs `kernel` over a batch's rows, unless every row is past its deadline (`expires`):
/// a panic fails the batch (not the thread), and so does a result of the wrong length.
/// The time goes to `stats`. Where forward passes run: on a replica thread, or on the
/// timely worker for a node cheaper to compute than to hand over (`batch.rs`).
pub fn compute(
    kernel: &mut dyn BatchKernel,
    inputs: &BatchRows,
    expires: Option<Instant>,
    stats: &BatchStats,
) -> Computed {
    let started = Instant::now();
    if expires.is_some_and(|d| d <= started) {
        return Computed { result: Err(KernelError::Expired), took: Duration::ZERO };
    }
    let (computed, _) = compute_from(kernel, inputs.len(), || inputs.gather(), started);
    stats.record_compute(computed.took);
    computed
}

/// [`compute`] without a deadline, over `rows` rows that `gather` puts in columns, timed
/// from `started` (the end of the pass before, for passes one after the other: one
/// clock read per pass). Returns the pass and when it ended; the caller records its
/// time.
pub fn compute_from(
    kernel: &mut dyn BatchKernel,
    rows: usize,
    gather: impl FnOnce() -> Vec<Column>,
    started: Instant,
) -> (Computed, Instant) {
    let outcome = catch_unwind(AssertUnwindSafe(|| kernel.forward(gather())));
    let ended = Instant::now();
    let took = ended.saturating_duration_since(started);
    let result = match outcome {
        Ok(Ok(out)) => match out.iter().find(|c| c.len() != rows) {
            None => Ok(out),
            Some(c) => Err(KernelError::OutputCount { rows, outputs: c.len() }),
        },
        Ok(Err(e)) => Err(e),
        Err(panic) => Err(KernelError::Panicked { message: panic_message(&*panic) }),
    };
    (Computed { result, took }, ended)
}

/// Whether at least half of a completion channel's room is taken.
fn half_full(reply: &Sender<Completion>) -> bool {
    let room = reply.capacity().unwrap_or(1).max(1);
    2 * reply.len() >= room
}
