//! The real annotation files of Corel-5k, IAPR TC-12 and ESP Game, when `AIA_DATASETS` points to
//! a folder holding them (CI sets it); skipped otherwise. The expected figures are those the
//! field reports for these sets, not outputs of this crate.

use std::path::PathBuf;

use aia::data::{dataset_stats, AnnotationFolder, DatasetPreset};

fn datasets() -> Option<PathBuf> {
    let dir = PathBuf::from(std::env::var_os("AIA_DATASETS")?);
    dir.is_dir().then_some(dir)
}

/// Whether `x` rounds to `shown`, which is given with `decimals` decimals.
fn rounds_to(x: f64, shown: f64, decimals: i32) -> bool {
    (x - shown).abs() <= 0.5 * 10f64.powi(-decimals) + 1e-9
}

fn check(preset: DatasetPreset, labels_per_image: f64, images_per_label: f64) {
    let Some(root) = datasets() else {
        println!("skipped: AIA_DATASETS is not set to an existing folder");
        return;
    };
    let folder = AnnotationFolder::open(root.join(preset.folder_name())).unwrap();
    assert!(folder.vocabulary_path().ends_with(preset.vocabulary_file()));
    let stats = dataset_stats(&folder, 5);
    println!("{preset}:\n{stats}");
    assert_eq!(stats.train_images, preset.train_images());
    assert_eq!(stats.test_images, preset.test_images());
    assert_eq!(stats.labels, preset.num_labels());
    assert!(
        rounds_to(stats.mean_labels_per_image, labels_per_image, 2),
        "{preset}: {} labels per image",
        stats.mean_labels_per_image
    );
    assert!(
        rounds_to(stats.mean_images_per_label, images_per_label, 1),
        "{preset}: {} images per label",
        stats.mean_images_per_label
    );
    // Frequencies are sorted and the two ends are consistent.
    let most = &stats.most_frequent;
    let least = &stats.least_frequent;
    assert!(most.windows(2).all(|w| w[0].1 >= w[1].1));
    assert!(least.windows(2).all(|w| w[0].1 <= w[1].1));
    assert!(most[0].1 >= least[0].1);
}

#[test]
fn corel5k_statistics() {
    check(DatasetPreset::Corel5k, 3.38, 58.5);
    if let Some(root) = datasets() {
        let folder = AnnotationFolder::open(root.join("Corel-5k")).unwrap();
        let stats = dataset_stats(&folder, 3);
        // Corel-5k's training split has 7 images without a label; "water" is its commonest.
        assert_eq!(stats.unlabeled_train_images, 7);
        assert_eq!(stats.most_frequent[0].0, "water");
    }
}

#[test]
fn iaprtc12_statistics() {
    check(DatasetPreset::IaprTc12, 5.73, 347.7);
}

#[test]
fn espgame_statistics() {
    check(DatasetPreset::EspGame, 4.68, 326.7);
}
