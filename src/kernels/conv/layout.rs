//! Copies between the NCHW tensors and the kernels' channel-last and channel-major grids.

use rayon::prelude::*;

use crate::kernels::buffer::zeroed_f32;

/// `[N][channels][H][W]` into `[channels][N][rows][row_len]` (channel-major, `dst`), at row
/// `first[0]`, column `first[1]` of each image; the rest of `dst` is left as it is (the zero
/// padding). A task per channel.
pub(super) fn nchw_to_channel_major(
    src: &[f32],
    [n, ch, h, w]: [usize; 4],
    [rows, row_len]: [usize; 2],
    first: [usize; 2],
    dst: &mut [f32],
) {
    let plane = rows * row_len;
    dst[..ch * n * plane]
        .par_chunks_mut(n * plane)
        .enumerate()
        .for_each(|(ci, dst)| {
            for ni in 0..n {
                for y in 0..h {
                    let from = ((ni * ch + ci) * h + y) * w;
                    let to = ni * plane + (y + first[0]) * row_len + first[1];
                    dst[to..to + w].copy_from_slice(&src[from..from + w]);
                }
            }
        });
}

/// `[N][channels][H][W]` into `[N][rows][row_len][channels]` (channel-last, `dst`), at row
/// `first[0]`, column `first[1]` of each image; the rest of `dst` is left as it is (the zero
/// padding). The inverse of [`channel_last_to_nchw`]; a task per row of the grid.
pub(super) fn nchw_to_channel_last(
    src: &[f32],
    [n, ch, h, w]: [usize; 4],
    [rows, row_len]: [usize; 2],
    first: [usize; 2],
    dst: &mut [f32],
) {
    dst[..n * rows * row_len * ch]
        .par_chunks_mut(row_len * ch)
        .enumerate()
        .for_each(|(row, dst)| {
            let (ni, yp) = (row / rows, row % rows);
            if let Some(y) = yp.checked_sub(first[0]).filter(|&y| y < h) {
                // Image ni's row y is [C][W] at stride H*W; it goes to [W][C] from first[1].
                let src = &src[(ni * ch * h + y) * w..];
                transpose(src, h * w, &mut dst[first[1] * ch..], ch, ch, w, None);
            }
        });
}

/// `[N][rows][row_len][channels]` (channel-last, rows possibly padded) to `[N][channels][H][W]`,
/// from row `first[0]`, column `first[1]` of each image, adding `bias` per channel; a task per
/// 16 channels of an image.
pub(super) fn channel_last_to_nchw(
    src: &[f32],
    [n, ch, h, w]: [usize; 4],
    [rows, row_len]: [usize; 2],
    first: [usize; 2],
    bias: Option<&[f32]>,
) -> Vec<f32> {
    let plane = h * w;
    let block = TILE.min(ch);
    let mut out = zeroed_f32(n * ch * plane);
    out.par_chunks_mut(ch * plane)
        .enumerate()
        .flat_map(|(ni, image)| {
            image
                .par_chunks_mut(block * plane)
                .enumerate()
                .map(move |(bi, dst)| (ni, bi * block, dst))
        })
        .for_each(|(ni, c0, dst)| {
            let channels = dst.len() / plane;
            let bias = bias.map(|b| &b[c0..c0 + channels]);
            for y in 0..h {
                // Row y of image ni is [W][C] at stride C; these channels go to [channels][W]
                // at stride H*W.
                let at = ((ni * rows + first[0] + y) * row_len + first[1]) * ch + c0;
                transpose(&src[at..], ch, &mut dst[y * w..], plane, w, channels, bias);
            }
        });
    out
}

/// Tile side of [`transpose`]: 16 `f32`, one cache line.
const TILE: usize = 16;

/// `dst[j*dst_stride + i] = src[i*src_stride + j] (+ add[j])` for `i < rows`, `j < cols`, in
/// tiles, so that both sides are read and written a cache line at a time.
pub(super) fn transpose(
    src: &[f32],
    src_stride: usize,
    dst: &mut [f32],
    dst_stride: usize,
    rows: usize,
    cols: usize,
    add: Option<&[f32]>,
) {
    for i0 in (0..rows).step_by(TILE) {
        let i1 = (i0 + TILE).min(rows);
        for j0 in (0..cols).step_by(TILE) {
            let j1 = (j0 + TILE).min(cols);
            for j in j0..j1 {
                let a = add.map_or(0.0, |a| a[j]);
                let d = &mut dst[j * dst_stride + i0..j * dst_stride + i1];
                for (k, v) in d.iter_mut().enumerate() {
                    *v = src[(i0 + k) * src_stride + j] + a;
                }
            }
        }
    }
}
