//! The results file of a run: its configuration and the measurements of every epoch.

use std::path::Path;

use serde::{Deserialize, Serialize};

use super::{TrainConfig, TrainError};
use crate::fs::{read as read_file, write_json};
use crate::metrics::AnnotationMetrics;

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
    /// The metrics on the validation split, as the run's [`Measure`](super::Measure) gave them.
    pub metrics: AnnotationMetrics,
    /// The same for the moving average of the weights, when the run keeps one
    /// ([`TrainConfig::ema_decay`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ema: Option<EmaRecord>,
    /// Wall time of the epoch (training and validation), in seconds.
    pub seconds: f64,
    /// Training throughput, in images per second.
    pub images_per_second: f64,
}

/// What the moving average of the weights measured in an epoch.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EmaRecord {
    /// The mean validation loss (weighted by batch size).
    pub val_loss: f64,
    /// The metrics on the validation split, as the run's [`Measure`](super::Measure) gave them.
    pub metrics: AnnotationMetrics,
}

/// Which of an epoch's weights: those the optimizer trained, or their moving average.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Weights {
    /// The optimizer's weights.
    #[default]
    Trained,
    /// The exponential moving average of the weights ([`ModelEma`](super::ModelEma)).
    Ema,
}

impl Weights {
    /// The name `results.json` gives them: `trained` or `ema`.
    pub fn name(self) -> &'static str {
        match self {
            Self::Trained => "trained",
            Self::Ema => "ema",
        }
    }
}

impl EpochRecord {
    /// The epoch's better weights by per-class F1 (the trained ones on a tie, and when there is
    /// no average), with their metrics.
    pub fn best_weights(&self) -> (Weights, &AnnotationMetrics) {
        match &self.ema {
            Some(ema) if f1_key(ema.metrics.per_class.f1) > f1_key(self.metrics.per_class.f1) => {
                (Weights::Ema, &ema.metrics)
            }
            _ => (Weights::Trained, &self.metrics),
        }
    }
}

/// The results file of a run (`results.json`), rewritten after every epoch.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RunResults {
    /// The training recipe (in either layout, see [`LoaderConfig`](super::LoaderConfig)).
    #[serde(deserialize_with = "super::config::deserialize_train_config")]
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
    /// Which of the best epoch's weights are the best model (see [`EpochRecord::best_weights`]).
    #[serde(default)]
    pub best_weights: Weights,
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
            best_weights: Weights::Trained,
            completed: false,
        }
    }

    /// The best epoch's record.
    pub fn best(&self) -> Option<&EpochRecord> {
        let best = self.best_epoch?;
        self.epochs.iter().find(|record| record.epoch == best)
    }

    /// The best model's metrics: those of the best epoch's [`best_weights`](Self::best_weights).
    pub fn best_metrics(&self) -> Option<&AnnotationMetrics> {
        self.best().map(|record| record.best_weights().1)
    }

    /// Appends an epoch; when its better weights have a strictly better per-class F1 than the
    /// best so far, they become the best and their kind is returned.
    pub fn push(&mut self, record: EpochRecord) -> Option<Weights> {
        let (weights, metrics) = record.best_weights();
        let is_best = self
            .best_metrics()
            .is_none_or(|best| f1_key(metrics.per_class.f1) > f1_key(best.per_class.f1));
        self.completed = record.epoch >= self.config.epochs;
        if is_best {
            self.best_epoch = Some(record.epoch);
            self.best_weights = weights;
        }
        self.epochs.push(record);
        is_best.then_some(weights)
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
        write_json(path, self)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::train::LoaderConfig;

    fn record(epoch: usize, f1: f64) -> EpochRecord {
        let mut metrics = AnnotationMetrics::default();
        metrics.per_class.f1 = f1;
        EpochRecord {
            epoch,
            train_loss: 1.0,
            val_loss: 1.0,
            learning_rate: 1e-4,
            momentum: 0.9,
            metrics,
            ema: None,
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
        let trained = Some(Weights::Trained);
        assert_eq!(results.push(record(1, f64::NAN)), trained);
        assert_eq!(results.push(record(2, 0.3)), trained, "a number beats NaN");
        assert_eq!(results.push(record(3, f64::NAN)), None);
        assert_eq!(results.push(record(4, 0.5)), trained);
        assert_eq!(
            results.push(record(5, 0.5)),
            None,
            "a tie keeps the earlier epoch"
        );
        assert_eq!(results.best_epoch, Some(4));
        assert_eq!(results.best().unwrap().epoch, 4);
        assert!(results.completed);
    }

    #[test]
    fn weights_are_named_as_in_the_results_file() {
        for weights in [Weights::Trained, Weights::Ema] {
            let json = serde_json::to_string(&weights).unwrap();
            assert_eq!(json, format!("\"{}\"", weights.name()));
        }
    }

    fn with_ema(epoch: usize, trained: f64, ema: f64) -> EpochRecord {
        let mut metrics = AnnotationMetrics::default();
        metrics.per_class.f1 = ema;
        EpochRecord {
            ema: Some(EmaRecord {
                val_loss: 1.0,
                metrics,
            }),
            ..record(epoch, trained)
        }
    }

    #[test]
    fn the_best_model_is_the_better_of_the_trained_and_averaged_weights() {
        let mut results = RunResults::new(
            TrainConfig::new().with_epochs(4),
            serde_json::Value::Null,
            3,
        );
        assert_eq!(results.push(with_ema(1, 0.2, 0.1)), Some(Weights::Trained));
        assert_eq!(results.push(with_ema(2, 0.25, 0.4)), Some(Weights::Ema));
        assert_eq!(results.best_weights, Weights::Ema);
        assert_eq!(results.best_metrics().unwrap().per_class.f1, 0.4);
        // Neither beats 0.4; a tie between the two is the trained weights'.
        assert_eq!(results.push(with_ema(3, 0.4, 0.4)), None);
        assert_eq!(results.push(with_ema(4, 0.5, 0.5)), Some(Weights::Trained));
        assert_eq!(
            (results.best_epoch, results.best_weights),
            (Some(4), Weights::Trained)
        );
        // Older results files have no `best_weights`: the trained ones.
        let mut json = serde_json::to_value(&results).unwrap();
        json.as_object_mut().unwrap().remove("best_weights");
        let old: RunResults = serde_json::from_value(json).unwrap();
        assert_eq!(old.best_weights, Weights::Trained);
    }

    /// A `results.json` as the crate wrote it before the loader settings had their own config,
    /// the overall averages their name and the epochs the full metrics type.
    const OLD_RESULTS: &str = r#"{
        "config": {"epochs": 3, "batch_size": 8, "image_size": 64, "learning_rate": 0.001,
            "pct_start": 0.2, "div_factor": 25.0, "final_div_factor": 10000.0,
            "base_momentum": 0.85, "max_momentum": 0.95, "beta_2": 0.999, "epsilon": 1e-8,
            "weight_decay": 0.0, "seed": 5, "ema_decay": null, "num_workers": 2},
        "run_info": null,
        "steps_per_epoch": 4,
        "epochs": [{"epoch": 1, "train_loss": 0.7, "val_loss": 0.6, "learning_rate": 0.0001,
            "momentum": 0.9,
            "metrics": {"per_class": {"precision": 0.5, "recall": 0.25, "f1": 0.33},
                "n_plus": 7, "per_image": {"precision": 0.6, "recall": 0.3, "f1": 0.4},
                "extra": {"mean_average_precision": 0.45, "top3": 0.1}},
            "seconds": 2.0, "images_per_second": 16.0}],
        "best_epoch": 1,
        "completed": false
    }"#;

    #[test]
    fn results_written_before_the_renames_still_load() {
        let old: RunResults = serde_json::from_str(OLD_RESULTS).unwrap();
        let config = &old.config;
        assert_eq!(
            (config.epochs, config.seed, config.learning_rate),
            (3, 5, 0.001)
        );
        assert_eq!(
            config.loader,
            LoaderConfig::new()
                .with_batch_size(8)
                .with_image_size(64)
                .with_num_workers(2)
        );
        let metrics = &old.best_metrics().unwrap();
        assert_eq!(metrics.n_plus, 7);
        assert_eq!(metrics.per_class.recall, 0.25);
        assert_eq!(metrics.overall.precision, 0.6);
        assert_eq!(metrics.overall.f1, 0.4);
        assert_eq!(metrics.mean_average_precision, Some(0.45));
        assert_eq!(metrics.extra.len(), 1, "the mAP moved out of `extra`");
        assert_eq!(metrics.extra["top3"], 0.1);
        assert!(metrics.per_label.is_empty());

        // Written back in the current layout, it reads the same.
        let json = serde_json::to_value(&old).unwrap();
        assert!(json["config"]["loader"].is_object());
        assert!(json["config"].get("batch_size").is_none());
        assert_eq!(json["epochs"][0]["metrics"]["overall"]["recall"], 0.3);
        assert!(json["epochs"][0]["metrics"].get("per_label").is_none());
        let again: RunResults = serde_json::from_value(json).unwrap();
        assert_eq!(again, old);
    }
}
