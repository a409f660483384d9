//! Applying a [`Transform`] to one row's raw scores, in `f64`.

use crate::Transform;

/// Replaces the raw scores of one row by their transform; `logistic_scale` multiplies each
/// score before the logistic (LightGBM's `sigmoid:`).
pub(crate) fn apply(transform: Transform, logistic_scale: f64, scores: &mut [f64]) {
    match transform {
        Transform::None => {}
        Transform::Logistic => {
            for s in scores.iter_mut() {
                *s = 1.0 / (1.0 + (-logistic_scale * *s).exp());
            }
        }
        Transform::Softmax => {
            let max = scores.iter().copied().fold(f64::NEG_INFINITY, f64::max);
            let mut sum = 0.0;
            for s in scores.iter_mut() {
                *s = (*s - max).exp();
                sum += *s;
            }
            for s in scores.iter_mut() {
                *s /= sum;
            }
        }
        Transform::SoftmaxZero => softmax_zero(scores),
        Transform::Probit => {
            for s in scores.iter_mut() {
                *s = std::f64::consts::SQRT_2 * erf_inv(2.0 * *s - 1.0);
            }
        }
    }
}

/// onnxruntime's `SOFTMAX_ZERO`: scores within 1e-7 of zero are left (scaled) near zero
/// instead of contributing `exp(0)`.
fn softmax_zero(scores: &mut [f64]) {
    let max = scores.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    let exp_neg_max = (-max).exp();
    let mut sum = 0.0;
    for s in scores.iter_mut() {
        if s.abs() > 1e-7 {
            *s = (*s - max).exp();
            sum += *s;
        } else {
            *s *= exp_neg_max;
        }
    }
    if sum > 0.0 {
        for s in scores.iter_mut() {
            *s /= sum;
        }
    }
}

/// The inverse error function, by the closed-form approximation onnxruntime uses
/// (Winitzki's, `a = 0.147`), so probit outputs match it.
fn erf_inv(x: f64) -> f64 {
    let sign = if x < 0.0 { -1.0 } else { 1.0 };
    let w = ((1.0 - x) * (1.0 + x)).ln();
    let a = 2.0 / (std::f64::consts::PI * 0.147) + 0.5 * w;
    let b = w / 0.147;
    sign * ((a * a - b).sqrt() - a).sqrt()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn softmax_sums_to_one_and_keeps_order() {
        let mut s = [1.0, 2.0, 3.0];
        apply(Transform::Softmax, 1.0, &mut s);
        assert!((s.iter().sum::<f64>() - 1.0).abs() < 1e-12);
        assert!(s[0] < s[1] && s[1] < s[2]);
    }

    #[test]
    fn logistic_scale_and_probit_invert() {
        let mut s = [0.0, 2.0];
        apply(Transform::Logistic, 2.0, &mut s);
        assert_eq!(s[0], 0.5);
        assert!((s[1] - 1.0 / (1.0 + (-4.0f64).exp())).abs() < 1e-15);
        // probit(Phi(1)) ~ 1 within the approximation's accuracy.
        let mut p = [0.841_344_746];
        apply(Transform::Probit, 1.0, &mut p);
        assert!((p[0] - 1.0).abs() < 5e-3, "{}", p[0]);
    }
}
