//! Where a graph's tables enter: one channel per worker per table, like its rows.
//!
//! An upsert batch ([`GraphHandle::upsert`](crate::GraphHandle::upsert)) becomes a
//! chunk (the key column, one column per value field, and a `delete` column), takes
//! the graph's next clock time like any submission, and goes into one worker's channel.
//! In the dataflow a source reads it ([`RowSource`]), turns its rows into upserts at
//! the chunk's time ([`Upserts`]), and [`StoreTable`] keeps them (spread over the workers by
//! key). A graph with tables always runs with an [`EventClock`]: its rows and its
//! table updates share one order of times, which is what lets a row see exactly the
//! updates submitted before it.

use std::collections::HashMap;
use std::sync::atomic::AtomicUsize;
use std::sync::Arc;

use timely::dataflow::Scope;
use weir_operators::dataflow::clock::EventClock;
use weir_operators::dataflow::source::RowSource;
use weir_operators::dataflow::{StoreTable, TableRef, TableShape, Time, Upserts};
use weir_operators::table::TableKey;
use weir_operators::{Chunk, Column, DType, RowError, Shutdown, Value};

use crate::ingress::TableIngress;
use crate::spec::TableSpec;

/// The table on worker `index`: its source, its upserts, its part of the table. On a
/// wall clock its source sets `drained` like the rows source (see
/// `EngineConfig::idle_spin`), so that an idle tick parks the worker at once.
pub(crate) fn table_dataflow<'scope>(
    scope: Scope<'scope, Time>,
    table: &TableIngress,
    index: usize,
    shutdown: &Shutdown,
    clock: Option<&Arc<EventClock>>,
    drained: &Arc<AtomicUsize>,
) -> Option<TableRef<'scope>> {
    let spec = &table.spec;
    // Only a wall clock's ticks need it (see `weir_operators::dataflow::clock`).
    let drained = clock.filter(|c| c.is_wall()).map(|_| Arc::clone(drained));
    let feed = table.source.feed(index, shutdown, clock, drained)?;
    let source = scope.row_source(&format!("Table({})", spec.name), feed);
    let shape = TableShape {
        name: spec.name.clone(),
        int_keys: spec.key_type.dtype == DType::I64,
        values: spec.values.iter().map(|(_, t)| t.clone()).collect(),
    };
    Some(source.upserts(spec.values.len()).store_table(shape, Arc::clone(&table.keys)))
}

/// The chunk of an upsert batch: each change is a key and its new values (in the
/// table's value order), or `None` to delete the key; of several changes to one key,
/// the last. A value of the wrong type fails
/// the whole batch, naming the table, the change and the field (the caller's fault).
pub(crate) fn updates_chunk(
    spec: &TableSpec,
    slot: u64,
    changes: &[(Value, Option<Vec<Value>>)],
) -> Result<Chunk, RowError> {
    let wrong = |i: usize, field: &str, what: String| {
        RowError::invalid_input(format!("tables.{}", spec.name), format!("change {i}: {what}")).with_field(field)
    };
    // Every change is checked, then the changes of a batch share one time, where their
    // order would be lost: of several changes to one key, only the last goes in.
    let mut last = HashMap::with_capacity(changes.len());
    for (i, (k, row)) in changes.iter().enumerate() {
        let Some(table_key) = TableKey::from_value(k).filter(|_| k.conforms_to(&spec.key_type)) else {
            return Err(wrong(i, &spec.key, format!("the key is {}, not {}", k.type_name(), spec.key_type)));
        };
        if let Some(row) = row {
            if row.len() != spec.values.len() {
                return Err(wrong(i, "values", format!("{} values for {} value fields", row.len(), spec.values.len())));
            }
            if let Some(((name, ty), v)) = spec.values.iter().zip(row).find(|((_, ty), v)| !v.conforms_to(ty)) {
                return Err(wrong(i, name, format!("{} is not {ty}", v.type_name())));
            }
        }
        last.insert(table_key, i);
    }
    let mut kept: Vec<usize> = last.into_values().collect();
    kept.sort_unstable();
    let mut key = Column::with_capacity(&spec.key_type, kept.len());
    let mut values: Vec<Column> = spec.values.iter().map(|(_, t)| Column::with_capacity(t, kept.len())).collect();
    let mut delete = Vec::with_capacity(kept.len());
    for (k, row) in kept.into_iter().map(|i| &changes[i]) {
        key.push(k);
        match row {
            Some(row) => {
                for (column, v) in values.iter_mut().zip(row) {
                    column.push(v);
                }
                delete.push(false);
            }
            None => {
                for column in &mut values {
                    column.push_fillers(1);
                }
                delete.push(true);
            }
        }
    }
    let ids = (0..delete.len() as u64).collect();
    let mut columns = vec![key];
    columns.extend(values);
    columns.push(Column::Bool(delete));
    Ok(Chunk::new(slot, ids, columns))
}
