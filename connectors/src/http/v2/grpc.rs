//! The protocol over gRPC: `inference.GRPCInferenceService` (tonic), served on weir's
//! HTTP port (HTTP/2 without TLS, as gRPC clients connect) and on `--grpc-port` where
//! given. Its six RPCs answer what the REST routes answer ([`super::rest`]); inputs come
//! in `raw_input_contents` (as `tritonclient` sends them) or in typed `contents`, and
//! outputs always go back in `raw_output_contents`. A call's deadline is its gRPC
//! deadline (`grpc-timeout`), or the request's `timeout` parameter (microseconds).

use std::sync::Arc;
use std::time::{Duration, Instant};

use tonic::{Request, Response, Status};

use super::error::V2Error;
use super::infer::{deadline, infer, model, output_index, tensors_meta, TensorMeta};
use super::proto::grpc_inference_service_server::{GrpcInferenceService, GrpcInferenceServiceServer};
use super::proto::infer_parameter::ParameterChoice;
use super::proto::model_infer_response::InferOutputTensor;
use super::proto::model_metadata_response::TensorMetadata;
use super::proto::{
    ModelInferRequest, ModelInferResponse, ModelMetadataRequest, ModelMetadataResponse, ModelReadyRequest,
    ModelReadyResponse, ServerLiveRequest, ServerLiveResponse, ServerMetadataRequest, ServerMetadataResponse,
    ServerReadyRequest, ServerReadyResponse,
};
use super::tensor::{raw, shape_of, Data, Datatype, Tensor};
use super::{EXTENSIONS, PLATFORM, SERVER_NAME};
use crate::http::AppState;

/// The gRPC service over a server's graphs.
pub struct InferenceService {
    state: Arc<AppState>,
}

impl InferenceService {
    /// The tonic server of the service over `state`'s graphs. A request message over the
    /// server's body limit (`--body-limit`) is refused (OUT_OF_RANGE), as REST
    /// refuses such a body; answers are not limited.
    pub fn server(state: Arc<AppState>) -> GrpcInferenceServiceServer<InferenceService> {
        let limit = state.config.body_limit;
        GrpcInferenceServiceServer::new(InferenceService { state })
            .max_decoding_message_size(limit)
            .max_encoding_message_size(usize::MAX)
    }
}

/// A call's gRPC deadline: its `grpc-timeout` header (a number of at most 8 digits and
/// a unit: `H`, `M`, `S`, `m`, `u`, `n`).
fn grpc_timeout<T>(request: &Request<T>) -> Result<Option<Duration>, V2Error> {
    let Some(value) = request.metadata().get("grpc-timeout") else { return Ok(None) };
    let bad = || V2Error::invalid(format!("grpc-timeout {value:?} is not a gRPC timeout"));
    let text = value.to_str().map_err(|_| bad())?;
    let (digits, unit) = text.split_at(text.len().saturating_sub(1));
    let n: u64 = digits.parse().map_err(|_| bad())?;
    let timeout = match unit {
        "H" => Duration::from_secs(n.saturating_mul(3600)),
        "M" => Duration::from_secs(n.saturating_mul(60)),
        "S" => Duration::from_secs(n),
        "m" => Duration::from_millis(n),
        "u" => Duration::from_micros(n),
        "n" => Duration::from_nanos(n),
        _ => return Err(bad()),
    };
    Ok(Some(timeout))
}

fn metadata(tensors: &[TensorMeta]) -> Vec<TensorMetadata> {
    tensors
        .iter()
        .map(|t| TensorMetadata { name: t.name.to_string(), datatype: t.datatype.to_string(), shape: t.shape.clone() })
        .collect()
}

#[tonic::async_trait]
impl GrpcInferenceService for InferenceService {
    async fn server_live(&self, _: Request<ServerLiveRequest>) -> Result<Response<ServerLiveResponse>, Status> {
        Ok(Response::new(ServerLiveResponse { live: true }))
    }

    async fn server_ready(&self, _: Request<ServerReadyRequest>) -> Result<Response<ServerReadyResponse>, Status> {
        Ok(Response::new(ServerReadyResponse { ready: !self.state.shutdown.is_requested() }))
    }

    async fn model_ready(&self, request: Request<ModelReadyRequest>) -> Result<Response<ModelReadyResponse>, Status> {
        let r = request.get_ref();
        model(&self.state, &r.name, &r.version).map_err(|e| e.grpc())?;
        Ok(Response::new(ModelReadyResponse { ready: !self.state.shutdown.is_requested() }))
    }

    async fn server_metadata(
        &self,
        _: Request<ServerMetadataRequest>,
    ) -> Result<Response<ServerMetadataResponse>, Status> {
        Ok(Response::new(ServerMetadataResponse {
            name: SERVER_NAME.into(),
            version: env!("CARGO_PKG_VERSION").into(),
            extensions: EXTENSIONS.iter().map(|e| e.to_string()).collect(),
        }))
    }

    async fn model_metadata(
        &self,
        request: Request<ModelMetadataRequest>,
    ) -> Result<Response<ModelMetadataResponse>, Status> {
        let r = request.get_ref();
        let graph = model(&self.state, &r.name, &r.version).map_err(|e| e.grpc())?;
        let (inputs, outputs) = tensors_meta(&graph);
        Ok(Response::new(ModelMetadataResponse {
            name: graph.handle().name().into(),
            versions: vec![graph.version()],
            platform: PLATFORM.into(),
            inputs: metadata(&inputs),
            outputs: metadata(&outputs),
        }))
    }

    async fn model_infer(&self, request: Request<ModelInferRequest>) -> Result<Response<ModelInferResponse>, Status> {
        let started = Instant::now();
        let transport = grpc_timeout(&request).map_err(|e| e.grpc())?;
        let r = request.into_inner();
        let graph = model(&self.state, &r.model_name, &r.model_version).map_err(|e| e.grpc())?;
        let answer = async {
            let timeout_us = match r.parameters.get("timeout").and_then(|p| p.parameter_choice.as_ref()) {
                None => None,
                Some(ParameterChoice::Int64Param(us)) => Some(*us),
                Some(ParameterChoice::Uint64Param(us)) => Some((*us).min(i64::MAX as u64) as i64),
                Some(other) => {
                    return Err(V2Error::invalid(format!(
                        "parameter 'timeout' must be a whole number of microseconds, got {other:?}"
                    )))
                }
            };
            let deadline = deadline(&graph, timeout_us, transport, started)?;
            if !r.raw_input_contents.is_empty() && r.raw_input_contents.len() != r.inputs.len() {
                return Err(V2Error::invalid(format!(
                    "raw_input_contents has {} entries for {} inputs: give every input there, or none",
                    r.raw_input_contents.len(),
                    r.inputs.len()
                )));
            }
            let tensors: Vec<Tensor> = r
                .inputs
                .iter()
                .enumerate()
                .map(|(i, t)| Tensor {
                    name: &t.name,
                    datatype: &t.datatype,
                    shape: &t.shape,
                    data: match (r.raw_input_contents.get(i), &t.contents) {
                        (Some(bytes), _) => Data::Raw(bytes),
                        (None, Some(contents)) => Data::Contents(contents),
                        (None, None) => Data::Raw(&[]),
                    },
                })
                .collect();
            let selected: Vec<usize> = if r.outputs.is_empty() {
                (0..graph.outputs().len()).collect()
            } else {
                r.outputs.iter().map(|o| output_index(&graph, &o.name)).collect::<Result<_, _>>()?
            };
            let chunk = infer(&graph, &tensors, deadline).await?;
            let fields = &graph.handle().schema().outputs;
            let rows = chunk.len();
            Ok(ModelInferResponse {
                model_name: graph.handle().name().into(),
                model_version: graph.version(),
                id: r.id.clone(),
                parameters: Default::default(),
                outputs: selected
                    .iter()
                    .map(|&i| InferOutputTensor {
                        name: fields[i].name.clone(),
                        datatype: Datatype::of(&fields[i].ty).as_str().into(),
                        shape: shape_of(&fields[i].ty, rows),
                        parameters: Default::default(),
                        contents: None,
                    })
                    .collect(),
                raw_output_contents: selected.iter().map(|&i| raw(&chunk.columns[i]).into()).collect(),
            })
        }
        .await;
        let status = match &answer {
            Ok(_) => 200,
            Err(e) => e.status().as_u16(),
        };
        graph.metrics.request(status, started.elapsed().as_secs_f64());
        answer.map(Response::new).map_err(|e| e.grpc())
    }
}
