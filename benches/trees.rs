//! Tree ensembles: `weir_trees::Ensemble::predict` against the libraries' own `predict`.
//!
//! For the zoo's phishing (binary) and digits (10 classes) models of XGBoost and LightGBM
//! (`graphs/zoo/{phishing,digits}_{xgb.json,lgbm.txt}`), rows/s of `Ensemble::predict` at
//! batch 1, 32 and 1024 on one thread, over the golden's rows (`tests/golden/zoo/<stem>.json`,
//! 100 held-out rows, a third of them with two NaN features). Batches are taken as
//! `benches/reference/timing.py` takes them: batch `i` is rows `i*B .. i*B+B` (mod the row
//! count) of the rows repeated, a few warm-up batches, then batches back to back for at
//! least a second (a third with `--quick`). Before timing, weir's output on the golden's
//! rows is checked against the golden's (1e-5).
//!
//! The baseline, in the same run, right after weir's measurement of the same model:
//! `python3 benches/reference/trees_speed.py MODEL --kind xgboost|lightgbm --rows GOLDEN
//! --batch 1,32,1024` with `PYTHONPATH=.tools/zoo` (XGBoost `nthread=1`, timed through a
//! DMatrix and through `inplace_predict`; LightGBM `num_threads=1`), same rows, same
//! batches. Without `.tools/zoo` (`scripts/make-zoo` installs it) the baseline is skipped
//! with a message and only weir's figures are printed. Floor (issue 19): at least the
//! library's own speed at batch 1024.
//!
//! Run: `cargo bench --bench trees` (`-- --quick` for shorter timings; a model stem such as
//! `digits_lgbm` to run only it).
#![allow(clippy::unwrap_used)] // a test or benchmark fails loudly on the first surprise

#[path = "support/reference.rs"]
mod reference;

use std::path::{Path, PathBuf};

use serde_json::Value;
use weir::bench::BenchArgs;
use weir_trees::{load_lightgbm, load_xgboost, Ensemble};

const BATCHES: [usize; 3] = [1, 32, 1024];

/// One model of the zoo: its stem and library.
struct Model {
    stem: &'static str,
    kind: &'static str,
    extension: &'static str,
}

const MODELS: [Model; 4] = [
    Model { stem: "phishing_xgb", kind: "xgboost", extension: "json" },
    Model { stem: "digits_xgb", kind: "xgboost", extension: "json" },
    Model { stem: "phishing_lgbm", kind: "lightgbm", extension: "txt" },
    Model { stem: "digits_lgbm", kind: "lightgbm", extension: "txt" },
];

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// The golden's rows (NaN for null), their count, and its first output, flattened.
fn golden(path: &Path) -> (Vec<f32>, usize, Vec<f64>) {
    let body: Value = serde_json::from_slice(&std::fs::read(path).unwrap()).unwrap();
    let rows = body["inputs"]["features"].as_array().unwrap();
    let x = rows
        .iter()
        .flat_map(|r| r.as_array().unwrap().iter().map(|v| v.as_f64().map_or(f32::NAN, |v| v as f32)))
        .collect();
    let outputs = body["outputs"].as_object().unwrap();
    let first = ["probability", "probabilities", "value"].iter().find_map(|k| outputs.get(*k)).unwrap();
    let mut want = Vec::new();
    for v in first.as_array().unwrap() {
        match v {
            Value::Array(items) => want.extend(items.iter().map(|i| i.as_f64().unwrap())),
            other => want.push(other.as_f64().unwrap()),
        }
    }
    (x, rows.len(), want)
}

/// Rows/s of `model.predict` over consecutive batches of `batch` rows, as timing.py measures.
fn measure(model: &Ensemble, x: &[f32], n: usize, batch: usize, seconds: f64) -> f64 {
    let f = model.n_features();
    let repeats = (n + batch).div_ceil(n);
    let pool: Vec<f32> = (0..repeats).flat_map(|_| x.iter().copied()).collect();
    let starts: Vec<usize> = (0..n).map(|i| (i * batch) % n).collect();
    let mut out = Vec::with_capacity(batch * model.n_outputs());
    let per_s = reference::batches_per_s(seconds, |i| {
        let s = starts[i % n];
        model.predict(&pool[s * f..(s + batch) * f], batch, &mut out).unwrap();
    });
    per_s * batch as f64
}

/// The reference's `(batch, method, rows/s)` lines, or why there are none.
fn reference(m: &Model, model: &Path, rows: &Path, seconds: f64) -> Result<Vec<(usize, String, f64)>, String> {
    let args =
        [model.display().to_string(), "--kind".into(), m.kind.into(), "--rows".into(), rows.display().to_string()]
            .into_iter()
            .chain(["--batch".into(), "1,32,1024".into(), "--seconds".into(), seconds.to_string()])
            .collect::<Vec<String>>();
    Ok(reference::run_script("trees_speed.py", &args)?
        .into_iter()
        .map(|v| {
            let method = v["method"].as_str().unwrap_or("predict").to_string();
            (v["batch"].as_u64().unwrap() as usize, method, v["rows_per_s"].as_f64().unwrap())
        })
        .collect())
}

fn main() {
    let args = BenchArgs::start();
    let seconds = if args.quick { 0.3 } else { 1.0 };
    for m in MODELS.iter().filter(|m| args.runs(m.stem)) {
        let model_path = root().join(format!("graphs/zoo/{}.{}", m.stem, m.extension));
        let rows_path = root().join(format!("tests/golden/zoo/{}.json", m.stem));
        let model = match m.kind {
            "xgboost" => load_xgboost(&model_path),
            _ => load_lightgbm(&model_path),
        }
        .unwrap();
        let (x, n, want) = golden(&rows_path);
        let mut out = Vec::new();
        model.predict(&x, n, &mut out).unwrap();
        let worst = out.iter().zip(&want).map(|(&g, &w)| (f64::from(g) - w).abs()).fold(0.0, f64::max);
        assert!(out.len() == want.len() && worst <= 1e-5, "{}: weir differs from the golden by {worst}", m.stem);
        let weir: Vec<(usize, f64)> = BATCHES.iter().map(|&b| (b, measure(&model, &x, n, b, seconds))).collect();
        let shape = format!("{} trees, {} nodes", model.n_trees(), model.n_nodes());
        match reference(m, &model_path, &rows_path, seconds) {
            Ok(lines) => {
                for (batch, rate) in &weir {
                    for (_, method, library) in lines.iter().filter(|(b, _, _)| b == batch) {
                        println!(
                            "| trees | {} ({shape}), batch {batch}, vs {} `{method}` | {rate:.0} rows/s (library {library:.0}) | {:.2} |",
                            m.stem,
                            m.kind,
                            rate / library
                        );
                    }
                }
            }
            Err(why) => {
                eprintln!("{}: {why}", m.stem);
                for (batch, rate) in &weir {
                    println!("| trees | {} ({shape}), batch {batch} | {rate:.0} rows/s | (no baseline) |", m.stem);
                }
            }
        }
    }
}
