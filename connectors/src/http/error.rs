//! HTTP errors: a status and the JSON body `{"error": {"code", "message", "node"?,
//! "field"?}}`.
//!
//! Whose fault: 4xx are the caller's (the body, the route, the method), 503 and 504 are
//! load and time, 500 is a node that failed (it names the node). Bad input never gives
//! a 5xx.

use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use serde_json::{json, Map, Value as Json};
use weir_operators::{ErrorCode, RowError};

/// An error answer.
#[derive(Clone, Debug)]
pub struct ApiError {
    /// The HTTP status.
    pub status: StatusCode,
    /// A stable, snake-case code (`malformed_json`, `invalid_input`, `overloaded`, ...).
    pub code: String,
    /// What was wrong, for a person.
    pub message: String,
    /// The graph node at fault (`input` for the request body), where there is one.
    pub node: Option<String>,
    /// The field at fault, where there is one.
    pub field: Option<String>,
    /// Seconds after which a retry may succeed (503).
    pub retry_after: Option<u32>,
}

impl ApiError {
    /// An error with a status, a code and a message.
    pub fn new(status: StatusCode, code: &str, message: impl Into<String>) -> Self {
        ApiError { status, code: code.into(), message: message.into(), node: None, field: None, retry_after: None }
    }

    /// The error of a row, with the status its code calls for.
    pub fn from_row(e: &RowError) -> Self {
        ApiError {
            status: status_of(e.code),
            code: e.code.as_str().into(),
            message: e.message.clone(),
            node: Some(e.node.clone()),
            field: e.field.clone(),
            retry_after: (e.code == ErrorCode::Unavailable).then_some(1),
        }
    }

    /// The JSON body.
    pub fn body(&self) -> Json {
        let mut inner = Map::new();
        inner.insert("code".into(), json!(self.code));
        inner.insert("message".into(), json!(self.message));
        if let Some(n) = &self.node {
            inner.insert("node".into(), json!(n));
        }
        if let Some(f) = &self.field {
            inner.insert("field".into(), json!(f));
        }
        json!({ "error": inner })
    }
}

/// The HTTP status of a row error's code.
pub fn status_of(code: ErrorCode) -> StatusCode {
    match code {
        ErrorCode::InvalidInput => StatusCode::UNPROCESSABLE_ENTITY,
        ErrorCode::ModelFailed | ErrorCode::NodeFailed => StatusCode::INTERNAL_SERVER_ERROR,
        ErrorCode::DeadlineExceeded => StatusCode::GATEWAY_TIMEOUT,
        ErrorCode::Unavailable => StatusCode::SERVICE_UNAVAILABLE,
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let mut response = (self.status, axum::Json(self.body())).into_response();
        if let Some(secs) = self.retry_after {
            response.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from(secs));
        }
        response
    }
}
