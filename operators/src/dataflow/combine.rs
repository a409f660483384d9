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
use std::hash::{BuildHasherDefault, Hasher};
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::Arc;

use timely::container::CapacityContainerBuilder;
use timely::dataflow::channels::pact::Pipeline;
use timely::dataflow::operators::core::Map;
use timely::dataflow::operators::generic::builder_rc::OperatorBuilder;
use timely::dataflow::operators::generic::OutputBuilder;
use timely::progress::operate::FrontierInterest;

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
        // One operator reads every input directly (no tagging and merging of the streams
        // first: each such step would move every row once more).
        let n = others.len() + 1;
        let mut builder = OperatorBuilder::new(format!("Combine({})", spec.node), self.scope());
        let mut inputs: Vec<_> = std::iter::once(self).chain(others).map(|s| builder.new_input(s, Pipeline)).collect();
        for i in 0..n {
            builder.set_notify_for(i, FrontierInterest::Never);
        }
        let (output, stream) = builder.new_output::<Vec<Row>>();
        let mut output: OutputBuilder<Time, CapacityContainerBuilder<Vec<Row>>> = OutputBuilder::from(output);
        builder.build(move |_capabilities| {
            let mut pending: HashMap<RowId, Vec<Option<Row>>, BuildHasherDefault<IdHasher>> = HashMap::default();
            move |_frontiers| {
                let mut output = output.activate();
                for (i, input) in inputs.iter_mut().enumerate() {
                    input.for_each_stamp(|cap, data| {
                        let mut session = output.session(&cap);
                        for row in data.flat_map(|d| d.drain(..)) {
                            let id = row.id;
                            let slots = pending.entry(id).or_insert_with(|| vec![None; n]);
                            slots[i] = Some(row);
                            if slots.iter().all(Option::is_some) {
                                let parts: Vec<Row> = pending.remove(&id).into_iter().flatten().flatten().collect();
                                session.give(join(&spec, id, parts));
                            }
                        }
                    });
                }
            }
        });
        stream
    }
}

/// Hashes row ids (already unique `u64`s: `slot << 20 | index`) with one multiply,
/// instead of SipHash: the join looks every row up twice or more.
#[derive(Default)]
struct IdHasher(u64);

impl Hasher for IdHasher {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        for b in bytes {
            self.0 = (self.0 ^ u64::from(*b)).wrapping_mul(0x0100_0000_01b3);
        }
    }

    fn write_u64(&mut self, x: u64) {
        // Fibonacci hashing: spreads consecutive ids over the high bits hashbrown uses.
        self.0 = x.wrapping_mul(0x9E37_79B9_7F4A_7C15);
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
    for (mut record, extra) in records.zip(&spec.extra_fields) {
        if extra.windows(2).all(|w| w[0] < w[1]) {
            // Each value is taken once and the record dropped after: move, do not clone.
            joined.extend(extra.iter().map(|&i| std::mem::replace(&mut record[i], Value::Bool(false))));
        } else {
            joined.extend(extra.iter().map(|&i| record[i].clone()));
        }
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
