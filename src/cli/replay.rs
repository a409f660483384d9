//! `weir replay`: Arrow IPC or Parquet files through a graph.

use std::io;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Instant;

use weir_engine::{load_plan, Engine, EngineConfig};

use super::fail;

/// `weir replay`'s flags.
#[derive(clap::Args)]
pub struct ReplayArgs {
    /// Graph file.
    pub graph: PathBuf,
    /// Input files or directories of them (.arrow/.ipc/.feather: Arrow IPC file,
    /// .arrows: Arrow IPC stream, .parquet/.pq: Parquet), read in the order given.
    #[arg(long, required = true, num_args = 1..)]
    pub input: Vec<PathBuf>,
    /// Output file (.arrow, .arrows or .parquet).
    #[arg(long)]
    pub output: PathBuf,
    /// Errors file, same format as the output (default: OUTPUT_STEM.errors.EXT).
    #[arg(long)]
    pub errors: Option<PathBuf>,
    /// An input column to copy to the output and errors files (repeatable).
    #[arg(long)]
    pub keep: Vec<String>,
    /// Format of the inputs, overriding their extensions: arrow, arrows or parquet.
    #[arg(long)]
    pub input_format: Option<String>,
    /// Format of the output, overriding its extension: arrow, arrows or parquet.
    #[arg(long)]
    pub output_format: Option<String>,
    /// Timely worker threads.
    #[arg(long, default_value_t = 1)]
    pub workers: usize,
    /// Rows per submission to the graph.
    #[arg(long, default_value_t = 1024)]
    pub chunk_rows: usize,
    /// Rows between reading and writing at most.
    #[arg(long, default_value_t = 8192)]
    pub in_flight: usize,
    /// No progress line (there is none when stderr is not a terminal anyway).
    #[arg(long)]
    pub quiet: bool,
}

/// Runs `weir replay`.
pub fn replay(args: ReplayArgs) -> ExitCode {
    let ReplayArgs {
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
    } = args;
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
