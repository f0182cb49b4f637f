//! One decoder layer of the attention-pooling head: label queries attend to the image's feature
//! map (Salar & Ahmadi, The Visual Computer 2024, `TransformerDecoderLayer` in their code).

use burn::config::Config;
use burn::module::{Initializer, Module};
use burn::nn::attention::{MhaInput, MultiHeadAttention, MultiHeadAttentionConfig};
use burn::nn::{Dropout, DropoutConfig, LayerNorm, LayerNormConfig, Linear, LinearConfig};
use burn::tensor::activation::relu;
use burn::tensor::backend::Backend;
use burn::tensor::Tensor;

/// Configuration of a [`DecoderLayer`].
#[derive(Config, Debug)]
pub struct DecoderLayerConfig {
    /// Width of the queries and of the projected features.
    pub hidden: usize,
    /// Number of attention heads (must divide `hidden`).
    pub num_heads: usize,
    /// Width of the feed-forward block's inner layer.
    pub feedforward: usize,
    /// Dropout probability on the attention weights and on each residual branch.
    #[config(default = 0.1)]
    pub dropout: f64,
    /// LayerNorm before each block (pre-norm) rather than after each residual sum.
    #[config(default = true)]
    pub norm_first: bool,
    /// Whether the label queries attend to each other before attending to the image.
    #[config(default = false)]
    pub self_attention: bool,
    /// LayerNorm's epsilon (PyTorch's default).
    #[config(default = 1e-5)]
    pub layer_norm_eps: f64,
}

/// Optional self-attention, cross-attention over the feature map, feed-forward (ReLU), each with
/// a residual connection and a LayerNorm.
///
/// Dropout acts only when the backend tracks gradients (Burn's [`Dropout`] is the identity
/// otherwise), so inference on a plain backend is deterministic. Burn's attention drops
/// attention *scores* before the softmax where PyTorch drops the weights after it: the two agree
/// at inference, not in the noise they add while training.
#[derive(Module, Debug)]
pub struct DecoderLayer<B: Backend> {
    /// Label-to-label attention (`self_attn` in the authors' state dict), when kept.
    pub self_attn: Option<MultiHeadAttention<B>>,
    /// Norm of the self-attention block (`norm1`), present with it.
    pub norm1: Option<LayerNorm<B>>,
    /// Label-to-pixel attention (`multihead_attn`).
    pub cross_attn: MultiHeadAttention<B>,
    /// Norm of the cross-attention block.
    pub norm2: LayerNorm<B>,
    /// Feed-forward expansion `hidden -> feedforward`.
    pub linear1: Linear<B>,
    /// Feed-forward contraction `feedforward -> hidden`.
    pub linear2: Linear<B>,
    /// Norm of the feed-forward block.
    pub norm3: LayerNorm<B>,
    /// Shared by every residual branch and the feed-forward block: it holds no state.
    pub dropout: Dropout,
    /// Pre-norm (`true`) or post-norm.
    pub norm_first: bool,
}

impl DecoderLayerConfig {
    /// Xavier-uniform weights, as the authors re-initialise every matrix of the decoder.
    ///
    /// # Panics
    /// If `num_heads` does not divide `hidden`.
    pub fn init<B: Backend>(&self, device: &B::Device) -> DecoderLayer<B> {
        assert!(
            self.num_heads > 0 && self.hidden.is_multiple_of(self.num_heads),
            "attention decoder: {} heads do not divide the width {}",
            self.num_heads,
            self.hidden
        );
        let xavier = Initializer::XavierUniform { gain: 1.0 };
        let attention = || {
            MultiHeadAttentionConfig::new(self.hidden, self.num_heads)
                .with_dropout(self.dropout)
                .with_initializer(xavier.clone())
                .init(device)
        };
        let norm = || {
            LayerNormConfig::new(self.hidden)
                .with_epsilon(self.layer_norm_eps)
                .init(device)
        };
        let linear = |d_in, d_out| {
            LinearConfig::new(d_in, d_out)
                .with_initializer(xavier.clone())
                .init(device)
        };
        DecoderLayer {
            self_attn: self.self_attention.then(attention),
            norm1: self.self_attention.then(norm),
            cross_attn: attention(),
            norm2: norm(),
            linear1: linear(self.hidden, self.feedforward),
            linear2: linear(self.feedforward, self.hidden),
            norm3: norm(),
            dropout: DropoutConfig::new(self.dropout).init(),
            norm_first: self.norm_first,
        }
    }
}

impl<B: Backend> DecoderLayer<B> {
    /// Updates the label queries `[N, classes, hidden]` from the features `[N, pixels, hidden]`.
    ///
    /// `position`, when given, is added to the queries (not to the values) of both attentions,
    /// as DETR does with its object queries. Returns the new queries and the cross-attention
    /// weights `[N, heads, classes, pixels]`.
    pub fn forward(
        &self,
        queries: Tensor<B, 3>,
        features: Tensor<B, 3>,
        position: Option<&Tensor<B, 3>>,
    ) -> (Tensor<B, 3>, Tensor<B, 4>) {
        let mut x = queries;
        let attention_weights;
        if self.norm_first {
            if let (Some(attn), Some(norm)) = (&self.self_attn, &self.norm1) {
                x = x.clone() + self.self_attention(attn, norm.forward(x), position);
            }
            let (context, weights) =
                self.cross_attention(self.norm2.forward(x.clone()), features, position);
            attention_weights = weights;
            x = x + context;
            x = x.clone() + self.feedforward(self.norm3.forward(x));
        } else {
            if let (Some(attn), Some(norm)) = (&self.self_attn, &self.norm1) {
                x = norm.forward(x.clone() + self.self_attention(attn, x, position));
            }
            let (context, weights) = self.cross_attention(x.clone(), features, position);
            attention_weights = weights;
            x = self.norm2.forward(x + context);
            x = self.norm3.forward(x.clone() + self.feedforward(x));
        }
        (x, attention_weights)
    }

    fn self_attention(
        &self,
        attn: &MultiHeadAttention<B>,
        x: Tensor<B, 3>,
        position: Option<&Tensor<B, 3>>,
    ) -> Tensor<B, 3> {
        let query = with_position(x.clone(), position);
        let output = attn.forward(MhaInput::new(query.clone(), query, x));
        self.dropout.forward(output.context)
    }

    fn cross_attention(
        &self,
        x: Tensor<B, 3>,
        features: Tensor<B, 3>,
        position: Option<&Tensor<B, 3>>,
    ) -> (Tensor<B, 3>, Tensor<B, 4>) {
        let query = with_position(x, position);
        let output = self
            .cross_attn
            .forward(MhaInput::new(query, features.clone(), features));
        (self.dropout.forward(output.context), output.weights)
    }

    fn feedforward(&self, x: Tensor<B, 3>) -> Tensor<B, 3> {
        let hidden = self.dropout.forward(relu(self.linear1.forward(x)));
        self.dropout.forward(self.linear2.forward(hidden))
    }
}

fn with_position<B: Backend>(x: Tensor<B, 3>, position: Option<&Tensor<B, 3>>) -> Tensor<B, 3> {
    match position {
        Some(p) => x + p.clone(),
        None => x,
    }
}
