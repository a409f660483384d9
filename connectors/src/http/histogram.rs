//! A fixed-bucket histogram of lock-free counters, rendered in Prometheus text format.

use std::sync::atomic::{AtomicU64, Ordering};

use super::exposition::MetricsText;

/// Request latency buckets, in seconds.
pub const LATENCY_BUCKETS: [f64; 15] =
    [0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 10.0];

/// Observations by bucket, their count and their sum.
#[derive(Debug)]
pub struct Histogram {
    bounds: &'static [f64],
    /// Per bucket (not cumulative), plus one for larger values.
    counts: Vec<AtomicU64>,
    /// The sum, in millionths of the unit.
    sum_micros: AtomicU64,
}

impl Histogram {
    /// A histogram with the given upper bounds (increasing).
    pub fn new(bounds: &'static [f64]) -> Self {
        Histogram {
            bounds,
            counts: (0..=bounds.len()).map(|_| AtomicU64::new(0)).collect(),
            sum_micros: AtomicU64::new(0),
        }
    }

    /// Records one value.
    pub fn observe(&self, value: f64) {
        let i = self.bounds.partition_point(|&b| b < value);
        self.counts[i].fetch_add(1, Ordering::Relaxed);
        self.sum_micros.fetch_add((value * 1e6) as u64, Ordering::Relaxed);
    }

    /// The count of each bucket (not cumulative), plus one for larger values.
    pub fn counts(&self) -> Vec<u64> {
        self.counts.iter().map(|c| c.load(Ordering::Relaxed)).collect()
    }

    /// Appends the `_bucket`, `_sum` and `_count` samples of metric `name` with
    /// `labels` (its family already started).
    pub fn render(&self, text: &mut MetricsText, name: &str, labels: &[(&str, &str)]) {
        let counts: Vec<u64> = self.counts.iter().map(|c| c.load(Ordering::Relaxed)).collect();
        let sum = self.sum_micros.load(Ordering::Relaxed) as f64 / 1e6;
        text.histogram(name, labels, self.bounds, &counts, sum);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buckets_are_cumulative_and_count_everything() {
        static BOUNDS: [f64; 2] = [1.0, 2.0];
        let h = Histogram::new(&BOUNDS);
        for v in [0.5, 1.0, 1.5, 3.0] {
            h.observe(v);
        }
        let mut text = MetricsText::new();
        h.render(&mut text, "x", &[("g", "a")]);
        let out = text.into_string();
        assert!(out.contains("x_bucket{g=\"a\",le=\"1\"} 2\n"), "{out}");
        assert!(out.contains("x_bucket{g=\"a\",le=\"2\"} 3\n"), "{out}");
        assert!(out.contains("x_bucket{g=\"a\",le=\"+Inf\"} 4\n"), "{out}");
        assert!(out.contains("x_count{g=\"a\"} 4\n"), "{out}");
        assert!(out.contains("x_sum{g=\"a\"} 6\n"), "{out}");
    }
}
