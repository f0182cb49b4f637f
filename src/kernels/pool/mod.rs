//! TResNet's downsampling pools, the anti-aliased blur pool and the shortcut's 2x2 average
//! pool, with kernels on the CPU backend.
//!
//! Written with tensor operations, the blur pool is a reflect padding (built from slices, whose
//! backward takes several single-threaded passes) and a depthwise convolution; on
//! `Autodiff<Flex>` its backward took about a tenth of a TResNet-M training step, on one core.
//! On `Flex` and `Autodiff<Flex>` [`blur_pool2d`] and [`avg_pool_2x2`] run instead as one
//! parallel pass over the planes each way, with the analytic gradient. Every other backend
//! takes the tensor-operation versions.

use burn::tensor::backend::Backend;
use burn::tensor::module::{avg_pool2d, conv2d};
use burn::tensor::ops::{ConvOptions, PadMode};
use burn::tensor::{Tensor, TensorData};

#[cfg(feature = "flex")]
mod flex;
#[cfg(feature = "flex")]
pub(crate) mod planes;
#[cfg(all(test, feature = "flex"))]
mod tests;

/// timm's `BlurPool2d(channels, filt_size=3, stride=2)`: each channel of `x` (`[N, C, H, W]`)
/// blurred by `[1, 2, 1]ᵀ[1, 2, 1] / 16` at stride 2, after reflect padding by one
/// (`pad_mode='reflect'`).
///
/// The output side is `ceil(n / 2)`. Reflect padding needs every spatial side to be at least 2.
///
/// ```
/// use aia::kernels::blur_pool2d;
/// use burn::tensor::Tensor;
/// type B = burn::backend::Flex;
///
/// let x = Tensor::<B, 4>::from_floats([[[[0.0, 4.0], [8.0, 12.0]]]], &Default::default());
/// // The one window reads rows 1, 0, 1 and columns 1, 0, 1 of the input: each value weighs a
/// // quarter.
/// let y = blur_pool2d(x).into_data().to_vec::<f32>().unwrap();
/// assert_eq!(y, [6.0]);
/// ```
pub fn blur_pool2d<B: Backend>(x: Tensor<B, 4>) -> Tensor<B, 4> {
    #[cfg(feature = "flex")]
    let x = match flex::try_pool(x, flex::Pool::Blur) {
        Ok(y) => return y,
        Err(x) => x,
    };
    blur_pool2d_composed(x)
}

/// [`blur_pool2d`] written with tensor operations, on any backend.
pub fn blur_pool2d_composed<B: Backend>(x: Tensor<B, 4>) -> Tensor<B, 4> {
    let [_, channels, _, _] = x.dims();
    let device = x.device();
    let taps = [1.0f32, 2.0, 1.0];
    let kernel: Vec<f32> = taps
        .iter()
        .flat_map(|a| taps.iter().map(move |b| a * b / 16.0))
        .collect();
    let filter = Tensor::<B, 4>::from_data(TensorData::new(kernel, [1, 1, 3, 3]), &device)
        .expand([channels, 1, 3, 3]);
    let x = x.pad((1, 1, 1, 1), PadMode::Reflect);
    conv2d(
        x,
        filter,
        None,
        ConvOptions::new([2, 2], [0, 0], [1, 1], channels),
    )
}

/// A 2x2 average pool of `x` (`[N, C, H, W]`) at stride 2 in ceil mode, each window averaged
/// over the positions it covers: PyTorch's `avg_pool2d(x, 2, 2, ceil_mode=True,
/// count_include_pad=False)`, TResNet's shortcut pooling. The output side is `ceil(n / 2)`.
///
/// ```
/// use aia::kernels::avg_pool_2x2;
/// use burn::tensor::Tensor;
/// type B = burn::backend::Flex;
///
/// let x = Tensor::<B, 4>::from_floats([[[[1.0, 2.0, 3.0], [4.0, 5.0, 6.0]]]], &Default::default());
/// // The last window covers one column only.
/// let y = avg_pool_2x2(x).into_data().to_vec::<f32>().unwrap();
/// assert_eq!(y, [3.0, 4.5]);
/// ```
pub fn avg_pool_2x2<B: Backend>(x: Tensor<B, 4>) -> Tensor<B, 4> {
    #[cfg(feature = "flex")]
    let x = match flex::try_pool(x, flex::Pool::Average) {
        Ok(y) => return y,
        Err(x) => x,
    };
    avg_pool_2x2_composed(x)
}

/// [`avg_pool_2x2`] through Burn's `avg_pool2d`, on any backend.
pub fn avg_pool_2x2_composed<B: Backend>(x: Tensor<B, 4>) -> Tensor<B, 4> {
    avg_pool2d(x, [2, 2], [2, 2], [0, 0], false, true)
}
