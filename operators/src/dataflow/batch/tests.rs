//! Tests of the batching operator (`super`): batches, deadlines, inline computing,
//! replica failures and the node's counters.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use super::*;
use crate::dataflow::testing::{
    errors, f32_chunk, f32s, failed_at, ids, of_slot, run, run_with, Driver, Out, TestModel,
};
use crate::value::DType;

/// A `max_wait` no test reaches: only a full batch or a deadline sends rows.
const NEVER: Duration = Duration::from_secs(3600);

fn config(max_batch_size: usize, max_wait: Duration, max_in_flight: usize) -> BatchConfig {
    policy(max_batch_size, BatchPolicy::Fixed(max_wait), max_in_flight)
}

fn policy(max_batch_size: usize, policy: BatchPolicy, max_in_flight: usize) -> BatchConfig {
    let output = FieldType::scalar(DType::F32);
    BatchConfig {
        node: "m".into(),
        inputs: vec![0],
        outputs: vec![output],
        max_batch_size,
        policy,
        replicas: 1,
        max_in_flight,
        inline: None,
        inline_under_load: false,
    }
}

fn run_batch(model: &TestModel, config: BatchConfig, inputs: Vec<(Time, Chunk)>) -> Vec<Out> {
    let (jobs, stats) = model.handles();
    run(inputs, move |_, rows| rows.batch_forward(config, jobs, stats))
}

/// `config` for a node whose worker may compute `model`'s batches itself.
fn inline(model: &TestModel, mut config: BatchConfig) -> BatchConfig {
    config.inline = Some(InlineFactory(Arc::clone(&model.factory)));
    config
}

#[test]
fn a_full_batch_leaves_at_once_with_rows_of_several_chunks() {
    let model = TestModel::start(4);
    let inputs = vec![(0, f32_chunk(1, &[0., 1., 2.])), (1, f32_chunk(2, &[3., 4., 5., 6., 7.]))];
    let out = run_batch(&model, config(4, NEVER, 1), inputs);
    assert_eq!(model.passes(), vec![vec![0., 1., 2., 3.], vec![4., 5., 6., 7.]]);
    // Each chunk leaves whole, at its time, once its last row is computed.
    let got: Vec<(Time, Vec<u64>)> = out.iter().map(|(t, c)| (*t, c.ids.clone())).collect();
    assert_eq!(got, vec![(0, vec![100, 101, 102]), (1, vec![200, 201, 202, 203, 204])]);
    assert_eq!(f32s(&out[0].1.columns[1]), vec![1., 3., 5.]);
    assert_eq!(f32s(&out[1].1.columns[1]), vec![7., 9., 11., 13., 15.]);
    assert_eq!(model.stats.snapshot().sizes, vec![0, 0, 0, 0, 2]);
}

#[test]
fn a_partial_batch_leaves_once_its_oldest_row_has_waited_max_wait() {
    let model = TestModel::start(8);
    let max_wait = Duration::from_millis(100);
    let sent = Instant::now();
    let out = run_batch(&model, config(8, max_wait, 1), vec![(0, f32_chunk(1, &[1., 2., 3.]))]);
    // Three rows of eight and no deadline: only the wait sends them, and not before it.
    assert!(sent.elapsed() >= max_wait);
    assert_eq!(model.passes(), vec![vec![1., 2., 3.]]);
    assert_eq!(f32s(&of_slot(&out, 1).columns[1]), vec![3., 5., 7.]);
}

#[test]
fn a_partial_batch_leaves_early_to_meet_a_deadline() {
    let model = TestModel::start(8);
    // As far as the operator knows a forward pass takes a second, so rows due in 1.5 s
    // must leave by 0.5 s: long before max_wait, a second before the deadline.
    model.stats.record_compute(Duration::from_secs(1));
    let mut due = f32_chunk(2, &[3.]);
    due.deadline = Some(Instant::now() + Duration::from_millis(1500));
    let out = run_batch(&model, config(8, NEVER, 1), vec![(0, f32_chunk(1, &[1., 2.])), (0, due)]);
    // The whole partial batch went, rows without a deadline too, and was computed.
    assert_eq!(model.passes(), vec![vec![1., 2., 3.]]);
    assert_eq!(ids(&out), vec![100, 101, 200]);
    assert!(out.iter().all(|(_, c)| !c.has_errors()), "{out:?}");
}

#[test]
fn rows_past_their_deadline_fail_without_a_forward_pass() {
    let model = TestModel::start(4);
    let mut late = f32_chunk(2, &[3., 4.]);
    late.deadline = Some(Instant::now());
    let mut lone = f32_chunk(3, &[5.]);
    lone.deadline = late.deadline;
    // A full batch of two rows on time and two late, then a lone late row, which leaves
    // at once for its deadline.
    let inputs = vec![(0, f32_chunk(1, &[1., 2.])), (0, late), (1, lone)];
    let out = run_batch(&model, config(4, NEVER, 1), inputs);
    assert_eq!(model.passes(), vec![vec![1., 2.]], "one forward pass, of the rows on time");
    let stats = model.stats.snapshot();
    assert_eq!((stats.batches(), stats.rows, stats.forwards), (1, 2, 1));
    let exceeded = Some((ErrorCode::DeadlineExceeded, "m".to_string()));
    assert_eq!(errors(of_slot(&out, 1)), vec![None, None]);
    assert_eq!(f32s(&of_slot(&out, 1).columns[1]), vec![3., 5.]);
    assert_eq!(errors(of_slot(&out, 2)), vec![exceeded.clone(); 2]);
    assert_eq!(errors(of_slot(&out, 3)), vec![exceeded]);
}

#[test]
fn failed_rows_keep_their_place_and_are_not_computed() {
    let model = TestModel::start(3);
    let inputs =
        vec![(0, failed_at(f32_chunk(1, &[0., 1., 2., 3., 4.]), &[1, 3])), (0, failed_at(f32_chunk(2, &[5.]), &[0]))];
    let out = run_batch(&model, config(3, NEVER, 1), inputs);
    // The three rows still computing make a full batch; the failed ones stay out of it.
    assert_eq!(model.passes(), vec![vec![0., 2., 4.]]);
    let chunk = of_slot(&out, 1);
    let invalid = Some((ErrorCode::InvalidInput, "input".to_string()));
    assert_eq!(chunk.ids, vec![100, 101, 102, 103, 104]);
    assert_eq!(errors(chunk), vec![None, invalid.clone(), None, invalid.clone(), None]);
    assert_eq!(f32s(&chunk.columns[1]), vec![1., 0., 5., 0., 9.]);
    // A chunk with no row to compute goes on at once, with a filler output.
    assert_eq!(errors(of_slot(&out, 2)), vec![invalid]);
    assert_eq!(f32s(&of_slot(&out, 2).columns[1]), vec![0.]);
}

#[test]
fn with_no_max_wait_rows_gather_while_the_replica_computes() {
    rows_gather_while_the_replica_computes(BatchPolicy::Fixed(Duration::ZERO));
}

/// The adaptive policy, before it has measured anything, is `max_wait` 0, except that
/// rows which have waited MIN_BEHIND behind a busy replica may queue behind it (the next
/// test). A loaded machine can take that long over the steps below, so here only the
/// first batch's reason and the batches' rows are asserted, not when the second left.
#[test]
fn adaptively_a_lone_row_goes_at_once_and_rows_gather_while_the_replica_computes() {
    rows_gather_while_the_replica_computes(BatchPolicy::Adaptive);
}

fn rows_gather_while_the_replica_computes(batching: BatchPolicy) {
    let timed = matches!(batching, BatchPolicy::Adaptive);
    let model = TestModel::gated(8);
    let (jobs, stats) = model.handles();
    let (grants, passes, counters) = (model.grants(), Arc::clone(&model.passes), Arc::clone(&model.stats));
    let config = policy(8, batching, 2);
    let out = run_with(
        move |_, rows| rows.batch_forward(config, jobs, stats),
        move |driver| {
            // A lone row leaves at once: the replica is free.
            driver.send(0, f32_chunk(1, &[1.]));
            driver.step_until("the first batch to reach the replica", |_| passes.lock().unwrap().len() == 1);
            assert_eq!(counters.snapshot().reasons[SendReason::Now.index()], 1);
            // Rows that arrive while it computes wait for it, although a second batch may be
            // out (max_in_flight 2): the node has one replica.
            driver.send(1, f32_chunk(2, &[2., 3.]));
            driver.send(1, f32_chunk(3, &[4.]));
            driver.step(10);
            if !timed {
                assert_eq!(counters.snapshot().batches(), 1);
            }
            grants.send(()).unwrap();
            grants.send(()).unwrap();
        },
    );
    assert_eq!(model.passes(), vec![vec![1.], vec![2., 3., 4.]]);
    assert_eq!(ids(&out), vec![100, 200, 201, 300]);
}

/// Adaptively, rows that arrive while the only replica computes do not wait for it to
/// be free once they have waited one mean forward pass: they queue behind it. Behind
/// that one, rows keep gathering until a batch is done: one batch in line per replica
/// at most.
#[test]
fn adaptively_a_partial_batch_queues_behind_a_busy_replica_one_batch_deep() {
    let model = TestModel::gated(8);
    let (jobs, stats) = model.handles();
    let (grants, passes, counters) = (model.grants(), Arc::clone(&model.passes), Arc::clone(&model.stats));
    let config = policy(8, BatchPolicy::Adaptive, 4);
    let out = run_with(
        move |_, rows| rows.batch_forward(config, jobs, stats),
        move |driver| {
            driver.send(0, f32_chunk(1, &[1.]));
            driver.step_until("the first batch to reach the replica", |_| passes.lock().unwrap().len() == 1);
            driver.send(1, f32_chunk(2, &[2., 3.]));
            // No pass has finished (the mean is zero): after MIN_BEHIND the rows go.
            let counted = Arc::clone(&counters);
            driver.step_until("the second batch to queue", move |_| counted.snapshot().batches() == 2);
            let reasons = counters.snapshot().reasons;
            assert_eq!((reasons[SendReason::Now.index()], reasons[SendReason::Behind.index()]), (1, 1));
            // Two out for one replica: these rows stay, however long they wait.
            driver.send(2, f32_chunk(3, &[4.]));
            for _ in 0..5 {
                std::thread::sleep(MIN_BEHIND * 2);
                driver.step(10);
            }
            assert_eq!(counters.snapshot().batches(), 2);
            driver.send(3, f32_chunk(4, &[5.]));
            // The first pass ends: the line is one batch long again, and the rows join it.
            grants.send(()).unwrap();
            let counted = Arc::clone(&counters);
            driver.step_until("the third batch to queue", move |_| counted.snapshot().batches() == 3);
            let reasons = counters.snapshot().reasons;
            assert_eq!((reasons[SendReason::Now.index()], reasons[SendReason::Behind.index()]), (1, 2));
            grants.send(()).unwrap();
            grants.send(()).unwrap();
        },
    );
    assert_eq!(model.passes(), vec![vec![1.], vec![2., 3.], vec![4., 5.]]);
    assert_eq!(ids(&out), vec![100, 200, 201, 300, 400]);
}

/// Adaptively, behind a busy replica of a model whose passes are known to be shorter
/// than MIN_BEHIND, the rows wait for the replica's completion (which wakes the
/// operator) instead of a timer: they do not queue behind it, however long it takes.
#[test]
fn behind_a_cheap_models_busy_replica_the_rows_wait_for_its_completion() {
    let model = TestModel::gated(8);
    let (jobs, stats) = model.handles();
    let (grants, passes, counters) = (model.grants(), Arc::clone(&model.passes), Arc::clone(&model.stats));
    let config = policy(8, BatchPolicy::Adaptive, 4);
    let out = run_with(
        move |_, rows| rows.batch_forward(config, jobs, stats),
        move |driver| {
            // A first pass that ends at once: the mean is known, and short.
            grants.send(()).unwrap();
            driver.send(0, f32_chunk(1, &[1.]));
            let counted = Arc::clone(&counters);
            driver.step_until("the first pass to finish", move |_| counted.snapshot().forwards == 1);
            driver.send(1, f32_chunk(2, &[2.]));
            driver.step_until("the second batch to reach the replica", |_| passes.lock().unwrap().len() == 2);
            // The replica is busy (its pass waits for a grant): these rows stay.
            driver.send(2, f32_chunk(3, &[3., 4.]));
            for _ in 0..5 {
                std::thread::sleep(MIN_BEHIND * 2);
                driver.step(10);
            }
            assert_eq!(counters.snapshot().batches(), 2);
            grants.send(()).unwrap();
            let counted = Arc::clone(&counters);
            driver.step_until("the third batch to leave", move |_| counted.snapshot().batches() == 3);
            let reasons = counters.snapshot().reasons;
            assert_eq!((reasons[SendReason::Now.index()], reasons[SendReason::Behind.index()]), (3, 0));
            grants.send(()).unwrap();
        },
    );
    assert_eq!(model.passes(), vec![vec![1.], vec![2.], vec![3., 4.]]);
    assert_eq!(ids(&out), vec![100, 200, 300, 301]);
}

/// Sends lone rows (slot `i`: chunk `i + 1` with the one value `i`), each answered
/// before the next, until the worker has computed one itself; returns how many. The
/// mean pass must first fall under [`crate::dataflow::inline::ON_BELOW`]: at least
/// `SAMPLES` rows, more where the machine is loaded and some passes lose their core.
fn warm_until_inline(driver: &mut Driver<'_>, stats: &BatchStats) -> u64 {
    let most = 4096;
    for i in 0..most {
        driver.send(i, f32_chunk(i + 1, &[i as f32]));
        driver.step_until("the lone row", |out| out.len() as u64 == i + 1);
        if stats.snapshot().inline > 0 {
            return i + 1;
        }
    }
    panic!("{most} passes of a 1x1 linear model and none computed on the worker");
}

/// A model whose passes take microseconds: after a few at the replica, the worker
/// computes its batches itself, with the same answers and errors.
#[test]
fn a_cheap_model_is_computed_on_the_worker_with_the_same_answers() {
    let model = TestModel::start(1);
    let config = inline(&model, config(1, Duration::ZERO, 1));
    let counters = Arc::clone(&model.stats);
    let (jobs, stats) = model.handles();
    let out = run_with(
        move |_, rows| rows.batch_forward(config, jobs, stats),
        move |driver| {
            let warm = warm_until_inline(driver, &counters);
            assert!(warm >= crate::dataflow::inline::SAMPLES as u64, "inline after {warm} passes");
            // A failed pass on the worker fails its rows as at a replica.
            let inline = counters.snapshot().inline;
            driver.send(warm, f32_chunk(warm + 1, &[-1.]));
            driver.step_until("the failing row", |out| out.len() as u64 == warm + 1);
            assert_eq!(counters.snapshot().inline, inline + 1, "the failing pass on the worker");
        },
    );
    // One output per row sent: the warm-up's, then the failing one.
    let n = out.len() as u64;
    let stats = model.stats.snapshot();
    assert!(stats.inline > 0 && stats.inline < n, "{} of {n} batches inline", stats.inline);
    assert_eq!(stats.forwards, n, "every pass counted, here or at the replica");
    for i in 0..n - 1 {
        assert_eq!(f32s(&of_slot(&out, i + 1).columns[1]), vec![2. * i as f32 + 1.]);
    }
    assert_eq!(errors(of_slot(&out, n)), vec![Some((ErrorCode::ModelFailed, "m".into()))]);
}

/// Under load with a worker per core (a replay), a chunk that arrives with nothing
/// queued and fills whole batches is computed whole on the worker: the batches the
/// queue would make (up to `max_batch_size` rows not failed), the same answers, a
/// failed pass failing only its batch. Chunks smaller than a batch still share one.
#[test]
fn under_load_a_chunk_is_computed_whole_on_the_worker() {
    let model = TestModel::start(3);
    let config = BatchConfig { inline_under_load: true, ..inline(&model, config(3, Duration::ZERO, 4)) };
    let stats = Arc::clone(&model.stats);
    let passes = Arc::clone(&model.passes);
    let (jobs, node_stats) = model.handles();
    let out = run_with(
        move |_, rows| rows.batch_forward(config, jobs, node_stats),
        move |driver| {
            // Lone rows, each answered before the next, until inline is on.
            let warm = warm_until_inline(driver, &stats);
            let before = (stats.snapshot().inline, passes.lock().unwrap().len());
            // Row 1 failed upstream; row 6's negative input fails its batch.
            let xs = [0., 1., 2., 3., 4., 5., -6., 7., 8., 9.];
            driver.send(warm, failed_at(f32_chunk(warm + 1, &xs), &[1]));
            // One step: computed within the activation, nothing left to wait for.
            driver.step_until("the whole chunk", |out| out.len() as u64 == warm + 1);
            let batches: Vec<Vec<f32>> = passes.lock().unwrap()[before.1..].to_vec();
            assert_eq!(batches, vec![vec![0., 2., 3.], vec![4., 5., -6.], vec![7., 8., 9.]]);
            assert_eq!(stats.snapshot().inline - before.0, 3, "every batch on the worker");
            // Chunks smaller than a batch (requests) queue and share batches.
            let before = passes.lock().unwrap().len();
            driver.send(warm + 1, f32_chunk(warm + 2, &[10., 11.]));
            driver.send(warm + 1, f32_chunk(warm + 3, &[12., 13.]));
            driver.step_until("the small chunks", |out| out.len() as u64 == warm + 3);
            let batches: Vec<Vec<f32>> = passes.lock().unwrap()[before..].to_vec();
            assert_eq!(batches, vec![vec![10., 11., 12.], vec![13.]]);
            // A whole chunk without failed rows: the outputs are the batches' in
            // order, a failed batch's rows fillers in their place.
            let xs = [0., 1., 2., 3., -4., 5., 6., 7., 8.];
            driver.send(warm + 2, f32_chunk(warm + 4, &xs));
            driver.step_until("the chunk in order", |out| out.len() as u64 == warm + 4);
        },
    );
    // The warm-up's outputs, then the four chunks sent after it.
    let warm = out.len() as u64 - 4;
    let in_order = of_slot(&out, warm + 4);
    let ys = f32s(&in_order.columns[1]);
    assert_eq!(ys.len(), 9);
    for r in [0, 1, 2, 6, 7, 8] {
        assert_eq!(ys[r], 2.0 * r as f32 + 1.0, "row {r}");
    }
    let failed = Some((ErrorCode::ModelFailed, "m".to_string()));
    assert_eq!(
        errors(in_order),
        (0..9).map(|r| (3..6).contains(&r).then(|| failed.clone()).flatten()).collect::<Vec<_>>()
    );
    let chunk = of_slot(&out, warm + 1);
    assert_eq!(chunk.len(), 10);
    let failed = Some((ErrorCode::ModelFailed, "m".to_string()));
    let expected: Vec<Option<(ErrorCode, String)>> = (0..10)
        .map(|r| match r {
            1 => Some((ErrorCode::InvalidInput, "input".to_string())),
            4..=6 => failed.clone(),
            _ => None,
        })
        .collect();
    assert_eq!(errors(chunk), expected);
    let ys = f32s(&chunk.columns[1]);
    for r in [0, 2, 3, 7, 8, 9] {
        assert_eq!(ys[r], 2.0 * r as f32 + 1.0, "row {r}");
    }
    assert_eq!(model.stats.snapshot().failed_batches, 2);
}

/// Once inline, a backlog of batches still goes to the replicas: the worker computes
/// a batch itself only while nothing else waits.
#[test]
fn a_backlog_goes_to_the_replicas_even_when_the_model_is_cheap() {
    let model = TestModel::start(1);
    let config = inline(&model, config(1, Duration::ZERO, 4));
    let stats = Arc::clone(&model.stats);
    let (jobs, node_stats) = model.handles();
    let sent = Arc::new(AtomicU64::new(0));
    let total = Arc::clone(&sent);
    let out = run_with(
        move |_, rows| rows.batch_forward(config, jobs, node_stats),
        move |driver| {
            // One row at a time, each answered before the next: inline comes on.
            let lone = warm_until_inline(driver, &stats);
            let inline_before = stats.snapshot().inline;
            // A backlog of 64 one-row batches at once: all but the last at replicas.
            for i in lone..lone + 64 {
                driver.send(i, f32_chunk(i + 1, &[i as f32]));
            }
            driver.step_until("the backlog", |out| out.len() as u64 == lone + 64);
            let at_worker = stats.snapshot().inline - inline_before;
            assert!(at_worker < 8, "{at_worker} of 64 backlogged batches computed on the worker");
            total.store(lone + 64, Ordering::Relaxed);
        },
    );
    assert_eq!(out.len() as u64, sent.load(Ordering::Relaxed));
}

#[test]
fn a_failed_forward_pass_fails_its_batch_and_the_operator_goes_on() {
    let model = TestModel::start(2);
    let out = run_batch(&model, config(2, NEVER, 1), vec![(0, f32_chunk(1, &[-1., 2.])), (0, f32_chunk(2, &[3., 4.]))]);
    assert_eq!(model.passes().len(), 2);
    assert_eq!(errors(of_slot(&out, 1)), vec![Some((ErrorCode::ModelFailed, "m".into())); 2]);
    assert_eq!(errors(of_slot(&out, 2)), vec![None, None]);
    assert_eq!(f32s(&of_slot(&out, 2).columns[1]), vec![7., 9.]);
    assert_eq!(model.stats.snapshot().failed_batches, 1);
}
