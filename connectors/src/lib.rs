//! weir's connectors: how rows get into a running graph and answers out.
//!
//! - [`json`]: JSON ↔ values by the graph's schema (shared by every JSON connector);
//! - [`arrow`]: Arrow record batches ↔ values by the graph's schema, casting the column
//!   types real data has ([`arrow::cast`]);
//! - [`jsonl`]: JSON lines files through a graph, in order (`weir run`);
//! - [`http`]: every graph of an engine over HTTP (axum; `weir serve`);
//! - [`kafka`]: a graph's Kafka source and sink, at least once (rdkafka; `weir serve`);
//! - [`replay`]: Arrow IPC and Parquet files through a graph, in order (`weir replay`);
//! - [`snapshot`]: a table's starting rows from Arrow IPC or Parquet files;
//! - [`live`]: a served graph that a reload replaces while it serves;
//!
//! All of them use the same [`weir_engine::GraphHandle`] submit/reply path.

#![cfg_attr(test, allow(clippy::unwrap_used))]

pub mod arrow;
pub mod http;
pub mod json;
pub mod json_payload;
pub mod jsonl;
pub mod kafka;
pub mod live;
pub mod replay;
pub mod snapshot;
