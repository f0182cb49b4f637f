//! The forward convolution as GEMMs, and the one matrix-product call every convolution kernel
//! makes.

use rayon::prelude::*;

use crate::kernels::buffer::Scratch;

use super::geometry::Grid;
use super::layout::{channel_last_to_nchw, nchw_to_channel_last, transpose};

/// A strided `f32` matrix operand of [`matmul`]: element `(i, j)` at `ptr + i*row + j*col`.
#[derive(Clone, Copy)]
pub(super) struct Operand<P> {
    ptr: P,
    row: isize,
    col: isize,
}

impl<P> Operand<P> {
    /// The matrix at `ptr` with these row and column strides, in elements.
    pub(super) fn new(ptr: P, row: usize, col: usize) -> Self {
        let stride = |s: usize| isize::try_from(s).expect("a stride within an allocation");
        Operand {
            ptr,
            row: stride(row),
            col: stride(col),
        }
    }
}

/// `dst = lhs rhs`, or `dst += lhs rhs` when `accumulate`, for `lhs` of `m x k` and `rhs` of
/// `k x n`: the `gemm` crate's kernel, on rayon's threads when `parallel`.
///
/// # Safety
/// Every element that each operand addresses for its shape lies in one live allocation, and the
/// elements of `dst` are distinct and overlap neither input.
pub(super) unsafe fn matmul(
    [m, n, k]: [usize; 3],
    dst: Operand<*mut f32>,
    accumulate: bool,
    lhs: Operand<*const f32>,
    rhs: Operand<*const f32>,
    parallel: bool,
) {
    let parallelism = if parallel {
        gemm::Parallelism::Rayon(0)
    } else {
        gemm::Parallelism::None
    };
    // SAFETY: as the caller guarantees.
    unsafe {
        gemm::gemm(
            m,
            n,
            k,
            dst.ptr,
            dst.col,
            dst.row,
            accumulate,
            lhs.ptr,
            lhs.col,
            lhs.row,
            rhs.ptr,
            rhs.col,
            rhs.row,
            1.0,
            1.0,
            false,
            false,
            false,
            parallelism,
        );
    }
}

/// `y = conv2d(x, w) + bias` (stride 1) on host slices, by GEMM; `y` is `[N, O, Ho, Wo]`.
///
/// The input goes channel-last onto the zero-padded grid, `[N][Hp][Wp][C]` (plus slack), where
/// the `kw` taps of kernel row `ky` read, for the output at grid position `j`, the contiguous run
/// of `kw*C` values that starts at `(j + ky*Wp)*C`. The weights go to `[O][kh][kw][C]`, in the
/// same order. Then, with the products as `[positions][O]`, the operand order in which the GEMM
/// kernels run fastest here (1.5-2x faster than channel-first operands on these layers):
///
/// - on a map where padding is a small share, each kernel row is one GEMM over the whole
///   batch, `K = kw*C`, reading the grid in place: no `kh*kw`-times larger unfolded copy of the
///   input, which is what makes Burn's unfold-then-multiply convolution slow on early layers;
/// - on small maps (14x14 and below with a 3x3 kernel), where the grid's padding columns would
///   be a large share of the work and the unfolded input is small, the windows are unfolded as
///   `[N*Ho*Wo][kh*kw*C]` and multiplied in one GEMM.
pub(super) fn gemm_forward(grid: Grid, x: &[f32], w: &[f32], bias: Option<&[f32]>) -> Vec<f32> {
    let Grid {
        n,
        c,
        o,
        h,
        w: wd,
        kh,
        kw,
        ph,
        pw,
    } = grid;
    let (hp, wp, ho, wo) = (grid.hp(), grid.wp(), grid.ho(), grid.wo());
    let (cols, taps) = (grid.cols(), kh * kw);
    let k_all = taps * c;

    let mut xx = Scratch::zeroed((cols + grid.slack()) * c);
    nchw_to_channel_last(x, [n, c, h, wd], [hp, wp], [ph, pw], &mut xx[..cols * c]);
    let mut wt = Scratch::uninit(o * k_all);
    wt.par_chunks_mut(k_all).enumerate().for_each(|(oi, dst)| {
        // [C][kh*kw] to [kh*kw][C].
        transpose(&w[oi * k_all..], taps, dst, c, c, taps, None);
    });

    let (positions, yy) = if grid.forward_on_grid() {
        let mut yy = Scratch::uninit(cols * o);
        for ky in 0..kh {
            // SAFETY: dst is [O, cols] at stride (1, O), all of `yy`; lhs is [O, kw*C] at
            // stride (kh*kw*C, 1) from ky*kw*C, inside `wt`; rhs is [kw*C, cols] at stride
            // (1, C) from ky*Wp*C, its largest index ky*Wp*C + (cols-1)*C + kw*C - 1 below
            // (cols + slack)*C = xx.len() since slack = (kh-1)*Wp + kw-1. The first kernel
            // row writes every value of `yy` without reading it.
            unsafe {
                matmul(
                    [o, cols, kw * c],
                    Operand::new(yy.as_mut_ptr(), 1, o),
                    ky > 0,
                    Operand::new(wt.as_ptr().add(ky * kw * c), k_all, 1),
                    Operand::new(xx.as_ptr().add(ky * wp * c), 1, c),
                    true,
                );
            }
        }
        ((hp, wp), yy)
    } else {
        let pcols = n * ho * wo;
        let mut unfolded = Scratch::uninit(pcols * k_all);
        unfolded
            .par_chunks_mut(k_all)
            .enumerate()
            .for_each(|(j, dst)| {
                let (ni, y, xo) = (j / (ho * wo), j / wo % ho, j % wo);
                for (ky, d) in dst.chunks_mut(kw * c).enumerate() {
                    let at = ((ni * hp + y + ky) * wp + xo) * c;
                    d.copy_from_slice(&xx[at..at + kw * c]);
                }
            });
        let mut yy = Scratch::uninit(pcols * o);
        // SAFETY: dst is [O, pcols] at stride (1, O), all of `yy`; lhs is `wt` as [O, K]
        // row-major and rhs `unfolded` as [K, pcols] at stride (1, K), K = kh*kw*C, both
        // exactly their buffers.
        unsafe {
            matmul(
                [o, pcols, k_all],
                Operand::new(yy.as_mut_ptr(), 1, o),
                false,
                Operand::new(wt.as_ptr(), k_all, 1),
                Operand::new(unfolded.as_ptr(), 1, k_all),
                true,
            );
        }
        ((ho, wo), yy)
    };

    let (rows_per_image, row_len) = positions;
    channel_last_to_nchw(&yy, [n, o, ho, wo], [rows_per_image, row_len], [0, 0], bias)
}
