//! One graph over a cluster of `weir serve` processes on 127.0.0.1 (timely's cluster
//! mode): answers at every process equal one process's, rows really cross processes,
//! feedback at one process moves the weights at another, an upsert at one process is
//! seen by the next request at another, a lost peer stops the rest, and flags that cannot
//! make a cluster are refused with the reason.
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
    let (status, text) = common::process::http_get(&member.addr, "/metrics");
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
    for (processes, workers) in [(2, 1), (3, 1), (2, 2), (3, 2)] {
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
                && common::process::http_get(&m.addr, "/readyz").0 == 200
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
fn an_upsert_at_one_process_is_seen_by_the_next_request_at_another() {
    let dir = tempfile::tempdir().unwrap();
    let members = cluster(dir.path(), &["graphs/accounts.yaml"], 2, 1);
    // Process 0 takes more requests first: its clock must not run ahead of process 1's.
    for _ in 0..100 {
        assert_eq!(http_post(&members[0].addr, "/graphs/accounts", r#"{"account": "nobody", "amount": 1}"#).0, 200);
    }
    for i in 0..40 {
        // The upsert at one process, then at once the request at the other.
        let (writer, reader) = (&members[i % 2], &members[(i + 1) % 2]);
        let key = format!("acc-{}", i % 5);
        let change = json!({"key": key, "values": {"mean": i, "std": 1.0, "country": "PT"}});
        let (status, body) = http_post(&writer.addr, "/graphs/accounts/tables/accounts", &change.to_string());
        assert_eq!(status, 202, "{body}");
        let (status, body) =
            http_post(&reader.addr, "/graphs/accounts", &json!({"account": key, "amount": 5.0}).to_string());
        assert_eq!(status, 200, "{body}");
        let answer: Json = serde_json::from_str(&body).unwrap();
        assert_eq!(answer["features"][1].as_f64(), Some(i as f64), "round {i}: {answer}");
        assert_eq!(answer["known_account"], json!(true), "round {i}: {answer}");
    }
}

#[test]
fn flags_that_cannot_make_a_cluster_are_refused_with_the_reason() {
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
    let flags = broker.serve_flags();
    let kafka: Vec<&str> = flags.iter().map(String::as_str).collect();
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

    // A backlog produced while the cluster is down; then three times: the cluster again,
    // and one of its processes killed -9 while it answers the backlog (the other then
    // exits, naming it); then the whole cluster again.
    drop(members);
    let mut down = Instant::now();
    let more: Vec<(String, Vec<u8>)> = (n..n + 200_000).map(common::kafka::diamond_message).collect();
    produce(&broker, &more).await;
    let total = n + more.len();
    let mut outputs = n;
    for kill in [1, 0, 1] {
        outlive_sessions(down).await;
        let mut members = cluster_with(dir.path(), &["graphs/diamond.yaml"], 2, 1, &kafka);
        // Whichever process consumes, half the rows are computed at each: one is killed
        // once the output topic holds a thousand more answers.
        let grown = read_until(&broker, "out", 4, Duration::from_secs(60), |o| o.len() >= outputs + 1000);
        assert!(grown.len() >= outputs + 1000, "the cluster answered nothing more: {}", diagnose(&members));
        members[kill].child.kill().unwrap();
        let (survivor, t) = (1 - kill, Instant::now());
        let status = loop {
            if let Some(status) = members[survivor].child.try_wait().unwrap() {
                break status;
            }
            assert!(
                t.elapsed() < Duration::from_secs(30),
                "process {survivor} outlived its peer {kill}: {:?}",
                members[survivor].log.lock().unwrap()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        };
        let log = members[survivor].log.lock().unwrap().join("\n");
        assert_eq!(status.code(), Some(3), "{log}");
        assert!(log.contains(&format!("process {survivor} lost process {kill}")), "{log}");
        drop(members);
        down = Instant::now();
        let out = read_until(&broker, "out", 4, Duration::from_secs(5), distinct_keys(total));
        outputs = out.len();
        let answered: std::collections::HashSet<&str> = out.iter().map(|o| o.key.as_str()).collect();
        assert!(answered.len() < total, "the kill came mid-stream ({} of {total} answered)", answered.len());
    }
    outlive_sessions(down).await;
    let again = cluster_with(dir.path(), &["graphs/diamond.yaml"], 2, 1, &kafka);
    let out = read_until(&broker, "out", 4, Duration::from_secs(180), distinct_keys(total));
    let mut seen = vec![0usize; total];
    for o in &out {
        seen[check_answer(o)] += 1;
    }
    let lost = seen.iter().filter(|&&c| c == 0).count();
    let duplicates: usize = seen.iter().map(|&c| c.saturating_sub(1)).sum();
    eprintln!("kafka cluster kill test: {total} messages, 3 kills, {lost} lost, {duplicates} answered more than once");
    let dead = read_until(&broker, "dlq", 4, Duration::from_secs(2), |o| !o.is_empty());
    if lost > 0 {
        let first: Vec<usize> = seen.iter().enumerate().filter(|(_, &c)| c == 0).map(|(i, _)| i).take(10).collect();
        panic!("{lost} lost (first {first:?}), {} dead letters; the last cluster: {}", dead.len(), diagnose(&again));
    }
    assert!(dead.is_empty(), "rows the dying cluster did not compute are consumed again, not dead-lettered");
    // Per kill, what was answered and not yet committed: at most each process's
    // messages between consumption and commit (the in-flight bound, 8192), and the
    // answers of one commit interval.
    let bound = 3 * 3 * 8192;
    assert!(duplicates <= bound, "duplicates only of what was uncommitted at the kills: {duplicates} > {bound}");
}

/// Waits until the group's members that died at `down` (killed, or exited without
/// leaving the group) have been silent for longer than their session timeout
/// ([`common::kafka::SESSION_TIMEOUT`], in the broker's flags), so that the next cluster's first
/// JoinGroup removes them all at once. tansu removes a silent member only when a request
/// for the group arrives, and keeps a dead leader until then: new members that join
/// while the dead ones' sessions run out one after the other get a generation whose
/// member set changes under the leader's SyncGroup, and each such round costs them
/// 8-10 s (one CI run of 2026-12-07 saw no partition assigned for 60 s).
async fn outlive_sessions(down: Instant) {
    let quiet = common::kafka::SESSION_TIMEOUT + Duration::from_secs(2);
    tokio::time::sleep(quiet.saturating_sub(down.elapsed())).await;
}

/// Each member's log and Kafka metrics, for a failure's message.
fn diagnose(members: &[Member]) -> String {
    members
        .iter()
        .enumerate()
        .map(|(p, m)| {
            let metrics = std::net::TcpStream::connect(&m.addr)
                .map(|_| common::process::http_get(&m.addr, "/metrics").1)
                .unwrap_or_default();
            let kafka: Vec<&str> = metrics.lines().filter(|l| l.starts_with("weir_kafka")).collect();
            format!("\n--- process {p}:\n{}\n{}", m.log.lock().unwrap().join("\n"), kafka.join("\n"))
        })
        .collect()
}

/// Runs `weir ARGS` as every process of a `processes`-process cluster (the same command
/// line, as a replay is run); returns each process's stderr once all exited 0.
fn run_everywhere(dir: &std::path::Path, args: &[&str], processes: usize) -> Vec<String> {
    let hosts = dir.join(format!("hosts-{}", free_port()));
    let lines: Vec<String> = (0..processes).map(|_| format!("127.0.0.1:{}", free_port())).collect();
    std::fs::write(&hosts, lines.join("\n") + "\n").unwrap();
    let children: Vec<_> = (0..processes)
        .map(|p| {
            std::process::Command::new(env!("CARGO_BIN_EXE_weir"))
                .args(args)
                .args(["--processes", &processes.to_string(), "--process", &p.to_string(), "--hosts"])
                .arg(&hosts)
                .current_dir(env!("CARGO_MANIFEST_DIR"))
                .stdout(std::process::Stdio::null())
                .stderr(std::process::Stdio::piped())
                .spawn()
                .unwrap()
        })
        .collect();
    children
        .into_iter()
        .enumerate()
        .map(|(p, child)| {
            let out = child.wait_with_output().unwrap();
            let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
            assert!(out.status.success(), "process {p}: {stderr}");
            stderr
        })
        .collect()
}

/// Runs `weir ALONE` in one process (it must succeed), then `weir CLUSTERED` over a
/// 2-process cluster ([`run_everywhere`]); returns the first's stderr and each process's.
fn alone_then_clustered(dir: &std::path::Path, alone: &[String], clustered: &[String]) -> (String, Vec<String>) {
    fn strs(args: &[String]) -> Vec<&str> {
        args.iter().map(String::as_str).collect()
    }
    let single = common::weir_cli(&strs(alone));
    let stderr = common::text(&single.stderr);
    assert!(single.status.success(), "{stderr}");
    (stderr, run_everywhere(dir, &strs(clustered), 2))
}

/// The bits of every value of the f32 column `name` and the i64 column `version`.
fn predictions(path: &std::path::Path, name: &str, version: Option<&str>) -> (Vec<u32>, Vec<i64>) {
    use arrow_array::cast::AsArray;
    use arrow_array::types::{Float32Type, Int64Type};
    let batch = common::streams::read(path);
    let column = batch.column_by_name(name).unwrap();
    let bits = match column.as_primitive_opt::<Float32Type>() {
        Some(p) => p.values().iter().map(|v| v.to_bits()).collect(),
        None => {
            let lists = column.as_fixed_size_list();
            lists.values().as_primitive::<Float32Type>().values().iter().map(|v| v.to_bits()).collect()
        }
    };
    let versions = version
        .map_or_else(Vec::new, |v| batch.column_by_name(v).unwrap().as_primitive::<Int64Type>().values().to_vec());
    (bits, versions)
}

#[test]
fn a_replay_or_a_run_over_a_cluster_writes_what_one_process_writes() {
    let dir = tempfile::tempdir().unwrap();
    // Digits: the held-out images, process 0 reading and writing, process 1 computing.
    let test = digits(Split::Test).unwrap();
    let mut pixels = arrow_array::builder::FixedSizeListBuilder::new(arrow_array::builder::Float32Builder::new(), 64);
    for d in &test {
        pixels.values().append_slice(&d.pixels);
        pixels.append(true);
    }
    let input = dir.path().join("digits.arrow");
    let batch = arrow_array::RecordBatch::try_from_iter([(
        "pixels",
        std::sync::Arc::new(pixels.finish()) as arrow_array::ArrayRef,
    )])
    .unwrap();
    common::streams::write(&input, &batch);
    let (one, two) = (dir.path().join("one.arrow"), dir.path().join("two.arrow"));
    let args = |out: &std::path::Path| {
        [
            "replay",
            "graphs/digits.yaml",
            "--input",
            input.to_str().unwrap(),
            "--output",
            out.to_str().unwrap(),
            "--workers",
            "1",
            "--chunk-rows",
            "16",
        ]
        .map(String::from)
    };
    let (_, logs) = alone_then_clustered(dir.path(), &args(&one), &args(&two));
    assert!(logs[0].contains(&format!("{} rows, 0 errors", test.len())), "{}", logs[0]);
    let lent: usize = logs[1]
        .lines()
        .find_map(|l| l.strip_prefix("weir: process 1: computed ")?.split_whitespace().next()?.parse().ok())
        .unwrap_or_else(|| panic!("{}", logs[1]));
    assert!(lent > 0, "process 1 computed rows of process 0's replay: {}", logs[1]);
    assert_eq!(predictions(&one, "probs", None), predictions(&two, "probs", None), "digits: 1 process and 2");

    // `weir run`: JSON lines in and out, the same way.
    let lines: Vec<String> = (0..300).map(|i| json!({"a": i, "b": 0.5, "c": -1}).to_string()).collect();
    let jsonl = dir.path().join("rows.jsonl");
    std::fs::write(&jsonl, lines.join("\n") + "\n").unwrap();
    let (one, two) = (dir.path().join("one.jsonl"), dir.path().join("two.jsonl"));
    let args = |out: &std::path::Path| {
        ["run", "graphs/diamond.yaml", "--input", jsonl.to_str().unwrap(), "--output", out.to_str().unwrap()]
            .map(String::from)
    };
    let (_, logs) = alone_then_clustered(dir.path(), &args(&one), &args(&two));
    assert!(logs[0].contains("300 rows, 0 errors"), "{}", logs[0]);
    assert_eq!(
        std::fs::read_to_string(&one).unwrap(),
        std::fs::read_to_string(&two).unwrap(),
        "weir run: 1 process and 2"
    );

    // A table from its snapshot (loaded by process 0), its keys spread over the cluster.
    let accounts: Vec<String> = (0..50).map(|i| format!("acc-{i}")).collect();
    let snapshot = arrow_array::RecordBatch::try_from_iter([
        (
            "account",
            std::sync::Arc::new(arrow_array::StringArray::from_iter_values(&accounts)) as arrow_array::ArrayRef,
        ),
        ("mean", std::sync::Arc::new(arrow_array::Float32Array::from_iter_values((0..50).map(|i| i as f32))) as _),
        (
            "country",
            std::sync::Arc::new(arrow_array::StringArray::from_iter_values(accounts.iter().map(|_| "PT"))) as _,
        ),
    ])
    .unwrap();
    common::streams::write(&dir.path().join("accounts.arrow"), &snapshot);
    let graph = dir.path().join("enrich.yaml");
    let text = "name: enrich\ninputs:\n  account: str\n  amount: f32\ntables:\n  accounts:\n    key: account\n    values:\n      mean: f32\n      country: str\n    snapshot: accounts.arrow\nnodes:\n  features:\n    kind: lookup\n    table: accounts\n    key: input.account\n    missing: default\n    defaults: {mean: -1.0, country: unknown}\noutputs:\n  mean: features.mean\n  found: features.found\n";
    std::fs::write(&graph, text).unwrap();
    let lines: Vec<String> =
        (0..200).map(|i| json!({"account": format!("acc-{}", i % 100), "amount": 1}).to_string()).collect();
    std::fs::write(&jsonl, lines.join("\n") + "\n").unwrap();
    let (one, two) = (dir.path().join("table-one.jsonl"), dir.path().join("table-two.jsonl"));
    let args = |out: &std::path::Path| {
        ["run", graph.to_str().unwrap(), "--input", jsonl.to_str().unwrap(), "--output", out.to_str().unwrap()]
            .map(String::from)
    };
    let (_, logs) = alone_then_clustered(dir.path(), &args(&one), &args(&two));
    assert!(logs[0].contains("table 'accounts': 50 rows from its snapshot"), "{}", logs[0]);
    let answers = std::fs::read_to_string(&two).unwrap();
    assert_eq!(std::fs::read_to_string(&one).unwrap(), answers, "a table: 1 process and 2");
    assert_eq!(answers.lines().filter(|l| l.contains("\"found\":true")).count(), 100, "{answers}");

    // Online learning, deterministic: predictions and late labels, merged by event time.
    let (p_path, l_path) = common::streams::phishing_two_streams(dir.path(), 600, 50);
    let args = |out: &std::path::Path| {
        [
            "replay",
            "graphs/phishing-online.yaml",
            "--input",
            p_path.to_str().unwrap(),
            "--feedback",
            l_path.to_str().unwrap(),
            "--order-by",
            "ts",
            "--output",
            out.to_str().unwrap(),
            "--chunk-rows",
            "7",
        ]
        .map(String::from)
    };
    let (one, two) = (dir.path().join("learn-one.arrow"), dir.path().join("learn-two.arrow"));
    let (single, logs) = alone_then_clustered(dir.path(), &args(&one), &args(&two));
    assert!(single.contains("600 rows, 0 errors") && single.contains("model version 600"), "{single}");
    assert!(logs[0].contains("600 rows, 0 errors") && logs[0].contains("model version 600"), "{}", logs[0]);
    let (a, b) = (
        predictions(&one, "p_phishing", Some("model_version")),
        predictions(&two, "p_phishing", Some("model_version")),
    );
    assert_eq!(a, b, "predictions and the versions that made them: 1 process and 2");

    // Prequential: predict each row, then learn its label, in order; the running accuracy,
    // the final version and the final weights (the learner's checkpoint at the end) are
    // those of one process.
    let labelled = dir.path().join("phishing.arrow");
    common::streams::phishing_labelled(&labelled);
    let original = std::fs::read_to_string("graphs/phishing-online.yaml").unwrap();
    let graph = |name: &str| {
        let path = dir.path().join(format!("{name}.yaml"));
        let learn = format!("      keep_ms: 600000\n      checkpoint: {{dir: {name}, every: 100000}}\n");
        let text = original.replace("      keep_ms: 600000\n", &learn);
        assert_ne!(text, original, "the graph file has the learn section this test extends");
        std::fs::write(&path, text).unwrap();
        path.to_str().unwrap().to_string()
    };
    let (g1, g2) = (graph("ckpt-one"), graph("ckpt-two"));
    let args = |g: &str| {
        ["replay", g, "--input", labelled.to_str().unwrap(), "--prequential", "is_phishing"].map(String::from)
    };
    let (single, logs) = alone_then_clustered(dir.path(), &args(&g1), &args(&g2));
    let weights = |name: &str| std::fs::read(dir.path().join(name).join("latest.safetensors")).unwrap();
    assert_eq!(weights("ckpt-one"), weights("ckpt-two"), "the final weights: 1 process and 2");
    let summary = |log: &str| {
        log.lines()
            .filter(|l| l.starts_with("weir: prequential:"))
            .map(|l| l.split(", ").take(3).collect::<Vec<_>>().join(", "))
            .collect::<Vec<_>>()
    };
    assert!(!summary(&single).is_empty(), "{single}");
    assert_eq!(summary(&single), summary(&logs[0]), "prequential: 1 process and 2\n{single}\n{}", logs[0]);
}
