//! The protocol over HTTP/REST, on weir's HTTP port:
//!
//! - `GET /v2/health/live`, `GET /v2/health/ready` (503 once shutdown begins);
//! - `GET /v2`: the server's name, version and extensions;
//! - `GET /v2/models/{name}[/versions/{version}]`: the model's inputs and outputs;
//! - `GET /v2/models/{name}[/versions/{version}]/ready`;
//! - `POST /v2/models/{name}[/versions/{version}]/infer`: tensors in, tensors out.
//!
//! An inference request is the protocol's JSON (`inputs` with `name`, `shape`,
//! `datatype`, `data`; optional `id`, `parameters`, `outputs`), or, with the binary
//! tensor data extension, that JSON followed by raw tensors: the header
//! `Inference-Header-Content-Length` gives the JSON's length, and each input with the
//! parameter `binary_data_size` takes that many bytes after it, in input order. Outputs
//! are answered in JSON, or raw after the JSON where the request asks (`binary_data` on
//! an output, `binary_data_output` on the request); the answer's header then gives the
//! JSON's length. Errors are `{"error": "..."}` with their status ([`V2Error`]).

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Instant;

use axum::body::{Body, Bytes};
use axum::extract::{Path, State};
use axum::http::{header, HeaderMap, HeaderValue, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::routing::{any, get, post};
use axum::{Json as JsonBody, Router};
use serde::{Deserialize, Serialize};
use serde_json::{json, Map, Value as Json};

use super::error::V2Error;
use super::infer::{deadline, infer, model, output_index, tensors_meta, TensorMeta};
use super::tensor::{raw, shape_of, Data, Datatype, JsonData, Tensor};
use super::{EXTENSIONS, PLATFORM, SERVER_NAME};
use crate::http::{read_body, transport_timeout, AppState, Served};

/// The header giving the length of the JSON that binary tensors follow.
pub const HEADER_LENGTH: &str = "inference-header-content-length";

/// The protocol's REST routes, added to `router`.
pub(crate) fn routes(router: Router<Arc<AppState>>) -> Router<Arc<AppState>> {
    router
        .route("/v2", get(server_metadata))
        .route("/v2/health/live", get(|| async { JsonBody(json!({ "live": true })) }))
        .route("/v2/health/ready", get(server_ready))
        .route("/v2/models/{name}", get(model_metadata))
        .route("/v2/models/{name}/versions/{version}", get(model_metadata))
        .route("/v2/models/{name}/ready", get(model_ready))
        .route("/v2/models/{name}/versions/{version}/ready", get(model_ready))
        .route("/v2/models/{name}/infer", post(model_infer))
        .route("/v2/models/{name}/versions/{version}/infer", post(model_infer))
        .route("/v2/{*rest}", any(unknown_route))
}

/// Any other path under `/v2` (a Triton extension such as `/config` or `/stats`, say):
/// 404 in the protocol's form.
async fn unknown_route(method: Method, uri: Uri) -> V2Error {
    V2Error::not_found(format!(
        "{method} {}: not a route of the Open Inference Protocol that weir serves (health, server and model \
         metadata, readiness, infer)",
        uri.path()
    ))
}

type Params = Path<HashMap<String, String>>;

/// The model a path names (its `name`, and `version` where given).
fn model_of(state: &AppState, params: &HashMap<String, String>) -> Result<Served, V2Error> {
    let name = params.get("name").map_or("", String::as_str);
    model(state, name, params.get("version").map_or("", String::as_str))
}

async fn server_metadata() -> JsonBody<Json> {
    JsonBody(json!({ "name": SERVER_NAME, "version": env!("CARGO_PKG_VERSION"), "extensions": EXTENSIONS }))
}

async fn server_ready(State(state): State<Arc<AppState>>) -> Response {
    let ready = !state.shutdown.is_requested();
    let status = if ready { StatusCode::OK } else { StatusCode::SERVICE_UNAVAILABLE };
    (status, JsonBody(json!({ "ready": ready }))).into_response()
}

async fn model_ready(State(state): State<Arc<AppState>>, Path(params): Params) -> Response {
    match model_of(&state, &params) {
        Ok(graph) if !state.shutdown.is_requested() => {
            JsonBody(json!({ "name": graph.handle().name(), "ready": true })).into_response()
        }
        Ok(graph) => {
            (StatusCode::SERVICE_UNAVAILABLE, JsonBody(json!({ "name": graph.handle().name(), "ready": false })))
                .into_response()
        }
        Err(e) => e.into_response(),
    }
}

async fn model_metadata(State(state): State<Arc<AppState>>, Path(params): Params) -> Response {
    let graph = match model_of(&state, &params) {
        Ok(g) => g,
        Err(e) => return e.into_response(),
    };
    let (inputs, outputs) = tensors_meta(&graph);
    let meta = |t: &[TensorMeta]| -> Vec<Json> {
        t.iter().map(|t| json!({ "name": t.name, "datatype": t.datatype, "shape": t.shape })).collect()
    };
    JsonBody(json!({
        "name": graph.handle().name(),
        "versions": [graph.version()],
        "platform": PLATFORM,
        "inputs": meta(&inputs),
        "outputs": meta(&outputs),
    }))
    .into_response()
}

/// The JSON of an inference request.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct InferRequest {
    id: Option<String>,
    #[serde(default)]
    parameters: Map<String, Json>,
    inputs: Vec<InputTensor>,
    outputs: Option<Vec<RequestedOutput>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct InputTensor {
    name: String,
    shape: Vec<i64>,
    datatype: String,
    #[serde(default)]
    parameters: Map<String, Json>,
    data: Option<Json>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RequestedOutput {
    name: String,
    #[serde(default)]
    parameters: Map<String, Json>,
}

/// The JSON of an answer.
#[derive(Serialize)]
struct InferResponse<'a> {
    model_name: &'a str,
    model_version: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    id: Option<&'a str>,
    outputs: Vec<OutputTensor<'a>>,
}

#[derive(Serialize)]
struct OutputTensor<'a> {
    name: &'a str,
    datatype: &'static str,
    shape: Vec<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    parameters: Option<BinarySize>,
    #[serde(skip_serializing_if = "Option::is_none")]
    data: Option<JsonData<'a>>,
}

#[derive(Serialize)]
struct BinarySize {
    binary_data_size: usize,
}

async fn model_infer(
    State(state): State<Arc<AppState>>,
    Path(params): Params,
    headers: HeaderMap,
    body: Body,
) -> Response {
    let started = Instant::now();
    let graph = match model_of(&state, &params) {
        Ok(g) => g,
        Err(e) => return e.into_response(),
    };
    let response = answer(&state, &graph, &headers, body, started).await.unwrap_or_else(IntoResponse::into_response);
    graph.metrics.request(response.status().as_u16(), started.elapsed().as_secs_f64());
    response
}

/// A boolean parameter, if given, or what is wrong with it.
fn flag(parameters: &Map<String, Json>, key: &str, whose: &str) -> Result<Option<bool>, V2Error> {
    match parameters.get(key) {
        None => Ok(None),
        Some(Json::Bool(b)) => Ok(Some(*b)),
        Some(other) => Err(V2Error::invalid(format!("{whose}parameter '{key}' must be true or false, got {other}"))),
    }
}

async fn answer(
    state: &AppState,
    graph: &Served,
    headers: &HeaderMap,
    body: Body,
    started: Instant,
) -> Result<Response, V2Error> {
    if let Some(encoding) = headers.get(header::CONTENT_ENCODING).filter(|v| v.as_bytes() != b"identity") {
        return Err(V2Error::invalid(format!(
            "Content-Encoding {encoding:?} is not supported; send the body as it is"
        )));
    }
    let bytes = read_body(headers, body, state.config.body_limit).await.map_err(|e| V2Error::invalid(e.message))?;
    let (json, mut binary) = split_binary(headers, &bytes)?;
    let request: InferRequest = serde_json::from_slice(json)
        .map_err(|e| V2Error::invalid(format!("the request is not the protocol's inference JSON: {e}")))?;
    let timeout_us = match request.parameters.get("timeout") {
        None => None,
        Some(v) => Some(v.as_i64().ok_or_else(|| {
            V2Error::invalid(format!("parameter 'timeout' must be a whole number of microseconds, got {v}"))
        })?),
    };
    let transport = transport_timeout(headers).map_err(|e| V2Error::invalid(e.message))?;
    let deadline = deadline(graph, timeout_us, transport, started)?;
    let mut tensors = Vec::with_capacity(request.inputs.len());
    for input in &request.inputs {
        let data = match (input.parameters.get("binary_data_size"), &input.data) {
            (Some(size), _) => {
                let size = size.as_u64().ok_or_else(|| {
                    V2Error::invalid(format!("input '{}': binary_data_size must be a whole number", input.name))
                })? as usize;
                if size > binary.len() {
                    return Err(V2Error::invalid(format!(
                        "input '{}': binary_data_size is {size} bytes, but only {} binary bytes are left",
                        input.name,
                        binary.len()
                    )));
                }
                let (mine, rest) = binary.split_at(size);
                binary = rest;
                Data::Raw(mine)
            }
            (None, Some(data)) => Data::Json(data),
            (None, None) => {
                return Err(V2Error::invalid(format!("input '{}' has neither data nor binary_data_size", input.name)))
            }
        };
        tensors.push(Tensor { name: &input.name, datatype: &input.datatype, shape: &input.shape, data });
    }
    if !binary.is_empty() {
        return Err(V2Error::invalid(format!(
            "{} bytes of binary data after the JSON belong to no input",
            binary.len()
        )));
    }
    // Which outputs, in which order, and whether each is binary.
    let all_binary = flag(&request.parameters, "binary_data_output", "")?.unwrap_or(false);
    let selected: Vec<(usize, bool)> = match &request.outputs {
        None => (0..graph.outputs().len()).map(|i| (i, all_binary)).collect(),
        Some(outputs) => outputs
            .iter()
            .map(|o| {
                let whose = format!("output '{}': ", o.name);
                if o.parameters.contains_key("classification") {
                    return Err(V2Error::invalid(format!("{whose}the classification extension is not supported")));
                }
                let binary = flag(&o.parameters, "binary_data", &whose)?.unwrap_or(all_binary);
                Ok((output_index(graph, &o.name)?, binary))
            })
            .collect::<Result<_, _>>()?,
    };
    let chunk = infer(graph, &tensors, deadline).await?;
    let rows = chunk.len();
    let fields = &graph.handle().schema().outputs;
    let outputs = selected
        .iter()
        .map(|&(i, binary)| {
            let column = &chunk.columns[i];
            OutputTensor {
                name: &fields[i].name,
                datatype: Datatype::of(&fields[i].ty).as_str(),
                shape: shape_of(&fields[i].ty, rows),
                parameters: None,
                data: (!binary).then_some(JsonData(column)),
            }
        })
        .collect();
    let mut response = InferResponse {
        model_name: graph.handle().name(),
        model_version: &graph.version(),
        id: request.id.as_deref(),
        outputs,
    };
    let blobs: Vec<Vec<u8>> = selected.iter().filter(|(_, b)| *b).map(|&(i, _)| raw(&chunk.columns[i])).collect();
    if blobs.is_empty() {
        let body = serde_json::to_vec(&response).map_err(encode_failed)?;
        return Ok(([(header::CONTENT_TYPE, HeaderValue::from_static("application/json"))], body).into_response());
    }
    let mut sizes = blobs.iter().map(Vec::len);
    for (output, &(_, binary)) in response.outputs.iter_mut().zip(&selected) {
        if binary {
            output.parameters = sizes.next().map(|binary_data_size| BinarySize { binary_data_size });
        }
    }
    let mut body = serde_json::to_vec(&response).map_err(encode_failed)?;
    let json_length = body.len();
    body.reserve(blobs.iter().map(Vec::len).sum());
    blobs.iter().for_each(|b| body.extend_from_slice(b));
    Ok((
        [
            (header::CONTENT_TYPE, HeaderValue::from_static("application/octet-stream")),
            (header::HeaderName::from_static(HEADER_LENGTH), HeaderValue::from(json_length)),
        ],
        Bytes::from(body),
    )
        .into_response())
}

/// The answer's JSON could not be written (the server's fault).
fn encode_failed(e: serde_json::Error) -> V2Error {
    V2Error { kind: super::error::Kind::Internal, message: format!("the answer could not be encoded: {e}") }
}

/// The JSON part of a body and its binary rest (empty without the binary extension).
fn split_binary<'a>(headers: &HeaderMap, body: &'a [u8]) -> Result<(&'a [u8], &'a [u8]), V2Error> {
    let Some(value) = headers.get(HEADER_LENGTH) else { return Ok((body, &[])) };
    let length =
        value.to_str().ok().and_then(|s| s.trim().parse::<usize>().ok()).filter(|&n| n <= body.len()).ok_or_else(
            || {
                V2Error::invalid(format!(
                    "header Inference-Header-Content-Length must be the JSON's length, at most the body's {} bytes; \
                 got {value:?}",
                    body.len()
                ))
            },
        )?;
    Ok(body.split_at(length))
}
