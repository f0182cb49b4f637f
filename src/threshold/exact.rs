//! Exact search: the best cut between any two consecutive distinct scores of a label.

use rayon::prelude::*;

use super::{matthews_corrcoef, DEGENERATE_THRESHOLD};
use crate::metrics::ranking::{rank_labels, RankedColumn, LABEL_BLOCK};
use crate::metrics::ScoreMatrix;

/// Per label, the threshold of highest MCC over every cut of its ranking, and that MCC.
pub(crate) fn exact_thresholds(m: &ScoreMatrix) -> Vec<(f32, f64)> {
    (0..m.cols.div_ceil(LABEL_BLOCK))
        .into_par_iter()
        .flat_map_iter(|b| {
            let labels = b * LABEL_BLOCK..((b + 1) * LABEL_BLOCK).min(m.cols);
            rank_labels(m, labels)
                .iter()
                .map(best_cut)
                .collect::<Vec<_>>()
        })
        .collect()
}

/// The best cut of one label.
///
/// Walking the distinct scores from the highest down, the cut below group `j` predicts the
/// label for every score `>= v_j`; its confusion counts are running sums, so each cut costs
/// one MCC. Ties go to the lower cut (more predictions), like the grid's ties go to the
/// smaller threshold. The last cut (everything predicted) has MCC 0, so the best MCC is never
/// negative.
pub(crate) fn best_cut(col: &RankedColumn) -> (f32, f64) {
    let (pos, neg) = (col.pos.len() as u64, col.neg.len() as u64);
    if pos == 0 || neg == 0 || col.is_constant() {
        return (DEGENERATE_THRESHOLD, 0.0);
    }
    let mut groups = col.groups();
    let (mut tp, mut fp) = (0, 0);
    let (mut best, mut hi, mut lo) = (f64::NEG_INFINITY, 0.0, None);
    while let Some(g) = groups.next() {
        tp += g.pos;
        fp += g.neg;
        let mcc = matthews_corrcoef(tp, fp, neg - fp, pos - tp);
        if mcc >= best {
            (best, hi, lo) = (mcc, g.value, groups.peek_value());
        }
    }
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
