//! Golden tests: weir-trees against XGBoost's and LightGBM's own `predict` on the same rows.
//!
//! Two sets of goldens, one format (`{"model", "objective", "inputs": {"features": [[row]]},
//! "outputs": {"probability" | "probabilities" | "value": [...], "label"?: [...],
//! "margin"?: [...]}}`, NaN as null):
//! - `tests/golden/zoo/*.json` whose model is an XGBoost (`*_xgb*.json`) or LightGBM
//!   (`*_lgbm*.txt`) model: the zoo's phishing and digits models (`scripts/make_zoo.py`);
//! - `trees/tests/fixtures/*.golden.json`: small models made to exercise missing values,
//!   zero-as-missing, categorical splits and every objective, on edge-case rows
//!   (`trees/tests/fixtures/make_fixtures.py`).
//!
//! Tolerances: probabilities within 1e-6, labels equal (the first largest, or p > 0.5, as the zoo defines them), values and
//! margins within 1e-5 relative (absolute below 1).
#![allow(clippy::unwrap_used)]

use std::path::{Path, PathBuf};

use serde_json::Value;
use weir_trees::{load_lightgbm, load_xgboost, Ensemble};

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn load(model: &Path) -> Ensemble {
    let result = match model.extension().and_then(|e| e.to_str()) {
        Some("json") => load_xgboost(model),
        Some("txt") => load_lightgbm(model),
        other => panic!("{}: unknown model extension {other:?}", model.display()),
    };
    result.unwrap_or_else(|e| panic!("{e}"))
}

fn floats(v: &Value) -> Vec<f64> {
    fn flat(v: &Value, out: &mut Vec<f64>) {
        match v {
            Value::Array(items) => items.iter().for_each(|i| flat(i, out)),
            Value::Null => out.push(f64::NAN),
            other => out.push(other.as_f64().unwrap()),
        }
    }
    let mut out = Vec::new();
    flat(v, &mut out);
    out
}

fn close(got: f64, want: f64, tolerance: f64) -> bool {
    (got - want).abs() <= tolerance * want.abs().max(1.0)
}

/// Checks one golden file; returns how many values it compared.
fn check(golden_path: &Path) -> usize {
    let golden: Value = serde_json::from_slice(&std::fs::read(golden_path).unwrap()).unwrap();
    let name = golden_path.display().to_string();
    let model = load(&root().join(golden["model"].as_str().unwrap()));
    let rows_json = golden["inputs"]["features"].as_array().unwrap();
    let x: Vec<f32> = floats(&golden["inputs"]["features"]).iter().map(|&v| v as f32).collect();
    let rows = rows_json.len();
    let k = model.n_outputs();
    let outputs = &golden["outputs"];
    let mut compared = 0;
    let mut out = Vec::new();
    if let Some(margin) = outputs.get("margin") {
        model.predict_raw(&x, rows, &mut out).unwrap();
        let want = floats(margin);
        assert_eq!(out.len(), want.len(), "{name}: margins");
        for (i, (&g, &w)) in out.iter().zip(&want).enumerate() {
            assert!(close(f64::from(g), w, 1e-5), "{name}: margin {i} (row {}): {g} vs {w}", i / k);
        }
        compared += want.len();
    }
    model.predict(&x, rows, &mut out).unwrap();
    assert_eq!(out.len(), rows * k, "{name}: outputs");
    // multi:softmax's library predict gives only the label: then labels and margins are checked.
    if let Some(key) = ["probability", "probabilities", "value"].into_iter().find(|k| outputs.get(*k).is_some()) {
        let want = floats(&outputs[key]);
        assert_eq!(out.len(), want.len(), "{name}: {key}");
        for (i, (&g, &w)) in out.iter().zip(&want).enumerate() {
            let g = f64::from(g);
            let ok = if key == "value" { close(g, w, 1e-5) } else { (g - w).abs() <= 1e-6 };
            assert!(ok, "{name}: {key} {i} (row {}): {g} vs {w}", i / k);
        }
        compared += want.len();
    }
    if let Some(labels) = outputs.get("label") {
        for (r, label) in floats(labels).iter().enumerate() {
            let row = &out[r * k..(r + 1) * k];
            let predicted = if k == 1 {
                f64::from(u8::from(row[0] > 0.5))
            } else {
                row.iter().enumerate().fold(0, |best, (c, &p)| if p > row[best] { c } else { best }) as f64
            };
            assert_eq!(predicted, *label, "{name}: label of row {r} ({row:?})");
        }
        compared += rows;
    }
    compared
}

fn goldens(dir: &Path, keep: impl Fn(&str) -> bool) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> =
        std::fs::read_dir(dir).map(|d| d.map(|e| e.unwrap().path()).collect()).unwrap_or_default();
    files.retain(|p| p.extension().is_some_and(|e| e == "json") && keep(&p.display().to_string()));
    files.sort();
    files
}

#[test]
fn fixtures_match_the_libraries() {
    let files = goldens(&root().join("trees/tests/fixtures"), |p| p.ends_with(".golden.json"));
    assert!(files.len() >= 13, "expected the fixtures' goldens, found {files:?}");
    for file in files {
        let n = check(&file);
        assert!(n > 0, "{}: nothing compared", file.display());
    }
}

#[test]
fn zoo_models_match_the_libraries() {
    let files = goldens(&root().join("tests/golden/zoo"), |p| {
        let stem = Path::new(p).file_stem().and_then(|s| s.to_str()).unwrap_or("").to_string();
        stem.contains("_xgb") || stem.contains("_lgbm")
    });
    for want in ["phishing_xgb", "phishing_lgbm", "digits_xgb", "digits_lgbm"] {
        assert!(
            files.iter().any(|f| f.display().to_string().contains(want)),
            "no zoo golden for {want} in tests/golden/zoo: {files:?}"
        );
    }
    for file in files {
        check(&file);
    }
}
