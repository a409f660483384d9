//! The `weir` package: the command-line binary (`src/main.rs`) and the data-set helpers
//! its examples, tests and benchmarks share.
//!
//! The engine itself lives in the workspace crates: `weir-engine` (graphs, plans,
//! runtime), `weir-operators` (rows, kernels, timely operators) and `weir-connectors`
//! (JSON lines now; HTTP, Kafka and Arrow next).

pub mod datasets;
