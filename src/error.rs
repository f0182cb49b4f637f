//! The crate-wide error type.
//!
//! Each module has its own error enum; [`Error`] gathers them so applications can use `?`
//! across modules.

/// Any error the crate returns.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// From the [`loss`](crate::loss) module.
    #[error(transparent)]
    Loss(#[from] crate::loss::LossError),
    /// From the [`model`](crate::model) module (architecture and weights).
    #[error(transparent)]
    Model(#[from] crate::model::ModelError),
    /// From the [`data`](crate::data) module.
    #[error(transparent)]
    Data(#[from] crate::data::DataError),
    /// From the [`metrics`](crate::metrics) and [`threshold`](crate::threshold) modules.
    #[error(transparent)]
    Metrics(#[from] crate::metrics::MetricsError),
    /// From the [`train`](crate::train) module.
    #[error(transparent)]
    Train(#[from] crate::train::TrainError),
    /// The backend's device cannot run (see [`check_device`](crate::backend::check_device)).
    #[error(transparent)]
    Device(#[from] crate::backend::DeviceError),
}

/// `Result` with the crate's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;
