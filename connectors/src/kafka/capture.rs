//! `weir capture`: a range of a Kafka topic, by offsets, exported to an Arrow IPC or
//! Parquet file that `weir replay` takes, so that production traffic can be replayed.
//!
//! Each partition is read from its `from` offset (default: its first) up to, not
//! including, its `to` offset (default: its end, as the capture first reaches it). Payloads are
//! decoded by the graph's input schema (a JSON object, or an Arrow IPC stream of many
//! rows, per message), and every row becomes one output row: the graph's input fields,
//! then `kafka_topic`, `kafka_partition`, `kafka_offset`, `kafka_key`, and, for a message
//! or row that could not be decoded, `capture_error` and the original `kafka_payload`
//! (with null input fields, so that a replay fails that row and reports it). Nothing in
//! the range is left out. Offsets are not committed: capturing changes nothing for the
//! topic's consumers.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use arrow_array::{ArrayRef, BinaryArray, Int32Array, Int64Array, RecordBatch, StringArray};
use arrow_schema::{DataType, Field, Schema, SchemaRef};
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::KafkaError;
use rdkafka::message::Message;
use rdkafka::{Offset, TopicPartitionList};
use weir_engine::spec::PayloadFormat;
use weir_engine::{GraphField, RowResult};

use super::{topic_partitions, Quiet};
use crate::replay::sink::Sink;
use crate::replay::{FileFormat, ReplayError};

/// Why a capture failed.
#[derive(Debug, thiserror::Error)]
pub enum CaptureError {
    /// The client could not be created or the broker did not answer.
    #[error("topic '{topic}': {what}: {reason}")]
    Kafka {
        /// The topic.
        topic: String,
        /// What was being done.
        what: &'static str,
        /// librdkafka's reason.
        reason: String,
    },
    /// The requested offsets are not in the partition.
    #[error("topic '{topic}', partition {partition}: {reason}")]
    Range {
        /// The topic.
        topic: String,
        /// The partition.
        partition: i32,
        /// What is wrong with the range.
        reason: String,
    },
    /// A partition stopped delivering before the end of its range.
    #[error("topic '{topic}', partition {partition}: no message for {waited:?} at offset {at}, before the end of the range ({})", to.map_or("unknown".to_string(), |t| t.to_string()))]
    Stalled {
        /// The topic.
        topic: String,
        /// The partition.
        partition: i32,
        /// The next offset expected.
        at: i64,
        /// The end of the range, if known.
        to: Option<i64>,
        /// How long the capture waited.
        waited: Duration,
    },
    /// The output file cannot be written.
    #[error(transparent)]
    Write(#[from] ReplayError),
}

/// What to capture.
#[derive(Clone, Debug)]
pub struct CaptureSpec {
    /// Kafka brokers, `host:port,...`.
    pub bootstrap_servers: String,
    /// librdkafka properties passed as they are (SASL, TLS, tuning).
    pub properties: Vec<(String, String)>,
    /// The topic.
    pub topic: String,
    /// First offset per partition (partitions not listed start at their first message).
    pub from: BTreeMap<i32, i64>,
    /// End offset (exclusive) per partition (others end where the capture first reaches
    /// their end).
    pub to: BTreeMap<i32, i64>,
    /// How messages are encoded.
    pub format: PayloadFormat,
    /// Where to write.
    pub output: PathBuf,
    /// In what format.
    pub output_format: FileFormat,
    /// How long to wait for a message before giving up on a partition.
    pub timeout: Duration,
}

/// What a capture wrote.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct CaptureSummary {
    /// Partitions read.
    pub partitions: usize,
    /// Messages in the range.
    pub messages: u64,
    /// Rows written.
    pub rows: u64,
    /// Rows that could not be decoded (written with `capture_error`).
    pub undecodable: u64,
}

/// Rows written per output batch.
const BATCH_ROWS: usize = 4096;

/// One captured row: its values (or why not), and where it came from.
struct Captured {
    row: RowResult,
    partition: i32,
    offset: i64,
    key: Option<Vec<u8>>,
    payload: Option<Vec<u8>>,
}

/// Captures `spec`'s range, decoding by `inputs` (the graph's input fields).
pub fn capture(inputs: &[GraphField], spec: &CaptureSpec) -> Result<CaptureSummary, CaptureError> {
    let topic = spec.topic.as_str();
    let kafka = |what: &'static str| {
        move |e: rdkafka::error::KafkaError| CaptureError::Kafka {
            topic: topic.to_string(),
            what,
            reason: e.to_string(),
        }
    };
    let mut config = ClientConfig::new();
    config
        .set("bootstrap.servers", &spec.bootstrap_servers)
        .set("group.id", "weir-capture")
        .set("enable.auto.commit", "false")
        .set("enable.auto.offset.store", "false")
        .set("enable.partition.eof", "true");
    for (k, v) in &spec.properties {
        config.set(k, v);
    }
    let consumer: BaseConsumer<Quiet> =
        config.create_with_context(Quiet).map_err(kafka("cannot create the consumer"))?;
    let partitions = topic_partitions(&consumer, topic, spec.timeout).map_err(kafka("cannot read the metadata"))?;
    if partitions.is_empty() {
        return Err(CaptureError::Range { topic: topic.into(), partition: -1, reason: "no such topic".into() });
    }
    for p in spec.from.keys().chain(spec.to.keys()) {
        if !partitions.contains(p) {
            return Err(CaptureError::Range {
                topic: topic.into(),
                partition: *p,
                reason: format!("no such partition (the topic has {partitions:?})"),
            });
        }
    }
    // Each partition's range. Without `--to`, a partition ends where the capture first
    // reaches its end (librdkafka's end-of-partition event, from the fetch response's
    // high watermark): a ListOffsets query is not used, as some Kafka-compatible brokers
    // (tansu) answer it wrongly.
    let mut next = BTreeMap::new();
    for &p in &partitions {
        let (low, _) =
            consumer.fetch_watermarks(topic, p, spec.timeout).map_err(kafka("cannot read the partition offsets"))?;
        let start = spec.from.get(&p).copied().unwrap_or(low);
        if start < low {
            let reason = format!("--from {start} is before the first offset held, {low}");
            return Err(CaptureError::Range { topic: topic.into(), partition: p, reason });
        }
        next.insert(p, start);
    }
    let mut tpl = TopicPartitionList::new();
    for (&p, &start) in &next {
        tpl.add_partition_offset(topic, p, Offset::Offset(start)).map_err(kafka("cannot assign"))?;
    }
    consumer.assign(&tpl).map_err(kafka("cannot assign"))?;
    // The end of each range, once known.
    let mut to: BTreeMap<i32, Option<i64>> = partitions.iter().map(|&p| (p, spec.to.get(&p).copied())).collect();

    let schema = schema(inputs);
    let mut sink = Sink::create(&spec.output, spec.output_format, &schema)?;
    let mut summary = CaptureSummary {
        partitions: next.iter().filter(|(p, at)| to[*p].is_none_or(|end| **at < end)).count(),
        ..CaptureSummary::default()
    };
    let mut rows: Vec<Captured> = Vec::with_capacity(BATCH_ROWS);
    let mut last_message = Instant::now();
    loop {
        let owing = |to: &BTreeMap<i32, Option<i64>>, p: &i32, at: &i64| to[p].is_none_or(|end| *at < end);
        if !next.iter().any(|(p, at)| owing(&to, p, at)) {
            break;
        }
        let Some(message) = consumer.poll(Duration::from_millis(100)) else {
            if last_message.elapsed() >= spec.timeout {
                let (&p, &at) = next.iter().find(|(p, at)| owing(&to, p, at)).expect("a partition is owing");
                return Err(CaptureError::Stalled {
                    topic: topic.into(),
                    partition: p,
                    at,
                    to: to[&p],
                    waited: spec.timeout,
                });
            }
            continue;
        };
        if let Err(KafkaError::PartitionEOF(p)) = message {
            let at = next.get(&p).copied().unwrap_or_default();
            match to.get(&p).copied().flatten() {
                None => {
                    to.insert(p, Some(at));
                }
                Some(end) if at < end => {
                    let reason = format!("--to {end} is past the end of the partition, {at}");
                    return Err(CaptureError::Range { topic: topic.into(), partition: p, reason });
                }
                Some(_) => {}
            }
            continue;
        }
        let message = message.map_err(kafka("cannot consume"))?;
        last_message = Instant::now();
        let (p, offset) = (message.partition(), message.offset());
        let Some(&end) = to.get(&p) else { continue };
        if end.is_some_and(|end| offset >= end) || offset < next[&p] {
            continue;
        }
        next.insert(p, offset + 1);
        summary.messages += 1;
        let payload = message.payload().unwrap_or_default();
        let key = message.key().map(<[u8]>::to_vec);
        let decoded = super::decode_payload(inputs, spec.format, payload);
        let mut push = |row: RowResult| {
            let failed = row.is_err();
            rows.push(Captured {
                row,
                partition: p,
                offset,
                key: key.clone(),
                payload: failed.then(|| payload.to_vec()),
            });
        };
        match decoded {
            Ok(decoded) => {
                for d in decoded {
                    push(d.map_err(Arc::new));
                }
            }
            Err(e) => push(Err(Arc::new(e))),
        }
        if rows.len() >= BATCH_ROWS {
            write(&mut sink, &spec.output, &schema, inputs, topic, &mut rows, &mut summary)?;
        }
    }
    write(&mut sink, &spec.output, &schema, inputs, topic, &mut rows, &mut summary)?;
    sink.finish()?;
    Ok(summary)
}

/// The capture file's schema.
fn schema(inputs: &[GraphField]) -> SchemaRef {
    let mut fields: Vec<Field> =
        inputs.iter().map(|f| Field::new(&f.name, crate::arrow::arrow_type(&f.ty), true)).collect();
    fields.extend([
        Field::new("kafka_topic", DataType::Utf8, false),
        Field::new("kafka_partition", DataType::Int32, false),
        Field::new("kafka_offset", DataType::Int64, false),
        Field::new("kafka_key", DataType::Binary, true),
        Field::new("capture_error", DataType::Utf8, true),
        Field::new("kafka_payload", DataType::Binary, true),
    ]);
    Arc::new(Schema::new(fields))
}

fn write(
    sink: &mut Sink,
    path: &Path,
    schema: &SchemaRef,
    inputs: &[GraphField],
    topic: &str,
    rows: &mut Vec<Captured>,
    summary: &mut CaptureSummary,
) -> Result<(), CaptureError> {
    if rows.is_empty() {
        return Ok(());
    }
    let broken = |reason: String| CaptureError::Write(ReplayError::Write { path: path.to_path_buf(), reason });
    let values: Vec<RowResult> = rows.iter().map(|r| r.row.clone()).collect();
    let (_, mut columns) = crate::arrow::output_columns(inputs, &values).map_err(broken)?;
    let n = rows.len();
    columns.extend::<[ArrayRef; 6]>([
        Arc::new(StringArray::from_iter_values(std::iter::repeat_n(topic, n))),
        Arc::new(Int32Array::from_iter_values(rows.iter().map(|r| r.partition))),
        Arc::new(Int64Array::from_iter_values(rows.iter().map(|r| r.offset))),
        Arc::new(BinaryArray::from_iter(rows.iter().map(|r| r.key.as_deref()))),
        Arc::new(StringArray::from_iter(rows.iter().map(|r| r.row.as_ref().err().map(|e| e.to_string())))),
        Arc::new(BinaryArray::from_iter(rows.iter().map(|r| r.payload.as_deref()))),
    ]);
    let batch = RecordBatch::try_new(Arc::clone(schema), columns).map_err(|e| broken(e.to_string()))?;
    sink.write(&batch)?;
    summary.rows += n as u64;
    summary.undecodable += rows.iter().filter(|r| r.row.is_err()).count() as u64;
    rows.clear();
    Ok(())
}
