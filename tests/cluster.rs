//! One graph over a cluster of `weir serve` processes on 127.0.0.1 (timely's cluster
//! mode): answers at every process equal one process's, rows really cross processes,
//! feedback at one process moves the weights at another, a lost peer stops the rest,
//! and the flags and graphs that cannot run in a cluster are refused with the reason.
#![allow(clippy::unwrap_used)] // a test or benchmark fails loudly on the first surprise

mod common;

use std::time::{Duration, Instant};

use common::cluster::{cluster, cluster_with, Member};
use common::kafka::free_port;
use common::process::{http_post, serve_http};
use common::python::{parse_metrics, sample};
use serde_json::{json, Value as Json};
use weir::datasets::{digits, Split};

/// `weir_rows_from_peers_total{graph}` at `member`, with its `process` label checked.
fn rows_from_peers(member: &Member, process: usize, graph: &str) -> f64 {
    let (status, text) = common::kafka::http_get(&member.addr, "/metrics");
    assert_eq!(status, 200);
    let samples = parse_metrics(&text);
    sample(&samples, "weir_rows_from_peers_total", &[("process", &process.to_string()), ("graph", graph)])
        .unwrap_or_else(|| panic!("no weir_rows_from_peers_total for process {process}:\n{text}"))
}

/// The requests every cluster answers: single diamond rows, a diamond array, and the
/// held-out digits in arrays of ten.
fn requests() -> Vec<(&'static str, String)> {
    let mut out: Vec<(&str, String)> =
        (0..24).map(|i| ("/graphs/diamond", json!({"a": i, "b": 0.5 * i as f64, "c": -3 + i}).to_string())).collect();
    let rows: Vec<Json> = (0..40).map(|i| json!({"a": i, "b": 1, "c": 0.25})).collect();
    out.push(("/graphs/diamond", Json::Array(rows).to_string()));
    let test = digits(Split::Test).unwrap();
    for block in test[..100].chunks(10) {
        let rows: Vec<Json> = block.iter().map(|d| json!({"pixels": d.pixels})).collect();
        out.push(("/graphs/digits", Json::Array(rows).to_string()));
    }
    out
}

#[test]
fn every_process_answers_as_one_process_does_and_rows_cross_processes() {
    let dir = tempfile::tempdir().unwrap();
    let graphs = ["graphs/diamond.yaml", "graphs/digits.yaml"];
    let (_one, one) = serve_http(std::path::Path::new(env!("CARGO_BIN_EXE_weir")), &graphs);
    let requests = requests();
    let expected: Vec<(u16, String)> = requests.iter().map(|(path, body)| http_post(&one, path, body)).collect();
    assert!(expected.iter().all(|(s, _)| *s == 200), "{expected:?}");
    for (processes, workers) in [(2, 1), (3, 1), (2, 2)] {
        let members = cluster(dir.path(), &graphs, processes, workers);
        for (round, (path, body)) in requests.iter().enumerate() {
            // Every request goes to each process in turn.
            for (p, m) in members.iter().enumerate() {
                let got = http_post(&m.addr, path, body);
                assert_eq!(
                    got, expected[round],
                    "{processes} processes x {workers} workers: process {p} answered request {round} ({path}) otherwise"
                );
            }
        }
        for (p, m) in members.iter().enumerate() {
            for graph in ["diamond", "digits"] {
                let n = rows_from_peers(m, p, graph);
                assert!(n > 0.0, "{processes}x{workers}: process {p} computed no {graph} rows of other processes");
            }
        }
    }
}

#[test]
fn feedback_at_one_process_moves_the_weights_another_predicts_with() {
    let dir = tempfile::tempdir().unwrap();
    let members = cluster(dir.path(), &["graphs/phishing-online.yaml"], 2, 1);
    let predict = |id: i64| {
        let row = json!({"id": id, "features": [0.0, 1.0, 0.0, 1.0, 0.0, 1.0, 0.0, 1.0, 0.5]});
        let (status, body) = http_post(&members[0].addr, "/graphs/phishing_online", &row.to_string());
        assert_eq!(status, 200, "{body}");
        serde_json::from_str::<Json>(&body).unwrap()["model_version"].as_i64().unwrap()
    };
    // Predictions at process 0 (spread over both processes' workers), their labels posted
    // at process 1; the single learner's new weights reach process 0's predictions.
    let before = (0..20).map(predict).max().unwrap();
    let labels: Vec<Json> = (0..20).map(|k| json!({"key": k, "label": k % 2})).collect();
    let (status, body) =
        http_post(&members[1].addr, "/graphs/phishing_online/feedback", &Json::Array(labels).to_string());
    assert_eq!(status, 202, "{body}");
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut id = 100;
    while predict(id) <= before {
        assert!(Instant::now() < deadline, "the version at process 0 stayed at {before}");
        std::thread::sleep(Duration::from_millis(20));
        id += 1;
    }
}

#[test]
fn a_lost_peer_makes_every_other_process_unready_and_exit_naming_it() {
    let dir = tempfile::tempdir().unwrap();
    let mut members = cluster(dir.path(), &["graphs/diamond.yaml"], 3, 1);
    for m in &members {
        assert_eq!(http_post(&m.addr, "/graphs/diamond", r#"{"a":1,"b":2,"c":3}"#).0, 200);
    }
    members[2].child.kill().unwrap();
    let killed = Instant::now();
    for (p, m) in members.iter_mut().take(2).enumerate() {
        // Not ready within 2 s: /readyz answers 503, or nothing listens any more.
        loop {
            let ready = std::net::TcpStream::connect(&m.addr).is_ok()
                && common::kafka::http_get(&m.addr, "/readyz").0 == 200
                && m.child.try_wait().unwrap().is_none();
            if !ready {
                break;
            }
            assert!(killed.elapsed() < Duration::from_secs(2), "process {p} still ready 2 s after its peer died");
            std::thread::sleep(Duration::from_millis(20));
        }
        let status = loop {
            if let Some(status) = m.child.try_wait().unwrap() {
                break status;
            }
            assert!(killed.elapsed() < Duration::from_secs(20), "process {p} did not exit");
            std::thread::sleep(Duration::from_millis(20));
        };
        let log = m.log.lock().unwrap().join("\n");
        assert_eq!(status.code(), Some(3), "process {p}: {log}");
        assert!(log.contains(&format!("process {p} lost process 2 (127.0.0.1:")), "process {p}: {log}");
        assert!(!log.contains("panicked"), "the lost connection is reported without a backtrace: {log}");
    }
}

#[test]
fn flags_and_graphs_that_cannot_make_a_cluster_are_refused_with_the_reason() {
    let dir = tempfile::tempdir().unwrap();
    let hosts = dir.path().join("hosts");
    std::fs::write(&hosts, "127.0.0.1:7001\nnot-an-address\n").unwrap();
    let hosts = hosts.to_str().unwrap();
    let ports = format!("127.0.0.1:{}\n127.0.0.1:{}\n", free_port(), free_port());
    let good = dir.path().join("hosts-ok");
    std::fs::write(&good, ports).unwrap();
    let good = good.to_str().unwrap();
    let cases: [(&[&str], &str); 5] = [
        (&["--processes", "2", "--process", "0"], "--processes 2 needs --hosts FILE"),
        (&["--process", "1"], "--process and --hosts need --processes N"),
        (&["--processes", "2", "--process", "0", "--hosts", hosts], "line 2: 'not-an-address' is not host:port"),
        (&["--processes", "3", "--process", "0", "--hosts", good], "lists 2 processes, but --processes is 3"),
        (&["--processes", "2", "--process", "5", "--hosts", good], "--process 5 is out of range"),
    ];
    for (flags, expected) in cases {
        let out = common::weir_cli(&[&["serve", "graphs/diamond.yaml"][..], flags].concat());
        let stderr = common::text(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{flags:?}: {stderr}");
        assert!(stderr.contains(expected), "{flags:?}: {stderr}");
    }
    let out =
        common::weir_cli(&["serve", "graphs/accounts.yaml", "--processes", "2", "--process", "0", "--hosts", good]);
    let stderr = common::text(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("table 'accounts' cannot run in a cluster of processes yet"), "{stderr}");
}

/// Kafka: the processes of a cluster share the group's partitions; every message is
/// answered once; then one process is killed mid-stream (the other exits, naming it), the
/// cluster is started again, and no message is lost.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kafka_over_a_cluster_answers_every_message_and_loses_none_to_a_kill() {
    use common::kafka::{check_answer, diamond_messages, distinct_keys, produce, read_until, Broker};

    let broker = Broker::start();
    broker.create_topics(&["in", "out", "dlq"], 4).await;
    let dir = tempfile::tempdir().unwrap();
    let kafka = [
        "--kafka-bootstrap",
        &broker.addr,
        "--kafka-input",
        "in",
        "--kafka-output",
        "out",
        "--kafka-dead-letter",
        "dlq",
        "--kafka-group",
        "g",
        "--kafka-property",
        "session.timeout.ms=6000",
        "--kafka-property",
        "heartbeat.interval.ms=500",
    ];
    let members = cluster_with(dir.path(), &["graphs/diamond.yaml"], 2, 1, &kafka);
    // Both join the group before any message exists, so it splits the partitions.
    tokio::time::sleep(Duration::from_secs(8)).await;
    let n = 2000;
    produce(&broker, &diamond_messages(n)).await;
    let out = read_until(&broker, "out", 4, Duration::from_secs(60), distinct_keys(n));
    let mut seen = vec![0; n];
    for o in &out {
        seen[check_answer(o)] += 1;
    }
    assert!(seen.iter().all(|&c| c == 1), "every message answered once: {:?}", seen.iter().max());
    let from_peers: f64 = members.iter().enumerate().map(|(p, m)| rows_from_peers(m, p, "diamond")).sum();
    assert!(from_peers > 0.0, "rows of Kafka messages crossed processes");

    // A backlog produced while the cluster is down; the cluster again, and process 1
    // killed -9 while it answers the backlog (process 0 then exits, naming it); then the
    // whole cluster again.
    drop(members);
    let more: Vec<(String, Vec<u8>)> = (n..n + 200_000).map(common::kafka::diamond_message).collect();
    produce(&broker, &more).await;
    let answered = |m: &Member| -> f64 {
        let (_, text) = common::kafka::http_get(&m.addr, "/metrics");
        parse_metrics(&text).iter().filter(|s| s.name == "weir_kafka_answered_total").map(|s| s.value).sum()
    };
    let mut members = cluster_with(dir.path(), &["graphs/diamond.yaml"], 2, 1, &kafka);
    let deadline = Instant::now() + Duration::from_secs(60);
    while answered(&members[1]) < 1000.0 {
        assert!(Instant::now() < deadline, "process 1 answered none of the backlog");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let at_kill = answered(&members[0]) + answered(&members[1]);
    members[1].child.kill().unwrap();
    assert!(at_kill < more.len() as f64, "the kill came mid-stream ({at_kill} of {} answered)", more.len());
    let t = Instant::now();
    let status = loop {
        if let Some(status) = members[0].child.try_wait().unwrap() {
            break status;
        }
        assert!(t.elapsed() < Duration::from_secs(30), "process 0 outlived its peer");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let log = members[0].log.lock().unwrap().join("\n");
    assert_eq!(status.code(), Some(3), "{log}");
    assert!(log.contains("process 0 lost process 1"), "{log}");
    drop(members);
    let _again = cluster_with(dir.path(), &["graphs/diamond.yaml"], 2, 1, &kafka);
    let total = n + more.len();
    let out = read_until(&broker, "out", 4, Duration::from_secs(180), distinct_keys(total));
    let mut seen = vec![0usize; total];
    for o in &out {
        seen[check_answer(o)] += 1;
    }
    let lost = seen.iter().filter(|&&c| c == 0).count();
    let duplicates: usize = seen.iter().map(|&c| c.saturating_sub(1)).sum();
    eprintln!(
        "kafka cluster kill test: {total} messages, {at_kill} answered before the kill, {lost} lost, \
         {duplicates} answered more than once"
    );
    assert_eq!(lost, 0, "no message lost to the kill");
    let dead = read_until(&broker, "dlq", 4, Duration::from_secs(2), |o| !o.is_empty());
    assert!(dead.is_empty(), "rows the dying cluster did not compute are consumed again, not dead-lettered");
    assert!(duplicates < more.len() / 2, "duplicates only of what was uncommitted at the kill: {duplicates}");
}
