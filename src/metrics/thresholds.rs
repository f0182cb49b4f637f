//! Decision thresholds: one for every label, or one per label.

use serde::{Deserialize, Serialize};

use super::MetricsError;

/// The thresholds a score must exceed (strictly) for its label to be predicted.
///
/// ```
/// use aia::metrics::Thresholds;
///
/// let all = Thresholds::Global(0.5);
/// let each = Thresholds::from(vec![0.05, 0.3, 0.7]);
/// assert_eq!(all.get(2), 0.5);
/// assert_eq!(each.get(2), 0.7);
/// ```
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Thresholds {
    /// The same threshold for every label (the paper's 0.5).
    Global(f32),
    /// One threshold per label, in label order (e.g. from [`crate::threshold::calibrate`]).
    PerLabel(Vec<f32>),
}

impl Thresholds {
    /// The threshold of `label`. For [`Thresholds::PerLabel`], `label` must be in range.
    pub fn get(&self, label: usize) -> f32 {
        match self {
            Self::Global(t) => *t,
            Self::PerLabel(ts) => ts[label],
        }
    }

    /// One threshold per label for `num_classes` labels, after [`Thresholds::check`].
    pub fn to_vec(&self, num_classes: usize) -> Result<Vec<f32>, MetricsError> {
        self.check(num_classes)?;
        Ok(match self {
            Self::Global(t) => vec![*t; num_classes],
            Self::PerLabel(ts) => ts.clone(),
        })
    }

    /// Checks that there is one threshold per label and none is NaN.
    pub fn check(&self, num_classes: usize) -> Result<(), MetricsError> {
        match self {
            Self::Global(t) if t.is_nan() => Err(MetricsError::NanThreshold { label: 0 }),
            Self::Global(_) => Ok(()),
            Self::PerLabel(ts) if ts.len() != num_classes => Err(MetricsError::ThresholdCount {
                expected: num_classes,
                got: ts.len(),
            }),
            Self::PerLabel(ts) => match ts.iter().position(|t| t.is_nan()) {
                Some(label) => Err(MetricsError::NanThreshold { label }),
                None => Ok(()),
            },
        }
    }
}

impl From<Vec<f32>> for Thresholds {
    fn from(thresholds: Vec<f32>) -> Self {
        Self::PerLabel(thresholds)
    }
}

impl From<f32> for Thresholds {
    fn from(threshold: f32) -> Self {
        Self::Global(threshold)
    }
}
