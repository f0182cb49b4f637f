//! Resume is exact: 2 epochs straight give the same weights, optimizer moments, moving average of
//! the weights and history as 1 epoch, an interruption, a resume and 1 more epoch. Its own test
//! binary with one test, because the backend's RNG (dropout) is process-global and concurrent
//! tests would draw from it.

mod train_support;

use aia::metrics::AnnotationMetrics;
use aia::train::{
    EmaRecord, LoaderConfig, RunResults, ScheduledAdamRecord, SilentProgress, TrainConfig, Trainer,
    Weights, EMA_FILE, MODEL_FILE, OPTIMIZER_FILE,
};
use burn::backend::{Autodiff, Flex};
use burn::record::{FullPrecisionSettings, NamedMpkBytesRecorder, Record, Recorder};
use train_support::{items, loader, measure_epoch, train_loader, Bce, TinyNet};

type B = Autodiff<Flex>;

/// Each epoch's record, wall times left out.
type History = Vec<(
    usize,
    f64,
    f64,
    f64,
    f64,
    AnnotationMetrics,
    Option<EmaRecord>,
)>;

/// The history without wall times.
fn history(results: &RunResults) -> History {
    results
        .epochs
        .iter()
        .map(|r| {
            (
                r.epoch,
                r.train_loss,
                r.val_loss,
                r.learning_rate,
                r.momentum,
                r.metrics.clone(),
                r.ema.clone(),
            )
        })
        .collect()
}

/// The optimizer state of the last checkpoint as JSON (whose maps are sorted).
fn optimizer_state(dir: &std::path::Path) -> serde_json::Value {
    let path = dir.join("checkpoints/epoch-0002").join(OPTIMIZER_FILE);
    let recorder = NamedMpkBytesRecorder::<FullPrecisionSettings>::default();
    let record: ScheduledAdamRecord<TinyNet<B>, B> =
        Recorder::<B>::load(&recorder, std::fs::read(path).unwrap(), &Default::default()).unwrap();
    let value = serde_json::to_value(record.into_item::<FullPrecisionSettings>()).unwrap();
    assert!(
        value.as_object().is_some_and(|map| map.len() == 4),
        "4 parameters: {value}"
    );
    value
}

#[test]
fn two_epochs_straight_equal_one_epoch_then_resume_then_one_more() {
    resume_is_exact(None);
    // A decay low enough that 12 updates move the average well away from its start.
    resume_is_exact(Some(0.7));
}

fn resume_is_exact(ema_decay: Option<f64>) {
    let device = Default::default();
    let config = TrainConfig::new()
        .with_loader(LoaderConfig::new().with_batch_size(8))
        .with_epochs(2)
        .with_learning_rate(0.05)
        .with_seed(3)
        .with_ema_decay(ema_decay);
    let train = train_loader::<B>(items(48, 11), 8, config.seed);
    let valid = loader::<Flex>(items(16, 12), 8, None);
    let mut measure_epoch = measure_epoch;
    let initial = TinyNet::<B>::new(&device);

    let straight_dir = tempfile::tempdir().unwrap();
    let straight = Trainer::new(config.clone(), straight_dir.path())
        .with_progress(SilentProgress)
        .fit(
            initial.clone(),
            &Bce,
            &train,
            valid.clone(),
            &mut measure_epoch,
            &device,
        )
        .unwrap();

    let resumed_dir = tempfile::tempdir().unwrap();
    let first = Trainer::new(config.clone(), resumed_dir.path())
        .with_progress(SilentProgress)
        .with_stop_after_epoch(1)
        .fit(
            initial.clone(),
            &Bce,
            &train,
            valid.clone(),
            &mut measure_epoch,
            &device,
        )
        .unwrap();
    assert_eq!(first.results.epochs.len(), 1);
    assert!(!first.results.completed);
    // Another process would start from a freshly initialised model: the checkpoint replaces it.
    let resumed = Trainer::new(config.clone(), resumed_dir.path())
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
        .unwrap();
    assert_eq!(resumed.resumed_from, Some(1));
    assert!(resumed.results.completed);

    let read = |dir: &std::path::Path, file: &str| {
        std::fs::read(dir.join("checkpoints/epoch-0002").join(file)).unwrap()
    };
    assert!(
        read(straight_dir.path(), MODEL_FILE) == read(resumed_dir.path(), MODEL_FILE),
        "the weights differ"
    );
    // The optimizer file is a hash map (its byte order varies): compare its content.
    assert_eq!(
        optimizer_state(straight_dir.path()),
        optimizer_state(resumed_dir.path()),
        "the optimizer moments differ"
    );
    if ema_decay.is_some() {
        assert!(
            read(straight_dir.path(), EMA_FILE) == read(resumed_dir.path(), EMA_FILE),
            "the moving averages differ"
        );
        assert!(
            read(straight_dir.path(), EMA_FILE) != read(straight_dir.path(), MODEL_FILE),
            "the moving average is the trained model"
        );
        assert!(straight.results.epochs.iter().all(|r| r.ema.is_some()));
    } else {
        assert!(!straight_dir
            .path()
            .join("checkpoints/epoch-0002")
            .join(EMA_FILE)
            .exists());
        assert_eq!(straight.results.best_weights, Weights::Trained);
    }
    assert_eq!(history(&straight.results), history(&resumed.results));
    assert_eq!(straight.results.best_epoch, resumed.results.best_epoch);
    assert_eq!(straight.results.best_weights, resumed.results.best_weights);
    assert_eq!(
        std::fs::read(straight.paths.best_model()).unwrap(),
        std::fs::read(resumed.paths.best_model()).unwrap()
    );

    // The check can fail: a run that only differs by the seed (dropout, shuffling) ends elsewhere.
    let other_dir = tempfile::tempdir().unwrap();
    let other_config = config.clone().with_seed(4);
    let other_train = train_loader::<B>(items(48, 11), 8, other_config.seed);
    Trainer::new(other_config, other_dir.path())
        .with_progress(SilentProgress)
        .fit(
            initial,
            &Bce,
            &other_train,
            valid,
            &mut measure_epoch,
            &device,
        )
        .unwrap();
    assert!(read(straight_dir.path(), MODEL_FILE) != read(other_dir.path(), MODEL_FILE));
}
