//! The Kafka feedback source of a graph with a learning node (`kafka.feedback_topic`,
//! `--kafka-feedback`): each message is one feedback object, `{"key": ..., "label": ...}`
//! or `{"features": [...], "label": ...}`, or an array of them, as `POST
//! /graphs/{name}/feedback` takes.
//!
//! Messages are read in order by a consumer of its own (group `GROUP.feedback`, so it
//! does not share partitions with the input consumer), decoded, and sent into the
//! graph's feedback stream, waiting while that is full. A message that cannot be decoded
//! goes to the graph's dead-letter topic with the `weir-error-*` headers of the input
//! loop. A message's offset is stored once it is in the graph (or dead-lettered) and
//! committed by librdkafka: at-least-once, so a crash may learn a label twice, and never
//! loses one.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use rdkafka::consumer::{CommitMode, Consumer, StreamConsumer};
use rdkafka::message::{Header, Message, OwnedHeaders};
use rdkafka::producer::FutureProducer;
use weir_engine::spec::KafkaSpec;
use weir_engine::{Feedback, GraphHandle, SubmitError};
use weir_operators::{RowError, Shutdown};

use super::rebalance::Rebalances;
use super::stats::{KafkaStats, Role};
use super::{client_config, send, with_properties, KafkaRunError};
use crate::json::decode_feedback;
use crate::live::LiveGraph;

/// What a finished feedback loop did.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct FeedbackSummary {
    /// Messages consumed.
    pub consumed: u64,
    /// Feedback rows sent into the graph.
    pub rows: u64,
    /// Messages sent to the dead-letter topic.
    pub dead_lettered: u64,
}

/// A graph's feedback consumer, subscribed, ready to [`run`](Self::run).
pub struct FeedbackLoop {
    graph: Arc<LiveGraph>,
    topic: String,
    dead_letter_topic: String,
    /// Its context is the input loop's: statistics and commit results go to `stats`; no
    /// offsets are tracked (each message's offset is stored once it is handled).
    consumer: StreamConsumer<Rebalances>,
    producer: FutureProducer,
    stats: Arc<KafkaStats>,
}

impl FeedbackLoop {
    /// The feedback loop of `spec.feedback_topic`, if the spec names one. Fails if the
    /// graph has no learning node, or on a bad client configuration.
    /// Each message goes to the graph's revision current at the time (see
    /// [`crate::live`]).
    pub fn connect(graph: Arc<LiveGraph>, spec: &KafkaSpec) -> Result<Option<FeedbackLoop>, KafkaRunError> {
        let Some(topic) = spec.feedback_topic.clone() else { return Ok(None) };
        let name = graph.name().to_string();
        if graph.current().handle().feedback_kinds().is_none() {
            return Err(KafkaRunError::NotLearning { graph: name, topic });
        }
        let client = |role: &'static str| {
            let name = name.clone();
            move |source| KafkaRunError::Client { graph: name, role, source: Box::new(source) }
        };
        let stats = KafkaStats::new(&name, Role::Feedback);
        let consumer: StreamConsumer<Rebalances> = with_properties(
            client_config(spec)
                .set("group.id", format!("{}.feedback", spec.group_id))
                .set("enable.auto.commit", "true")
                .set("enable.auto.offset.store", "false")
                .set("auto.commit.interval.ms", super::COMMIT_INTERVAL_MS.to_string())
                .set("statistics.interval.ms", super::STATISTICS_INTERVAL_MS.to_string())
                .set("auto.offset.reset", "earliest")
                .clone(),
            spec,
        )
        .create_with_context(Rebalances::new(Arc::clone(&stats)))
        .map_err(client("feedback consumer"))?;
        let producer: FutureProducer = with_properties(client_config(spec).set("linger.ms", "1").clone(), spec)
            .create()
            .map_err(client("feedback producer"))?;
        consumer.subscribe(&[topic.as_str()]).map_err(|source| KafkaRunError::Subscribe {
            graph: name.clone(),
            topics: vec![topic.clone()],
            source: Box::new(source),
        })?;
        Ok(Some(FeedbackLoop {
            graph,
            topic,
            dead_letter_topic: spec.dead_letter_topic.clone(),
            consumer,
            producer,
            stats,
        }))
    }

    /// The loop's counters, live while it runs (for `/metrics`).
    pub fn stats(&self) -> Arc<KafkaStats> {
        Arc::clone(&self.stats)
    }

    /// Consumes feedback into the graph until `shutdown` completes; then commits the
    /// stored offsets and returns what it did.
    pub async fn run(self, shutdown: Shutdown) -> FeedbackSummary {
        let FeedbackLoop { graph, topic, dead_letter_topic, consumer, producer, stats } = self;
        tracing::info!(graph = %graph.name(), topic = %topic, "consuming feedback from Kafka");
        let stopped = shutdown.requested();
        let mut shutdown = std::pin::pin!(stopped);
        loop {
            let message = tokio::select! {
                () = &mut shutdown => break,
                m = consumer.recv() => m,
            };
            let m = match message {
                Ok(m) => m,
                Err(e) => {
                    tracing::warn!(graph = %graph.name(), error = %e, "Kafka feedback consumer error");
                    continue;
                }
            };
            stats.add_consumed(1);
            let payload = m.payload().unwrap_or_default();
            let revision = graph.current();
            let refused = match decode(revision.handle(), payload) {
                Ok(feedback) if feedback.is_empty() => None,
                Ok(feedback) => match enter(revision.handle(), feedback, &mut shutdown).await {
                    Ok(n) => {
                        stats.add_delivered(n as u64);
                        None
                    }
                    Err(SubmitError::Invalid(e)) => Some(e),
                    // Shutting down: the offset is not stored; the message comes again.
                    Err(_) => break,
                },
                Err(e) => Some(e),
            };
            if let Some(error) = refused {
                stats.add_dead_lettered(1);
                let mut headers = OwnedHeaders::new();
                let mut pairs = vec![
                    ("weir-error-code", error.code.as_str().to_string()),
                    ("weir-error-node", error.node.clone()),
                    ("weir-error-message", error.message.clone()),
                    ("weir-source-topic", m.topic().to_string()),
                    ("weir-source-partition", m.partition().to_string()),
                    ("weir-source-offset", m.offset().to_string()),
                ];
                if let Some(f) = &error.field {
                    pairs.push(("weir-error-field", f.clone()));
                }
                for (k, v) in &pairs {
                    headers = headers.insert(Header { key: k, value: Some(v) });
                }
                send(&producer, &dead_letter_topic, m.key(), payload, headers).await;
            }
            if let Err(e) = consumer.store_offset_from_message(&m) {
                tracing::debug!(graph = %graph.name(), error = %e, "cannot store a feedback offset");
            }
        }
        if let Err(e) = consumer.commit_consumer_state(CommitMode::Sync) {
            tracing::debug!(graph = %graph.name(), error = %e, "final feedback commit");
        }
        FeedbackSummary { consumed: stats.consumed(), rows: stats.delivered(), dead_lettered: stats.dead_lettered() }
    }
}

/// A message's feedback rows (all or none).
fn decode(graph: &GraphHandle, payload: &[u8]) -> Result<Feedback, RowError> {
    let invalid = |m: String| RowError::invalid_input("feedback", m);
    let Some(kinds) = graph.feedback_kinds() else { return Err(invalid("the graph takes no feedback".into())) };
    let json: serde_json::Value =
        serde_json::from_slice(payload).map_err(|e| invalid(format!("the payload is not JSON: {e}")))?;
    let mut rows = Feedback::new(kinds);
    match &json {
        serde_json::Value::Array(items) => {
            for (i, item) in items.iter().enumerate() {
                decode_feedback(kinds, item, &mut rows).map_err(|mut e| {
                    e.message = format!("row {i}: {}", e.message);
                    e
                })?;
            }
        }
        one => decode_feedback(kinds, one, &mut rows)?,
    }
    Ok(rows)
}

/// Sends `feedback` into the graph, waiting (without blocking the runtime) while its
/// feedback channel is full.
async fn enter(
    graph: &GraphHandle,
    feedback: Feedback,
    shutdown: &mut std::pin::Pin<&mut impl Future<Output = ()>>,
) -> Result<usize, SubmitError> {
    loop {
        match graph.submit_feedback(feedback.clone(), false) {
            Err(SubmitError::Full(_)) => {
                tokio::select! {
                    () = shutdown.as_mut() => return Err(SubmitError::Closed),
                    () = tokio::time::sleep(Duration::from_millis(1)) => {}
                }
            }
            other => return other,
        }
    }
}
