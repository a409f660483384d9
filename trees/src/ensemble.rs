//! [`Ensemble`]: a tree ensemble flattened into one node array, whatever format it came from.
//!
//! Every split is normalised to "go left when the test holds": `x <= threshold` for numeric
//! splits (XGBoost's `x < t`, ONNX's `BRANCH_LT/GTE/GT` are rewritten into it, swapping
//! children where needed, exactly for every `f32` input), equality, LightGBM's
//! zero-as-missing test, or membership in a category bitset. A missing value (NaN) takes the
//! node's own default side. The two children of a node sit next to each other
//! (`right == left + 1`), so a step down the tree is one add. A leaf is a node that leads
//! to itself (`x <= +inf`, NaN left, left child itself), so every row can take the same
//! number of steps, the tree's depth, with no test for leaves. A leaf adds one or more
//! `(output, weight)` contributions; when every leaf of a tree adds one weight to the same
//! output (XGBoost, LightGBM, most ONNX trees), the tree is marked with that output and the
//! weight is read from `leaf_value`, otherwise from the contribution lists (ONNX leaves
//! that feed several classes).

/// What a model predicts, which fixes [`Ensemble::n_outputs`] and what [`Ensemble::predict`]
/// returns.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Objective {
    /// One real value per row.
    Regression,
    /// Two classes: one score per row, `predict` gives P(class 1).
    Binary,
    /// `classes` classes: `classes` scores per row, `predict` gives their probabilities.
    Multiclass {
        /// The number of classes (`n_outputs`).
        classes: usize,
    },
}

/// The function `predict` applies to the raw scores of a row (ONNX's `post_transform`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Transform {
    /// The raw scores themselves (the default).
    #[default]
    None,
    /// `1 / (1 + exp(-x))` on each score (LightGBM's `sigmoid:s` scales `x` by `s` first).
    Logistic,
    /// `exp(x_k) / sum_j exp(x_j)` over the row's scores.
    Softmax,
    /// As softmax, but scores that are (almost) zero stay zero (onnxruntime's `SOFTMAX_ZERO`).
    SoftmaxZero,
    /// `sqrt(2) * erfinv(2x - 1)` on each score, with onnxruntime's approximation of erfinv.
    Probit,
}

/// How the leaves reached in each tree combine into a row's score for one output.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Aggregate {
    /// The sum of the leaf weights (gradient boosting; the default).
    #[default]
    Sum,
    /// The sum divided by the model's tree count (random forests).
    Average,
    /// The smallest leaf weight reached (0 where no tree feeds the output).
    Min,
    /// The largest leaf weight reached (0 where no tree feeds the output).
    Max,
}

/// The test a split node makes; see the module docs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Kind {
    /// Left when `x <= threshold` (leaves too: see the module docs).
    LessEq,
    /// Left when `x == threshold` (a threshold no `f32` equals is stored as NaN).
    Equal,
    /// LightGBM zero-as-missing: `|x| <= 1e-35` takes the default side, else `x <= threshold`.
    ZeroMissing,
    /// Left when the category of `x` is in the bitset `param` (LightGBM: in the set goes left).
    CategoryLeft,
    /// Left when the category of `x` is not in the bitset `param` (XGBoost: the set goes right).
    CategoryRight,
}

/// `tree_output` of a tree whose leaves feed several outputs or several weights.
pub(crate) const MIXED_OUTPUTS: u32 = u32::MAX;

/// One node of the flat array: 16 bytes.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Node {
    /// The feature tested (unused by leaves).
    pub(crate) feature: u32,
    /// The threshold's `f32` bits, or for categorical nodes the index of its bitset.
    pub(crate) param: u32,
    /// The left child (the right one is `left + 1`); a leaf's own index.
    pub(crate) left: u32,
    /// The test.
    pub(crate) kind: Kind,
    /// Where NaN goes.
    pub(crate) nan_left: bool,
}

/// A loaded tree ensemble, ready to predict batches of rows; see the module docs.
///
/// Built by [`crate::load_xgboost`], [`crate::load_lightgbm`] or
/// [`Ensemble::from_node_arrays`]; immutable and `Sync`, so replica threads can share one.
#[derive(Debug, Clone)]
pub struct Ensemble {
    pub(crate) nodes: Vec<Node>,
    /// The root of each tree, in the model's order.
    pub(crate) roots: Vec<u32>,
    /// The depth of each tree (steps from the root to its deepest leaf).
    pub(crate) depths: Vec<u32>,
    /// The one output each tree's leaves feed, or `MIXED_OUTPUTS`.
    pub(crate) tree_output: Vec<u32>,
    /// Per node, a leaf's single weight (0 for branches and leaves with several).
    pub(crate) leaf_value: Vec<f64>,
    /// Per node, its first contribution; one more entry than nodes (branches have none).
    pub(crate) leaf_start: Vec<u32>,
    /// Contribution outputs.
    pub(crate) leaf_output: Vec<u32>,
    /// Contribution weights.
    pub(crate) leaf_weight: Vec<f64>,
    /// Per categorical node, its range of words in `category_words`.
    pub(crate) category_sets: Vec<(u32, u32)>,
    /// Category bitsets: bit `c % 32` of word `c / 32` is category `c`.
    pub(crate) category_words: Vec<u32>,
    pub(crate) n_features: usize,
    pub(crate) n_outputs: usize,
    pub(crate) objective: Objective,
    pub(crate) transform: Transform,
    pub(crate) aggregate: Aggregate,
    /// Added to each output after aggregation (XGBoost's base margin, ONNX `base_values`).
    pub(crate) base: Vec<f64>,
    /// What `Aggregate::Average` divides by.
    pub(crate) average_divisor: f64,
    /// Whether every node is an `x <= t` test (no categorical, equality or zero-as-missing
    /// node), so prediction can skip the test for the node's kind.
    pub(crate) numeric_only: bool,
    /// What the logistic multiplies a score by first (LightGBM's `sigmoid:`; 1 otherwise).
    pub(crate) logistic_scale: f64,
}

impl Ensemble {
    /// The number of features each row must have (the largest feature index used plus one,
    /// or more where the model declares more).
    pub fn n_features(&self) -> usize {
        self.n_features
    }

    /// The number of scores per row: 1 for binary and regression models, K for K classes
    /// (or ONNX's `n_targets`).
    pub fn n_outputs(&self) -> usize {
        self.n_outputs
    }

    /// What the model predicts.
    pub fn objective(&self) -> Objective {
        self.objective
    }

    /// The transform [`Ensemble::predict`] applies to the raw scores.
    pub fn transform(&self) -> Transform {
        self.transform
    }

    /// How leaf weights combine across trees.
    pub fn aggregate(&self) -> Aggregate {
        self.aggregate
    }

    /// The number of trees.
    pub fn n_trees(&self) -> usize {
        self.roots.len()
    }

    /// The number of nodes, leaves included, over all trees.
    pub fn n_nodes(&self) -> usize {
        self.nodes.len()
    }

    /// The depth of the deepest tree (0 for an ensemble of single leaves).
    pub fn max_depth(&self) -> usize {
        self.depths.iter().copied().max().unwrap_or(0) as usize
    }
}
