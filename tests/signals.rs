//! SIGTERM at any moment of `weir serve` stops it cleanly: exit 0 and "weir: stopped",
//! whether the signal lands while the process starts, loads weights, starts the engine,
//! catches a table up on its topic, joins a consumer group, or serves. Supervisors
//! (systemd, Kubernetes) signal whenever they like.
//!
//! A signal that arrives before the program's first step (`weir::cli::main_with` takes
//! SIGINT and SIGTERM before anything else) cannot be caught by anyone, so each test
//! waits until the process catches SIGTERM (its bit in /proc/PID/status) and signals from
//! there on, at delays that fall into each stage of the start. (Waiting only for the Rust
//! runtime, a few instructions earlier, raced on a loaded machine: the signal could land
//! in the microseconds before `main`.)
#![allow(clippy::unwrap_used)] // a test or benchmark fails loudly on the first surprise

mod common;

use std::io::{BufRead, Read};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use common::kafka::Broker;
use rdkafka::producer::{FutureProducer, FutureRecord};
use serde_json::json;

/// Whether `pid` catches `signal` (its bit in `SigCgt` of /proc/PID/status).
fn catches(pid: u32, signal: u32) -> bool {
    let Ok(status) = std::fs::read_to_string(format!("/proc/{pid}/status")) else { return false };
    status
        .lines()
        .find_map(|l| l.strip_prefix("SigCgt:"))
        .and_then(|mask| u64::from_str_radix(mask.trim(), 16).ok())
        .is_some_and(|mask| mask & (1 << (signal - 1)) != 0)
}

/// Starts `weir ARGS` and returns once it catches SIGTERM (the first step of its `main`).
fn start(args: &[&str]) -> Child {
    let child = Command::new(env!("CARGO_BIN_EXE_weir"))
        .args(args)
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("weir starts");
    let t = Instant::now();
    while !catches(child.id(), 15) {
        assert!(t.elapsed() < Duration::from_secs(10), "weir takes the signals");
        std::hint::spin_loop();
    }
    child
}

/// Sends SIGTERM, then waits (up to `within`) for the exit; returns it with stderr.
fn terminate(mut child: Child, within: Duration) -> (ExitStatus, String) {
    let sent = Command::new("kill").args(["-TERM", &child.id().to_string()]).status().unwrap();
    assert!(sent.success());
    let t = Instant::now();
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if t.elapsed() > within {
            let _ = child.kill();
            panic!("weir did not stop within {within:?} of SIGTERM");
        }
        std::thread::sleep(Duration::from_millis(5));
    };
    let mut stderr = String::new();
    child.stderr.take().unwrap().read_to_string(&mut stderr).unwrap();
    (status, stderr)
}

/// SIGTERMs `weir ARGS` `delay` after its runtime is up and checks the clean stop.
fn stops_cleanly(args: &[&str], delay: Duration) -> String {
    let child = start(args);
    std::thread::sleep(delay);
    let (status, stderr) = terminate(child, Duration::from_secs(30));
    assert_eq!(status.code(), Some(0), "SIGTERM {delay:?} into `weir {}`: {status}\n{stderr}", args.join(" "));
    assert!(stderr.contains("weir: stopped"), "{stderr}");
    stderr
}

/// Where the stop happened, from the log: before serving, or while serving.
fn stage(stderr: &str) -> &str {
    stderr.lines().find(|l| l.contains("before serving")).unwrap_or("while serving")
}

#[test]
fn sigterm_at_any_moment_of_the_start_stops_weir_cleanly() {
    let args = ["serve", "graphs/digits.yaml", "graphs/diamond.yaml", "graphs/embed.yaml", "--port", "0"];
    let mut stages = Vec::new();
    for ms in [0, 1, 2, 5, 10, 20, 50, 100, 200, 400, 800, 1600] {
        let stderr = stops_cleanly(&args, Duration::from_millis(ms));
        stages.push(format!("{ms} ms: {}", stage(&stderr)));
    }
    eprintln!("{}", stages.join("\n"));
    assert!(stages.iter().any(|s| s.contains("before serving")), "some signals landed during the start");
}

/// SIGHUP at any moment of the start neither kills nor stops `weir serve`: it reloads
/// once serving (nothing changed: revision 1 goes on), and SIGTERM still stops it.
#[test]
fn sighup_during_the_start_is_a_reload_not_a_stop() {
    for ms in [0, 5, 50, 400] {
        let mut child = start(&["serve", "graphs/diamond.yaml", "--port", "0"]);
        std::thread::sleep(Duration::from_millis(ms));
        assert!(Command::new("kill").args(["-HUP", &child.id().to_string()]).status().unwrap().success());
        let mut lines = std::io::BufReader::new(child.stderr.take().unwrap()).lines();
        let mut log = Vec::new();
        let addr = loop {
            let line = lines.next().expect("weir serves after SIGHUP").unwrap();
            log.push(line.clone());
            if let Some(addr) = line.strip_prefix("weir: listening on http://") {
                break addr.to_string();
            }
        };
        let (status, body) = common::process::http_post(&addr, "/graphs/diamond", r#"{"a": 1, "b": 2, "c": 3}"#);
        assert_eq!((status, body.as_str()), (200, r#"{"y":8.0}"#), "SIGHUP {ms} ms into the start");
        // The reload it asked for ran, and changed nothing.
        loop {
            let line = lines.next().expect("weir logs the reload").unwrap();
            if line.contains("reload: no graph file changed") {
                break;
            }
            assert!(!line.contains("reload refused"), "{line}");
        }
        let rest = std::thread::spawn(move || lines.map_while(Result::ok).collect::<Vec<_>>());
        assert!(Command::new("kill").args(["-TERM", &child.id().to_string()]).status().unwrap().success());
        let status = child.wait().unwrap();
        let rest = rest.join().unwrap();
        assert_eq!(status.code(), Some(0), "SIGTERM after SIGHUP: {status}\n{log:?}\n{rest:?}");
        assert!(rest.iter().any(|l| l == "weir: stopped"), "{rest:?}");
    }
}

/// `weir run` reading from a pipe that never ends, once it catches the signals (its
/// stdin, kept open, is returned beside it).
fn run_reading_forever() -> (Child, Option<std::process::ChildStdin>) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_weir"))
        .args(["run", "graphs/diamond.yaml", "--input", "-"])
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("weir starts");
    let t = Instant::now();
    while !catches(child.id(), 15) {
        assert!(t.elapsed() < Duration::from_secs(10), "weir takes the signals");
        std::thread::sleep(Duration::from_millis(1));
    }
    std::thread::sleep(Duration::from_millis(200));
    let stdin = child.stdin.take();
    (child, stdin)
}

#[test]
fn the_other_commands_keep_the_default_action() {
    // SIGTERM ends `weir run` by the signal.
    let (child, stdin) = run_reading_forever();
    let (status, _) = terminate(child, Duration::from_secs(10));
    drop(stdin);
    use std::os::unix::process::ExitStatusExt;
    assert_eq!(status.signal(), Some(15), "ended by SIGTERM: {status}");
}

#[test]
fn sighup_ends_the_other_commands_as_by_default() {
    let (mut child, stdin) = run_reading_forever();
    assert!(catches(child.id(), 1), "SIGHUP is caught first thing too");
    assert!(Command::new("kill").args(["-HUP", &child.id().to_string()]).status().unwrap().success());
    let status = child.wait().unwrap();
    drop(stdin);
    use std::os::unix::process::ExitStatusExt;
    assert_eq!(status.signal(), Some(1), "ended by SIGHUP: {status}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_while_catching_up_a_table_or_joining_a_group_stops_weir_cleanly() {
    let broker = Broker::start();
    broker.create_topics(&["digit-images", "in", "out", "dlq"], 2).await;
    // A table topic long enough that catching up on it takes a while.
    let producer: FutureProducer = broker.config().set("linger.ms", "20").create().unwrap();
    let pixels: Vec<f32> = (0..64).map(|i| (i % 17) as f32).collect();
    let value = json!({"pixels": pixels, "target": 3}).to_string();
    let mut deliveries = Vec::new();
    for i in 0..20_000 {
        let key = (10_000 + i).to_string();
        deliveries.push(
            producer
                .send_result(FutureRecord::to("digit-images").key(&key).payload(&value))
                .map_err(|(e, _)| e)
                .unwrap(),
        );
    }
    for d in deliveries {
        d.await.unwrap().map_err(|(e, _)| e).unwrap();
    }

    // While the table catches up.
    let catalogue = ["serve", "graphs/digits-catalogue.yaml", "--port", "0", "--kafka-bootstrap", &broker.addr];
    let mut child = start(&catalogue);
    let mut stderr = child.stderr.take().unwrap();
    let mut seen = String::new();
    let mut buf = [0u8; 4096];
    while !seen.contains("catching up on topic") {
        let n = stderr.read(&mut buf).unwrap();
        assert!(n > 0, "weir logs the catch-up: {seen}");
        seen.push_str(&String::from_utf8_lossy(&buf[..n]));
    }
    let pid = child.id().to_string();
    assert!(Command::new("kill").args(["-TERM", &pid]).status().unwrap().success());
    let mut rest = String::new();
    stderr.read_to_string(&mut rest).unwrap();
    seen.push_str(&rest);
    let status = child.wait().unwrap();
    eprintln!("catch-up: {}", stage(&seen));
    assert_eq!(status.code(), Some(0), "SIGTERM while catching up: {status}\n{seen}");
    assert!(seen.contains("weir: stopped"), "{seen}");

    // While joining the consumer group, and at moments after.
    let kafka = [
        "serve",
        "graphs/diamond.yaml",
        "--port",
        "0",
        "--kafka-bootstrap",
        &broker.addr,
        "--kafka-input",
        "in",
        "--kafka-output",
        "out",
        "--kafka-group",
        "g",
        "--kafka-property",
        "session.timeout.ms=6000",
        "--kafka-property",
        "heartbeat.interval.ms=500",
    ];
    for ms in [50, 300, 1000, 3000] {
        let t = Instant::now();
        stops_cleanly(&kafka, Duration::from_millis(ms));
        eprintln!("kafka, SIGTERM after {ms} ms: stopped {:.2} s after the start", t.elapsed().as_secs_f64());
    }
}
