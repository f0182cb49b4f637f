//! The TResNet backbone family and its weights (issue #3).

/// Errors of the model module.
#[derive(Debug, thiserror::Error)]
pub enum ModelError {
    /// An input the network cannot take.
    #[error("invalid input: {0}")]
    InvalidInput(String),
}
