//! TResNet's residual blocks: [`BasicBlock`] (stages 1-2) and [`Bottleneck`] (stages 3-4).

use burn::config::Config;
use burn::module::Module;
use burn::tensor::backend::Backend;
use burn::tensor::Tensor;

use super::conv_norm::{ConvNormAct, ConvNormActConfig};
use super::squeeze_excite::{SqueezeExcite, SqueezeExciteConfig};
use crate::kernels::{add_relu, avg_pool_2x2};

/// Slope of the leaky ReLUs inside the blocks.
pub const BLOCK_LEAKY_SLOPE: f64 = 1e-3;

/// Configuration of a [`Downsample`] shortcut.
#[derive(Config, Debug)]
pub struct DownsampleConfig {
    /// Input channels.
    pub in_channels: usize,
    /// Output channels.
    pub out_channels: usize,
    /// 1 or 2.
    pub stride: usize,
}

/// Shortcut used when a block changes shape: 2x2 average pool (stride 2, ceil mode, padding not
/// counted) when striding, then 1x1 conv + BatchNorm. timm stores it as `downsample.1.*`
/// (index 0 being the parameter-free pool).
#[derive(Module, Debug)]
pub struct Downsample<B: Backend> {
    /// The 1x1 projection with its BatchNorm.
    pub conv: ConvNormAct<B>,
    /// Whether an average pool halves the map first.
    pub pool: bool,
}

impl DownsampleConfig {
    /// Initialises the shortcut.
    pub fn init<B: Backend>(&self, device: &B::Device) -> Downsample<B> {
        Downsample {
            conv: ConvNormActConfig::new(self.in_channels, self.out_channels, 1).init(device),
            pool: self.stride != 1,
        }
    }
}

impl<B: Backend> Downsample<B> {
    /// Projects the block input to the block output's shape.
    pub fn forward(&self, x: Tensor<B, 4>) -> Tensor<B, 4> {
        let x = if self.pool { avg_pool_2x2(x) } else { x };
        self.conv.forward(x)
    }
}

/// Configuration shared by [`BasicBlock`] and [`Bottleneck`].
#[derive(Config, Debug)]
pub struct BlockConfig {
    /// Input channels.
    pub in_channels: usize,
    /// Width of the block (`planes`); the output has `planes * expansion` channels.
    pub planes: usize,
    /// 1 or 2 (anti-aliased).
    #[config(default = 1)]
    pub stride: usize,
    /// Whether the block has squeeze-and-excitation.
    #[config(default = true)]
    pub use_se: bool,
}

impl BlockConfig {
    fn downsample<B: Backend>(
        &self,
        expansion: usize,
        device: &B::Device,
    ) -> Option<Downsample<B>> {
        let out = self.planes * expansion;
        (self.stride != 1 || self.in_channels != out)
            .then(|| DownsampleConfig::new(self.in_channels, out, self.stride).init(device))
    }

    /// Initialises a [`BasicBlock`] (expansion 1).
    pub fn init_basic<B: Backend>(&self, device: &B::Device) -> BasicBlock<B> {
        let p = self.planes;
        BasicBlock {
            conv1: ConvNormActConfig::new(self.in_channels, p, 3)
                .with_stride(self.stride)
                .with_leaky_slope(Some(BLOCK_LEAKY_SLOPE))
                .init(device),
            conv2: ConvNormActConfig::new(p, p, 3)
                .init(device)
                .zero_bn_weight(),
            se: self
                .use_se
                .then(|| SqueezeExciteConfig::new(p, (p / 4).max(64)).init(device)),
            downsample: self.downsample(1, device),
        }
    }

    /// Initialises a [`Bottleneck`] (expansion 4).
    pub fn init_bottleneck<B: Backend>(&self, device: &B::Device) -> Bottleneck<B> {
        let p = self.planes;
        Bottleneck {
            conv1: ConvNormActConfig::new(self.in_channels, p, 1)
                .with_leaky_slope(Some(BLOCK_LEAKY_SLOPE))
                .init(device),
            conv2: ConvNormActConfig::new(p, p, 3)
                .with_stride(self.stride)
                .with_leaky_slope(Some(BLOCK_LEAKY_SLOPE))
                .init(device),
            se: self
                .use_se
                .then(|| SqueezeExciteConfig::new(p, (p * 4 / 8).max(64)).init(device)),
            conv3: ConvNormActConfig::new(p, p * 4, 1)
                .init(device)
                .zero_bn_weight(),
            downsample: self.downsample(4, device),
        }
    }
}

/// Two 3x3 convolutions, SE on the output, residual add, ReLU.
#[derive(Module, Debug)]
pub struct BasicBlock<B: Backend> {
    /// 3x3 (anti-aliased stride), BatchNorm, leaky ReLU.
    pub conv1: ConvNormAct<B>,
    /// 3x3, BatchNorm, no activation.
    pub conv2: ConvNormAct<B>,
    /// Squeeze-and-excitation on `planes` channels.
    pub se: Option<SqueezeExcite<B>>,
    /// Shortcut projection when the shape changes.
    pub downsample: Option<Downsample<B>>,
}

impl<B: Backend> BasicBlock<B> {
    /// Runs the block.
    pub fn forward(&self, x: Tensor<B, 4>) -> Tensor<B, 4> {
        let shortcut = match &self.downsample {
            Some(d) => d.forward(x.clone()),
            None => x.clone(),
        };
        let out = self.conv2.forward(self.conv1.forward(x));
        let out = match &self.se {
            Some(se) => se.forward(out),
            None => out,
        };
        add_relu(out, shortcut)
    }
}

/// 1x1 reduce, 3x3 (SE after it), 1x1 expand (x4), residual add, ReLU.
#[derive(Module, Debug)]
pub struct Bottleneck<B: Backend> {
    /// 1x1, BatchNorm, leaky ReLU.
    pub conv1: ConvNormAct<B>,
    /// 3x3 (anti-aliased stride), BatchNorm, leaky ReLU.
    pub conv2: ConvNormAct<B>,
    /// Squeeze-and-excitation on `planes` channels, between conv2 and conv3.
    pub se: Option<SqueezeExcite<B>>,
    /// 1x1 to `4 * planes`, BatchNorm, no activation.
    pub conv3: ConvNormAct<B>,
    /// Shortcut projection when the shape changes.
    pub downsample: Option<Downsample<B>>,
}

impl<B: Backend> Bottleneck<B> {
    /// Runs the block.
    pub fn forward(&self, x: Tensor<B, 4>) -> Tensor<B, 4> {
        let shortcut = match &self.downsample {
            Some(d) => d.forward(x.clone()),
            None => x.clone(),
        };
        let out = self.conv2.forward(self.conv1.forward(x));
        let out = match &self.se {
            Some(se) => se.forward(out),
            None => out,
        };
        add_relu(self.conv3.forward(out), shortcut)
    }
}
