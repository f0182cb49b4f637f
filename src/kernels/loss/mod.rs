//! The fused asymmetric loss: one pass computes the loss and its gradient together.
//!
//! [`asymmetric_loss`] is what [`AsymmetricLoss::forward`](crate::loss::AsymmetricLoss::forward)
//! runs. It picks, by the backend's type ([`on_backend`]), the kernel of that backend: the
//! vectorised, multi-threaded CPU kernel ([`asymmetric_loss_cpu`]) on Flex and NdArray, a CubeCL
//! kernel on the CUDA and wgpu backends without fusion, each with its analytic backward under
//! [`Autodiff`](burn::backend::Autodiff). Any other backend, Burn's fusion backends included,
//! runs the composed reference, which a fusion backend fuses itself.

mod autodiff;
mod cpu;
#[cfg(any(feature = "cuda", feature = "wgpu"))]
mod cube;
#[cfg(feature = "flex")]
mod flex;
#[cfg(feature = "ndarray")]
mod ndarray;
#[cfg(all(test, feature = "flex"))]
mod tests;

use burn::tensor::backend::Backend;
use burn::tensor::ops::FloatTensor;
use burn::tensor::{Tensor, TensorPrimitive};

use super::dispatch::on_backend;
use crate::loss::{composed, LossParams};

#[cfg(all(feature = "flex", target_arch = "x86_64"))]
pub(crate) use cpu::CpuPath;
pub use cpu::{
    asymmetric_loss_cpu, asymmetric_loss_cpu_elementwise, asymmetric_loss_cpu_in_place,
    CPU_PATH_ENV,
};

/// A backend with a fused kernel for the asymmetric loss, on its own tensor primitives.
pub(crate) trait LossKernel: Backend {
    /// The reduced loss (a `[1]` tensor) of `logits` against `targets`, both `[batch, classes]`;
    /// with [`Reduction::None`](crate::loss::Reduction::None) the per-element losses, flattened
    /// (`[batch * classes]`).
    fn asymmetric_loss(
        logits: FloatTensor<Self>,
        targets: FloatTensor<Self>,
        params: &LossParams,
    ) -> FloatTensor<Self>;

    /// The reduced loss and its gradient with respect to `logits` (for an incoming gradient of
    /// 1; of each element's own loss without a reduction), computed together so that the
    /// backward pass has nothing left to read.
    fn asymmetric_loss_with_grad(
        logits: FloatTensor<Self>,
        targets: FloatTensor<Self>,
        params: &LossParams,
    ) -> (FloatTensor<Self>, FloatTensor<Self>);

    /// `grad * grad_out`, where `grad_out` is the `[1]` gradient flowing into the loss.
    fn asymmetric_loss_scale_grad(
        grad: FloatTensor<Self>,
        grad_out: FloatTensor<Self>,
    ) -> FloatTensor<Self> {
        let grad = float::<Self, 2>(grad);
        let dims = grad.dims();
        let factor = float::<Self, 1>(grad_out).reshape([1, 1]).expand(dims);
        (grad * factor).into_primitive().tensor()
    }
}

/// A float primitive as a tensor of rank `D`.
pub(crate) fn float<B: Backend, const D: usize>(t: FloatTensor<B>) -> Tensor<B, D> {
    Tensor::from_primitive(TensorPrimitive::Float(t))
}

/// Logits and targets on backend `B`.
type Inputs<B> = (Tensor<B, 2>, Tensor<B, 2>);

/// The loss through `K`'s kernel when `B` is `K`; otherwise the inputs back.
fn on_kernel<B: Backend, K: LossKernel>(
    inputs: Inputs<B>,
    params: &LossParams,
) -> Result<Tensor<B, 1>, Inputs<B>> {
    on_backend(inputs, |(x, y): Inputs<K>| {
        float::<K, 1>(K::asymmetric_loss(
            x.into_primitive().tensor(),
            y.into_primitive().tensor(),
            params,
        ))
    })
}

/// The reduced loss of `logits` against `targets` (same shape) on any backend: the backend's
/// fused kernel where it has one, the composed reference elsewhere.
pub(crate) fn asymmetric_loss<B: Backend>(
    logits: Tensor<B, 2>,
    targets: Tensor<B, 2>,
    params: &LossParams,
) -> Tensor<B, 1> {
    let inputs: Result<Tensor<B, 1>, Inputs<B>> = Err((logits, targets));
    #[cfg(feature = "flex")]
    let inputs = inputs
        .or_else(|i| on_kernel::<B, burn::backend::Flex>(i, params))
        .or_else(|i| on_kernel::<B, super::dispatch::Ad>(i, params));
    #[cfg(feature = "ndarray")]
    let inputs = inputs
        .or_else(|i| on_kernel::<B, burn::backend::NdArray>(i, params))
        .or_else(|i| on_kernel::<B, burn::backend::Autodiff<burn::backend::NdArray>>(i, params));
    #[cfg(feature = "cuda")]
    let inputs = inputs
        .or_else(|i| on_kernel::<B, cube::CudaKernel>(i, params))
        .or_else(|i| on_kernel::<B, burn::backend::Autodiff<cube::CudaKernel>>(i, params));
    #[cfg(feature = "wgpu")]
    let inputs = inputs
        .or_else(|i| on_kernel::<B, cube::WgpuKernel>(i, params))
        .or_else(|i| on_kernel::<B, burn::backend::Autodiff<cube::WgpuKernel>>(i, params));
    inputs.unwrap_or_else(|(x, y)| composed::loss(params, x, y))
}
