//! A Burn `Dataset` of decoded images and their multi-hot targets.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use burn::data::dataset::Dataset;
use image::RgbImage;
use rayon::prelude::*;

use super::decode::{load_rgb8, probe};
use super::split::multi_hot;
use super::{AnnotationFolder, AnnotationSample, AnnotationSplit, DataError, Vocabulary};

/// One decoded sample.
#[derive(Debug, Clone)]
pub struct AnnotationItem {
    /// The item's index in its data set (the sample's index in its split unless samples were
    /// skipped); stable under shuffling, it seeds the item's random flips.
    pub index: usize,
    /// The image's file name, as in the annotation file.
    pub image_name: String,
    /// The image file.
    pub path: PathBuf,
    /// The decoded image, RGB8, at its original size.
    pub image: RgbImage,
    /// Multi-hot target, one column per vocabulary label.
    pub target: Vec<f32>,
}

/// How much of every image [`AnnotationDataset::open`] checks up front.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ImageCheck {
    /// Nothing: fastest, for folders known to be good.
    None,
    /// Existence and a readable, non-zero-sized header (reads a few bytes per file): catches
    /// missing, empty and most corrupt files, not truncated image data.
    #[default]
    Headers,
    /// A full decode of every image (in parallel): catches truncated data too, so that iterating
    /// the data set cannot meet a bad image. Costs about one epoch of decoding.
    Full,
}

/// What to do with an image that fails its check.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum OnBadImage {
    /// Return the error (of the lowest-index bad sample).
    #[default]
    Fail,
    /// Drop the sample with a warning (`log::warn!`), and record it in
    /// [`AnnotationDataset::skipped`]: for incomplete downloads.
    Skip,
}

/// A sample dropped by [`OnBadImage::Skip`], with the reason.
#[derive(Debug)]
pub struct SkippedImage {
    /// Its index in the split.
    pub index: usize,
    /// Why it was dropped.
    pub error: DataError,
}

/// A Burn [`Dataset`] over a split: item `i` is sample `i`'s image, decoded to RGB8, with its
/// multi-hot target.
///
/// Decoding happens in [`get`](Dataset::get), i.e. in the data loader's worker threads. As
/// Burn's `get` cannot return an error, bad images are meant to be found by the check made at
/// [`open`](Self::open); [`try_get`](Self::try_get) is the fallible access. An image that fails
/// later anyway (changed on disk, or truncated data under [`ImageCheck::Headers`]) is, under
/// [`OnBadImage::Fail`], a panic naming the file; under [`OnBadImage::Skip`], logged, counted in
/// [`late_failures`](Self::late_failures) and replaced by the next readable sample.
#[derive(Debug, Clone)]
pub struct AnnotationDataset {
    images_dir: PathBuf,
    /// Indices into `split.samples()` of the samples kept.
    kept: Vec<usize>,
    split: AnnotationSplit,
    on_bad: OnBadImage,
    skipped: Arc<Vec<SkippedImage>>,
    late_failures: Arc<AtomicUsize>,
}

impl AnnotationDataset {
    /// The data set of `split`, whose images are in `folder`'s `images/`, checking them as
    /// `check` says and failing on the first bad one.
    pub fn open(
        folder: &AnnotationFolder,
        split: &AnnotationSplit,
        check: ImageCheck,
    ) -> Result<Self, DataError> {
        Self::with_images_dir(folder.images_dir(), split.clone(), check, OnBadImage::Fail)
    }

    /// [`open`](Self::open) with bad images dropped (warning and count) instead of failing.
    pub fn open_skipping(
        folder: &AnnotationFolder,
        split: &AnnotationSplit,
        check: ImageCheck,
    ) -> Result<Self, DataError> {
        Self::with_images_dir(folder.images_dir(), split.clone(), check, OnBadImage::Skip)
    }

    /// The general constructor: images of `split` are looked up in `images_dir`.
    ///
    /// Image names that could lead outside `images_dir` are refused
    /// ([`DataError::UnsafeImageName`]), as [`AnnotationSplit::parse`] does.
    pub fn with_images_dir(
        images_dir: impl Into<PathBuf>,
        split: AnnotationSplit,
        check: ImageCheck,
        on_bad: OnBadImage,
    ) -> Result<Self, DataError> {
        let images_dir = images_dir.into();
        // Splits built in memory (`AnnotationSplit::new`) have not been through the parser's
        // check, and every name is about to be joined to `images_dir`.
        for (index, sample) in split.samples().iter().enumerate() {
            super::split::check_image_name(&sample.image_name, split.path(), index)?;
        }
        let checks: Vec<Result<(), DataError>> = match check {
            ImageCheck::None => vec![],
            ImageCheck::Headers => split
                .samples()
                .par_iter()
                .enumerate()
                .map(|(i, s)| probe(&images_dir.join(&s.image_name), i).map(|_| ()))
                .collect(),
            ImageCheck::Full => split
                .samples()
                .par_iter()
                .enumerate()
                .map(|(i, s)| load_rgb8(&images_dir.join(&s.image_name), i).map(|_| ()))
                .collect(),
        };
        let mut kept = Vec::with_capacity(split.len());
        let mut skipped = Vec::new();
        let mut checks = checks.into_iter();
        for i in 0..split.len() {
            match checks.next() {
                Some(Err(error)) => match on_bad {
                    OnBadImage::Fail => return Err(error),
                    OnBadImage::Skip => {
                        log::warn!("skipping sample {i}: {error}");
                        skipped.push(SkippedImage { index: i, error });
                    }
                },
                _ => kept.push(i),
            }
        }
        if !skipped.is_empty() {
            log::warn!(
                "{}: skipped {} of {} images that could not be read",
                split.path().display(),
                skipped.len(),
                split.len()
            );
        }
        Ok(Self {
            images_dir,
            kept,
            split,
            on_bad,
            skipped: Arc::new(skipped),
            late_failures: Arc::new(AtomicUsize::new(0)),
        })
    }

    /// Item `index` (among the kept samples), or the error that prevents decoding it.
    pub fn try_get(&self, index: usize) -> Result<Option<AnnotationItem>, DataError> {
        let Some(&sample_index) = self.kept.get(index) else {
            return Ok(None);
        };
        let sample = &self.split.samples()[sample_index];
        let path = self.images_dir.join(&sample.image_name);
        let image = load_rgb8(&path, sample_index)?;
        Ok(Some(AnnotationItem {
            index,
            image_name: sample.image_name.clone(),
            path,
            image,
            target: multi_hot(&sample.labels, self.split.vocabulary().len()),
        }))
    }

    /// The samples dropped by [`OnBadImage::Skip`] at opening, with their reasons.
    pub fn skipped(&self) -> &[SkippedImage] {
        &self.skipped
    }

    /// How many times [`get`](Dataset::get) met an unreadable image that the opening check had
    /// not caught, and substituted another (only under [`OnBadImage::Skip`]).
    pub fn late_failures(&self) -> usize {
        self.late_failures.load(Ordering::Relaxed)
    }

    /// The split.
    pub fn split(&self) -> &AnnotationSplit {
        &self.split
    }

    /// The kept sample of item `index`.
    pub fn sample(&self, index: usize) -> Option<&AnnotationSample> {
        self.kept.get(index).map(|&i| &self.split.samples()[i])
    }

    /// The vocabulary (target columns).
    pub fn vocabulary(&self) -> &Arc<Vocabulary> {
        self.split.vocabulary()
    }

    /// The folder the images are read from.
    pub fn images_dir(&self) -> &Path {
        &self.images_dir
    }
}

impl Dataset<AnnotationItem> for AnnotationDataset {
    fn get(&self, index: usize) -> Option<AnnotationItem> {
        match self.try_get(index) {
            Ok(item) => item,
            Err(error) => match self.on_bad {
                OnBadImage::Fail => panic!(
                    "{error} (open the data set with ImageCheck::Full to catch this before \
                     iterating, or with OnBadImage::Skip to skip it)"
                ),
                OnBadImage::Skip => {
                    self.late_failures.fetch_add(1, Ordering::Relaxed);
                    log::warn!("{error}; substituting the next readable image");
                    let n = self.kept.len();
                    (1..n)
                        .map(|k| (index + k) % n)
                        .find_map(|j| self.try_get(j).ok().flatten())
                        .map(|mut item| {
                            item.index = index;
                            item
                        })
                }
            },
        }
    }

    fn len(&self) -> usize {
        self.kept.len()
    }
}
