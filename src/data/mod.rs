//! Annotation data sets (issue #4).

/// Errors of the data module.
#[derive(Debug, thiserror::Error)]
pub enum DataError {
    /// An I/O failure on a file.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: std::path::PathBuf,
        /// The cause.
        source: std::io::Error,
    },
}

mod batch;

pub use batch::AnnotationBatch;
