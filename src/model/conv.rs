//! 2-D convolution whose backward pass runs as a few large matrix products on the default CPU
//! training backend.
//!
//! Burn computes a convolution's weight gradient as another convolution, with the batch as
//! channels and the whole feature map as the kernel. On the CPU that becomes thousands of narrow
//! matrix products (matrix-vector products for a 1x1 kernel), and it made a TResNet training step
//! spend most of its time there. [`conv2d`] gives the same forward and the same gradients, but on
//! `Autodiff<Flex>` (this crate's CPU training backend) a stride-1 convolution gets an analytic
//! backward: both gradients as one GEMM per kernel tap over the whole batch.
//! Every other backend, and every other convolution, goes through Burn's own `conv2d` unchanged.

use burn::tensor::backend::Backend;
use burn::tensor::module;
use burn::tensor::ops::ConvOptions;
use burn::tensor::Tensor;

/// `burn::tensor::module::conv2d`, with a faster backward on `Autodiff<Flex>` for convolutions
/// of stride 1, dilation 1 and one group (all of TResNet's trainable ones).
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
    let (x, weight) = match flex::try_conv2d(x, weight, options.clone()) {
        Ok(y) => {
            return match bias {
                Some(b) => {
                    let out = b.dims()[0];
                    y + b.reshape([1, out, 1, 1])
                }
                None => y,
            }
        }
        Err(inputs) => inputs,
    };
    module::conv2d(x, weight, bias, options)
}

#[cfg(feature = "flex")]
/// Whether the GEMM backward applies to a convolution with these options.
fn gemm_backward_applies(options: &ConvOptions<2>) -> bool {
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

/// The gradients of `y = conv2d(x, w)` (stride 1) on host slices, by GEMM: for every tap,
/// `dW[:, :, ky, kx] = G X_k^T` and `dX_k += W[:, :, ky, kx]^T G`, where `G` is the output
/// gradient on the padded grid (`[O, cols]`) and `X_k` the tap's shifted view of the padded input.
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

    let Grid {
        n, c, o, h, w: wd, ..
    } = grid;
    let (hp, wp, ho, wo) = (grid.hp(), grid.wp(), grid.ho(), grid.wo());
    let (cols, plane, taps) = (grid.cols(), hp * wp, grid.kh * grid.kw);

    // The output gradient on the padded grid, [O][N][Hp][Wp].
    let mut gg = vec![0.0f32; o * cols];
    gg.par_chunks_mut(cols).enumerate().for_each(|(oi, row)| {
        for ni in 0..n {
            for y in 0..ho {
                let src = ((ni * o + oi) * ho + y) * wo;
                let dst = ni * plane + y * wp;
                row[dst..dst + wo].copy_from_slice(&g[src..src + wo]);
            }
        }
    });

    let dw = x.map(|x| {
        // The input, zero-padded, [C][N][Hp][Wp], with slack for the last taps' windows.
        let mut xx = vec![0.0f32; c * cols + grid.slack()];
        xx[..c * cols]
            .par_chunks_mut(cols)
            .enumerate()
            .for_each(|(ci, row)| {
                for ni in 0..n {
                    for y in 0..h {
                        let src = ((ni * c + ci) * h + y) * wd;
                        let dst = ni * plane + (y + grid.ph) * wp + grid.pw;
                        row[dst..dst + wd].copy_from_slice(&x[src..src + wd]);
                    }
                }
            });
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
                        gemm::gemm(
                            o,
                            c,
                            len,
                            dw.as_mut_ptr().add(tap),
                            taps as isize,
                            (c * taps) as isize,
                            false,
                            gg.as_ptr().add(start),
                            1,
                            cols as isize,
                            xx.as_ptr().add(ky * wp + kx + start),
                            cols as isize,
                            1,
                            0.0,
                            1.0,
                            false,
                            false,
                            false,
                            gemm::Parallelism::None,
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

    let dx = w.map(|w| {
        // dX on the padded grid, [C][N][Hp][Wp] plus slack: tap k adds W_k^T G at offset k.
        let mut xx = vec![0.0f32; c * cols + grid.slack()];
        for ky in 0..grid.kh {
            for kx in 0..grid.kw {
                let tap = ky * grid.kw + kx;
                // SAFETY: dst is [C, cols] at stride (1, cols) from `ky*wp + kx`, its largest
                // index (c-1)*cols + off + cols - 1 inside `xx`; positions of one call never
                // alias (distinct (ci, j) give distinct ci*cols + j). The columns that run past a
                // row into the next receive G's zero padding columns, adding exactly 0. lhs is
                // W's tap as [C, O] at stride (O-major C*taps, C-major taps); rhs is `gg`.
                unsafe {
                    gemm::gemm(
                        c,
                        cols,
                        o,
                        xx.as_mut_ptr().add(ky * wp + kx),
                        1,
                        cols as isize,
                        true,
                        w.as_ptr().add(tap),
                        (c * taps) as isize,
                        taps as isize,
                        gg.as_ptr(),
                        1,
                        cols as isize,
                        1.0,
                        1.0,
                        false,
                        false,
                        false,
                        gemm::Parallelism::Rayon(0),
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
    });
    (dx, dw)
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
    use burn::tensor::{DType, TensorData, TensorMetadata, TensorPrimitive};

    use super::super::on_flex::{host_slice, on_autodiff_flex, Ad};
    use super::{gemm_backward, gemm_backward_applies, Grid, Tensor};

    /// The convolution through the GEMM backward when `B` is `Autodiff<Flex>` and the
    /// convolution qualifies; otherwise the inputs back, untouched.
    #[allow(clippy::type_complexity)]
    pub(super) fn try_conv2d<B: Backend>(
        x: Tensor<B, 4>,
        weight: Tensor<B, 4>,
        options: ConvOptions<2>,
    ) -> Result<Tensor<B, 4>, (Tensor<B, 4>, Tensor<B, 4>)> {
        let ([n, c, h, w], [o, wc, kh, kw]) = (x.dims(), weight.dims());
        // Anything unusual (empty, mismatched or too small for the kernel) takes Burn's path
        // and its checks.
        let shapes_fit = n * c * h * w * o * kh * kw > 0
            && wc == c
            && h + 2 * options.padding[0] >= kh
            && w + 2 * options.padding[1] >= kw;
        if !gemm_backward_applies(&options)
            || !shapes_fit
            || x.dtype() != DType::F32
            || weight.dtype() != DType::F32
        {
            return Err((x, weight));
        }
        on_autodiff_flex(
            (x, weight),
            |(x, weight): (Tensor<Ad, 4>, Tensor<Ad, 4>)| conv2d_ad(x, weight, options),
        )
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
        let [n, c, h, wd] = x.primitive.shape().dims();
        let [o, _, kh, kw] = w.primitive.shape().dims();
        let grid = Grid {
            n,
            c,
            o,
            h,
            w: wd,
            kh,
            kw,
            ph: options.padding[0],
            pw: options.padding[1],
        };
        let x_tracked = !x.node.requirement.is_none();
        let w_tracked = !w.node.requirement.is_none();
        let out: FloatTensor<Ad> = match Conv2dBackward
            .prepare::<NoCheckpointing>([x.node.clone(), w.node.clone()])
            .compute_bound()
            .stateful()
        {
            OpsKind::Tracked(prep) => {
                let y = Flex::conv2d(x.primitive.clone(), w.primitive.clone(), None, options);
                let state = ConvState {
                    x: w_tracked.then_some(x.primitive),
                    weight: x_tracked.then_some(w.primitive),
                    grid,
                };
                prep.finish(state, y)
            }
            OpsKind::UnTracked(prep) => {
                prep.finish(Flex::conv2d(x.primitive, w.primitive, None, options))
            }
        };
        Tensor::from_primitive(TensorPrimitive::Float(out))
    }
}

#[cfg(all(test, feature = "flex"))]
mod tests {
    use super::*;
    use rand::{Rng, SeedableRng};

    /// Both gradients of `sum(g * conv2d(x, w))` by direct summation in f64.
    fn naive(grid: Grid, x: &[f32], w: &[f32], g: &[f32]) -> (Vec<f64>, Vec<f64>) {
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
        let mut dx = vec![0.0f64; n * c * h * wd];
        let mut dw = vec![0.0f64; o * c * kh * kw];
        for ni in 0..n {
            for oi in 0..o {
                for y in 0..ho {
                    for xo in 0..wo {
                        let gv = g[((ni * o + oi) * ho + y) * wo + xo] as f64;
                        for ci in 0..c {
                            for ky in 0..kh {
                                for kx in 0..kw {
                                    let (iy, ix) = (y + ky, xo + kx);
                                    if iy < ph || ix < pw || iy - ph >= h || ix - pw >= wd {
                                        continue;
                                    }
                                    let xi = ((ni * c + ci) * h + iy - ph) * wd + ix - pw;
                                    let wi = ((oi * c + ci) * kh + ky) * kw + kx;
                                    dw[wi] += gv * x[xi] as f64;
                                    dx[xi] += gv * w[wi] as f64;
                                }
                            }
                        }
                    }
                }
            }
        }
        (dx, dw)
    }

    #[test]
    fn gemm_backward_matches_direct_summation() {
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(7);
        // 1x1, 3x3 with and without padding, a non-square kernel and map, a single image.
        for (n, c, o, h, wd, kh, kw, ph, pw) in [
            (2, 3, 4, 5, 6, 1, 1, 0, 0),
            (2, 3, 4, 5, 6, 3, 3, 1, 1),
            (3, 2, 5, 7, 4, 3, 3, 0, 0),
            (1, 4, 3, 6, 5, 3, 1, 1, 0),
            (2, 5, 2, 4, 4, 5, 5, 2, 2),
        ] {
            let grid = Grid {
                n,
                c,
                o,
                h,
                w: wd,
                kh,
                kw,
                ph,
                pw,
            };
            let mut random = |len: usize| -> Vec<f32> {
                (0..len).map(|_| rng.random_range(-1.0f32..1.0)).collect()
            };
            let x = random(n * c * h * wd);
            let w = random(o * c * kh * kw);
            let g = random(n * o * grid.ho() * grid.wo());
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
