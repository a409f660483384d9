//! Prediction: blocks of rows, every tree over the block, no allocation per row.
//!
//! Rows are taken `BLOCK` at a time (fewer when a row has many outputs, so the block's
//! accumulators fit in a fixed stack buffer); for each tree in turn, all rows of the block
//! step down the tree together, one level at a time for the tree's depth (a row at a leaf
//! stays there), and fold their leaf's weights into their accumulators, in `f64`. The
//! block's rows stay in L1 while the trees stream past, and the rows' steps are independent,
//! so the CPU overlaps their memory loads. A prediction allocates
//! nothing besides growing `out` (and one accumulator vector for models with more than
//! `STACK` outputs).

use crate::ensemble::{Aggregate, Ensemble, Kind, Node, MIXED_OUTPUTS};
use crate::{transform, TreeError};

/// Rows per block.
const BLOCK: usize = 64;
/// Accumulators held on the stack.
const STACK: usize = 1024;
/// LightGBM's `kZeroThreshold`: a value this close to zero is zero.
const ZERO_THRESHOLD: f32 = 1e-35;
/// XGBoost's first invalid category (`OutOfRangeCat`): categories are below 2^24.
const XGBOOST_CATEGORY_LIMIT: f32 = 16_777_216.0;

impl Ensemble {
    /// Raw scores (margins, base scores included, before any transform) of `rows` rows of `x`
    /// (row-major, [`Ensemble::n_features`] each, NaN = missing), written to `out`
    /// (cleared first; `rows * n_outputs` values, row-major).
    ///
    /// Errors with [`TreeError::Shape`] when `x` does not hold exactly `rows` rows.
    pub fn predict_raw(&self, x: &[f32], rows: usize, out: &mut Vec<f32>) -> Result<(), TreeError> {
        self.run(x, rows, out, false)
    }

    /// As [`Ensemble::predict_raw`], then the model's [`crate::Transform`]: for models
    /// loaded from XGBoost or LightGBM, what the library's own `predict` returns
    /// (P(class 1) for binary models, K probabilities for K classes, the value for
    /// regression).
    pub fn predict(&self, x: &[f32], rows: usize, out: &mut Vec<f32>) -> Result<(), TreeError> {
        self.run(x, rows, out, true)
    }

    fn run(&self, x: &[f32], rows: usize, out: &mut Vec<f32>, transform: bool) -> Result<(), TreeError> {
        let f = self.n_features;
        let expected = rows.checked_mul(f).filter(|&e| e == x.len());
        if expected.is_none() {
            return Err(TreeError::Shape { rows, n_features: f, expected: rows.saturating_mul(f), got: x.len() });
        }
        let k = self.n_outputs;
        out.clear();
        out.reserve(rows * k);
        let mut stack = [0f64; STACK];
        let mut heap = Vec::new();
        let acc: &mut [f64] = if k <= STACK {
            &mut stack
        } else {
            heap.resize(k, 0.0);
            &mut heap
        };
        let block = (acc.len() / k.max(1)).clamp(1, BLOCK);
        let mut start = 0;
        while start < rows {
            let n = block.min(rows - start);
            let xs = &x[start * f..(start + n) * f];
            let acc = &mut acc[..n * k];
            match self.aggregate {
                Aggregate::Sum | Aggregate::Average => self.fold(xs, acc, 0.0, |a, w| a + w),
                Aggregate::Min => self.fold(xs, acc, f64::INFINITY, f64::min),
                Aggregate::Max => self.fold(xs, acc, f64::NEG_INFINITY, f64::max),
            }
            for row in acc.chunks_exact_mut(k.max(1)) {
                self.finish(row);
                if transform {
                    transform::apply(self.transform, self.logistic_scale, row);
                }
                out.extend(row.iter().map(|&v| v as f32));
            }
            start += n;
        }
        Ok(())
    }

    /// Folds every tree's leaf weights into `acc` (`rows * n_outputs`, starting at `init`).
    ///
    /// Tree by tree, every row of the block takes the tree's depth in steps (a row at a
    /// leaf stays there), the rows of a step independent of each other so their loads
    /// overlap; then each row's leaf is folded in.
    #[inline(always)]
    fn fold(&self, xs: &[f32], acc: &mut [f64], init: f64, op: impl Fn(f64, f64) -> f64) {
        acc.fill(init);
        let (f, k) = (self.n_features, self.n_outputs);
        let rows = acc.len() / k.max(1);
        let mut at = [0u32; BLOCK];
        let at = &mut at[..rows];
        for (t, &root) in self.roots.iter().enumerate() {
            at.fill(root);
            for _ in 0..self.depths[t] {
                if self.numeric_only {
                    for (r, i) in at.iter_mut().enumerate() {
                        *i = self.step::<true>(*i, xs, r * f);
                    }
                } else {
                    for (r, i) in at.iter_mut().enumerate() {
                        *i = self.step::<false>(*i, xs, r * f);
                    }
                }
            }
            let output = self.tree_output[t];
            if output != MIXED_OUTPUTS {
                for (r, &i) in at.iter().enumerate() {
                    let a = &mut acc[r * k + output as usize];
                    *a = op(*a, self.leaf_value[i as usize]);
                }
            } else {
                for (r, &i) in at.iter().enumerate() {
                    let (s, e) = (self.leaf_start[i as usize] as usize, self.leaf_start[i as usize + 1] as usize);
                    for c in s..e {
                        let a = &mut acc[r * k + self.leaf_output[c] as usize];
                        *a = op(*a, self.leaf_weight[c]);
                    }
                }
            }
        }
    }

    /// Completes one row's aggregation and adds the base scores.
    fn finish(&self, row: &mut [f64]) {
        for (v, base) in row.iter_mut().zip(&self.base) {
            let aggregated = match self.aggregate {
                Aggregate::Sum => *v,
                Aggregate::Average => *v / self.average_divisor,
                // No tree fed this output.
                Aggregate::Min | Aggregate::Max if v.is_infinite() => 0.0,
                Aggregate::Min | Aggregate::Max => *v,
            };
            *v = aggregated + base;
        }
    }

    /// The node after node `i` for the row starting at `xs[row]`; `NUMERIC_ONLY` when
    /// every node of the ensemble is a `x <= t` test.
    #[inline(always)]
    fn step<const NUMERIC_ONLY: bool>(&self, i: u32, xs: &[f32], row: usize) -> u32 {
        let node = self.nodes[i as usize];
        let x = xs[row + node.feature as usize];
        let left = if NUMERIC_ONLY || node.kind == Kind::LessEq {
            // `|` and `&`, not `||` and `&&`: no branch on the data.
            (x <= f32::from_bits(node.param)) | (x.is_nan() & node.nan_left)
        } else {
            self.goes_left(node, x)
        };
        node.left + u32::from(!left)
    }

    /// The tests other than `x <= t`.
    #[cold]
    fn goes_left(&self, node: Node, x: f32) -> bool {
        if x.is_nan() {
            return node.nan_left;
        }
        let t = f32::from_bits(node.param);
        match node.kind {
            Kind::Equal => x == t,
            Kind::ZeroMissing if (-ZERO_THRESHOLD..=ZERO_THRESHOLD).contains(&x) => node.nan_left,
            Kind::ZeroMissing | Kind::LessEq => x <= t,
            // LightGBM: the integer part, negative ones in no set; in the set goes left.
            Kind::CategoryLeft => x > -1.0 && self.in_set(node.param, x as u32),
            // XGBoost: negative and too large values in no set; in the set goes right.
            Kind::CategoryRight => !((0.0..XGBOOST_CATEGORY_LIMIT).contains(&x) && self.in_set(node.param, x as u32)),
        }
    }

    /// Whether category `c` is in categorical set `set`.
    fn in_set(&self, set: u32, c: u32) -> bool {
        let (start, end) = self.category_sets[set as usize];
        let word = start as usize + (c / 32) as usize;
        word < end as usize && self.category_words[word] & (1 << (c % 32)) != 0
    }
}
