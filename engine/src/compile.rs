//! Compilation: a [`Plan`] becomes timely operators inside a worker's dataflow.
//!
//! Each step becomes one operator (see `weir_operators::dataflow`), wired to the streams
//! it reads; fan-out is a stream read by several steps. The result is the stream of
//! chunks the outputs read; the sink keeps their output columns.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use crossbeam_channel::Sender;
use weir_operators::dataflow::{merge_rows, BatchConfig, BatchForward, CombineRows, MapRows, RouteRows, RowStream};
use weir_operators::replica::Job;
use weir_operators::stats::BatchStats;
use weir_operators::FieldType;

use crate::plan::{Plan, StepOp, StreamId};

/// Batches a batching operator may have out per replica of its node: the next ones
/// are queued while one computes, so a replica never idles waiting for the worker to
/// wake. A replica wakes the operator once half of them are done (see `replica.rs`),
/// so the other half keeps it busy meanwhile. Measured on the digits MLP at batch 32
/// (`cargo bench --bench engine -- batching`): the replica spent 80-84% of the time in
/// forward passes with 4, 90-93% with 8. Each wake costs the worker a timely step, so
/// fewer, larger collections pay: `weir replay graphs/digits.yaml` over 1000000 rows ran
/// 1.1-1.35x faster with 16 than with 8, and 1.03-1.15x faster with 32 than with 16
/// (alternating runs of both builds). A result then waits at most half this many
/// forward passes to be collected, and only while its replica has more work queued.
pub const BATCHES_PER_REPLICA: usize = 32;

/// What a model step's operators need from the process: its replicas' job queue and
/// its batch counters.
#[derive(Clone)]
pub struct ModelResources {
    /// The replica pool's job queue.
    pub jobs: Sender<Job>,
    /// Shared batch counters.
    pub stats: Arc<BatchStats>,
}

/// Builds `plan` on `input` and returns the stream the outputs read (project its chunks
/// to the plan's output indices to get answers). `models` holds the
/// resources of every model step, by step index.
pub fn compile<'scope>(
    plan: &Plan,
    input: RowStream<'scope>,
    models: &HashMap<usize, ModelResources>,
) -> RowStream<'scope> {
    let scope = input.scope();
    let mut streams: HashMap<StreamId, RowStream<'scope>> = HashMap::new();
    streams.insert(StreamId::Input, input);
    for (i, step) in plan.steps.iter().enumerate() {
        // The plan lists every stream before the steps that read it.
        let mut from = step.from.iter().map(|s| streams[s].clone());
        let node: Arc<str> = step.name.as_str().into();
        match &step.op {
            StepOp::Model { input, batching, .. } => {
                let res = &models[&i];
                // A model step adds one field, its output, last in its schema.
                let output =
                    step.schema.fields.last().map(|(_, ty)| ty.clone()).unwrap_or_else(|| FieldType::vector(1));
                let config = BatchConfig {
                    node,
                    input: *input,
                    output,
                    max_batch_size: batching.max_batch_size,
                    max_wait: Duration::from_millis(batching.max_wait_ms),
                    replicas: batching.replicas,
                    max_in_flight: BATCHES_PER_REPLICA * batching.replicas,
                };
                let out = first(&mut from).batch_forward(config, res.jobs.clone(), Arc::clone(&res.stats));
                streams.insert(StreamId::Node(i), out);
            }
            StepOp::Map { inputs, outputs, f, .. } => {
                let out = first(&mut from).map_rows(node, inputs.clone(), outputs.clone(), f.clone());
                streams.insert(StreamId::Node(i), out);
            }
            StepOp::Route { by, conditions, .. } => {
                for (b, out) in first(&mut from).route_rows(*by, conditions.clone()).into_iter().enumerate() {
                    streams.insert(StreamId::Branch(i, b), out);
                }
            }
            StepOp::Combine(spec) => {
                let head = first(&mut from);
                let out = head.combine_rows(from.collect(), spec.clone());
                streams.insert(StreamId::Node(i), out);
            }
            StepOp::Merge { layouts } => {
                let out = merge_rows(scope, from.collect(), layouts.clone());
                streams.insert(StreamId::Node(i), out);
            }
        }
    }
    streams[&plan.output.stream].clone()
}

fn first<'scope>(from: &mut impl Iterator<Item = RowStream<'scope>>) -> RowStream<'scope> {
    // Every step reads at least one stream (checked by the plan).
    from.next().expect("a step reads at least one stream")
}
