//! weir's connectors: how rows get into a running graph and answers out.
//!
//! - [`json`]: JSON ↔ values by the graph's schema (shared by every JSON connector);
//! - [`jsonl`]: JSON lines files through a graph, in order (`weir run`);
//! - [`http`]: every graph of an engine over HTTP (axum; `weir serve`).
//!
//! Kafka (rdkafka) and Arrow replay will sit on the same [`weir_engine::GraphHandle`]
//! submit/reply path.

#![cfg_attr(test, allow(clippy::unwrap_used))]

pub mod http;
pub mod json;
pub mod jsonl;
pub mod kafka;
