//! The loss hyper-parameters in the form the kernels use.

use std::sync::Arc;

use super::config::{AsymmetricLossConfig, Reduction};
use super::LossError;

/// Hyper-parameters of the loss prepared for the kernels (`f32`, switches resolved).
///
/// Built by [`AsymmetricLossConfig::init`]; the kernels of [`kernels`](crate::kernels) and
/// [`asymmetric_loss_cpu`](crate::kernels::asymmetric_loss_cpu) take it. Cloning it is cheap:
/// the per-class vectors are shared.
#[derive(Debug, Clone, PartialEq)]
pub struct LossParams {
    /// Exponent of the negative weight `q^gamma_neg`.
    pub gamma_neg: f32,
    /// Exponent of the positive weight `(1 - p)^gamma_pos`.
    pub gamma_pos: f32,
    /// Logit margin of the positive term (`0` when switched off).
    pub pos_margin: f32,
    /// Probability margin of the negative term (`0` when switched off).
    pub neg_margin: f32,
    /// Lower clamp inside the logarithms.
    pub eps: f32,
    /// The smallest `f32` logit `x` with `sigmoid(x - pos_margin) >= switch_probability`,
    /// computed in `f64`: comparing logits with it decides the switch exactly, where comparing a
    /// rounded `f32` probability would flip near the switch. `+inf` when there is no switch.
    pub switch_logit: f32,
    /// Reduction over all elements.
    pub reduction: Reduction,
    /// Label smoothing towards 0.5 (`0` when off).
    pub smoothing: f32,
    /// Per-class weight of the loss (`[classes]`), `None` for 1.
    pub weight: Option<Arc<[f32]>>,
    /// Weight of the positive term, one value or one per class; `None` for 1.
    pub pos_weight: Option<Arc<[f32]>>,
    /// Whether the focusing weights are constants in the backward pass.
    pub detach_focusing: bool,
}

impl LossParams {
    /// Derive the kernel parameters from a configuration.
    pub fn from_config(config: &AsymmetricLossConfig) -> Self {
        let pos_margin = config.pos_margin.max(0.0);
        let switch_logit = if pos_margin > 0.0 {
            let t = config.switch_probability;
            if t <= 0.0 {
                f32::NEG_INFINITY
            } else if t >= 1.0 {
                f32::INFINITY
            } else {
                round_up_f32(pos_margin + (t / (1.0 - t)).ln())
            }
        } else {
            f32::INFINITY
        };
        Self {
            gamma_neg: config.gamma_neg as f32,
            gamma_pos: config.gamma_pos as f32,
            pos_margin: pos_margin as f32,
            neg_margin: config.neg_margin.max(0.0) as f32,
            eps: config.eps as f32,
            switch_logit,
            reduction: config.reduction,
            smoothing: config.smoothing as f32,
            weight: config
                .weight
                .as_ref()
                .map(|w| w.iter().map(|&v| v as f32).collect()),
            // A weight of exactly 1 everywhere is no weight: the kernels skip the products.
            pos_weight: config
                .pos_weight
                .as_ref()
                .filter(|w| w.iter().any(|&v| v != 1.0))
                .map(|w| w.iter().map(|&v| v as f32).collect()),
            detach_focusing: config.detach_focusing,
        }
    }

    /// The factor applied to the sum of the per-element losses over `n` elements in rows of
    /// `classes` (and to each per-element gradient).
    pub fn scale(&self, n: usize, classes: usize) -> f32 {
        match self.reduction {
            Reduction::Mean => 1.0 / n.max(1) as f32,
            Reduction::Sum | Reduction::None => 1.0,
            Reduction::BatchMean => 1.0 / (n / classes.max(1)).max(1) as f32,
        }
    }

    /// Whether the per-class vectors fit `classes`.
    pub fn check_classes(&self, classes: usize) -> Result<(), LossError> {
        check_weight_lengths(
            self.weight.as_ref().map(|w| w.len()),
            self.pos_weight.as_ref().map(|w| w.len()),
            classes,
        )
    }

    /// Whether any per-class weight is set (the kernels' weighted variant).
    pub fn weighted(&self) -> bool {
        self.weight.is_some() || self.pos_weight.is_some()
    }
}

/// The smallest `f32` not below `v`.
pub(super) fn round_up_f32(v: f64) -> f32 {
    let f = v as f32;
    if (f as f64) < v {
        f.next_up()
    } else {
        f
    }
}

/// Whether per-class weights of lengths `weight` (one per class) and `pos_weight` (one, or one per
/// class) fit `classes`.
pub(crate) fn check_weight_lengths(
    weight: Option<usize>,
    pos_weight: Option<usize>,
    classes: usize,
) -> Result<(), LossError> {
    if let Some(len) = weight.filter(|&len| len != classes) {
        return Err(LossError::WeightLength {
            name: "weight",
            len,
            classes,
        });
    }
    if let Some(len) = pos_weight.filter(|&len| len != 1 && len != classes) {
        return Err(LossError::WeightLength {
            name: "pos_weight",
            len,
            classes,
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn switch_logit_is_the_first_logit_past_the_switch_probability() {
        let p = LossParams::from_config(&AsymmetricLossConfig::proposed());
        let sig = |x: f64| 1.0 / (1.0 + (-(x - 1.1)).exp());
        assert!(sig(p.switch_logit as f64) >= 0.25);
        assert!(sig(p.switch_logit.next_down() as f64) < 0.25);
        let bce = LossParams::from_config(&AsymmetricLossConfig::bce());
        assert_eq!(bce.switch_logit, f32::INFINITY);
    }
}
