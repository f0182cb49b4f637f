//! The loss written with plain tensor operations: the readable reference.

use burn::tensor::activation::sigmoid;
use burn::tensor::backend::Backend;
use burn::tensor::Tensor;

use super::config::Reduction;
use super::params::LossParams;

/// The per-element positive and negative terms `(L+, L-)` of the loss (before the sign).
///
/// `1 - sigmoid(v)` is always computed as `sigmoid(-v)`: in `f32` the subtraction loses every
/// digit for large logits, in the value (which would move the `eps` clamp) and in its gradient.
pub(crate) fn terms<B: Backend>(
    params: &LossParams,
    logits: Tensor<B, 2>,
) -> (Tensor<B, 2>, Tensor<B, 2>) {
    let s = sigmoid(logits.clone());
    let s_comp = sigmoid(logits.clone().neg());

    // Negative term: probability shifting, q = max(s - m, 0) and 1 - q = min(1 - s + m, 1).
    let m = params.neg_margin;
    let (q, one_minus_q) = if m > 0.0 {
        let q = s.clone().sub_scalar(m).clamp_min(0.0);
        (q, s_comp.clone().add_scalar(m).clamp_max(1.0))
    } else {
        (s.clone(), s_comp.clone())
    };
    let log_neg = one_minus_q.clamp_min(params.eps).log();
    let loss_neg = weighted(log_neg, q, params.gamma_neg);

    // Positive term: logit margin, and plain cross-entropy above the threshold.
    let (p, one_minus_p) = if params.pos_margin > 0.0 {
        let shifted = logits.clone().sub_scalar(params.pos_margin);
        (sigmoid(shifted.clone()), sigmoid(shifted.neg()))
    } else {
        (s, s_comp)
    };
    let log_pos = p.clamp_min(params.eps).log();
    let loss_pos = if params.pos_margin > 0.0 {
        // p >= threshold exactly when x >= switch_logit (see LossParams).
        let confident = logits.greater_equal_elem(params.switch_logit);
        let w = power(one_minus_p, params.gamma_pos).mask_fill(confident, 1.0);
        log_pos * w
    } else {
        weighted(log_pos, one_minus_p, params.gamma_pos)
    };
    (loss_pos, loss_neg)
}

/// `value * base^gamma`, skipping the power when `gamma == 0` (its autodiff gradient would be
/// `0 * base^-1`, NaN where `base` is 0).
fn weighted<B: Backend>(value: Tensor<B, 2>, base: Tensor<B, 2>, gamma: f32) -> Tensor<B, 2> {
    if gamma == 0.0 {
        value
    } else {
        value * power(base, gamma)
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
    let per_element = targets.clone() * loss_pos + (targets.neg().add_scalar(1.0)) * loss_neg;
    // Summing rows first keeps f32 accumulation error small on large batches.
    let n = per_element.shape().num_elements();
    let total = per_element.sum_dim(1).sum();
    match params.reduction {
        Reduction::Mean => total.div_scalar(-(n as f32)),
        Reduction::Sum => total.neg(),
    }
}
