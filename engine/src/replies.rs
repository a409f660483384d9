//! Where answers go: reply slots for submitted batches, found by row id.
//!
//! A submitted batch of `n` rows gets a slot id; its rows get the ids
//! `slot << ROW_BITS | index`, so the sink finds a row's slot without a per-row table
//! entry. The slot collects answers in input order and calls the batch's reply once,
//! when the last one arrives, on the worker thread that delivered it. Slots live in a
//! sharded map to spread lock contention between workers and submitters.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};

use weir_operators::{ErrorCode, RowError, RowId};

use crate::runtime::RowResult;

/// Bits of a row id that hold the row's index in its batch: batches hold at most
/// 2^20 rows.
pub const ROW_BITS: u32 = 20;

/// The largest batch one submission may hold.
pub const MAX_BATCH_ROWS: usize = 1 << ROW_BITS;

/// Called once with the answers of a batch, in input order, on a worker thread; must
/// not block.
pub type BatchReply = Box<dyn FnOnce(Vec<RowResult>) + Send>;

const SHARDS: usize = 16;

struct SlotState {
    results: Vec<Option<RowResult>>,
    remaining: usize,
    reply: Option<BatchReply>,
}

/// The reply slots of one graph.
pub(crate) struct ReplyTable {
    shards: Vec<Mutex<HashMap<u64, Arc<Mutex<SlotState>>>>>,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // A poisoned lock only means a reply callback panicked; the data is intact.
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl SlotState {
    /// Records one answer; a second answer for the same row is ignored.
    fn store(&mut self, id: RowId, result: RowResult) {
        let index = (id & ((1 << ROW_BITS) - 1)) as usize;
        if let Some(slot @ None) = self.results.get_mut(index) {
            *slot = Some(result);
            self.remaining -= 1;
        }
    }
}

/// The slot of a row id.
pub(crate) fn slot_of(id: RowId) -> u64 {
    id >> ROW_BITS
}

/// The row id of row `index` of slot `slot`.
pub(crate) fn row_id(slot: u64, index: usize) -> RowId {
    (slot << ROW_BITS) | index as u64
}

impl ReplyTable {
    pub(crate) fn new() -> Self {
        ReplyTable { shards: (0..SHARDS).map(|_| Mutex::new(HashMap::new())).collect() }
    }

    fn shard(&self, slot: u64) -> &Mutex<HashMap<u64, Arc<Mutex<SlotState>>>> {
        &self.shards[slot as usize % SHARDS]
    }

    /// Registers a slot for `rows` answers.
    pub(crate) fn open(&self, slot: u64, rows: usize, reply: BatchReply) {
        let state = SlotState { results: (0..rows).map(|_| None).collect(), remaining: rows, reply: Some(reply) };
        lock(self.shard(slot)).insert(slot, Arc::new(Mutex::new(state)));
    }

    /// Forgets a slot whose rows were never submitted; its reply is not called.
    pub(crate) fn cancel(&self, slot: u64) {
        lock(self.shard(slot)).remove(&slot);
    }

    /// Delivers answers; calls a batch's reply when its last answer arrives. Consecutive
    /// answers of one slot are stored under one lock.
    pub(crate) fn deliver(&self, answers: impl IntoIterator<Item = (RowId, RowResult)>) {
        let mut answers = answers.into_iter().peekable();
        while let Some((id, result)) = answers.next() {
            let slot = slot_of(id);
            let Some(state) = lock(self.shard(slot)).get(&slot).map(Arc::clone) else { continue };
            let finished = {
                let mut st = lock(&state);
                st.store(id, result);
                while let Some((id, result)) = answers.next_if(|(next, _)| slot_of(*next) == slot) {
                    st.store(id, result);
                }
                if st.remaining == 0 {
                    st.reply.take().map(|reply| (reply, std::mem::take(&mut st.results)))
                } else {
                    None
                }
            };
            if let Some((reply, results)) = finished {
                lock(self.shard(slot)).remove(&slot);
                reply(results.into_iter().map(|r| r.unwrap_or_else(|| Err(unavailable()))).collect());
            }
        }
    }

    /// Answers every open slot's missing rows with `unavailable` (at shutdown).
    pub(crate) fn fail_all(&self) {
        let mut slots = Vec::new();
        for shard in &self.shards {
            slots.extend(lock(shard).drain().map(|(_, s)| s));
        }
        for state in slots {
            let (reply, results) = {
                let mut st = lock(&state);
                (st.reply.take(), std::mem::take(&mut st.results))
            };
            if let Some(reply) = reply {
                reply(results.into_iter().map(|r| r.unwrap_or_else(|| Err(unavailable()))).collect());
            }
        }
    }
}

fn unavailable() -> Arc<RowError> {
    Arc::new(RowError::new(ErrorCode::Unavailable, "engine", "the engine shut down before answering"))
}
