//! The HTTP endpoint (axum): every graph of an engine at `POST /graphs/{name}`.
//!
//! A request's rows are decoded by the graph's input schema, admitted against the
//! graph's in-flight bound (503 with `Retry-After` beyond it, answered at once),
//! submitted with a deadline, and answered when the graph's sink delivers them (or with
//! 504 when the deadline passes first). Concurrent requests are rows of the same
//! dataflow, so model nodes batch them together. The routes:
//!
//! - `POST /graphs/{name}`: one JSON object gives one object back; an array gives an
//!   array back, in order, where a row that failed inside the graph is an error object;
//!   the `weir-revision` header names the graph's revision that computed it (see
//!   [`crate::live`]: a reload swaps revisions while the server serves);
//! - `POST /graphs/{name}/feedback`: labels for the graph's learning node, one object
//!   `{"key": ..., "label": <class>}` (or `"features"` instead of `"key"`) or an array
//!   of them; answered 202 `{"accepted": n}` once they are in the graph's feedback
//!   stream (what the learner could not use is counted in `/metrics`), with the
//!   `weir-revision` header of the revision that took them;
//! - `POST /graphs/{name}/tables/{table}`: changes to one of the graph's tables, one
//!   object `{"key": K, "values": {...}}` (upsert) or `{"key": K, "values": null}`
//!   (delete), or an array of them; answered 202 `{"accepted": n}` once they are in
//!   the graph, with `weir-revision`: a request sent after that answer sees them;
//! - `GET /graphs`: names, input and output schemas, limits, revisions;
//! - `GET /openapi.json`: the OpenAPI 3 document of all of it ([`openapi`]);
//! - `GET /healthz`, `GET /readyz` (503 once shutdown begins), `GET /metrics`
//!   ([`metrics`], written with [`exposition`]).
//!
//! The router is built from one table of routes, which [`routes`] lists: a test checks
//! that `/openapi.json` documents each of them. Beside them, the same port serves the
//! Open Inference Protocol ([`v2`]): its REST routes under `/v2` and its gRPC service
//! (over HTTP/2), documented by the protocol's own specification. The admin listener's
//! routes (the live page, stats, reload) are on a port of their own ([`admin`]).
//!
//! Errors are JSON (see [`error`]): malformed JSON 400, wrong content type 415, body
//! over the limit 413, missing field or wrong type or shape 422 naming the field,
//! unknown graph or route 404, wrong method 405, overload 503, deadline 504, a node
//! that failed 500 naming it.

pub mod admin;
pub mod error;
pub mod exposition;
pub mod histogram;
pub mod metrics;
pub mod openapi;
mod state;
pub mod v2;

use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::body::{Body, Bytes};
use axum::extract::{Path, State};
use axum::handler::Handler;
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{on, MethodFilter, MethodRouter};
use axum::{Json as JsonBody, Router};
use serde_json::{json, Value as Json};
use tokio::net::TcpListener;
use weir_engine::{Feedback, GraphHandle, RowResult, Submission, SubmitError, WhenFull};
use weir_operators::{RowError, Value};

use crate::json::{decode_feedback, decode_row, decode_upsert, encode_error, encode_row};
use crate::live::REVISION_HEADER;
use error::ApiError;
use metrics::GraphMetrics;

pub(crate) use state::Served;
pub use state::{AppState, ServerConfig};

/// The request header that sets a request's deadline, in milliseconds.
pub const TIMEOUT_HEADER: &str = "x-request-timeout-ms";

/// The HTTP method of a route.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RouteMethod {
    /// `GET`.
    Get,
    /// `POST`.
    Post,
}

impl RouteMethod {
    /// The method as an OpenAPI path item keys its operation: `get`, `post`.
    pub fn openapi_key(self) -> &'static str {
        match self {
            RouteMethod::Get => "get",
            RouteMethod::Post => "post",
        }
    }
}

/// One route: its method, its path (with `{parameters}`) and its handler.
struct Route {
    method: RouteMethod,
    path: &'static str,
    handler: MethodRouter<Arc<AppState>>,
}

fn route<H, T>(method: RouteMethod, path: &'static str, handler: H) -> Route
where
    H: Handler<T, Arc<AppState>>,
    T: 'static,
{
    let filter = match method {
        RouteMethod::Get => MethodFilter::GET,
        RouteMethod::Post => MethodFilter::POST,
    };
    Route { method, path, handler: on(filter, handler) }
}

/// Every route served, in the order of the module docs: [`router`] serves exactly these
/// and [`routes`] lists them.
fn route_table() -> Vec<Route> {
    use RouteMethod::{Get, Post};
    vec![
        route(Post, "/graphs/{name}", run_graph),
        route(Post, "/graphs/{name}/feedback", feedback),
        route(Post, "/graphs/{name}/tables/{table}", upsert),
        route(Get, "/graphs", list_graphs),
        route(Get, "/openapi.json", openapi_document),
        route(Get, "/healthz", healthz),
        route(Get, "/readyz", readyz),
        route(Get, "/metrics", metrics_text),
    ]
}

/// The method and path (with `{parameters}`) of every route [`router`] serves; each must
/// be in `/openapi.json` (for every graph it applies to).
pub fn routes() -> Vec<(RouteMethod, &'static str)> {
    route_table().into_iter().map(|r| (r.method, r.path)).collect()
}

/// The router of every route above, and of the Open Inference Protocol's REST routes and
/// gRPC service ([`v2`]).
pub fn router(state: Arc<AppState>) -> Router {
    let own = route_table().into_iter().fold(Router::new(), |router, r| router.route(r.path, r.handler));
    v2::rest::routes(own)
        .route_service("/inference.GRPCInferenceService/{*method}", v2::grpc::InferenceService::server(state.clone()))
        .fallback(|| async { ApiError::new(StatusCode::NOT_FOUND, "not_found", "no such route") })
        .method_not_allowed_fallback(|| async {
            ApiError::new(StatusCode::METHOD_NOT_ALLOWED, "method_not_allowed", "this route does not take that method")
        })
        .with_state(state)
}

/// The threads of the runtime `weir serve` starts by default beside `workers` timely
/// workers: the cores they leave, at least one, and one more when it consumes Kafka
/// (`kafka`). The workers run the dataflow (and compute cheap models themselves), so a
/// thread more than the cores would have them and the HTTP threads take turns on a core:
/// on a 2-core machine, one HTTP thread served digits at 1.2x the requests per second of
/// two at 1 connection and 1.1x at 64, and made the throughput of 16 connections vary
/// far less from one run to the next (BENCHMARKS.md, "HTTP threads"). A Kafka loop is a
/// pipeline of its own on that runtime (receive, decode, submit, while its answers are
/// produced): on one thread with the HTTP server, its throughput against a plain
/// consume-and-produce app ranged down to 0.74 across rounds, against 0.94 on two.
pub fn default_threads(workers: usize, kafka: bool) -> usize {
    weir_engine::cores().saturating_sub(workers).max(1) + usize::from(kafka)
}

/// Serves `state`'s router on `listener` until its shutdown is requested; then stops
/// accepting, lets requests in flight finish for at most `grace`, and returns.
pub async fn serve(listener: TcpListener, state: Arc<AppState>, grace: Duration) -> std::io::Result<()> {
    let shutdown = state.shutdown.clone();
    let signal = {
        let shutdown = shutdown.clone();
        async move {
            shutdown.requested().await;
            tracing::info!("shutting down: no new connections, finishing requests in flight");
        }
    };
    // No Nagle delay: an HTTP/2 (gRPC) answer is several writes (headers, data,
    // trailers), and Nagle would hold the later ones for the client's delayed ACK (40 ms).
    let listener = axum::serve::ListenerExt::tap_io(listener, |tcp| {
        if let Err(e) = tcp.set_nodelay(true) {
            tracing::debug!("cannot set TCP_NODELAY: {e}");
        }
    });
    let server = axum::serve(listener, router(state)).with_graceful_shutdown(signal);
    let server = tokio::spawn(async move { server.await });
    let grace_timer = async move {
        shutdown.requested().await;
        tokio::time::sleep(grace).await;
    };
    tokio::select! {
        done = server => done.map_err(std::io::Error::other)?,
        () = grace_timer => {
            tracing::warn!("grace period over with requests still in flight; stopping");
            Ok(())
        }
    }
}

async fn healthz() -> &'static str {
    "ok\n"
}

async fn readyz(State(state): State<Arc<AppState>>) -> Response {
    if !state.shutdown.is_requested() {
        "ready\n".into_response()
    } else {
        (StatusCode::SERVICE_UNAVAILABLE, "shutting down\n").into_response()
    }
}

async fn metrics_text(State(state): State<Arc<AppState>>) -> Response {
    let served = state.served();
    let graphs: Vec<(GraphHandle, u64, &GraphMetrics)> =
        served.iter().map(|g| (g.handle().clone(), g.revision.number(), &*g.metrics)).collect();
    let extra = state.extra_metrics.read().unwrap_or_else(|p| p.into_inner()).clone();
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4; charset=utf-8")], metrics::render(&graphs, &extra))
        .into_response()
}

fn schemas(served: &[Served]) -> Vec<openapi::GraphSchema<'_>> {
    served
        .iter()
        .map(|g| {
            let plan = g.handle().plan();
            openapi::GraphSchema {
                name: g.handle().name(),
                inputs: g.handle().schema().inputs.iter().map(|f| (f.name.as_str(), &f.ty)).collect(),
                outputs: g.handle().schema().outputs.iter().map(|f| (f.name.as_str(), &f.ty)).collect(),
                tables: &plan.tables,
                feedback: g.handle().feedback_kinds(),
            }
        })
        .collect()
}

async fn list_graphs(State(state): State<Arc<AppState>>) -> JsonBody<Json> {
    let served = state.served();
    let graphs: Vec<Json> = schemas(&served)
        .iter()
        .zip(&served)
        .map(|(s, g)| {
            json!({
                "name": s.name,
                "path": format!("/graphs/{}", s.name),
                "inputs": openapi::object_schema(s.inputs.iter().copied()),
                "outputs": openapi::object_schema(s.outputs.iter().copied()),
                "max_in_flight": g.handle().max_in_flight(),
                "timeout_ms": g.timeout.map(|t| t.as_millis() as u64),
                "revision": g.revision.number(),
            })
        })
        .collect();
    JsonBody(json!({ "graphs": graphs }))
}

async fn openapi_document(State(state): State<Arc<AppState>>) -> JsonBody<Json> {
    JsonBody(openapi::document(&schemas(&state.served())))
}

async fn run_graph(
    State(state): State<Arc<AppState>>,
    Path(name): Path<String>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    let started = Instant::now();
    let Some(graph) = state.graph(&name) else {
        return ApiError::new(StatusCode::NOT_FOUND, "unknown_graph", format!("no graph named '{name}'"))
            .into_response();
    };
    let mut response = match answer(&state, &graph, &headers, body, started).await {
        Ok(r) => r,
        Err(e) => e.into_response(),
    };
    response.headers_mut().insert(REVISION_HEADER, graph.revision.number().into());
    let took = started.elapsed();
    graph.metrics.request(response.status().as_u16(), took.as_secs_f64());
    tracing::debug!(graph = %name, status = response.status().as_u16(), micros = took.as_micros() as u64, "request");
    response
}

async fn feedback(
    State(state): State<Arc<AppState>>,
    Path(name): Path<String>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    let graph = match served(&state, &name) {
        Ok(graph) => graph,
        Err(e) => return e.into_response(),
    };
    let result = take_feedback(&state, &graph, &headers, body).await;
    accepted(&graph, result)
}

async fn upsert(
    State(state): State<Arc<AppState>>,
    Path((name, table)): Path<(String, String)>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    let graph = match served(&state, &name) {
        Ok(graph) => graph,
        Err(e) => return e.into_response(),
    };
    let result = take_upserts(&state, &graph, &table, &headers, body).await;
    accepted(&graph, result)
}

/// The graph named `name`, or 404.
fn served(state: &AppState, name: &str) -> Result<Served, ApiError> {
    state
        .graph(name)
        .ok_or_else(|| ApiError::new(StatusCode::NOT_FOUND, "unknown_graph", format!("no graph named '{name}'")))
}

/// 202 `{"accepted": n}`, or the error; either names the revision of `graph` that took
/// them (`weir-revision`).
fn accepted(graph: &Served, result: Result<usize, ApiError>) -> Response {
    let mut response = match result {
        Ok(n) => (StatusCode::ACCEPTED, JsonBody(json!({ "accepted": n }))).into_response(),
        Err(e) => e.into_response(),
    };
    response.headers_mut().insert(REVISION_HEADER, graph.revision.number().into());
    response
}

/// Checks the content type, reads the body (within the limit) and parses it as JSON.
async fn read_json(state: &AppState, headers: &HeaderMap, body: Body) -> Result<Json, ApiError> {
    check_content_type(headers)?;
    let bytes = read_body(headers, body, state.config.body_limit).await?;
    serde_json::from_slice(&bytes)
        .map_err(|e| ApiError::new(StatusCode::BAD_REQUEST, "malformed_json", format!("the body is not JSON: {e}")))
}

/// `decode` of one object, or of every element of an array (all or none; an element's
/// error names its index: "`what` i: ...").
fn each<T>(json: &Json, what: &str, mut decode: impl FnMut(&Json) -> Result<T, RowError>) -> Result<Vec<T>, ApiError> {
    match json {
        Json::Array(items) => items
            .iter()
            .enumerate()
            .map(|(i, item)| {
                decode(item).map_err(|e| {
                    let mut err = ApiError::from_row(&e);
                    err.message = format!("{what} {i}: {}", err.message);
                    err
                })
            })
            .collect(),
        single => Ok(vec![decode(single).map_err(|e| ApiError::from_row(&e))?]),
    }
}

/// Decodes every change (all or none) and sends them into the graph's table.
async fn take_upserts(
    state: &AppState,
    graph: &Served,
    table: &str,
    headers: &HeaderMap,
    body: Body,
) -> Result<usize, ApiError> {
    let plan = graph.handle().plan();
    let Some(spec) = plan.tables.iter().find(|t| t.name == table) else {
        return Err(ApiError::new(
            StatusCode::NOT_FOUND,
            "unknown_table",
            format!("graph '{}' has no table '{table}'", graph.handle().name()),
        ));
    };
    let json = read_json(state, headers, body).await?;
    let changes = each(&json, "change", |item| decode_upsert(spec, item))?;
    let handle = graph.handle().clone();
    let table = table.to_string();
    // `upsert` waits for room in the table's channel: off the async threads.
    tokio::task::spawn_blocking(move || handle.upsert(&table, &changes))
        .await
        .map_err(|e| ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "internal", e.to_string()))?
        .map_err(|e| refused(e, |name| format!("graph '{name}' has its table channel full; retry later")))
}

/// Decodes every feedback row (all or none) and sends them into the graph.
async fn take_feedback(state: &AppState, graph: &Served, headers: &HeaderMap, body: Body) -> Result<usize, ApiError> {
    let Some(kinds) = graph.handle().feedback_kinds() else {
        return Err(ApiError::new(
            StatusCode::NOT_FOUND,
            "not_learning",
            format!("graph '{}' has no learning node; it takes no feedback", graph.handle().name()),
        ));
    };
    let json = read_json(state, headers, body).await?;
    let mut rows = Feedback::new(kinds);
    each(&json, "row", |item| decode_feedback(kinds, item, &mut rows))?;
    if rows.is_empty() {
        return Ok(0);
    }
    graph
        .handle()
        .submit_feedback(rows, false)
        .map_err(|e| refused(e, |name| format!("graph '{name}' has its feedback channel full; retry later")))
}

/// The answer to a refused submission: the row's error, or 503 with `Retry-After` when
/// the graph is full (`full` says of what) or shutting down.
fn refused(e: SubmitError, full: impl FnOnce(&str) -> String) -> ApiError {
    let (code, message) = match e {
        SubmitError::Invalid(row) => return ApiError::from_row(&row),
        SubmitError::Full(name) => ("overloaded", full(&name)),
        SubmitError::Closed => ("unavailable", "the server is shutting down".to_string()),
    };
    let mut err = ApiError::new(StatusCode::SERVICE_UNAVAILABLE, code, message);
    err.retry_after = Some(1);
    err
}

/// Decodes, submits, waits, encodes.
async fn answer(
    state: &AppState,
    graph: &Served,
    headers: &HeaderMap,
    body: Body,
    started: Instant,
) -> Result<Response, ApiError> {
    check_content_type(headers)?;
    let deadline = deadline(headers, graph.timeout, started)?;
    let bytes = read_body(headers, body, state.config.body_limit).await?;
    let json: Json = serde_json::from_slice(&bytes)
        .map_err(|e| ApiError::new(StatusCode::BAD_REQUEST, "malformed_json", format!("the body is not JSON: {e}")))?;
    let (rows, many) = match &json {
        Json::Array(items) => {
            let mut rows = Vec::with_capacity(items.len());
            for (i, item) in items.iter().enumerate() {
                let row = decode_row(&graph.handle().schema().inputs, item).map_err(|e| {
                    let mut err = ApiError::from_row(&e);
                    err.message = format!("row {i}: {}", err.message);
                    err
                })?;
                rows.push(row);
            }
            (rows, true)
        }
        single => {
            (vec![decode_row(&graph.handle().schema().inputs, single).map_err(|e| ApiError::from_row(&e))?], false)
        }
    };
    if rows.is_empty() {
        return Ok(JsonBody(json!([])).into_response());
    }
    let results = compute(graph, rows, deadline).await?;
    graph.metrics.row_errors(results.iter().filter_map(|r| r.as_ref().err().map(|e| &**e)));
    if many {
        let items: Vec<Json> = results
            .iter()
            .map(|r| match r {
                Ok(values) => encode_row(graph.outputs(), values),
                Err(e) => encode_error(e),
            })
            .collect();
        Ok(JsonBody(Json::Array(items)).into_response())
    } else {
        match results.into_iter().next() {
            Some(Ok(values)) => Ok(JsonBody(encode_row(graph.outputs(), &values)).into_response()),
            Some(Err(e)) => Err(ApiError::from_row(&e)),
            None => Err(ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "no_answer", "the graph gave no answer")),
        }
    }
}

/// Submits `rows` and waits for their answers or the deadline.
async fn compute(graph: &Served, rows: Vec<Vec<Value>>, deadline: Option<Instant>) -> Result<Vec<RowResult>, ApiError> {
    let (tx, rx) = tokio::sync::oneshot::channel();
    let limit = graph.handle().max_in_flight();
    let submission = Submission::rows(rows, Box::new(move |results| drop(tx.send(results))))
        .when_full(WhenFull::Refuse)
        .deadline(deadline);
    graph.handle().submit(submission).map_err(|e| {
        refused(e, |name| format!("graph '{name}' has its maximum of rows in flight ({limit}); retry later"))
    })?;
    let waited = match deadline {
        Some(d) => tokio::time::timeout_at(d.into(), rx).await.map_err(|_| deadline_passed())?,
        None => rx.await,
    };
    // The engine answers every admitted row; a dropped reply means it shut down.
    waited.map_err(|_| ApiError::from_row(&RowError::engine_unavailable("the engine stopped")))
}

fn deadline_passed() -> ApiError {
    ApiError::new(StatusCode::GATEWAY_TIMEOUT, "deadline_exceeded", "the request's deadline passed before its answer")
}

fn check_content_type(headers: &HeaderMap) -> Result<(), ApiError> {
    let ct = headers.get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok()).unwrap_or("");
    let essence = ct.split(';').next().unwrap_or("").trim();
    if essence.eq_ignore_ascii_case("application/json") {
        Ok(())
    } else {
        Err(ApiError::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "unsupported_media_type",
            format!("expected Content-Type: application/json, got '{ct}'"),
        ))
    }
}

/// The request's deadline: its header, or the graph's default.
fn deadline(headers: &HeaderMap, default: Option<Duration>, started: Instant) -> Result<Option<Instant>, ApiError> {
    Ok(transport_timeout(headers)?.or(default).map(|d| started + d))
}

/// The timeout the request's header ([`TIMEOUT_HEADER`]) gives, if any.
fn transport_timeout(headers: &HeaderMap) -> Result<Option<Duration>, ApiError> {
    let Some(v) = headers.get(TIMEOUT_HEADER) else { return Ok(None) };
    let ms = v.to_str().ok().and_then(|s| s.trim().parse::<u64>().ok()).filter(|&ms| ms > 0).ok_or_else(|| {
        let mut e = ApiError::new(
            StatusCode::BAD_REQUEST,
            "invalid_header",
            format!("{TIMEOUT_HEADER} must be a positive whole number of milliseconds, got {v:?}"),
        );
        e.field = Some(TIMEOUT_HEADER.into());
        e
    })?;
    Ok(Some(Duration::from_millis(ms)))
}

async fn read_body(headers: &HeaderMap, body: Body, limit: usize) -> Result<Bytes, ApiError> {
    let too_large = || {
        ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "body_too_large",
            format!("the body is over the limit of {limit} bytes"),
        )
    };
    let declared =
        headers.get(header::CONTENT_LENGTH).and_then(|v| v.to_str().ok()).and_then(|s| s.parse::<u64>().ok());
    if declared.is_some_and(|n| n > limit as u64) {
        return Err(too_large());
    }
    axum::body::to_bytes(body, limit).await.map_err(|e| {
        let over = std::error::Error::source(&e)
            .is_some_and(|s| s.is::<http_body_util::LengthLimitError>() || s.to_string().contains("length limit"));
        if over || e.to_string().contains("length limit") {
            too_large()
        } else {
            ApiError::new(StatusCode::BAD_REQUEST, "unreadable_body", format!("the body could not be read: {e}"))
        }
    })
}
