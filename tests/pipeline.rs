//! The whole pipeline on a tiny synthetic set: train one epoch, stop, resume for the second,
//! evaluate with MCC thresholds, annotate; every file written must exist and parse, and the
//! evaluation must agree with a recomputation from the saved predictions.

use std::path::Path;

use aia::annotate::{self, Annotator, ImageAnnotation, ThresholdSource};
use aia::data::synthetic::SyntheticConfig;
use aia::data::AnnotationSplit;
use aia::data::Normalization;
use aia::experiment::ModelManifest;
use aia::experiment::{self, Evaluation, ExperimentConfig, Protocol, TestPredictions};
use aia::metrics::{self, Thresholds};
use aia::model::{AttentionHeadConfig, HeadConfig, TResNetConfig};
use aia::threshold::ThresholdSearch;
use aia::train::{LoaderConfig, RunResults, SilentProgress, TrainConfig};
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
                .with_loader(
                    LoaderConfig::new()
                        .with_batch_size(16)
                        .with_image_size(32)
                        .with_num_workers(1),
                )
                .with_epochs(2)
                .with_learning_rate(1e-3),
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
    let evaluation = experiment::evaluate_run::<B>(&run, &device).unwrap();
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
        let recomputed = metrics::measure(
            &predictions.scores,
            &predictions.targets,
            classes,
            &thresholds,
        )
        .unwrap();
        let reported = evaluation.row(name).unwrap_or_else(|| panic!("row {name}"));
        assert_eq!(reported.per_class, recomputed.per_class, "{name}");
        assert_eq!(reported.overall, recomputed.overall, "{name}");
        assert_eq!(reported.n_plus, recomputed.n_plus, "{name}");
    }
    // The 0.5 row is what the training loop measured on the test split for the best epoch.
    let at_half = evaluation.row("threshold 0.5").unwrap();
    let logged = &results.epochs[best - 1].metrics;
    assert!((at_half.per_class.f1 - logged.per_class.f1).abs() < 1e-6);
    assert_eq!(at_half.n_plus, logged.n_plus);

    // Annotation with the exact thresholds, written three ways.
    let annotator =
        Annotator::<B>::from_run(&run, ThresholdSource::Mcc(ThresholdSearch::Exact), &device)
            .unwrap();
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

    run_travels(&run, &paths, &annotations, &predictions.labels);
}

/// The run folder alone annotates: moved elsewhere with its data set deleted, it gives the same
/// annotations, and so does the one file it exports.
fn run_travels(
    run: &Path,
    paths: &[std::path::PathBuf],
    expected: &[ImageAnnotation],
    labels: &[String],
) {
    let device = Default::default();
    let elsewhere = tempfile::tempdir().unwrap();
    let photos: Vec<_> = paths
        .iter()
        .map(|p| {
            let copy = elsewhere.path().join(p.file_name().unwrap());
            std::fs::copy(p, &copy).unwrap();
            copy
        })
        .collect();
    let moved = elsewhere.path().join("moved-run");
    std::fs::rename(run, &moved).unwrap();
    let data = run.parent().unwrap().join("Synthetic");
    std::fs::remove_dir_all(&data).unwrap();

    let same_labels = |got: &[ImageAnnotation], why: &str| {
        assert_eq!(got.len(), expected.len(), "{why}");
        for (got, want) in got.iter().zip(expected) {
            assert_eq!(got.labels, want.labels, "{why}: {}", got.image.display());
        }
    };
    let annotator = Annotator::<B>::from_run(
        &moved,
        ThresholdSource::Mcc(ThresholdSearch::Exact),
        &device,
    )
    .unwrap();
    assert_eq!(annotator.labels(), labels);
    same_labels(&annotator.annotate(&photos).unwrap(), "moved run");
    assert!(!data.exists(), "the data set was read or regenerated");

    let file = elsewhere.path().join("model.safetensors");
    annotator.export(&file).unwrap();
    let exported =
        Annotator::<B>::from_export(&file, ThresholdSource::Mcc(ThresholdSearch::Exact), &device)
            .unwrap();
    assert_eq!(exported.thresholds(), annotator.thresholds());
    let mut manifest = exported.manifest().clone();
    assert_eq!(
        manifest.thresholds.take().as_deref(),
        Some(annotator.thresholds())
    );
    assert_eq!(
        serde_json::to_value(&manifest).unwrap(),
        serde_json::to_value(annotator.manifest()).unwrap()
    );
    same_labels(&exported.annotate(&photos).unwrap(), "exported model");
    let fixed = Annotator::<B>::from_export(&file, ThresholdSource::Global(0.25), &device).unwrap();
    assert!(fixed.thresholds().iter().all(|&t| t == 0.25));
    // The weights are timm's names and layouts: the file is also a plain timm checkpoint.
    let manifest = exported.manifest();
    manifest.model.init::<B>(&device).load_timm(&file).unwrap();

    // A safetensors file without the manifest is refused with a message naming it.
    let plain = elsewhere.path().join("plain.safetensors");
    manifest
        .model
        .init::<B>(&device)
        .save_safetensors(&plain)
        .unwrap();
    let err = Annotator::<B>::from_export(
        &plain,
        ThresholdSource::Mcc(ThresholdSearch::Exact),
        &device,
    )
    .err()
    .expect("no manifest")
    .to_string();
    assert!(
        err.contains("plain.safetensors") && err.contains("not a model exported"),
        "{err}"
    );
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
                .with_loader(
                    LoaderConfig::new()
                        .with_batch_size(16)
                        .with_image_size(32)
                        .with_num_workers(1),
                )
                .with_epochs(1),
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
    skipping.train.loader.batch_size = 31;
    let outcome = experiment::train::<AD>(&skipping, &root.path().join("b"), &device, |t| {
        t.with_progress(SilentProgress)
    })
    .unwrap();
    assert!(outcome.results.completed);
    assert_eq!(outcome.results.steps_per_epoch, 1);
}

#[test]
fn the_hold_out_protocol_picks_and_calibrates_on_held_out_training_images() {
    let root = tempfile::tempdir().unwrap();
    let run = root.path().join("run");
    let config = ExperimentConfig::new("Synthetic".into())
        .with_data_root(root.path().to_path_buf())
        .with_synthetic(
            SyntheticConfig::new()
                .with_seed(5)
                .with_train_images(48)
                .with_test_images(16)
                .with_min_size(32)
                .with_max_size(40),
        )
        .with_model(TResNetConfig::new([1, 1, 1, 1]).with_width(0.25))
        .with_validation(Some(0.25))
        .with_train(
            TrainConfig::new()
                .with_loader(
                    LoaderConfig::new()
                        .with_batch_size(16)
                        .with_image_size(32)
                        .with_num_workers(1),
                )
                .with_epochs(1)
                .with_learning_rate(1e-3),
        );
    let device = Default::default();
    let outcome =
        experiment::train::<AD>(&config, &run, &device, |t| t.with_progress(SilentProgress))
            .unwrap();
    let evaluation = experiment::evaluate_run::<B>(&run, &device).unwrap();
    let protocol = Protocol::HoldOut { fraction: 0.25 };
    assert_eq!(evaluation.protocol, protocol);
    let results: serde_json::Value = read_json(&run.join("results.json"));
    assert_eq!(
        results["run_info"]["protocol"],
        serde_json::to_value(protocol).unwrap()
    );

    // The held-out images: 12 of the training split, the same the seed draws again.
    let folder = experiment::open_data(&config).unwrap().1;
    let vocabulary = folder.vocabulary().clone();
    let held_out = AnnotationSplit::read(
        run.join(experiment::VALIDATION_FILE),
        Some((vocabulary.clone(), folder.vocabulary_path())),
    )
    .unwrap();
    let drawn = folder.train().hold_out(0.25, config.train.seed).unwrap().1;
    assert_eq!(held_out.samples(), drawn.samples());
    assert_eq!(held_out.len(), 12);
    let train_names: Vec<&str> = folder
        .train()
        .samples()
        .iter()
        .map(|s| s.image_name.as_str())
        .collect();
    assert!(held_out
        .samples()
        .iter()
        .all(|s| train_names.contains(&s.image_name.as_str())));

    // Scored independently, the hold-out gives the epoch's metrics and the grid thresholds.
    let annotator = Annotator::<B>::from_run(&run, ThresholdSource::Global(0.5), &device).unwrap();
    let paths: Vec<_> = held_out
        .samples()
        .iter()
        .map(|s| folder.images_dir().join(&s.image_name))
        .collect();
    let scores = annotator.scores(&paths).unwrap();
    let targets = held_out.targets();
    let classes = vocabulary.len();
    let at_half = metrics::measure(&scores, &targets, classes, &Thresholds::Global(0.5)).unwrap();
    let logged = &outcome.results.epochs[0].metrics;
    assert!(
        (at_half.per_class.f1 - logged.per_class.f1).abs() < 1e-6,
        "hold-out F1 {} against the epoch's {}",
        at_half.per_class.f1,
        logged.per_class.f1
    );
    let grid = aia::threshold::calibrate(
        &scores,
        &targets,
        classes,
        aia::threshold::ThresholdSearch::Grid,
    )
    .unwrap();
    assert_eq!(grid.thresholds, evaluation.grid.thresholds);
}

#[test]
fn attention_maps_reach_the_annotations_and_the_sheet() {
    let device = Default::default();
    let dir = tempfile::tempdir().unwrap();
    let paths: Vec<_> = (0..3u8)
        .map(|i| {
            let path = dir.path().join(format!("{i}.png"));
            image::RgbImage::from_fn(80, 60, |x, y| {
                image::Rgb([x as u8 * 3, y as u8 * 4, i * 80])
            })
            .save(&path)
            .unwrap();
            path
        })
        .collect();
    let labels: Vec<String> = ["sky", "sea", "sun"].map(String::from).to_vec();
    let model = TResNetConfig::new([1, 1, 1, 1])
        .with_width(0.25)
        .with_num_classes(3)
        .with_head(HeadConfig::Attention(
            AttentionHeadConfig::new(0)
                .with_hidden(16)
                .with_num_heads(2)
                .with_feedforward(32),
        ));
    let manifest = ModelManifest {
        data: "none".into(),
        model: model.clone(),
        labels: labels.clone(),
        normalization: Normalization::IMAGENET,
        image_size: 64,
        thresholds: None,
    };
    // Every word passes a threshold of 0: each gets its map.
    let annotator = Annotator::<B>::new(
        model.init(&device),
        manifest,
        &Thresholds::Global(0.0),
        &device,
    )
    .unwrap();
    let mut annotations = annotator.annotate(&paths).unwrap();
    for annotation in &annotations {
        assert_eq!(annotation.labels.len(), 3);
        for label in &annotation.labels {
            let map = label.attention.as_ref().expect("a map per word");
            // 64 pixels at stride 32: a 2 x 2 map, a distribution over its cells.
            assert_eq!((map.height, map.width, map.weights.len()), (2, 2, 4));
            let sum: f32 = map.weights.iter().sum();
            assert!((sum - 1.0).abs() < 1e-5, "{sum}");
        }
    }
    annotations[0].truth = Some(vec!["sky".into(), "moon".into()]);
    let sheet = dir.path().join("sheet.html");
    annotate::write_html(&sheet, "maps", &annotations).unwrap();
    let html = std::fs::read_to_string(&sheet).unwrap();
    assert_eq!(html.matches("data-map=\"2 2 ").count(), 9);
    assert_eq!(html.matches("<canvas>").count(), 3);
    // Correct, wrong and missed words are told apart.
    assert_eq!(
        html.matches("class=\"hit\"").count(),
        2,
        "sky predicted and in the truth"
    );
    assert_eq!(html.matches("class=\"wrong\"").count(), 2, "sea and sun");
    assert_eq!(html.matches("class=\"miss\"").count(), 1, "moon");
}
