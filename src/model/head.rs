//! The classification head: timm's `ClassifierHead` (global average pool, dropout, linear).

use burn::config::Config;
use burn::module::{Initializer, Module};
use burn::nn::{Dropout, DropoutConfig, Linear, LinearConfig};
use burn::tensor::backend::Backend;
use burn::tensor::Tensor;

/// Configuration of a [`ClassifierHead`].
#[derive(Config, Debug)]
pub struct ClassifierHeadConfig {
    /// Width of the pooled embedding.
    pub in_features: usize,
    /// Number of outputs (labels).
    pub num_classes: usize,
    /// Dropout probability before the linear layer (0 disables it).
    #[config(default = 0.0)]
    pub dropout: f64,
}

/// Dropout then a linear layer, applied to a pooled embedding.
#[derive(Module, Debug)]
pub struct ClassifierHead<B: Backend> {
    /// Only active when the backend tracks gradients (training).
    pub dropout: Dropout,
    /// `in_features -> num_classes`, named `fc` as in timm (`head.fc.weight`).
    pub fc: Linear<B>,
}

impl ClassifierHeadConfig {
    /// Weights `N(0, 0.01)` as timm's TResNet init; bias as PyTorch's default
    /// `U(-1/sqrt(fan_in), 1/sqrt(fan_in))`.
    pub fn init<B: Backend>(&self, device: &B::Device) -> ClassifierHead<B> {
        let mut fc = LinearConfig::new(self.in_features, self.num_classes)
            .with_initializer(Initializer::Normal {
                mean: 0.0,
                std: 0.01,
            })
            .init(device);
        let bound = 1.0 / (self.in_features as f64).sqrt();
        fc.bias = Some(
            Initializer::Uniform {
                min: -bound,
                max: bound,
            }
            .init([self.num_classes], device),
        );
        ClassifierHead {
            dropout: DropoutConfig::new(self.dropout).init(),
            fc,
        }
    }
}

impl<B: Backend> ClassifierHead<B> {
    /// Logits `[N, num_classes]` from pooled features `[N, in_features]`.
    pub fn forward(&self, features: Tensor<B, 2>) -> Tensor<B, 2> {
        self.fc.forward(self.dropout.forward(features))
    }

    /// Number of outputs.
    pub fn num_classes(&self) -> usize {
        self.fc.weight.dims()[1]
    }
}

/// The mean over each channel's pixels: `[N, C, H, W]` to `[N, C]`.
pub(crate) fn global_average_pool<B: Backend>(map: Tensor<B, 4>) -> Tensor<B, 2> {
    let [n, c, h, w] = map.dims();
    map.reshape([n, c, h * w]).mean_dim(2).reshape([n, c])
}
