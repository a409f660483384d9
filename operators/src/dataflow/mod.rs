//! The timely operators a compiled graph is made of, one per file.
//!
//! Every operator takes and gives a [`RowStream`]: [`Chunk`]s of rows timestamped with
//! the ingress epoch at which they entered. Failed rows pass through every operator
//! untouched, so every row that enters reaches the sink exactly once.
//!
//! | operator | node kind | file |
//! |---|---|---|
//! | [`source::row_source`] | graph input, fed by a bounded channel | `source.rs` |
//! | [`BatchForward`] | `model`: batches to replica threads | `batch.rs` |
//! | [`MapRows`] | `map`: a built-in over columns, or a row function, inline | `map.rs` |
//! | [`RouteRows`] | `route`: one branch per row | `route.rs` |
//! | [`CombineRows`] | `combine`: join branches per row, aggregate | `combine.rs` |
//! | [`merge_rows`] | `merge`: union of a route's branches | `merge.rs` |
//! | [`SinkRows`] | graph output | `sink.rs` |
//! | [`PredictOnline`] | `model` with `learn:`: predicts with weights from its learner | `predict.rs` |
//! | [`learner::learn_online`] | the learner of a `learn:` node, on the feedback loop | `learner.rs` |
//! | [`lookup::arrange_table`], [`lookup::lookup_rows`] | a table, and `lookup`: rows joined with it by key | `lookup.rs` |
//!
//! [`doorbell::Doorbell`] wakes operators from other threads without a syscall per message.
//! [`clock::EventClock`] gives submissions their times in deterministic engines.

pub mod batch;
pub mod clock;
pub mod combine;
pub mod doorbell;
pub mod learner;
pub mod lookup;
pub mod map;
pub mod merge;
pub mod predict;
pub mod route;
pub mod sink;
pub mod source;
#[cfg(test)]
mod testing;

pub use batch::{BatchConfig, BatchForward};
pub use combine::{CombineRows, CombineSpec};
pub use map::MapRows;
pub use merge::merge_rows;
pub use predict::{PredictConfig, PredictOnline, WeightStream};
pub use route::RouteRows;
pub use sink::SinkRows;

use timely::dataflow::Stream;

use crate::chunk::Chunk;

/// Timestamps of weir's dataflows: the ingress epoch of a row.
pub type Time = u64;

/// A stream of rows, in chunks.
pub type RowStream<'scope> = Stream<'scope, Time, Vec<Chunk>>;
