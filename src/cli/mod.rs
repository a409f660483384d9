//! The `weir` command line, [`main_with`]: every command, for the `weir` binary and for
//! programs that add their own kernels.
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
//! `serve`, `run` and `replay` also run as one process of a cluster (`--processes N
//! --process I --hosts FILE`, see [`cluster`]).
//!
//! Exit codes: 0 on success (also when some rows failed: they are error lines or rows of
//! the errors file), 1 when a graph is invalid or the input does not fit it, 2 on an I/O
//! error, 3 when a process of the cluster was lost.
//!
//! The longer commands have a file each: `replay`, `capture` and `serve` (their flags, a
//! clap `Args` struct, and their handler); `cluster` holds the cluster flags they share;
//! `signals` stops a server cleanly; `allocator` hands freed memory back after a reload
//! and when a server goes idle.

pub mod allocator;
pub mod capture;
pub mod cluster;
pub mod reload;
pub mod replay;
pub mod serve;
pub mod signals;
pub mod tables;

use std::fs::File;
use std::io::{self, BufWriter, Write};
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Instant;

use capture::CaptureArgs;
use clap::{Parser, Subcommand, ValueEnum};
use replay::ReplayArgs;
use serve::ServeArgs;
pub use tables::load_tables;
use weir_engine::{load_plan_with, render, Engine, EngineConfig, Kernels};

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
        /// Kafka brokers (`host:port,...`) for the graph's tables that follow a topic,
        /// overriding its `kafka.bootstrap_servers`: read up to the topic's end at the start.
        #[arg(long)]
        kafka_bootstrap: Option<String>,
        /// The cluster this process is one of, if any: every process runs the same
        /// command; process 0 reads the input and writes the output, the others lend
        /// their workers (see `weir_engine::cluster`).
        #[command(flatten)]
        cluster: cluster::ClusterArgs,
    },
    /// Replay Arrow IPC or Parquet files through a graph: one output row per input row,
    /// in order; failed rows go to an errors file.
    Replay(ReplayArgs),
    /// Export a range of a Kafka topic (by offsets) to an Arrow IPC or Parquet file that
    /// `weir replay` takes: the graph's input fields decoded from each message, plus
    /// the message's topic, partition, offset and key.
    Capture(CaptureArgs),
    /// Serve graphs over HTTP at POST /graphs/{name} until SIGINT or SIGTERM; SIGHUP
    /// reloads the graph files that changed.
    Serve(ServeArgs),
}

#[derive(Clone, Copy, ValueEnum)]
enum Format {
    Dot,
    Mermaid,
}

/// The whole `weir` command line (the arguments of this process), with the model
/// formats and kernels of `kernels` known to every graph it loads: a program that adds
/// its own kernels calls this from its `main` with
/// `Kernels::builtin().with("my_kernel", ...)` and is `weir` with them (see
/// `examples/custom_kernel.rs`). Call it first in `main`: it catches SIGINT and SIGTERM
/// before anything else starts.
pub fn main_with(kernels: Kernels) -> ExitCode {
    // SIGINT and SIGTERM are caught before anything else: a server must stop cleanly on
    // one at any moment of its start (the other commands keep their default action).
    let signals = match signals::take() {
        Ok(signals) => signals,
        Err(e) => return fail(2, &format!("cannot catch SIGINT and SIGTERM: {e}")),
    };
    let cli = Cli::parse();
    let handled = match &cli.command {
        Command::Serve(_) => signals.stop_server().map(Some),
        _ => signals.default_action().map(|()| None),
    };
    let stop = match handled {
        Ok(stop) => stop,
        Err(e) => return fail(2, &format!("cannot start the signal thread: {e}")),
    };
    crate::one_thread_per_forward_pass();
    crate::no_transparent_huge_pages();
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_writer(io::stderr)
        .with_ansi(io::IsTerminal::is_terminal(&io::stderr()))
        .init();
    if matches!(cli.command, Command::Serve(_)) {
        if let Err(e) = allocator::release_when_idle() {
            tracing::warn!("cannot start the thread that hands freed memory back when idle: {e}");
        }
    }
    match cli.command {
        Command::Check { graphs } => {
            for path in graphs {
                match load_plan_with(&path, &kernels) {
                    Ok(plan) => print!("{}", render::describe(&plan)),
                    Err(e) => return fail(1, &e),
                }
            }
            ExitCode::SUCCESS
        }
        Command::Graph { graph, format } => match load_plan_with(&graph, &kernels) {
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
        Command::Run { graph, input, output, workers, in_flight, kafka_bootstrap, cluster } => {
            let cluster = match cluster.cluster(true) {
                Ok(cluster) => cluster,
                Err(e) => return fail(1, &e),
            };
            let plan = match load_plan_with(&graph, &kernels) {
                Ok(plan) => plan,
                Err(e) => return fail(1, &e),
            };
            let config = EngineConfig { workers, cluster, ..EngineConfig::default() };
            let (engine, cluster) = match cluster::start(plan, config) {
                Ok(cluster::Started::Submitter(engine, cluster)) => (engine, cluster),
                Ok(cluster::Started::Lent(code)) | Err(code) => return code,
            };
            if let Err(code) = load_tables(&engine, kafka_bootstrap.as_deref(), &weir_operators::Shutdown::new()) {
                return code;
            }
            let (ran, lost) = cluster::watching(&engine, || run(&engine, &input, output.as_ref(), in_flight));
            if let (Some(cluster), Some(lost)) = (&cluster, lost) {
                // Its workers cannot finish without the lost process.
                std::mem::forget(engine);
                return cluster::lost_peer_exit(cluster, &lost);
            }
            match ran {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => fail(2, &e),
            }
        }
        Command::Replay(args) => replay::replay(args, &kernels),
        Command::Capture(args) => capture::capture(args, &kernels),
        Command::Serve(args) => serve::serve(args, &kernels, stop.unwrap_or_default()),
    }
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

/// Prints `error: E` and returns exit code `code`.
pub fn fail(code: u8, e: &dyn std::fmt::Display) -> ExitCode {
    eprintln!("error: {e}");
    ExitCode::from(code)
}
