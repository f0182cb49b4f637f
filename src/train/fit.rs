//! The training loop: one-cycle Adam over the epochs, a measurement after each, checkpoints, the
//! best model, results and curves.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use burn::data::dataloader::DataLoader;
use burn::module::AutodiffModule;
use burn::optim::{GradientsParams, Optimizer};
use burn::tensor::backend::{AutodiffBackend, Backend};
use burn::tensor::ElementConversion;

use super::checkpoint::{
    load_model, load_record, param_ids, save_model, save_record, write_checkpoint, CheckpointState,
    RunPaths, EMA_FILE, MODEL_FILE, OPTIMIZER_FILE,
};
use super::ema::ModelEma;
use super::predict::{check_shapes, predict_with};
use super::results::{EmaRecord, Weights};
use super::{
    training_curves_svg, AnnotationLoader, BatchUpdate, EpochRecord, Measure, MultiLabelLoss,
    MultiLabelModel, OneCycleLr, Progress, RunLock, RunResults, SchedulePoint, ScheduledAdam,
    ScheduledAdamRecord, StderrProgress, TrainConfig, TrainError, TrainLoader,
};
use crate::data::AnnotationBatch;
use crate::fs::write_atomic;
use crate::metrics::AnnotationMetrics;

/// Runs the training recipe of a [`TrainConfig`] in an output folder (layout in [`RunPaths`]).
///
/// ```no_run
/// # use aia::train::*;
/// # fn demo<B, M, L>(model: M, loss: L, train: impl TrainLoader<B>,
/// #     valid: AnnotationLoader<B::InnerBackend>, device: B::Device) -> Result<(), TrainError>
/// # where B: burn::tensor::backend::AutodiffBackend, M: burn::module::AutodiffModule<B> + MultiLabelModel<B>,
/// #   M::InnerModule: MultiLabelModel<B::InnerBackend>,
/// #   L: MultiLabelLoss<B> + MultiLabelLoss<B::InnerBackend> {
/// let mut measure = |scores: &[f32], targets: &[f32], classes: usize| {
///     let thresholds = aia::metrics::Thresholds::Global(0.5);
///     aia::metrics::measure(scores, targets, classes, &thresholds).map(|m| m.without_per_label())
/// };
/// let outcome = Trainer::new(TrainConfig::new(), "runs/corel")
///     .with_resume(true)
///     .with_run_info(serde_json::json!({ "loss": "proposed", "data": "Corel-5k" }))
///     .fit(model, &loss, &train, valid, &mut measure, &device)?;
/// println!("best epoch {:?}", outcome.results.best_epoch);
/// # Ok(()) }
/// ```
pub struct Trainer {
    config: TrainConfig,
    paths: RunPaths,
    resume: bool,
    stop_after_epoch: Option<usize>,
    run_info: serde_json::Value,
    progress: Box<dyn Progress>,
    lock: Option<RunLock>,
}

/// What [`Trainer::fit`] returns.
#[derive(Debug)]
pub struct FitOutcome<M> {
    /// The model as it ended the last epoch run (the best one is in [`RunPaths::best_model`]).
    pub model: M,
    /// The results so far (also in [`RunPaths::results`]).
    pub results: RunResults,
    /// The epoch of the checkpoint the run resumed from.
    pub resumed_from: Option<usize>,
    /// The file layout of the run.
    pub paths: RunPaths,
}

/// Time measurements for the ETA.
#[derive(Default)]
struct Clock {
    train_time: Duration,
    train_batches: usize,
    last_validation: Option<Duration>,
}

impl Clock {
    fn seconds_per_batch(&self) -> f64 {
        if self.train_batches == 0 {
            0.0
        } else {
            self.train_time.as_secs_f64() / self.train_batches as f64
        }
    }

    /// The time left in the epoch and in the run, after `batch` batches of the epoch took
    /// `elapsed`, with `epochs_after` epochs still to come.
    fn etas(
        &self,
        batch: usize,
        elapsed: Duration,
        sizes: &Sizes,
        epochs_after: usize,
        batch_size: usize,
    ) -> (Duration, Duration) {
        let per_batch = elapsed.as_secs_f64() / batch.max(1) as f64;
        let validation = self.last_validation.map_or_else(
            // Before the first measurement: a forward pass costs about a third of a step.
            || sizes.valid_items as f64 / batch_size as f64 * self.seconds_per_batch() / 3.0,
            |d| d.as_secs_f64(),
        );
        let epoch = sizes.steps_per_epoch.saturating_sub(batch) as f64 * per_batch;
        let later = epochs_after as f64
            * (sizes.steps_per_epoch as f64 * self.seconds_per_batch() + validation);
        let seconds = |s: f64| Duration::from_secs_f64(s.max(0.0));
        (seconds(epoch), seconds(epoch + validation + later))
    }
}

/// The fields of two configs that differ, as `name: a -> b` (`loader.image_size: ...` for the
/// nested ones), the number of loader threads left out: it changes no result.
fn config_differences(saved: &TrainConfig, current: &TrainConfig) -> Vec<String> {
    let (saved, current) = (flat_fields(saved), flat_fields(current));
    saved
        .iter()
        .filter(|(name, _)| name.as_str() != "loader.num_workers")
        .filter_map(|(name, value)| {
            let other = current.get(name).unwrap_or(&serde_json::Value::Null);
            (other != value).then(|| format!("{name}: {value} -> {other}"))
        })
        .collect()
}

/// A config's fields by dotted name, nested configs flattened.
fn flat_fields(config: &TrainConfig) -> BTreeMap<String, serde_json::Value> {
    fn flatten(
        prefix: String,
        value: serde_json::Value,
        out: &mut BTreeMap<String, serde_json::Value>,
    ) {
        match value {
            serde_json::Value::Object(map) => {
                for (name, value) in map {
                    let name = if prefix.is_empty() {
                        name
                    } else {
                        format!("{prefix}.{name}")
                    };
                    flatten(name, value, out);
                }
            }
            value => {
                out.insert(prefix, value);
            }
        }
    }
    let mut out = BTreeMap::new();
    flatten(
        String::new(),
        serde_json::to_value(config).unwrap_or_default(),
        &mut out,
    );
    out
}

fn data_error(message: String) -> TrainError {
    TrainError::Data(message)
}

/// The error of a training loader whose batches do not follow `LoaderConfig::batch_size`.
fn batch_count_error(
    epoch: usize,
    batches: usize,
    items: usize,
    config: &TrainConfig,
) -> TrainError {
    data_error(format!(
        "epoch {epoch}: the training loader gives {}{batches} batches, but {items} items in batches of {} make {}: build it with LoaderConfig::batch_size",
        if batches > config.steps_per_epoch(items) { "at least " } else { "" },
        config.loader.batch_size,
        config.steps_per_epoch(items),
    ))
}

impl Trainer {
    /// A run of `config` writing into the folder `out`, reporting progress on stderr.
    pub fn new(config: TrainConfig, out: impl Into<PathBuf>) -> Self {
        Self {
            config,
            paths: RunPaths::new(out),
            resume: false,
            stop_after_epoch: None,
            run_info: serde_json::Value::Null,
            progress: Box::new(StderrProgress::default()),
            lock: None,
        }
    }

    /// Claims the output folder for this trainer now, rather than when [`fit`](Self::fit)
    /// starts: to find out that another training holds it before spending time on loading.
    /// The claim lasts until the trainer is dropped (see [`RunLock`]).
    ///
    /// # Errors
    /// [`TrainError::RunLocked`] when another trainer, in this process or another, holds the
    /// folder; [`TrainError::File`] when the folder cannot be created.
    pub fn lock_folder(&mut self) -> Result<(), TrainError> {
        if self.lock.is_none() {
            self.lock = Some(RunLock::acquire(self.paths.root())?);
        }
        Ok(())
    }

    /// Continue from the latest checkpoint in the output folder, if there is one (otherwise start
    /// afresh). Without it, a folder that already holds checkpoints is an error, never overwritten.
    pub fn with_resume(mut self, resume: bool) -> Self {
        self.resume = resume;
        self
    }

    /// A description of the run stored in its results (model and loss configs, data set, backend):
    /// the extension point for what [`TrainConfig`] does not cover.
    pub fn with_run_info(mut self, run_info: serde_json::Value) -> Self {
        self.run_info = run_info;
        self
    }

    /// Where progress goes (e.g. [`SilentProgress`](super::SilentProgress) or a
    /// [`WriterProgress`](super::WriterProgress) on a log file).
    pub fn with_progress(mut self, progress: impl Progress + 'static) -> Self {
        self.progress = Box::new(progress);
        self
    }

    /// Return after this epoch (checkpoint written) even if the run has more, as an interrupted run
    /// would; resume later to continue. For time-boxed sessions and tests.
    pub fn with_stop_after_epoch(mut self, epoch: usize) -> Self {
        self.stop_after_epoch = Some(epoch);
        self
    }

    /// The recipe.
    pub fn config(&self) -> &TrainConfig {
        &self.config
    }

    /// The file layout of the run.
    pub fn paths(&self) -> &RunPaths {
        &self.paths
    }

    /// Trains `model` for the remaining epochs of the run.
    ///
    /// Every batch of `train.epoch(e)` is one Adam step at the one-cycle schedule's learning rate
    /// and beta1; after each epoch the model (as [`AutodiffModule::valid`]) scores `valid`, the
    /// [`Measure`] turns the sigmoid scores into [`AnnotationMetrics`], and the
    /// loop writes the best model (best per-class F1), a checkpoint, `results.json` and
    /// `curves.svg`. Before each epoch the backend is seeded with `seed + epoch`.
    ///
    /// With [`TrainConfig::ema_decay`], a [`ModelEma`] of the weights is updated after every
    /// step, scored beside the trained weights each epoch and saved in every checkpoint; the best
    /// model is whichever of the two scored better ([`RunResults::best_weights`] says which).
    ///
    /// The output folder is claimed first ([`lock_folder`](Self::lock_folder)): a second trainer
    /// on the same folder gets [`TrainError::RunLocked`]. Every file is written under a
    /// temporary name and renamed into place, so a failed write ([`TrainError::File`], e.g. a
    /// full disk) leaves the previous checkpoint, best model and results intact.
    pub fn fit<B, M, L, T, E>(
        &mut self,
        model: M,
        loss: &L,
        train: &T,
        valid: AnnotationLoader<B::InnerBackend>,
        measure: &mut E,
        device: &B::Device,
    ) -> Result<FitOutcome<M>, TrainError>
    where
        B: AutodiffBackend,
        M: AutodiffModule<B> + MultiLabelModel<B>,
        M::InnerModule: MultiLabelModel<B::InnerBackend>,
        L: MultiLabelLoss<B> + MultiLabelLoss<B::InnerBackend>,
        T: TrainLoader<B> + ?Sized,
        E: Measure + ?Sized,
    {
        let sizes = self.sizes(train, valid.as_ref())?;
        let mut run = self.start::<B, M>(model, sizes)?;
        // Before anything is read or removed: the temporaries below may be another trainer's.
        self.lock_folder()?;
        self.paths.remove_stale_temporaries()?;
        let resumed_from = self.resume(&mut run, device)?;

        let first_epoch = resumed_from.map_or(1, |epoch| epoch + 1);
        let last_epoch = self
            .stop_after_epoch
            .map_or(self.config.epochs, |stop| stop.min(self.config.epochs));
        for epoch in first_epoch..=last_epoch {
            let started = Instant::now();
            B::seed(device, self.config.seed.wrapping_add(epoch as u64));
            let trained = self.train_epoch(&mut run, loss, train, epoch, last_epoch)?;
            let record = self.validate_epoch(&mut run, loss, valid.as_ref(), measure, trained)?;
            let record = EpochRecord {
                seconds: started.elapsed().as_secs_f64(),
                ..record
            };
            self.save_epoch(&mut run, record)?;
        }
        Ok(FitOutcome {
            model: run.model,
            results: run.results,
            resumed_from,
            paths: self.paths.clone(),
        })
    }

    /// Checks the recipe and the loaders, and measures them.
    fn sizes<B: AutodiffBackend, T: TrainLoader<B> + ?Sized>(
        &self,
        train: &T,
        valid: &dyn DataLoader<B::InnerBackend, AnnotationBatch<B::InnerBackend>>,
    ) -> Result<Sizes, TrainError> {
        if self.config.epochs == 0 || self.config.loader.batch_size == 0 {
            return Err(TrainError::InvalidConfig(
                "epochs and loader.batch_size must be positive".into(),
            ));
        }
        if let Some(decay) = self.config.ema_decay {
            if !(0.0..1.0).contains(&decay) {
                return Err(TrainError::InvalidConfig(format!(
                    "the EMA decay {decay} is not in [0, 1)"
                )));
            }
        }
        let train_items = train.epoch(1).num_items();
        if train_items == 0 {
            return Err(data_error("the training loader has no items".into()));
        }
        let valid_items = valid.num_items();
        if valid_items == 0 {
            return Err(data_error("the validation loader has no items".into()));
        }
        Ok(Sizes {
            train_items,
            valid_items,
            steps_per_epoch: self.config.steps_per_epoch(train_items),
        })
    }

    /// The state of a new run: its optimizer, schedule, results and, if asked for, EMA.
    fn start<B: AutodiffBackend, M: AutodiffModule<B>>(
        &self,
        model: M,
        sizes: Sizes,
    ) -> Result<Loop<B, M>, TrainError> {
        let config = &self.config;
        let ema = config
            .ema_decay
            .map(|decay| ModelEma::new(model.valid(), decay));
        Ok(Loop {
            schedule: config.schedule(sizes.steps_per_epoch).init()?,
            optimizer: config.optimizer().init(),
            results: RunResults::new(config.clone(), self.run_info.clone(), sizes.steps_per_epoch),
            model,
            ema,
            sizes,
            clock: Clock::default(),
        })
    }

    /// Continues from the folder's latest checkpoint when resuming; returns its epoch.
    fn resume<B: AutodiffBackend, M: AutodiffModule<B>>(
        &mut self,
        run: &mut Loop<B, M>,
        device: &B::Device,
    ) -> Result<Option<usize>, TrainError> {
        match self.paths.latest_checkpoint()? {
            Some((_, folder)) if !self.resume => Err(TrainError::RunExists { path: folder }),
            Some((epoch, folder)) => {
                self.restore(run, &folder, device)?;
                self.progress.message(&format!(
                    "resuming after epoch {epoch} from {}",
                    folder.display()
                ));
                Ok(Some(epoch))
            }
            None => {
                if self.resume {
                    self.progress.message(&format!(
                        "no checkpoint in {}, starting a new run",
                        self.paths.checkpoints().display()
                    ));
                }
                Ok(None)
            }
        }
    }

    /// Loads a checkpoint folder into `run`, after checking that it is of the same recipe.
    fn restore<B: AutodiffBackend, M: AutodiffModule<B>>(
        &self,
        run: &mut Loop<B, M>,
        folder: &Path,
        device: &B::Device,
    ) -> Result<(), TrainError> {
        let state = CheckpointState::load(folder)?;
        let mut differences = config_differences(&state.results.config, &self.config);
        if state.results.steps_per_epoch != run.sizes.steps_per_epoch {
            differences.push(format!(
                "steps per epoch: {} -> {}",
                state.results.steps_per_epoch, run.sizes.steps_per_epoch
            ));
        }
        if !differences.is_empty() {
            return Err(TrainError::ConfigChanged {
                path: folder.to_path_buf(),
                differences: differences.join(", "),
            });
        }
        run.model = load_model::<B, M>(run.model.clone(), &folder.join(MODEL_FILE), device)?;
        let optimizer_path = folder.join(OPTIMIZER_FILE);
        let record: ScheduledAdamRecord<M, B> = load_record::<B, _>(&optimizer_path, device)?;
        let ids = param_ids::<B, M>(&run.model);
        if let Some(stranger) = record.keys().find(|id| !ids.contains(id)) {
            return Err(TrainError::Mismatch {
                path: optimizer_path,
                message: format!(
                    "optimizer state for parameter {stranger}, which the model does not have"
                ),
            });
        }
        run.optimizer = run.optimizer.clone().load_record(record);
        if let Some(ema) = &mut run.ema {
            let average = load_model::<B::InnerBackend, M::InnerModule>(
                run.model.valid(),
                &folder.join(EMA_FILE),
                device,
            )?;
            ema.restore(average, state.schedule_position);
        }
        run.schedule.set_position(state.schedule_position);
        // Keep this run's description; the history is the checkpoint's.
        run.results.epochs = state.results.epochs;
        run.results.best_epoch = state.results.best_epoch;
        run.results.best_weights = state.results.best_weights;
        run.results.completed = state.results.completed;
        Ok(())
    }

    /// One pass over the training set, one optimizer step per batch; returns what it measured.
    fn train_epoch<B, M, L, T>(
        &mut self,
        run: &mut Loop<B, M>,
        loss: &L,
        train: &T,
        epoch: usize,
        last_epoch: usize,
    ) -> Result<TrainedEpoch, TrainError>
    where
        B: AutodiffBackend,
        M: AutodiffModule<B> + MultiLabelModel<B>,
        L: MultiLabelLoss<B>,
        T: TrainLoader<B> + ?Sized,
    {
        let started = Instant::now();
        let steps = run.sizes.steps_per_epoch;
        let items = run.sizes.train_items;
        let mut batch_index = 0;
        let (mut loss_sum, mut images) = (0.0, 0usize);
        let mut point = None;
        for batch in train.epoch(epoch).iter() {
            let batch_start = Instant::now();
            batch_index += 1;
            if batch_index > steps {
                return Err(batch_count_error(epoch, batch_index, items, &self.config));
            }
            let step = run.schedule.next_point()?;
            point = Some(step);
            let count = batch.images.dims()[0];
            let value = run.step(loss, batch, step, epoch, batch_index)?;
            loss_sum += value * count as f64;
            images += count;
            run.clock.train_time += batch_start.elapsed();
            run.clock.train_batches += 1;

            let elapsed = started.elapsed();
            let (epoch_eta, run_eta) = run.clock.etas(
                batch_index,
                elapsed,
                &run.sizes,
                last_epoch - epoch,
                self.config.loader.batch_size,
            );
            self.progress.batch(&BatchUpdate {
                epoch,
                epochs: self.config.epochs,
                batch: batch_index,
                batches: steps,
                loss: loss_sum / images as f64,
                lr: step.lr,
                momentum: step.momentum,
                images_per_second: images as f64 / elapsed.as_secs_f64().max(1e-9),
                elapsed,
                epoch_eta,
                run_eta,
            });
        }
        if batch_index != steps {
            return Err(batch_count_error(epoch, batch_index, items, &self.config));
        }
        Ok(TrainedEpoch {
            epoch,
            loss: loss_sum / images as f64,
            point: point.expect("at least one batch"),
            images_per_second: images as f64 / started.elapsed().as_secs_f64().max(1e-9),
        })
    }

    /// Scores the trained weights, and their average if there is one, on the validation split.
    fn validate_epoch<B, M, L, E>(
        &mut self,
        run: &mut Loop<B, M>,
        loss: &L,
        valid: &dyn DataLoader<B::InnerBackend, AnnotationBatch<B::InnerBackend>>,
        measure: &mut E,
        trained: TrainedEpoch,
    ) -> Result<EpochRecord, TrainError>
    where
        B: AutodiffBackend,
        M: AutodiffModule<B>,
        M::InnerModule: MultiLabelModel<B::InnerBackend>,
        L: MultiLabelLoss<B::InnerBackend>,
        E: Measure + ?Sized,
    {
        let started = Instant::now();
        let epoch = trained.epoch;
        self.progress
            .validation_started(epoch, run.sizes.valid_items);
        let (val_loss, metrics) = validate(&run.model.valid(), loss, valid, measure, epoch)?;
        let ema = match &run.ema {
            Some(ema) => {
                let (val_loss, metrics) = validate(ema.model(), loss, valid, measure, epoch)?;
                Some(EmaRecord { val_loss, metrics })
            }
            None => None,
        };
        run.clock.last_validation = Some(started.elapsed());
        Ok(EpochRecord {
            epoch,
            train_loss: trained.loss,
            val_loss,
            learning_rate: trained.point.lr,
            momentum: trained.point.momentum,
            metrics,
            ema,
            seconds: 0.0,
            images_per_second: trained.images_per_second,
        })
    }

    /// Records the epoch: the best model when it is the best, the checkpoint, the results and
    /// the curves.
    fn save_epoch<B: AutodiffBackend, M: AutodiffModule<B>>(
        &mut self,
        run: &mut Loop<B, M>,
        record: EpochRecord,
    ) -> Result<(), TrainError> {
        let epoch = record.epoch;
        match run.results.push(record.clone()) {
            Some(Weights::Trained) => save_model::<B, M>(&run.model, &self.paths.best_model())?,
            Some(Weights::Ema) => {
                let ema = run
                    .ema
                    .as_ref()
                    .expect("EMA weights are scored only with an EMA");
                save_model::<B::InnerBackend, _>(ema.model(), &self.paths.best_model())?
            }
            None => {}
        }
        let state = CheckpointState {
            epoch,
            schedule_position: run.schedule.position(),
            results: run.results.clone(),
        };
        write_checkpoint(&self.paths, &state, |folder| {
            save_model::<B, M>(&run.model, &folder.join(MODEL_FILE))?;
            if let Some(ema) = &run.ema {
                save_model::<B::InnerBackend, _>(ema.model(), &folder.join(EMA_FILE))?;
            }
            save_record::<B, _>(run.optimizer.to_record(), &folder.join(OPTIMIZER_FILE))
        })?;
        run.results.save(&self.paths.results())?;
        write_atomic(
            &self.paths.curves(),
            training_curves_svg(&run.results.epochs, self.config.epochs).as_bytes(),
        )?;
        let best = run.results.best_epoch.unwrap_or(epoch);
        self.progress.epoch_done(&record, self.config.epochs, best);
        Ok(())
    }
}

/// Sizes of a run, measured once before the first epoch.
#[derive(Debug, Clone, Copy)]
struct Sizes {
    train_items: usize,
    valid_items: usize,
    steps_per_epoch: usize,
}

/// What an epoch's training pass measured.
struct TrainedEpoch {
    epoch: usize,
    /// Mean loss over the images.
    loss: f64,
    /// The schedule at the last step.
    point: SchedulePoint,
    images_per_second: f64,
}

/// What the loop carries from step to step.
struct Loop<B: AutodiffBackend, M: AutodiffModule<B>> {
    model: M,
    optimizer: ScheduledAdam<M, B>,
    schedule: OneCycleLr,
    ema: Option<ModelEma<M::InnerModule>>,
    results: RunResults,
    sizes: Sizes,
    clock: Clock,
}

impl<B: AutodiffBackend, M: AutodiffModule<B> + MultiLabelModel<B>> Loop<B, M> {
    /// One optimizer step on `batch` (and the EMA's update); returns the batch's loss.
    fn step<L: MultiLabelLoss<B>>(
        &mut self,
        loss: &L,
        batch: AnnotationBatch<B>,
        point: SchedulePoint,
        epoch: usize,
        batch_index: usize,
    ) -> Result<f64, TrainError> {
        let logits = MultiLabelModel::forward(&self.model, batch.images);
        let what = format!("training epoch {epoch}");
        check_shapes(&logits, &batch.targets, &what, batch_index)?;
        let loss_value = MultiLabelLoss::<B>::forward(loss, logits, batch.targets);
        let value: f64 = loss_value.clone().into_scalar().elem();
        if !value.is_finite() {
            return Err(TrainError::NonFiniteLoss {
                epoch,
                batch: batch_index,
                value,
            });
        }
        let grads = GradientsParams::from_grads(loss_value.backward(), &self.model);
        let model = self.model.clone();
        self.model = self
            .optimizer
            .step_with(point.lr, point.momentum, model, grads);
        if let Some(ema) = &mut self.ema {
            ema.update::<B, M>(&self.model);
        }
        Ok(value)
    }
}

/// The mean loss and the metrics of `model` on the validation split.
fn validate<B, M, L, E>(
    model: &M,
    loss: &L,
    valid: &dyn DataLoader<B, AnnotationBatch<B>>,
    measure: &mut E,
    epoch: usize,
) -> Result<(f64, AnnotationMetrics), TrainError>
where
    B: Backend,
    M: MultiLabelModel<B>,
    L: MultiLabelLoss<B>,
    E: Measure + ?Sized,
{
    let (mut loss_sum, mut images) = (0.0, 0usize);
    let what = format!("validation of epoch {epoch}");
    let predictions = predict_with(model, valid, &what, |logits, targets| {
        let value: f64 = MultiLabelLoss::<B>::forward(loss, logits.clone(), targets.clone())
            .into_scalar()
            .elem();
        loss_sum += value * targets.dims()[0] as f64;
        images += targets.dims()[0];
    })?;
    let metrics = measure
        .measure(
            &predictions.scores,
            &predictions.targets,
            predictions.num_classes,
        )
        .map_err(|source| TrainError::Measure { epoch, source })?;
    Ok((loss_sum / images as f64, metrics))
}
