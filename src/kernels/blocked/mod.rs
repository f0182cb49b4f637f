//! Feature maps in the blocked channel layout, and TResNet's inference operations on them.
//!
//! A [`BlockedMap`] holds a batch of feature maps as `[N][C/16][H][W][16]`: 16 channels of one
//! position are one AVX-512 vector. On that layout the direct convolution reads its input with no
//! unfolded copy, and the operations between convolutions are passes over whole vectors. A
//! network converts its input once and its last map back once, instead of converting around each
//! convolution:
//!
//! - [`FoldedConv`]: a convolution with the BatchNorm folded into its weights and bias, the
//!   residual add and the (leaky) ReLU in its epilogue, packed once per model and kept
//!   ([`folded_conv`]): 3x3 kernels by Winograd's F(4x4, 3x3) or F(2x2, 3x3) (`winograd`, by the
//!   map's size), whose 36 or 16 products per tile are 1x1 convolutions of the direct kernel,
//!   1x1 kernels by the direct kernel;
//! - [`blur_pool`], [`avg_pool_2x2`], [`channel_means`]: the anti-aliased downsampling, the
//!   shortcut's pooling, and the global (and squeeze-and-excitation) average;
//! - [`scale_channels`], [`add_relu`]: the squeeze-and-excitation gate, and the residual add.
//!
//! Channels past a multiple of 16 are zero in every map, and every operation keeps them zero.
//! Only on `Flex` and where the CPU runs AVX2 or AVX-512 ([`available`]).

mod cache;
mod conv;
pub(crate) mod map;
mod pointwise;
mod pool;
#[cfg(test)]
mod tests;
pub(crate) mod winograd;

pub(crate) use cache::{folded_conv, ConvNorm};
pub(crate) use conv::FoldedConv;
pub(crate) use map::BlockedMap;
pub(crate) use pointwise::{add_relu, scale_channels};
pub(crate) use pool::{avg_pool_2x2, blur_pool, channel_means};

use std::any::TypeId;

use burn::backend::Flex;
use burn::tensor::backend::Backend;

use crate::kernels::conv::direct::Isa;

pub(crate) use crate::kernels::conv::direct::LANES;

/// Whether backend `B` runs inference on blocked maps: it is `Flex`, on a CPU whose kernel path
/// (capped by [`CPU_PATH_ENV`](crate::kernels::CPU_PATH_ENV)) is AVX2 or AVX-512.
pub(crate) fn available<B: Backend>() -> bool {
    TypeId::of::<B>() == TypeId::of::<Flex>() && Isa::best().is_some()
}
