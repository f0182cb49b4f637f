//! The loss configuration, its presets and the loss module.

use core::fmt;
use core::str::FromStr;

use burn::config::Config;
use burn::module::Module;
use burn::tensor::backend::Backend;
use burn::tensor::Tensor;

use super::params::LossParams;
use super::{composed, validate, LossError};

/// How the per-element losses are reduced.
#[derive(Config, Debug, Copy, PartialEq, Eq)]
pub enum Reduction {
    /// The mean over every element (`batch * classes`).
    Mean,
    /// The sum over every element (ASL's original reduction: it grows with the batch size).
    Sum,
    /// The sum over the classes, averaged over the batch (timm's default): the loss of a sample
    /// does not shrink as the vocabulary grows, nor grow with the batch.
    BatchMean,
    /// No reduction: [`forward`](AsymmetricLoss::forward) returns the `batch * classes`
    /// per-element losses in row-major order, [`forward_elementwise`](AsymmetricLoss::forward_elementwise)
    /// the same as `[batch, classes]`.
    None,
}

impl Reduction {
    /// Every reduction, by name.
    pub const ALL: [Reduction; 4] = [Self::Mean, Self::Sum, Self::BatchMean, Self::None];

    /// The name timm gives this reduction (`mean`, `sum`, `batchmean`, `none`).
    pub fn name(self) -> &'static str {
        match self {
            Self::Mean => "mean",
            Self::Sum => "sum",
            Self::BatchMean => "batchmean",
            Self::None => "none",
        }
    }
}

impl FromStr for Reduction {
    type Err = LossError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::ALL
            .into_iter()
            .find(|r| r.name().eq_ignore_ascii_case(s.trim()))
            .ok_or_else(|| LossError::UnknownReduction(s.to_string()))
    }
}

/// Configuration of the [asymmetric multi-label loss](AsymmetricLoss).
///
/// With `s` the sigmoid, logits `x` and targets `y` in `[0, 1]` (multi-hot, or soft):
///
/// ```text
/// y' = y (1 - smoothing) + smoothing / 2                 (label smoothing towards 0.5)
/// negative part: q = max(s(x) - neg_margin, 0)           (q = s(x) when neg_margin <= 0)
/// positive part: p = s(x - pos_margin)
///                gp = 0 if pos_margin > 0 and p >= switch_probability (confident), else gamma_pos
/// cross-entropy: ce = y' pos_weight[c] log(max(p, eps)) + (1 - y') log(max(1 - q, eps))
/// focusing:      w = B^g,  B = y' (1 - p) + (1 - y') q,  g = y' gp + (1 - y') gamma_neg
/// loss = -reduce(weight[c] * ce * w)
/// ```
///
/// For a hard target this is one term with its own weight: `log(max(p, eps)) (1 - p)^gamma_pos`
/// for a positive (plain cross-entropy when confident), `log(max(1 - q, eps)) q^gamma_neg` for
/// a negative. A soft target (smoothing makes every target soft) weighs its whole mixed
/// cross-entropy by one weight, whose base and exponent mix those of the two terms as the target
/// does: timm's definition (`1 - pt` with `pt = p y' + (1 - q) (1 - y')`). The paper's logit
/// margin and threshold switch, which timm does not have, enter the same way: the shifted
/// probability in the positive part of `B`, and `gamma_pos` replaced by 0 where the positive
/// part is confident. The loss is not linear in a soft target, and its gradient with respect to
/// the targets is that of this formula.
///
/// The weight `w` is differentiated (with respect to the logits and the targets) unless
/// `detach_focusing` is set, which treats it as a constant in the backward pass (timm's
/// `disable_torch_grad_focal_loss`). Gammas are expected to be `>= 0`; non-positive margins
/// switch their margin off.
///
/// With `pos_margin = 0` this is timm's `AsymmetricLossMultiLabel` with `clip = neg_margin` and
/// the same `eps`, `smoothing`, `reduction`, `weight`, `pos_weight` and
/// `disable_torch_grad_focal_loss`, for hard and soft targets.
///
/// [`try_init`](Self::try_init) checks the values; the per-class vectors' length is checked
/// against the logits by [`AsymmetricLoss::forward_checked`] (and [`validate_for`](Self::validate_for)).
///
/// # Example
///
/// ```
/// use aia::loss::{AsymmetricLossConfig, LossPreset};
///
/// let loss = AsymmetricLossConfig::proposed().init();
/// assert_eq!(loss.config().gamma_neg, 4.0);
/// let same: LossPreset = "proposed".parse().unwrap();
/// assert_eq!(same.config().gamma_pos, 3.0);
/// ```
// Written out rather than derived with Burn's `Config`: the options added after the first
// release need `#[serde(default)]`, so that configurations saved before them still load, and
// the derive has no way to say so.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct AsymmetricLossConfig {
    /// Focusing exponent of the negative term.
    pub gamma_neg: f64,
    /// Focusing exponent of the positive term (of hard positives when `pos_margin > 0`).
    pub gamma_pos: f64,
    /// Margin subtracted from the logit of the positive term; `0` disables it and the switch to
    /// plain cross-entropy.
    pub pos_margin: f64,
    /// Margin subtracted from the probability of the negative term (probability shifting).
    pub neg_margin: f64,
    /// Probability (after the positive margin) from which a positive counts as confident and its
    /// term switches from focal to plain cross-entropy. Used only when `pos_margin > 0`.
    #[serde(alias = "threshold")]
    pub switch_probability: f64,
    /// Lower clamp of the probabilities inside the logarithms.
    pub eps: f64,
    /// Reduction over all elements.
    pub reduction: Reduction,
    /// Label smoothing towards 0.5, in `[0, 1)`: targets become `y (1 - smoothing) + smoothing / 2`.
    #[serde(default)]
    pub smoothing: f64,
    /// Per-class weight of the whole per-element loss (`[classes]`, finite, `>= 0`); `None` for 1.
    #[serde(default)]
    pub weight: Option<Vec<f64>>,
    /// Weight of the positive term: one value for every class, or one per class (finite,
    /// `>= 0`); `None` for 1.
    #[serde(default)]
    pub pos_weight: Option<Vec<f64>>,
    /// Treat the focusing weights as constants in the backward pass.
    #[serde(default)]
    pub detach_focusing: bool,
}

impl Config for AsymmetricLossConfig {}

impl fmt::Display for AsymmetricLossConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&burn::config::config_to_json(self))
    }
}

impl Default for AsymmetricLossConfig {
    /// The paper's loss, as [`proposed`](Self::proposed).
    fn default() -> Self {
        Self::new()
    }
}

impl AsymmetricLossConfig {
    /// The defaults of every field: the paper's loss ([`proposed`](Self::proposed)) with every
    /// option off.
    pub fn new() -> Self {
        Self {
            gamma_neg: 4.0,
            gamma_pos: 3.0,
            pos_margin: 1.1,
            neg_margin: 0.05,
            switch_probability: 0.25,
            eps: 1e-8,
            reduction: Reduction::Mean,
            smoothing: 0.0,
            weight: None,
            pos_weight: None,
            detach_focusing: false,
        }
    }

    /// Set `gamma_neg`: focusing exponent of the negative term.
    pub fn with_gamma_neg(mut self, gamma_neg: f64) -> Self {
        self.gamma_neg = gamma_neg;
        self
    }

    /// Set `gamma_pos`: focusing exponent of the positive term (of hard positives when `pos_margin > 0`).
    pub fn with_gamma_pos(mut self, gamma_pos: f64) -> Self {
        self.gamma_pos = gamma_pos;
        self
    }

    /// Set `pos_margin`: margin subtracted from the logit of the positive term; `0` disables it
    /// and the switch to plain cross-entropy.
    pub fn with_pos_margin(mut self, pos_margin: f64) -> Self {
        self.pos_margin = pos_margin;
        self
    }

    /// Set `neg_margin`: margin subtracted from the probability of the negative term (probability shifting).
    pub fn with_neg_margin(mut self, neg_margin: f64) -> Self {
        self.neg_margin = neg_margin;
        self
    }

    /// Set `switch_probability`: probability (after the positive margin) from which a positive
    /// counts as confident and its term is plain cross-entropy.
    pub fn with_switch_probability(mut self, switch_probability: f64) -> Self {
        self.switch_probability = switch_probability;
        self
    }

    /// Set `eps`: lower clamp of the probabilities inside the logarithms.
    pub fn with_eps(mut self, eps: f64) -> Self {
        self.eps = eps;
        self
    }

    /// Set `reduction`: reduction over all elements.
    pub fn with_reduction(mut self, reduction: Reduction) -> Self {
        self.reduction = reduction;
        self
    }

    /// Set `smoothing`: label smoothing towards 0.5, in `[0, 1)`: targets become `y (1 - smoothing) + smoothing / 2`.
    pub fn with_smoothing(mut self, smoothing: f64) -> Self {
        self.smoothing = smoothing;
        self
    }

    /// Set `weight`: per-class weight of the whole per-element loss (`[classes]`, finite, `>= 0`); `None` for 1.
    pub fn with_weight(mut self, weight: Option<Vec<f64>>) -> Self {
        self.weight = weight;
        self
    }

    /// Set `pos_weight`: weight of the positive term: one value for every class, or one per class (finite,
    pub fn with_pos_weight(mut self, pos_weight: Option<Vec<f64>>) -> Self {
        self.pos_weight = pos_weight;
        self
    }

    /// Set `detach_focusing`: treat the focusing weights as constants in the backward pass.
    pub fn with_detach_focusing(mut self, detach_focusing: bool) -> Self {
        self.detach_focusing = detach_focusing;
        self
    }
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
        Self::preset(4.0, 3.0, 1.1, 0.05).with_switch_probability(0.25)
    }

    /// Check the values that have a valid range: smoothing in `[0, 1)`, finite non-negative
    /// weights, a finite positive `eps`, finite non-negative gammas, and finite margins and
    /// switch probability.
    pub fn validate(&self) -> Result<(), LossError> {
        let bad = |name: &'static str, value: f64, expected: &'static str| {
            Err(LossError::InvalidOption {
                name,
                value,
                expected,
            })
        };
        for (name, v) in [("gamma_neg", self.gamma_neg), ("gamma_pos", self.gamma_pos)] {
            if !(v.is_finite() && v >= 0.0) {
                return bad(name, v, "a finite value >= 0");
            }
        }
        for (name, v) in [
            ("pos_margin", self.pos_margin),
            ("neg_margin", self.neg_margin),
            ("switch_probability", self.switch_probability),
        ] {
            if !v.is_finite() {
                return bad(name, v, "a finite value");
            }
        }
        if !(self.eps > 0.0 && self.eps < 0.5) {
            return bad("eps", self.eps, "a value in (0, 0.5)");
        }
        if !(0.0..1.0).contains(&self.smoothing) {
            return bad("smoothing", self.smoothing, "a value in [0, 1)");
        }
        for (name, values) in [("weight", &self.weight), ("pos_weight", &self.pos_weight)] {
            let Some(values) = values else { continue };
            if values.is_empty() {
                return Err(LossError::EmptyWeights(name));
            }
            if let Some(&v) = values.iter().find(|v| !(v.is_finite() && **v >= 0.0)) {
                return bad(name, v, "finite values >= 0");
            }
        }
        Ok(())
    }

    /// [`validate`](Self::validate), and check that the per-class vectors fit `classes`
    /// (`weight` has one value per class, `pos_weight` one or one per class).
    pub fn validate_for(&self, classes: usize) -> Result<(), LossError> {
        self.validate()?;
        super::params::check_weight_lengths(
            self.weight.as_ref().map(Vec::len),
            self.pos_weight.as_ref().map(Vec::len),
            classes,
        )
    }

    /// Build the loss after [`validate`](Self::validate).
    pub fn try_init(&self) -> Result<AsymmetricLoss, LossError> {
        self.validate()?;
        Ok(self.init())
    }

    /// Build the loss without checking the values (see [`try_init`](Self::try_init)); a value
    /// out of range gives meaningless losses, not a panic.
    pub fn init(&self) -> AsymmetricLoss {
        AsymmetricLoss {
            config: self.clone(),
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

impl Default for LossPreset {
    /// The paper's loss, as [`AsymmetricLossConfig::default`].
    fn default() -> Self {
        Self::Proposed
    }
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
    /// The configuration it was built from (what [`config`](Self::config) returns).
    #[module(skip)]
    config: AsymmetricLossConfig,
    /// What the kernels need, derived once from the configuration.
    #[module(skip)]
    params: LossParams,
}

impl AsymmetricLoss {
    /// The configuration of this loss: its values are the ones [`forward`](Self::forward) uses
    /// (a loss is changed by building another from a changed configuration).
    pub fn config(&self) -> &AsymmetricLossConfig {
        &self.config
    }

    /// The reduction over all elements.
    pub fn reduction(&self) -> Reduction {
        self.config.reduction
    }

    /// The kernel parameters derived from the configuration.
    pub fn params(&self) -> &LossParams {
        &self.params
    }

    /// The loss of `logits` against multi-hot `targets`, both `[batch, classes]`, as a
    /// one-element tensor, or with [`Reduction::None`] the `batch * classes` per-element losses
    /// (row-major).
    ///
    /// Uses the backend's fused kernel, and under autodiff its analytic gradient, where the crate
    /// has one for the backend; [`forward_composed`](Self::forward_composed) elsewhere. Inputs are not
    /// validated (see [`forward_checked`](Self::forward_checked)); soft targets in `[0, 1]` are
    /// accepted (see [`AsymmetricLossConfig`] for their formula).
    ///
    /// # Panics
    ///
    /// If the shapes of `logits` and `targets` differ, or the per-class weights do not fit the
    /// classes, like Burn's own element-wise operations; [`forward_checked`](Self::forward_checked)
    /// returns an error instead.
    pub fn forward<B: Backend>(&self, logits: Tensor<B, 2>, targets: Tensor<B, 2>) -> Tensor<B, 1> {
        let (xs, ys) = (logits.dims(), targets.dims());
        assert!(
            xs == ys,
            "AsymmetricLoss::forward: logits have shape {xs:?} but targets have shape {ys:?}"
        );
        if let Err(e) = self.params.check_classes(xs[1]) {
            panic!("AsymmetricLoss::forward: {e}");
        }
        crate::kernels::loss::asymmetric_loss(logits, targets, &self.params)
    }

    /// The per-element losses `[batch, classes]` (smoothing and weights applied), whatever the
    /// configured reduction: timm's `reduction='none'`.
    ///
    /// # Panics
    ///
    /// As [`forward`](Self::forward).
    pub fn forward_elementwise<B: Backend>(
        &self,
        logits: Tensor<B, 2>,
        targets: Tensor<B, 2>,
    ) -> Tensor<B, 2> {
        let dims = logits.dims();
        let loss = self.clone().with_reduction(Reduction::None);
        loss.forward(logits, targets).reshape(dims)
    }

    /// This loss with another reduction.
    pub fn with_reduction(mut self, reduction: Reduction) -> Self {
        self.config.reduction = reduction;
        self.params.reduction = reduction;
        self
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
        let (xs, ys) = (logits.dims(), targets.dims());
        assert!(
            xs == ys,
            "AsymmetricLoss::forward_composed: logits have shape {xs:?} but targets have shape {ys:?}"
        );
        if let Err(e) = self.params.check_classes(xs[1]) {
            panic!("AsymmetricLoss::forward_composed: {e}");
        }
        composed::loss(&self.params, logits, targets)
    }

    /// [`forward`](Self::forward) after checking that the shapes match, that the per-class
    /// weights fit the classes, that every target is `0` or `1` and that no logit is NaN.
    ///
    /// The checks read a few values back from the device, which is why the fast path skips them.
    pub fn forward_checked<B: Backend>(
        &self,
        logits: Tensor<B, 2>,
        targets: Tensor<B, 2>,
    ) -> Result<Tensor<B, 1>, LossError> {
        validate::check_inputs(&logits, &targets)?;
        self.params.check_classes(logits.dims()[1])?;
        Ok(self.forward(logits, targets))
    }
}
