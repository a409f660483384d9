//! How a consumed message is answered: its output (and dead letter, where rows failed)
//! produced until the broker acknowledges them, then its offset finished and, where
//! its partition's position moved, stored for librdkafka to commit.
//!
//! The graph's reply for a submission (or a decoding error) is handed to [`Answerer::
//! answer`], which spawns one task per submission on the loop's runtime: answering
//! never waits for the consuming loop, so a backlog being consumed at full speed cannot
//! hold back the acknowledgements that move the committed position. Each message keeps
//! its permit of the in-flight bound until its offset is finished, so answers waiting
//! to be produced or acknowledged are bounded like the rows in the graph.

use std::sync::Arc;
use std::time::Duration;

use rdkafka::consumer::{Consumer, StreamConsumer};
use rdkafka::message::{Header, OwnedHeaders};
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::util::Timeout;
use rdkafka::{Offset, TopicPartitionList};
use tokio::sync::{Notify, OwnedSemaphorePermit};
use weir_engine::spec::{KafkaSpec, PayloadFormat};
use weir_engine::RowResult;
use weir_operators::RowError;

use super::offsets::TopicPartition;
use super::rebalance::Rebalances;
use super::stats::KafkaStats;
use crate::json::encode_row;

/// Where a message came from, and what is needed to answer it.
pub(crate) struct Origin {
    pub tp: TopicPartition,
    pub offset: i64,
    pub key: Option<Vec<u8>>,
    pub payload: Vec<u8>,
    pub headers: Vec<(String, Option<Vec<u8>>)>,
    /// Held until the offset is finished: bounds the messages between consumption and
    /// their stored position.
    pub _permit: OwnedSemaphorePermit,
}

/// What became of a message's rows.
pub(crate) enum Outcome {
    /// One answer per row, in the payload's order.
    Rows(Vec<RowResult>),
    /// The payload as a whole could not be decoded.
    Undecodable(Arc<RowError>),
}

impl Outcome {
    /// Whether the message gets an output message, and whether a dead letter.
    fn destinations(&self, format: PayloadFormat) -> (bool, bool) {
        match (self, format) {
            (Outcome::Undecodable(_), _) => (false, true),
            (Outcome::Rows(rows), PayloadFormat::Json) => {
                let ok = rows.iter().all(Result::is_ok);
                (ok, !ok)
            }
            (Outcome::Rows(rows), PayloadFormat::Arrow) => (true, rows.iter().any(Result::is_err)),
        }
    }
}

/// Everything answering needs, shared by the loop and its answering tasks.
pub(crate) struct Answerer {
    pub spec: KafkaSpec,
    /// The output fields: names and types.
    pub outputs: Vec<weir_engine::GraphField>,
    pub producer: FutureProducer,
    pub consumer: Arc<StreamConsumer<Rebalances>>,
    pub stats: Arc<KafkaStats>,
    /// The loop's runtime, where answering tasks run (replies come on worker threads).
    pub runtime: tokio::runtime::Handle,
    /// Woken whenever the last pending message is finished (shutdown waits for it).
    pub idle: Notify,
}

impl Answerer {
    /// Answers a submission's messages, on a task of its own; callable from any thread.
    pub fn answer(self: &Arc<Self>, batch: Vec<(Origin, Outcome)>) {
        let this = Arc::clone(self);
        self.runtime.spawn(async move {
            let sends = batch.into_iter().map(|(origin, outcome)| this.produce(origin, outcome));
            futures_util::future::join_all(sends).await;
        });
    }

    /// Produces a message's answer and, where rows failed, its dead letter, until the
    /// broker acknowledges them; then finishes its offset.
    async fn produce(&self, origin: Origin, outcome: Outcome) {
        let spec = &self.spec;
        let source = |mut headers: OwnedHeaders| {
            for (k, v) in [
                ("weir-source-topic", origin.tp.0.clone()),
                ("weir-source-partition", origin.tp.1.to_string()),
                ("weir-source-offset", origin.offset.to_string()),
            ] {
                headers = headers.insert(Header { key: k, value: Some(&v) });
            }
            headers
        };
        let key = origin.key.as_deref();
        let (output, dead) = outcome.destinations(spec.format);
        let first_error = match &outcome {
            Outcome::Undecodable(e) => Some((Arc::clone(e), 1)),
            Outcome::Rows(rows) => {
                let failed = rows.iter().filter(|r| r.is_err()).count();
                rows.iter().find_map(|r| r.as_ref().err()).map(|e| (Arc::clone(e), failed))
            }
        };
        if output {
            if let Outcome::Rows(rows) = &outcome {
                let payload = match spec.format {
                    PayloadFormat::Json => match rows.first() {
                        Some(Ok(values)) => {
                            let names = self.outputs.iter().map(|f| f.name.as_str());
                            Ok(serde_json::to_vec(&encode_row(names, values)).unwrap_or_default())
                        }
                        _ => Err("no answer".to_string()),
                    },
                    PayloadFormat::Arrow => {
                        crate::arrow::encode_answers(&self.outputs, rows).and_then(|b| crate::arrow::write_stream(&b))
                    }
                };
                match payload {
                    Ok(p) => {
                        send(&self.producer, &spec.output_topic, key, &p, source(OwnedHeaders::new())).await;
                        self.stats.add_delivered(1);
                    }
                    Err(e) => tracing::error!(topic = %spec.output_topic, error = %e, "cannot encode an answer"),
                }
            }
        }
        if dead {
            if let Some((error, failed)) = first_error {
                let mut headers = OwnedHeaders::new();
                for (k, v) in &origin.headers {
                    headers = headers.insert(Header { key: k, value: v.as_deref() });
                }
                let mut extra = vec![
                    ("weir-error-code", error.code.as_str().to_string()),
                    ("weir-error-node", error.node.clone()),
                    ("weir-error-message", error.message.clone()),
                    ("weir-error-rows", failed.to_string()),
                ];
                if let Some(f) = &error.field {
                    extra.push(("weir-error-field", f.clone()));
                }
                for (k, v) in &extra {
                    headers = headers.insert(Header { key: k, value: Some(v) });
                }
                send(&self.producer, &spec.dead_letter_topic, key, &origin.payload, source(headers)).await;
                self.stats.add_dead_lettered(1);
            }
        }
        self.finish(&origin.tp, origin.offset);
        // The permit goes back only now: the message is answered and its offset finished.
        drop(origin);
    }

    /// Finishes a message and stores its partition's position if it moved.
    fn finish(&self, tp: &TopicPartition, offset: i64) {
        let (position, idle) = {
            let mut tracker = self.consumer.context().tracker();
            (tracker.finish(tp, offset), tracker.pending() == 0)
        };
        if let Some(position) = position {
            let mut tpl = TopicPartitionList::new();
            if tpl.add_partition_offset(&tp.0, tp.1, Offset::Offset(position)).is_ok() {
                if let Err(e) = self.consumer.store_offsets(&tpl) {
                    // The partition was revoked meanwhile: its new owner consumes it again.
                    tracing::debug!(topic = %tp.0, partition = tp.1, error = %e, "cannot store offset");
                }
            }
        }
        if idle {
            self.idle.notify_one();
        }
    }
}

/// Sends one message until the broker acknowledges it.
pub(crate) async fn send(
    producer: &FutureProducer,
    topic: &str,
    key: Option<&[u8]>,
    payload: &[u8],
    headers: OwnedHeaders,
) {
    loop {
        let mut record = FutureRecord::to(topic).payload(payload).headers(headers.clone());
        if let Some(k) = key {
            record = record.key(k);
        }
        match producer.send(record, Timeout::Never).await {
            Ok(_) => return,
            Err((e, _)) => {
                tracing::warn!(topic = %topic, error = %e, "Kafka delivery failed; retrying");
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        }
    }
}
