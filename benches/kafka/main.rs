//! Kafka benchmarks: what answering a topic through `weir serve` costs, against a plain
//! rdkafka consume-and-produce pass-through on the same broker.
//!
//! Run: `cargo bench --bench kafka` (add `-- --quick` for a short run, and a name such as
//! `throughput` or `latency` to run one experiment; `KAFKA_MESSAGES=N` backlogs N
//! messages a throughput run instead of 50000). Prints a markdown table; every figure
//! is paired with a baseline measured in the same run, because these machines are shared
//! and noisy.
//!
//! The broker is tansu (the one the Kafka tests start, `tests/common/kafka.rs`), in
//! memory, on a free 127.0.0.1 port, one broker for the whole run. Every run of a system
//! gets its own topics (2 partitions each) and its own consumer group, so runs never see
//! each other's messages or offsets. The two systems:
//! - **weir**: `weir serve graphs/diamond.yaml --kafka-input … --kafka-output …` as a
//!   child process, spawned the way `tests/kafka.rs` does, stopped with SIGTERM. Input
//!   `{"a":i,"b":1,"c":0.5}` with key `k{i}`; its answer `{"y":i+2.5}` (checked for every
//!   message) with the same key.
//! - **pass-through** (the baseline): a plain at-least-once rdkafka app in this process,
//!   on its own multi-thread tokio runtime (one thread per core; `weir serve` consuming
//!   Kafka has the cores its timely worker leaves plus one: as many on a 2-core machine). It
//!   is written as rdkafka's documentation shows (a `FutureProducer` future awaited per
//!   message; weir instead takes acknowledgements in its producer's context, see
//!   `connectors/src/kafka/answer.rs`), with weir's client settings: a
//!   `StreamConsumer` (`enable.auto.commit=true`, `enable.auto.offset.store=false`,
//!   `auto.commit.interval.ms` as weir's (`COMMIT_INTERVAL_MS`), the same session and
//!   heartbeat timeouts), at most
//!   8192 messages in flight (weir's default `serving.max_in_flight`), each message's
//!   payload produced unchanged with its key and the same three `weir-source-*` headers
//!   weir adds by an idempotent `FutureProducer` (`linger.ms=1`), and a partition's offset
//!   stored once every message before it is acknowledged.
//!
//! Outputs are read by a `BaseConsumer` on its own thread, assigned to every partition of
//! the output topic from the beginning (`fetch.wait.max.ms=10`), which stamps each
//! message with the `Instant` it arrived; every key must be seen, and every payload and
//! `weir-source-topic` header must be right. Producer, reader and both systems share the
//! machine's cores with the broker, so absolute numbers are lower than on a cluster; the
//! ratios compare systems that pay the same broker and client costs.
//!
//! Experiments:
//! 1. **kafka throughput**: N messages (50000; 10000 with `--quick`) are produced into
//!    the system's input topic before it starts; messages/s is (N − 1) over the time from
//!    the first output the reader sees to the last. Measuring from the first output
//!    leaves out the consumer-group join, which takes about 3 s on tansu whatever the
//!    system does, and keeps everything after it: fetching the backlog, answering,
//!    producing, acknowledgement and reading back. N is large enough that the window is
//!    hundreds of milliseconds, well above the reader's 10 ms fetch granularity. Weir and
//!    the pass-through alternate for 5 rounds (1 with `--quick`), swapping which goes
//!    first each round; the ratio is the median of the per-round ratios. Target (issue
//!    22): weir ≥ 90% of the pass-through in every round. A third row shows the reader alone on each run's
//!    backlogged input topic: the ceiling of what it can measure, which should be far
//!    above both systems.
//! 2. **kafka latency**: from producing a message (the `Instant` before it is handed to
//!    the input producer, `linger.ms=0`) to the reader receiving its answer, one clock,
//!    at 500 messages/s for 5 s (2 s with `--quick`), well below either system's
//!    saturation. Before the clock starts, a warm-up message goes every 100 ms until one
//!    is answered (the group has joined), then 500 ms pass. p50 and p99 for each system,
//!    twice: with default consumer settings, and with both systems' consumers at
//!    `fetch.wait.max.ms=10`. tansu does not answer a waiting fetch when data arrives,
//!    only when the fetch's wait runs out, so with librdkafka's default (500 ms) the
//!    latency of both systems is mostly their consumer's fetch wait, and the short wait
//!    shows what the graph itself adds.
#![allow(clippy::unwrap_used)] // a test or benchmark fails loudly on the first surprise

#[path = "../../tests/common/kafka.rs"]
mod broker;
mod machine;
mod passthrough;
#[path = "../../tests/common/process.rs"]
#[allow(dead_code)]
mod process;

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};
use weir::bench::{median, percentile, range};

use broker::Broker;
use rdkafka::consumer::{BaseConsumer, Consumer, StreamConsumer};
use rdkafka::message::{Headers, Message};
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::{Offset, TopicPartitionList};
use tokio::sync::oneshot;

/// Partitions of every topic.
const PARTITIONS: i32 = 2;
/// Consumer-group timings both systems get (as `tests/kafka.rs` gives weir).
const GROUP_TIMINGS: [(&str, &str); 2] = [("session.timeout.ms", "6000"), ("heartbeat.interval.ms", "500")];

/// The system under test.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum System {
    Weir,
    PassThrough,
}

/// One run's topics and consumer group.
struct Topics {
    input: String,
    output: String,
    dead: String,
    group: String,
}

impl Topics {
    fn new(system: System, run: &str) -> Topics {
        let s = match system {
            System::Weir => "weir",
            System::PassThrough => "pt",
        };
        Topics {
            input: format!("in-{s}-{run}"),
            output: format!("out-{s}-{run}"),
            dead: format!("dlq-{s}-{run}"),
            group: format!("g-{s}-{run}"),
        }
    }
}

fn key(i: usize) -> String {
    format!("k{i}")
}

fn payload(a: usize) -> String {
    format!(r#"{{"a":{a},"b":1,"c":0.5}}"#)
}

/// `i` of a key `k{i}`.
fn index(key: &[u8]) -> Option<usize> {
    std::str::from_utf8(key).ok()?.strip_prefix('k')?.parse().ok()
}

/// Produces messages `0..n` to `topic` and waits until the broker has them all.
async fn produce_all(broker: &Broker, topic: &str, n: usize) {
    let producer: FutureProducer = broker
        .config()
        .set("enable.idempotence", "true")
        .set("linger.ms", "5")
        .set("queue.buffering.max.messages", "1000000")
        .create()
        .expect("input producer");
    let deliveries: Vec<_> = (0..n)
        .map(|i| {
            let (k, p) = (key(i), payload(i));
            producer.send_result(FutureRecord::to(topic).key(&k).payload(&p)).map_err(|(e, _)| e).expect("queued")
        })
        .collect();
    for d in deliveries {
        d.await.expect("delivery report").map_err(|(e, _)| e).expect("input delivered");
    }
}

// ---------------------------------------------------------------------------------------
// The systems.

/// `weir serve graphs/diamond.yaml` on `t`'s topics, with `properties` for its Kafka
/// clients; returns once it listens.
fn weir(broker: &Broker, t: &Topics, properties: &[(&str, &str)]) -> Child {
    let mut command = Command::new(env!("CARGO_BIN_EXE_weir"));
    command
        .args(["serve", "graphs/diamond.yaml", "--port", "0", "--kafka-bootstrap", &broker.addr])
        .args(["--kafka-input", &t.input, "--kafka-output", &t.output, "--kafka-dead-letter", &t.dead])
        .args(["--kafka-group", &t.group]);
    for (k, v) in properties {
        command.args(["--kafka-property", &format!("{k}={v}")]);
    }
    let mut child = command
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("weir starts");
    let mut lines = BufReader::new(child.stderr.take().expect("weir's stderr")).lines();
    loop {
        let line = lines.next().expect("weir serve starts listening").expect("weir's stderr is text");
        if line.starts_with("weir: listening on") {
            break;
        }
    }
    // Keep draining stderr so weir never blocks on a full pipe.
    std::thread::spawn(move || for _ in lines.map_while(Result::ok) {});
    child
}

fn stop_weir(mut child: Child) {
    let status = Command::new("kill").args(["-TERM", &child.id().to_string()]).status().expect("kill runs");
    assert!(status.success(), "SIGTERM to weir");
    let t = Instant::now();
    loop {
        if let Some(status) = child.try_wait().expect("weir's status") {
            assert!(status.success(), "weir exits 0 after SIGTERM: {status:?}");
            return;
        }
        assert!(t.elapsed() < Duration::from_secs(30), "weir stops after SIGTERM");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// A running system.
enum Started {
    Weir(Child),
    PassThrough { runtime: tokio::runtime::Runtime, stop: oneshot::Sender<()>, task: tokio::task::JoinHandle<u64> },
}

/// Starts `system` on `t`'s topics; `properties` (consumer settings) go to its consumer.
fn start(system: System, broker: &Broker, t: &Topics, properties: &[(&str, &str)]) -> Started {
    match system {
        System::Weir => Started::Weir(weir(broker, t, properties)),
        System::PassThrough => {
            let runtime = tokio::runtime::Builder::new_multi_thread()
                .enable_all()
                .thread_name("pass-through")
                .build()
                .expect("pass-through runtime");
            let _guard = runtime.enter();
            let mut config = broker.config();
            config
                .set("group.id", &t.group)
                .set("enable.auto.commit", "true")
                .set("enable.auto.offset.store", "false")
                .set("auto.commit.interval.ms", weir_connectors::kafka::COMMIT_INTERVAL_MS.to_string())
                .set("auto.offset.reset", "earliest");
            for (k, v) in properties {
                config.set(*k, *v);
            }
            let consumer: StreamConsumer = config.create().expect("pass-through consumer");
            let producer: FutureProducer = broker
                .config()
                .set("enable.idempotence", "true")
                .set("linger.ms", "1")
                .create()
                .expect("pass-through producer");
            consumer.subscribe(&[&t.input]).expect("subscribe");
            let (stop, stopped) = oneshot::channel();
            let topics = Arc::new((t.input.clone(), t.output.clone()));
            let task = runtime.spawn(passthrough::run(consumer, producer, topics, stopped));
            Started::PassThrough { runtime, stop, task }
        }
    }
}

impl Started {
    fn stop(self) {
        match self {
            Started::Weir(child) => stop_weir(child),
            Started::PassThrough { runtime, stop, task } => {
                let _ = stop.send(());
                runtime.block_on(task).expect("the pass-through loop ends");
            }
        }
    }
}

// ---------------------------------------------------------------------------------------
// Reading the answers.

/// An output message, stamped when the reader got it.
struct Received {
    key: Vec<u8>,
    payload: Vec<u8>,
    source_topic: Option<String>,
    at: Instant,
}

/// The reader thread; `first` is set when any output arrives.
struct Reader {
    first: Arc<OnceLock<Instant>>,
    thread: std::thread::JoinHandle<Vec<Received>>,
}

/// Reads `topic` from the beginning until outputs for every key `k0..k{n-1}` arrived,
/// or `timeout`.
fn read(broker: &Broker, topic: &str, n: usize, timeout: Duration) -> Reader {
    let consumer: BaseConsumer = broker
        .config()
        .set("group.id", "bench-reader")
        .set("enable.auto.commit", "false")
        .set("fetch.wait.max.ms", "10")
        .create()
        .expect("reader");
    let mut tpl = TopicPartitionList::new();
    for p in 0..PARTITIONS {
        tpl.add_partition_offset(topic, p, Offset::Beginning).expect("partition");
    }
    consumer.assign(&tpl).expect("assign the output topic");
    let first = Arc::new(OnceLock::new());
    let first_set = Arc::clone(&first);
    let thread = std::thread::spawn(move || {
        let mut seen = vec![false; n];
        let mut left = n;
        let mut out = Vec::with_capacity(n + 64);
        let deadline = Instant::now() + timeout;
        while left > 0 && Instant::now() < deadline {
            let Some(Ok(m)) = consumer.poll(Duration::from_millis(100)) else { continue };
            let at = Instant::now();
            first_set.get_or_init(|| at);
            let key = m.key().unwrap_or_default().to_vec();
            if let Some(i) = index(&key).filter(|&i| i < n) {
                if !seen[i] {
                    seen[i] = true;
                    left -= 1;
                }
            }
            let source_topic = m.headers().and_then(|h| {
                h.iter()
                    .find(|h| h.key == "weir-source-topic")
                    .map(|h| String::from_utf8_lossy(h.value.unwrap_or_default()).into_owned())
            });
            out.push(Received { key, payload: m.payload().unwrap_or_default().to_vec(), source_topic, at });
        }
        out
    });
    Reader { first, thread }
}

/// Checks every output of `k0..k{n-1}` (warm-up keys are skipped) and returns when each
/// key's first output arrived. Panics on a wrong answer or a missing key.
fn check(system: System, t: &Topics, received: &[Received], n: usize) -> Vec<Instant> {
    let mut arrivals: Vec<Option<Instant>> = vec![None; n];
    for r in received {
        let Some(i) = index(&r.key).filter(|&i| i < n) else { continue };
        assert_eq!(r.source_topic.as_deref(), Some(t.input.as_str()), "{system:?}: weir-source-topic of k{i}");
        match system {
            System::Weir => {
                let body: serde_json::Value = serde_json::from_slice(&r.payload).expect("weir answers JSON");
                assert_eq!(body["y"].as_f64(), Some(i as f64 + 2.5), "weir's answer to k{i}: {body}");
            }
            System::PassThrough => assert_eq!(r.payload, payload(i).as_bytes(), "pass-through payload of k{i}"),
        }
        let a = arrivals[i].get_or_insert(r.at);
        *a = (*a).min(r.at);
    }
    let missing: Vec<usize> = (0..n).filter(|&i| arrivals[i].is_none()).collect();
    assert!(
        missing.is_empty(),
        "{system:?}: {} of {n} keys never answered, first {:?}",
        missing.len(),
        &missing[..missing.len().min(10)]
    );
    arrivals.into_iter().flatten().collect()
}

// ---------------------------------------------------------------------------------------
// Experiments.

/// One throughput run: messages/s; the time from start to the first output; and the
/// reader's own rate on the pre-produced input topic (the ceiling of what it can measure).
fn throughput_run(
    client: &tokio::runtime::Runtime,
    broker: &Broker,
    system: System,
    round: usize,
    n: usize,
    cpu: &machine::Sampler,
) -> Run {
    let t = Topics::new(system, &format!("r{round}"));
    client.block_on(broker.create_topics(&[&t.input, &t.output, &t.dead], PARTITIONS));
    client.block_on(produce_all(broker, &t.input, n));
    let input = read(broker, &t.input, n, Duration::from_secs(60)).thread.join().expect("reader thread");
    assert_eq!(input.len(), n, "the input topic holds the {n} messages");
    let window = |at: &mut dyn Iterator<Item = Instant>| {
        let (first, last) = at.fold((None::<Instant>, None::<Instant>), |(lo, hi), a| {
            (Some(lo.map_or(a, |l| l.min(a))), Some(hi.map_or(a, |h| h.max(a))))
        });
        let (first, last) = (first.expect("messages"), last.expect("messages"));
        (first, last, (n - 1) as f64 / (last - first).as_secs_f64())
    };
    let (_, _, reader_rate) = window(&mut input.iter().map(|r| r.at));

    let reader = read(broker, &t.output, n, Duration::from_secs(120));
    let started = Instant::now();
    let running = start(system, broker, &t, &GROUP_TIMINGS);
    let weir_pid = match &running {
        Started::Weir(child) => Some(child.id()),
        Started::PassThrough { .. } => None,
    };
    if let Some(pid) = weir_pid {
        cpu.watch(pid);
    }
    // `PERF=FILE`: `perf record -g` of the system for the run (FILE.weir.rROUND; the
    // pass-through's is this whole process, FILE.pt.rROUND).
    let perf = std::env::var_os("PERF").map(|file| {
        let pid = weir_pid.unwrap_or_else(std::process::id);
        let mut file = file;
        file.push(format!(".{}.r{round}", if weir_pid.is_some() { "weir" } else { "pt" }));
        Command::new("perf")
            .args(["record", "-q", "-F", "4999", "--call-graph", "dwarf,16384", "-p", &pid.to_string(), "-o"])
            .arg(file)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("perf starts")
    });
    let received = reader.thread.join().expect("reader thread");
    if let Some(mut perf) = perf {
        let _ = Command::new("kill").args(["-INT", &perf.id().to_string()]).status();
        let _ = perf.wait();
    }
    // A last sample of weir's CPU after the window, before it exits.
    std::thread::sleep(Duration::from_millis(50));
    if let Some(pid) = weir_pid {
        cpu.unwatch(pid);
    }
    running.stop();
    let (first, last, rate) = window(&mut check(system, &t, &received, n).into_iter());
    // The broker keeps every message in memory: each run starts from the same state.
    client.block_on(broker.delete_topics(&[&t.input, &t.output, &t.dead]));
    // CPU per message in the window: the broker, this process (the reader, and the
    // pass-through when it is the system), and `weir serve`.
    let per_message = |pid: u32| cpu.process_cpu(pid, first, last).map(|(c, _)| c.as_secs_f64() * 1e6 / n as f64);
    let processes = ProcessCpu {
        broker: per_message(broker.pid()),
        bench: per_message(std::process::id()),
        weir: weir_pid.and_then(per_message),
    };
    Run { rate, join: first - started, reader_rate, shares: cpu.shares(first, last), processes }
}

/// CPU µs per message of each process during a run's window.
#[derive(Clone, Copy, Debug, Default)]
struct ProcessCpu {
    broker: Option<f64>,
    bench: Option<f64>,
    weir: Option<f64>,
}

impl ProcessCpu {
    fn show(&self) -> String {
        let f = |v: Option<f64>| v.map_or("n/a".to_string(), |v| format!("{v:.1}"));
        let mut s = format!("broker {} µs, bench process {} µs", f(self.broker), f(self.bench));
        if self.weir.is_some() {
            s.push_str(&format!(", weir {} µs", f(self.weir)));
        }
        s
    }
}

/// What one throughput run measured.
struct Run {
    rate: f64,
    join: Duration,
    reader_rate: f64,
    shares: Option<machine::Shares>,
    processes: ProcessCpu,
}

fn throughput(client: &tokio::runtime::Runtime, broker: &Broker, quick: bool) {
    // `KAFKA_MESSAGES=N` for another backlog. Longer windows do not help: at 200,000 the
    // reader alone on tansu fell to 1.4x the pass-through (from 7-9x at 50,000) and the
    // cores were a third idle, so both systems measured the broker (2026-12-06).
    let n = std::env::var("KAFKA_MESSAGES")
        .ok()
        .map(|v| v.parse().expect("KAFKA_MESSAGES is a number of messages"))
        .unwrap_or(if quick { 10_000 } else { 50_000 });
    let rounds = if quick { 1 } else { 5 };
    let (mut weir_rates, mut pt_rates, mut ratios) = (Vec::new(), Vec::new(), Vec::new());
    let (mut joins, mut reader_rates) = (Vec::new(), Vec::new());
    let cpu = machine::Sampler::start();
    cpu.watch(broker.pid());
    cpu.watch(std::process::id());
    let mut per_round = Vec::new();
    for round in 0..rounds {
        let order =
            if round % 2 == 0 { [System::Weir, System::PassThrough] } else { [System::PassThrough, System::Weir] };
        let mut rates = [0.0; 2];
        let mut shares = [None; 2];
        let mut processes = [ProcessCpu::default(); 2];
        for system in order {
            let run = throughput_run(client, broker, system, round, n, &cpu);
            let i = usize::from(system == System::PassThrough);
            rates[i] = run.rate;
            shares[i] = run.shares;
            processes[i] = run.processes;
            joins.push(run.join.as_secs_f64());
            reader_rates.push(run.reader_rate);
        }
        per_round.push((rates, shares, processes));
        weir_rates.push(rates[0]);
        pt_rates.push(rates[1]);
        ratios.push(rates[0] / rates[1]);
    }
    let (lo, hi) = range(&ratios);
    let (jlo, jhi) = range(&joins);
    let ratio = median(ratios);
    let pt = median(pt_rates);
    let met = if lo >= 0.9 { "met" } else { "missed" };
    println!(
        "| kafka throughput | pass-through: rdkafka consume → idempotent produce, same key and payload, {n} messages \
         backlogged, {PARTITIONS} partitions (baseline) | {pt:.0} msg/s (median of {rounds}) | 1.00 |"
    );
    println!(
        "| kafka throughput | weir serve diamond.yaml, {n} messages backlogged, {PARTITIONS} partitions | {:.0} msg/s \
         (median of {rounds}; first output {jlo:.1} to {jhi:.1} s after start, not counted) | {ratio:.2} of \
         pass-through (median of {rounds} rounds; range {lo:.2} to {hi:.2}); target ≥ 0.90 in every round: {met} |",
        median(weir_rates)
    );
    // Per round: what the machine's cores did while each system answered (busy, idle,
    // stolen by the hypervisor), to tell a round short of CPU from one that waited.
    for (round, (rates, shares, processes)) in per_round.iter().enumerate() {
        let show = |s: &Option<machine::Shares>| {
            s.map_or("n/a".to_string(), |s| {
                format!("busy {:.0}%, idle {:.0}%, steal {:.0}%", 100.0 * s.busy, 100.0 * s.idle, 100.0 * s.steal)
            })
        };
        println!(
            "| kafka throughput, round {} | weir {:.0} msg/s ({}; CPU per message: {}); pass-through {:.0} msg/s ({}; \
             CPU per message: {}) | cores during each system's window | {:.2} |",
            round + 1,
            rates[0],
            show(&shares[0]),
            processes[0].show(),
            rates[1],
            show(&shares[1]),
            processes[1].show(),
            rates[0] / rates[1]
        );
    }
    let reader = median(reader_rates);
    println!(
        "| kafka throughput | measurement ceiling: the reader alone on a backlogged input topic, {n} messages | \
         {reader:.0} msg/s (median of {}) | {:.2}x pass-through |",
        2 * rounds,
        reader / pt
    );
}

/// Latencies of one system at `rate` messages/s for `n` messages, sorted.
fn latency_run(
    client: &tokio::runtime::Runtime,
    broker: &Broker,
    system: System,
    run: &str,
    properties: &[(&str, &str)],
    n: usize,
    rate: f64,
) -> Vec<Duration> {
    let t = Topics::new(system, run);
    client.block_on(broker.create_topics(&[&t.input, &t.output, &t.dead], PARTITIONS));
    let reader = read(broker, &t.output, n, Duration::from_secs(120));
    let running = start(system, broker, &t, properties);
    let messages: Vec<(String, String)> = (0..n).map(|i| (key(i), payload(i))).collect();
    let sent = client.block_on(async {
        let producer: FutureProducer = broker.config().set("linger.ms", "0").create().expect("input producer");
        // Warm-up: until the group has joined and one answer came back.
        let deadline = Instant::now() + Duration::from_secs(60);
        let mut w = 0;
        while reader.first.get().is_none() {
            assert!(Instant::now() < deadline, "{system:?} answers a warm-up message within 60 s");
            let (k, p) = (format!("w{w}"), payload(0));
            w += 1;
            // Its delivery report is not awaited: only its answer matters.
            drop(
                producer
                    .send_result(FutureRecord::to(&t.input).key(&k).payload(&p))
                    .map_err(|(e, _)| e)
                    .expect("queued"),
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
        let mut tick = tokio::time::interval(Duration::from_secs_f64(1.0 / rate));
        let mut sent = Vec::with_capacity(n);
        let mut deliveries = Vec::with_capacity(n);
        for (k, p) in &messages {
            tick.tick().await;
            sent.push(Instant::now());
            deliveries.push(
                producer.send_result(FutureRecord::to(&t.input).key(k).payload(p)).map_err(|(e, _)| e).expect("queued"),
            );
        }
        for d in deliveries {
            d.await.expect("delivery report").map_err(|(e, _)| e).expect("input delivered");
        }
        sent
    });
    let received = reader.thread.join().expect("reader thread");
    running.stop();
    let arrivals = check(system, &t, &received, n);
    let mut latencies: Vec<Duration> =
        arrivals.iter().zip(&sent).map(|(a, s)| a.saturating_duration_since(*s)).collect();
    latencies.sort_unstable();
    latencies
}

fn latency(client: &tokio::runtime::Runtime, broker: &Broker, quick: bool) {
    let rate = 500.0;
    let secs = if quick { 2 } else { 5 };
    let n = (rate as usize) * secs;
    let short_fetch = [GROUP_TIMINGS[0], GROUP_TIMINGS[1], ("fetch.wait.max.ms", "10")];
    for (run, label, properties) in [
        ("lat", "default consumer settings", &GROUP_TIMINGS[..]),
        ("lat-fw10", "both consumers at fetch.wait.max.ms=10", &short_fetch[..]),
    ] {
        let pt = latency_run(client, broker, System::PassThrough, run, properties, n, rate);
        let weir = latency_run(client, broker, System::Weir, run, properties, n, rate);
        let ms = |l: &[Duration], p: f64| percentile(l, p).as_secs_f64() * 1e3;
        println!(
            "| kafka latency | pass-through, {label}, {rate:.0} msg/s for {secs} s, produce → output read (baseline) \
             | p50 {:.2} ms, p99 {:.2} ms | 1.00 |",
            ms(&pt, 0.5),
            ms(&pt, 0.99)
        );
        println!(
            "| kafka latency | weir serve diamond.yaml, {label}, {rate:.0} msg/s for {secs} s, produce → output read \
             | p50 {:.2} ms, p99 {:.2} ms | p50 {:.2}x, p99 {:.2}x of pass-through |",
            ms(&weir, 0.5),
            ms(&weir, 0.99),
            ms(&weir, 0.5) / ms(&pt, 0.5),
            ms(&weir, 0.99) / ms(&pt, 0.99)
        );
    }
}

/// The allocator the `weir` binary uses.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() {
    let args = weir::bench::BenchArgs::start();
    let quick = args.quick;
    // Producing the input and creating topics: one thread (this one).
    let client = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("client runtime");
    let broker = Broker::start();
    let run = |name: &str| args.runs(name);
    if run("throughput") {
        throughput(&client, &broker, quick);
    }
    if run("latency") {
        latency(&client, &broker, quick);
    }
}
