//! The operator of `combine` nodes: an ensemble that joins branches per row.
//!
//! Each input stream carries every row of the node's route context exactly once (fan-out
//! branches never drop rows: failures travel as failed rows). The operator keeps, per
//! submission (`slot`), the chunks each input has delivered; as soon as every input holds
//! the same rows of that submission, it joins them: the first input's fields, then the
//! fields only the others have (columns shared, not copied), and appends the aggregate
//! of the part values. Usually each branch returns the submission's chunk whole and the
//! join is a comparison of ids; where a route inside a branch split the chunk, the
//! pieces are gathered and put in row order first. A row that failed in any input fails
//! with the error of the first failed input in input order: never a silent partial
//! answer. State holds only submissions with parts still missing, so it is bounded by
//! the rows in flight.

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::Arc;
use std::time::Instant;

use timely::dataflow::channels::pact::Pipeline;
use timely::dataflow::operators::generic::builder_rc::OperatorBuilder;
use timely::dataflow::operators::generic::OutputBuilder;
use timely::progress::operate::FrontierInterest;

use super::map::map_in_place;
use super::vec_builder::VecBuilder;
use super::{RowStream, Time};
use crate::chunk::Chunk;
use crate::column::Column;
use crate::id_map::IdMap;
use crate::kernel::aggregate::Aggregate;
use crate::node_stats::NodeStats;
use crate::row::{panic_message, RowError};
use crate::value::{FieldType, Value};

/// How a combine node joins and aggregates.
#[derive(Clone, Debug)]
pub struct CombineSpec {
    /// The node's name, for errors.
    pub node: Arc<str>,
    /// For inputs after the first, the indices of their fields to append to the first
    /// input's fields to form the joined record.
    pub extra_fields: Vec<Vec<usize>>,
    /// Indices, in the joined record, of the values to aggregate.
    pub parts: Vec<usize>,
    /// The aggregation.
    pub aggregate: Aggregate,
    /// The declared output type (checked for custom aggregations).
    pub output: FieldType,
}

/// Extension trait: join streams per row and aggregate.
///
/// # Examples
///
/// A stream joined with a copy of itself: each row's field and its copy, summed.
///
/// ```
/// use timely::dataflow::operators::capture::{Capture, Event};
/// use timely::dataflow::operators::ToStream;
/// use weir_operators::dataflow::{CombineRows, CombineSpec, RowStream};
/// use weir_operators::kernel::aggregate::Aggregate;
/// use weir_operators::node_stats::NodeStats;
/// use weir_operators::{Chunk, Column, DType, FieldType};
///
/// let spec = CombineSpec {
///     node: "twice".into(),
///     extra_fields: vec![vec![0]],
///     parts: vec![0, 1],
///     aggregate: Aggregate::Sum,
///     output: FieldType::scalar(DType::F32),
/// };
/// let captured = timely::example(move |scope| {
///     let chunk = Chunk::new(0, vec![1, 2], vec![Column::F32(vec![1.5, 4.0])]);
///     let rows: RowStream = vec![chunk].to_stream(scope);
///     rows.clone().combine_rows(vec![rows], spec, NodeStats::new()).capture()
/// });
/// let chunks: Vec<Chunk> = captured
///     .iter()
///     .flat_map(|event| match event {
///         Event::Messages(_, chunks) => chunks,
///         Event::Progress(_) => Vec::new(),
///     })
///     .collect();
/// // The joined fields (the first input's, then the copy), then the sum.
/// assert_eq!(chunks.len(), 1);
/// assert_eq!(*chunks[0].columns[2], Column::F32(vec![3.0, 8.0]));
/// ```
pub trait CombineRows<'scope> {
    /// Joins `self` with `others` (each row once on each) and appends the aggregate.
    /// The rows taken (of every input) and given, and the time, count in `stats`.
    fn combine_rows(
        self,
        others: Vec<RowStream<'scope>>,
        spec: CombineSpec,
        stats: Arc<NodeStats>,
    ) -> RowStream<'scope>;
}

impl<'scope> CombineRows<'scope> for RowStream<'scope> {
    fn combine_rows(
        self,
        others: Vec<RowStream<'scope>>,
        spec: CombineSpec,
        stats: Arc<NodeStats>,
    ) -> RowStream<'scope> {
        if others.is_empty() {
            let name = format!("Combine({})", spec.node);
            return map_in_place(self, &name, move |chunk: Chunk| {
                let started = Instant::now();
                let out = aggregate(&spec, chunk);
                stats.record(out.len(), out.len(), started);
                out
            });
        }
        // One operator reads every input directly (no tagging and merging of the streams
        // first: each such step would move every chunk once more).
        let n = others.len() + 1;
        let mut builder = OperatorBuilder::new(format!("Combine({})", spec.node), self.scope());
        let mut inputs: Vec<_> = std::iter::once(self).chain(others).map(|s| builder.new_input(s, Pipeline)).collect();
        for i in 0..n {
            builder.set_notify_for(i, FrontierInterest::Never);
        }
        let (output, stream) = builder.new_output::<Vec<Chunk>>();
        let mut output: OutputBuilder<Time, VecBuilder<Chunk>> = OutputBuilder::from(output);
        builder.build(move |_capabilities| {
            // Per submission, per input, the chunks received and not yet joined.
            let mut pending: IdMap<Vec<Vec<Chunk>>> = IdMap::default();
            move |_frontiers| {
                let started = Instant::now();
                let (mut rows_in, mut rows_out) = (0, 0);
                let mut output = output.activate();
                for (i, input) in inputs.iter_mut().enumerate() {
                    input.for_each_stamp(|cap, data| {
                        let mut session = output.session_with_builder(&cap);
                        for chunk in data.flat_map(|d| d.drain(..)) {
                            let slot = chunk.slot;
                            rows_in += chunk.len();
                            let parts = pending.entry(slot).or_insert_with(|| vec![Vec::new(); n]);
                            parts[i].push(chunk);
                            if let Some(aligned) = align(parts) {
                                if parts.iter().all(Vec::is_empty) {
                                    pending.remove(&slot);
                                }
                                let out = aggregate(&spec, join(&spec, aligned));
                                rows_out += out.len();
                                session.give(out);
                            }
                        }
                    });
                }
                if rows_in > 0 {
                    stats.record(rows_in, rows_out, started);
                }
            }
        });
        stream
    }
}

/// If every input holds the same rows, takes one chunk per input, all with the rows in
/// the same order; otherwise leaves `parts` as they are (in a form quicker to compare).
fn align(parts: &mut [Vec<Chunk>]) -> Option<Vec<Chunk>> {
    if parts.iter().any(Vec::is_empty) {
        return None;
    }
    let count = |p: &Vec<Chunk>| p.iter().map(Chunk::len).sum::<usize>();
    let rows = count(&parts[0]);
    if parts.iter().any(|p| count(p) != rows) {
        return None;
    }
    // Usual case: each branch returned the submission's chunk whole.
    if parts.iter().all(|p| p.len() == 1 && p[0].ids == parts[0][0].ids) {
        return Some(parts.iter_mut().map(|p| p.remove(0)).collect());
    }
    // Pieces: one chunk per input, rows in id order, then compare.
    for p in parts.iter_mut() {
        if p.len() > 1 || !p[0].ids.is_sorted() {
            let mut whole = p.remove(0);
            for piece in p.drain(..) {
                whole.append(&piece);
            }
            let mut order: Vec<usize> = (0..whole.len()).collect();
            order.sort_unstable_by_key(|&r| whole.ids[r]);
            p.push(whole.gather(&order));
        }
    }
    if parts.iter().all(|p| p[0].ids == parts[0][0].ids) {
        Some(parts.iter_mut().map(|p| p.remove(0)).collect())
    } else {
        None
    }
}

/// Joins aligned chunks (same rows, same order) into the first one's layout plus the
/// others' extra fields; a row failed anywhere fails with the first input's error.
fn join(spec: &CombineSpec, aligned: Vec<Chunk>) -> Chunk {
    let mut inputs = aligned.into_iter();
    let Some(mut joined) = inputs.next() else {
        return Chunk::new(0, Vec::new(), Vec::new());
    };
    for (other, extra) in inputs.zip(&spec.extra_fields) {
        for (row, error) in other.errors.iter().enumerate() {
            if let Some(error) = error {
                joined.fail(row, Arc::clone(error));
            }
        }
        joined.columns.extend(extra.iter().map(|&f| Arc::clone(&other.columns[f])));
    }
    joined
}

/// Appends the aggregate of the parts to a joined chunk.
fn aggregate(spec: &CombineSpec, mut chunk: Chunk) -> Chunk {
    let parts: Vec<&Column> = spec.parts.iter().map(|&i| &*chunk.columns[i]).collect();
    let column = match spec.aggregate.apply_columns(&parts) {
        Some(column) => column,
        None => {
            let mut column = Column::with_capacity(&spec.output, chunk.len());
            let mut failures = Vec::new();
            for row in 0..chunk.len() {
                if !chunk.is_ok(row) {
                    column.push_fillers(1);
                    continue;
                }
                match by_row(spec, &parts, row) {
                    Ok(value) => {
                        column.push(&value);
                    }
                    Err(message) => {
                        column.push_fillers(1);
                        failures.push((row, message));
                    }
                }
            }
            for (row, message) in failures {
                chunk.fail(row, Arc::new(RowError::node_failed(&*spec.node, message)));
            }
            column
        }
    };
    chunk.columns.push(Arc::new(column));
    chunk
}

/// The aggregate of one row's parts, checked against the declared type.
fn by_row(spec: &CombineSpec, parts: &[&Column], row: usize) -> Result<Value, String> {
    let values: Vec<Value> = parts.iter().map(|c| c.value(row)).collect();
    let refs: Vec<&Value> = values.iter().collect();
    match catch_unwind(AssertUnwindSafe(|| spec.aggregate.apply(&refs))) {
        Ok(Ok(value)) if value.conforms_to(&spec.output) => Ok(value),
        Ok(Ok(value)) => {
            Err(format!("the aggregate returned {}, the node declares {}", value.type_name(), spec.output))
        }
        Ok(Err(message)) => Err(message),
        Err(panic) => Err(format!("the aggregate panicked: {}", panic_message(&*panic))),
    }
}

#[cfg(test)]
mod tests {
    use crate::row::ErrorCode;
    use timely::dataflow::operators::core::Concat;

    use super::*;
    use crate::dataflow::testing::{errors, f32_chunk, f32s, of_slot, run};
    use crate::dataflow::{MapRows, RouteRows};
    use crate::kernel::condition::Condition;
    use crate::kernel::MapKernel;
    use crate::value::DType;

    fn f32_field() -> Vec<FieldType> {
        vec![FieldType::scalar(DType::F32)]
    }

    /// A map of one `f32` field to one.
    fn rowwise(f: impl Fn(f32) -> Result<f32, String> + Send + Sync + 'static) -> MapKernel {
        MapKernel::Rows(Arc::new(move |args: &[&Value]| match args[0] {
            Value::F32(x) => f(*x).map(|y| vec![Value::F32(y)]),
            other => Err(format!("not an f32: {other}")),
        }))
    }

    /// Combines field `parts` of the joined record (the first input's fields, then field 1
    /// of the second input) with `aggregate`.
    fn spec(parts: Vec<usize>, aggregate: Aggregate) -> CombineSpec {
        let output = FieldType::scalar(DType::F32);
        CombineSpec { node: "c".into(), extra_fields: vec![vec![1]], parts, aggregate, output }
    }

    #[test]
    fn branches_join_per_row_and_a_row_failed_in_any_fails() {
        let inputs = vec![(0, f32_chunk(1, &[1., 2., 3., 4.])), (0, f32_chunk(2, &[0.5]))];
        let out = run(inputs, |_, rows| {
            let a_fails_at_3 = rowwise(|x| if x == 3.0 { Err("a: 3".into()) } else { Ok(2.0 * x) });
            let b_fails_from_3 = rowwise(|x| if x >= 3.0 { Err("b: 3 or more".into()) } else { Ok(x + 1.0) });
            let a = rows.clone().map_rows("a".into(), vec![0], f32_field(), a_fails_at_3, NodeStats::new());
            let b = rows.map_rows("b".into(), vec![0], f32_field(), b_fails_from_3, NodeStats::new());
            a.combine_rows(vec![b], spec(vec![1, 2], Aggregate::Mean), NodeStats::new())
        });
        assert_eq!(out.len(), 2, "one joined chunk per submission");
        let joined = of_slot(&out, 1);
        // x, a's output, b's output, the mean.
        assert_eq!(joined.ids, vec![100, 101, 102, 103]);
        assert_eq!(joined.columns.len(), 4);
        assert_eq!(f32s(&joined.columns[3])[..2], [2.0, 3.5]);
        // Failed in both: the first input's error; failed in b only: b's.
        let failed = |node: &str| Some((ErrorCode::NodeFailed, node.to_string()));
        assert_eq!(errors(joined), vec![None, None, failed("a"), failed("b")]);
        assert_eq!(f32s(&of_slot(&out, 2).columns[3]), vec![1.25]);
    }

    #[test]
    fn pieces_of_a_split_branch_are_joined_in_row_order() {
        let inputs = vec![(0, f32_chunk(1, &[0., 1., 2., 3.])), (1, f32_chunk(2, &[5., 0.]))];
        let out = run(inputs, |_, rows| {
            // The second branch splits each chunk by a route and sends the high rows first.
            let mut pieces = rows.clone().route_rows(0, vec![Condition::Lt(2.0)], NodeStats::new()).into_iter();
            let (low, high) = (pieces.next().unwrap(), pieces.next().unwrap());
            let plus_one =
                high.concat(low).map_rows("b".into(), vec![0], f32_field(), rowwise(|x| Ok(x + 1.0)), NodeStats::new());
            rows.combine_rows(vec![plus_one], spec(vec![0, 1], Aggregate::Sum), NodeStats::new())
        });
        let got: Vec<(Time, Vec<u64>, Vec<f32>)> =
            out.iter().map(|(t, c)| (*t, c.ids.clone(), f32s(&c.columns[2]))).collect();
        assert_eq!(got, vec![(0, vec![100, 101, 102, 103], vec![1., 3., 5., 7.]), (1, vec![200, 201], vec![11., 1.])]);
    }
}
