//! weir's connectors: how rows get into a running graph and answers out.
//!
//! - [`json`]: JSON ↔ values by the graph's schema (shared by every JSON connector);
//! - [`jsonl`]: JSON lines files through a graph, in order (`weir run`).
//!
//! HTTP (axum), Kafka (rdkafka) and Arrow replay sit on the same
//! [`weir_engine::GraphHandle`] submit/reply path.

#![cfg_attr(test, allow(clippy::unwrap_used))]

pub mod json;
pub mod jsonl;
