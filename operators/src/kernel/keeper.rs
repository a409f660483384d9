//! What a learning node keeps of its predictions until their labels come: the features
//! of each prediction by its key, bounded by a count and an age.
//!
//! Feedback names a key; [`Keeper::take`] hands back (and forgets) the features that
//! key was predicted with. A key never kept is [`Miss::Unknown`]; one dropped for room
//! or age is [`Miss::Expired`] (the keeper remembers as many dropped keys as it keeps
//! rows, to tell the two apart). A key predicted again replaces its features.

use std::collections::{HashMap, VecDeque};
use std::hash::{Hash, Hasher};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use crate::id_map::SeededKeys;

/// The key feedback is joined on.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub enum Key {
    /// An `i64` key field.
    Int(i64),
    /// A `str` key field.
    Text(String),
}

impl Hash for Key {
    /// An integer key hashes as the integer alone (one multiplication with
    /// [`SeededKeys`]); a text key as its string.
    fn hash<H: Hasher>(&self, state: &mut H) {
        match self {
            Key::Int(k) => state.write_i64(*k),
            Key::Text(t) => t.hash(state),
        }
    }
}

/// Why feedback found no features.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Miss {
    /// No prediction with this key was kept.
    Unknown,
    /// The prediction was dropped (too old, or for room) before its label came.
    Expired,
}

/// The stamp of an arena row that holds no kept row.
const FREE: u64 = u64::MAX;

/// Features by key, bounded.
///
/// The features of every kept row live in one arena of `width` numbers per row,
/// whose freed rows are reused: keeping and taking a row allocates nothing once the
/// arena has grown to the rows kept at once, and costs one hash-map probe.
#[derive(Debug)]
pub struct Keeper {
    width: usize,
    max_rows: usize,
    keep_for: Option<Duration>,
    /// Key → its row in the arena (`width` numbers from `at × width`).
    rows: HashMap<Key, usize, SeededKeys>,
    arena: Vec<f32>,
    /// Per arena row, the stamp of the insertion it holds, or [`FREE`].
    stamps: Vec<u64>,
    free: Vec<usize>,
    /// Keys in insertion order with their insertion stamp, arena row and time (an
    /// entry whose row has since been taken or replaced is skipped when it reaches the
    /// front).
    order: VecDeque<(Key, u64, usize, Instant)>,
    /// Keys dropped for room or age, with the stamp of the insertion dropped, remembered
    /// so that a late label is told expired, not unknown (at most `max_rows` of them).
    gone: HashMap<Key, u64, SeededKeys>,
    /// The drops in order; an entry whose key was kept again (or dropped again) since
    /// no longer matches `gone` and is skipped.
    gone_order: VecDeque<(Key, u64)>,
    next: u64,
}

impl Keeper {
    /// Keeps at most `max_rows` rows of `width` features, each for at most `keep_for`
    /// (`None`: no age limit; deterministic engines use none, as wall-clock age is not
    /// reproducible).
    pub fn new(width: usize, max_rows: usize, keep_for: Option<Duration>) -> Keeper {
        Keeper {
            width: width.max(1),
            max_rows: max_rows.max(1),
            keep_for,
            rows: HashMap::default(),
            arena: Vec::new(),
            stamps: Vec::new(),
            free: Vec::new(),
            order: VecDeque::new(),
            gone: HashMap::default(),
            gone_order: VecDeque::new(),
            next: 0,
        }
    }

    /// Rows kept.
    pub fn len(&self) -> usize {
        self.rows.len()
    }

    /// Whether nothing is kept.
    pub fn is_empty(&self) -> bool {
        self.rows.is_empty()
    }

    /// Whether nothing is kept and no dropped key is remembered: then keeping rows and
    /// taking them back depends on those rows alone, and leaves the keeper as it was.
    pub fn is_pristine_empty(&self) -> bool {
        self.rows.is_empty() && self.gone.is_empty()
    }

    /// The most rows kept at once.
    pub fn max_rows(&self) -> usize {
        self.max_rows
    }

    /// Keeps `features` (`width` numbers; others are cut or padded with zeros) for
    /// `key`, dropping the oldest rows beyond the bounds.
    pub fn insert(&mut self, key: Key, features: &[f32], now: Instant) {
        let stamp = self.next;
        self.next += 1;
        if !self.gone.is_empty() {
            self.gone.remove(&key);
        }
        let at = *self.rows.entry(key.clone()).or_insert_with(|| {
            self.free.pop().unwrap_or_else(|| {
                self.arena.resize(self.arena.len() + self.width, 0.0);
                self.stamps.push(FREE);
                self.stamps.len() - 1
            })
        });
        self.stamps[at] = stamp;
        let row = &mut self.arena[at * self.width..(at + 1) * self.width];
        let n = features.len().min(self.width);
        row[..n].copy_from_slice(&features[..n]);
        row[n..].fill(0.0);
        self.order.push_back((key, stamp, at, now));
        self.expire(now);
    }

    /// Drops rows older than the age bound, and the oldest beyond the count bound.
    /// Memory stays within about twice `max_rows` entries.
    pub fn expire(&mut self, now: Instant) {
        while let Some(&(_, stamp, at, kept)) = self.order.front() {
            let live = self.stamps[at] == stamp;
            let too_old = self.keep_for.is_some_and(|d| now.saturating_duration_since(kept) > d);
            // The order list also holds entries of keys taken or replaced since; bounding
            // it too keeps a row that never gets feedback from pinning them all.
            let within = self.rows.len() <= self.max_rows && self.order.len() <= 2 * self.max_rows;
            if live && !too_old && within {
                break;
            }
            if let Some((key, _, _, _)) = self.order.pop_front() {
                if live {
                    self.rows.remove(&key);
                    self.release(at);
                    self.remember_gone(key, stamp);
                }
            }
        }
    }

    /// The features `key` was predicted with, forgotten once taken (the slice is valid
    /// until the keeper next changes).
    pub fn take(&mut self, key: &Key, now: Instant) -> Result<&[f32], Miss> {
        self.expire(now);
        match self.rows.remove(key) {
            Some(at) => {
                self.release(at);
                Ok(&self.arena[at * self.width..(at + 1) * self.width])
            }
            None if self.gone.contains_key(key) => Err(Miss::Expired),
            None => Err(Miss::Unknown),
        }
    }

    /// Arena row `at` holds no kept row any more (its numbers stay until reused).
    fn release(&mut self, at: usize) {
        self.stamps[at] = FREE;
        self.free.push(at);
    }

    fn remember_gone(&mut self, key: Key, stamp: u64) {
        self.gone.insert(key.clone(), stamp);
        self.gone_order.push_back((key, stamp));
        while self.gone_order.len() > self.max_rows {
            if let Some((old, stamp)) = self.gone_order.pop_front() {
                if self.gone.get(&old) == Some(&stamp) {
                    self.gone.remove(&old);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn takes_once_and_tells_unknown_from_expired() {
        let now = Instant::now();
        let mut k = Keeper::new(1, 2, None);
        k.insert(Key::Int(1), &[1.0], now);
        k.insert(Key::Int(2), &[2.0], now);
        k.insert(Key::Int(3), &[3.0], now);
        assert_eq!(k.len(), 2, "bounded by count");
        assert_eq!(k.take(&Key::Int(1), now), Err(Miss::Expired));
        assert_eq!(k.take(&Key::Int(2), now), Ok(&[2.0][..]));
        assert_eq!(k.take(&Key::Int(2), now), Err(Miss::Unknown), "taken once");
        assert_eq!(k.take(&Key::Text("x".into()), now), Err(Miss::Unknown));
    }

    #[test]
    fn a_key_dropped_twice_is_remembered_from_its_last_drop() {
        let now = Instant::now();
        let mut k = Keeper::new(1, 2, None);
        let keep =
            |k: &mut Keeper, keys: &[i64]| keys.iter().for_each(|&key| k.insert(Key::Int(key), &[key as f32], now));
        keep(&mut k, &[1, 2, 3]); // drops 1
        assert_eq!(k.take(&Key::Int(2), now), Ok(&[2.0][..]));
        assert_eq!(k.take(&Key::Int(3), now), Ok(&[3.0][..]));
        keep(&mut k, &[1, 4, 5]); // 1 kept again, then dropped again
        keep(&mut k, &[6]); // drops 4: the drops remembered are the second of 1, and 4
        assert_eq!(k.take(&Key::Int(1), now), Err(Miss::Expired), "its first drop is forgotten, not its last");
        assert_eq!(k.take(&Key::Int(4), now), Err(Miss::Expired));
        assert_eq!(k.take(&Key::Int(5), now), Ok(&[5.0][..]));
    }

    #[test]
    fn a_key_predicted_again_keeps_its_new_features() {
        let now = Instant::now();
        let mut k = Keeper::new(1, 2, None);
        k.insert(Key::Int(1), &[1.0], now);
        k.insert(Key::Int(1), &[9.0], now);
        k.insert(Key::Int(2), &[2.0], now);
        assert_eq!(k.len(), 2);
        assert_eq!(k.take(&Key::Int(1), now), Ok(&[9.0][..]));
    }

    #[test]
    fn rows_expire_by_age() {
        let start = Instant::now();
        let mut k = Keeper::new(1, 10, Some(Duration::from_millis(100)));
        k.insert(Key::Int(1), &[1.0], start);
        k.insert(Key::Int(2), &[2.0], start + Duration::from_millis(80));
        let later = start + Duration::from_millis(150);
        assert_eq!(k.take(&Key::Int(1), later), Err(Miss::Expired));
        assert_eq!(k.take(&Key::Int(2), later), Ok(&[2.0][..]));
    }

    #[test]
    fn a_taken_row_makes_room_for_the_next_without_growing() {
        let now = Instant::now();
        let mut k = Keeper::new(2, 100, None);
        k.insert(Key::Int(1), &[1.0, 2.0], now);
        assert_eq!(k.take(&Key::Int(1), now), Ok(&[1.0, 2.0][..]));
        k.insert(Key::Int(2), &[3.0], now);
        assert_eq!(k.arena.len(), 2, "the freed row is reused");
        assert_eq!(k.take(&Key::Int(2), now), Ok(&[3.0, 0.0][..]), "a short row is padded");
    }
}
