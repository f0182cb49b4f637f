//! Squeeze-and-excitation: timm's `SEModule` as TResNet configures it.

use burn::config::Config;
use burn::module::{Initializer, Module};
use burn::nn::conv::{Conv2d, Conv2dConfig};
use burn::tensor::activation::{relu, sigmoid};
use burn::tensor::backend::Backend;
use burn::tensor::Tensor;

use super::conv_norm::kaiming_fan_out;
use crate::kernels::scale_channels;

/// Configuration of a [`SqueezeExcite`].
#[derive(Config, Debug)]
pub struct SqueezeExciteConfig {
    /// Channels of the gated tensor.
    pub channels: usize,
    /// Channels of the bottleneck between the two 1x1 convolutions.
    pub reduction_channels: usize,
}

/// Global mean, 1x1 conv (bias), ReLU, 1x1 conv (bias), sigmoid, channel-wise gate.
#[derive(Module, Debug)]
pub struct SqueezeExcite<B: Backend> {
    /// `channels -> reduction_channels`.
    pub fc1: Conv2d<B>,
    /// `reduction_channels -> channels`.
    pub fc2: Conv2d<B>,
}

impl SqueezeExciteConfig {
    /// Kaiming-normal (fan-out) weights as timm's TResNet init; biases as PyTorch's default
    /// `U(-1/sqrt(fan_in), 1/sqrt(fan_in))`.
    pub fn init<B: Backend>(&self, device: &B::Device) -> SqueezeExcite<B> {
        let conv = |cin: usize, cout: usize| {
            let mut conv = Conv2dConfig::new([cin, cout], [1, 1])
                .with_initializer(kaiming_fan_out())
                .init(device);
            let bound = 1.0 / (cin as f64).sqrt();
            conv.bias = Some(
                Initializer::Uniform {
                    min: -bound,
                    max: bound,
                }
                .init([cout], device),
            );
            conv
        };
        SqueezeExcite {
            fc1: conv(self.channels, self.reduction_channels),
            fc2: conv(self.reduction_channels, self.channels),
        }
    }
}

impl<B: Backend> SqueezeExcite<B> {
    /// Gates `x` (`[N, C, H, W]`) by its channel excitations.
    pub fn forward(&self, x: Tensor<B, 4>) -> Tensor<B, 4> {
        let [n, c, h, w] = x.dims();
        // The 1x1 convolutions on a 1x1 map are plain matrix products: skip the conv machinery.
        let pooled = x.clone().reshape([n, c, h * w]).mean_dim(2).reshape([n, c]);
        let hidden = relu(linear_1x1(pooled, &self.fc1));
        let gate = sigmoid(linear_1x1(hidden, &self.fc2));
        scale_channels(x, gate)
    }
}

/// Applies a 1x1 convolution to `[N, Cin]` as `x Wᵀ + b`.
fn linear_1x1<B: Backend>(x: Tensor<B, 2>, conv: &Conv2d<B>) -> Tensor<B, 2> {
    let [cout, cin, _, _] = conv.weight.dims();
    let weight = conv.weight.val().reshape([cout, cin]).transpose();
    let y = x.matmul(weight);
    match &conv.bias {
        Some(bias) => y + bias.val().reshape([1, cout]),
        None => y,
    }
}
