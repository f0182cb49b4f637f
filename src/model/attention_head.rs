//! The attention-pooling head of Salar & Ahmadi ("Enhancing high-vocabulary image annotation with
//! a novel attention-based pooling", The Visual Computer 2024): one learned query per label
//! attends to the backbone's last feature map, and each label reads its logit off its own query.
//!
//! Where global average pooling gives every label the same embedding, here each label pools the
//! pixels it attends to; the cross-attention weights double as a per-label localisation map
//! ([`AttentionHead::forward_with_attention`]). The authors' checkpoints load as they are with
//! [`AttentionHead::load_authors`].

use burn::config::Config;
use burn::module::{Initializer, Module, Param};
use burn::nn::conv::{Conv2d, Conv2dConfig};
use burn::nn::{Embedding, EmbeddingConfig, LayerNorm, LayerNormConfig};
use burn::tensor::activation::relu;
use burn::tensor::backend::Backend;
use burn::tensor::Tensor;

use super::attention_decoder::{DecoderLayer, DecoderLayerConfig};
use super::ModelError;

/// Configuration of an [`AttentionHead`]; the defaults are the paper's (the authors' `main.py`):
/// width 1024, 8 heads, one decoder layer, feed-forward 2048, pre-norm, no self-attention, the
/// label embeddings as query positions over zero queries, on TResNet-M's 2048 channels.
#[derive(Config, Debug)]
pub struct AttentionHeadConfig {
    /// Number of labels (one query and one output each).
    pub num_classes: usize,
    /// Channels of the backbone's feature map (2048 for TResNet-M, 2432 for TResNet-L).
    #[config(default = 2048)]
    pub in_channels: usize,
    /// Width of the queries and of the projected features.
    #[config(default = 1024)]
    pub hidden: usize,
    /// Attention heads (must divide `hidden`).
    #[config(default = 8)]
    pub num_heads: usize,
    /// Decoder layers (at least one).
    #[config(default = 1)]
    pub num_layers: usize,
    /// Inner width of each layer's feed-forward block.
    #[config(default = 2048)]
    pub feedforward: usize,
    /// Dropout probability inside the decoder (active only on an autodiff backend).
    #[config(default = 0.1)]
    pub dropout: f64,
    /// LayerNorm before each block (the paper) rather than after each residual sum.
    #[config(default = true)]
    pub norm_first: bool,
    /// Keep the label-to-label self-attention in each layer (the paper removes it).
    #[config(default = false)]
    pub self_attention: bool,
    /// Start from zero queries and add the label embeddings as their position (the paper), or
    /// start from the embeddings themselves with no position.
    #[config(default = true)]
    pub query_position: bool,
}

/// 1x1 projection of the feature map, label queries decoded against it, and one linear read-out
/// per label.
///
/// Field names follow the authors' state dict where Burn allows (`query_emb`, `w`, `b`); see
/// [`load_authors`](Self::load_authors) for the full correspondence.
#[derive(Module, Debug)]
pub struct AttentionHead<B: Backend> {
    /// `in_channels -> hidden` 1x1 convolution, followed by ReLU (`linear_projection`).
    pub linear_projection: Conv2d<B>,
    /// One embedding per label, `[classes, hidden]` (`query_emb`).
    pub query_emb: Embedding<B>,
    /// The decoder layers (`transformer.decoder.layers.*`).
    pub layers: Vec<DecoderLayer<B>>,
    /// Final norm of the decoded queries (`transformer.decoder.norm`).
    pub norm: LayerNorm<B>,
    /// Per-label read-out weights `[1, classes, hidden]` (`w`).
    pub w: Param<Tensor<B, 3>>,
    /// Per-label biases `[1, classes]` (`b`).
    pub b: Param<Tensor<B, 2>>,
    /// Whether the embeddings are the queries' position (see [`AttentionHeadConfig`]).
    pub query_position: bool,
}

impl AttentionHeadConfig {
    /// Checks what [`init`](Self::init) needs: at least one layer, label, channel and head, a
    /// width that the heads divide, a feed-forward width, and a dropout in `[0, 1]`.
    pub fn validate(&self) -> Result<(), ModelError> {
        let sizes = [
            ("decoder layers", self.num_layers),
            ("labels", self.num_classes),
            ("input channels", self.in_channels),
            ("attention heads", self.num_heads),
            ("hidden width", self.hidden),
            ("feed-forward width", self.feedforward),
        ];
        if let Some((what, _)) = sizes.iter().find(|(_, n)| *n == 0) {
            return Err(ModelError::InvalidConfig(format!(
                "the attention head has no {what}; it needs at least one"
            )));
        }
        if !self.hidden.is_multiple_of(self.num_heads) {
            return Err(ModelError::InvalidConfig(format!(
                "the attention head's {} heads do not divide its width {}",
                self.num_heads, self.hidden
            )));
        }
        if !(0.0..=1.0).contains(&self.dropout) {
            return Err(ModelError::InvalidConfig(format!(
                "the attention head's dropout {} is not in [0, 1]",
                self.dropout
            )));
        }
        Ok(())
    }

    /// The head with the authors' initialisation: Xavier-uniform decoder matrices, Xavier-normal
    /// read-out weights, zero read-out biases, `N(0, 1)` label embeddings.
    ///
    /// Without self-attention the authors freeze the label embeddings (they then only set where
    /// each label looks first, and random ones already tell the labels apart); so does this.
    ///
    /// # Panics
    /// On a configuration that [`validate`](Self::validate) rejects.
    pub fn init<B: Backend>(&self, device: &B::Device) -> AttentionHead<B> {
        assert!(
            self.num_layers > 0,
            "attention head: at least one decoder layer"
        );
        let layer = DecoderLayerConfig::new(self.hidden, self.num_heads, self.feedforward)
            .with_dropout(self.dropout)
            .with_norm_first(self.norm_first)
            .with_self_attention(self.self_attention);
        let mut query_emb = EmbeddingConfig::new(self.num_classes, self.hidden).init(device);
        if !self.self_attention {
            query_emb = query_emb.no_grad();
        }
        // PyTorch's xavier_normal_ on [1, classes, hidden]: fan_in = classes * hidden,
        // fan_out = hidden.
        let std = (2.0 / ((self.num_classes + 1) * self.hidden) as f64).sqrt();
        AttentionHead {
            linear_projection: Conv2dConfig::new([self.in_channels, self.hidden], [1, 1])
                .init(device),
            query_emb,
            layers: (0..self.num_layers).map(|_| layer.init(device)).collect(),
            norm: LayerNormConfig::new(self.hidden).init(device),
            w: Initializer::Normal { mean: 0.0, std }
                .init([1, self.num_classes, self.hidden], device),
            b: Initializer::Zeros.init([1, self.num_classes], device),
            query_position: self.query_position,
        }
    }
}

impl<B: Backend> AttentionHead<B> {
    /// Logits `[N, classes]` from the backbone's feature map `[N, in_channels, h, w]`.
    pub fn forward(&self, map: Tensor<B, 4>) -> Tensor<B, 2> {
        self.forward_with_attention(map).0
    }

    /// Logits `[N, classes]` and the last layer's cross-attention `[N, classes, h * w]`
    /// (averaged over heads, as PyTorch's `MultiheadAttention` returns it; pixels in row-major
    /// order, so `reshape([N, classes, h, w])` gives one map per label).
    pub fn forward_with_attention(&self, map: Tensor<B, 4>) -> (Tensor<B, 2>, Tensor<B, 3>) {
        let [batch, _, height, width] = map.dims();
        let features = relu(self.linear_projection.forward(map));
        let hidden = features.dims()[1];
        let features = features
            .reshape([batch, hidden, height * width])
            .swap_dims(1, 2);
        let embeddings = self.query_emb.weight.val().unsqueeze_dim::<3>(0).expand([
            batch,
            self.num_classes(),
            hidden,
        ]);
        let (mut x, position) = if self.query_position {
            (embeddings.zeros_like(), Some(embeddings))
        } else {
            (embeddings, None)
        };
        let mut last_weights = None;
        for layer in &self.layers {
            let (next, weights) = layer.forward(x, features.clone(), position.as_ref());
            x = next;
            last_weights = Some(weights);
        }
        let x = self.norm.forward(x);
        let logits = (x * self.w.val()).sum_dim(2).squeeze_dim::<2>(2) + self.b.val();
        let weights = last_weights.expect("the config guarantees at least one layer");
        let [_, _, classes, pixels] = weights.dims();
        let attention = weights.mean_dim(1).reshape([batch, classes, pixels]);
        (logits, attention)
    }

    /// Number of labels.
    pub fn num_classes(&self) -> usize {
        self.query_emb.weight.dims()[0]
    }

    /// Channels of the feature map this head takes.
    pub fn in_channels(&self) -> usize {
        self.linear_projection.weight.dims()[1]
    }
}
