//! The crate's compute kernels, in one place, chosen one way.
//!
//! The model and the loss are written with Burn's tensor operations and run on any backend. A
//! few operations have faster kernels of the crate's own on some backends; each is reached
//! through one function here, generic over `B: Backend`, which picks the kernel by the backend's
//! type at run time (a `TypeId` comparison) and falls back to Burn's operations on every other backend:
//!
//! | operation | kernel | where |
//! |---|---|---|
//! | [`conv2d`] | GEMM convolution (one GEMM per image for 1x1 kernels; Winograd or direct on the blocked layout for most 3x3 layers), analytic backward (Winograd's weight gradient for most 3x3 kernels) | `Flex`, `Autodiff<Flex>` |
//! | TResNet's inference ([`TResNet::forward`](crate::model::TResNet::forward) and the other `forward*`) | blocked channel layout, Winograd (3x3) and direct (1x1) convolutions with folded BatchNorms and fused epilogues | `Flex` on x86-64 with AVX2 or AVX-512 |
//! | [`batch_norm_act`] | two-pass BatchNorm + leaky ReLU | `Autodiff<Flex>` |
//! | [`add_relu`], [`scale_channels`] | one parallel pass each way (two for the gate's gradients) | `Flex`, `Autodiff<Flex>` |
//! | [`blur_pool2d`], [`avg_pool_2x2`] | one parallel pass over the planes each way | `Flex`, `Autodiff<Flex>` |
//! | [`adam_update`] | one in-place pass over a parameter, its gradient and moments | `Flex` |
//! | [`AsymmetricLoss::forward`](crate::loss::AsymmetricLoss::forward) | fused loss and gradient | `Flex`, `NdArray`, CUDA and wgpu without fusion, and their `Autodiff` |
//!
//! On Burn's fusion backends (`burn::backend::Cuda` and `Wgpu` with Burn's default features)
//! the composed operations run, and Burn fuses them.
//!
//! The CPU kernels pick their code path at run time (AVX-512, AVX2 or portable code on x86-64);
//! the environment variable [`CPU_PATH_ENV`] (`AIA_CPU_PATH=portable|avx2|avx512|avx512-binary`)
//! caps it, so that a machine can run its tests on each lower path: the loss kernel's loops, and
//! the direct convolution's tiles (AVX-512 or AVX2; none on the portable path, where inference
//! runs the modules' own operations). The GEMM of the convolutions is the `gemm` crate's, which picks its
//! own SIMD code at run time.
//!
//! [`keep_freed_memory`] is for programs that train on the CPU: it keeps the memory that each
//! step frees in the process (glibc), instead of taking it back from the system as fresh pages.
//!
//! The host kernels on plain slices, [`asymmetric_loss_cpu`] and
//! [`asymmetric_loss_cpu_in_place`] (and [`asymmetric_loss_cpu_elementwise`]), are public for benchmarks and for callers with their own
//! buffers.

mod adam;
mod allocator;
mod batch_norm;
#[cfg(all(feature = "flex", target_arch = "x86_64"))]
pub(crate) mod blocked;
mod buffer;
mod conv;
mod dispatch;
#[cfg(feature = "flex")]
mod host;
pub(crate) mod loss;
mod pointwise;
pub(crate) mod pool;

#[cfg(all(feature = "flex", target_arch = "x86_64"))]
pub(crate) use blocked::map::host_values;

pub use adam::{adam_update, adam_update_composed, AdamOutput, AdamUpdate};
pub use allocator::keep_freed_memory;
pub use batch_norm::{batch_norm_act, batch_norm_act_composed, BatchNormOutput};
pub use buffer::zeroed_f32;
pub use conv::conv2d;
pub use loss::{
    asymmetric_loss_cpu, asymmetric_loss_cpu_elementwise, asymmetric_loss_cpu_in_place,
    CPU_PATH_ENV,
};
pub use pointwise::{add_relu, add_relu_composed, scale_channels, scale_channels_composed};
pub use pool::{avg_pool_2x2, avg_pool_2x2_composed, blur_pool2d, blur_pool2d_composed};
