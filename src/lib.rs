//! # aia — automatic image annotation on Burn
//!
//! A pure-Rust implementation of Salar & Ahmadi, *Improving loss function for deep convolutional
//! neural network applied in automatic image annotation* (The Visual Computer, 2023):
//!
//! - [`model`]: the TResNet family (M, L, XL), loading timm's pretrained checkpoints;
//! - [`loss`]: the asymmetric multi-label loss family (BCE, focal, ASL and the paper's loss);
//! - [`kernels`]: the fused CPU and CubeCL kernels behind the loss and the model, picked by the
//!   backend's type, with Burn's operations on every other backend;
//! - [`data`]: Corel-5k, IAPR TC-12, ESP Game, any folder laid out like them, and a synthetic set;
//! - [`metrics`] and [`threshold`]: the field's per-class and overall metrics and per-label
//!   thresholds chosen by the Matthews correlation coefficient;
//! - [`train`]: the paper's training recipe, with checkpoints, resume and reports;
//! - [`experiment`]: the paper's pipeline end to end, and [`annotate`]: new images labelled by a
//!   trained run;
//! - [`fs`]: the files the crate writes (atomically) and the error naming a file.
//!
//! Everything is generic over a Burn [`Backend`](burn::tensor::backend::Backend); [`backend`]
//! names the one picked by the crate's features (flex on the CPU by default).
#![warn(missing_docs)]

pub mod annotate;
pub mod backend;
pub mod data;
pub mod error;
pub mod experiment;
pub mod fs;
pub mod kernels;
pub mod loss;
pub mod metrics;
pub mod model;
pub mod threshold;
pub mod train;

pub use error::{Error, Result};

/// The README's Rust examples, compiled as doctests so they stay true.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
pub struct ReadmeDoctests;
