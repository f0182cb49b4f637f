//! Training-mode BatchNorm followed by an optional leaky ReLU, with a fused kernel on the default
//! CPU training backend.
//!
//! Written with tensor operations, a training-mode BatchNorm and its activation take about ten
//! passes over the activations forward and twice that backward, each on one core. On
//! `Autodiff<Flex>` [`batch_norm_act`] runs instead as two parallel passes forward (statistics;
//! normalise and activate) and two backward (the per-channel sums of the gradient; the input
//! gradient), with the analytic gradient. Every other backend takes the tensor-operation version.

use burn::tensor::activation::leaky_relu;
use burn::tensor::backend::Backend;
use burn::tensor::Tensor;

/// The output of [`batch_norm_act`]: the activations and the batch statistics they were
/// normalised with (constants, for the running estimates).
#[derive(Debug, Clone)]
pub struct BatchNormOutput<B: Backend> {
    /// `act(gamma * (x - mean) / sqrt(var + eps) + beta)`, shaped as the input.
    pub output: Tensor<B, 4>,
    /// The per-channel mean of the batch, `[C]`.
    pub mean: Tensor<B, 1>,
    /// The per-channel biased variance of the batch, `[C]`.
    pub var: Tensor<B, 1>,
}

/// BatchNorm of `x` (`[N, C, H, W]`) with the batch's own statistics, scaled by `gamma` and
/// shifted by `beta` (`[C]` each), then a leaky ReLU of slope `leaky_slope` if given.
///
/// Gradients flow to `x`, `gamma` and `beta`; the returned statistics are detached.
///
/// ```
/// use aia::kernels::batch_norm_act;
/// use burn::tensor::Tensor;
/// type B = burn::backend::Autodiff<burn::backend::Flex>;
///
/// let device = Default::default();
/// let x = Tensor::<B, 4>::from_floats([[[[1.0, 3.0]]], [[[5.0, 7.0]]]], &device);
/// let (gamma, beta) = (Tensor::ones([1], &device), Tensor::zeros([1], &device));
/// let bn = batch_norm_act(x, gamma, beta, 0.0, Some(0.1));
/// assert_eq!(bn.mean.into_scalar(), 4.0);
/// assert_eq!(bn.var.into_scalar(), 5.0);
/// // (1 - 4) / sqrt(5) is negative: scaled by the slope.
/// let first = bn.output.flatten::<1>(0, 3).slice([0..1]).into_scalar();
/// assert!((first - 0.1 * -3.0 / 5f32.sqrt()).abs() < 1e-6);
/// ```
pub fn batch_norm_act<B: Backend>(
    x: Tensor<B, 4>,
    gamma: Tensor<B, 1>,
    beta: Tensor<B, 1>,
    epsilon: f64,
    leaky_slope: Option<f64>,
) -> BatchNormOutput<B> {
    #[cfg(feature = "flex")]
    let (x, gamma, beta) = match flex::try_batch_norm_act(x, gamma, beta, epsilon, leaky_slope) {
        Ok(out) => return out,
        Err(inputs) => inputs,
    };
    batch_norm_act_composed(x, gamma, beta, epsilon, leaky_slope)
}

/// [`batch_norm_act`] written with tensor operations, on any backend.
///
/// Every broadcast is over the innermost axis of a contiguous `[N, C, H*W]` tensor against a
/// materialised `[N, C, 1]` one: the CPU backends run those with SIMD kernels, whereas a
/// `[1, C, 1, 1]` broadcast takes a scalar strided loop several times slower.
pub fn batch_norm_act_composed<B: Backend>(
    x: Tensor<B, 4>,
    gamma: Tensor<B, 1>,
    beta: Tensor<B, 1>,
    epsilon: f64,
    leaky_slope: Option<f64>,
) -> BatchNormOutput<B> {
    let [n, c, h, w] = x.dims();
    let x = x.reshape([n, c, h * w]);
    let per_row = |t: Tensor<B, 3>| t.repeat_dim(0, n);
    let mean = x.clone().mean_dim(2).mean_dim(0); // [1, C, 1]
    let centered = x - per_row(mean.clone());
    let var = centered.clone().square().mean_dim(2).mean_dim(0); // biased, [1, C, 1]
    let scale = gamma.reshape([1, c, 1]) / var.clone().add_scalar(epsilon).sqrt();
    let y = centered * per_row(scale) + per_row(beta.reshape([1, c, 1]));
    let y = y.reshape([n, c, h, w]);
    BatchNormOutput {
        output: match leaky_slope {
            Some(slope) => leaky_relu(y, slope),
            None => y,
        },
        mean: mean.reshape([c]).detach(),
        var: var.reshape([c]).detach(),
    }
}

#[cfg(feature = "flex")]
mod cpu;
#[cfg(feature = "flex")]
mod flex;
#[cfg(all(test, feature = "flex"))]
mod tests;
