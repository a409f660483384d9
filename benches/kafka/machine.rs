//! The machine's CPU time during a window, from `/proc/stat` (Linux): how much of the
//! window the cores were busy, idle, or taken by the hypervisor (steal). A slow round
//! with the cores idle waited on something; one with them busy or stolen was short of
//! CPU. Sampled every 20 ms on a thread of its own.

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
    samples: Arc<Mutex<Vec<(Instant, Ticks)>>>,
    stop: Arc<AtomicBool>,
}

impl Sampler {
    pub fn start() -> Sampler {
        let samples = Arc::new(Mutex::new(Vec::new()));
        let stop = Arc::new(AtomicBool::new(false));
        let (into, stopped) = (Arc::clone(&samples), Arc::clone(&stop));
        std::thread::spawn(move || {
            while !stopped.load(Ordering::Relaxed) {
                if let Some(ticks) = read() {
                    into.lock().unwrap().push((Instant::now(), ticks));
                }
                std::thread::sleep(Duration::from_millis(20));
            }
        });
        Sampler { samples, stop }
    }

    /// The shares between the last sample at or before `from` and the first at or after
    /// `to` (`None` without `/proc/stat` or samples around the window).
    pub fn shares(&self, from: Instant, to: Instant) -> Option<Shares> {
        let samples = self.samples.lock().unwrap();
        let a = samples.iter().rev().find(|(at, _)| *at <= from)?.1;
        let b = samples.iter().find(|(at, _)| *at >= to)?.1;
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

fn read() -> Option<Ticks> {
    let stat = std::fs::read_to_string("/proc/stat").ok()?;
    let line = stat.lines().next()?.strip_prefix("cpu ")?;
    let mut ticks = [0u64; 8];
    for (t, v) in ticks.iter_mut().zip(line.split_whitespace()) {
        *t = v.parse().ok()?;
    }
    Some(ticks)
}
