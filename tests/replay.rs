//! `weir replay` as a user runs it: Arrow IPC and Parquet files in, one output row per
//! input row out, bit-identical to `weir run`; failed rows in the errors file; inputs
//! that do not fit the graph refused before any row runs; memory flat in the input size.
//!
//! Over 600 lines, and one concept: `weir replay`'s contract with its files.
#![allow(clippy::unwrap_used)] // a test or benchmark fails loudly on the first surprise

mod common;

use std::fs::File;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use arrow_array::builder::{FixedSizeListBuilder, Float32Builder};
use arrow_array::cast::AsArray;
use arrow_array::types::{Float32Type, Int64Type, UInt64Type};
use arrow_array::{Array, ArrayRef, Float64Array, Int64Array, RecordBatch, StringArray};
use arrow_schema::{DataType, Field, Schema};
use serde_json::{json, Value as Json};
use weir_connectors::replay::{self, Readers, ReplayOptions};
use weir_engine::spec::{Batching, Serving};

use common::{text, weir_cli as weir};

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

/// `n` digits rows (the test split, repeated) with an `id` column.
fn digits_batch(first_id: i64, n: usize) -> RecordBatch {
    let set = weir::datasets::digits(weir::datasets::Split::Test).unwrap();
    let mut pixels = FixedSizeListBuilder::new(Float32Builder::new(), 64);
    for i in 0..n {
        pixels.values().append_slice(&set[i % set.len()].pixels);
        pixels.append(true);
    }
    let ids: ArrayRef = Arc::new(Int64Array::from_iter_values(first_id..first_id + n as i64));
    RecordBatch::try_from_iter([("id", ids), ("pixels", Arc::new(pixels.finish()) as ArrayRef)]).unwrap()
}

/// `batch` (of [`digits_batch`]) with nullable pixels, null at its rows `rows`.
fn with_null_pixels(batch: &RecordBatch, rows: &[usize]) -> RecordBatch {
    let pixels = batch.column_by_name("pixels").unwrap().as_fixed_size_list();
    let mut nulled = FixedSizeListBuilder::new(Float32Builder::new(), 64);
    for r in 0..batch.num_rows() {
        nulled.values().append_slice(pixels.value(r).as_primitive::<Float32Type>().values());
        nulled.append(!rows.contains(&r));
    }
    let id = Arc::clone(batch.column_by_name("id").unwrap());
    RecordBatch::try_from_iter_with_nullable([
        ("id", id, false),
        ("pixels", Arc::new(nulled.finish()) as ArrayRef, true),
    ])
    .unwrap()
}

/// `n` diamond rows `{a: i/7, b: 1 - i/3, c: 0.25 i}` with an `id`; `b` is null for
/// every id in `null_b`.
fn diamond_batch(n: usize, null_b: &[usize]) -> RecordBatch {
    let col = |f: &dyn Fn(usize) -> Option<f64>| -> ArrayRef { Arc::new(Float64Array::from_iter((0..n).map(f))) };
    RecordBatch::try_from_iter([
        ("id", Arc::new(Int64Array::from_iter_values(0..n as i64)) as ArrayRef),
        ("a", col(&|i| Some(i as f64 / 7.0))),
        ("b", col(&|i| (!null_b.contains(&i)).then_some(1.0 - i as f64 / 3.0))),
        ("c", col(&|i| Some(0.25 * i as f64))),
    ])
    .unwrap()
}

fn write_arrow(path: &Path, batches: &[RecordBatch]) {
    let mut w = arrow_ipc::writer::FileWriter::try_new(File::create(path).unwrap(), &batches[0].schema()).unwrap();
    for b in batches {
        w.write(b).unwrap();
    }
    w.finish().unwrap();
}

fn write_parquet(path: &Path, batches: &[RecordBatch]) {
    write_parquet_groups(path, batches, None);
}

/// A Parquet file of row groups of `group_rows` rows (the writer's default: 1Mi rows).
fn write_parquet_groups(path: &Path, batches: &[RecordBatch], group_rows: Option<usize>) {
    let props = parquet::file::properties::WriterProperties::builder().set_max_row_group_row_count(group_rows);
    let schema = batches[0].schema();
    let mut w = parquet::arrow::ArrowWriter::try_new(File::create(path).unwrap(), schema, Some(props.build())).unwrap();
    for b in batches {
        w.write(b).unwrap();
    }
    w.close().unwrap();
}

/// Every batch of an Arrow IPC or Parquet file, concatenated.
fn read(path: &Path) -> RecordBatch {
    let batches: Vec<RecordBatch> = if path.extension().is_some_and(|e| e == "parquet") {
        parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder::try_new(File::open(path).unwrap())
            .unwrap()
            .build()
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap()
    } else {
        arrow_ipc::reader::FileReader::try_new(File::open(path).unwrap(), None)
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap()
    };
    arrow_select_concat(&batches)
}

fn arrow_select_concat(batches: &[RecordBatch]) -> RecordBatch {
    let schema = batches[0].schema();
    let columns = (0..schema.fields().len())
        .map(|c| {
            let parts: Vec<&dyn Array> = batches.iter().map(|b| b.column(c).as_ref()).collect();
            arrow_select::concat::concat(&parts).unwrap()
        })
        .collect();
    RecordBatch::try_new(schema, columns).unwrap()
}

/// The same rows as JSON lines, for `weir run`.
fn jsonl(batch: &RecordBatch, fields: &[&str]) -> String {
    let mut out = String::new();
    for row in 0..batch.num_rows() {
        let mut obj = serde_json::Map::new();
        for f in fields {
            let col = batch.column_by_name(f).unwrap();
            let v = match col.data_type() {
                arrow_schema::DataType::Float64 => {
                    json!(col.as_primitive::<arrow_array::types::Float64Type>().value(row))
                }
                _ => json!(col.as_fixed_size_list().value(row).as_primitive::<Float32Type>().values().to_vec()),
            };
            obj.insert(f.to_string(), v);
        }
        out.push_str(&Json::Object(obj).to_string());
        out.push('\n');
    }
    out
}

/// `weir run GRAPH` over `rows` (JSON lines): the answers, one per line.
fn weir_run(dir: &Path, graph: &str, rows: &str) -> Vec<Json> {
    let input = dir.join("rows.jsonl");
    std::fs::write(&input, rows).unwrap();
    let out = weir(&["run", graph, "--input", s(&input)]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    text(&out.stdout).lines().map(|l| serde_json::from_str(l).unwrap()).collect()
}

/// `weir replay` with `args`; asserts success and returns its summary line.
fn weir_replay(args: &[&str]) -> String {
    let out = weir(&[&["replay"], args].concat());
    let stderr = text(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert!(!stderr.contains('\r'), "no progress line when stderr is not a terminal: {stderr}");
    stderr.lines().find(|l| l.starts_with("weir: replay:")).unwrap_or_else(|| panic!("summary in {stderr}")).to_string()
}

/// Asserts that the `f32` bits of a replayed value equal those of `weir run`'s JSON.
fn same_bits(replayed: f32, run: &Json, what: &str) {
    let run = run.as_f64().unwrap_or_else(|| panic!("{what}: {run}")) as f32;
    assert_eq!(replayed.to_bits(), run.to_bits(), "{what}: replay {replayed} vs run {run}");
}

#[test]
fn digits_replay_is_bit_identical_to_weir_run_from_arrow_and_parquet_at_1_and_2_workers() {
    let dir = tempfile::tempdir().unwrap();
    // Three batches of uneven sizes; chunks of 100 rows make batches of every size.
    let batches = [digits_batch(0, 500), digits_batch(500, 37), digits_batch(537, 543)];
    let all = arrow_select_concat(&batches);
    let expected = weir_run(dir.path(), "graphs/digits.yaml", &jsonl(&all, &["pixels"]));
    assert_eq!(expected.len(), 1080);
    let (arrow_in, parquet_in) = (dir.path().join("in.arrow"), dir.path().join("in.parquet"));
    write_arrow(&arrow_in, &batches);
    write_parquet(&parquet_in, &batches);
    // Six row groups (five of 200 rows), to be decoded on three threads.
    let groups_in = dir.path().join("groups.parquet");
    write_parquet_groups(&groups_in, &batches, Some(200));

    // The last two: the Arrow file, and the row groups, read and decoded on 3 threads
    // beside the replay's own.
    for (input, output, workers, readers) in [
        (&arrow_in, dir.path().join("out.arrow"), "1", "0"),
        (&parquet_in, dir.path().join("out.parquet"), "1", "0"),
        (&arrow_in, dir.path().join("out2.arrow"), "2", "0"),
        (&arrow_in, dir.path().join("out3.arrow"), "2", "3"),
        (&groups_in, dir.path().join("out4.arrow"), "2", "3"),
    ] {
        let summary = weir_replay(&[
            "graphs/digits.yaml",
            "--input",
            s(input),
            "--output",
            s(&output),
            "--keep",
            "id",
            "--chunk-rows",
            "100",
            "--workers",
            workers,
            "--readers",
            readers,
        ]);
        assert!(summary.contains("1080 rows, 0 errors"), "{summary}");
        assert_eq!(summary.contains("3 reading threads"), readers == "3", "{summary}");
        let got = read(&output);
        assert_eq!(got.num_rows(), 1080);
        let names: Vec<String> = got.schema().fields().iter().map(|f| f.name().clone()).collect();
        assert_eq!(names, ["label", "probs", "id"], "outputs, then the kept columns");
        let (labels, probs, ids) = (
            got.column(0).as_primitive::<Int64Type>(),
            got.column(1).as_fixed_size_list(),
            got.column(2).as_primitive::<Int64Type>(),
        );
        for (row, want) in expected.iter().enumerate() {
            assert_eq!(ids.value(row), row as i64, "input order");
            assert_eq!(labels.value(row), want["label"].as_i64().unwrap(), "row {row}");
            let p = probs.value(row);
            let p = p.as_primitive::<Float32Type>();
            let want = want["probs"].as_array().unwrap();
            assert_eq!(p.len(), want.len());
            for (k, w) in want.iter().enumerate() {
                same_bits(p.value(k), w, &format!("{} row {row} probs[{k}]", input.display()));
            }
        }
    }
}

#[test]
fn diamond_replay_is_bit_identical_and_failed_rows_go_to_the_errors_file() {
    let dir = tempfile::tempdir().unwrap();
    let nulls = [3, 500, 999];
    let batch = diamond_batch(1000, &nulls);
    let expected = weir_run(dir.path(), "graphs/diamond.yaml", &jsonl(&diamond_batch(1000, &[]), &["a", "b", "c"]));
    let input = dir.path().join("in.parquet");
    write_parquet(&input, &[batch]);
    let (output, errors) = (dir.path().join("out.arrow"), dir.path().join("bad.arrow"));
    let summary = weir_replay(&[
        "graphs/diamond.yaml",
        "--input",
        s(&input),
        "--output",
        s(&output),
        "--errors",
        s(&errors),
        "--keep",
        "id",
    ]);
    assert!(summary.contains("1000 rows, 3 errors"), "{summary}");
    let got = read(&output);
    assert_eq!(got.num_rows(), 1000, "one output row per input row, failed ones included");
    let y = got.column_by_name("y").unwrap().as_primitive::<Float32Type>();
    for (row, want) in expected.iter().enumerate() {
        if nulls.contains(&row) {
            assert!(y.is_null(row), "a failed row has null outputs");
        } else {
            same_bits(y.value(row), &want["y"], &format!("row {row}"));
        }
    }
    let bad = read(&errors);
    assert_eq!(bad.num_rows(), 3);
    let rows: Vec<u64> = bad.column_by_name("row").unwrap().as_primitive::<UInt64Type>().values().to_vec();
    assert_eq!(rows, [3, 500, 999]);
    let ids: Vec<i64> = bad.column_by_name("id").unwrap().as_primitive::<Int64Type>().values().to_vec();
    assert_eq!(ids, [3, 500, 999], "kept columns come along");
    let col = |name: &str| bad.column_by_name(name).unwrap().as_string::<i32>().clone();
    assert_eq!(col("code").value(1), "invalid_input");
    assert_eq!(col("node").value(1), "input");
    assert_eq!(col("field").value(1), "b");
    assert_eq!(col("message").value(1), "row 500: null value");
}

#[test]
fn a_failing_model_fills_the_errors_file_with_its_node_and_the_replay_goes_on() {
    let batching = Batching { max_batch_size: 1, max_wait_ms: Some(0), ..Batching::default() };
    let (plan, _) = common::slow::slow_plan(Duration::ZERO, batching, Serving::default());
    let (_engine, graph) = common::start(plan, 1);
    let dir = tempfile::tempdir().unwrap();
    let xs: Vec<f64> = (0..300).map(|i| if i % 100 == 7 { -1.0 } else { i as f64 }).collect();
    let batch = RecordBatch::try_from_iter([("x", Arc::new(Float64Array::from(xs)) as ArrayRef)]).unwrap();
    let input = dir.path().join("in.arrows");
    let mut w = arrow_ipc::writer::StreamWriter::try_new(File::create(&input).unwrap(), &batch.schema()).unwrap();
    w.write(&batch).unwrap();
    w.finish().unwrap();
    let inputs = replay::discover(&[input], None).unwrap();
    let mut options = ReplayOptions::new(dir.path().join("out.arrow"));
    options.chunk_rows = 64;
    let summary = replay::replay(&graph, &inputs, &options).unwrap();
    assert_eq!((summary.rows, summary.errors), (300, 3));
    let bad = read(&dir.path().join("out.errors.arrow"));
    let rows: Vec<u64> = bad.column_by_name("row").unwrap().as_primitive::<UInt64Type>().values().to_vec();
    assert_eq!(rows, [7, 107, 207]);
    let nodes = bad.column_by_name("node").unwrap().as_string::<i32>().clone();
    assert!(nodes.iter().all(|n| n == Some("double")), "the failing node is named");
    let out = read(&dir.path().join("out.arrow"));
    let y = out.column_by_name("y").unwrap().as_primitive::<Float32Type>();
    assert_eq!((y.value(8), y.null_count()), (16.0, 3));
}

#[test]
fn inputs_that_do_not_fit_the_graph_are_refused_before_any_row_runs() {
    let dir = tempfile::tempdir().unwrap();
    let output = dir.path().join("out.arrow");
    // No column c, and a as text.
    let batch = RecordBatch::try_from_iter([
        ("a", Arc::new(StringArray::from(vec!["1"])) as ArrayRef),
        ("b", Arc::new(Float64Array::from(vec![2.0])) as ArrayRef),
    ])
    .unwrap();
    let input = dir.path().join("wrong.arrow");
    write_arrow(&input, &[batch]);
    let out = weir(&["replay", "graphs/diamond.yaml", "--input", s(&input), "--output", s(&output)]);
    assert_eq!(out.status.code(), Some(1));
    let stderr = text(&out.stderr);
    for part in [
        "wrong.arrow: the columns do not fit graph 'diamond'",
        "column 'a' (f32) must be a number (Float16, Float32, Float64, Int8 to Int64 or UInt8 to UInt64), got Utf8",
        "missing column 'c'",
        "the graph expects a: f32",
        "the input has a: Utf8, b: Float64",
    ] {
        assert!(stderr.contains(part), "'{part}' in {stderr}");
    }
    assert!(!output.exists(), "nothing written");

    let input = dir.path().join("ok.arrow");
    write_arrow(&input, &[diamond_batch(3, &[])]);
    let out = weir(&["replay", "graphs/diamond.yaml", "--input", s(&input), "--output", s(&output), "--keep", "ts"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(text(&out.stderr).contains("ok.arrow: --keep ts: no such column; the input has id, a, b, c"));
    let out =
        weir(&["replay", "graphs/diamond.yaml", "--input", s(&input), "--output", s(&dir.path().join("out.csv"))]);
    assert_eq!(out.status.code(), Some(1));
    assert!(text(&out.stderr).contains("out.csv: cannot tell the format"), "{}", text(&out.stderr));

    // A damaged file: exit 2, naming it.
    let bytes = std::fs::read(&input).unwrap();
    let damaged = dir.path().join("damaged.arrow");
    std::fs::write(&damaged, &bytes[..bytes.len() / 2]).unwrap();
    let out = weir(&["replay", "graphs/diamond.yaml", "--input", s(&damaged), "--output", s(&output)]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out.stderr));
    assert!(text(&out.stderr).contains("damaged.arrow: not a readable Arrow IPC"), "{}", text(&out.stderr));
}

#[test]
fn a_file_damaged_midway_stops_the_replay_after_writing_every_row_read() {
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("cut.arrows");
    let batches = [digits_batch(0, 1000), digits_batch(1000, 1000)];
    let mut w = arrow_ipc::writer::StreamWriter::try_new(File::create(&input).unwrap(), &batches[0].schema()).unwrap();
    for b in &batches {
        w.write(b).unwrap();
    }
    w.finish().unwrap();
    let bytes = std::fs::read(&input).unwrap();
    std::fs::write(&input, &bytes[..bytes.len() * 3 / 4]).unwrap(); // into the second batch
    let output = dir.path().join("out.arrow");
    let out = weir(&["replay", "graphs/digits.yaml", "--input", s(&input), "--output", s(&output), "--keep", "id"]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out.stderr));
    let stderr = text(&out.stderr);
    assert!(stderr.contains("cut.arrows: not a readable Arrow IPC stream file (at row 1000)"), "{stderr}");
    let written = read(&output);
    let ids: Vec<i64> = written.column_by_name("id").unwrap().as_primitive::<Int64Type>().values().to_vec();
    assert_eq!(ids, (0..1000).collect::<Vec<i64>>(), "the rows read before the damage are answered and readable");
}

#[test]
fn an_output_that_cannot_be_written_stops_the_replay_with_an_error_naming_it() {
    // /dev/full takes no byte: the thread writing the output fails once its buffer
    // reaches the device, and the replay stops with that error instead of reading on.
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("in.arrow");
    write_arrow(&input, &[digits_batch(0, 20_000)]);
    let errors = dir.path().join("errors.arrow");
    for readers in ["0", "2"] {
        let out = weir(&[
            "replay",
            "graphs/digits.yaml",
            "--input",
            s(&input),
            "--output",
            "/dev/full",
            "--output-format",
            "arrow",
            "--errors",
            s(&errors),
            "--readers",
            readers,
        ]);
        let stderr = text(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "--readers {readers}: {stderr}");
        assert!(stderr.contains("/dev/full") && stderr.contains("No space left on device"), "{stderr}");
        assert!(!stderr.contains("panicked"), "{stderr}");
        // The errors file is whole (its footer written), and empty.
        let reader = arrow_ipc::reader::FileReader::try_new(File::open(&errors).unwrap(), None).unwrap();
        assert_eq!(reader.map(|b| b.unwrap().num_rows()).sum::<usize>(), 0);
    }
}

/// Replays of the damaged digits file `input` read on the replay's thread and on 1 and 4
/// reading threads: each stops with `damage` at row `stop` after answering every row
/// before it in order, with the rows `failed` in the errors file, and all write the
/// same files.
fn stops_alike_whoever_reads(dir: &Path, input: &Path, damage: &str, stop: u64, failed: &[u64]) {
    let name = input.file_name().unwrap().to_string_lossy();
    let mut answers = Vec::new();
    for readers in ["0", "1", "4"] {
        let output = dir.join(format!("out{readers}.arrow"));
        let args = ["replay", "graphs/digits.yaml", "--input", s(input), "--output", s(&output)];
        let out = weir(&[&args[..], &["--keep", "id", "--chunk-rows", "128", "--readers", readers]].concat());
        let stderr = text(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{stderr}");
        assert!(stderr.contains(&format!("{name}: {damage} (at row {stop})")), "{stderr}");
        let written = read(&output);
        let ids = written.column_by_name("id").unwrap().as_primitive::<Int64Type>().values().to_vec();
        let before: Vec<i64> = (0..stop as i64).collect();
        assert_eq!(ids, before, "--readers {readers}: every row before the damage, in order");
        let errors = read(&dir.join(format!("out{readers}.errors.arrow")));
        let rows = errors.column_by_name("row").unwrap().as_primitive::<UInt64Type>().values().to_vec();
        assert_eq!(rows, failed, "--readers {readers}: failed rows named by their place in the input");
        answers.push((written, errors));
    }
    assert!(answers.windows(2).all(|w| w[0] == w[1]), "the same files whoever reads");
}

#[test]
fn an_arrow_file_read_on_threads_answers_fails_and_stops_as_one_read_on_the_replays_thread() {
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("in.arrow");
    // Rows that do not decode (a null pixel) in two batches; the footer kept whole but
    // 8 KiB cut before it, so that the last of the eight batches runs past the end.
    let batches: Vec<RecordBatch> = (0..8).map(|b| digits_batch(b * 300, 300)).collect();
    let batches: Vec<RecordBatch> = batches
        .iter()
        .enumerate()
        .map(|(b, batch)| with_null_pixels(batch, if b == 2 || b == 5 { &[7, 299] } else { &[] }))
        .collect();
    write_arrow(&input, &batches);
    let bytes = std::fs::read(&input).unwrap();
    let footer_at = bytes.len() - 1000;
    std::fs::write(&input, [&bytes[..footer_at - 8192], &bytes[footer_at..]].concat()).unwrap();
    stops_alike_whoever_reads(dir.path(), &input, "not a readable Arrow IPC file", 2100, &[607, 899, 1507, 1799]);
}

/// A Parquet file of eight row groups of 300 rows whose pixels are null at input rows
/// 607, 899, 1507 and 1799, and whose sixth row group's (rows 1500-1799) pixels column
/// starts with a page header overwritten with 0xff bytes.
fn damaged_parquet(path: &Path) {
    let batches: Vec<RecordBatch> = (0..8)
        .map(|b| with_null_pixels(&digits_batch(b * 300, 300), if b == 2 || b == 5 { &[7, 299] } else { &[] }))
        .collect();
    write_parquet_groups(path, &batches, Some(300));
    let metadata = parquet::arrow::arrow_reader::ArrowReaderMetadata::load(
        &File::open(path).unwrap(),
        parquet::arrow::arrow_reader::ArrowReaderOptions::new(),
    )
    .unwrap();
    let group = metadata.metadata().row_group(5);
    assert_eq!((metadata.metadata().num_row_groups(), group.num_rows()), (8, 300));
    let pixels = group.column(1);
    let at = pixels.dictionary_page_offset().unwrap_or(pixels.data_page_offset()) as usize;
    let mut bytes = std::fs::read(path).unwrap();
    bytes[at..at + 32].fill(0xff);
    std::fs::write(path, bytes).unwrap();
}

#[test]
fn parquet_row_groups_and_a_stream_read_on_threads_answer_fail_and_stop_as_on_the_replays_thread() {
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("in.parquet");
    damaged_parquet(&input);
    stops_alike_whoever_reads(dir.path(), &input, "not a readable Parquet file", 1500, &[607, 899]);

    // An Arrow IPC stream is read in order: on one thread of its own at most.
    let stream = dir.path().join("in.arrows");
    let batches: Vec<RecordBatch> =
        (0..4).map(|b| with_null_pixels(&digits_batch(b * 300, 300), if b == 2 { &[7] } else { &[] })).collect();
    let mut w = arrow_ipc::writer::StreamWriter::try_new(File::create(&stream).unwrap(), &batches[0].schema()).unwrap();
    batches.iter().for_each(|b| w.write(b).unwrap());
    w.finish().unwrap();
    let mut answers = Vec::new();
    for readers in ["0", "3"] {
        let output = dir.path().join(format!("stream{readers}.arrow"));
        let args = ["graphs/digits.yaml", "--input", s(&stream), "--output", s(&output), "--keep", "id"];
        let summary = weir_replay(&[&args[..], &["--chunk-rows", "128", "--readers", readers]].concat());
        assert!(summary.contains("1200 rows, 1 errors"), "{summary}");
        assert_eq!(summary.contains("1 reading thread"), readers == "3", "{summary}");
        let errors = read(&dir.path().join(format!("stream{readers}.errors.arrow")));
        let rows = errors.column_by_name("row").unwrap().as_primitive::<UInt64Type>().values().to_vec();
        assert_eq!(rows, [607]);
        answers.push((read(&output), errors));
    }
    assert!(answers[0] == answers[1], "the same files whoever reads the stream");
}

#[test]
fn a_replay_that_holds_its_graph_back_moves_the_rest_of_the_file_to_reading_threads() {
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("in.arrow");
    // Ten batches; the pixels of one row of the sixth are null.
    let batches: Vec<RecordBatch> =
        (0..10).map(|b| with_null_pixels(&digits_batch(b * 200, 200), if b == 5 { &[3] } else { &[] })).collect();
    write_arrow(&input, &batches);
    // The same rows as Parquet, in four row groups: the replay moves inside the first.
    let parquet = dir.path().join("in.parquet");
    write_parquet_groups(&parquet, &batches, Some(500));
    let (_engine, graph) = common::start(weir_engine::load_plan(Path::new("graphs/digits.yaml")).unwrap(), 2);
    let inputs = replay::discover(&[input], None).unwrap();
    let parquet = replay::discover(&[parquet], None).unwrap();
    let mut replays = Vec::new();
    let moved = Readers::OnceStarved { threads: 2, window: Duration::ZERO };
    for (name, inputs, readers) in [
        ("own", &inputs, Readers::Own),
        ("moved", &inputs, moved),
        ("parquet_own", &parquet, Readers::Own),
        ("parquet_moved", &parquet, moved),
    ] {
        let mut options = ReplayOptions::new(dir.path().join(format!("{name}.arrow")));
        options.keep = vec!["id".into()];
        options.chunk_rows = 64;
        // Room for every row: the replay's thread never waits for an answer while it
        // reads, so it is found to hold the graph back after the first window (four
        // batches, no shortest time).
        options.in_flight = Some(1 << 16);
        options.readers = readers;
        let summary = replay::replay(&graph, inputs, &options).unwrap();
        assert_eq!((summary.rows, summary.errors), (2000, 1), "{name}");
        let errors = read(&dir.path().join(format!("{name}.errors.arrow")));
        let rows = errors.column_by_name("row").unwrap().as_primitive::<UInt64Type>().values().to_vec();
        assert_eq!(rows, [1003], "{name}: the failed row named by its place in the input");
        let output = read(&dir.path().join(format!("{name}.arrow")));
        let ids = output.column_by_name("id").unwrap().as_primitive::<Int64Type>().values().to_vec();
        assert_eq!(ids, (0..2000).collect::<Vec<i64>>(), "{name}: input order");
        replays.push((summary.readers, output, errors));
    }
    let threads: Vec<usize> = replays.iter().map(|r| r.0).collect();
    assert_eq!(threads, [0, 2, 0, 2], "the second and fourth replays moved to two reading threads");
    assert!(replays.windows(2).all(|w| w[0].1 == w[1].1 && w[0].2 == w[1].2), "the same files");
}

#[test]
fn readers_are_refused_for_labelled_replays() {
    let out = weir(&[
        "replay",
        "graphs/phishing-online.yaml",
        "--input",
        "x.arrow",
        "--prequential",
        "label",
        "--readers",
        "2",
    ]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out.stderr));
    assert!(
        text(&out.stderr).contains("--readers does not apply to --prequential or --feedback"),
        "{}",
        text(&out.stderr)
    );
}

#[test]
fn a_directory_replays_its_files_in_name_order() {
    let dir = tempfile::tempdir().unwrap();
    let inputs = dir.path().join("day");
    std::fs::create_dir(&inputs).unwrap();
    write_parquet(&inputs.join("part-2.parquet"), &[digits_batch(100, 50)]);
    write_arrow(&inputs.join("part-1.arrow"), &[digits_batch(0, 100)]);
    std::fs::write(inputs.join("README.txt"), "not an input").unwrap();
    let output = dir.path().join("out.parquet");
    let summary =
        weir_replay(&["graphs/digits.yaml", "--input", s(&inputs), "--output", s(&output), "--keep", "id", "--quiet"]);
    assert!(summary.contains("150 rows, 0 errors"), "{summary}");
    let ids: Vec<i64> = read(&output).column_by_name("id").unwrap().as_primitive::<Int64Type>().values().to_vec();
    assert_eq!(ids, (0..150).collect::<Vec<i64>>());
}

#[test]
fn replaying_again_replaces_the_last_output_whole_and_writes_through_a_symlink() {
    let dir = tempfile::tempdir().unwrap();
    let (big, small) = (dir.path().join("big.arrow"), dir.path().join("small.arrow"));
    write_arrow(&big, &[digits_batch(0, 3000)]);
    write_arrow(&small, &[digits_batch(5000, 700)]);
    let output = dir.path().join("out.arrow");
    let replay = |input: &Path, output: &Path| {
        weir_replay(&["graphs/digits.yaml", "--input", s(input), "--output", s(output), "--keep", "id", "--quiet"])
    };
    replay(&big, &output);
    // The second replay's output is shorter: nothing of the first may remain.
    assert!(replay(&small, &output).contains("700 rows, 0 errors"));
    let ids: Vec<i64> = read(&output).column_by_name("id").unwrap().as_primitive::<Int64Type>().values().to_vec();
    assert_eq!(ids, (5000..5700).collect::<Vec<i64>>());
    let mut names: Vec<String> =
        std::fs::read_dir(dir.path()).unwrap().map(|e| e.unwrap().file_name().to_string_lossy().into_owned()).collect();
    names.sort();
    // The replaced outputs were moved aside and deleted before the replay ended.
    assert_eq!(names, ["big.arrow", "out.arrow", "out.errors.arrow", "small.arrow"]);

    // An output path that is a symbolic link is written through, and stays a link.
    let link = dir.path().join("link.arrow");
    std::os::unix::fs::symlink(&output, &link).unwrap();
    replay(&big, &link);
    assert!(std::fs::symlink_metadata(&link).unwrap().file_type().is_symlink());
    assert_eq!(read(&output).num_rows(), 3000);
}

#[test]
fn an_output_that_is_an_input_or_the_errors_file_is_refused_and_the_input_survives() {
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("day.parquet");
    write_parquet(&input, &[digits_batch(0, 300)]);
    let before = std::fs::read(&input).unwrap();
    let link = dir.path().join("link.parquet");
    std::os::unix::fs::symlink(&input, &link).unwrap();
    let other = dir.path().join("out.parquet");
    let cases: [(&[&str], &Path, &str); 4] = [
        (&["--output", s(&input)], &input, "the output file is also an input"),
        (&["--output", s(&link)], &link, "the output file is also an input"),
        (&["--output", s(&other), "--errors", s(&input)], &input, "the errors file is also an input"),
        (&["--output", s(&other), "--errors", s(&other)], &other, "the errors file is also the output"),
    ];
    for (args, named, says) in cases {
        let out = weir(&[&["replay", "graphs/digits.yaml", "--input", s(dir.path())], args].concat());
        let stderr = text(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{args:?}: {stderr}");
        assert!(stderr.contains(&format!("{}: {says}", named.display())), "{args:?}: {stderr}");
        assert_eq!(std::fs::read(&input).unwrap(), before, "{args:?}: the input must be untouched");
        assert!(!other.exists(), "{args:?}: nothing may be written");
    }
}

/// `batch` with its column `name` cast to `to` (arrow's cast kernels).
fn with_column_as(batch: &RecordBatch, name: &str, to: &DataType) -> RecordBatch {
    let (i, _) = batch.schema().column_with_name(name).unwrap();
    let mut columns = batch.columns().to_vec();
    columns[i] = arrow_cast::cast(&columns[i], to).unwrap();
    let fields: Vec<Field> = batch
        .schema()
        .fields()
        .iter()
        .zip(&columns)
        .map(|(f, c)| Field::new(f.name(), c.data_type().clone(), true))
        .collect();
    RecordBatch::try_new(Arc::new(Schema::new(fields)), columns).unwrap()
}

fn list_of(item: DataType) -> Arc<Field> {
    Arc::new(Field::new_list_field(item, true))
}

/// The outputs of a replay as (label, probs bits) per row.
fn digits_answers(output: &Path) -> Vec<(i64, Vec<u32>)> {
    let got = read(output);
    let (labels, probs) = (got.column(0).as_primitive::<Int64Type>(), got.column(1).as_fixed_size_list());
    (0..got.num_rows())
        .map(|r| {
            let p = probs.value(r);
            (labels.value(r), p.as_primitive::<Float32Type>().values().iter().map(|x| x.to_bits()).collect())
        })
        .collect()
}

/// `weir replay graphs/digits.yaml` of `input`, 300 rows, into `dir/{name}.out.arrow`:
/// its answers (asserting every row was answered).
fn replay_300_digits(dir: &Path, input: &Path, name: &str) -> Vec<(i64, Vec<u32>)> {
    let output = dir.join(format!("{name}.out.arrow"));
    let summary = weir_replay(&["graphs/digits.yaml", "--input", s(input), "--output", s(&output)]);
    assert!(summary.contains("300 rows, 0 errors"), "{name}: {summary}");
    digits_answers(&output)
}

/// `pandas.DataFrame.to_feather` compresses with LZ4 by default, and pyarrow writes ZSTD
/// when asked: compressed Arrow IPC files and streams answer as the plain file does.
#[test]
fn compressed_arrow_files_and_streams_answer_as_the_plain_file_does() {
    use arrow_ipc::writer::{FileWriter, IpcWriteOptions, StreamWriter};
    use arrow_ipc::CompressionType;
    let dir = tempfile::tempdir().unwrap();
    let batches = [digits_batch(0, 150), digits_batch(150, 150)];
    let replay_to = |input: &Path, name: &str| replay_300_digits(dir.path(), input, name);
    let plain = dir.path().join("plain.arrow");
    write_arrow(&plain, &batches);
    let expected = replay_to(&plain, "plain");
    for (name, compression) in [("lz4", CompressionType::LZ4_FRAME), ("zstd", CompressionType::ZSTD)] {
        let options = IpcWriteOptions::default().try_with_compression(Some(compression)).unwrap();
        let file = dir.path().join(format!("{name}.arrow"));
        let mut w =
            FileWriter::try_new_with_options(File::create(&file).unwrap(), &batches[0].schema(), options.clone())
                .unwrap();
        batches.iter().for_each(|b| w.write(b).unwrap());
        w.finish().unwrap();
        assert!(expected == replay_to(&file, name), "{name} file: answers differ from the plain file's");
        let stream = dir.path().join(format!("{name}.arrows"));
        let mut w =
            StreamWriter::try_new_with_options(File::create(&stream).unwrap(), &batches[0].schema(), options).unwrap();
        batches.iter().for_each(|b| w.write(b).unwrap());
        w.finish().unwrap();
        assert!(expected == replay_to(&stream, &format!("{name}-stream")), "{name} stream: answers differ");
    }
}

/// pandas and pyarrow write a list of floats as List<Float64>: the pixels in every list
/// type of every number type answer bit for bit as the FixedSizeList<Float32> file.
#[test]
fn digits_pixels_as_lists_of_float64_float16_or_integers_answer_as_float32_does() {
    let dir = tempfile::tempdir().unwrap();
    let batch = digits_batch(0, 300);
    let replay_to = |input: &Path, name: &str| replay_300_digits(dir.path(), input, name);
    let float32 = dir.path().join("float32.arrow");
    write_arrow(&float32, std::slice::from_ref(&batch));
    let expected = replay_to(&float32, "float32");
    for (name, to) in [
        ("list_float64.parquet", DataType::List(list_of(DataType::Float64))),
        ("list_float64.arrow", DataType::List(list_of(DataType::Float64))),
        ("large_list_float64.arrow", DataType::LargeList(list_of(DataType::Float64))),
        ("fixed_float16.arrow", DataType::FixedSizeList(list_of(DataType::Float16), 64)),
        ("list_int64.parquet", DataType::List(list_of(DataType::Int64))),
        ("large_list_uint8.arrow", DataType::LargeList(list_of(DataType::UInt8))),
        ("fixed_int32.arrow", DataType::FixedSizeList(list_of(DataType::Int32), 64)),
    ] {
        let input = dir.path().join(name);
        let cast = with_column_as(&batch, "pixels", &to);
        if name.ends_with("parquet") {
            write_parquet(&input, &[cast]);
        } else {
            write_arrow(&input, &[cast]);
        }
        assert!(expected == replay_to(&input, name), "{name}: answers differ from the Float32 file's");
    }
}

/// Scalar fields take any float or integer column; the diamond's integer-valued inputs
/// give the same bits as Float64.
#[test]
fn diamond_inputs_as_float16_uint16_int8_and_uint64_answer_as_float64_does() {
    let dir = tempfile::tempdir().unwrap();
    let n = 500;
    let col = |f: &dyn Fn(usize) -> f64| -> ArrayRef { Arc::new(Float64Array::from_iter_values((0..n).map(f))) };
    let batch = RecordBatch::try_from_iter([
        ("a", col(&|i| (i % 100) as f64)),
        ("b", col(&|i| (i % 7) as f64)),
        ("c", col(&|i| (i / 5) as f64)),
    ])
    .unwrap();
    let replay_to = |batch: &RecordBatch, name: &str| {
        let (input, output) = (dir.path().join(format!("{name}.arrow")), dir.path().join(format!("{name}.out.arrow")));
        write_arrow(&input, std::slice::from_ref(batch));
        let summary = weir_replay(&["graphs/diamond.yaml", "--input", s(&input), "--output", s(&output)]);
        assert!(summary.contains("500 rows, 0 errors"), "{name}: {summary}");
        let y = read(&output).column_by_name("y").unwrap().as_primitive::<Float32Type>().values().to_vec();
        y.iter().map(|v| v.to_bits()).collect::<Vec<u32>>()
    };
    let expected = replay_to(&batch, "float64");
    let cast = with_column_as(&batch, "a", &DataType::Float16);
    let cast = with_column_as(&cast, "b", &DataType::UInt16);
    let cast = with_column_as(&cast, "c", &DataType::UInt64);
    assert!(expected == replay_to(&cast, "float16_uint16_uint64"), "answers differ from Float64's");
    let cast = with_column_as(&batch, "b", &DataType::Int8);
    assert!(expected == replay_to(&cast, "int8"), "answers differ from Float64's");
}

/// A graph looking its `str` and `i64` inputs up in tables whose snapshots are
/// LargeUtf8, Dictionary, Float64 and UInt32 columns.
const LOOKUPS: &str = "name: lookups
inputs:
  account: str
tables:
  accounts:
    key: account
    values: {mean: f32, country: str}
    snapshot: accounts.arrow
nodes:
  features: {kind: lookup, table: accounts, key: input.account, missing: default, defaults: {mean: -1.0, country: none}}
outputs:
  mean: features.mean
  country: features.country
";

const BY_ID: &str = "name: by_id
inputs:
  id: i64
tables:
  scores:
    key: id
    key_type: i64
    values: {score: f32}
    snapshot: scores.parquet
nodes:
  found: {kind: lookup, table: scores, key: input.id, missing: default, defaults: {score: -1.0}}
outputs:
  score: found.score
";

#[test]
fn str_and_i64_inputs_and_snapshots_take_large_utf8_utf8_view_dictionaries_and_any_integer() {
    let dir = tempfile::tempdir().unwrap();
    let dictionary = DataType::Dictionary(Box::new(DataType::Int32), Box::new(DataType::Utf8));
    let accounts = RecordBatch::try_from_iter([
        ("account", Arc::new(StringArray::from(vec!["acc-1", "acc-2"])) as ArrayRef),
        ("mean", Arc::new(Float64Array::from(vec![1.5, 2.5])) as ArrayRef),
        ("country", Arc::new(StringArray::from(vec!["PT", "ES"])) as ArrayRef),
    ])
    .unwrap();
    let accounts = with_column_as(&accounts, "account", &DataType::LargeUtf8);
    write_arrow(&dir.path().join("accounts.arrow"), &[with_column_as(&accounts, "country", &dictionary)]);
    let scores = RecordBatch::try_from_iter([
        ("id", Arc::new(Int64Array::from(vec![7, 40_000])) as ArrayRef),
        ("score", Arc::new(Float64Array::from(vec![0.25, 0.75])) as ArrayRef),
    ])
    .unwrap();
    write_parquet(&dir.path().join("scores.parquet"), &[with_column_as(&scores, "id", &DataType::UInt32)]);
    let (lookups, by_id) = (dir.path().join("lookups.yaml"), dir.path().join("by_id.yaml"));
    std::fs::write(&lookups, LOOKUPS).unwrap();
    std::fs::write(&by_id, BY_ID).unwrap();
    let replay_to = |graph: &Path, batch: RecordBatch, name: &str| {
        let (input, output) = (dir.path().join(format!("{name}.arrow")), dir.path().join(format!("{name}.out.arrow")));
        write_arrow(&input, &[batch]);
        let summary = weir_replay(&[s(graph), "--input", s(&input), "--output", s(&output)]);
        assert!(summary.contains("3 rows, 0 errors"), "{name}: {summary}");
        read(&output)
    };

    let accounts = RecordBatch::try_from_iter([(
        "account",
        Arc::new(StringArray::from(vec!["acc-2", "acc-9", "acc-1"])) as ArrayRef,
    )])
    .unwrap();
    for to in [DataType::LargeUtf8, DataType::Utf8View, dictionary.clone()] {
        let got = replay_to(&lookups, with_column_as(&accounts, "account", &to), &format!("accounts_{to}"));
        let mean = got.column_by_name("mean").unwrap().as_primitive::<Float32Type>().values().to_vec();
        assert_eq!(mean, [2.5, -1.0, 1.5], "{to}");
        let country = got.column_by_name("country").unwrap().as_string::<i32>().clone();
        assert_eq!(country.iter().flatten().collect::<Vec<_>>(), ["ES", "none", "PT"], "{to}");
    }

    let ids = RecordBatch::try_from_iter([("id", Arc::new(Int64Array::from(vec![40_000, 8, 7])) as ArrayRef)]).unwrap();
    for to in [DataType::Int32, DataType::UInt16, DataType::UInt64] {
        let got = replay_to(&by_id, with_column_as(&ids, "id", &to), &format!("ids_{to}"));
        let score = got.column_by_name("score").unwrap().as_primitive::<Float32Type>().values().to_vec();
        assert_eq!(score, [0.75, -1.0, 0.25], "{to}");
    }
}

#[test]
fn a_float64_into_an_i64_field_is_refused_and_a_list_of_63_numbers_fails_its_row() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("by_id.yaml"), BY_ID).unwrap();
    let scores = RecordBatch::try_from_iter([
        ("id", Arc::new(Int64Array::from(vec![7])) as ArrayRef),
        ("score", Arc::new(Float64Array::from(vec![0.25])) as ArrayRef),
    ])
    .unwrap();
    write_parquet(&dir.path().join("scores.parquet"), &[scores]);
    let input = dir.path().join("ids.arrow");
    write_arrow(
        &input,
        &[RecordBatch::try_from_iter([("id", Arc::new(Float64Array::from(vec![7.0])) as ArrayRef)]).unwrap()],
    );
    let output = dir.path().join("out.arrow");
    let out = weir(&["replay", s(&dir.path().join("by_id.yaml")), "--input", s(&input), "--output", s(&output)]);
    assert_eq!(out.status.code(), Some(1));
    let stderr = text(&out.stderr);
    assert!(
        stderr.contains("ids.arrow: the columns do not fit graph 'by_id': column 'id' (i64) must be an integer (Int8 to Int64 or UInt8 to UInt64), got Float64"),
        "{stderr}"
    );
    assert!(!output.exists(), "nothing written");

    // Row 5 has 63 numbers: that row fails, naming the field and the row; the others answer.
    let mut pixels = arrow_array::builder::ListBuilder::new(arrow_array::builder::Float64Builder::new());
    for r in 0..10 {
        pixels.values().append_slice(&vec![1.0; if r == 5 { 63 } else { 64 }]);
        pixels.append(true);
    }
    let batch = RecordBatch::try_from_iter([("pixels", Arc::new(pixels.finish()) as ArrayRef)]).unwrap();
    let input = dir.path().join("pixels.parquet");
    write_parquet(&input, &[batch]);
    let errors = dir.path().join("bad.arrow");
    let summary =
        weir_replay(&["graphs/digits.yaml", "--input", s(&input), "--output", s(&output), "--errors", s(&errors)]);
    assert!(summary.contains("10 rows, 1 errors"), "{summary}");
    let bad = read(&errors);
    let col = |name: &str| bad.column_by_name(name).unwrap().as_string::<i32>().value(0).to_string();
    assert_eq!(bad.column_by_name("row").unwrap().as_primitive::<UInt64Type>().value(0), 5);
    assert_eq!((col("code"), col("field")), ("invalid_input".into(), "pixels".into()));
    assert_eq!(col("message"), "row 5: expected 64 numbers (f32[64]), got 63");
}

/// The peak RSS in a summary line, in MiB.
fn peak_rss(summary: &str) -> f64 {
    let at = summary.find("peak RSS ").unwrap_or_else(|| panic!("peak RSS in {summary}"));
    summary[at + 9..].split_whitespace().next().unwrap().parse().unwrap()
}

#[test]
fn peak_memory_does_not_grow_with_the_input() {
    let dir = tempfile::tempdir().unwrap();
    // Read on the replay's thread, and on four reading threads (which the default moves
    // a file to on a machine of 5 cores or more); from an Arrow IPC file, and from a
    // Parquet file of row groups of 5,000 rows (four threads read the 1x file too).
    for (format, readers) in [("arrow", "0"), ("arrow", "4"), ("parquet", "0"), ("parquet", "4")] {
        let mut rss = Vec::new();
        for (name, n) in [("1x", 20_000usize), ("10x", 200_000)] {
            let input = dir.path().join(format!("{name}.{format}"));
            // Batches of 1000 rows, as a writer streaming a day of traffic would leave them.
            let batches: Vec<RecordBatch> = (0..n / 1000).map(|i| digits_batch(i as i64 * 1000, 1000)).collect();
            if format == "arrow" {
                write_arrow(&input, &batches);
            } else {
                write_parquet_groups(&input, &batches, Some(5_000));
            }
            let summary = weir_replay(&[
                "graphs/digits.yaml",
                "--input",
                s(&input),
                "--output",
                s(&dir.path().join(format!("{name}.out.arrow"))),
                "--readers",
                readers,
                // The default grows with the cores (four blocks a worker): pinned, so
                // that only the input's size differs between the two replays.
                "--in-flight",
                "8192",
            ]);
            assert!(summary.contains(&format!("{n} rows, 0 errors")), "{summary}");
            rss.push(peak_rss(&summary));
        }
        // The 10x input is 51 MiB of pixels more than the 1x one; holding it would show.
        let what = format!("{format}, --readers {readers}: peak RSS 1x {:.1} MiB, 10x {:.1} MiB", rss[0], rss[1]);
        eprintln!("replay {what}");
        assert!(rss[1] < rss[0] + 16.0, "{what}");
    }
}
