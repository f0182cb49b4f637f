//! The asymmetric multi-label loss family: BCE, focal, ASL and the paper's loss.
//!
//! - [`AsymmetricLossConfig`] holds the hyper-parameters, with the presets
//!   [`bce`](AsymmetricLossConfig::bce), [`focal`](AsymmetricLossConfig::focal),
//!   [`asymmetric`](AsymmetricLossConfig::asymmetric) and
//!   [`proposed`](AsymmetricLossConfig::proposed) (also by name through [`LossPreset`]);
//! - [`AsymmetricLoss::forward`] runs on any backend: the backend's fused kernel where the crate
//!   has one ([`kernels`](crate::kernels): a vectorised, multi-threaded CPU kernel on Flex and
//!   NdArray, a CubeCL kernel on CUDA and wgpu without fusion), with the analytic gradient under
//!   [`Autodiff`](burn::backend::Autodiff), and the composed reference elsewhere (which Burn's
//!   fusion backends fuse);
//! - [`AsymmetricLoss::forward_composed`] is the readable reference made of plain tensor
//!   operations, on any backend.
//!
//! ```
//! use aia::loss::AsymmetricLossConfig;
//! use burn::backend::{Autodiff, Flex};
//! use burn::tensor::Tensor;
//!
//! type B = Autodiff<Flex>;
//! let device = Default::default();
//! let logits = Tensor::<B, 2>::from_floats([[2.0, -1.0, 0.5]], &device).require_grad();
//! let targets = Tensor::<B, 2>::from_floats([[1.0, 0.0, 0.0]], &device);
//! let loss = AsymmetricLossConfig::proposed().init().forward(logits.clone(), targets);
//! let grads = loss.backward();
//! assert_eq!(logits.grad(&grads).unwrap().dims(), [1, 3]);
//! ```

pub(crate) mod composed;
mod config;
mod params;
mod validate;

pub use config::{AsymmetricLoss, AsymmetricLossConfig, LossPreset, Reduction};
pub use params::LossParams;

/// Errors of the loss module.
#[derive(Debug, thiserror::Error)]
pub enum LossError {
    /// Logits and targets do not have the same shape.
    #[error("logits have shape {logits:?} but targets have shape {targets:?}")]
    ShapeMismatch {
        /// Shape of the logits.
        logits: Vec<usize>,
        /// Shape of the targets.
        targets: Vec<usize>,
    },
    /// A target is neither 0 nor 1.
    #[error("target at row {row}, class {col} is {value}; targets must be 0 or 1")]
    TargetNotBinary {
        /// Row (sample) of the first offending target.
        row: usize,
        /// Column (class) of the first offending target.
        col: usize,
        /// Its value.
        value: f32,
    },
    /// A logit is NaN.
    #[error("logit at row {row}, class {col} is NaN")]
    NanLogit {
        /// Row (sample) of the first NaN logit.
        row: usize,
        /// Column (class) of the first NaN logit.
        col: usize,
    },
    /// A reduction name that is not one of `mean`, `sum`, `batchmean`, `none`.
    #[error("unknown reduction {0:?}; expected one of mean, sum, batchmean, none")]
    UnknownReduction(String),
    /// A configuration value out of its range.
    #[error("loss option {name} is {value}; expected {expected}")]
    InvalidOption {
        /// The option.
        name: &'static str,
        /// Its (first offending) value.
        value: f64,
        /// What it should be.
        expected: &'static str,
    },
    /// A per-class weight vector with no value.
    #[error("loss option {0} is an empty list; leave it unset for weights of 1")]
    EmptyWeights(&'static str),
    /// A per-class weight vector whose length does not fit the number of classes.
    #[error("loss option {name} has {len} values but the logits have {classes} classes")]
    WeightLength {
        /// The option.
        name: &'static str,
        /// Its length.
        len: usize,
        /// The number of classes.
        classes: usize,
    },
    /// The `none` reduction where one value is needed (training).
    #[error("the loss reduction `none` gives one loss per element; training needs one value: mean, sum or batchmean")]
    NotReduced,
    /// A loss name that is not one of the presets.
    #[error("unknown loss preset {0:?}; expected one of bce, focal, asymmetric, proposed")]
    UnknownPreset(String),
}
