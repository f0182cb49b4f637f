//! The end-of-epoch measurement hook.

use crate::metrics::AnnotationMetrics;

/// The error type a [`Measure`] returns: anything convertible to a boxed error.
pub type MeasureError = Box<dyn std::error::Error + Send + Sync>;

/// Turns the validation scores of an epoch into the metrics the loop records and picks the best
/// epoch by (the best per-class F1).
///
/// `scores` are the sigmoid probabilities and `targets` the multi-hot labels (0.0 or 1.0), both
/// `[images, num_classes]` row-major, in the validation loader's order. Any
/// `FnMut(&[f32], &[f32], usize) -> Result<AnnotationMetrics, E>` with `E` convertible to a boxed
/// error is one; [`metrics::measure`](crate::metrics::measure) at fixed thresholds is the usual
/// body. The metrics are recorded in `results.json` as returned: leave out the per-label table
/// ([`AnnotationMetrics::without_per_label`]) to keep that file small.
pub trait Measure {
    /// The metrics of one epoch.
    fn measure(
        &mut self,
        scores: &[f32],
        targets: &[f32],
        num_classes: usize,
    ) -> Result<AnnotationMetrics, MeasureError>;
}

impl<F, E> Measure for F
where
    F: FnMut(&[f32], &[f32], usize) -> Result<AnnotationMetrics, E>,
    E: Into<MeasureError>,
{
    fn measure(
        &mut self,
        scores: &[f32],
        targets: &[f32],
        num_classes: usize,
    ) -> Result<AnnotationMetrics, MeasureError> {
        self(scores, targets, num_classes).map_err(Into::into)
    }
}
