//! The paper's training pipeline.
//!
//! - [`TrainConfig`]: the recipe (Adam at 1e-4, one-cycle schedule, 40 epochs, batch 32, 448 px);
//! - [`OneCycleLr`]: PyTorch's `OneCycleLR`, learning rate and momentum, stepped every batch;
//! - [`ScheduledAdam`]: `torch.optim.Adam` with the learning rate and beta1 given at every step;
//! - [`Trainer`]: the loop, generic over the backend, the model ([`MultiLabelModel`]), the loss
//!   ([`MultiLabelLoss`]), the data ([`TrainLoader`]) and the metrics of each epoch ([`Measure`]), with
//!   live [`Progress`], atomic checkpoints and exact resume, a [`ModelEma`] of the weights, the
//!   best model, `results.json`
//!   ([`RunResults`]) and `curves.svg` ([`training_curves_svg`]).
//!
//! A program that trains on the CPU goes faster if it calls
//! [`keep_freed_memory`](crate::kernels::keep_freed_memory) at its start, as the `train` example
//! does: each step frees its activations and allocates them again.

mod checkpoint;
pub(crate) mod config;
mod ema;
mod fit;
mod lock;
mod measure;
mod model;
mod optim;
mod plot;
pub(crate) mod predict;
mod progress;
mod results;
mod schedule;

pub use checkpoint::{
    load_model, save_model, CheckpointState, RunPaths, EMA_FILE, MODEL_FILE, OPTIMIZER_FILE,
    STATE_FILE,
};
pub use config::{LoaderConfig, TrainConfig};
pub use ema::ModelEma;
pub use fit::{FitOutcome, Trainer};
pub use lock::{RunLock, LOCK_FILE};
pub use measure::{Measure, MeasureError};
pub use model::{AnnotationLoader, MultiLabelLoss, MultiLabelModel, TrainLoader};
pub use optim::{
    AdamStep, ScheduledAdam, ScheduledAdamConfig, ScheduledAdamRecord, ScheduledAdamState,
};
pub use plot::training_curves_svg;
pub use predict::{predict, Predictions};
pub use progress::{
    format_duration, BatchUpdate, Progress, SilentProgress, StderrProgress, WriterProgress,
};
pub use results::{EmaRecord, EpochRecord, RunResults, Weights};
pub use schedule::{OneCycleLr, OneCycleLrConfig, SchedulePoint};

use std::path::PathBuf;

/// Errors of the train module.
#[derive(Debug, thiserror::Error)]
pub enum TrainError {
    /// A file or folder of the run that cannot be read or written. A failed write leaves what
    /// was written before (the last complete checkpoint, the best model) intact.
    #[error(transparent)]
    File(#[from] crate::fs::FileError),
    /// A folder given as a run that holds no `results.json`.
    #[error(
        "{path} is missing: not the folder of a run; give the --out of a training (or train \
         one first)"
    )]
    NotARun {
        /// The results file looked for.
        path: PathBuf,
    },
    /// A run folder another trainer is writing into.
    #[error(
        "{path}: another training ({}) is writing into this run folder; wait for it to end \
         or choose another output folder",
        holder(*.pid)
    )]
    RunLocked {
        /// The run folder.
        path: PathBuf,
        /// The process holding it, when its lock file says so.
        pid: Option<u32>,
    },
    /// A JSON file (results, checkpoint state) that cannot be written or read.
    #[error("{path}: {source}")]
    Json {
        /// The file.
        path: PathBuf,
        /// The cause.
        source: serde_json::Error,
    },
    /// A model or optimizer file that cannot be decoded (corrupt, truncated, another format).
    #[error("{path}: cannot read the record: {message}")]
    Record {
        /// The file.
        path: PathBuf,
        /// What the recorder reported.
        message: String,
    },
    /// A model or optimizer file made for another architecture.
    #[error("{path}: does not match the model: {message}")]
    Mismatch {
        /// The file.
        path: PathBuf,
        /// The first difference found.
        message: String,
    },
    /// A setting out of its range.
    #[error("invalid training config: {0}")]
    InvalidConfig(String),
    /// More optimizer steps than the one-cycle schedule was built for.
    #[error("the one-cycle schedule is exhausted after {total_steps} steps")]
    ScheduleExhausted {
        /// The schedule's length.
        total_steps: usize,
    },
    /// Resuming with a recipe other than the checkpoint's.
    #[error("{path}: the checkpoint was made with another training config ({differences}); use the same settings or another output folder")]
    ConfigChanged {
        /// The checkpoint folder.
        path: PathBuf,
        /// The settings that differ, `name: saved -> current`.
        differences: String,
    },
    /// A new run in a folder that holds another run's checkpoints.
    #[error(
        "{path}: a checkpoint of another run is here; resume it or choose another output folder"
    )]
    RunExists {
        /// The checkpoint found.
        path: PathBuf,
    },
    /// The loss became NaN or infinite.
    #[error("the training loss is {value} at batch {batch} of epoch {epoch}")]
    NonFiniteLoss {
        /// The epoch (1-based).
        epoch: usize,
        /// The batch (1-based).
        batch: usize,
        /// The loss.
        value: f64,
    },
    /// Batches that do not fit the run (shapes, counts, empty loaders).
    #[error("data: {0}")]
    Data(String),
    /// The [`Measure`] of an epoch failed.
    #[error("measuring epoch {epoch}: {source}")]
    Measure {
        /// The epoch (1-based).
        epoch: usize,
        /// The measure's error.
        source: MeasureError,
    },
}

/// Who holds a run folder, for [`TrainError::RunLocked`].
fn holder(pid: Option<u32>) -> String {
    match pid {
        Some(pid) if pid == std::process::id() => "in this process".to_string(),
        Some(pid) => format!("process {pid}"),
        None => "another process".to_string(),
    }
}
