//! Property tests of the MCC threshold searches against naive O(N x candidates) searches.

use aia::metrics::{measure, Thresholds};
use aia::threshold::{calibrate, ThresholdSearch, GRID};
use proptest::prelude::*;

/// MCC from its textbook formula (not scikit-learn's arithmetic), 0 when undefined.
fn naive_mcc(pred: &[bool], truth: &[bool]) -> f64 {
    let (mut tp, mut fp, mut tn, mut fn_) = (0.0f64, 0.0, 0.0, 0.0);
    for (&p, &t) in pred.iter().zip(truth) {
        match (p, t) {
            (true, true) => tp += 1.0,
            (true, false) => fp += 1.0,
            (false, false) => tn += 1.0,
            (false, true) => fn_ += 1.0,
        }
    }
    let den = (tp + fp) * (tp + fn_) * (tn + fp) * (tn + fn_);
    if den == 0.0 {
        0.0
    } else {
        (tp * tn - fp * fn_) / den.sqrt()
    }
}

/// Scores with many ties and grid-value hits, fine-grained ones, or logits.
fn score() -> impl Strategy<Value = f32> {
    prop_oneof![
        (0usize..GRID.len()).prop_map(|k| GRID[k]),
        (0u32..=20).prop_map(|k| k as f32 / 20.0),
        (0u32..=100).prop_map(|k| k as f32 / 100.0),
        0.0f32..=1.0,
        // Logits rather than probabilities: outside [0, 1], where the exact search's buckets clamp.
        -20.0f32..20.0,
    ]
}

/// `(scores, targets, num_classes)`, row-major.
fn matrix() -> impl Strategy<Value = (Vec<f32>, Vec<f32>, usize)> {
    (1usize..50, 1usize..4).prop_flat_map(|(rows, cols)| {
        let n = rows * cols;
        (
            prop::collection::vec(score(), n),
            prop::collection::vec(prop::bool::weighted(0.3), n),
            Just(cols),
        )
            .prop_map(|(s, y, c)| (s, y.into_iter().map(|b| b as u8 as f32).collect(), c))
    })
}

fn column(v: &[f32], cols: usize, c: usize) -> Vec<f32> {
    v.iter().skip(c).step_by(cols).copied().collect()
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(300))]

    #[test]
    fn exact_is_never_worse_than_grid((scores, targets, cols) in matrix()) {
        let grid = calibrate(&scores, &targets, cols, ThresholdSearch::Grid).unwrap();
        let exact = calibrate(&scores, &targets, cols, ThresholdSearch::Exact).unwrap();
        for c in 0..cols {
            prop_assert!(exact.mcc[c] >= grid.mcc[c], "label {}: {} < {}", c, exact.mcc[c], grid.mcc[c]);
        }
    }

    #[test]
    fn exact_reaches_the_brute_force_optimum((scores, targets, cols) in matrix()) {
        let exact = calibrate(&scores, &targets, cols, ThresholdSearch::Exact).unwrap();
        for c in 0..cols {
            let (s, y) = (column(&scores, cols, c), column(&targets, cols, c));
            let truth: Vec<bool> = y.iter().map(|&v| v == 1.0).collect();
            // Every `score >= u` over the label's scores, plus predicting nothing.
            let best = s
                .iter()
                .map(|&u| naive_mcc(&s.iter().map(|&v| v >= u).collect::<Vec<_>>(), &truth))
                .fold(0.0f64, f64::max);
            prop_assert!((exact.mcc[c] - best).abs() < 1e-12, "label {}: {} vs {}", c, exact.mcc[c], best);
            // The threshold reproduces that MCC with evaluation's strict `>`.
            let t = exact.thresholds[c];
            let strict = naive_mcc(&s.iter().map(|&v| v > t).collect::<Vec<_>>(), &truth);
            prop_assert!((strict - exact.mcc[c]).abs() < 1e-12, "label {}: t {} gives {}", c, t, strict);
        }
    }

    #[test]
    fn grid_is_the_first_best_grid_value((scores, targets, cols) in matrix()) {
        let grid = calibrate(&scores, &targets, cols, ThresholdSearch::Grid).unwrap();
        for c in 0..cols {
            let (s, y) = (column(&scores, cols, c), column(&targets, cols, c));
            let truth: Vec<bool> = y.iter().map(|&v| v == 1.0).collect();
            let mccs: Vec<f64> = GRID
                .iter()
                .map(|&g| naive_mcc(&s.iter().map(|&v| v >= g).collect::<Vec<_>>(), &truth))
                .collect();
            let max = mccs.iter().copied().fold(f64::NEG_INFINITY, f64::max);
            let k = GRID.iter().position(|&g| g == grid.thresholds[c]).unwrap();
            prop_assert!((mccs[k] - grid.mcc[c]).abs() < 1e-12);
            prop_assert!((mccs[k] - max).abs() < 1e-12);
            // No earlier grid value is better by more than rounding.
            prop_assert!(mccs[..k].iter().all(|&m| m < max + 1e-12));
        }
    }

    #[test]
    fn evaluate_counts_match_a_naive_loop((scores, targets, cols) in matrix(), t in score()) {
        let m = measure(&scores, &targets, cols, &Thresholds::Global(t)).unwrap();
        for c in 0..cols {
            let (s, y) = (column(&scores, cols, c), column(&targets, cols, c));
            let tp = s.iter().zip(&y).filter(|(&v, &y)| v > t && y == 1.0).count() as u64;
            let pred = s.iter().filter(|&&v| v > t).count() as u64;
            let l = &m.per_label[c];
            prop_assert_eq!((l.true_positives, l.predicted), (tp, pred));
        }
        let n_plus = m.per_label.iter().filter(|l| l.true_positives > 0).count();
        prop_assert_eq!(m.n_plus, n_plus);
    }
}
