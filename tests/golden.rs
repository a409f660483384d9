//! Golden tests: every bundled graph, real inputs, expected outputs, at 1 and 2 workers.
#![allow(clippy::unwrap_used)] // a test or benchmark fails loudly on the first surprise

mod common;

use common::*;
use weir::datasets::Split;
use weir_operators::Value;

fn f(x: f32) -> Value {
    Value::F32(x)
}

#[test]
fn diamond_computes_a_plus_2b_plus_c() {
    let (_engine, g) = start(plan("diamond.yaml"), 1);
    assert_eq!(g.call(vec![f(1.0), f(2.0), f(3.0)]).unwrap().unwrap(), vec![f(8.0)]);
    let rows: Vec<Vec<Value>> = (0..500).map(|i| vec![f(i as f32), f(0.5 * i as f32), f(-1.0)]).collect();
    let results = g.call_many(rows, 64);
    for (i, r) in results.iter().enumerate() {
        let i = i as f32;
        assert_eq!(r.as_ref().unwrap(), &vec![f(i + 2.0 * 0.5 * i - 1.0)], "row {i}");
    }
}

#[test]
fn outputs_are_identical_at_one_and_two_workers() {
    for name in ["diamond.yaml", "digits.yaml", "digits-early-exit.yaml"] {
        let rows: Vec<Vec<Value>> = if name == "diamond.yaml" {
            (0..2000).map(|i| vec![f(i as f32 * 0.37), f(-(i as f32) * 1.3), f(0.1)]).collect()
        } else {
            digit_rows(Split::Test).0
        };
        let one = {
            let (_e, g) = start(plan(name), 1);
            g.call_many(rows.clone(), 256)
        };
        let two = {
            let (_e, g) = start(plan(name), 2);
            g.call_many(rows, 256)
        };
        assert!(one.iter().all(|r| r.is_ok()), "{name}: every row answers");
        assert_eq!(one, two, "{name}: 1 and 2 workers must give bit-identical outputs");
    }
}

#[test]
fn digits_ensemble_is_accurate_on_the_held_out_split() {
    let (rows, set) = digit_rows(Split::Test);
    assert_eq!(rows.len(), 360);
    let (_engine, g) = start(plan("digits.yaml"), 2);
    let results = g.call_many(rows, 128);
    let acc = accuracy(&results, &set);
    assert!(acc >= 0.95, "held-out accuracy {acc:.4} < 0.95");
    for r in &results {
        let v = r.as_ref().unwrap();
        let Value::Tensor(probs) = &v[1] else { panic!("probs is a tensor: {v:?}") };
        assert_eq!(probs.len(), 10);
        let sum: f32 = probs.iter().sum();
        assert!((sum - 1.0).abs() < 1e-4, "probabilities sum to 1, got {sum}");
    }
}

/// Compares `actual` with the golden file `tests/golden/NAME`, or rewrites the file when
/// `WEIR_BLESS=1` (after a deliberate change of weights or numerics).
fn golden(name: &str, actual: &str) {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/golden").join(name);
    if std::env::var("WEIR_BLESS").as_deref() == Ok("1") {
        std::fs::write(&path, actual).unwrap();
    }
    let expected =
        std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e} (run with WEIR_BLESS=1)", path.display()));
    assert_eq!(actual, expected, "{} differs", path.display());
}

fn labels(results: &[weir_engine::RowResult]) -> String {
    results
        .iter()
        .map(|r| match r.as_ref().map(|v| &v[0]) {
            Ok(Value::I64(l)) => format!("{l}\n"),
            other => format!("{other:?}\n"),
        })
        .collect()
}

#[test]
fn digits_golden_labels() {
    // The first five test rows (file rows 0, 5, 10, 15, 20) are digits 0, 5, 0, 5, 0.
    let (rows, set) = digit_rows(Split::Test);
    let truth: Vec<u8> = set.iter().take(5).map(|d| d.label).collect();
    assert_eq!(truth, vec![0, 5, 0, 5, 0]);
    let (_engine, g) = start(plan("digits.yaml"), 1);
    golden("digits.test.labels", &labels(&g.call_many(rows, 64)));
}

#[test]
fn early_exit_golden_labels() {
    let (rows, _) = digit_rows(Split::Test);
    let (_engine, g) = start(plan("digits-early-exit.yaml"), 1);
    golden("digits-early-exit.test.labels", &labels(&g.call_many(rows, 64)));
}

#[test]
fn early_exit_routes_both_ways_and_stays_accurate() {
    let (rows, set) = digit_rows(Split::Test);
    let (_engine, g) = start(plan("digits-early-exit.yaml"), 2);
    let results = g.call_many(rows, 128);
    let acc = accuracy(&results, &set);
    assert!(acc >= 0.95, "early-exit accuracy {acc:.4} < 0.95");
    let stats = g.batch_stats();
    let rows_of = |node: &str| stats.iter().find(|(n, _)| n == node).map(|(_, s)| s.rows).unwrap();
    assert_eq!(rows_of("cheap"), 360, "every row goes through the cheap model");
    let mlp = rows_of("mlp");
    assert!(mlp > 0 && mlp < 360, "the MLP sees only the unsure rows, saw {mlp}");
}
