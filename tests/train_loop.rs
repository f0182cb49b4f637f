//! The training loop on a tiny learnable problem: it learns, writes its files, and reports errors
//! that name the file.

mod train_support;

use std::io::Write;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use aia::metrics::AnnotationMetrics;
use aia::train::{
    load_model, predict, save_model, LoaderConfig, MultiLabelModel, RunResults, SilentProgress,
    TrainConfig, TrainError, Trainer, WriterProgress, MODEL_FILE,
};
use burn::backend::{Autodiff, Flex};
use burn::module::AutodiffModule;
use burn::nn::LinearConfig;
use train_support::{items, loader, measure, measure_epoch, train_loader, Bce, TinyNet, CLASSES};

type B = Autodiff<Flex>;

/// A `Write` whose bytes the test can read after the trainer took it.
#[derive(Clone, Default)]
struct SharedBuffer(Arc<Mutex<Vec<u8>>>);

impl Write for SharedBuffer {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(bytes);
        Ok(bytes.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

fn config(epochs: usize) -> TrainConfig {
    TrainConfig::new()
        .with_loader(LoaderConfig::new().with_batch_size(8).with_image_size(8))
        .with_epochs(epochs)
        .with_learning_rate(0.05)
        .with_seed(7)
}

#[test]
fn training_learns_the_toy_problem_and_writes_its_files() {
    let out = tempfile::tempdir().unwrap();
    let device = Default::default();
    let config = config(8);
    let train = train_loader::<B>(items(96, 1), 8, config.seed);
    let valid_items = items(48, 2);
    let valid = loader::<Flex>(valid_items.clone(), 16, None);
    let log = SharedBuffer::default();
    let mut measure_epoch = measure_epoch;
    let outcome = Trainer::new(config.clone(), out.path())
        .with_progress(WriterProgress::new(log.clone(), Duration::ZERO))
        .with_run_info(serde_json::json!({ "model": "TinyNet", "loss": "bce" }))
        .fit(
            TinyNet::<B>::new(&device),
            &Bce,
            &train,
            valid.clone(),
            &mut measure_epoch,
            &device,
        )
        .unwrap();

    // It learns: the loss falls well below its start and the labels are predicted.
    let results = &outcome.results;
    assert_eq!(results.epochs.len(), 8);
    let first = &results.epochs[0];
    let last = &results.epochs[7];
    assert!(
        last.train_loss < 0.7 * first.train_loss,
        "{} -> {}",
        first.train_loss,
        last.train_loss
    );
    assert!(
        last.val_loss < 0.7 * first.val_loss,
        "{} -> {}",
        first.val_loss,
        last.val_loss
    );
    let best = results.best().unwrap();
    assert!(best.metrics.per_class.f1 > 0.8, "{:?}", best.metrics);
    assert_eq!(best.metrics.n_plus, CLASSES);
    // The best epoch is the first with the highest per-class F1.
    let top = results
        .epochs
        .iter()
        .map(|r| r.metrics.per_class.f1)
        .fold(f64::NEG_INFINITY, f64::max);
    let expected_best = results
        .epochs
        .iter()
        .find(|r| r.metrics.per_class.f1 == top)
        .unwrap()
        .epoch;
    assert_eq!(results.best_epoch, Some(expected_best));
    // The schedule ran to its end: the last step's rate is max_lr / (25 * 1e4).
    assert!((last.learning_rate - 0.05 / 25e4).abs() < 1e-15);
    assert!((last.momentum - 0.95).abs() < 1e-12);
    assert!(results.completed);

    // results.json is the same record, and parses.
    let saved = RunResults::load(&outcome.paths.results()).unwrap();
    assert_eq!(&saved, results);
    assert_eq!(saved.run_info["loss"], "bce");
    assert_eq!(saved.config, config);
    assert_eq!(saved.steps_per_epoch, 12);

    // Only the latest checkpoint is kept.
    let checkpoints = outcome.paths.list_checkpoints().unwrap();
    assert_eq!(checkpoints.len(), 1);
    assert_eq!(checkpoints[0].0, 8);
    let names: Vec<_> = std::fs::read_dir(outcome.paths.checkpoints())
        .unwrap()
        .map(|entry| entry.unwrap().file_name().into_string().unwrap())
        .collect();
    assert_eq!(names, vec!["epoch-0008".to_string()], "no temporary left");

    // best.mpk holds the best epoch's weights: loaded into a fresh inference model, it scores the
    // validation set to exactly the metrics recorded for that epoch.
    let fresh = TinyNet::<Flex>::new(&device);
    let best_model = load_model(fresh, &outcome.paths.best_model(), &device).unwrap();
    let predictions = predict(&best_model, valid.as_ref()).unwrap();
    assert_eq!(predictions.images(), valid_items.len());
    assert_eq!(predictions.num_classes, CLASSES);
    let expected_targets: Vec<f32> = valid_items.iter().flat_map(|i| i.target.clone()).collect();
    assert_eq!(predictions.targets, expected_targets);
    assert_eq!(
        measure(&predictions.scores, &predictions.targets, CLASSES),
        best.metrics
    );

    // The final model in the outcome is the last epoch's, the one in the checkpoint.
    let checkpoint_model = load_model(
        TinyNet::<Flex>::new(&device),
        &checkpoints[0].1.join(MODEL_FILE),
        &device,
    )
    .unwrap();
    let weights = |m: &TinyNet<Flex>| {
        MultiLabelModel::forward(m, valid_items_tensor(&valid_items))
            .into_data()
            .to_vec::<f32>()
            .unwrap()
    };
    assert_eq!(weights(&checkpoint_model), weights(&outcome.model.valid()));

    // The curves: a well-formed SVG with every series and one point per epoch.
    let svg = std::fs::read_to_string(outcome.paths.curves()).unwrap();
    let series = svg_series(&svg);
    for name in [
        "train loss",
        "validation loss",
        "per-class F1",
        "overall F1",
        "N+",
    ] {
        assert_eq!(
            series.iter().find(|s| s.0 == name).map(|s| s.1),
            Some(8),
            "{name}: {series:?}"
        );
    }

    // Progress: one line per batch (interval zero), the epoch summaries, rates and ETAs.
    let text = String::from_utf8(log.0.lock().unwrap().clone()).unwrap();
    assert_eq!(
        text.lines().filter(|l| l.contains(" batch ")).count(),
        8 * 12,
        "{text}"
    );
    assert!(text.contains("epoch 1/8 batch 1/12 loss "), "{text}");
    assert!(text.contains("epoch 8/8 batch 12/12 "), "{text}");
    assert!(
        text.contains("img/s | epoch ETA 0:00:00 | run ETA 0:00:00"),
        "{text}"
    );
    assert!(text.contains("epoch 8/8 done in "), "{text}");
    assert!(
        text.contains(&format!("best epoch {expected_best}")),
        "{text}"
    );
}

/// The first eight validation images as one tensor.
fn valid_items_tensor(items: &[train_support::Item]) -> burn::tensor::Tensor<Flex, 4> {
    let data: Vec<f32> = items.iter().take(8).flat_map(|i| i.image.clone()).collect();
    burn::tensor::Tensor::from_data(
        burn::tensor::TensorData::new(data, [8, 3, train_support::SIDE, train_support::SIDE]),
        &Default::default(),
    )
}

/// `(series name, number of points)` of the SVG, which must be well-formed XML.
fn svg_series(svg: &str) -> Vec<(String, usize)> {
    use xml::reader::{EventReader, XmlEvent};
    let mut series = Vec::new();
    let mut root = None;
    for event in EventReader::from_str(svg) {
        match event.expect("well-formed SVG") {
            XmlEvent::StartElement {
                name, attributes, ..
            } => {
                root.get_or_insert(name.local_name.clone());
                let attribute = |key: &str| {
                    attributes
                        .iter()
                        .find(|a| a.name.local_name == key)
                        .map(|a| a.value.clone())
                };
                if name.local_name == "g" && attribute("class").as_deref() == Some("series") {
                    let points = attribute("data-points").unwrap().parse().unwrap();
                    series.push((attribute("data-series").unwrap(), points));
                }
                if name.local_name == "polyline" {
                    let points = attribute("points").unwrap();
                    assert!(
                        points.split(' ').all(|p| p.split(',').count() == 2),
                        "{points}"
                    );
                }
            }
            XmlEvent::EndDocument => break,
            _ => {}
        }
    }
    assert_eq!(root.as_deref(), Some("svg"));
    series
}

#[test]
fn a_new_run_does_not_overwrite_checkpoints_and_resume_refuses_another_recipe() {
    let out = tempfile::tempdir().unwrap();
    let device = Default::default();
    let train = train_loader::<B>(items(16, 3), 8, 1);
    let valid = loader::<Flex>(items(8, 4), 8, None);
    let mut measure_epoch = measure_epoch;
    let run = |config: TrainConfig, resume: bool, measure_epoch: &mut _| {
        Trainer::new(config, out.path())
            .with_progress(SilentProgress)
            .with_resume(resume)
            .with_stop_after_epoch(1)
            .fit(
                TinyNet::<B>::new(&device),
                &Bce,
                &train,
                valid.clone(),
                measure_epoch,
                &device,
            )
    };
    run(config(3), false, &mut measure_epoch).unwrap();

    let error = run(config(3), false, &mut measure_epoch).unwrap_err();
    assert!(matches!(error, TrainError::RunExists { .. }), "{error}");
    assert!(error.to_string().contains("epoch-0001"), "{error}");

    let error = run(config(3).with_learning_rate(0.01), true, &mut measure_epoch).unwrap_err();
    let message = error.to_string();
    assert!(
        matches!(error, TrainError::ConfigChanged { .. }),
        "{message}"
    );
    assert!(message.contains("learning_rate: 0.05 -> 0.01"), "{message}");
    // A loader setting that changes the images is part of the recipe too.
    let mut larger = config(3);
    larger.loader.image_size = 16;
    let message = run(larger, true, &mut measure_epoch)
        .unwrap_err()
        .to_string();
    assert!(message.contains("loader.image_size: 8 -> 16"), "{message}");

    // The number of workers does not change the results: resuming with another is fine.
    let mut other_workers = config(3);
    other_workers.loader.num_workers = 1;
    let resumed = Trainer::new(other_workers, out.path())
        .with_progress(SilentProgress)
        .with_resume(true)
        .with_stop_after_epoch(2)
        .fit(
            TinyNet::<B>::new(&device),
            &Bce,
            &train,
            valid.clone(),
            &mut measure_epoch,
            &device,
        )
        .unwrap();
    assert_eq!(resumed.resumed_from, Some(1));
    assert_eq!(resumed.results.epochs.len(), 2);
}

#[test]
fn damaged_or_foreign_checkpoints_are_clear_errors_naming_the_file() {
    let out = tempfile::tempdir().unwrap();
    let device = Default::default();
    let train = train_loader::<B>(items(16, 5), 8, 1);
    let valid = loader::<Flex>(items(8, 6), 8, None);
    let mut measure_epoch = measure_epoch;
    let outcome = Trainer::new(config(3), out.path())
        .with_progress(SilentProgress)
        .with_stop_after_epoch(1)
        .fit(
            TinyNet::<B>::new(&device),
            &Bce,
            &train,
            valid.clone(),
            &mut measure_epoch,
            &device,
        )
        .unwrap();
    let model_file = outcome.paths.checkpoint(1).join(MODEL_FILE);

    // Another architecture: a head with 5 outputs.
    let mut other = TinyNet::<Flex>::new(&device);
    other.head = LinearConfig::new(6, 5).init(&device);
    let error = load_model(other, &model_file, &device).unwrap_err();
    let message = error.to_string();
    assert!(matches!(error, TrainError::Mismatch { .. }), "{message}");
    assert!(message.contains("model.mpk"), "{message}");
    assert!(
        message.contains("head.weight") && message.contains("[6, 4]") && message.contains("[6, 5]"),
        "{message}"
    );

    // A truncated file.
    let bytes = std::fs::read(&model_file).unwrap();
    let truncated = out.path().join("truncated.mpk");
    std::fs::write(&truncated, &bytes[..bytes.len() / 2]).unwrap();
    let error = load_model(TinyNet::<Flex>::new(&device), &truncated, &device).unwrap_err();
    assert!(matches!(error, TrainError::Record { .. }), "{error}");
    assert!(error.to_string().contains("truncated.mpk"), "{error}");

    // A missing file.
    let missing = out.path().join("missing.mpk");
    let error = load_model(TinyNet::<Flex>::new(&device), &missing, &device).unwrap_err();
    assert!(
        matches!(error, TrainError::File(aia::fs::FileError::Read { .. }))
            && error.to_string().contains("missing.mpk"),
        "{error}"
    );

    // Resuming from a corrupt checkpoint names the checkpoint's file.
    std::fs::write(&model_file, b"not a model").unwrap();
    let error = Trainer::new(config(3), out.path())
        .with_progress(SilentProgress)
        .with_resume(true)
        .fit(
            TinyNet::<B>::new(&device),
            &Bce,
            &train,
            valid.clone(),
            &mut measure_epoch,
            &device,
        )
        .unwrap_err();
    assert!(
        error
            .to_string()
            .contains(&model_file.display().to_string()),
        "{error}"
    );

    // save_model / load_model round trip on the inference backend, from a model whose
    // parameters are still lazy: what is saved is what the model computes with.
    let model = TinyNet::<Flex>::lazy(&device);
    let path = out.path().join("sub").join("model.mpk");
    save_model(&model, &path).unwrap();
    let loaded = load_model(TinyNet::<Flex>::new(&device), &path, &device).unwrap();
    let input = valid_items_tensor(&items(8, 9));
    assert_eq!(
        MultiLabelModel::forward(&model, input.clone()).into_data(),
        MultiLabelModel::forward(&loaded, input).into_data()
    );
}

#[test]
fn loaders_that_disagree_with_the_config_are_reported() {
    let out = tempfile::tempdir().unwrap();
    let device = Default::default();
    // Batches of 4 while the config says 8: the schedule would be too short.
    let train = train_loader::<B>(items(16, 7), 4, 1);
    let valid = loader::<Flex>(items(8, 8), 8, None);
    let mut measure_epoch = measure_epoch;
    let error = Trainer::new(config(2), out.path())
        .with_progress(SilentProgress)
        .fit(
            TinyNet::<B>::new(&device),
            &Bce,
            &train,
            valid,
            &mut measure_epoch,
            &device,
        )
        .unwrap_err();
    assert!(
        matches!(
            error,
            TrainError::ScheduleExhausted { .. } | TrainError::Data(_)
        ),
        "{error}"
    );

    // A failing measure stops the run and says which epoch.
    let train = train_loader::<B>(items(16, 7), 8, 1);
    let valid = loader::<Flex>(items(8, 8), 8, None);
    let mut failing = |_: &[f32], _: &[f32], _: usize| -> Result<AnnotationMetrics, String> {
        Err("no metrics today".into())
    };
    let error = Trainer::new(config(2), tempfile::tempdir().unwrap().path())
        .with_progress(SilentProgress)
        .fit(
            TinyNet::<B>::new(&device),
            &Bce,
            &train,
            valid,
            &mut failing,
            &device,
        )
        .unwrap_err();
    assert_eq!(error.to_string(), "measuring epoch 1: no metrics today");
}
