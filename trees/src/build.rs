//! Assembling an [`Ensemble`] from trees described node by node, as each loader reads them.
//!
//! Loaders describe a tree as [`RawNode`]s indexed as the format indexes them; [`assemble`]
//! walks each tree breadth first from its root, places the two children of every split next
//! to each other, and checks what a bad file could get wrong: a child out of range, a node
//! reached twice (a cycle or a shared child), a feature past `n_features`, a leaf feeding an
//! output the model does not have. Unreachable nodes are dropped.

use crate::ensemble::{Aggregate, Ensemble, Kind, Node, Objective, Transform, MIXED_OUTPUTS};
use crate::TreeError;

/// The test of a split node, before flattening.
#[derive(Debug, Clone)]
pub(crate) enum Test {
    /// Left when `x <= threshold`.
    LessEq(f32),
    /// Left when `x == value`.
    Equal(f32),
    /// LightGBM zero-as-missing: `|x| <= 1e-35` goes to the NaN side, else `x <= threshold`.
    ZeroMissing(f32),
    /// Left when the category is in the bitset (`in_set_left`) or not in it (`!in_set_left`).
    Category { words: Vec<u32>, in_set_left: bool },
}

/// A node as a loader reads it; children are indices into the same tree's node list.
#[derive(Debug, Clone)]
pub(crate) enum RawNode {
    /// A split.
    Split { feature: usize, test: Test, nan_left: bool, left: usize, right: usize },
    /// A leaf and its `(output, weight)` contributions.
    Leaf(Vec<(usize, f64)>),
}

/// One tree: its nodes, its root, and the id the model gives each node (for errors).
#[derive(Debug, Clone, Default)]
pub(crate) struct RawTree {
    pub(crate) nodes: Vec<RawNode>,
    pub(crate) ids: Vec<i64>,
    pub(crate) root: usize,
    /// The tree's name in errors (its index, or its ONNX tree id).
    pub(crate) name: i64,
}

/// Everything about the model besides its trees.
#[derive(Debug, Clone)]
pub(crate) struct Header {
    pub(crate) model: String,
    pub(crate) n_features: usize,
    pub(crate) n_outputs: usize,
    pub(crate) objective: Objective,
    pub(crate) transform: Transform,
    pub(crate) aggregate: Aggregate,
    pub(crate) base: Vec<f64>,
    pub(crate) average_divisor: f64,
    pub(crate) logistic_scale: f64,
}

/// Flattens `trees` into an [`Ensemble`]; see the module docs for what is checked.
pub(crate) fn assemble(header: Header, trees: &[RawTree]) -> Result<Ensemble, TreeError> {
    if header.base.len() != header.n_outputs {
        return Err(TreeError::Field {
            model: header.model,
            field: "base_values".into(),
            reason: format!("{} values for {} outputs", header.base.len(), header.n_outputs),
        });
    }
    let mut e = Ensemble {
        nodes: Vec::new(),
        roots: Vec::with_capacity(trees.len()),
        depths: Vec::with_capacity(trees.len()),
        tree_output: Vec::with_capacity(trees.len()),
        leaf_value: Vec::new(),
        leaf_start: vec![0],
        leaf_output: Vec::new(),
        leaf_weight: Vec::new(),
        category_sets: Vec::new(),
        category_words: Vec::new(),
        n_features: header.n_features,
        n_outputs: header.n_outputs,
        objective: header.objective,
        transform: header.transform,
        aggregate: header.aggregate,
        base: header.base,
        average_divisor: header.average_divisor,
        logistic_scale: header.logistic_scale,
        numeric_only: true,
    };
    let mut slot_of = Vec::new();
    for tree in trees {
        place(&mut e, tree, &header.model, &mut slot_of)?;
    }
    e.numeric_only = e.nodes.iter().all(|n| n.kind == Kind::LessEq);
    Ok(e)
}

/// Appends one tree to `e`, breadth first; `slot_of` is scratch space.
fn place(e: &mut Ensemble, tree: &RawTree, model: &str, slot_of: &mut Vec<u32>) -> Result<(), TreeError> {
    let err = |raw: usize, reason: String| TreeError::Node {
        model: model.to_string(),
        tree: tree.name,
        node: tree.ids.get(raw).copied().unwrap_or(raw as i64),
        reason,
    };
    if tree.root >= tree.nodes.len() {
        return Err(err(tree.root, format!("the root is past the tree's {} nodes", tree.nodes.len())));
    }
    const UNPLACED: u32 = u32::MAX;
    slot_of.clear();
    slot_of.resize(tree.nodes.len(), UNPLACED);
    let base = e.nodes.len();
    let slot = index_u32(base, model)?;
    e.roots.push(slot);
    slot_of[tree.root] = slot;
    // `order[i]` is the raw node placed at slot `base + i`, at depth `depth[i]`.
    let mut order = vec![tree.root];
    let mut depth = vec![0u32];
    let mut next = 0;
    while next < order.len() {
        let raw = order[next];
        let child_depth = depth[next] + 1;
        next += 1;
        if let RawNode::Split { left, right, .. } = tree.nodes[raw] {
            for child in [left, right] {
                if child >= tree.nodes.len() {
                    return Err(err(raw, format!("child {child} is past the tree's {} nodes", tree.nodes.len())));
                }
                if slot_of[child] != UNPLACED {
                    let id = tree.ids.get(child).copied().unwrap_or(child as i64);
                    return Err(err(raw, format!("child {id} is reached twice (a cycle or a shared node)")));
                }
                slot_of[child] = index_u32(base + order.len(), model)?;
                order.push(child);
                depth.push(child_depth);
            }
        }
    }
    let mut output: Option<u32> = None;
    let mut mixed = false;
    for (i, &raw) in order.iter().enumerate() {
        let mut value = 0.0;
        let node = match &tree.nodes[raw] {
            RawNode::Leaf(contributions) => {
                for &(o, weight) in contributions {
                    if o >= e.n_outputs {
                        return Err(err(raw, format!("a leaf feeds output {o} of {}", e.n_outputs)));
                    }
                    e.leaf_output.push(o as u32);
                    e.leaf_weight.push(weight);
                }
                match contributions.as_slice() {
                    [(o, weight)] if output.is_none_or(|first| first == *o as u32) => {
                        output = Some(*o as u32);
                        value = *weight;
                    }
                    _ => mixed = true,
                }
                // Every test sends a row at a leaf back to the leaf.
                let own = index_u32(base + i, model)?;
                Node { feature: 0, param: f32::INFINITY.to_bits(), left: own, kind: Kind::LessEq, nan_left: true }
            }
            RawNode::Split { feature, test, nan_left, left, .. } => {
                if *feature >= e.n_features {
                    return Err(err(raw, format!("feature {feature} is past the model's {} features", e.n_features)));
                }
                let (kind, param) = match test {
                    Test::LessEq(t) => (Kind::LessEq, t.to_bits()),
                    Test::Equal(v) => (Kind::Equal, v.to_bits()),
                    Test::ZeroMissing(t) => (Kind::ZeroMissing, t.to_bits()),
                    Test::Category { words, in_set_left } => {
                        let start = index_u32(e.category_words.len(), model)?;
                        e.category_words.extend_from_slice(words);
                        let end = index_u32(e.category_words.len(), model)?;
                        let set = index_u32(e.category_sets.len(), model)?;
                        e.category_sets.push((start, end));
                        (if *in_set_left { Kind::CategoryLeft } else { Kind::CategoryRight }, set)
                    }
                };
                Node { feature: *feature as u32, param, left: slot_of[*left], kind, nan_left: *nan_left }
            }
        };
        e.nodes.push(node);
        e.leaf_value.push(value);
        e.leaf_start.push(index_u32(e.leaf_output.len(), model)?);
    }
    e.depths.push(depth.iter().copied().max().unwrap_or(0));
    e.tree_output.push(if mixed { MIXED_OUTPUTS } else { output.unwrap_or(MIXED_OUTPUTS) });
    Ok(())
}

/// `i` as a `u32` index, or an error naming the model when it has more than 2^32 of something.
fn index_u32(i: usize, model: &str) -> Result<u32, TreeError> {
    u32::try_from(i).map_err(|_| TreeError::Unsupported {
        model: model.to_string(),
        what: "model size".into(),
        value: format!("{i} nodes, leaves or category words (at most 2^32)"),
    })
}

/// The largest `f32` `t` with `t <= v`: then `x <= v` exactly when `x <= t`, for every `f32` `x`.
pub(crate) fn round_down(v: f64) -> f32 {
    let t = v as f32;
    if f64::from(t) > v {
        t.next_down()
    } else {
        t
    }
}

/// A threshold `t` with `x < v` exactly when `x <= t`, for every `f32` `x` (NaN, which no
/// `x <= ` test passes, when `v` is minus infinity).
pub(crate) fn strictly_below(v: f64) -> f32 {
    let t = round_down(v);
    if f64::from(t) == v {
        if t == f32::NEG_INFINITY {
            f32::NAN
        } else {
            t.next_down()
        }
    } else {
        t
    }
}

/// `v` as an `f32` when it is one exactly; NaN (which nothing equals) otherwise.
pub(crate) fn exact_f32(v: f64) -> f32 {
    let t = v as f32;
    if f64::from(t) == v {
        t
    } else {
        f32::NAN
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn thresholds_are_exact_for_f32_inputs() {
        let v = 0.1f64; // not an f32
        let down = round_down(v);
        assert!(f64::from(down) <= v && f64::from(down.next_up()) > v);
        let below = strictly_below(0.5);
        assert!(below < 0.5 && below.next_up() == 0.5);
        assert!(strictly_below(f64::NEG_INFINITY).is_nan());
        assert_eq!(round_down(1e300), f32::MAX);
        assert!(exact_f32(0.1).is_nan());
        assert_eq!(exact_f32(0.5), 0.5);
    }
}
