//! 2-D convolution that runs as a few large matrix products on the default CPU backends, forward
//! and backward.
//!
//! Burn's CPU convolution unfolds the input (`kh*kw` times its size) and multiplies, and it
//! computes the weight gradient as another convolution, with the batch as channels and the whole
//! feature map as the kernel: on the CPU that becomes thousands of narrow matrix products
//! (matrix-vector products for a 1x1 kernel), and it made a TResNet training step spend most of
//! its time there. [`conv2d`] gives the same results, but on `Flex` and `Autodiff<Flex>` a
//! stride-1 convolution runs its forward as one GEMM per kernel row over the whole batch, on
//! the padded input laid out channel-last, and under autodiff gets an analytic backward with both
//! gradients as one GEMM per kernel tap. A 1x1 kernel without padding needs no copy: each image's
//! map is already a matrix, and the forward and both gradients run as one GEMM per image on the
//! `[N, C, H, W]` slices (`conv1x1`; on maps of one position the forward stays Flex's own, and
//! on maps under 100 positions the gradients gather the batch into one GEMM, and so does the
//! forward for each image's positions past its last whole panel of 16). On
//! CPUs with AVX2 or AVX-512, the forward and the input gradient of 3x3 kernels padded by 1
//! over at least 16 channels run on the blocked channel layout instead, with the layout
//! conversions, as Winograd's F(2x2, 3x3) (`kernels::blocked::winograd`); on AVX-512, the 3x3
//! ones over at least 64 channels on maps up to 56x56 run there as a direct kernel (`direct`)
//! where they are not Winograd's: not padded by 1, or under 128 input channels on fewer than
//! 256 positions over the batch. The weight gradient of 3x3 kernels padded by 1, on any CPU, is
//! Winograd's too (`winograd_dw`) from 256 tiles over the batch: 16 GEMMs over the 2x2 tiles
//! instead of 9 over the positions. TResNet's inference calls the same kernels on maps kept in that
//! layout (`kernels::blocked`). Every other backend, and every other convolution, goes through
//! Burn's own `conv2d` unchanged.

use burn::tensor::backend::Backend;
use burn::tensor::module;
use burn::tensor::ops::ConvOptions;
use burn::tensor::Tensor;

/// `burn::tensor::module::conv2d`, faster on `Flex` and `Autodiff<Flex>` for convolutions of
/// stride 1, dilation 1 and one group (all of TResNet's trainable ones): the forward as one GEMM
/// per kernel row on the padded input laid out channel-last (or, on CPUs with AVX2 or AVX-512
/// for most 3x3 kernels, Winograd's F(2x2, 3x3) or a direct kernel on the blocked layout),
/// and under autodiff an analytic backward: the weight gradient as GEMMs (by Winograd's
/// F(2x2, 3x3) for most 3x3 kernels padded by 1), the input gradient as GEMMs or the same
/// blocked kernels. Every other backend runs Burn's own `conv2d`.
///
/// ```
/// use aia::kernels::conv2d;
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
mod backward;
#[cfg(feature = "flex")]
mod conv1x1;
#[cfg(all(feature = "flex", target_arch = "x86_64"))]
pub(crate) mod direct;
#[cfg(feature = "flex")]
mod flex;
#[cfg(feature = "flex")]
mod gemm;
#[cfg(feature = "flex")]
pub(crate) mod geometry;
#[cfg(feature = "flex")]
mod layout;
#[cfg(all(test, feature = "flex"))]
pub(super) mod tests;
#[cfg(feature = "flex")]
mod winograd_dw;
