//! One graph over several processes: timely's cluster mode, and where a submission's rows
//! go in it.
//!
//! Every process of a cluster runs the same graphs, with the same number of workers, and
//! connects to every other over TCP (timely's own networking: a hosts file lists each
//! process's `host:port`, one per line, in process order). Timely numbers the workers of
//! the whole cluster: process `p`'s local worker `w` is worker `p * threads + w`.
//!
//! A submission enters at the process that received it (its *origin*), as in one process,
//! and takes a slot numbered so that the slot names its origin ([`Placement::slot`]):
//! the `n`-th submission of process `p` of `P` gets slot `n * P + p`. Its chunk is then
//! exchanged to a worker anywhere in the cluster, round-robin over the slots
//! ([`Placement::spread`]), computed there (that process's replicas run its forward
//! passes), and exchanged back to a worker of its origin ([`Placement::home`]), whose
//! sink finds the slot's reply in the origin's reply table. Admission, deadlines and the
//! reply stay with the origin; only the rows travel. In one process nothing is exchanged.
//!
//! Tables: where every process takes requests, each process's clock follows the wall
//! clock (`weir_operators::dataflow::clock`), so that an upsert answered at one process
//! is seen by every request sent afterwards at any process. Deterministic engines are
//! refused there (their order is that of one submitter's submissions), unless only
//! process 0 submits ([`Cluster::sole_submitter`], a replay): then its clock is the
//! cluster's, and tables and learning give what one process gives.
//!
//! A cluster cannot go on without any of its processes: timely's networking threads panic
//! when a peer's connection closes. `watch_peers` turns that panic into a [`LostPeer`]
//! ([`lost_peer`]) instead of a backtrace, and keeps quiet the panics that follow from it
//! on this process's timely threads; the server then stops (see `weir serve`).

use std::path::{Path, PathBuf};
use std::sync::{Once, OnceLock};

/// This process's place in a cluster.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Cluster {
    /// This process's index, from 0.
    pub process: usize,
    /// Every process's `host:port`, in process order (timely's connections).
    pub addresses: Vec<String>,
    /// Only process 0 submits (a replay); the others lend their workers and close their
    /// own sources at once. Its clock is then the only one, so tables and deterministic
    /// engines work as in one process.
    pub sole_submitter: bool,
}

/// Why a hosts file could not be used.
#[derive(Debug, thiserror::Error)]
pub enum HostsError {
    /// The file could not be read.
    #[error("hosts file {}: {source}", path.display())]
    Read {
        /// The file.
        path: PathBuf,
        /// What failed.
        source: std::io::Error,
    },
    /// A line is not `host:port`.
    #[error("hosts file {}, line {line}: '{text}' is not host:port (one process per line)", path.display())]
    Line {
        /// The file.
        path: PathBuf,
        /// The line number, from 1.
        line: usize,
        /// The line.
        text: String,
    },
    /// The file lists another number of processes than asked for, or none.
    #[error("hosts file {} lists {found} processes, but --processes is {expected}", path.display())]
    Count {
        /// The file.
        path: PathBuf,
        /// Processes listed.
        found: usize,
        /// Processes asked for.
        expected: usize,
    },
    /// This process's index is not below the number of processes.
    #[error("--process {process} is out of range: the cluster has processes 0 to {}", processes - 1)]
    Index {
        /// The index given.
        process: usize,
        /// The number of processes.
        processes: usize,
    },
}

impl Cluster {
    /// Process `process` of the `processes` whose addresses `hosts` lists: one
    /// `host:port` per line; blank lines and lines starting with `#` are skipped.
    pub fn from_hosts_file(hosts: &Path, processes: usize, process: usize) -> Result<Cluster, HostsError> {
        let text =
            std::fs::read_to_string(hosts).map_err(|source| HostsError::Read { path: hosts.to_path_buf(), source })?;
        let mut addresses = Vec::new();
        for (i, line) in text.lines().enumerate() {
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let valid = line
                .rsplit_once(':')
                .is_some_and(|(host, port)| !host.is_empty() && port.parse::<u16>().is_ok_and(|p| p > 0));
            if !valid {
                return Err(HostsError::Line { path: hosts.to_path_buf(), line: i + 1, text: line.to_string() });
            }
            addresses.push(line.to_string());
        }
        if addresses.len() != processes || processes == 0 {
            return Err(HostsError::Count { path: hosts.to_path_buf(), found: addresses.len(), expected: processes });
        }
        if process >= processes {
            return Err(HostsError::Index { process, processes });
        }
        Ok(Cluster { process, addresses, sole_submitter: false })
    }

    /// The same cluster, in which only process 0 submits.
    pub fn with_sole_submitter(mut self) -> Cluster {
        self.sole_submitter = true;
        self
    }

    /// The number of processes.
    pub fn processes(&self) -> usize {
        self.addresses.len()
    }
}

/// Where a process's submissions are numbered and where their rows go: this process's
/// index, the number of processes, and the workers each runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Placement {
    /// This process's index.
    pub process: usize,
    /// Processes in the cluster (1 without one).
    pub processes: usize,
    /// Workers per process.
    pub threads: usize,
}

impl Placement {
    /// One process of `threads` workers.
    pub fn single(threads: usize) -> Placement {
        Placement { process: 0, processes: 1, threads: threads.max(1) }
    }

    /// Workers in the whole cluster: every process's.
    pub fn workers(&self) -> usize {
        self.processes * self.threads
    }

    /// The slot of this process's `n`-th submission: `n * processes + process`.
    pub fn slot(&self, n: u64) -> u64 {
        n * self.processes as u64 + self.process as u64
    }

    /// The process a slot's submission entered at.
    pub fn origin(&self, slot: u64) -> usize {
        (slot % self.processes as u64) as usize
    }

    /// The worker (cluster-wide index) that computes a slot's rows: the slots of each
    /// process go round-robin over every worker of the cluster.
    pub fn spread(&self, slot: u64) -> u64 {
        (slot / self.processes as u64) % self.workers() as u64
    }

    /// The worker (cluster-wide index) at the slot's origin that answers it.
    pub fn home(&self, slot: u64) -> u64 {
        let local = (slot / self.processes as u64) % self.threads as u64;
        (self.origin(slot) * self.threads) as u64 + local
    }

    /// This process's index of cluster-wide worker `index`.
    pub fn local(&self, index: usize) -> usize {
        index % self.threads
    }
}

/// A process of the cluster this one lost the connection to.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LostPeer {
    /// Its index, where the thread that noticed named it.
    pub process: Option<usize>,
    /// What the connection reported.
    pub cause: String,
}

static LOST: OnceLock<LostPeer> = OnceLock::new();
static WATCH: Once = Once::new();

/// Installs (once per process) the panic hook that records a lost peer; other panics go
/// to the hook there was before.
pub(crate) fn watch_peers() {
    WATCH.call_once(|| {
        let previous = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            let payload = info.payload();
            let message = payload
                .downcast_ref::<String>()
                .map(String::as_str)
                .or_else(|| payload.downcast_ref::<&str>().copied());
            let thread = std::thread::current();
            let name = thread.name().unwrap_or("");
            if let Some(cause) = message.filter(|m| m.starts_with("timely communication error")) {
                // Timely names its threads `timely:send-N` and `timely:recv-N` after the peer.
                let process = name.rsplit_once('-').and_then(|(_, n)| n.parse().ok());
                let _ = LOST.set(LostPeer { process, cause: cause.to_string() });
                return;
            }
            // What follows a lost peer on this process's timely threads (their shared
            // queues poisoned) says nothing more.
            if LOST.get().is_some() && name.starts_with("timely:") {
                return;
            }
            previous(info);
        }));
    });
}

/// The peer this process lost, once it has lost one.
pub fn lost_peer() -> Option<LostPeer> {
    LOST.get().cloned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slots_name_their_origin_and_spread_over_every_worker() {
        let placements: Vec<Placement> = (0..3).map(|p| Placement { process: p, processes: 3, threads: 2 }).collect();
        let mut computed = [0usize; 6];
        for p in &placements {
            for n in 0..60 {
                let slot = p.slot(n);
                assert_eq!(p.origin(slot), p.process);
                let home = p.home(slot) as usize;
                assert_eq!(home / 2, p.process, "answered at its origin");
                computed[p.spread(slot) as usize] += 1;
            }
        }
        assert_eq!(computed, [30; 6], "every worker of the cluster computes an equal share");
        let all: std::collections::HashSet<u64> =
            placements.iter().flat_map(|p| (0..60).map(move |n| p.slot(n))).collect();
        assert_eq!(all.len(), 180, "no two processes share a slot");
    }

    #[test]
    fn one_process_keeps_its_slots_and_workers() {
        let p = Placement::single(2);
        assert_eq!((p.slot(7), p.origin(7), p.local(1)), (7, 0, 1));
    }

    #[test]
    fn a_hosts_file_names_the_line_at_fault() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("hosts");
        std::fs::write(&path, "# cluster\n127.0.0.1:7001\n\nlocalhost:7002\n").unwrap();
        let c = Cluster::from_hosts_file(&path, 2, 1).unwrap();
        assert_eq!(c.addresses, ["127.0.0.1:7001", "localhost:7002"]);
        std::fs::write(&path, "127.0.0.1:7001\n127.0.0.1\n").unwrap();
        let e = Cluster::from_hosts_file(&path, 2, 0).unwrap_err().to_string();
        assert!(e.contains("line 2") && e.contains("'127.0.0.1'"), "{e}");
        std::fs::write(&path, "127.0.0.1:7001\n").unwrap();
        let e = Cluster::from_hosts_file(&path, 2, 0).unwrap_err().to_string();
        assert!(e.contains("lists 1 processes") && e.contains("--processes is 2"), "{e}");
        let e = Cluster::from_hosts_file(&path, 1, 1).unwrap_err().to_string();
        assert!(e.contains("--process 1 is out of range"), "{e}");
    }
}
