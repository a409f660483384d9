//! What the Kafka clients of a server have done, read by `/metrics` while they run
//! ([`KafkaMetrics`]) and by the summary `weir serve` prints when it stops.
//!
//! - [`KafkaStats`], one per consumer group member (a graph's input loop, or its
//!   feedback loop): messages consumed, delivered (answers produced to the output topic;
//!   feedback rows sent to the learner) and dead-lettered, and for each partition
//!   assigned to this process its committed offset and how far that lags behind the
//!   partition's end.
//! - [`TableFeedStats`], one per table that follows a topic: messages read, changes
//!   applied, messages refused.
//!
//! Counters move as the clients work. The partitions come from librdkafka's statistics
//! (every [`super::STATISTICS_INTERVAL_MS`] unless the graph's properties set
//! `statistics.interval.ms`), so they are at most that old, and a partition revoked
//! leaves the list at the next statistics.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};

use crate::http::exposition::{MetricFamilies, MetricType, MetricsText};

/// Which consumer of a graph.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Role {
    /// The input topics: messages in, answers out.
    Input,
    /// The feedback topic of a learning node.
    Feedback,
}

impl Role {
    /// `input` or `feedback`, as the `consumer` label says.
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Input => "input",
            Role::Feedback => "feedback",
        }
    }
}

/// One assigned partition, as of the last statistics.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PartitionStats {
    /// The topic.
    pub topic: String,
    /// The partition.
    pub partition: i32,
    /// The group's committed offset (the next message a restart consumes), if any.
    pub committed: Option<i64>,
    /// One past the partition's last message (the high watermark), if known yet.
    pub end: Option<i64>,
}

impl PartitionStats {
    /// Messages after the committed offset: what a restart would consume again or anew.
    pub fn lag(&self) -> Option<i64> {
        Some((self.end? - self.committed?).max(0))
    }
}

/// The counters of one consumer of a graph.
#[derive(Debug)]
pub struct KafkaStats {
    graph: String,
    role: Role,
    consumed: AtomicU64,
    delivered: AtomicU64,
    dead_lettered: AtomicU64,
    partitions: Mutex<Vec<PartitionStats>>,
}

impl KafkaStats {
    /// Counters at zero for `graph`'s `role` consumer.
    pub fn new(graph: &str, role: Role) -> Arc<KafkaStats> {
        Arc::new(KafkaStats {
            graph: graph.to_string(),
            role,
            consumed: AtomicU64::new(0),
            delivered: AtomicU64::new(0),
            dead_lettered: AtomicU64::new(0),
            partitions: Mutex::new(Vec::new()),
        })
    }

    /// The graph.
    pub fn graph(&self) -> &str {
        &self.graph
    }

    /// Which of the graph's consumers.
    pub fn role(&self) -> Role {
        self.role
    }

    /// Messages consumed so far.
    pub fn consumed(&self) -> u64 {
        self.consumed.load(Ordering::Relaxed)
    }

    /// Answers produced to the output topic (input) or feedback rows sent to the
    /// learner (feedback), so far.
    pub fn delivered(&self) -> u64 {
        self.delivered.load(Ordering::Relaxed)
    }

    /// Messages sent to the dead-letter topic so far.
    pub fn dead_lettered(&self) -> u64 {
        self.dead_lettered.load(Ordering::Relaxed)
    }

    /// The assigned partitions, by topic and partition, as of the last statistics.
    pub fn partitions(&self) -> Vec<PartitionStats> {
        self.partitions.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    pub(crate) fn add_consumed(&self, n: u64) {
        self.consumed.fetch_add(n, Ordering::Relaxed);
    }

    pub(crate) fn add_delivered(&self, n: u64) {
        self.delivered.fetch_add(n, Ordering::Relaxed);
    }

    pub(crate) fn add_dead_lettered(&self, n: u64) {
        self.dead_lettered.fetch_add(n, Ordering::Relaxed);
    }

    /// Takes the assigned partitions from librdkafka's statistics.
    pub(crate) fn observe(&self, statistics: &rdkafka::Statistics) {
        let known = |o: i64| (o >= 0).then_some(o);
        let mut partitions: Vec<PartitionStats> = statistics
            .topics
            .values()
            .flat_map(|t| {
                // Partition -1 is librdkafka's own queue of unassigned messages.
                t.partitions.values().filter(|p| p.partition >= 0 && p.desired).map(|p| PartitionStats {
                    topic: t.topic.clone(),
                    partition: p.partition,
                    committed: known(p.committed_offset),
                    end: known(p.hi_offset),
                })
            })
            .collect();
        partitions.sort_by(|a, b| (&a.topic, a.partition).cmp(&(&b.topic, b.partition)));
        *self.partitions.lock().unwrap_or_else(|p| p.into_inner()) = partitions;
    }
}

/// The counters of one table's topic feed.
#[derive(Debug)]
pub struct TableFeedStats {
    graph: String,
    table: String,
    topic: String,
    messages: AtomicU64,
    changes: AtomicU64,
    refused: AtomicU64,
}

impl TableFeedStats {
    /// The graph whose table this feed fills.
    pub fn graph(&self) -> &str {
        &self.graph
    }

    /// Counters at zero for `graph`'s `table`, fed by `topic`.
    pub fn new(graph: &str, table: &str, topic: &str) -> Arc<TableFeedStats> {
        Arc::new(TableFeedStats {
            graph: graph.to_string(),
            table: table.to_string(),
            topic: topic.to_string(),
            messages: AtomicU64::new(0),
            changes: AtomicU64::new(0),
            refused: AtomicU64::new(0),
        })
    }

    /// Messages read, changes applied and messages refused, so far.
    pub fn counts(&self) -> (u64, u64, u64) {
        (
            self.messages.load(Ordering::Relaxed),
            self.changes.load(Ordering::Relaxed),
            self.refused.load(Ordering::Relaxed),
        )
    }

    pub(crate) fn add(&self, messages: u64, changes: u64, refused: u64) {
        self.messages.fetch_add(messages, Ordering::Relaxed);
        self.changes.fetch_add(changes, Ordering::Relaxed);
        self.refused.fetch_add(refused, Ordering::Relaxed);
    }
}

/// Every Kafka client's counters of a server, as `/metrics` families
/// (`weir_kafka_*`, `weir_table_feed_*`); register it with
/// [`crate::http::AppState::add_metrics`]. With none, it writes nothing.
#[derive(Debug, Default)]
pub struct KafkaMetrics {
    consumers: Vec<Arc<KafkaStats>>,
    /// The table feeds of the revisions serving now (a reload replaces a graph's).
    feeds: RwLock<Vec<Arc<TableFeedStats>>>,
}

impl KafkaMetrics {
    /// The families of `consumers` and `feeds`.
    pub fn new(consumers: Vec<Arc<KafkaStats>>, feeds: Vec<Arc<TableFeedStats>>) -> Self {
        KafkaMetrics { consumers, feeds: RwLock::new(feeds) }
    }

    /// Replaces `graph`'s table feeds with `feeds` (those of its new revision, after a
    /// reload; their counters start again at zero, as after a restart).
    pub fn replace_feeds(&self, graph: &str, feeds: Vec<Arc<TableFeedStats>>) {
        let mut all = self.feeds.write().unwrap_or_else(|p| p.into_inner());
        all.retain(|f| f.graph != graph);
        all.extend(feeds);
    }
}

impl MetricFamilies for KafkaMetrics {
    fn render(&self, text: &mut MetricsText) {
        type Count = fn(&KafkaStats) -> u64;
        let counters: [(&str, &str, Option<Role>, Count); 4] = [
            (
                "weir_kafka_consumed_total",
                "Kafka messages consumed, by graph and consumer.",
                None,
                KafkaStats::consumed,
            ),
            (
                "weir_kafka_answered_total",
                "Answers produced to the output topic and acknowledged by the broker.",
                Some(Role::Input),
                KafkaStats::delivered,
            ),
            (
                "weir_kafka_feedback_rows_total",
                "Feedback rows from the feedback topic sent to the learning node.",
                Some(Role::Feedback),
                KafkaStats::delivered,
            ),
            (
                "weir_kafka_dead_lettered_total",
                "Kafka messages sent to the dead-letter topic, by graph and consumer.",
                None,
                KafkaStats::dead_lettered,
            ),
        ];
        for (name, help, only, count) in counters {
            let stats: Vec<&Arc<KafkaStats>> =
                self.consumers.iter().filter(|s| only.is_none_or(|r| s.role == r)).collect();
            if stats.is_empty() {
                continue;
            }
            text.family(name, MetricType::Counter, help);
            for s in stats {
                text.sample(name, &[("graph", &s.graph), ("consumer", s.role.as_str())], count(s));
            }
        }
        let partitions: Vec<(&KafkaStats, PartitionStats)> =
            self.consumers.iter().flat_map(|s| s.partitions().into_iter().map(move |p| (&**s, p))).collect();
        type Gauge = fn(&PartitionStats) -> Option<i64>;
        let gauges: [(&str, &str, Gauge); 2] = [
            (
                "weir_kafka_committed_offset",
                "The group's committed offset of each partition assigned to this process.",
                |p| p.committed,
            ),
            ("weir_kafka_lag", "Messages of each assigned partition after its committed offset.", PartitionStats::lag),
        ];
        for (name, help, value) in gauges {
            if partitions.iter().all(|(_, p)| value(p).is_none()) {
                continue;
            }
            text.family(name, MetricType::Gauge, help);
            for (s, p) in &partitions {
                if let Some(v) = value(p) {
                    let partition = p.partition.to_string();
                    let labels = [
                        ("graph", s.graph.as_str()),
                        ("consumer", s.role.as_str()),
                        ("topic", p.topic.as_str()),
                        ("partition", partition.as_str()),
                    ];
                    text.sample(name, &labels, v);
                }
            }
        }
        let all = self.feeds.read().unwrap_or_else(|p| p.into_inner());
        if all.is_empty() {
            return;
        }
        type FeedCount = fn((u64, u64, u64)) -> u64;
        let feeds: [(&str, &str, FeedCount); 3] = [
            ("weir_table_feed_messages_total", "Messages read from a table's topic.", |c| c.0),
            ("weir_table_feed_changes_total", "Upserts and deletes a table's topic applied.", |c| c.1),
            ("weir_table_feed_refused_total", "Messages of a table's topic refused (not decodable).", |c| c.2),
        ];
        for (name, help, count) in feeds {
            text.family(name, MetricType::Counter, help);
            for f in all.iter() {
                let labels = [("graph", f.graph.as_str()), ("table", f.table.as_str()), ("topic", f.topic.as_str())];
                text.sample(name, &labels, count(f.counts()));
            }
        }
    }
}
