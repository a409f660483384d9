//! Online learning on real data: River's phishing stream, predict-then-learn
//! (prequential), with the learner kernel weir's `learn:` nodes are built on.
#![allow(clippy::unwrap_used)] // a test or benchmark fails loudly on the first surprise

use weir::datasets::phishing;
use weir_operators::kernel::learn::{OnlineLinear, Optimizer, RunningScaler};

/// Prequential accuracy of running standardisation + logistic regression, one row per
/// step: each row is predicted with what was learned before it, then learned.
fn prequential(optimizer: Optimizer) -> (f64, u64) {
    let pages = phishing().expect("phishing stream");
    assert_eq!(pages.len(), 1250);
    let mut scaler = RunningScaler::new(9);
    let mut model = OnlineLinear::logistic(9, optimizer, 0.0);
    let mut x = [0.0f32; 9];
    let mut right = 0;
    for page in &pages {
        scaler.transform(&page.features, &mut x);
        let p = model.predict(&x);
        right += usize::from((p[1] > 0.5) == page.phishing);
        scaler.update(&page.features);
        scaler.transform(&page.features, &mut x);
        model.learn(&x, &[usize::from(page.phishing)]);
    }
    (right as f64 / pages.len() as f64, model.version())
}

#[test]
fn logistic_regression_learns_the_phishing_stream() {
    // River's StandardScaler | LogisticRegression (SGD, lr 0.01) on the same stream.
    let (accuracy, version) = prequential(Optimizer::Sgd { lr: 0.01 });
    println!("prequential accuracy, SGD 0.01: {accuracy:.4}");
    assert_eq!(version, 1250, "one step per row");
    assert!(accuracy >= 0.85, "prequential accuracy {accuracy}");
    let (adam, _) = prequential(Optimizer::adam(0.05));
    println!("prequential accuracy, Adam 0.05: {adam:.4}");
    assert!(adam >= 0.85, "prequential accuracy with Adam {adam}");
}
