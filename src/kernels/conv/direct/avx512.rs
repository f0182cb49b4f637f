//! The AVX-512 tiles of the direct convolution: one block of 16 channels per vector.

use std::arch::x86_64::*;

use super::{Args, L, PREFETCH};

/// Output positions per register tile.
const TILE: usize = 14;

/// Output-channel blocks per task: two, 28 accumulators with a tile of 14 positions.
pub(super) const GROUP: usize = 2;

/// Row `a.oh`, all `wo` positions, for `blocks` output blocks (at most [`GROUP`]).
///
/// # Safety
///
/// The CPU has AVX-512F; `a` addresses buffers as [`run`](super::run) lays them out.
pub(super) unsafe fn row(a: &Args, wo: usize, blocks: usize) {
    let mut ow = 0;
    while ow < wo {
        let width = [TILE, 7, 1]
            .into_iter()
            .find(|&u| u <= wo - ow)
            .unwrap_or(1);
        // SAFETY: forwarded from the caller; `ow + width <= wo`.
        unsafe { tile_of(a, ow, width, blocks) };
        ow += width;
    }
}

/// [`tile`] for `width` positions (14, 7 or 1) and `blocks` output blocks (1 or 2).
///
/// # Safety
///
/// As [`tile`].
unsafe fn tile_of(a: &Args, ow: usize, width: usize, blocks: usize) {
    // SAFETY: forwarded from the caller.
    unsafe {
        match (width, blocks) {
            (TILE, 2) => tile::<TILE, 2>(a, ow),
            (TILE, _) => tile::<TILE, 1>(a, ow),
            (7, 2) => tile::<7, 2>(a, ow),
            (7, _) => tile::<7, 1>(a, ow),
            (_, 2) => tile::<1, 2>(a, ow),
            _ => tile::<1, 1>(a, ow),
        }
    }
}

/// `U` output positions from `ow` of row `oh`, for `B` (1 or 2) output-channel blocks.
///
/// # Safety
///
/// The CPU has AVX-512F; `a` addresses buffers as [`run`](super::run) lays them out, with
/// `ow + U` at most the row's width.
#[target_feature(enable = "avx512f")]
unsafe fn tile<const U: usize, const B: usize>(a: &Args, ow: usize) {
    // acc[u][b]: position u of the tile, output-channel block b.
    let mut acc = [[_mm512_setzero_ps(); B]; U];
    if a.accumulate {
        for (u, acc) in acc.iter_mut().enumerate() {
            for (b, v) in acc.iter_mut().enumerate() {
                // SAFETY: inside the output rows, as the caller says.
                *v = unsafe { _mm512_loadu_ps(a.y.add(b * a.y_next + (ow + u) * L)) };
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
                    let mut wv = [_mm512_setzero_ps(); B];
                    for (b, v) in wv.iter_mut().enumerate() {
                        *v = unsafe { _mm512_loadu_ps(wk.add(b * a.w_next + ic * L)) };
                        let ahead = wk.wrapping_add(b * a.w_next + ic * L + PREFETCH);
                        _mm_prefetch::<_MM_HINT_T0>(ahead.cast());
                    }
                    for (u, acc) in acc.iter_mut().enumerate() {
                        let xv = _mm512_set1_ps(unsafe { *xk.add(u * L + ic) });
                        for (a, &w) in acc.iter_mut().zip(&wv) {
                            *a = _mm512_fmadd_ps(xv, w, *a);
                        }
                    }
                }
            }
        }
    }
    for (u, acc) in acc.iter().enumerate() {
        for (b, &v) in acc.iter().enumerate() {
            // SAFETY: inside the output rows, as the caller says.
            unsafe { _mm512_storeu_ps(a.y.add(b * a.y_next + (ow + u) * L), v) };
        }
    }
    // The epilogue reads the sums back from L1 rather than finishing them in registers: with
    // the epilogue's vectors live beside the 28 accumulators, the compiler spilled every
    // accumulator to the stack after each FMA of the loop above, which halved its speed.
    if a.bias.is_some() || a.residual.is_some() || a.slope.is_some() {
        for u in 0..U {
            for b in 0..B {
                let at = b * a.y_next + (ow + u) * L;
                // SAFETY: inside the output rows and the epilogue's buffers, as the caller says.
                unsafe {
                    let v = _mm512_loadu_ps(a.y.add(at));
                    _mm512_storeu_ps(a.y.add(at), finish(a, b, at, v));
                }
            }
        }
    }
}

/// The epilogue on the sums `v` of output block `b` stored at `at` from the first block's row.
///
/// # Safety
///
/// As [`tile`].
#[target_feature(enable = "avx512f")]
#[inline]
unsafe fn finish(a: &Args, b: usize, at: usize, mut v: __m512) -> __m512 {
    if let Some(bias) = a.bias {
        // SAFETY: the bias holds whole blocks, as the caller says.
        v = _mm512_add_ps(v, unsafe { _mm512_loadu_ps(bias.add(b * L)) });
    }
    if let Some(residual) = a.residual {
        // SAFETY: the residual has the output's layout, as the caller says.
        v = _mm512_add_ps(v, unsafe { _mm512_loadu_ps(residual.add(at)) });
    }
    if let Some(slope) = a.slope {
        let negative = _mm512_cmp_ps_mask::<_CMP_LT_OQ>(v, _mm512_setzero_ps());
        v = _mm512_mask_mul_ps(v, negative, v, _mm512_set1_ps(slope));
    }
    v
}
