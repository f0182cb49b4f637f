//! TResNet's inference on the blocked channel layout: the same network as the modules' `forward`,
//! written with the operations of [`crate::kernels::blocked`].
//!
//! The input is converted once (after space-to-depth), every convolution runs with its BatchNorm
//! folded and its activation, or the residual add and ReLU, in the kernel's epilogue, and the last
//! map goes back to a tensor for the head. The BatchNorms are folded and the weights packed at the
//! first call, and kept while the model's tensors stay the same.

use burn::tensor::backend::Backend;
use burn::tensor::Tensor;

use super::block::{BasicBlock, Bottleneck, Downsample};
use super::conv_norm::ConvNormAct;
use super::space_to_depth::space_to_depth;
use super::squeeze_excite::SqueezeExcite;
use super::tresnet::TResNet;
use crate::kernels::blocked::{
    add_relu, avg_pool_2x2, blur_pool, channel_means, folded_conv, scale_channels, BlockedMap,
    ConvNorm,
};
use crate::kernels::host_values;

/// The ReLU after a residual add, as an epilogue slope.
const RELU: Option<f32> = Some(0.0);

impl<B: Backend> TResNet<B> {
    /// [`forward_feature_map`](Self::forward_feature_map) on blocked maps, for an input it
    /// accepts.
    pub(super) fn forward_feature_map_blocked(&self, images: Tensor<B, 4>) -> Tensor<B, 4> {
        let device = images.device();
        let x = BlockedMap::from_tensor(space_to_depth(images));
        let mut x = self.conv1.forward_blocked(&x);
        for block in &self.layer1 {
            x = block.forward_blocked(x);
        }
        for block in &self.layer2 {
            x = block.forward_blocked(x);
        }
        for block in &self.layer3 {
            x = block.forward_blocked(x);
        }
        for block in &self.layer4 {
            x = block.forward_blocked(x);
        }
        x.into_tensor(&device)
    }
}

impl<B: Backend> BasicBlock<B> {
    /// [`forward`](Self::forward) on blocked maps.
    pub(crate) fn forward_blocked(&self, x: BlockedMap) -> BlockedMap {
        let projected = self.downsample.as_ref().map(|d| d.forward_blocked(&x));
        let shortcut = projected.as_ref().unwrap_or(&x);
        let out = self.conv1.forward_blocked(&x);
        match &self.se {
            Some(se) => {
                let mut out = self.conv2.forward_blocked(&out);
                let gate = se.gate_blocked(&out);
                scale_channels(&mut out, &gate);
                add_relu(&mut out, shortcut);
                out
            }
            None => self.conv2.conv_blocked(&out, Some(shortcut), RELU),
        }
    }
}

impl<B: Backend> Bottleneck<B> {
    /// [`forward`](Self::forward) on blocked maps.
    pub(crate) fn forward_blocked(&self, x: BlockedMap) -> BlockedMap {
        let projected = self.downsample.as_ref().map(|d| d.forward_blocked(&x));
        let shortcut = projected.as_ref().unwrap_or(&x);
        let mut out = self.conv2.forward_blocked(&self.conv1.forward_blocked(&x));
        if let Some(se) = &self.se {
            let gate = se.gate_blocked(&out);
            scale_channels(&mut out, &gate);
        }
        self.conv3.conv_blocked(&out, Some(shortcut), RELU)
    }
}

impl<B: Backend> Downsample<B> {
    /// [`forward`](Self::forward) on blocked maps.
    pub(crate) fn forward_blocked(&self, x: &BlockedMap) -> BlockedMap {
        if self.pool {
            self.conv.forward_blocked(&avg_pool_2x2(x))
        } else {
            self.conv.forward_blocked(x)
        }
    }
}

impl<B: Backend> ConvNormAct<B> {
    /// [`forward`](Self::forward) in inference on blocked maps.
    pub(crate) fn forward_blocked(&self, x: &BlockedMap) -> BlockedMap {
        let y = self.conv_blocked(x, None, self.leaky_slope.map(|s| s as f32));
        if self.anti_alias {
            blur_pool(&y)
        } else {
            y
        }
    }

    /// `act(bn(conv(x)) + residual)`, without the blur pool: the convolution with the inference
    /// BatchNorm folded in, the add and the activation in its epilogue.
    pub(crate) fn conv_blocked(
        &self,
        x: &BlockedMap,
        residual: Option<&BlockedMap>,
        slope: Option<f32>,
    ) -> BlockedMap {
        folded_conv(ConvNorm {
            weight: self.conv.weight.val(),
            gamma: self.bn.gamma.val(),
            beta: self.bn.beta.val(),
            mean: self.bn.running_mean.value(),
            var: self.bn.running_var.value(),
            epsilon: self.bn.epsilon,
        })
        .forward(x, residual, slope)
    }
}

impl<B: Backend> SqueezeExcite<B> {
    /// The gate `sigmoid(fc2(relu(fc1(mean(x)))))`, `[N, C]` row-major, that
    /// [`forward`](Self::forward) multiplies the map by.
    pub(crate) fn gate_blocked(&self, x: &BlockedMap) -> Vec<f32> {
        let hidden = linear(&channel_means(x), x.n, &self.fc1);
        let hidden: Vec<f32> = hidden.into_iter().map(|v| v.max(0.0)).collect();
        let gate = linear(&hidden, x.n, &self.fc2);
        gate.into_iter().map(|v| 1.0 / (1.0 + (-v).exp())).collect()
    }
}

/// A 1x1 convolution on 1x1 maps, `[n, in]` to `[n, out]` row-major.
fn linear<B: Backend>(x: &[f32], n: usize, conv: &burn::nn::conv::Conv2d<B>) -> Vec<f32> {
    let [out, inp, _, _] = conv.weight.dims();
    let weight = host_values(conv.weight.val());
    let bias = conv.bias.as_ref().map(|b| host_values(b.val()));
    let mut y = vec![0.0f32; n * out];
    for (row, x) in y.chunks_mut(out).zip(x.chunks(inp)) {
        for (o, y) in row.iter_mut().enumerate() {
            let w = &weight[o * inp..][..inp];
            *y = bias.as_ref().map_or(0.0, |b| b[o])
                + w.iter().zip(x).map(|(w, x)| w * x).sum::<f32>();
        }
    }
    y
}
