//! Exact search: the best cut between any two consecutive distinct scores of a label.

use super::{matthews_corrcoef, DEGENERATE_THRESHOLD};
use crate::metrics::ranking::{map_ranked, RankedColumn};
use crate::metrics::ScoreMatrix;

/// Per label, the threshold of highest MCC over every cut of its ranking, and that MCC.
pub(crate) fn exact_thresholds(m: &ScoreMatrix) -> Vec<(f32, f64)> {
    map_ranked(m, best_cut)
}

/// The best cut of one label.
///
/// The cut at a score `v` predicts the label for every score `>= v`. Ties go to the lower cut
/// (more predictions), like the grid's ties go to the smaller threshold. The last cut
/// (everything predicted) has MCC 0, so the best MCC is never negative.
///
/// Only cuts at a positive's score are scored: with `k = tp + fp` predicted out of `T`,
/// `MCC ∝ (N·tp − P·fp) / sqrt(k (T − k))`, whose derivative in `tp` at fixed `fp` is positive
/// wherever the MCC is, so lowering a cut through positives only, or raising it through
/// negatives only, always raises a positive MCC. Every cut skipped is thus beaten by a scored
/// one, and a label with `P` positives costs `P` MCCs and binary searches, after the sort.
pub(crate) fn best_cut(col: &RankedColumn) -> (f32, f64) {
    let (pos, neg) = (col.pos(), col.neg());
    let (n_pos, n_neg) = (pos.len() as u64, neg.len() as u64);
    if pos.is_empty() || neg.is_empty() || col.is_constant() {
        return (DEGENERATE_THRESHOLD, 0.0);
    }
    // pos[..i] and neg[..j] are below the current cut.
    let (mut i, mut j) = (pos.len(), neg.len());
    let (mut best, mut hi, mut below) = (f64::NEG_INFINITY, f32::NAN, (0, 0));
    while i > 0 {
        let v = pos[i - 1];
        while i > 0 && pos[i - 1] == v {
            i -= 1;
        }
        j = neg[..j].partition_point(|&x| x < v);
        let (tp, fp) = (n_pos - i as u64, n_neg - j as u64);
        let mcc = matthews_corrcoef(tp, fp, n_neg - fp, n_pos - tp);
        if mcc >= best {
            (best, hi, below) = (mcc, v, (i, j));
        }
    }
    if best <= 0.0 {
        // The last cut, MCC 0, wins ties and beats negative MCCs.
        return (pos[0].min(neg[0]).next_down(), 0.0);
    }
    // Everything left below the cut is strictly smaller than `hi`.
    let lo = match below {
        (0, 0) => None,
        (0, j) => Some(neg[j - 1]),
        (i, 0) => Some(pos[i - 1]),
        (i, j) => Some(pos[i - 1].max(neg[j - 1])),
    };
    let threshold = match lo {
        Some(lo) => cut_between(lo, hi),
        None => hi.next_down(),
    };
    (threshold, best)
}

/// A threshold `t` with `lo <= t < hi`, so that `score > t` is exactly `score >= hi` for
/// every score in the ranking: the midpoint, rounded to `f32`; if that rounds up to `hi`
/// (`lo` and `hi` are neighbouring floats), `lo` itself.
pub(crate) fn cut_between(lo: f32, hi: f32) -> f32 {
    let mid = ((lo as f64 + hi as f64) * 0.5) as f32;
    if mid < hi {
        mid
    } else {
        lo
    }
}
