//! The built-in functions of `map` nodes: cheap business logic that runs inline on the
//! timely worker (each costs a few nanoseconds per number).
//!
//! | builtin       | inputs                 | outputs                                    |
//! |---------------|------------------------|--------------------------------------------|
//! | `standardize` | one `f32` or `f32[n]`  | `(x - mean) / std`, same type              |
//! | `argmax`      | one `f32[n]`           | `label` (`i64` index, or `str` if labels), `score` (`f32`) |
//! | `threshold`   | one `f32`              | `label`: `bool` (x ≥ t), or `str` with labels `[below, above]` |
//! | `select`      | any fields             | the same values under new names            |
//! | `concat`      | `f32` scalars/vectors  | one `f32[sum of widths]`                   |

use std::sync::Arc;

use crate::column::Column;
use crate::value::{DType, FieldType};

/// A built-in map function with its parameters.
#[derive(Clone, Debug, PartialEq)]
pub enum Builtin {
    /// `(x - mean) / std` element-wise; `mean` and `std` have the input's width.
    Standardize {
        /// Per-element means.
        mean: Vec<f32>,
        /// Per-element standard deviations (all non-zero).
        std: Vec<f32>,
    },
    /// The index (or label) of the largest element, and that element.
    Argmax {
        /// Names for the indices; when given, `label` is a string.
        labels: Option<Vec<String>>,
    },
    /// Whether a scalar reaches a threshold.
    Threshold {
        /// The threshold: `x >= threshold` is "above".
        threshold: f32,
        /// `[below, above]` names; when given, `label` is a string.
        labels: Option<[String; 2]>,
    },
    /// Copies its inputs to outputs with new names.
    Select,
    /// Concatenates numeric inputs into one vector.
    Concat,
}

impl Builtin {
    /// The name used in graph files.
    pub fn name(&self) -> &'static str {
        match self {
            Builtin::Standardize { .. } => "standardize",
            Builtin::Argmax { .. } => "argmax",
            Builtin::Threshold { .. } => "threshold",
            Builtin::Select => "select",
            Builtin::Concat => "concat",
        }
    }

    /// The output field names when the node does not name them itself (`select` takes
    /// its names from the graph).
    pub fn default_outputs(&self) -> &'static [&'static str] {
        match self {
            Builtin::Standardize { .. } | Builtin::Concat => &["y"],
            Builtin::Argmax { .. } => &["label", "score"],
            Builtin::Threshold { .. } => &["label"],
            Builtin::Select => &[],
        }
    }

    /// Checks the input types and gives the output types, or says what was expected.
    pub fn output_types(&self, inputs: &[FieldType]) -> Result<Vec<FieldType>, String> {
        let one = |what: &str| -> Result<&FieldType, String> {
            match inputs {
                [ty] => Ok(ty),
                _ => Err(format!("{} takes exactly one input ({what}), got {}", self.name(), inputs.len())),
            }
        };
        match self {
            Builtin::Standardize { mean, std } => {
                let ty = one("f32 or f32[n]")?;
                let width = ty.width().ok_or_else(|| format!("standardize needs an f32 input, got {ty}"))?;
                if mean.len() != width || std.len() != width {
                    return Err(format!(
                        "standardize: the input {ty} has {width} elements but mean has {} and std has {}",
                        mean.len(),
                        std.len()
                    ));
                }
                if let Some(i) = std.iter().position(|s| *s == 0.0 || !s.is_finite()) {
                    return Err(format!("standardize: std[{i}] is {}, expected a finite non-zero number", std[i]));
                }
                Ok(vec![ty.clone()])
            }
            Builtin::Argmax { labels } => {
                let ty = one("f32[n]")?;
                let n = match (ty.dtype, ty.shape.as_slice()) {
                    (DType::F32, [n]) => *n,
                    _ => return Err(format!("argmax needs an f32[n] vector, got {ty}")),
                };
                if let Some(labels) = labels {
                    if labels.len() != n {
                        return Err(format!("argmax: {} labels for a vector of {n}", labels.len()));
                    }
                }
                let label = if labels.is_some() { DType::Str } else { DType::I64 };
                Ok(vec![FieldType::scalar(label), FieldType::scalar(DType::F32)])
            }
            Builtin::Threshold { labels, .. } => {
                let ty = one("f32")?;
                if *ty != FieldType::scalar(DType::F32) {
                    return Err(format!("threshold needs an f32 scalar, got {ty}"));
                }
                let label = if labels.is_some() { DType::Str } else { DType::Bool };
                Ok(vec![FieldType::scalar(label)])
            }
            Builtin::Select => Ok(inputs.to_vec()),
            Builtin::Concat => {
                let mut width = 0;
                for ty in inputs {
                    width += ty.width().ok_or_else(|| format!("concat takes f32 scalars and vectors, got {ty}"))?;
                }
                if inputs.is_empty() {
                    return Err("concat needs at least one input".into());
                }
                Ok(vec![FieldType::vector(width)])
            }
        }
    }

    /// Computes the outputs of every row at once: one column per output, and the rows
    /// that failed with why (their slots in the output columns hold fillers). Assumes
    /// input columns of the types accepted by [`Builtin::output_types`].
    pub fn apply(&self, inputs: &[&Column]) -> (Vec<Column>, Vec<(usize, String)>) {
        let rows = inputs.first().map_or(0, |c| c.len());
        let mut failures = Vec::new();
        let columns = match self {
            Builtin::Standardize { mean, std } => {
                let (xs, width) = numbers(inputs[0]);
                let width = width.max(1);
                // Written once, not zero-filled first; slices of one length vectorize.
                let mut out = Vec::with_capacity(xs.len());
                let (mean, std) = (&mean[..width.min(mean.len())], &std[..width.min(std.len())]);
                for x in xs.chunks_exact(width) {
                    out.extend(x[..mean.len()].iter().zip(mean).zip(std).map(|((x, m), s)| (x - m) / s));
                }
                vec![match inputs[0] {
                    Column::F32(_) => Column::F32(out),
                    _ => Column::Tensor { width, data: out },
                }]
            }
            Builtin::Argmax { labels } => {
                let (xs, width) = numbers(inputs[0]);
                let mut scores = Vec::with_capacity(rows);
                let mut indices: Vec<i64> = Vec::with_capacity(rows);
                for row in xs.chunks_exact(width.max(1)) {
                    let (index, score) = argmax(row).unwrap_or_else(|| {
                        failures.push((indices.len(), "argmax of a vector of NaNs".to_string()));
                        (0, 0.0)
                    });
                    indices.push(index as i64);
                    scores.push(score);
                }
                let label = match labels {
                    Some(names) => {
                        let names: Vec<Arc<str>> = names.iter().map(|n| Arc::from(n.as_str())).collect();
                        Column::Str(indices.iter().map(|&i| Arc::clone(&names[i as usize])).collect())
                    }
                    None => Column::I64(indices),
                };
                vec![label, Column::F32(scores)]
            }
            Builtin::Threshold { threshold, labels } => {
                let (xs, _) = numbers(inputs[0]);
                let above: Vec<bool> = xs
                    .iter()
                    .enumerate()
                    .map(|(r, &x)| {
                        if x.is_nan() {
                            failures.push((r, "threshold of NaN".to_string()));
                        }
                        x >= *threshold
                    })
                    .collect();
                vec![match labels {
                    Some([below, over]) => {
                        let (below, over): (Arc<str>, Arc<str>) = (below.as_str().into(), over.as_str().into());
                        Column::Str(above.iter().map(|&a| Arc::clone(if a { &over } else { &below })).collect())
                    }
                    None => Column::Bool(above),
                }]
            }
            Builtin::Select => inputs.iter().map(|c| (*c).clone()).collect(),
            Builtin::Concat => {
                let parts: Vec<(&[f32], usize)> = inputs.iter().map(|c| numbers(c)).collect();
                let width = parts.iter().map(|(_, w)| w).sum();
                let mut out = Vec::with_capacity(rows * width);
                for r in 0..rows {
                    for (xs, w) in &parts {
                        out.extend_from_slice(&xs[r * w..(r + 1) * w]);
                    }
                }
                vec![Column::Tensor { width, data: out }]
            }
        };
        (columns, failures)
    }
}

/// The numbers of an `f32` column (the types were checked when the graph was built).
fn numbers(c: &Column) -> (&[f32], usize) {
    c.f32s().unwrap_or((&[], 1))
}

/// The first index of the largest element, and the element; NaNs never win.
///
/// Two branch-free passes: the largest value (`f32::max` skips NaNs), then its first
/// place. A comparison per element that picks the running winner mispredicts wherever
/// the winner changes, at unpredictable places for probabilities: that was 4% of a
/// replay of `digits.yaml`. A slice of NaNs (or an empty one) has no largest element.
pub fn argmax(xs: &[f32]) -> Option<(usize, f32)> {
    let largest = xs.iter().fold(f32::NEG_INFINITY, |m, &x| m.max(x));
    // The element itself: of a 0.0 and a -0.0 (equal), the first is the one returned.
    xs.iter().position(|&x| x == largest).map(|i| (i, xs[i]))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::value::Value;

    fn t(xs: &[f32]) -> Column {
        Column::Tensor { width: xs.len(), data: xs.to_vec() }
    }

    #[test]
    fn standardize() {
        let b = Builtin::Standardize { mean: vec![1.0, 2.0], std: vec![2.0, 4.0] };
        assert_eq!(b.output_types(&[FieldType::vector(2)]).unwrap(), vec![FieldType::vector(2)]);
        assert!(b.output_types(&[FieldType::vector(3)]).unwrap_err().contains("3 elements"));
        let two_rows = Column::Tensor { width: 2, data: vec![3.0, 6.0, 1.0, 2.0] };
        assert_eq!(b.apply(&[&two_rows]).0, vec![Column::Tensor { width: 2, data: vec![1.0, 1.0, 0.0, 0.0] }]);
        let zero = Builtin::Standardize { mean: vec![0.0], std: vec![0.0] };
        assert!(zero.output_types(&[FieldType::scalar(DType::F32)]).unwrap_err().contains("std[0]"));
    }

    #[test]
    fn argmax_with_and_without_labels() {
        let plain = Builtin::Argmax { labels: None };
        assert_eq!(plain.apply(&[&t(&[0.1, 0.7, 0.2])]).0, vec![Column::I64(vec![1]), Column::F32(vec![0.7])]);
        let named = Builtin::Argmax { labels: Some(vec!["a".into(), "b".into()]) };
        assert_eq!(named.output_types(&[FieldType::vector(2)]).unwrap()[0], FieldType::scalar(DType::Str));
        assert_eq!(named.apply(&[&t(&[0.9, 0.1])]).0[0].value(0), Value::Str("a".into()));
        assert_eq!(argmax(&[f32::NAN, 1.0, 1.0]), Some((1, 1.0)));
        assert_eq!(argmax(&[0.2, f32::NAN, 0.7, 0.1, 0.7]), Some((2, 0.7)));
        assert_eq!(argmax(&[f32::NEG_INFINITY, f32::NAN, f32::NEG_INFINITY]), Some((0, f32::NEG_INFINITY)));
        assert_eq!(argmax(&[f32::NAN, f32::NAN]), None);
        assert_eq!(argmax(&[]), None);
        let (i, zero) = argmax(&[-0.0, 0.0]).unwrap();
        assert_eq!((i, zero.to_bits()), (0, (-0.0f32).to_bits()), "the first of equals, as it is");
        let (_, failed) = plain.apply(&[&t(&[f32::NAN, f32::NAN])]);
        assert_eq!(failed.len(), 1, "a row of NaNs fails alone");
    }

    /// The scan `argmax` replaced: the running winner, replaced by a strictly larger
    /// element.
    fn argmax_by_scan(xs: &[f32]) -> Option<(usize, f32)> {
        let mut best: Option<(usize, f32)> = None;
        for (i, &x) in xs.iter().enumerate() {
            if !x.is_nan() && best.is_none_or(|(_, b)| x > b) {
                best = Some((i, x));
            }
        }
        best
    }

    #[test]
    fn argmax_agrees_with_a_scan_bit_for_bit() {
        // Rows drawn from a few values with repeats, signed zeros, infinities and NaNs.
        let values = [0.0, -0.0, 0.5, 0.25, -1.0, f32::INFINITY, f32::NEG_INFINITY, f32::NAN, 0.5];
        let mut state = 0x2545_f491_4f6c_dd1du64;
        for len in 0..12 {
            for _ in 0..500 {
                let row: Vec<f32> = (0..len)
                    .map(|_| {
                        state ^= state << 13;
                        state ^= state >> 7;
                        state ^= state << 17;
                        values[(state % values.len() as u64) as usize]
                    })
                    .collect();
                let bits = |r: Option<(usize, f32)>| r.map(|(i, x)| (i, x.to_bits()));
                assert_eq!(bits(argmax(&row)), bits(argmax_by_scan(&row)), "{row:?}");
            }
        }
    }

    #[test]
    fn threshold_and_concat() {
        let th = Builtin::Threshold { threshold: 0.5, labels: None };
        let (out, failed) = th.apply(&[&Column::F32(vec![0.5, f32::NAN, 0.1])]);
        assert_eq!(out[0].value(0), Value::Bool(true));
        assert_eq!(out[0].value(2), Value::Bool(false));
        assert_eq!(failed.iter().map(|f| f.0).collect::<Vec<_>>(), vec![1]);
        let cat = Builtin::Concat;
        let ty = cat.output_types(&[FieldType::scalar(DType::F32), FieldType::vector(2)]).unwrap();
        assert_eq!(ty, vec![FieldType::vector(3)]);
        assert_eq!(cat.apply(&[&Column::F32(vec![1.0]), &t(&[2.0, 3.0])]).0, vec![t(&[1.0, 2.0, 3.0])]);
    }
}
