//! The operator of `lookup` nodes: each row joined with a table by key.
//!
//! The table is a [`TableStore`](crate::table_store::TableStore) per worker
//! ([`super::StoreTable`]). A lookup is a half join: the request rows are not stored.
//! Three operators:
//!
//! 1. *ask* (on the row's worker): for every row still computing, a `Query` (the
//!    row's id, its key, the asking worker) goes at the row's time to the worker that
//!    owns the key.
//! 2. *answer* (on the key's worker): queries wait until the table's frontier has passed
//!    their time: every upsert at or before it is then in the store (a row at time `t`
//!    sees the table as of `t`; the store keeps older versions while a reader may still
//!    ask before them). The answers of one time go back to each asking worker in one
//!    batch of columns: per row, whether its key had a row, and the row's values. The
//!    operator tells the store the oldest time it may still ask at, so the store can
//!    forget older versions.
//! 3. *join* (on the row's worker): holds each chunk until every row of it is answered,
//!    then appends the table's value columns and a `found` column, and sends the chunk
//!    on at its time. A row whose key is missing gets the node's defaults, or fails
//!    naming the key ([`Missing`]); with `missing: route` the engine splits the rows on
//!    `found` ([`super::SplitFound`]).
//!
//! Failed rows pass through untouched.

use std::rc::Rc;
use std::sync::Arc;
use std::time::Instant;

use serde::{Deserialize, Serialize};
use timely::dataflow::channels::pact::{Exchange, Pipeline};
use timely::dataflow::operators::generic::Operator;
use timely::dataflow::operators::Capability;
use timely::dataflow::Stream;

use super::store::TableRef;
use super::vec_builder::VecBuilder;
use super::{hold_at, HeldByTime, RowStream, Time};
use crate::chunk::Chunk;
use crate::column::Column;
use crate::id_map::IdMap;
use crate::node_stats::NodeStats;
use crate::row::{RowError, RowId};
use crate::table::TableKey;
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
    /// Where the rows and time of the node count (the operator that joins rows with
    /// their answers; with several workers, asking the key's owner is not counted).
    pub stats: Arc<NodeStats>,
}

/// A row's question to the worker that owns its key.
#[derive(Clone, Debug, Serialize, Deserialize)]
struct Query {
    origin: usize,
    row: RowId,
    key: TableKey,
}

/// The owner's answers to one asking worker's queries of one time: per row, whether
/// its key had a row then, and the row's values (fillers where it had none).
#[derive(Clone, Debug, Serialize, Deserialize)]
struct Answers {
    origin: usize,
    rows: Vec<RowId>,
    found: Vec<bool>,
    values: Vec<Column>,
}

impl Answers {
    fn new(origin: usize, values: &[FieldType]) -> Answers {
        Answers {
            origin,
            rows: Vec::new(),
            found: Vec::new(),
            values: values.iter().map(|t| Column::with_capacity(t, 0)).collect(),
        }
    }
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
    /// use weir_operators::node_stats::NodeStats;
    /// use std::sync::atomic::AtomicI64;
    ///
    /// use weir_operators::dataflow::{LookupRows, StoreTable, TableShape, TableUpdate};
    /// use weir_operators::table::{TableKey, TableRow};
    /// use weir_operators::{Chunk, Column, DType, FieldType, Value};
    ///
    /// let captured = timely::example(|scope| {
    ///     let updates: Vec<TableUpdate> = vec![(TableKey::I64(1), Some(TableRow::new(vec![Value::F32(0.5)])), 0)];
    ///     let shape = TableShape { name: "accounts".into(), int_keys: true, values: vec![FieldType::scalar(DType::F32)] };
    ///     let table = updates.to_stream(scope).store_table(shape, Arc::new(AtomicI64::new(0)));
    ///     let config = LookupConfig {
    ///         node: "enrich".into(),
    ///         table: "accounts".into(),
    ///         key: 0,
    ///         values: vec![FieldType::scalar(DType::F32)],
    ///         missing: Missing::Defaults(vec![Value::F32(-1.0)]),
    ///         stats: NodeStats::new(),
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
    fn lookup_rows(self, table: &TableRef<'scope>, config: LookupConfig) -> RowStream<'scope>;
}

impl<'scope> LookupRows<'scope> for RowStream<'scope> {
    fn lookup_rows(self, table: &TableRef<'scope>, config: LookupConfig) -> RowStream<'scope> {
        if self.scope().peers() == 1 {
            return direct(self, table, config);
        }
        let worker = self.scope().index();
        let key_column = config.key;
        let queries = self.clone().unary::<VecBuilder<Query>, _, _, _>(
            Pipeline,
            &format!("LookupAsk({})", config.node),
            move |_, _| {
                move |input, output| {
                    input.for_each_stamp(|cap, data| {
                        let mut session = output.session_with_builder(&cap);
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
        let answers = answer(queries, table, &config);
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

/// The *answer* operator: queries wait for the table's frontier to pass their time,
/// then read this worker's part of the table as of it.
fn answer<'scope>(
    queries: Stream<'scope, Time, Vec<Query>>,
    table: &TableRef<'scope>,
    config: &LookupConfig,
) -> Stream<'scope, Time, Vec<Answers>> {
    let store = Rc::clone(&table.store);
    let reader = store.borrow_mut().add_reader();
    let values = config.values.clone();
    queries.binary_frontier::<_, VecBuilder<Answers>, _, _, _, _>(
        table.applied.clone(),
        Exchange::new(|q: &Query| q.key.route()),
        Pipeline,
        &format!("LookupAnswer({})", config.node),
        move |_cap, _info| {
            // Queries not yet answerable, by time.
            let mut pending: HeldByTime<Query> = HeldByTime::new();
            move |(queries, query_frontier), (applied, table_frontier), output| {
                queries.for_each_stamp(|cap, data| {
                    hold_at(&mut pending, &cap, output.output_index(), data.flat_map(|d| d.drain(..)));
                });
                applied.for_each(|_, _| {});
                let mut store = store.borrow_mut();
                while let Some((&time, _)) = pending.first_key_value() {
                    if table_frontier.less_equal(&time) {
                        break;
                    }
                    let Some((cap, qs)) = pending.remove(&time) else { break };
                    // One batch of answers per asking worker.
                    let mut by_origin: Vec<Answers> = Vec::new();
                    for q in qs {
                        let at = match by_origin.iter().position(|a| a.origin == q.origin) {
                            Some(at) => at,
                            None => {
                                by_origin.push(Answers::new(q.origin, &values));
                                by_origin.len() - 1
                            }
                        };
                        let a = &mut by_origin[at];
                        a.rows.push(q.row);
                        match store.get(&q.key, time) {
                            Some(slot) => {
                                store.push_values(slot, &mut a.values);
                                a.found.push(true);
                            }
                            None => {
                                a.values.iter_mut().for_each(|c| c.push_fillers(1));
                                a.found.push(false);
                            }
                        }
                    }
                    output.session_with_builder(&cap).give_iterator(by_origin.into_iter());
                }
                // Later queries come at their own times or after: the store may forget
                // the versions before the oldest of them.
                store.advance_reader(reader, oldest(query_frontier.frontier(), &pending));
            }
        },
    )
}

/// With one worker, every key is this worker's: one operator holds each chunk until the
/// table's frontier has passed its time, then reads its rows' keys from the store
/// (what *ask*, *answer* and *join* do, without the queries and answers between them).
fn direct<'scope>(rows: RowStream<'scope>, table: &TableRef<'scope>, config: LookupConfig) -> RowStream<'scope> {
    let store = Rc::clone(&table.store);
    let reader = store.borrow_mut().add_reader();
    rows.binary_frontier::<_, VecBuilder<Chunk>, _, _, _, _>(
        table.applied.clone(),
        Pipeline,
        Pipeline,
        &format!("Lookup({})", config.node),
        move |_cap, _info| {
            let mut pending: HeldByTime<Chunk> = HeldByTime::new();
            move |(chunks, row_frontier), (applied, table_frontier), output| {
                let started = Instant::now();
                let (mut rows_in, mut rows_out) = (0, 0);
                chunks.for_each_stamp(|cap, data| {
                    let data = data.flat_map(|d| d.drain(..)).inspect(|c| rows_in += c.len());
                    hold_at(&mut pending, &cap, output.output_index(), data);
                });
                applied.for_each(|_, _| {});
                let mut store = store.borrow_mut();
                while let Some((&time, _)) = pending.first_key_value() {
                    if table_frontier.less_equal(&time) {
                        break;
                    }
                    let Some((cap, chunks)) = pending.remove(&time) else { break };
                    let mut session = output.session_with_builder(&cap);
                    for chunk in chunks {
                        let n = chunk.len();
                        let mut values: Vec<Column> =
                            config.values.iter().map(|t| Column::with_capacity(t, n)).collect();
                        let mut state = Vec::with_capacity(n);
                        let keys = &chunk.columns[config.key];
                        for i in 0..n {
                            let slot = if chunk.is_ok(i) {
                                asked_key(&chunk, keys, i).and_then(|k| store.get(&k, time))
                            } else {
                                None
                            };
                            match slot {
                                Some(slot) => {
                                    store.push_values(slot, &mut values);
                                    state.push(RowState::Found);
                                }
                                None => {
                                    values.iter_mut().for_each(|c| c.push_fillers(1));
                                    state.push(if chunk.is_ok(i) { RowState::Missing } else { RowState::Failed });
                                }
                            }
                        }
                        let out = complete(chunk, values, &state, &config);
                        rows_out += out.len();
                        session.give(out);
                    }
                }
                store.advance_reader(reader, oldest(row_frontier.frontier(), &pending));
                if rows_in + rows_out > 0 {
                    config.stats.record(rows_in, rows_out, started);
                }
            }
        },
    )
}

/// The oldest time a reader may still ask at: its input's frontier, or a time it holds.
fn oldest<T>(frontier: timely::progress::frontier::AntichainRef<'_, Time>, pending: &HeldByTime<T>) -> Time {
    frontier.iter().chain(pending.keys()).copied().min().unwrap_or(Time::MAX)
}

/// A chunk waiting for its rows' answers.
struct Held {
    cap: Capability<Time>,
    chunk: Chunk,
    /// The value columns, filled in as answers come (fillers until then).
    values: Vec<Column>,
    /// Per row: what it got so far.
    state: Vec<RowState>,
    left: usize,
}

/// Where a row of a held chunk stands.
#[derive(Clone, Copy, PartialEq)]
enum RowState {
    /// Failed upstream: not looked up.
    Failed,
    /// Asked, not yet answered.
    Waiting,
    /// The key had a row (in `values`).
    Found,
    /// The key had none, or was not asked (a key of another type).
    Missing,
}

/// The *join* operator: chunks wait for their rows' answers.
fn join<'scope>(
    rows: RowStream<'scope>,
    answers: Stream<'scope, Time, Vec<Answers>>,
    config: LookupConfig,
) -> RowStream<'scope> {
    let name = format!("LookupJoin({})", config.node);
    rows.binary::<_, VecBuilder<Chunk>, _, _, _, _>(
        answers,
        Pipeline,
        Exchange::new(|a: &Answers| a.origin as u64),
        &name,
        move |_cap, _info| {
            let mut next = 0u64;
            let mut held: IdMap<Held> = IdMap::default();
            // Row id → (held chunk, row index).
            let mut rows_at: IdMap<(u64, usize)> = IdMap::default();
            // Answers that came before their chunk: per row, the batch and its index.
            let mut early: IdMap<(Rc<Answers>, usize)> = IdMap::default();
            move |chunks, answers, output| {
                let started = Instant::now();
                let (mut rows_in, mut rows_out) = (0, 0);
                let mut done: Vec<u64> = Vec::new();
                chunks.for_each_stamp(|cap, data| {
                    for chunk in data.flat_map(|d| d.drain(..)) {
                        rows_in += chunk.len();
                        let ticket = next;
                        next += 1;
                        let n = chunk.len();
                        let mut h = Held {
                            cap: match cap.retain_least(output.output_index()) {
                                Some(cap) => cap,
                                None => continue,
                            },
                            values: config.values.iter().map(|ty| Column::filler(ty, n)).collect(),
                            state: vec![RowState::Failed; n],
                            left: 0,
                            chunk,
                        };
                        for i in 0..n {
                            if !h.chunk.is_ok(i) {
                                continue;
                            }
                            if asked_key(&h.chunk, &h.chunk.columns[config.key], i).is_none() {
                                h.state[i] = RowState::Missing;
                                continue;
                            }
                            let row = h.chunk.ids[i];
                            match early.remove(&row) {
                                Some((a, at)) => h.fill(i, &a, at),
                                None => {
                                    h.state[i] = RowState::Waiting;
                                    rows_at.insert(row, (ticket, i));
                                    h.left += 1;
                                }
                            }
                        }
                        if h.left == 0 {
                            done.push(ticket);
                        }
                        held.insert(ticket, h);
                    }
                });
                answers.for_each_stamp(|_, data| {
                    for a in data.flat_map(|d| d.drain(..)) {
                        let a = Rc::new(a);
                        for (at, row) in a.rows.iter().enumerate() {
                            match rows_at.remove(row) {
                                Some((ticket, i)) => {
                                    if let Some(h) = held.get_mut(&ticket) {
                                        h.fill(i, &a, at);
                                        h.left -= 1;
                                        if h.left == 0 {
                                            done.push(ticket);
                                        }
                                    }
                                }
                                None => {
                                    early.insert(*row, (Rc::clone(&a), at));
                                }
                            }
                        }
                    }
                });
                for ticket in done {
                    if let Some(h) = held.remove(&ticket) {
                        let cap = h.cap.clone();
                        let out = complete(h.chunk, h.values, &h.state, &config);
                        rows_out += out.len();
                        output.session_with_builder(&cap).give(out);
                    }
                }
                if rows_in + rows_out > 0 {
                    config.stats.record(rows_in, rows_out, started);
                }
            }
        },
    )
}

impl Held {
    /// Row `i` got answer `at` of `a`.
    fn fill(&mut self, i: usize, a: &Answers, at: usize) {
        if a.found[at] {
            for (c, from) in self.values.iter_mut().zip(&a.values) {
                c.set_range(i, from, at, 1);
            }
            self.state[i] = RowState::Found;
        } else {
            self.state[i] = RowState::Missing;
        }
    }
}

/// Appends the value columns and `found` to the held chunk: a missing key gets the
/// node's defaults, or fails naming the key.
fn complete(mut chunk: Chunk, mut values: Vec<Column>, state: &[RowState], config: &LookupConfig) -> Chunk {
    let mut found = Vec::with_capacity(state.len());
    for (i, s) in state.iter().enumerate() {
        found.push(*s == RowState::Found);
        if *s != RowState::Missing {
            continue;
        }
        match &config.missing {
            Missing::Defaults(defaults) => {
                for (c, v) in values.iter_mut().zip(defaults) {
                    c.set(i, v);
                }
            }
            Missing::Fail => {
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
        }
    }
    chunk.columns.extend(values.into_iter().map(Arc::new));
    chunk.columns.push(Arc::new(Column::Bool(found)));
    chunk
}

#[cfg(test)]
mod tests {
    use std::sync::mpsc::channel;
    use std::sync::Mutex;

    use timely::dataflow::operators::core::{Input, Inspect};

    use super::*;
    use crate::dataflow::{StoreTable, TableShape, TableUpdate};
    use crate::table::TableRow;
    use crate::value::Value;

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
                let shape = TableShape {
                    name: "accounts".into(),
                    int_keys: false,
                    values: vec![FieldType::scalar(crate::value::DType::F32)],
                };
                let table = update_stream.store_table(shape, Arc::new(std::sync::atomic::AtomicI64::new(0)));
                let config = LookupConfig {
                    node: "enrich".into(),
                    table: "accounts".into(),
                    key: 0,
                    values: vec![FieldType::scalar(crate::value::DType::F32)],
                    missing,
                    stats: NodeStats::new(),
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
