//! `exp`, `ln`, reciprocals and integer powers on 16 lanes.

use std::arch::x86_64::*;

use crate::kernels::loss::cpu::{LN2_HI, LN2_LO, LOG2E};

/// `(base^n, n base^(n - 1))` by square-and-multiply; `n` is the same in every lane (and a
/// constant after inlining for the presets), so its branches are free.
#[target_feature(enable = "avx512f")]
#[inline]
pub(super) fn pow_deriv(n: u32, base: __m512) -> (__m512, __m512) {
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
pub(super) fn recip(d: __m512) -> __m512 {
    let r0 = _mm512_rcp14_ps(d);
    let err = _mm512_fnmadd_ps(d, r0, _mm512_set1_ps(1.0));
    _mm512_fmadd_ps(r0, err, r0)
}

/// `1.5 * 2^19`: adding it rounds a float below `2^18` to a multiple of `1/16`, held in the low
/// mantissa bits.
const ROUND_SIXTEENTHS: f32 = 786_432.0;

/// `2^(j/16)` for `j` in `0..16`, rounded to `f32`.
const EXP2_SIXTEENTHS: [f32; 16] = [
    1.0,
    1.044_273_7,
    1.090_507_7,
    1.138_788_6,
    1.189_207_1,
    1.241_857_8,
    1.296_839_6,
    1.354_255_6,
    std::f32::consts::SQRT_2,
    1.476_826_2,
    1.542_210_8,
    1.610_490_3,
    1.681_792_9,
    1.756_252_2,
    1.834_008_1,
    1.915_206_6,
];

/// `e^a` for `a` in `[-87, 87]`, to about 1 ulp: `a = (k + j/16) ln 2 + r` with `|r| <= ln 2 / 32`,
/// `e^a = 2^k 2^(j/16) e^r`, the middle factor from a table (one permute) and `e^r` a cubic.
#[target_feature(enable = "avx512f")]
#[inline]
pub(super) fn exp(a: __m512) -> __m512 {
    let f = _mm512_fmadd_ps;
    let magic = _mm512_set1_ps(ROUND_SIXTEENTHS);
    // a log2(e) rounded to sixteenths, whose low 4 mantissa bits are j.
    let rounded = f(a, _mm512_set1_ps(LOG2E), magic);
    let k = _mm512_sub_ps(rounded, magic);
    let r = _mm512_fnmadd_ps(k, _mm512_set1_ps(LN2_HI), a);
    let r = _mm512_fnmadd_ps(k, _mm512_set1_ps(LN2_LO), r);
    let p = f(_mm512_set1_ps(1.0 / 6.0), r, _mm512_set1_ps(0.5));
    let p = f(f(p, r, _mm512_set1_ps(1.0)), r, _mm512_set1_ps(1.0));
    // SAFETY: the table holds 16 values.
    let table = unsafe { _mm512_loadu_ps(EXP2_SIXTEENTHS.as_ptr()) };
    let frac = _mm512_permutexvar_ps(_mm512_castps_si512(rounded), table);
    // scalef multiplies by 2^floor(k), and floor(k) is the integer part of k.
    _mm512_scalef_ps(_mm512_mul_ps(frac, p), k)
}

/// For the 32 intervals of a mantissa `m` in `[0.75, 1.5)` picked by its top 5 bits (`[1 + i/32,
/// 1 + (i+1)/32)` for `i < 16`, `[(1 + i/32) / 2, (1 + (i+1)/32) / 2)` above): `1/c` for their
/// midpoint `c` rounded to `f32`, except 1 for the two intervals next to 1, whose reduced
/// arguments `m - 1` are then exact (see [`ln`]).
const LN_RECIPS: [f32; 32] = [
    1.0,
    0.955_223_86,
    0.927_536_25,
    0.901_408_43,
    0.876_712_3,
    0.853_333_35,
    0.831_168_83,
    0.810_126_6,
    0.790_123_46,
    0.771_084_3,
    0.752_941_2,
    0.735_632_2,
    0.719_101_13,
    0.703_296_7,
    0.688_172_04,
    0.673_684_24,
    1.319_587_6,
    1.292_929_3,
    1.267_326_7,
    1.242_718_5,
    1.219_047_7,
    1.196_261_6,
    1.174_311_9,
    1.153_153_2,
    1.132_743_4,
    1.113_043_4,
    1.094_017_1,
    1.075_630_3,
    1.057_851_2,
    1.040_650_4,
    1.024,
    1.0,
];

/// `-ln` of [`LN_RECIPS`], rounded to `f32`.
const LN_LOGS: [f32; 32] = [
    0.0,
    0.045_809_56,
    0.075_223_4,
    0.103_796_81,
    0.131_576_36,
    0.158_605_01,
    0.184_922_34,
    0.210_564_75,
    0.235_566_06,
    0.259_957_55,
    0.283_768_15,
    0.307_025_05,
    0.329_753_28,
    0.351_976_4,
    0.373_716_4,
    0.394_993_75,
    -0.277_319_25,
    -0.256_910_4,
    -0.236_909_73,
    -0.217_301_28,
    -0.198_069_94,
    -0.179_201_4,
    -0.160_682_34,
    -0.142_500_09,
    -0.124_642_44,
    -0.107_098_09,
    -0.089_856_38,
    -0.072_906_82,
    -0.056_239_676,
    -0.039_845_873,
    -0.023_716_575,
    0.0,
];

/// `ln(v)` for positive finite `v`, to about 1 ulp: `v = 2^e m` with `m` in `[0.75, 1.5)` (split
/// by `getexp` and `getmant`), `ln v = e ln 2 + ln c + ln(1 + r)` with `r = m/c - 1`,
/// `|r| <= 1/32`, `1/c` and `ln c` from tables (two permutes) and `ln(1 + r)` a degree-5
/// polynomial. Near 1, `e` and `ln c` are 0 and `r` exact: the result keeps its relative
/// precision, and nowhere does `e ln 2 + ln c` cancel.
#[target_feature(enable = "avx512f")]
#[inline]
pub(super) fn ln(v: __m512) -> __m512 {
    let f = _mm512_fmadd_ps;
    let one = _mm512_set1_ps(1.0);
    let m = _mm512_getmant_ps::<_MM_MANT_NORM_P75_1P5, _MM_MANT_SIGN_SRC>(v);
    // getexp is floor(log2 v), one less than e where m is below 1.
    let below = _mm512_cmp_ps_mask::<_CMP_LT_OQ>(m, one);
    let e = _mm512_getexp_ps(v);
    let e = _mm512_mask_add_ps(e, below, e, one);
    // The top 5 bits of the mantissa pick the interval (permutex2var reads the low 5 bits).
    let i = _mm512_srli_epi32::<18>(_mm512_castps_si512(m));
    // SAFETY: each table holds 32 values, 16 in each half.
    let (recip, log) = unsafe {
        (
            _mm512_permutex2var_ps(
                _mm512_loadu_ps(LN_RECIPS.as_ptr()),
                i,
                _mm512_loadu_ps(LN_RECIPS.as_ptr().add(16)),
            ),
            _mm512_permutex2var_ps(
                _mm512_loadu_ps(LN_LOGS.as_ptr()),
                i,
                _mm512_loadu_ps(LN_LOGS.as_ptr().add(16)),
            ),
        )
    };
    let r = _mm512_fmsub_ps(m, recip, one);
    let r2 = _mm512_mul_ps(r, r);
    let p = f(_mm512_set1_ps(0.2), r, _mm512_set1_ps(-0.25));
    let p = f(f(p, r, _mm512_set1_ps(1.0 / 3.0)), r, _mm512_set1_ps(-0.5));
    let p = f(p, r2, r);
    _mm512_add_ps(f(e, _mm512_set1_ps(std::f32::consts::LN_2), log), p)
}

#[cfg(test)]
mod tests {
    use super::super::tests::supported;
    use super::*;

    /// `f` on 16 lanes against `want` in `f64`, over `values`: the worst error in ulp of the result.
    fn worst_ulp(values: &[f32], f: unsafe fn(__m512) -> __m512, want: fn(f64) -> f64) -> f64 {
        let mut worst = 0.0f64;
        for chunk in values.chunks(16) {
            let mut lanes = [1.0f32; 16];
            lanes[..chunk.len()].copy_from_slice(chunk);
            let mut out = [0.0f32; 16];
            // SAFETY: AVX-512 checked by the caller; both arrays hold 16 values.
            unsafe { _mm512_storeu_ps(out.as_mut_ptr(), f(_mm512_loadu_ps(lanes.as_ptr()))) };
            for (&v, &got) in chunk.iter().zip(&out) {
                let w = want(v as f64);
                let ulp = (w.abs() as f32).max(f32::MIN_POSITIVE);
                let ulp = (f32::from_bits(ulp.to_bits() + 1) - ulp) as f64;
                worst = worst.max((got as f64 - w).abs() / ulp);
            }
        }
        worst
    }

    /// Every 97th float of a range, and the floats next to 1 and to the table's boundaries.
    fn sweep(lo: f32, hi: f32) -> Vec<f32> {
        let (a, b) = (lo.to_bits(), hi.to_bits());
        let mut v: Vec<f32> = (a.min(b)..=a.max(b))
            .step_by(97)
            .map(f32::from_bits)
            .collect();
        for i in 0..=64 {
            let edge = 1.0 + i as f32 / 64.0;
            for d in -40i32..=40 {
                v.push(f32::from_bits((edge.to_bits() as i32 + d) as u32));
            }
        }
        v.retain(|&x| x >= lo.min(hi) && x <= hi.max(lo));
        v
    }

    #[test]
    fn ln_and_exp_are_within_two_ulp() {
        if !supported() {
            return;
        }
        let ln_err = worst_ulp(&sweep(1e-30, 3e38), ln, f64::ln);
        assert!(ln_err <= 2.0, "ln: {ln_err} ulp");
        let exp_err = worst_ulp(&sweep(-87.0, 87.0), exp, f64::exp);
        assert!(exp_err <= 2.0, "exp: {exp_err} ulp");
        println!("worst error: ln {ln_err:.2} ulp, exp {exp_err:.2} ulp");
    }

    /// The tables are what their documentation says, to the last bit.
    #[test]
    fn tables_hold_their_values() {
        for (j, &v) in EXP2_SIXTEENTHS.iter().enumerate() {
            assert_eq!(v, 2f64.powf(j as f64 / 16.0) as f32, "2^({j}/16)");
        }
        for (i, (&recip, &log)) in LN_RECIPS.iter().zip(&LN_LOGS).enumerate() {
            let c = match i {
                0 | 31 => 1.0,
                1..=15 => 1.0 + (i as f64 + 0.5) / 32.0,
                _ => (1.0 + (i as f64 + 0.5) / 32.0) / 2.0,
            };
            assert_eq!(recip, (1.0 / c) as f32, "1/c of interval {i}");
            assert_eq!(log, -(recip as f64).ln() as f32, "ln c of interval {i}");
        }
    }
}
