//! The field's annotation metrics, computed the way the paper (and its reference code) computes them.
//!
//! From predicted scores `[N, C]` (sigmoid outputs), binary targets `[N, C]` and [`Thresholds`], a
//! label is predicted when `score > threshold` (strictly). With `e = 1e-7` ([`EPSILON`]):
//!
//! - **per-class** precision is the mean over labels of `tp / (predicted + e)`, recall the mean of
//!   `tp / (actual + e)`, and F1 is `2PR / (P + R + e)` of those two means (not a mean of F1s);
//! - **overall** (micro-averaged over every image and label) precision is
//!   `Σtp / (Σpredicted + e)`, recall `Σtp / (Σactual + e)`, F1 from those two the same way (the
//!   field's OP, OR, OF1);
//! - **N+** is the number of labels with at least one true positive;
//! - **mAP** is the mean over labels with at least one positive of scikit-learn's
//!   `average_precision_score` (tied scores enter the ranking together).
//!
//! Everything is computed in `f64` from exact counts. [`measure`] works on plain row-major slices,
//! [`measure_tensors`] on Burn tensors of any backend; both return an [`AnnotationMetrics`], which
//! prints the paper's table row and serialises to JSON. [`MetricsTable`] lines several of them up.
//!
//! ```
//! use aia::metrics::{measure, Thresholds};
//!
//! // Two images, three labels, row-major.
//! let scores = [0.9, 0.2, 0.6, 0.1, 0.8, 0.4];
//! let targets = [1.0, 0.0, 1.0, 0.0, 1.0, 1.0];
//! let m = measure(&scores, &targets, 3, &Thresholds::Global(0.5)).unwrap();
//! assert_eq!(m.n_plus, 3);
//! assert!((m.overall.precision - 1.0).abs() < 1e-6);
//! assert!((m.overall.recall - 0.75).abs() < 1e-6);
//! println!("{m}");
//! ```

mod average_precision;
mod input;
mod measure;
pub(crate) mod ranking;
mod report;
mod thresholds;

pub(crate) use input::{tensors_to_rows, ScoreMatrix};
pub use measure::{measure, measure_tensors, EPSILON};
pub use report::{AnnotationMetrics, LabelMetrics, LabelTable, MetricsTable, PrecisionRecallF1};
pub use thresholds::Thresholds;

/// Errors of the [`metrics`](crate::metrics) and [`threshold`](crate::threshold) modules.
#[derive(Debug, thiserror::Error)]
pub enum MetricsError {
    /// Inputs whose shapes disagree (tensor shapes, vocabulary length...).
    #[error("shape mismatch: {0}")]
    Shape(String),
    /// Scores and targets of different lengths.
    #[error("shape mismatch: {scores} scores but {targets} targets")]
    LengthMismatch {
        /// Number of scores.
        scores: usize,
        /// Number of targets.
        targets: usize,
    },
    /// A flat buffer whose length is not a multiple of the number of classes.
    #[error("shape mismatch: {len} values do not make rows of {num_classes} classes")]
    Ragged {
        /// Length of the buffer.
        len: usize,
        /// Number of classes asked for.
        num_classes: usize,
    },
    /// Zero classes.
    #[error("the number of classes must be at least 1")]
    NoClasses,
    /// Zero samples.
    #[error("no samples: the scores and targets are empty")]
    NoSamples,
    /// A NaN or infinite score.
    #[error("score of sample {row}, label {label} is {value}: scores must be finite")]
    NonFiniteScore {
        /// Row (sample) index.
        row: usize,
        /// Column (label) index.
        label: usize,
        /// The offending value.
        value: f32,
    },
    /// A target that is neither 0 nor 1.
    #[error("target of sample {row}, label {label} is {value}: targets must be 0 or 1")]
    NonBinaryTarget {
        /// Row (sample) index.
        row: usize,
        /// Column (label) index.
        label: usize,
        /// The offending value.
        value: f32,
    },
    /// Per-label thresholds whose count differs from the number of classes.
    #[error("{got} per-label thresholds given for {expected} classes")]
    ThresholdCount {
        /// Number of classes.
        expected: usize,
        /// Number of thresholds given.
        got: usize,
    },
    /// A NaN threshold.
    #[error("threshold of label {label} is NaN")]
    NanThreshold {
        /// Label index (0 for a global threshold).
        label: usize,
    },
    /// A vocabulary whose length differs from the number of classes.
    #[error("vocabulary has {got} labels but the metrics have {expected} classes")]
    VocabularyLength {
        /// Number of classes.
        expected: usize,
        /// Number of vocabulary entries.
        got: usize,
    },
    /// An unknown [`ThresholdSearch`](crate::threshold::ThresholdSearch) name.
    #[error("unknown threshold search {0:?}: expected \"grid\" or \"exact\"")]
    UnknownThresholdSearch(String),
    /// Reading a tensor back from its device failed.
    #[error("reading the {what} tensor failed: {message}")]
    TensorRead {
        /// Which tensor ("scores" or "targets").
        what: &'static str,
        /// The backend's message.
        message: String,
    },
    /// Serialising a report failed.
    #[error("serialising the metrics to JSON failed: {0}")]
    Json(#[from] serde_json::Error),
}
