//! [`NodeArrays`]: the attributes of ONNX-ML `TreeEnsembleClassifier` / `TreeEnsembleRegressor`
//! (ai.onnx.ml opsets 1 to 3), and [`Ensemble::from_node_arrays`] building an ensemble from them.
//!
//! Semantics, as onnxruntime implements them: node `i` of tree `tree_ids[i]` is named
//! `node_ids[i]`; a branch node tests feature `feature_ids[i]` against `values[i]` with its
//! [`Mode`] and goes to node `true_ids[i]` when the test holds, `false_ids[i]` otherwise (both
//! named within the same tree). A NaN input fails every comparison except `BRANCH_NEQ`, so
//! goes to the false branch (the true one for `BRANCH_NEQ`), unless
//! `missing_tracks_true[i]`, which sends it to the true branch. Each tree's root is its
//! first node in the arrays (as onnxruntime takes it); nodes it does not reach are ignored. Entry `j` of the target arrays adds
//! `target_weights[j]` to output `target_ids[j]` when a row reaches leaf
//! (`target_tree_ids[j]`, `target_node_ids[j]`); a classifier's `class_*` attributes map onto
//! the same arrays. Outputs are then aggregated over trees ([`Aggregate`]; `Average` divides
//! by the number of trees), `base_values` added, and `transform` applied by `predict`
//! (`predict_raw` stops before it). The binary-classifier special cases of onnxruntime (one
//! score expanded into two classes) are left to the caller.

use std::collections::HashMap;

use crate::build::{assemble, exact_f32, round_down, strictly_below, Header, RawNode, RawTree, Test};
use crate::{Aggregate, Ensemble, Objective, Transform, TreeError};

/// What the model's name is in errors.
const MODEL: &str = "NodeArrays";

/// A node's mode (`nodes_modes`): the test a branch makes, or `Leaf`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// True when `x <= value`.
    BranchLeq,
    /// True when `x < value`.
    BranchLt,
    /// True when `x >= value`.
    BranchGte,
    /// True when `x > value`.
    BranchGt,
    /// True when `x == value`.
    BranchEq,
    /// True when `x != value`.
    BranchNeq,
    /// A leaf.
    Leaf,
}

impl Mode {
    /// The mode named as ONNX names it (`"BRANCH_LEQ"`, ..., `"LEAF"`); `None` for another name.
    pub fn from_onnx(name: &str) -> Option<Mode> {
        Some(match name {
            "BRANCH_LEQ" => Mode::BranchLeq,
            "BRANCH_LT" => Mode::BranchLt,
            "BRANCH_GTE" => Mode::BranchGte,
            "BRANCH_GT" => Mode::BranchGt,
            "BRANCH_EQ" => Mode::BranchEq,
            "BRANCH_NEQ" => Mode::BranchNeq,
            "LEAF" => Mode::Leaf,
            _ => return None,
        })
    }
}

/// The tree-ensemble attributes of an ONNX-ML node, one entry per node (the `nodes_*`
/// arrays) or per leaf contribution (the `target_*` / `class_*` arrays); see the module docs.
#[derive(Debug, Clone, Default)]
pub struct NodeArrays {
    /// `nodes_treeids`.
    pub tree_ids: Vec<i64>,
    /// `nodes_nodeids`.
    pub node_ids: Vec<i64>,
    /// `nodes_featureids`.
    pub feature_ids: Vec<i64>,
    /// `nodes_modes`.
    pub modes: Vec<Mode>,
    /// `nodes_values` (or `nodes_values_as_tensor`).
    pub values: Vec<f64>,
    /// `nodes_truenodeids`.
    pub true_ids: Vec<i64>,
    /// `nodes_falsenodeids`.
    pub false_ids: Vec<i64>,
    /// `nodes_missing_value_tracks_true`; empty means false for every node.
    pub missing_tracks_true: Vec<bool>,
    /// `target_treeids` / `class_treeids`.
    pub target_tree_ids: Vec<i64>,
    /// `target_nodeids` / `class_nodeids`.
    pub target_node_ids: Vec<i64>,
    /// `target_ids` / `class_ids`.
    pub target_ids: Vec<i64>,
    /// `target_weights` / `class_weights`.
    pub target_weights: Vec<f64>,
    /// The number of outputs (`n_targets`, or the number of classes).
    pub n_targets: usize,
    /// `base_values`: one per output, or empty for zeros.
    pub base_values: Vec<f64>,
    /// `aggregate_function` (the classifier's is `Sum`).
    pub aggregate: Aggregate,
    /// `post_transform`.
    pub transform: Transform,
}

impl Ensemble {
    /// Builds an ensemble from ONNX-ML tree attributes, for rows of `n_features` features.
    ///
    /// The objective is `Multiclass` for several targets, `Binary` for one target with a
    /// logistic transform, `Regression` otherwise. Errors name the attribute (arrays of
    /// different lengths, an unknown target) or the tree and node (a child that is not in
    /// the tree, a cycle, a feature id outside `0..n_features`).
    pub fn from_node_arrays(a: &NodeArrays, n_features: usize) -> Result<Ensemble, TreeError> {
        check_lengths(a)?;
        let n = a.node_ids.len();
        // Trees in the order their ids first appear; nodes by (tree, id).
        let mut tree_index: HashMap<i64, usize> = HashMap::new();
        let mut trees: Vec<RawTree> = Vec::new();
        let mut position: HashMap<(i64, i64), (usize, usize)> = HashMap::with_capacity(n);
        // `placed[i]`: node i's (tree, index within the tree).
        let mut placed = Vec::with_capacity(n);
        for i in 0..n {
            let tree_id = a.tree_ids[i];
            let t = *tree_index.entry(tree_id).or_insert_with(|| {
                trees.push(RawTree { name: tree_id, ..RawTree::default() });
                trees.len() - 1
            });
            let node_id = a.node_ids[i];
            let local = trees[t].ids.len();
            if position.insert((tree_id, node_id), (t, local)).is_some() {
                return Err(node_error(tree_id, node_id, "the node id appears twice in its tree".into()));
            }
            placed.push((t, local));
            trees[t].ids.push(node_id);
            trees[t].nodes.push(RawNode::Leaf(Vec::new()));
        }
        for (i, &(t, local)) in placed.iter().enumerate() {
            if a.modes[i] == Mode::Leaf {
                continue;
            }
            let child = |id: i64| {
                position.get(&(a.tree_ids[i], id)).map(|&(_, c)| c).ok_or_else(|| {
                    node_error(a.tree_ids[i], a.node_ids[i], format!("child {id} is not a node of the tree"))
                })
            };
            let (on_true, on_false) = (child(a.true_ids[i])?, child(a.false_ids[i])?);
            let feature = usize::try_from(a.feature_ids[i]).map_err(|_| {
                node_error(a.tree_ids[i], a.node_ids[i], format!("feature id {} is negative", a.feature_ids[i]))
            })?;
            let tracks = a.missing_tracks_true.get(i).copied().unwrap_or(false);
            trees[t].nodes[local] = branch(a.modes[i], a.values[i], feature, tracks, on_true, on_false);
        }
        for j in 0..a.target_ids.len() {
            let (tree_id, node_id) = (a.target_tree_ids[j], a.target_node_ids[j]);
            let &(t, local) = position.get(&(tree_id, node_id)).ok_or_else(|| TreeError::Field {
                model: MODEL.into(),
                field: "target_nodeids".into(),
                reason: format!("entry {j} names node {node_id} of tree {tree_id}, which does not exist"),
            })?;
            let output =
                usize::try_from(a.target_ids[j]).ok().filter(|&o| o < a.n_targets).ok_or_else(|| TreeError::Field {
                    model: MODEL.into(),
                    field: "target_ids".into(),
                    reason: format!("entry {j} is {}, outside 0..{}", a.target_ids[j], a.n_targets),
                })?;
            match &mut trees[t].nodes[local] {
                RawNode::Leaf(contributions) => contributions.push((output, a.target_weights[j])),
                RawNode::Split { .. } => {
                    return Err(node_error(tree_id, node_id, format!("target entry {j} names a branch node")));
                }
            }
        }
        let base = if a.base_values.is_empty() { vec![0.0; a.n_targets] } else { a.base_values.clone() };
        let objective = match (a.n_targets, a.transform) {
            (1, Transform::Logistic) => Objective::Binary,
            (1, _) => Objective::Regression,
            (classes, _) => Objective::Multiclass { classes },
        };
        let header = Header {
            model: MODEL.into(),
            n_features,
            n_outputs: a.n_targets,
            objective,
            transform: a.transform,
            aggregate: a.aggregate,
            base,
            average_divisor: trees.len().max(1) as f64,
            logistic_scale: 1.0,
        };
        assemble(header, &trees)
    }
}

/// A branch node with its ONNX mode rewritten as a left-when test; see `crate::ensemble`.
fn branch(mode: Mode, value: f64, feature: usize, tracks: bool, on_true: usize, on_false: usize) -> RawNode {
    // (test, does the test's truth mean the ONNX test's truth, where NaN goes in ONNX terms)
    let (test, same, nan_true) = match mode {
        Mode::BranchLeq => (Test::LessEq(round_down(value)), true, tracks),
        Mode::BranchLt => (Test::LessEq(strictly_below(value)), true, tracks),
        Mode::BranchGte => (Test::LessEq(strictly_below(value)), false, tracks),
        Mode::BranchGt => (Test::LessEq(round_down(value)), false, tracks),
        Mode::BranchEq => (Test::Equal(exact_f32(value)), true, tracks),
        Mode::BranchNeq => (Test::Equal(exact_f32(value)), false, true),
        Mode::Leaf => return RawNode::Leaf(Vec::new()),
    };
    let (left, right) = if same { (on_true, on_false) } else { (on_false, on_true) };
    RawNode::Split { feature, test, nan_left: nan_true == same, left, right }
}

fn node_error(tree: i64, node: i64, reason: String) -> TreeError {
    TreeError::Node { model: MODEL.into(), tree, node, reason }
}

/// The node arrays and the target arrays must each have one length.
fn check_lengths(a: &NodeArrays) -> Result<(), TreeError> {
    let n = a.node_ids.len();
    let nodes = [
        ("nodes_treeids", a.tree_ids.len()),
        ("nodes_featureids", a.feature_ids.len()),
        ("nodes_modes", a.modes.len()),
        ("nodes_values", a.values.len()),
        ("nodes_truenodeids", a.true_ids.len()),
        ("nodes_falsenodeids", a.false_ids.len()),
    ];
    let mut checks: Vec<(&str, usize, usize, &str)> =
        nodes.iter().map(|&(field, len)| (field, len, n, "nodes_nodeids")).collect();
    if !a.missing_tracks_true.is_empty() {
        checks.push(("nodes_missing_value_tracks_true", a.missing_tracks_true.len(), n, "nodes_nodeids"));
    }
    let m = a.target_ids.len();
    for (field, len) in [
        ("target_treeids", a.target_tree_ids.len()),
        ("target_nodeids", a.target_node_ids.len()),
        ("target_weights", a.target_weights.len()),
    ] {
        checks.push((field, len, m, "target_ids"));
    }
    if !a.base_values.is_empty() {
        checks.push(("base_values", a.base_values.len(), a.n_targets, "n_targets"));
    }
    for (field, len, want, against) in checks {
        if len != want {
            return Err(TreeError::Field {
                model: MODEL.into(),
                field: field.into(),
                reason: format!("{len} entries, but {against} has {want}"),
            });
        }
    }
    if a.n_targets == 0 {
        return Err(TreeError::Field { model: MODEL.into(), field: "n_targets".into(), reason: "zero outputs".into() });
    }
    Ok(())
}
