//! Crash after crash while the stream still flows, against a real broker (tansu, started
//! by the test): `weir serve` is SIGKILLed five times, 3 to 12 seconds after it starts
//! answering, while a producer writes 2000 messages a second, and restarted at once each
//! time (so the killed member is still in the group when the next one joins).
//!
//! What must hold: nothing is lost; the consumer group's committed offsets (read by a
//! plain consumer's `committed()`, as an operator would) move within seconds of each
//! restart's first answer; and so the duplicates, which are what was answered after the
//! last commit before each kill, stay bounded: at most 2 s of the stream per kill.
#![allow(clippy::unwrap_used)] // a test or benchmark fails loudly on the first surprise

mod common;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::kafka::{check_answer, diamond_message, stop, weir_logged, Broker, Out};
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::producer::{BaseProducer, BaseRecord, Producer};
use rdkafka::{Offset, TopicPartitionList};

/// Messages per second the producer writes.
const RATE: usize = 2000;
/// Partitions of the input topic.
const PARTITIONS: i32 = 4;
/// How long each run answers before its SIGKILL, in seconds.
const RUNS: [u64; 5] = [3, 5, 7, 9, 12];

/// Sends diamond message `i` to `in`, waiting while the producer's queue is full.
fn send(producer: &BaseProducer, i: usize) {
    let (key, payload) = diamond_message(i);
    loop {
        match producer.send(BaseRecord::to("in").key(&key).payload(&payload)) {
            Ok(()) => return,
            // The local queue is full while the broker is slow: let it drain.
            Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), _)) => {
                producer.poll(Duration::from_millis(10));
            }
            Err((e, _)) => panic!("producing message {i}: {e}"),
        }
    }
}

/// Writes diamond messages `0, 1, ...` at [`RATE`] per second until `stop`; returns how
/// many it wrote, every one acknowledged.
fn producer(broker: &Broker, stop: Arc<AtomicBool>) -> std::thread::JoinHandle<usize> {
    let producer: BaseProducer = broker.config().set("linger.ms", "5").create().unwrap();
    std::thread::spawn(move || {
        let start = Instant::now();
        let mut sent = 0;
        while !stop.load(Ordering::Relaxed) {
            let due = (start.elapsed().as_secs_f64() * RATE as f64) as usize;
            while sent < due {
                send(&producer, sent);
                sent += 1;
            }
            producer.poll(Duration::from_millis(5));
        }
        producer.flush(Duration::from_secs(30)).expect("every message acknowledged");
        sent
    })
}

/// Every answer read from `out`, with the time it was read.
type Answers = Arc<Mutex<Vec<(usize, Instant)>>>;

/// Reads `out` from the start until `stop`, checking each answer.
fn reader(broker: &Broker, stop: Arc<AtomicBool>) -> (Answers, std::thread::JoinHandle<()>) {
    let consumer: BaseConsumer = broker.config().set("group.id", "reader").create().unwrap();
    let mut tpl = TopicPartitionList::new();
    for p in 0..PARTITIONS {
        tpl.add_partition_offset("out", p, Offset::Beginning).unwrap();
    }
    consumer.assign(&tpl).unwrap();
    let answers: Answers = Arc::default();
    let kept = Arc::clone(&answers);
    let thread = std::thread::spawn(move || {
        while !stop.load(Ordering::Relaxed) {
            if let Some(Ok(m)) = consumer.poll(Duration::from_millis(50)) {
                let i = check_answer(&Out::of(&m));
                kept.lock().unwrap().push((i, Instant::now()));
            }
        }
    });
    (answers, thread)
}

/// Group `g`'s committed offsets of `in` (their sum), whenever they change, as a plain
/// consumer of the group reads them.
type Commits = Arc<Mutex<Vec<(Instant, i64)>>>;

fn commit_watcher(broker: &Broker, stop: Arc<AtomicBool>) -> (Commits, std::thread::JoinHandle<()>) {
    let consumer: BaseConsumer = broker.config().set("group.id", "g").create().unwrap();
    let mut tpl = TopicPartitionList::new();
    for p in 0..PARTITIONS {
        tpl.add_partition("in", p);
    }
    let commits: Commits = Arc::default();
    let kept = Arc::clone(&commits);
    let thread = std::thread::spawn(move || {
        let mut last = None;
        while !stop.load(Ordering::Relaxed) {
            if let Ok(committed) = consumer.committed_offsets(tpl.clone(), Duration::from_secs(2)) {
                let sum: i64 =
                    committed.elements().iter().map(|e| if let Offset::Offset(o) = e.offset() { o } else { 0 }).sum();
                if last != Some(sum) {
                    last = Some(sum);
                    kept.lock().unwrap().push((Instant::now(), sum));
                }
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    });
    (commits, thread)
}

/// When `log` first has a line containing `what`, waiting for it up to a minute.
fn logged(log: &Mutex<Vec<String>>, what: &str) -> Instant {
    let t = Instant::now();
    while !log.lock().unwrap().iter().any(|l| l.contains(what)) {
        assert!(t.elapsed() < Duration::from_secs(60), "weir logs '{what}' within a minute");
        std::thread::sleep(Duration::from_millis(10));
    }
    Instant::now()
}

/// The first answer read after `since`, waiting for it up to a minute.
fn first_answer_after(answers: &Answers, since: Instant) -> Instant {
    let t = Instant::now();
    loop {
        if let Some(&(_, at)) = answers.lock().unwrap().iter().rev().take_while(|(_, at)| *at > since).last() {
            return at;
        }
        assert!(t.elapsed() < Duration::from_secs(60), "weir answers within a minute of its start");
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// When the committed offsets first moved after `since`, if they did before `until`.
fn first_commit_after(commits: &Commits, since: Instant, until: Instant) -> Option<Instant> {
    let commits = commits.lock().unwrap();
    let before = commits.iter().take_while(|(at, _)| *at <= since).last().map(|&(_, sum)| sum);
    commits.iter().find(|&&(at, sum)| at > since && at < until && Some(sum) != before).map(|&(at, _)| at)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn five_kills_mid_stream_lose_nothing_and_bound_the_duplicates() {
    let broker = Broker::start();
    broker.create_topics(&["in", "out", "dlq"], PARTITIONS).await;
    let (stop_producing, stop_reading) = (Arc::new(AtomicBool::new(false)), Arc::new(AtomicBool::new(false)));
    let producing = producer(&broker, Arc::clone(&stop_producing));
    let (answers, reading) = reader(&broker, Arc::clone(&stop_reading));
    let (commits, watching) = commit_watcher(&broker, Arc::clone(&stop_reading));

    let mut delays = Vec::new();
    for (run, secs) in RUNS.iter().enumerate() {
        let started = Instant::now();
        let (mut weir, log) = weir_logged(&broker, "graphs/diamond.yaml", &[]);
        // Answers read before its partitions are assigned are the previous run's.
        let assigned = logged(&log, "partition assigned");
        let first = first_answer_after(&answers, assigned);
        std::thread::sleep(Duration::from_secs(*secs));
        weir.kill().unwrap(); // SIGKILL: no shutdown, no final commit
        weir.wait().unwrap();
        let killed = Instant::now();
        let delay = first_commit_after(&commits, first, killed).map(|at| at.duration_since(first));
        let answered = answers.lock().unwrap().iter().filter(|(_, at)| *at >= first).count();
        eprintln!(
            "run {run}: partitions assigned {:.1} s after the start, first answer {:.1} s after that, {answered} answers, first commit {} after it, killed after {secs} s",
            assigned.duration_since(started).as_secs_f64(),
            first.duration_since(assigned).as_secs_f64(),
            delay.map_or("never".to_string(), |d| format!("{:.2} s", d.as_secs_f64())),
        );
        delays.push(delay);
    }
    assert!(!producing.is_finished(), "the producer was still writing at every kill");
    let last = weir_logged(&broker, "graphs/diamond.yaml", &[]).0;
    std::thread::sleep(Duration::from_secs(1));
    stop_producing.store(true, Ordering::Relaxed);
    let n = producing.join().unwrap();

    // The last run drains the stream.
    let t = Instant::now();
    let mut seen = vec![0usize; n];
    loop {
        seen.iter_mut().for_each(|c| *c = 0);
        for &(i, _) in answers.lock().unwrap().iter() {
            seen[i] += 1;
        }
        if seen.iter().all(|&c| c > 0) || t.elapsed() > Duration::from_secs(180) {
            break;
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    stop(last);
    stop_reading.store(true, Ordering::Relaxed);
    reading.join().unwrap();
    watching.join().unwrap();

    let lost = seen.iter().filter(|&&c| c == 0).count();
    let duplicates: usize = seen.iter().map(|&c| c.saturating_sub(1)).sum();
    let bound = RUNS.len() * 2 * RATE;
    eprintln!(
        "kafka restarts: {n} messages at {RATE}/s, {} kills, {lost} lost, {duplicates} duplicates ({:.0} per kill; bound {bound}), \
         first commit after each restart's first answer: {:?}",
        RUNS.len(),
        duplicates as f64 / RUNS.len() as f64,
        delays.iter().map(|d| d.map(|d| (d.as_secs_f64() * 100.0).round() / 100.0)).collect::<Vec<_>>(),
    );
    assert_eq!(lost, 0, "every message answered at least once after {} SIGKILLs", RUNS.len());
    assert!(delays.iter().all(Option::is_some), "every run committed before its kill: {delays:?}");
    assert!(duplicates <= bound, "{duplicates} duplicates over {} kills, more than {bound}", RUNS.len());
}

/// What a crash leaves behind is a backlog, and catching up on it is when the answers
/// outrun everything else: the committed position must keep up with them all along,
/// or a crash during the catch-up answers all of it again. Checked at every change of
/// the committed offsets: they cover every message answered a second before.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn commits_keep_up_while_a_backlog_is_answered() {
    let broker = Broker::start();
    broker.create_topics(&["in", "out", "dlq"], PARTITIONS).await;
    let n = 100_000;
    let producer: BaseProducer = broker.config().set("linger.ms", "50").create().unwrap();
    for i in 0..n {
        send(&producer, i);
    }
    producer.flush(Duration::from_secs(60)).expect("the backlog is written");

    let stop_reading = Arc::new(AtomicBool::new(false));
    let (answers, reading) = reader(&broker, Arc::clone(&stop_reading));
    let (commits, watching) = commit_watcher(&broker, Arc::clone(&stop_reading));
    let weir = weir_logged(&broker, "graphs/diamond.yaml", &[]).0;
    let t = Instant::now();
    while commits.lock().unwrap().last().is_none_or(|&(_, sum)| sum < n as i64) {
        assert!(t.elapsed() < Duration::from_secs(180), "the backlog is answered and committed");
        std::thread::sleep(Duration::from_millis(100));
    }
    stop(weir);
    stop_reading.store(true, Ordering::Relaxed);
    reading.join().unwrap();
    watching.join().unwrap();

    let answers = answers.lock().unwrap();
    let (first, last) = (answers[0].1, answers[answers.len() - 1].1);
    let mut worst = 0i64;
    for &(at, committed) in commits.lock().unwrap().iter().filter(|(at, _)| *at > first && *at < last) {
        let Some(second_before) = at.checked_sub(Duration::from_secs(1)) else { continue };
        let mut seen = std::collections::HashSet::new();
        answers.iter().take_while(|(_, read)| *read <= second_before).for_each(|(i, _)| {
            seen.insert(*i);
        });
        worst = worst.max(seen.len() as i64 - committed);
    }
    eprintln!(
        "kafka backlog: {n} messages answered in {:.1} s; at worst the committed offsets were {worst} messages \
         behind the answers of a second before",
        last.duration_since(first).as_secs_f64()
    );
    assert!(worst <= 0, "the committed position fell more than a second behind the answers ({worst} messages)");
}
