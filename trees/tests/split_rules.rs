//! The split rules on one-split models written by hand: where each library sends a value,
//! a missing value (NaN), a zero under zero-as-missing, and a category, including the edges
//! (the threshold itself, negative and fractional categories, categories past the bitset).
//! The left leaf is -1 and the right leaf +1, so the sign of the prediction says the side.
#![allow(clippy::unwrap_used)]

use std::path::PathBuf;

use weir_trees::{load_lightgbm, load_xgboost, Ensemble};

/// A file in the temp directory, unique to this process and `name`.
fn temp_file(name: &str, text: &str) -> PathBuf {
    let path = std::env::temp_dir().join(format!("weir-trees-{}-{name}", std::process::id()));
    std::fs::write(&path, text).unwrap();
    path
}

/// "L" or "R" for each of `xs`, fed as feature 0 (feature 1 is 0).
fn sides(model: &Ensemble, xs: &[f32]) -> String {
    let rows: Vec<f32> = xs.iter().flat_map(|&x| [x, 0.0]).collect();
    let mut out = Vec::new();
    model.predict_raw(&rows, xs.len(), &mut out).unwrap();
    out.iter()
        .map(|&v| match v {
            -1.0 => 'L',
            1.0 => 'R',
            other => panic!("not a leaf value: {other}"),
        })
        .collect()
}

/// A LightGBM regression stump on feature 0.
fn lightgbm_stump(name: &str, decision_type: u8, threshold: &str, cat: Option<(&str, &str)>) -> Ensemble {
    let (num_cat, cat_lines) = match cat {
        Some((bounds, words)) => (1, format!("cat_boundaries={bounds}\ncat_threshold={words}\n")),
        None => (0, String::new()),
    };
    let text = format!(
        "tree\nversion=v4\nnum_class=1\nnum_tree_per_iteration=1\nlabel_index=0\nmax_feature_idx=1\n\
         objective=regression\ntree_sizes=1\n\nTree=0\nnum_leaves=2\nnum_cat={num_cat}\nsplit_feature=0\n\
         threshold={threshold}\ndecision_type={decision_type}\nleft_child=-1\nright_child=-2\n\
         leaf_value=-1 1\n{cat_lines}shrinkage=1\n\n\nend of trees\n"
    );
    load_lightgbm(&temp_file(&format!("{name}.txt"), &text)).unwrap()
}

/// An XGBoost regression stump on feature 0 (base score 0).
fn xgboost_stump(name: &str, condition: f32, default_left: bool, categories: Option<&[u32]>) -> Ensemble {
    let (split_type, cats) = match categories {
        Some(c) => (
            1,
            format!(
                r#""categories": {c:?}, "categories_nodes": [0], "categories_segments": [0], "categories_sizes": [{}],"#,
                c.len()
            ),
        ),
        None => (
            0,
            r#""categories": [], "categories_nodes": [], "categories_segments": [], "categories_sizes": [],"#.into(),
        ),
    };
    let text = format!(
        r#"{{"learner": {{"learner_model_param": {{"base_score": "[0E0]", "num_class": "0", "num_feature": "2", "num_target": "1"}},
        "objective": {{"name": "reg:squarederror"}},
        "gradient_booster": {{"name": "gbtree", "model": {{"tree_info": [0], "trees": [{{
          "left_children": [1, -1, -1], "right_children": [2, -1, -1], "split_indices": [0, 0, 0],
          "split_conditions": [{condition:?}, -1.0, 1.0], "default_left": [{}, 0, 0], "split_type": [{split_type}, 0, 0],
          {cats} "base_weights": [0, 0, 0], "tree_param": {{"num_nodes": "3", "size_leaf_vector": "1"}}}}]}}}}}}}}"#,
        u8::from(default_left)
    );
    load_xgboost(&temp_file(&format!("{name}.json"), &text)).unwrap()
}

const NAN: f32 = f32::NAN;

#[test]
fn lightgbm_numeric_missing_types() {
    let up = 0.5f32.next_up();
    // Missing type None: NaN counts as 0, so it follows 0 <= threshold.
    assert_eq!(sides(&lightgbm_stump("none-pos", 0, "0.5", None), &[0.5, up, NAN, 0.0]), "LRLL");
    assert_eq!(sides(&lightgbm_stump("none-neg", 2, "-0.5", None), &[-0.5, 0.0, NAN]), "LRR");
    // Missing type Zero (bits 2-3 = 1): NaN and |x| <= 1e-35 take the default side.
    let zero = [0.0, -0.0, 1e-35, -1e-35, 1e-34, NAN, 1.0, 3.0];
    assert_eq!(sides(&lightgbm_stump("zero-right", 4, "2", None), &zero), "RRRRLRLR");
    assert_eq!(sides(&lightgbm_stump("zero-left", 6, "-2", None), &zero), "LLLLRLRR");
    // Missing type NaN (bits 2-3 = 2): only NaN takes the default side.
    assert_eq!(sides(&lightgbm_stump("nan-right", 8, "0.5", None), &[NAN, 0.0, 1.0]), "RLR");
    assert_eq!(sides(&lightgbm_stump("nan-left", 10, "-0.5", None), &[NAN, 0.0, -1.0]), "LRL");
    // A threshold that is not an f32 is still compared exactly: x <= 0.1 (f64).
    let below = 0.1f32; // 0.100000001490116... > 0.1
    assert_eq!(sides(&lightgbm_stump("non-f32", 0, "0.10000000000000001", None), &[below, below.next_down()]), "RL");
}

#[test]
fn lightgbm_categorical_in_the_set_goes_left() {
    // The set {0, 3, 33}: word 0 = bits 0 and 3, word 1 = bit 1.
    let m = lightgbm_stump("cat", 1, "0", Some(("0 2", "9 2")));
    let xs = [0.0, 3.0, 3.9, 33.0, -0.5, 1.0, 2.0, -1.0, NAN, 64.0, 1e10, 32.0];
    assert_eq!(sides(&m, &xs), "LLLLLRRRRRRR");
}

#[test]
fn xgboost_numeric_and_missing() {
    let m = xgboost_stump("num-left", 0.5, true, None);
    assert_eq!(sides(&m, &[0.5f32.next_down(), 0.5, 7.0, NAN, f32::NEG_INFINITY]), "LRRLL");
    let m = xgboost_stump("num-right", 0.5, false, None);
    assert_eq!(sides(&m, &[NAN, 0.0]), "RL");
}

#[test]
fn xgboost_categorical_in_the_set_goes_right() {
    let m = xgboost_stump("cat-left", 0.0, true, Some(&[1, 3, 40]));
    let xs = [1.0, 1.5, 3.0, 40.0, 0.0, 2.0, -0.5, -1.0, 41.0, 16_777_216.0, NAN];
    assert_eq!(sides(&m, &xs), "RRRRLLLLLLL");
    let m = xgboost_stump("cat-right", 0.0, false, Some(&[0]));
    assert_eq!(sides(&m, &[0.0, 0.9, -0.5, NAN]), "RRLR");
}
