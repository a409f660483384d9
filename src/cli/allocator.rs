//! Handing memory that weir's allocator holds back to the operating system.
//!
//! The `weir` binary allocates with mimalloc (`src/main.rs`). mimalloc keeps the pages a
//! thread freed, and hands free pages back (purges them) only on a later allocator
//! event, after a delay (1 s in the mimalloc v3 weir links). Two moments leave freed
//! memory resident with no such event to come:
//!
//! - A reload starts a new engine and drops the retired one, whose threads end: what they
//!   freed would stay resident until some unrelated allocation happened to trigger the
//!   purge. Measured in BENCHMARKS.md ("Hot reload"): 20 reloads under load left the
//!   server at 1.085-1.103 of its memory before them without [`release_freed`],
//!   1.066-1.074 with it.
//! - A server goes idle after a burst: the workers park, and what the burst freed (a
//!   table's index and columns outgrown as it filled, the upserts' batches) stays
//!   resident while nothing allocates. [`release_when_idle`] hands it back once the
//!   process's CPU use falls quiet; `weir serve` starts it. Measured in BENCHMARKS.md
//!   ("Feature lookups", 2026-12-06, fourth session).

use std::time::Duration;

/// Hands the pages mimalloc holds free back to the operating system now: the calling
/// thread's free pages, and every free page of mimalloc's arenas, without the purge delay.
///
/// Cheap when little is free; call it after freeing much at once (a retired engine), not
/// on a hot path. Where mimalloc is not the global allocator it frees nothing of note.
pub fn release_freed() {
    // SAFETY: `mi_collect` takes no pointer and has no precondition: any thread may call
    // it at any time (mimalloc's API docs, `mi_collect`); it only frees what is unused.
    #[allow(unsafe_code)]
    unsafe {
        libmimalloc_sys::mi_collect(true);
    }
}

/// How often [`release_when_idle`] reads the process's CPU time.
const IDLE_PERIOD: Duration = Duration::from_millis(500);

/// At most this much CPU time (every thread's) in one [`IDLE_PERIOD`] counts as idle: 2%
/// of a core.
const IDLE_CPU: Duration = Duration::from_millis(10);

/// Starts a thread that calls [`release_freed`] once each time the process goes idle:
/// when a period of [`IDLE_PERIOD`] after a busier one used at most [`IDLE_CPU`] of CPU
/// time. Under load it only reads the CPU clock twice a second; a server that stays idle
/// releases once, not every period. The thread runs until the process ends.
///
/// Where the process's CPU clock cannot be read (not Linux) it starts nothing.
pub fn release_when_idle() -> std::io::Result<()> {
    let Some(mut last) = process_cpu() else {
        return Ok(());
    };
    std::thread::Builder::new().name("weir-release".to_string()).spawn(move || {
        // Start-up itself freed memory (the plan, the weights' files).
        let mut busy = true;
        loop {
            std::thread::sleep(IDLE_PERIOD);
            let Some(now) = process_cpu() else { return };
            let used = now.saturating_sub(last);
            last = now;
            if used > IDLE_CPU {
                busy = true;
            } else if busy {
                release_freed();
                busy = false;
                // The release's own CPU time does not make the next period busy.
                last = process_cpu().unwrap_or(last);
            }
        }
    })?;
    Ok(())
}

/// The CPU time every thread of the process has used so far: user and system time
/// from `/proc/self/stat`, in the kernel's ticks of 1/100 s (`USER_HZ`, fixed by Linux's
/// ABI), fine enough against [`IDLE_CPU`]. Read from the file rather than the vDSO clock:
/// rustix's lookup of the vDSO crashes under valgrind, in which
/// `scripts/count-instructions` runs `weir serve`. `None` where there is no such file
/// (not Linux).
fn process_cpu() -> Option<Duration> {
    process_cpu_of(&std::fs::read_to_string("/proc/self/stat").ok()?)
}

/// The user and system time of a `/proc/PID/stat` line.
fn process_cpu_of(stat: &str) -> Option<Duration> {
    // The command (field 2) is in parentheses and may hold spaces and parentheses; after
    // its last ')' come field 3 (the state) onwards, so utime (14) and stime (15) are
    // the 12th and 13th.
    let mut after = stat.rsplit_once(')')?.1.split_whitespace().skip(11);
    let mut ticks = || after.next()?.parse::<u64>().ok();
    let (user, system) = (ticks()?, ticks()?);
    Some(Duration::from_millis((user + system) * 10))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_cpu_time_of_a_stat_line_is_its_user_and_system_ticks() {
        let line = "4242 (weir (x) y) S 1 4242 4242 0 -1 4194560 2512 0 0 0 123 45 0 0 20 0 9 0 1000";
        assert_eq!(process_cpu_of(line), Some(Duration::from_millis(1680)));
        assert_eq!(process_cpu_of("4242 (weir) S 1"), None);
    }

    #[test]
    fn this_process_has_used_some_cpu_time() {
        // Spin until the clock shows a tick of this process's CPU time (at most 5 s).
        let start = std::time::Instant::now();
        let mut spent = Duration::ZERO;
        while spent == Duration::ZERO && start.elapsed() < Duration::from_secs(5) {
            std::hint::black_box((0..100_000u64).fold(0, |a, i| std::hint::black_box(a ^ i)));
            spent = process_cpu().expect("/proc/self/stat");
        }
        assert!(spent > Duration::ZERO);
    }
}
