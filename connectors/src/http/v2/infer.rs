//! One inference, whichever way it came (REST or gRPC): the model and version looked up,
//! the request's tensors checked against the graph's inputs and submitted as one
//! submission of columns (the bulk path; no value is built per row), and the answer's
//! output columns, or the error of the first row that failed.
//!
//! Admission, deadlines and metrics are those of weir's own route: a request over the
//! graph's bound of rows in flight is refused at once (UNAVAILABLE), a request past its
//! deadline is answered DEADLINE_EXCEEDED, and every request counts in `/metrics` under
//! the HTTP status it was (or would have been, over gRPC) answered with.

use std::time::{Duration, Instant};

use weir_engine::{Submission, SubmitError, WhenFull};
use weir_operators::{Chunk, Column, RowError};

use super::error::{Kind, V2Error};
use super::tensor::{metadata_shape, Datatype, Tensor};
use crate::http::{AppState, Served};

/// The graph served as model `name` at `version` (empty: the current one). A model's
/// one version is the graph's revision serving now (see [`crate::live`]): older ones
/// only finish the requests they took.
pub(super) fn model(state: &AppState, name: &str, version: &str) -> Result<Served, V2Error> {
    let graph = state.graph(name).ok_or_else(|| {
        let names: Vec<String> = state.live().iter().map(|g| g.name().to_string()).collect();
        V2Error::not_found(format!("no model named '{name}' (served: {})", names.join(", ")))
    })?;
    let current = graph.version();
    if !version.is_empty() && version != current {
        return Err(V2Error::not_found(format!("model '{name}' has no version '{version}'; it has '{current}'")));
    }
    Ok(graph)
}

/// A tensor's metadata: name, datatype, shape (`-1` for the rows).
pub(super) struct TensorMeta<'a> {
    pub name: &'a str,
    pub datatype: &'static str,
    pub shape: Vec<i64>,
}

/// The metadata of a graph's inputs and outputs.
pub(super) fn tensors_meta(graph: &Served) -> (Vec<TensorMeta<'_>>, Vec<TensorMeta<'_>>) {
    fn meta(fields: &[weir_engine::GraphField]) -> Vec<TensorMeta<'_>> {
        fields
            .iter()
            .map(|f| TensorMeta { name: &f.name, datatype: Datatype::of(&f.ty).as_str(), shape: metadata_shape(&f.ty) })
            .collect()
    }
    let schema = graph.handle().schema();
    (meta(&schema.inputs), meta(&schema.outputs))
}

/// The position of output `name` among the graph's outputs.
pub(super) fn output_index(graph: &Served, name: &str) -> Result<usize, V2Error> {
    let outputs = graph.outputs();
    outputs.iter().position(|o| o == name).ok_or_else(|| {
        V2Error::invalid(format!(
            "model '{}' has no output '{name}'; its outputs: {}",
            graph.handle().name(),
            outputs.join(", ")
        ))
    })
}

/// The request's deadline: its `timeout` parameter (microseconds, as Triton's clients
/// send it), else the transport's (`x-request-timeout-ms`, gRPC's deadline), else the
/// graph's default.
pub(super) fn deadline(
    graph: &Served,
    timeout_us: Option<i64>,
    transport: Option<Duration>,
    started: Instant,
) -> Result<Option<Instant>, V2Error> {
    let timeout = match timeout_us {
        Some(us) if us > 0 => Some(Duration::from_micros(us as u64)),
        Some(us) => {
            return Err(V2Error::invalid(format!("parameter 'timeout' must be positive microseconds, got {us}")))
        }
        None => transport.or(graph.timeout),
    };
    Ok(timeout.map(|t| started + t))
}

/// Computes `tensors` (one per graph input, any order) in `graph`, answered by `deadline`:
/// the output columns in the graph's output order, every row computed.
pub(super) async fn infer(graph: &Served, tensors: &[Tensor<'_>], deadline: Option<Instant>) -> Result<Chunk, V2Error> {
    let name = graph.handle().name();
    let inputs = &graph.handle().schema().inputs;
    let names = || inputs.iter().map(|f| f.name.as_str()).collect::<Vec<_>>().join(", ");
    let mut columns: Vec<Option<Column>> = vec![None; inputs.len()];
    for t in tensors {
        let Some(i) = inputs.iter().position(|f| f.name == t.name) else {
            return Err(V2Error::invalid(format!("model '{name}' has no input '{}'; its inputs: {}", t.name, names())));
        };
        if columns[i].is_some() {
            return Err(V2Error::invalid(format!("input '{}' is given twice", t.name)));
        }
        columns[i] = Some(t.decode(&inputs[i].ty)?);
    }
    let mut given = Vec::with_capacity(columns.len());
    for (column, field) in columns.into_iter().zip(inputs) {
        let column = column.ok_or_else(|| {
            V2Error::invalid(format!("input '{}' is missing; model '{name}' takes {}", field.name, names()))
        })?;
        given.push(column);
    }
    let rows = given.first().map_or(0, Column::len);
    if let Some((field, column)) = inputs.iter().zip(&given).find(|(_, c)| c.len() != rows) {
        return Err(V2Error::invalid(format!(
            "input '{}' has {} rows, input '{}' has {rows}: every input needs one value per row",
            field.name,
            column.len(),
            inputs[0].name
        )));
    }
    if rows == 0 {
        let outputs = graph.handle().schema().outputs.iter().map(|f| Column::filler(&f.ty, 0)).collect();
        return Ok(Chunk::new(0, Vec::new(), outputs));
    }
    let (tx, rx) = tokio::sync::oneshot::channel();
    let submission = Submission::columns(given, Box::new(move |chunk| drop(tx.send(chunk))))
        .when_full(WhenFull::Refuse)
        .deadline(deadline);
    let limit = graph.handle().max_in_flight();
    graph.handle().submit(submission).map_err(|e| match e {
        SubmitError::Invalid(row) => V2Error::from_row("", &row),
        SubmitError::Full(_) => V2Error {
            kind: Kind::Unavailable,
            message: format!("model '{name}' has its maximum of rows in flight ({limit}); retry later"),
        },
        SubmitError::Closed => V2Error { kind: Kind::Unavailable, message: "the server is shutting down".into() },
    })?;
    let waited = match deadline {
        Some(d) => tokio::time::timeout_at(d.into(), rx).await.map_err(|_| V2Error {
            kind: Kind::Deadline,
            message: format!("model '{name}': the request's deadline passed before its answer"),
        })?,
        None => rx.await,
    };
    // The engine answers every admitted row; a dropped reply means it shut down.
    let chunk = waited.map_err(|_| V2Error::from_row("", &RowError::engine_unavailable("the engine stopped")))?;
    if chunk.has_errors() {
        graph.metrics.row_errors(chunk.errors.iter().flatten().map(|e| &**e));
        if let Some((row, e)) = chunk.errors.iter().enumerate().find_map(|(i, e)| e.as_ref().map(|e| (i, e))) {
            let failed = chunk.errors.iter().flatten().count();
            let others = if failed > 1 { format!(" ({} more rows failed)", failed - 1) } else { String::new() };
            return Err(V2Error::from_row(&format!("row {row}{others}: "), e));
        }
    }
    Ok(chunk)
}
