//! The end-of-epoch evaluation hook and the metrics it reports.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

pub use crate::metrics::PrecisionRecallF1;

/// The metrics of one evaluation of the validation split, as the paper reports them.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct EpochMetrics {
    /// Per-class (label-averaged) precision, recall and F1; the best epoch has the best `f1`.
    pub per_class: PrecisionRecallF1,
    /// N+: the number of labels recalled at least once.
    pub n_plus: usize,
    /// Per-image (example-averaged) precision, recall and F1.
    pub per_image: PrecisionRecallF1,
    /// Anything else the evaluator measures (e.g. mAP), by name.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub extra: BTreeMap<String, f64>,
}

/// The error type evaluators return: anything convertible to a boxed error.
pub type EvaluationError = Box<dyn std::error::Error + Send + Sync>;

/// Computes the metrics of an epoch from the validation scores.
///
/// `scores` are the sigmoid probabilities and `targets` the multi-hot labels (0.0 or 1.0), both
/// `[images, num_classes]` row-major, in the validation loader's order. Any
/// `FnMut(&[f32], &[f32], usize) -> Result<EpochMetrics, E>` with `E` convertible to a boxed error
/// is an evaluator.
pub trait Evaluator {
    /// The metrics of one epoch.
    fn evaluate(
        &mut self,
        scores: &[f32],
        targets: &[f32],
        num_classes: usize,
    ) -> Result<EpochMetrics, EvaluationError>;
}

impl<F, E> Evaluator for F
where
    F: FnMut(&[f32], &[f32], usize) -> Result<EpochMetrics, E>,
    E: Into<EvaluationError>,
{
    fn evaluate(
        &mut self,
        scores: &[f32],
        targets: &[f32],
        num_classes: usize,
    ) -> Result<EpochMetrics, EvaluationError> {
        self(scores, targets, num_classes).map_err(Into::into)
    }
}
