//! The replay progress line on a terminal: rows, rows/s, and the ETA when the total is
//! known. Redrawn at most five times a second on stderr; silent when disabled.

use std::io::Write;
use std::time::{Duration, Instant};

/// Progress of a replay.
pub struct Progress {
    enabled: bool,
    total: Option<u64>,
    started: Instant,
    drawn: Option<Instant>,
}

impl Progress {
    /// A progress line for `total` rows (if known), drawn only when `enabled`.
    pub fn new(enabled: bool, total: Option<u64>) -> Progress {
        Progress { enabled, total, started: Instant::now(), drawn: None }
    }

    /// Reports `rows` written so far.
    pub fn update(&mut self, rows: u64) {
        if !self.enabled || self.drawn.is_some_and(|t| t.elapsed() < Duration::from_millis(200)) {
            return;
        }
        self.drawn = Some(Instant::now());
        let line = line(rows, self.total, self.started.elapsed());
        let mut err = std::io::stderr().lock();
        let _ = write!(err, "\r\x1b[2K{line}");
        let _ = err.flush();
    }

    /// Clears the line.
    pub fn finish(&mut self) {
        if self.enabled && self.drawn.is_some() {
            let _ = write!(std::io::stderr().lock(), "\r\x1b[2K");
        }
    }
}

/// The progress text: `rows [/ total (percent)], rows/s[, ETA]`.
pub fn line(rows: u64, total: Option<u64>, elapsed: Duration) -> String {
    let secs = elapsed.as_secs_f64().max(1e-9);
    let rate = rows as f64 / secs;
    match total {
        Some(total) if total > 0 => {
            let left = total.saturating_sub(rows) as f64;
            let eta = if rate > 0.0 { format!("{:.0} s", left / rate) } else { "?".to_string() };
            format!(
                "replay: {rows} / {total} rows ({:.0}%), {rate:.0} rows/s, ETA {eta}",
                100.0 * rows as f64 / total as f64
            )
        }
        _ => format!("replay: {rows} rows, {rate:.0} rows/s"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_line_shows_an_eta_only_with_a_total() {
        let t = Duration::from_secs(2);
        assert_eq!(line(1000, Some(4000), t), "replay: 1000 / 4000 rows (25%), 500 rows/s, ETA 6 s");
        assert_eq!(line(1000, None, t), "replay: 1000 rows, 500 rows/s");
    }
}
