//! The operator of `map` nodes: business logic applied inline on the worker.
//!
//! A built-in runs over whole columns of a chunk; a user function runs once per row,
//! seeing the values of the node's input fields and returning its output fields. The
//! outputs become new columns of the chunk. An `Err`, a panic, or outputs of the wrong
//! number or type fail that row with an error naming the node; the operator goes on.
//! Rows that failed upstream are not computed. Map functions are meant to be cheap
//! (business logic); heavy work belongs in a model node, which runs on replica threads.

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::Arc;
use std::time::Instant;

use timely::dataflow::channels::pact::Pipeline;
use timely::dataflow::operators::generic::Operator;

use super::vec_builder::VecBuilder;
use super::RowStream;
use crate::chunk::Chunk;
use crate::column::Column;
use crate::kernel::{MapFn, MapKernel};
use crate::node_stats::NodeStats;
use crate::row::{panic_message, RowError};
use crate::value::{FieldType, Value};

/// Extension trait: apply a map node's function to every row.
///
/// # Examples
///
/// A row function that scales a field; the row it cannot compute fails, naming the node,
/// and the others go on:
///
/// ```
/// use std::sync::Arc;
///
/// use timely::dataflow::operators::capture::{Capture, Event};
/// use timely::dataflow::operators::ToStream;
/// use weir_operators::dataflow::{MapRows, RowStream};
/// use weir_operators::kernel::MapKernel;
/// use weir_operators::node_stats::NodeStats;
/// use weir_operators::{Chunk, Column, DType, ErrorCode, FieldType, Value};
///
/// let scale = MapKernel::Rows(Arc::new(|args: &[&Value]| match args[0] {
///     Value::F32(x) if *x >= 0.0 => Ok(vec![Value::F32(10.0 * x)]),
///     other => Err(format!("cannot scale {other}")),
/// }));
/// let captured = timely::example(move |scope| {
///     let chunk = Chunk::new(0, vec![1, 2], vec![Column::F32(vec![1.5, -1.0])]);
///     let rows: RowStream = vec![chunk].to_stream(scope);
///     rows.map_rows("scale".into(), vec![0], vec![FieldType::scalar(DType::F32)], scale, NodeStats::new()).capture()
/// });
/// let chunks: Vec<Chunk> = captured
///     .iter()
///     .flat_map(|event| match event {
///         Event::Messages(_, chunks) => chunks,
///         Event::Progress(_) => Vec::new(),
///     })
///     .collect();
/// assert_eq!(*chunks[0].columns[1], Column::F32(vec![15.0, 0.0]));
/// assert!(chunks[0].is_ok(0));
/// assert_eq!(chunks[0].error(1).map(|e| (e.code, e.node.as_str())), Some((ErrorCode::NodeFailed, "scale")));
/// ```
pub trait MapRows<'scope> {
    /// Appends the outputs of `kernel` on the fields `inputs` to each chunk; `outputs`
    /// are the declared output types. Each chunk's rows and time count in `stats`.
    fn map_rows(
        self,
        node: Arc<str>,
        inputs: Vec<usize>,
        outputs: Vec<FieldType>,
        kernel: MapKernel,
        stats: Arc<NodeStats>,
    ) -> RowStream<'scope>;
}

impl<'scope> MapRows<'scope> for RowStream<'scope> {
    fn map_rows(
        self,
        node: Arc<str>,
        inputs: Vec<usize>,
        outputs: Vec<FieldType>,
        kernel: MapKernel,
        stats: Arc<NodeStats>,
    ) -> RowStream<'scope> {
        let name = format!("Map({node})");
        map_in_place(self, &name, move |mut chunk: Chunk| {
            let started = Instant::now();
            let (columns, failures) = match &kernel {
                MapKernel::Builtin(b) => {
                    let args: Vec<&Column> = inputs.iter().map(|&i| &*chunk.columns[i]).collect();
                    b.apply(&args)
                }
                MapKernel::Rows(f) => by_row(&inputs, &outputs, f, &chunk),
            };
            for (row, message) in failures {
                chunk.fail(row, Arc::new(RowError::node_failed(&*node, message)));
            }
            chunk.columns.extend(columns.into_iter().map(Arc::new));
            stats.record(chunk.len(), chunk.len(), started);
            chunk
        })
    }
}

/// Applies `logic` to every chunk and passes each container on with the results in the
/// allocation that brought their inputs (collecting a `Vec`'s own `into_iter().map()`
/// reuses it): nothing is allocated for the messages (timely's `map` gives each result
/// to a new container).
pub(super) fn map_in_place<'scope>(
    stream: RowStream<'scope>,
    name: &str,
    mut logic: impl FnMut(Chunk) -> Chunk + 'static,
) -> RowStream<'scope> {
    stream.unary::<VecBuilder<Chunk>, _, _, _>(Pipeline, name, move |_, _| {
        move |input, output| {
            input.for_each_stamp(|cap, data| {
                let mut session = output.session_with_builder(&cap);
                for container in data {
                    *container = std::mem::take(container).into_iter().map(&mut logic).collect();
                    session.give_container(container);
                }
            });
        }
    })
}

/// Runs a user function on every row not yet failed; failed rows get fillers.
fn by_row(inputs: &[usize], outputs: &[FieldType], f: &MapFn, chunk: &Chunk) -> (Vec<Column>, Vec<(usize, String)>) {
    let mut columns: Vec<Column> = outputs.iter().map(|ty| Column::with_capacity(ty, chunk.len())).collect();
    let mut failures = Vec::new();
    for row in 0..chunk.len() {
        let result = if chunk.is_ok(row) { apply(outputs, f, &chunk.values(row, inputs)) } else { Ok(Vec::new()) };
        match result {
            Ok(values) if values.len() == columns.len() => {
                for (c, v) in columns.iter_mut().zip(&values) {
                    c.push(v);
                }
            }
            other => {
                if let Err(message) = other {
                    failures.push((row, message));
                }
                columns.iter_mut().for_each(|c| c.push_fillers(1));
            }
        }
    }
    (columns, failures)
}

fn apply(outputs: &[FieldType], f: &MapFn, values: &[Value]) -> Result<Vec<Value>, String> {
    let args: Vec<&Value> = values.iter().collect();
    let out = match catch_unwind(AssertUnwindSafe(|| f(&args))) {
        Ok(Ok(out)) => out,
        Ok(Err(message)) => return Err(message),
        Err(panic) => return Err(format!("panicked: {}", panic_message(&*panic))),
    };
    if out.len() != outputs.len() {
        return Err(format!("returned {} values, the node declares {} outputs", out.len(), outputs.len()));
    }
    if let Some(i) = out.iter().zip(outputs).position(|(v, ty)| !v.conforms_to(ty)) {
        return Err(format!("output {i} is {}, the node declares {}", out[i].type_name(), outputs[i]));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use crate::row::ErrorCode;
    use std::sync::atomic::{AtomicUsize, Ordering};

    use super::*;
    use crate::dataflow::testing::{errors, f32_chunk, f32s, failed_at, run};
    use crate::kernel::builtin::Builtin;
    use crate::value::DType;

    #[test]
    fn a_row_function_fails_only_its_row_and_skips_failed_rows() {
        let calls = Arc::new(AtomicUsize::new(0));
        let counted = Arc::clone(&calls);
        let f: MapFn = Arc::new(move |args: &[&Value]| {
            counted.fetch_add(1, Ordering::Relaxed);
            match args[0] {
                Value::F32(x) if *x == 99.0 => panic!("ninety-nine"),
                Value::F32(x) if *x == 7.0 => Ok(vec![Value::F32(*x), Value::F32(*x)]),
                Value::F32(x) if *x >= 0.0 => Ok(vec![Value::F32(10.0 * x)]),
                other => Err(format!("cannot scale {other}")),
            }
        });
        // Rows: computed, an Err, computed, a panic, two outputs for one, failed upstream.
        let chunk = failed_at(f32_chunk(1, &[1., -1., 2., 99., 7., 3.]), &[5]);
        let outputs = vec![FieldType::scalar(DType::F32)];
        let out = run(vec![(0, chunk)], move |_, rows| {
            rows.map_rows("scale".into(), vec![0], outputs, MapKernel::Rows(f), NodeStats::new())
        });
        let [(0, chunk)] = &out[..] else { panic!("one chunk at time 0: {out:?}") };
        let failed = Some((ErrorCode::NodeFailed, "scale".to_string()));
        let invalid = Some((ErrorCode::InvalidInput, "input".to_string()));
        assert_eq!(chunk.ids, vec![100, 101, 102, 103, 104, 105]);
        assert_eq!(errors(chunk), vec![None, failed.clone(), None, failed.clone(), failed, invalid]);
        assert_eq!(f32s(&chunk.columns[1]), vec![10., 0., 20., 0., 0., 0.]);
        assert!(chunk.error(3).is_some_and(|e| e.message.contains("ninety-nine")), "{chunk:?}");
        assert_eq!(calls.load(Ordering::Relaxed), 5, "the row failed upstream is not computed");
    }

    #[test]
    fn a_builtin_runs_over_whole_columns_and_keeps_failed_rows() {
        let threshold = MapKernel::Builtin(Builtin::Threshold { threshold: 0.5, labels: None });
        let chunks = vec![(0, f32_chunk(1, &[0.2, 0.5])), (1, failed_at(f32_chunk(2, &[0.9, 0.1]), &[0]))];
        let outputs = vec![FieldType::scalar(DType::Bool)];
        let out =
            run(chunks, move |_, rows| rows.map_rows("cut".into(), vec![0], outputs, threshold, NodeStats::new()));
        assert_eq!(out.iter().map(|(t, c)| (*t, c.slot)).collect::<Vec<_>>(), vec![(0, 1), (1, 2)]);
        assert_eq!(*out[0].1.columns[1], Column::Bool(vec![false, true]));
        assert_eq!(out[1].1.columns[1].value(1), Value::Bool(false));
        assert_eq!(errors(&out[1].1), vec![Some((ErrorCode::InvalidInput, "input".to_string())), None]);
    }
}
