//! Replay benchmark: `weir replay` of `graphs/digits.yaml` over an Arrow IPC file
//! against the raw batched forward passes of the same models over the same rows.
//!
//! Run: `cargo bench --bench replay` (add `-- --quick` for a short run; set
//! `KEEP_INPUTS=DIR` to keep the input files there; `REPLAY_ROWS=N` replays N rows a
//! round instead of 500,000).
//!
//! Rounds of 500,000 rows by default: with 100,000 (the default until 2026-12-06) the
//! raw passes' two static halves kept only 1.45-1.78 cores busy, one thread waiting for
//! the other, which flattered every ratio to them by up to 0.1.
//!
//! - **Baseline, one thread**: the rows already decoded in memory (one flat buffer),
//!   standardized and passed through the softmax regression and the MLP in batches of
//!   32 (the graph's `max_batch_size`), in a one-thread rayon pool (as replicas run).
//!   No file, no graph.
//! - **Baseline, two threads**: the same, each thread taking half the rows: what the
//!   two cores give without any engine, the stronger baseline.
//! - **weir replay** (in process, 1 timely worker): reading the Arrow file, decoding,
//!   the whole graph (standardize, both models on their replica threads, the ensemble
//!   mean, argmax), encoding and writing the output Arrow file.
//!
//! - **The files alone** (no graph, one thread): what the replay does beside the graph,
//!   with weir's own functions: reading the Arrow file, decoding each block of 1024 rows
//!   into columns, encoding an answer of the graph's output types per block (fillers in
//!   place of the models' numbers) and writing the output file. Its CPU per row against
//!   the raw passes' on two threads bounds what any replay of these files can reach
//!   against that baseline: both cores have to do both.
//! - **Hand-written, no engine** (three lines, `hand.rs`): the replay written by hand for
//!   this one graph, with weir's file functions and kernels and nothing else: what a
//!   replay of these files on these cores reaches without an engine. One with weir's
//!   layout (this thread reads, decodes, encodes and writes; a thread per core takes the
//!   next block from one bounded queue), one without a reading thread (each thread takes
//!   the file's next batch, decodes, computes, encodes, and writes whatever is next in
//!   input order), and the same with the input memory-mapped and computed where it lies
//!   (no read call, no copy, no decode step): the cheapest way to read these files, so
//!   the most any replay of them reaches here. Each computes per batch of 32 what the
//!   raw passes do, then the ensemble mean and the argmax; their answers are checked
//!   equal to weir's. weir's replay on one worker per core is given as a ratio to each,
//!   per round.
//! - **The replay's own thread**: the CPU per row of the thread that calls `replay`
//!   during the replays on one worker per core: work no other core can take, so one
//!   over it is the most rows/s a replay reaches on any number of cores. Likewise the
//!   thread that writes the output (`ReplaySummary::writing_cpu`).
//! - **Reading threads** ("replay readers"): digits and a graph of next to nothing (the
//!   argmax of the pixels) replayed with the file read on the replay's own thread, by
//!   default, and on one reading thread per core (`ReplayOptions::readers`); digits also
//!   from Parquet, and to a Parquet output.
//! - **Cores busy**: the CPU time of the replay's threads (and of the raw passes'
//!   threads) over the wall time, from `/proc/.../schedstat`.
//!
//! Fifteen rounds (two with `--quick`) alternate them, about a second a round at the
//! default 500,000 rows, so that the host's drifts fall on both sides of most rounds;
//! ratios are medians of per-round ratios. Then peak RSS of the `weir` binary replaying
//! a 1x file of 100,000 rows and a 10x file.
#![allow(clippy::unwrap_used)] // a test or benchmark fails loudly on the first surprise

use std::process::Command;
use std::sync::Arc;
use std::time::Instant;

use arrow_array::builder::{FixedSizeListBuilder, Float32Builder};
use arrow_array::{ArrayRef, Int64Array, RecordBatch};
use hand::{answers, decode_pixels, encode, hand_written, hand_written_shared, mapped, write_batch, Raw};
use weir::bench::{median, range};
use weir::datasets::{digits, graphs_dir, Split};
use weir_connectors::replay::{self, files, InputFile, Readers, ReplayOptions};
use weir_engine::{load_plan, Engine, EngineConfig};
use weir_operators::Column;

mod hand;

/// The allocator the `weir` binary uses.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

const BATCH: usize = 32;

/// The rows of the Arrow IPC file at `from` as a Parquet file at `to`, in row groups of
/// [`PARQUET_GROUP_ROWS`] rows (the writer's other settings at their defaults: the
/// pixels dictionary-encoded, uncompressed).
fn write_parquet(from: &std::path::Path, to: &std::path::Path) {
    let reader =
        arrow_ipc::reader::FileReader::try_new(std::fs::File::open(from).expect("input"), None).expect("reader");
    let props = parquet::file::properties::WriterProperties::builder()
        .set_max_row_group_row_count(Some(PARQUET_GROUP_ROWS))
        .build();
    let file = std::fs::File::create(to).expect("parquet");
    let mut w = parquet::arrow::ArrowWriter::try_new(file, reader.schema(), Some(props)).expect("writer");
    for batch in reader {
        w.write(&batch.expect("batch")).expect("write");
    }
    w.close().expect("close");
}

/// Rows per row group of the bench's Parquet input (8 row groups of the default 500,000 rows).
const PARQUET_GROUP_ROWS: usize = 65_536;

fn write_input(path: &std::path::Path, rows: usize) {
    let set = digits(Split::Train).expect("digits");
    let schema_batch = |first: usize, n: usize| {
        let mut pixels = FixedSizeListBuilder::new(Float32Builder::new(), 64);
        for i in first..first + n {
            pixels.values().append_slice(&set[i % set.len()].pixels);
            pixels.append(true);
        }
        let ids: ArrayRef = Arc::new(Int64Array::from_iter_values(first as i64..(first + n) as i64));
        RecordBatch::try_from_iter([("id", ids), ("pixels", Arc::new(pixels.finish()) as ArrayRef)]).expect("batch")
    };
    let first = schema_batch(0, 1);
    let file = std::fs::File::create(path).expect("input file");
    let mut w = arrow_ipc::writer::FileWriter::try_new(std::io::BufWriter::new(file), &first.schema()).expect("writer");
    // Batches of 4096 rows, as a writer streaming traffic to a file would leave them.
    for start in (0..rows).step_by(4096) {
        w.write(&schema_batch(start, 4096.min(rows - start))).expect("write");
    }
    w.finish().expect("finish");
}

/// A graph that costs next to nothing per row over the same file: the argmax of the
/// pixels. Its replay is all files: the replay's own thread holds it back.
const CHEAP_GRAPH: &str = "name: cheap
inputs:
  pixels: f32[64]
nodes:
  top:
    kind: map
    op: argmax
    input: input.pixels
outputs:
  label: top.label
";

/// `weir replay` of `digits.yaml` and of [`CHEAP_GRAPH`] over `input` (and of
/// `digits.yaml` over the same rows as `parquet`, and from `input` to a Parquet output)
/// on one worker per core, reading on the replay's own thread (`readers: Some(0)`), by
/// default (which moves to reading threads once the replay's thread holds the graph
/// back), and on one reading thread per core, alternating, `rounds` rounds: rows/s, the
/// reading threads the default used, and the CPU per row of the replay's own thread and
/// of the thread writing the output.
fn readers(
    (input, parquet): (&InputFile, &InputFile),
    out_dir: &std::path::Path,
    rows: usize,
    cores: usize,
    rounds: usize,
) {
    let cheap = out_dir.join("cheap.yaml");
    std::fs::write(&cheap, CHEAP_GRAPH).expect("cheap.yaml");
    let digits = graphs_dir().join("digits.yaml");
    // (graph, input, output): the third also writes Parquet, whose encoding costs the
    // writing thread far more than Arrow IPC's.
    let runs = [
        (digits.clone(), input, "arrow"),
        (cheap, input, "arrow"),
        (digits.clone(), parquet, "arrow"),
        (digits, input, "parquet"),
    ];
    for (graph, input, output) in runs {
        let engine =
            Engine::start(vec![replay_plan(&graph, cores)], EngineConfig { workers: cores, ..EngineConfig::default() })
                .expect("engine");
        let name = graph.file_name().expect("name").to_string_lossy().into_owned();
        let out_name = if output == "parquet" { "Parquet" } else { "Arrow IPC" };
        let name = format!("{name} from {} to {out_name}", input.format.name());
        let settings = [
            ("its own thread (--readers 0)", Readers::Own),
            ("the default", Readers::auto()),
            ("one thread per core (--readers N)", Readers::Threads(cores)),
        ];
        let mut figures: Vec<Figures> = vec![Figures::default(); settings.len()];
        for _ in 0..rounds {
            for ((_, readers), Figures(rates, own_ns, writing_ns, used)) in settings.iter().zip(figures.iter_mut()) {
                let out = out_dir.join(format!("readers.{output}"));
                let options = ReplayOptions { readers: *readers, ..ReplayOptions::new(out) };
                let (t, own) = (Instant::now(), thread_cpu_ns());
                let summary =
                    replay::replay(&engine.graphs()[0], std::slice::from_ref(input), &options).expect("replay");
                rates.push(rows as f64 / t.elapsed().as_secs_f64());
                own_ns.push((thread_cpu_ns() - own) as f64 / rows as f64);
                writing_ns.push(summary.writing_cpu.unwrap_or_default().as_nanos() as f64 / rows as f64);
                assert_eq!((summary.rows, summary.errors), (rows as u64, 0));
                *used = (*used).max(summary.readers);
            }
        }
        let base = median(figures[0].0.clone());
        for ((setting, _), Figures(rates, own_ns, writing_ns, used)) in settings.iter().zip(figures) {
            let (rate, own, writing) = (median(rates), median(own_ns), median(writing_ns));
            println!(
                "| replay readers | weir replay {name}, {rows} rows, {cores} workers, the file read on {setting}: {used} reading threads at most; \
                 the replay's own thread {own:.1} ns of CPU per row (at most {:.1} M rows/s on any number of cores); the writing thread {writing:.1} ns \
                 (at most {:.1} M rows/s) | {rate:.0} rows/s (median) | {:.2} of its own thread's |",
                1e3 / own,
                1e3 / writing,
                rate / base
            );
        }
    }
}

/// Per setting of [`readers`]: each round's rows/s, CPU per row of the replay's own
/// thread and of the writing thread; the most reading threads used.
#[derive(Clone, Default)]
struct Figures(Vec<f64>, Vec<f64>, Vec<f64>, usize);

/// The plan of `graph` for a replay on `workers` workers: its bound on rows in flight
/// raised to the replay's default, as `weir replay` raises it.
fn replay_plan(graph: &std::path::Path, workers: usize) -> weir_engine::Plan {
    let mut plan = load_plan(graph).expect("graph");
    plan.serving.max_in_flight = plan.serving.max_in_flight.max(replay::default_in_flight(workers, 1024));
    plan
}

/// The CPU time a thread has run so far, from its `schedstat` file (nanoseconds; the
/// process's `/proc/self/stat`, which `load.rs` reads, counts in 10 ms ticks: too coarse
/// for replays of 20 ms).
fn schedstat_ns(path: &std::path::Path) -> Option<u64> {
    std::fs::read_to_string(path).ok()?.split_whitespace().next()?.parse().ok()
}

/// The CPU time the calling thread has run so far (nanoseconds).
fn thread_cpu_ns() -> u64 {
    schedstat_ns("/proc/thread-self/schedstat".as_ref()).unwrap_or(0)
}

/// The CPU time every thread of this process has run so far (nanoseconds); threads that
/// have ended are not counted.
fn cpu_ns() -> u64 {
    let Ok(tasks) = std::fs::read_dir("/proc/self/task") else { return 0 };
    tasks.filter_map(|t| schedstat_ns(&t.ok()?.path().join("schedstat"))).sum()
}

/// The replay's work beside the graph, on this thread: read `input`, decode it by
/// blocks of 1024 rows as the graph's inputs, encode an answer per block (fillers of the
/// graph's output types) and write it to `output`. Returns rows/s, and the seconds spent
/// reading, decoding, encoding and writing.
fn files_alone(graph: &weir_engine::GraphHandle, input: &InputFile, output: &std::path::Path) -> (f64, [f64; 4]) {
    let outputs = &graph.schema().outputs;
    let mut spent = [0.0f64; 4];
    let mut lap = |phase: usize, since: &mut Instant| {
        let now = Instant::now();
        spent[phase] += (now - *since).as_secs_f64();
        *since = now;
    };
    let start = Instant::now();
    let mut since = start;
    let mut sink = None;
    let mut rows = 0u64;
    for batch in files::open(input, 1024).expect("open") {
        let batch = batch.expect("batch");
        lap(0, &mut since);
        for offset in (0..batch.num_rows()).step_by(1024) {
            let slice = batch.slice(offset, 1024.min(batch.num_rows() - offset));
            std::hint::black_box(decode_pixels(graph, &slice, rows));
            lap(1, &mut since);
            let n = slice.num_rows();
            let batch = encode(graph, outputs.iter().map(|f| Column::filler(&f.ty, n)).collect());
            lap(2, &mut since);
            write_batch(&mut sink, output, &batch);
            rows += n as u64;
            lap(3, &mut since);
        }
    }
    sink.expect("rows").finish().expect("finish");
    lap(3, &mut since);
    (rows as f64 / start.elapsed().as_secs_f64(), spent)
}

fn main() {
    let args = weir::bench::BenchArgs::start();
    let default_rows = if args.quick { 20_000 } else { 500_000 };
    let rows: usize = std::env::var("REPLAY_ROWS").ok().and_then(|v| v.parse().ok()).unwrap_or(default_rows);
    let dir = tempfile::tempdir().expect("tempdir");
    // `KEEP_INPUTS=DIR` writes the input files there and keeps them (to profile
    // `weir replay` on them afterwards).
    let kept = std::env::var_os("KEEP_INPUTS").map(std::path::PathBuf::from);
    let inputs_dir = kept.clone().unwrap_or_else(|| dir.path().to_path_buf());
    let input = inputs_dir.join("digits.arrow");
    write_input(&input, rows);

    let set = digits(Split::Train).expect("digits");
    let pixels: Vec<f32> = (0..rows).flat_map(|i| set[i % set.len()].pixels.iter().copied()).collect();
    let raw = Raw::load();
    let engine = Engine::start(
        vec![replay_plan(&graphs_dir().join("digits.yaml"), 1)],
        EngineConfig { workers: 1, ..EngineConfig::default() },
    )
    .expect("engine");
    let graph = &engine.graphs()[0];
    // One worker per core, as `weir replay` runs by default.
    let cores = weir_engine::cores();
    let wide = Engine::start(
        vec![replay_plan(&graphs_dir().join("digits.yaml"), cores)],
        EngineConfig { workers: cores, ..EngineConfig::default() },
    )
    .expect("engine");
    let inputs = replay::discover(std::slice::from_ref(&input), None).expect("input");
    let options = ReplayOptions::new(dir.path().join("out.arrow"));

    let (mut one, mut two, mut weir_rates, mut vs_one, mut vs_two) = (vec![], vec![], vec![], vec![], vec![]);
    let (mut wide_rates, mut wide_vs_two) = (vec![], vec![]);
    // The replay hand-written without an engine, on one thread per core: with a
    // reading thread, and without. Per round: rows/s, of the raw passes on 2 threads,
    // cores busy, and weir's replay on one worker per core against it.
    let mut hand: [[Vec<f64>; 4]; 3] = Default::default();
    // The files alone: their CPU per row as a share of the raw passes' on two threads.
    let (mut io_rates, mut io_share, mut io_spent) = (vec![], vec![], [0.0f64; 4]);
    // Time the replicas spent in forward passes during the replays, against the raw
    // passes over the same rows: what running inside the graph adds to the models.
    let (mut replay_forward_s, mut raw_s) = (0.0f64, 0.0f64);
    let forward_ns_of = |g: &weir_engine::GraphHandle| g.batch_stats().iter().map(|(_, s)| s.compute_ns).sum::<u64>();
    let forward_ns = || forward_ns_of(graph);
    // The same for the replays on one worker per core (computed on the workers), against
    // the raw passes' CPU on two threads (twice their wall time).
    let (mut wide_forward_s, mut raw2_cpu_s) = (0.0f64, 0.0f64);
    // The cores the replays on one worker per core kept busy: CPU time over wall time.
    let (mut busy, mut raw_busy) = (vec![], vec![]);
    // The CPU per row of the thread that calls `replay` (the replay's own thread),
    // during the replays on one worker per core: work no other core can take, so the
    // most rows/s a replay reaches on any number of cores is one over it.
    let mut own_ns = vec![];
    for _ in 0..if args.quick { 2 } else { 15 } {
        let (r1, _) = raw.run(&pixels);
        let half = rows / 2 * 64;
        let t = Instant::now();
        let cpu = std::thread::scope(|s| {
            let (lo, hi) = pixels.split_at(half);
            let a = s.spawn(|| raw.run(lo));
            let (_, cpu) = raw.run(hi);
            cpu + a.join().expect("thread").1
        });
        let r2 = rows as f64 / t.elapsed().as_secs_f64();
        raw_busy.push(cpu / t.elapsed().as_secs_f64());
        let (t, before) = (Instant::now(), forward_ns());
        let summary = replay::replay(graph, &inputs, &options).expect("replay");
        let rw = rows as f64 / t.elapsed().as_secs_f64();
        replay_forward_s += (forward_ns() - before) as f64 / 1e9;
        raw_s += rows as f64 / r1;
        assert_eq!((summary.rows, summary.errors), (rows as u64, 0));
        let (t, before, cpu, own) = (Instant::now(), forward_ns_of(&wide.graphs()[0]), cpu_ns(), thread_cpu_ns());
        let summary = replay::replay(&wide.graphs()[0], &inputs, &options).expect("replay");
        own_ns.push((thread_cpu_ns() - own) as f64 / rows as f64);
        busy.push((cpu_ns() - cpu) as f64 / 1e9 / t.elapsed().as_secs_f64());
        wide_forward_s += (forward_ns_of(&wide.graphs()[0]) - before) as f64 / 1e9;
        raw2_cpu_s += 2.0 * rows as f64 / r2;
        let rw_wide = rows as f64 / t.elapsed().as_secs_f64();
        assert_eq!((summary.rows, summary.errors), (rows as u64, 0));
        let hand_rounds = [
            hand_written(&raw, graph, &inputs[0], &dir.path().join("hand.arrow"), cores),
            hand_written_shared(&raw, graph, &inputs[0], &dir.path().join("hand-shared.arrow"), cores),
            mapped(&raw, graph, &input, &dir.path().join("hand-mapped.arrow"), cores),
        ];
        // The hand-written replays answer what weir's does.
        for hand in ["hand.arrow", "hand-shared.arrow", "hand-mapped.arrow"] {
            assert_eq!(answers(&dir.path().join(hand)), answers(&dir.path().join("out.arrow")), "{hand}");
        }
        for (figures, (rate, cpu)) in hand.iter_mut().zip(hand_rounds) {
            let [rates, vs_raw, busy, weir_vs] = figures;
            rates.push(rate);
            vs_raw.push(rate / r2);
            busy.push(cpu * rate / rows as f64);
            weir_vs.push(rw_wide / rate);
        }
        let (io, spent) = files_alone(graph, &inputs[0], &dir.path().join("io.arrow"));
        io_spent.iter_mut().zip(spent).for_each(|(total, s)| *total += s);
        io_rates.push(io);
        io_share.push((1.0 / io) / (2.0 / r2));
        wide_rates.push(rw_wide);
        wide_vs_two.push(rw_wide / r2);
        one.push(r1);
        two.push(r2);
        weir_rates.push(rw);
        vs_one.push(rw / r1);
        vs_two.push(rw / r2);
    }
    let stats = graph.batch_stats();
    let batches: Vec<String> = stats.iter().map(|(n, s)| format!("{n} {:.1}", s.mean_batch())).collect();
    let (lo1, hi1) = range(&vs_one);
    let (lo2, hi2) = range(&vs_two);
    println!("| replay | raw: standardize + softmax + MLP forward, batches of {BATCH}, rows in memory, 1 thread (baseline) | {:.0} rows/s (median) | 1.00 |", median(one));
    println!(
        "| replay | raw: the same on 2 threads, half the rows each (baseline) | {:.0} rows/s (median) | 1.00 |",
        median(two)
    );
    println!(
        "| replay | weir replay digits.yaml, Arrow file → Arrow file, {rows} rows, 1 worker; mean batch {} | {:.0} rows/s (median) | {:.2} of raw 1 thread (range {lo1:.2} to {hi1:.2}); {:.2} of raw 2 threads (range {lo2:.2} to {hi2:.2}) |",
        batches.join(", "),
        median(weir_rates),
        median(vs_one),
        median(vs_two)
    );
    let layouts = [
        format!("this thread reads, decodes, encodes and writes; {cores} threads take blocks from one queue (weir's layout)"),
        format!("no reading thread: {cores} threads each take the next batch, decode, compute, encode, and write what is next in order"),
        "the same, the file memory-mapped: each batch decoded without a copy and computed where it lies (no read call, no decode step)".to_string(),
    ];
    for (layout, [rates, vs_raw, busy, weir_vs]) in layouts.iter().zip(hand) {
        let (lo, hi) = range(&vs_raw);
        let (weir_lo, weir_hi) = range(&weir_vs);
        println!(
            "| replay | hand-written, no engine: {layout}; standardize, both models, mean and argmax per batch of {BATCH}; \
             cores busy {:.2} | {:.0} rows/s (median) | {:.2} of raw 2 threads (range {lo:.2} to {hi:.2}); weir replay on {cores} \
             workers: {:.2} of it (range {weir_lo:.2} to {weir_hi:.2}) |",
            median(busy),
            median(rates),
            median(vs_raw),
            median(weir_vs),
        );
    }
    let (lo, hi) = range(&wide_vs_two);
    let ratio = median(wide_vs_two);
    println!(
        "| replay | weir replay digits.yaml, the same, {cores} workers (one per core) | {:.0} rows/s (median) | {ratio:.2} of raw 2 threads \
         (range {lo:.2} to {hi:.2}); target ≥ 0.85: {} |",
        median(wide_rates),
        if ratio >= 0.85 { "met" } else { "missed" }
    );
    let share = median(io_share);
    let io_total: f64 = io_spent.iter().sum();
    let [read, decode, encode, write] = io_spent.map(|s| 100.0 * s / io_total);
    println!(
        "| replay | the files alone: read, decode by 1024 rows, encode answers of the output types, write; no graph, 1 thread \
         (read {read:.0}%, decode {decode:.0}%, encode {encode:.0}%, write {write:.0}%) | {:.0} rows/s (median) | \
         CPU per row {share:.2} of the raw passes' on 2 threads: at most {:.2} of raw 2 threads for any replay doing both on these cores |",
        median(io_rates),
        1.0 / (1.0 + share)
    );
    println!(
        "| replay | the replicas' forward passes during the replays, against the raw passes over the same rows | {replay_forward_s:.2} s vs {raw_s:.2} s | {:.2}x |",
        replay_forward_s / raw_s
    );
    let (lo, hi) = range(&busy);
    println!(
        "| replay | cores busy during the replays on {cores} workers (CPU time of every thread over wall time) | {:.2} (median; range {lo:.2} to {hi:.2}) | of {cores}; the raw passes on 2 threads: {:.2} |",
        median(busy),
        median(raw_busy)
    );
    println!(
        "| replay | the forward passes during the replays on {cores} workers, against the raw passes' CPU on 2 threads | {wide_forward_s:.2} s vs {raw2_cpu_s:.2} s | {:.2}x |",
        wide_forward_s / raw2_cpu_s
    );
    let own = median(own_ns);
    println!(
        "| replay | the replay's own thread (the one calling `replay`) during the replays on {cores} workers: CPU per row | {own:.1} ns (median) | \
         at most {:.1} M rows/s on any number of cores |",
        1e3 / own
    );
    drop(engine);
    let parquet = inputs_dir.join("digits.parquet");
    write_parquet(&input, &parquet);
    let parquet = replay::discover(std::slice::from_ref(&parquet), None).expect("parquet input");
    readers((&inputs[0], &parquet[0]), dir.path(), rows, cores, if args.quick { 2 } else { 7 });

    // Peak memory of the binary for the input and for ten times the input.
    let mut rss = Vec::new();
    let rows = if args.quick { 20_000 } else { 100_000 };
    for (label, n) in [("1x", rows), ("10x", rows * 10)] {
        let path = inputs_dir.join(format!("{label}.arrow"));
        write_input(&path, n);
        let out = Command::new(env!("CARGO_BIN_EXE_weir"))
            .args(["replay", "graphs/digits.yaml", "--input"])
            .arg(&path)
            .arg("--output")
            .arg(dir.path().join(format!("{label}.out.arrow")))
            .current_dir(env!("CARGO_MANIFEST_DIR"))
            .output()
            .expect("weir replay");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(out.status.success(), "{stderr}");
        let summary = stderr.lines().find(|l| l.starts_with("weir: replay:")).expect("summary").to_string();
        let mib: f64 = summary
            .split("peak RSS ")
            .nth(1)
            .and_then(|s| s.split_whitespace().next())
            .and_then(|s| s.parse().ok())
            .expect("peak RSS");
        let size = std::fs::metadata(&path).expect("size").len() as f64 / (1 << 20) as f64;
        rss.push(mib);
        println!(
            "| replay memory | weir replay digits.yaml, {label} input ({n} rows, {size:.0} MiB Arrow file) | peak RSS {mib:.1} MiB | {:.2}x of 1x |",
            mib / rss[0]
        );
    }
}
