//! `weir`: serve graphs of ML models as a continuous timely dataflow.
//!
//! - `weir check GRAPH.yaml...`: validate and print the compiled plan;
//! - `weir graph GRAPH.yaml --format dot|mermaid`: draw it;
//! - `weir run GRAPH.yaml --input rows.jsonl [--output out.jsonl]`: JSON lines in,
//!   JSON lines out, in order;
//! - `weir serve GRAPH.yaml... [--host H] [--port P] [--workers N]`: serve every graph
//!   over HTTP until SIGINT or SIGTERM.
//!
//! Exit codes: 0 on success (also when some rows failed: they are error lines), 1 when a
//! graph is invalid, 2 on an I/O error.

use std::fs::File;
use std::io::{self, BufWriter, Write};
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use clap::{Parser, Subcommand, ValueEnum};
use weir_connectors::http::{self, AppState, ServerConfig};
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
        Command::Serve { graphs, host, port, workers, max_in_flight, timeout_ms, body_limit, grace_ms } => {
            let mut plans = Vec::new();
            for path in &graphs {
                match load_plan(path) {
                    Ok(mut plan) => {
                        if let Some(n) = max_in_flight {
                            plan.serving.max_in_flight = n.max(1);
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
        for g in engine.graphs() {
            tracing::info!("serving graph '{}' at http://{addr}/graphs/{}", g.name(), g.name());
        }
        eprintln!("weir: listening on http://{addr}");
        http::serve(listener, state, http::shutdown_signal(), grace).await?;
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

fn fail(code: u8, e: &dyn std::fmt::Display) -> ExitCode {
    eprintln!("error: {e}");
    ExitCode::from(code)
}
