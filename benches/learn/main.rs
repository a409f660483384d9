//! Online learning benchmark: River's phishing stream, predict-then-learn (prequential),
//! through weir's learner kernel and through River's
//! `preprocessing.StandardScaler() | linear_model.LogisticRegression()` (SGD, learning
//! rate 0.01), run in the same benchmark.
//!
//! Run: `cargo bench --bench learn` (`-- --quick` for fewer rounds). The first run
//! installs River 0.26.1 with pip into `.tools/river` (git-ignored).
//!
//! What weir runs here is the kernel alone (`weir_operators::kernel::learn`: running
//! standardisation, then logistic regression by SGD at 0.01, one step per row): the same
//! arithmetic River does, in the same order, with no graph and no feedback loop around
//! it. It is the floor under the online-learning graph, not that graph's figure.
//! Accuracy is deterministic for both; events/s are medians of rounds that alternate
//! the two.

use std::path::Path;
use std::process::Command;
use std::time::Instant;

use weir::bench::{median, range};
use weir::datasets::{graphs_dir, phishing, Page};
use weir_operators::kernel::learn::{OnlineLinear, Optimizer, RunningScaler};

/// Prequential accuracy over `pages`, and events/s.
fn weir_prequential(pages: &[Page]) -> (f64, f64) {
    let started = Instant::now();
    let mut scaler = RunningScaler::new(9);
    let mut model = OnlineLinear::logistic(9, Optimizer::Sgd { lr: 0.01 }, 0.0);
    let mut x = [0.0f32; 9];
    let mut right = 0usize;
    for page in pages {
        scaler.transform(&page.features, &mut x);
        right += usize::from((model.predict(&x)[1] >= 0.5) == page.phishing);
        scaler.update(&page.features);
        scaler.transform(&page.features, &mut x);
        model.learn(&x, &[usize::from(page.phishing)]);
    }
    let rate = pages.len() as f64 / started.elapsed().as_secs_f64();
    (right as f64 / pages.len() as f64, std::hint::black_box(rate))
}

/// Installs River into `.tools/river` unless it is there.
fn river_dir() -> std::path::PathBuf {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join(".tools/river");
    if !dir.join("river").exists() {
        let status = Command::new("python3")
            .args(["-m", "pip", "install", "--quiet", "--disable-pip-version-check", "--target"])
            .arg(&dir)
            .arg("river==0.26.1")
            .status()
            .expect("python3 -m pip");
        assert!(status.success(), "installing river failed");
    }
    dir
}

/// River's (accuracy, events/s), one per repeat.
fn river_prequential(river: &Path, repeats: usize) -> Vec<(f64, f64)> {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("benches/learn/river_prequential.py");
    let out = Command::new("python3")
        .arg(script)
        .arg(river)
        .arg(graphs_dir().join("data/phishing.csv.gz"))
        .arg(repeats.to_string())
        .output()
        .expect("python3");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| {
            let mut parts = l.split_whitespace().map(|p| p.parse::<f64>().expect("a number"));
            (parts.next().expect("accuracy"), parts.next().expect("events/s"))
        })
        .collect()
}

fn main() {
    let args = weir::bench::BenchArgs::start();
    let pages = phishing().expect("phishing stream");
    let river = river_dir();
    let rounds = if args.quick { 3 } else { 9 };
    let (mut weir_rates, mut river_rates, mut ratios) = (Vec::new(), Vec::new(), Vec::new());
    let (mut weir_accuracy, mut river_accuracy) = (0.0, 0.0);
    for _ in 0..rounds {
        // Each side runs the stream several times per round and keeps its best pass.
        let best = (0..20).map(|_| weir_prequential(&pages)).fold((0.0, 0.0f64), |a, b| (b.0, a.1.max(b.1)));
        let theirs = river_prequential(&river, 3);
        let river_best = theirs.iter().map(|r| r.1).fold(0.0f64, f64::max);
        weir_accuracy = best.0;
        river_accuracy = theirs[0].0;
        weir_rates.push(best.1);
        river_rates.push(river_best);
        ratios.push(best.1 / river_best);
    }
    let (lo, hi) = range(&ratios);
    println!(
        "| online learning | River 0.26.1 StandardScaler then LogisticRegression (SGD 0.01), phishing (1250 rows), predict then learn (baseline) | accuracy {river_accuracy:.4}; {:.0} events/s (median of {rounds} rounds) | 1.00 |",
        median(river_rates)
    );
    println!(
        "| online learning | weir learner kernel alone (running standardisation + logistic regression, SGD 0.01), same stream and order | accuracy {weir_accuracy:.4}; {:.0} events/s (median of {rounds} rounds) | accuracy {:+.4}; {:.0}x River's events/s (range {lo:.0}x to {hi:.0}x) |",
        median(weir_rates),
        weir_accuracy - river_accuracy,
        median(ratios)
    );
}
