//! The synthetic set: layout, determinism, sizes, label counts and long-tailed frequencies.

use std::collections::BTreeMap;
use std::path::Path;

use aia::data::stats::label_counts;
use aia::data::synthetic::{SyntheticConfig, CONFIG_FILE, VOCABULARY_FILE};
use aia::data::{dataset_stats, AnnotationDataset, AnnotationFolder, DataError, ImageCheck};
use burn::data::dataset::Dataset;

/// Every file under `dir`, by relative path, with its bytes.
fn snapshot(dir: &Path) -> BTreeMap<String, Vec<u8>> {
    let mut out = BTreeMap::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                stack.push(p);
            } else {
                let rel = p.strip_prefix(dir).unwrap().to_string_lossy().into_owned();
                out.insert(rel, std::fs::read(&p).unwrap());
            }
        }
    }
    out
}

fn small() -> SyntheticConfig {
    SyntheticConfig::new()
        .with_seed(5)
        .with_train_images(60)
        .with_test_images(20)
}

#[test]
fn same_seed_gives_identical_bytes_and_another_seed_does_not() {
    let tmp = tempfile::tempdir().unwrap();
    let a = tmp.path().join("a");
    let b = tmp.path().join("b");
    small().generate(&a).unwrap();
    // Another thread count must not matter either.
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(1)
        .build()
        .unwrap();
    pool.install(|| small().generate(&b)).unwrap();
    let (sa, sb) = (snapshot(&a), snapshot(&b));
    assert_eq!(sa.len(), 80 + 4);
    assert!(sa == sb, "two generations with seed 5 differ");

    let c = tmp.path().join("c");
    small().with_seed(6).generate(&c).unwrap();
    let sc = snapshot(&c);
    assert_ne!(sa.get("train.json"), sc.get("train.json"));
    assert_ne!(sa.get("images/00000.jpeg"), sc.get("images/00000.jpeg"));
}

#[test]
fn layout_counts_and_image_sizes() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("Synthetic");
    let config = small().with_min_size(64).with_max_size(96);
    let folder = config.generate(&dir).unwrap();
    for f in ["train.json", "test.json", VOCABULARY_FILE, CONFIG_FILE] {
        assert!(dir.join(f).is_file(), "{f} missing");
    }
    // No temporary folder left behind.
    assert_eq!(std::fs::read_dir(tmp.path()).unwrap().count(), 1);
    // It reads back as any data set folder.
    let reopened = AnnotationFolder::open(&dir).unwrap();
    assert_eq!(reopened.train().len(), 60);
    assert_eq!(reopened.test().len(), 20);
    assert!(reopened.vocabulary().len() >= 40);
    assert_eq!(folder.vocabulary(), reopened.vocabulary());
    let ds = AnnotationDataset::open(&folder, folder.train(), ImageCheck::Full).unwrap();
    for i in 0..ds.len() {
        let (w, h) = ds.get(i).unwrap().image.dimensions();
        assert!((64..=96).contains(&w) && (64..=96).contains(&h), "{w}x{h}");
    }
    // Train and test images are distinct files.
    let train: Vec<_> = folder
        .train()
        .samples()
        .iter()
        .map(|s| &s.image_name)
        .collect();
    assert!(folder
        .test()
        .samples()
        .iter()
        .all(|s| !train.contains(&&s.image_name)));
}

#[test]
fn default_set_has_long_tailed_labels_two_to_six_per_image() {
    let tmp = tempfile::tempdir().unwrap();
    let started = std::time::Instant::now();
    let config = SyntheticConfig::new();
    let folder = config.generate(tmp.path().join("Synthetic")).unwrap();
    println!("default synthetic set generated in {:?}", started.elapsed());
    assert_eq!(folder.train().len(), 2000);
    assert_eq!(folder.test().len(), 500);
    let c = folder.vocabulary().len();
    assert!(c >= 40, "{c} labels");
    for split in [folder.train(), folder.test()] {
        for s in split.samples() {
            assert!(
                (2..=6).contains(&s.labels.len()),
                "{}: {} labels",
                s.image_name,
                s.labels.len()
            );
        }
    }
    // Every label occurs, and the frequencies are long-tailed like the real sets': the
    // commonest label is far more frequent than the rarest, the top tenth of the labels carries
    // a large share of the occurrences, and half the labels are rarer than the mean.
    let mut counts = label_counts(folder.train());
    counts.sort_unstable_by(|a, b| b.cmp(a));
    let total: usize = counts.iter().sum();
    println!("train label counts, commonest first: {counts:?}");
    assert!(*counts.last().unwrap() >= 10, "a label is almost absent");
    assert!(counts[0] >= 10 * counts[c - 1], "{counts:?}");
    let top = counts[..c / 10].iter().sum::<usize>();
    assert!(top * 4 >= total, "top tenth holds {top} of {total}");
    let mean = total as f64 / c as f64;
    assert!(counts.iter().filter(|&&n| (n as f64) < mean).count() * 2 >= c);
    let stats = dataset_stats(&folder, 3);
    assert_eq!(stats.unlabeled_train_images, 0);
    assert!((3.0..=5.5).contains(&stats.mean_labels_per_image));
}

#[test]
fn ensure_reuses_a_matching_set_and_regenerates_otherwise() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("Synthetic");
    small().ensure(&dir).unwrap();
    let marker = dir.join("images/00000.jpeg");
    let before = std::fs::metadata(&marker).unwrap().modified().unwrap();
    std::thread::sleep(std::time::Duration::from_millis(20));
    small().ensure(&dir).unwrap();
    assert_eq!(
        std::fs::metadata(&marker).unwrap().modified().unwrap(),
        before
    );
    let other = small().with_train_images(30);
    let folder = other.ensure(&dir).unwrap();
    assert_eq!(folder.train().len(), 30);
}

#[test]
fn refuses_to_overwrite_a_foreign_folder_and_bad_configs() {
    let tmp = tempfile::tempdir().unwrap();
    std::fs::write(tmp.path().join("precious.txt"), "keep me").unwrap();
    let err = small().generate(tmp.path()).unwrap_err();
    assert!(matches!(err, DataError::Config(_)), "{err:?}");
    assert!(tmp.path().join("precious.txt").exists());
    let err = small()
        .with_min_size(100)
        .with_max_size(50)
        .generate(tmp.path().join("x"))
        .unwrap_err();
    assert!(matches!(err, DataError::Config(_)), "{err:?}");
}

#[test]
fn built_in_normalization_fits_a_generated_set() {
    use aia::data::synthetic::NORMALIZATION;
    use aia::data::{load_rgb8, Normalization};
    let tmp = tempfile::tempdir().unwrap();
    let folder = SyntheticConfig::new()
        .with_seed(3)
        .with_train_images(300)
        .with_test_images(1)
        .generate(tmp.path().join("s"))
        .unwrap();
    let images: Vec<_> = folder
        .train()
        .samples()
        .iter()
        .map(|s| load_rgb8(&folder.images_dir().join(&s.image_name), 0).unwrap())
        .collect();
    let measured = Normalization::measure(&images);
    for c in 0..3 {
        assert!(
            (measured.mean[c] - NORMALIZATION.mean[c]).abs() < 0.03
                && (measured.std[c] - NORMALIZATION.std[c]).abs() < 0.03,
            "measured {measured:?}, built in {NORMALIZATION:?}"
        );
    }
}

#[test]
fn data_source_synthetic_generates_on_first_open() {
    use aia::data::DataSource;
    let tmp = tempfile::tempdir().unwrap();
    let folder = DataSource::Synthetic.open(tmp.path()).unwrap();
    assert_eq!(folder.root(), tmp.path().join("Synthetic"));
    assert_eq!(folder.train().len(), SyntheticConfig::new().train_images);
    // A named preset that is not there is an error naming its folder, not a generation.
    let err = "Corel-5k"
        .parse::<DataSource>()
        .unwrap()
        .open(tmp.path())
        .unwrap_err();
    assert!(err.to_string().contains("Corel-5k"), "{err}");
}
