//! Convolution + batch normalisation (+ leaky ReLU, + anti-aliased downsampling): timm's `ConvNormAct`.

use burn::config::Config;
use burn::module::{Initializer, Module, Param};
use burn::nn::conv::{Conv2d, Conv2dConfig};
use burn::nn::{BatchNorm, BatchNormConfig, PaddingConfig2d};
use burn::tensor::activation::leaky_relu;
use burn::tensor::backend::Backend;
use burn::tensor::ops::ConvOptions;
use burn::tensor::Tensor;

use super::blur_pool::blur_pool2d;
use crate::kernels::{batch_norm_act, conv2d};

/// Epsilon of every BatchNorm in TResNet (PyTorch's default).
pub const BN_EPS: f64 = 1e-5;

/// Configuration of a [`ConvNormAct`].
#[derive(Config, Debug)]
pub struct ConvNormActConfig {
    /// Input channels.
    pub in_channels: usize,
    /// Output channels.
    pub out_channels: usize,
    /// Square kernel size (odd; padded by `kernel_size / 2`).
    pub kernel_size: usize,
    /// Stride. With `anti_alias`, the convolution runs at stride 1 and a blur pool strides instead.
    #[config(default = 1)]
    pub stride: usize,
    /// Negative slope of the leaky ReLU after the BatchNorm; `None` for no activation.
    #[config(default = "None")]
    pub leaky_slope: Option<f64>,
    /// Downsample with a binomial blur pool instead of a strided convolution (timm's `aa_layer`).
    #[config(default = true)]
    pub anti_alias: bool,
}

/// Bias-free convolution, BatchNorm, optional leaky ReLU and optional anti-aliased stride 2.
///
/// Field names follow timm (`conv`, `bn`) so checkpoints map one to one. In inference (when the
/// backend does not track gradients) the BatchNorm is folded into the convolution's weights and
/// bias on the fly, which saves four passes over the activations and gives the same numbers up to
/// rounding; during training it runs as a normal BatchNorm with batch statistics.
#[derive(Module, Debug)]
pub struct ConvNormAct<B: Backend> {
    /// The convolution (no bias).
    pub conv: Conv2d<B>,
    /// Its BatchNorm.
    pub bn: BatchNorm<B>,
    /// Leaky ReLU slope, if any.
    pub leaky_slope: Option<f64>,
    /// Whether a stride-2 blur pool follows the activation.
    pub anti_alias: bool,
}

impl ConvNormActConfig {
    /// Initialises the block as timm does: Kaiming-normal (fan-out, gain sqrt 2) weights,
    /// BatchNorm weight 1 and bias 0.
    pub fn init<B: Backend>(&self, device: &B::Device) -> ConvNormAct<B> {
        let use_aa = self.anti_alias && self.stride > 1;
        let conv_stride = if use_aa { 1 } else { self.stride };
        let pad = self.kernel_size / 2;
        let conv = Conv2dConfig::new(
            [self.in_channels, self.out_channels],
            [self.kernel_size, self.kernel_size],
        )
        .with_stride([conv_stride, conv_stride])
        .with_padding(PaddingConfig2d::Explicit(pad, pad, pad, pad))
        .with_bias(false)
        .with_initializer(kaiming_fan_out())
        .init(device);
        let bn = BatchNormConfig::new(self.out_channels)
            .with_epsilon(BN_EPS)
            .init(device);
        ConvNormAct {
            conv,
            bn,
            leaky_slope: self.leaky_slope,
            anti_alias: use_aa,
        }
    }
}

/// timm's `kaiming_normal_(mode='fan_out', nonlinearity='leaky_relu')` with the default `a = 0`:
/// std = sqrt(2 / fan_out).
pub(crate) fn kaiming_fan_out() -> Initializer {
    Initializer::KaimingNormal {
        gain: std::f64::consts::SQRT_2,
        fan_out_only: true,
    }
}

impl<B: Backend> ConvNormAct<B> {
    /// Applies convolution, normalisation, activation and (if configured) the blur pool.
    pub fn forward(&self, x: Tensor<B, 4>) -> Tensor<B, 4> {
        let x = if B::ad_enabled(&x.device()) {
            self.norm_act_train(self.conv_train(x))
        } else {
            let x = self.forward_folded(x);
            match self.leaky_slope {
                Some(slope) => leaky_relu(x, slope),
                None => x,
            }
        };
        if self.anti_alias {
            blur_pool2d(x)
        } else {
            x
        }
    }

    /// Sets the BatchNorm scale (gamma) to zero: timm's initialisation of each residual branch's
    /// last normalisation, so that every block starts as the identity.
    pub fn zero_bn_weight(mut self) -> Self {
        let gamma = self.bn.gamma.val().zeros_like();
        self.bn.gamma = Param::from_tensor(gamma);
        self
    }

    /// The convolution alone, through [`conv2d`] for its faster backward on the CPU.
    fn conv_train(&self, x: Tensor<B, 4>) -> Tensor<B, 4> {
        conv2d(x, self.conv.weight.val(), None, self.conv_options())
    }

    /// The convolution's stride, "same" padding and dilation.
    fn conv_options(&self) -> ConvOptions<2> {
        let pad = self.conv.kernel_size[0] / 2;
        ConvOptions::new(self.conv.stride, [pad, pad], self.conv.dilation, 1)
    }

    /// Training-mode BatchNorm (batch statistics) and the activation, updating the running
    /// statistics as PyTorch does (momentum, unbiased variance).
    fn norm_act_train(&self, x: Tensor<B, 4>) -> Tensor<B, 4> {
        let [n, _, h, w] = x.dims();
        let count = n * h * w;
        let bn = batch_norm_act(
            x,
            self.bn.gamma.val(),
            self.bn.beta.val(),
            self.bn.epsilon,
            self.leaky_slope,
        );
        let momentum = self.bn.momentum;
        let unbiased = if count > 1 {
            count as f64 / (count - 1) as f64
        } else {
            1.0
        };
        let device = bn.output.device();
        let update = |state: &burn::module::RunningState<Tensor<B, 1>>, batch: Tensor<B, 1>| {
            let old = state.value_sync().to_device(&device);
            state.update(
                old.mul_scalar(1.0 - momentum)
                    .add(batch.mul_scalar(momentum))
                    .detach(),
            );
        };
        update(&self.bn.running_mean, bn.mean);
        update(&self.bn.running_var, bn.var.mul_scalar(unbiased));
        bn.output
    }

    /// Convolution with the inference BatchNorm folded in:
    /// `w' = w * g / sqrt(v + eps)`, `b' = beta - mean * g / sqrt(v + eps)`.
    fn forward_folded(&self, x: Tensor<B, 4>) -> Tensor<B, 4> {
        let out = self.bn.gamma.dims()[0];
        let scale = self.bn.gamma.val().div(
            self.bn
                .running_var
                .value()
                .add_scalar(self.bn.epsilon)
                .sqrt(),
        );
        let bias = self
            .bn
            .beta
            .val()
            .sub(self.bn.running_mean.value().mul(scale.clone()));
        // As [out, in * k * k] times [out, 1], flex takes its SIMD per-row-scalar path; the 4-D
        // broadcast of a 1x1 kernel would fall back to a scalar strided loop.
        let dims = self.conv.weight.dims();
        let weight = self
            .conv
            .weight
            .val()
            .reshape([out, dims[1] * dims[2] * dims[3]])
            .mul(scale.reshape([out, 1]))
            .reshape(dims);
        conv2d(x, weight, Some(bias), self.conv_options())
    }
}
