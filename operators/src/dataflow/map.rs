//! The operator of `map` nodes: a row function applied inline on the worker.
//!
//! The function sees the values of the node's input fields and returns its output
//! fields, which are appended to the row. An `Err`, a panic, or outputs of the wrong
//! number or type turn the row into an error row naming the node; the operator goes on.
//! Map functions are meant to be cheap (business logic); heavy work belongs in a model
//! node, which runs on replica threads.

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::Arc;

use timely::dataflow::operators::core::Map;

use super::RowStream;
use crate::kernel::MapFn;
use crate::row::{panic_message, ErrorCode, Row, RowError};
use crate::value::{FieldType, Value};

/// Extension trait: apply a map node's function to every row.
pub trait MapRows<'scope> {
    /// Appends `f(inputs)` to each row; `outputs` are the declared output types.
    fn map_rows(self, node: Arc<str>, inputs: Vec<usize>, outputs: Vec<FieldType>, f: MapFn) -> RowStream<'scope>;
}

impl<'scope> MapRows<'scope> for RowStream<'scope> {
    fn map_rows(self, node: Arc<str>, inputs: Vec<usize>, outputs: Vec<FieldType>, f: MapFn) -> RowStream<'scope> {
        self.map(move |row: Row| {
            let Row { id, data, deadline } = row;
            let data = data.and_then(|mut values| match apply(&node, &inputs, &outputs, &f, &values) {
                Ok(out) => {
                    values.extend(out);
                    Ok(values)
                }
                Err(e) => Err(Arc::new(e)),
            });
            Row { id, data, deadline }
        })
    }
}

/// Fills unused argument slots; never passed to a function.
static PLACEHOLDER: Value = Value::Bool(false);

fn apply(
    node: &str,
    inputs: &[usize],
    outputs: &[FieldType],
    f: &MapFn,
    values: &[Value],
) -> Result<Vec<Value>, RowError> {
    // Up to four arguments on the stack: a map runs once per row.
    let mut few = [&PLACEHOLDER; 4];
    let many: Vec<&Value>;
    let args: &[&Value] = if inputs.len() <= few.len() {
        for (slot, &i) in few.iter_mut().zip(inputs) {
            *slot = &values[i];
        }
        &few[..inputs.len()]
    } else {
        many = inputs.iter().map(|&i| &values[i]).collect();
        &many
    };
    let out = match catch_unwind(AssertUnwindSafe(|| f(args))) {
        Ok(Ok(out)) => out,
        Ok(Err(message)) => return Err(RowError::new(ErrorCode::NodeFailed, node, message)),
        Err(panic) => {
            return Err(RowError::new(ErrorCode::NodeFailed, node, format!("panicked: {}", panic_message(&*panic))))
        }
    };
    if out.len() != outputs.len() {
        return Err(RowError::new(
            ErrorCode::NodeFailed,
            node,
            format!("returned {} values, the node declares {} outputs", out.len(), outputs.len()),
        ));
    }
    if let Some(i) = out.iter().zip(outputs).position(|(v, ty)| !v.conforms_to(ty)) {
        return Err(RowError::new(
            ErrorCode::NodeFailed,
            node,
            format!("output {i} is {}, the node declares {}", out[i].type_name(), outputs[i]),
        ));
    }
    Ok(out)
}
