//! The 1x1 convolution without padding, forward and both gradients, as GEMMs on the
//! `[N, C, H, W]` slices themselves.
//!
//! Each image's map is already a `[C, H*W]` matrix: unlike the other kernels' grids, nothing is
//! copied, padded or zeroed first, and each output is written once by its GEMM. The gradients
//! run so on maps of at least [`PER_IMAGE_POSITIONS`] positions. On smaller maps the forward
//! leaves the positions past the last whole [`PANEL`] of each image to one GEMM over the batch.

use std::mem::MaybeUninit;

use rayon::prelude::*;

use crate::kernels::buffer::{sum_of_parts, written_by, Scratch};

use super::gemm::{matmul, Operand};
use super::geometry::Grid;

/// Whether training runs `grid`'s convolution through [`forward`]: a 1x1 kernel without
/// padding, on maps of more than one position (on one, a squeeze-and-excitation gate's, Flex's
/// own convolution took about 2/3 of the time of the GEMM per image). [`forward`] itself computes
/// any 1x1 kernel without padding.
pub(super) fn applies(grid: &Grid) -> bool {
    grid.is_1x1_unpadded() && grid.h * grid.w > 1
}

/// Whether training takes `grid`'s gradients from [`input_gradient`] and [`weight_gradient`]
/// (which compute any 1x1 kernel without padding): where [`applies`] says, on maps of at least
/// [`PER_IMAGE_POSITIONS`] positions.
pub(super) fn gradients_apply(grid: &Grid) -> bool {
    applies(grid) && grid.h * grid.w >= PER_IMAGE_POSITIONS
}

/// Positions per image from which the gradients run per image. Below, the GEMMs of one image
/// are too small for what they move: the weight gradient's `[O, C]` output is read and written
/// once per image, the input gradient's W^T packed once per image; gathering the batch channel-
/// major into one GEMM (the GEMM kernels' backward) is faster. Measured on TResNet-M's
/// 1x1 layers at batch 8: per image, the gradients on 7x7 maps ran 0.8-0.9x as fast as
/// gathered; the forward and both gradients on 14x14 maps and larger, 1.05-1.5x.
const PER_IMAGE_POSITIONS: usize = 100;

/// Positions that fill whole vectors of the GEMM kernel on every instruction set: the `gemm`
/// crate computes our products with a map's positions along its vectors (8 `f32` on AVX2, 16 on
/// AVX-512), and a last, partial vector costs as much as a whole one. On a 7x7 map, one image
/// per GEMM pays a vector for its 49th position; the forward computes that position of every
/// image in one GEMM over the batch instead ([`tail_product`]): TResNet-M's 1x1 layers on 7x7
/// maps at batch 8 ran 1.13-1.25x faster so (AMD EPYC, AVX2). On 14x14 maps (4 positions past
/// 12 whole panels) it was 0.93-1.01x, so maps of [`PER_IMAGE_POSITIONS`] and more keep whole
/// images.
const PANEL: usize = 16;

/// Multiply-adds below which a call runs on the calling thread alone: smaller ones take less
/// time than handing work to the threads.
const SERIAL_MACS: usize = 1 << 21;

/// `conv2d(x, w) + bias`, `[N, O, H, W]`: `y_i = W x_i` for each image `i`.
pub(super) fn forward(grid: Grid, x: &[f32], w: &[f32], bias: Option<&[f32]>) -> Vec<f32> {
    let plane = grid.h * grid.w;
    // W is `[O, C]`, row-major.
    let tail = if plane < PER_IMAGE_POSITIONS {
        plane % PANEL
    } else {
        0
    };
    let mut y = per_image_product(grid, (w, [grid.c, 1]), [grid.o, grid.c], x, tail);
    if let Some(bias) = bias {
        y.par_chunks_mut(grid.o * plane).for_each(|image| {
            for (out, b) in image.chunks_mut(plane).zip(bias) {
                out.iter_mut().for_each(|v| *v += b);
            }
        });
    }
    y
}

/// The input gradient from the output gradient `g` (`[N, O, H, W]`), `[N, C, H, W]`:
/// `dx_i = W^T g_i` for each image `i`.
pub(super) fn input_gradient(grid: Grid, w: &[f32], g: &[f32]) -> Vec<f32> {
    // W^T is `[C, O]` at strides (1, C) over W's `[O, C]`.
    per_image_product(grid, (w, [1, grid.c]), [grid.c, grid.o], g, 0)
}

/// A matrix read from a slice at (row, column) strides.
type Strided<'a> = (&'a [f32], [usize; 2]);

/// `out_i = A in_i` for each image `i` of `grid`, `[N, rows, H, W]`: `A` is `[rows, inner]`, and
/// each `in_i` an `[inner, H*W]` matrix, one after the other in `input`. One GEMM per image, on
/// all positions of its map but the last `tail`, which [`tail_product`] computes for the batch.
///
/// # Panics
///
/// If a slice is too short for its shape, or `tail` exceeds the map.
fn per_image_product(
    grid: Grid,
    (a, [row, col]): Strided,
    [rows, inner]: [usize; 2],
    input: &[f32],
    tail: usize,
) -> Vec<f32> {
    let plane = grid.h * grid.w;
    let last = |len: usize, stride: usize| len.saturating_sub(1) * stride;
    assert!(a.len() > last(rows, row) + last(inner, col), "A's length");
    assert!(input.len() >= grid.n * inner * plane, "input length");
    let head = plane.checked_sub(tail).expect("a tail within the map");
    // SAFETY: `per_image` hands each image's `[rows, plane]` share of the output to one GEMM,
    // which writes its first `head` columns (no accumulation), and `tail_product` writes the
    // others; A and in_i lie inside their slices (above).
    unsafe {
        written_by(grid.n * rows * plane, |out| {
            if head > 0 {
                per_image(grid, out, rows * plane, |i, out_i, parallel| {
                    matmul(
                        [rows, head, inner],
                        Operand::new(out_i, plane, 1),
                        false,
                        Operand::new(a.as_ptr(), row, col),
                        Operand::new(input[i * inner * plane..].as_ptr(), plane, 1),
                        parallel,
                    )
                });
            }
            if tail > 0 {
                tail_product(grid, (a, [row, col]), [rows, inner], input, tail, out);
            }
        })
    }
}

/// The last `tail` positions of every image's `out_i = A in_i` (as [`per_image_product`]), into
/// `out`, `[N, rows, H, W]`: gathered over the batch as one `[inner, N*tail]` matrix, multiplied
/// in one GEMM, and scattered back.
///
/// # Safety
///
/// `A` lies inside its slice at its strides for `[rows, inner]`; `input` holds the batch's
/// `[inner, H*W]` matrices, and `out` its `[rows, H*W]` ones.
unsafe fn tail_product(
    grid: Grid,
    (a, [row, col]): Strided,
    [rows, inner]: [usize; 2],
    input: &[f32],
    tail: usize,
    out: &mut [MaybeUninit<f32>],
) {
    let plane = grid.h * grid.w;
    let (head, cols) = (plane - tail, grid.n * tail);
    let mut gathered = Scratch::uninit(inner * cols);
    gathered
        .par_chunks_mut(cols)
        .enumerate()
        .for_each(|(k, dst)| {
            for (i, dst) in dst.chunks_mut(tail).enumerate() {
                dst.copy_from_slice(&input[(i * inner + k) * plane + head..][..tail]);
            }
        });
    let mut products = Scratch::uninit(rows * cols);
    // SAFETY: dst and rhs are `products` and `gathered`, row-major, exactly their buffers; A
    // as the caller says.
    unsafe {
        matmul(
            [rows, cols, inner],
            Operand::new(products.as_mut_ptr(), cols, 1),
            false,
            Operand::new(a.as_ptr(), row, col),
            Operand::new(gathered.as_ptr(), cols, 1),
            !small(grid),
        );
    }
    out.par_chunks_mut(rows * plane)
        .enumerate()
        .for_each(|(i, out_i)| {
            for (r, out_row) in out_i.chunks_mut(plane).enumerate() {
                let src = &products[r * cols + i * tail..][..tail];
                for (dst, &v) in out_row[head..].iter_mut().zip(src) {
                    dst.write(v);
                }
            }
        });
}

/// The weight gradient from the input `x` and the output gradient `g`, `[O, C, 1, 1]`:
/// `dW = sum over i of g_i x_i^T`. Each run of images that [`split`] gives a thread sums into
/// its own partial `dW` (the reduction is long, the output as small as 64x64), and the
/// partials are added in a fixed order, so that a run is reproducible bit for bit.
pub(super) fn weight_gradient(grid: Grid, x: &[f32], g: &[f32]) -> Vec<f32> {
    let Grid { n, c, o, .. } = grid;
    let plane = grid.h * grid.w;
    let (parts, parallel) = split(grid);
    let per_part = n / parts;
    let mut partials = Scratch::uninit(parts * o * c);
    partials
        .par_chunks_mut(o * c)
        .enumerate()
        .for_each(|(part, dw)| {
            for (k, i) in (part * per_part..(part + 1) * per_part).enumerate() {
                // SAFETY: dst is this part's `[O, C]`, row-major; the first image writes it
                // (no accumulation), the others add to it. g_i is `[O, plane]` row-major,
                // x_i^T `[plane, C]` read at strides (1, plane) from x_i's `[C, plane]`.
                unsafe {
                    matmul(
                        [o, c, plane],
                        Operand::new(dw.as_mut_ptr(), c, 1),
                        k > 0,
                        Operand::new(g[i * o * plane..].as_ptr(), plane, 1),
                        Operand::new(x[i * c * plane..].as_ptr(), 1, plane),
                        parallel,
                    );
                }
            }
        });
    sum_of_parts(&partials, parts)
}

/// How the images of `grid` are shared out: in `parts` equal runs on as many threads, each GEMM
/// on one thread, when the threads divide the batch; otherwise in one run, each GEMM on all
/// threads (`parallel`), unless the convolution is too small to share at all.
fn split(grid: Grid) -> (usize, bool) {
    let threads = rayon::current_num_threads().max(1);
    if small(grid) {
        (1, false)
    } else if grid.n.is_multiple_of(threads) {
        (threads, false)
    } else {
        (1, true)
    }
}

/// Whether `grid`'s convolution is too small to share out over the threads ([`SERIAL_MACS`]).
fn small(grid: Grid) -> bool {
    grid.n * grid.c * grid.o * grid.h * grid.w < SERIAL_MACS
}

/// Calls `f(i, out_i, parallel)` for each image `i` of `grid`, `out_i` pointing at image `i`'s
/// `image` values of `out`, on the threads as [`split`] shares them out.
fn per_image(
    grid: Grid,
    out: &mut [MaybeUninit<f32>],
    image: usize,
    f: impl Fn(usize, *mut f32, bool) + Sync,
) {
    let n = grid.n;
    let (parts, parallel) = split(grid);
    out.par_chunks_mut(image * (n / parts))
        .enumerate()
        .for_each(|(part, run)| {
            for (k, out_i) in run.chunks_mut(image).enumerate() {
                f(part * (n / parts) + k, out_i.as_mut_ptr().cast(), parallel);
            }
        });
}
