//! Kafka source and sink against a real broker (tansu, started by the test): every
//! message answered with its key and source headers, poison messages dead-lettered with
//! the reason, and nothing lost when weir is killed with SIGKILL mid-stream or the group
//! rebalances while messages are in flight.
#![allow(clippy::unwrap_used)] // a test or benchmark fails loudly on the first surprise

mod common;

use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::kafka::{
    check_answer, diamond_message, diamond_messages, distinct_keys, produce, read_until, stop, weir_logged, Broker, Out,
};
use common::process::Running;
use common::python::{parse_metrics, sample};
use rdkafka::producer::{FutureProducer, FutureRecord};
use serde_json::{json, Value as Json};

/// `weir serve graphs/diamond.yaml` with Kafka topics `in` → `out`, dead letters to
/// `dlq`; returns once it listens.
fn weir(broker: &Broker) -> Running {
    weir_with(broker, &[])
}

/// [`weir`] with more arguments.
fn weir_with(broker: &Broker, extra: &[&str]) -> Running {
    weir_graph(broker, "graphs/diamond.yaml", extra)
}

/// `weir serve GRAPH` with the test topics and `extra` arguments.
fn weir_graph(broker: &Broker, graph: &str, extra: &[&str]) -> Running {
    weir_logged(broker, graph, extra).0
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_message_is_answered_and_poison_goes_to_the_dead_letter_topic() {
    let broker = Broker::start();
    broker.create_topics(&["in", "out", "dlq"], 3).await;
    let n = 300;
    let mut messages = diamond_messages(n);
    let poison = vec![
        ("bad-json".to_string(), b"{\"a\": 1,".to_vec()),
        ("bad-field".to_string(), br#"{"a": 1, "c": 3}"#.to_vec()),
        ("bad-type".to_string(), br#"{"a": 1, "b": "two", "c": 3}"#.to_vec()),
    ];
    // Poison in the middle of the stream: the good ones after it still flow.
    for (k, p) in poison.iter().rev() {
        messages.insert(n / 2, (k.clone(), p.clone()));
    }
    produce(&broker, &messages).await;
    let (child, log) = weir_logged(&broker, "graphs/diamond.yaml", &[]);

    let out = read_until(&broker, "out", 3, Duration::from_secs(60), |o| o.len() >= n);
    let mut seen = vec![0; n];
    for o in &out {
        seen[check_answer(o)] += 1;
    }
    assert!(
        seen.iter().all(|&c| c >= 1),
        "every message answered: missing {:?}",
        (0..n).filter(|&i| seen[i] == 0).collect::<Vec<_>>()
    );

    let dead = read_until(&broker, "dlq", 3, Duration::from_secs(30), |o| o.len() >= poison.len());
    assert_eq!(dead.len(), poison.len());
    for (key, payload) in &poison {
        let d = dead.iter().find(|d| &d.key == key).unwrap_or_else(|| panic!("{key} dead-lettered"));
        assert_eq!(&d.payload, payload, "the original payload");
        assert_eq!(d.headers["weir-error-code"], "invalid_input");
        assert_eq!(d.headers["weir-error-node"], "input");
        assert!(!d.headers["weir-error-message"].is_empty());
        assert_eq!(d.headers["weir-source-topic"], "in");
    }
    let bad_field = dead.iter().find(|d| d.key == "bad-field").unwrap();
    assert_eq!(bad_field.headers["weir-error-field"], "b");

    // /metrics counts it all, and, once committed, each partition's offset and lag.
    let addr = common::kafka::address(&log);
    let input = [("graph", "diamond"), ("consumer", "input")];
    let t = Instant::now();
    let samples = loop {
        let (status, text) = common::process::http_get(&addr, "/metrics");
        assert_eq!(status, 200);
        let samples = parse_metrics(&text);
        let committed: f64 = samples.iter().filter(|s| s.name == "weir_kafka_committed_offset").map(|s| s.value).sum();
        if committed == (n + poison.len()) as f64 {
            break samples;
        }
        assert!(t.elapsed() < Duration::from_secs(30), "the offsets are committed and reported:\n{text}");
        std::thread::sleep(Duration::from_millis(200));
    };
    assert_eq!(sample(&samples, "weir_kafka_consumed_total", &input), Some((n + poison.len()) as f64));
    assert_eq!(sample(&samples, "weir_kafka_answered_total", &input), Some(n as f64));
    assert_eq!(sample(&samples, "weir_kafka_dead_lettered_total", &input), Some(poison.len() as f64));
    for p in ["0", "1", "2"] {
        let partition = [input[0], input[1], ("topic", "in"), ("partition", p)];
        assert!(sample(&samples, "weir_kafka_committed_offset", &partition).is_some_and(|o| o > 0.0), "partition {p}");
        assert_eq!(sample(&samples, "weir_kafka_lag", &partition), Some(0.0), "partition {p}");
    }
    stop(child);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nothing_is_lost_when_weir_is_killed_mid_stream() {
    let broker = Broker::start();
    broker.create_topics(&["in", "out", "dlq"], 2).await;
    // Enough that the backlog takes weir about a second: it answers diamond at 100,000 to
    // 250,000 messages/s on a 2-core machine (20,000 were all answered before the kill).
    let n = 200_000;
    produce(&broker, &diamond_messages(n)).await;

    let mut first = weir(&broker);
    // Kill it once some answers are out, and before all are.
    let partial = read_until(&broker, "out", 2, Duration::from_secs(60), |o| o.len() >= 100);
    assert!(partial.len() >= 100, "weir answered before the kill");
    first.kill().unwrap(); // SIGKILL: no shutdown, no final commit
    first.wait().unwrap();
    let before = read_until(&broker, "out", 2, Duration::from_secs(3), |_| false);
    let answered: std::collections::HashSet<&str> = before.iter().map(|o| o.key.as_str()).collect();
    assert!(answered.len() < n, "the kill came mid-stream ({} of {n} answered before it)", answered.len());

    let second = weir(&broker);
    let out = read_until(&broker, "out", 2, Duration::from_secs(120), distinct_keys(n));
    let mut seen = vec![0usize; n];
    for o in &out {
        seen[check_answer(o)] += 1;
    }
    let lost = seen.iter().filter(|&&c| c == 0).count();
    let duplicates: usize = seen.iter().map(|&c| c.saturating_sub(1)).sum();
    eprintln!(
        "kafka crash test: {n} messages, {} answered before the kill, {} outputs in all, {lost} lost, {duplicates} duplicates",
        answered.len(),
        out.len()
    );
    assert_eq!(lost, 0, "every input has at least one output after a SIGKILL and a restart");
    stop(second);
}

/// Waits until `log` has more than `after` lines containing `what`; returns their count.
fn wait_for_log(log: &Mutex<Vec<String>>, what: &str, after: usize) -> usize {
    let t = Instant::now();
    loop {
        let count = log.lock().unwrap().iter().filter(|l| l.contains(what)).count();
        if count > after {
            return count;
        }
        assert!(t.elapsed() < Duration::from_secs(60), "weir logs '{what}' within a minute");
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rebalances_and_a_kill_mid_stream_lose_nothing() {
    let broker = Broker::start();
    broker.create_topics(&["in", "out", "dlq"], 4).await;
    // A steady stream (about 2000 messages/s) until the test says stop, so that messages
    // are in flight whenever the group rebalances: when B joins, when B leaves, when A
    // is killed.
    let stop_producing = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let producing = {
        let producer: FutureProducer = broker.config().set("linger.ms", "5").create().unwrap();
        let stop = Arc::clone(&stop_producing);
        tokio::spawn(async move {
            let mut deliveries = Vec::new();
            let mut i = 0;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                for (key, payload) in (i..i + 100).map(diamond_message) {
                    let record = FutureRecord::to("in").key(&key).payload(&payload);
                    deliveries.push(producer.send_result(record).map_err(|(e, _)| e).unwrap());
                }
                i += 100;
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            for d in deliveries {
                d.await.unwrap().map_err(|(e, _)| e).unwrap();
            }
            i
        })
    };
    let (mut a, log_a) = weir_logged(&broker, "graphs/diamond.yaml", &[]);
    let assigned = wait_for_log(&log_a, "partition assigned", 0);
    tokio::time::sleep(Duration::from_secs(1)).await;
    // B joins: A's partitions are revoked while it has messages in flight, and split.
    let (b, log_b) = weir_logged(&broker, "graphs/diamond.yaml", &[]);
    wait_for_log(&log_b, "partition assigned", 0);
    let assigned = wait_for_log(&log_a, "partition assigned", assigned);
    tokio::time::sleep(Duration::from_secs(2)).await;
    // B leaves: its partitions go back to A.
    stop(b);
    let consumed_b = consumed_in(&log_b);
    wait_for_log(&log_a, "partition assigned", assigned);
    tokio::time::sleep(Duration::from_secs(1)).await;
    a.kill().unwrap(); // SIGKILL mid-stream
    a.wait().unwrap();
    let revoked = log_a.lock().unwrap().iter().filter(|l| l.contains("partition revoked")).count();
    let c = weir(&broker);
    tokio::time::sleep(Duration::from_secs(1)).await;
    stop_producing.store(true, std::sync::atomic::Ordering::Relaxed);
    let n = producing.await.unwrap();

    let out = read_until(&broker, "out", 4, Duration::from_secs(120), distinct_keys(n));
    let mut seen = vec![0usize; n];
    for o in &out {
        seen[check_answer(o)] += 1;
    }
    let lost: Vec<usize> = (0..n).filter(|&i| seen[i] == 0).collect();
    eprintln!(
        "kafka rebalance test: {n} messages, B consumed {consumed_b}, A saw {revoked} partition revocations, \
         {} lost",
        lost.len()
    );
    assert!(consumed_b > 0, "B took partitions from A while the stream ran");
    assert!(lost.is_empty(), "every input answered after two rebalances and a SIGKILL: lost {lost:?}");
    stop(c);
}

/// Messages consumed, from the closing Kafka line of a stopped `weir serve`'s log.
fn consumed_in(log: &Mutex<Vec<String>>) -> usize {
    let t = Instant::now();
    loop {
        if let Some(line) = log.lock().unwrap().iter().find(|l| l.starts_with("weir: kafka:")) {
            return line.split_whitespace().nth(2).unwrap().parse().unwrap();
        }
        assert!(t.elapsed() < Duration::from_secs(5), "weir's summary line is logged");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Reads `weir serve`'s closing Kafka line: messages it consumed.
fn consumed_by(mut child: Running) -> usize {
    Command::new("kill").args(["-TERM", &child.id().to_string()]).status().unwrap();
    let status = child.wait().unwrap();
    assert!(status.success(), "{status:?}");
    let mut text = String::new();
    std::io::Read::read_to_string(&mut child.stderr.take().unwrap(), &mut text).unwrap();
    let line = text.lines().find(|l| l.starts_with("weir: kafka:")).unwrap_or_else(|| panic!("summary in {text}"));
    line.split_whitespace().nth(2).unwrap().parse().unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_weir_processes_in_one_group_share_the_partitions() {
    let broker = Broker::start();
    broker.create_topics(&["in", "out", "dlq"], 4).await;
    let spawn = || {
        Running(
            Command::new(env!("CARGO_BIN_EXE_weir"))
                .args(["serve", "graphs/diamond.yaml", "--port", "0"])
                .args(broker.serve_flags())
                .current_dir(env!("CARGO_MANIFEST_DIR"))
                .stderr(Stdio::piped())
                .spawn()
                .expect("weir starts"),
        )
    };
    let (a, b) = (spawn(), spawn());
    // Both members join before any message exists, so the group splits the partitions.
    tokio::time::sleep(Duration::from_secs(8)).await;
    let n = 2000;
    produce(&broker, &diamond_messages(n)).await;
    let out = read_until(&broker, "out", 4, Duration::from_secs(60), distinct_keys(n));
    let mut seen = vec![0; n];
    for o in &out {
        seen[check_answer(o)] += 1;
    }
    assert!(seen.iter().all(|&c| c >= 1), "every message answered");
    let (ca, cb) = (consumed_by(a), consumed_by(b));
    eprintln!("kafka group test: {n} messages, consumed {ca} and {cb}");
    assert!(ca > 0 && cb > 0, "both members consumed: {ca} and {cb}");
    assert!(ca + cb >= n);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_idle_consumer_uses_no_measurable_cpu() {
    let broker = Broker::start();
    broker.create_topics(&["in", "out", "dlq"], 1).await;
    let child = weir(&broker);
    tokio::time::sleep(Duration::from_secs(10)).await; // joined the group, nothing to read
    let cpu = |pid: u32| -> f64 {
        let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
        let fields: Vec<&str> = stat[stat.rfind(')').unwrap() + 2..].split(' ').collect();
        (fields[11].parse::<f64>().unwrap() + fields[12].parse::<f64>().unwrap()) / 100.0
    };
    let (before, t) = (cpu(child.id()), Instant::now());
    tokio::time::sleep(Duration::from_secs(5)).await;
    let used = cpu(child.id()) - before;
    let share = used / t.elapsed().as_secs_f64();
    eprintln!(
        "idle weir serve with Kafka: {used:.2} s of CPU in {:.1} s ({:.2}% of a core)",
        t.elapsed().as_secs_f64(),
        share * 100.0
    );
    // A busy loop would use a whole core; the bound is wide so that a loaded machine
    // (whose scheduler charges a process for more than its work) does not fail it.
    assert!(share < 0.15, "an idle weir uses under 15% of a core, used {:.2}%", share * 100.0);
    stop(child);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn arrow_payloads_answer_every_row_and_dead_letter_the_failed_ones() {
    use std::sync::Arc;

    use arrow_array::cast::AsArray;
    use arrow_array::types::Float32Type;
    use arrow_array::{Array, ArrayRef, Float64Array, RecordBatch};

    let broker = Broker::start();
    broker.create_topics(&["in", "out", "dlq"], 1).await;
    // Two messages of 40 rows; row 7 of the second has a null `b`.
    let message = |base: usize, null_at: Option<usize>| {
        let col = |f: &dyn Fn(usize) -> Option<f64>| -> ArrayRef { Arc::new(Float64Array::from_iter((0..40).map(f))) };
        let batch = RecordBatch::try_from_iter([
            ("a", col(&|i| Some((base + i) as f64))),
            ("b", col(&|i| if Some(i) == null_at { None } else { Some(1.0) })),
            ("c", col(&|_| Some(0.5))),
        ])
        .unwrap();
        weir_connectors::arrow::write_stream(&batch).unwrap()
    };
    let messages = vec![("m0".to_string(), message(0, None)), ("m1".to_string(), message(40, Some(7)))];
    produce(&broker, &messages).await;
    let child = weir_with(&broker, &["--kafka-format", "arrow"]);

    let out = read_until(&broker, "out", 1, Duration::from_secs(60), |o| o.len() >= 2);
    assert_eq!(out.len(), 2, "one output message per input message");
    for o in &out {
        let base = if o.key == "m0" { 0 } else { 40 };
        let batch = weir_connectors::arrow::read_stream(&o.payload).unwrap().remove(0);
        assert_eq!(batch.num_rows(), 40);
        let y = batch.column_by_name("y").unwrap().as_primitive::<Float32Type>();
        let errors = batch.column_by_name("error").unwrap().as_string::<i32>();
        for i in 0..40 {
            if o.key == "m1" && i == 7 {
                assert!(y.is_null(i));
                assert!(errors.value(i).contains("\"field\":\"b\""), "{}", errors.value(i));
            } else {
                assert_eq!(y.value(i), (base + i) as f32 + 2.5, "{} row {i}", o.key);
                assert!(errors.is_null(i));
            }
        }
    }
    let dead = read_until(&broker, "dlq", 1, Duration::from_secs(30), |o| !o.is_empty());
    assert_eq!(dead.len(), 1);
    assert_eq!(dead[0].key, "m1");
    assert_eq!(dead[0].payload, messages[1].1, "the original payload");
    assert_eq!(dead[0].headers["weir-error-rows"], "1");
    assert_eq!(dead[0].headers["weir-error-field"], "b");
    stop(child);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn held_out_digits_are_classified_over_kafka() {
    let broker = Broker::start();
    broker.create_topics(&["in", "out", "dlq"], 2).await;
    let set = weir::datasets::digits(weir::datasets::Split::Test).unwrap();
    let messages: Vec<(String, Vec<u8>)> = set
        .iter()
        .enumerate()
        .map(|(i, d)| (format!("d{i}"), json!({"pixels": d.pixels}).to_string().into_bytes()))
        .collect();
    produce(&broker, &messages).await;
    let child = weir_graph(&broker, "graphs/digits.yaml", &["--workers", "2"]);
    let out = read_until(&broker, "out", 2, Duration::from_secs(60), distinct_keys(set.len()));
    let mut labels: Vec<Option<i64>> = vec![None; set.len()];
    for o in &out {
        let i: usize = o.key[1..].parse().unwrap();
        let body: Json = serde_json::from_slice(&o.payload).unwrap();
        assert_eq!(body["probs"].as_array().unwrap().len(), 10);
        labels[i] = body["label"].as_i64();
    }
    let right = labels.iter().zip(&set).filter(|(l, d)| **l == Some(i64::from(d.label))).count();
    let accuracy = right as f64 / set.len() as f64;
    assert!(labels.iter().all(Option::is_some), "every image answered");
    assert!(accuracy >= 0.95, "held-out accuracy over Kafka: {accuracy}");
    stop(child);
}

/// Every batch of an Arrow IPC file, concatenated.
fn read_arrow(path: &std::path::Path) -> arrow_array::RecordBatch {
    let reader = arrow_ipc::reader::FileReader::try_new(std::fs::File::open(path).unwrap(), None).unwrap();
    let schema = reader.schema();
    let batches: Vec<_> = reader.collect::<Result<_, _>>().unwrap();
    arrow_select::concat::concat_batches(&schema, &batches).unwrap()
}

/// `weir capture graphs/diamond.yaml` of topic `in` to `output`, with `extra` arguments.
fn capture(broker: &Broker, output: &std::path::Path, extra: &[&str]) -> std::process::Output {
    let base = ["capture", "graphs/diamond.yaml", "--bootstrap", &broker.addr, "--topic", "in", "--output"];
    common::weir_cli(&[&base[..], &[output.to_str().unwrap()], extra].concat())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn captured_traffic_replays_to_the_same_answers() {
    use arrow_array::cast::AsArray;
    use arrow_array::types::{Float32Type, Int32Type, Int64Type};
    use arrow_array::Array;
    let broker = Broker::start();
    broker.create_topics(&["in"], 2).await;
    let n = 200;
    let mut messages = diamond_messages(n);
    messages.insert(77, ("bad-json".to_string(), b"{\"a\": 1,".to_vec()));
    produce(&broker, &messages).await;
    let dir = tempfile::tempdir().unwrap();
    let (captured, replayed) = (dir.path().join("cap.arrow"), dir.path().join("out.arrow"));
    let path = |p: &std::path::Path| p.to_str().unwrap().to_string();

    let out = capture(&broker, &captured, &[]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert!(stderr.contains("weir: capture: 201 messages from 2 partitions, 201 rows (1 undecodable)"), "{stderr}");
    let cap = read_arrow(&captured);
    let errors = cap.column_by_name("capture_error").unwrap().as_string::<i32>();
    let payloads = cap.column_by_name("kafka_payload").unwrap().as_binary::<i32>();
    let bad = (0..cap.num_rows()).find(|&r| !errors.is_null(r)).unwrap();
    assert_eq!(payloads.value(bad), b"{\"a\": 1,", "the undecodable payload is kept as it was");

    let out = common::weir_cli(&[
        "replay",
        "graphs/diamond.yaml",
        "--input",
        &path(&captured),
        "--output",
        &path(&replayed),
        "--keep",
        "kafka_key",
        "--keep",
        "kafka_partition",
    ]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert!(stderr.contains("201 rows, 1 errors"), "{stderr}");
    let got = read_arrow(&replayed);
    let (y, keys) = (
        got.column_by_name("y").unwrap().as_primitive::<Float32Type>(),
        got.column_by_name("kafka_key").unwrap().as_binary::<i32>(),
    );
    let mut seen = vec![false; n];
    for r in 0..got.num_rows() {
        let key = String::from_utf8_lossy(keys.value(r)).into_owned();
        if key == "bad-json" {
            assert!(y.is_null(r));
            continue;
        }
        let i: usize = key[1..].parse().unwrap();
        assert_eq!(y.value(r), i as f32 + 2.5, "the replayed answer to {key}");
        seen[i] = true;
    }
    assert!(seen.iter().all(|&s| s), "every captured message replayed");

    // A range: offsets 5 to 14 of partition 0, nothing of partition 1.
    let out = capture(&broker, &captured, &["--from", "0:5", "--to", "0:15,1:0"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let cap = read_arrow(&captured);
    let partitions = cap.column_by_name("kafka_partition").unwrap().as_primitive::<Int32Type>();
    let offsets = cap.column_by_name("kafka_offset").unwrap().as_primitive::<Int64Type>();
    assert!(partitions.values().iter().all(|&p| p == 0));
    assert_eq!(offsets.values().to_vec(), (5..15).collect::<Vec<i64>>());

    // A range past the end is refused, naming the partition.
    let out = capture(&broker, &captured, &["--to", "1:999999"]);
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("topic 'in', partition 1: --to 999999 is past the end of the partition"), "{stderr}");
}

/// Produces `messages` (key, payload) to `topic` and waits for every acknowledgement.
async fn produce_to(broker: &Broker, topic: &str, messages: &[(String, Vec<u8>)]) {
    let producer: FutureProducer = broker.config().create().unwrap();
    for (key, payload) in messages {
        producer.send(FutureRecord::to(topic).key(key).payload(payload), Duration::from_secs(10)).await.unwrap();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn labels_from_the_feedback_topic_train_the_served_model() {
    let broker = Broker::start();
    broker.create_topics(&["in", "out", "dlq", "labels"], 1).await;
    let pages = weir::datasets::phishing().unwrap();
    let prediction =
        |i: usize| (format!("p{i}"), json!({"id": i, "features": pages[i].features}).to_string().into_bytes());
    let child = weir_graph(&broker, "graphs/phishing-online.yaml", &["--kafka-feedback", "labels"]);
    // 40 predictions, all by the untrained model.
    produce(&broker, &(0..40).map(prediction).collect::<Vec<_>>()).await;
    let out = read_until(&broker, "out", 1, Duration::from_secs(60), distinct_keys(40));
    let version = |o: &Out| serde_json::from_slice::<Json>(&o.payload).unwrap()["model_version"].as_i64().unwrap();
    assert!(out.iter().all(|o| version(o) == 0), "nothing learned yet");
    // Their labels, by key, one message each, and one message that is not feedback.
    let mut labels: Vec<(String, Vec<u8>)> = (0..40)
        .map(|i| (format!("l{i}"), json!({"key": i, "label": i64::from(pages[i].phishing)}).to_string().into_bytes()))
        .collect();
    labels.insert(20, ("bad".to_string(), br#"{"key": 3, "lable": 1}"#.to_vec()));
    produce_to(&broker, "labels", &labels).await;
    // Probes until one is answered by the weights learned from all 40 labels.
    let started = Instant::now();
    let mut probe = 1000;
    loop {
        produce(&broker, &[prediction(probe % pages.len())]).await;
        let key = format!("p{}", probe % pages.len());
        let out = read_until(&broker, "out", 1, Duration::from_secs(10), |o| o.iter().any(|o| o.key == key));
        if out.iter().filter(|o| o.key == key).any(|o| version(o) == 40) {
            break;
        }
        assert!(started.elapsed() < Duration::from_secs(60), "the served version reaches 40");
        probe += 1;
    }
    let dead = read_until(&broker, "dlq", 1, Duration::from_secs(30), |o| !o.is_empty());
    assert_eq!(dead.len(), 1);
    assert_eq!(dead[0].key, "bad");
    assert_eq!(dead[0].headers["weir-error-code"], "invalid_input");
    assert_eq!(dead[0].headers["weir-error-field"], "lable");
    assert_eq!(dead[0].headers["weir-source-topic"], "labels");
    stop(child);
}
