//! [`measure`]: thresholded predictions against targets, on slices or Burn tensors.

use burn::tensor::{backend::Backend, Tensor};

use super::average_precision::average_precision;
use super::ranking::map_ranked;
use super::report::{AnnotationMetrics, LabelCounts};
use super::{tensors_to_rows, MetricsError, ScoreMatrix, Thresholds};

/// The `e` added to every denominator, as in the paper's code.
pub const EPSILON: f64 = 1e-7;

/// Measures row-major `[N, num_classes]` scores against binary targets of the same shape.
///
/// A label is predicted when `score > threshold`. Errors on shapes that disagree, an empty
/// input, non-finite scores, targets other than 0/1, or thresholds of the wrong length / NaN.
/// Labels carry no names; add them with [`AnnotationMetrics::with_vocabulary`].
pub fn measure(
    scores: &[f32],
    targets: &[f32],
    num_classes: usize,
    thresholds: &Thresholds,
) -> Result<AnnotationMetrics, MetricsError> {
    let m = ScoreMatrix::new(scores, targets, num_classes)?;
    let thresholds = thresholds.to_vec(num_classes)?;

    let mut counts = vec![LabelCounts::default(); m.cols];
    for (s_row, y_row) in m.scores.chunks(m.cols).zip(m.targets.chunks(m.cols)) {
        for (((c, &s), &y), &t) in counts.iter_mut().zip(s_row).zip(y_row).zip(&thresholds) {
            let predicted = s > t;
            let actual = y != 0.0;
            c.predicted += predicted as u64;
            c.actual += actual as u64;
            c.true_positives += (predicted && actual) as u64;
        }
    }

    let average_precisions = map_ranked(&m, average_precision);

    Ok(AnnotationMetrics::from_counts(
        m.rows,
        &counts,
        &thresholds,
        &average_precisions,
    ))
}

/// [`measure`] on `[N, C]` Burn tensors of any backend (read back to the host once).
///
/// ```
/// use aia::metrics::{measure_tensors, Thresholds};
/// use burn::backend::Flex;
/// use burn::tensor::Tensor;
///
/// let device = Default::default();
/// let scores = Tensor::<Flex, 2>::from_floats([[0.9, 0.2], [0.3, 0.7]], &device);
/// let targets = Tensor::<Flex, 2>::from_floats([[1.0, 0.0], [0.0, 1.0]], &device);
/// let m = measure_tensors(scores, targets, &Thresholds::Global(0.5)).unwrap();
/// assert_eq!(m.n_plus, 2);
/// ```
pub fn measure_tensors<B: Backend>(
    scores: Tensor<B, 2>,
    targets: Tensor<B, 2>,
    thresholds: &Thresholds,
) -> Result<AnnotationMetrics, MetricsError> {
    let (scores, targets, num_classes) = tensors_to_rows(scores, targets)?;
    measure(&scores, &targets, num_classes, thresholds)
}
