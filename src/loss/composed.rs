//! The loss written with plain tensor operations: the readable reference.
//!
//! It is also meant to be usable as is, so it is written with few, cheap operations: every
//! element-wise operation is a full pass over memory (and under autodiff a backward pass too),
//! and a transcendental one costs ten times an arithmetic one on the CPU backends (a sigmoid,
//! twenty). Everything is derived from one `exp(-x)` and two logarithms, and the focusing weight
//! from products (one power when the exponent varies by element).

use burn::tensor::backend::Backend;
use burn::tensor::{activation, Tensor, TensorData};

use super::config::Reduction;
use super::params::{round_up_f32, LossParams};

/// Below `-LOGIT_RANGE` every term of the loss is constant to `f32` precision and its gradient
/// below `1e-17`: logits are clamped there from below, which keeps `exp(-x)` finite. (Above, it
/// underflows to 0, which every formula below takes.)
const LOGIT_RANGE: f32 = 40.0;

/// The parts of the per-element loss: the two logarithms, and the bases of the focusing weight.
struct Parts<B: Backend> {
    /// `log(max(p, eps))`, `p` the positive term's probability (at `x - pos_margin`).
    log_pos: Tensor<B, 2>,
    /// `log(max(1 - q, eps))`, `q = max(s(x) - neg_margin, 0)`.
    log_neg: Tensor<B, 2>,
    /// `(1 - p, q)`, or `None` when both gammas are 0 (no focusing weight).
    bases: Option<(Tensor<B, 2>, Tensor<B, 2>)>,
    /// Where the threshold switch gives positives plain cross-entropy (`gamma_pos` 0 there),
    /// when there is a switch and `gamma_pos != 0`.
    confident: Option<Tensor<B, 2, burn::tensor::Bool>>,
}

/// The [`Parts`] of the loss of `logits`.
///
/// With `e = exp(-x)`: `s(x) = 1 / (1 + e)`, `s(-x) = e s(x)` and `log s(x - m) = -log(1 + e
/// exp(m))`. Each keeps full relative precision, and so do their autodiff gradients (`e s^2`
/// for `s(x)`, where the sigmoid's own `s (1 - s)` would round `1 - s`).
fn parts<B: Backend>(params: &LossParams, logits: Tensor<B, 2>) -> Parts<B> {
    let pm = params.pos_margin;
    let m = params.neg_margin;
    let margin = pm > 0.0;
    let focusing = params.gamma_pos != 0.0 || params.gamma_neg != 0.0;
    // One clamp of the logits from below, at the positive term's eps switch when that makes its
    // own clamp unnecessary (one comparison and two fills fewer, forward and backward).
    let eps_floor = eps_floor(params);
    let floor = eps_floor.unwrap_or(-LOGIT_RANGE);
    let e = logits.clone().clamp_min(floor).neg().exp();
    let one_plus_e = e.clone().add_scalar(1.0);
    let s = one_plus_e.clone().recip();
    // The positive term's focusing base 1 - s: its gradient, -e s^2, keeps full precision,
    // where that of e s (a product rule, s (e s - 1) e) cancels to an absolute error of an ulp
    // of 1 for very negative logits. Its value loses relative precision only where the weight is
    // too small to count.
    let pos_base = (focusing && !margin).then(|| s.clone().neg().add_scalar(1.0));

    // Negative term.
    let (log_neg, q) = if m > 0.0 {
        // Probability shifting, q = max(s - m, 0). 1 - q is exact given q, and >= m, so the
        // eps clamp is inactive unless m < eps.
        // relu rather than clamp_min(0): one pass forward instead of a comparison and a fill.
        let q = activation::relu(s.sub_scalar(m));
        let mut one_minus_q = q.clone().neg().add_scalar(1.0);
        if m < params.eps {
            one_minus_q = one_minus_q.clamp_min(params.eps);
        }
        (one_minus_q.log(), q)
    } else {
        // s(-x) = e s, to full relative precision where it is small.
        let comp = e.clone() * s.clone();
        (comp.clamp_min(params.eps).log(), s)
    };

    // Positive term: log(max(p, eps)) = -min(log(1 + exp(-(x - m))), -log(eps)).
    let max_neg_log = -((params.eps as f64).ln() as f32);
    let (log_pos, pos_base, confident) = if margin {
        // Logit margin, and plain cross-entropy from the switch probability on.
        let one_plus_f = e.mul_scalar(pm.exp()).add_scalar(1.0);
        let log_one_plus_f = one_plus_f.clone().log();
        let log_pos = match eps_floor {
            Some(_) => log_one_plus_f.neg(),
            None => log_one_plus_f.clamp_max(max_neg_log).neg(),
        };
        let pos_base = focusing.then(|| one_plus_f.recip().neg().add_scalar(1.0));
        // p >= switch_probability exactly when x >= switch_logit (see LossParams).
        let confident = (focusing && params.gamma_pos != 0.0)
            .then(|| logits.greater_equal_elem(params.switch_logit));
        (log_pos, pos_base, confident)
    } else {
        let log_pos = one_plus_e.log().clamp_max(max_neg_log).neg();
        (log_pos, pos_base, None)
    };
    Parts {
        log_pos,
        log_neg,
        bases: pos_base.map(|b| (b, q)),
        confident,
    }
}

/// The mixed cross-entropy of smoothed targets `y`, `y pw log p + (1 - y) log(1 - q)`, and the
/// pieces of its focusing weight `B^g` (for [`weight`] and [`targets_grad`]): `B = y (1 - p) +
/// (1 - y) q` and `g = y gamma_pos + (1 - y) gamma_neg`, `gamma_pos` 0 past the threshold switch.
struct Mixed<B: Backend> {
    ce: Tensor<B, 2>,
    /// `(B, gamma)`, `None` without focusing.
    focus: Option<(Tensor<B, 2>, Gamma<B>)>,
}

/// The focusing exponent: the same for every element, or one per element.
enum Gamma<B: Backend> {
    Uniform(f32),
    /// `g`, and `gamma_pos` per element where the threshold switch sets it to 0 (`None`: the
    /// configured value everywhere).
    PerElement(Tensor<B, 2>, Option<Tensor<B, 2>>),
}

/// The [`Mixed`] loss of `parts` for smoothed targets `y`. The products are taken term by term
/// (`y a + (1 - y) b`, not `y (a - b) + b`) so that a hard target gets its term exactly.
fn mixed<B: Backend>(params: &LossParams, parts: Parts<B>, y: Tensor<B, 2>) -> Mixed<B> {
    let device = y.device();
    let y_neg = y.clone().neg().add_scalar(1.0);
    let log_pos = match params.pos_weight.as_deref() {
        Some(&[w]) => parts.log_pos.mul_scalar(w),
        Some(w) => parts.log_pos * row(w, &device),
        None => parts.log_pos,
    };
    let ce = log_pos * y.clone() + parts.log_neg * y_neg.clone();
    let focus = parts.bases.map(|(pos_base, q)| {
        let base = pos_base * y.clone() + q * y_neg.clone();
        let (gp, gn) = (params.gamma_pos, params.gamma_neg);
        let gamma = match parts.confident {
            Some(confident) => {
                let gp = Tensor::full(y.dims(), gp, &device).mask_fill(confident, 0.0);
                Gamma::PerElement(gp.clone() * y + y_neg.mul_scalar(gn), Some(gp))
            }
            None if gp == gn => Gamma::Uniform(gp),
            None => Gamma::PerElement(y.mul_scalar(gp) + y_neg.mul_scalar(gn), None),
        };
        (base, gamma)
    });
    Mixed { ce, focus }
}

/// `B^g`. Where `B` is 0 (a hard target's weight at a probability of exactly 0 or 1) a
/// per-element exponent takes `B` at the smallest normal `f32`, which keeps its autodiff
/// gradients finite (`g B^(g - 1)`, `B^g ln B`) and the clamp's gradient 0.
fn weight<B: Backend>(base: Tensor<B, 2>, gamma: &Gamma<B>) -> Tensor<B, 2> {
    match gamma {
        Gamma::Uniform(g) => power(base, *g),
        Gamma::PerElement(g, _) => base.clamp_min(f32::MIN_POSITIVE).powf(g.clone()),
    }
}

/// The logit `x_eps` below which `s(x - pos_margin) < eps` (the smallest `f32` at or above the
/// exact value), when the negative term is identically 0 below it (`s(x_eps) <= neg_margin`):
/// clamping the logits at `x_eps` then gives the clamped positive term, zero gradients below it
/// for both terms, and a finite `exp(-x)`. `None` otherwise (no margin, or margins too small),
/// and where the focusing weight has a gradient: below `x_eps` it is about `gamma eps |ln eps|`
/// (5e-7 for the paper's values), negligible in a mean but not in a sum or per element.
fn eps_floor(params: &LossParams) -> Option<f32> {
    let (pm, m, eps) = (
        params.pos_margin as f64,
        params.neg_margin as f64,
        params.eps as f64,
    );
    // With soft targets the positive term's weight is B^g, whose gradient below `x_eps` is
    // about `g eps |ln eps|` whenever either gamma is set.
    let weight_grad =
        (params.gamma_pos != 0.0 || params.gamma_neg != 0.0) && !params.detach_focusing;
    if pm <= 0.0 || m <= 0.0 || !(eps > 0.0 && eps < 0.5) || weight_grad {
        return None;
    }
    let floor = pm + (eps / (1.0 - eps)).ln();
    let s_floor = 1.0 / (1.0 + (-floor).exp());
    (s_floor < m && floor > -(LOGIT_RANGE as f64)).then(|| round_up_f32(floor))
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

/// The per-element `weight (y' pos_weight log p + (1 - y') log(1 - q)) B^g`: the losses before
/// their sign and the reduction.
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
    let parts = parts(params, logits);
    let Mixed { ce, focus } = mixed(params, parts, smoothed(params, targets));
    let per_element = match focus {
        None => ce,
        Some((base, gamma)) => {
            let w = weight(base, &gamma);
            ce * if params.detach_focusing {
                w.detach()
            } else {
                w
            }
        }
    };
    match params.weight.as_deref() {
        Some(w) => per_element * row(w, &device),
        None => per_element,
    }
}

/// The gradient of the reduced loss with respect to the targets, for an incoming gradient of 1:
///
/// ```text
/// d loss / dy = -scale weight (1 - smoothing) ((pos_weight log p - log(1 - q)) B^g + ce dB^g/dy')
/// dB^g/dy' = B^g (gamma_pos - gamma_neg) ln B + g B^(g - 1) (1 - p - q)
/// ```
///
/// with `ce` the mixed cross-entropy and `dB^g/dy'` 0 when the focusing is detached (timm's
/// `disable_torch_grad_focal_loss` detaches the weight from the targets too).
pub(crate) fn targets_grad<B: Backend>(
    params: &LossParams,
    logits: Tensor<B, 2>,
    targets: Tensor<B, 2>,
) -> Tensor<B, 2> {
    let [rows, classes] = logits.dims();
    let device = logits.device();
    let parts = parts(params, logits);
    let pos_weight = |t: Tensor<B, 2>| match params.pos_weight.as_deref() {
        Some(&[w]) => t.mul_scalar(w),
        Some(w) => t * row(w, &device),
        None => t,
    };
    let d_ce = pos_weight(parts.log_pos.clone()) - parts.log_neg.clone();
    let bases = parts.bases.as_ref().map(|(p, q)| (p.clone(), q.clone()));
    let Mixed { ce, focus } = mixed(params, parts, smoothed(params, targets));
    let factor = -params.scale(rows * classes, classes) * (1.0 - params.smoothing);
    let grad = match (focus, bases) {
        (Some((base, gamma)), Some((pos_base, q))) => {
            let w = weight(base.clone(), &gamma);
            let d_base = pos_base - q;
            if params.detach_focusing {
                d_ce * w
            } else {
                let base = base.clamp_min(f32::MIN_POSITIVE);
                // g B^(g - 1) dB/dy', and for a per-element exponent B^g ln B dg/dy'.
                let d_w = match &gamma {
                    Gamma::Uniform(g) => power(base, *g - 1.0).mul_scalar(*g) * d_base,
                    Gamma::PerElement(g, gp) => {
                        let below = base.clone().powf(g.clone().sub_scalar(1.0));
                        let gn = params.gamma_neg;
                        let w_log = w.clone() * base.log();
                        let d_gamma = match gp {
                            Some(gp) => w_log * gp.clone().sub_scalar(gn),
                            None => w_log.mul_scalar(params.gamma_pos - gn),
                        };
                        d_gamma + below * g.clone() * d_base
                    }
                };
                d_ce * w + ce * d_w
            }
        }
        _ => d_ce,
    };
    let grad = grad.mul_scalar(factor);
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
