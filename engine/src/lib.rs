//! weir's engine: deployment graphs from YAML or Rust, validated, compiled into timely
//! dataflow, and run.
//!
//! A tour, in the order a graph travels:
//! - [`spec`]: the graph IR ([`GraphSpec`]), what both front ends produce;
//! - [`yaml`]: graph files; [`builder`]: the Rust API (`bind`, Ray Serve style);
//! - [`plan`]: validation and resolution into a [`Plan`] (or a [`GraphError`]);
//! - [`render`]: the plan as text, Graphviz dot or Mermaid;
//! - `compile`: a plan becomes timely operators from `weir_operators`, one dataflow
//!   per graph on each worker;
//! - [`runtime`]: the [`Engine`]'s lifecycle: workers, replica threads, shutdown;
//! - [`submit`]: the words of the submit path ([`Submission`], replies, refusals);
//!   [`handle`]: [`GraphHandle`], where submissions enter a running graph, checked
//!   against its [`GraphSchema`] ([`schema`]); `ingress`: the channels they go through;
//! - [`replies`]: reply slots, found by row id when answers leave the graph;
//! - [`feedback`]: labels for a graph's learning node; [`prequential`]: backtesting a
//!   learning graph, predict then learn, over a labelled stream.
//!
//! ```no_run
//! use weir_engine::{yaml, Engine, EngineConfig, Plan};
//! use weir_operators::Value;
//!
//! let spec = yaml::load_file("graphs/diamond.yaml".as_ref())?;
//! let engine = Engine::start(vec![Plan::new(&spec)?], EngineConfig::default())?;
//! let diamond = engine.graph("diamond").expect("started above");
//! let answer = diamond.call(vec![Value::F32(1.0), Value::F32(2.0), Value::F32(3.0)])?;
//! assert_eq!(answer.unwrap(), vec![Value::F32(8.0)]);
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

#![cfg_attr(test, allow(clippy::unwrap_used))]

mod admission;
pub mod builder;
pub mod cluster;
mod compile;
mod contention;
pub mod error;
pub mod feedback;
pub mod handle;
mod ingress;
pub mod kernels;
pub mod plan;
pub mod prequential;
pub mod render;
pub mod replies;
pub mod runtime;
pub mod schema;
pub mod spec;
pub mod submit;
mod tables;
pub mod yaml;

pub use builder::GraphBuilder;
pub use cluster::{Cluster, HostsError, LostPeer, Placement};
pub use error::{GraphError, Problem};
pub use feedback::{Feedback, FeedbackKinds};
pub use handle::GraphHandle;
pub use kernels::{FormatArgs, FormatError, Kernels, ModelFormat};
pub use plan::Plan;
pub use runtime::{cores, Abandoner, Engine, EngineConfig, StartError, DEFAULT_IDLE_SPIN};
pub use schema::{GraphField, GraphSchema};
pub use spec::GraphSpec;
pub use submit::{BatchReply, ChunkReply, Reply, RowResult, Submission, SubmitError, WhenFull};

/// Loads, validates and plans a graph file, with weir's own model formats.
pub fn load_plan(path: &std::path::Path) -> Result<Plan, GraphError> {
    Plan::new(&yaml::load_file(path)?)
}

/// Loads, validates and plans a graph file; its model nodes' `format:` names one of
/// `kernels`.
pub fn load_plan_with(path: &std::path::Path, kernels: &Kernels) -> Result<Plan, GraphError> {
    Plan::with_kernels(&yaml::load_file(path)?, kernels)
}
