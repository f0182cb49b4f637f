//! Label statistics of a data set, as the papers of the field report them.

use std::fmt;

use super::{AnnotationFolder, AnnotationSplit};

/// A data set's numbers. The per-label figures are over the training split.
#[derive(Debug, Clone, PartialEq)]
pub struct DatasetStats {
    /// Number of training images.
    pub train_images: usize,
    /// Number of test images.
    pub test_images: usize,
    /// Number of labels in the vocabulary.
    pub labels: usize,
    /// Mean number of labels per training image.
    pub mean_labels_per_image: f64,
    /// Mean number of training images per label (label occurrences / vocabulary size).
    pub mean_images_per_label: f64,
    /// Largest number of labels on one training image.
    pub max_labels_per_image: usize,
    /// The least frequent labels of the training split, with their image counts, rarest first
    /// (ties by vocabulary order).
    pub least_frequent: Vec<(String, usize)>,
    /// The most frequent labels of the training split, with their image counts, commonest first
    /// (ties by vocabulary order).
    pub most_frequent: Vec<(String, usize)>,
    /// Labels on no training image.
    pub labels_absent_from_train: usize,
    /// Training images with no label.
    pub unlabeled_train_images: usize,
    /// Test images with no label.
    pub unlabeled_test_images: usize,
}

/// The statistics of a folder's two splits, listing `top` least and most frequent labels.
pub fn dataset_stats(folder: &AnnotationFolder, top: usize) -> DatasetStats {
    split_stats(folder.train(), folder.test(), top)
}

/// The statistics of a train and a test split sharing a vocabulary.
pub fn split_stats(train: &AnnotationSplit, test: &AnnotationSplit, top: usize) -> DatasetStats {
    let vocab = train.vocabulary();
    let counts = label_counts(train);
    let occurrences: usize = counts.iter().sum();
    let mut order: Vec<usize> = (0..counts.len()).collect();
    order.sort_by_key(|&l| (counts[l], l));
    let least = order.iter().take(top);
    let named = |&l: &usize| (vocab.labels()[l].clone(), counts[l]);
    let least_frequent = least.map(named).collect();
    order.sort_by_key(|&l| (std::cmp::Reverse(counts[l]), l));
    let most_frequent = order.iter().take(top).map(named).collect();
    let ratio = |a: usize, b: usize| if b == 0 { 0.0 } else { a as f64 / b as f64 };
    let unlabeled =
        |s: &AnnotationSplit| s.samples().iter().filter(|s| s.labels.is_empty()).count();
    DatasetStats {
        train_images: train.len(),
        test_images: test.len(),
        labels: vocab.len(),
        mean_labels_per_image: ratio(occurrences, train.len()),
        mean_images_per_label: ratio(occurrences, vocab.len()),
        max_labels_per_image: train
            .samples()
            .iter()
            .map(|s| s.labels.len())
            .max()
            .unwrap_or(0),
        least_frequent,
        most_frequent,
        labels_absent_from_train: counts.iter().filter(|&&c| c == 0).count(),
        unlabeled_train_images: unlabeled(train),
        unlabeled_test_images: unlabeled(test),
    }
}

/// How many images of `split` carry each label, in vocabulary order.
pub fn label_counts(split: &AnnotationSplit) -> Vec<usize> {
    let mut counts = vec![0usize; split.vocabulary().len()];
    for s in split.samples() {
        for &l in &s.labels {
            counts[l] += 1;
        }
    }
    counts
}

impl fmt::Display for DatasetStats {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let list = |v: &[(String, usize)]| {
            v.iter()
                .map(|(l, c)| format!("{l} ({c})"))
                .collect::<Vec<_>>()
                .join(", ")
        };
        writeln!(f, "train images            {}", self.train_images)?;
        writeln!(f, "test images             {}", self.test_images)?;
        writeln!(f, "labels                  {}", self.labels)?;
        writeln!(
            f,
            "labels per train image  {:.2} (max {})",
            self.mean_labels_per_image, self.max_labels_per_image
        )?;
        writeln!(
            f,
            "train images per label  {:.1}",
            self.mean_images_per_label
        )?;
        writeln!(f, "least frequent          {}", list(&self.least_frequent))?;
        writeln!(f, "most frequent           {}", list(&self.most_frequent))?;
        writeln!(
            f,
            "labels absent in train  {}",
            self.labels_absent_from_train
        )?;
        write!(
            f,
            "images with no label    {} train, {} test",
            self.unlabeled_train_images, self.unlabeled_test_images
        )
    }
}
