//! The cluster flags `weir serve` and `weir replay` share (`--processes N --process I
//! --hosts FILE`), starting an engine that waits for its cluster, and how a process of a
//! cluster ends (see `weir_engine::cluster`).
//!
//! `weir serve`: every process takes requests. `weir replay`: every process runs the
//! same command line; process 0 reads the inputs, submits every row and writes the
//! outputs, the others lend their workers and replicas (its clock is the only one, so
//! tables and deterministic replays work) and exit once process 0 is done.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use weir_engine::{Cluster, Engine, EngineConfig, LostPeer, Plan, StartError};
use weir_operators::Shutdown;

use super::fail;

/// The exit code of a process whose cluster lost a process.
pub const LOST_PEER_EXIT: u8 = 3;

/// `--processes N --process I --hosts FILE`.
#[derive(clap::Args, Clone, Debug, Default)]
pub struct ClusterArgs {
    /// Processes in the cluster that runs these graphs together (timely's cluster
    /// mode): each runs the same command with the same graphs and workers, its own
    /// `--process` and the same `--hosts`.
    #[arg(long, default_value_t = 1)]
    pub processes: usize,
    /// This process's index in the cluster, from 0.
    #[arg(long)]
    pub process: Option<usize>,
    /// The cluster's hosts file: each process's `host:port` (where the processes connect
    /// to each other, not the HTTP port), one per line, in process order.
    #[arg(long)]
    pub hosts: Option<PathBuf>,
}

impl ClusterArgs {
    /// This process's place in a cluster, from the flags: `None` for one process.
    /// `sole_submitter`: only process 0 submits (a replay).
    pub fn cluster(&self, sole_submitter: bool) -> Result<Option<Cluster>, String> {
        let processes = self.processes;
        let cluster = match (processes, self.process, &self.hosts) {
            (0, _, _) => return Err("--processes must be at least 1".into()),
            (1, None, None) => return Ok(None),
            (1, _, _) => return Err("--process and --hosts need --processes N (N > 1): the cluster's size".into()),
            (_, None, _) => {
                return Err(format!(
                    "--processes {processes} needs --process I: this process's index, 0 to {}",
                    processes - 1
                ))
            }
            (_, _, None) => {
                return Err(format!(
                    "--processes {processes} needs --hosts FILE: every process's host:port, one per line"
                ))
            }
            (n, Some(i), Some(path)) => Cluster::from_hosts_file(path, n, i).map_err(|e| e.to_string())?,
        };
        Ok(Some(if sole_submitter { cluster.with_sole_submitter() } else { cluster }))
    }
}

/// Starts the engine; in a cluster that waits until every process is connected, which
/// a stop request ends (`None`: stopped before the cluster was whole).
pub fn start_engine(plans: Vec<Plan>, config: EngineConfig, stop: &Shutdown) -> Option<Result<Engine, StartError>> {
    let Some(c) = &config.cluster else { return Some(Engine::start(plans, config)) };
    eprintln!(
        "weir: process {} of {}: connecting to the cluster ({})",
        c.process,
        c.processes(),
        c.addresses.join(", ")
    );
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || drop(tx.send(Engine::start(plans, config))));
    loop {
        match rx.recv_timeout(Duration::from_millis(50)) {
            Ok(started) => return Some(started),
            Err(std::sync::mpsc::RecvTimeoutError::Timeout) if !stop.is_requested() => {}
            // Timely's connecting cannot be interrupted: its thread ends with the process.
            Err(_) => return None,
        }
    }
}

/// The error a process of `cluster` exits with once it lost `lost`.
pub fn lost_peer_exit(cluster: &Cluster, lost: &LostPeer) -> ExitCode {
    let peer = match lost.process {
        Some(p) => format!("process {p} ({})", cluster.addresses.get(p).map_or("?", String::as_str)),
        None => "a process".to_string(),
    };
    fail(
        LOST_PEER_EXIT,
        &format!(
            "process {} lost {peer} of the cluster ({}); the cluster cannot go on: restart every process",
            cluster.process, lost.cause
        ),
    )
}

/// Runs `work` while watching for a lost peer: if the cluster loses a process first,
/// every row in flight is answered `unavailable` (so `work` ends) and the lost peer is
/// returned with `work`'s result. Without a cluster, just runs `work`.
pub fn watching<T>(engine: &Engine, work: impl FnOnce() -> T) -> (T, Option<LostPeer>) {
    if engine.graphs().first().is_none_or(|g| g.placement().processes == 1) {
        return (work(), None);
    }
    let (done, abandoner) = (Shutdown::new(), engine.abandoner());
    std::thread::scope(|s| {
        let watcher = s.spawn(|| {
            while !done.is_requested() {
                if let Some(lost) = weir_engine::cluster::lost_peer() {
                    abandoner.abandon();
                    return Some(lost);
                }
                std::thread::sleep(Duration::from_millis(50));
            }
            None
        });
        let out = work();
        done.request();
        let lost = watcher.join().ok().flatten().or_else(|| engine.lost_peer());
        (out, lost)
    })
}

/// A process of a cluster other than process 0 in a replay: lends its workers until
/// process 0 is done (its own sources close at once), then exits 0; 3 if the cluster
/// lost a process first.
pub fn lend_workers(engine: Engine, cluster: &Cluster) -> ExitCode {
    eprintln!("weir: process {} of {}: lending its workers to process 0", cluster.process, cluster.processes());
    let handle = engine.graphs().first().cloned();
    let (tx, rx) = std::sync::mpsc::channel();
    // Shutting down closes this process's sources and waits for the cluster's dataflows.
    std::thread::spawn(move || {
        engine.shutdown();
        let _ = tx.send(());
    });
    loop {
        if rx.recv_timeout(Duration::from_millis(50)).is_ok() {
            let rows = handle.map_or(0, |g| g.rows_from_peers());
            eprintln!("weir: process {}: computed {rows} rows of process 0; done", cluster.process);
            return ExitCode::SUCCESS;
        }
        if let Some(lost) = weir_engine::cluster::lost_peer() {
            return lost_peer_exit(cluster, &lost);
        }
    }
}

/// What starting the engine of a command with one submitter (`run`, `replay`) gave.
pub enum Started {
    /// This process submits (alone, or as process 0 of a cluster).
    Submitter(Engine, Option<Cluster>),
    /// This process lent its workers to process 0, which is done: its exit code.
    Lent(ExitCode),
}

/// Starts `plan`'s engine as `config` says (in a cluster, with process 0 the sole
/// submitter); a process of a cluster other than process
/// 0 lends its workers until process 0 is done (`Started::Lent`). `Err`: the exit code of
/// a failed start.
pub fn start(plan: Plan, config: EngineConfig) -> Result<Started, ExitCode> {
    let cluster = config.cluster.clone();
    let engine = match start_engine(vec![plan], config, &Shutdown::new()) {
        Some(Ok(engine)) => engine,
        Some(Err(e)) => return Err(fail(1, &e)),
        None => return Err(fail(1, &"stopped while connecting to the cluster")),
    };
    match cluster {
        Some(c) if c.process > 0 => Ok(Started::Lent(lend_workers(engine, &c))),
        cluster => Ok(Started::Submitter(engine, cluster)),
    }
}
