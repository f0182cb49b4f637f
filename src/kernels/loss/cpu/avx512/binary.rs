//! The AVX-512 loop for targets of exactly 0 or 1.

use std::arch::x86_64::*;

use super::math::{exp, ln, pow_deriv, recip};
use super::{add_block, lane_mask, prefetch, Consts, BLOCK, LANES, VECS};
use crate::kernels::loss::cpu::{Elem, Pow};

/// The sum of the per-element losses of `x` against `y` and, when `GRAD`, the scaled gradient
/// written to `g`, for as long as every target is 0 or 1: returns the sum and the number of
/// elements done, which is short of `x.len()` when the vector starting there holds another target
/// (nothing of that vector is written). The first element is of class `col`; with `W` the
/// per-class weights apply; when `l` is not empty the per-element losses are written there.
///
/// The work of a vector is one chain of about fifty dependent instructions (the exponential, a
/// reciprocal, the logarithm): run as one loop, the out-of-order core cannot hold enough
/// iterations in flight to hide that latency and runs at about one instruction per cycle. So a
/// block is done in two phases, each a loop of independent iterations with half the chain:
/// up to the logarithm's argument, and from the logarithm on, passing values through small
/// buffers that stay in L1.
///
/// # Safety
///
/// The CPU must support AVX-512F and AVX-512DQ; `y.len() == x.len()`, `g.len() == x.len()`
/// when `GRAD`, and `l` empty or as long as `x`. The exponents of `k` must be integers
/// (`Pow::int_exp` is `Some`).
#[target_feature(enable = "avx512f,avx512dq")]
pub(in crate::kernels::loss::cpu) unsafe fn run_binary<
    N: Pow,
    Q: Pow,
    const GRAD: bool,
    const MARGIN: bool,
    const W: bool,
>(
    k: &Elem<N, Q>,
    col: usize,
    x: &[f32],
    y: &[f32],
    g: &mut [f32],
    l: &mut [f32],
) -> (f64, usize) {
    debug_assert_eq!(x.len(), y.len());
    debug_assert!(!GRAD || g.len() == x.len());
    assert!(l.is_empty() || l.len() == x.len(), "losses length");
    let out = !l.is_empty();
    let lp = l.as_mut_ptr();
    let mut cw_buf = [1.0f32; BLOCK];
    let mut pw_buf = [1.0f32; BLOCK];
    let c = Consts::new(k);
    let (n_neg, n_pos) = (
        k.pow_neg.int_exp().unwrap_or(0),
        k.pow_pos.int_exp().unwrap_or(0),
    );
    let n = x.len();
    let (xp, yp, gp) = (x.as_ptr(), y.as_ptr(), g.as_mut_ptr());
    let mut total = [_mm512_setzero_pd(); 2];
    let mut mid = [Mid::default(); VECS];
    let mut start = 0;
    while start < n {
        let len = BLOCK.min(n - start);
        let vecs = len.div_ceil(LANES);
        let lanes = |j: usize| lane_mask(len, j);
        // SAFETY: the masked lanes of vector j are within the block, inside every slice.
        let load = |j: usize| unsafe {
            let at = start + j * LANES;
            (
                _mm512_maskz_loadu_ps(lanes(j), xp.add(at)),
                _mm512_maskz_loadu_ps(lanes(j), yp.add(at)),
            )
        };

        if W {
            k.fill_weights(col + start, &mut cw_buf[..len], &mut pw_buf[..len]);
        }
        let mut stop = vecs;
        for (j, m) in mid.iter_mut().enumerate().take(vecs) {
            prefetch::<GRAD>(xp, yp, gp, start + j * LANES);
            let (xv, yv) = load(j);
            let (binary, v) = first_half::<GRAD, MARGIN>(&c, xv, yv);
            if binary & lanes(j) != lanes(j) {
                stop = j;
                break;
            }
            *m = v;
        }
        let mut acc = _mm512_setzero_ps();
        for (j, m) in mid.iter().enumerate().take(stop) {
            let (xv, yv) = load(j);
            let (log, weight, grad) = second_half::<GRAD, MARGIN>(&c, n_neg, n_pos, xv, yv, m);
            let (weight, grad) = if W {
                // SAFETY: the block's buffers hold BLOCK values; vector j is within them.
                let (cw, pw) = unsafe {
                    (
                        _mm512_loadu_ps(cw_buf.as_ptr().add(j * LANES)),
                        _mm512_loadu_ps(pw_buf.as_ptr().add(j * LANES)),
                    )
                };
                let pos = _mm512_cmp_ps_mask::<_CMP_EQ_OQ>(yv, _mm512_set1_ps(1.0));
                let f = _mm512_mask_mul_ps(cw, pos, cw, pw);
                (_mm512_mul_ps(weight, f), _mm512_mul_ps(grad, f))
            } else {
                (weight, grad)
            };
            acc = _mm512_mask3_fnmadd_ps(log, weight, acc, lanes(j));
            if GRAD {
                // SAFETY: as for the loads; g has the length of x when GRAD.
                unsafe { _mm512_mask_storeu_ps(gp.add(start + j * LANES), lanes(j), grad) };
            }
            if out {
                let loss = _mm512_sub_ps(_mm512_setzero_ps(), _mm512_mul_ps(log, weight));
                // SAFETY: as for the loads; l has the length of x when not empty.
                unsafe { _mm512_mask_storeu_ps(lp.add(start + j * LANES), lanes(j), loss) };
            }
        }
        add_block(&mut total, acc);
        if stop < vecs {
            start += stop * LANES;
            break;
        }
        start += len;
    }
    let sum = _mm512_reduce_add_pd(_mm512_add_pd(total[0], total[1]));
    (sum, start)
}

/// What the first half of a vector's work hands to the second.
#[derive(Clone, Copy)]
struct Mid {
    /// The logarithm's argument, clamped at `eps`.
    log_arg: __m512,
    /// The focal weight's base, `q` or `1 - p`.
    base: __m512,
    /// The gradient's factor of the weight, `[unclamped] d log / dx` up to sign.
    a: __m512,
    /// `s (1 - s)` where the weight has a gradient, else 0.
    t: __m512,
}

zeroed_default!(Mid);

/// The sigmoids and the arguments of the logarithm and the weight, for 16 lanes, with the lanes
/// whose target is 0 or 1 (see [`Elem::elem_binary`](super::Elem::elem_binary) for the
/// formulas).
#[target_feature(enable = "avx512f,avx512dq")]
#[inline]
fn first_half<const GRAD: bool, const MARGIN: bool>(
    c: &Consts,
    x: __m512,
    y: __m512,
) -> (__mmask16, Mid) {
    let zero = _mm512_setzero_ps();
    let one = _mm512_set1_ps(1.0);
    let pos = _mm512_cmp_ps_mask::<_CMP_EQ_OQ>(y, one);
    let binary = pos | _mm512_cmp_ps_mask::<_CMP_EQ_OQ>(y, zero);

    let z = if MARGIN {
        _mm512_mask_sub_ps(x, pos, x, c.pos_margin)
    } else {
        x
    };
    // exp(-|z|), kept at or above exp(-87) so that 1 / (one_e * num) stays finite.
    let minus_abs = _mm512_or_ps(z, _mm512_set1_ps(-0.0));
    let e = exp(_mm512_max_ps(minus_abs, _mm512_set1_ps(-87.0)));
    let nonneg = _mm512_cmp_ps_mask::<_CMP_GE_OQ>(z, zero);
    let one_e = _mm512_add_ps(one, e);
    let num = _mm512_fmadd_ps(c.neg_margin, one_e, _mm512_mask_blend_ps(nonneg, one, e));
    let r = recip(_mm512_mul_ps(one_e, num));
    let big = _mm512_mul_ps(r, num);
    let small = _mm512_mul_ps(e, big);
    let s = _mm512_mask_blend_ps(nonneg, small, big);
    let s_comp = _mm512_mask_blend_ps(nonneg, big, small);

    let active = _mm512_cmp_ps_mask::<_CMP_GT_OQ>(s, c.neg_margin);
    let q = _mm512_maskz_sub_ps(active, s, c.neg_margin);
    let one_minus_q = _mm512_mask_add_ps(one, active, s_comp, c.neg_margin);
    let arg = _mm512_mask_blend_ps(pos, one_minus_q, s);
    let log_arg = _mm512_max_ps(arg, c.eps);
    let base = _mm512_mask_blend_ps(pos, q, s_comp);
    if !GRAD {
        return (
            binary,
            Mid {
                log_arg,
                base,
                a: zero,
                t: zero,
            },
        );
    }

    // d loss / dx = -D * scale with, for t = s (1 - s):
    //   positive: D = [unclamped] (1 - s) w - log * [not confident] t * dw
    //   negative: D = -([unclamped, active] t / (1 - q)) w + log * [active] t * dw
    // i.e. D = +-(a w - log t dw) with a and t masked here, the sign folded into the scale.
    let unclamped = _mm512_cmp_ps_mask::<_CMP_GE_OQ>(arg, c.eps);
    let t = _mm512_mul_ps(s, s_comp);
    let valid = pos | active;
    let with_log = unclamped & valid;
    // 1 / (1 - q) = (1 + e)^2 r where the negative term is active.
    let inv_one_minus_q = _mm512_mul_ps(r, _mm512_mul_ps(one_e, one_e));
    let a = _mm512_maskz_mul_ps(with_log & !pos, t, inv_one_minus_q);
    let a = _mm512_mask_mov_ps(a, with_log & pos, s_comp);
    let focal = if c.detach { 0 } else { valid };
    let t = _mm512_maskz_mov_ps(focal & !confident::<MARGIN>(c, pos, x), t);
    (
        binary,
        Mid {
            log_arg,
            base,
            a,
            t,
        },
    )
}

/// Lanes of a positive target at or past the switch probability (plain cross-entropy).
#[target_feature(enable = "avx512f")]
#[inline]
fn confident<const MARGIN: bool>(c: &Consts, pos: __mmask16, x: __m512) -> __mmask16 {
    if MARGIN {
        pos & _mm512_cmp_ps_mask::<_CMP_GE_OQ>(x, c.switch_logit)
    } else {
        0
    }
}

/// The logarithm, the weight and the gradient from the first half's values: `(log, weight,
/// grad)`, the loss being `-log * weight`.
#[target_feature(enable = "avx512f,avx512dq")]
#[inline]
fn second_half<const GRAD: bool, const MARGIN: bool>(
    c: &Consts,
    n_neg: u32,
    n_pos: u32,
    x: __m512,
    y: __m512,
    m: &Mid,
) -> (__m512, __m512, __m512) {
    let one = _mm512_set1_ps(1.0);
    let pos = _mm512_cmp_ps_mask::<_CMP_EQ_OQ>(y, one);
    let log = ln(m.log_arg);
    let (w_neg, dw_neg) = pow_deriv(n_neg, m.base);
    let (w_pos, dw_pos) = pow_deriv(n_pos, m.base);
    let confident = confident::<MARGIN>(c, pos, x);
    let weight = _mm512_mask_mov_ps(_mm512_mask_blend_ps(pos, w_neg, w_pos), confident, one);
    if !GRAD {
        return (log, weight, _mm512_setzero_ps());
    }
    let dw = _mm512_mask_blend_ps(pos, dw_neg, dw_pos);
    let d = _mm512_fmsub_ps(m.a, weight, _mm512_mul_ps(log, _mm512_mul_ps(m.t, dw)));
    let grad = _mm512_mul_ps(d, _mm512_mask_blend_ps(pos, c.scale, c.neg_scale));
    (log, weight, grad)
}

#[cfg(test)]
mod tests {
    use super::super::tests::supported;
    use super::*;
    use crate::kernels::loss::cpu::soft_tests::inputs;
    use crate::kernels::loss::cpu::{ConstPow, IntPow};
    use crate::loss::{AsymmetricLossConfig, LossParams};

    /// How much the gradient of the binary loop moves when the logarithm's argument moves by two
    /// ulp of 1. Where that argument is within an ulp or two of 1 (large `|x|`), the two loops'
    /// sigmoids (a division here, `rcp14` and a Newton step there, from exponentials that agree
    /// to an ulp) may round to neighbouring floats, which changes the logarithm by that much: the
    /// gradient's term `ln(arg) t dw` then differs by about `2^-23 t dw`.
    fn log_ulp_effect(p: &LossParams, scale: f32, x: f32, y: f32) -> f32 {
        let sigmoid = |z: f64| 1.0 / (1.0 + (-z).exp());
        let t_dw = if y == 1.0 {
            let pr = sigmoid(x as f64 - p.pos_margin as f64);
            let g = p.gamma_pos as f64;
            g * pr * (1.0 - pr).powf(g)
        } else {
            let s = sigmoid(x as f64);
            let q = s - p.neg_margin as f64;
            let g = p.gamma_neg as f64;
            if q > 0.0 {
                g * s * (1.0 - s) * q.powf(g - 1.0)
            } else {
                0.0
            }
        };
        (2f64.powi(-23) * t_dw * scale as f64) as f32
    }

    fn check<N: Pow, Q: Pow>(config: AsymmetricLossConfig, pow_neg: N, pow_pos: Q) {
        let p = LossParams::from_config(&config);
        let k = Elem {
            p: p.clone(),
            scale: 0.25,
            pow_neg,
            pow_pos,
            classes: 7,
        };
        for n in [0, 1, 15, 16, 17, 255, 256, 257, 1000] {
            let (x, y) = inputs(n, &p);
            let mut g = vec![f32::NAN; n];
            // SAFETY: AVX-512 checked by the caller; equal lengths; integer exponents.
            let (sum, done) = unsafe {
                if p.pos_margin > 0.0 {
                    run_binary::<N, Q, true, true, false>(&k, 0, &x, &y, &mut g, &mut [])
                } else {
                    run_binary::<N, Q, true, false, false>(&k, 0, &x, &y, &mut g, &mut [])
                }
            };
            let (fwd, _) = unsafe {
                if p.pos_margin > 0.0 {
                    run_binary::<N, Q, false, true, false>(&k, 0, &x, &y, &mut [], &mut [])
                } else {
                    run_binary::<N, Q, false, false, false>(&k, 0, &x, &y, &mut [], &mut [])
                }
            };
            assert_eq!(done, n);
            let mut want_sum = 0.0f64;
            for i in 0..n {
                let (l, d) = if p.pos_margin > 0.0 {
                    k.elem_binary::<true, true, true>(x[i], y[i], 1.0, 1.0)
                } else {
                    k.elem_binary::<true, false, true>(x[i], y[i], 1.0, 1.0)
                };
                want_sum += l as f64;
                let tol = 1e-6 * d.abs() + 1e-30 + log_ulp_effect(&p, k.scale, x[i], y[i]);
                assert!(
                    (g[i] - d).abs() <= tol,
                    "{config:?} n={n} x={} y={}: grad {} vs {d}",
                    x[i],
                    y[i],
                    g[i]
                );
            }
            for got in [sum, fwd] {
                assert!(
                    (got - want_sum).abs() <= 1e-6 * want_sum.abs() + 1e-9,
                    "{config:?} n={n}: loss {got} vs {want_sum}"
                );
            }
        }
    }

    #[test]
    fn matches_the_scalar_loop_for_every_preset() {
        if !supported() {
            return;
        }
        check(AsymmetricLossConfig::bce(), ConstPow::<0>, ConstPow::<0>);
        check(AsymmetricLossConfig::focal(), ConstPow::<3>, ConstPow::<3>);
        check(
            AsymmetricLossConfig::asymmetric(),
            ConstPow::<4>,
            ConstPow::<0>,
        );
        check(
            AsymmetricLossConfig::proposed(),
            ConstPow::<4>,
            ConstPow::<3>,
        );
        let odd = AsymmetricLossConfig::proposed()
            .with_gamma_neg(1.0)
            .with_gamma_pos(6.0);
        check(odd, IntPow(1), IntPow(6));
        let no_switch = AsymmetricLossConfig::bce().with_pos_margin(0.5);
        check(no_switch, IntPow(2), IntPow(0));
    }

    #[test]
    fn stops_at_the_first_vector_with_a_soft_target() {
        if !supported() {
            return;
        }
        let p = LossParams::from_config(&AsymmetricLossConfig::proposed());
        let k = Elem {
            p: p.clone(),
            scale: 1.0,
            pow_neg: ConstPow::<4>,
            pow_pos: ConstPow::<3>,
            classes: 7,
        };
        for (n, soft_at, stop) in [(100, 37, 32), (100, 96, 96), (20, 19, 16), (5, 0, 0)] {
            let (x, mut y) = inputs(n, &p);
            y[soft_at] = 0.5;
            let mut g = vec![f32::NAN; n];
            // SAFETY: AVX-512 checked above; equal lengths; integer exponents.
            let (_, done) =
                unsafe { run_binary::<_, _, true, true, false>(&k, 0, &x, &y, &mut g, &mut []) };
            assert_eq!(done, stop, "n={n}, soft target at {soft_at}");
            assert!(g[..stop].iter().all(|v| v.is_finite()));
            assert!(
                g[stop..].iter().all(|v| v.is_nan()),
                "nothing written past {stop}"
            );
        }
    }
}
