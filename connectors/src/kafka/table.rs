//! A table's Kafka source (`tables.X.topic`): the topic is the table's changelog.
//!
//! - **Whole topic, every server.** Each weir process holds the whole table, so each reads
//!   every partition of the topic from the first offset the broker holds. No consumer
//!   group shares the partitions and nothing is committed: a restart rebuilds the table
//!   from the topic (after the snapshot, if the table has one). A compacted topic keeps
//!   that cheap.
//! - **Messages.** The key is the table key as text: the UTF-8 string for a `str` key,
//!   decimal digits for an `i64` key. The value is a JSON object with every value field
//!   of the table (the key field may be there too, and must then equal the message key);
//!   a null value (a tombstone) deletes the key. A message that cannot be decoded is
//!   refused: logged with topic, partition, offset and the field at fault, counted, and
//!   the table is left as it was.
//! - **Batches.** What is already fetched (up to [`CHANGES_PER_BATCH`] messages) enters
//!   the graph as one upsert batch ([`GraphHandle::upsert`]), so a row submitted after
//!   the batch went in sees it, and one submitted before does not.
//! - **Catching up, then following.** [`TableFeed::catch_up`] reads until every
//!   partition reports its end (librdkafka's end-of-partition event: a ListOffsets query
//!   is not used, as some Kafka-compatible brokers answer it wrongly), so a server's
//!   first request sees the table as of the topic when it started. [`TableFeed::follow`]
//!   then applies new messages as they come, until stopped. Partitions added to the
//!   topic later are not read until the next start.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::{Duration, Instant};

use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::KafkaError;
use rdkafka::message::Message;
use rdkafka::{Offset, TopicPartitionList};
use serde_json::Value as Json;
use weir_engine::spec::TableSpec;
use weir_engine::{GraphHandle, SubmitError};
use weir_operators::{RowError, Value};

use super::stats::TableFeedStats;
use super::{topic_partitions, KafkaRunError, Quiet};
use crate::json::{decode_table_values, decode_value};
use weir_operators::Shutdown;

/// Messages applied as one upsert batch, at most.
pub const CHANGES_PER_BATCH: usize = 1024;

/// What a table feed did.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct TableFeedSummary {
    /// Messages consumed.
    pub messages: u64,
    /// Upserts and deletes applied to the table.
    pub changes: u64,
    /// Messages refused (not decodable), the table unchanged by them.
    pub refused: u64,
}

/// One table's consumer, assigned every partition of its topic from the beginning.
pub struct TableFeed {
    graph: GraphHandle,
    table: TableSpec,
    topic: String,
    consumer: BaseConsumer<Quiet>,
    partitions: Vec<i32>,
    stats: Arc<TableFeedStats>,
}

impl TableFeed {
    /// The feed of `graph`'s table `table` (which must name a topic), from `brokers`
    /// with the librdkafka `properties` added. Fails if the topic does not exist or the
    /// brokers do not answer within `timeout`.
    pub fn connect(
        graph: GraphHandle,
        table: &str,
        brokers: &str,
        properties: &[(String, String)],
        timeout: Duration,
    ) -> Result<TableFeed, KafkaRunError> {
        let name = graph.name().to_string();
        let spec = graph.plan().tables.iter().find(|t| t.name == table).cloned();
        let fail = |topic: &str, reason: String| KafkaRunError::Table {
            graph: name.clone(),
            table: table.to_string(),
            topic: topic.to_string(),
            reason,
        };
        let Some((spec, topic)) = spec.and_then(|s| s.topic.clone().map(|t| (s, t))) else {
            return Err(fail("", "the graph has no such table following a topic".into()));
        };
        let mut config = ClientConfig::new();
        config
            .set("bootstrap.servers", brokers)
            .set("group.id", format!("weir-{name}.table.{table}"))
            .set("enable.auto.commit", "false")
            .set("enable.auto.offset.store", "false")
            .set("enable.partition.eof", "true");
        for (k, v) in properties {
            config.set(k, v);
        }
        let consumer: BaseConsumer<Quiet> = config.create_with_context(Quiet).map_err(|source| {
            KafkaRunError::Client { graph: name.clone(), role: "table consumer", source: Box::new(source) }
        })?;
        let partitions = topic_partitions(&consumer, &topic, timeout)
            .map_err(|e| fail(&topic, format!("cannot read the topic's metadata from {brokers}: {e}")))?;
        if partitions.is_empty() {
            return Err(fail(&topic, format!("no such topic on {brokers}")));
        }
        let mut assignment = TopicPartitionList::new();
        for &p in &partitions {
            assignment
                .add_partition_offset(&topic, p, Offset::Beginning)
                .map_err(|e| fail(&topic, format!("cannot assign partition {p}: {e}")))?;
        }
        consumer.assign(&assignment).map_err(|e| fail(&topic, format!("cannot assign the partitions: {e}")))?;
        let stats = TableFeedStats::new(graph.name(), &spec.name, &topic);
        Ok(TableFeed { graph, table: spec, topic, consumer, partitions, stats })
    }

    /// The table's name.
    pub fn table(&self) -> &str {
        &self.table.name
    }

    /// The topic it follows.
    pub fn topic(&self) -> &str {
        &self.topic
    }

    /// What it did so far.
    pub fn summary(&self) -> TableFeedSummary {
        let (messages, changes, refused) = self.stats.counts();
        TableFeedSummary { messages, changes, refused }
    }

    /// Its counters, live while it follows the topic (for `/metrics`).
    pub fn stats(&self) -> Arc<TableFeedStats> {
        Arc::clone(&self.stats)
    }

    /// Applies the topic up to the end of every partition. Fails if the broker sends
    /// nothing (no message, no end of a partition) for `stall`, or if the graph stops.
    /// Returns early, with what it applied so far, once `stop` is requested (checked
    /// every 100 ms).
    pub fn catch_up(&mut self, stall: Duration, stop: &Shutdown) -> Result<TableFeedSummary, KafkaRunError> {
        let mut ended = BTreeSet::new();
        let mut last = Instant::now();
        while ended.len() < self.partitions.len() && !stop.is_requested() {
            match self.pump(Duration::from_millis(100), &mut ended) {
                Ok(true) => last = Instant::now(),
                Ok(false) if last.elapsed() >= stall => {
                    let waiting: Vec<i32> = self.partitions.iter().filter(|p| !ended.contains(*p)).copied().collect();
                    return Err(self.error(format!(
                        "nothing came from partitions {waiting:?} for {:.0} s while catching up",
                        stall.as_secs_f64()
                    )));
                }
                Ok(false) => {}
                Err(e) => return Err(self.error(e)),
            }
        }
        Ok(self.summary())
    }

    /// Applies new messages as they come until `stop` is requested (checked every
    /// 100 ms) or the graph stops; returns what the feed did in all.
    pub fn follow(mut self, stop: &Shutdown) -> TableFeedSummary {
        let mut ended = BTreeSet::new();
        while !stop.is_requested() {
            if let Err(e) = self.pump(Duration::from_millis(100), &mut ended) {
                tracing::warn!(graph = %self.graph.name(), table = %self.table.name, topic = %self.topic, "{e}");
                break;
            }
        }
        self.summary()
    }

    /// Waits up to `wait` for a message, takes what else is already fetched (up to a
    /// batch), and applies it. Adds partitions that reported their end to `ended`.
    /// Returns whether anything came; fails if the graph stopped.
    fn pump(&mut self, wait: Duration, ended: &mut BTreeSet<i32>) -> Result<bool, String> {
        let mut changes = Vec::new();
        let mut came = false;
        let mut timeout = wait;
        while changes.len() < CHANGES_PER_BATCH {
            let Some(message) = self.consumer.poll(timeout) else { break };
            timeout = Duration::ZERO;
            came = true;
            let m = match message {
                Ok(m) => m,
                Err(KafkaError::PartitionEOF(p)) => {
                    ended.insert(p);
                    continue;
                }
                Err(e) => {
                    tracing::warn!(graph = %self.graph.name(), topic = %self.topic, error = %e, "Kafka table consumer error");
                    continue;
                }
            };
            self.stats.add(1, 0, 0);
            match decode(&self.table, m.key(), m.payload()) {
                Ok(change) => changes.push(change),
                Err(e) => {
                    self.stats.add(0, 0, 1);
                    tracing::warn!(
                        graph = %self.graph.name(),
                        table = %self.table.name,
                        topic = %self.topic,
                        partition = m.partition(),
                        offset = m.offset(),
                        field = e.field.as_deref().unwrap_or(""),
                        "table update refused: {}",
                        e.message
                    );
                }
            }
        }
        if !changes.is_empty() {
            match self.graph.upsert(&self.table.name, &changes) {
                Ok(n) => self.stats.add(0, n as u64, 0),
                // Decoding checked every type, so only a stopping graph refuses.
                Err(SubmitError::Invalid(e)) => return Err(format!("the graph refused an update batch: {e}")),
                Err(e) => return Err(format!("the graph stopped: {e}")),
            }
        }
        Ok(came)
    }

    fn error(&self, reason: String) -> KafkaRunError {
        KafkaRunError::Table {
            graph: self.graph.name().to_string(),
            table: self.table.name.clone(),
            topic: self.topic.clone(),
            reason,
        }
    }
}

/// One message's change: the key from the message key, the values from the JSON object
/// payload, or `None` (delete) for a null payload.
pub fn decode(
    table: &TableSpec,
    key: Option<&[u8]>,
    payload: Option<&[u8]>,
) -> Result<(Value, Option<Vec<Value>>), RowError> {
    let bad = |field: &str, message: String| {
        RowError::invalid_input(format!("tables.{}", table.name), message).with_field(field)
    };
    let Some(key) = key else {
        return Err(bad(&table.key, "the message has no key (the table key)".into()));
    };
    let text = std::str::from_utf8(key).map_err(|_| bad(&table.key, "the message key is not UTF-8 text".into()))?;
    let key = match table.key_type.dtype {
        weir_operators::DType::I64 => Value::I64(
            text.trim()
                .parse()
                .map_err(|_| bad(&table.key, format!("the message key '{text}' is not an i64 (decimal digits)")))?,
        ),
        _ => Value::Str(text.into()),
    };
    let Some(payload) = payload else { return Ok((key, None)) };
    let json: Json =
        serde_json::from_slice(payload).map_err(|e| bad("value", format!("the message value is not JSON: {e}")))?;
    let Json::Object(mut fields) = json else {
        return Err(bad("value", "the message value is not a JSON object of the value fields (null deletes)".into()));
    };
    if let Some(inner) = fields.remove(&table.key) {
        let inner = decode_value(&table.key_type, &inner).map_err(|m| bad(&table.key, m))?;
        if inner != key {
            return Err(bad(&table.key, format!("the value names key {inner:?}, the message key is {key:?}")));
        }
    }
    Ok((key, Some(decode_table_values(table, &fields, "")?)))
}
