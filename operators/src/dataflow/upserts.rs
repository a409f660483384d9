//! The rows of a table's source become upserts to the table.
//!
//! The engine submits an upsert batch as a chunk laid out as the key column, one column
//! per value field of the table (in the table's order), and a `delete` column of
//! booleans. Each row becomes one [`TableUpdate`] at its chunk's time: the key gets the
//! row's values, or, where `delete` is true, leaves the table. A row whose key is not an
//! `i64` or a string (which the engine refuses before submitting) is skipped. Upserts
//! keep the order of their rows; [`super::StoreTable`] keeps them.

use timely::dataflow::channels::pact::Pipeline;
use timely::dataflow::operators::generic::Operator;

use super::store::{TableUpdate, UpdateStream};
use super::vec_builder::VecBuilder;
use super::{RowStream, Time};
use crate::chunk::Chunk;
use crate::table::{TableKey, TableRow};
use crate::value::Value;

/// Extension trait: turn a table's rows into upserts.
pub trait Upserts<'scope> {
    /// The upserts of every row of the stream's chunks, whose `width` value columns
    /// follow the key column (see the module docs).
    ///
    /// # Examples
    ///
    /// ```
    /// use std::sync::Arc;
    ///
    /// use timely::dataflow::operators::capture::{Capture, Event};
    /// use timely::dataflow::operators::ToStream;
    /// use weir_operators::dataflow::Upserts;
    /// use weir_operators::table::{TableKey, TableRow};
    /// use weir_operators::{Chunk, Column, Value};
    ///
    /// let captured = timely::example(|scope| {
    ///     // a gets 1.5; b leaves the table.
    ///     let keys = Column::Str(vec![Arc::from("a"), Arc::from("b")]);
    ///     let chunk = Chunk::new(0, vec![0, 1], vec![keys, Column::F32(vec![1.5, 0.0]), Column::Bool(vec![false, true])]);
    ///     vec![chunk].to_stream(scope).upserts(1).capture()
    /// });
    /// let updates: Vec<_> = captured
    ///     .iter()
    ///     .flat_map(|event| match event {
    ///         Event::Messages(_, updates) => updates,
    ///         Event::Progress(_) => Vec::new(),
    ///     })
    ///     .collect();
    /// assert_eq!(
    ///     updates,
    ///     vec![
    ///         (TableKey::Str("a".into()), Some(TableRow::new(vec![Value::F32(1.5)])), 0),
    ///         (TableKey::Str("b".into()), None, 0),
    ///     ]
    /// );
    /// ```
    fn upserts(self, width: usize) -> UpdateStream<'scope>;
}

impl<'scope> Upserts<'scope> for RowStream<'scope> {
    fn upserts(self, width: usize) -> UpdateStream<'scope> {
        self.unary::<VecBuilder<TableUpdate>, _, _, _>(Pipeline, "Upserts", move |_, _| {
            move |input, output| {
                input.for_each_stamp(|cap, data| {
                    let Some(&time) = cap.least() else { return };
                    let mut session = output.session_with_builder(&cap);
                    for chunk in data.flat_map(|d| d.drain(..)) {
                        session.give_iterator(upserts(&chunk, width, time));
                    }
                });
            }
        })
    }
}

/// The upserts of a chunk, at `time`.
fn upserts(chunk: &Chunk, width: usize, time: Time) -> impl Iterator<Item = TableUpdate> + '_ {
    (0..chunk.len()).filter_map(move |r| {
        let key = TableKey::from_value(&chunk.columns[0].value(r))?;
        let delete = matches!(chunk.columns[1 + width].value(r), Value::Bool(true));
        let row = (!delete).then(|| TableRow::new((1..=width).map(|c| chunk.columns[c].value(r)).collect()));
        Some((key, row, time))
    })
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use timely::dataflow::operators::capture::Capture;
    use timely::dataflow::operators::Input;

    use super::*;
    use crate::column::Column;
    use crate::dataflow::testing::captured;

    #[test]
    fn rows_become_upserts_at_their_chunks_time() {
        let updates = timely::execute_directly(|worker| {
            let (mut input, updates) = worker.dataflow::<Time, _, _>(|scope| {
                let (input, rows) = scope.new_input::<Vec<Chunk>>();
                (input, rows.upserts(2).capture())
            });
            // Two value fields; the row with a float key is skipped.
            let chunk = |slot, keys: Column, delete: Vec<bool>| {
                let n = delete.len();
                let values = Column::I64((0..n as i64).collect());
                Chunk::new(slot, (0..n as u64).collect(), vec![keys, values.clone(), values, Column::Bool(delete)])
            };
            input.send(chunk(0, Column::I64(vec![7, 8]), vec![false, false]));
            input.advance_to(3);
            input.send(chunk(1, Column::F32(vec![1.0]), vec![false]));
            input.send(chunk(2, Column::Str(vec![Arc::from("k")]), vec![true]));
            updates
        });
        let updates: Vec<TableUpdate> = captured(updates).into_iter().map(|(_, update)| update).collect();
        let row = |v: i64| Some(TableRow::new(vec![Value::I64(v), Value::I64(v)]));
        assert_eq!(
            updates,
            vec![(TableKey::I64(7), row(0), 0), (TableKey::I64(8), row(1), 0), (TableKey::Str("k".into()), None, 3)]
        );
    }
}
