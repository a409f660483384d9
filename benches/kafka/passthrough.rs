//! The baseline of the Kafka benchmark: a plain at-least-once rdkafka app that copies
//! each message of the input topic to the output topic, with its key, unchanged payload
//! and the `weir-source-*` headers weir adds. A partition's offset is stored once every
//! earlier message's copy is acknowledged, with the same [`OffsetTracker`] weir uses,
//! and at most [`IN_FLIGHT`] messages are out at once.

use std::sync::Arc;
use std::time::Duration;

use rdkafka::consumer::{CommitMode, Consumer, StreamConsumer};
use rdkafka::message::{Header, Message, OwnedHeaders};
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::util::Timeout;
use rdkafka::{Offset, TopicPartitionList};
use tokio::sync::{mpsc, oneshot, OwnedSemaphorePermit, Semaphore};
use weir_connectors::kafka::offsets::OffsetTracker;

/// The bound on messages in flight: weir's default `serving.max_in_flight`.
const IN_FLIGHT: usize = 8192;

/// A consumed message on its way to the output topic.
struct InFlight {
    partition: i32,
    offset: i64,
    key: Option<Vec<u8>>,
    payload: Vec<u8>,
    /// Held until the output is acknowledged.
    _permit: OwnedSemaphorePermit,
}

/// Produces one message until the broker acknowledges it, then reports it finished.
async fn forward(
    producer: FutureProducer,
    topics: Arc<(String, String)>,
    m: InFlight,
    acks: mpsc::UnboundedSender<(i32, i64)>,
) {
    let (input, output) = &*topics;
    let (partition, offset) = (m.partition.to_string(), m.offset.to_string());
    let headers = OwnedHeaders::new()
        .insert(Header { key: "weir-source-topic", value: Some(input.as_bytes()) })
        .insert(Header { key: "weir-source-partition", value: Some(partition.as_bytes()) })
        .insert(Header { key: "weir-source-offset", value: Some(offset.as_bytes()) });
    loop {
        let mut record = FutureRecord::to(output).payload(&m.payload).headers(headers.clone());
        if let Some(k) = &m.key {
            record = record.key(k);
        }
        match producer.send(record, Timeout::Never).await {
            Ok(_) => break,
            Err((e, _)) => {
                eprintln!("pass-through: delivery failed ({e}); retrying");
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        }
    }
    let _ = acks.send((m.partition, m.offset));
}

fn store(consumer: &StreamConsumer, tracker: &mut OffsetTracker, topic: &str, partition: i32, offset: i64) {
    if let Some(position) = tracker.finish(&(topic.to_string(), partition), offset) {
        let mut tpl = TopicPartitionList::new();
        if tpl.add_partition_offset(topic, partition, Offset::Offset(position)).is_ok() {
            // Fails only if the partition was revoked meanwhile.
            let _ = consumer.store_offsets(&tpl);
        }
    }
}

/// The pass-through's loop: consume, forward, store offsets, until `stop`; then let
/// the messages in flight land and commit. Returns the messages forwarded.
pub async fn run(
    consumer: StreamConsumer,
    producer: FutureProducer,
    topics: Arc<(String, String)>,
    mut stop: oneshot::Receiver<()>,
) -> u64 {
    let permits = Arc::new(Semaphore::new(IN_FLIGHT));
    let (acks_tx, mut acks) = mpsc::unbounded_channel::<(i32, i64)>();
    let mut tracker = OffsetTracker::default();
    let mut forwarded = 0;
    let mut permit: Option<OwnedSemaphorePermit> = None;
    loop {
        tokio::select! {
            _ = &mut stop => break,
            p = Arc::clone(&permits).acquire_owned(), if permit.is_none() => {
                permit = Some(p.expect("the semaphore is never closed"));
            }
            message = consumer.recv(), if permit.is_some() => {
                let Ok(message) = message else { continue };
                let Some(permit) = permit.take() else { continue };
                let m = InFlight {
                    partition: message.partition(),
                    offset: message.offset(),
                    key: message.key().map(<[u8]>::to_vec),
                    payload: message.payload().map(<[u8]>::to_vec).unwrap_or_default(),
                    _permit: permit,
                };
                drop(message);
                tracker.begin(&(topics.0.clone(), m.partition), m.offset);
                forwarded += 1;
                tokio::spawn(forward(producer.clone(), Arc::clone(&topics), m, acks_tx.clone()));
            }
            Some((partition, offset)) = acks.recv() => store(&consumer, &mut tracker, &topics.0, partition, offset),
        }
    }
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while tracker.pending() > 0 {
        tokio::select! {
            () = tokio::time::sleep_until(deadline) => break,
            Some((partition, offset)) = acks.recv() => store(&consumer, &mut tracker, &topics.0, partition, offset),
        }
    }
    let _ = consumer.commit_consumer_state(CommitMode::Sync);
    forwarded
}
