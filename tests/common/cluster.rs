//! A cluster of `weir serve` processes on 127.0.0.1 (timely's cluster mode), for the
//! tests and the cluster benchmark (which includes this file by path).

use std::io::BufRead;
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use super::process::{free_port, Running};

/// A running process of a cluster: the child, its HTTP address, its stderr so far.
pub struct Member {
    pub child: Running,
    pub addr: String,
    pub log: Arc<Mutex<Vec<String>>>,
}

/// Starts `processes` processes of `weir serve GRAPHS --workers W` as one cluster (a
/// hosts file of free ports in `dir`) and returns them once every one listens.
pub fn cluster(dir: &std::path::Path, graphs: &[&str], processes: usize, workers: usize) -> Vec<Member> {
    cluster_with(dir, graphs, processes, workers, &[])
}

/// [`cluster`], each process with `extra` arguments.
pub fn cluster_with(
    dir: &std::path::Path,
    graphs: &[&str],
    processes: usize,
    workers: usize,
    extra: &[&str],
) -> Vec<Member> {
    let hosts = dir.join(format!("hosts-{}", free_port()));
    let lines: Vec<String> = (0..processes).map(|_| format!("127.0.0.1:{}", free_port())).collect();
    std::fs::write(&hosts, lines.join("\n") + "\n").unwrap();
    let mut started = Vec::new();
    for p in 0..processes {
        let mut child = Running(
            Command::new(env!("CARGO_BIN_EXE_weir"))
                .arg("serve")
                .args(graphs)
                .args(["--port", "0", "--workers", &workers.to_string(), "--processes", &processes.to_string()])
                .args(["--process", &p.to_string(), "--hosts"])
                .arg(&hosts)
                .args(extra)
                .current_dir(env!("CARGO_MANIFEST_DIR"))
                .stdout(Stdio::null())
                .stderr(Stdio::piped())
                .spawn()
                .expect("weir serve starts"),
        );
        let log = Arc::new(Mutex::new(Vec::new()));
        let (tx, rx) = std::sync::mpsc::channel();
        let lines = std::io::BufReader::new(child.stderr.take().unwrap()).lines();
        let kept = Arc::clone(&log);
        std::thread::spawn(move || {
            for line in lines.map_while(Result::ok) {
                if let Some(addr) = line.strip_prefix("weir: listening on http://") {
                    let _ = tx.send(addr.to_string());
                }
                kept.lock().unwrap().push(line);
            }
        });
        started.push((child, rx, log));
    }
    started
        .into_iter()
        .enumerate()
        .map(|(p, (child, rx, log))| {
            let addr = rx
                .recv_timeout(Duration::from_secs(60))
                .unwrap_or_else(|_| panic!("process {p} of {processes} never listened: {:?}", log.lock().unwrap()));
            Member { child, addr, log }
        })
        .collect()
}
