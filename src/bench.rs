//! What every benchmark binary in `benches/` does first: one compute thread per forward
//! pass, its command line (`--quick`, an experiment name), and the table header.

/// A benchmark's command line: `cargo bench --bench NAME -- [--quick] [EXPERIMENT]`.
pub struct BenchArgs {
    /// A short run.
    pub quick: bool,
    /// Run only the experiments whose name contains this.
    pub only: Option<String>,
}

impl BenchArgs {
    /// Reads the command line, calls [`crate::one_thread_per_forward_pass`] and prints
    /// the markdown table header every experiment's rows go under.
    pub fn start() -> Self {
        crate::one_thread_per_forward_pass();
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
