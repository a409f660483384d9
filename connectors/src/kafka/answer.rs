//! How a consumed message is answered: its output (and dead letter, where rows failed)
//! produced until the broker acknowledges them, then its offset finished and, where
//! its partition's position moved, stored for librdkafka to commit.
//!
//! The graph's reply for a submission (or a decoding error) is handed to [`Answerer::
//! answer`], which spawns one task per submission on the loop's runtime: it encodes each
//! message's outputs and hands them to the producer, so answering never waits for the
//! consuming loop. Nothing waits for the acknowledgements: librdkafka reports each one
//! on its producer thread to [`Acks::delivery`], which counts it and, when a message's
//! last output is acknowledged, finishes its offset. (Before, a future per output, woken by
//! the report and polled by a task, made the answering task 38.6% of `weir serve`'s CPU
//! samples on a Kafka backlog; see BENCHMARKS.md, Kafka, "Issue 22, item 4".) A delivery
//! that failed is produced again, 200 ms later, by the retrying task ([`retry`]), with its
//! payload, key and headers as they were; the producer is idempotent, so a retry never
//! duplicates what the broker already has.
//!
//! Each message keeps its permit of the in-flight bound until its offset is finished,
//! so answers waiting to be produced or acknowledged are bounded like the rows in the
//! graph.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use rdkafka::consumer::{Consumer, StreamConsumer};
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::{Header, Message, OwnedHeaders, OwnedMessage};
use rdkafka::producer::{
    BaseRecord, DeliveryResult, FutureProducer, FutureRecord, Producer, ProducerContext, ThreadedProducer,
};
use rdkafka::util::Timeout;
use rdkafka::{ClientContext, Offset, TopicPartitionList};
use tokio::sync::{mpsc, Notify, OwnedSemaphorePermit};
use weir_engine::spec::{KafkaSpec, PayloadFormat};
use weir_engine::RowResult;
use weir_operators::{ErrorCode, RowError};

use super::offsets::TopicPartition;
use super::rebalance::Rebalances;
use super::stats::KafkaStats;
use crate::json_payload::write_row;

/// Where a message came from, and what is needed to answer it.
pub(crate) struct Origin {
    pub tp: TopicPartition,
    pub offset: i64,
    pub key: Option<Vec<u8>>,
    pub payload: Vec<u8>,
    pub headers: Vec<(String, Option<Vec<u8>>)>,
    /// The revision of the graph that computed its rows (0 until it is submitted; see
    /// [`crate::live`]), sent as the answer's `weir-revision` header.
    pub revision: u64,
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
    /// Whether a row was not computed because the engine stopped (`unavailable`: it
    /// shut down, or its cluster lost a process): such a message is neither answered
    /// nor dead-lettered, and its offset is never finished, so that it is consumed
    /// again after the restart.
    fn not_computed(&self) -> bool {
        match self {
            Outcome::Rows(rows) => rows.iter().any(|r| r.as_ref().is_err_and(|e| e.code == ErrorCode::Unavailable)),
            Outcome::Undecodable(_) => false,
        }
    }

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

/// The producer of answers and dead letters; its acknowledgements go to [`Acks`].
pub(crate) type AnswerProducer = ThreadedProducer<Acks>;

/// A message whose outputs are on their way: finished once the last is acknowledged.
pub(crate) struct Answering {
    tp: TopicPartition,
    offset: i64,
    outputs_left: AtomicUsize,
    /// Released when the last reference goes, after the offset is finished.
    _permit: OwnedSemaphorePermit,
}

/// What rides with one output to its delivery report.
pub(crate) struct Sent {
    message: Arc<Answering>,
    dead_letter: bool,
}

/// An output whose delivery failed, to be produced again.
pub(crate) struct Failed {
    message: OwnedMessage,
    sent: Box<Sent>,
    at: Instant,
}

/// The answer producer's context: what a delivery report updates.
pub(crate) struct Acks {
    consumer: Arc<StreamConsumer<Rebalances>>,
    stats: Arc<KafkaStats>,
    failed: mpsc::UnboundedSender<Failed>,
    /// Woken whenever the last pending message is finished or left (shutdown waits for
    /// it).
    pub idle: Notify,
    /// Messages left unfinished because the engine did not compute them (see
    /// [`Outcome`]): they stay pending in the tracker, so that no later offset of their
    /// partition is stored, but nothing will finish them.
    left: AtomicUsize,
}

impl Acks {
    /// The context of a loop's producer; failed deliveries go to `failed` ([`retry`]).
    pub fn new(
        consumer: Arc<StreamConsumer<Rebalances>>,
        stats: Arc<KafkaStats>,
        failed: mpsc::UnboundedSender<Failed>,
    ) -> Acks {
        Acks { consumer, stats, failed, idle: Notify::new(), left: AtomicUsize::new(0) }
    }

    /// Pending messages that may still be finished: the tracker's pending ones, less
    /// those left.
    pub fn awaited(&self) -> usize {
        let pending = self.consumer.context().tracker().pending();
        pending.saturating_sub(self.left.load(Ordering::Acquire))
    }

    /// Leaves `n` messages unfinished (the engine did not compute them).
    fn leave(&self, n: usize) {
        self.left.fetch_add(n, Ordering::AcqRel);
        if self.awaited() == 0 {
            self.idle.notify_one();
        }
    }

    /// Counts an acknowledged output; finishes its message if it was the last.
    fn acknowledged(&self, sent: &Sent) {
        if sent.dead_letter {
            self.stats.add_dead_lettered(1);
        } else {
            self.stats.add_delivered(1);
        }
        if sent.message.outputs_left.fetch_sub(1, Ordering::AcqRel) == 1 {
            self.finish(&sent.message.tp, sent.message.offset);
        }
    }

    /// Finishes a message and stores its partition's position if it moved.
    fn finish(&self, tp: &TopicPartition, offset: i64) {
        let (position, idle) = {
            let mut tracker = self.consumer.context().tracker();
            (tracker.finish(tp, offset), tracker.pending() <= self.left.load(Ordering::Acquire))
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

impl ClientContext for Acks {}

impl ProducerContext for Acks {
    type DeliveryOpaque = Box<Sent>;

    /// Runs on librdkafka's producer thread, once per output.
    fn delivery(&self, result: &DeliveryResult<'_>, sent: Box<Sent>) {
        match result {
            Ok(_) => self.acknowledged(&sent),
            Err((error, message)) => {
                tracing::warn!(topic = %message.topic(), error = %error, "Kafka delivery failed; retrying");
                // Without the retrying task (the loop has stopped) the message stays
                // unfinished, so its offset is not committed and it is consumed again.
                let _ = self.failed.send(Failed { message: message.detach(), sent, at: Instant::now() });
            }
        }
    }
}

/// Produces again, 200 ms after it failed, each output whose delivery failed, until the
/// channel closes.
pub(crate) async fn retry(producer: Arc<AnswerProducer>, mut failed: mpsc::UnboundedReceiver<Failed>) {
    while let Some(Failed { mut message, sent, at }) = failed.recv().await {
        tokio::time::sleep_until((at + RETRY_AFTER).into()).await;
        let headers = message.detach_headers();
        let mut record = BaseRecord::with_opaque_to(message.topic(), sent);
        if let Some(p) = message.payload() {
            record = record.payload(p);
        }
        if let Some(k) = message.key() {
            record = record.key(k);
        }
        if let Some(h) = headers {
            record = record.headers(h);
        }
        queue(&producer, record).await;
    }
}

/// How long a failed delivery or refused output waits before it is produced again.
const RETRY_AFTER: Duration = Duration::from_millis(200);

/// Hands `record` to the producer, waiting while its queue is full (and retrying any
/// other refusal, logged, every [`RETRY_AFTER`]).
async fn queue<'a>(producer: &AnswerProducer, mut record: BaseRecord<'a, [u8], [u8], Box<Sent>>) {
    loop {
        match producer.send(record) {
            Ok(()) => return,
            Err((e, back)) => {
                record = back;
                let wait = if matches!(e, KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull)) {
                    Duration::from_millis(5)
                } else {
                    tracing::warn!(topic = %record.topic, error = %e, "Kafka refused an output; retrying");
                    RETRY_AFTER
                };
                tokio::time::sleep(wait).await;
            }
        }
    }
}

/// One output of a message, encoded.
struct Output<'a> {
    topic: &'a str,
    payload: Vec<u8>,
    headers: OwnedHeaders,
    dead_letter: bool,
}

/// Everything answering needs, shared by the loop and its answering tasks.
pub(crate) struct Answerer {
    pub spec: KafkaSpec,
    /// The output fields: names and types.
    pub outputs: Vec<weir_engine::GraphField>,
    pub producer: Arc<AnswerProducer>,
    /// The loop's runtime, where answering tasks run (replies come on worker threads).
    pub runtime: tokio::runtime::Handle,
}

impl Answerer {
    /// Answers a submission's messages, on a task of its own; callable from any thread.
    pub fn answer(self: &Arc<Self>, batch: Vec<(Origin, Outcome)>) {
        let this = Arc::clone(self);
        self.runtime.spawn(async move {
            let mut left = 0;
            for (origin, outcome) in batch {
                if outcome.not_computed() {
                    left += 1;
                    continue;
                }
                this.produce(origin, outcome).await;
            }
            if left > 0 {
                tracing::warn!(
                    messages = left,
                    "messages not computed (the engine stopped); left to be consumed again"
                );
                this.producer.context().leave(left);
            }
        });
    }

    /// Hands a message's answer and, where rows failed, its dead letter to the producer;
    /// the message is finished when the broker acknowledges both ([`Acks`]).
    async fn produce(&self, origin: Origin, outcome: Outcome) {
        let outputs = self.outputs(&origin, &outcome);
        let Origin { tp, offset, key, _permit, .. } = origin;
        let message = Arc::new(Answering { tp, offset, outputs_left: AtomicUsize::new(outputs.len()), _permit });
        if outputs.is_empty() {
            // Nothing could be encoded (logged): the message is done with.
            self.producer.context().finish(&message.tp, message.offset);
            return;
        }
        for output in outputs {
            let sent = Box::new(Sent { message: Arc::clone(&message), dead_letter: output.dead_letter });
            let mut record =
                BaseRecord::with_opaque_to(output.topic, sent).payload(&output.payload[..]).headers(output.headers);
            if let Some(k) = key.as_deref() {
                record = record.key(k);
            }
            queue(&self.producer, record).await;
        }
    }

    /// A message's outputs: its answer (unless every row failed, for JSON) and its dead
    /// letter (if a row failed or it could not be decoded), with their headers.
    fn outputs(&self, origin: &Origin, outcome: &Outcome) -> Vec<Output<'_>> {
        let spec = &self.spec;
        let source = |mut headers: OwnedHeaders| {
            let (partition, offset) = (origin.tp.1.to_string(), origin.offset.to_string());
            let revision = origin.revision.to_string();
            for (k, v) in [
                ("weir-source-topic", origin.tp.0.as_str()),
                ("weir-source-partition", &partition),
                ("weir-source-offset", &offset),
                (crate::live::REVISION_HEADER, &revision),
            ] {
                headers = headers.insert(Header { key: k, value: Some(v) });
            }
            headers
        };
        let mut outputs = Vec::with_capacity(1);
        let (output, dead) = outcome.destinations(spec.format);
        if output {
            if let Outcome::Rows(rows) = outcome {
                let payload = match spec.format {
                    PayloadFormat::Json => match rows.first() {
                        Some(Ok(values)) => {
                            let names = self.outputs.iter().map(|f| f.name.as_str());
                            let mut payload = Vec::with_capacity(16 * values.len() + 2);
                            write_row(names, values, &mut payload);
                            Ok(payload)
                        }
                        _ => Err("no answer".to_string()),
                    },
                    PayloadFormat::Arrow => {
                        crate::arrow::encode_answers(&self.outputs, rows).and_then(|b| crate::arrow::write_stream(&b))
                    }
                };
                match payload {
                    Ok(payload) => outputs.push(Output {
                        topic: &spec.output_topic,
                        payload,
                        headers: source(OwnedHeaders::new_with_capacity(4)),
                        dead_letter: false,
                    }),
                    Err(e) => tracing::error!(topic = %spec.output_topic, error = %e, "cannot encode an answer"),
                }
            }
        }
        let first_error = match outcome {
            Outcome::Undecodable(e) => Some((Arc::clone(e), 1)),
            Outcome::Rows(rows) => {
                let failed = rows.iter().filter(|r| r.is_err()).count();
                rows.iter().find_map(|r| r.as_ref().err()).map(|e| (Arc::clone(e), failed))
            }
        };
        if let Some((error, failed)) = first_error.filter(|_| dead) {
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
            outputs.push(Output {
                topic: &spec.dead_letter_topic,
                payload: origin.payload.clone(),
                headers: source(headers),
                dead_letter: true,
            });
        }
        outputs
    }
}

/// Sends one message until the broker acknowledges it (feedback's dead letters).
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
