//! The longer `weir` commands, one per file: `replay`, `capture` and `serve`; each has
//! its flags (a clap `Args` struct) and its handler. `signals` stops a server cleanly.

pub mod capture;
pub mod replay;
pub mod serve;
pub mod signals;

use std::process::ExitCode;

use weir_connectors::kafka::table::TableFeed;
use weir_operators::Shutdown;

/// Prints `error: E` and returns exit code `code`.
pub fn fail(code: u8, e: &dyn std::fmt::Display) -> ExitCode {
    eprintln!("error: {e}");
    ExitCode::from(code)
}

/// Fills the tables of every graph of `engine` before any row: from their snapshots,
/// then from their topics up to the end of every partition, saying on stderr what was
/// loaded. Returns the feeds of tables that follow a topic, for a server to keep
/// following (`weir run` and `replay` drop them: a batch job sees the table as of its
/// start). The brokers are `bootstrap` (`--kafka-bootstrap`) or the graph's
/// `kafka.bootstrap_servers`. On an error, the exit code to stop with. Once `stop` is
/// requested it loads nothing more and returns what it has (the caller checks `stop`).
pub fn load_tables(
    engine: &weir_engine::Engine,
    bootstrap: Option<&str>,
    stop: &Shutdown,
) -> Result<Vec<TableFeed>, ExitCode> {
    let mut feeds = Vec::new();
    for graph in engine.graphs() {
        if stop.is_requested() {
            break;
        }
        match weir_connectors::snapshot::load_snapshots(graph) {
            Ok(loaded) => {
                for (table, rows) in loaded {
                    eprintln!("weir: graph '{}': table '{table}': {rows} rows from its snapshot", graph.name());
                }
            }
            Err(e) => return Err(fail(replay::replay_exit_code(&e), &e)),
        }
        let plan = graph.plan();
        for table in plan.tables.iter().filter(|t| t.topic.is_some()) {
            if stop.is_requested() {
                break;
            }
            let kafka = plan.kafka.as_ref();
            let Some(brokers) = bootstrap.or(kafka.map(|k| k.bootstrap_servers.as_str())) else {
                return Err(fail(
                    1,
                    &format!(
                        "graph '{}': table '{}' follows a Kafka topic, but no brokers are named: give the graph a kafka: section or --kafka-bootstrap",
                        graph.name(),
                        table.name
                    ),
                ));
            };
            let properties = kafka.map(|k| k.properties.as_slice()).unwrap_or_default();
            let mut feed = TableFeed::connect(graph.clone(), &table.name, brokers, properties, TABLE_TIMEOUT)
                .map_err(|e| fail(2, &e))?;
            eprintln!(
                "weir: graph '{}': table '{}': catching up on topic '{}'",
                graph.name(),
                table.name,
                feed.topic()
            );
            let done = feed.catch_up(TABLE_TIMEOUT, stop).map_err(|e| fail(2, &e))?;
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

/// How long a table's brokers may stay silent while a command starts.
const TABLE_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(30);
