//! Anti-aliased downsampling: timm's `BlurPool2d` with a 3x3 binomial filter.

use burn::tensor::backend::Backend;
use burn::tensor::module::conv2d;
use burn::tensor::ops::{ConvOptions, PadMode};
use burn::tensor::{Tensor, TensorData};

/// Blurs each channel with `[1, 2, 1]ᵀ[1, 2, 1] / 16` after reflect padding by one, at stride 2
/// (timm's `BlurPool2d(channels, filt_size=3, stride=2)`, `pad_mode='reflect'`).
///
/// The output side is `ceil(n / 2)`. Reflect padding needs every spatial side to be at least 2.
pub fn blur_pool2d<B: Backend>(x: Tensor<B, 4>) -> Tensor<B, 4> {
    let [_, channels, _, _] = x.dims();
    let device = x.device();
    let taps = [1.0f32, 2.0, 1.0];
    let mut kernel = Vec::with_capacity(9);
    for a in taps {
        for b in taps {
            kernel.push(a * b / 16.0);
        }
    }
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
