//! The machine's CPU time during a window, from `/proc/stat` (Linux): how much of the
//! window the cores were busy, idle, or taken by the hypervisor (steal). A slow round
//! with the cores idle waited on something; one with them busy or stolen was short of
//! CPU. Also the CPU time of chosen processes (the broker, `weir serve`, this bench), from
//! `/proc/PID/stat`, to say which of them the window's CPU went to. Sampled every 20 ms on
//! a thread of its own.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// The aggregate `cpu` line's counters: user, nice, system, idle, iowait, irq, softirq,
/// steal (in clock ticks).
type Ticks = [u64; 8];

/// Shares of the cores' time in a window (they add up to 1).
#[derive(Clone, Copy, Debug, Default)]
pub struct Shares {
    /// User, system and interrupt time.
    pub busy: f64,
    /// Idle and waiting for I/O.
    pub idle: f64,
    /// Taken by the hypervisor for other guests.
    pub steal: f64,
}

/// Samples `/proc/stat` until dropped.
pub struct Sampler {
    samples: Arc<Mutex<Vec<Sample>>>,
    watched: Arc<Mutex<Vec<u32>>>,
    stop: Arc<AtomicBool>,
}

/// One sample: the machine's counters, and each watched process's user + system ticks.
struct Sample {
    at: Instant,
    machine: Ticks,
    processes: Vec<(u32, u64)>,
}

impl Sampler {
    pub fn start() -> Sampler {
        let samples = Arc::new(Mutex::new(Vec::new()));
        let watched = Arc::new(Mutex::new(Vec::new()));
        let stop = Arc::new(AtomicBool::new(false));
        let (into, pids, stopped) = (Arc::clone(&samples), Arc::clone(&watched), Arc::clone(&stop));
        std::thread::spawn(move || {
            while !stopped.load(Ordering::Relaxed) {
                if let Some(machine) = read() {
                    let pids: Vec<u32> = pids.lock().unwrap().clone();
                    let processes = pids.into_iter().filter_map(|p| Some((p, process_ticks(p)?))).collect();
                    into.lock().unwrap().push(Sample { at: Instant::now(), machine, processes });
                }
                std::thread::sleep(Duration::from_millis(20));
            }
        });
        Sampler { samples, watched, stop }
    }

    /// Samples `pid`'s CPU time from now on.
    pub fn watch(&self, pid: u32) {
        self.watched.lock().unwrap().push(pid);
    }

    /// Stops sampling `pid` (it is about to exit).
    pub fn unwatch(&self, pid: u32) {
        self.watched.lock().unwrap().retain(|p| *p != pid);
    }

    /// `pid`'s CPU time (user + system) between the last sample at or before `from` and the
    /// first at or after `to`, and that span.
    pub fn process_cpu(&self, pid: u32, from: Instant, to: Instant) -> Option<(Duration, Duration)> {
        let samples = self.samples.lock().unwrap();
        let ticks = |s: &Sample| s.processes.iter().find(|(p, _)| *p == pid).map(|(_, t)| *t);
        let a = samples.iter().rev().find(|s| s.at <= from && ticks(s).is_some())?;
        let b = samples.iter().find(|s| s.at >= to && ticks(s).is_some())?;
        let d = ticks(b)?.saturating_sub(ticks(a)?);
        Some((Duration::from_secs_f64(d as f64 / TICKS_PER_SECOND), b.at - a.at))
    }

    /// The shares between the last sample at or before `from` and the first at or after
    /// `to` (`None` without `/proc/stat` or samples around the window).
    pub fn shares(&self, from: Instant, to: Instant) -> Option<Shares> {
        let samples = self.samples.lock().unwrap();
        let a = samples.iter().rev().find(|s| s.at <= from)?.machine;
        let b = samples.iter().find(|s| s.at >= to)?.machine;
        let d: Vec<f64> = a.iter().zip(&b).map(|(a, b)| b.saturating_sub(*a) as f64).collect();
        let total: f64 = d.iter().sum();
        (total > 0.0).then(|| Shares {
            busy: (d[0] + d[1] + d[2] + d[5] + d[6]) / total,
            idle: (d[3] + d[4]) / total,
            steal: d[7] / total,
        })
    }
}

impl Drop for Sampler {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

/// Clock ticks per second of `/proc`'s counters (`USER_HZ`, 100 on Linux).
const TICKS_PER_SECOND: f64 = 100.0;

/// A process's user + system time in ticks (fields 14 and 15 of `/proc/PID/stat`, counted
/// after the command name, which may hold spaces).
fn process_ticks(pid: u32) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let mut fields = stat.rsplit_once(')')?.1.split_whitespace();
    let utime: u64 = fields.nth(11)?.parse().ok()?;
    let stime: u64 = fields.next()?.parse().ok()?;
    Some(utime + stime)
}

fn read() -> Option<Ticks> {
    let stat = std::fs::read_to_string("/proc/stat").ok()?;
    let line = stat.lines().next()?.strip_prefix("cpu ")?;
    let mut ticks = [0u64; 8];
    for (t, v) in ticks.iter_mut().zip(line.split_whitespace()) {
        *t = v.parse().ok()?;
    }
    Some(ticks)
}
