//! `weir capture`: a range of a Kafka topic to a file `weir replay` takes.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use weir_engine::spec::PayloadFormat;
use weir_engine::{load_plan_with, Kernels};

use super::fail;
use super::serve::key_values;

/// `weir capture`'s flags.
#[derive(clap::Args)]
pub struct CaptureArgs {
    /// Graph file: its input fields say how to decode the messages.
    pub graph: PathBuf,
    /// Kafka brokers (`host:port,...`); default: the graph's `kafka.bootstrap_servers`.
    #[arg(long)]
    pub bootstrap: Option<String>,
    /// The topic.
    #[arg(long)]
    pub topic: String,
    /// First offsets, `PARTITION:OFFSET,...` (other partitions start at their first message).
    #[arg(long, value_delimiter = ',')]
    pub from: Vec<String>,
    /// End offsets, exclusive, `PARTITION:OFFSET,...` (other partitions end where
    /// the capture first reaches their end).
    #[arg(long, value_delimiter = ',')]
    pub to: Vec<String>,
    /// Output file (.arrow, .arrows or .parquet).
    #[arg(long)]
    pub output: PathBuf,
    /// Format of the output, overriding its extension: arrow, arrows or parquet.
    #[arg(long)]
    pub output_format: Option<String>,
    /// Payload format of the messages: json or arrow (default: the graph's
    /// `kafka.format`, else json).
    #[arg(long)]
    pub payload_format: Option<String>,
    /// A librdkafka property, `KEY=VALUE` (repeatable).
    #[arg(long = "kafka-property")]
    pub kafka_properties: Vec<String>,
    /// Give up when a partition delivers nothing for this long, in ms.
    #[arg(long, default_value_t = 10_000)]
    pub timeout_ms: u64,
}

/// Runs `weir capture`.
pub fn capture(args: CaptureArgs, kernels: &Kernels) -> ExitCode {
    let CaptureArgs {
        graph,
        bootstrap,
        topic,
        from,
        to,
        output,
        output_format,
        payload_format,
        kafka_properties,
        timeout_ms,
    } = args;
    use weir_connectors::kafka::capture::{capture, CaptureSpec};
    use weir_connectors::replay::FileFormat;
    let plan = match load_plan_with(&graph, kernels) {
        Ok(plan) => plan,
        Err(e) => return fail(1, &e),
    };
    let (from, to) = match (offsets("--from", &from), offsets("--to", &to)) {
        (Ok(f), Ok(t)) => (f, t),
        (Err(e), _) | (_, Err(e)) => return fail(1, &e),
    };
    let output_format = match output_format.map(|f| f.parse::<FileFormat>()) {
        Some(Ok(f)) => f,
        Some(Err(e)) => return fail(1, &format!("--output-format: {e}")),
        None => match FileFormat::of_path(&output) {
            Some(f) => f,
            None => {
                return fail(1, &weir_connectors::replay::ReplayError::UnknownFormat { path: output });
            }
        },
    };
    let format = match payload_format.as_deref() {
        None => plan.kafka.as_ref().map_or(PayloadFormat::Json, |k| k.format),
        Some("json") => PayloadFormat::Json,
        Some("arrow") => PayloadFormat::Arrow,
        Some(other) => return fail(1, &format!("--payload-format takes json or arrow, got '{other}'")),
    };
    let Some(bootstrap) = bootstrap.or_else(|| plan.kafka.as_ref().map(|k| k.bootstrap_servers.clone())) else {
        return fail(1, &format!("graph '{}' has no kafka: section; give --bootstrap", plan.name));
    };
    let mut properties: Vec<(String, String)> = plan.kafka.iter().flat_map(|k| k.properties.iter().cloned()).collect();
    match key_values(&kafka_properties) {
        Ok(more) => properties.extend(more),
        Err(e) => return fail(1, &e),
    }
    let spec = CaptureSpec {
        bootstrap_servers: bootstrap,
        properties,
        topic,
        from,
        to,
        format,
        output,
        output_format,
        timeout: Duration::from_millis(timeout_ms),
    };
    match capture(&weir_engine::GraphSchema::of(&plan).inputs, &spec) {
        Ok(s) => {
            eprintln!(
                "weir: capture: {} messages from {} partitions, {} rows ({} undecodable) to {}",
                s.messages,
                s.partitions,
                s.rows,
                s.undecodable,
                spec.output.display()
            );
            ExitCode::SUCCESS
        }
        Err(e) => fail(2, &e),
    }
}

/// `PARTITION:OFFSET` pairs.
fn offsets(flag: &str, pairs: &[String]) -> Result<std::collections::BTreeMap<i32, i64>, String> {
    pairs
        .iter()
        .map(|pair| {
            pair.split_once(':')
                .and_then(|(p, o)| Some((p.trim().parse().ok()?, o.trim().parse().ok()?)))
                .ok_or_else(|| format!("{flag} takes PARTITION:OFFSET pairs, got '{pair}'"))
        })
        .collect()
}
