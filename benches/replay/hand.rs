//! The replay of digits written by hand for this one graph, without an engine: what a
//! replay of these files reaches on these cores with weir's file functions and kernels
//! and nothing else, in three layouts (see `main.rs`). Each computes per batch of
//! [`BATCH`] what the raw passes do ([`Raw`]), then the ensemble mean and the argmax.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use arrow_array::{ArrayRef, RecordBatch};
use weir::datasets::graphs_dir;
use weir_connectors::replay::{files, sink::Sink, FileFormat, InputFile};
use weir_operators::kernel::model::{Activation, Arch, DenseForward, DenseModel};
use weir_operators::kernel::BatchKernel;
use weir_operators::{Chunk, Column};

use crate::{thread_cpu_ns, BATCH};

/// The digits models, loaded from the graph's files.
pub struct Raw {
    mean: Vec<f32>,
    std: Vec<f32>,
    softmax: Arc<DenseModel>,
    mlp: Arc<DenseModel>,
}

impl Raw {
    pub fn load() -> Raw {
        let dir = graphs_dir().join("digits");
        let params = candle_core::safetensors::load(dir.join("standardize.safetensors"), &candle_core::Device::Cpu)
            .expect("standardize params");
        let vec = |name: &str| params[name].to_vec1::<f32>().expect(name);
        let softmax = DenseModel::load(
            &dir.join("softmax.safetensors"),
            Arch::Linear,
            None,
            Activation::None,
            Activation::Softmax,
        )
        .expect("softmax");
        let mlp =
            DenseModel::load(&dir.join("mlp.safetensors"), Arch::Mlp, None, Activation::Relu, Activation::Softmax)
                .expect("mlp");
        Raw { mean: vec("mean"), std: vec("std"), softmax: Arc::new(softmax), mlp: Arc::new(mlp) }
    }

    /// Both models' kernels on the CPU, as a replica builds them.
    pub fn kernels(&self) -> (DenseForward, DenseForward) {
        let device = candle_core::Device::Cpu;
        (self.softmax.instantiate(&device).expect("softmax"), self.mlp.instantiate(&device).expect("mlp"))
    }

    /// Standardize and both forward passes over one batch (64 numbers per row, flat):
    /// the softmax regression's probabilities and the MLP's.
    fn passes(&self, a: &mut dyn BatchKernel, b: &mut dyn BatchKernel, batch: &[f32]) -> (Column, Column) {
        let mut x = Vec::with_capacity(batch.len());
        for row in batch.chunks_exact(64) {
            x.extend(row.iter().zip(self.mean.iter().zip(&self.std)).map(|(x, (m, s))| (x - m) / s));
        }
        let x = Column::Tensor { width: 64, data: x };
        (a.forward(vec![x.clone()]).expect("forward").remove(0), b.forward(vec![x]).expect("forward").remove(0))
    }

    /// Standardize and both forward passes over `pixels` (64 numbers per row, flat), in
    /// batches of [`BATCH`] rows, on the calling thread (inside a one-thread pool);
    /// returns rows/s and the CPU seconds the pool's thread ran.
    pub fn run(&self, pixels: &[f32]) -> (f64, f64) {
        on_one_thread(|| {
            let (mut a, mut b) = self.kernels();
            let (t, cpu) = (Instant::now(), thread_cpu_ns());
            for batch in pixels.chunks(BATCH * 64) {
                std::hint::black_box(self.passes(&mut a, &mut b, batch));
            }
            ((pixels.len() / 64) as f64 / t.elapsed().as_secs_f64(), (thread_cpu_ns() - cpu) as f64 / 1e9)
        })
    }
}

/// Runs `f` on the thread of a one-thread rayon pool, as a replica runs: candle's
/// parallel loops stay on that thread.
fn on_one_thread<R: Send>(f: impl FnOnce() -> R + Send) -> R {
    rayon::ThreadPoolBuilder::new().num_threads(1).build().expect("pool").install(f)
}

/// The pixels of a block of the input file (its one input field, 64 numbers a row),
/// decoded as the replay decodes them; `first_row` is the block's first row number.
pub fn decode_pixels(graph: &weir_engine::GraphHandle, block: &RecordBatch, first_row: u64) -> Vec<f32> {
    let decoded = weir_connectors::arrow::decode_columns(&graph.schema().inputs, block, first_row).expect("decode");
    let Some(Column::Tensor { data, .. }) = decoded.columns.into_iter().next() else { panic!("pixels") };
    data
}

/// The graph's answers for a block (its output columns, `label` and `probs`) as an
/// Arrow record batch, encoded as the replay encodes them.
pub fn encode(graph: &weir_engine::GraphHandle, columns: Vec<Column>) -> RecordBatch {
    let n = columns.first().map_or(0, Column::len);
    let (fields, columns) =
        weir_connectors::arrow::chunk_columns(&graph.schema().outputs, Chunk::new(0, vec![0; n], columns))
            .expect("encode");
    RecordBatch::try_new(Arc::new(arrow_schema::Schema::new(fields)), columns).expect("batch")
}

/// Writes `batch` to the Arrow IPC file at `output`, created with the first batch.
pub fn write_batch(sink: &mut Option<Sink>, output: &std::path::Path, batch: &RecordBatch) {
    sink.get_or_insert_with(|| Sink::create(output, FileFormat::ArrowFile, &batch.schema()).expect("sink"))
        .write(batch)
        .expect("write");
}

/// Standardize, both models, the ensemble mean and the argmax over `pixels` (64
/// numbers per row, flat), in batches of [`BATCH`] as the raw passes: the graph's
/// output columns, the labels and the mean probabilities.
fn compute_block(raw: &Raw, a: &mut dyn BatchKernel, b: &mut dyn BatchKernel, pixels: &[f32]) -> Vec<Column> {
    let rows = pixels.len() / 64;
    let (mut labels, mut probs) = (Vec::with_capacity(rows), Vec::with_capacity(rows * 10));
    for batch in pixels.chunks(BATCH * 64) {
        let (pa, pb) = raw.passes(a, b, batch);
        let (Some((pa, _)), Some((pb, _))) = (pa.f32s(), pb.f32s()) else { panic!("f32 outputs") };
        for (ra, rb) in pa.chunks_exact(10).zip(pb.chunks_exact(10)) {
            let first = probs.len();
            probs.extend(ra.iter().zip(rb).map(|(x, y)| (x + y) / 2.0));
            let row = &probs[first..];
            let best = (0..10).fold(0, |best, i| if row[i] > row[best] { i } else { best });
            labels.push(best as i64);
        }
    }
    vec![Column::I64(labels), Column::Tensor { width: 10, data: probs }]
}

/// The `label` and `probs` columns of an Arrow IPC file, each as one array.
pub fn answers(path: &std::path::Path) -> Vec<ArrayRef> {
    let reader =
        arrow_ipc::reader::FileReader::try_new(std::fs::File::open(path).expect("open"), None).expect("reader");
    let batches: Vec<RecordBatch> = reader.map(|b| b.expect("batch")).collect();
    ["label", "probs"]
        .iter()
        .map(|name| {
            let parts: Vec<&dyn arrow_array::Array> =
                batches.iter().map(|b| b.column_by_name(name).expect(name).as_ref()).collect();
            arrow_select::concat::concat(&parts).expect("concat")
        })
        .collect()
}

/// The hand-written replay without a reading thread: each of `threads` threads takes
/// the file's next batch (under a lock), decodes, computes and encodes its blocks of
/// 1024 rows, then writes every batch that is next in input order (under a lock).
pub fn hand_written_shared(
    raw: &Raw,
    graph: &weir_engine::GraphHandle,
    input: &InputFile,
    output: &std::path::Path,
    threads: usize,
) -> (f64, f64) {
    let start = Instant::now();
    // The batches, their index and the number of the next batch's first row.
    let reader = Mutex::new((files::open(input, 1024).expect("open"), 0usize, 0u64));
    let cpu = each_takes_the_next(raw, threads, output, |a, b| {
        let (batch, index, first_row) = {
            let mut r = reader.lock().unwrap();
            let batch = r.0.next()?.expect("batch");
            let (index, first_row) = (r.1, r.2);
            r.1 += 1;
            r.2 += batch.num_rows() as u64;
            (batch, index, first_row)
        };
        let encoded = (0..batch.num_rows())
            .step_by(1024)
            .map(|offset| {
                let slice = batch.slice(offset, 1024.min(batch.num_rows() - offset));
                let pixels = decode_pixels(graph, &slice, first_row + offset as u64);
                encode(graph, compute_block(raw, a, b, &pixels))
            })
            .collect();
        Some((index, encoded))
    });
    let rows = reader.into_inner().unwrap().2;
    (rows as f64 / start.elapsed().as_secs_f64(), cpu)
}

/// Runs `threads` threads, each with the models' kernels, that take the next batch's
/// answers from `next` (the batch's index in input order and its answers, encoded;
/// `None` once the input is done) and write every batch that is next in input order
/// (under a lock) to `output`, then finish the file. Returns the threads' CPU seconds.
fn each_takes_the_next(
    raw: &Raw,
    threads: usize,
    output: &std::path::Path,
    next: impl Fn(&mut DenseForward, &mut DenseForward) -> Option<(usize, Vec<RecordBatch>)> + Sync,
) -> f64 {
    let writer = Mutex::new((0usize, BTreeMap::<usize, Vec<RecordBatch>>::new(), None::<Sink>));
    let cpu: u64 = std::thread::scope(|s| {
        let workers: Vec<_> = (0..threads)
            .map(|_| {
                s.spawn(|| {
                    on_one_thread(|| {
                        let (mut a, mut b) = raw.kernels();
                        while let Some((index, encoded)) = next(&mut a, &mut b) {
                            // Whoever holds the writer writes every batch that is next in order.
                            let mut guard = writer.lock().unwrap();
                            let (next, done, sink) = &mut *guard;
                            done.insert(index, encoded);
                            while let Some(ready) = done.remove(next) {
                                ready.iter().for_each(|batch| write_batch(sink, output, batch));
                                *next += 1;
                            }
                        }
                        thread_cpu_ns()
                    })
                })
            })
            .collect();
        workers.into_iter().map(|w| w.join().expect("thread")).sum()
    });
    writer.into_inner().unwrap().2.expect("rows").finish().expect("finish");
    cpu as f64 / 1e9
}

/// The replay hand-written without an engine, in weir's layout: this thread reads,
/// decodes by blocks of 1024 rows, encodes and writes with weir's functions (as
/// `files_alone` in `main.rs`); `threads` threads take the blocks from one bounded
/// queue (the first free takes the next) and compute each in batches of [`BATCH`] as
/// the raw passes do (standardize, both models), then the ensemble mean and the argmax; this
/// thread writes the answers in input order. Returns rows/s and the CPU seconds of
/// every thread it ran on.
pub fn hand_written(
    raw: &Raw,
    graph: &weir_engine::GraphHandle,
    input: &InputFile,
    output: &std::path::Path,
    threads: usize,
) -> (f64, f64) {
    let start = Instant::now();
    std::thread::scope(|s| {
        let (to_workers, from_main) = crossbeam_channel::bounded::<(usize, Vec<f32>)>(2 * threads);
        let (to_main, from_workers) = crossbeam_channel::bounded::<(usize, Vec<Column>)>(4 * threads);
        let workers: Vec<_> = (0..threads)
            .map(|_| {
                let (from_main, to_main) = (from_main.clone(), to_main.clone());
                s.spawn(move || {
                    on_one_thread(|| {
                        let (mut a, mut b) = raw.kernels();
                        for (seq, pixels) in from_main {
                            if to_main.send((seq, compute_block(raw, &mut a, &mut b, &pixels))).is_err() {
                                break;
                            }
                        }
                        thread_cpu_ns()
                    })
                })
            })
            .collect();
        drop((from_main, to_main));
        let main_cpu = thread_cpu_ns();
        let mut sink: Option<Sink> = None;
        let mut done = BTreeMap::new();
        let (mut sent, mut written, mut rows) = (0usize, 0usize, 0u64);
        let write = |done: &mut BTreeMap<usize, Vec<Column>>, written: &mut usize, sink: &mut Option<Sink>| {
            while let Some(answers) = done.remove(&*written) {
                *written += 1;
                write_batch(sink, output, &encode(graph, answers));
            }
        };
        for batch in files::open(input, 1024).expect("open") {
            let batch = batch.expect("batch");
            for offset in (0..batch.num_rows()).step_by(1024) {
                let slice = batch.slice(offset, 1024.min(batch.num_rows() - offset));
                let data = decode_pixels(graph, &slice, rows);
                rows += slice.num_rows() as u64;
                // At most 4 blocks a thread unanswered (8192 rows on 2 threads, as weir
                // replay's default `--in-flight`).
                while sent - written - done.len() >= 4 * threads {
                    let (seq, answers) = from_workers.recv().expect("answers");
                    done.insert(seq, answers);
                    write(&mut done, &mut written, &mut sink);
                }
                to_workers.send((sent, data)).expect("send");
                sent += 1;
                done.extend(from_workers.try_iter());
                write(&mut done, &mut written, &mut sink);
            }
        }
        while written < sent {
            let (seq, answers) = from_workers.recv().expect("answers");
            done.insert(seq, answers);
            write(&mut done, &mut written, &mut sink);
        }
        drop(to_workers);
        sink.expect("rows").finish().expect("finish");
        let mut cpu = (thread_cpu_ns() - main_cpu) as f64 / 1e9;
        let elapsed = start.elapsed().as_secs_f64();
        for w in workers {
            cpu += w.join().expect("thread") as f64 / 1e9;
        }
        (rows as f64 / elapsed, cpu)
    })
}

/// The hand-written replay with the input file memory-mapped (the lower bound on what
/// reading it costs): as [`hand_written_shared`], but each thread takes the file's next
/// batch by its offset in the map, decodes it without a copy (its buffers point into the
/// map) and computes the pixels where they lie, with no decode step (the bench's file is
/// valid). `weir replay` does not map its input: a file truncated while mapped kills the
/// process (`SIGBUS`) instead of giving an error; here the bench wrote the file and
/// nothing changes it.
#[allow(unsafe_code)]
pub fn mapped(
    raw: &Raw,
    graph: &weir_engine::GraphHandle,
    input: &std::path::Path,
    output: &std::path::Path,
    threads: usize,
) -> (f64, f64) {
    let start = Instant::now();
    let file = std::fs::File::open(input).expect("open");
    // SAFETY: the bench wrote this file before the rounds and no process writes or
    // truncates it while the map lives (the function's end).
    let map = unsafe { memmap2::Mmap::map(&file) }.expect("map");
    let buffer = arrow_buffer::Buffer::from(bytes::Bytes::from_owner(map));
    let trailer = buffer.len() - 10;
    let footer_len =
        arrow_ipc::reader::read_footer_length(buffer[trailer..].try_into().expect("trailer")).expect("footer");
    let footer = arrow_ipc::root_as_footer(&buffer[trailer - footer_len..trailer]).expect("footer");
    let schema = arrow_ipc::convert::try_fb_to_schema(footer.schema().expect("schema")).expect("schema");
    let decoder = arrow_ipc::reader::FileDecoder::new(Arc::new(schema), footer.version());
    let blocks: Vec<arrow_ipc::Block> = footer.recordBatches().expect("batches").iter().copied().collect();
    let (next_block, rows) = (AtomicUsize::new(0), AtomicUsize::new(0));
    let cpu = each_takes_the_next(raw, threads, output, |a, b| {
        let index = next_block.fetch_add(1, Ordering::Relaxed);
        let block = blocks.get(index)?;
        let len = block.bodyLength() as usize + block.metaDataLength() as usize;
        let data = buffer.slice_with_length(block.offset() as usize, len);
        let batch = decoder.read_record_batch(block, &data).expect("decode").expect("a batch");
        let pixels = batch.column_by_name("pixels").expect("pixels");
        let pixels = pixels.as_any().downcast_ref::<arrow_array::FixedSizeListArray>().expect("f32[64]");
        let values = pixels.values().as_any().downcast_ref::<arrow_array::Float32Array>().expect("f32");
        let (values, n) = (values.values(), batch.num_rows());
        let encoded = (0..n)
            .step_by(1024)
            .map(|first| encode(graph, compute_block(raw, a, b, &values[first * 64..(first + 1024).min(n) * 64])))
            .collect();
        rows.fetch_add(n, Ordering::Relaxed);
        Some((index, encoded))
    });
    (rows.into_inner() as f64 / start.elapsed().as_secs_f64(), cpu)
}
