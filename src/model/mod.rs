//! The TResNet backbone family (M, L, XL) as timm defines it, loading timm's checkpoints.
//!
//! - [`TResNetConfig`] / [`TResNet`]: the network (`forward` for logits, `forward_features` for
//!   the pooled embedding, `forward_feature_map` for the last map);
//! - [`TResNet::load_timm`]: timm's `.safetensors` / `.pth` checkpoints, as they are;
//! - building blocks, one file each: [`conv_norm`], [`blur_pool`], [`space_to_depth`],
//!   [`squeeze_excite`], [`block`], [`head`];
//! - [`attention_head`]: the attention-pooling head of Salar & Ahmadi (The Visual Computer 2024),
//!   label queries decoded against the last feature map ([`attention_decoder`] holds its layer),
//!   loading the authors' checkpoints with [`AttentionHead::load_authors`].
//!
//! Only the architecture lives here: the operations a training step spends its time in
//! (convolution, BatchNorm, the pools, the residual add and the squeeze-and-excitation gate) run
//! through [`kernels`](crate::kernels), which picks a fused kernel where the backend has one.
//!
//! ```
//! use aia::model::TResNetConfig;
//! use burn::tensor::Tensor;
//! type B = burn::backend::Flex;
//!
//! let device = Default::default();
//! let model = TResNetConfig::new([1, 1, 1, 1]).with_width(0.25).with_num_classes(5).init::<B>(&device);
//! let logits = model.try_forward(Tensor::zeros([2, 3, 64, 64], &device))?;
//! assert_eq!(logits.dims(), [2, 5]);
//! assert!(model.try_forward(Tensor::zeros([2, 3, 62, 64], &device)).is_err());
//! # Ok::<(), aia::model::ModelError>(())
//! ```

use std::path::PathBuf;

pub mod attention_decoder;
pub mod attention_head;
mod attention_weights;
pub mod block;
#[cfg(all(feature = "flex", target_arch = "x86_64"))]
mod blocked;
pub mod blur_pool;
pub mod conv_norm;
pub mod head;
mod head_choice;
pub mod space_to_depth;
pub mod squeeze_excite;
mod tresnet;
mod weights;

pub use attention_head::{AttentionHead, AttentionHeadConfig};
pub use head_choice::{Head, HeadConfig};
pub use tresnet::{TResNet, TResNetConfig, TResNetVariant, MIN_SIDE, STEM_LEAKY_SLOPE};
pub use weights::{safetensors_metadata, timm_key, CheckpointFormat};

/// Errors of the model module.
#[derive(Debug, thiserror::Error)]
pub enum ModelError {
    /// An input the network cannot take.
    #[error("invalid input: {0}")]
    InvalidInput(String),
    /// A TResNet variant name that is not one of [`TResNetVariant`]'s.
    #[error("unknown TResNet variant {0:?}; expected one of m, l, xl")]
    UnknownVariant(String),
    /// A configuration no network can be built from.
    #[error("invalid model configuration: {0}")]
    InvalidConfig(String),
    /// A checkpoint whose extension names no format we read.
    #[error("checkpoint {path}: unsupported extension (expected .safetensors, .pth, .pt or .bin)")]
    UnsupportedFormat {
        /// The file.
        path: PathBuf,
    },
    /// A checkpoint that could not be read or parsed.
    #[error("cannot read checkpoint {path}: {message}")]
    Checkpoint {
        /// The file.
        path: PathBuf,
        /// What went wrong.
        message: String,
    },
    /// A tensor the model needs is not in the checkpoint.
    #[error("checkpoint {path} lacks tensor `{key}` ({others} other tensors missing too)")]
    MissingKey {
        /// The file.
        path: PathBuf,
        /// The timm key of the first missing tensor.
        key: String,
        /// How many more are missing.
        others: usize,
    },
    /// A tensor of the checkpoint does not have the shape the configuration gives it.
    #[error(
        "checkpoint {path}: tensor `{key}` has shape {found:?}, the model expects {expected:?}"
    )]
    ShapeMismatch {
        /// The file.
        path: PathBuf,
        /// The timm key.
        key: String,
        /// Shape in this model (PyTorch layout).
        expected: Vec<usize>,
        /// Shape in the file.
        found: Vec<usize>,
    },
    /// The checkpoint holds a tensor this configuration has no place for (other layers?).
    #[error(
        "checkpoint {path} has tensor `{key}` that this model configuration lacks \
         ({others} more such tensors); is it another variant?"
    )]
    UnexpectedKey {
        /// The file.
        path: PathBuf,
        /// The timm key of the first unexpected tensor.
        key: String,
        /// How many more there are.
        others: usize,
    },
    /// A weights file that cannot be read or written.
    #[error(transparent)]
    File(#[from] crate::fs::FileError),
}
