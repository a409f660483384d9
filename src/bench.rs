//! What every benchmark binary in `benches/` does first: one compute thread per forward
//! pass, its command line (`--quick`, an experiment name), and the table header; and the
//! statistics they report.

use std::time::Duration;

/// A benchmark's command line: `cargo bench --bench NAME -- [--quick] [EXPERIMENT]`.
pub struct BenchArgs {
    /// A short run.
    pub quick: bool,
    /// Run only the experiments whose name contains this.
    pub only: Option<String>,
}

impl BenchArgs {
    /// Reads the command line, calls [`crate::one_thread_per_forward_pass`] and
    /// [`crate::no_transparent_huge_pages`] (as `weir` does), and prints the markdown table
    /// header every experiment's rows go under.
    pub fn start() -> Self {
        crate::one_thread_per_forward_pass();
        crate::no_transparent_huge_pages();
        let args: Vec<String> = std::env::args().collect();
        let quick = args.iter().any(|a| a == "--quick");
        let only = args.iter().skip(1).find(|a| !a.starts_with("--")).cloned();
        println!("| experiment | configuration | result | ratio to baseline |\n|---|---|---|---|");
        BenchArgs { quick, only }
    }

    /// Whether the experiment `name` runs.
    pub fn runs(&self, name: &str) -> bool {
        self.only.as_deref().is_none_or(|o| name.contains(o))
    }
}

/// The value at quantile `p` (0 to 1) of sorted, non-empty `sorted`.
pub fn percentile(sorted: &[Duration], p: f64) -> Duration {
    sorted[((sorted.len() - 1) as f64 * p).round() as usize]
}

/// The median of non-empty `v` (the mean of the middle two for an even count).
pub fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    let n = v.len();
    if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    }
}

/// The smallest and largest of `v`.
pub fn range(v: &[f64]) -> (f64, f64) {
    v.iter().fold((f64::INFINITY, f64::NEG_INFINITY), |(lo, hi), &r| (lo.min(r), hi.max(r)))
}
