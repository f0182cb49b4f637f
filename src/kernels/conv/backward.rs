//! The convolution's input and weight gradients as GEMMs.

use std::mem::MaybeUninit;

use rayon::prelude::*;

use crate::kernels::buffer::{sum_of_parts, written_by, Scratch};

use super::gemm::{matmul, Operand};
use super::geometry::Grid;
use super::layout::{channel_last_to_nchw, nchw_to_channel_last, nchw_to_channel_major};

/// The gradients of `y = conv2d(x, w)` (stride 1) on host slices, by GEMM: for every tap,
/// `dW[:, :, ky, kx] = G X_k^T`, where `G` is the output gradient on the padded grid
/// (`[O, cols]`) and `X_k` the tap's shifted view of the padded input ([`dw_on_grid`]), or on
/// small maps one GEMM on the unfolded input ([`dw_unfolded`]); and dX as the correlation of G
/// with the flipped kernel, one GEMM per kernel row on channel-last operands
/// ([`dx_channel_last`]), or for a 1x1 kernel as `W^T G` ([`dx_channel_major`]).
///
/// `x` is `[N, C, H, W]`, `w` `[O, C, kh, kw]`, `g` `[N, O, Ho, Wo]`, all contiguous. Returns
/// `(dx, dw)`, each `None` when not asked for.
pub(super) fn gemm_backward(
    grid: Grid,
    x: Option<&[f32]>,
    w: Option<&[f32]>,
    g: &[f32],
) -> (Option<Vec<f32>>, Option<Vec<f32>>) {
    let Grid { n, o, .. } = grid;
    let (hp, wp, ho, wo) = (grid.hp(), grid.wp(), grid.ho(), grid.wo());
    let (cols, taps) = (grid.cols(), grid.kh * grid.kw);

    // dW on the padded grid where the forward runs there; on smaller maps, where the grid's
    // padding would be a large share of its columns, on the unfolded input.
    let on_grid = grid.forward_on_grid();
    // The output gradient on the padded grid, [O][N][Hp][Wp], for dW there and a 1x1 kernel's
    // dX. With a 1x1 kernel the output's grid is the input's, which the copy fills.
    let gg = ((x.is_some() && on_grid) || taps == 1).then(|| {
        let mut gg = grid_buffer(o * cols, taps == 1);
        nchw_to_channel_major(g, [n, o, ho, wo], [hp, wp], [0, 0], &mut gg);
        gg
    });

    let dw = x.map(|x| {
        if on_grid {
            dw_on_grid(grid, x, gg.as_deref().expect("built for dW on the grid"))
        } else {
            dw_unfolded(grid, x, g)
        }
    });

    // A 1x1 kernel has no taps to merge, and its channel-major operands need no transposes.
    let dx = w.map(|w| {
        if taps == 1 {
            dx_channel_major(grid, w, gg.as_deref().expect("built for a 1x1 kernel"))
        } else {
            dx_channel_last(grid, w, g)
        }
    });
    (dx, dw)
}

/// dW (`[O, C, kh, kw]`) for [`gemm_backward`] on the padded grid, `gg` being the output gradient
/// there (`[O][cols]`): for every tap, `dW[:, :, ky, kx] = G X_k^T`.
fn dw_on_grid(grid: Grid, x: &[f32], gg: &[f32]) -> Vec<f32> {
    let Grid { n, c, o, .. } = grid;
    let (hp, wp, cols, taps) = (grid.hp(), grid.wp(), grid.cols(), grid.kh * grid.kw);
    assert!(gg.len() >= o * cols, "output gradient on the grid");
    // The input, zero-padded, [C][N][Hp][Wp], with slack for the last taps' windows.
    let mut xx = grid_buffer(c * cols + grid.slack(), grid.is_1x1_unpadded());
    nchw_to_channel_major(
        x,
        [n, c, grid.h, grid.w],
        [hp, wp],
        [grid.ph, grid.pw],
        &mut xx,
    );
    // dW from the columns `start..start + len` of the grid into `dw`, one GEMM per tap,
    // each writing its own values (no accumulation).
    let gemms = |[start, len]: [usize; 2], dw: *mut f32, parallel: bool| {
        for (tap, off) in grid.taps() {
            // SAFETY: dst is [O, C] at stride (C*taps, taps) from `tap`, inside the caller's
            // `dw` of O*C*taps values; lhs is columns start..start+len of `gg` as [O, cols];
            // rhs is [len, C] read at `xx[ci*cols + off + start + j]`, whose largest index,
            // (c-1)*cols + off + cols - 1, is below c*cols + slack = xx.len().
            unsafe {
                matmul(
                    [o, c, len],
                    Operand::new(dw.add(tap), c * taps, taps),
                    false,
                    Operand::new(gg.as_ptr().add(start), cols, 1),
                    Operand::new(xx.as_ptr().add(off + start), 1, cols),
                    parallel,
                );
            }
        }
    };
    // The reduction runs over every position of the batch (K is huge, M and N are the
    // channel counts, as small as 64). A 1x1 kernel's one GEMM shares its output over the
    // threads and writes dW itself: on TResNet-M's 1x1 layers on 7x7 and 1x1 maps at batch
    // 8, 1.04-1.17x faster than partials. The GEMMs of larger kernels split K over the
    // threads instead, each with its own partial dW, added at the end: with 512 channels on
    // 7x7 maps, taken on the grid, 1.15x faster than as many shared GEMMs.
    if taps == 1 {
        // SAFETY: the one GEMM writes all of dW.
        return unsafe { written_by(o * c, |dw| gemms([0, cols], dw.as_mut_ptr().cast(), true)) };
    }
    let parts = rayon::current_num_threads().max(1);
    let part_len = cols.div_ceil(parts);
    let mut partials = Scratch::uninit(parts * o * c * taps);
    let partial = |(part, dw): (usize, &mut [f32])| {
        let start = part * part_len;
        let len = part_len.min(cols - start.min(cols));
        if len == 0 {
            dw.fill(0.0);
        } else {
            gemms([start, len], dw.as_mut_ptr(), false);
        }
    };
    partials
        .par_chunks_mut(o * c * taps)
        .enumerate()
        .for_each(partial);
    sum_of_parts(&partials, parts)
}

/// A buffer for a grid of `len` values: zeroed (its padding) unless what follows writes every
/// value (`filled`).
fn grid_buffer(len: usize, filled: bool) -> Scratch {
    if filled {
        Scratch::uninit(len)
    } else {
        Scratch::zeroed(len)
    }
}

/// dX for [`gemm_backward`] with channel-major operands: for every tap, `dX_k += W_k^T G` on the
/// padded grid, `gg` being G there (`[O][cols]`).
pub(super) fn dx_channel_major(grid: Grid, w: &[f32], gg: &[f32]) -> Vec<f32> {
    let Grid {
        n, c, o, h, w: wd, ..
    } = grid;
    let (hp, wp) = (grid.hp(), grid.wp());
    let (cols, plane, taps) = (grid.cols(), hp * wp, grid.kh * grid.kw);
    // dX on the padded grid, [C][N][Hp][Wp] plus slack: tap k adds W_k^T G at offset k (a
    // single tap on an unpadded grid writes all of it).
    let filled = grid.is_1x1_unpadded();
    let mut xx = grid_buffer(c * cols + grid.slack(), filled);
    for (tap, off) in grid.taps() {
        // SAFETY: dst is [C, cols] at stride (1, cols) from `off`, its largest index
        // (c-1)*cols + off + cols - 1 inside `xx`; positions of one call never alias (distinct
        // (ci, j) give distinct ci*cols + j). The columns that run past a row into the next
        // receive G's zero padding columns, adding exactly 0. lhs is W's tap as [C, O] at
        // stride (O-major C*taps, C-major taps); rhs is `gg`.
        unsafe {
            matmul(
                [c, cols, o],
                Operand::new(xx.as_mut_ptr().add(off), cols, 1),
                !filled,
                Operand::new(w.as_ptr().add(tap), taps, c * taps),
                Operand::new(gg.as_ptr(), cols, 1),
                true,
            );
        }
    }
    let copy = |dx: &mut [MaybeUninit<f32>]| {
        dx.par_chunks_mut(h * wd).enumerate().for_each(|(nc, out)| {
            let (ni, ci) = (nc / c, nc % c);
            for (y, out) in out.chunks_mut(wd).enumerate() {
                let src = ci * cols + ni * plane + (y + grid.ph) * wp + grid.pw;
                for (d, s) in out.iter_mut().zip(&xx[src..src + wd]) {
                    d.write(*s);
                }
            }
        })
    };
    // SAFETY: `copy` writes every row of every plane.
    unsafe { written_by(n * c * h * wd, copy) }
}

/// dX for [`gemm_backward`] with channel-last operands, one GEMM per kernel row; `g` is the
/// output gradient `[N, O, Ho, Wo]`.
pub(super) fn dx_channel_last(grid: Grid, w: &[f32], g: &[f32]) -> Vec<f32> {
    let Grid {
        n, c, o, h, w: wd, ..
    } = grid;
    let (hp, wp, ho, wo) = (grid.hp(), grid.wp(), grid.ho(), grid.wo());
    let (cols, taps) = (grid.cols(), grid.kh * grid.kw);
    // dX on the padded grid is G correlated with the flipped kernel:
    // dX[p][c] = sum over (ky, kx, o) of G[p - ky*Wp - kx][o] W[o][c][ky][kx].
    // With G channel-last and `front` zero positions before it, kernel row ky reads for
    // position p the contiguous run G[p - ky*Wp - (kw-1) ..][kw*O], in the order of the
    // flipped kernel row: one GEMM per kernel row, operands laid out as in the forward.
    let (kh, kw) = (grid.kh, grid.kw);
    let front = grid.slack();
    let mut gl = Scratch::zeroed((front + cols) * o);
    nchw_to_channel_last(g, [n, o, ho, wo], [hp, wp], [0, 0], &mut gl[front * o..]);
    // W as [C][kh][kw][O], each kernel row reversed.
    let mut wf = Scratch::uninit(c * taps * o);
    wf.par_chunks_mut(taps * o)
        .enumerate()
        .for_each(|(ci, dst)| {
            for ky in 0..kh {
                for kx in 0..kw {
                    let d = &mut dst[(ky * kw + kw - 1 - kx) * o..][..o];
                    for (oi, v) in d.iter_mut().enumerate() {
                        *v = w[((oi * c + ci) * kh + ky) * kw + kx];
                    }
                }
            }
        });
    let mut dxx = Scratch::uninit(cols * c);
    for ky in 0..kh {
        let start = front - ky * wp - (kw - 1);
        // SAFETY: dst is [C, cols] at stride (1, C), all of `dxx`; lhs is [C, kw*O] at
        // stride (kh*kw*O, 1) from ky*kw*O, inside `wf`; rhs is [kw*O, cols] at stride
        // (1, O) from start*O, start >= 0 since front = (kh-1)*Wp + kw-1, its largest index
        // (start + cols - 1)*O + kw*O - 1 <= (front + cols)*O - 1 inside `gl`. The first
        // kernel row writes every value of `dxx` without reading it.
        unsafe {
            matmul(
                [c, cols, kw * o],
                Operand::new(dxx.as_mut_ptr(), 1, c),
                ky > 0,
                Operand::new(wf.as_ptr().add(ky * kw * o), taps * o, 1),
                Operand::new(gl.as_ptr().add(start * o), 1, o),
                true,
            );
        }
    }
    channel_last_to_nchw(&dxx, [n, c, h, wd], [hp, wp], [grid.ph, grid.pw], None)
}

/// dW (`[O, C, kh, kw]`) for [`gemm_backward`] by one GEMM on the unfolded input, for maps
/// where the padding would be a large share of the grid's columns (where
/// [`Grid::forward_on_grid`] says no): `dW = G U`, with `G` the output gradient as
/// `[O, N*Ho*Wo]` and `U` the input windows as `[N*Ho*Wo, C*kh*kw]`, built as its transpose (a
/// row per input channel and tap: the channel's plane shifted by the tap, zero where the window
/// leaves the map). A 7x7 map takes a 9x9 grid, 1.65 times its positions: on TResNet-M's
/// 3x3 layers of 512 channels at 7x7, batch 8 and 4, this took 0.50-0.56 and 0.47 times the
/// time of the GEMMs on the grid, on 14x14 maps of 256 and 512 channels at batch 1 and 2
/// 0.61-0.76 (AMD EPYC, AVX2). The unfolded input is 9 times the map; the grid's per-thread
/// partial dW it replaces are larger on these layers.
fn dw_unfolded(grid: Grid, x: &[f32], g: &[f32]) -> Vec<f32> {
    let Grid {
        n, c, o, h, w: wd, ..
    } = grid;
    let (ho, wo, taps) = (grid.ho(), grid.wo(), grid.kh * grid.kw);
    let positions = n * ho * wo;
    let mut gm = Scratch::uninit(o * positions);
    nchw_to_channel_major(g, [n, o, ho, wo], [ho, wo], [0, 0], &mut gm);
    let mut ut = Scratch::uninit(c * taps * positions);
    ut.par_chunks_mut(taps * positions)
        .enumerate()
        .for_each(|(ci, rows)| {
            for (tap, row) in rows.chunks_mut(positions).enumerate() {
                let (ky, kx) = (tap / grid.kw, tap % grid.kw);
                for (ni, image) in row.chunks_mut(ho * wo).enumerate() {
                    let plane = &x[(ni * c + ci) * h * wd..][..h * wd];
                    window(plane, [h, wd], [grid.ph, grid.pw], [ky, kx], wo, image);
                }
            }
        });
    // SAFETY: dst is dW as [O, C*taps], row-major, all of it written (no accumulation); lhs is
    // `gm` as [O, positions] and rhs `ut` as [positions, C*taps] at strides (1, positions),
    // exactly their buffers.
    unsafe {
        written_by(o * c * taps, |dw| {
            matmul(
                [o, c * taps, positions],
                Operand::new(dw.as_mut_ptr().cast(), c * taps, 1),
                false,
                Operand::new(gm.as_ptr(), positions, 1),
                Operand::new(ut.as_ptr(), 1, positions),
                true,
            )
        })
    }
}

/// The window of kernel tap `(ky, kx)` over the `h x w` plane zero-padded by `(ph, pw)`, into
/// `out` as rows of `cols`: `out[y][j]` is the padded plane's `[y + ky][j + kx]`.
fn window(
    plane: &[f32],
    [h, w]: [usize; 2],
    [ph, pw]: [usize; 2],
    [ky, kx]: [usize; 2],
    cols: usize,
    out: &mut [f32],
) {
    for (y, out) in out.chunks_mut(cols).enumerate() {
        match (y + ky).checked_sub(ph).filter(|&row| row < h) {
            Some(row) => {
                let src = &plane[row * w..][..w];
                for (j, v) in out.iter_mut().enumerate() {
                    let at = (j + kx).checked_sub(pw);
                    *v = at.and_then(|at| src.get(at)).copied().unwrap_or(0.0);
                }
            }
            None => out.fill(0.0),
        }
    }
}
