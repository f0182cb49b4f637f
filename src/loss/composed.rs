//! The loss written with plain tensor operations: the readable reference.
//!
//! It is also meant to be usable as is, so it is written with few, cheap operations: every
//! element-wise operation is a full pass over memory (and under autodiff a backward pass too),
//! and a transcendental one costs ten times an arithmetic one on the CPU backends (a sigmoid,
//! twenty). Everything is derived from one `exp(-x)` and two logarithms.

use burn::tensor::backend::Backend;
use burn::tensor::{activation, Tensor, TensorData};

use super::config::Reduction;
use super::params::{round_up_f32, LossParams};

/// Below `-LOGIT_RANGE` every term of the loss is constant to `f32` precision and its gradient
/// below `1e-17`: logits are clamped there from below, which keeps `exp(-x)` finite. (Above, it
/// underflows to 0, which every formula below takes.)
const LOGIT_RANGE: f32 = 40.0;

/// The per-element positive and negative terms `(L+, L-)` of the loss (before the sign and the
/// weights), their focusing weights detached when the parameters say so.
///
/// With `e = exp(-x)`: `s(x) = 1 / (1 + e)`, `s(-x) = e s(x)` and `log s(x - m) = -log(1 + e
/// exp(m))`. Each keeps full relative precision, and so do their autodiff gradients (`e s^2`
/// for `s(x)`, where the sigmoid's own `s (1 - s)` would round `1 - s`).
pub(crate) fn terms<B: Backend>(
    params: &LossParams,
    logits: Tensor<B, 2>,
) -> (Tensor<B, 2>, Tensor<B, 2>) {
    let pm = params.pos_margin;
    let m = params.neg_margin;
    let detach = params.detach_focusing;
    let margin = pm > 0.0;
    // One clamp of the logits from below, at the positive term's eps switch when that makes its
    // own clamp unnecessary (one comparison and two fills fewer, forward and backward).
    let eps_floor = eps_floor(params);
    let floor = eps_floor.unwrap_or(-LOGIT_RANGE);
    let e = logits.clone().clamp_min(floor).neg().exp();
    let one_plus_e = e.clone().add_scalar(1.0);
    // Tensors are cloned only when used once more: otherwise the next operation can reuse their
    // memory. Without a margin, log(1 + e) is the positive term's logarithm.
    let (s, one_plus_e) = if margin {
        (one_plus_e.recip(), None)
    } else {
        (one_plus_e.clone().recip(), Some(one_plus_e))
    };
    // The positive term's focusing base 1 - s: its gradient, -e s^2, keeps full precision,
    // where that of e s (a product rule, s (e s - 1) e) cancels to an absolute error of an ulp
    // of 1 for very negative logits. Its value loses relative precision only where the weight is
    // too small to count.
    let comp_for_pos = !margin && params.gamma_pos != 0.0;
    let pos_base = comp_for_pos.then(|| s.clone().neg().add_scalar(1.0));

    // Negative term.
    let loss_neg = if m > 0.0 {
        // Probability shifting, q = max(s - m, 0). 1 - q is exact given q, and >= m, so the
        // eps clamp is inactive unless m < eps.
        // relu rather than clamp_min(0): one pass forward instead of a comparison and a fill.
        let q = activation::relu(s.sub_scalar(m));
        let mut one_minus_q = q.clone().neg().add_scalar(1.0);
        if m < params.eps {
            one_minus_q = one_minus_q.clamp_min(params.eps);
        }
        weighted(one_minus_q.log(), || q, params.gamma_neg, detach)
    } else {
        // s(-x) = e s, to full relative precision where it is small.
        let comp = e.clone() * s.clone();
        let log_neg = comp.clamp_min(params.eps).log();
        weighted(log_neg, || s, params.gamma_neg, detach)
    };

    // Positive term: log(max(p, eps)) = -min(log(1 + exp(-(x - m))), -log(eps)).
    let max_neg_log = -((params.eps as f64).ln() as f32);
    let loss_pos = if margin {
        // Logit margin, and plain cross-entropy from the switch probability on.
        let one_plus_f = e.mul_scalar(pm.exp()).add_scalar(1.0);
        let log_one_plus_f = one_plus_f.clone().log();
        let log_pos = match eps_floor {
            Some(_) => log_one_plus_f.neg(),
            None => log_one_plus_f.clamp_max(max_neg_log).neg(),
        };
        if params.gamma_pos == 0.0 {
            log_pos
        } else {
            // The weight is only used where p < switch_probability <= 1, so 1 - p loses no digit that
            // matters. p >= switch_probability exactly when x >= switch_logit (see LossParams).
            let p = one_plus_f.recip();
            let confident = logits.greater_equal_elem(params.switch_logit);
            let w = power(p.neg().add_scalar(1.0), params.gamma_pos).mask_fill(confident, 1.0);
            log_pos * if detach { w.detach() } else { w }
        }
    } else {
        let one_plus_e = one_plus_e.expect("kept without a margin");
        let log_pos = one_plus_e.log().clamp_max(max_neg_log).neg();
        let weight_base = || pos_base.expect("computed for a focal positive term");
        weighted(log_pos, weight_base, params.gamma_pos, detach)
    };
    (loss_pos, loss_neg)
}

/// The logit `x_eps` below which `s(x - pos_margin) < eps` (the smallest `f32` at or above the
/// exact value), when the negative term is identically 0 below it (`s(x_eps) <= neg_margin`):
/// clamping the logits at `x_eps` then gives the clamped positive term, zero gradients below it
/// for both terms, and a finite `exp(-x)`. `None` otherwise (no margin, or margins too small),
/// and where the positive focusing weight has a gradient: below `x_eps` it is about
/// `gamma_pos eps |ln eps|` (5e-7 for the paper's values), negligible in a mean but not in a sum
/// or per element.
fn eps_floor(params: &LossParams) -> Option<f32> {
    let (pm, m, eps) = (
        params.pos_margin as f64,
        params.neg_margin as f64,
        params.eps as f64,
    );
    let weight_grad = params.gamma_pos != 0.0 && !params.detach_focusing;
    if pm <= 0.0 || m <= 0.0 || !(eps > 0.0 && eps < 0.5) || weight_grad {
        return None;
    }
    let floor = pm + (eps / (1.0 - eps)).ln();
    let s_floor = 1.0 / (1.0 + (-floor).exp());
    (s_floor < m && floor > -(LOGIT_RANGE as f64)).then(|| round_up_f32(floor))
}

/// `value * base^gamma`, skipping the power (and `base`) when `gamma == 0` (its autodiff
/// gradient would be `0 * base^-1`, NaN where `base` is 0); the power a constant of the backward
/// pass when `detach`.
fn weighted<B: Backend>(
    value: Tensor<B, 2>,
    base: impl FnOnce() -> Tensor<B, 2>,
    gamma: f32,
    detach: bool,
) -> Tensor<B, 2> {
    if gamma == 0.0 {
        value
    } else if detach {
        value * power(base(), gamma).detach()
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

/// A per-class vector as a `[1, classes]` row (or `[1, 1]`) on `device`, to broadcast over the
/// batch.
fn row<B: Backend>(values: &[f32], device: &B::Device) -> Tensor<B, 2> {
    Tensor::from_data(TensorData::new(values.to_vec(), [1, values.len()]), device)
}

/// `y (1 - smoothing) + smoothing / 2`: label smoothing towards 0.5.
pub(crate) fn smoothed<B: Backend>(params: &LossParams, targets: Tensor<B, 2>) -> Tensor<B, 2> {
    let s = params.smoothing;
    if s == 0.0 {
        targets
    } else {
        targets.mul_scalar(1.0 - s).add_scalar(0.5 * s)
    }
}

/// The per-element `weight (y' pos_weight L+ + (1 - y') L-)`: the losses before their sign and
/// the reduction.
fn per_element_unsigned<B: Backend>(
    params: &LossParams,
    logits: Tensor<B, 2>,
    targets: Tensor<B, 2>,
) -> Tensor<B, 2> {
    let (xs, ys) = (logits.dims(), targets.dims());
    assert!(
        xs == ys,
        "AsymmetricLoss: logits have shape {xs:?} but targets have shape {ys:?}"
    );
    let device = logits.device();
    let (loss_pos, loss_neg) = terms(params, logits);
    let loss_pos = match params.pos_weight.as_deref() {
        Some(&[w]) => loss_pos.mul_scalar(w),
        Some(w) => loss_pos * row(w, &device),
        None => loss_pos,
    };
    // y L+ + (1 - y) L- = y (L+ - L-) + L-: three passes instead of five.
    let per_element = (loss_pos - loss_neg.clone()) * smoothed(params, targets) + loss_neg;
    match params.weight.as_deref() {
        Some(w) => per_element * row(w, &device),
        None => per_element,
    }
}

/// The gradient of the reduced loss with respect to the targets, for an incoming gradient of 1:
/// the loss is linear in them, `d loss / dy = -scale weight (1 - smoothing) (pos_weight L+ - L-)`.
pub(crate) fn targets_grad<B: Backend>(params: &LossParams, logits: Tensor<B, 2>) -> Tensor<B, 2> {
    let [rows, classes] = logits.dims();
    let device = logits.device();
    let (pos, neg) = terms(params, logits);
    let pos = match params.pos_weight.as_deref() {
        Some(&[w]) => pos.mul_scalar(w),
        Some(w) => pos * row(w, &device),
        None => pos,
    };
    let factor = -params.scale(rows * classes, classes) * (1.0 - params.smoothing);
    let grad = (pos - neg).mul_scalar(factor);
    match params.weight.as_deref() {
        Some(w) => grad * row(w, &device),
        None => grad,
    }
}

/// The reduced loss, `-reduce(weight (y' pos_weight L+ + (1 - y') L-))`; with
/// [`Reduction::None`] the per-element losses, flattened row-major.
pub(crate) fn loss<B: Backend>(
    params: &LossParams,
    logits: Tensor<B, 2>,
    targets: Tensor<B, 2>,
) -> Tensor<B, 1> {
    let [rows, classes] = logits.dims();
    let per_element = per_element_unsigned(params, logits, targets);
    let n = rows * classes;
    if params.reduction == Reduction::None {
        return per_element.neg().reshape([n]);
    }
    // Summing rows first keeps f32 accumulation error small on large batches.
    let total = per_element.sum_dim(1).sum();
    match params.reduction {
        Reduction::Mean => total.div_scalar(-(n as f32)),
        Reduction::BatchMean => total.div_scalar(-(rows.max(1) as f32)),
        Reduction::Sum | Reduction::None => total.neg(),
    }
}
