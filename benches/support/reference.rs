//! The reference libraries' side of the model-format benches (`onnx`, `trees`): their
//! timing scripts in `benches/reference/`, run with the zoo's pinned packages, and the
//! timing loop both sides share (what `benches/reference/timing.py` does).

use std::path::PathBuf;
use std::process::Command;
use std::time::Instant;

/// Warm-up batches before timing, and the fewest batches timed.
const WARMUP_BATCHES: usize = 3;
const MIN_BATCHES: usize = 3;

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// Batches per second of `run(i)` (batch `i` of a sequence): a few warm-up batches, then
/// batches back to back for at least `seconds` and `MIN_BATCHES`.
pub fn batches_per_s(seconds: f64, mut run: impl FnMut(usize)) -> f64 {
    for i in 0..WARMUP_BATCHES {
        run(i);
    }
    let begin = Instant::now();
    let mut done = 0;
    loop {
        run(WARMUP_BATCHES + done);
        done += 1;
        let elapsed = begin.elapsed().as_secs_f64();
        if elapsed >= seconds && done >= MIN_BATCHES {
            return done as f64 / elapsed;
        }
    }
}

/// Runs `python3 benches/reference/SCRIPT ARGS...` with `PYTHONPATH=.tools/zoo` and
/// returns the JSON object it prints per line, or why there are none (no `.tools/zoo`:
/// `scripts/make-zoo` installs it).
pub fn run_script(script: &str, args: &[String]) -> Result<Vec<serde_json::Value>, String> {
    let tools = repo().join(".tools/zoo");
    if !tools.is_dir() {
        return Err(format!("no {} (run scripts/make-zoo): library baseline skipped", tools.display()));
    }
    let output = Command::new("python3")
        .current_dir(repo())
        .env("PYTHONPATH", &tools)
        .arg(format!("benches/reference/{script}"))
        .args(args)
        .output()
        .map_err(|e| format!("python3 did not start: {e}"))?;
    if !output.status.success() {
        return Err(format!("{script} failed: {}", String::from_utf8_lossy(&output.stderr).trim()));
    }
    String::from_utf8_lossy(&output.stdout)
        .lines()
        .map(|line| serde_json::from_str(line).map_err(|e| format!("{script} printed `{line}`: {e}")))
        .collect()
}
