use std::path::Path;

use burn::tensor::backend::Backend;
use serde::{Deserialize, Serialize};

use super::run::{open_data, open_split};
use super::{frequency_baseline, ExperimentConfig, Protocol};
use burn::data::dataloader::DataLoaderBuilder;

use crate::data::{AnnotationBatcherConfig, AnnotationDataset};
use crate::fs::FileError;
use crate::metrics::{self, AnnotationMetrics, MetricsTable, Thresholds};
use crate::model::{HeadConfig, TResNet, TResNetConfig};
use crate::threshold::{calibrate, Calibration, ThresholdSearch};
use crate::train::{load_model, predict, Predictions, RunPaths, RunResults, TrainError, Weights};
use crate::Result;

/// The evaluation report written to `<run>/evaluation.json`.
pub const EVALUATION_FILE: &str = "evaluation.json";
/// The test split's scores and targets, written to `<run>/test_predictions.json`.
pub const PREDICTIONS_FILE: &str = "test_predictions.json";

/// Scores and targets of one split, row-major `[images, labels]`, with their names.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TestPredictions {
    /// The vocabulary, in column order.
    pub labels: Vec<String>,
    /// The image of each row.
    pub image_names: Vec<String>,
    /// Sigmoid scores.
    pub scores: Vec<f32>,
    /// Multi-hot targets.
    pub targets: Vec<f32>,
}

/// What [`evaluate_run`] measured: the paper's table and how the thresholds were chosen.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Evaluation {
    /// The data set.
    pub data: String,
    /// The epoch whose weights were evaluated.
    pub best_epoch: Option<usize>,
    /// Which of that epoch's weights: the trained ones or their moving average.
    #[serde(default)]
    pub best_weights: Weights,
    /// How the epoch was picked and the thresholds calibrated.
    #[serde(default)]
    pub protocol: Protocol,
    /// Thresholds chosen over the paper's grid, on the training split or its hold-out
    /// ([`protocol`](Self::protocol)).
    pub grid: Calibration,
    /// Thresholds chosen over every distinct score, on the same split.
    pub exact: Calibration,
    /// Test metrics at 0.5, with the grid thresholds, with the exact thresholds, and of the
    /// frequency baseline, in that order.
    pub table: MetricsTable,
}

impl Evaluation {
    /// The row named `name` (`"threshold 0.5"`, `"MCC grid"`, `"MCC exact"`,
    /// `"frequency baseline"`).
    pub fn row(&self, name: &str) -> Option<&AnnotationMetrics> {
        self.table
            .rows()
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, m)| m)
    }
}

/// Largest image side a run may ask for: a batch of 16 such images is already about 3 GB.
pub const MAX_IMAGE_SIZE: usize = 4096;

/// Loads a run's best model as trained by [`train`](super::train), with its experiment config.
///
/// The configuration in `results.json` is checked before a model is built from it
/// ([`TrainError::InvalidConfig`] naming the file): a model with an empty stage, no channel, no
/// class or a dropout outside `[0, 1]`, an image side above [`MAX_IMAGE_SIZE`], or a network
/// too large for the size of `best.mpk` (which would otherwise be allocated before the file is
/// even read).
pub fn load_best<B: Backend>(
    run: &Path,
    device: &B::Device,
) -> Result<(ExperimentConfig, RunResults, TResNet<B>)> {
    let paths = RunPaths::new(run);
    let results = RunResults::load(&paths.results()).map_err(|e| match e {
        TrainError::File(FileError::Read { path, source })
            if source.kind() == std::io::ErrorKind::NotFound =>
        {
            TrainError::NotARun { path }
        }
        e => e,
    })?;
    let mut run_info = results.run_info.clone();
    if let Some(train) = run_info.get_mut("train") {
        crate::train::config::upgrade_train_config(train);
    }
    let config: ExperimentConfig =
        serde_json::from_value(run_info).map_err(|source| TrainError::Json {
            path: paths.results(),
            source,
        })?;
    check_run_config(&config, &paths.results(), &paths.best_model())?;
    let model = load_model::<B, _>(config.model.init::<B>(device), &paths.best_model(), device)?;
    Ok((config, results, model))
}

/// See [`load_best`]: what must hold of a run's configuration before a model is built from it.
fn check_run_config(config: &ExperimentConfig, results: &Path, best: &Path) -> Result<()> {
    let invalid = |why: String| -> Result<()> {
        Err(TrainError::InvalidConfig(format!("{}: {why}", results.display())).into())
    };
    let model = &config.model;
    if let Err(e) = model.validate() {
        return invalid(e.to_string());
    }
    let side = config.train.loader.image_size;
    if side == 0 || side > MAX_IMAGE_SIZE {
        return invalid(format!(
            "the image size {side} is not in 1..={MAX_IMAGE_SIZE}"
        ));
    }
    check_weights_fit(model, best).or_else(invalid)
}

/// Whether the weights file `weights` is large enough for `model`, checked before the model is
/// built, so that a corrupt configuration cannot ask for more memory than its file justifies.
pub(crate) fn check_weights_fit(
    model: &TResNetConfig,
    weights: &Path,
) -> std::result::Result<(), String> {
    // A lower bound on the parameters: one 3x3 convolution per block at the stage's width
    // (widths p, 2p, 4p, 8p), and the head's largest matrices; each weighs 4 bytes in the file.
    let p = model.base_planes() as f64;
    let [l1, l2, l3, l4] = model.layers.map(|blocks| blocks as f64);
    let (features, classes) = (model.num_features() as f64, model.num_classes as f64);
    let head = match &model.head {
        HeadConfig::Linear => features * classes,
        // The projection and the per-label read-out.
        HeadConfig::Attention(head) => head.hidden as f64 * (features + classes),
    };
    let parameters = 9.0 * p * p * (l1 + 4.0 * l2 + 16.0 * l3 + 64.0 * l4) + head;
    let file_bytes = std::fs::metadata(weights)
        .map_err(|e| format!("{}: {e}", weights.display()))?
        .len() as f64;
    if 4.0 * parameters > file_bytes {
        return Err(format!(
            "its model has at least {parameters:.0} parameters, more than {} ({file_bytes} \
             bytes) can hold",
            weights.display()
        ));
    }
    Ok(())
}

/// The paper's table on the test split: its scores at 0.5, with the MCC thresholds of the grid
/// and the exact search, and the frequency baseline fitted on the calibration targets.
fn test_table(
    test: &Predictions,
    calibration_targets: &[f32],
    [grid, exact]: [&Calibration; 2],
    labels: &[String],
) -> Result<MetricsTable> {
    let classes = test.num_classes;
    let measure = |scores: &[f32], thresholds: &Thresholds| -> Result<AnnotationMetrics> {
        Ok(
            metrics::measure(scores, &test.targets, classes, thresholds)?
                .with_vocabulary(Some(labels))?,
        )
    };
    let (baseline_scores, baseline_threshold) =
        frequency_baseline(calibration_targets, classes, test.images());
    let mut table = MetricsTable::default();
    let scores = &test.scores;
    table.push("threshold 0.5", measure(scores, &Thresholds::Global(0.5))?);
    table.push("MCC grid", measure(scores, &grid.to_thresholds())?);
    table.push("MCC exact", measure(scores, &exact.to_thresholds())?);
    table.push(
        "frequency baseline",
        measure(&baseline_scores, &baseline_threshold)?,
    );
    Ok(table)
}

/// Evaluates a run as the paper does, and writes [`EVALUATION_FILE`] and [`PREDICTIONS_FILE`].
///
/// The best model scores the training split (no flips) and the test split; per-label thresholds
/// are chosen by MCC on the training scores, on the paper's grid and exactly; the test split is
/// then measured at 0.5 and with both threshold sets, next to the frequency baseline.
pub fn evaluate_run<B: Backend>(run: &Path, device: &B::Device) -> Result<Evaluation> {
    crate::backend::check_device::<B>(device)?;
    let (config, results, model) = load_best::<B>(run, device)?;
    let (source, folder) = open_data(&config)?;
    let batcher = AnnotationBatcherConfig::new(source.normalization())
        .with_image_size(config.train.loader.image_size)
        .init();
    let batch_size = config.train.loader.batch_size;
    model.check_input(&[
        1,
        3,
        config.train.loader.image_size,
        config.train.loader.image_size,
    ])?;
    // One worker: the batches come in the data set's order, so rows match image names.
    let score = |dataset: AnnotationDataset| -> Result<Predictions> {
        let loader = DataLoaderBuilder::<B, _, _>::new(batcher.clone())
            .batch_size(batch_size)
            .set_device(device.clone())
            .build(dataset);
        Ok(predict(&model, loader.as_ref())?)
    };

    // The thresholds are calibrated where the protocol says: the training split, or the run's
    // hold-out of it (the same samples, drawn again from the same seed).
    let calibration_split = match config.validation {
        Some(fraction) => folder.train().hold_out(fraction, config.train.seed)?.1,
        None => folder.train().clone(),
    };
    let calibration_set = open_split(&config, &folder, &calibration_split)?;
    let Predictions {
        scores: calibration_scores,
        targets: calibration_targets,
        ..
    } = score(calibration_set)?;
    let classes = model.num_classes();
    let calibrated = |search| calibrate(&calibration_scores, &calibration_targets, classes, search);
    let (grid, exact) = (
        calibrated(ThresholdSearch::Grid)?,
        calibrated(ThresholdSearch::Exact)?,
    );

    let test_set = open_split(&config, &folder, folder.test())?;
    let image_names = (0..burn::data::dataset::Dataset::len(&test_set))
        .filter_map(|i| test_set.sample(i).map(|s| s.image_name.clone()))
        .collect();
    let test = score(test_set)?;
    let labels = folder.vocabulary().labels().to_vec();
    let table = test_table(&test, &calibration_targets, [&grid, &exact], &labels)?;

    let Predictions {
        scores, targets, ..
    } = test;
    crate::fs::write_json(
        &run.join(PREDICTIONS_FILE),
        &TestPredictions {
            labels,
            image_names,
            scores,
            targets,
        },
    )?;
    let evaluation = Evaluation {
        data: config.data.clone(),
        best_epoch: results.best_epoch,
        best_weights: results.best_weights,
        protocol: config.protocol(),
        grid,
        exact,
        table,
    };
    crate::fs::write_json(&run.join(EVALUATION_FILE), &evaluation)?;
    Ok(evaluation)
}
