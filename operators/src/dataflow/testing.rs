//! Test support for the operators of this module: a one-worker dataflow fed with chunks
//! through an input handle, stepped by the test, and the chunks that came out of it with
//! their times.
//!
//! [`run`] feeds a list of chunks and returns everything that came out once the dataflow
//! has finished; [`run_with`] hands the test a [`Driver`] to send chunks and step the
//! worker in stages (to hold a replica busy while rows arrive, say). Either fails the
//! test, rather than hanging it, if the dataflow has not got where the test waits for
//! within [`WATCHDOG`].

use std::cell::RefCell;
use std::rc::Rc;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crossbeam_channel::{bounded, Receiver, Sender};

use timely::container::CapacityContainerBuilder;
use timely::dataflow::operators::core::{Input, Inspect, Probe};
use timely::dataflow::{InputHandle, ProbeHandle, Scope};
use timely::worker::Worker;

use super::{RowStream, Time};
use crate::chunk::Chunk;
use crate::column::Column;
use crate::kernel::{BatchKernel, KernelError, KernelFactory};
use crate::replica::{Job, ReplicaPool};
use crate::row::{ErrorCode, RowError, RowId};
use crate::stats::BatchStats;

/// How long a test dataflow may take to reach what a test waits for: far longer than any
/// wait a test configures, so only a hang reaches it.
pub(crate) const WATCHDOG: Duration = Duration::from_secs(60);

/// A chunk that came out, and its time.
pub(crate) type Out = (Time, Chunk);

/// A test's hold on a running one-worker dataflow.
pub(crate) struct Driver<'w> {
    worker: &'w mut Worker,
    input: Option<InputHandle<Time, CapacityContainerBuilder<Vec<Chunk>>>>,
    probe: ProbeHandle<Time>,
    out: Rc<RefCell<Vec<Out>>>,
}

impl Driver<'_> {
    /// Sends `chunk` at `time` (not earlier than the times sent before).
    pub(crate) fn send(&mut self, time: Time, chunk: Chunk) {
        let input = self.input.as_mut().expect("the input is open until the test's drive returns");
        if time > *input.time() {
            input.advance_to(time);
        }
        input.send(chunk);
    }

    /// Makes what was sent so far visible to the dataflow.
    pub(crate) fn flush(&mut self) {
        if let Some(input) = &mut self.input {
            input.flush();
        }
    }

    /// Steps the worker until `done` holds for the chunks out so far; panics naming
    /// `what` after [`WATCHDOG`].
    pub(crate) fn step_until(&mut self, what: &str, mut done: impl FnMut(&[Out]) -> bool) {
        self.flush();
        let give_up = Instant::now() + WATCHDOG;
        while !done(&self.out.borrow()) {
            assert!(Instant::now() < give_up, "waited {WATCHDOG:?} for {what}");
            self.worker.step_or_park(Some(Duration::from_millis(5)));
        }
    }

    /// Steps the worker `n` times without waiting.
    pub(crate) fn step(&mut self, n: usize) {
        self.flush();
        for _ in 0..n {
            self.worker.step();
        }
    }

    /// Closes the input, steps until every output is out, and returns the outputs in the
    /// order they came.
    fn finish(mut self) -> Vec<Out> {
        if let Some(input) = self.input.take() {
            input.close();
        }
        let probe = self.probe.clone();
        self.step_until("the dataflow to finish", |_| probe.done());
        self.out.take()
    }
}

/// Builds the operators with `build` on a one-worker dataflow whose input the test
/// feeds through `drive`, then closes the input and returns every chunk that came out,
/// in the order they came, with their times.
pub(crate) fn run_with<B, D>(build: B, drive: D) -> Vec<Out>
where
    B: for<'s> FnOnce(Scope<'s, Time>, RowStream<'s>) -> RowStream<'s> + Send + Sync + 'static,
    D: FnOnce(&mut Driver<'_>) + Send + Sync + 'static,
{
    timely::execute_directly(move |worker| {
        let out: Rc<RefCell<Vec<Out>>> = Rc::default();
        let sink = Rc::clone(&out);
        let (input, probe) = worker.dataflow::<Time, _, _>(move |scope| {
            let (input, rows) = scope.new_input::<Vec<Chunk>>();
            let (probe, _) = build(scope, rows)
                .inspect_core(move |event| {
                    if let Ok((stamp, chunks)) = event {
                        let time = stamp.least().copied().unwrap_or_default();
                        sink.borrow_mut().extend(chunks.iter().map(|c| (time, c.clone())));
                    }
                })
                .probe();
            (input, probe)
        });
        let mut driver = Driver { worker, input: Some(input), probe, out };
        drive(&mut driver);
        driver.finish()
    })
}

/// [`run_with`] for a test that sends `inputs` (time, chunk), in order, all at once.
pub(crate) fn run<B>(inputs: Vec<(Time, Chunk)>, build: B) -> Vec<Out>
where
    B: for<'s> FnOnce(Scope<'s, Time>, RowStream<'s>) -> RowStream<'s> + Send + Sync + 'static,
{
    run_with(build, move |driver| inputs.into_iter().for_each(|(time, chunk)| driver.send(time, chunk)))
}

/// A chunk of submission `slot` with one `f32` column `xs`; its rows' ids are
/// `slot * 100 + i`.
pub(crate) fn f32_chunk(slot: u64, xs: &[f32]) -> Chunk {
    let ids = (0..xs.len() as u64).map(|i| slot * 100 + i).collect();
    Chunk::new(slot, ids, vec![Column::F32(xs.to_vec())])
}

/// `chunk` with rows `rows` failed upstream, as an input that could not be decoded.
pub(crate) fn failed_at(mut chunk: Chunk, rows: &[usize]) -> Chunk {
    let error = Arc::new(RowError::invalid_input("input", "could not be decoded"));
    rows.iter().for_each(|&r| chunk.fail(r, Arc::clone(&error)));
    chunk
}

/// The numbers of an `f32` column (panics on another type).
pub(crate) fn f32s(column: &Column) -> Vec<f32> {
    match column {
        Column::F32(v) => v.clone(),
        other => panic!("expected an f32 column, got {}", other.type_name()),
    }
}

/// Per row of `chunk`: its error's code and node, or `None` while it computes.
pub(crate) fn errors(chunk: &Chunk) -> Vec<Option<(ErrorCode, String)>> {
    (0..chunk.len()).map(|r| chunk.error(r).map(|e| (e.code, e.node.clone()))).collect()
}

/// The ids of every row out, in the order they came out.
pub(crate) fn ids(out: &[Out]) -> Vec<RowId> {
    out.iter().flat_map(|(_, c)| c.ids.iter().copied()).collect()
}

/// The chunk out of submission `slot` (panics unless exactly one came out).
pub(crate) fn of_slot(out: &[Out], slot: u64) -> &Chunk {
    let mut found = out.iter().filter(|(_, c)| c.slot == slot);
    let (Some((_, chunk)), None) = (found.next(), found.next()) else {
        panic!("expected one chunk of slot {slot} in {out:?}")
    };
    chunk
}

/// The inputs of every forward pass of a [`TestModel`], in the order they ran.
pub(crate) type Passes = Arc<Mutex<Vec<Vec<f32>>>>;

/// The model node of batching tests, on one replica thread: `y = 2x + 1` over `f32`
/// scalars. It records the inputs of every forward pass as the pass starts, fails a
/// batch that holds a negative input, and when gated finishes a pass only once the test
/// grants one (or drops its grants).
pub(crate) struct TestModel {
    /// Permits for gated passes; dropped before the pool, so that its threads can end.
    grants: Option<Sender<()>>,
    pool: ReplicaPool,
    /// Every forward pass's inputs.
    pub(crate) passes: Passes,
    /// The node's batch counters, shared by its replica and its operator.
    pub(crate) stats: Arc<BatchStats>,
    /// Builds the model's kernels (the replica's, and a worker's computing inline).
    pub(crate) factory: KernelFactory,
}

struct Linear {
    passes: Passes,
    gate: Option<Receiver<()>>,
}

impl BatchKernel for Linear {
    fn forward(&mut self, inputs: Vec<Column>) -> Result<Vec<Column>, KernelError> {
        let x = f32s(&crate::kernel::single_input("test model", inputs)?);
        self.passes.lock().unwrap().push(x.clone());
        if let Some(gate) = &self.gate {
            // Granted, or the test is over.
            let _ = gate.recv();
        }
        if x.iter().any(|x| *x < 0.0) {
            return Err("a negative input".into());
        }
        Ok(vec![Column::F32(x.iter().map(|x| 2.0 * x + 1.0).collect())])
    }
}

impl TestModel {
    /// Starts the model for batches of up to `max_batch_size` rows.
    pub(crate) fn start(max_batch_size: usize) -> TestModel {
        TestModel::build(max_batch_size, None)
    }

    /// Starts a gated model: see [`TestModel::grants`].
    pub(crate) fn gated(max_batch_size: usize) -> TestModel {
        let (grants, gate) = bounded(16);
        TestModel::build(max_batch_size, Some((grants, gate)))
    }

    fn build(max_batch_size: usize, gate: Option<(Sender<()>, Receiver<()>)>) -> TestModel {
        let passes = Passes::default();
        let stats = Arc::new(BatchStats::new(max_batch_size));
        let (grants, gate) = gate.unzip();
        let kernel_passes = Arc::clone(&passes);
        let factory: KernelFactory = Arc::new(move || {
            Ok(Box::new(Linear { passes: Arc::clone(&kernel_passes), gate: gate.clone() }) as Box<dyn BatchKernel>)
        });
        let pool = ReplicaPool::start("m", 1, 4, Arc::clone(&factory), Arc::clone(&stats)).unwrap();
        TestModel { grants, pool, passes, stats, factory }
    }

    /// A sender of the job queue and the stats, for an operator.
    pub(crate) fn handles(&self) -> (Sender<Job>, Arc<BatchStats>) {
        (self.pool.sender(), Arc::clone(&self.stats))
    }

    /// Lets a gated model finish passes: one per message sent.
    pub(crate) fn grants(&self) -> Sender<()> {
        self.grants.clone().expect("a gated model")
    }

    /// The inputs of the forward passes so far.
    pub(crate) fn passes(&self) -> Vec<Vec<f32>> {
        self.passes.lock().unwrap().clone()
    }
}

/// What a captured stream carried: each item with its time, in the order they came.
pub(crate) fn captured<D>(
    events: std::sync::mpsc::Receiver<timely::dataflow::operators::capture::Event<Time, Vec<D>>>,
) -> Vec<(Time, D)> {
    use timely::dataflow::operators::capture::Event;
    events
        .iter()
        .flat_map(|event| match event {
            Event::Messages(stamp, items) => {
                let time = *stamp.expect_singleton();
                items.into_iter().map(|item| (time, item)).collect()
            }
            Event::Progress(_) => Vec::new(),
        })
        .collect()
}
