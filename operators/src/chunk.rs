//! Chunks: what flows along every edge of a compiled graph.
//!
//! A chunk is a group of rows of one submission (a request, a Kafka poll, a block of a
//! replayed file), stored by column: the rows' ids, one [`Column`] per field of the
//! edge's schema, and for each row either nothing or the [`RowError`] that ended its
//! computation. Errors are data: an operator passes a failed row on untouched (its
//! column slots hold fillers), so every row that enters a graph leaves it exactly once,
//! as an answer or as an error that names the node that failed.
//!
//! Operators keep a chunk whole where they can: a map adds a column, a model node
//! returns a chunk once all of its rows are computed, a combine joins the chunks of its
//! branches that hold the same rows. A route splits a chunk into one per branch; rows of
//! one submission may then travel in several chunks, all with the submission's `slot`.
//! Columns sit behind `Arc`s, so fanning a chunk out to several branches copies pointers.
//!
//! A chunk crosses processes (a cluster's exchange) serialized: its columns and errors by
//! value, its deadline as a wall-clock time (an [`Instant`] means nothing in another
//! process), turned back into the receiver's `Instant`. Across machines a deadline is
//! then as exact as their clocks agree.

use std::sync::Arc;
use std::time::Instant;

use serde::{Deserialize, Serialize};

use crate::column::Column;
use crate::row::{RowError, RowId};
use crate::value::Value;

/// Rows of one submission, by column.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Chunk {
    /// The submission the rows belong to: every row id of the chunk is `slot`'s.
    pub slot: u64,
    /// The rows' ids, unique within a running graph.
    pub ids: Vec<RowId>,
    /// One column per field of the edge's schema, each `ids.len()` long.
    pub columns: Vec<Arc<Column>>,
    /// Per row, the error that stopped it; empty while no row has failed.
    pub errors: Vec<Option<Arc<RowError>>>,
    /// When the rows' answers stop being useful: a model node does not compute a row
    /// past it (the row fails with `deadline_exceeded`), and closes a partial batch
    /// early to meet it.
    #[serde(with = "wall_clock")]
    pub deadline: Option<Instant>,
    /// The logical time the submitter gave the rows (deterministic engines, see
    /// `dataflow::clock`); `None`: the source's time (0, live).
    pub time: Option<u64>,
}

impl Chunk {
    /// A chunk of rows with these columns, none failed.
    pub fn new(slot: u64, ids: Vec<RowId>, columns: Vec<Column>) -> Chunk {
        Chunk {
            slot,
            ids,
            columns: columns.into_iter().map(Arc::new).collect(),
            errors: Vec::new(),
            deadline: None,
            time: None,
        }
    }

    /// The number of rows.
    pub fn len(&self) -> usize {
        self.ids.len()
    }

    /// Whether the chunk has no rows.
    pub fn is_empty(&self) -> bool {
        self.ids.is_empty()
    }

    /// The error of row `row`, if it failed.
    pub fn error(&self, row: usize) -> Option<&Arc<RowError>> {
        self.errors.get(row).and_then(Option::as_ref)
    }

    /// Whether row `row` is still computing (has not failed).
    pub fn is_ok(&self, row: usize) -> bool {
        self.error(row).is_none()
    }

    /// Whether any row has failed.
    pub fn has_errors(&self) -> bool {
        self.errors.iter().any(Option::is_some)
    }

    /// Fails row `row` with `error`, unless it has already failed (the first error wins).
    pub fn fail(&mut self, row: usize, error: Arc<RowError>) {
        if self.errors.is_empty() {
            self.errors = vec![None; self.ids.len()];
        }
        if let Some(slot @ None) = self.errors.get_mut(row) {
            *slot = Some(error);
        }
    }

    /// Fails every row not yet failed with `error`.
    pub fn fail_all(&mut self, error: Arc<RowError>) {
        for row in 0..self.len() {
            self.fail(row, Arc::clone(&error));
        }
    }

    /// The values of row `row` at the columns `fields`.
    pub fn values(&self, row: usize, fields: &[usize]) -> Vec<Value> {
        fields.iter().map(|&f| self.columns[f].value(row)).collect()
    }

    /// A chunk of the rows at `rows`, in that order, with every column.
    pub fn gather(&self, rows: &[usize]) -> Chunk {
        let errors =
            if self.errors.is_empty() { Vec::new() } else { rows.iter().map(|&r| self.errors[r].clone()).collect() };
        Chunk {
            slot: self.slot,
            ids: rows.iter().map(|&r| self.ids[r]).collect(),
            columns: self.columns.iter().map(|c| Arc::new(c.gather(rows))).collect(),
            errors,
            deadline: self.deadline,
            time: self.time,
        }
    }

    /// The same rows with only the columns at `fields`, in that order.
    pub fn project(mut self, fields: &[usize]) -> Chunk {
        self.columns = fields.iter().map(|&f| Arc::clone(&self.columns[f])).collect();
        self
    }

    /// Appends the rows of `other` (same schema and slot).
    pub fn append(&mut self, other: &Chunk) {
        let before = self.len();
        self.ids.extend_from_slice(&other.ids);
        for (c, o) in self.columns.iter_mut().zip(&other.columns) {
            Arc::make_mut(c).extend_from(o);
        }
        if !self.errors.is_empty() || !other.errors.is_empty() {
            self.errors.resize(before, None);
            if other.errors.is_empty() {
                self.errors.resize(before + other.len(), None);
            } else {
                self.errors.extend(other.errors.iter().cloned());
            }
        }
    }
}

/// A deadline as nanoseconds since the Unix epoch on the wire (see the module docs).
mod wall_clock {
    use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

    use serde::{Deserialize, Deserializer, Serialize, Serializer};

    /// `at` on the wall clock: now's wall-clock time, moved by how far `at` is from now.
    fn to_unix_nanos(at: Instant) -> i64 {
        let (now, wall) = (Instant::now(), SystemTime::now());
        let wall = wall.duration_since(UNIX_EPOCH).unwrap_or(Duration::ZERO).as_nanos() as i64;
        match at.checked_duration_since(now) {
            Some(ahead) => wall.saturating_add(ahead.as_nanos() as i64),
            None => wall.saturating_sub(now.duration_since(at).as_nanos() as i64),
        }
    }

    /// The `Instant` of `nanos` since the epoch: now, moved by how far `nanos` is from
    /// now's wall-clock time (saturating at now for a time too far back to represent).
    fn from_unix_nanos(nanos: i64) -> Instant {
        let (now, wall) = (Instant::now(), SystemTime::now());
        let wall = wall.duration_since(UNIX_EPOCH).unwrap_or(Duration::ZERO).as_nanos() as i64;
        let ahead = nanos.saturating_sub(wall);
        let by = Duration::from_nanos(ahead.unsigned_abs());
        if ahead >= 0 {
            now + by
        } else {
            now.checked_sub(by).unwrap_or(now)
        }
    }

    pub fn serialize<S: Serializer>(at: &Option<Instant>, s: S) -> Result<S::Ok, S::Error> {
        at.map(to_unix_nanos).serialize(s)
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Instant>, D::Error> {
        Ok(Option::<i64>::deserialize(d)?.map(from_unix_nanos))
    }

    #[cfg(test)]
    mod tests {
        use super::*;

        #[test]
        fn a_deadline_survives_the_trip_to_the_microsecond() {
            for offset in [Duration::from_millis(250), Duration::ZERO] {
                let at = Instant::now() + offset;
                let back = from_unix_nanos(to_unix_nanos(at));
                let gap = if back > at { back - at } else { at - back };
                assert!(gap < Duration::from_millis(1), "{gap:?} apart after the trip");
            }
            let past = Instant::now() - Duration::from_millis(30);
            let back = from_unix_nanos(to_unix_nanos(past));
            assert!(back <= Instant::now() - Duration::from_millis(29), "a passed deadline stays passed");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gather_project_append_keep_rows_and_errors_together() {
        let mut c = Chunk::new(3, vec![10, 11, 12], vec![Column::I64(vec![0, 1, 2]), Column::F32(vec![0.5, 1.5, 2.5])]);
        c.fail(1, Arc::new(RowError::node_failed("n", "boom")));
        let g = c.gather(&[2, 1]);
        assert_eq!(g.ids, vec![12, 11]);
        assert!(g.is_ok(0) && !g.is_ok(1));
        let p = g.clone().project(&[1]);
        assert_eq!(*p.columns[0], Column::F32(vec![2.5, 1.5]));
        let mut a = Chunk::new(3, vec![13], vec![Column::I64(vec![3]), Column::F32(vec![3.5])]);
        a.append(&g);
        assert_eq!(a.ids, vec![13, 12, 11]);
        assert_eq!(a.errors.iter().map(Option::is_some).collect::<Vec<_>>(), vec![false, false, true]);
        assert_eq!(*a.columns[0], Column::I64(vec![3, 2, 1]));
    }
}
