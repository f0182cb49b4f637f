//! Which head reads the labels off the backbone's last feature map: the paper's linear head, or
//! the attention-pooling head of the authors' follow-up.

use burn::config::Config;
use burn::module::Module;
use burn::tensor::backend::Backend;
use burn::tensor::Tensor;

use super::attention_head::{AttentionHead, AttentionHeadConfig};
use super::head::{global_average_pool, ClassifierHead};

/// The head of a [`TResNet`](super::TResNet), chosen in
/// [`TResNetConfig::head`](super::TResNetConfig::head).
///
/// Parses from `linear` or `attention` (the latter with the paper's settings); [`name`](Self::name)
/// gives the word back.
#[derive(Config, Debug)]
pub enum HeadConfig {
    /// The paper's: global average pooling, dropout
    /// ([`TResNetConfig::dropout`](super::TResNetConfig::dropout)), one linear layer.
    Linear,
    /// Label queries attending to the feature map (Salar & Ahmadi, The Visual Computer 2024).
    ///
    /// Its `num_classes` and `in_channels` are the network's:
    /// [`TResNetConfig::init`](super::TResNetConfig::init) sets them from the TResNet's
    /// configuration.
    Attention(AttentionHeadConfig),
}

impl HeadConfig {
    /// The attention-pooling head with the paper's settings (see [`AttentionHeadConfig`]).
    pub fn attention() -> Self {
        // The placeholders are replaced by the network's own values when it is built.
        Self::Attention(AttentionHeadConfig::new(0))
    }

    /// `linear` or `attention`.
    pub fn name(&self) -> &'static str {
        match self {
            Self::Linear => "linear",
            Self::Attention(_) => "attention",
        }
    }
}

impl core::str::FromStr for HeadConfig {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.trim().to_ascii_lowercase().as_str() {
            "linear" => Ok(Self::Linear),
            "attention" => Ok(Self::attention()),
            other => Err(format!(
                "unknown head `{other}` (expected `linear` or `attention`)"
            )),
        }
    }
}

/// A built head: logits `[N, classes]` from the feature map `[N, C, h, w]`.
// A model holds exactly one head, so the size gap between variants costs
// nothing, and boxing would hide the variants' record layout from `Module`.
#[allow(clippy::large_enum_variant)]
#[derive(Module, Debug)]
pub enum Head<B: Backend> {
    /// Global average pooling, dropout, linear (timm's `ClassifierHead`).
    Linear(ClassifierHead<B>),
    /// Attention pooling, one query per label.
    Attention(AttentionHead<B>),
}

impl<B: Backend> Head<B> {
    /// Logits `[N, classes]` from the feature map `[N, in_features, h, w]`.
    pub fn forward(&self, map: Tensor<B, 4>) -> Tensor<B, 2> {
        match self {
            Self::Linear(head) => head.forward(global_average_pool(map)),
            Self::Attention(head) => head.forward(map),
        }
    }

    /// Logits, and with the attention head its cross-attention `[N, classes, h * w]` (see
    /// [`AttentionHead::forward_with_attention`]).
    pub fn forward_with_attention(
        &self,
        map: Tensor<B, 4>,
    ) -> (Tensor<B, 2>, Option<Tensor<B, 3>>) {
        match self {
            Self::Linear(head) => (head.forward(global_average_pool(map)), None),
            Self::Attention(head) => {
                let (logits, attention) = head.forward_with_attention(map);
                (logits, Some(attention))
            }
        }
    }

    /// Number of outputs (labels).
    pub fn num_classes(&self) -> usize {
        match self {
            Self::Linear(head) => head.num_classes(),
            Self::Attention(head) => head.num_classes(),
        }
    }

    /// Channels of the feature map the head takes.
    pub fn in_features(&self) -> usize {
        match self {
            Self::Linear(head) => head.fc.weight.dims()[0],
            Self::Attention(head) => head.in_channels(),
        }
    }

    /// The linear head, if this is one.
    pub fn linear(&self) -> Option<&ClassifierHead<B>> {
        match self {
            Self::Linear(head) => Some(head),
            Self::Attention(_) => None,
        }
    }

    /// The attention head, if this is one.
    pub fn attention(&self) -> Option<&AttentionHead<B>> {
        match self {
            Self::Linear(_) => None,
            Self::Attention(head) => Some(head),
        }
    }
}
