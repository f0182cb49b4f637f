//! The crate-wide error type.
//!
//! Each module has its own error enum; [`Error`] gathers them so applications can use `?`
//! across modules. Their messages name the file concerned; [`report`] puts an error and its
//! causes on one line for a person, and [`exit_status`] ends a command-line `main` with it.

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
    /// A file that cannot be read or written (see [`fs`](crate::fs)).
    #[error(transparent)]
    File(#[from] crate::fs::FileError),
    /// From the [`train`](crate::train) module.
    #[error(transparent)]
    Train(#[from] crate::train::TrainError),
    /// The backend's device cannot run (see [`check_device`](crate::backend::check_device)).
    #[error(transparent)]
    Device(#[from] crate::backend::DeviceError),
}

/// `Result` with the crate's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// One line for a person: `error`'s message followed by the messages of its
/// [`source`](std::error::Error::source) chain, joined by `: `.
///
/// A cause whose message the line already holds is left out, since most messages here embed
/// their cause (`path: No such file or directory`) and repeating it would only add noise.
///
/// ```
/// use std::path::PathBuf;
/// let cause = std::io::Error::from(std::io::ErrorKind::NotFound);
/// let error = aia::fs::FileError::Read { path: PathBuf::from("Corel-5k/train.json"), source: cause };
/// let line = aia::error::report(&error);
/// assert_eq!(line, "Corel-5k/train.json: entity not found");
/// ```
pub fn report(error: &(dyn std::error::Error + 'static)) -> String {
    let mut line = error.to_string();
    let mut cause = error.source();
    while let Some(error) = cause {
        let message = error.to_string();
        if !message.is_empty() && !line.contains(&message) {
            line.push_str(": ");
            line.push_str(&message);
        }
        cause = error.source();
    }
    line
}

/// The end of a command-line program's `main`: on an error, prints `error: ` and its
/// [`report`] on stderr and returns exit status 1; otherwise returns success.
///
/// The examples' `main` is `aia::error::exit_status(run())`: what a person reads is the
/// message (naming the file, and what to do about it) rather than the `Debug` form of the
/// error that `fn main() -> Result<..>` would print.
///
/// ```
/// let status = aia::error::exit_status(Err::<(), _>("no images given".into()));
/// # let _ = status;
/// ```
pub fn exit_status(
    result: std::result::Result<(), Box<dyn std::error::Error>>,
) -> std::process::ExitCode {
    match result {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("error: {}", report(error.as_ref()));
            std::process::ExitCode::FAILURE
        }
    }
}
