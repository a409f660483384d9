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

use timely::dataflow::operators::core::Map;

use super::RowStream;
use crate::chunk::Chunk;
use crate::column::Column;
use crate::kernel::{MapFn, MapKernel};
use crate::row::{panic_message, ErrorCode, RowError};
use crate::value::{FieldType, Value};

/// Extension trait: apply a map node's function to every row.
pub trait MapRows<'scope> {
    /// Appends the outputs of `kernel` on the fields `inputs` to each chunk; `outputs`
    /// are the declared output types.
    fn map_rows(
        self,
        node: Arc<str>,
        inputs: Vec<usize>,
        outputs: Vec<FieldType>,
        kernel: MapKernel,
    ) -> RowStream<'scope>;
}

impl<'scope> MapRows<'scope> for RowStream<'scope> {
    fn map_rows(
        self,
        node: Arc<str>,
        inputs: Vec<usize>,
        outputs: Vec<FieldType>,
        kernel: MapKernel,
    ) -> RowStream<'scope> {
        self.map(move |mut chunk: Chunk| {
            let (columns, failures) = match &kernel {
                MapKernel::Builtin(b) => {
                    let args: Vec<&Column> = inputs.iter().map(|&i| &*chunk.columns[i]).collect();
                    b.apply(&args)
                }
                MapKernel::Rows(f) => by_row(&inputs, &outputs, f, &chunk),
            };
            for (row, message) in failures {
                chunk.fail(row, Arc::new(RowError::new(ErrorCode::NodeFailed, &*node, message)));
            }
            chunk.columns.extend(columns.into_iter().map(Arc::new));
            chunk
        })
    }
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
