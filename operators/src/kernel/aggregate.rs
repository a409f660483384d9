//! Ensemble functions of `combine` nodes: several branch values for one row in, one out.

use std::fmt;
use std::sync::Arc;

use crate::column::Column;
use crate::value::{DType, FieldType, Value};

/// A user aggregation: the parts, in the node's input order, to one value.
pub type AggregateFn = Arc<dyn Fn(&[&Value]) -> Result<Value, String> + Send + Sync>;

/// How a `combine` node merges its parts.
#[derive(Clone)]
pub enum Aggregate {
    /// Element-wise mean of `f32` scalars or same-shape tensors.
    Mean,
    /// Element-wise weighted mean; one weight per part, weights need not sum to 1
    /// (they are normalised).
    WeightedMean(Vec<f32>),
    /// Element-wise sum.
    Sum,
    /// The dot product of two same-width `f32` vectors: their cosine similarity when
    /// both have unit length (normalised sentence embeddings).
    Dot,
    /// The most frequent value among scalar parts (`i64`, `str`, `bool`); a tie goes to
    /// the tied value that appears first in input order.
    Vote,
    /// A Rust closure (builder API only), with the type of what it returns.
    Custom(AggregateFn, FieldType),
}

impl fmt::Debug for Aggregate {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Aggregate::Mean => f.write_str("mean"),
            Aggregate::WeightedMean(w) => write!(f, "weighted_mean{w:?}"),
            Aggregate::Sum => f.write_str("sum"),
            Aggregate::Dot => f.write_str("dot"),
            Aggregate::Vote => f.write_str("vote"),
            Aggregate::Custom(_, ty) => write!(f, "custom -> {ty}"),
        }
    }
}

impl Aggregate {
    /// Checks the parts' types and gives the output type, or says what was expected.
    pub fn output_type(&self, parts: &[FieldType]) -> Result<FieldType, String> {
        let first = parts.first().ok_or("combine needs at least one input")?;
        match self {
            Aggregate::Custom(_, ty) => Ok(ty.clone()),
            Aggregate::Dot => {
                if parts.len() != 2 || first.dtype != DType::F32 || first.is_scalar() {
                    return Err(format!("dot needs two f32[n] vectors, got {}", type_list(parts)));
                }
                same_types(parts)?;
                Ok(FieldType::scalar(DType::F32))
            }
            Aggregate::Vote => {
                if !first.is_scalar() || first.dtype == DType::F32 {
                    return Err(format!("vote needs i64, str or bool scalars, got {first}"));
                }
                same_types(parts)?;
                Ok(first.clone())
            }
            Aggregate::Mean | Aggregate::Sum | Aggregate::WeightedMean(_) => {
                if first.dtype != DType::F32 {
                    return Err(format!("{self:?} needs f32 scalars or tensors, got {first}"));
                }
                same_types(parts)?;
                if let Aggregate::WeightedMean(w) = self {
                    if w.len() != parts.len() {
                        return Err(format!("weighted_mean has {} weights for {} inputs", w.len(), parts.len()));
                    }
                    if w.iter().any(|x| !x.is_finite() || *x < 0.0) || w.iter().sum::<f32>() <= 0.0 {
                        return Err("weighted_mean weights must be non-negative and not all zero".into());
                    }
                }
                Ok(first.clone())
            }
        }
    }

    /// Aggregates whole columns at once where the aggregation is numeric (mean,
    /// weighted mean, sum over `f32` columns): one column out, one row per input row.
    /// `None` for the others, which run per row through [`Aggregate::apply`].
    pub fn apply_columns(&self, parts: &[&Column]) -> Option<Column> {
        let weights: Option<&[f32]> = match self {
            Aggregate::Dot => {
                let [(a, width), (b, other)] = [parts.first()?.f32s()?, parts.get(1)?.f32s()?];
                if width != other || a.len() != b.len() {
                    return None;
                }
                let dots = a.chunks_exact(width.max(1)).zip(b.chunks_exact(width.max(1))).map(|(x, y)| dot(x, y));
                return Some(Column::F32(dots.collect()));
            }
            Aggregate::Mean | Aggregate::Sum => None,
            Aggregate::WeightedMean(w) => Some(w),
            Aggregate::Vote | Aggregate::Custom(..) => return None,
        };
        let first = parts.first()?;
        let columns: Vec<&[f32]> = parts.iter().map(|p| p.f32s().map(|(xs, _)| xs)).collect::<Option<_>>()?;
        if columns.iter().any(|xs| xs.len() != columns[0].len()) {
            return None;
        }
        let weight = |i: usize| weights.map_or(1.0, |w| w[i]);
        let total = (0..parts.len()).fold(0.0f32, |t, i| t + weight(i));
        let divide = !matches!(self, Aggregate::Sum);
        // Per element: from 0.0, each part (times its weight) added in input order, then
        // divided by the total weight; one pass per part, the division in the last.
        let mut acc = Vec::with_capacity(columns[0].len());
        for (i, xs) in columns.iter().enumerate() {
            let (w, last) = (weight(i), divide && i + 1 == columns.len());
            match (w == 1.0, last) {
                (true, false) => accumulate(&mut acc, xs, i == 0, |a, x| a + x),
                (true, true) => accumulate(&mut acc, xs, i == 0, |a, x| (a + x) / total),
                (false, false) => accumulate(&mut acc, xs, i == 0, |a, x| a + w * x),
                (false, true) => accumulate(&mut acc, xs, i == 0, |a, x| (a + w * x) / total),
            }
        }
        Some(match first {
            Column::Tensor { width, .. } => Column::Tensor { width: *width, data: acc },
            _ => Column::F32(acc),
        })
    }

    /// Aggregates the parts of one row.
    pub fn apply(&self, parts: &[&Value]) -> Result<Value, String> {
        match self {
            Aggregate::Custom(f, _) => f(parts),
            Aggregate::Vote => {
                let mut best: Option<(&Value, usize)> = None;
                for (i, candidate) in parts.iter().enumerate() {
                    if parts[..i].contains(candidate) {
                        continue;
                    }
                    let count = parts.iter().filter(|p| *p == candidate).count();
                    if best.is_none_or(|(_, c)| count > c) {
                        best = Some((candidate, count));
                    }
                }
                best.map(|(v, _)| v.clone()).ok_or_else(|| "vote over no inputs".into())
            }
            Aggregate::Dot => match parts {
                [a, b] => {
                    let (a, b) = (numbers(a)?, numbers(b)?);
                    if a.len() != b.len() {
                        return Err(format!("dot of vectors of {} and {} numbers", a.len(), b.len()));
                    }
                    Ok(Value::F32(dot(a, b)))
                }
                _ => Err(format!("dot takes two vectors, got {}", parts.len())),
            },
            Aggregate::Mean => weighted(parts, None),
            Aggregate::WeightedMean(w) => weighted(parts, Some(w)),
            Aggregate::Sum => {
                let mut acc = numbers(parts[0])?.to_vec();
                for p in &parts[1..] {
                    for (a, x) in acc.iter_mut().zip(numbers(p)?) {
                        *a += x;
                    }
                }
                Ok(like(parts[0], acc))
            }
        }
    }
}

fn dot(a: &[f32], b: &[f32]) -> f32 {
    a.iter().zip(b).map(|(x, y)| x * y).sum()
}

fn type_list(parts: &[FieldType]) -> String {
    parts.iter().map(ToString::to_string).collect::<Vec<_>>().join(", ")
}

fn same_types(parts: &[FieldType]) -> Result<(), String> {
    let first = &parts[0];
    match parts.iter().position(|p| p != first) {
        Some(i) => Err(format!("input {i} is {}, but input 0 is {first}: all inputs must have one type", parts[i])),
        None => Ok(()),
    }
}

fn numbers(v: &Value) -> Result<&[f32], String> {
    v.as_f32s().ok_or_else(|| format!("expected f32 values, got {}", v.type_name()))
}

fn like(template: &Value, data: Vec<f32>) -> Value {
    match template {
        Value::F32(_) => Value::F32(data[0]),
        _ => Value::Tensor(data.into()),
    }
}

fn weighted(parts: &[&Value], weights: Option<&[f32]>) -> Result<Value, String> {
    let width = numbers(parts[0])?.len();
    let mut acc = vec![0.0f32; width];
    let mut total = 0.0f32;
    for (i, p) in parts.iter().enumerate() {
        let w = weights.map_or(1.0, |w| w[i]);
        total += w;
        for (a, x) in acc.iter_mut().zip(numbers(p)?) {
            *a += w * x;
        }
    }
    acc.iter_mut().for_each(|a| *a /= total);
    Ok(like(parts[0], acc))
}

/// One part's pass over the running sums: `acc[j] = f(acc[j], xs[j])`, or for the
/// first part `f(0.0, xs[j])` into the empty `acc`.
fn accumulate(acc: &mut Vec<f32>, xs: &[f32], first: bool, f: impl Fn(f32, f32) -> f32) {
    if first {
        acc.extend(xs.iter().map(|&x| f(0.0, x)));
    } else {
        acc.iter_mut().zip(xs).for_each(|(a, &x)| *a = f(*a, x));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numeric_aggregates() {
        let a = Value::Tensor(vec![1.0, 3.0].into());
        let b = Value::Tensor(vec![3.0, 5.0].into());
        assert_eq!(Aggregate::Mean.apply(&[&a, &b]).unwrap(), Value::Tensor(vec![2.0, 4.0].into()));
        assert_eq!(Aggregate::Sum.apply(&[&Value::F32(1.0), &Value::F32(2.0)]).unwrap(), Value::F32(3.0));
        let w = Aggregate::WeightedMean(vec![3.0, 1.0]);
        assert_eq!(w.apply(&[&a, &b]).unwrap(), Value::Tensor(vec![1.5, 3.5].into()));
        assert!(w.output_type(&[FieldType::vector(2)]).unwrap_err().contains("2 weights for 1"));
        assert!(Aggregate::Mean.output_type(&[FieldType::vector(2), FieldType::vector(3)]).is_err());
    }

    #[test]
    fn columns_agree_with_rows() {
        let a = Column::Tensor { width: 2, data: vec![1.0, 3.0, 0.0, 1.0] };
        let b = Column::Tensor { width: 2, data: vec![3.0, 5.0, 2.0, 2.0] };
        for agg in [Aggregate::Mean, Aggregate::Sum, Aggregate::WeightedMean(vec![3.0, 1.0])] {
            let columns = agg.apply_columns(&[&a, &b]).unwrap();
            for row in 0..2 {
                assert_eq!(columns.value(row), agg.apply(&[&a.value(row), &b.value(row)]).unwrap(), "{agg:?}");
            }
        }
        assert!(Aggregate::Vote.apply_columns(&[&Column::I64(vec![1])]).is_none());
        let dots = Aggregate::Dot.apply_columns(&[&a, &b]).unwrap();
        assert_eq!(dots, Column::F32(vec![18.0, 2.0]));
        assert_eq!(Aggregate::Dot.apply(&[&a.value(0), &b.value(0)]).unwrap(), Value::F32(18.0));
        assert!(Aggregate::Dot.output_type(&[FieldType::vector(2)]).unwrap_err().contains("two f32[n] vectors"));
    }

    /// The three passes `apply_columns` replaced: zeroes, each part added, then the
    /// division.
    fn by_passes(parts: &[&[f32]], weights: Option<&[f32]>, divide: bool) -> Vec<f32> {
        let mut acc = vec![0.0f32; parts[0].len()];
        let mut total = 0.0f32;
        for (i, xs) in parts.iter().enumerate() {
            let w = weights.map_or(1.0, |w| w[i]);
            total += w;
            acc.iter_mut().zip(xs.iter()).for_each(|(a, x)| *a += if w == 1.0 { *x } else { w * x });
        }
        if divide {
            acc.iter_mut().for_each(|a| *a /= total);
        }
        acc
    }

    #[test]
    fn columns_agree_with_the_passes_they_replaced_bit_for_bit() {
        let values = [0.0, -0.0, 0.1, 0.7, -2.5, 1e-39, f32::INFINITY, f32::NAN, 3.0e38];
        let mut state = 0x9e37_79b9_7f4a_7c15u64;
        let mut next = || {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            values[(state % values.len() as u64) as usize]
        };
        for n in 1..=3 {
            let parts: Vec<Vec<f32>> = (0..n).map(|_| (0..400).map(|_| next()).collect()).collect();
            let slices: Vec<&[f32]> = parts.iter().map(|p| p.as_slice()).collect();
            let columns: Vec<Column> = parts.iter().map(|p| Column::Tensor { width: 4, data: p.clone() }).collect();
            let refs: Vec<&Column> = columns.iter().collect();
            let weights: Vec<f32> = (0..n).map(|i| [0.3, 1.0, 2.0][i]).collect();
            for (agg, w, divide) in [
                (Aggregate::Mean, None, true),
                (Aggregate::Sum, None, false),
                (Aggregate::WeightedMean(weights.clone()), Some(&weights[..]), true),
            ] {
                let Some(Column::Tensor { data, .. }) = agg.apply_columns(&refs) else { panic!("{agg:?}") };
                let bits = |v: &[f32]| v.iter().map(|x| x.to_bits()).collect::<Vec<_>>();
                assert_eq!(bits(&data), bits(&by_passes(&slices, w, divide)), "{agg:?} over {n} parts");
            }
        }
    }

    #[test]
    fn vote_majority_and_ties() {
        let (x, y) = (Value::I64(1), Value::I64(2));
        assert_eq!(Aggregate::Vote.apply(&[&x, &y, &y]).unwrap(), y);
        assert_eq!(Aggregate::Vote.apply(&[&x, &y]).unwrap(), x, "a tie goes to the first");
        assert!(Aggregate::Vote.output_type(&[FieldType::scalar(DType::F32)]).is_err());
    }
}
