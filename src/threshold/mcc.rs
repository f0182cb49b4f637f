//! The Matthews correlation coefficient of a binary confusion matrix.

/// MCC of a confusion matrix, `(tp·tn − fp·fn) / sqrt((tp+fp)(tp+fn)(tn+fp)(tn+fn))`, and 0 when
/// the denominator is 0.
///
/// The arithmetic is scikit-learn's `matthews_corrcoef` step for step (covariances from the
/// row and column sums of the confusion matrix, in `f64`), so the value is bit-identical to
/// scikit-learn's for fewer than 2^26 samples, where every intermediate product is an exact
/// integer. This matters for the grid's ties: `argmax` over values rounded differently could
/// pick another threshold.
///
/// ```
/// use aia::threshold::matthews_corrcoef;
///
/// assert_eq!(matthews_corrcoef(5, 0, 5, 0), 1.0);
/// assert_eq!(matthews_corrcoef(0, 5, 0, 5), -1.0);
/// assert_eq!(matthews_corrcoef(3, 7, 0, 0), 0.0); // no negative is predicted: undefined, 0
/// ```
pub fn matthews_corrcoef(tp: u64, fp: u64, tn: u64, fn_: u64) -> f64 {
    // Rows of the confusion matrix are the true classes (0, 1), columns the predicted ones.
    let t_sum = [(tn + fp) as f64, (fn_ + tp) as f64];
    let p_sum = [(tn + fn_) as f64, (fp + tp) as f64];
    let n_correct = (tn + tp) as f64;
    let n_samples = p_sum[0] + p_sum[1];
    let cov_ytyp = n_correct * n_samples - (t_sum[0] * p_sum[0] + t_sum[1] * p_sum[1]);
    let cov_ypyp = n_samples * n_samples - (p_sum[0] * p_sum[0] + p_sum[1] * p_sum[1]);
    let cov_ytyt = n_samples * n_samples - (t_sum[0] * t_sum[0] + t_sum[1] * t_sum[1]);
    let cov_ypyp_ytyt = cov_ypyp * cov_ytyt;
    if cov_ypyp_ytyt == 0.0 {
        0.0
    } else {
        cov_ytyp / cov_ypyp_ytyt.sqrt()
    }
}
