//! The loops written with AVX-512 intrinsics: one for targets of exactly 0 or 1 ([`binary`]),
//! one for any targets ([`soft`], every element with label smoothing), and the vector
//! `exp`, `ln` and reciprocal they share ([`math`]).
//!
//! LLVM's vectorisation of the portable loop keeps a division, emulates `ln` and `exp` with
//! integer bit tricks and spills to the stack; here the same formulas use the instructions made
//! for them: `getexp`/`getmant` split the logarithm's argument, `scalef` rebuilds the
//! exponential, permutes read small tables, `rcp14` and one Newton step replace the division, and
//! the branch selects are mask registers. Both loops do a block of 16 vectors in phases, each a
//! loop of independent iterations with part of an element's chain of dependent instructions,
//! which keeps the out-of-order core fed (see [`binary::run_binary`]).

use std::arch::x86_64::*;

use super::Elem;

mod binary;
mod math;
mod soft;

pub(super) use binary::run_binary;
pub(super) use soft::run_soft;

/// `f32` lanes of a vector.
const LANES: usize = 16;

/// Vectors per block: each phase of the loop runs over a block before the next phase starts.
const VECS: usize = 16;

/// Elements per block; their losses are summed in `f32` before joining the `f64` total.
const BLOCK: usize = LANES * VECS;

/// How many blocks ahead the inputs are prefetched.
const PREFETCH_BLOCKS: usize = 2;

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

#[cfg(test)]
mod tests {
    /// Whether this CPU runs the loops (tests say when they are skipped).
    pub(super) fn supported() -> bool {
        let ok = is_x86_feature_detected!("avx512f") && is_x86_feature_detected!("avx512dq");
        if !ok {
            println!("skipped: no AVX-512 on this CPU");
        }
        ok
    }
}
