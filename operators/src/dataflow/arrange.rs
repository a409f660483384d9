//! A graph's table in the dataflow: upserts arranged by key.
//!
//! A stream of upserts `(key, Some(row) | None, time)` (made by [`super::Upserts`]) is
//! arranged by differential dataflow's `arrange_from_upsert`: spread over the workers by
//! key hash, the arrangement holds each key's rows with the times they changed. An
//! upsert replaces the key's row; `None` removes the key. Of several upserts to one key
//! at one time, the greatest wins (a row over `None`); the engine sends at most one per
//! key and time. Compaction is driven by the readers ([`super::LookupRows`]): the trace
//! keeps only what a pending lookup can still ask for, the current row of each key once
//! no lookup is older.

use differential_dataflow::operators::arrange::upsert::arrange_from_upsert;
use differential_dataflow::operators::arrange::{Arranged, TraceAgent};
use differential_dataflow::trace::implementations::{ValBuilder, ValSpine};
use timely::dataflow::Stream;

use super::Time;
use crate::table::{TableKey, TableRow};

/// A table's trace: key → row, with the times each changed.
pub type TableTrace = TraceAgent<ValSpine<TableKey, TableRow, Time, isize>>;

/// A table in a dataflow.
pub type TableArrangement<'scope> = Arranged<'scope, TableTrace>;

/// One change to a table: `key` gets `row`, or (`None`) leaves the table, at a time.
pub type TableUpdate = (TableKey, Option<TableRow>, Time);

/// A stream of [`TableUpdate`]s.
pub type UpdateStream<'scope> = Stream<'scope, Time, Vec<TableUpdate>>;

/// Extension trait: arrange a stream of upserts as a table.
pub trait ArrangeTable<'scope> {
    /// Arranges the upserts as the table `name` (see the module docs). An update must
    /// come at the time it names, or later: the arrangement applies it at its own time.
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
    ///     let a = || TableKey::Str("a".into());
    ///     let updates: Vec<TableUpdate> = vec![
    ///         (a(), Some(TableRow::new(vec![Value::F32(1.0)])), 0),
    ///         (a(), Some(TableRow::new(vec![Value::F32(2.0)])), 1),
    ///         (a(), None, 2),
    ///     ];
    ///     updates.to_stream(scope).arrange_table("accounts").count_keys(counter);
    /// });
    /// // a came, changed, and left.
    /// assert_eq!(keys.load(Ordering::Relaxed), 0);
    /// ```
    fn arrange_table(self, name: &str) -> TableArrangement<'scope>;
}

impl<'scope> ArrangeTable<'scope> for UpdateStream<'scope> {
    fn arrange_table(self, name: &str) -> TableArrangement<'scope> {
        arrange_from_upsert::<
            ValBuilder<TableKey, TableRow, Time, isize>,
            ValSpine<TableKey, TableRow, Time, isize>,
            _,
            _,
        >(self, name)
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use timely::dataflow::operators::capture::Capture;
    use timely::dataflow::operators::ToStream;

    use super::*;
    use crate::dataflow::testing::captured;
    use crate::value::Value;

    #[test]
    fn the_table_holds_each_keys_last_row() {
        let key = |k: &str| TableKey::Str(k.into());
        let row = |v: f32| Some(TableRow::new(vec![Value::F32(v)]));
        let changes = timely::example(move |scope| {
            let updates: Vec<TableUpdate> =
                vec![(key("a"), row(1.0), 0), (key("b"), row(5.0), 0), (key("a"), row(2.0), 1), (key("b"), None, 2)];
            updates
                .to_stream(scope)
                .arrange_table("accounts")
                .as_collection(|k: &TableKey, v: &TableRow| (k.clone(), v.clone()))
                .inner
                .capture()
        });
        // Net count of each (key, row) after every change: what the table holds.
        let mut held: BTreeMap<(TableKey, TableRow), isize> = BTreeMap::new();
        for (_, ((k, v), _, diff)) in captured(changes) {
            *held.entry((k, v)).or_default() += diff;
        }
        held.retain(|_, count| *count != 0);
        assert_eq!(held.into_iter().collect::<Vec<_>>(), vec![((key("a"), TableRow::new(vec![Value::F32(2.0)])), 1)]);
    }
}
