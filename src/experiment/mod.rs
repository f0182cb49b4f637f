//! The paper's pipeline end to end: TResNet + the asymmetric loss + an annotation data set,
//! trained with [`Trainer`](crate::train::Trainer), then evaluated with MCC thresholds.
//!
//! - [`ExperimentConfig`] describes a run (data, model, loss, training recipe, weights);
//! - [`train`] trains it into an output folder (checkpoints, best model, `results.json`,
//!   `curves.svg`, and the [`ModelManifest`] that lets the run annotate without its data set),
//!   resuming where a previous call stopped;
//! - [`evaluate_run`] loads the best model, chooses per-label thresholds by MCC on the training split
//!   (grid and exact), scores the test split at 0.5 and with both threshold sets, and writes
//!   `evaluation.json` and `test_predictions.json`;
//! - [`frequency_baseline`] is the floor any trained model should clear.
//!
//! The bundled examples (`train`, `quickstart`, `annotate`) are thin command lines over these.

mod baseline;
mod config;
pub(crate) mod evaluate;
mod manifest;
mod run;

pub use baseline::frequency_baseline;
pub use config::{ExperimentConfig, Protocol};
pub use evaluate::{
    evaluate_run, load_best, Evaluation, TestPredictions, EVALUATION_FILE, MAX_IMAGE_SIZE,
    PREDICTIONS_FILE,
};
pub use manifest::{ModelManifest, MANIFEST_FILE, MANIFEST_METADATA_KEY};
pub use run::{open_data, train, VALIDATION_FILE};
