//! `Ensemble::from_node_arrays`: ONNX-ML tree semantics (modes, missing values, targets,
//! aggregation, base values) against a from-scratch evaluation of the same arrays.
#![allow(clippy::unwrap_used)]

use weir_trees::{Aggregate, Ensemble, Mode, NodeArrays, Transform, TreeError};

/// The ONNX test of `mode` on `x`, as onnxruntime writes it.
fn onnx_test(mode: Mode, x: f32, v: f64, tracks: bool) -> bool {
    let x = f64::from(x);
    let holds = match mode {
        Mode::BranchLeq => x <= v,
        Mode::BranchLt => x < v,
        Mode::BranchGte => x >= v,
        Mode::BranchGt => x > v,
        Mode::BranchEq => x == v,
        Mode::BranchNeq => x != v,
        Mode::Leaf => unreachable!(),
    };
    holds || (tracks && x.is_nan())
}

/// A from-scratch reference: walks the arrays by node id, sums per target.
fn reference(a: &NodeArrays, row: &[f32]) -> Vec<f64> {
    let mut out = vec![0.0; a.n_targets];
    let trees: Vec<i64> = {
        let mut t = a.tree_ids.clone();
        t.dedup();
        t
    };
    for &tree in &trees {
        let find = |id: i64| (0..a.node_ids.len()).find(|&i| a.tree_ids[i] == tree && a.node_ids[i] == id).unwrap();
        let mut i = (0..a.node_ids.len()).find(|&i| a.tree_ids[i] == tree).unwrap();
        while a.modes[i] != Mode::Leaf {
            let tracks = a.missing_tracks_true.get(i).copied().unwrap_or(false);
            let x = row[a.feature_ids[i] as usize];
            i = find(if onnx_test(a.modes[i], x, a.values[i], tracks) { a.true_ids[i] } else { a.false_ids[i] });
        }
        for j in 0..a.target_ids.len() {
            if a.target_tree_ids[j] == tree && a.target_node_ids[j] == a.node_ids[i] {
                out[a.target_ids[j] as usize] += a.target_weights[j];
            }
        }
    }
    for (o, b) in out.iter_mut().zip(&a.base_values) {
        *o += b;
    }
    out
}

/// Two trees, one node per mode, with NaN tracking on some; leaves feed two targets.
fn arrays(mode: Mode, tracks: bool) -> NodeArrays {
    NodeArrays {
        tree_ids: vec![0, 0, 0, 0, 0, 1, 1, 1],
        node_ids: vec![0, 1, 2, 3, 4, 0, 1, 2],
        feature_ids: vec![0, 1, 0, 0, 0, 2, 0, 0],
        modes: vec![mode, Mode::BranchLeq, Mode::Leaf, Mode::Leaf, Mode::Leaf, Mode::BranchGt, Mode::Leaf, Mode::Leaf],
        values: vec![0.5, -1.0, 0.0, 0.0, 0.0, 0.1, 0.0, 0.0],
        true_ids: vec![1, 3, 0, 0, 0, 2, 0, 0],
        false_ids: vec![2, 4, 0, 0, 0, 1, 0, 0],
        missing_tracks_true: vec![tracks, false, false, false, false, true, false, false],
        target_tree_ids: vec![0, 0, 0, 0, 1, 1],
        target_node_ids: vec![2, 3, 4, 4, 1, 2],
        target_ids: vec![0, 1, 0, 1, 0, 1],
        target_weights: vec![1.0, 2.0, 4.0, 8.0, 16.0, 32.0],
        n_targets: 2,
        base_values: vec![0.25, -0.25],
        aggregate: Aggregate::Sum,
        transform: Transform::None,
    }
}

#[test]
fn every_mode_matches_the_onnx_rules_on_edge_values() {
    let xs = [f32::NAN, 0.5, 0.5f32.next_up(), 0.5f32.next_down(), -1.0, 0.1, 0.1f32.next_up(), 0.0, 7.0];
    let modes = [Mode::BranchLeq, Mode::BranchLt, Mode::BranchGte, Mode::BranchGt, Mode::BranchEq, Mode::BranchNeq];
    for mode in modes {
        for tracks in [false, true] {
            let a = arrays(mode, tracks);
            let e = Ensemble::from_node_arrays(&a, 3).unwrap();
            let mut out = Vec::new();
            for &x0 in &xs {
                for &x1 in &[f32::NAN, -1.0, -0.5] {
                    for &x2 in &[f32::NAN, 0.1, 0.2] {
                        let row = [x0, x1, x2];
                        e.predict_raw(&row, 1, &mut out).unwrap();
                        let want = reference(&a, &row);
                        let got: Vec<f64> = out.iter().map(|&v| f64::from(v)).collect();
                        assert_eq!(got, want, "{mode:?} tracks={tracks} row={row:?}");
                    }
                }
            }
        }
    }
}

#[test]
fn average_min_max_and_softmax() {
    let row = [0.0f32, 0.0, 0.0];
    let mut out = Vec::new();
    for (aggregate, want) in [
        // Tree 0 reaches node 4 (x1 = 0 > -1): 4, 8. Tree 1 reaches node 1 (0 <= 0.1): 16, 0.
        (Aggregate::Average, [20.0 / 2.0 + 0.25, 8.0 / 2.0 - 0.25]),
        (Aggregate::Min, [4.0 + 0.25, 8.0 - 0.25]),
        (Aggregate::Max, [16.0 + 0.25, 8.0 - 0.25]),
    ] {
        let a = NodeArrays { aggregate, ..arrays(Mode::BranchLeq, false) };
        Ensemble::from_node_arrays(&a, 3).unwrap().predict_raw(&row, 1, &mut out).unwrap();
        assert_eq!(out, want.map(|v| v as f32), "{aggregate:?}");
    }
    let a = NodeArrays { transform: Transform::Softmax, ..arrays(Mode::BranchLeq, false) };
    Ensemble::from_node_arrays(&a, 3).unwrap().predict(&row, 1, &mut out).unwrap();
    let (s0, s1) = (20.25f64, 7.75f64);
    let p0 = 1.0 / (1.0 + (s1 - s0).exp());
    assert!((f64::from(out[0]) - p0).abs() < 1e-7 && (f64::from(out[1]) - (1.0 - p0)).abs() < 1e-7, "{out:?}");
}

#[test]
fn bad_arrays_are_errors_naming_the_field_or_node() {
    let mut a = arrays(Mode::BranchLeq, false);
    a.values.pop();
    let e = Ensemble::from_node_arrays(&a, 3).unwrap_err();
    assert!(matches!(&e, TreeError::Field { field, .. } if field == "nodes_values"), "{e}");

    let mut a = arrays(Mode::BranchLeq, false);
    a.true_ids[1] = 9;
    let e = Ensemble::from_node_arrays(&a, 3).unwrap_err();
    assert!(matches!(e, TreeError::Node { tree: 0, node: 1, .. }), "{e}");
    assert!(e.to_string().contains("child 9"), "{e}");

    let mut a = arrays(Mode::BranchLeq, false);
    a.true_ids[1] = 0; // a cycle back to the root
    let e = Ensemble::from_node_arrays(&a, 3).unwrap_err();
    assert!(matches!(e, TreeError::Node { tree: 0, node: 1, .. }), "{e}");
    assert!(e.to_string().contains("reached twice"), "{e}");

    let e = Ensemble::from_node_arrays(&arrays(Mode::BranchLeq, false), 2).unwrap_err();
    assert!(e.to_string().contains("feature 2 is past the model's 2 features"), "{e}");

    let mut a = arrays(Mode::BranchLeq, false);
    a.target_ids[0] = 2;
    let e = Ensemble::from_node_arrays(&a, 3).unwrap_err();
    assert!(matches!(&e, TreeError::Field { field, .. } if field == "target_ids"), "{e}");

    let e = Ensemble::from_node_arrays(&arrays(Mode::BranchLeq, false), 3).unwrap();
    let err = e.predict(&[0.0; 4], 1, &mut Vec::new()).unwrap_err();
    assert!(matches!(err, TreeError::Shape { expected: 3, got: 4, .. }), "{err}");
}

#[test]
fn many_outputs_and_a_lone_leaf_tree() {
    // 1500 outputs (past the stack accumulators): tree 0 is a single leaf feeding the last
    // output and the first; tree 1 splits and feeds one output per side.
    let a = NodeArrays {
        tree_ids: vec![0, 1, 1, 1],
        node_ids: vec![0, 0, 1, 2],
        feature_ids: vec![0, 1, 0, 0],
        modes: vec![Mode::Leaf, Mode::BranchLt, Mode::Leaf, Mode::Leaf],
        values: vec![0.0, 2.0, 0.0, 0.0],
        true_ids: vec![0, 1, 0, 0],
        false_ids: vec![0, 2, 0, 0],
        target_tree_ids: vec![0, 0, 1, 1],
        target_node_ids: vec![0, 0, 1, 2],
        target_ids: vec![1499, 0, 7, 8],
        target_weights: vec![0.5, 1.5, 3.0, 4.0],
        n_targets: 1500,
        ..NodeArrays::default()
    };
    let e = Ensemble::from_node_arrays(&a, 2).unwrap();
    assert_eq!((e.n_trees(), e.max_depth(), e.n_outputs()), (2, 1, 1500));
    let rows = [0.0, 1.0, 0.0, 2.0, 0.0, f32::NAN];
    let mut out = Vec::new();
    e.predict_raw(&rows, 3, &mut out).unwrap();
    assert_eq!(out.len(), 4500);
    for (r, side) in [(0, 7), (1, 8), (2, 8)] {
        let row = &out[r * 1500..(r + 1) * 1500];
        let nonzero: Vec<(usize, f32)> = row.iter().copied().enumerate().filter(|&(_, v)| v != 0.0).collect();
        let want = if side == 7 { 3.0 } else { 4.0 };
        assert_eq!(nonzero, vec![(0, 1.5), (side, want), (1499, 0.5)], "row {r}");
    }
}
