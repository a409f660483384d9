//! The Open Inference Protocol (KServe's "v2" protocol; Triton's HTTP/REST and gRPC
//! API) beside weir's own routes, so that the protocol's clients (`tritonclient`,
//! KServe's SDK, load tools) work against weir unchanged. A model of the protocol is a
//! graph; its inputs and outputs are the graph's fields, rows along the first dimension
//! ([`tensor`]).
//!
//! - [`rest`]: the REST routes under `/v2`, on the HTTP port, with the binary tensor
//!   data extension;
//! - [`grpc`]: `inference.GRPCInferenceService`, on the HTTP port (HTTP/2) and on
//!   `--grpc-port`;
//! - [`infer`]: what both do with a request: one submission of columns per request,
//!   the same admission, deadlines and metrics as `POST /graphs/{name}`;
//! - [`error`]: errors as the protocol gives them (HTTP status, gRPC code).
//!
//! A graph has one version, `1`, and a request may name it or none.

pub mod error;
pub mod grpc;
pub mod infer;
pub mod rest;
pub mod tensor;

/// The protocol's messages and gRPC service, generated at build time from
/// `connectors/proto/grpc_service.proto`: the server weir serves and a client (for
/// benchmarks and tests).
#[allow(missing_docs, clippy::all, clippy::pedantic)]
pub mod proto {
    include!(concat!(env!("OUT_DIR"), "/inference.rs"));
}

/// The server's name in the protocol's server metadata.
pub const SERVER_NAME: &str = "weir";

/// The platform of every model in the protocol's model metadata.
pub const PLATFORM: &str = "weir_graph";

/// The protocol's extensions weir serves.
pub const EXTENSIONS: &[&str] = &["binary_tensor_data"];
