//! Feedback streams for deterministic replays: `weir replay GRAPH --input PREDICTIONS
//! --feedback LABELS --order-by TIME`.
//!
//! Both streams carry an Int64 event-time column (`--order-by`), each sorted by it. The
//! replay merges them: a prediction row at time `t` is submitted after every feedback
//! row with a time before `t`, and before the feedback at `t` or later; prediction
//! blocks are cut where feedback falls between their rows. In a deterministic engine
//! (which `--feedback` starts) the answers and the learned weights then depend only on
//! the two streams, not on the block size or the number of workers.
//!
//! A feedback row names its prediction by the learning node's key column (named like
//! the key field, e.g. `id`) or carries the node's input features (a column named like
//! the input field), and its class in an Int64 label column (`--label`, default
//! `label`). The feedback stream is read whole before the replay starts (labels are
//! small beside predictions); every row must decode, or the replay does not start.

use arrow_array::{Array, Int64Array, RecordBatch};
use weir_engine::plan::StepOp;
use weir_engine::{Feedback, FeedbackKinds, GraphField, GraphHandle};
use weir_operators::{FieldType, Value};

use super::files::{self, InputFile};
use super::ReplayError;

/// A feedback stream, read, with a cursor: what is submitted moves it on.
pub struct FeedbackStream {
    /// The event-time column of both streams.
    pub order_by: String,
    kinds: FeedbackKinds,
    times: Vec<i64>,
    keys: Vec<Option<Value>>,
    labels: Vec<i64>,
    features: Vec<Option<Value>>,
    next: usize,
    path: std::path::PathBuf,
}

/// The event times of `batch`'s column `order_by`: Int64, no nulls.
pub fn event_times<'a>(
    batch: &'a RecordBatch,
    order_by: &str,
    path: &std::path::Path,
    first_row: u64,
) -> Result<&'a [i64], ReplayError> {
    let bad = |reason: String| ReplayError::Feedback { path: path.to_path_buf(), reason };
    let array =
        batch.column_by_name(order_by).ok_or_else(|| bad(format!("no event-time column '{order_by}' (--order-by)")))?;
    let times = array
        .as_any()
        .downcast_ref::<Int64Array>()
        .ok_or_else(|| bad(format!("event-time column '{order_by}' is {}, expected Int64", array.data_type())))?;
    if let Some(r) = (0..times.len()).find(|&r| times.is_null(r)) {
        return Err(bad(format!("row {}: the event time is null", first_row + r as u64)));
    }
    Ok(times.values())
}

/// Reads the feedback `files` of `graph`'s learning node.
pub fn read_feedback(
    graph: &GraphHandle,
    files: &[InputFile],
    order_by: &str,
    label: &str,
) -> Result<FeedbackStream, ReplayError> {
    let plan = graph.plan();
    let path = files.first().map(|f| f.path.clone()).unwrap_or_default();
    let Some(kinds) = graph.feedback_kinds().cloned() else {
        return Err(ReplayError::Feedback { path, reason: format!("graph '{}' has no learning node", plan.name) });
    };
    // The names of the key and input fields: the columns feedback files use.
    let (key_name, input_name) = plan
        .steps
        .iter()
        .find_map(|s| match &s.op {
            StepOp::Learn { input, key, .. } => {
                let name = |i: usize| s.schema.fields.get(i).map(|(f, _)| f.field.clone());
                Some((key.and_then(name), name(*input)))
            }
            _ => None,
        })
        .unwrap_or((None, None));
    let mut stream = FeedbackStream {
        order_by: order_by.to_string(),
        kinds,
        times: Vec::new(),
        keys: Vec::new(),
        labels: Vec::new(),
        features: Vec::new(),
        next: 0,
        path,
    };
    let mut row = 0u64;
    for file in files {
        let bad = |reason: String| ReplayError::Feedback { path: file.path.clone(), reason };
        let has = |name: &Option<String>| name.as_ref().filter(|n| file.schema.column_with_name(n).is_some()).cloned();
        let (key_column, feature_column) = (has(&key_name), has(&input_name));
        if key_column.is_none() && feature_column.is_none() {
            let wanted: Vec<String> = key_name.iter().chain(&input_name).map(|n| format!("'{n}'")).collect();
            return Err(bad(format!("needs a key or features column ({})", wanted.join(" or "))));
        }
        for batch in files::open(file, 8192)? {
            let batch = batch.map_err(|e| files::damaged(file, row, e))?;
            let times = event_times(&batch, order_by, &file.path, row)?;
            let labels = batch
                .column_by_name(label)
                .and_then(|a| a.as_any().downcast_ref::<Int64Array>())
                .ok_or_else(|| bad(format!("no Int64 label column '{label}' (--label)")))?;
            let column = |name: &Option<String>, ty: Option<&FieldType>| -> Result<Option<Vec<Value>>, ReplayError> {
                let (Some(name), Some(ty)) = (name, ty) else { return Ok(None) };
                let decoded = crate::arrow::decode_columns(&[GraphField::new(name, ty)], &batch, row)
                    .map_err(|e| bad(e.message))?;
                if let Some((r, e)) = decoded.failed.first() {
                    return Err(bad(format!("row {}: {}", row + *r as u64, e.message)));
                }
                Ok(decoded.columns.first().map(|c| c.values()))
            };
            let keys = column(&key_column, stream.kinds.key.as_ref())?;
            let features = column(&feature_column, Some(&stream.kinds.features))?;
            for r in 0..batch.num_rows() {
                if labels.is_null(r) {
                    return Err(bad(format!("row {}: the label is null", row + r as u64)));
                }
                if stream.times.last().is_some_and(|&last| times[r] < last) {
                    return Err(bad(format!("row {}: not sorted by '{order_by}'", row + r as u64)));
                }
                stream.times.push(times[r]);
                stream.labels.push(labels.value(r));
                stream.keys.push(keys.as_ref().map(|k| k[r].clone()));
                stream.features.push(features.as_ref().filter(|_| keys.is_none()).map(|f| f[r].clone()));
            }
            row += batch.num_rows() as u64;
        }
    }
    Ok(stream)
}

impl FeedbackStream {
    /// The time of the next feedback row not yet submitted.
    pub fn next_time(&self) -> Option<i64> {
        self.times.get(self.next).copied()
    }

    /// Feedback rows.
    pub fn len(&self) -> usize {
        self.labels.len()
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.labels.is_empty()
    }

    /// Submits, in order, every row not yet submitted whose time is before `before`
    /// (every row, with `None`), waiting for room.
    pub fn submit_before(&mut self, graph: &GraphHandle, before: Option<i64>) -> Result<(), ReplayError> {
        let end = match before {
            Some(t) => self.next + self.times[self.next..].partition_point(|&time| time < t),
            None => self.times.len(),
        };
        while self.next < end {
            let stop = end.min(self.next + 65536);
            let mut rows = Feedback::new(&self.kinds);
            for i in self.next..stop {
                rows.push(self.keys[i].as_ref(), self.labels[i], self.features[i].as_ref())
                    .map_err(|reason| ReplayError::Feedback { path: self.path.clone(), reason })?;
            }
            graph
                .submit_feedback(rows, true)
                .map_err(|e| ReplayError::Feedback { path: self.path.clone(), reason: e.to_string() })?;
            self.next = stop;
        }
        Ok(())
    }
}
