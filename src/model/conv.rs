//! 2-D convolution that runs as a few large matrix products on the default CPU backends, forward
//! and backward.
//!
//! Burn's CPU convolution unfolds the input (`kh*kw` times its size) and multiplies, and it
//! computes the weight gradient as another convolution, with the batch as channels and the whole
//! feature map as the kernel: on the CPU that becomes thousands of narrow matrix products
//! (matrix-vector products for a 1x1 kernel), and it made a TResNet training step spend most of
//! its time there. [`conv2d`] gives the same results, but on `Flex` and `Autodiff<Flex>` a
//! stride-1 convolution runs its forward as one GEMM per kernel row over the whole batch, on
//! the padded input laid out channel-last (1x1 kernels keep Flex's own, already one GEMM), and
//! under autodiff gets an analytic backward with both gradients as one GEMM per kernel tap.
//! Every other backend, and every other convolution, goes through Burn's own `conv2d` unchanged.

use burn::tensor::backend::Backend;
use burn::tensor::module;
use burn::tensor::ops::ConvOptions;
use burn::tensor::Tensor;

#[cfg(feature = "flex")]
use super::scratch::Scratch;

/// `burn::tensor::module::conv2d`, faster on `Flex` and `Autodiff<Flex>` for convolutions of
/// stride 1, dilation 1 and one group (all of TResNet's trainable ones): see the
/// [module](self) documentation.
///
/// ```
/// use aia::model::conv::conv2d;
/// use burn::tensor::{ops::ConvOptions, Tensor};
/// type B = burn::backend::Autodiff<burn::backend::Flex>;
///
/// let device = Default::default();
/// let x = Tensor::<B, 4>::ones([2, 3, 5, 5], &device).require_grad();
/// let w = Tensor::<B, 4>::ones([4, 3, 3, 3], &device).require_grad();
/// let y = conv2d(x.clone(), w.clone(), None, ConvOptions::new([1, 1], [1, 1], [1, 1], 1));
/// let grads = y.sum().backward();
/// // The centre tap of the kernel sees every pixel of both images in every input channel.
/// let dw = w.grad(&grads).unwrap();
/// assert_eq!(dw.slice([0..1, 0..1, 1..2, 1..2]).into_scalar(), 50.0);
/// ```
pub fn conv2d<B: Backend>(
    x: Tensor<B, 4>,
    weight: Tensor<B, 4>,
    bias: Option<Tensor<B, 1>>,
    options: ConvOptions<2>,
) -> Tensor<B, 4> {
    #[cfg(feature = "flex")]
    let (x, weight, bias) = match flex::try_conv2d(x, weight, bias, options.clone()) {
        Ok(y) => return y,
        Err(inputs) => inputs,
    };
    module::conv2d(x, weight, bias, options)
}

#[cfg(feature = "flex")]
/// Whether the GEMM kernels apply to a convolution with these options.
fn gemm_applies(options: &ConvOptions<2>) -> bool {
    options.stride == [1, 1] && options.dilation == [1, 1] && options.groups == 1
}

/// The geometry shared by both gradients: the input, zero-padded and laid out channel-major as
/// `[C][N][Hp][Wp]`, lets every kernel tap `(ky, kx)` read its input window for all output
/// positions as one strided matrix (rows `c`, columns `j = n*Hp*Wp + ho*Wp + wo`, at offset
/// `ky*Wp + kx`). Output positions are laid out on the same padded grid, zero outside the real
/// `Ho x Wo` output, so the extra columns contribute nothing.
#[cfg(feature = "flex")]
#[derive(Clone, Copy, Debug)]
struct Grid {
    n: usize,
    c: usize,
    o: usize,
    h: usize,
    w: usize,
    kh: usize,
    kw: usize,
    ph: usize,
    pw: usize,
}

#[cfg(feature = "flex")]
impl Grid {
    /// The geometry of `conv2d(x, w)` with these options' padding.
    fn new(
        x: &burn::backend::flex::FlexTensor,
        w: &burn::backend::flex::FlexTensor,
        options: &ConvOptions<2>,
    ) -> Self {
        use burn::tensor::TensorMetadata;

        let [n, c, h, w_] = x.shape().dims();
        let [o, _, kh, kw] = w.shape().dims();
        Grid {
            n,
            c,
            o,
            h,
            w: w_,
            kh,
            kw,
            ph: options.padding[0],
            pw: options.padding[1],
        }
    }

    /// Whether the forward convolution runs on the padded grid rather than on the unfolded
    /// input ([`gemm_forward`]): with at most 6 grid positions per 5 outputs. A 28x28 map with a
    /// 3x3 kernel qualifies, a 14x14 one does not: measured on TResNet-M's layers, the unfolded
    /// GEMM is 5-15% faster at 14x14, the grid 10-40% faster at 28x28 and 56x56.
    fn forward_on_grid(&self) -> bool {
        5 * self.hp() * self.wp() <= 6 * self.ho() * self.wo()
    }

    fn hp(&self) -> usize {
        self.h + 2 * self.ph
    }
    fn wp(&self) -> usize {
        self.w + 2 * self.pw
    }
    fn ho(&self) -> usize {
        self.hp() + 1 - self.kh
    }
    fn wo(&self) -> usize {
        self.wp() + 1 - self.kw
    }
    /// Columns of the channel-major matrices: every padded position of every image.
    fn cols(&self) -> usize {
        self.n * self.hp() * self.wp()
    }
    /// How far the last tap's window reaches past the end of a channel-major matrix (read, and
    /// multiplied by zero, for the padding columns).
    fn slack(&self) -> usize {
        (self.kh - 1) * self.wp() + self.kw - 1
    }
}

/// A strided `f32` matrix operand of [`matmul`]: element `(i, j)` at `ptr + i*row + j*col`.
#[cfg(feature = "flex")]
#[derive(Clone, Copy)]
struct Operand<P> {
    ptr: P,
    row: isize,
    col: isize,
}

#[cfg(feature = "flex")]
impl<P> Operand<P> {
    /// The matrix at `ptr` with these row and column strides, in elements.
    fn new(ptr: P, row: usize, col: usize) -> Self {
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
#[cfg(feature = "flex")]
unsafe fn matmul(
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

/// `[N][channels][H][W]` into `[channels][N][rows][row_len]` (channel-major, `dst`), at row
/// `first[0]`, column `first[1]` of each image; the rest of `dst` is left as it is (the zero
/// padding). A task per channel.
#[cfg(feature = "flex")]
fn nchw_to_channel_major(
    src: &[f32],
    [n, ch, h, w]: [usize; 4],
    [rows, row_len]: [usize; 2],
    first: [usize; 2],
    dst: &mut [f32],
) {
    use rayon::prelude::*;

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
#[cfg(feature = "flex")]
fn gemm_forward(grid: Grid, x: &[f32], w: &[f32], bias: Option<&[f32]>) -> Vec<f32> {
    use rayon::prelude::*;

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

/// `[N][channels][H][W]` into `[N][rows][row_len][channels]` (channel-last, `dst`), at row
/// `first[0]`, column `first[1]` of each image; the rest of `dst` is left as it is (the zero
/// padding). The inverse of [`channel_last_to_nchw`]; a task per row of the grid.
#[cfg(feature = "flex")]
fn nchw_to_channel_last(
    src: &[f32],
    [n, ch, h, w]: [usize; 4],
    [rows, row_len]: [usize; 2],
    first: [usize; 2],
    dst: &mut [f32],
) {
    use rayon::prelude::*;

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
#[cfg(feature = "flex")]
fn channel_last_to_nchw(
    src: &[f32],
    [n, ch, h, w]: [usize; 4],
    [rows, row_len]: [usize; 2],
    first: [usize; 2],
    bias: Option<&[f32]>,
) -> Vec<f32> {
    use rayon::prelude::*;

    let plane = h * w;
    let block = TILE.min(ch);
    let mut out = vec![0.0f32; n * ch * plane];
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
#[cfg(feature = "flex")]
const TILE: usize = 16;

/// `dst[j*dst_stride + i] = src[i*src_stride + j] (+ add[j])` for `i < rows`, `j < cols`, in
/// tiles, so that both sides are read and written a cache line at a time.
#[cfg(feature = "flex")]
fn transpose(
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

/// The gradients of `y = conv2d(x, w)` (stride 1) on host slices, by GEMM: for every tap,
/// `dW[:, :, ky, kx] = G X_k^T`, where `G` is the output gradient on the padded grid
/// (`[O, cols]`) and `X_k` the tap's shifted view of the padded input; and dX as the correlation
/// of G with the flipped kernel, one GEMM per kernel row on channel-last operands
/// ([`dx_channel_last`]), or for a 1x1 kernel as `W^T G` ([`dx_channel_major`]).
///
/// `x` is `[N, C, H, W]`, `w` `[O, C, kh, kw]`, `g` `[N, O, Ho, Wo]`, all contiguous. Returns
/// `(dx, dw)`, each `None` when not asked for.
#[cfg(feature = "flex")]
fn gemm_backward(
    grid: Grid,
    x: Option<&[f32]>,
    w: Option<&[f32]>,
    g: &[f32],
) -> (Option<Vec<f32>>, Option<Vec<f32>>) {
    use rayon::prelude::*;

    let Grid { n, c, o, .. } = grid;
    let (hp, wp, ho, wo) = (grid.hp(), grid.wp(), grid.ho(), grid.wo());
    let (cols, taps) = (grid.cols(), grid.kh * grid.kw);

    // The output gradient on the padded grid, [O][N][Hp][Wp], for dW and a 1x1 kernel's dX.
    let gg = (x.is_some() || taps == 1).then(|| {
        let mut gg = Scratch::zeroed(o * cols);
        nchw_to_channel_major(g, [n, o, ho, wo], [hp, wp], [0, 0], &mut gg);
        gg
    });

    let dw = x.map(|x| {
        // The input, zero-padded, [C][N][Hp][Wp], with slack for the last taps' windows.
        let mut xx = Scratch::zeroed(c * cols + grid.slack());
        nchw_to_channel_major(
            x,
            [n, c, grid.h, grid.w],
            [hp, wp],
            [grid.ph, grid.pw],
            &mut xx,
        );
        let gg = gg.as_deref().expect("built when dW is asked for");
        // The reduction runs over every position of the batch (K is huge, M and N are the
        // channel counts, as small as 64): split K over the threads, each with its own partial
        // dW, rather than leave the GEMM to split a small output.
        let parts = rayon::current_num_threads().max(1);
        let part_len = cols.div_ceil(parts);
        let partial = |part: usize| {
            let start = part * part_len;
            let len = part_len.min(cols - start.min(cols));
            let mut dw = vec![0.0f32; o * c * taps];
            if len == 0 {
                return dw;
            }
            for ky in 0..grid.kh {
                for kx in 0..grid.kw {
                    let tap = ky * grid.kw + kx;
                    // SAFETY: dst is [O, C] at stride (C*taps, taps) from `tap`, inside `dw`;
                    // lhs is columns start..start+len of `gg` as [O, cols]; rhs is [len, C] read
                    // at `xx[ci*cols + off + start + j]`, whose largest index,
                    // (c-1)*cols + off + cols - 1, is below c*cols + slack = xx.len().
                    unsafe {
                        matmul(
                            [o, c, len],
                            Operand::new(dw.as_mut_ptr().add(tap), c * taps, taps),
                            false,
                            Operand::new(gg.as_ptr().add(start), cols, 1),
                            Operand::new(xx.as_ptr().add(ky * wp + kx + start), 1, cols),
                            false,
                        );
                    }
                }
            }
            dw
        };
        // Summed in a fixed order, so that a run is reproducible bit for bit on a machine.
        let mut partials = (0..parts).into_par_iter().map(partial).collect::<Vec<_>>();
        let mut dw = partials.remove(0);
        for part in &partials {
            dw.iter_mut().zip(part).for_each(|(a, b)| *a += b);
        }
        dw
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

/// dX for [`gemm_backward`] with channel-major operands: for every tap, `dX_k += W_k^T G` on the
/// padded grid, `gg` being G there (`[O][cols]`).
#[cfg(feature = "flex")]
fn dx_channel_major(grid: Grid, w: &[f32], gg: &[f32]) -> Vec<f32> {
    use rayon::prelude::*;

    let Grid {
        n, c, o, h, w: wd, ..
    } = grid;
    let (hp, wp) = (grid.hp(), grid.wp());
    let (cols, plane, taps) = (grid.cols(), hp * wp, grid.kh * grid.kw);
    // dX on the padded grid, [C][N][Hp][Wp] plus slack: tap k adds W_k^T G at offset k.
    let mut xx = Scratch::zeroed(c * cols + grid.slack());
    for ky in 0..grid.kh {
        for kx in 0..grid.kw {
            let tap = ky * grid.kw + kx;
            // SAFETY: dst is [C, cols] at stride (1, cols) from `ky*wp + kx`, its largest
            // index (c-1)*cols + off + cols - 1 inside `xx`; positions of one call never
            // alias (distinct (ci, j) give distinct ci*cols + j). The columns that run past a
            // row into the next receive G's zero padding columns, adding exactly 0. lhs is
            // W's tap as [C, O] at stride (O-major C*taps, C-major taps); rhs is `gg`.
            unsafe {
                matmul(
                    [c, cols, o],
                    Operand::new(xx.as_mut_ptr().add(ky * wp + kx), cols, 1),
                    true,
                    Operand::new(w.as_ptr().add(tap), taps, c * taps),
                    Operand::new(gg.as_ptr(), cols, 1),
                    true,
                );
            }
        }
    }
    let mut dx = vec![0.0f32; n * c * h * wd];
    dx.par_chunks_mut(h * wd).enumerate().for_each(|(nc, out)| {
        let (ni, ci) = (nc / c, nc % c);
        for y in 0..h {
            let src = ci * cols + ni * plane + (y + grid.ph) * wp + grid.pw;
            out[y * wd..(y + 1) * wd].copy_from_slice(&xx[src..src + wd]);
        }
    });
    dx
}

/// dX for [`gemm_backward`] with channel-last operands, one GEMM per kernel row; `g` is the
/// output gradient `[N, O, Ho, Wo]`.
#[cfg(feature = "flex")]
fn dx_channel_last(grid: Grid, w: &[f32], g: &[f32]) -> Vec<f32> {
    use rayon::prelude::*;

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

#[cfg(feature = "flex")]
mod flex {
    use burn::backend::autodiff::checkpoint::base::Checkpointer;
    use burn::backend::autodiff::checkpoint::strategy::NoCheckpointing;
    use burn::backend::autodiff::grads::Gradients;
    use burn::backend::autodiff::ops::{Backward, Ops, OpsKind};
    use burn::backend::flex::FlexTensor;
    use burn::backend::Flex;
    use burn::tensor::backend::Backend;
    use burn::tensor::ops::{ConvOptions, FloatTensor, ModuleOps};
    use burn::tensor::{DType, TensorData, TensorPrimitive};

    use super::super::on_flex::{host_slice, on_backend, Ad};
    use super::{gemm_applies, gemm_backward, gemm_forward, Grid, Tensor};

    /// The inputs of a convolution on backend `B`.
    type Inputs<B> = (Tensor<B, 4>, Tensor<B, 4>, Option<Tensor<B, 1>>);

    /// The convolution through the GEMM kernels when `B` is `Flex` or `Autodiff<Flex>` and the
    /// convolution qualifies; otherwise the inputs back, untouched.
    pub(super) fn try_conv2d<B: Backend>(
        x: Tensor<B, 4>,
        weight: Tensor<B, 4>,
        bias: Option<Tensor<B, 1>>,
        options: ConvOptions<2>,
    ) -> Result<Tensor<B, 4>, Inputs<B>> {
        let ([n, c, h, w], [o, wc, kh, kw]) = (x.dims(), weight.dims());
        // Anything unusual (empty, mismatched or too small for the kernel) takes Burn's path
        // and its checks.
        let shapes_fit = n * c * h * w * o * kh * kw > 0
            && wc == c
            && h + 2 * options.padding[0] >= kh
            && w + 2 * options.padding[1] >= kw
            && bias.as_ref().is_none_or(|b| b.dims() == [o]);
        if !gemm_applies(&options)
            || !shapes_fit
            || x.dtype() != DType::F32
            || weight.dtype() != DType::F32
            || bias.as_ref().is_some_and(|b| b.dtype() != DType::F32)
        {
            return Err((x, weight, bias));
        }
        let inputs = on_backend(
            (x, weight),
            |(x, weight): (Tensor<Ad, 4>, Tensor<Ad, 4>)| conv2d_ad(x, weight, options.clone()),
        );
        match inputs {
            Ok(y) => Ok(match bias {
                Some(b) => y + b.reshape([1, o, 1, 1]),
                None => y,
            }),
            Err((x, weight)) => on_backend((x, weight, bias), |(x, w, b): Inputs<Flex>| {
                let (x, w) = (x.into_primitive().tensor(), w.into_primitive().tensor());
                let b = b.map(|b| b.into_primitive().tensor());
                Tensor::<Flex, 4>::from_primitive(TensorPrimitive::Float(forward(
                    x, w, b, &options,
                )))
            }),
        }
    }

    /// The forward convolution on Flex: the GEMM kernels for a kernel larger than 1x1, Flex's
    /// own convolution (already one GEMM per image) for a 1x1 one.
    fn forward(
        x: FlexTensor,
        w: FlexTensor,
        bias: Option<FlexTensor>,
        options: &ConvOptions<2>,
    ) -> FlexTensor {
        let grid = Grid::new(&x, &w, options);
        if grid.kh * grid.kw == 1 {
            return Flex::conv2d(x, w, bias, options.clone());
        }
        let (x, w) = (x.to_contiguous(), w.to_contiguous());
        let bias = bias.map(|b| b.to_contiguous());
        let y = gemm_forward(
            grid,
            host_slice(&x),
            host_slice(&w),
            bias.as_ref().map(host_slice),
        );
        FlexTensor::from_data(TensorData::new(y, [grid.n, grid.o, grid.ho(), grid.wo()]))
    }

    #[derive(Debug)]
    struct Conv2dBackward;

    /// What the backward step needs: each input when the other one wants a gradient.
    #[derive(Debug, Clone)]
    struct ConvState {
        x: Option<FlexTensor>,
        weight: Option<FlexTensor>,
        grid: Grid,
    }

    impl Backward<Flex, 2> for Conv2dBackward {
        type State = ConvState;

        fn backward(
            self,
            ops: Ops<Self::State, 2>,
            grads: &mut Gradients,
            _checkpointer: &mut Checkpointer,
        ) {
            let [node_x, node_w] = ops.parents;
            let g = grads.consume::<Flex>(&ops.node).to_contiguous();
            let state = ops.state;
            let grid = state.grid;
            let x = state.x.map(|t| t.to_contiguous());
            let w = state.weight.map(|t| t.to_contiguous());
            let (dx, dw) = gemm_backward(
                grid,
                node_w.as_ref().and(x.as_ref()).map(host_slice),
                node_x.as_ref().and(w.as_ref()).map(host_slice),
                host_slice(&g),
            );
            let tensor =
                |v: Vec<f32>, shape: [usize; 4]| FlexTensor::from_data(TensorData::new(v, shape));
            if let (Some(node), Some(dx)) = (node_x, dx) {
                grads.register::<Flex>(node.id, tensor(dx, [grid.n, grid.c, grid.h, grid.w]));
            }
            if let (Some(node), Some(dw)) = (node_w, dw) {
                grads.register::<Flex>(node.id, tensor(dw, [grid.o, grid.c, grid.kh, grid.kw]));
            }
        }
    }

    fn conv2d_ad(
        x: Tensor<Ad, 4>,
        weight: Tensor<Ad, 4>,
        options: ConvOptions<2>,
    ) -> Tensor<Ad, 4> {
        let x = x.into_primitive().tensor();
        let w = weight.into_primitive().tensor();
        let grid = Grid::new(&x.primitive, &w.primitive, &options);
        let x_tracked = !x.node.requirement.is_none();
        let w_tracked = !w.node.requirement.is_none();
        let out: FloatTensor<Ad> = match Conv2dBackward
            .prepare::<NoCheckpointing>([x.node.clone(), w.node.clone()])
            .compute_bound()
            .stateful()
        {
            OpsKind::Tracked(prep) => {
                let y = forward(x.primitive.clone(), w.primitive.clone(), None, &options);
                let state = ConvState {
                    x: w_tracked.then_some(x.primitive),
                    weight: x_tracked.then_some(w.primitive),
                    grid,
                };
                prep.finish(state, y)
            }
            OpsKind::UnTracked(prep) => {
                prep.finish(forward(x.primitive, w.primitive, None, &options))
            }
        };
        Tensor::from_primitive(TensorPrimitive::Float(out))
    }
}

#[cfg(all(test, feature = "flex"))]
mod tests {
    use super::*;
    use rand::{Rng, SeedableRng};

    /// Calls `f(yi, xi, wi)` for every product `x[xi] * w[wi]` that output `y[yi]` of
    /// `conv2d(x, w)` sums (indices into `[N, O, Ho, Wo]`, `[N, C, H, W]` and `[O, C, kh, kw]`).
    fn for_each_term(grid: Grid, mut f: impl FnMut(usize, usize, usize)) {
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
        let (ho, wo) = (grid.ho(), grid.wo());
        for ni in 0..n {
            for oi in 0..o {
                for y in 0..ho {
                    for xo in 0..wo {
                        let yi = ((ni * o + oi) * ho + y) * wo + xo;
                        for ci in 0..c {
                            for ky in 0..kh {
                                for kx in 0..kw {
                                    let (iy, ix) = (y + ky, xo + kx);
                                    if iy < ph || ix < pw || iy - ph >= h || ix - pw >= wd {
                                        continue;
                                    }
                                    let xi = ((ni * c + ci) * h + iy - ph) * wd + ix - pw;
                                    let wi = ((oi * c + ci) * kh + ky) * kw + kx;
                                    f(yi, xi, wi);
                                }
                            }
                        }
                    }
                }
            }
        }
    }

    /// Both gradients of `sum(g * conv2d(x, w))` by direct summation in f64.
    fn naive(grid: Grid, x: &[f32], w: &[f32], g: &[f32]) -> (Vec<f64>, Vec<f64>) {
        let mut dx = vec![0.0f64; x.len()];
        let mut dw = vec![0.0f64; w.len()];
        for_each_term(grid, |yi, xi, wi| {
            dw[wi] += g[yi] as f64 * x[xi] as f64;
            dx[xi] += g[yi] as f64 * w[wi] as f64;
        });
        (dx, dw)
    }

    /// `conv2d(x, w) + bias` by direct summation in f64, `[N, O, Ho, Wo]`.
    fn naive_forward(grid: Grid, x: &[f32], w: &[f32], bias: &[f32]) -> Vec<f64> {
        let plane = grid.ho() * grid.wo();
        let mut y: Vec<f64> = (0..grid.n * grid.o * plane)
            .map(|yi| bias[yi / plane % grid.o] as f64)
            .collect();
        for_each_term(grid, |yi, xi, wi| y[yi] += x[xi] as f64 * w[wi] as f64);
        y
    }

    /// A grid from `(n, c, o, h, w, kh, kw, ph, pw)`, and random inputs for it.
    #[allow(clippy::type_complexity)]
    fn case(
        rng: &mut impl Rng,
        (n, c, o, h, w, kh, kw, ph, pw): (
            usize,
            usize,
            usize,
            usize,
            usize,
            usize,
            usize,
            usize,
            usize,
        ),
    ) -> (Grid, impl FnMut(usize) -> Vec<f32> + '_) {
        let grid = Grid {
            n,
            c,
            o,
            h,
            w,
            kh,
            kw,
            ph,
            pw,
        };
        let random = move |len: usize| (0..len).map(|_| rng.random_range(-1.0f32..1.0)).collect();
        (grid, random)
    }

    #[test]
    fn gemm_forward_matches_direct_summation() {
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(11);
        // How many cases took each path: unfolded, on the grid.
        let mut paths = [0; 2];
        // Unfolded (small maps, padding a large share) and on the padded grid (larger maps).
        for geometry in [
            (2, 3, 4, 5, 6, 3, 3, 1, 1),
            (1, 4, 3, 6, 5, 3, 1, 1, 0),
            (2, 5, 2, 4, 4, 5, 5, 2, 2),
            (2, 3, 4, 30, 26, 3, 3, 1, 1),
            (1, 2, 3, 40, 40, 3, 3, 0, 0),
            (1, 3, 2, 36, 44, 5, 3, 2, 1),
        ] {
            let (grid, mut random) = case(&mut rng, geometry);
            let x = random(grid.n * grid.c * grid.h * grid.w);
            let w = random(grid.o * grid.c * grid.kh * grid.kw);
            let bias = random(grid.o);
            let want = naive_forward(grid, &x, &w, &bias);
            paths[usize::from(grid.forward_on_grid())] += 1;
            for (b, zero) in [(Some(&bias[..]), false), (None, true)] {
                let got = gemm_forward(grid, &x, &w, b);
                assert_eq!(got.len(), want.len(), "length for {grid:?}");
                for (i, (a, want)) in got.iter().zip(&want).enumerate() {
                    let want = if zero {
                        want - bias[(i / (grid.ho() * grid.wo())) % grid.o] as f64
                    } else {
                        *want
                    };
                    assert!(
                        (*a as f64 - want).abs() <= 1e-5 * (1.0 + want.abs()),
                        "y[{i}] = {a}, want {want}, for {grid:?}, bias {b:?}"
                    );
                }
            }
        }
        assert_eq!(paths, [3, 3], "cases per path (unfolded, grid)");
    }

    #[test]
    fn gemm_backward_matches_direct_summation() {
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(7);
        // 1x1, 3x3 with and without padding, a non-square kernel and map, a single image.
        for geometry in [
            (2, 3, 4, 5, 6, 1, 1, 0, 0),
            (2, 3, 4, 5, 6, 3, 3, 1, 1),
            (3, 2, 5, 7, 4, 3, 3, 0, 0),
            (1, 4, 3, 6, 5, 3, 1, 1, 0),
            (2, 5, 2, 4, 4, 5, 5, 2, 2),
        ] {
            let (grid, mut random) = case(&mut rng, geometry);
            let x = random(grid.n * grid.c * grid.h * grid.w);
            let w = random(grid.o * grid.c * grid.kh * grid.kw);
            let g = random(grid.n * grid.o * grid.ho() * grid.wo());
            let (want_dx, want_dw) = naive(grid, &x, &w, &g);
            let (dx, dw) = gemm_backward(grid, Some(&x), Some(&w), &g);
            for (name, got, want) in [("dx", dx.unwrap(), want_dx), ("dw", dw.unwrap(), want_dw)] {
                assert_eq!(got.len(), want.len(), "{name} length for {grid:?}");
                for (i, (a, b)) in got.iter().zip(&want).enumerate() {
                    assert!(
                        (*a as f64 - b).abs() <= 1e-5 * (1.0 + b.abs()),
                        "{name}[{i}] = {a}, want {b}, for {grid:?}"
                    );
                }
            }
            // Each gradient alone is the same as when both are asked for.
            let (dx_only, none) = gemm_backward(grid, None, Some(&w), &g);
            assert!(none.is_none() && dx_only.is_some());
            let (none, dw_only) = gemm_backward(grid, Some(&x), None, &g);
            assert!(none.is_none() && dw_only.is_some());
        }
    }
}
