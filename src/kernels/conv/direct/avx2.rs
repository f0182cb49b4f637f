//! The AVX2 tiles of the direct convolution: one block of 16 channels per two vectors.

use std::arch::x86_64::*;

use super::{Args, L, PREFETCH};

/// Output-channel blocks per task: one, its 16 channels in two vectors.
pub(super) const GROUP: usize = 1;
/// Output positions per register tile: 6 positions by 2 vectors take 12 of the 16 registers,
/// the weights 2 more, the broadcast input one.
const TILE: usize = 6;
/// `f32` lanes of a vector: half a block.
const HALF: usize = L / 2;

/// Row `a.oh`, all `wo` positions, for one output block.
///
/// # Safety
///
/// The CPU has AVX2 and FMA; `a` addresses buffers as [`run`](super::run) lays them out.
pub(super) unsafe fn row(a: &Args, wo: usize, blocks: usize) {
    debug_assert_eq!(blocks, GROUP);
    let mut ow = 0;
    while ow < wo {
        let width = width(wo - ow);
        // SAFETY: forwarded from the caller; `ow + width <= wo`.
        unsafe {
            match width {
                TILE => tile::<TILE>(a, ow),
                5 => tile::<5>(a, ow),
                4 => tile::<4>(a, ow),
                3 => tile::<3>(a, ow),
                2 => tile::<2>(a, ow),
                _ => tile::<1>(a, ow),
            }
        }
        ow += width;
    }
}

/// The width of the next tile with `left` positions left in the row: full tiles, but the last
/// two of a row share what is left when full tiles would leave fewer than 4 positions, since a
/// tile of fewer than 4 positions has too few accumulators to keep both FMA units busy.
fn width(left: usize) -> usize {
    match left {
        7..=9 => left / 2 + left % 2,
        _ => left.min(TILE),
    }
}

/// `U` output positions from `ow` of row `oh`, for one output-channel block.
///
/// # Safety
///
/// The CPU has AVX2 and FMA; `a` addresses buffers as [`run`](super::run) lays them out, with
/// `ow + U` at most the row's width.
#[target_feature(enable = "avx2,fma")]
unsafe fn tile<const U: usize>(a: &Args, ow: usize) {
    // acc[u][h]: position u of the tile, half h of the block's channels.
    let mut acc = [[_mm256_setzero_ps(); 2]; U];
    if a.accumulate {
        for (u, acc) in acc.iter_mut().enumerate() {
            for (h, v) in acc.iter_mut().enumerate() {
                // SAFETY: inside the output row, as the caller says.
                *v = unsafe { _mm256_loadu_ps(a.y.add((ow + u) * L + h * HALF)) };
            }
        }
    }
    let plane = a.hp * a.wp * L;
    for cb in 0..a.cbn {
        for ky in 0..a.kh {
            for kx in 0..a.kw {
                // SAFETY (all reads): inside the blocked input and weights, as the caller says.
                let xk = unsafe { a.x.add(cb * plane + ((a.oh + ky) * a.wp + ow + kx) * L) };
                let wk = unsafe { a.w.add(((cb * a.kh + ky) * a.kw + kx) * L * L) };
                for ic in 0..L {
                    let wv = unsafe {
                        [
                            _mm256_loadu_ps(wk.add(ic * L)),
                            _mm256_loadu_ps(wk.add(ic * L + HALF)),
                        ]
                    };
                    _mm_prefetch::<_MM_HINT_T0>(wk.wrapping_add(ic * L + PREFETCH).cast());
                    for (u, acc) in acc.iter_mut().enumerate() {
                        let xv = _mm256_broadcast_ss(unsafe { &*xk.add(u * L + ic) });
                        for (a, &w) in acc.iter_mut().zip(&wv) {
                            *a = _mm256_fmadd_ps(xv, w, *a);
                        }
                    }
                }
            }
        }
    }
    for (u, acc) in acc.iter().enumerate() {
        for (h, &v) in acc.iter().enumerate() {
            // SAFETY: inside the output row, as the caller says.
            unsafe { _mm256_storeu_ps(a.y.add((ow + u) * L + h * HALF), v) };
        }
    }
    // As on AVX-512, the epilogue reads the sums back rather than keep its vectors in registers
    // beside the accumulators.
    if a.bias.is_some() || a.residual.is_some() || a.slope.is_some() {
        for u in 0..U {
            for h in 0..2 {
                let at = (ow + u) * L + h * HALF;
                // SAFETY: inside the output row and the epilogue's buffers, as the caller says.
                unsafe {
                    let v = _mm256_loadu_ps(a.y.add(at));
                    _mm256_storeu_ps(a.y.add(at), finish(a, h, at, v));
                }
            }
        }
    }
}

/// The epilogue on the sums `v` of half `h` of the block, stored at `at` in the row.
///
/// # Safety
///
/// As [`tile`].
#[target_feature(enable = "avx2,fma")]
#[inline]
unsafe fn finish(a: &Args, h: usize, at: usize, mut v: __m256) -> __m256 {
    if let Some(bias) = a.bias {
        // SAFETY: the bias holds whole blocks, as the caller says.
        v = _mm256_add_ps(v, unsafe { _mm256_loadu_ps(bias.add(h * HALF)) });
    }
    if let Some(residual) = a.residual {
        // SAFETY: the residual has the output's layout, as the caller says.
        v = _mm256_add_ps(v, unsafe { _mm256_loadu_ps(residual.add(at)) });
    }
    if let Some(slope) = a.slope {
        let negative = _mm256_cmp_ps::<_CMP_LT_OQ>(v, _mm256_setzero_ps());
        v = _mm256_blendv_ps(v, _mm256_mul_ps(v, _mm256_set1_ps(slope)), negative);
    }
    v
}
