//! The whole pipeline on a tiny synthetic set: train one epoch, stop, resume for the second,
//! evaluate with MCC thresholds, annotate; every file written must exist and parse, and the
//! evaluation must agree with a recomputation from the saved predictions.

use std::path::Path;

use aia::annotate::{self, Annotator, ImageAnnotation, ThresholdChoice};
use aia::data::synthetic::SyntheticConfig;
use aia::experiment::{self, Evaluation, ExperimentConfig, TestPredictions};
use aia::metrics::{self, Thresholds};
use aia::model::TResNetConfig;
use aia::train::{RunResults, SilentProgress, TrainConfig};
use burn::backend::{Autodiff, Flex};

type B = Flex;
type AD = Autodiff<Flex>;

fn read_json<T: serde::de::DeserializeOwned>(path: &Path) -> T {
    let bytes = std::fs::read(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    serde_json::from_slice(&bytes).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

#[test]
fn train_resume_evaluate_annotate() {
    let root = tempfile::tempdir().unwrap();
    let run = root.path().join("run");
    let config = ExperimentConfig::new("Synthetic".into())
        .with_data_root(root.path().to_path_buf())
        .with_synthetic(
            SyntheticConfig::new()
                .with_seed(7)
                .with_train_images(48)
                .with_test_images(24)
                .with_min_size(32)
                .with_max_size(48),
        )
        .with_model(
            TResNetConfig::new([1, 1, 1, 1])
                .with_width(0.25)
                .with_dropout(0.3),
        )
        .with_train(
            TrainConfig::new()
                .with_epochs(2)
                .with_batch_size(16)
                .with_image_size(32)
                .with_learning_rate(1e-3)
                .with_num_workers(1),
        );
    let device = Default::default();

    // An interrupted run: one epoch, then it stops with a checkpoint.
    let first = experiment::train::<AD>(&config, &run, &device, |t| {
        t.with_progress(SilentProgress).with_stop_after_epoch(1)
    })
    .unwrap();
    assert_eq!(first.resumed_from, None);
    assert_eq!(first.results.epochs.len(), 1);
    assert!(!first.results.completed);

    // Starting again without --resume must refuse to overwrite the run.
    let again =
        experiment::train::<AD>(&config, &run, &device, |t| t.with_progress(SilentProgress));
    assert!(
        again.is_err(),
        "a second run into the same folder must not clobber it"
    );

    // Resume continues at epoch 2 and completes the run.
    let second = experiment::train::<AD>(&config, &run, &device, |t| {
        t.with_progress(SilentProgress).with_resume(true)
    })
    .unwrap();
    assert_eq!(second.resumed_from, Some(1));
    assert_eq!(second.results.epochs.len(), 2);
    assert_eq!(second.results.epochs[0], first.results.epochs[0]);
    assert_eq!(second.results.epochs[1].epoch, 2);
    assert!(second.results.completed);

    let results: RunResults = read_json(&run.join("results.json"));
    assert_eq!(results, second.results);
    let best = results.best_epoch.expect("a best epoch");
    assert!(second.paths.best_model().is_file());
    assert!(second.paths.checkpoint(2).exists());
    let svg = std::fs::read_to_string(run.join("curves.svg")).unwrap();
    assert!(svg.starts_with("<svg") || svg.starts_with("<?xml"));
    assert!(svg.trim_end().ends_with("</svg>"));

    // Evaluation: thresholds on the training split, the test split at 0.5 / grid / exact.
    let evaluation = experiment::evaluate::<B>(&run, &device).unwrap();
    assert_eq!(evaluation.best_epoch, Some(best));
    let saved: Evaluation = read_json(&run.join(experiment::EVALUATION_FILE));
    assert_eq!(saved, evaluation);
    let predictions: TestPredictions = read_json(&run.join(experiment::PREDICTIONS_FILE));
    let classes = predictions.labels.len();
    assert_eq!(classes, SyntheticConfig::vocabulary().len());
    assert_eq!(predictions.image_names.len(), 24);
    assert_eq!(predictions.scores.len(), 24 * classes);
    assert!(predictions.scores.iter().all(|s| (0.0..=1.0).contains(s)));
    assert_eq!(evaluation.grid.thresholds.len(), classes);
    assert_eq!(evaluation.exact.thresholds.len(), classes);

    for (name, thresholds) in [
        ("threshold 0.5", Thresholds::Global(0.5)),
        ("MCC grid", evaluation.grid.to_thresholds()),
        ("MCC exact", evaluation.exact.to_thresholds()),
    ] {
        let recomputed = metrics::evaluate(
            &predictions.scores,
            &predictions.targets,
            classes,
            &thresholds,
        )
        .unwrap();
        let reported = evaluation.row(name).unwrap_or_else(|| panic!("row {name}"));
        assert_eq!(reported.per_class, recomputed.per_class, "{name}");
        assert_eq!(reported.per_image, recomputed.per_image, "{name}");
        assert_eq!(reported.n_plus, recomputed.n_plus, "{name}");
    }
    // The 0.5 row is what the training loop measured on the test split for the best epoch.
    let at_half = evaluation.row("threshold 0.5").unwrap();
    let logged = &results.epochs[best - 1].metrics;
    assert!((at_half.per_class.f1 - logged.per_class.f1).abs() < 1e-6);
    assert_eq!(at_half.n_plus, logged.n_plus);

    // Annotation with the exact thresholds, written three ways.
    let annotator = Annotator::<B>::from_run(&run, ThresholdChoice::MccExact, &device).unwrap();
    let images = annotate::images_in(&root.path().join("Synthetic").join("images")).unwrap();
    assert_eq!(images.len(), 48 + 24);
    let paths: Vec<_> = predictions
        .image_names
        .iter()
        .map(|n| root.path().join("Synthetic/images").join(n))
        .collect();
    let annotations = annotator.annotate(&paths).unwrap();
    assert_eq!(annotations.len(), paths.len());
    // The annotator's labels are exactly the evaluation's positive predictions.
    for (row, annotation) in annotations.iter().enumerate() {
        let expected: Vec<&str> = (0..classes)
            .filter(|&c| predictions.scores[row * classes + c] > evaluation.exact.thresholds[c])
            .map(|c| predictions.labels[c].as_str())
            .collect();
        let mut got: Vec<&str> = annotation.labels.iter().map(|l| l.label.as_str()).collect();
        got.sort_by_key(|l| predictions.labels.iter().position(|x| x == l));
        assert_eq!(got, expected, "{}", annotation.image.display());
    }
    let out = root.path().join("annotations");
    std::fs::create_dir_all(&out).unwrap();
    annotate::write_json(&out.join("a.json"), &annotations).unwrap();
    annotate::write_csv(&out.join("a.csv"), &annotations).unwrap();
    annotate::write_html(&out.join("a.html"), "tiny", &annotations).unwrap();
    let back: Vec<ImageAnnotation> = read_json(&out.join("a.json"));
    assert_eq!(back, annotations);
    let csv = std::fs::read_to_string(out.join("a.csv")).unwrap();
    let rows = csv.lines().count() - 1;
    assert_eq!(
        rows,
        annotations.iter().map(|a| a.labels.len()).sum::<usize>()
    );
    let html = std::fs::read_to_string(out.join("a.html")).unwrap();
    assert_eq!(html.matches("<figure>").count(), annotations.len());

    // A missing image is an error naming it, not a panic.
    let missing = root.path().join("nope.jpg");
    let err = annotator
        .annotate(std::slice::from_ref(&missing))
        .unwrap_err()
        .to_string();
    assert!(err.contains("nope.jpg"), "{err}");
}

#[test]
fn a_truncated_image_is_an_error_naming_it_or_skipped_on_request() {
    let root = tempfile::tempdir().unwrap();
    let config = ExperimentConfig::new("Synthetic".into())
        .with_data_root(root.path().to_path_buf())
        .with_synthetic(
            SyntheticConfig::new()
                .with_seed(3)
                .with_train_images(32)
                .with_test_images(16)
                .with_min_size(32)
                .with_max_size(40),
        )
        .with_model(TResNetConfig::new([1, 1, 1, 1]).with_width(0.25))
        .with_train(
            TrainConfig::new()
                .with_epochs(1)
                .with_batch_size(16)
                .with_image_size(32)
                .with_num_workers(1),
        );
    let folder = experiment::open_data(&config).unwrap().1;
    let victim = folder.train().samples()[5].image_name.clone();
    let path = folder.images_dir().join(&victim);
    let bytes = std::fs::read(&path).unwrap();
    std::fs::write(&path, &bytes[..bytes.len() / 2]).unwrap();

    let device = Default::default();
    let err = experiment::train::<AD>(&config, &root.path().join("a"), &device, |t| {
        t.with_progress(SilentProgress)
    })
    .unwrap_err()
    .to_string();
    assert!(err.contains(&victim), "{err}");

    // Batches of 31: the 31 readable images make one step, all 32 would make two.
    let mut skipping = config.clone().with_skip_bad_images(true);
    skipping.train.batch_size = 31;
    let outcome = experiment::train::<AD>(&skipping, &root.path().join("b"), &device, |t| {
        t.with_progress(SilentProgress)
    })
    .unwrap();
    assert!(outcome.results.completed);
    assert_eq!(outcome.results.steps_per_epoch, 1);
}
