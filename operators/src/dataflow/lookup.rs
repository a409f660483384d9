//! The operator of `lookup` nodes: each row joined with a table by key.
//!
//! The table is an arrangement ([`super::ArrangeTable`]). A lookup is a half join: the
//! request rows are not arranged. Three operators:
//!
//! 1. *ask* (on the row's worker): for every row still computing, a `Query` (the
//!    row's id, its key, the asking worker) goes at the row's time to the worker that
//!    owns the key.
//! 2. *answer* (on the key's worker): queries wait until the table's frontier has passed
//!    their time: every update before it is then in the arrangement, and none after it
//!    is counted (a row at time `t` sees the table as of `t`). The answer is the row the
//!    key had at `t`, or none, sent back to the asking worker. The trace may compact up
//!    to the oldest query still to answer.
//! 3. *join* (on the row's worker): holds each chunk until every row of it is answered,
//!    then appends the table's value columns and a `found` column, and sends the chunk
//!    on at its time. A row whose key is missing gets the node's defaults, or fails
//!    naming the key ([`Missing`]); with `missing: route` the engine splits the rows on
//!    `found` ([`super::SplitFound`]).
//!
//! Failed rows pass through untouched.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use differential_dataflow::hashable::Hashable;
use differential_dataflow::trace::cursor::cursor_list;
use differential_dataflow::trace::{Cursor, TraceReader};
use serde::{Deserialize, Serialize};
use timely::container::CapacityContainerBuilder;
use timely::dataflow::channels::pact::{Exchange, Pipeline};
use timely::dataflow::operators::generic::Operator;
use timely::dataflow::operators::Capability;
use timely::dataflow::Stream;
use timely::progress::Antichain;

use super::arrange::TableArrangement;
use super::{RowStream, Time};
use crate::chunk::Chunk;
use crate::column::Column;
use crate::row::{RowError, RowId};
use crate::table::{TableKey, TableRow};
use crate::value::{FieldType, Value};

/// What a row whose key is not in the table gets.
#[derive(Clone, Debug)]
pub enum Missing {
    /// These values, in the order of the table's value fields (and `found` false).
    Defaults(Vec<Value>),
    /// An `invalid_input` error naming the node, the table and the key.
    Fail,
}

/// How one lookup node joins.
#[derive(Clone, Debug)]
pub struct LookupConfig {
    /// The node's name, for errors and operator names.
    pub node: Arc<str>,
    /// The table's name, for errors.
    pub table: Arc<str>,
    /// Index of the key field in the incoming chunks (an `i64` or `str` column).
    pub key: usize,
    /// The table's value fields' types, in order: the columns the node appends.
    pub values: Vec<FieldType>,
    /// What a missing key gets.
    pub missing: Missing,
}

/// A row's question to the worker that owns its key.
#[derive(Clone, Debug, Serialize, Deserialize)]
struct Query {
    origin: usize,
    row: RowId,
    key: TableKey,
}

/// The owner's answer: the key's row at the query's time, if it had one.
#[derive(Clone, Debug, Serialize, Deserialize)]
struct Answer {
    origin: usize,
    row: RowId,
    value: Option<TableRow>,
}

/// Extension trait: join rows with a table by key.
pub trait LookupRows<'scope> {
    /// Appends to every chunk the table's value columns for each row's key, as of the
    /// row's time, and a `found` column (see the module docs).
    ///
    /// # Examples
    ///
    /// ```
    /// use std::sync::Arc;
    ///
    /// use timely::dataflow::operators::capture::{Capture, Event};
    /// use timely::dataflow::operators::ToStream;
    /// use weir_operators::dataflow::lookup::{LookupConfig, Missing};
    /// use weir_operators::dataflow::{ArrangeTable, LookupRows, TableUpdate};
    /// use weir_operators::table::{TableKey, TableRow};
    /// use weir_operators::{Chunk, Column, DType, FieldType, Value};
    ///
    /// let captured = timely::example(|scope| {
    ///     let updates: Vec<TableUpdate> = vec![(TableKey::I64(1), Some(TableRow::new(vec![Value::F32(0.5)])), 0)];
    ///     let table = updates.to_stream(scope).arrange_table("accounts");
    ///     let config = LookupConfig {
    ///         node: "enrich".into(),
    ///         table: "accounts".into(),
    ///         key: 0,
    ///         values: vec![FieldType::scalar(DType::F32)],
    ///         missing: Missing::Defaults(vec![Value::F32(-1.0)]),
    ///     };
    ///     let rows = vec![Chunk::new(0, vec![0, 1], vec![Column::I64(vec![1, 2])])];
    ///     rows.to_stream(scope).lookup_rows(&table, config).capture()
    /// });
    /// let chunks: Vec<Chunk> = captured
    ///     .iter()
    ///     .flat_map(|event| match event {
    ///         Event::Messages(_, chunks) => chunks,
    ///         Event::Progress(_) => Vec::new(),
    ///     })
    ///     .collect();
    /// // Key 1 is found; key 2 gets the default.
    /// assert_eq!(*chunks[0].columns[1], Column::F32(vec![0.5, -1.0]));
    /// assert_eq!(*chunks[0].columns[2], Column::Bool(vec![true, false]));
    /// ```
    fn lookup_rows(self, table: &TableArrangement<'scope>, config: LookupConfig) -> RowStream<'scope>;
}

impl<'scope> LookupRows<'scope> for RowStream<'scope> {
    fn lookup_rows(self, table: &TableArrangement<'scope>, config: LookupConfig) -> RowStream<'scope> {
        let worker = self.scope().index();
        let key_column = config.key;
        let queries = self.clone().unary::<CapacityContainerBuilder<Vec<Query>>, _, _, _>(
            Pipeline,
            &format!("LookupAsk({})", config.node),
            move |_, _| {
                move |input, output| {
                    input.for_each_stamp(|cap, data| {
                        let mut session = output.session(&cap);
                        for chunk in data.flat_map(|d| d.drain(..)) {
                            let keys = &chunk.columns[key_column];
                            for (i, &row) in chunk.ids.iter().enumerate() {
                                if let Some(key) = asked_key(&chunk, keys, i) {
                                    session.give(Query { origin: worker, row, key });
                                }
                            }
                        }
                    });
                }
            },
        );
        let answers = answer(queries, table, &config.node);
        join(self, answers, config)
    }
}

/// The key row `i` asks for: none for a failed row, or (the plan checks the key
/// field's type) a value of another type, which is answered as missing without asking.
fn asked_key(chunk: &Chunk, keys: &Column, i: usize) -> Option<TableKey> {
    if chunk.is_ok(i) {
        TableKey::from_value(&keys.value(i))
    } else {
        None
    }
}

/// The *answer* operator: queries wait for the table's frontier to pass their time.
fn answer<'scope>(
    queries: Stream<'scope, Time, Vec<Query>>,
    table: &TableArrangement<'scope>,
    node: &str,
) -> Stream<'scope, Time, Vec<Answer>> {
    let mut trace = table.trace.clone();
    queries.binary_frontier::<_, CapacityContainerBuilder<Vec<Answer>>, _, _, _, _>(
        table.stream.clone(),
        Exchange::new(|q: &Query| q.key.hashed()),
        Pipeline,
        &format!("LookupAnswer({node})"),
        move |_cap, _info| {
            // Queries not yet answerable, by time.
            let mut pending: BTreeMap<Time, (Capability<Time>, Vec<Query>)> = BTreeMap::new();
            let mut upper = Antichain::new();
            move |(queries, query_frontier), (batches, table_frontier), output| {
                queries.for_each_stamp(|cap, data| {
                    let Some(&time) = cap.least() else { return };
                    let qs = data.flat_map(|d| d.drain(..));
                    match pending.get_mut(&time) {
                        Some((_, waiting)) => waiting.extend(qs),
                        None => {
                            if let Some(retained) = cap.retain_least(output.output_index()) {
                                pending.insert(time, (retained, qs.collect()));
                            }
                        }
                    }
                });
                // The batches themselves are read through the trace.
                batches.for_each_stamp(|_, _| {});
                while let Some((&time, _)) = pending.first_key_value() {
                    if table_frontier.less_equal(&time) {
                        break;
                    }
                    let Some((cap, mut qs)) = pending.remove(&time) else { break };
                    trace.read_upper(&mut upper);
                    let mut session = output.session(&cap);
                    let Some(batches) = trace.batches_through(upper.borrow()) else {
                        // The trace no longer covers this time: cannot happen while its
                        // compaction follows the oldest pending query.
                        for q in qs {
                            session.give(Answer { origin: q.origin, row: q.row, value: None });
                        }
                        continue;
                    };
                    let (mut cursor, storage) = cursor_list(batches);
                    qs.sort_by(|a, b| a.key.cmp(&b.key));
                    for q in qs {
                        cursor.seek_key(&storage, &q.key);
                        let mut value = None;
                        if cursor.get_key(&storage) == Some(&q.key) {
                            while let Some(row) = cursor.get_val(&storage) {
                                let mut count = 0isize;
                                cursor.map_times(&storage, |t, d| {
                                    if *t <= time {
                                        count += *d;
                                    }
                                });
                                if count > 0 {
                                    value = Some(row.clone());
                                }
                                cursor.step_val(&storage);
                            }
                        }
                        session.give(Answer { origin: q.origin, row: q.row, value });
                    }
                }
                // Later queries read at their own times or after: the trace may forget
                // the distinctions before the oldest of them.
                let mut oldest = Antichain::new();
                for t in query_frontier.frontier().iter() {
                    oldest.insert(*t);
                }
                if let Some(&t) = pending.keys().next() {
                    oldest.insert(t);
                }
                trace.set_logical_compaction(oldest.borrow());
                trace.set_physical_compaction(oldest.borrow());
            }
        },
    )
}

/// A chunk waiting for its rows' answers.
struct Held {
    cap: Capability<Time>,
    chunk: Chunk,
    /// Per row: its answer, once in.
    answers: Vec<Option<Option<TableRow>>>,
    left: usize,
}

/// The *join* operator: chunks wait for their rows' answers.
fn join<'scope>(
    rows: RowStream<'scope>,
    answers: Stream<'scope, Time, Vec<Answer>>,
    config: LookupConfig,
) -> RowStream<'scope> {
    let name = format!("LookupJoin({})", config.node);
    rows.binary::<_, CapacityContainerBuilder<Vec<Chunk>>, _, _, _, _>(
        answers,
        Pipeline,
        Exchange::new(|a: &Answer| a.origin as u64),
        &name,
        move |_cap, _info| {
            let mut next = 0u64;
            let mut held: HashMap<u64, Held> = HashMap::new();
            // Row id → (held chunk, row index).
            let mut rows_at: HashMap<RowId, (u64, usize)> = HashMap::new();
            // Answers that came before their chunk.
            let mut early: HashMap<RowId, Option<TableRow>> = HashMap::new();
            move |chunks, answers, output| {
                let mut done: Vec<u64> = Vec::new();
                chunks.for_each_stamp(|cap, data| {
                    for chunk in data.flat_map(|d| d.drain(..)) {
                        let ticket = next;
                        next += 1;
                        let mut answers = vec![None; chunk.len()];
                        let mut left = 0;
                        for (i, row) in chunk.ids.iter().enumerate() {
                            if !chunk.is_ok(i) {
                                continue;
                            }
                            if asked_key(&chunk, &chunk.columns[config.key], i).is_none() {
                                // Not asked: answered as missing here.
                                answers[i] = Some(None);
                                continue;
                            }
                            match early.remove(row) {
                                Some(value) => answers[i] = Some(value),
                                None => {
                                    rows_at.insert(*row, (ticket, i));
                                    left += 1;
                                }
                            }
                        }
                        let Some(cap) = cap.retain_least(output.output_index()) else { continue };
                        held.insert(ticket, Held { cap, chunk, answers, left });
                        if left == 0 {
                            done.push(ticket);
                        }
                    }
                });
                answers.for_each_stamp(|_, data| {
                    for a in data.flat_map(|d| d.drain(..)) {
                        match rows_at.remove(&a.row) {
                            Some((ticket, i)) => {
                                if let Some(h) = held.get_mut(&ticket) {
                                    h.answers[i] = Some(a.value);
                                    h.left -= 1;
                                    if h.left == 0 {
                                        done.push(ticket);
                                    }
                                }
                            }
                            None => {
                                early.insert(a.row, a.value);
                            }
                        }
                    }
                });
                for ticket in done {
                    if let Some(h) = held.remove(&ticket) {
                        let chunk = complete(h.chunk, &h.answers, &config);
                        output.session(&h.cap).give(chunk);
                    }
                }
            }
        },
    )
}

/// Appends the value columns and `found` to `chunk` from its rows' answers.
fn complete(mut chunk: Chunk, answers: &[Option<Option<TableRow>>], config: &LookupConfig) -> Chunk {
    let rows = chunk.len();
    let mut columns: Vec<Column> = config.values.iter().map(|ty| Column::with_capacity(ty, rows)).collect();
    let mut found = Vec::with_capacity(rows);
    for (i, answer) in answers.iter().enumerate() {
        let hit = match answer {
            Some(Some(row)) => Some(&row.0[..]),
            Some(None) => {
                if let Missing::Fail = config.missing {
                    let key = chunk.columns[config.key].value(i);
                    let shown = TableKey::from_value(&key).map_or_else(|| format!("{key:?}"), |k| k.to_string());
                    chunk.fail(
                        i,
                        Arc::new(RowError::invalid_input(
                            &*config.node,
                            format!("key {shown} is not in table '{}'", config.table),
                        )),
                    );
                }
                None
            }
            // A failed row: not looked up.
            None => None,
        };
        found.push(hit.is_some());
        match (hit, &config.missing) {
            (Some(values), _) => {
                for (c, v) in columns.iter_mut().zip(values) {
                    c.push(v);
                }
            }
            (None, Missing::Defaults(defaults)) if answer.is_some() => {
                for (c, v) in columns.iter_mut().zip(defaults) {
                    c.push(v);
                }
            }
            (None, _) => {
                for c in &mut columns {
                    c.push_fillers(1);
                }
            }
        }
    }
    chunk.columns.extend(columns.into_iter().map(Arc::new));
    chunk.columns.push(Arc::new(Column::Bool(found)));
    chunk
}

#[cfg(test)]
mod tests {
    use std::sync::mpsc::channel;
    use std::sync::Mutex;

    use timely::dataflow::operators::core::{Input, Inspect};

    use super::*;
    use crate::dataflow::{ArrangeTable, TableUpdate};

    /// What a row got: its value field and `found`, or its error message.
    type Got = Result<(f32, bool), String>;

    /// Runs a lookup with `missing` at `workers` workers over: a = 1 (t0); a row asking
    /// for a (t1); a = 2, b = 5 (t2); rows asking for a, b, c (t3); a deleted (t4); a row
    /// asking for a (t5). Everything is sent before the dataflow runs, so only times
    /// decide what each row sees.
    fn run(workers: usize, missing: Missing) -> Vec<(RowId, Got)> {
        let (tx, rx) = channel();
        let tx = Mutex::new(tx);
        timely::execute(timely::Config::process(workers), move |worker| {
            let tx = tx.lock().expect("sender").clone();
            let missing = missing.clone();
            let (mut updates, mut rows) = worker.dataflow::<Time, _, _>(move |scope| {
                let (updates, update_stream) = scope.new_input::<Vec<TableUpdate>>();
                let (rows, row_stream) = scope.new_input::<Vec<Chunk>>();
                let table = update_stream.arrange_table("accounts");
                let config = LookupConfig {
                    node: "enrich".into(),
                    table: "accounts".into(),
                    key: 0,
                    values: vec![FieldType::scalar(crate::value::DType::F32)],
                    missing,
                };
                row_stream.lookup_rows(&table, config).inspect(move |chunk: &Chunk| {
                    for (i, &id) in chunk.ids.iter().enumerate() {
                        let got = match chunk.error(i) {
                            Some(e) => Err(e.message.clone()),
                            None => match (&*chunk.columns[1], &*chunk.columns[2]) {
                                (Column::F32(v), Column::Bool(f)) => Ok((v[i], f[i])),
                                other => panic!("columns {other:?}"),
                            },
                        };
                        tx.send((id, got)).expect("collector");
                    }
                });
                (updates, rows)
            });
            if worker.index() != 0 {
                return;
            }
            let key = |k: &str| TableKey::Str(k.into());
            let row = |v: f32| Some(TableRow::new(vec![Value::F32(v)]));
            let chunk = |slot: u64, keys: &[&str]| {
                let ids = (0..keys.len() as u64).map(|i| slot * 10 + i).collect();
                Chunk::new(slot, ids, vec![Column::Str(keys.iter().map(|k| Arc::from(*k)).collect())])
            };
            updates.send((key("a"), row(1.0), 0));
            rows.advance_to(1);
            rows.send(chunk(1, &["a"]));
            updates.advance_to(2);
            updates.send((key("a"), row(2.0), 2));
            updates.send((key("b"), row(5.0), 2));
            rows.advance_to(3);
            rows.send(chunk(3, &["a", "b", "c"]));
            updates.advance_to(4);
            updates.send((key("a"), None, 4));
            rows.advance_to(5);
            rows.send(chunk(5, &["a"]));
        })
        .expect("timely runs");
        let mut got: Vec<(RowId, Got)> = rx.iter().collect();
        got.sort_by_key(|(id, _)| *id);
        got
    }

    #[test]
    fn a_row_sees_the_table_as_of_its_time_at_one_and_two_workers() {
        for workers in [1, 2] {
            let got = run(workers, Missing::Defaults(vec![Value::F32(-1.0)]));
            assert_eq!(
                got,
                vec![
                    (10, Ok((1.0, true))),
                    (30, Ok((2.0, true))),
                    (31, Ok((5.0, true))),
                    (32, Ok((-1.0, false))),
                    (50, Ok((-1.0, false))),
                ],
                "{workers} workers"
            );
        }
    }

    #[test]
    fn a_missing_key_can_fail_the_row_naming_it() {
        let got = run(2, Missing::Fail);
        assert_eq!(got[0], (10, Ok((1.0, true))));
        assert_eq!(got[3], (32, Err("key \"c\" is not in table 'accounts'".to_string())));
        assert_eq!(got[4], (50, Err("key \"a\" is not in table 'accounts'".to_string())));
    }
}
