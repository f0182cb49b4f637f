//! The two element-wise steps of TResNet's blocks, the residual add with its ReLU and the
//! squeeze-and-excitation gate, with kernels on the CPU backend.
//!
//! Written with tensor operations, each runs as single-threaded passes that allocate their
//! results: `relu(x + shortcut)` is two forward and two backward, the gate a broadcast product
//! whose backward takes a strided loop. On `Flex` and `Autodiff<Flex>`, [`add_relu`] and
//! [`scale_channels`] run instead as one parallel pass each way (two for the gate's backward),
//! with the analytic gradients. Every other backend takes the tensor-operation versions.

use burn::tensor::activation::relu;
use burn::tensor::backend::Backend;
use burn::tensor::Tensor;

#[cfg(feature = "flex")]
mod flex;
#[cfg(all(test, feature = "flex"))]
mod tests;

/// `relu(x + shortcut)`, the end of a residual block; `x` and `shortcut` have one shape.
///
/// ```
/// use aia::kernels::add_relu;
/// use burn::tensor::Tensor;
/// type B = burn::backend::Flex;
///
/// let device = Default::default();
/// let x = Tensor::<B, 4>::from_floats([[[[1.0, -2.0]]]], &device);
/// let shortcut = Tensor::<B, 4>::from_floats([[[[0.5, 1.0]]]], &device);
/// let y = add_relu(x, shortcut).into_data().to_vec::<f32>().unwrap();
/// assert_eq!(y, [1.5, 0.0]);
/// ```
pub fn add_relu<B: Backend>(x: Tensor<B, 4>, shortcut: Tensor<B, 4>) -> Tensor<B, 4> {
    #[cfg(feature = "flex")]
    let (x, shortcut) = match flex::try_add_relu(x, shortcut) {
        Ok(y) => return y,
        Err(inputs) => inputs,
    };
    add_relu_composed(x, shortcut)
}

/// [`add_relu`] written with tensor operations, on any backend.
pub fn add_relu_composed<B: Backend>(x: Tensor<B, 4>, shortcut: Tensor<B, 4>) -> Tensor<B, 4> {
    relu(x + shortcut)
}

/// Each channel of `x` (`[N, C, H, W]`) times its gate in `gate` (`[N, C]`):
/// squeeze-and-excitation's last step.
///
/// ```
/// use aia::kernels::scale_channels;
/// use burn::tensor::Tensor;
/// type B = burn::backend::Flex;
///
/// let device = Default::default();
/// let x = Tensor::<B, 4>::from_floats([[[[1.0, 2.0]], [[3.0, 4.0]]]], &device);
/// let gate = Tensor::<B, 2>::from_floats([[0.5, 2.0]], &device);
/// let y = scale_channels(x, gate).into_data().to_vec::<f32>().unwrap();
/// assert_eq!(y, [0.5, 1.0, 6.0, 8.0]);
/// ```
pub fn scale_channels<B: Backend>(x: Tensor<B, 4>, gate: Tensor<B, 2>) -> Tensor<B, 4> {
    #[cfg(feature = "flex")]
    let (x, gate) = match flex::try_scale_channels(x, gate) {
        Ok(y) => return y,
        Err(inputs) => inputs,
    };
    scale_channels_composed(x, gate)
}

/// [`scale_channels`] written with tensor operations, on any backend.
pub fn scale_channels_composed<B: Backend>(x: Tensor<B, 4>, gate: Tensor<B, 2>) -> Tensor<B, 4> {
    let [n, c] = gate.dims();
    x * gate.reshape([n, c, 1, 1])
}
