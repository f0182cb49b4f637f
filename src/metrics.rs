//! Annotation metrics (issue #5).

/// Errors of the metrics and threshold modules.
#[derive(Debug, thiserror::Error)]
pub enum MetricsError {
    /// Inputs whose shapes disagree.
    #[error("shape mismatch: {0}")]
    Shape(String),
}
