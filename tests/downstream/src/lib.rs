//! `aia` used the way a downstream crate uses it: generic code over Burn's `Backend` and
//! `AutodiffBackend`, instantiated on whatever backend the user picked (here Burn's default
//! `Wgpu`/`Cuda`, i.e. fusion over CubeCL with autotune, and `Flex` as the CPU reference).
//!
//! [`run`] is one whole job of the quickstart, shrunk to seconds: train on the synthetic set,
//! evaluate with MCC thresholds, annotate the test images. [`compare`] measures how far two such
//! runs, started from the same weights on the same batches, ended up from each other.

use std::cell::RefCell;
use std::path::{Path, PathBuf};
use std::rc::Rc;
use std::time::Instant;

use aia::annotate::{Annotator, ImageAnnotation, ThresholdSource};
use aia::data::synthetic::SyntheticConfig;
use aia::data::{AnnotationBatch, AnnotationBatcherConfig, AnnotationDataset, ImageCheck};
use aia::experiment::{self, Evaluation, ExperimentConfig};
use aia::loss::AsymmetricLossConfig;
use aia::model::{TResNet, TResNetConfig, MIN_SIDE};
use aia::threshold::ThresholdSearch;
use aia::train::{BatchUpdate, LoaderConfig, Progress, TrainConfig};
use burn::backend::Flex;
use burn::data::dataloader::batcher::Batcher;
use burn::data::dataset::Dataset;
use burn::module::AutodiffModule;
use burn::tensor::backend::{AutodiffBackend, Backend};

/// The error type of this crate: everything is reported, nothing is recovered from.
pub type Error = Box<dyn std::error::Error>;

/// Side of the training images: the smallest power of two above what the network accepts, so
/// that a step is cheap on a software Vulkan driver.
pub const IMAGE_SIZE: usize = 32;
const _: () = assert!(IMAGE_SIZE >= MIN_SIDE);

/// Training images: six full batches, so every step sees the same number of images and the
/// per-step losses can be read back from the running mean the trainer reports.
pub const TRAIN_IMAGES: usize = 96;
/// Test images (evaluation, final logits, annotation).
pub const TEST_IMAGES: usize = 32;
/// Images per training step.
pub const BATCH_SIZE: usize = 16;
const _: () = assert!(TRAIN_IMAGES.is_multiple_of(BATCH_SIZE));

/// The quickstart's experiment at toy scale, set up so that two backends see exactly the same
/// computation: no dropout (each backend draws it from its own RNG), no loader threads (their
/// batches arrive in whatever order the threads finish), one epoch (so the best model is the
/// last one on both sides, whatever the metrics' ties).
pub fn experiment(data_root: &Path) -> ExperimentConfig {
    ExperimentConfig::new("Synthetic".into())
        .with_data_root(data_root.to_path_buf())
        .with_synthetic(
            SyntheticConfig::new()
                .with_seed(11)
                .with_train_images(TRAIN_IMAGES)
                .with_test_images(TEST_IMAGES)
                .with_min_size(IMAGE_SIZE as u32)
                .with_max_size(IMAGE_SIZE as u32 * 3 / 2),
        )
        .with_model(
            TResNetConfig::new([1, 1, 1, 1])
                .with_width(0.5)
                .with_dropout(0.0),
        )
        .with_loss(AsymmetricLossConfig::proposed())
        .with_train(
            TrainConfig::new()
                .with_loader(
                    LoaderConfig::new()
                        .with_batch_size(BATCH_SIZE)
                        .with_image_size(IMAGE_SIZE)
                        .with_num_workers(0),
                )
                .with_epochs(1)
                .with_learning_rate(2e-3),
        )
}

/// Generates the synthetic set, draws the initial weights once (on Flex) and writes them to
/// `path`, and returns `config` starting from them: both backends then begin from the same
/// numbers rather than from two RNGs.
pub fn with_shared_weights(
    config: &ExperimentConfig,
    path: &Path,
) -> Result<ExperimentConfig, Error> {
    let (_, folder) = experiment::open_data(config)?;
    let device = Default::default();
    // Seeded, so that every run of the check starts from the same weights.
    Flex::seed(&device, config.train.seed);
    let model = config
        .model
        .clone()
        .with_num_classes(folder.vocabulary().len())
        .init::<Flex>(&device);
    model.save_safetensors(path)?;
    Ok(config.clone().with_weights(Some(path.to_path_buf())))
}

/// What one backend produced.
#[derive(Debug)]
pub struct Outcome {
    /// The loss of every training step, in order.
    pub step_losses: Vec<f64>,
    /// The trained model's logits on the test images, `[images, labels]` row-major.
    pub logits: Vec<f32>,
    /// What `experiment::evaluate_run` measured.
    pub evaluation: Evaluation,
    /// The annotator's sigmoid scores on the test images, `[images, labels]` row-major.
    pub scores: Vec<f32>,
    /// The annotator's exact-MCC thresholds, one per label.
    pub thresholds: Vec<f32>,
    /// The annotator's labels for each test image.
    pub annotations: Vec<ImageAnnotation>,
    /// Seconds spent training (one epoch, including its validation pass).
    pub train_seconds: f64,
    /// Seconds spent evaluating and annotating.
    pub evaluate_seconds: f64,
}

/// The running mean of the epoch's loss after every batch, as the trainer reports it.
#[derive(Clone, Default)]
struct RunningMeans(Rc<RefCell<Vec<f64>>>);

impl Progress for RunningMeans {
    fn batch(&mut self, update: &BatchUpdate) {
        self.0.borrow_mut().push(update.loss);
    }
}

/// Per-step losses from running means over equal batches: the k-th step's loss is
/// `k·mean_k − (k−1)·mean_(k−1)`, in f64, exact to a few ulps for a handful of steps.
fn step_losses(means: &[f64]) -> Vec<f64> {
    let mut previous_sum = 0.0;
    means
        .iter()
        .enumerate()
        .map(|(k, mean)| {
            let sum = mean * (k + 1) as f64;
            let step = sum - previous_sum;
            previous_sum = sum;
            step
        })
        .collect()
}

/// The test split's images, in split order.
fn test_images(config: &ExperimentConfig) -> Result<Vec<PathBuf>, Error> {
    let (_, folder) = experiment::open_data(config)?;
    let dir = folder.images_dir();
    Ok(folder
        .test()
        .samples()
        .iter()
        .map(|sample| dir.join(&sample.image_name))
        .collect())
}

/// `model`'s logits on the whole test split, as one batch prepared like the validation batches.
fn test_logits<B: Backend>(
    config: &ExperimentConfig,
    model: &TResNet<B>,
    device: &B::Device,
) -> Result<Vec<f32>, Error> {
    let (source, folder) = experiment::open_data(config)?;
    let dataset = AnnotationDataset::open(&folder, folder.test(), ImageCheck::Full)?;
    let items = (0..dataset.len()).filter_map(|i| dataset.get(i)).collect();
    let batcher = AnnotationBatcherConfig::new(source.normalization())
        .with_image_size(config.train.loader.image_size)
        .init();
    let batch: AnnotationBatch<B> = batcher.batch(items, device);
    let logits = model.forward(batch.images).into_data().convert::<f32>();
    Ok(logits.to_vec::<f32>().map_err(|e| format!("{e:?}"))?)
}

/// Trains `config` into `out` on backend `B`, then evaluates the run and annotates the test
/// images with its exact-MCC thresholds, as a user of the crate would.
pub fn run<B: AutodiffBackend>(
    config: &ExperimentConfig,
    out: &Path,
    device: &B::Device,
) -> Result<Outcome, Error> {
    let started = Instant::now();
    let means = RunningMeans::default();
    let progress = means.clone();
    let trained = experiment::train::<B>(config, out, device, |t| t.with_progress(progress))?;
    let logits = test_logits(config, &trained.model.valid(), device)?;
    let train_seconds = started.elapsed().as_secs_f64();

    let started = Instant::now();
    let evaluation = experiment::evaluate_run::<B::InnerBackend>(out, device)?;
    let annotator = Annotator::<B::InnerBackend>::from_run(
        out,
        ThresholdSource::Mcc(ThresholdSearch::Exact),
        device,
    )?;
    let paths = test_images(config)?;
    let scores = annotator.scores(&paths)?;
    let annotations = annotator.annotate(&paths)?;
    let step_losses = step_losses(&means.0.borrow());
    Ok(Outcome {
        step_losses,
        logits,
        evaluation,
        scores,
        thresholds: annotator.thresholds().to_vec(),
        annotations,
        train_seconds,
        evaluate_seconds: started.elapsed().as_secs_f64(),
    })
}

/// How far one run ended up from a reference run.
#[derive(Debug, Clone, PartialEq)]
pub struct Differences {
    /// The largest `|a − b| / |b|` over the training steps' losses.
    pub step_loss_rel: f64,
    /// The largest `|a − b|` over the final logits.
    pub logit_abs: f64,
    /// The largest logit, in magnitude, of the reference (for scale).
    pub logit_scale: f64,
    /// The largest `|a − b|` over the annotator's sigmoid scores.
    pub score_abs: f64,
    /// The largest `|a − b|` over the exact-MCC thresholds.
    pub threshold_abs: f64,
    /// Test images whose annotation (labels above threshold) differs.
    pub annotations_differing: usize,
    /// The largest `|score − threshold|` of a label given on one side only (0 when none is):
    /// such a label is explained by the score differences only if this is within them.
    pub flipped_label_margin: f64,
    /// The difference in mean average precision on the test split at 0.5.
    pub map_abs: f64,
}

fn max_abs_diff(a: &[f32], b: &[f32]) -> f64 {
    assert_eq!(a.len(), b.len(), "compared vectors differ in length");
    a.iter()
        .zip(b)
        .map(|(&x, &y)| (f64::from(x) - f64::from(y)).abs())
        .fold(0.0, f64::max)
}

/// Measures `got` against the reference `want`.
pub fn compare(got: &Outcome, want: &Outcome) -> Differences {
    assert_eq!(
        got.step_losses.len(),
        want.step_losses.len(),
        "both runs take the same number of steps"
    );
    let step_loss_rel = got
        .step_losses
        .iter()
        .zip(&want.step_losses)
        .map(|(a, b)| (a - b).abs() / b.abs())
        .fold(0.0, f64::max);
    let label_sets = |o: &Outcome| -> Vec<Vec<String>> {
        o.annotations
            .iter()
            .map(|a| {
                let mut labels: Vec<String> = a.labels.iter().map(|l| l.label.clone()).collect();
                labels.sort();
                labels
            })
            .collect()
    };
    // Labels above threshold on one side and not on the other, read from the scores directly.
    let classes = want.thresholds.len().max(1);
    let flipped_label_margin = got
        .scores
        .chunks(classes)
        .zip(want.scores.chunks(classes))
        .flat_map(|(g, w)| g.iter().zip(w).enumerate())
        .filter(|(label, (g, w))| (**g > got.thresholds[*label]) != (**w > want.thresholds[*label]))
        .map(|(label, (_, w))| (f64::from(*w) - f64::from(want.thresholds[label])).abs())
        .fold(0.0, f64::max);
    let map = |o: &Outcome| {
        o.evaluation
            .row("threshold 0.5")
            .and_then(|m| m.mean_average_precision)
            .unwrap_or(f64::NAN)
    };
    Differences {
        step_loss_rel,
        logit_abs: max_abs_diff(&got.logits, &want.logits),
        logit_scale: want
            .logits
            .iter()
            .map(|x| f64::from(x.abs()))
            .fold(0.0, f64::max),
        score_abs: max_abs_diff(&got.scores, &want.scores),
        threshold_abs: max_abs_diff(&got.thresholds, &want.thresholds),
        annotations_differing: label_sets(got)
            .iter()
            .zip(&label_sets(want))
            .filter(|(a, b)| a != b)
            .count(),
        flipped_label_margin,
        map_abs: (map(got) - map(want)).abs(),
    }
}

#[cfg(test)]
mod tests {
    use super::step_losses;

    #[test]
    fn step_losses_are_recovered_from_running_means() {
        let steps = [0.7, 0.5, 0.25, 0.125];
        let means: Vec<f64> = (1..=steps.len())
            .map(|k| steps[..k].iter().sum::<f64>() / k as f64)
            .collect();
        for (got, want) in step_losses(&means).iter().zip(steps) {
            assert!((got - want).abs() < 1e-15, "{got} vs {want}");
        }
    }
}
