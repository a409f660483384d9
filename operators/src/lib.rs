//! weir's data plane and operators.
//!
//! A tour, from data to computation:
//! - [`value`]: the [`Value`] of a field and its [`FieldType`].
//! - [`column`](mod@column): a [`Column`] holds one field's values for many rows.
//! - [`chunk`]: a [`Chunk`] is rows of one submission by column, each row's values or
//!   the [`RowError`] that stopped it ([`row`]); chunks flow along the graph's edges.
//! - [`kernel`]: what nodes compute: candle models, built-in maps, aggregates, conditions.
//! - [`replica`]: threads that run model forward passes off the timely workers.
//! - [`dataflow`]: the timely operators a compiled graph is built from.
//! - [`shutdown`]: the one stop request every loop, source and server listens to.
//! - [`stats`]: batch counters of model nodes; [`learn_stats`]: counters of learning
//!   nodes.
//!
//! The `weir-engine` crate compiles deployment graphs into these operators.

#![cfg_attr(test, allow(clippy::unwrap_used))]

pub mod chunk;
pub mod column;
pub mod dataflow;
pub mod id_map;
pub mod kernel;
pub mod learn_stats;
pub mod node_stats;
pub mod replica;
pub mod row;
pub mod shutdown;
pub mod stats;
pub mod table;
pub mod table_store;
pub mod value;

pub use chunk::Chunk;
pub use column::Column;
pub use kernel::KernelError;
pub use row::{ErrorCode, RowError, RowId};
pub use shutdown::Shutdown;
pub use value::{DType, FieldType, Value};
