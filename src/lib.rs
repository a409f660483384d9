//! The `weir` package: the command line ([`cli`], [`cli::main_with`]; the binary
//! `src/main.rs` is it with weir's own formats) and the data-set helpers its examples,
//! tests and benchmarks share.
//!
//! The engine itself lives in the workspace crates: `weir-engine` (graphs, plans,
//! runtime), `weir-operators` (rows, kernels, timely operators) and `weir-connectors`
//! (JSON lines, HTTP, Kafka, Arrow).

#![cfg_attr(test, allow(clippy::unwrap_used))]

pub mod bench;
pub mod cli;
pub mod datasets;

pub use weir_engine::Kernels;

/// Makes candle run each forward pass on the calling thread unless `RAYON_NUM_THREADS`
/// says otherwise. weir's parallelism is its replicas (one thread each) and timely
/// workers; intra-op threads on top would oversubscribe the cores. It also spares candle
/// from re-reading `/proc/cpuinfo` on every matmul when the variable is unset (what that
/// cost: BENCHMARKS.md, "What was changed for speed", change 1). Call it first in
/// `main`, before any thread starts: it sets a process environment variable.
pub fn one_thread_per_forward_pass() {
    if std::env::var_os("RAYON_NUM_THREADS").is_none() {
        std::env::set_var("RAYON_NUM_THREADS", "1");
    }
}

/// Turns transparent huge pages off for this process (Linux: `prctl(PR_SET_THP_DISABLE)`),
/// unless `WEIR_HUGE_PAGES=1`. The allocator (mimalloc) asks the kernel for huge pages on
/// its arenas, so the first touch of each 2 MiB region, and each touch after the allocator
/// returned it to the kernel, zeroes the whole 2 MiB on the faulting thread. A server that
/// starts on a Kafka backlog spent 44% of its CPU there (`perf record` of `weir serve` in
/// `cargo bench --bench kafka`; 1% with small pages); see BENCHMARKS.md, Kafka, "issue 22,
/// item 4". Call it first in `main`; it applies to the memory the process touches from then
/// on, and is inherited by child processes (`WEIR_HUGE_PAGES=1` turns them back on).
/// Returns whether huge pages are now off.
pub fn no_transparent_huge_pages() -> bool {
    // The flag is inherited: a parent that turned huge pages off would turn them off here.
    let off = std::env::var_os("WEIR_HUGE_PAGES").is_none_or(|v| v != "1");
    #[cfg(target_os = "linux")]
    {
        rustix::thread::disable_transparent_huge_pages(off).is_ok() && off
    }
    #[cfg(not(target_os = "linux"))]
    {
        let _ = off;
        false
    }
}

/// The process's peak resident memory so far, in bytes (`VmHWM` of
/// `/proc/self/status`); `None` where that file does not exist (not Linux).
pub fn peak_rss_bytes() -> Option<u64> {
    status_bytes("/proc/self/status", "VmHWM:")
}

/// The process's resident set size now, in bytes (Linux; `None` elsewhere).
pub fn rss_bytes() -> Option<u64> {
    status_bytes("/proc/self/status", "VmRSS:")
}

/// Process `pid`'s resident set size now, in bytes (Linux; `None` elsewhere, or when no
/// such process runs): what benchmarks and tests read of the servers they start.
pub fn rss_bytes_of(pid: u32) -> Option<u64> {
    status_bytes(&format!("/proc/{pid}/status"), "VmRSS:")
}

/// A `kB` line of a process's `status` file (`/proc/.../status`), in bytes.
fn status_bytes(path: &str, key: &str) -> Option<u64> {
    let status = std::fs::read_to_string(path).ok()?;
    let line = status.lines().find(|l| l.starts_with(key))?;
    let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib * 1024)
}

#[cfg(test)]
mod tests {
    /// The flag the kernel reads is set (this test process keeps small pages after it).
    #[cfg(target_os = "linux")]
    #[test]
    fn transparent_huge_pages_are_turned_off() {
        if std::env::var_os("WEIR_HUGE_PAGES").is_some() {
            return; // the caller chose
        }
        assert!(super::no_transparent_huge_pages());
        assert_eq!(rustix::thread::transparent_huge_pages_are_disabled().ok(), Some(true));
    }
}
