//! Kafka source and sink: a graph consumes its input topics and produces one answer per
//! message, with at-least-once delivery.
//!
//! The loop ([`KafkaLoop::run`]) runs on tokio beside the HTTP server:
//!
//! 1. `StreamConsumer::recv` wakes when librdkafka's queue becomes non-empty (no busy
//!    poll: an idle consumer sleeps). A message's payload (one JSON object, or an Arrow
//!    IPC stream of many rows, see [`crate::arrow`]) is decoded by the graph's input
//!    schema. One that cannot be decoded goes to the dead-letter topic. A message, and
//!    whatever else is already fetched (up to 256 messages), enter the graph as one
//!    submission; their answers are produced by one task (`answer.rs`), spawned by the
//!    graph's reply, so answering never waits for the consuming loop.
//! 2. Each message takes a permit of an in-flight bound (the graph's
//!    `serving.max_in_flight`) before it is submitted and keeps it until its offset is
//!    finished (step 4): when the graph is full, or answers wait for the broker,
//!    consumption waits, so memory stays bounded.
//! 3. An answer is produced to the output topic with the input's key and headers
//!    `weir-source-topic`, `weir-source-partition`, `weir-source-offset`; a row that
//!    failed goes to the dead-letter topic with its original payload and headers, plus
//!    `weir-error-code`, `weir-error-node`, `weir-error-field` (when known),
//!    `weir-error-message` and `weir-error-rows`. An Arrow message is always answered
//!    (every row, with an `error` column) and also dead-lettered if a row failed. The
//!    producer is idempotent; a failed delivery is retried. A message with a row the
//!    engine did not compute because it stopped (`unavailable`: shutting down, or its
//!    cluster lost a process) is neither answered nor dead-lettered, and its offset is
//!    never finished: it is consumed again after the restart.
//! 4. When the broker acknowledges an output, the message is finished in the
//!    [`offsets::OffsetTracker`]; once every earlier message of its partition is
//!    finished too, the partition's position is stored, and librdkafka commits stored
//!    positions (every [`COMMIT_INTERVAL_MS`], and at shutdown). A crash re-delivers
//!    everything after the committed positions: nothing is lost, and the duplicates are
//!    what was answered since the last commit.
//! 5. A rebalance resets the tracking of the partitions revoked or assigned
//!    ([`rebalance`]): a revoked partition's next owner resumes at its last committed
//!    position, and a partition assigned again starts afresh.
//! 6. What the loop did (consumed, answered, dead-lettered; each assigned partition's
//!    committed offset and lag) is in [`stats`], live, for `/metrics`.
//! 7. Feedback for a learning node comes from its own topic and consumer
//!    ([`feedback`]); a table's changes from its topic, read whole by every server
//!    ([`table`]).

mod answer;
pub mod capture;
pub mod feedback;
pub mod offsets;
pub mod rebalance;
pub mod stats;
pub mod table;

use std::sync::Arc;
use std::time::Duration;

use rdkafka::config::{ClientConfig, FromClientConfigAndContext};
use rdkafka::consumer::{CommitMode, Consumer, StreamConsumer};
use rdkafka::message::{Headers, Message};
use rdkafka::producer::Producer;
use tokio::sync::{mpsc, OwnedSemaphorePermit, Semaphore};
use weir_engine::spec::{KafkaSpec, PayloadFormat};
use weir_engine::{GraphField, GraphHandle, RowResult, Submission};

use crate::live::LiveGraph;
use weir_operators::{RowError, Shutdown};

use crate::arrow::Decoded;
use crate::json_payload::decode_row_payload;
pub(crate) use answer::send;
use answer::{Acks, AnswerProducer, Answerer, Failed, Origin, Outcome};
use rebalance::Rebalances;
use stats::{KafkaStats, Role};

/// Why the Kafka loop could not start or stopped.
#[derive(Debug, thiserror::Error)]
pub enum KafkaRunError {
    /// A client could not be created (bad configuration).
    #[error("graph '{graph}': cannot create the Kafka {role}: {source}")]
    Client {
        /// The graph.
        graph: String,
        /// `consumer` or `producer`.
        role: &'static str,
        /// librdkafka's reason.
        source: Box<rdkafka::error::KafkaError>,
    },
    /// A feedback topic is set for a graph without a learning node.
    #[error("graph '{graph}': feedback topic '{topic}' is set, but the graph has no learning node to take it")]
    NotLearning {
        /// The graph.
        graph: String,
        /// The topic.
        topic: String,
    },
    /// A table's topic could not be read.
    #[error("graph '{graph}': table '{table}': topic '{topic}': {reason}")]
    Table {
        /// The graph.
        graph: String,
        /// The table.
        table: String,
        /// The topic it follows.
        topic: String,
        /// What went wrong.
        reason: String,
    },
    /// Subscribing to the input topics failed.
    #[error("graph '{graph}': cannot subscribe to {topics:?}: {source}")]
    Subscribe {
        /// The graph.
        graph: String,
        /// The topics.
        topics: Vec<String>,
        /// librdkafka's reason.
        source: Box<rdkafka::error::KafkaError>,
    },
}

/// What a finished loop did.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct KafkaSummary {
    /// Messages consumed.
    pub consumed: u64,
    /// Answers produced to the output topic.
    pub answered: u64,
    /// Messages sent to the dead-letter topic.
    pub dead_lettered: u64,
}

/// Messages submitted to the graph together, at most: what is already fetched when one
/// arrives goes with it, so a backlog costs one submission per batch, not per message.
const MESSAGES_PER_SUBMISSION: usize = 256;

/// The client settings shared by consumer and producer: the brokers, then the graph's
/// properties (which may override anything).
fn client_config(spec: &KafkaSpec) -> ClientConfig {
    let mut config = ClientConfig::new();
    config.set("bootstrap.servers", &spec.bootstrap_servers);
    config
}

fn with_properties(mut config: ClientConfig, spec: &KafkaSpec) -> ClientConfig {
    for (k, v) in &spec.properties {
        config.set(k, v);
    }
    config
}

/// A consumer's context where end-of-partition events are how a reader finds the end
/// of a topic (a capture's range, a table feed's catch-up), not errors to log.
pub(crate) struct Quiet;

impl rdkafka::ClientContext for Quiet {
    fn error(&self, error: rdkafka::error::KafkaError, reason: &str) {
        if !matches!(error, rdkafka::error::KafkaError::PartitionEOF(_)) {
            tracing::warn!(error = %error, "Kafka: {reason}");
        }
    }
}

impl rdkafka::consumer::ConsumerContext for Quiet {}

/// The partitions of `topic` (empty if the broker does not have it).
fn topic_partitions<C: rdkafka::consumer::ConsumerContext>(
    consumer: &rdkafka::consumer::BaseConsumer<C>,
    topic: &str,
    timeout: Duration,
) -> Result<Vec<i32>, rdkafka::error::KafkaError> {
    let metadata = consumer.fetch_metadata(Some(topic), timeout)?;
    Ok(metadata
        .topics()
        .iter()
        .filter(|t| t.name() == topic && t.error().is_none())
        .flat_map(|t| t.partitions().iter().map(|p| p.id()))
        .collect())
}

/// How often librdkafka commits the positions stored since its last commit, in ms
/// (`auto.commit.interval.ms`, unless the graph's properties set it). A crash answers
/// again what was answered since the last commit, so this bounds the duplicates: at
/// most this long of answering, plus the messages still being acknowledged.
pub const COMMIT_INTERVAL_MS: u64 = 100;

/// How often librdkafka reports the committed offsets and partition ends that
/// [`stats::KafkaStats`] shows, in ms (`statistics.interval.ms`, unless overridden).
pub const STATISTICS_INTERVAL_MS: u64 = 1000;

/// A graph's Kafka clients, connected and subscribed, ready to [`run`](Self::run).
pub struct KafkaLoop {
    graph: Arc<LiveGraph>,
    spec: KafkaSpec,
    consumer: Arc<StreamConsumer<Rebalances>>,
    producer: Arc<AnswerProducer>,
    /// Outputs whose delivery failed, for the retrying task.
    failed: mpsc::UnboundedReceiver<Failed>,
    stats: Arc<KafkaStats>,
}

impl KafkaLoop {
    /// Creates the consumer (group `spec.group_id`, offsets stored only by this loop)
    /// and the idempotent producer, and subscribes to the input topics. Fails at once on
    /// a bad configuration; brokers that are down are retried by librdkafka.
    /// Each submission goes to the graph's revision current at the time (see
    /// [`crate::live`]).
    pub fn connect(graph: Arc<LiveGraph>, spec: KafkaSpec) -> Result<Self, KafkaRunError> {
        let name = graph.name().to_string();
        let stats = KafkaStats::new(&name, Role::Input);
        let consumer: Arc<StreamConsumer<Rebalances>> = Arc::new(
            with_properties(
                client_config(&spec)
                    .set("group.id", &spec.group_id)
                    .set("enable.auto.commit", "true")
                    .set("enable.auto.offset.store", "false")
                    .set("auto.commit.interval.ms", COMMIT_INTERVAL_MS.to_string())
                    .set("statistics.interval.ms", STATISTICS_INTERVAL_MS.to_string())
                    .set("auto.offset.reset", "earliest")
                    .clone(),
                &spec,
            )
            .create_with_context(Rebalances::new(Arc::clone(&stats)))
            .map_err(|source| KafkaRunError::Client {
                graph: name.clone(),
                role: "consumer",
                source: Box::new(source),
            })?,
        );
        let (failing, failed) = mpsc::unbounded_channel();
        let producer = AnswerProducer::from_config_and_context(
            &with_properties(
                client_config(&spec).set("enable.idempotence", "true").set("linger.ms", "1").clone(),
                &spec,
            ),
            Acks::new(Arc::clone(&consumer), Arc::clone(&stats), failing),
        )
        .map_err(|source| KafkaRunError::Client {
            graph: name.clone(),
            role: "producer",
            source: Box::new(source),
        })?;
        let topics: Vec<&str> = spec.input_topics.iter().map(String::as_str).collect();
        consumer.subscribe(&topics).map_err(|source| KafkaRunError::Subscribe {
            graph: name.clone(),
            topics: spec.input_topics.clone(),
            source: Box::new(source),
        })?;
        Ok(KafkaLoop { graph, spec, consumer, producer: Arc::new(producer), failed, stats })
    }

    /// The loop's counters, live while it runs (for `/metrics`).
    pub fn stats(&self) -> Arc<KafkaStats> {
        Arc::clone(&self.stats)
    }

    /// Consumes into the graph and produces its answers until `shutdown` is requested;
    /// then stops consuming, waits up to `grace` for the answers in flight to be
    /// acknowledged, commits, and returns what it did.
    pub async fn run(self, shutdown: Shutdown, grace: Duration) -> KafkaSummary {
        run(self, shutdown, grace).await
    }
}

async fn run(kafka: KafkaLoop, shutdown: Shutdown, grace: Duration) -> KafkaSummary {
    let KafkaLoop { graph, spec, consumer, producer, failed, stats } = kafka;
    let name = graph.name().to_string();
    tracing::info!(graph = %name, topics = ?spec.input_topics, output = %spec.output_topic, "consuming from Kafka");
    let first = graph.current();
    let permits = Arc::new(Semaphore::new(first.handle().max_in_flight()));
    let retrying = tokio::spawn(answer::retry(Arc::clone(&producer), failed));
    let answerer = Arc::new(Answerer {
        // A reload that changes the outputs of a graph that answers Kafka is refused.
        outputs: first.handle().schema().outputs.clone(),
        spec,
        producer: Arc::clone(&producer),
        runtime: tokio::runtime::Handle::current(),
    });
    drop(first);
    let stopped = shutdown.requested();
    let mut shutdown = std::pin::pin!(stopped);

    // A permit is taken before a message is received, so that a full graph pauses
    // consumption; answering runs on tasks of its own meanwhile.
    let mut permit: Option<OwnedSemaphorePermit> = None;
    loop {
        tokio::select! {
            () = &mut shutdown => break,
            p = Arc::clone(&permits).acquire_owned(), if permit.is_none() => match p {
                Ok(p) => permit = Some(p),
                Err(_) => break,
            },
            message = consumer.recv(), if permit.is_some() => {
                let Some(first) = permit.take() else { continue };
                // This message, and whatever else is ready now (up to MESSAGES_PER_SUBMISSION,
                // each with its permit), go into the graph as one submission.
                let mut ready = Vec::new();
                let mut next = Some((message, first));
                while let Some((message, permit)) = next.take() {
                    match message {
                        Ok(m) => {
                            let origin = origin_of(&m, permit);
                            // Recorded before the next receive, which may run a rebalance.
                            consumer.context().tracker().begin(&origin.tp, origin.offset);
                            ready.push(origin);
                        }
                        Err(e) => tracing::warn!(graph = %name, error = %e, "Kafka consumer error"),
                    }
                    if ready.len() >= MESSAGES_PER_SUBMISSION {
                        break;
                    }
                    let Ok(permit) = Arc::clone(&permits).try_acquire_owned() else { break };
                    // A zero timeout polls the receive once: a message already fetched.
                    if let Ok(message) = tokio::time::timeout(Duration::ZERO, consumer.recv()).await {
                        next = Some((message, permit));
                    }
                }
                stats.add_consumed(ready.len() as u64);
                // Decoded and computed by one revision, the one serving now.
                let revision = graph.current();
                let mut decoded = Vec::with_capacity(ready.len());
                for mut origin in ready {
                    origin.revision = revision.number();
                    match decode(revision.handle(), answerer.spec.format, &origin.payload) {
                        Ok(rows) => decoded.push((origin, rows)),
                        Err(error) => answerer.answer(vec![(origin, Outcome::Undecodable(Arc::new(error)))]),
                    }
                }
                submit(revision.handle(), decoded, &answerer).await;
            }
        }
    }
    drop(permit);

    // Shutdown: no more messages; let the answers in flight land, then commit.
    let pending = || producer.context().awaited();
    tracing::info!(graph = %name, pending = pending(), "stopping the Kafka consumer");
    let deadline = tokio::time::Instant::now() + grace;
    while pending() > 0 {
        tokio::select! {
            () = tokio::time::sleep_until(deadline) => {
                tracing::warn!(graph = %name, pending = pending(), "grace period over; these messages will be consumed again");
                break;
            }
            () = producer.context().idle.notified() => {}
        }
    }
    retrying.abort();
    if let Err(e) = consumer.commit_consumer_state(CommitMode::Sync) {
        tracing::debug!(graph = %name, error = %e, "final commit");
    }
    KafkaSummary { consumed: stats.consumed(), answered: stats.delivered(), dead_lettered: stats.dead_lettered() }
}

/// The rows of a payload, each decoded or not; an error if the payload as a whole
/// does not fit the graph.
fn decode(graph: &GraphHandle, format: PayloadFormat, payload: &[u8]) -> Result<Vec<Decoded>, RowError> {
    decode_payload(&graph.schema().inputs, format, payload)
}

/// [`decode`] by input fields.
pub(crate) fn decode_payload(
    inputs: &[GraphField],
    format: PayloadFormat,
    payload: &[u8],
) -> Result<Vec<Decoded>, RowError> {
    match format {
        PayloadFormat::Json => Ok(vec![Ok(decode_row_payload(inputs, payload)?)]),
        PayloadFormat::Arrow => {
            let mut rows = Vec::new();
            for batch in crate::arrow::read_stream(payload)? {
                rows.extend(crate::arrow::decode_batch(inputs, &batch, rows.len() as u64)?);
            }
            Ok(rows)
        }
    }
}

/// Submits the decodable rows of `messages` as one batch; the answers of each message's
/// rows (in order, decoding errors in place) are answered by `answerer`.
async fn submit(graph: &GraphHandle, messages: Vec<(Origin, Vec<Decoded>)>, answerer: &Arc<Answerer>) {
    let mut rows = Vec::new();
    let mut pending = Vec::with_capacity(messages.len());
    for (origin, decoded) in messages {
        let results: Vec<Option<RowResult>> = decoded
            .into_iter()
            .map(|d| match d {
                Ok(values) => {
                    rows.push(values);
                    None
                }
                Err(e) => Some(Err(Arc::new(e))),
            })
            .collect();
        pending.push((origin, results));
    }
    if rows.is_empty() {
        deliver(pending, Vec::new(), answerer);
        return;
    }
    // The messages ride in the reply; if the submission is refused they come back.
    let held = Arc::new(std::sync::Mutex::new(Some(pending)));
    let (in_reply, answering) = (Arc::clone(&held), Arc::clone(answerer));
    let reply = Box::new(move |answered: Vec<RowResult>| {
        if let Some(pending) = in_reply.lock().unwrap_or_else(|p| p.into_inner()).take() {
            deliver(pending, answered, &answering);
        }
    });
    // Waiting for room under the admission bound (shared with HTTP) is the backpressure:
    // it blocks a blocking-pool thread, not the loop, and the loop awaits it, so
    // consumption pauses until the rows are admitted.
    let (graph, n) = (graph.clone(), rows.len());
    let submitted = tokio::task::spawn_blocking(move || graph.submit(Submission::rows(rows, reply))).await;
    let refusal = match submitted {
        Ok(Ok(_)) => return,
        Ok(Err(e)) => e.into_row_error(),
        Err(e) => RowError::engine_unavailable(format!("the submitting thread failed: {e}")),
    };
    let pending = held.lock().unwrap_or_else(|p| p.into_inner()).take();
    if let Some(pending) = pending {
        let refusal = Arc::new(refusal);
        deliver(pending, (0..n).map(|_| Err(Arc::clone(&refusal))).collect(), answerer);
    }
}

/// Fills each message's missing results from `answered`, in order, and answers them.
fn deliver(pending: Vec<(Origin, Vec<Option<RowResult>>)>, answered: Vec<RowResult>, answerer: &Arc<Answerer>) {
    let mut answered = answered.into_iter();
    let batch = pending
        .into_iter()
        .map(|(origin, results)| {
            let rows = results
                .into_iter()
                .map(|r| r.or_else(|| answered.next()).unwrap_or_else(|| Err(Arc::new(RowError::no_answer()))))
                .collect();
            (origin, Outcome::Rows(rows))
        })
        .collect();
    answerer.answer(batch);
}

/// The parts of a message that answering it needs.
fn origin_of(message: &rdkafka::message::BorrowedMessage<'_>, permit: OwnedSemaphorePermit) -> Origin {
    Origin {
        tp: (message.topic().to_string(), message.partition()),
        offset: message.offset(),
        key: message.key().map(<[u8]>::to_vec),
        payload: message.payload().map(<[u8]>::to_vec).unwrap_or_default(),
        headers: message
            .headers()
            .map(|h| h.iter().map(|h| (h.key.to_string(), h.value.map(<[u8]>::to_vec))).collect())
            .unwrap_or_default(),
        revision: 0,
        _permit: permit,
    }
}

#[cfg(test)]
mod tests {
    use rdkafka::consumer::BaseConsumer;
    use rdkafka::producer::BaseProducer;

    use super::*;

    /// librdkafka refuses, when a client is created, a setting its build lacks ("OpenSSL
    /// not available at build time", "Unsupported value"): these are what production
    /// brokers ask for.
    #[test]
    fn librdkafka_is_built_with_tls_sasl_and_every_codec() {
        let base = || {
            let mut c = ClientConfig::new();
            c.set("bootstrap.servers", "127.0.0.1:1");
            c
        };
        for (protocol, mechanism) in [
            ("ssl", None),
            ("sasl_ssl", Some("PLAIN")),
            ("sasl_ssl", Some("SCRAM-SHA-512")),
            ("sasl_plaintext", Some("SCRAM-SHA-256")),
        ] {
            let mut c = base();
            c.set("security.protocol", protocol).set("group.id", "g");
            if let Some(m) = mechanism {
                c.set("sasl.mechanism", m).set("sasl.username", "u").set("sasl.password", "p");
            }
            if let Err(e) = c.create::<BaseConsumer>() {
                panic!("security.protocol={protocol} sasl.mechanism={mechanism:?}: {e}");
            }
        }
        for codec in ["gzip", "snappy", "lz4", "zstd"] {
            if let Err(e) = base().set("compression.type", codec).create::<BaseProducer>() {
                panic!("compression.type={codec}: {e}");
            }
        }
    }
}
