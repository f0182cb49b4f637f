//! Exact search: the best cut between any two consecutive distinct scores of a label.

use super::{matthews_corrcoef, DEGENERATE_THRESHOLD};
use crate::metrics::ranking::{map_split, RankedColumn};
use crate::metrics::ScoreMatrix;

/// Per label, the threshold of highest MCC over every cut of its ranking, and that MCC.
pub(crate) fn exact_thresholds(m: &ScoreMatrix) -> Vec<(f32, f64)> {
    map_split(m, Scratch::default, best_cut)
}

/// Buckets of equal width over `[0, 1]` (scores outside fall in the end ones).
const BUCKETS: usize = 2048;

/// The bucket of a score; non-decreasing in the score.
fn bucket(score: f32) -> usize {
    (score * BUCKETS as f32).clamp(0.0, (BUCKETS - 1) as f32) as usize
}

/// Per-worker buffers of [`best_cut`].
#[derive(Debug)]
pub(crate) struct Scratch {
    /// Per bucket: whether a positive falls in it.
    marked: Vec<bool>,
    /// Per bucket: negatives in it if unmarked; then, suffix sums of those.
    counts: Vec<u64>,
    /// The negatives in marked buckets.
    kept: Vec<f32>,
}

impl Default for Scratch {
    fn default() -> Self {
        Self {
            marked: vec![false; BUCKETS],
            counts: vec![0; BUCKETS + 1],
            kept: Vec::new(),
        }
    }
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
/// one.
///
/// Scoring the cut at `v` needs `fp`, the number of negatives `>= v`. Only the negatives that
/// share a bucket with some positive are sorted; the others are counted per bucket, since a
/// whole bucket is above or below every positive outside it. With `P` positives among `N`
/// samples this costs a sort of the positives, two passes over the negatives, a sort of the
/// few negatives kept and `P` binary searches, instead of a full sort.
pub(crate) fn best_cut(col: &mut RankedColumn, scratch: &mut Scratch) -> (f32, f64) {
    let (n_pos, n_neg) = (col.pos().len() as u64, col.neg().len() as u64);
    if n_pos == 0 || n_neg == 0 {
        return (DEGENERATE_THRESHOLD, 0.0);
    }
    let (min, max) = col
        .pos()
        .iter()
        .chain(col.neg())
        .fold((f32::INFINITY, f32::NEG_INFINITY), |(lo, hi), &x| {
            (lo.min(x), hi.max(x))
        });
    if min == max {
        return (DEGENERATE_THRESHOLD, 0.0);
    }

    radsort::sort(col.pos_mut());
    let (pos, neg) = (col.pos(), col.neg());
    let Scratch {
        marked,
        counts,
        kept,
    } = scratch;
    marked.fill(false);
    counts.fill(0);
    for &x in pos {
        marked[bucket(x)] = true;
    }
    kept.resize(neg.len(), 0.0);
    let mut n_kept = 0;
    for &x in neg {
        let b = bucket(x);
        // Branch-free: count it if its bucket is unmarked, keep it otherwise.
        counts[b] += u64::from(!marked[b]);
        kept[n_kept] = x;
        n_kept += marked[b] as usize;
    }
    let kept = &mut kept[..n_kept];
    radsort::sort(kept);
    // counts[b] becomes the number of unmarked negatives in buckets >= b.
    for b in (0..BUCKETS).rev() {
        counts[b] += counts[b + 1];
    }

    // pos[..i] and kept[..j] are below the current cut.
    let (mut i, mut j) = (pos.len(), kept.len());
    let (mut best, mut hi) = (f64::NEG_INFINITY, f32::NAN);
    while i > 0 {
        let v = pos[i - 1];
        while i > 0 && pos[i - 1] == v {
            i -= 1;
        }
        j = kept[..j].partition_point(|&x| x < v);
        // v's bucket is marked: its negatives are all in `kept`.
        let fp = counts[bucket(v) + 1] + (kept.len() - j) as u64;
        let tp = n_pos - i as u64;
        let mcc = matthews_corrcoef(tp, fp, n_neg - fp, n_pos - tp);
        if mcc >= best {
            (best, hi) = (mcc, v);
        }
    }
    if best <= 0.0 {
        // The last cut, MCC 0, wins ties and beats negative MCCs.
        return (min.next_down(), 0.0);
    }
    // The next distinct score below the cut (scores are finite, so -inf means none).
    let lo = pos.iter().chain(neg).fold(
        f32::NEG_INFINITY,
        |lo, &x| if x < hi { lo.max(x) } else { lo },
    );
    let threshold = if lo == f32::NEG_INFINITY {
        hi.next_down()
    } else {
        cut_between(lo, hi)
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buckets_never_decrease_with_the_score() {
        let mut scores: Vec<f32> = vec![-1e30, -1.0, -0.0, 0.0, 1e-30, 0.5, 1.0, 2.0, 1e30];
        scores.extend((0..=4096).map(|k| k as f32 / 4096.0));
        scores.extend((0..=4096).map(|k| (k as f32 / 4096.0).next_down()));
        scores.sort_by(f32::total_cmp);
        for w in scores.windows(2) {
            assert!(bucket(w[0]) <= bucket(w[1]), "{} {}", w[0], w[1]);
        }
        assert_eq!((bucket(-5.0), bucket(7.0)), (0, BUCKETS - 1));
    }
}
