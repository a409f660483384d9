//! `weir`: serve graphs of ML models as a continuous timely dataflow.
//!
//! - `weir check GRAPH.yaml...`: validate and print the compiled plan;
//! - `weir graph GRAPH.yaml --format dot|mermaid`: draw it;
//! - `weir run GRAPH.yaml --input rows.jsonl [--output out.jsonl]`: JSON lines in,
//!   JSON lines out, in order;
//! - `weir replay GRAPH.yaml --input PATH... --output PATH`: Arrow IPC or Parquet files
//!   through a graph, one output row per input row, failed rows in an errors file;
//! - `weir capture GRAPH.yaml --topic T [--from P:O,...] [--to P:O,...] --output PATH`:
//!   export a range of a Kafka topic to a file `weir replay` takes;
//! - `weir serve GRAPH.yaml... [--host H] [--port P] [--workers N]`: serve every graph
//!   over HTTP until SIGINT or SIGTERM.
//!
//! Exit codes: 0 on success (also when some rows failed: they are error lines or rows of
//! the errors file), 1 when a graph is invalid or the input does not fit it, 2 on an I/O
//! error.

use std::fs::File;
use std::io::{self, BufWriter, Write};
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use clap::{Parser, Subcommand, ValueEnum};
use weir_connectors::http::{self, AppState, ServerConfig};
use weir_connectors::kafka::KafkaLoop;
use weir_engine::spec::{KafkaSpec, PayloadFormat};
use weir_engine::{load_plan, render, Engine, EngineConfig};

#[derive(Parser)]
#[command(name = "weir", version, about = "Serve graphs of ML models as a continuous timely dataflow")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Validate graphs and print their compiled plans.
    Check {
        /// Graph files.
        #[arg(required = true)]
        graphs: Vec<PathBuf>,
    },
    /// Draw a graph.
    Graph {
        /// Graph file.
        graph: PathBuf,
        /// Output format.
        #[arg(long, value_enum, default_value_t = Format::Mermaid)]
        format: Format,
    },
    /// Run JSON lines through a graph: one output line per input line, in order.
    Run {
        /// Graph file.
        graph: PathBuf,
        /// JSON lines input (`-` for stdin).
        #[arg(long)]
        input: PathBuf,
        /// Output file (stdout if omitted).
        #[arg(long)]
        output: Option<PathBuf>,
        /// Timely worker threads.
        #[arg(long, default_value_t = 1)]
        workers: usize,
        /// Rows between reading and writing at most.
        #[arg(long, default_value_t = 4096)]
        in_flight: usize,
    },
    /// Replay Arrow IPC or Parquet files through a graph: one output row per input row,
    /// in order; failed rows go to an errors file.
    Replay {
        /// Graph file.
        graph: PathBuf,
        /// Input files or directories of them (.arrow/.ipc/.feather: Arrow IPC file,
        /// .arrows: Arrow IPC stream, .parquet/.pq: Parquet), read in the order given.
        #[arg(long, required = true, num_args = 1..)]
        input: Vec<PathBuf>,
        /// Output file (.arrow, .arrows or .parquet).
        #[arg(long)]
        output: PathBuf,
        /// Errors file, same format as the output (default: OUTPUT_STEM.errors.EXT).
        #[arg(long)]
        errors: Option<PathBuf>,
        /// An input column to copy to the output and errors files (repeatable).
        #[arg(long)]
        keep: Vec<String>,
        /// Format of the inputs, overriding their extensions: arrow, arrows or parquet.
        #[arg(long)]
        input_format: Option<String>,
        /// Format of the output, overriding its extension: arrow, arrows or parquet.
        #[arg(long)]
        output_format: Option<String>,
        /// Timely worker threads.
        #[arg(long, default_value_t = 1)]
        workers: usize,
        /// Rows per submission to the graph.
        #[arg(long, default_value_t = 1024)]
        chunk_rows: usize,
        /// Rows between reading and writing at most.
        #[arg(long, default_value_t = 8192)]
        in_flight: usize,
        /// No progress line (there is none when stderr is not a terminal anyway).
        #[arg(long)]
        quiet: bool,
    },
    /// Export a range of a Kafka topic (by offsets) to an Arrow IPC or Parquet file that
    /// `weir replay` takes: the graph's input fields decoded from each message, plus
    /// the message's topic, partition, offset and key.
    Capture {
        /// Graph file: its input fields say how to decode the messages.
        graph: PathBuf,
        /// Kafka brokers (`host:port,...`); default: the graph's `kafka.bootstrap_servers`.
        #[arg(long)]
        bootstrap: Option<String>,
        /// The topic.
        #[arg(long)]
        topic: String,
        /// First offsets, `PARTITION:OFFSET,...` (other partitions start at their first message).
        #[arg(long, value_delimiter = ',')]
        from: Vec<String>,
        /// End offsets, exclusive, `PARTITION:OFFSET,...` (other partitions end where
        /// the capture first reaches their end).
        #[arg(long, value_delimiter = ',')]
        to: Vec<String>,
        /// Output file (.arrow, .arrows or .parquet).
        #[arg(long)]
        output: PathBuf,
        /// Format of the output, overriding its extension: arrow, arrows or parquet.
        #[arg(long)]
        output_format: Option<String>,
        /// Payload format of the messages: json or arrow (default: the graph's
        /// `kafka.format`, else json).
        #[arg(long)]
        payload_format: Option<String>,
        /// A librdkafka property, `KEY=VALUE` (repeatable).
        #[arg(long = "kafka-property")]
        kafka_properties: Vec<String>,
        /// Give up when a partition delivers nothing for this long, in ms.
        #[arg(long, default_value_t = 10_000)]
        timeout_ms: u64,
    },
    /// Serve graphs over HTTP at POST /graphs/{name} until SIGINT or SIGTERM.
    Serve {
        /// Graph files; each is served under its `name`.
        #[arg(required = true)]
        graphs: Vec<PathBuf>,
        /// Address to listen on.
        #[arg(long, default_value = "127.0.0.1")]
        host: String,
        /// Port to listen on (0: any free port; the chosen one is logged).
        #[arg(long, default_value_t = 8000)]
        port: u16,
        /// Timely worker threads.
        #[arg(long, default_value_t = 1)]
        workers: usize,
        /// Rows in flight per graph at most (overrides the graphs' serving.max_in_flight).
        #[arg(long)]
        max_in_flight: Option<usize>,
        /// Deadline of requests that set no X-Request-Timeout-Ms, in milliseconds
        /// (overrides the graphs' serving.timeout_ms).
        #[arg(long)]
        timeout_ms: Option<u64>,
        /// Largest request body, in bytes.
        #[arg(long, default_value_t = 4 << 20)]
        body_limit: usize,
        /// After SIGINT/SIGTERM, how long requests in flight may take to finish, in ms.
        #[arg(long, default_value_t = 10_000)]
        grace_ms: u64,
        /// Kafka brokers (`host:port,...`) for every graph with a `kafka:` section,
        /// overriding the files' `bootstrap_servers`.
        #[arg(long)]
        kafka_bootstrap: Option<String>,
        /// Consume these topics (comma-separated) into the graph (one graph only); with
        /// --kafka-output, this sets up Kafka for a graph file without a `kafka:` section.
        #[arg(long, value_delimiter = ',')]
        kafka_input: Vec<String>,
        /// Produce the graph's answers to this topic.
        #[arg(long)]
        kafka_output: Option<String>,
        /// Consumer group (default `weir-GRAPH`).
        #[arg(long)]
        kafka_group: Option<String>,
        /// Dead-letter topic (default `OUTPUT.dead-letter`).
        #[arg(long)]
        kafka_dead_letter: Option<String>,
        /// Payload format of input messages: `json` (an object per message) or `arrow`
        /// (an Arrow IPC stream per message).
        #[arg(long)]
        kafka_format: Option<String>,
        /// A librdkafka property, `KEY=VALUE` (repeatable), added to the graph's.
        #[arg(long = "kafka-property")]
        kafka_properties: Vec<String>,
    },
}

#[derive(Clone, Copy, ValueEnum)]
enum Format {
    Dot,
    Mermaid,
}

/// mimalloc frees memory allocated on another thread cheaply, and rows are allocated on
/// one thread (submitter, replica) and freed on another (worker); see BENCHMARKS.md.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> ExitCode {
    weir::one_thread_per_forward_pass();
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_writer(io::stderr)
        .with_ansi(io::IsTerminal::is_terminal(&io::stderr()))
        .init();
    match Cli::parse().command {
        Command::Check { graphs } => {
            for path in graphs {
                match load_plan(&path) {
                    Ok(plan) => print!("{}", render::describe(&plan)),
                    Err(e) => return fail(1, &e),
                }
            }
            ExitCode::SUCCESS
        }
        Command::Graph { graph, format } => match load_plan(&graph) {
            Ok(plan) => {
                print!(
                    "{}",
                    match format {
                        Format::Dot => render::dot(&plan),
                        Format::Mermaid => render::mermaid(&plan),
                    }
                );
                ExitCode::SUCCESS
            }
            Err(e) => fail(1, &e),
        },
        Command::Run { graph, input, output, workers, in_flight } => {
            let plan = match load_plan(&graph) {
                Ok(plan) => plan,
                Err(e) => return fail(1, &e),
            };
            let engine = match Engine::start(vec![plan], EngineConfig { workers, ..EngineConfig::default() }) {
                Ok(engine) => engine,
                Err(e) => return fail(1, &e),
            };
            match run(&engine, &input, output.as_ref(), in_flight) {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => fail(2, &e),
            }
        }
        Command::Replay {
            graph,
            input,
            output,
            errors,
            keep,
            input_format,
            output_format,
            workers,
            chunk_rows,
            in_flight,
            quiet,
        } => {
            use weir_connectors::replay::{self, FileFormat, ReplayError, ReplayOptions};
            let parse = |flag: &str, v: Option<String>| -> Result<Option<FileFormat>, String> {
                v.map(|v| v.parse::<FileFormat>().map_err(|e| format!("--{flag}: {e}"))).transpose()
            };
            let (input_format, output_format) =
                match (parse("input-format", input_format), parse("output-format", output_format)) {
                    (Ok(i), Ok(o)) => (i, o),
                    (Err(e), _) | (_, Err(e)) => return fail(1, &e),
                };
            let plan = match load_plan(&graph) {
                Ok(plan) => plan,
                Err(e) => return fail(1, &e),
            };
            let Some(output_format) = output_format.or_else(|| FileFormat::of_path(&output)) else {
                return fail(1, &ReplayError::UnknownFormat { path: output });
            };
            let options = ReplayOptions {
                errors: errors.unwrap_or_else(|| replay::errors_path(&output)),
                output,
                output_format,
                keep,
                chunk_rows,
                in_flight,
                progress: !quiet && io::IsTerminal::is_terminal(&io::stderr()),
            };
            let inputs = match replay::discover(&input, input_format) {
                Ok(inputs) => inputs,
                Err(e) => return fail(replay_exit_code(&e), &e),
            };
            let engine = match Engine::start(vec![plan], EngineConfig { workers, ..EngineConfig::default() }) {
                Ok(engine) => engine,
                Err(e) => return fail(1, &e),
            };
            let start = Instant::now();
            match replay::replay(&engine.graphs()[0], &inputs, &options) {
                Ok(summary) => {
                    let secs = start.elapsed().as_secs_f64();
                    let rss = weir::peak_rss_bytes()
                        .map(|b| format!(", peak RSS {:.1} MiB", b as f64 / (1 << 20) as f64))
                        .unwrap_or_default();
                    eprintln!(
                        "weir: replay: {} rows, {} errors ({}), {secs:.3} s, {:.0} rows/s{rss}",
                        summary.rows,
                        summary.errors,
                        options.errors.display(),
                        summary.rows as f64 / secs.max(1e-9)
                    );
                    ExitCode::SUCCESS
                }
                Err(e) => fail(replay_exit_code(&e), &e),
            }
        }
        Command::Capture {
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
        } => {
            use weir_connectors::kafka::capture::{capture, CaptureSpec};
            use weir_connectors::replay::FileFormat;
            let plan = match load_plan(&graph) {
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
            let mut properties: Vec<(String, String)> =
                plan.kafka.iter().flat_map(|k| k.properties.iter().cloned()).collect();
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
            match capture(&plan.inputs, &spec) {
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
        Command::Serve {
            graphs,
            host,
            port,
            workers,
            max_in_flight,
            timeout_ms,
            body_limit,
            grace_ms,
            kafka_bootstrap,
            kafka_input,
            kafka_output,
            kafka_group,
            kafka_dead_letter,
            kafka_properties,
            kafka_format,
        } => {
            let format = match kafka_format.as_deref() {
                None => None,
                Some("json") => Some(PayloadFormat::Json),
                Some("arrow") => Some(PayloadFormat::Arrow),
                Some(other) => return fail(1, &format!("--kafka-format takes json or arrow, got '{other}'")),
            };
            let properties = match key_values(&kafka_properties) {
                Ok(properties) => properties,
                Err(e) => return fail(1, &e),
            };
            let kafka_flags = KafkaFlags {
                bootstrap: kafka_bootstrap,
                input: kafka_input,
                output: kafka_output,
                group: kafka_group,
                dead_letter: kafka_dead_letter,
                properties,
                format,
            };
            if kafka_flags.sets_topics() && graphs.len() != 1 {
                return fail(1, &"--kafka-input and --kafka-output apply to one graph; give one graph file");
            }
            let mut plans = Vec::new();
            for path in &graphs {
                match load_plan(path) {
                    Ok(mut plan) => {
                        if let Some(n) = max_in_flight {
                            plan.serving.max_in_flight = n.max(1);
                        }
                        if let Err(e) = kafka_flags.apply(&mut plan) {
                            return fail(1, &e);
                        }
                        plans.push(plan);
                    }
                    Err(e) => return fail(1, &e),
                }
            }
            let engine = match Engine::start(plans, EngineConfig { workers, ..EngineConfig::default() }) {
                Ok(engine) => engine,
                Err(e) => return fail(1, &e),
            };
            let config = ServerConfig { body_limit, default_timeout: timeout_ms.map(Duration::from_millis) };
            let served = serve(&engine, &host, port, config, Duration::from_millis(grace_ms));
            // Rows still in the engine are answered `unavailable` as it stops.
            drop(engine);
            match served {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => fail(2, &e),
            }
        }
    }
}

fn serve(engine: &Engine, host: &str, port: u16, config: ServerConfig, grace: Duration) -> anyhow::Result<()> {
    use anyhow::Context;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .thread_name("weir-http")
        .build()
        .context("cannot start the HTTP runtime")?;
    runtime.block_on(async {
        let listener = tokio::net::TcpListener::bind((host, port))
            .await
            .with_context(|| format!("cannot listen on {host}:{port}"))?;
        let addr = listener.local_addr()?;
        let state = AppState::new(engine.graphs(), config);
        let mut kafka = Vec::new();
        for g in engine.graphs() {
            tracing::info!("serving graph '{}' at http://{addr}/graphs/{}", g.name(), g.name());
            if let Some(spec) = g.plan().kafka.clone() {
                kafka.push(KafkaLoop::connect(g.clone(), spec)?);
            }
        }
        // One signal stops HTTP and every Kafka loop.
        let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
        tokio::spawn(async move {
            http::shutdown_signal().await;
            let _ = stop_tx.send(true);
        });
        let stopped = |mut rx: tokio::sync::watch::Receiver<bool>| async move {
            let _ = rx.wait_for(|stop| *stop).await;
        };
        let loops: Vec<_> = kafka.into_iter().map(|k| tokio::spawn(k.run(stopped(stop_rx.clone()), grace))).collect();
        eprintln!("weir: listening on http://{addr}");
        http::serve(listener, state, stopped(stop_rx), grace).await?;
        for l in loops {
            if let Ok(s) = l.await {
                eprintln!(
                    "weir: kafka: {} consumed, {} answered, {} dead-lettered",
                    s.consumed, s.answered, s.dead_lettered
                );
            }
        }
        eprintln!("weir: stopped");
        Ok(())
    })
}

fn run(engine: &Engine, input: &PathBuf, output: Option<&PathBuf>, in_flight: usize) -> anyhow::Result<()> {
    use anyhow::Context;
    let graph = &engine.graphs()[0];
    let reader: Box<dyn io::Read> = if input.as_os_str() == "-" {
        Box::new(io::stdin().lock())
    } else {
        Box::new(File::open(input).with_context(|| format!("cannot open input {}", input.display()))?)
    };
    let writer: Box<dyn Write> = match output {
        Some(path) => Box::new(BufWriter::new(
            File::create(path).with_context(|| format!("cannot create output {}", path.display()))?,
        )),
        None => Box::new(BufWriter::new(io::stdout().lock())),
    };
    let start = Instant::now();
    let summary = weir_connectors::jsonl::run_jsonl(graph, reader, writer, in_flight)
        .with_context(|| format!("running {}", input.display()))?;
    let secs = start.elapsed().as_secs_f64();
    eprintln!(
        "weir: {} rows, {} errors, {:.3} s, {:.0} rows/s",
        summary.rows,
        summary.errors,
        secs,
        summary.rows as f64 / secs.max(1e-9)
    );
    Ok(())
}

/// `weir serve`'s Kafka flags.
struct KafkaFlags {
    bootstrap: Option<String>,
    input: Vec<String>,
    output: Option<String>,
    group: Option<String>,
    dead_letter: Option<String>,
    properties: Vec<(String, String)>,
    format: Option<PayloadFormat>,
}

impl KafkaFlags {
    fn sets_topics(&self) -> bool {
        !self.input.is_empty() || self.output.is_some()
    }

    /// Overrides (or creates) the plan's Kafka section from the flags.
    fn apply(&self, plan: &mut weir_engine::Plan) -> Result<(), String> {
        if self.sets_topics() && plan.kafka.is_none() {
            let (Some(output), false, Some(bootstrap)) = (&self.output, self.input.is_empty(), &self.bootstrap) else {
                return Err(format!(
                    "graph '{}' has no kafka: section; give --kafka-bootstrap, --kafka-input and --kafka-output",
                    plan.name
                ));
            };
            plan.kafka = Some(KafkaSpec {
                bootstrap_servers: bootstrap.clone(),
                input_topics: self.input.clone(),
                output_topic: output.clone(),
                group_id: format!("weir-{}", plan.name),
                dead_letter_topic: format!("{output}.dead-letter"),
                format: PayloadFormat::Json,
                properties: Vec::new(),
            });
        }
        if let Some(k) = plan.kafka.as_mut() {
            if let Some(b) = &self.bootstrap {
                k.bootstrap_servers = b.clone();
            }
            if !self.input.is_empty() {
                k.input_topics = self.input.clone();
            }
            if let Some(o) = &self.output {
                k.output_topic = o.clone();
            }
            if let Some(g) = &self.group {
                k.group_id = g.clone();
            }
            if let Some(d) = &self.dead_letter {
                k.dead_letter_topic = d.clone();
            }
            k.properties.extend(self.properties.iter().cloned());
            if let Some(f) = self.format {
                k.format = f;
            }
        }
        Ok(())
    }
}

/// `--kafka-property KEY=VALUE` flags.
fn key_values(flags: &[String]) -> Result<Vec<(String, String)>, String> {
    flags
        .iter()
        .map(|p| match p.split_once('=') {
            Some((k, v)) if !k.is_empty() => Ok((k.to_string(), v.to_string())),
            _ => Err(format!("--kafka-property takes KEY=VALUE, got '{p}'")),
        })
        .collect()
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

/// 1 when the inputs do not fit the graph or the command line, 2 for I/O.
fn replay_exit_code(e: &weir_connectors::replay::ReplayError) -> u8 {
    use weir_connectors::replay::ReplayError;
    match e {
        ReplayError::NoInputs { .. }
        | ReplayError::UnknownFormat { .. }
        | ReplayError::Schema { .. }
        | ReplayError::Keep { .. } => 1,
        ReplayError::Io { .. } | ReplayError::Unreadable { .. } | ReplayError::Write { .. } => 2,
    }
}

fn fail(code: u8, e: &dyn std::fmt::Display) -> ExitCode {
    eprintln!("error: {e}");
    ExitCode::from(code)
}
