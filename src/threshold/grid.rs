//! The paper's grid search: 14 candidate thresholds, one histogram pass over the scores.

use rayon::prelude::*;

use super::matthews_corrcoef;
use crate::metrics::ScoreMatrix;

/// The paper's candidate thresholds 0.05, 0.10, ..., 0.70.
///
/// Each is the `f32` nearest to the `f64` of the decimal literal, which is what numpy and
/// PyTorch compare a `float32` score array against when the paper's code writes
/// `hold >= 0.35` (the Python float becomes a `float32`). Four of them (0.35, 0.45, 0.65, 0.70)
/// round *below* their decimal value, so a score equal to that `f32` passes `>=` here and in the
/// paper's code, although it is below the decimal in exact arithmetic.
pub const GRID: [f32; 14] = [
    0.05_f64 as f32,
    0.1_f64 as f32,
    0.15_f64 as f32,
    0.2_f64 as f32,
    0.25_f64 as f32,
    0.3_f64 as f32,
    0.35_f64 as f32,
    0.4_f64 as f32,
    0.45_f64 as f32,
    0.5_f64 as f32,
    0.55_f64 as f32,
    0.6_f64 as f32,
    0.65_f64 as f32,
    0.7_f64 as f32,
];

/// The threshold of labels without anything to calibrate (no positive, no negative, or constant
/// scores: every MCC is 0), in both searches: the grid's first value, as `argmax` over all-zero
/// MCCs gives in the paper's code.
pub const DEGENERATE_THRESHOLD: f32 = GRID[0];

/// Histogram bins per label: bin `b` holds the scores passing exactly `b` grid values
/// (0..=14), padded to 16.
const BINS: usize = 16;

/// Rows per parallel task (each counts into its own `u32` histogram).
const ROWS_PER_TASK: usize = 2048;

/// Per label, the first grid value of highest MCC (`score >= t` against the targets) and that MCC.
pub(crate) fn grid_thresholds(m: &ScoreMatrix) -> Vec<(f32, f64)> {
    let cols = m.cols;
    let chunk = ROWS_PER_TASK * cols;
    // hist[(c * BINS + bin) * 2 + target]
    let hist = m
        .scores
        .par_chunks(chunk)
        .zip(m.targets.par_chunks(chunk))
        .map(|(scores, targets)| {
            let mut hist = vec![0u32; cols * BINS * 2];
            let mut slots = vec![0u32; cols];
            for (s_row, y_row) in scores.chunks(cols).zip(targets.chunks(cols)) {
                // Two loops: the first (no scatter) vectorises.
                for (slot, (&s, &y)) in slots.iter_mut().zip(s_row.iter().zip(y_row)) {
                    let bin = GRID.iter().map(|&g| (s >= g) as u32).sum::<u32>();
                    *slot = bin * 2 + (y != 0.0) as u32;
                }
                for (c, &slot) in slots.iter().enumerate() {
                    hist[c * BINS * 2 + slot as usize] += 1;
                }
            }
            hist.into_iter().map(u64::from).collect::<Vec<u64>>()
        })
        .reduce(
            || vec![0u64; cols * BINS * 2],
            |mut a, b| {
                a.iter_mut().zip(b).for_each(|(a, b)| *a += b);
                a
            },
        );
    hist.chunks(BINS * 2).map(best_of_histogram).collect()
}

/// The grid's choice for one label's histogram.
fn best_of_histogram(hist: &[u64]) -> (f32, f64) {
    let neg_total: u64 = hist.iter().step_by(2).sum();
    let pos_total: u64 = hist.iter().skip(1).step_by(2).sum();
    let mut mcc = [0.0; GRID.len()];
    let (mut tp, mut fp) = (0, 0);
    // `score >= GRID[k]` holds exactly for the bins above k.
    for k in (0..GRID.len()).rev() {
        fp += hist[(k + 1) * 2];
        tp += hist[(k + 1) * 2 + 1];
        mcc[k] = matthews_corrcoef(tp, fp, neg_total - fp, pos_total - tp);
    }
    // numpy's argmax: the first maximum, so ties go to the smallest threshold.
    let mut best = 0;
    for k in 1..GRID.len() {
        if mcc[k] > mcc[best] {
            best = k;
        }
    }
    (GRID[best], mcc[best])
}
