//! Tables that follow a Kafka topic, against a real broker (tansu, started by the test):
//! a snapshot, then the topic's changes from before the start, then changes while
//! serving; a tombstone deletes a key; a bad message is refused and counted.
#![allow(clippy::unwrap_used)] // a test or benchmark fails loudly on the first surprise

mod common;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::kafka::Broker;
use rdkafka::producer::{FutureProducer, FutureRecord};
use serde_json::{json, Value as Json};
use weir::datasets::{digits, Split};
use weir_connectors::kafka::table::TableFeed;
use weir_engine::{yaml, Engine, EngineConfig, Plan};
use weir_operators::Shutdown;
use weir_operators::Value;

/// Produces (key, value) messages to `topic`, `None` a tombstone, and waits for every
/// acknowledgement; `partition` pins them all to one partition if given.
async fn produce(broker: &Broker, topic: &str, partition: Option<i32>, messages: &[(String, Option<Vec<u8>>)]) {
    let producer: FutureProducer = broker.config().create().unwrap();
    for (key, value) in messages {
        let mut record = FutureRecord::<String, Vec<u8>>::to(topic).key(key);
        if let Some(v) = value {
            record = record.payload(v);
        }
        if let Some(p) = partition {
            record = record.partition(p);
        }
        producer.send(record, Duration::from_secs(10)).await.map_err(|(e, _)| e).unwrap();
    }
}

/// `weir serve GRAPH --kafka-bootstrap ...` on a free port: the child, its address, and
/// its log lines as they come.
fn serve(broker: &Broker, graph: &str) -> (Child, String, Arc<Mutex<Vec<String>>>) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_weir"))
        .args(["serve", graph, "--port", "0", "--kafka-bootstrap", &broker.addr])
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .stderr(Stdio::piped())
        .spawn()
        .expect("weir starts");
    let mut lines = BufReader::new(child.stderr.take().unwrap()).lines();
    let log = Arc::new(Mutex::new(Vec::new()));
    let addr = loop {
        let line = lines.next().expect("weir serve starts listening").unwrap();
        log.lock().unwrap().push(line.clone());
        if let Some(url) = line.strip_prefix("weir: listening on http://") {
            break url.to_string();
        }
    };
    let kept = Arc::clone(&log);
    std::thread::spawn(move || {
        for line in lines.map_while(Result::ok) {
            kept.lock().unwrap().push(line);
        }
    });
    (child, addr, log)
}

/// One HTTP/1.1 POST over a fresh connection: status and JSON body.
fn post(addr: &str, path: &str, body: &Json) -> (u16, Json) {
    let body = body.to_string();
    let mut s = TcpStream::connect(addr).unwrap();
    write!(
        s,
        "POST {path} HTTP/1.1\r\nHost: {addr}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )
    .unwrap();
    let mut response = String::new();
    s.read_to_string(&mut response).unwrap();
    let status = response[9..12].parse().unwrap();
    let body = response.split_once("\r\n\r\n").map_or("", |(_, b)| b);
    (status, serde_json::from_str(body).unwrap_or(Json::Null))
}

/// Asks for image `id`: its label and probabilities, or the error status and body.
fn classify(addr: &str, id: i64) -> Result<(i64, Vec<f64>), (u16, Json)> {
    let (status, body) = post(addr, "/graphs/digits_catalogue", &json!({"id": id}));
    if status != 200 {
        return Err((status, body));
    }
    let probs = body["probs"].as_array().unwrap().iter().map(|p| p.as_f64().unwrap()).collect();
    Ok((body["label"].as_i64().unwrap(), probs))
}

/// Asks until `done` holds for image `id`'s answer, for at most 30 s.
fn until(addr: &str, id: i64, what: &str, done: impl Fn(&Result<(i64, Vec<f64>), (u16, Json)>) -> bool) {
    let t = Instant::now();
    loop {
        if done(&classify(addr, id)) {
            return;
        }
        assert!(t.elapsed() < Duration::from_secs(30), "{what}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn pixels_message(id: i64, pixels: &[f32]) -> (String, Option<Vec<u8>>) {
    (id.to_string(), Some(json!({"pixels": pixels}).to_string().into_bytes()))
}

/// The bundled catalogue graph: its table starts from the held-out digits
/// (`digits/test.parquet`, id = row), takes the topic's changes made before weir started
/// before it answers anything, then changes made while it serves: the next requests use
/// the new pixels, and a deleted image takes the graph's missing-key policy (an error
/// naming the id). A message that cannot be decoded changes nothing and is counted.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_catalogue_graph_follows_its_topic_over_kafka() {
    let set = digits(Split::Test).unwrap();
    // Three images of different digits: 5 is overwritten before the start with 9's pixels,
    // 6 while serving with 8's pixels.
    let id = |label: u8, skip: usize| set.iter().enumerate().filter(|(_, d)| d.label == label).nth(skip).unwrap().0;
    let (five, nine, six, eight, deleted) = (id(1, 0), id(2, 0), id(3, 0), id(4, 0), id(5, 0));
    let [five, nine, six, eight, deleted] = [five, nine, six, eight, deleted].map(|i| i as i64);
    let broker = Broker::start();
    broker.create_topics(&["digit-images"], 2).await;
    produce(&broker, "digit-images", Some(1), &[pixels_message(five, &set[nine as usize].pixels)]).await;

    let (mut child, addr, log) = serve(&broker, "graphs/digits-catalogue.yaml");
    // The change made before the start is there for the first request.
    let nine_answer = classify(&addr, nine).expect("an untouched image is classified");
    assert_eq!(classify(&addr, five).unwrap(), nine_answer, "image {five} has image {nine}'s pixels");
    // The snapshot's image, until the topic changes it.
    let six_before = classify(&addr, six).unwrap();
    let eight_answer = classify(&addr, eight).unwrap();
    assert_ne!(six_before.1, eight_answer.1);

    produce(
        &broker,
        "digit-images",
        Some(0),
        &[
            ("not-a-number".to_string(), Some(br#"{"pixels": []}"#.to_vec())),
            pixels_message(six, &set[eight as usize].pixels),
        ],
    )
    .await;
    until(&addr, six, "the update over Kafka reaches the table", |a| a.as_ref().ok() == Some(&eight_answer));
    // Once seen, every later request sees it.
    for _ in 0..20 {
        assert_eq!(classify(&addr, six).unwrap(), eight_answer);
    }

    assert!(classify(&addr, deleted).is_ok());
    produce(&broker, "digit-images", Some(1), &[(deleted.to_string(), None)]).await;
    until(&addr, deleted, "the tombstone deletes the image", |a| a.is_err());
    let (status, body) = classify(&addr, deleted).unwrap_err();
    assert_eq!(status, 422, "{body}");
    let error = body.to_string();
    assert!(error.contains("invalid_input") && error.contains(&format!("key {deleted}")), "{error}");

    // SIGINT: the feed's summary names the refused message.
    Command::new("kill").args(["-INT", &child.id().to_string()]).status().unwrap();
    let status = child.wait().unwrap();
    assert!(status.success(), "{status:?}");
    std::thread::sleep(Duration::from_millis(200));
    let log = log.lock().unwrap().join("\n");
    assert!(log.contains("360 rows from its snapshot"), "{log}");
    assert!(log.contains("table 'images': 1 changes from topic 'digit-images'"), "{log}");
    assert!(log.contains("table 'images' from topic 'digit-images': 4 messages, 3 changes, 1 refused"), "{log}");
}

/// `weir run` (a batch job) reads the table's topic up to its end before the first row,
/// on top of the snapshot; without brokers it stops, naming graph and table.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn weir_run_reads_the_topic_up_to_its_end() {
    let set = digits(Split::Test).unwrap();
    let broker = Broker::start();
    broker.create_topics(&["digit-images"], 1).await;
    // Image 0 gets image 1's pixels; image 2 is deleted.
    produce(&broker, "digit-images", None, &[pixels_message(0, &set[1].pixels), ("2".to_string(), None)]).await;
    let run = |extra: &[&str]| {
        let mut child = Command::new(env!("CARGO_BIN_EXE_weir"))
            .args(["run", "graphs/digits-catalogue.yaml", "--input", "-"])
            .args(extra)
            .current_dir(env!("CARGO_MANIFEST_DIR"))
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("weir starts");
        child.stdin.take().unwrap().write_all(b"{\"id\": 0}\n{\"id\": 1}\n{\"id\": 2}\n").unwrap();
        child.wait_with_output().unwrap()
    };
    let out = run(&["--kafka-bootstrap", &broker.addr]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    let lines: Vec<Json> =
        String::from_utf8_lossy(&out.stdout).lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    assert_eq!(lines.len(), 3);
    assert_eq!(lines[0], lines[1], "image 0 has image 1's pixels");
    assert!(lines[2]["error"]["message"].as_str().unwrap().contains("key 2 is not in table 'images'"), "{}", lines[2]);
    assert!(stderr.contains("table 'images': 2 changes from topic 'digit-images'"), "{stderr}");

    let out = run(&[]);
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("table 'images' follows a Kafka topic, but no brokers are named"), "{stderr}");
}

const ACCOUNTS: &str = "name: enrich\ninputs:\n  account: str\ntables:\n  accounts:\n    key: account\n    values:\n      mean: f32\n    topic: accounts\nnodes:\n  features:\n    kind: lookup\n    table: accounts\n    key: input.account\n    missing: default\n    defaults: {mean: -1.0}\noutputs:\n  mean: features.mean\n  found: features.found\n";

fn accounts() -> Plan {
    Plan::new(&yaml::parse(ACCOUNTS, "accounts.yaml", ".".into()).unwrap()).unwrap()
}

/// The feed in-process, at 2 workers, over a topic of 3 partitions: catching up applies
/// every message written before (the latest per key wins, tombstones delete), and
/// following applies new ones; the key count follows.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_feed_catches_up_on_every_partition_then_follows() {
    let broker = Broker::start();
    broker.create_topics(&["accounts"], 3).await;
    // 300 keys over 3 partitions, then a second value for the even ones and a tombstone
    // for every tenth, each in its key's partition so the order per key holds.
    let mut first = Vec::new();
    for i in 0..300 {
        first.push((format!("acc-{i}"), Some(json!({"mean": i}).to_string().into_bytes())));
    }
    for p in 0..3 {
        let part: Vec<_> = first.iter().enumerate().filter(|(i, _)| i % 3 == p).map(|(_, m)| m.clone()).collect();
        produce(&broker, "accounts", Some(p as i32), &part).await;
        let second: Vec<_> = (0..300)
            .filter(|i| i % 3 == p)
            .filter_map(|i| match i {
                i if i % 10 == 0 => Some((format!("acc-{i}"), None)),
                i if i % 2 == 0 => Some((format!("acc-{i}"), Some(json!({"mean": i + 1000}).to_string().into_bytes()))),
                _ => None,
            })
            .collect();
        produce(&broker, "accounts", Some(p as i32), &second).await;
    }
    let plan = accounts();
    let engine = Engine::start(vec![plan], EngineConfig { workers: 2, ..EngineConfig::default() }).unwrap();
    let graph = engine.graphs()[0].clone();
    let mut feed = TableFeed::connect(graph.clone(), "accounts", &broker.addr, &[], Duration::from_secs(10)).unwrap();
    let done = feed.catch_up(Duration::from_secs(30), &Shutdown::new()).unwrap();
    assert_eq!((done.messages, done.refused), (300 + 150, 0));
    let mean = |i: usize| {
        let row = graph.call(vec![Value::Str(format!("acc-{i}").into())]).unwrap().unwrap();
        (row[0].clone(), row[1].clone())
    };
    for i in 0..300 {
        let want = match i {
            i if i % 10 == 0 => (Value::F32(-1.0), Value::Bool(false)),
            i if i % 2 == 0 => (Value::F32((i + 1000) as f32), Value::Bool(true)),
            i => (Value::F32(i as f32), Value::Bool(true)),
        };
        assert_eq!(mean(i), want, "acc-{i} after catching up");
    }
    assert_eq!(graph.table_sizes(), vec![("accounts".to_string(), 270)]);

    let stop = Shutdown::new();
    let following = {
        let stop = stop.clone();
        std::thread::spawn(move || feed.follow(&stop))
    };
    produce(&broker, "accounts", Some(2), &[("acc-new".into(), Some(br#"{"mean": 7.5, "accounts": "x"}"#.to_vec()))])
        .await;
    produce(&broker, "accounts", Some(2), &[("acc-new".into(), Some(br#"{"mean": 8.5}"#.to_vec()))]).await;
    let t = Instant::now();
    while graph.call(vec![Value::Str("acc-new".into())]).unwrap().unwrap()[0] != Value::F32(8.5) {
        assert!(t.elapsed() < Duration::from_secs(30), "the new key arrives");
        std::thread::sleep(Duration::from_millis(20));
    }
    stop.request();
    let summary = following.join().unwrap();
    assert_eq!((summary.messages, summary.changes, summary.refused), (452, 451, 1));
    assert_eq!(graph.table_sizes(), vec![("accounts".to_string(), 271)]);
}

/// A table topic that does not exist stops the start, naming graph, table and topic.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_missing_topic_stops_the_start_naming_it() {
    let broker = Broker::start();
    let plan = accounts();
    let engine = Engine::start(vec![plan], EngineConfig::default()).unwrap();
    let graph = engine.graphs()[0].clone();
    let Err(e) = TableFeed::connect(graph, "accounts", &broker.addr, &[], Duration::from_secs(10)) else {
        panic!("connects to a topic that does not exist")
    };
    let e = e.to_string();
    assert!(e.contains("graph 'enrich': table 'accounts': topic 'accounts'") && e.contains("no such topic"), "{e}");
}
