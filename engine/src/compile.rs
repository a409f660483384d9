//! Compilation: a [`Plan`] becomes timely operators inside a worker's dataflow.
//!
//! Each step becomes one operator (see `weir_operators::dataflow`), wired to the streams
//! it reads; fan-out is a stream read by several steps. The result is the stream of
//! chunks the outputs read; the sink keeps their output columns. [`build_graph`] wires
//! a whole graph on one worker: sources, steps, sink.

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use std::path::PathBuf;

use crossbeam_channel::Sender;
use timely::dataflow::operators::vec::{Broadcast, Map};
use timely::dataflow::operators::{ConnectLoop, Exchange, Feedback, Inspect};
use timely::worker::Worker;
use weir_operators::dataflow::inline::InlineFactory;
use weir_operators::dataflow::policy::BatchPolicy;
use weir_operators::dataflow::sink::SinkRows;
use weir_operators::dataflow::source::RowSource;
use weir_operators::dataflow::{
    BatchConfig, BatchForward, CheckpointFn, CombineRows, FeedbackLabels, Labels, LearnConfig, LearnInPlace,
    LearnOnline, LookupConfig, LookupRows, MapRows, MergeRows, PredictConfig, PredictOnline, PredictionSamples,
    RouteRows, RowStream, SplitFound, TableRef,
};
use weir_operators::kernel::checkpoint;
use weir_operators::kernel::learn::Weights;
use weir_operators::kernel::learner::Learner;
use weir_operators::learn_stats::LearnStats;
use weir_operators::node_stats::NodeStats;
use weir_operators::replica::Job;
use weir_operators::stats::BatchStats;
use weir_operators::Chunk;

use crate::cluster::Placement;
use crate::handle::Graph;
use crate::plan::{Plan, StepOp, StreamId};
use crate::spec::LearnSpec;
use crate::tables;

/// Batches a batching operator may have out per replica of its node: the next ones
/// are queued while one computes, so a replica never idles waiting for the worker to
/// wake. A replica wakes the operator once half of them are done (see `replica.rs`),
/// so the other half keeps it busy meanwhile. With more batches out, the replica spends
/// more of its time in forward passes (BENCHMARKS.md, "What was changed for speed",
/// change 7); and since each wake costs the worker a timely step, fewer, larger
/// collections pay: 32 replays faster than 16, and 16 than 8 (change 10). A result then
/// waits at most half this many forward passes to be collected, and only while its
/// replica has more work queued.
pub const BATCHES_PER_REPLICA: usize = 32;

/// What a model step's operators need from the process: its replicas' job queue and
/// its batch counters.
#[derive(Clone)]
pub struct ModelResources {
    /// The replica pool's job queue.
    pub jobs: Sender<Job>,
    /// Shared batch counters.
    pub stats: Arc<BatchStats>,
    /// The node's kernel factory, for a worker to compute cheap batches itself (CPU
    /// nodes only; see `weir_operators::dataflow::inline`).
    pub inline: Option<InlineFactory>,
}

/// What a graph's learning node needs from the process: the graph's feedback stream on
/// this worker, its counters, and whether the engine is deterministic.
pub struct LearnResources<'scope> {
    /// The feedback rows (`[key, label, features, has_features]`).
    pub feedback: RowStream<'scope>,
    /// The node's counters.
    pub stats: Arc<LearnStats>,
    /// The engine is deterministic: the node predicts and learns in one operator on
    /// worker 0 (`LearnInPlace`) instead of around the feedback loop.
    pub deterministic: bool,
    /// Where the graph's rows are answered: a deterministic engine of several workers
    /// learns on worker 0, then sends each row to its submission's home worker.
    pub placement: Placement,
}

/// Builds `plan` on `input` and returns the stream the outputs read (project its chunks
/// to the plan's output indices to get answers). `models` holds the
/// resources of every model step, by step index; `learn` those of its learning step;
/// `tables` the plan's tables, in order; `nodes` every step's row and time counters, by
/// step index; `workers` is the number of workers of this
/// process (that share its cores).
pub fn compile<'scope>(
    plan: &Plan,
    input: RowStream<'scope>,
    models: &HashMap<usize, ModelResources>,
    mut learn: Option<LearnResources<'scope>>,
    tables: &[TableRef<'scope>],
    nodes: &[Arc<NodeStats>],
    workers: usize,
) -> RowStream<'scope> {
    let mut streams: HashMap<StreamId, RowStream<'scope>> = HashMap::new();
    streams.insert(StreamId::Input, input);
    for (i, step) in plan.steps.iter().enumerate() {
        // The plan lists every stream before the steps that read it.
        let mut from = step.from.iter().map(|s| streams[s].clone());
        let node: Arc<str> = step.name.as_str().into();
        match &step.op {
            StepOp::Model { inputs, outputs, batching, .. } => {
                let res = &models[&i];
                let config = BatchConfig {
                    node,
                    inputs: inputs.clone(),
                    outputs: outputs.clone(),
                    max_batch_size: batching.max_batch_size,
                    policy: match batching.max_wait_ms {
                        None => BatchPolicy::Adaptive,
                        Some(ms) => BatchPolicy::Fixed(Duration::from_millis(ms)),
                    },
                    replicas: batching.replicas,
                    max_in_flight: BATCHES_PER_REPLICA * batching.replicas,
                    inline: res.inline.clone(),
                    inline_under_load: workers >= crate::cores(),
                };
                let out = first(&mut from).batch_forward(config, res.jobs.clone(), Arc::clone(&res.stats));
                streams.insert(StreamId::Node(i), out);
            }
            StepOp::Learn { input, key, learner, spec, checkpoint, .. } => {
                let Some(res) = learn.take() else {
                    // The engine gives every graph with a learning step its feedback.
                    tracing::error!(node = &*node, "a learning node without a feedback stream");
                    continue;
                };
                let out = learning_node(
                    first(&mut from),
                    res,
                    LearnParts {
                        node,
                        input: *input,
                        key: *key,
                        learner,
                        spec,
                        checkpoint: checkpoint.as_ref(),
                        stats: &nodes[i],
                    },
                );
                streams.insert(StreamId::Node(i), out);
            }
            StepOp::Map { inputs, outputs, f, .. } => {
                let out =
                    first(&mut from).map_rows(node, inputs.clone(), outputs.clone(), f.clone(), Arc::clone(&nodes[i]));
                streams.insert(StreamId::Node(i), out);
            }
            StepOp::Route { by, conditions, .. } => {
                for (b, out) in
                    first(&mut from).route_rows(*by, conditions.clone(), Arc::clone(&nodes[i])).into_iter().enumerate()
                {
                    streams.insert(StreamId::Branch(i, b), out);
                }
            }
            StepOp::Combine(spec) => {
                let head = first(&mut from);
                let out = head.combine_rows(from.collect(), spec.clone(), Arc::clone(&nodes[i]));
                streams.insert(StreamId::Node(i), out);
            }
            StepOp::Lookup { table, key, values, missing, branches } => {
                let Some(arranged) = tables.get(*table) else {
                    // The engine builds every table of the plan on every worker.
                    tracing::error!(node = &*node, "a lookup without its table");
                    continue;
                };
                let config = LookupConfig {
                    node,
                    table: plan.tables[*table].name.as_str().into(),
                    key: *key,
                    values: values.clone(),
                    missing: missing.clone(),
                    stats: Arc::clone(&nodes[i]),
                };
                let joined = first(&mut from).lookup_rows(arranged, config);
                if branches.is_empty() {
                    streams.insert(StreamId::Node(i), joined);
                } else {
                    // `missing: route`: `found` is the step's last field; the missing rows
                    // lose the (zero) value fields, which the plan's branch layout leaves out.
                    let found = plan.steps[i].schema.fields.len() - 1;
                    let (hit, miss) = joined.split_found(found, values.len());
                    streams.insert(StreamId::Branch(i, 0), hit);
                    streams.insert(StreamId::Branch(i, 1), miss);
                }
            }
            StepOp::Merge { layouts } => {
                let head = first(&mut from);
                let out = head.merge_rows(from.collect(), layouts.clone(), Arc::clone(&nodes[i]));
                streams.insert(StreamId::Node(i), out);
            }
        }
    }
    streams[&plan.output.stream].clone()
}

/// A learning step's parts from the plan.
struct LearnParts<'a> {
    node: Arc<str>,
    input: usize,
    key: Option<usize>,
    learner: &'a Learner,
    spec: &'a LearnSpec,
    checkpoint: Option<&'a PathBuf>,
    /// Where the node's predictions count.
    stats: &'a Arc<NodeStats>,
}

/// The cycle of a learning node: its predict operator reads the weights its learner
/// sends around a feedback loop (one time step later), and the learner reads the
/// node's predictions and the graph's feedback.
///
/// A deterministic engine needs no loop: the node's rows and feedback go to worker 0
/// (where the cycle's learner lives too), and one operator there predicts and learns
/// each time in turn, row by row (`LearnInPlace`), with the same answers at any number
/// of workers and processes; its answers then go to the worker that answers their
/// submission (`Placement::home`, in the process it entered at), so the steps after it
/// run on every worker of that process, and the answers cross no more processes than
/// they would have from worker 0.
fn learning_node<'scope>(rows: RowStream<'scope>, res: LearnResources<'scope>, p: LearnParts<'_>) -> RowStream<'scope> {
    let scope = rows.scope();
    let feedback = res.feedback.feedback_labels();
    let checkpoint = p.checkpoint.map(|dir| {
        let dir = dir.clone();
        let save: CheckpointFn =
            Arc::new(move |learner: &Learner| checkpoint::save(learner, &dir).map_err(|e| e.to_string()));
        (p.spec.checkpoint.as_ref().map_or(1, |c| c.every), save)
    });
    let config = LearnConfig {
        node: Arc::clone(&p.node),
        learner: p.learner.clone(),
        keep_rows: p.spec.keep_rows,
        keep_for: p.spec.keep_ms.map(Duration::from_millis),
        update_every_ms: p.spec.update_every_ms.map(Duration::from_millis),
        stats: res.stats,
        checkpoint,
    };
    if res.deterministic {
        if scope.peers() == 1 {
            return rows.learn_in_place(feedback, p.key, p.input, config, Arc::clone(p.stats));
        }
        let (rows, feedback) = (rows.exchange(|_: &Chunk| 0), feedback.exchange(|_: &Labels| 0));
        // The steps after this one run on every worker of the rows' process again.
        let placement = res.placement;
        return rows
            .learn_in_place(feedback, p.key, p.input, config, Arc::clone(p.stats))
            .exchange(move |c: &Chunk| placement.home(c.slot));
    }
    let (handle, weights) = scope.feedback::<Vec<Arc<Weights>>>(1);
    let predicted = rows.predict_online(
        weights,
        PredictConfig {
            node: p.node,
            input: p.input,
            initial: Arc::new(p.learner.weights()),
            stats: Arc::clone(p.stats),
        },
    );
    let samples = predicted.clone().prediction_samples(p.key, p.input);
    let weights = samples.learn_online(feedback, config);
    // Every worker's operator needs every version; one worker needs no copies.
    if scope.peers() > 1 {
        weights.broadcast().connect_loop(handle);
    } else {
        weights.connect_loop(handle);
    }
    predicted
}

fn first<'scope>(from: &mut impl Iterator<Item = RowStream<'scope>>) -> RowStream<'scope> {
    // Every step reads at least one stream (checked by the plan).
    from.next().expect("a step reads at least one stream")
}

/// Builds `graph`'s dataflow on `worker`, on its thread, at the engine's start: the
/// graph's sources (this worker's part of each), its tables, its steps ([`compile`],
/// with `models`, each model step's replica queue),
/// and its sink, which hands each answered chunk (projected to the outputs) to the
/// graph's reply table. Every operator then runs on this worker's thread. The rows
/// source sets `drained` to the chunks each of its busy activations took.
///
/// In a cluster (`crate::cluster`) the rows are exchanged after the source to the worker
/// that computes them, anywhere in the cluster, and the answers before the sink to a
/// worker of the process they entered at, which counts the rows it computed for others.
pub(crate) fn build_graph(
    worker: &mut Worker,
    graph: &Arc<Graph>,
    models: &HashMap<usize, ModelResources>,
    deterministic: bool,
    drained: &Arc<AtomicUsize>,
) {
    let placement = graph.placement;
    let index = placement.local(worker.index());
    let ingress = &graph.ingress;
    let (shutdown, clock) = (&ingress.shutdown, ingress.clock.as_ref());
    let Some(rows) = ingress.rows.feed(index, shutdown, clock, Some(Arc::clone(drained))) else { return };
    worker.dataflow_named::<u64, _, _>(&graph.plan.name, |scope| {
        let mut input = scope.row_source("Input", rows);
        if placement.processes > 1 {
            let peers = Arc::clone(&graph.rows_from_peers);
            input = input.exchange(move |c: &Chunk| placement.spread(c.slot)).inspect(move |c: &Chunk| {
                if placement.origin(c.slot) != placement.process {
                    peers.fetch_add(c.len() as u64, Ordering::Relaxed);
                }
            });
        }
        let tables: Vec<_> = ingress
            .tables
            .iter()
            .filter_map(|t| tables::table_dataflow(scope, t, index, shutdown, clock, drained))
            .collect();
        let learn = ingress.feedback.as_ref().and_then(|fb| {
            Some(LearnResources {
                feedback: scope.row_source("Feedback", fb.source.feed(index, shutdown, clock, None)?),
                stats: Arc::clone(&fb.stats),
                deterministic,
                placement,
            })
        });
        let outputs: Vec<usize> = graph.plan.output.fields.iter().map(|(_, i, _)| *i).collect();
        let answered = Arc::clone(graph);
        let mut answers = compile(&graph.plan, input, models, learn, &tables, &graph.nodes, placement.threads);
        // In a cluster only the output columns travel back to the origin.
        let cluster = placement.processes > 1;
        if cluster {
            let outputs = outputs.clone();
            answers =
                answers.map(move |c: Chunk| c.project(&outputs)).exchange(move |c: &Chunk| placement.home(c.slot));
        }
        answers.sink_rows("Output", move |chunks: &mut Vec<Chunk>| {
            for chunk in chunks.drain(..) {
                answered.replies.deliver(if cluster { chunk } else { chunk.project(&outputs) });
            }
        });
    });
}
