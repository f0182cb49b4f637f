//! Per-label thresholds chosen by the Matthews correlation coefficient (MCC).
//!
//! For each label separately, on a calibration split (the training set in the paper), pick the
//! threshold that maximises the MCC between `score >= t` and the targets
//! ([`matthews_corrcoef`], 0 when undefined, as scikit-learn defines it):
//!
//! - [`ThresholdSearch::Grid`], the paper's: the candidates [`GRID`] (0.05, 0.10, ..., 0.70), ties
//!   to the smallest. The choice is identical to the paper's `argmax` over
//!   `sklearn.metrics.matthews_corrcoef` (same `f32` comparisons, same `f64` arithmetic). One
//!   histogram pass over the scores.
//! - [`ThresholdSearch::Exact`], ours: the best cut between any two consecutive distinct scores of
//!   the label, in O(N log N) per label (one radix sort, then running counts), so its MCC on the
//!   calibration data is never below the grid's. That is a guarantee on the calibration split
//!   only: on held-out data, rare labels (tens of calibration positives) can lose to the grid,
//!   whose coarse candidates overfit less (see the `metrics` benchmark's printout).
//!
//! # Thresholds and the strict `>` of measurement
//!
//! Calibration compares `score >= t` (the paper's code), but [`measure`](crate::metrics::measure)
//! predicts `score > t` (also the paper's code). Grid thresholds are returned as the paper has
//! them, so a calibration score exactly equal to a grid value counts as positive while
//! calibrating and as negative when measuring, as in the paper.
//!
//! Exact thresholds are made for the strict `>`: if the best cut keeps the scores `>= hi` and
//! the next distinct score below is `lo`, the threshold is the midpoint of `lo` and `hi`
//! rounded to `f32` (or `lo` itself when the two are neighbouring floats and the midpoint would
//! round up to `hi`). Then `lo <= t < hi`, so `score > t` in `measure` reproduces the
//! calibrated split exactly, and the MCC of the returned threshold under `>` is the reported
//! one. (Under `>=` it is the same too, except for that neighbouring-float case.) The midpoint
//! rather than `lo` leaves a margin on both sides for unseen scores. When the best cut
//! predicts every sample, the threshold is the `f32` just below the smallest score.
//!
//! # Degenerate labels
//!
//! A label with no positive, no negative, or the same score everywhere has MCC 0 at every
//! threshold. Both searches give it [`DEGENERATE_THRESHOLD`] (0.05, the grid's first value, as
//! the paper's `argmax` over all-zero MCCs does) and report MCC 0, so the two searches agree
//! where there is nothing to calibrate.
//!
//! ```
//! use aia::threshold::{calibrate, ThresholdSearch};
//!
//! // One label, six samples, separable between 0.36 and 0.37, where no grid value cuts.
//! let scores = [0.42, 0.40, 0.37, 0.36, 0.30, 0.02];
//! let targets = [1.0, 1.0, 1.0, 0.0, 0.0, 0.0];
//! let grid = calibrate(&scores, &targets, 1, ThresholdSearch::Grid).unwrap();
//! let exact = calibrate(&scores, &targets, 1, ThresholdSearch::Exact).unwrap();
//! assert_eq!(grid.thresholds, vec![0.35]); // MCC 0.71: keeps one negative
//! assert_eq!(exact.mcc, vec![1.0]);
//! assert!(0.36 < exact.thresholds[0] && exact.thresholds[0] < 0.37);
//! ```

mod exact;
mod grid;
mod mcc;

use std::fmt;
use std::str::FromStr;

use burn::tensor::{backend::Backend, Tensor};
use serde::{Deserialize, Serialize};

use crate::metrics::{tensors_to_rows, MetricsError, ScoreMatrix, Thresholds};

pub use grid::{DEGENERATE_THRESHOLD, GRID};
pub use mcc::matthews_corrcoef;

/// How [`calibrate`] searches each label's threshold.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ThresholdSearch {
    /// The paper's 14 candidates, 0.05 to 0.70.
    #[default]
    Grid,
    /// Every cut between two distinct scores.
    Exact,
}

impl FromStr for ThresholdSearch {
    type Err = MetricsError;

    /// `"grid"` or `"exact"`, in any case.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.to_ascii_lowercase().as_str() {
            "grid" => Ok(Self::Grid),
            "exact" => Ok(Self::Exact),
            _ => Err(MetricsError::UnknownThresholdSearch(s.to_string())),
        }
    }
}

impl fmt::Display for ThresholdSearch {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Grid => "grid",
            Self::Exact => "exact",
        })
    }
}

/// The outcome of [`calibrate`]: one threshold and its calibration MCC per label.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Calibration {
    /// The search used.
    #[serde(alias = "mode")]
    pub search: ThresholdSearch,
    /// One threshold per label, to use with [`measure`](crate::metrics::measure).
    pub thresholds: Vec<f32>,
    /// The MCC each threshold reaches on the calibration data.
    pub mcc: Vec<f64>,
}

impl Calibration {
    /// The thresholds, for [`measure`](crate::metrics::measure).
    pub fn to_thresholds(&self) -> Thresholds {
        Thresholds::PerLabel(self.thresholds.clone())
    }

    /// Mean of the per-label MCCs.
    pub fn mean_mcc(&self) -> f64 {
        self.mcc.iter().sum::<f64>() / self.mcc.len() as f64
    }
}

/// Chooses one threshold per label on row-major `[N, num_classes]` scores and binary targets.
///
/// Errors on shapes that disagree, an empty input, non-finite scores or targets other than 0/1.
/// Runs in parallel over labels (grid: over rows) on rayon's current pool.
pub fn calibrate(
    scores: &[f32],
    targets: &[f32],
    num_classes: usize,
    search: ThresholdSearch,
) -> Result<Calibration, MetricsError> {
    let m = ScoreMatrix::new(scores, targets, num_classes)?;
    let best = match search {
        ThresholdSearch::Grid => grid::grid_thresholds(&m),
        ThresholdSearch::Exact => exact::exact_thresholds(&m),
    };
    let (thresholds, mcc) = best.into_iter().unzip();
    Ok(Calibration {
        search,
        thresholds,
        mcc,
    })
}

/// [`calibrate`] on `[N, C]` Burn tensors of any backend (read back to the host once).
pub fn calibrate_tensors<B: Backend>(
    scores: Tensor<B, 2>,
    targets: Tensor<B, 2>,
    search: ThresholdSearch,
) -> Result<Calibration, MetricsError> {
    let (scores, targets, num_classes) = tensors_to_rows(scores, targets)?;
    calibrate(&scores, &targets, num_classes, search)
}
