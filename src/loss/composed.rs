//! The loss written with plain tensor operations: the readable reference.
//!
//! It is also meant to be usable as is, so it is written with few, cheap operations: every
//! element-wise operation is a full pass over memory (and under autodiff a backward pass too),
//! and transcendental ones cost several times more than arithmetic on the CPU backends.

use burn::tensor::activation::{log_sigmoid, sigmoid};
use burn::tensor::backend::Backend;
use burn::tensor::Tensor;

use super::config::Reduction;
use super::params::LossParams;

/// The per-element positive and negative terms `(L+, L-)` of the loss (before the sign).
pub(crate) fn terms<B: Backend>(
    params: &LossParams,
    logits: Tensor<B, 2>,
) -> (Tensor<B, 2>, Tensor<B, 2>) {
    // The eps clamp applied to a logarithm: log(max(v, eps)) = max(log(v), log(eps)), with the
    // same (zero) gradient where it is active.
    let ln_eps = (params.eps as f64).ln() as f32;

    // Negative term.
    let m = params.neg_margin;
    let loss_neg = if m > 0.0 {
        // Probability shifting, q = max(s - m, 0) with s = 1 - s(-x). Written from s(-x), the
        // sigmoid's gradient keeps its digits where q is active and s is close to 1 (from s(x)
        // it would be s (1 - s) with 1 - s rounded). 1 - q >= m, so the eps clamp is inactive
        // unless m < eps.
        let q = sigmoid(logits.clone().neg())
            .neg()
            .add_scalar(1.0 - m)
            .clamp_min(0.0);
        let one_minus_q = q.clone().neg().add_scalar(1.0);
        let one_minus_q = if m < params.eps {
            one_minus_q.clamp_min(params.eps)
        } else {
            one_minus_q
        };
        weighted(one_minus_q.log(), || q, params.gamma_neg)
    } else {
        // log(1 - s(x)) = log_sigmoid(-x): `1 - s` would round to 0 for large logits in f32
        // (moving the eps clamp) where log_sigmoid keeps every digit.
        let log_neg = log_sigmoid(logits.clone().neg()).clamp_min(ln_eps);
        weighted(log_neg, || sigmoid(logits.clone()), params.gamma_neg)
    };

    // Positive term.
    let loss_pos = if params.pos_margin > 0.0 {
        // Logit margin, and plain cross-entropy above the threshold. In f32, p = s(x - margin)
        // and 1 - p lose only absolute digits (below 1e-7), which the loss tolerates; the clamp
        // needs p's relative precision near eps, which the sigmoid keeps.
        let p = sigmoid(logits.clone().sub_scalar(params.pos_margin));
        let log_pos = p.clone().clamp_min(params.eps).log();
        if params.gamma_pos == 0.0 {
            log_pos
        } else {
            // p >= threshold exactly when x >= switch_logit (see LossParams).
            let confident = logits.greater_equal_elem(params.switch_logit);
            let w = power(p.neg().add_scalar(1.0), params.gamma_pos).mask_fill(confident, 1.0);
            log_pos * w
        }
    } else {
        let log_pos = log_sigmoid(logits.clone()).clamp_min(ln_eps);
        weighted(log_pos, || sigmoid(logits.neg()), params.gamma_pos)
    };
    (loss_pos, loss_neg)
}

/// `value * base^gamma`, skipping the power (and `base`) when `gamma == 0` (its autodiff
/// gradient would be `0 * base^-1`, NaN where `base` is 0).
fn weighted<B: Backend>(
    value: Tensor<B, 2>,
    base: impl FnOnce() -> Tensor<B, 2>,
    gamma: f32,
) -> Tensor<B, 2> {
    if gamma == 0.0 {
        value
    } else {
        value * power(base(), gamma)
    }
}

/// `base^gamma`. Small integer exponents (the presets' 3 and 4) are products: a general `powf` is
/// an order of magnitude slower per element on the CPU backends, forward and backward.
fn power<B: Backend>(base: Tensor<B, 2>, gamma: f32) -> Tensor<B, 2> {
    if gamma == 0.0 {
        return base.ones_like();
    }
    if gamma.fract() != 0.0 || !(1.0..=8.0).contains(&gamma) {
        return base.powf_scalar(gamma);
    }
    // Square-and-multiply over the bits of the exponent.
    let mut n = gamma as u32;
    let mut square = base;
    let mut result: Option<Tensor<B, 2>> = None;
    loop {
        if n & 1 == 1 {
            result = Some(match result {
                Some(r) => r * square.clone(),
                None => square.clone(),
            });
        }
        n >>= 1;
        if n == 0 {
            break;
        }
        square = square.clone() * square;
    }
    result.expect("gamma >= 1 has a set bit")
}

/// The reduced loss, `-reduce(y * L+ + (1 - y) * L-)`.
pub(crate) fn loss<B: Backend>(
    params: &LossParams,
    logits: Tensor<B, 2>,
    targets: Tensor<B, 2>,
) -> Tensor<B, 1> {
    let (xs, ys) = (logits.dims(), targets.dims());
    assert!(
        xs == ys,
        "AsymmetricLoss: logits have shape {xs:?} but targets have shape {ys:?}"
    );
    let (loss_pos, loss_neg) = terms(params, logits);
    // y L+ + (1 - y) L- = y (L+ - L-) + L-: three passes instead of five.
    let per_element = (loss_pos - loss_neg.clone()) * targets + loss_neg;
    // Summing rows first keeps f32 accumulation error small on large batches.
    let n = per_element.shape().num_elements();
    let total = per_element.sum_dim(1).sum();
    match params.reduction {
        Reduction::Mean => total.div_scalar(-(n as f32)),
        Reduction::Sum => total.neg(),
    }
}
