//! What a learning node keeps of its predictions until their labels come: the features
//! of each prediction by its key, bounded by a count and an age.
//!
//! Feedback names a key; [`Keeper::take`] hands back (and forgets) the features that
//! key was predicted with. A key never kept is [`Miss::Unknown`]; one dropped for room
//! or age is [`Miss::Expired`] (the keeper remembers as many dropped keys as it keeps
//! rows, to tell the two apart). A key predicted again replaces its features.

use std::collections::{HashMap, HashSet, VecDeque};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

/// The key feedback is joined on.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub enum Key {
    /// An `i64` key field.
    Int(i64),
    /// A `str` key field.
    Text(String),
}

/// Why feedback found no features.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Miss {
    /// No prediction with this key was kept.
    Unknown,
    /// The prediction was dropped (too old, or for room) before its label came.
    Expired,
}

/// Features by key, bounded.
#[derive(Debug)]
pub struct Keeper {
    max_rows: usize,
    keep_for: Option<Duration>,
    rows: HashMap<Key, (Vec<f32>, u64)>,
    /// Keys in insertion order with their insertion stamp and time (a replaced key's
    /// older entry is skipped when it reaches the front).
    order: VecDeque<(Key, u64, Instant)>,
    gone: HashSet<Key>,
    gone_order: VecDeque<Key>,
    next: u64,
}

impl Keeper {
    /// Keeps at most `max_rows` rows, each for at most `keep_for` (`None`: no age
    /// limit; deterministic engines use none, as wall-clock age is not reproducible).
    pub fn new(max_rows: usize, keep_for: Option<Duration>) -> Keeper {
        Keeper {
            max_rows: max_rows.max(1),
            keep_for,
            rows: HashMap::new(),
            order: VecDeque::new(),
            gone: HashSet::new(),
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

    /// Keeps `features` for `key`, dropping the oldest rows beyond the bounds.
    pub fn insert(&mut self, key: Key, features: Vec<f32>, now: Instant) {
        let stamp = self.next;
        self.next += 1;
        self.gone.remove(&key);
        self.rows.insert(key.clone(), (features, stamp));
        self.order.push_back((key, stamp, now));
        self.expire(now);
    }

    /// Drops rows older than the age bound, and the oldest beyond the count bound.
    /// Memory stays within about twice `max_rows` entries.
    pub fn expire(&mut self, now: Instant) {
        while let Some((key, stamp, at)) = self.order.front() {
            let live = self.rows.get(key).is_some_and(|(_, s)| s == stamp);
            let too_old = self.keep_for.is_some_and(|d| now.saturating_duration_since(*at) > d);
            // The order list also holds entries of keys taken or replaced since; bounding
            // it too keeps a row that never gets feedback from pinning them all.
            let within = self.rows.len() <= self.max_rows && self.order.len() <= 2 * self.max_rows;
            if live && !too_old && within {
                break;
            }
            if let Some((key, _, _)) = self.order.pop_front() {
                if live {
                    self.rows.remove(&key);
                    self.remember_gone(key);
                }
            }
        }
    }

    /// The features `key` was predicted with, forgotten once taken.
    pub fn take(&mut self, key: &Key, now: Instant) -> Result<Vec<f32>, Miss> {
        self.expire(now);
        match self.rows.remove(key) {
            Some((features, _)) => Ok(features),
            None if self.gone.contains(key) => Err(Miss::Expired),
            None => Err(Miss::Unknown),
        }
    }

    fn remember_gone(&mut self, key: Key) {
        if self.gone.insert(key.clone()) {
            self.gone_order.push_back(key);
        }
        while self.gone_order.len() > self.max_rows {
            if let Some(old) = self.gone_order.pop_front() {
                self.gone.remove(&old);
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
        let mut k = Keeper::new(2, None);
        k.insert(Key::Int(1), vec![1.0], now);
        k.insert(Key::Int(2), vec![2.0], now);
        k.insert(Key::Int(3), vec![3.0], now);
        assert_eq!(k.len(), 2, "bounded by count");
        assert_eq!(k.take(&Key::Int(1), now), Err(Miss::Expired));
        assert_eq!(k.take(&Key::Int(2), now), Ok(vec![2.0]));
        assert_eq!(k.take(&Key::Int(2), now), Err(Miss::Unknown), "taken once");
        assert_eq!(k.take(&Key::Text("x".into()), now), Err(Miss::Unknown));
    }

    #[test]
    fn a_key_predicted_again_keeps_its_new_features() {
        let now = Instant::now();
        let mut k = Keeper::new(2, None);
        k.insert(Key::Int(1), vec![1.0], now);
        k.insert(Key::Int(1), vec![9.0], now);
        k.insert(Key::Int(2), vec![2.0], now);
        assert_eq!(k.len(), 2);
        assert_eq!(k.take(&Key::Int(1), now), Ok(vec![9.0]));
    }

    #[test]
    fn rows_expire_by_age() {
        let start = Instant::now();
        let mut k = Keeper::new(10, Some(Duration::from_millis(100)));
        k.insert(Key::Int(1), vec![1.0], start);
        k.insert(Key::Int(2), vec![2.0], start + Duration::from_millis(80));
        let later = start + Duration::from_millis(150);
        assert_eq!(k.take(&Key::Int(1), later), Err(Miss::Expired));
        assert_eq!(k.take(&Key::Int(2), later), Ok(vec![2.0]));
    }
}
