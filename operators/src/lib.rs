//! weir's data plane and operators.
//!
//! A tour, from data to computation:
//! - [`value`]: the [`Value`] of a field and its [`FieldType`].
//! - [`row`]: a [`Row`] is an id plus values, or the [`RowError`] that stopped it.
//! - [`kernel`]: what nodes compute: candle models, built-in maps, aggregates, conditions.
//! - [`replica`]: threads that run model forward passes off the timely workers.
//! - [`dataflow`]: the timely operators a compiled graph is built from.
//! - [`stats`]: batch counters of model nodes.
//!
//! The `weir-engine` crate compiles deployment graphs into these operators.

#![cfg_attr(test, allow(clippy::unwrap_used))]

pub mod dataflow;
pub mod kernel;
pub mod replica;
pub mod row;
pub mod stats;
pub mod value;

pub use row::{ErrorCode, Row, RowError, RowId};
pub use value::{DType, FieldType, Value};
