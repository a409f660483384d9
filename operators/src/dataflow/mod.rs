//! The timely operators a compiled graph is made of, one per file.
//!
//! Every operator is an extension trait on the stream it reads, most on a [`RowStream`]:
//! [`Chunk`]s of rows timestamped with their ingress time (0 in a live graph; the
//! clock's time in a clocked one, see `source.rs`). Failed
//! rows pass through every operator untouched, so every row that enters reaches the
//! sink exactly once.
//!
//! | operator | node kind | file |
//! |---|---|---|
//! | [`source::RowSource`] | graph input, fed by a bounded channel | `source.rs` |
//! | [`BatchForward`] | `model`: batches to replica threads | `batch.rs` |
//! | [`MapRows`] | `map`: a built-in over columns, or a row function, inline | `map.rs` |
//! | [`RouteRows`] | `route`: one branch per row | `route.rs` |
//! | [`CombineRows`] | `combine`: join branches per row, aggregate | `combine.rs` |
//! | [`MergeRows`] | `merge`: union of a route's branches | `merge.rs` |
//! | [`SinkRows`] | graph output | `sink.rs` |
//! | [`PredictOnline`] | `model` with `learn:`: predicts with weights from its learner | `predict.rs` |
//! | [`PredictionSamples`] | `model` with `learn:`: the keys and features of its predictions | `samples.rs` |
//! | [`FeedbackLabels`] | the graph's feedback rows, as labels | `labels.rs` |
//! | [`LearnOnline`] | the learner of a `learn:` node, on the feedback loop | `learner.rs` |
//! | [`LearnInPlace`] | a `learn:` node in a deterministic engine, on worker 0: predicts and learns in one operator | `learn_in_place.rs` |
//! | [`Upserts`] | a table: its source's rows as upserts | `upserts.rs` |
//! | [`StoreTable`] | a table: upserts kept by key, and its number of keys | `store.rs` |
//! | [`LookupRows`] | `lookup`: rows joined with a table by key | `lookup.rs` |
//! | [`SplitFound`] | `lookup` with `missing: route`: found rows one way, the rest the other | `split_found.rs` |
//!
//! [`policy`] decides when a model node's partial batch leaves (adaptive by default).
//! [`doorbell::Doorbell`] wakes operators from other threads without a syscall per message.
//! [`clock::EventClock`] gives submissions their times in deterministic engines.
//! [`VecBuilder`] builds the output containers of every operator but timely's own `map`s
//! (a merge's, and a lookup's missing rows).

pub mod batch;
pub mod clock;
pub mod combine;
pub mod doorbell;
pub mod inline;
pub mod labels;
pub mod learn_in_place;
pub mod learner;
pub mod lookup;
pub mod map;
pub mod merge;
pub mod policy;
pub mod predict;
pub mod route;
pub mod samples;
pub mod sink;
pub mod source;
pub mod split_found;
pub mod store;
#[cfg(test)]
mod testing;
pub mod upserts;
pub mod vec_builder;

pub use batch::{BatchConfig, BatchForward};
pub use combine::{CombineRows, CombineSpec};
pub use labels::{FeedbackLabels, LabelStream, Labels};
pub use learn_in_place::LearnInPlace;
pub use learner::{CheckpointFn, LearnConfig, LearnOnline};
pub use lookup::{LookupConfig, LookupRows, Missing};
pub use map::MapRows;
pub use merge::MergeRows;
pub use predict::{PredictConfig, PredictOnline, WeightStream};
pub use route::RouteRows;
pub use samples::{PredictionSamples, SampleStream, Samples};
pub use sink::SinkRows;
pub use split_found::SplitFound;
pub use store::{StoreTable, TableRef, TableShape, TableUpdate, UpdateStream};
pub use upserts::Upserts;
pub use vec_builder::VecBuilder;

use timely::dataflow::operators::{Capability, InputCapability};
use timely::dataflow::Stream;

use crate::chunk::Chunk;

/// Timestamps of weir's dataflows: the ingress time of a row (see `source.rs`).
pub type Time = u64;

/// A stream of rows, in chunks.
pub type RowStream<'scope> = Stream<'scope, Time, Vec<Chunk>>;

/// What an operator holds until its time is complete: per time, a capability of its
/// output and the items that came at that time.
pub(crate) type HeldByTime<T> = std::collections::BTreeMap<Time, (Capability<Time>, Vec<T>)>;

/// Adds `items` to the entry of `cap`'s time in `held`, retaining a capability of
/// output `output` the first time.
pub(crate) fn hold_at<T>(
    held: &mut HeldByTime<T>,
    cap: &InputCapability<Time>,
    output: usize,
    items: impl Iterator<Item = T>,
) {
    let Some(&time) = cap.least() else { return };
    match held.get_mut(&time) {
        Some((_, waiting)) => waiting.extend(items),
        None => {
            if let Some(retained) = cap.retain_least(output) {
                held.insert(time, (retained, items.collect()));
            }
        }
    }
}
