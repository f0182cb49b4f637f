//! The GEMM convolution on `Flex` and `Autodiff<Flex>`, with its analytic backward.

use burn::backend::autodiff::checkpoint::base::Checkpointer;
use burn::backend::autodiff::checkpoint::strategy::NoCheckpointing;
use burn::backend::autodiff::grads::Gradients;
use burn::backend::autodiff::ops::{Backward, Ops, OpsKind};
use burn::backend::flex::FlexTensor;
use burn::backend::Flex;
use burn::tensor::backend::Backend;
use burn::tensor::ops::{ConvOptions, FloatTensor, ModuleOps};
use burn::tensor::{DType, TensorData, TensorPrimitive};

#[cfg(target_arch = "x86_64")]
use super::direct::{Isa, LANES};
#[cfg(target_arch = "x86_64")]
use crate::kernels::blocked::winograd::{self, Schedule, Winograd};
use crate::kernels::dispatch::{on_backend, Ad};
use crate::kernels::host::host_slice;

use super::backward::gemm_backward;
use super::conv1x1;
use super::gemm::gemm_forward;
use super::geometry::{gemm_applies, Grid};
use super::winograd_dw;
use burn::tensor::Tensor;

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
            Tensor::<Flex, 4>::from_primitive(TensorPrimitive::Float(forward(x, w, b, &options)))
        }),
    }
}

/// The forward convolution on Flex: one GEMM per image for the 1x1 kernels that
/// [`conv1x1::applies`] takes, Flex's own convolution for the other 1x1 kernels; for larger
/// kernels the blocked layout's kernels where they are faster ([`Blocked::for_grid`]), else the
/// GEMM kernels.
fn forward(
    x: FlexTensor,
    w: FlexTensor,
    bias: Option<FlexTensor>,
    options: &ConvOptions<2>,
) -> FlexTensor {
    let grid = Grid::new(&x, &w, options);
    if grid.kh * grid.kw == 1 && !conv1x1::applies(&grid) {
        return Flex::conv2d(x, w, bias, options.clone());
    }
    let (x, w) = (x.to_contiguous(), w.to_contiguous());
    let bias = bias.map(|b| b.to_contiguous());
    let (xs, ws, bs) = (
        host_slice(&x),
        host_slice(&w),
        bias.as_ref().map(host_slice),
    );
    let y = if conv1x1::applies(&grid) {
        conv1x1::forward(grid, xs, ws, bs)
    } else {
        match Blocked::for_grid(&grid) {
            Some(blocked) => blocked.forward(grid, xs, ws, bs),
            None => gemm_forward(grid, xs, ws, bs),
        }
    };
    FlexTensor::from_data(TensorData::new(y, [grid.n, grid.o, grid.ho(), grid.wo()]))
}

/// Positions over the batch from which Winograd's convolution beats the direct kernel in
/// training, where the kernels are transformed at each call. The transform costs the same for
/// any map, so the break-even is a count of positions: on TResNet-M's 3x3 layers at batch 8,
/// Winograd ran 1.4-1.5x faster on 56x56 to 14x14 maps and 1.25x on 7x7 maps of 512 channels
/// (392 positions, of which the kernel transform takes about 40%). Against the GEMMs there is
/// no such point: at batch 1, Winograd ran 1.9x faster than the GEMMs on 14x14 maps of 256
/// channels and 1.1x on 7x7 maps of 512 (AVX2), and 1.2-1.5x on maps of 4x4 to 8x8 with 16 to
/// 128 channels.
#[cfg(target_arch = "x86_64")]
const WINOGRAD_POSITIONS: usize = 256;

/// Input channels from which Winograd's convolution beats the direct kernel in training on
/// maps of any size: there the products outweigh the kernel transform, which the tasks of
/// [`Schedule::ByOutputGroups`] run on kernels in their cache. On an AMD EPYC with AVX-512
/// (Zen 4), forward on `[N, C, H, W]` slices, conversions included, best of 15, Winograd took
/// 0.56-0.87x the direct kernel's time with 128 to 1024 channels on 14x14 and 7x7 maps at
/// batch 1 to 5 (1.00-1.08x on 128 channels at 7x7, one image), and 1.1-1.7x with 64 and 96
/// channels on maps under 256 positions.
#[cfg(target_arch = "x86_64")]
const WINOGRAD_CHANNELS: usize = 128;

/// Winograd's algorithm of training, which transforms the kernels at each call: F(2x2, 3x3).
/// F(4x4, 3x3) transforms 2.25 times as many values; on AVX2 TResNet-M's layers on 56x56 and
/// 28x28 maps at batch 8 ran 0.99-1.52x as fast with it (forward, and forward with both
/// gradients), those on 14x14 and 7x7 maps 0.83-1.04x, but a whole training step at 224x224
/// batch 8 took 1.92-2.58 s against 1.86-2.38 s in four interleaved pairs of runs, with 10 MB
/// more peak resident memory and sums that round about ten times as much.
#[cfg(target_arch = "x86_64")]
const TRAINING_WINOGRAD: Winograd = Winograd::F2x2;

/// A kernel of the blocked layout that computes a stride-1 convolution on `[N, C, H, W]`
/// slices, converting them around it.
#[derive(Debug, Clone, Copy)]
pub(super) enum Blocked {
    /// Winograd's [`TRAINING_WINOGRAD`], with the tiles of this instruction set.
    #[cfg(target_arch = "x86_64")]
    Winograd(Isa),
    /// The direct kernel.
    #[cfg(target_arch = "x86_64")]
    Direct,
}

impl Blocked {
    /// The blocked kernel that runs this convolution faster than the GEMMs, if any: Winograd's
    /// for 3x3 kernels padded by 1 over at least 16 input channels (a whole block), with the
    /// tiles of the kernel path (AVX-512 or AVX2), unless the direct kernel applies
    /// ([`super::direct::applies`], AVX-512 only: its AVX2 tiles lose to the GEMMs) on a map of
    /// fewer than [`WINOGRAD_POSITIONS`] positions over the batch with fewer than
    /// [`WINOGRAD_CHANNELS`] input channels. At batch 8 Winograd ran 1.35x faster than the GEMMs
    /// on the stem's 48 channels at 56x56, 1.6x on 64 channels at 112x112 (TResNet-M at 448),
    /// 1.1-2.2x on 16 and 32 channels; with 8 or 3 channels, 1.3-1.5x slower.
    pub(super) fn for_grid(grid: &Grid) -> Option<Self> {
        #[cfg(target_arch = "x86_64")]
        {
            let direct = super::direct::applies(grid);
            let winograd = winograd::applies(grid)
                && grid.c >= LANES
                && (!direct
                    || grid.n * grid.h * grid.w >= WINOGRAD_POSITIONS
                    || grid.c >= WINOGRAD_CHANNELS);
            match Isa::best() {
                Some(isa) if winograd => Some(Self::Winograd(isa)),
                _ if direct => Some(Self::Direct),
                _ => None,
            }
        }
        #[cfg(not(target_arch = "x86_64"))]
        {
            let _ = grid;
            None
        }
    }

    /// `conv2d(x, w) + bias`, `[N, O, Ho, Wo]`.
    fn forward(self, grid: Grid, x: &[f32], w: &[f32], bias: Option<&[f32]>) -> Vec<f32> {
        match self {
            #[cfg(target_arch = "x86_64")]
            Self::Winograd(isa) => {
                let w = winograd::Kernels::of(w, [grid.o, grid.c]);
                let schedule = Schedule::for_grid(TRAINING_WINOGRAD, &grid);
                winograd::forward_nchw(TRAINING_WINOGRAD, schedule, isa, grid, x, w, bias)
            }
            #[cfg(target_arch = "x86_64")]
            Self::Direct => super::direct::forward(grid, x, w, bias),
        }
    }

    /// The input gradient of `conv2d(x, w)` on `grid` from the output gradient `g`: the forward
    /// of the transposed convolution, by the blocked kernel that runs that one, if any.
    fn input_gradient(grid: &Grid, w: &[f32], g: &[f32]) -> Option<Vec<f32>> {
        #[cfg(target_arch = "x86_64")]
        {
            if grid.ph >= grid.kh || grid.pw >= grid.kw {
                return None;
            }
            let turned_grid = super::direct::transposed_grid(grid);
            Some(match Self::for_grid(&turned_grid)? {
                Self::Winograd(isa) => {
                    let w = winograd::Kernels::transposed(w, [grid.o, grid.c]);
                    let schedule = Schedule::for_grid(TRAINING_WINOGRAD, &turned_grid);
                    winograd::forward_nchw(
                        TRAINING_WINOGRAD,
                        schedule,
                        isa,
                        turned_grid,
                        g,
                        w,
                        None,
                    )
                }
                Self::Direct => {
                    let (_, turned) = super::direct::transposed(*grid, w);
                    super::direct::forward(turned_grid, g, &turned, None)
                }
            })
        }
        #[cfg(not(target_arch = "x86_64"))]
        {
            let _ = (grid, w, g);
            None
        }
    }
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
        let (x, w, g) = (
            node_w.as_ref().and(x.as_ref()).map(host_slice),
            node_x.as_ref().and(w.as_ref()).map(host_slice),
            host_slice(&g),
        );
        let (dx, dw) = if conv1x1::gradients_apply(&grid) {
            (
                w.map(|w| conv1x1::input_gradient(grid, w, g)),
                x.map(|x| conv1x1::weight_gradient(grid, x, g)),
            )
        } else {
            other_gradients(grid, x, w, g)
        };
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

/// Both gradients of a convolution that [`conv1x1`] leaves (each `None` when its other input,
/// `x` or `w`, is): each by the fastest kernel that computes it, the GEMMs for the others.
fn other_gradients(
    grid: Grid,
    x: Option<&[f32]>,
    w: Option<&[f32]>,
    g: &[f32],
) -> (Option<Vec<f32>>, Option<Vec<f32>>) {
    let blocked_dx = w.and_then(|w| Blocked::input_gradient(&grid, w, g));
    let winograd_dw = x.filter(|_| winograd_dw::preferred(&grid));
    let (dx, dw) = gemm_backward(
        grid,
        x.filter(|_| winograd_dw.is_none()),
        w.filter(|_| blocked_dx.is_none()),
        g,
    );
    let dx = dx.or(blocked_dx);
    let dw = dw.or_else(|| winograd_dw.map(|x| winograd_dw::weight_gradient(grid, x, g)));
    (dx, dw)
}

fn conv2d_ad(x: Tensor<Ad, 4>, weight: Tensor<Ad, 4>, options: ConvOptions<2>) -> Tensor<Ad, 4> {
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
        OpsKind::UnTracked(prep) => prep.finish(forward(x.primitive, w.primitive, None, &options)),
    };
    Tensor::from_primitive(TensorPrimitive::Float(out))
}
