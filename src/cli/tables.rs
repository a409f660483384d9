//! The tables of the graphs a command starts: filled before any row (from their
//! snapshots, then their topics to the end of every partition), then followed by a
//! server.

use std::process::ExitCode;
use std::time::Duration;

use weir_connectors::kafka::table::TableFeed;
use weir_engine::GraphHandle;
use weir_operators::Shutdown;

use super::{fail, replay};

/// How long a table's brokers may stay silent while a command starts.
const TABLE_TIMEOUT: Duration = Duration::from_secs(30);

/// Why the tables could not be filled, and the exit code a command stops with.
#[derive(Debug)]
pub struct TableError {
    /// The exit code.
    pub code: u8,
    /// What went wrong, naming the graph and the table.
    pub message: String,
}

impl std::fmt::Display for TableError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.message)
    }
}

/// [`fill_tables`] of every graph of `engine`, for a command: on an error, it is printed
/// and the exit code to stop with returned.
pub fn load_tables(
    engine: &weir_engine::Engine,
    bootstrap: Option<&str>,
    stop: &Shutdown,
) -> Result<Vec<TableFeed>, ExitCode> {
    fill_tables(engine.graphs(), bootstrap, stop).map_err(|e| fail(e.code, &e.message))
}

/// Fills the tables of `graphs` before any row: from their snapshots, then from their
/// topics up to the end of every partition, saying on stderr what was loaded. Returns
/// the feeds of tables that follow a topic, for a server to keep following (`weir run`
/// and `replay` drop them: a batch job sees the table as of its start). The brokers are
/// `bootstrap` (`--kafka-bootstrap`) or the graph's `kafka.bootstrap_servers`. Once
/// `stop` is requested it loads nothing more and returns what it has (the caller checks
/// `stop`).
pub fn fill_tables(
    graphs: &[GraphHandle],
    bootstrap: Option<&str>,
    stop: &Shutdown,
) -> Result<Vec<TableFeed>, TableError> {
    let mut feeds = Vec::new();
    for graph in graphs {
        if stop.is_requested() {
            break;
        }
        match weir_connectors::snapshot::load_snapshots(graph) {
            Ok(loaded) => {
                for (table, rows) in loaded {
                    eprintln!("weir: graph '{}': table '{table}': {rows} rows from its snapshot", graph.name());
                }
            }
            Err(e) => return Err(TableError { code: replay::replay_exit_code(&e), message: e.to_string() }),
        }
        let plan = graph.plan();
        for table in plan.tables.iter().filter(|t| t.topic.is_some()) {
            if stop.is_requested() {
                break;
            }
            let kafka = plan.kafka.as_ref();
            let Some(brokers) = bootstrap.or(kafka.map(|k| k.bootstrap_servers.as_str())) else {
                return Err(TableError {
                    code: 1,
                    message: format!(
                        "graph '{}': table '{}' follows a Kafka topic, but no brokers are named: give the graph a kafka: section or --kafka-bootstrap",
                        graph.name(),
                        table.name
                    ),
                });
            };
            let properties = kafka.map(|k| k.properties.as_slice()).unwrap_or_default();
            let kafka_error = |e: weir_connectors::kafka::KafkaRunError| TableError { code: 2, message: e.to_string() };
            let mut feed = TableFeed::connect(graph.clone(), &table.name, brokers, properties, TABLE_TIMEOUT)
                .map_err(kafka_error)?;
            eprintln!(
                "weir: graph '{}': table '{}': catching up on topic '{}'",
                graph.name(),
                table.name,
                feed.topic()
            );
            let done = feed.catch_up(TABLE_TIMEOUT, stop).map_err(kafka_error)?;
            eprintln!(
                "weir: graph '{}': table '{}': {} changes from topic '{}'{}",
                graph.name(),
                table.name,
                done.changes,
                feed.topic(),
                if done.refused > 0 {
                    format!(" ({} messages refused, see the log)", done.refused)
                } else {
                    String::new()
                }
            );
            feeds.push(feed);
        }
    }
    Ok(feeds)
}

/// Follows each of `feeds` on a thread of its own until `stop` is requested; returns
/// the threads, each with its table's and topic's names, to be joined for their
/// summaries.
pub fn follow_tables(
    feeds: Vec<TableFeed>,
    stop: &Shutdown,
) -> Vec<((String, String), std::thread::JoinHandle<weir_connectors::kafka::table::TableFeedSummary>)> {
    feeds
        .into_iter()
        .map(|feed| {
            let stop = stop.clone();
            let name = (feed.table().to_string(), feed.topic().to_string());
            (name, std::thread::spawn(move || feed.follow(&stop)))
        })
        .collect()
}
