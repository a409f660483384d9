//! The operator of learning model nodes: predictions with weights that change while it
//! serves.
//!
//! It reads two streams: the rows, and the node's weights, which its learner sends back
//! around the graph's feedback loop (each version at the time of the feedback it was
//! learned from, plus one). It appends two columns to every chunk: the model's output
//! (the probability of class 1 for logistic regression, the class probabilities for
//! softmax regression) and `model_version`, the version of the weights that made it.
//!
//! The forward pass of a linear model over a chunk costs less than sending it to another
//! thread, so it runs here, inline.
//!
//! A row is predicted on arrival with the latest weights received (serving). A
//! deterministic engine builds no cycle: its learning nodes predict and learn in one
//! operator instead ([`super::learn_in_place`]).

use std::sync::Arc;
use std::time::Instant;

use timely::dataflow::channels::pact::Pipeline;
use timely::dataflow::operators::generic::Operator;
use timely::dataflow::Stream;

use super::vec_builder::VecBuilder;
use super::{RowStream, Time};
use crate::chunk::Chunk;
use crate::column::Column;
use crate::kernel::learn::Weights;
use crate::node_stats::NodeStats;

/// Versions of a node's weights, as they travel from its learner to its operators.
pub type WeightStream<'scope> = Stream<'scope, Time, Vec<Arc<Weights>>>;

/// How one learning node predicts.
#[derive(Clone, Debug)]
pub struct PredictConfig {
    /// The node's name, for errors.
    pub node: Arc<str>,
    /// Index of the input field (the features) in incoming chunks.
    pub input: usize,
    /// The weights before any feedback.
    pub initial: Arc<Weights>,
    /// Where the rows predicted and the operator's time count.
    pub stats: Arc<NodeStats>,
}

/// Extension trait: predict with weights from a stream.
///
/// # Examples
///
/// A logistic regression, and a version its learner sent before the row came (the
/// weights stream of a real graph comes from the learner, around the feedback loop):
///
/// ```
/// use std::sync::Arc;
///
/// use timely::dataflow::operators::capture::{Capture, Event};
/// use timely::dataflow::operators::ToStream;
/// use weir_operators::dataflow::{PredictConfig, PredictOnline, RowStream, WeightStream};
/// use weir_operators::kernel::learn::Weights;
/// use weir_operators::node_stats::NodeStats;
/// use weir_operators::{Chunk, Column};
///
/// let initial = Weights { version: 0, inputs: 1, outputs: 1, weight: vec![1.0], bias: vec![0.0], scale: None };
/// let learned = Weights { version: 1, ..initial.clone() };
/// let config = PredictConfig {
///     node: "score".into(),
///     input: 0,
///     initial: Arc::new(initial),
///     stats: NodeStats::new(),
/// };
/// let captured = timely::example(move |scope| {
///     let chunk = Chunk::new(0, vec![1], vec![Column::F32(vec![0.0])]);
///     let rows: RowStream = vec![chunk].to_stream(scope);
///     let weights: WeightStream = vec![Arc::new(learned)].to_stream(scope);
///     rows.predict_online(weights, config).capture()
/// });
/// let chunks: Vec<Chunk> = captured
///     .iter()
///     .flat_map(|event| match event {
///         Event::Messages(_, chunks) => chunks,
///         Event::Progress(_) => Vec::new(),
///     })
///     .collect();
/// // sigmoid(0), by version 1: it had come when the row did.
/// assert_eq!(*chunks[0].columns[1], Column::F32(vec![0.5]));
/// assert_eq!(*chunks[0].columns[2], Column::I64(vec![1]));
/// ```
pub trait PredictOnline<'scope> {
    /// Appends the model's output and `model_version` to every chunk.
    fn predict_online(self, weights: WeightStream<'scope>, config: PredictConfig) -> RowStream<'scope>;
}

impl<'scope> PredictOnline<'scope> for RowStream<'scope> {
    fn predict_online(self, weights: WeightStream<'scope>, config: PredictConfig) -> RowStream<'scope> {
        let name = format!("Predict({})", config.node);
        self.binary_frontier::<_, VecBuilder<Chunk>, _, _, _, _>(
            weights,
            Pipeline,
            Pipeline,
            &name,
            move |_cap, _info| {
                let mut current = Arc::clone(&config.initial);
                move |(rows, _), (versions, _), output| {
                    let started = Instant::now();
                    let mut predicted = 0;
                    versions.for_each_stamp(|_, data| adopt(&mut current, data.flat_map(|d| d.drain(..))));
                    rows.for_each_stamp(|cap, data| {
                        let mut session = output.session_with_builder(&cap);
                        for chunk in data.flat_map(|d| d.drain(..)) {
                            predicted += chunk.len();
                            session.give(predict(chunk, config.input, &current));
                        }
                    });
                    if predicted > 0 {
                        config.stats.record(predicted, predicted, started);
                    }
                }
            },
        )
    }
}

/// Moves `current` to the latest of `versions`, if any is newer.
fn adopt(current: &mut Arc<Weights>, versions: impl Iterator<Item = Arc<Weights>>) {
    for w in versions {
        if w.version > current.version {
            *current = w;
        }
    }
}

/// Appends the outputs of `weights` for the chunk's rows and their version. Failed rows
/// get fillers.
pub(super) fn predict(mut chunk: Chunk, input: usize, weights: &Weights) -> Chunk {
    let rows = chunk.len();
    let mut out = match chunk.columns[input].f32s() {
        // The plan checks the input width against the weights'.
        Some((data, width)) if width == weights.inputs => weights.predict(data, rows),
        _ => vec![0.0; rows * weights.outputs],
    };
    if chunk.has_errors() {
        let width = weights.outputs;
        for row in (0..rows).filter(|&r| !chunk.is_ok(r)) {
            out[row * width..(row + 1) * width].iter_mut().for_each(|v| *v = 0.0);
        }
    }
    let output =
        if weights.outputs == 1 { Column::F32(out) } else { Column::Tensor { width: weights.outputs, data: out } };
    let version = i64::try_from(weights.version).unwrap_or(i64::MAX);
    chunk.columns.push(Arc::new(output));
    chunk.columns.push(Arc::new(Column::I64(vec![version; rows])));
    chunk
}

#[cfg(test)]
mod tests {
    use timely::dataflow::operators::core::ToStream;
    use timely::dataflow::Scope;

    use super::*;
    use crate::dataflow::testing::{errors, f32_chunk, f32s, failed_at, run};
    use crate::row::ErrorCode;

    /// Logistic weights of `version` for one feature: `sigmoid(x + bias)`.
    fn weights(version: u64, bias: f32) -> Arc<Weights> {
        Arc::new(Weights { version, inputs: 1, outputs: 1, weight: vec![1.0], bias: vec![bias], scale: None })
    }

    fn config() -> PredictConfig {
        PredictConfig { node: "p".into(), input: 0, initial: weights(0, 0.0), stats: NodeStats::new() }
    }

    /// A weights stream with each version at its time.
    fn weights_at(scope: Scope<'_, Time>, versions: Vec<(Time, Arc<Weights>)>) -> WeightStream<'_> {
        let sent: Stream<'_, Time, Vec<(Time, Arc<Weights>)>> = versions.to_stream(scope);
        sent.unary::<VecBuilder<Arc<Weights>>, _, _, _>(Pipeline, "At", |_, _| {
            |input, output| {
                input.for_each(|cap, data| {
                    for (time, w) in data.drain(..) {
                        output.session_with_builder(&cap.delayed(&time, output.output_index())).give(w);
                    }
                })
            }
        })
    }

    #[test]
    fn rows_are_predicted_on_arrival_and_failed_rows_pass_untouched() {
        let chunk = failed_at(f32_chunk(1, &[0., 2.]), &[1]);
        let out = run(vec![(0, chunk)], |scope, rows| rows.predict_online(weights_at(scope, Vec::new()), config()));
        let [(0, chunk)] = &out[..] else { panic!("one chunk at time 0: {out:?}") };
        assert_eq!(f32s(&chunk.columns[1]), vec![0.5, 0.0]);
        assert_eq!(*chunk.columns[2], Column::I64(vec![0, 0]));
        assert_eq!(errors(chunk), vec![None, Some((ErrorCode::InvalidInput, "input".to_string()))]);
    }

    #[test]
    fn rows_use_the_newest_version_received_whatever_its_order_of_arrival() {
        // Version 2 comes before version 1, at a later time: the row still uses 2.
        let out = run(vec![(3, f32_chunk(3, &[0.]))], |scope, rows| {
            let versions = weights_at(scope, vec![(0, weights(2, -1.0)), (1, weights(1, 1.0))]);
            rows.predict_online(versions, config())
        });
        let [(3, chunk)] = &out[..] else { panic!("one chunk at time 3: {out:?}") };
        assert_eq!(*chunk.columns[2], Column::I64(vec![2]));
        let sigmoid = |z: f32| 1.0 / (1.0 + (-z).exp());
        assert_eq!(f32s(&chunk.columns[1]), vec![sigmoid(-1.0)]);
    }
}
