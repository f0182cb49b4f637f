//! The AVX-512 loop for targets of any value in `[0, 1]`.

use std::arch::x86_64::*;

use super::math::{exp, ln, pow_deriv, recip};
use super::{add_block, lane_mask, prefetch, Consts, BLOCK, LANES, VECS};
use crate::kernels::loss::cpu::{Elem, Pow, MAX_EXP};

/// The sum of the per-element losses of `x` against targets `y` of any value in `[0, 1]` (soft,
/// smoothed, or hard) and, when `GRAD`, the scaled gradient written to `g`: the general formula
/// of [`Elem::elem`](super::Elem::elem), timm's one focusing weight `B^g` of the mixed
/// cross-entropy, for any exponents. The first element is of class `col`; with `W` the per-class
/// weights apply; when `l` is not empty the per-element losses are written there.
///
/// With label smoothing every target is soft, so every element needs both logarithms and the
/// weight's power `exp(g ln B)`, whose exponent varies by element; hard targets (possible only
/// without smoothing) take their term's integer power where the exponents are integers, as the
/// binary loop does.
///
/// # Safety
///
/// The CPU must support AVX-512F and AVX-512DQ; `y.len() == x.len()`, `g.len() == x.len()`
/// when `GRAD`, and `l` empty or as long as `x`.
#[target_feature(enable = "avx512f,avx512dq")]
pub(in crate::kernels::loss::cpu) unsafe fn run_soft<
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
) -> f64 {
    debug_assert_eq!(x.len(), y.len());
    debug_assert!(!GRAD || g.len() == x.len());
    assert!(l.is_empty() || l.len() == x.len(), "losses length");
    let out = !l.is_empty();
    let (xp, yp, gp, lp) = (x.as_ptr(), y.as_ptr(), g.as_mut_ptr(), l.as_mut_ptr());
    let mut cw_buf = [1.0f32; BLOCK];
    let mut pw_buf = [1.0f32; BLOCK];
    let c = Consts::new(k);
    let sm = k.p.smoothing;
    let v = SoftConsts {
        keep: _mm512_set1_ps(1.0 - sm),
        shift: _mm512_set1_ps(0.5 * sm),
        gamma_pos: _mm512_set1_ps(k.p.gamma_pos),
        gamma_neg: _mm512_set1_ps(k.p.gamma_neg),
        exp_margin: _mm512_set1_ps(k.p.pos_margin.exp()),
        // Hard targets, and integer powers for them: only without smoothing.
        int_exps: if sm == 0.0 {
            k.pow_neg.int_exp().zip(k.pow_pos.int_exp())
        } else {
            None
        },
    };
    let n = x.len();
    let mut total = [_mm512_setzero_pd(); 2];
    let mut mid = [SoftMid::default(); VECS];
    let mut logs = [SoftLogs::default(); VECS];
    let mut start = 0;
    while start < n {
        let len = BLOCK.min(n - start);
        let vecs = len.div_ceil(LANES);
        if W {
            k.fill_weights(col + start, &mut cw_buf[..len], &mut pw_buf[..len]);
        }
        // As in `run_binary`, a block is done in phases, each a loop of independent iterations
        // with part of the chain: the sigmoids and the logarithms' arguments, the three
        // logarithms, the weight and the outputs.
        for (j, m) in mid.iter_mut().enumerate().take(vecs) {
            let at = start + j * LANES;
            prefetch::<GRAD>(xp, yp, gp, at);
            let mask = lane_mask(len, j);
            // SAFETY: the masked lanes are within the block, inside every slice; the weight
            // buffers hold BLOCK values.
            let (xv, yv, pw) = unsafe {
                (
                    _mm512_maskz_loadu_ps(mask, xp.add(at)),
                    _mm512_maskz_loadu_ps(mask, yp.add(at)),
                    _mm512_loadu_ps(pw_buf.as_ptr().add(j * LANES)),
                )
            };
            *m = soft_first::<GRAD, MARGIN, W>(&c, &v, xv, yv, pw);
        }
        for (m, lg) in mid.iter().zip(logs.iter_mut()).take(vecs) {
            *lg = soft_logs(m);
        }
        let mut acc = _mm512_setzero_ps();
        for (j, (m, lg)) in mid.iter().zip(&logs).enumerate().take(vecs) {
            let at = start + j * LANES;
            let mask = lane_mask(len, j);
            // SAFETY: the weight buffer holds BLOCK values.
            let cw = unsafe { _mm512_loadu_ps(cw_buf.as_ptr().add(j * LANES)) };
            let (loss, grad) = soft_last::<GRAD, W>(&c, &v, m, lg, cw);
            acc = _mm512_mask_add_ps(acc, mask, acc, loss);
            if GRAD {
                // SAFETY: as for the loads; g has the length of x when GRAD.
                unsafe { _mm512_mask_storeu_ps(gp.add(at), mask, grad) };
            }
            if out {
                // SAFETY: as for the loads; l has the length of x when not empty.
                unsafe { _mm512_mask_storeu_ps(lp.add(at), mask, loss) };
            }
        }
        add_block(&mut total, acc);
        start += len;
    }
    _mm512_reduce_add_pd(_mm512_add_pd(total[0], total[1]))
}

/// What [`run_soft`] broadcasts beside [`Consts`].
struct SoftConsts {
    /// `1 - smoothing` and `smoothing / 2`: `y' = y keep + shift`.
    keep: __m512,
    shift: __m512,
    gamma_pos: __m512,
    gamma_neg: __m512,
    /// `exp(pos_margin)`.
    exp_margin: __m512,
    /// The integer exponents `(gamma_neg, gamma_pos)` for hard targets, when they are integers
    /// and targets can be hard (no smoothing).
    int_exps: Option<(u32, u32)>,
}

/// The exponential the sigmoids of [`soft_first`] come from: `exp(-x)` clamped to
/// `[exp(-87), exp(87)]` with the logit margin (both sigmoids come from it), else `exp(-|x|)`.
#[target_feature(enable = "avx512f,avx512dq")]
#[inline]
fn soft_exp<const MARGIN: bool>(x: __m512) -> __m512 {
    let (lo, hi) = (_mm512_set1_ps(-87.0), _mm512_set1_ps(87.0));
    if MARGIN {
        exp(_mm512_min_ps(
            _mm512_max_ps(_mm512_sub_ps(_mm512_setzero_ps(), x), lo),
            hi,
        ))
    } else {
        exp(_mm512_max_ps(_mm512_or_ps(x, _mm512_set1_ps(-0.0)), lo))
    }
}

/// What the first phase of [`run_soft`] hands on for 16 lanes.
#[derive(Clone, Copy)]
struct SoftMid {
    /// The logarithms' arguments `max(1 - q, eps)` and `max(p, eps)`.
    neg_arg: __m512,
    pos_arg: __m512,
    /// The focusing weight's base `B` (0 where the weight is 0) and exponent `g`.
    base: __m512,
    gamma: __m512,
    /// The cross-entropy's coefficients `y pw` and `1 - y`.
    y_pos: __m512,
    y_neg: __m512,
    /// `d ce / dx` and `dB / dx` (0 where not needed).
    d_ce: __m512,
    d_base: __m512,
}

/// What the second phase of [`run_soft`] hands on: the cross-entropy `ce` and `ln B`.
#[derive(Clone, Copy)]
struct SoftLogs {
    ce: __m512,
    log_base: __m512,
}

zeroed_default!(SoftMid, SoftLogs);

/// The first phase of [`run_soft`] for 16 lanes: the sigmoids, the logarithms' arguments, the
/// weight's base and exponent and, when `GRAD`, the derivatives that need no logarithm.
#[target_feature(enable = "avx512f,avx512dq")]
#[inline]
fn soft_first<const GRAD: bool, const MARGIN: bool, const W: bool>(
    c: &Consts,
    v: &SoftConsts,
    x: __m512,
    y_raw: __m512,
    pw: __m512,
) -> SoftMid {
    let zero = _mm512_setzero_ps();
    let one = _mm512_set1_ps(1.0);
    let y = _mm512_fmadd_ps(y_raw, v.keep, v.shift);
    let y_neg = _mm512_sub_ps(one, y);

    // With the margin, both sigmoids (at x and at x - pos_margin) come from e = exp(-x): s =
    // 1 / (1 + e), s(-x) = e s, and the same with e exp(pos_margin). That loses the last bit of
    // s(-x) near 1, which only shows where 1 - q is near 1 without a probability margin; without
    // the logit margin e = exp(-|x|) keeps full relative precision, as in the binary loop.
    let e = soft_exp::<MARGIN>(x);
    let big = recip(_mm512_add_ps(one, e));
    let small = _mm512_mul_ps(e, big);
    let (s, s_comp) = if MARGIN {
        (big, small)
    } else {
        let nonneg = _mm512_cmp_ps_mask::<_CMP_GE_OQ>(x, zero);
        (
            _mm512_mask_blend_ps(nonneg, small, big),
            _mm512_mask_blend_ps(nonneg, big, small),
        )
    };
    // Negative part: q = max(s - m, 0), 1 - q.
    let active = _mm512_cmp_ps_mask::<_CMP_GT_OQ>(s, c.neg_margin);
    let q = _mm512_maskz_sub_ps(active, s, c.neg_margin);
    let one_minus_q = _mm512_mask_add_ps(one, active, s_comp, c.neg_margin);
    // Positive part, at x - pos_margin.
    let (p, p_comp) = if MARGIN {
        let f = _mm512_min_ps(_mm512_mul_ps(e, v.exp_margin), _mm512_set1_ps(MAX_EXP));
        let p = recip(_mm512_add_ps(one, f));
        (p, _mm512_mul_ps(f, p))
    } else {
        (s, s_comp)
    };
    let confident = if MARGIN {
        _mm512_cmp_ps_mask::<_CMP_GE_OQ>(x, c.switch_logit)
    } else {
        0
    };
    let gamma_pos = _mm512_mask_mov_ps(v.gamma_pos, confident, zero);
    let y_pos = if W { _mm512_mul_ps(y, pw) } else { y };
    let mut m = SoftMid {
        neg_arg: _mm512_max_ps(one_minus_q, c.eps),
        pos_arg: _mm512_max_ps(p, c.eps),
        base: _mm512_fmadd_ps(y, p_comp, _mm512_mul_ps(y_neg, q)),
        gamma: _mm512_fmadd_ps(y, gamma_pos, _mm512_mul_ps(y_neg, v.gamma_neg)),
        y_pos,
        y_neg,
        d_ce: zero,
        d_base: zero,
    };
    if GRAD {
        // d log(1 - q)/dx = -[unclamped] dq/dx / (1 - q), d log p/dx = [unclamped] (1 - p),
        // dB/dx = -y p (1 - p) + (1 - y) dq/dx, with dq/dx = [active] s (1 - s).
        let dq = _mm512_maskz_mul_ps(active, s, s_comp);
        let unclamped_neg = _mm512_cmp_ps_mask::<_CMP_GE_OQ>(one_minus_q, c.eps);
        let d_log_neg =
            _mm512_maskz_mul_ps(unclamped_neg, _mm512_sub_ps(zero, dq), recip(one_minus_q));
        let unclamped_pos = _mm512_cmp_ps_mask::<_CMP_GE_OQ>(p, c.eps);
        let d_log_pos = _mm512_maskz_mov_ps(unclamped_pos, p_comp);
        m.d_ce = _mm512_fmadd_ps(y_pos, d_log_pos, _mm512_mul_ps(y_neg, d_log_neg));
        if !c.detach {
            m.d_base = _mm512_fnmadd_ps(y, _mm512_mul_ps(p, p_comp), _mm512_mul_ps(y_neg, dq));
        }
    }
    m
}

/// The second phase of [`run_soft`]: the three logarithms, independent of each other.
#[target_feature(enable = "avx512f,avx512dq")]
#[inline]
fn soft_logs(m: &SoftMid) -> SoftLogs {
    let neg = _mm512_mul_ps(m.y_neg, ln(m.neg_arg));
    let positive = _mm512_cmp_ps_mask::<_CMP_GT_OQ>(m.base, _mm512_setzero_ps());
    let safe = _mm512_mask_mov_ps(_mm512_set1_ps(1.0), positive, m.base);
    SoftLogs {
        ce: _mm512_fmadd_ps(m.y_pos, ln(m.pos_arg), neg),
        log_base: ln(safe),
    }
}

/// The last phase of [`run_soft`]: the focusing weight `w = B^g = exp(g ln B)`, the loss and the
/// scaled gradient of 16 lanes.
#[target_feature(enable = "avx512f,avx512dq")]
#[inline]
fn soft_last<const GRAD: bool, const W: bool>(
    c: &Consts,
    v: &SoftConsts,
    m: &SoftMid,
    lg: &SoftLogs,
    cw: __m512,
) -> (__m512, __m512) {
    let zero = _mm512_setzero_ps();
    let one = _mm512_set1_ps(1.0);
    let positive = _mm512_cmp_ps_mask::<_CMP_GT_OQ>(m.base, zero);
    let no_focus = _mm512_cmp_ps_mask::<_CMP_EQ_OQ>(m.gamma, zero);
    let w = exp(_mm512_max_ps(
        _mm512_mul_ps(m.gamma, lg.log_base),
        _mm512_set1_ps(-87.0),
    ));
    let mut w = _mm512_maskz_mov_ps(positive, w);
    // Hard targets (only without smoothing) take their term's own integer power, as the binary
    // loop has it, B being q or 1 - p there: (mask of hard targets, their weight's derivative).
    let mut hard = None;
    if let Some((n_neg, n_pos)) = v.int_exps {
        let hard_pos = _mm512_cmp_ps_mask::<_CMP_EQ_OQ>(m.y_neg, zero);
        let hard_neg = _mm512_cmp_ps_mask::<_CMP_EQ_OQ>(m.y_neg, one);
        if hard_pos | hard_neg != 0 {
            let (wn, dwn) = pow_deriv(n_neg, m.base);
            let (wp, dwp) = pow_deriv(n_pos, m.base);
            w = _mm512_mask_mov_ps(_mm512_mask_mov_ps(w, hard_neg, wn), hard_pos, wp);
            let dw = _mm512_mask_blend_ps(hard_pos, dwn, dwp);
            hard = Some((hard_pos | hard_neg, dw));
        }
    }
    // No focusing (g = 0, as for a confident positive): the weight is 1, without gradient.
    let w = _mm512_mask_mov_ps(w, no_focus, one);

    let cew = _mm512_mul_ps(lg.ce, w);
    let loss = if W {
        _mm512_sub_ps(zero, _mm512_mul_ps(cw, cew))
    } else {
        _mm512_sub_ps(zero, cew)
    };
    if !GRAD {
        return (loss, zero);
    }
    let d = _mm512_mul_ps(m.d_ce, w);
    let d = if c.detach {
        d
    } else {
        let safe = _mm512_mask_mov_ps(one, positive, m.base);
        let dw = _mm512_mul_ps(m.gamma, _mm512_mul_ps(w, recip(safe)));
        let dw = match hard {
            Some((hard, dw_hard)) => _mm512_mask_mov_ps(dw, hard, dw_hard),
            None => dw,
        };
        let dw = _mm512_maskz_mov_ps(positive & !no_focus, dw);
        _mm512_fmadd_ps(lg.ce, _mm512_mul_ps(dw, m.d_base), d)
    };
    let d = if W { _mm512_mul_ps(d, cw) } else { d };
    (loss, _mm512_mul_ps(d, c.neg_scale))
}
