//! The results file of a run: its configuration and the measurements of every epoch.

use std::path::Path;

use serde::{Deserialize, Serialize};

use super::atomic::{read_file, write_atomic};
use super::{EpochMetrics, TrainConfig, TrainError};

/// What one epoch measured.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EpochRecord {
    /// The epoch (1-based).
    pub epoch: usize,
    /// The mean training loss over the epoch's batches (weighted by batch size).
    pub train_loss: f64,
    /// The mean validation loss (weighted by batch size), with the model as it ended the epoch.
    pub val_loss: f64,
    /// The learning rate of the epoch's last step.
    pub learning_rate: f64,
    /// Adam's beta1 at the epoch's last step.
    pub momentum: f64,
    /// The evaluator's metrics on the validation split.
    pub metrics: EpochMetrics,
    /// Wall time of the epoch (training and validation), in seconds.
    pub seconds: f64,
    /// Training throughput, in images per second.
    pub images_per_second: f64,
}

/// The results file of a run (`results.json`), rewritten after every epoch.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RunResults {
    /// The training recipe.
    pub config: TrainConfig,
    /// The caller's description of the run (model, loss, data set...), as given to
    /// [`Trainer::with_run_info`](super::Trainer::with_run_info).
    pub run_info: serde_json::Value,
    /// Training batches (optimizer steps) per epoch.
    pub steps_per_epoch: usize,
    /// Every epoch done so far, in order.
    pub epochs: Vec<EpochRecord>,
    /// The epoch with the best per-class F1 so far (the first of equals), whose weights are the
    /// run's best model.
    pub best_epoch: Option<usize>,
    /// Whether all `config.epochs` epochs are done.
    pub completed: bool,
}

/// Orders per-class F1 scores with NaN below everything, so a NaN epoch is never the best.
fn f1_key(f1: f64) -> f64 {
    if f1.is_nan() {
        f64::NEG_INFINITY
    } else {
        f1
    }
}

impl RunResults {
    /// An empty record of a run.
    pub fn new(config: TrainConfig, run_info: serde_json::Value, steps_per_epoch: usize) -> Self {
        Self {
            config,
            run_info,
            steps_per_epoch,
            epochs: Vec::new(),
            best_epoch: None,
            completed: false,
        }
    }

    /// The best epoch's record.
    pub fn best(&self) -> Option<&EpochRecord> {
        let best = self.best_epoch?;
        self.epochs.iter().find(|record| record.epoch == best)
    }

    /// Appends an epoch; returns whether it is the new best (strictly better per-class F1).
    pub fn push(&mut self, record: EpochRecord) -> bool {
        let is_best = self.best().is_none_or(|best| {
            f1_key(record.metrics.per_class.f1) > f1_key(best.metrics.per_class.f1)
        });
        if is_best {
            self.best_epoch = Some(record.epoch);
        }
        self.completed = record.epoch >= self.config.epochs;
        self.epochs.push(record);
        is_best
    }

    /// Reads a results file.
    pub fn load(path: &Path) -> Result<Self, TrainError> {
        let bytes = read_file(path)?;
        serde_json::from_slice(&bytes).map_err(|source| TrainError::Json {
            path: path.to_path_buf(),
            source,
        })
    }

    /// Writes the results file atomically (temporary file, then rename).
    pub fn save(&self, path: &Path) -> Result<(), TrainError> {
        let json = serde_json::to_vec_pretty(self).map_err(|source| TrainError::Json {
            path: path.to_path_buf(),
            source,
        })?;
        write_atomic(path, &json)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(epoch: usize, f1: f64) -> EpochRecord {
        let mut metrics = EpochMetrics::default();
        metrics.per_class.f1 = f1;
        EpochRecord {
            epoch,
            train_loss: 1.0,
            val_loss: 1.0,
            learning_rate: 1e-4,
            momentum: 0.9,
            metrics,
            seconds: 1.0,
            images_per_second: 1.0,
        }
    }

    #[test]
    fn the_best_epoch_is_the_first_with_the_highest_per_class_f1() {
        let mut results = RunResults::new(
            TrainConfig::new().with_epochs(5),
            serde_json::Value::Null,
            3,
        );
        assert!(results.push(record(1, f64::NAN)));
        assert!(results.push(record(2, 0.3)), "a number beats NaN");
        assert!(!results.push(record(3, f64::NAN)));
        assert!(results.push(record(4, 0.5)));
        assert!(
            !results.push(record(5, 0.5)),
            "a tie keeps the earlier epoch"
        );
        assert_eq!(results.best_epoch, Some(4));
        assert_eq!(results.best().unwrap().epoch, 4);
        assert!(results.completed);
    }
}
