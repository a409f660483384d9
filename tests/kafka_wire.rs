//! What travels between weir and a real broker (tansu, started by the test): input topics
//! written with every compression codec librdkafka has (gzip, snappy, lz4, zstd) are
//! consumed and answered; and weir talks to a broker over TLS (`security.protocol=ssl`
//! in the graph's Kafka properties), through a TLS-terminating proxy in front of tansu,
//! whose own TLS listener does not complete a handshake (see README, "Over Kafka").
#![allow(clippy::unwrap_used)] // a test or benchmark fails loudly on the first surprise

mod common;

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::Duration;

use common::kafka::{check_answer, diamond_message, distinct_keys, free_port, read_until, stop, weir_logged, Broker};
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::Message;
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::{Offset, TopicPartitionList};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn input_written_with_every_compression_codec_is_answered() {
    let broker = Broker::start();
    broker.create_topics(&["in", "out", "dlq"], 2).await;
    let codecs = ["none", "gzip", "snappy", "lz4", "zstd"];
    let per_codec = 200;
    for (c, codec) in codecs.iter().enumerate() {
        // Batches of many messages, so that each is compressed as a whole.
        let producer: FutureProducer =
            broker.config().set("compression.type", *codec).set("linger.ms", "50").create().unwrap();
        let mut deliveries = Vec::new();
        for i in c * per_codec..(c + 1) * per_codec {
            let (key, payload) = diamond_message(i);
            let record = FutureRecord::to("in").key(&key).payload(&payload);
            deliveries.push(producer.send_result(record).map_err(|(e, _)| e).unwrap());
        }
        for d in deliveries {
            d.await.unwrap().map_err(|(e, _)| e).unwrap_or_else(|e| panic!("producing with {codec}: {e}"));
        }
    }
    let n = codecs.len() * per_codec;
    let (child, _log) = weir_logged(&broker, "graphs/diamond.yaml", &[]);
    let out = read_until(&broker, "out", 2, Duration::from_secs(60), distinct_keys(n));
    let mut seen = vec![false; n];
    for o in &out {
        seen[check_answer(o)] = true;
    }
    for (c, codec) in codecs.iter().enumerate() {
        let answered = seen[c * per_codec..(c + 1) * per_codec].iter().filter(|&&s| s).count();
        assert_eq!(answered, per_codec, "messages written with {codec} answered");
    }
    stop(child);
}

/// The TLS proxy (tests/tls/proxy.py) from `listen` to `target`, once it listens.
fn tls_proxy(listen: u16, target: &str) -> common::process::Running {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/tls");
    let target_port = target.rsplit(':').next().unwrap();
    let mut child = Command::new("python3")
        .arg(dir.join("proxy.py"))
        .args([&listen.to_string(), target_port])
        .arg(dir.join("cert.pem"))
        .arg(dir.join("key.pem"))
        .stdout(Stdio::piped())
        .spawn()
        .expect("python3 runs the TLS proxy");
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    assert_eq!(lines.next().and_then(Result::ok).as_deref(), Some("ready"), "the TLS proxy listens");
    std::thread::spawn(move || lines.for_each(drop));
    common::process::Running(child)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn weir_consumes_and_produces_over_tls() {
    let tls_port = free_port();
    let broker = Broker::start_advertising(Some(tls_port));
    let _proxy = tls_proxy(tls_port, &broker.addr);
    let ca = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/tls/cert.pem");
    let ca = ca.to_str().unwrap();
    let tls = |c: &mut ClientConfig| {
        c.set("bootstrap.servers", format!("127.0.0.1:{tls_port}"))
            .set("security.protocol", "ssl")
            .set("ssl.ca.location", ca);
    };
    let admin_config = {
        let mut c = broker.config();
        tls(&mut c);
        c
    };
    let admin: rdkafka::admin::AdminClient<rdkafka::client::DefaultClientContext> = admin_config.create().unwrap();
    let topics: Vec<_> = ["in", "out", "dlq"]
        .iter()
        .map(|t| rdkafka::admin::NewTopic::new(t, 1, rdkafka::admin::TopicReplication::Fixed(1)))
        .collect();
    for r in admin.create_topics(&topics, &rdkafka::admin::AdminOptions::new()).await.unwrap() {
        r.unwrap();
    }
    let mut producer_config = broker.config();
    tls(&mut producer_config);
    let producer: FutureProducer = producer_config.create().unwrap();
    let n = 100;
    for i in 0..n {
        let (key, payload) = diamond_message(i);
        producer.send(FutureRecord::to("in").key(&key).payload(&payload), Duration::from_secs(30)).await.unwrap();
    }

    let tls_bootstrap = format!("127.0.0.1:{tls_port}");
    let ca_property = format!("ssl.ca.location={ca}");
    let weir = common::process::Running(
        Command::new(env!("CARGO_BIN_EXE_weir"))
            .args(["serve", "graphs/diamond.yaml", "--port", "0", "--kafka-bootstrap", &tls_bootstrap])
            .args(["--kafka-input", "in", "--kafka-output", "out", "--kafka-dead-letter", "dlq", "--kafka-group", "g"])
            .args(["--kafka-property", "session.timeout.ms=6000", "--kafka-property", "heartbeat.interval.ms=500"])
            .args(["--kafka-property", "security.protocol=ssl", "--kafka-property", &ca_property])
            .current_dir(env!("CARGO_MANIFEST_DIR"))
            .stderr(Stdio::null())
            .spawn()
            .expect("weir starts"),
    );

    // The answers, read over TLS too.
    let mut reader_config = broker.config();
    tls(&mut reader_config);
    let reader: BaseConsumer = reader_config.set("group.id", "reader").create().unwrap();
    let mut tpl = TopicPartitionList::new();
    tpl.add_partition_offset("out", 0, Offset::Beginning).unwrap();
    reader.assign(&tpl).unwrap();
    let mut seen = vec![false; n];
    let t = std::time::Instant::now();
    while seen.iter().any(|s| !s) && t.elapsed() < Duration::from_secs(60) {
        if let Some(Ok(m)) = reader.poll(Duration::from_millis(100)) {
            seen[check_answer(&common::kafka::Out::of(&m))] = true;
            assert!(m.payload().is_some());
        }
    }
    assert!(seen.iter().all(|&s| s), "every message answered over TLS");
    stop(weir);
}
