//! Where answers go: reply slots for submitted batches, found by slot id.
//!
//! A submitted batch of `n` rows gets a slot id; its rows get the ids
//! `slot << ROW_BITS | index`, and its chunk carries the slot. The sink hands each
//! finished chunk (its output columns) to the slot, which collects the pieces (a route
//! may have split the batch) and calls the batch's reply once, when the last row is
//! answered, on the worker thread that delivered it: with the answers as rows in input
//! order, or as one chunk of output columns (as the submission's reply asked, see
//! [`crate::submit`]). Just before, the slot gives the batch's admission permits back.
//! Slots live in a sharded map to spread lock contention between workers and
//! submitters.

use std::sync::{Arc, Mutex, MutexGuard};

use weir_operators::id_map::IdMap;
use weir_operators::{Chunk, Column, FieldType, RowError, RowId};

use crate::admission::Admission;
use crate::submit::{Replier, RowResult};

/// Bits of a row id that hold the row's index in its batch: batches hold at most
/// 2^20 rows.
pub const ROW_BITS: u32 = 20;

/// The largest batch one submission may hold.
pub const MAX_BATCH_ROWS: usize = 1 << ROW_BITS;

const SHARDS: usize = 16;

struct SlotState {
    pieces: Vec<Chunk>,
    rows: usize,
    remaining: usize,
    reply: Option<Replier>,
}

/// The reply slots of one graph.
pub(crate) struct ReplyTable {
    shards: Vec<Mutex<IdMap<Arc<Mutex<SlotState>>>>>,
    /// The graph's output types, for the fillers of rows never answered.
    outputs: Vec<FieldType>,
    /// Where a slot's permits go back, one per row, when it is answered or cancelled.
    admission: Arc<Admission>,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // A poisoned lock only means a reply callback panicked; the data is intact.
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// The row id of row `index` of slot `slot`.
pub(crate) fn row_id(slot: u64, index: usize) -> RowId {
    (slot << ROW_BITS) | index as u64
}

impl ReplyTable {
    /// The slots of a graph with outputs of types `outputs`, whose submissions hold
    /// permits of `admission`.
    pub(crate) fn new(outputs: Vec<FieldType>, admission: Arc<Admission>) -> Self {
        ReplyTable { shards: (0..SHARDS).map(|_| Mutex::new(IdMap::default())).collect(), outputs, admission }
    }

    fn shard(&self, slot: u64) -> &Mutex<IdMap<Arc<Mutex<SlotState>>>> {
        // A hash of the slot: in a cluster one process's slots share a residue.
        &self.shards[(slot.wrapping_mul(0x9E37_79B9_7F4A_7C15) >> 60) as usize % SHARDS]
    }

    /// Registers a slot for `rows` answers, whose submission holds `rows` permits.
    pub(crate) fn open(&self, slot: u64, rows: usize, reply: Replier) {
        let state = SlotState { pieces: Vec::new(), rows, remaining: rows, reply: Some(reply) };
        lock(self.shard(slot)).insert(slot, Arc::new(Mutex::new(state)));
    }

    /// Forgets a slot whose rows were never submitted and gives its permits back; its
    /// reply is not called.
    pub(crate) fn cancel(&self, slot: u64) {
        if let Some(state) = lock(self.shard(slot)).remove(&slot) {
            self.admission.release(lock(&state).rows);
        }
    }

    /// Delivers answered chunks (their output columns); calls a batch's reply when its
    /// last row is answered.
    pub(crate) fn deliver(&self, chunk: Chunk) {
        let slot = chunk.slot;
        let Some(state) = lock(self.shard(slot)).get(&slot).map(Arc::clone) else { return };
        let finished = {
            let mut st = lock(&state);
            st.remaining = st.remaining.saturating_sub(chunk.len());
            st.pieces.push(chunk);
            if st.remaining == 0 {
                st.reply.take().map(|reply| (reply, std::mem::take(&mut st.pieces), st.rows))
            } else {
                None
            }
        };
        if let Some((reply, pieces, rows)) = finished {
            lock(self.shard(slot)).remove(&slot);
            self.finish(slot, rows, pieces, reply);
        }
    }

    /// Answers every open slot's missing rows with `unavailable` (at shutdown).
    pub(crate) fn fail_all(&self) {
        let mut slots = Vec::new();
        for shard in &self.shards {
            slots.extend(lock(shard).drain());
        }
        for (slot, state) in slots {
            let (reply, pieces, rows) = {
                let mut st = lock(&state);
                (st.reply.take(), std::mem::take(&mut st.pieces), st.rows)
            };
            if let Some(reply) = reply {
                self.finish(slot, rows, pieces, reply);
            }
        }
    }

    /// Puts a slot's pieces in input order (rows missing from them fail with
    /// `unavailable`), gives its permits back and calls its reply.
    fn finish(&self, slot: u64, rows: usize, pieces: Vec<Chunk>, reply: Replier) {
        let chunk = self.assemble(slot, rows, pieces);
        self.admission.release(rows);
        match reply {
            Replier::Chunk(reply) => reply(chunk),
            Replier::Row(reply) => {
                if let Some(answer) = rows_of(&chunk).next() {
                    reply(answer);
                }
            }
            Replier::Rows(reply) => reply(rows_of(&chunk).collect()),
        }
    }

    fn assemble(&self, slot: u64, rows: usize, mut pieces: Vec<Chunk>) -> Chunk {
        let in_order = |c: &Chunk| c.len() == rows && c.ids.iter().enumerate().all(|(i, &id)| index_of(id) == i);
        if pieces.len() == 1 && in_order(&pieces[0]) {
            return pieces.remove(0);
        }
        let mut whole =
            Chunk::new(slot, Vec::new(), self.outputs.iter().map(|ty| Column::with_capacity(ty, rows)).collect());
        for piece in &pieces {
            whole.append(piece);
        }
        let mut at: Vec<Option<usize>> = vec![None; rows];
        for (r, &id) in whole.ids.iter().enumerate() {
            if let Some(slot @ None) = at.get_mut(index_of(id)) {
                *slot = Some(r);
            }
        }
        if at.iter().any(Option::is_none) {
            let missing: Vec<usize> = (0..rows).filter(|&i| at[i].is_none()).collect();
            let fillers = self.outputs.iter().map(|ty| Column::filler(ty, missing.len())).collect();
            let mut lost = Chunk::new(slot, missing.iter().map(|&i| row_id(slot, i)).collect(), fillers);
            lost.fail_all(unavailable());
            let base = whole.len();
            whole.append(&lost);
            for (k, &i) in missing.iter().enumerate() {
                at[i] = Some(base + k);
            }
        }
        let order: Vec<usize> = at.into_iter().flatten().collect();
        whole.gather(&order)
    }
}

/// A chunk's answers as rows: each row's output values, or its error.
fn rows_of(chunk: &Chunk) -> impl Iterator<Item = RowResult> + '_ {
    let all: Vec<usize> = (0..chunk.columns.len()).collect();
    (0..chunk.len()).map(move |row| match chunk.error(row) {
        Some(error) => Err(Arc::clone(error)),
        None => Ok(chunk.values(row, &all)),
    })
}

/// The index of a row in its batch.
fn index_of(id: RowId) -> usize {
    (id & ((1 << ROW_BITS) - 1)) as usize
}

fn unavailable() -> Arc<RowError> {
    Arc::new(RowError::engine_unavailable("the engine shut down before answering"))
}
