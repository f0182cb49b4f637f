//! The backend chosen by the crate's features.
//!
//! `cuda` wins over `ndarray`, which wins over the default `flex`: asking for a feature on top of
//! the default means you want that one.

/// The plain (inference) backend picked by the enabled features.
#[cfg(feature = "cuda")]
pub type DefaultBackend = burn::backend::Cuda;

/// The plain (inference) backend picked by the enabled features.
#[cfg(all(not(feature = "cuda"), feature = "wgpu"))]
pub type DefaultBackend = burn::backend::Wgpu;

/// The plain (inference) backend picked by the enabled features.
#[cfg(all(not(feature = "cuda"), not(feature = "wgpu"), feature = "ndarray"))]
pub type DefaultBackend = burn::backend::NdArray;

/// The plain (inference) backend picked by the enabled features.
#[cfg(all(
    not(feature = "cuda"),
    not(feature = "wgpu"),
    not(feature = "ndarray"),
    feature = "flex"
))]
pub type DefaultBackend = burn::backend::Flex;

/// The training backend: [`DefaultBackend`] with automatic differentiation.
#[cfg(any(
    feature = "cuda",
    feature = "wgpu",
    feature = "ndarray",
    feature = "flex"
))]
pub type TrainBackend = burn::backend::Autodiff<DefaultBackend>;

/// A short human-readable name of [`DefaultBackend`], for logs and reports.
pub const BACKEND_NAME: &str = if cfg!(feature = "cuda") {
    "cuda"
} else if cfg!(feature = "wgpu") {
    "wgpu"
} else if cfg!(feature = "ndarray") {
    "ndarray"
} else {
    "flex"
};
