//! The `post_transform` of ONNX-ML classifiers and regressors, applied to each row of scores
//! as onnxruntime applies it.

use crate::error::OnnxError;
use crate::node::NodeCtx;

/// A post transform.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum PostTransform {
    /// Scores as they are.
    None,
    /// `exp(s - max) / sum` over the row.
    Softmax,
    /// `1 / (1 + exp(-s))` on each score.
    Logistic,
    /// Softmax over the row's nonzero scores; scores within 1e-7 of zero stay (almost) 0.
    SoftmaxZero,
}

impl PostTransform {
    /// The node's `post_transform` attribute (default `NONE`); `PROBIT` and unknown names are
    /// errors.
    pub(crate) fn of(ctx: &NodeCtx) -> Result<Self, OnnxError> {
        match ctx.string("post_transform")?.as_deref() {
            None | Some("NONE") => Ok(Self::None),
            Some("SOFTMAX") => Ok(Self::Softmax),
            Some("LOGISTIC") => Ok(Self::Logistic),
            Some("SOFTMAX_ZERO") => Ok(Self::SoftmaxZero),
            Some(other) => Err(ctx.err(
                "attribute post_transform",
                format!("{other} is not supported (NONE, SOFTMAX, LOGISTIC or SOFTMAX_ZERO)"),
            )),
        }
    }

    /// Applies the transform to one row of scores, in place.
    pub(crate) fn apply(self, row: &mut [f32]) {
        match self {
            Self::None => {}
            Self::Logistic => row.iter_mut().for_each(|s| *s = logistic(*s)),
            Self::Softmax => {
                let max = row.iter().copied().fold(f32::NEG_INFINITY, f32::max);
                let mut sum = 0.0;
                for s in row.iter_mut() {
                    *s = (*s - max).exp();
                    sum += *s;
                }
                row.iter_mut().for_each(|s| *s /= sum);
            }
            Self::SoftmaxZero => {
                // onnxruntime's: scores within 1e-7 of zero are scaled, not exponentiated.
                let max = row.iter().copied().fold(f32::NEG_INFINITY, f32::max);
                let exp_neg_max = (-max).exp();
                let mut sum = 0.0;
                for s in row.iter_mut() {
                    if s.abs() > 1e-7 {
                        *s = (*s - max).exp();
                        sum += *s;
                    } else {
                        *s *= exp_neg_max;
                    }
                }
                if sum > 0.0 {
                    row.iter_mut().for_each(|s| *s /= sum);
                }
            }
        }
    }
}

/// `1 / (1 + exp(-x))`, computed without overflow for large `|x|`.
pub(crate) fn logistic(x: f32) -> f32 {
    if x >= 0.0 {
        1.0 / (1.0 + (-x).exp())
    } else {
        let e = x.exp();
        e / (1.0 + e)
    }
}
