//! `weir replay`: Arrow IPC or Parquet files through a graph.

use std::io;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Instant;

use weir_engine::{load_plan_with, Cluster, EngineConfig, Kernels};
use weir_operators::Shutdown;

use super::cluster::{lost_peer_exit, start, watching, ClusterArgs, Started};
use super::{fail, load_tables};

/// `weir replay`'s flags.
#[derive(clap::Args)]
pub struct ReplayArgs {
    /// Graph file.
    pub graph: PathBuf,
    /// Input files or directories of them (.arrow/.ipc/.feather: Arrow IPC file,
    /// .arrows: Arrow IPC stream, .parquet/.pq: Parquet), read in the order given.
    #[arg(long, required = true, num_args = 1..)]
    pub input: Vec<PathBuf>,
    /// Output file (.arrow, .arrows or .parquet); not used with --prequential.
    #[arg(long, required_unless_present = "prequential")]
    pub output: Option<PathBuf>,
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
    /// Timely worker threads: by default one per core for a replay (each computes the
    /// cheap models' batches itself), one for --prequential and --feedback runs.
    #[arg(long)]
    pub workers: Option<usize>,
    /// Rows per submission to the graph.
    #[arg(long, default_value_t = 1024)]
    pub chunk_rows: usize,
    /// Rows between reading and writing at most (the graph's serving.max_in_flight is
    /// raised to it). Default: four blocks of --chunk-rows per worker, at least 8192.
    #[arg(long)]
    pub in_flight: Option<usize>,
    /// Threads that read and decode the inputs beside the replay's own thread (0: on
    /// the replay's thread): an Arrow IPC file's batches and a Parquet file's row groups
    /// in parallel, an Arrow IPC stream on one thread. By default the replay's thread
    /// reads, and on 4 cores or more hands the rest of a file to one thread per core but
    /// one (at most 4) once it is found to hold the graph back.
    #[arg(long)]
    pub readers: Option<usize>,
    /// No progress line (there is none when stderr is not a terminal anyway).
    #[arg(long)]
    pub quiet: bool,
    /// Feedback files (Arrow IPC or Parquet) for the graph's learning node, merged into
    /// the inputs by event time (--order-by): labels by key, or with their features, in
    /// an Int64 column named by --label. The engine is then deterministic.
    #[arg(long, num_args = 1..)]
    pub feedback: Vec<PathBuf>,
    /// The Int64 event-time column of the inputs and the feedback, each sorted by it: a
    /// row at time t is predicted after every feedback row before t.
    #[arg(long, value_name = "COLUMN")]
    pub order_by: Option<String>,
    /// The Int64 label column of the feedback files.
    #[arg(long, default_value = "label")]
    pub label: String,
    /// Backtest a learning graph: predict each row, then feed back its label from this
    /// Int64 column, in order (a deterministic engine); prints the running accuracy.
    #[arg(long, value_name = "LABEL_COLUMN")]
    pub prequential: Option<String>,
    /// Prequential mode: the largest block of rows sent in at once with their labels
    /// (every block but the last). The learning node still predicts and learns row
    /// by row, so the answers do not depend on it.
    #[arg(long, default_value_t = 1024)]
    pub max_block: usize,
    /// Prequential mode: a running-accuracy line every this many rows.
    #[arg(long, default_value_t = 250)]
    pub report_every: usize,
    /// Kafka brokers (`host:port,...`) for the graph's tables that follow a topic,
    /// overriding its `kafka.bootstrap_servers`: read up to the topic's end at the start.
    #[arg(long)]
    pub kafka_bootstrap: Option<String>,
    /// The cluster this process is one of, if any: every process runs the same command;
    /// process 0 reads the inputs and writes the outputs, the others lend their workers
    /// (see `weir_engine::cluster`).
    #[command(flatten)]
    pub cluster: ClusterArgs,
}

/// Runs `weir replay`.
pub fn replay(args: ReplayArgs, kernels: &Kernels) -> ExitCode {
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
        readers,
        quiet,
        prequential,
        max_block,
        report_every,
        feedback,
        order_by,
        label,
        kafka_bootstrap,
        cluster,
    } = args;
    let cluster = match cluster.cluster(true) {
        Ok(cluster) => cluster,
        Err(e) => return fail(1, &e),
    };
    let brokers = kafka_bootstrap.as_deref();
    if readers.is_some() && (prequential.is_some() || !feedback.is_empty()) {
        // Labelled streams are read in order on the replay's own thread.
        return fail(1, &"--readers does not apply to --prequential or --feedback replays (they read on one thread)");
    }
    if let Some(label) = prequential {
        let workers = workers.unwrap_or(1);
        return backtest(
            (&graph, kernels),
            &input,
            input_format,
            (workers, cluster),
            &label,
            (max_block, report_every),
            brokers,
        );
    }
    let Some(output) = output else { return fail(1, &"--output is required (unless --prequential)") };
    use weir_connectors::replay::{self, FileFormat, ReplayError, ReplayOptions};
    let parse = |flag: &str, v: Option<String>| -> Result<Option<FileFormat>, String> {
        v.map(|v| v.parse::<FileFormat>().map_err(|e| format!("--{flag}: {e}"))).transpose()
    };
    let (input_format, output_format) =
        match (parse("input-format", input_format), parse("output-format", output_format)) {
            (Ok(i), Ok(o)) => (i, o),
            (Err(e), _) | (_, Err(e)) => return fail(1, &e),
        };
    let mut plan = match load_plan_with(&graph, kernels) {
        Ok(plan) => plan,
        Err(e) => return fail(1, &e),
    };
    let deterministic = !feedback.is_empty();
    let workers = workers.unwrap_or(if deterministic { 1 } else { weir_engine::cores() });
    // The replay's bound on rows in flight is the one that binds, not the serving one.
    let processes = cluster.as_ref().map_or(1, |c| c.addresses.len());
    let in_flight = in_flight.unwrap_or_else(|| replay::default_in_flight(workers * processes, chunk_rows)).max(1);
    plan.serving.max_in_flight = plan.serving.max_in_flight.max(in_flight);
    let config = EngineConfig { workers, deterministic, cluster: cluster.clone(), ..EngineConfig::default() };
    let (engine, cluster) = match start(plan, config) {
        Ok(Started::Submitter(engine, cluster)) => (engine, cluster),
        Ok(Started::Lent(code)) | Err(code) => return code,
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
        in_flight: Some(in_flight),
        progress: !quiet && io::IsTerminal::is_terminal(&io::stderr()),
        readers: match readers {
            None => replay::Readers::auto(),
            Some(0) => replay::Readers::Own,
            Some(n) => replay::Readers::Threads(n),
        },
    };
    let inputs = match replay::discover(&input, input_format) {
        Ok(inputs) => inputs,
        Err(e) => return fail(replay_exit_code(&e), &e),
    };
    let feedback_files = match (feedback.is_empty(), &order_by) {
        (true, _) => Vec::new(),
        (false, None) => return fail(1, &"--feedback needs --order-by (the event-time column of both streams)"),
        (false, Some(_)) => match replay::discover(&feedback, input_format) {
            Ok(files) => files,
            Err(e) => return fail(replay_exit_code(&e), &e),
        },
    };
    if let Err(code) = load_tables(&engine, brokers, &Shutdown::new()) {
        return code;
    }
    let stream = match (&order_by, deterministic) {
        (Some(order_by), true) => {
            match replay::feedback::read_feedback(&engine.graphs()[0], &feedback_files, order_by, &label) {
                Ok(stream) => Some(stream),
                Err(e) => return fail(replay_exit_code(&e), &e),
            }
        }
        _ => None,
    };
    let start = Instant::now();
    let (replayed, lost) =
        watching(&engine, || replay::replay_with_feedback(&engine.graphs()[0], &inputs, stream, &options));
    if let (Some(cluster), Some(lost)) = (&cluster, lost) {
        // Its workers cannot finish without the lost process.
        std::mem::forget(engine);
        return lost_peer_exit(cluster, &lost);
    }
    match replayed {
        Ok(summary) => {
            let secs = start.elapsed().as_secs_f64();
            // Shutting down lets the learner take the last labels in.
            let handle = engine.graphs()[0].clone();
            engine.shutdown();
            let learned =
                handle.learn_stats().map(|(_, s)| format!(", model version {}", s.version)).unwrap_or_default();
            let rss = crate::peak_rss_bytes()
                .map(|b| format!(", peak RSS {:.1} MiB", b as f64 / (1 << 20) as f64))
                .unwrap_or_default();
            let readers = match summary.readers {
                0 => String::new(),
                n => format!(", {n} reading thread{}", if n == 1 { "" } else { "s" }),
            };
            eprintln!(
                "weir: replay: {} rows, {} errors ({}), {secs:.3} s, {:.0} rows/s{readers}{rss}{learned}",
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

/// `weir replay --prequential`: a labelled stream through a learning graph, predict then
/// learn, with the running accuracy on stderr.
fn backtest(
    (graph, kernels): (&std::path::Path, &Kernels),
    input: &[PathBuf],
    input_format: Option<String>,
    (workers, cluster): (usize, Option<Cluster>),
    label: &str,
    (max_block, report_every): (usize, usize),
    brokers: Option<&str>,
) -> ExitCode {
    use weir_connectors::replay::{self, labelled, FileFormat};
    use weir_engine::prequential::{predicted_class, prequential};
    let format = match input_format.map(|v| v.parse::<FileFormat>()).transpose() {
        Ok(f) => f,
        Err(e) => return fail(1, &format!("--input-format: {e}")),
    };
    let plan = match load_plan_with(graph, kernels) {
        Ok(plan) => plan,
        Err(e) => return fail(1, &e),
    };
    let config = EngineConfig { workers, deterministic: true, cluster, ..EngineConfig::default() };
    let (engine, cluster) = match start(plan, config) {
        Ok(Started::Submitter(engine, cluster)) => (engine, cluster),
        Ok(Started::Lent(code)) | Err(code) => return code,
    };
    let inputs = match replay::discover(input, format) {
        Ok(inputs) => inputs,
        Err(e) => return fail(replay_exit_code(&e), &e),
    };
    if let Err(code) = load_tables(&engine, brokers, &Shutdown::new()) {
        return code;
    }
    let handle = engine.graphs()[0].clone();
    let (columns, labels) = match labelled::read_labelled(&handle, &inputs, label) {
        Ok(read) => read,
        Err(e) => return fail(replay_exit_code(&e), &e),
    };
    let (run, lost) = watching(&engine, || prequential(&handle, &columns, &labels, max_block));
    if let (Some(cluster), Some(lost)) = (&cluster, lost) {
        std::mem::forget(engine);
        return lost_peer_exit(cluster, &lost);
    }
    let run = match run {
        Ok(run) => run,
        Err(e) => return fail(1, &e),
    };
    engine.shutdown();
    let classes = handle.feedback_kinds().map_or(2, |k| k.classes);
    let (mut row, mut right) = (0usize, 0usize);
    let every = report_every.max(1);
    for chunk in &run.blocks {
        for r in 0..chunk.len() {
            let class = chunk.is_ok(r).then(|| predicted_class(&chunk.columns[run.prediction], r, classes)).flatten();
            right += usize::from(class == Some(labels[row]));
            row += 1;
            if row % every == 0 && row < run.rows {
                eprintln!("weir: prequential: {row} rows, running accuracy {:.4}", right as f64 / row as f64);
            }
        }
    }
    let version = handle.learn_stats().map_or(0, |(_, s)| s.version);
    eprintln!(
        "weir: prequential: {} rows, accuracy {:.4}, model version {version}, {:.3} s, {:.0} rows/s",
        run.rows,
        run.accuracy(),
        run.seconds,
        run.rows as f64 / run.seconds.max(1e-9)
    );
    ExitCode::SUCCESS
}

/// 1 when the inputs do not fit the graph or the command line, 2 for I/O.
pub(crate) fn replay_exit_code(e: &weir_connectors::replay::ReplayError) -> u8 {
    use weir_connectors::replay::ReplayError;
    match e {
        ReplayError::NoInputs { .. }
        | ReplayError::UnknownFormat { .. }
        | ReplayError::Schema { .. }
        | ReplayError::Keep { .. }
        | ReplayError::Feedback { .. }
        | ReplayError::Snapshot { .. }
        | ReplayError::Overwrites { .. } => 1,
        ReplayError::Io { .. } | ReplayError::Unreadable { .. } | ReplayError::Write { .. } => 2,
    }
}
