//! A graph's table in the dataflow: upserts kept in a [`TableStore`] per worker.
//!
//! A stream of upserts `(key, Some(row) | None, time)` (made by [`super::Upserts`]) is
//! spread over the workers by key hash; each worker's `Table` operator applies the
//! upserts it receives to its part of the table as they arrive (an upsert replaces the
//! key's row; `None` removes the key) and keeps the older versions its readers may
//! still ask for (see [`TableStore`]). The operator's output carries no data: its
//! frontier says which times every upsert has been applied for, which is what the
//! lookups ([`super::LookupRows`]) wait on before they read the store, on the same
//! worker, through [`TableRef::store`].
//!
//! The operator also keeps the shared count of the keys the table holds, for the
//! engine's metrics: after every upsert so far, the sum over workers is the number of
//! keys with a row (between two workers' updates of one time it may be off by what one
//! of them has not applied yet).

use std::cell::RefCell;
use std::rc::Rc;
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::Arc;

use timely::dataflow::channels::pact::Exchange;
use timely::dataflow::operators::generic::Operator;
use timely::dataflow::Stream;

use super::vec_builder::VecBuilder;
use super::Time;
use crate::table::{TableKey, TableRow};
use crate::table_store::TableStore;
use crate::value::FieldType;

/// One change to a table: `key` gets `row`, or (`None`) leaves the table, at a time.
pub type TableUpdate = (TableKey, Option<TableRow>, Time);

/// A stream of [`TableUpdate`]s.
pub type UpdateStream<'scope> = Stream<'scope, Time, Vec<TableUpdate>>;

/// This worker's part of a table, and the stream whose frontier says how far it is
/// complete.
#[derive(Clone)]
pub struct TableRef<'scope> {
    /// Carries no data; past a time, every upsert at or before it is in `store`.
    pub applied: Stream<'scope, Time, Vec<()>>,
    /// This worker's part of the table.
    pub store: Rc<RefCell<TableStore>>,
}

/// What a table holds: its name, its key kind, its value types.
#[derive(Clone, Debug)]
pub struct TableShape {
    /// The table's name, for the operator's name.
    pub name: String,
    /// Integer keys (`i64`); otherwise strings.
    pub int_keys: bool,
    /// The value fields' types, in order.
    pub values: Vec<FieldType>,
}

/// Extension trait: keep a stream of upserts as a table.
pub trait StoreTable<'scope> {
    /// Keeps the upserts as the table `shape` (see the module docs); adds the change in
    /// its number of keys to `keys` (shared by every worker's part). An update must
    /// come at the time it names, or later.
    ///
    /// # Examples
    ///
    /// ```
    /// use std::sync::atomic::{AtomicI64, Ordering};
    /// use std::sync::Arc;
    ///
    /// use timely::dataflow::operators::ToStream;
    /// use weir_operators::dataflow::{StoreTable, TableShape, TableUpdate};
    /// use weir_operators::table::{TableKey, TableRow};
    /// use weir_operators::{DType, FieldType, Value};
    ///
    /// let keys = Arc::new(AtomicI64::new(0));
    /// let counter = Arc::clone(&keys);
    /// timely::example(move |scope| {
    ///     let a = || TableKey::Str("a".into());
    ///     let b = || TableKey::Str("b".into());
    ///     let row = |v: f32| Some(TableRow::new(vec![Value::F32(v)]));
    ///     let updates: Vec<TableUpdate> =
    ///         vec![(a(), row(1.0), 0), (b(), row(5.0), 0), (a(), row(2.0), 1), (a(), None, 2)];
    ///     let shape = TableShape { name: "accounts".into(), int_keys: false, values: vec![FieldType::scalar(DType::F32)] };
    ///     updates.to_stream(scope).store_table(shape, counter);
    /// });
    /// // a came, changed, and left; b stays.
    /// assert_eq!(keys.load(Ordering::Relaxed), 1);
    /// ```
    fn store_table(self, shape: TableShape, keys: Arc<AtomicI64>) -> TableRef<'scope>;
}

impl<'scope> StoreTable<'scope> for UpdateStream<'scope> {
    fn store_table(self, shape: TableShape, keys: Arc<AtomicI64>) -> TableRef<'scope> {
        let store = Rc::new(RefCell::new(TableStore::new(shape.int_keys, &shape.values)));
        let applying = Rc::clone(&store);
        let applied = self.unary::<VecBuilder<()>, _, _, _>(
            Exchange::new(|(key, _, _): &TableUpdate| key.route()),
            &format!("Table({})", shape.name),
            move |_, _| {
                move |input, _output| {
                    let mut store = applying.borrow_mut();
                    let mut change = 0isize;
                    input.for_each(|_, data| {
                        for (key, row, time) in data.drain(..) {
                            change += store.upsert(&key, row.as_ref(), time);
                        }
                    });
                    if change != 0 {
                        keys.fetch_add(change as i64, Ordering::Relaxed);
                    }
                }
            },
        );
        TableRef { applied, store }
    }
}

#[cfg(test)]
mod tests {
    use timely::dataflow::operators::Input;

    use super::*;
    use crate::value::{DType, Value};

    #[test]
    fn the_key_count_is_what_the_table_holds_at_one_and_two_workers() {
        for workers in [1, 2] {
            let keys = Arc::new(AtomicI64::new(0));
            let counter = Arc::clone(&keys);
            timely::execute(timely::Config::process(workers), move |worker| {
                let counter = Arc::clone(&counter);
                let mut updates = worker.dataflow::<Time, _, _>(move |scope| {
                    let (updates, stream) = scope.new_input::<Vec<TableUpdate>>();
                    let shape = TableShape {
                        name: "accounts".into(),
                        int_keys: false,
                        values: vec![FieldType::scalar(DType::F32)],
                    };
                    stream.store_table(shape, counter);
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
