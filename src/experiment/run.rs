use std::path::Path;

use burn::data::dataloader::DataLoaderBuilder;
use burn::tensor::backend::AutodiffBackend;

use super::manifest::{ModelManifest, MANIFEST_FILE};
use super::ExperimentConfig;
use crate::data::{
    AnnotationBatcherConfig, AnnotationDataset, AnnotationFolder, DataSource, ImageCheck,
};
use crate::metrics::{self, AnnotationMetrics, MetricsError, Thresholds};
use crate::model::TResNet;
use crate::train::{AnnotationLoader, FitOutcome, RunPaths, Trainer};
use crate::Result;

/// Opens the experiment's data set; the synthetic set is generated first when it is missing
/// (or was generated with another [`SyntheticConfig`](crate::data::synthetic::SyntheticConfig)).
pub fn open_data(config: &ExperimentConfig) -> Result<(DataSource, AnnotationFolder)> {
    let source = config.source()?;
    let dir = source.folder(&config.data_root);
    let folder = match source {
        // Generated with the experiment's own settings, not DataSource::open's defaults.
        DataSource::Synthetic => config.synthetic.ensure(&dir)?,
        _ => source.open(&config.data_root)?,
    };
    Ok((source, folder))
}

/// Opens a split's images, failing on (or, with `skip_bad_images`, dropping) unreadable ones.
pub(super) fn open_split(
    config: &ExperimentConfig,
    folder: &AnnotationFolder,
    split: &crate::data::AnnotationSplit,
) -> Result<AnnotationDataset> {
    // A full decode up front (in parallel, about one epoch's decoding) so that a truncated image
    // is an error here, naming the file, rather than a failure in a loader thread mid-epoch.
    let dataset = if config.skip_bad_images {
        AnnotationDataset::open_skipping(folder, split, ImageCheck::Full)?
    } else {
        AnnotationDataset::open(folder, split, ImageCheck::Full)?
    };
    if !dataset.skipped().is_empty() {
        eprintln!(
            "warning: {}: skipped {} unreadable images of {} (first: {})",
            split.path().display(),
            dataset.skipped().len(),
            split.len(),
            dataset.skipped()[0].error
        );
    }
    Ok(dataset)
}

/// The file of a run folder listing the training images held out for validation (the
/// [`Protocol::HoldOut`](super::Protocol::HoldOut) protocol), in the annotation files' format.
pub const VALIDATION_FILE: &str = "validation.json";

/// Trains the experiment into `out` (see [`Trainer`] for the files written there).
///
/// The model is `config.model` with one output per vocabulary word, started from
/// `config.weights` when given (a timm checkpoint; its classifier is dropped when the number of
/// classes differs) and from timm's random initialisation otherwise. The training split is
/// shuffled with `seed + epoch` and flipped at random; after each epoch the test split (or, with
/// [`ExperimentConfig::validation`], the hold-out of the training split) is scored and the
/// field's metrics at 0.5 decide which epoch's weights are kept as the best model.
///
/// `customize` sets up the [`Trainer`] (resume, progress, stopping early) before the run starts.
pub fn train<B>(
    config: &ExperimentConfig,
    out: &Path,
    device: &B::Device,
    customize: impl FnOnce(Trainer) -> Trainer,
) -> Result<FitOutcome<TResNet<B>>>
where
    B: AutodiffBackend,
{
    crate::backend::check_device::<B>(device)?;
    let (source, folder) = open_data(config)?;
    let mut config = config.clone();
    config.model.num_classes = folder.vocabulary().len();
    config.model.validate()?;
    // A class-weight list that does not fit the vocabulary would only fail in the first step.
    config.loss.validate_for(config.model.num_classes)?;
    if config.loss.reduction == crate::loss::Reduction::None {
        return Err(crate::loss::LossError::NotReduced.into());
    }
    let mut run_info = serde_json::to_value(&config).unwrap_or(serde_json::Value::Null);
    if let (Some(info), Ok(protocol)) = (
        run_info.as_object_mut(),
        serde_json::to_value(config.protocol()),
    ) {
        info.insert("protocol".into(), protocol);
    }
    let mut trainer = customize(Trainer::new(config.train.clone(), out).with_run_info(run_info));
    // Before the slow part (model, weights, a full decode of the images).
    trainer.lock_folder()?;
    // A run with checkpoints keeps the manifest it was started with: the trainer refuses to
    // overwrite or resume it under another configuration.
    let started = RunPaths::new(out).latest_checkpoint()?.is_some();
    if !started || !out.join(MANIFEST_FILE).is_file() {
        ModelManifest::of_experiment(&config, &source, &folder).save(out)?;
    }

    let mut model = config.model.init::<B>(device);
    let side = config.train.loader.image_size;
    model.check_input(&[config.train.loader.batch_size, 3, side, side])?;
    if let Some(weights) = &config.weights {
        model = model.load_timm(weights)?;
    }

    let tc = config.train.clone();
    // The split that picks the epoch: the test split (the paper's protocol) or a hold-out of
    // the training split, kept in the run folder for reference.
    let (train_split, valid_split) = match config.validation {
        Some(fraction) => {
            let (kept, held_out) = folder.train().hold_out(fraction, config.train.seed)?;
            if !started || !out.join(VALIDATION_FILE).is_file() {
                held_out.write(out.join(VALIDATION_FILE))?;
            }
            (kept, held_out)
        }
        None => (folder.train().clone(), folder.test().clone()),
    };
    let train_set = open_split(&config, &folder, &train_split)?;
    let valid_set = open_split(&config, &folder, &valid_split)?;
    let batcher = |flips| {
        AnnotationBatcherConfig::new(source.normalization())
            .with_image_size(tc.loader.image_size)
            .with_flips(flips)
            .with_seed(tc.seed)
            .init()
    };
    let valid: AnnotationLoader<B::InnerBackend> = DataLoaderBuilder::new(batcher(false))
        .batch_size(tc.loader.batch_size)
        .num_workers(tc.loader.num_workers)
        .set_device(device.clone())
        .build(valid_set);
    let train_batcher = batcher(true);
    let train_device = device.clone();
    let train_loader = move |epoch: usize| -> AnnotationLoader<B> {
        train_batcher.set_epoch(epoch as u64);
        DataLoaderBuilder::new(train_batcher.clone())
            .batch_size(tc.loader.batch_size)
            .shuffle(tc.seed.wrapping_add(epoch as u64))
            .num_workers(tc.loader.num_workers)
            .set_device(train_device.clone())
            .build(train_set.clone())
    };
    // The field's metrics at 0.5, without the per-label table that would swell results.json.
    let mut measure = |scores: &[f32],
                       targets: &[f32],
                       classes: usize|
     -> std::result::Result<AnnotationMetrics, MetricsError> {
        metrics::measure(scores, targets, classes, &Thresholds::Global(0.5))
            .map(AnnotationMetrics::without_per_label)
    };

    let loss = config.loss.try_init()?;
    let outcome =
        trainer.fit::<B, _, _, _, _>(model, &loss, &train_loader, valid, &mut measure, device)?;
    Ok(outcome)
}
