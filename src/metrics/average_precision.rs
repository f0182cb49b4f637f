//! Average precision of one label, as scikit-learn's `average_precision_score` defines it.

use super::ranking::RankedColumn;

/// `Σ (R_k − R_{k−1}) P_k` over the distinct scores from the highest down (tied scores enter
/// together, no interpolation); `None` for a label without any positive.
pub(crate) fn average_precision(col: &RankedColumn) -> Option<f64> {
    let positives = col.pos().len();
    if positives == 0 {
        return None;
    }
    let (mut tp, mut fp) = (0u64, 0u64);
    let mut ap = 0.0;
    for g in col.groups() {
        tp += g.pos;
        fp += g.neg;
        if g.pos > 0 {
            ap += (g.pos as f64 / positives as f64) * (tp as f64 / (tp + fp) as f64);
        }
    }
    Some(ap)
}
