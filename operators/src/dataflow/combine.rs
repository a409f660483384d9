//! The operator of `combine` nodes: an ensemble that joins branches per row.
//!
//! Each input stream carries every row of the node's route context exactly once (fan-out
//! branches never drop rows: failures travel as error rows). The operator keeps the parts
//! of a row until all have arrived, builds the joined record (the first input's fields,
//! then the fields only the others have), and appends the aggregate of the part values.
//! If any part is an error row, the row fails with the error of the first failed input
//! in input order: never a silent partial answer. State holds only rows with parts still
//! missing, so it is bounded by the rows in flight.

use std::collections::HashMap;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::Arc;

use timely::dataflow::channels::pact::Pipeline;
use timely::dataflow::operators::core::{Concatenate, Map};
use timely::dataflow::operators::generic::Operator;

use timely::dataflow::Stream;

use super::{RowStream, Time};
use crate::kernel::aggregate::Aggregate;
use crate::row::{panic_message, ErrorCode, Row, RowError, RowId};
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
pub trait CombineRows<'scope> {
    /// Joins `self` with `others` (one row per id on each) and appends the aggregate.
    fn combine_rows(self, others: Vec<RowStream<'scope>>, spec: CombineSpec) -> RowStream<'scope>;
}

impl<'scope> CombineRows<'scope> for RowStream<'scope> {
    fn combine_rows(self, others: Vec<RowStream<'scope>>, spec: CombineSpec) -> RowStream<'scope> {
        if others.is_empty() {
            return self.map(move |row: Row| {
                let deadline = row.deadline;
                finish(&spec, row.id, row.data.map(|v| vec![v]).map_err(|e| vec![e])).until(deadline)
            });
        }
        let scope = self.scope();
        let inputs = others.len() + 1;
        let tagged: Vec<Stream<'scope, Time, Vec<(usize, Row)>>> =
            std::iter::once(self).chain(others).enumerate().map(|(i, s)| s.map(move |row: Row| (i, row))).collect();
        let name = format!("Combine({})", spec.node);
        scope.concatenate(tagged).unary(Pipeline, &name, move |_cap, _info| {
            let mut pending: HashMap<RowId, Vec<Option<Row>>> = HashMap::new();
            move |input, output| {
                input.for_each_stamp(|cap, data| {
                    let mut session = output.session(&cap);
                    for (i, row) in data.flat_map(|d| d.drain(..)) {
                        let id = row.id;
                        let slots = pending.entry(id).or_insert_with(|| vec![None; inputs]);
                        slots[i] = Some(row);
                        if slots.iter().all(Option::is_some) {
                            let parts: Vec<Row> = pending.remove(&id).into_iter().flatten().flatten().collect();
                            session.give(join(&spec, id, parts));
                        }
                    }
                });
            }
        })
    }
}

/// Joins the parts of one row (one per input, in input order) and aggregates.
fn join(spec: &CombineSpec, id: RowId, parts: Vec<Row>) -> Row {
    let deadline = parts.first().and_then(|p| p.deadline);
    let mut records = Vec::with_capacity(parts.len());
    for part in parts {
        match part.data {
            Ok(values) => records.push(values),
            Err(e) => return Row { id, data: Err(e), deadline },
        }
    }
    finish(spec, id, Ok(records)).until(deadline)
}

fn finish(spec: &CombineSpec, id: RowId, records: Result<Vec<Vec<Value>>, Vec<Arc<RowError>>>) -> Row {
    let mut records = match records {
        Ok(records) => records.into_iter(),
        Err(mut errors) => return Row { id, data: Err(errors.remove(0)), deadline: None },
    };
    let Some(mut joined) = records.next() else {
        return Row::failed(id, RowError::new(ErrorCode::NodeFailed, &*spec.node, "no inputs"));
    };
    for (record, extra) in records.zip(&spec.extra_fields) {
        joined.extend(extra.iter().map(|&i| record[i].clone()));
    }
    let values: Vec<&Value> = spec.parts.iter().map(|&i| &joined[i]).collect();
    let result = catch_unwind(AssertUnwindSafe(|| spec.aggregate.apply(&values)));
    let error = |message: String| Row::failed(id, RowError::new(ErrorCode::NodeFailed, &*spec.node, message));
    match result {
        Ok(Ok(value)) if value.conforms_to(&spec.output) => {
            joined.push(value);
            Row::new(id, joined)
        }
        Ok(Ok(value)) => {
            error(format!("the aggregate returned {}, the node declares {}", value.type_name(), spec.output))
        }
        Ok(Err(message)) => error(message),
        Err(panic) => error(format!("the aggregate panicked: {}", panic_message(&*panic))),
    }
}
