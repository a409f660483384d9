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

use super::MapFn;
use crate::value::{DType, FieldType, Value};

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

    /// The row function. Assumes inputs of the types accepted by [`Builtin::output_types`].
    pub fn into_fn(self) -> MapFn {
        match self {
            Builtin::Standardize { mean, std } => Arc::new(move |v| {
                let out: Vec<f32> =
                    numbers(v[0])?.iter().zip(mean.iter().zip(&std)).map(|(x, (m, s))| (x - m) / s).collect();
                Ok(vec![match v[0] {
                    Value::F32(_) => Value::F32(out[0]),
                    _ => Value::Tensor(out.into()),
                }])
            }),
            Builtin::Argmax { labels } => Arc::new(move |v| {
                let xs = numbers(v[0])?;
                let (index, score) = argmax(xs).ok_or("argmax of an empty vector")?;
                let label = match &labels {
                    Some(names) => Value::Str(names[index].as_str().into()),
                    None => Value::I64(index as i64),
                };
                Ok(vec![label, Value::F32(score)])
            }),
            Builtin::Threshold { threshold, labels } => Arc::new(move |v| {
                let x = numbers(v[0])?[0];
                if x.is_nan() {
                    return Err("threshold of NaN".into());
                }
                let above = x >= threshold;
                Ok(vec![match &labels {
                    Some([below, over]) => Value::Str(if above { over } else { below }.as_str().into()),
                    None => Value::Bool(above),
                }])
            }),
            Builtin::Select => Arc::new(|v| Ok(v.iter().map(|x| (*x).clone()).collect())),
            Builtin::Concat => Arc::new(|v| {
                let mut out = Vec::new();
                for x in v {
                    out.extend_from_slice(numbers(x)?);
                }
                Ok(vec![Value::Tensor(out.into())])
            }),
        }
    }
}

fn numbers(v: &Value) -> Result<&[f32], String> {
    v.as_f32s().ok_or_else(|| format!("expected f32 values, got {}", v.type_name()))
}

/// The first index of the largest element, and the element; NaNs never win.
pub fn argmax(xs: &[f32]) -> Option<(usize, f32)> {
    let mut best: Option<(usize, f32)> = None;
    for (i, &x) in xs.iter().enumerate() {
        if x.is_nan() {
            continue;
        }
        if best.is_none_or(|(_, b)| x > b) {
            best = Some((i, x));
        }
    }
    best
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(xs: &[f32]) -> Value {
        Value::Tensor(xs.to_vec().into())
    }

    #[test]
    fn standardize() {
        let b = Builtin::Standardize { mean: vec![1.0, 2.0], std: vec![2.0, 4.0] };
        assert_eq!(b.output_types(&[FieldType::vector(2)]).unwrap(), vec![FieldType::vector(2)]);
        assert!(b.output_types(&[FieldType::vector(3)]).unwrap_err().contains("3 elements"));
        assert_eq!(b.into_fn()(&[&t(&[3.0, 6.0])]).unwrap(), vec![t(&[1.0, 1.0])]);
        let zero = Builtin::Standardize { mean: vec![0.0], std: vec![0.0] };
        assert!(zero.output_types(&[FieldType::scalar(DType::F32)]).unwrap_err().contains("std[0]"));
    }

    #[test]
    fn argmax_with_and_without_labels() {
        let plain = Builtin::Argmax { labels: None }.into_fn();
        assert_eq!(plain(&[&t(&[0.1, 0.7, 0.2])]).unwrap(), vec![Value::I64(1), Value::F32(0.7)]);
        let named = Builtin::Argmax { labels: Some(vec!["a".into(), "b".into()]) };
        assert_eq!(named.output_types(&[FieldType::vector(2)]).unwrap()[0], FieldType::scalar(DType::Str));
        assert_eq!(named.into_fn()(&[&t(&[0.9, 0.1])]).unwrap()[0], Value::Str("a".into()));
        assert_eq!(argmax(&[f32::NAN, 1.0, 1.0]), Some((1, 1.0)));
    }

    #[test]
    fn threshold_and_concat() {
        let th = Builtin::Threshold { threshold: 0.5, labels: None }.into_fn();
        assert_eq!(th(&[&Value::F32(0.5)]).unwrap(), vec![Value::Bool(true)]);
        assert!(th(&[&Value::F32(f32::NAN)]).is_err());
        let cat = Builtin::Concat;
        let ty = cat.output_types(&[FieldType::scalar(DType::F32), FieldType::vector(2)]).unwrap();
        assert_eq!(ty, vec![FieldType::vector(3)]);
        assert_eq!(cat.into_fn()(&[&Value::F32(1.0), &t(&[2.0, 3.0])]).unwrap(), vec![t(&[1.0, 2.0, 3.0])]);
    }
}
