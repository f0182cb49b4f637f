//! The binary-target loop written with AVX-512 intrinsics.
//!
//! LLVM's vectorisation of the portable loop keeps a division, emulates `ln` and `exp` with
//! integer bit tricks and spills to the stack; here the same formulas use the instructions made
//! for them: `getexp`/`getmant` split the logarithm's argument, `scalef` rebuilds the
//! exponential, `rcp14` and one Newton step replace the division, and the branch selects are mask
//! registers. The check that targets are 0 or 1 is two compares per vector, and the loss is
//! accumulated in registers.

use std::arch::x86_64::*;

use super::{fill_weights, Elem, Pow, LN2_HI, LN2_LO, LN_POLY, LN_POLY_HEAD, LOG2E};

/// `f32` lanes of a vector.
const LANES: usize = 16;
/// Vectors per block: each phase of the loop runs over a block before the next phase starts.
const VECS: usize = 16;
/// Elements per block; their losses are summed in `f32` before joining the `f64` total.
const BLOCK: usize = LANES * VECS;
/// `2^125`: a bound of `exp(pos_margin - x)` that keeps `1 / (1 + f)` a normal float.
const MAX_EXP: f32 = 4.253_529_6e37;
/// How many blocks ahead the inputs are prefetched.
const PREFETCH_BLOCKS: usize = 2;

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
pub(super) unsafe fn run_binary<
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
            let first = (col + start) % k.classes;
            fill_weights(
                &k.p,
                k.classes,
                first,
                &mut cw_buf[..len],
                &mut pw_buf[..len],
            );
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
pub(super) unsafe fn run_soft<
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
    let mut start = 0;
    while start < n {
        let len = BLOCK.min(n - start);
        if W {
            let first = (col + start) % k.classes;
            fill_weights(
                &k.p,
                k.classes,
                first,
                &mut cw_buf[..len],
                &mut pw_buf[..len],
            );
        }
        let mut acc = _mm512_setzero_ps();
        for j in 0..len.div_ceil(LANES) {
            let mask = lane_mask(len, j);
            let at = start + j * LANES;
            prefetch::<GRAD>(xp, yp, gp, at);
            // SAFETY: the masked lanes are within the block, inside every slice; the weight
            // buffers hold BLOCK values.
            let (xv, yv, cw, pw) = unsafe {
                (
                    _mm512_maskz_loadu_ps(mask, xp.add(at)),
                    _mm512_maskz_loadu_ps(mask, yp.add(at)),
                    _mm512_loadu_ps(cw_buf.as_ptr().add(j * LANES)),
                    _mm512_loadu_ps(pw_buf.as_ptr().add(j * LANES)),
                )
            };
            let (loss, grad) = soft_vector::<GRAD, MARGIN, W>(&c, &v, xv, yv, cw, pw);
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

/// The lanes of vector `j` within a block of `len` elements (none past its end).
#[inline(always)]
fn lane_mask(len: usize, j: usize) -> __mmask16 {
    let left = len.saturating_sub(j * LANES);
    if left >= LANES {
        u16::MAX
    } else {
        (1u16 << left) - 1
    }
}

/// Fetches ahead the cache lines of the inputs (and of the gradient, when `GRAD`) that the
/// vector at element `at` will need two blocks on: the hardware prefetcher alone leaves the loops
/// waiting on memory.
#[target_feature(enable = "avx512f")]
#[inline]
fn prefetch<const GRAD: bool>(xp: *const f32, yp: *const f32, gp: *mut f32, at: usize) {
    let ahead = at + PREFETCH_BLOCKS * BLOCK;
    _mm_prefetch::<_MM_HINT_T0>(xp.wrapping_add(ahead).cast());
    _mm_prefetch::<_MM_HINT_T0>(yp.wrapping_add(ahead).cast());
    if GRAD {
        _mm_prefetch::<_MM_HINT_ET0>(gp.wrapping_add(ahead).cast_const().cast());
    }
}

/// Adds a block's 16 lane sums, summed in `f32`, to the `f64` running total.
#[target_feature(enable = "avx512f,avx512dq")]
#[inline]
fn add_block(total: &mut [__m512d; 2], acc: __m512) {
    let lo = _mm512_cvtps_pd(_mm512_castps512_ps256(acc));
    let hi = _mm512_cvtps_pd(_mm512_extractf32x8_ps::<1>(acc));
    total[0] = _mm512_add_pd(total[0], lo);
    total[1] = _mm512_add_pd(total[1], hi);
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

/// `(sigmoid(z), sigmoid(-z))` for 16 lanes, from one `exp(-|z|)` and one reciprocal, each to
/// full relative precision.
#[target_feature(enable = "avx512f,avx512dq")]
#[inline]
fn sigmoid_pair(z: __m512) -> (__m512, __m512) {
    let minus_abs = _mm512_or_ps(z, _mm512_set1_ps(-0.0));
    let e = exp(_mm512_max_ps(minus_abs, _mm512_set1_ps(-87.0)));
    let big = recip(_mm512_add_ps(_mm512_set1_ps(1.0), e));
    let small = _mm512_mul_ps(e, big);
    let nonneg = _mm512_cmp_ps_mask::<_CMP_GE_OQ>(z, _mm512_setzero_ps());
    (
        _mm512_mask_blend_ps(nonneg, small, big),
        _mm512_mask_blend_ps(nonneg, big, small),
    )
}

/// The loss and scaled gradient of 16 lanes of any targets (see [`run_soft`]).
#[target_feature(enable = "avx512f,avx512dq")]
#[inline]
fn soft_vector<const GRAD: bool, const MARGIN: bool, const W: bool>(
    c: &Consts,
    v: &SoftConsts,
    x: __m512,
    y_raw: __m512,
    cw: __m512,
    pw: __m512,
) -> (__m512, __m512) {
    let zero = _mm512_setzero_ps();
    let one = _mm512_set1_ps(1.0);
    let y = _mm512_fmadd_ps(y_raw, v.keep, v.shift);
    let y_neg = _mm512_sub_ps(one, y);

    // With the margin, both sigmoids (at x and at x - pos_margin) come from one exp(-x), clamped
    // so that 1 + e and its reciprocal stay normal floats: s = 1 / (1 + e), s(-x) = e s, and the
    // same with e exp(pos_margin). That loses the last bit of s(-x) near 1, which only shows
    // where 1 - q is near 1 without a probability margin; without the logit margin the binary
    // loop's exp(-|x|) keeps full relative precision for one exponential too.
    let (e, s, s_comp) = if MARGIN {
        let e = exp(_mm512_min_ps(
            _mm512_max_ps(_mm512_sub_ps(zero, x), _mm512_set1_ps(-87.0)),
            _mm512_set1_ps(87.0),
        ));
        let s = recip(_mm512_add_ps(one, e));
        (e, s, _mm512_mul_ps(e, s))
    } else {
        let (s, s_comp) = sigmoid_pair(x);
        (zero, s, s_comp)
    };
    // Negative part: q = max(s - m, 0), 1 - q.
    let active = _mm512_cmp_ps_mask::<_CMP_GT_OQ>(s, c.neg_margin);
    let q = _mm512_maskz_sub_ps(active, s, c.neg_margin);
    let one_minus_q = _mm512_mask_add_ps(one, active, s_comp, c.neg_margin);
    let log_neg = ln(_mm512_max_ps(one_minus_q, c.eps));
    // Positive part, at x - pos_margin.
    let (p, p_comp) = if MARGIN {
        let f = _mm512_min_ps(_mm512_mul_ps(e, v.exp_margin), _mm512_set1_ps(MAX_EXP));
        let p = recip(_mm512_add_ps(one, f));
        (p, _mm512_mul_ps(f, p))
    } else {
        (s, s_comp)
    };
    let log_pos = ln(_mm512_max_ps(p, c.eps));
    let confident = if MARGIN {
        _mm512_cmp_ps_mask::<_CMP_GE_OQ>(x, c.switch_logit)
    } else {
        0
    };

    // The focusing weight w = B^g = exp(g ln B) (its derivative g w / B is taken below, where
    // the weight is not detached).
    let gamma_pos = _mm512_mask_mov_ps(v.gamma_pos, confident, zero);
    let base = _mm512_fmadd_ps(y, p_comp, _mm512_mul_ps(y_neg, q));
    let gamma = _mm512_fmadd_ps(y, gamma_pos, _mm512_mul_ps(y_neg, v.gamma_neg));
    let positive = _mm512_cmp_ps_mask::<_CMP_GT_OQ>(base, zero);
    let safe = _mm512_mask_mov_ps(one, positive, base);
    let w = exp(_mm512_max_ps(
        _mm512_mul_ps(gamma, ln(safe)),
        _mm512_set1_ps(-87.0),
    ));
    let no_focus = _mm512_cmp_ps_mask::<_CMP_EQ_OQ>(gamma, zero);
    let mut w = _mm512_mask_mov_ps(_mm512_maskz_mov_ps(positive, w), no_focus, one);
    // Hard targets (only without smoothing) take their term's own integer power, as the binary
    // loop has it: (mask of positives, mask of negatives, d(q^n)/dq, d((1 - p)^n)/d(1 - p)).
    let mut hard = None;
    if let Some((n_neg, n_pos)) = v.int_exps {
        let hard_pos = _mm512_cmp_ps_mask::<_CMP_EQ_OQ>(y, one);
        let hard_neg = _mm512_cmp_ps_mask::<_CMP_EQ_OQ>(y, zero);
        if hard_pos | hard_neg != 0 {
            let (wn, dwn) = pow_deriv(n_neg, q);
            let (wp, dwp) = pow_deriv(n_pos, p_comp);
            let wp = _mm512_mask_mov_ps(wp, confident, one);
            let dwp = _mm512_mask_mov_ps(dwp, confident, zero);
            w = _mm512_mask_mov_ps(_mm512_mask_mov_ps(w, hard_neg, wn), hard_pos, wp);
            hard = Some((hard_pos, hard_neg, dwn, dwp));
        }
    }

    let y_pos = if W { _mm512_mul_ps(y, pw) } else { y };
    let ce = _mm512_fmadd_ps(y_pos, log_pos, _mm512_mul_ps(y_neg, log_neg));
    let cew = _mm512_mul_ps(ce, w);
    let loss = if W {
        _mm512_sub_ps(zero, _mm512_mul_ps(cw, cew))
    } else {
        _mm512_sub_ps(zero, cew)
    };
    if !GRAD {
        return (loss, zero);
    }

    // d log(1 - q)/dx = -[unclamped] dq/dx / (1 - q), d log p/dx = [unclamped] (1 - p),
    // dB/dx = -y p (1 - p) + (1 - y) dq/dx, with dq/dx = [active] s (1 - s).
    let dq = _mm512_maskz_mul_ps(active, s, s_comp);
    let unclamped_neg = _mm512_cmp_ps_mask::<_CMP_GE_OQ>(one_minus_q, c.eps);
    let d_log_neg = _mm512_maskz_mul_ps(unclamped_neg, _mm512_sub_ps(zero, dq), recip(one_minus_q));
    let unclamped_pos = _mm512_cmp_ps_mask::<_CMP_GE_OQ>(p, c.eps);
    let d_log_pos = _mm512_maskz_mov_ps(unclamped_pos, p_comp);
    let d_ce = _mm512_fmadd_ps(y_pos, d_log_pos, _mm512_mul_ps(y_neg, d_log_neg));
    let d = _mm512_mul_ps(d_ce, w);
    let d = if c.detach {
        d
    } else {
        let dw = _mm512_maskz_mul_ps(positive & !no_focus, gamma, _mm512_mul_ps(w, recip(safe)));
        let dw = match hard {
            Some((hard_pos, hard_neg, dwn, dwp)) => {
                _mm512_mask_mov_ps(_mm512_mask_mov_ps(dw, hard_neg, dwn), hard_pos, dwp)
            }
            None => dw,
        };
        let d_base = _mm512_fnmadd_ps(y, _mm512_mul_ps(p, p_comp), _mm512_mul_ps(y_neg, dq));
        _mm512_fmadd_ps(ce, _mm512_mul_ps(dw, d_base), d)
    };
    let d = if W { _mm512_mul_ps(d, cw) } else { d };
    (loss, _mm512_mul_ps(d, c.neg_scale))
}

/// The parameters broadcast to every lane.
struct Consts {
    pos_margin: __m512,
    neg_margin: __m512,
    eps: __m512,
    switch_logit: __m512,
    scale: __m512,
    neg_scale: __m512,
    /// The focusing weights are constants of the backward pass.
    detach: bool,
}

impl Consts {
    #[target_feature(enable = "avx512f")]
    fn new<N, Q>(k: &Elem<N, Q>) -> Self {
        Self {
            pos_margin: _mm512_set1_ps(k.p.pos_margin),
            neg_margin: _mm512_set1_ps(k.p.neg_margin),
            eps: _mm512_set1_ps(k.p.eps),
            switch_logit: _mm512_set1_ps(k.p.switch_logit),
            scale: _mm512_set1_ps(k.scale),
            neg_scale: _mm512_set1_ps(-k.scale),
            detach: k.p.detach_focusing,
        }
    }
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

impl Default for Mid {
    fn default() -> Self {
        // SAFETY: an all-zero bit pattern is a valid __m512; no instruction is executed.
        unsafe { std::mem::zeroed() }
    }
}

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

/// `(base^n, n base^(n - 1))` by square-and-multiply; `n` is the same in every lane (and a
/// constant after inlining for the presets), so its branches are free.
#[target_feature(enable = "avx512f")]
#[inline]
fn pow_deriv(n: u32, base: __m512) -> (__m512, __m512) {
    if n == 0 {
        return (_mm512_set1_ps(1.0), _mm512_setzero_ps());
    }
    let mut below: Option<__m512> = None;
    let mut square = base;
    let mut bits = n - 1;
    while bits != 0 {
        if bits & 1 == 1 {
            below = Some(match below {
                Some(b) => _mm512_mul_ps(b, square),
                None => square,
            });
        }
        bits >>= 1;
        if bits != 0 {
            square = _mm512_mul_ps(square, square);
        }
    }
    let below = below.unwrap_or(_mm512_set1_ps(1.0));
    (
        _mm512_mul_ps(below, base),
        _mm512_mul_ps(_mm512_set1_ps(n as f32), below),
    )
}

/// `1 / d`: the 14-bit estimate and one Newton step, to about 1 ulp.
#[target_feature(enable = "avx512f")]
#[inline]
fn recip(d: __m512) -> __m512 {
    let r0 = _mm512_rcp14_ps(d);
    let err = _mm512_fnmadd_ps(d, r0, _mm512_set1_ps(1.0));
    _mm512_fmadd_ps(r0, err, r0)
}

/// `e^a` for `a` in `[-87, 0]`: the Cephes polynomial of the scalar [`exp`](super::exp), with
/// the power of two applied by `scalef`.
#[target_feature(enable = "avx512f")]
#[inline]
fn exp(a: __m512) -> __m512 {
    let f = _mm512_fmadd_ps;
    let k = _mm512_roundscale_ps::<{ _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC }>(
        _mm512_mul_ps(a, _mm512_set1_ps(LOG2E)),
    );
    let r = _mm512_fnmadd_ps(k, _mm512_set1_ps(LN2_HI), a);
    let r = _mm512_fnmadd_ps(k, _mm512_set1_ps(LN2_LO), r);
    let z = _mm512_mul_ps(r, r);
    let mut p = _mm512_set1_ps(1.987_569_1e-4);
    for coef in [
        1.398_199_9e-3,
        8.333_452e-3,
        4.166_579_6e-2,
        1.666_666_5e-1,
        0.5,
    ] {
        p = f(p, r, _mm512_set1_ps(coef));
    }
    let p = _mm512_add_ps(f(p, z, r), _mm512_set1_ps(1.0));
    _mm512_scalef_ps(p, k)
}

/// `ln(v)` for normal positive `v`: the Cephes polynomial of the scalar [`ln`](super::ln), with
/// the exponent and mantissa split by `getexp` and `getmant`.
#[target_feature(enable = "avx512f")]
#[inline]
fn ln(v: __m512) -> __m512 {
    let f_ = _mm512_fmadd_ps;
    let one = _mm512_set1_ps(1.0);
    // v = m 2^(x + 1) with m in [0.5, 1); below sqrt(1/2), use 2m and 2^x.
    let m = _mm512_getmant_ps::<_MM_MANT_NORM_P5_1, _MM_MANT_SIGN_SRC>(v);
    let x = _mm512_getexp_ps(v);
    let small =
        _mm512_cmp_ps_mask::<_CMP_LT_OQ>(m, _mm512_set1_ps(std::f32::consts::FRAC_1_SQRT_2));
    let e = _mm512_mask_add_ps(x, !small, x, one);
    let f = _mm512_sub_ps(m, one);
    let f = _mm512_mask_add_ps(f, small, f, m);
    let z = _mm512_mul_ps(f, f);
    let mut p = _mm512_set1_ps(LN_POLY_HEAD);
    for coef in LN_POLY {
        p = f_(p, f, _mm512_set1_ps(coef));
    }
    let p = _mm512_mul_ps(_mm512_mul_ps(p, f), z);
    let y = f_(_mm512_set1_ps(-0.5), z, f_(e, _mm512_set1_ps(LN2_LO), p));
    f_(e, _mm512_set1_ps(LN2_HI), _mm512_add_ps(f, y))
}

#[cfg(test)]
mod tests {
    use super::super::{ConstPow, FloatPow, IntPow};
    use super::*;
    use crate::loss::{AsymmetricLossConfig, LossParams};

    fn supported() -> bool {
        let ok = is_x86_feature_detected!("avx512f") && is_x86_feature_detected!("avx512dq");
        if !ok {
            println!("skipped: no AVX-512 on this CPU");
        }
        ok
    }

    /// Logits over the whole range, with exact switch points, and targets alternating in runs.
    fn inputs(n: usize, p: &LossParams) -> (Vec<f32>, Vec<f32>) {
        let special = [
            0.0,
            p.switch_logit,
            p.pos_margin,
            -1e4,
            1e4,
            30.0,
            -30.0,
            88.0,
            -88.0,
        ];
        let x = (0..n)
            .map(|i| match i % 11 {
                j if j < special.len() && i % 3 == 0 => special[j],
                _ => ((i as f32 * 0.618_034).fract() - 0.5) * 60.0,
            })
            .collect();
        let y = (0..n).map(|i| ((i / 3 + i / 7) % 2) as f32).collect();
        (x, y)
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
                let tol = 1e-6 * d.abs() + 1e-30;
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

    /// The soft-target loop against the scalar general loop, element by element: soft, smoothed
    /// and hard targets, integer and fractional exponents, with and without the margin, the
    /// weights and the detached focusing.
    #[test]
    fn soft_loop_matches_the_scalar_loop() {
        if !supported() {
            return;
        }
        fn check<N: Pow, Q: Pow, const MARGIN: bool, const W: bool>(
            config: AsymmetricLossConfig,
            pow_neg: N,
            pow_pos: Q,
        ) {
            let classes = 7;
            let config = config
                .with_weight(W.then(|| (0..classes).map(|c| c as f64 * 0.3).collect()))
                .with_pos_weight(W.then(|| (0..classes).map(|c| 0.5 + c as f64).collect()));
            let p = LossParams::from_config(&config);
            assert_eq!(p.pos_margin > 0.0, MARGIN);
            let k = Elem {
                p: p.clone(),
                scale: 0.25,
                pow_neg,
                pow_pos,
                classes,
            };
            for n in [1, 16, 17, 300, 1000] {
                let (x, hard) = inputs(n, &p);
                // Every third target soft, the others hard.
                let y: Vec<f32> = hard
                    .iter()
                    .enumerate()
                    .map(|(i, &h)| {
                        if i % 3 == 0 {
                            (i as f32 * 0.377).fract()
                        } else {
                            h
                        }
                    })
                    .collect();
                let mut g = vec![f32::NAN; n];
                let mut l = vec![f32::NAN; n];
                // SAFETY: AVX-512 checked by the caller; equal lengths.
                let sum =
                    unsafe { run_soft::<N, Q, true, MARGIN, W>(&k, 0, &x, &y, &mut g, &mut l) };
                let fwd =
                    unsafe { run_soft::<N, Q, false, MARGIN, W>(&k, 0, &x, &y, &mut [], &mut []) };
                let mut want_sum = 0.0f64;
                for i in 0..n {
                    let (cw, pw) = if W {
                        (
                            p.weight.as_ref().unwrap()[i % classes],
                            p.pos_weight.as_ref().unwrap()[i % classes],
                        )
                    } else {
                        (1.0, 1.0)
                    };
                    let ys = y[i] * (1.0 - p.smoothing) + 0.5 * p.smoothing;
                    let (wl, wd) = k.elem::<true, MARGIN, true>(x[i], ys, cw, pw);
                    want_sum += wl as f64;
                    let what = format!("{config:?} n={n} x={} y={}", x[i], y[i]);
                    // exp(g ln B) against products: a few ulp of the exponent's argument; and
                    // an ulp of 1 where the margin's shared exponential rounds s(-x) near 1.
                    let close = |a: f32, b: f32| (a - b).abs() <= 2e-5 * b.abs() + 3e-7;
                    assert!(close(l[i], wl), "{what}: loss {} vs {wl}", l[i]);
                    assert!(close(g[i], wd), "{what}: grad {} vs {wd}", g[i]);
                }
                for got in [sum, fwd] {
                    assert!(
                        (got - want_sum).abs() <= 2e-5 * want_sum.abs() + 1e-9,
                        "{config:?} n={n}: loss {got} vs {want_sum}"
                    );
                }
            }
        }
        let proposed = AsymmetricLossConfig::proposed;
        check::<_, _, true, false>(proposed(), ConstPow::<4>, ConstPow::<3>);
        check::<_, _, true, true>(proposed().with_smoothing(0.1), ConstPow::<4>, ConstPow::<3>);
        check::<_, _, true, true>(
            proposed().with_smoothing(0.2).with_detach_focusing(true),
            ConstPow::<4>,
            ConstPow::<3>,
        );
        let timm = AsymmetricLossConfig::asymmetric().with_gamma_pos(1.0);
        check::<_, _, false, false>(timm.clone(), IntPow(4), IntPow(1));
        check::<_, _, false, true>(timm.with_smoothing(0.1), IntPow(4), IntPow(1));
        let fractional = AsymmetricLossConfig::bce()
            .with_gamma_neg(2.5)
            .with_gamma_pos(1.5)
            .with_smoothing(0.05);
        check::<_, _, false, true>(fractional, FloatPow(2.5), FloatPow(1.5));
        check::<_, _, false, false>(AsymmetricLossConfig::bce(), IntPow(0), IntPow(0));
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
