//! The TResNet network and its configuration.

use burn::config::Config;
use burn::module::Module;
use burn::tensor::backend::Backend;
use burn::tensor::Tensor;

use super::attention_head::AttentionHeadConfig;
use super::block::{BasicBlock, BlockConfig, Bottleneck};
use super::conv_norm::{ConvNormAct, ConvNormActConfig};
use super::head::{global_average_pool, ClassifierHeadConfig};
use super::head_choice::{Head, HeadConfig};
use super::space_to_depth::{space_to_depth, BLOCK};
use super::ModelError;

/// Slope of the stem's leaky ReLU (PyTorch's default, as timm's TResNet uses).
pub const STEM_LEAKY_SLOPE: f64 = 1e-2;

/// Smallest image side TResNet accepts: the last blur pool reflect-pads a map of side
/// `ceil(side / 16)`, which must be at least 2 (as in PyTorch), so `side / 4 >= 5`.
pub const MIN_SIDE: usize = 20;

/// The named TResNet variants, for command lines and configuration files.
///
/// Parses from and displays as `m`, `l`, `xl` (any case, with or without a `tresnet_` prefix,
/// as timm names them); [`config`](Self::config) is the variant's [`TResNetConfig`].
///
/// ```
/// use aia::model::TResNetVariant;
/// let variant: TResNetVariant = "xl".parse().unwrap();
/// assert_eq!(variant, TResNetVariant::Xl);
/// assert_eq!(variant.config().width, 1.3);
/// assert_eq!("tresnet_m".parse::<TResNetVariant>().unwrap().name(), "m");
/// ```
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash)]
pub enum TResNetVariant {
    /// [`TResNetConfig::m`], the paper's.
    #[default]
    M,
    /// [`TResNetConfig::l`].
    L,
    /// [`TResNetConfig::xl`].
    Xl,
}

impl TResNetVariant {
    /// Every variant, smallest first.
    pub const ALL: [TResNetVariant; 3] = [Self::M, Self::L, Self::Xl];

    /// The variant's name (`m`, `l` or `xl`).
    pub fn name(self) -> &'static str {
        match self {
            Self::M => "m",
            Self::L => "l",
            Self::Xl => "xl",
        }
    }

    /// The variant's configuration (1000 classes, no dropout, the linear head: timm's).
    pub fn config(self) -> TResNetConfig {
        TResNetConfig::variant(self)
    }
}

impl std::fmt::Display for TResNetVariant {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

impl std::str::FromStr for TResNetVariant {
    type Err = ModelError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let lower = s.trim().to_ascii_lowercase();
        let name = lower.strip_prefix("tresnet_").unwrap_or(&lower);
        Self::ALL
            .into_iter()
            .find(|v| v.name() == name)
            .ok_or_else(|| ModelError::UnknownVariant(s.to_string()))
    }
}

/// Configuration of a [`TResNet`] (timm's `TResNet(layers, width_factor, num_classes, drop_rate)`).
///
/// ```
/// use aia::model::TResNetConfig;
/// let config = TResNetConfig::m().with_num_classes(260).with_dropout(0.3);
/// assert_eq!(config.num_features(), 2048);
/// ```
#[derive(Config, Debug)]
pub struct TResNetConfig {
    /// Blocks per stage (stages 1-2 basic blocks, 3-4 bottlenecks).
    pub layers: [usize; 4],
    /// Width multiplier: stage widths are `int(64 * width) * [1, 2, 4, 8]`.
    #[config(default = 1.0)]
    pub width: f64,
    /// Number of outputs of the classifier.
    #[config(default = 1000)]
    pub num_classes: usize,
    /// Dropout before the classifier (the paper uses 0.3; timm's default is 0).
    #[config(default = 0.0)]
    pub dropout: f64,
    /// Input image channels.
    #[config(default = 3)]
    pub in_channels: usize,
    /// The head: the paper's linear classifier, or attention pooling.
    #[config(default = "HeadConfig::Linear")]
    pub head: HeadConfig,
}

impl TResNetConfig {
    /// TResNet-M: layers `[3, 4, 11, 3]`, width 1.0 (31.4 M parameters with 1000 classes).
    pub fn m() -> Self {
        Self::new([3, 4, 11, 3])
    }

    /// TResNet-L: layers `[4, 5, 18, 3]`, width 1.2.
    pub fn l() -> Self {
        Self::new([4, 5, 18, 3]).with_width(1.2)
    }

    /// TResNet-XL: layers `[4, 5, 24, 3]`, width 1.3.
    pub fn xl() -> Self {
        Self::new([4, 5, 24, 3]).with_width(1.3)
    }

    /// The configuration of a named variant (see [`TResNetVariant`]).
    pub fn variant(variant: TResNetVariant) -> Self {
        match variant {
            TResNetVariant::M => Self::m(),
            TResNetVariant::L => Self::l(),
            TResNetVariant::Xl => Self::xl(),
        }
    }

    /// Width of the first stage, `int(64 * width)` as Python truncates it.
    pub fn base_planes(&self) -> usize {
        // The epsilon keeps e.g. 64 * 1.1 = 70.4000001 and 64 * 0.5 exact under truncation.
        (64.0 * self.width + 1e-9).floor() as usize
    }

    /// Width of the pooled embedding: `base_planes * 8 * 4` (2048 for M).
    pub fn num_features(&self) -> usize {
        self.base_planes() * 8 * 4
    }

    /// Checks what [`init`](Self::init) needs: a block in every stage, at least one channel, input
    /// channel and class, a dropout in `[0, 1]`, and a head that can be built.
    pub fn validate(&self) -> Result<(), ModelError> {
        let invalid = |why: String| Err(ModelError::InvalidConfig(why));
        if let Some(stage) = self.layers.iter().position(|&blocks| blocks == 0) {
            return invalid(format!("stage {} of the model has no block", stage + 1));
        }
        let planes = self.base_planes();
        if planes == 0 || self.in_channels == 0 || self.num_classes == 0 {
            return invalid(format!(
                "the model has width {} ({planes} channels), {} input channels and {} classes; \
                 each must be at least 1",
                self.width, self.in_channels, self.num_classes
            ));
        }
        if !(0.0..=1.0).contains(&self.dropout) {
            return invalid(format!("the dropout {} is not in [0, 1]", self.dropout));
        }
        match &self.head {
            HeadConfig::Linear => Ok(()),
            HeadConfig::Attention(head) => self.attention_head(head).validate(),
        }
    }

    /// The attention head's configuration with this network's labels and channels.
    fn attention_head(&self, head: &AttentionHeadConfig) -> AttentionHeadConfig {
        let mut head = head.clone();
        head.num_classes = self.num_classes;
        head.with_in_channels(self.num_features())
    }

    /// Builds the network with timm's initialisation: Kaiming-normal (fan-out) convolutions,
    /// BatchNorm weight 1 / bias 0 except a zero weight on each block's last BatchNorm, and
    /// classifier weights `N(0, 0.01)`.
    ///
    /// # Panics
    /// On a configuration that [`validate`](Self::validate) rejects.
    pub fn init<B: Backend>(&self, device: &B::Device) -> TResNet<B> {
        let p = self.base_planes();
        let conv1 = ConvNormActConfig::new(self.in_channels * BLOCK * BLOCK, p, 3)
            .with_leaky_slope(Some(STEM_LEAKY_SLOPE))
            .init(device);
        let mut inplanes = p;
        let mut basic = |planes: usize, blocks: usize, stride: usize| {
            let stage: Vec<BasicBlock<B>> = (0..blocks)
                .map(|i| {
                    let block = BlockConfig::new(inplanes, planes)
                        .with_stride(if i == 0 { stride } else { 1 })
                        .init_basic(device);
                    inplanes = planes;
                    block
                })
                .collect();
            stage
        };
        let layer1 = basic(p, self.layers[0], 1);
        let layer2 = basic(p * 2, self.layers[1], 2);
        let mut inplanes = p * 2;
        let mut bottleneck = |planes: usize, blocks: usize, use_se: bool| {
            let stage: Vec<Bottleneck<B>> = (0..blocks)
                .map(|i| {
                    let block = BlockConfig::new(inplanes, planes)
                        .with_stride(if i == 0 { 2 } else { 1 })
                        .with_use_se(use_se)
                        .init_bottleneck(device);
                    inplanes = planes * 4;
                    block
                })
                .collect();
            stage
        };
        let layer3 = bottleneck(p * 4, self.layers[2], true);
        let layer4 = bottleneck(p * 8, self.layers[3], false);
        let head = match &self.head {
            HeadConfig::Linear => Head::Linear(
                ClassifierHeadConfig::new(self.num_features(), self.num_classes)
                    .with_dropout(self.dropout)
                    .init(device),
            ),
            HeadConfig::Attention(head) => Head::Attention(self.attention_head(head).init(device)),
        };
        TResNet {
            conv1,
            layer1,
            layer2,
            layer3,
            layer4,
            head,
            in_channels: self.in_channels,
        }
    }
}

/// TResNet (Ridnik et al., 2021) as timm defines it: space-to-depth stem, two stages of basic
/// blocks and two of bottlenecks with anti-aliased downsampling and squeeze-and-excitation, then
/// global average pooling and a linear classifier, or the attention-pooling head ([`Head`]).
///
/// On `Flex`, on x86-64 CPUs with AVX2 or AVX-512, inference (every `forward*` method) runs the
/// network on the blocked channel layout: each convolution with its BatchNorm folded in and its
/// activation or residual add fused: 3x3 convolutions by Winograd's F(4x4, 3x3) (F(2x2, 3x3) on
/// maps with fewer than 32 of its tiles over the batch), 1x1 ones by the crate's direct kernel.
/// The folded, packed weights are made at the first call (each Winograd variant at its first
/// use) and kept while the model's tensors stay the same: up to 2.6 times as much memory again as
/// the convolutions' weights (293 MB for TResNet-M where every 3x3 layer takes F(4x4, 3x3), 160
/// MB where every one takes F(2x2, 3x3); the other variant reads the 3x3 kernels from the model's
/// own tensors).
/// The numbers are those of the modules' own `forward` up to rounding.
///
/// Field names follow timm's `body.*` / `head.fc` so its checkpoints load by name (see
/// [`TResNet::load_timm`]; the head's variant, `head.Linear.fc` in Burn's module paths, is
/// dropped from timm's keys).
#[derive(Module, Debug)]
pub struct TResNet<B: Backend> {
    /// Stem convolution after space-to-depth (`body.conv1`).
    pub conv1: ConvNormAct<B>,
    /// Stage 1 (stride 4 overall).
    pub layer1: Vec<BasicBlock<B>>,
    /// Stage 2 (stride 8).
    pub layer2: Vec<BasicBlock<B>>,
    /// Stage 3 (stride 16).
    pub layer3: Vec<Bottleneck<B>>,
    /// Stage 4 (stride 32), without squeeze-and-excitation.
    pub layer4: Vec<Bottleneck<B>>,
    /// Reads the labels off the last feature map.
    pub head: Head<B>,
    /// Expected image channels.
    pub in_channels: usize,
}

impl<B: Backend> TResNet<B> {
    /// Checks that an input of shape `[batch, channels, height, width]` is one timm's TResNet
    /// accepts: the configured channel count, a non-empty batch, and sides that are multiples
    /// of 4 and at least [`MIN_SIDE`].
    pub fn check_input(&self, dims: &[usize; 4]) -> Result<(), ModelError> {
        let [n, c, h, w] = *dims;
        let fail = |why: String| {
            Err(ModelError::InvalidInput(format!(
                "TResNet input of shape {dims:?} (expected [batch, {}, height, width]): {why}",
                self.in_channels
            )))
        };
        if n == 0 {
            return fail("the batch is empty".into());
        }
        if c != self.in_channels {
            return fail(format!("{c} channels instead of {}", self.in_channels));
        }
        if h % BLOCK != 0 || w % BLOCK != 0 {
            return fail(format!(
                "height and width must be multiples of {BLOCK} (space-to-depth)"
            ));
        }
        if h < MIN_SIDE || w < MIN_SIDE {
            return fail(format!("height and width must be at least {MIN_SIDE}"));
        }
        Ok(())
    }

    /// The last feature map, `[N, num_features, ceil(H / 32), ceil(W / 32)]`.
    ///
    /// # Panics
    /// On an input that [`check_input`](Self::check_input) rejects.
    pub fn forward_feature_map(&self, images: Tensor<B, 4>) -> Tensor<B, 4> {
        if let Err(e) = self.check_input(&images.dims()) {
            panic!("{e}");
        }
        #[cfg(all(feature = "flex", target_arch = "x86_64"))]
        if crate::kernels::blocked::available::<B>() && images.dtype() == burn::tensor::DType::F32 {
            return self.forward_feature_map_blocked(images);
        }
        let mut x = self.conv1.forward(space_to_depth(images));
        for block in &self.layer1 {
            x = block.forward(x);
        }
        for block in &self.layer2 {
            x = block.forward(x);
        }
        for block in &self.layer3 {
            x = block.forward(x);
        }
        for block in &self.layer4 {
            x = block.forward(x);
        }
        x
    }

    /// The pooled embedding `[N, num_features]` (2048 for TResNet-M): timm's
    /// `forward_head(forward_features(x), pre_logits=True)`.
    ///
    /// # Panics
    /// On an input that [`check_input`](Self::check_input) rejects.
    pub fn forward_features(&self, images: Tensor<B, 4>) -> Tensor<B, 2> {
        global_average_pool(self.forward_feature_map(images))
    }

    /// Logits `[N, num_classes]` for images `[N, C, H, W]` (timm's TResNet takes pixels in
    /// `[0, 1]`, without mean/std normalisation).
    ///
    /// # Panics
    /// On an input that [`check_input`](Self::check_input) rejects; use
    /// [`try_forward`](Self::try_forward) to get an error instead.
    pub fn forward(&self, images: Tensor<B, 4>) -> Tensor<B, 2> {
        self.head.forward(self.forward_feature_map(images))
    }

    /// Logits, and with the attention head the cross-attention of each label over the last
    /// feature map, `[N, classes, ceil(H / 32) * ceil(W / 32)]` (see
    /// [`AttentionHead::forward_with_attention`](super::AttentionHead::forward_with_attention)).
    ///
    /// # Panics
    /// On an input that [`check_input`](Self::check_input) rejects.
    pub fn forward_with_attention(
        &self,
        images: Tensor<B, 4>,
    ) -> (Tensor<B, 2>, Option<Tensor<B, 3>>) {
        self.head
            .forward_with_attention(self.forward_feature_map(images))
    }

    /// [`forward`](Self::forward) that returns [`ModelError::InvalidInput`] on a bad input shape.
    pub fn try_forward(&self, images: Tensor<B, 4>) -> Result<Tensor<B, 2>, ModelError> {
        self.check_input(&images.dims())?;
        Ok(self.forward(images))
    }

    /// Width of the pooled embedding.
    pub fn num_features(&self) -> usize {
        self.head.in_features()
    }

    /// Number of outputs of the classifier.
    pub fn num_classes(&self) -> usize {
        self.head.num_classes()
    }
}
