//! One worker's part of a table: a hash index from key to a slot, the values in typed
//! columns by slot, and the versions that readers may still ask for.
//!
//! A lookup at time `t` must see the table as of `t`: every upsert at a time `≤ t`, none
//! after. Upserts are applied as soon as they arrive, so the store keeps, beside each
//! key's newest row, the older versions of the keys changed at times that some reader
//! may still ask before: `history`, per key, `(time, slot or deleted)` in time order.
//! Readers (the lookup operators) say how far they have come
//! ([`TableStore::advance_reader`]: no query will come before that time), and the
//! store forgets a version once a newer one is at or before every reader's bound
//! ([`TableStore::compact`]). Most keys have one version and no history entry: a
//! lookup is one probe of the index (two while some key has history).
//!
//! Memory per key: the index entry (an `i64` and a `u32` slot, in a table about half
//! full) and the values in their columns, strings interned (up to [`INTERNED`] distinct
//! strings per field; a table with more stores each string as it came).

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Arc;

use crate::column::Column;
use crate::id_map::KeyMap;
use crate::table::{TableKey, TableRow};
use crate::value::{FieldType, Value};

/// Distinct strings interned per string field, at most.
pub const INTERNED: usize = 1 << 16;

type Time = u64;

/// The index: key → slot.
enum Index {
    I64(KeyMap<u32>),
    Str(HashMap<Arc<str>, u32>),
}

impl Index {
    fn get(&self, key: &TableKey) -> Option<u32> {
        match (self, key) {
            (Index::I64(m), TableKey::I64(k)) => m.get(k).copied(),
            (Index::Str(m), TableKey::Str(k)) => m.get(k).copied(),
            _ => None,
        }
    }

    fn insert(&mut self, key: &TableKey, slot: u32) -> Option<u32> {
        match (self, key) {
            (Index::I64(m), TableKey::I64(k)) => m.insert(*k, slot),
            (Index::Str(m), TableKey::Str(k)) => m.insert(Arc::clone(k), slot),
            _ => None,
        }
    }

    fn remove(&mut self, key: &TableKey) -> Option<u32> {
        match (self, key) {
            (Index::I64(m), TableKey::I64(k)) => m.remove(k),
            (Index::Str(m), TableKey::Str(k)) => m.remove(k),
            _ => None,
        }
    }

    fn len(&self) -> usize {
        match self {
            Index::I64(m) => m.len(),
            Index::Str(m) => m.len(),
        }
    }
}

/// A key's versions, oldest first: from each time on, its slot (`None`: not in the
/// table).
type Versions = Vec<(Time, Option<u32>)>;

/// One worker's part of a table (see the module docs).
pub struct TableStore {
    index: Index,
    /// One column per value field, one row per slot.
    values: Vec<Column>,
    /// Per string field (by position), its interned strings.
    interned: Vec<Option<HashSet<Arc<str>>>>,
    /// Slots no version uses.
    free: Vec<u32>,
    /// Keys changed at times some reader may still ask before.
    history: HashMap<TableKey, Versions>,
    /// Keys in `history` by the time of their newest version, for compaction.
    changed: BTreeMap<Time, Vec<TableKey>>,
    /// Per reader: no query will come before this time.
    readers: Vec<Time>,
}

impl TableStore {
    /// An empty store for keys like `key` (an `i64` or a `str` key; a key of the other
    /// kind is never found) and values of these types.
    pub fn new(int_keys: bool, values: &[FieldType]) -> TableStore {
        TableStore {
            index: if int_keys { Index::I64(KeyMap::default()) } else { Index::Str(HashMap::new()) },
            values: values.iter().map(|t| Column::with_capacity(t, 0)).collect(),
            interned: values.iter().map(|t| matches!(t.dtype, crate::DType::Str).then(HashSet::new)).collect(),
            free: Vec::new(),
            history: HashMap::new(),
            changed: BTreeMap::new(),
            readers: Vec::new(),
        }
    }

    /// Registers a reader, which starts at time 0; returns its number.
    pub fn add_reader(&mut self) -> usize {
        self.readers.push(0);
        self.readers.len() - 1
    }

    /// Reader `reader` will ask at `bound` or later from now on: the versions no
    /// reader can ask for any more are forgotten ([`TableStore::compact`]).
    pub fn advance_reader(&mut self, reader: usize, bound: Time) {
        if let Some(b) = self.readers.get_mut(reader) {
            *b = bound;
        }
        self.compact();
    }

    /// The earliest time any reader may still ask at (`u64::MAX` with no readers).
    fn bound(&self) -> Time {
        self.readers.iter().copied().min().unwrap_or(Time::MAX)
    }

    /// The number of keys with a row now (at the newest version of each).
    pub fn keys(&self) -> usize {
        self.index.len()
    }

    /// Applies an upsert: from `time` on, `key` has `row` (`None`: leaves the table).
    /// Of two upserts to one key at one time, the later applied wins. Returns the change
    /// in the number of keys the table holds at its newest versions (-1, 0 or 1).
    pub fn upsert(&mut self, key: &TableKey, row: Option<&TableRow>, time: Time) -> isize {
        let keys_before = self.index.len() as isize;
        let needs_history = time > self.bound() || self.history.contains_key(key);
        if !needs_history {
            // Every reader is at `time` or later: the old row can go.
            match (self.index.get(key), row) {
                (Some(slot), Some(row)) => self.write(slot, row),
                (Some(slot), None) => {
                    self.index.remove(key);
                    self.free.push(slot);
                }
                (None, Some(row)) => {
                    let slot = self.alloc(row);
                    self.index.insert(key, slot);
                }
                (None, None) => {}
            }
            return self.index.len() as isize - keys_before;
        }
        let slot = row.map(|r| self.alloc(r));
        let current = self.index.get(key);
        let versions = self.history.entry(key.clone()).or_insert_with(|| vec![(0, current)]);
        // In time order; an upsert at a time already there replaces that version.
        let at = versions.partition_point(|(t, _)| *t <= time);
        if at > 0 && versions[at - 1].0 == time && at > 1 {
            if let Some(old) = std::mem::replace(&mut versions[at - 1].1, slot) {
                self.free.push(old);
            }
        } else {
            versions.insert(at, (time, slot));
        }
        let newest = versions.last().map_or(0, |(t, _)| *t);
        let newest_slot = versions.last().and_then(|(_, s)| *s);
        self.changed.entry(newest).or_default().push(key.clone());
        match newest_slot {
            Some(s) => {
                self.index.insert(key, s);
            }
            None => {
                self.index.remove(key);
            }
        }
        self.index.len() as isize - keys_before
    }

    /// The slot of `key`'s row as of `time` (every upsert at `time` or before), if it had
    /// one. `time` must be at or after the asking reader's bound.
    pub fn get(&self, key: &TableKey, time: Time) -> Option<u32> {
        if !self.history.is_empty() {
            if let Some(versions) = self.history.get(key) {
                let at = versions.partition_point(|(t, _)| *t <= time);
                return versions.get(at.checked_sub(1)?).and_then(|(_, s)| *s);
            }
        }
        self.index.get(key)
    }

    /// Appends slot `slot`'s values to `out` (one column per value field).
    pub fn push_values(&self, slot: u32, out: &mut [Column]) {
        for (o, c) in out.iter_mut().zip(&self.values) {
            o.push_from(c, slot as usize);
        }
    }

    /// Forgets the versions no reader can ask for any more: of each key changed before
    /// every reader's bound, all but its newest version at or before that bound.
    fn compact(&mut self) {
        let bound = self.bound();
        while let Some(entry) = self.changed.first_entry() {
            if *entry.key() > bound {
                break;
            }
            for key in entry.remove() {
                let Some(versions) = self.history.get_mut(&key) else { continue };
                let keep_from = versions.partition_point(|(t, _)| *t <= bound).saturating_sub(1);
                for (_, slot) in versions.drain(..keep_from) {
                    self.free.extend(slot);
                }
                if versions.len() <= 1 {
                    self.history.remove(&key);
                }
            }
        }
    }

    /// A slot holding `row`.
    fn alloc(&mut self, row: &TableRow) -> u32 {
        match self.free.pop() {
            Some(slot) => {
                self.write(slot, row);
                slot
            }
            None => {
                let slot = self.values.first().map_or(0, Column::len) as u32;
                for (i, v) in row.0.iter().enumerate() {
                    let v = self.intern(i, v);
                    if let Some(c) = self.values.get_mut(i) {
                        c.push(&v);
                    }
                }
                slot
            }
        }
    }

    /// Overwrites slot `slot` with `row`.
    fn write(&mut self, slot: u32, row: &TableRow) {
        for (i, v) in row.0.iter().enumerate() {
            let v = self.intern(i, v);
            if let Some(c) = self.values.get_mut(i) {
                c.set(slot as usize, &v);
            }
        }
    }

    /// `v`, its string shared with equal strings stored before (see [`INTERNED`]).
    fn intern(&mut self, field: usize, v: &Value) -> Value {
        match (v, self.interned.get_mut(field)) {
            (Value::Str(s), Some(Some(set))) => match set.get(s) {
                Some(shared) => Value::Str(Arc::clone(shared)),
                None => {
                    if set.len() < INTERNED {
                        set.insert(Arc::clone(s));
                    }
                    v.clone()
                }
            },
            _ => v.clone(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::value::DType;

    fn row(v: f32, s: &str) -> TableRow {
        TableRow::new(vec![Value::F32(v), Value::Str(s.into())])
    }

    fn store() -> TableStore {
        TableStore::new(true, &[FieldType::scalar(DType::F32), FieldType::scalar(DType::Str)])
    }

    fn read(s: &TableStore, key: i64, time: Time) -> Option<(f32, String)> {
        let slot = s.get(&TableKey::I64(key), time)?;
        let mut out = vec![Column::F32(vec![]), Column::Str(vec![])];
        s.push_values(slot, &mut out);
        match (&out[0], &out[1]) {
            (Column::F32(v), Column::Str(t)) => Some((v[0], t[0].to_string())),
            _ => None,
        }
    }

    #[test]
    fn a_reader_sees_each_key_as_of_its_time_until_it_moves_on() {
        let mut s = store();
        let r = s.add_reader();
        let k = TableKey::I64(7);
        assert_eq!(s.upsert(&k, Some(&row(1.0, "fr")), 0), 1);
        assert_eq!(s.upsert(&k, Some(&row(2.0, "de")), 5), 0);
        assert_eq!(s.upsert(&k, None, 9), -1);
        assert_eq!(read(&s, 7, 0), Some((1.0, "fr".into())));
        assert_eq!(read(&s, 7, 4), Some((1.0, "fr".into())));
        assert_eq!(read(&s, 7, 5), Some((2.0, "de".into())));
        assert_eq!(read(&s, 7, 9), None);
        assert_eq!(s.keys(), 0);
        // The reader moves past 5: the first version goes, the rest stays.
        s.advance_reader(r, 6);
        assert_eq!(read(&s, 7, 6), Some((2.0, "de".into())));
        assert_eq!(read(&s, 7, 10), None);
        s.advance_reader(r, 9);
        assert!(s.history.is_empty(), "one version left: no history");
        assert_eq!(read(&s, 7, 9), None);
        // Every slot is free again.
        assert_eq!(s.free.len(), 2);
    }

    #[test]
    fn upserts_out_of_time_order_keep_the_newest_as_current() {
        let mut s = store();
        let _r = s.add_reader();
        let k = TableKey::I64(1);
        s.upsert(&k, Some(&row(3.0, "c")), 3);
        s.upsert(&k, Some(&row(2.0, "b")), 2);
        assert_eq!(read(&s, 1, 1), None);
        assert_eq!(read(&s, 1, 2), Some((2.0, "b".into())));
        assert_eq!(read(&s, 1, 100), Some((3.0, "c".into())));
        // A second upsert at one time replaces the first.
        s.upsert(&k, Some(&row(4.0, "d")), 3);
        assert_eq!(read(&s, 1, 3), Some((4.0, "d".into())));
        assert_eq!(s.keys(), 1);
    }

    #[test]
    fn without_readers_behind_an_upsert_the_row_is_replaced_in_place() {
        let mut s = store();
        let r = s.add_reader();
        s.advance_reader(r, 10);
        for i in 0..1000 {
            s.upsert(&TableKey::I64(i % 10), Some(&row(i as f32, "same")), 10);
        }
        assert!(s.history.is_empty());
        assert_eq!(s.values[0].len(), 10, "one slot per key");
        assert_eq!(read(&s, 3, 10), Some((993.0, "same".into())));
        // Strings are interned: one allocation for every "same".
        match &s.values[1] {
            Column::Str(v) => assert!(v.iter().all(|x| Arc::ptr_eq(x, &v[0]))),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn string_keys_and_keys_of_the_other_kind() {
        let mut s = TableStore::new(false, &[FieldType::scalar(DType::F32), FieldType::scalar(DType::Str)]);
        s.upsert(&TableKey::Str("a".into()), Some(&row(1.0, "x")), 0);
        assert!(s.get(&TableKey::Str("a".into()), 0).is_some());
        assert!(s.get(&TableKey::I64(1), 0).is_none());
    }
}
