//! The loss configuration, its presets and the loss module.

use core::fmt;
use core::str::FromStr;

use burn::config::Config;
use burn::module::Module;
use burn::tensor::backend::Backend;
use burn::tensor::Tensor;

use super::params::LossParams;
use super::{composed, validate, LossError};

/// How the per-element losses are reduced to one value.
#[derive(Config, Debug, Copy, PartialEq, Eq)]
pub enum Reduction {
    /// The mean over every element (`batch * classes`).
    Mean,
    /// The sum over every element.
    Sum,
}

/// Configuration of the [asymmetric multi-label loss](AsymmetricLoss).
///
/// With `s` the sigmoid, logits `x` and multi-hot targets `y`:
///
/// ```text
/// negative term (y = 0): q = max(s(x) - neg_margin, 0)   (q = s(x) when neg_margin <= 0)
///                        L- = log(max(1 - q, eps)) * q^gamma_neg
/// positive term (y = 1): p = s(x - pos_margin)
///                        w = 1 if pos_margin > 0 and p >= threshold, else (1 - p)^gamma_pos
///                        L+ = log(max(p, eps)) * w
/// loss = -reduce(y * L+ + (1 - y) * L-)
/// ```
///
/// The weights `q^gamma_neg` and `(1 - p)^gamma_pos` are not detached: gradients flow through
/// them. Gammas are expected to be `>= 0`; non-positive margins switch their margin off.
///
/// # Example
///
/// ```
/// use aia::loss::{AsymmetricLossConfig, LossPreset};
///
/// let loss = AsymmetricLossConfig::proposed().init();
/// assert_eq!(loss.gamma_neg, 4.0);
/// let same: LossPreset = "proposed".parse().unwrap();
/// assert_eq!(same.config().gamma_pos, 3.0);
/// ```
#[derive(Config, Debug, PartialEq)]
pub struct AsymmetricLossConfig {
    /// Focusing exponent of the negative term.
    #[config(default = 4.0)]
    pub gamma_neg: f64,
    /// Focusing exponent of the positive term (of hard positives when `pos_margin > 0`).
    #[config(default = 3.0)]
    pub gamma_pos: f64,
    /// Margin subtracted from the logit of the positive term; `0` disables it and the threshold.
    #[config(default = 1.1)]
    pub pos_margin: f64,
    /// Margin subtracted from the probability of the negative term (probability shifting).
    #[config(default = 0.05)]
    pub neg_margin: f64,
    /// Probability (after the positive margin) from which a positive counts as confident and gets
    /// the plain cross-entropy term. Used only when `pos_margin > 0`.
    #[config(default = 0.25)]
    pub threshold: f64,
    /// Lower clamp of the probabilities inside the logarithms.
    #[config(default = 1e-8)]
    pub eps: f64,
    /// Reduction over all elements.
    #[config(default = "Reduction::Mean")]
    pub reduction: Reduction,
}

impl AsymmetricLossConfig {
    fn preset(gamma_neg: f64, gamma_pos: f64, pos_margin: f64, neg_margin: f64) -> Self {
        Self::new()
            .with_gamma_neg(gamma_neg)
            .with_gamma_pos(gamma_pos)
            .with_pos_margin(pos_margin)
            .with_neg_margin(neg_margin)
    }

    /// Binary cross-entropy: no focusing, no margins.
    pub fn bce() -> Self {
        Self::preset(0.0, 0.0, 0.0, 0.0)
    }

    /// Focal loss with `gamma = 3` on both terms.
    pub fn focal() -> Self {
        Self::preset(3.0, 3.0, 0.0, 0.0)
    }

    /// Asymmetric loss (ASL, Ridnik et al. 2021): `gamma_neg = 4`, probability margin `0.05`.
    pub fn asymmetric() -> Self {
        Self::preset(4.0, 0.0, 0.0, 0.05)
    }

    /// The paper's loss: ASL's negative term, and a positive term with logit margin `1.1` that
    /// is plain cross-entropy above probability `0.25` and focal (`gamma = 3`) below it.
    pub fn proposed() -> Self {
        Self::preset(4.0, 3.0, 1.1, 0.05).with_threshold(0.25)
    }

    /// Build the loss.
    pub fn init(&self) -> AsymmetricLoss {
        AsymmetricLoss {
            gamma_neg: self.gamma_neg as f32,
            gamma_pos: self.gamma_pos as f32,
            pos_margin: self.pos_margin as f32,
            neg_margin: self.neg_margin as f32,
            threshold: self.threshold as f32,
            eps: self.eps as f32,
            reduction: self.reduction,
            params: LossParams::from_config(self),
        }
    }
}

/// The named presets of [`AsymmetricLossConfig`], for command lines and configuration files.
///
/// Parses from and displays as `bce`, `focal`, `asymmetric`, `proposed`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum LossPreset {
    /// [`AsymmetricLossConfig::bce`].
    Bce,
    /// [`AsymmetricLossConfig::focal`].
    Focal,
    /// [`AsymmetricLossConfig::asymmetric`].
    Asymmetric,
    /// [`AsymmetricLossConfig::proposed`].
    Proposed,
}

impl LossPreset {
    /// Every preset, in table order.
    pub const ALL: [LossPreset; 4] = [Self::Bce, Self::Focal, Self::Asymmetric, Self::Proposed];

    /// The preset's name (`bce`, `focal`, `asymmetric` or `proposed`).
    pub fn name(self) -> &'static str {
        match self {
            Self::Bce => "bce",
            Self::Focal => "focal",
            Self::Asymmetric => "asymmetric",
            Self::Proposed => "proposed",
        }
    }

    /// The configuration of this preset.
    pub fn config(self) -> AsymmetricLossConfig {
        match self {
            Self::Bce => AsymmetricLossConfig::bce(),
            Self::Focal => AsymmetricLossConfig::focal(),
            Self::Asymmetric => AsymmetricLossConfig::asymmetric(),
            Self::Proposed => AsymmetricLossConfig::proposed(),
        }
    }
}

impl fmt::Display for LossPreset {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for LossPreset {
    type Err = LossError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::ALL
            .into_iter()
            .find(|p| p.name().eq_ignore_ascii_case(s.trim()))
            .ok_or_else(|| LossError::UnknownPreset(s.to_string()))
    }
}

/// The asymmetric multi-label loss (see [`AsymmetricLossConfig`] for the formula).
///
/// [`forward`](Self::forward) is the fast path: one fused kernel on the backends the crate has one
/// for (see [`kernels`](crate::kernels)), with an analytic backward under autodiff, and the
/// composed reference on the others. [`forward_composed`](Self::forward_composed) is the same loss written with plain
/// tensor operations, for any backend. [`forward_checked`](Self::forward_checked) validates its
/// inputs first.
#[derive(Module, Debug, Clone)]
pub struct AsymmetricLoss {
    /// Focusing exponent of the negative term.
    pub gamma_neg: f32,
    /// Focusing exponent of the positive term.
    pub gamma_pos: f32,
    /// Logit margin of the positive term.
    pub pos_margin: f32,
    /// Probability margin of the negative term.
    pub neg_margin: f32,
    /// Confidence threshold of the positive term.
    pub threshold: f32,
    /// Lower clamp inside the logarithms.
    pub eps: f32,
    /// Reduction over all elements.
    #[module(skip)]
    pub reduction: Reduction,
    /// What the kernels need, derived once from the configuration.
    #[module(skip)]
    params: LossParams,
}

impl AsymmetricLoss {
    /// The kernel parameters derived from the configuration.
    pub fn params(&self) -> &LossParams {
        &self.params
    }

    /// The loss of `logits` against multi-hot `targets`, both `[batch, classes]`, as a
    /// one-element tensor.
    ///
    /// Uses the backend's fused kernel, and under autodiff its analytic gradient, where the crate
    /// has one for the backend; [`forward_composed`](Self::forward_composed) elsewhere. Inputs are not
    /// validated (see [`forward_checked`](Self::forward_checked)); soft targets in `[0, 1]` are
    /// accepted and weigh the two terms linearly.
    ///
    /// # Panics
    ///
    /// If the shapes of `logits` and `targets` differ, like Burn's own element-wise operations;
    /// [`forward_checked`](Self::forward_checked) returns an error instead.
    pub fn forward<B: Backend>(&self, logits: Tensor<B, 2>, targets: Tensor<B, 2>) -> Tensor<B, 1> {
        let (xs, ys) = (logits.dims(), targets.dims());
        assert!(
            xs == ys,
            "AsymmetricLoss::forward: logits have shape {xs:?} but targets have shape {ys:?}"
        );
        crate::kernels::loss::asymmetric_loss(logits, targets, &self.params)
    }

    /// The same loss as [`forward`](Self::forward), written with plain tensor operations: the
    /// readable reference, on any backend, differentiated by autodiff.
    ///
    /// # Panics
    ///
    /// If the shapes of `logits` and `targets` differ.
    pub fn forward_composed<B: Backend>(
        &self,
        logits: Tensor<B, 2>,
        targets: Tensor<B, 2>,
    ) -> Tensor<B, 1> {
        composed::loss(&self.params, logits, targets)
    }

    /// [`forward`](Self::forward) after checking that the shapes match, that every target is
    /// `0` or `1` and that no logit is NaN.
    ///
    /// The checks read a few values back from the device, which is why the fast path skips them.
    pub fn forward_checked<B: Backend>(
        &self,
        logits: Tensor<B, 2>,
        targets: Tensor<B, 2>,
    ) -> Result<Tensor<B, 1>, LossError> {
        validate::check_inputs(&logits, &targets)?;
        Ok(self.forward(logits, targets))
    }
}
