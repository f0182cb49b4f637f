//! The soft-target loop written with AVX2 and FMA intrinsics, for label smoothing (where every
//! target is soft) on CPUs without AVX-512.
//!
//! The loop of [`avx512::run_soft`](super::avx512::run_soft) on 8 lanes: a block is done in
//! phases, each a loop of independent iterations over the block (the sigmoids and the
//! logarithms' arguments, the three logarithms, the focusing weight and the outputs), which keeps
//! the out-of-order core fed where one chain of an element's work would leave it waiting. The
//! exponential and the logarithm are the scalar loop's polynomials on the float bits (AVX2 has
//! no `getexp`, `getmant` or `scalef`), the selects are blends, and the sigmoids' reciprocals are
//! divisions, so that the results follow the scalar loop's to an ulp or two.

use std::arch::x86_64::*;

use super::{Elem, Pow, BLOCK, LN2_HI, LN2_LO, LN_POLY, LN_POLY_HEAD, LOG2E, MAX_EXP};

/// `f32` lanes of a vector.
const LANES: usize = 8;
/// Vectors per block.
const VECS: usize = BLOCK / LANES;

/// The sum of the per-element losses of `x` against targets `y` of any value in `[0, 1]` and,
/// when `GRAD`, the scaled gradient written to `g`: the general formula of
/// [`Elem::elem`](super::Elem::elem), with the focusing weight `B^g = exp(g ln B)` for every
/// element (also where a target is 0 or 1, which the scalar loop gives its term's own power:
/// the same value to a few ulp). The first element is of class `col`; with `W` the per-class
/// weights apply; when `l` is not empty the per-element losses are written there.
///
/// # Safety
///
/// The CPU must support AVX2 and FMA; `y.len() == x.len()`, `g.len() == x.len()` when `GRAD`,
/// and `l` empty or as long as `x`.
#[target_feature(enable = "avx2,fma")]
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
    let mut mid = [Mid::default(); VECS];
    let mut logs = [Logs::default(); VECS];
    let n = x.len();
    let mut total = _mm256_setzero_pd();
    let mut start = 0;
    while start < n {
        let len = BLOCK.min(n - start);
        let vecs = len.div_ceil(LANES);
        if W {
            k.fill_weights(col + start, &mut cw_buf[..len], &mut pw_buf[..len]);
        }
        for (j, m) in mid.iter_mut().enumerate().take(vecs) {
            let at = start + j * LANES;
            let mask = lane_mask(len, j);
            // SAFETY: the masked lanes are within the block, inside every slice; the weight
            // buffers hold BLOCK values.
            let (xv, yv, pw) = unsafe {
                (
                    _mm256_maskload_ps(xp.add(at), mask),
                    _mm256_maskload_ps(yp.add(at), mask),
                    _mm256_loadu_ps(pw_buf.as_ptr().add(j * LANES)),
                )
            };
            *m = first::<GRAD, MARGIN, W>(&c, xv, yv, pw);
        }
        for (m, lg) in mid.iter().zip(logs.iter_mut()).take(vecs) {
            *lg = logarithms(m);
        }
        let mut acc = _mm256_setzero_ps();
        for (j, (m, lg)) in mid.iter().zip(&logs).enumerate().take(vecs) {
            let at = start + j * LANES;
            let mask = lane_mask(len, j);
            // SAFETY: the weight buffer holds BLOCK values.
            let cw = unsafe { _mm256_loadu_ps(cw_buf.as_ptr().add(j * LANES)) };
            let (loss, grad) = last::<GRAD, W>(&c, m, lg, cw);
            acc = _mm256_add_ps(acc, _mm256_and_ps(loss, _mm256_castsi256_ps(mask)));
            if GRAD {
                // SAFETY: as for the loads; g has the length of x when GRAD.
                unsafe { _mm256_maskstore_ps(gp.add(at), mask, grad) };
            }
            if out {
                // SAFETY: as for the loads; l has the length of x when not empty.
                unsafe { _mm256_maskstore_ps(lp.add(at), mask, loss) };
            }
        }
        let lo = _mm256_cvtps_pd(_mm256_castps256_ps128(acc));
        let hi = _mm256_cvtps_pd(_mm256_extractf128_ps::<1>(acc));
        total = _mm256_add_pd(total, _mm256_add_pd(lo, hi));
        start += len;
    }
    let mut lanes = [0.0f64; 4];
    // SAFETY: the array holds 4 values.
    unsafe { _mm256_storeu_pd(lanes.as_mut_ptr(), total) };
    lanes.iter().sum()
}

/// The lanes of vector `j` within a block of `len` elements (none past its end), as a mask of
/// all-ones lanes for `maskload` and `maskstore`.
#[target_feature(enable = "avx2")]
#[inline]
fn lane_mask(len: usize, j: usize) -> __m256i {
    let left = len.saturating_sub(j * LANES).min(LANES) as i32;
    _mm256_cmpgt_epi32(
        _mm256_set1_epi32(left),
        _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7),
    )
}

/// The parameters broadcast to every lane.
struct Consts {
    neg_margin: __m256,
    eps: __m256,
    switch_logit: __m256,
    neg_scale: __m256,
    /// `1 - smoothing` and `smoothing / 2`: `y' = y keep + shift`.
    keep: __m256,
    shift: __m256,
    gamma_pos: __m256,
    gamma_neg: __m256,
    /// `exp(pos_margin)`.
    exp_margin: __m256,
    /// The focusing weights are constants of the backward pass.
    detach: bool,
}

impl Consts {
    #[target_feature(enable = "avx2")]
    fn new<N, Q>(k: &Elem<N, Q>) -> Self {
        let sm = k.p.smoothing;
        Self {
            neg_margin: _mm256_set1_ps(k.p.neg_margin),
            eps: _mm256_set1_ps(k.p.eps),
            switch_logit: _mm256_set1_ps(k.p.switch_logit),
            neg_scale: _mm256_set1_ps(-k.scale),
            keep: _mm256_set1_ps(1.0 - sm),
            shift: _mm256_set1_ps(0.5 * sm),
            gamma_pos: _mm256_set1_ps(k.p.gamma_pos),
            gamma_neg: _mm256_set1_ps(k.p.gamma_neg),
            exp_margin: _mm256_set1_ps(k.p.pos_margin.exp()),
            detach: k.p.detach_focusing,
        }
    }
}

/// What the first phase hands on for 8 lanes.
#[derive(Clone, Copy)]
struct Mid {
    /// The logarithms' arguments `max(1 - q, eps)` and `max(p, eps)`.
    neg_arg: __m256,
    pos_arg: __m256,
    /// The focusing weight's base `B` and exponent `g`.
    base: __m256,
    gamma: __m256,
    /// The cross-entropy's coefficients `y pw` and `1 - y`.
    y_pos: __m256,
    y_neg: __m256,
    /// `d ce / dx` and `dB / dx` (0 where not needed).
    d_ce: __m256,
    d_base: __m256,
}

/// What the second phase hands on: the cross-entropy `ce` and `ln B`.
#[derive(Clone, Copy)]
struct Logs {
    ce: __m256,
    log_base: __m256,
}

zeroed_default!(Mid, Logs);

/// `mask ? a : b` lane-wise, for a mask of all-ones or all-zeros lanes.
#[target_feature(enable = "avx")]
#[inline]
fn select(mask: __m256, a: __m256, b: __m256) -> __m256 {
    _mm256_blendv_ps(b, a, mask)
}

/// `mask ? a : 0` lane-wise.
#[target_feature(enable = "avx")]
#[inline]
fn keep(mask: __m256, a: __m256) -> __m256 {
    _mm256_and_ps(mask, a)
}

/// The first phase for 8 lanes: the sigmoids, the logarithms' arguments, the weight's base and
/// exponent and, when `GRAD`, the derivatives that need no logarithm (the formulas of
/// [`avx512::run_soft`](super::avx512::run_soft)'s first phase).
#[target_feature(enable = "avx2,fma")]
#[inline]
fn first<const GRAD: bool, const MARGIN: bool, const W: bool>(
    c: &Consts,
    x: __m256,
    y_raw: __m256,
    pw: __m256,
) -> Mid {
    let zero = _mm256_setzero_ps();
    let one = _mm256_set1_ps(1.0);
    let y = _mm256_fmadd_ps(y_raw, c.keep, c.shift);
    let y_neg = _mm256_sub_ps(one, y);

    // With the margin both sigmoids come from e = exp(-x) (s = 1 / (1 + e), s(-x) = e s, and
    // the same with e exp(pos_margin)); without it e = exp(-|x|) keeps full relative precision.
    let e = if MARGIN {
        // At most exp(87), so that 1 / (1 + e) stays a normal float.
        exp(_mm256_min_ps(_mm256_sub_ps(zero, x), _mm256_set1_ps(87.0)))
    } else {
        exp(_mm256_or_ps(x, _mm256_set1_ps(-0.0)))
    };
    let big = _mm256_div_ps(one, _mm256_add_ps(one, e));
    let small = _mm256_mul_ps(e, big);
    let (s, s_comp) = if MARGIN {
        (big, small)
    } else {
        let nonneg = _mm256_cmp_ps::<_CMP_GE_OQ>(x, zero);
        (select(nonneg, big, small), select(nonneg, small, big))
    };
    // Negative part: q = max(s - m, 0), 1 - q.
    let active = _mm256_cmp_ps::<_CMP_GT_OQ>(s, c.neg_margin);
    let q = keep(active, _mm256_sub_ps(s, c.neg_margin));
    let one_minus_q = select(active, _mm256_add_ps(s_comp, c.neg_margin), one);
    // Positive part, at x - pos_margin.
    let (p, p_comp) = if MARGIN {
        let f = _mm256_min_ps(_mm256_mul_ps(e, c.exp_margin), _mm256_set1_ps(MAX_EXP));
        let p = _mm256_div_ps(one, _mm256_add_ps(one, f));
        (p, _mm256_mul_ps(f, p))
    } else {
        (s, s_comp)
    };
    let gamma_pos = if MARGIN {
        let confident = _mm256_cmp_ps::<_CMP_GE_OQ>(x, c.switch_logit);
        _mm256_andnot_ps(confident, c.gamma_pos)
    } else {
        c.gamma_pos
    };
    let y_pos = if W { _mm256_mul_ps(y, pw) } else { y };
    let mut m = Mid {
        neg_arg: _mm256_max_ps(one_minus_q, c.eps),
        pos_arg: _mm256_max_ps(p, c.eps),
        base: _mm256_fmadd_ps(y, p_comp, _mm256_mul_ps(y_neg, q)),
        gamma: _mm256_fmadd_ps(y, gamma_pos, _mm256_mul_ps(y_neg, c.gamma_neg)),
        y_pos,
        y_neg,
        d_ce: zero,
        d_base: zero,
    };
    if GRAD {
        // d log(1 - q)/dx = -[unclamped] dq/dx / (1 - q), d log p/dx = [unclamped] (1 - p),
        // dB/dx = -y p (1 - p) + (1 - y) dq/dx, with dq/dx = [active] s (1 - s).
        let dq = keep(active, _mm256_mul_ps(s, s_comp));
        let unclamped_neg = _mm256_cmp_ps::<_CMP_GE_OQ>(one_minus_q, c.eps);
        let d_log_neg = keep(unclamped_neg, _mm256_div_ps(dq, one_minus_q));
        let unclamped_pos = _mm256_cmp_ps::<_CMP_GE_OQ>(p, c.eps);
        let d_log_pos = keep(unclamped_pos, p_comp);
        m.d_ce = _mm256_fmsub_ps(y_pos, d_log_pos, _mm256_mul_ps(y_neg, d_log_neg));
        if !c.detach {
            m.d_base = _mm256_fnmadd_ps(y, _mm256_mul_ps(p, p_comp), _mm256_mul_ps(y_neg, dq));
        }
    }
    m
}

/// The second phase: the three logarithms, independent of each other.
#[target_feature(enable = "avx2,fma")]
#[inline]
fn logarithms(m: &Mid) -> Logs {
    let neg = _mm256_mul_ps(m.y_neg, ln(m.neg_arg));
    let positive = _mm256_cmp_ps::<_CMP_GT_OQ>(m.base, _mm256_setzero_ps());
    let safe = select(positive, m.base, _mm256_set1_ps(1.0));
    Logs {
        ce: _mm256_fmadd_ps(m.y_pos, ln(m.pos_arg), neg),
        log_base: ln(safe),
    }
}

/// The last phase: the focusing weight `w = B^g = exp(g ln B)`, the loss and the scaled
/// gradient of 8 lanes.
#[target_feature(enable = "avx2,fma")]
#[inline]
fn last<const GRAD: bool, const W: bool>(
    c: &Consts,
    m: &Mid,
    lg: &Logs,
    cw: __m256,
) -> (__m256, __m256) {
    let zero = _mm256_setzero_ps();
    let one = _mm256_set1_ps(1.0);
    let positive = _mm256_cmp_ps::<_CMP_GT_OQ>(m.base, zero);
    // No focusing (g = 0, as for a confident positive): the weight is 1, without gradient.
    let no_focus = _mm256_cmp_ps::<_CMP_EQ_OQ>(m.gamma, zero);
    let w = keep(positive, exp(_mm256_mul_ps(m.gamma, lg.log_base)));
    let w = select(no_focus, one, w);
    let cew = _mm256_mul_ps(lg.ce, w);
    let loss = if W {
        _mm256_sub_ps(zero, _mm256_mul_ps(cw, cew))
    } else {
        _mm256_sub_ps(zero, cew)
    };
    if !GRAD {
        return (loss, zero);
    }
    let d = _mm256_mul_ps(m.d_ce, w);
    let d = if c.detach {
        d
    } else {
        let safe = select(positive, m.base, one);
        let dw = _mm256_mul_ps(m.gamma, _mm256_div_ps(w, safe));
        let dw = keep(_mm256_andnot_ps(no_focus, positive), dw);
        _mm256_fmadd_ps(lg.ce, _mm256_mul_ps(dw, m.d_base), d)
    };
    let d = if W { _mm256_mul_ps(d, cw) } else { d };
    (loss, _mm256_mul_ps(d, c.neg_scale))
}

/// `e^x` for 8 lanes: the scalar [`exp`](super::exp) (Cephes polynomial, about 1 ulp) on
/// vectors, `x` clamped to `[-87, 88]`.
#[target_feature(enable = "avx2,fma")]
#[inline]
fn exp(x: __m256) -> __m256 {
    let f = _mm256_fmadd_ps;
    let magic = _mm256_set1_ps(super::ROUND_MAGIC);
    let x = _mm256_min_ps(
        _mm256_max_ps(x, _mm256_set1_ps(-87.0)),
        _mm256_set1_ps(88.0),
    );
    let t = f(x, _mm256_set1_ps(LOG2E), magic);
    let n = _mm256_sub_ps(t, magic);
    let ni = _mm256_sub_epi32(_mm256_castps_si256(t), _mm256_castps_si256(magic));
    let r = _mm256_fnmadd_ps(n, _mm256_set1_ps(LN2_LO), {
        _mm256_fnmadd_ps(n, _mm256_set1_ps(LN2_HI), x)
    });
    let z = _mm256_mul_ps(r, r);
    let mut poly = f(
        _mm256_set1_ps(1.987_569_1e-4),
        r,
        _mm256_set1_ps(1.398_199_9e-3),
    );
    for coef in [8.333_452e-3, 4.166_579_6e-2, 1.666_666_5e-1, 0.5] {
        poly = f(poly, r, _mm256_set1_ps(coef));
    }
    let poly = _mm256_add_ps(f(poly, z, r), _mm256_set1_ps(1.0));
    _mm256_castsi256_ps(_mm256_add_epi32(
        _mm256_castps_si256(poly),
        _mm256_slli_epi32::<23>(ni),
    ))
}

/// `ln(x)` for 8 lanes of normal positive `x`: the scalar [`ln`](super::ln) (Cephes polynomial,
/// about 1 ulp) on vectors.
#[target_feature(enable = "avx2,fma")]
#[inline]
fn ln(x: __m256) -> __m256 {
    let f_ = _mm256_fmadd_ps;
    let one = _mm256_set1_ps(1.0);
    let bits = _mm256_castps_si256(x);
    let e = _mm256_sub_epi32(
        _mm256_and_si256(_mm256_srli_epi32::<23>(bits), _mm256_set1_epi32(0xff)),
        _mm256_set1_epi32(126),
    );
    let m = _mm256_castsi256_ps(_mm256_or_si256(
        _mm256_and_si256(bits, _mm256_set1_epi32(0x007f_ffff)),
        _mm256_set1_epi32(0x3f00_0000),
    ));
    // Below sqrt(1/2), use 2m and e - 1.
    let small = _mm256_cmp_ps::<_CMP_LT_OQ>(m, _mm256_set1_ps(std::f32::consts::FRAC_1_SQRT_2));
    let e = _mm256_sub_ps(_mm256_cvtepi32_ps(e), keep(small, one));
    let f = _mm256_sub_ps(_mm256_add_ps(m, keep(small, m)), one);
    let z = _mm256_mul_ps(f, f);
    let mut poly = _mm256_set1_ps(LN_POLY_HEAD);
    for c in LN_POLY {
        poly = f_(poly, f, _mm256_set1_ps(c));
    }
    let poly = _mm256_mul_ps(_mm256_mul_ps(poly, f), z);
    let y = f_(_mm256_set1_ps(-0.5), z, f_(e, _mm256_set1_ps(LN2_LO), poly));
    f_(e, _mm256_set1_ps(LN2_HI), _mm256_add_ps(f, y))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn supported() -> bool {
        let ok = is_x86_feature_detected!("avx2") && is_x86_feature_detected!("fma");
        if !ok {
            println!("skipped: no AVX2 and FMA on this CPU");
        }
        ok
    }

    /// The vector `exp` and `ln` give the scalar loop's values to the bit, over their ranges.
    #[test]
    fn exp_and_ln_are_the_scalar_ones() {
        if !supported() {
            return;
        }
        let check =
            |values: Vec<f32>, vector: unsafe fn(__m256) -> __m256, scalar: fn(f32) -> f32| {
                for chunk in values.chunks(LANES) {
                    let mut lanes = [1.0f32; LANES];
                    lanes[..chunk.len()].copy_from_slice(chunk);
                    let mut out = [0.0f32; LANES];
                    // SAFETY: AVX2 and FMA checked above; both arrays hold 8 values.
                    unsafe {
                        _mm256_storeu_ps(out.as_mut_ptr(), vector(_mm256_loadu_ps(lanes.as_ptr())))
                    };
                    for (&v, &got) in chunk.iter().zip(&out) {
                        assert_eq!(
                            got.to_bits(),
                            scalar(v).to_bits(),
                            "at {v}: {got} vs {}",
                            scalar(v)
                        );
                    }
                }
            };
        let every = |lo: f32, hi: f32| -> Vec<f32> {
            (lo.to_bits().min(hi.to_bits())..=lo.to_bits().max(hi.to_bits()))
                .step_by(101)
                .map(f32::from_bits)
                .collect()
        };
        let mut args = every(-0.0, -100.0);
        args.extend(every(0.0, 100.0));
        check(args, exp, super::super::exp::<true>);
        check(
            every(f32::MIN_POSITIVE, f32::MAX),
            ln,
            super::super::ln::<true>,
        );
    }
}
