//! The protocol's errors: a message, and whose fault it is, which gives the HTTP status
//! (`{"error": "..."}` bodies) and the gRPC status code.

use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use weir_operators::{ErrorCode, RowError};

/// Why a request of the protocol was not answered with outputs.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct V2Error {
    /// Whose fault, and the status that says so.
    pub kind: Kind,
    /// What was wrong, for a person (names the model, input or output at fault).
    pub message: String,
}

/// The kinds of error, each with its HTTP status and gRPC code.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    /// The request is wrong (400, INVALID_ARGUMENT): the caller's fault.
    Invalid,
    /// No such model or version (404, NOT_FOUND).
    NotFound,
    /// Overloaded or shutting down (503 with `Retry-After`, UNAVAILABLE): retry later.
    Unavailable,
    /// The deadline passed before the answer (504, DEADLINE_EXCEEDED).
    Deadline,
    /// A node of the graph failed (500, INTERNAL): the server's fault.
    Internal,
}

impl V2Error {
    /// A request that is wrong.
    pub fn invalid(message: impl Into<String>) -> V2Error {
        V2Error { kind: Kind::Invalid, message: message.into() }
    }

    /// An unknown model or version.
    pub fn not_found(message: impl Into<String>) -> V2Error {
        V2Error { kind: Kind::NotFound, message: message.into() }
    }

    /// The error of a row that failed inside the graph (or was refused at its input),
    /// `what` saying which row.
    pub fn from_row(what: &str, e: &RowError) -> V2Error {
        let kind = match e.code {
            ErrorCode::InvalidInput => Kind::Invalid,
            ErrorCode::DeadlineExceeded => Kind::Deadline,
            ErrorCode::Unavailable => Kind::Unavailable,
            ErrorCode::ModelFailed | ErrorCode::NodeFailed => Kind::Internal,
        };
        let field = e.field.as_deref().map(|f| format!(", input '{f}'")).unwrap_or_default();
        V2Error { kind, message: format!("{what}{}: node '{}'{field}: {}", e.code.as_str(), e.node, e.message) }
    }

    /// The HTTP status.
    pub fn status(&self) -> StatusCode {
        match self.kind {
            Kind::Invalid => StatusCode::BAD_REQUEST,
            Kind::NotFound => StatusCode::NOT_FOUND,
            Kind::Unavailable => StatusCode::SERVICE_UNAVAILABLE,
            Kind::Deadline => StatusCode::GATEWAY_TIMEOUT,
            Kind::Internal => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    /// The gRPC status.
    pub fn grpc(&self) -> tonic::Status {
        let code = match self.kind {
            Kind::Invalid => tonic::Code::InvalidArgument,
            Kind::NotFound => tonic::Code::NotFound,
            Kind::Unavailable => tonic::Code::Unavailable,
            Kind::Deadline => tonic::Code::DeadlineExceeded,
            Kind::Internal => tonic::Code::Internal,
        };
        tonic::Status::new(code, self.message.clone())
    }
}

impl std::fmt::Display for V2Error {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for V2Error {}

impl IntoResponse for V2Error {
    fn into_response(self) -> Response {
        let status = self.status();
        let mut response = (status, axum::Json(serde_json::json!({ "error": self.message }))).into_response();
        if self.kind == Kind::Unavailable {
            response.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from(1));
        }
        response
    }
}
