//! The paper's training pipeline (issue #6).

/// Errors of the train module.
#[derive(Debug, thiserror::Error)]
pub enum TrainError {
    /// An I/O failure on a file of a run.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: std::path::PathBuf,
        /// The cause.
        source: std::io::Error,
    },
}
