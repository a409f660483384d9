//! The size of a table: how many keys it holds, for the engine's metrics.
//!
//! Every worker's instance reads the batches its part of the table
//! ([`super::ArrangeTable`]) takes in and adds their net change in keys to one shared
//! counter: after every batch so far, the counter is the number of keys with a row.
//! Between two workers' batches of one time it may be off by what one of them has not
//! yet added.

use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::Arc;

use differential_dataflow::trace::{Cursor, Navigable};
use timely::dataflow::channels::pact::Pipeline;
use timely::dataflow::operators::generic::Operator;

use super::arrange::TableArrangement;

/// Extension trait: count a table's keys.
pub trait CountKeys {
    /// Adds the change in the number of keys of every batch of the table to `keys`
    /// (shared by every worker's instance).
    ///
    /// # Examples
    ///
    /// ```
    /// use std::sync::atomic::{AtomicI64, Ordering};
    /// use std::sync::Arc;
    ///
    /// use timely::dataflow::operators::ToStream;
    /// use weir_operators::dataflow::{ArrangeTable, CountKeys, TableUpdate};
    /// use weir_operators::table::{TableKey, TableRow};
    /// use weir_operators::Value;
    ///
    /// let keys = Arc::new(AtomicI64::new(0));
    /// let counter = Arc::clone(&keys);
    /// timely::example(move |scope| {
    ///     let row = || Some(TableRow::new(vec![Value::I64(7)]));
    ///     let updates: Vec<TableUpdate> =
    ///         vec![(TableKey::I64(1), row(), 0), (TableKey::I64(2), row(), 0), (TableKey::I64(3), row(), 1)];
    ///     updates.to_stream(scope).arrange_table("accounts").count_keys(counter);
    /// });
    /// assert_eq!(keys.load(Ordering::Relaxed), 3);
    /// ```
    fn count_keys(&self, keys: Arc<AtomicI64>);
}

impl CountKeys for TableArrangement<'_> {
    fn count_keys(&self, keys: Arc<AtomicI64>) {
        self.stream.clone().sink(Pipeline, "TableKeys", move |(input, _frontier)| {
            input.for_each(|_, spans| {
                let mut change = 0isize;
                for span in spans.iter() {
                    let Some(batch) = &span.inner else { continue };
                    let mut cursor = batch.cursor();
                    while cursor.key_valid(batch) {
                        while cursor.val_valid(batch) {
                            cursor.map_times(batch, |_, d| change += *d);
                            cursor.step_val(batch);
                        }
                        cursor.step_key(batch);
                    }
                }
                keys.fetch_add(change as i64, Ordering::Relaxed);
            });
        });
    }
}

#[cfg(test)]
mod tests {
    use timely::dataflow::operators::Input;

    use super::*;
    use crate::dataflow::{ArrangeTable, TableUpdate, Time};
    use crate::table::{TableKey, TableRow};
    use crate::value::Value;

    #[test]
    fn the_key_count_is_what_the_table_holds_at_one_and_two_workers() {
        for workers in [1, 2] {
            let keys = Arc::new(AtomicI64::new(0));
            let counter = Arc::clone(&keys);
            timely::execute(timely::Config::process(workers), move |worker| {
                let counter = Arc::clone(&counter);
                let mut updates = worker.dataflow::<Time, _, _>(move |scope| {
                    let (updates, stream) = scope.new_input::<Vec<TableUpdate>>();
                    stream.arrange_table("accounts").count_keys(counter);
                    updates
                });
                if worker.index() != 0 {
                    return;
                }
                let key = |k: &str| TableKey::Str(k.into());
                let row = |v: f32| Some(TableRow::new(vec![Value::F32(v)]));
                // a and b in, a updated, a deleted: b is left.
                updates.send((key("a"), row(1.0), 0));
                updates.send((key("b"), row(5.0), 0));
                updates.advance_to(1);
                updates.send((key("a"), row(2.0), 1));
                updates.advance_to(2);
                updates.send((key("a"), None, 2));
            })
            .expect("timely runs");
            assert_eq!(keys.load(Ordering::Relaxed), 1, "{workers} workers");
        }
    }
}
