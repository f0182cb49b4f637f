//! The training loop: one-cycle Adam over the epochs, evaluation after each, checkpoints, the
//! best model, results and curves.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use burn::module::AutodiffModule;
use burn::optim::{GradientsParams, Optimizer};
use burn::tensor::backend::AutodiffBackend;
use burn::tensor::ElementConversion;

use super::atomic::write_atomic;
use super::checkpoint::{
    load_model, load_record, param_ids, save_model, save_record, write_checkpoint, CheckpointState,
    RunPaths, MODEL_FILE, OPTIMIZER_FILE,
};
use super::predict::{check_shapes, predict_with};
use super::{
    training_curves_svg, AnnotationLoader, BatchUpdate, EpochRecord, Evaluator, MultiLabelLoss,
    MultiLabelModel, OneCycleLr, Progress, RunLock, RunResults, ScheduledAdam, ScheduledAdamRecord,
    StderrProgress, TrainConfig, TrainError, TrainLoader,
};

/// Runs the training recipe of a [`TrainConfig`] in an output folder (layout in [`RunPaths`]).
///
/// ```no_run
/// # use aia::train::*;
/// # fn demo<B, M, L>(model: M, loss: L, train: impl TrainLoader<B>,
/// #     valid: AnnotationLoader<B::InnerBackend>, device: B::Device) -> Result<(), TrainError>
/// # where B: burn::tensor::backend::AutodiffBackend, M: burn::module::AutodiffModule<B> + MultiLabelModel<B>,
/// #   M::InnerModule: MultiLabelModel<B::InnerBackend>,
/// #   L: MultiLabelLoss<B> + MultiLabelLoss<B::InnerBackend> {
/// let mut evaluator = |scores: &[f32], targets: &[f32], classes: usize| {
///     Ok::<_, TrainError>(EpochMetrics::default()) // back this with crate::metrics
/// };
/// let outcome = Trainer::new(TrainConfig::new(), "runs/corel")
///     .with_resume(true)
///     .with_run_info(serde_json::json!({ "loss": "proposed", "data": "Corel-5k" }))
///     .fit(model, &loss, &train, valid, &mut evaluator, &device)?;
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
}

/// The fields of two configs that differ, as `name: a -> b`.
fn config_differences(saved: &TrainConfig, current: &TrainConfig) -> Vec<String> {
    let as_map = |config: &TrainConfig| match serde_json::to_value(config) {
        Ok(serde_json::Value::Object(map)) => map,
        _ => serde_json::Map::new(),
    };
    let (saved, current) = (as_map(saved), as_map(current));
    saved
        .iter()
        .filter(|(name, _)| name.as_str() != "num_workers")
        .filter_map(|(name, value)| {
            let other = current.get(name).unwrap_or(&serde_json::Value::Null);
            (other != value).then(|| format!("{name}: {value} -> {other}"))
        })
        .collect()
}

fn data_error(message: String) -> TrainError {
    TrainError::Data(message)
}

/// The error of a training loader whose batches do not follow `TrainConfig::batch_size`.
fn batch_count_error(
    epoch: usize,
    batches: usize,
    items: usize,
    config: &TrainConfig,
) -> TrainError {
    data_error(format!(
        "epoch {epoch}: the training loader gives {}{batches} batches, but {items} items in batches of {} make {}: build it with TrainConfig::batch_size",
        if batches > config.steps_per_epoch(items) { "at least " } else { "" },
        config.batch_size,
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
    /// folder; [`TrainError::Write`] when the folder cannot be created.
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
    /// evaluator turns the sigmoid scores into [`EpochMetrics`](super::EpochMetrics), and the
    /// loop writes the best model (best per-class F1), a checkpoint, `results.json` and
    /// `curves.svg`. Before each epoch the backend is seeded with `seed + epoch`.
    ///
    /// The output folder is claimed first ([`lock_folder`](Self::lock_folder)): a second trainer
    /// on the same folder gets [`TrainError::RunLocked`]. Every file is written under a
    /// temporary name and renamed into place, so a failed write ([`TrainError::Write`], e.g. a
    /// full disk) leaves the previous checkpoint, best model and results intact.
    pub fn fit<B, M, L, T, E>(
        &mut self,
        model: M,
        loss: &L,
        train: &T,
        valid: AnnotationLoader<B::InnerBackend>,
        evaluator: &mut E,
        device: &B::Device,
    ) -> Result<FitOutcome<M>, TrainError>
    where
        B: AutodiffBackend,
        M: AutodiffModule<B> + MultiLabelModel<B>,
        M::InnerModule: MultiLabelModel<B::InnerBackend>,
        L: MultiLabelLoss<B> + MultiLabelLoss<B::InnerBackend>,
        T: TrainLoader<B> + ?Sized,
        E: Evaluator + ?Sized,
    {
        let config = self.config.clone();
        if config.epochs == 0 || config.batch_size == 0 {
            return Err(TrainError::InvalidConfig(
                "epochs and batch_size must be positive".into(),
            ));
        }
        let train_items = train.epoch(1).num_items();
        if train_items == 0 {
            return Err(data_error("the training loader has no items".into()));
        }
        let valid_items = valid.num_items();
        if valid_items == 0 {
            return Err(data_error("the validation loader has no items".into()));
        }
        let steps_per_epoch = config.steps_per_epoch(train_items);
        let mut schedule: OneCycleLr = config.schedule(steps_per_epoch).init()?;
        let mut optimizer: ScheduledAdam<M, B> = config.optimizer().init();
        let mut model = model;
        let mut results = RunResults::new(config.clone(), self.run_info.clone(), steps_per_epoch);
        let mut resumed_from = None;

        // Before anything is read or removed: the temporaries below may be another trainer's.
        self.lock_folder()?;
        self.paths.remove_stale_temporaries()?;
        match self.paths.latest_checkpoint()? {
            Some((_, folder)) if !self.resume => {
                return Err(TrainError::RunExists { path: folder });
            }
            Some((epoch, folder)) => {
                let state = CheckpointState::load(&folder)?;
                let differences = config_differences(&state.results.config, &config);
                if !differences.is_empty() {
                    return Err(TrainError::ConfigChanged {
                        path: folder,
                        differences: differences.join(", "),
                    });
                }
                if state.results.steps_per_epoch != steps_per_epoch {
                    return Err(TrainError::ConfigChanged {
                        path: folder,
                        differences: format!(
                            "steps per epoch: {} -> {steps_per_epoch}",
                            state.results.steps_per_epoch
                        ),
                    });
                }
                model = load_model::<B, M>(model, &folder.join(MODEL_FILE), device)?;
                let optimizer_path = folder.join(OPTIMIZER_FILE);
                let record: ScheduledAdamRecord<M, B> =
                    load_record::<B, _>(&optimizer_path, device)?;
                let ids = param_ids::<B, M>(&model);
                if let Some(stranger) = record.keys().find(|id| !ids.contains(id)) {
                    return Err(TrainError::Mismatch {
                        path: optimizer_path,
                        message: format!("optimizer state for parameter {stranger}, which the model does not have"),
                    });
                }
                optimizer = optimizer.load_record(record);
                schedule.set_position(state.schedule_position);
                // Keep this run's description; the history is the checkpoint's.
                results.epochs = state.results.epochs;
                results.best_epoch = state.results.best_epoch;
                results.completed = state.results.completed;
                resumed_from = Some(epoch);
                self.progress.message(&format!(
                    "resuming after epoch {epoch} from {}",
                    folder.display()
                ));
            }
            None if self.resume => self.progress.message(&format!(
                "no checkpoint in {}, starting a new run",
                self.paths.checkpoints().display()
            )),
            None => {}
        }

        let first_epoch = resumed_from.map_or(1, |epoch| epoch + 1);
        let last_epoch = self
            .stop_after_epoch
            .map_or(config.epochs, |stop| stop.min(config.epochs));
        let mut clock = Clock::default();
        for epoch in first_epoch..=last_epoch {
            let epoch_start = Instant::now();
            B::seed(device, config.seed.wrapping_add(epoch as u64));

            // Training.
            let loader = train.epoch(epoch);
            let mut batch_index = 0;
            let (mut loss_sum, mut images) = (0.0, 0usize);
            let mut point = None;
            for batch in loader.iter() {
                let batch_start = Instant::now();
                batch_index += 1;
                if batch_index > steps_per_epoch {
                    return Err(batch_count_error(epoch, batch_index, train_items, &config));
                }
                let step = schedule.next_point()?;
                point = Some(step);
                let count = batch.images.dims()[0];
                let logits = MultiLabelModel::forward(&model, batch.images);
                check_shapes(
                    &logits,
                    &batch.targets,
                    &format!("training epoch {epoch}"),
                    batch_index,
                )?;
                let loss_value = MultiLabelLoss::<B>::forward(loss, logits, batch.targets);
                let value: f64 = loss_value.clone().into_scalar().elem();
                if !value.is_finite() {
                    return Err(TrainError::NonFiniteLoss {
                        epoch,
                        batch: batch_index,
                        value,
                    });
                }
                let grads = GradientsParams::from_grads(loss_value.backward(), &model);
                model = optimizer.step_with(step.lr, step.momentum, model, grads);
                loss_sum += value * count as f64;
                images += count;
                clock.train_time += batch_start.elapsed();
                clock.train_batches += 1;

                let elapsed = epoch_start.elapsed();
                let per_batch = elapsed.as_secs_f64() / batch_index as f64;
                let validation = clock.last_validation.map_or_else(
                    // Before the first measurement: a forward pass costs about a third of a step.
                    || {
                        valid_items as f64 / config.batch_size as f64 * clock.seconds_per_batch()
                            / 3.0
                    },
                    |d| d.as_secs_f64(),
                );
                let batches_left = steps_per_epoch.saturating_sub(batch_index);
                let epoch_eta = batches_left as f64 * per_batch;
                let later_epochs = (last_epoch - epoch) as f64;
                let run_eta = epoch_eta
                    + validation
                    + later_epochs
                        * (steps_per_epoch as f64 * clock.seconds_per_batch() + validation);
                self.progress.batch(&BatchUpdate {
                    epoch,
                    epochs: config.epochs,
                    batch: batch_index,
                    batches: steps_per_epoch,
                    loss: loss_sum / images as f64,
                    lr: step.lr,
                    momentum: step.momentum,
                    images_per_second: images as f64 / elapsed.as_secs_f64().max(1e-9),
                    elapsed,
                    epoch_eta: Duration::from_secs_f64(epoch_eta.max(0.0)),
                    run_eta: Duration::from_secs_f64(run_eta.max(0.0)),
                });
            }
            if batch_index != steps_per_epoch {
                return Err(batch_count_error(epoch, batch_index, train_items, &config));
            }
            let point = point.expect("at least one batch");
            let train_seconds = epoch_start.elapsed().as_secs_f64();

            // Validation.
            let validation_start = Instant::now();
            self.progress.validation_started(epoch, valid_items);
            let valid_model = model.valid();
            let (mut val_sum, mut val_images) = (0.0, 0usize);
            let what = format!("validation of epoch {epoch}");
            let predictions =
                predict_with(&valid_model, valid.as_ref(), &what, |logits, targets| {
                    let count = targets.dims()[0];
                    let value: f64 = MultiLabelLoss::<B::InnerBackend>::forward(
                        loss,
                        logits.clone(),
                        targets.clone(),
                    )
                    .into_scalar()
                    .elem();
                    val_sum += value * count as f64;
                    val_images += count;
                })?;
            let (scores, targets, num_classes) = (
                &predictions.scores,
                &predictions.targets,
                predictions.num_classes,
            );
            let metrics = evaluator
                .evaluate(scores, targets, num_classes)
                .map_err(|source| TrainError::Evaluation { epoch, source })?;
            clock.last_validation = Some(validation_start.elapsed());

            let record = EpochRecord {
                epoch,
                train_loss: loss_sum / images as f64,
                val_loss: val_sum / val_images as f64,
                learning_rate: point.lr,
                momentum: point.momentum,
                metrics,
                seconds: epoch_start.elapsed().as_secs_f64(),
                images_per_second: images as f64 / train_seconds.max(1e-9),
            };
            let is_best = results.push(record.clone());
            if is_best {
                save_model::<B, M>(&model, &self.paths.best_model())?;
            }
            let state = CheckpointState {
                epoch,
                schedule_position: schedule.position(),
                results: results.clone(),
            };
            write_checkpoint(&self.paths, &state, |folder| {
                save_model::<B, M>(&model, &folder.join(MODEL_FILE))?;
                save_record::<B, _>(optimizer.to_record(), &folder.join(OPTIMIZER_FILE))
            })?;
            results.save(&self.paths.results())?;
            write_atomic(
                &self.paths.curves(),
                training_curves_svg(&results.epochs, config.epochs).as_bytes(),
            )?;
            let best = results.best_epoch.unwrap_or(epoch);
            self.progress.epoch_done(&record, config.epochs, best);
        }
        Ok(FitOutcome {
            model,
            results,
            resumed_from,
            paths: self.paths.clone(),
        })
    }
}
