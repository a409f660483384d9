//! Bad models and bad inputs are typed errors that name the file and what is wrong, never
//! panics: truncated files, unsupported objectives, broken trees, a wrong feature count.
#![allow(clippy::unwrap_used)]

use std::path::{Path, PathBuf};

use weir_trees::{load_lightgbm, load_xgboost, TreeError};

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures").join(name)
}

/// Writes `text` to a temp file unique to this process and `name`.
fn temp_file(name: &str, text: &str) -> PathBuf {
    let path = std::env::temp_dir().join(format!("weir-trees-errors-{}-{name}", std::process::id()));
    std::fs::write(&path, text).unwrap();
    path
}

fn read(name: &str) -> String {
    std::fs::read_to_string(fixture(name)).unwrap()
}

#[test]
fn truncated_xgboost_json_names_the_file() {
    let text = read("xgb_nan_binary.json");
    for cut in [text.len() / 2, text.len() - 1, 10] {
        let path = temp_file("truncated.json", &text[..cut]);
        let err = load_xgboost(&path).unwrap_err();
        assert!(matches!(err, TreeError::Json { .. }), "{err}");
        assert!(err.to_string().contains("truncated.json"), "{err}");
    }
}

#[test]
fn truncated_lightgbm_text_names_the_file_and_line() {
    let text = read("lgbm_nan_binary.txt");
    let lines: Vec<&str> = text.lines().collect();
    // Cut inside a tree, between two trees, and in the middle of a line.
    let between = lines.iter().position(|l| l.starts_with("Tree=1")).unwrap();
    for cut in [lines.len() / 2, between, 12] {
        let path = temp_file("truncated.txt", &lines[..cut].join("\n"));
        let err = load_lightgbm(&path).unwrap_err();
        assert!(matches!(err, TreeError::Line { .. }), "cut at {cut}: {err}");
        assert!(err.to_string().contains("truncated.txt"), "{err}");
    }
    let half_line = &text[..text.find("leaf_value=").unwrap() + 30];
    let err = load_lightgbm(&temp_file("half-line.txt", half_line)).unwrap_err();
    assert!(matches!(err, TreeError::Line { .. }), "{err}");
    // A list cut short, with the rest of the file intact.
    let short = text.replacen("leaf_value=", "leaf_value=1 ", 1);
    let err = load_lightgbm(&temp_file("short.txt", &short)).unwrap_err();
    assert!(err.to_string().contains("`leaf_value` has"), "{err}");
}

#[test]
fn unsupported_objectives_are_named() {
    let text = read("xgb_regression.json").replace("reg:squarederror", "count:poisson");
    let err = load_xgboost(&temp_file("poisson.json", &text)).unwrap_err();
    assert!(
        matches!(&err, TreeError::Unsupported { what, value, .. } if what == "objective" && value == "count:poisson"),
        "{err}"
    );
    assert!(err.to_string().contains("poisson.json"), "{err}");

    let text = read("lgbm_zero_regression.txt").replace("objective=regression", "objective=poisson");
    let err = load_lightgbm(&temp_file("poisson.txt", &text)).unwrap_err();
    assert!(
        matches!(&err, TreeError::Unsupported { what, value, .. } if what == "objective" && value.starts_with("poisson")),
        "{err}"
    );

    let text = read("lgbm_zero_regression.txt").replace("objective=regression", "objective=regression sqrt");
    assert!(matches!(load_lightgbm(&temp_file("sqrt.txt", &text)).unwrap_err(), TreeError::Unsupported { .. }));

    let text = read("lgbm_zero_regression.txt").replace("is_linear=0", "is_linear=1");
    let err = load_lightgbm(&temp_file("linear.txt", &text)).unwrap_err();
    assert!(matches!(&err, TreeError::Unsupported { what, .. } if what == "linear tree"), "{err}");

    let text = read("xgb_regression.json").replace(r#""num_target":"1""#, r#""num_target":"2""#);
    assert!(matches!(load_xgboost(&temp_file("multi.json", &text)).unwrap_err(), TreeError::Unsupported { .. }));
}

#[test]
fn broken_trees_name_the_tree_and_node() {
    let text = read("xgb_regression.json");
    let broken = text.replacen(r#""left_children":[1,"#, r#""left_children":[99,"#, 1);
    assert_ne!(broken, text, "the fixture's layout changed");
    let err = load_xgboost(&temp_file("child.json", &broken)).unwrap_err();
    assert!(matches!(err, TreeError::Node { tree: 0, node: 0, .. }), "{err}");
    // A child pointing back at the root: a cycle.
    let cycle = text.replacen(r#""left_children":[1,"#, r#""left_children":[0,"#, 1);
    let err = load_xgboost(&temp_file("cycle.json", &cycle)).unwrap_err();
    assert!(err.to_string().contains("reached twice"), "{err}");

    let text = read("lgbm_zero_regression.txt");
    let start = text.find("split_feature=").unwrap() + "split_feature=".len();
    let broken = format!("{}40{}", &text[..start], &text[start + 1..]);
    let err = load_lightgbm(&temp_file("feature.txt", &broken)).unwrap_err();
    assert!(err.to_string().contains("past the model's 9 features"), "{err}");
}

#[test]
fn missing_files_and_wrong_feature_counts() {
    let err = load_xgboost(Path::new("/nonexistent/m.json")).unwrap_err();
    assert!(matches!(err, TreeError::Read { .. }) && err.to_string().contains("/nonexistent/m.json"), "{err}");
    let err = load_lightgbm(Path::new("/nonexistent/m.txt")).unwrap_err();
    assert!(matches!(err, TreeError::Read { .. }), "{err}");

    let model = load_lightgbm(&fixture("lgbm_multiclass.txt")).unwrap();
    assert_eq!((model.n_features(), model.n_outputs()), (9, 3));
    let mut out = vec![1.0; 7];
    let err = model.predict(&[0.0; 8], 1, &mut out).unwrap_err();
    assert!(matches!(err, TreeError::Shape { rows: 1, n_features: 9, expected: 9, got: 8 }), "{err}");
    let err = model.predict_raw(&[0.0; 18], 3, &mut out).unwrap_err();
    assert!(matches!(err, TreeError::Shape { expected: 27, got: 18, .. }), "{err}");
    // Zero rows is not an error: no outputs.
    model.predict(&[], 0, &mut out).unwrap();
    assert!(out.is_empty());
}
