//! Annotating new images with a trained model: labels and scores per image, written as JSON,
//! CSV or an HTML contact sheet.
//!
//! ```no_run
//! use aia::annotate::{Annotator, ThresholdChoice};
//! type B = burn::backend::Flex;
//! # fn main() -> aia::Result<()> {
//! let annotator = Annotator::<B>::from_run("runs/corel".as_ref(), ThresholdChoice::MccExact, &Default::default())?;
//! for image in annotator.annotate(&["photo.jpg".into()])? {
//!     println!("{}: {:?}", image.image.display(), image.labels);
//! }
//! # Ok(()) }
//! ```

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::str::FromStr;

use burn::data::dataloader::batcher::Batcher;
use burn::tensor::activation::sigmoid;
use burn::tensor::backend::Backend;
use rayon::prelude::*;
use serde::{Deserialize, Serialize};

use crate::data::{
    load_rgb8, AnnotationBatcher, AnnotationBatcherConfig, AnnotationItem, DataError,
};
use crate::experiment::{load_best, open_data, Evaluation, EVALUATION_FILE};
use crate::metrics::Thresholds;
use crate::model::TResNet;
use crate::train::TrainError;
use crate::Result;

/// Which per-label thresholds an [`Annotator`] uses.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum ThresholdChoice {
    /// One threshold for every label.
    Fixed(f32),
    /// The MCC thresholds on the paper's grid, from the run's `evaluation.json`.
    MccGrid,
    /// The exact MCC thresholds, from the run's `evaluation.json`.
    MccExact,
}

impl FromStr for ThresholdChoice {
    type Err = String;

    /// `grid`, `exact`, or a number such as `0.5`.
    fn from_str(s: &str) -> std::result::Result<Self, Self::Err> {
        match s.to_ascii_lowercase().as_str() {
            "grid" => Ok(Self::MccGrid),
            "exact" => Ok(Self::MccExact),
            other => other
                .parse::<f32>()
                .ok()
                .filter(|t| (0.0..=1.0).contains(t))
                .map(Self::Fixed)
                .ok_or_else(|| {
                    format!("unknown threshold `{s}`: expected grid, exact or a number in [0, 1]")
                }),
        }
    }
}

/// A label given to an image, with its score.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LabelScore {
    /// The word.
    pub label: String,
    /// The model's sigmoid score.
    pub score: f32,
}

/// The labels predicted for one image, best first.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ImageAnnotation {
    /// The image file.
    pub image: PathBuf,
    /// Labels whose score is above their threshold, by decreasing score.
    pub labels: Vec<LabelScore>,
    /// The ground truth, when known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub truth: Option<Vec<String>>,
}

/// A trained model, its vocabulary and thresholds, and the preprocessing it was trained with.
pub struct Annotator<B: Backend> {
    model: TResNet<B>,
    labels: Vec<String>,
    thresholds: Vec<f32>,
    batcher: AnnotationBatcher,
    batch_size: usize,
    device: B::Device,
}

impl<B: Backend> Annotator<B> {
    /// An annotator over `model`, whose outputs are `labels`, cut at `thresholds`, with images
    /// prepared by `batcher` (its size and normalisation must be the training ones).
    pub fn new(
        model: TResNet<B>,
        labels: Vec<String>,
        thresholds: &Thresholds,
        batcher: AnnotationBatcher,
        device: &B::Device,
    ) -> Result<Self> {
        let thresholds = thresholds.to_vec(labels.len())?;
        if model.num_classes() != labels.len() {
            return Err(crate::model::ModelError::InvalidInput(format!(
                "the model has {} outputs but the vocabulary {} labels",
                model.num_classes(),
                labels.len()
            ))
            .into());
        }
        Ok(Self {
            model,
            labels,
            thresholds,
            batcher,
            batch_size: 16,
            device: device.clone(),
        })
    }

    /// The best model of a run made by [`experiment::train`](crate::experiment::train), with
    /// `choice`'s thresholds (MCC ones need the run's `evaluation.json`, written by
    /// [`experiment::evaluate`](crate::experiment::evaluate)).
    pub fn from_run(run: &Path, choice: ThresholdChoice, device: &B::Device) -> Result<Self> {
        crate::backend::check_device::<B>(device)?;
        let (config, _, model) = load_best::<B>(run, device)?;
        let side = config.train.image_size;
        model.check_input(&[1, 3, side, side])?;
        let (source, folder) = open_data(&config)?;
        let thresholds = match choice {
            ThresholdChoice::Fixed(t) => Thresholds::Global(t),
            ThresholdChoice::MccGrid | ThresholdChoice::MccExact => {
                let path = run.join(EVALUATION_FILE);
                let bytes = crate::train::atomic::read_file(&path)?;
                let evaluation: Evaluation = serde_json::from_slice(&bytes)
                    .map_err(|source| TrainError::Json { path, source })?;
                match choice {
                    ThresholdChoice::MccGrid => evaluation.grid.to_thresholds(),
                    _ => evaluation.exact.to_thresholds(),
                }
            }
        };
        let batcher = AnnotationBatcherConfig::new(source.normalization())
            .with_image_size(config.train.image_size)
            .init();
        Self::new(
            model,
            folder.vocabulary().labels().to_vec(),
            &thresholds,
            batcher,
            device,
        )
    }

    /// The vocabulary, in output order.
    pub fn labels(&self) -> &[String] {
        &self.labels
    }

    /// The per-label thresholds.
    pub fn thresholds(&self) -> &[f32] {
        &self.thresholds
    }

    /// Sigmoid scores `[images, labels]` (row-major) of the images at `paths`.
    ///
    /// Errors name the first file that is missing or cannot be decoded.
    pub fn scores(&self, paths: &[PathBuf]) -> Result<Vec<f32>> {
        let classes = self.labels.len();
        let mut scores = Vec::with_capacity(paths.len() * classes);
        for (chunk_index, chunk) in paths.chunks(self.batch_size).enumerate() {
            let items = chunk
                .par_iter()
                .enumerate()
                .map(|(i, path)| {
                    let index = chunk_index * self.batch_size + i;
                    Ok(AnnotationItem {
                        index,
                        image_name: file_name(path),
                        path: path.clone(),
                        image: load_rgb8(path, index)?,
                        target: vec![0.0; classes],
                    })
                })
                .collect::<std::result::Result<Vec<_>, DataError>>()?;
            let batch = self.batcher.batch(items, &self.device);
            let probabilities = sigmoid(self.model.try_forward(batch.images)?);
            scores.extend(crate::train::predict::to_f32(probabilities)?);
        }
        Ok(scores)
    }

    /// The labels of each image at `paths`: those scoring above their threshold, best first.
    pub fn annotate(&self, paths: &[PathBuf]) -> Result<Vec<ImageAnnotation>> {
        let scores = self.scores(paths)?;
        let classes = self.labels.len().max(1);
        Ok(paths
            .iter()
            .zip(scores.chunks_exact(classes))
            .map(|(path, row)| {
                let mut labels: Vec<LabelScore> = row
                    .iter()
                    .zip(&self.thresholds)
                    .zip(&self.labels)
                    .filter(|((score, threshold), _)| score > threshold)
                    .map(|((&score, _), label)| LabelScore {
                        label: label.clone(),
                        score,
                    })
                    .collect();
                labels.sort_by(|a, b| b.score.total_cmp(&a.score));
                ImageAnnotation {
                    image: path.clone(),
                    labels,
                    truth: None,
                }
            })
            .collect())
    }
}

fn file_name(path: &Path) -> String {
    path.file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default()
}

/// The image files (JPEG, PNG) directly inside `dir`, sorted by name.
pub fn images_in(dir: &Path) -> Result<Vec<PathBuf>> {
    let io = |source| DataError::Io {
        path: dir.to_path_buf(),
        source,
    };
    let mut paths = Vec::new();
    for entry in std::fs::read_dir(dir).map_err(io)? {
        let path = entry.map_err(io)?.path();
        let ext = path
            .extension()
            .map(|e| e.to_string_lossy().to_ascii_lowercase())
            .unwrap_or_default();
        if path.is_file() && matches!(ext.as_str(), "jpg" | "jpeg" | "png") {
            paths.push(path);
        }
    }
    paths.sort();
    Ok(paths)
}

fn write_file(path: &Path, bytes: &[u8]) -> Result<()> {
    Ok(crate::train::atomic::write_atomic(path, bytes)?)
}

/// Writes the annotations as a JSON array.
pub fn write_json(path: &Path, annotations: &[ImageAnnotation]) -> Result<()> {
    crate::experiment::evaluate::write_json(path, &annotations)
}

/// Writes the annotations as CSV, one row per (image, label): `image,label,score,rank`.
pub fn write_csv(path: &Path, annotations: &[ImageAnnotation]) -> Result<()> {
    let mut writer = csv::Writer::from_writer(Vec::new());
    let csv_error = |e: csv::Error| TrainError::Io {
        path: path.to_path_buf(),
        source: std::io::Error::other(e),
    };
    writer
        .write_record(["image", "label", "score", "rank"])
        .map_err(csv_error)?;
    for annotation in annotations {
        let image = annotation.image.to_string_lossy();
        for (rank, label) in annotation.labels.iter().enumerate() {
            writer
                .write_record([
                    image.as_ref(),
                    &label.label,
                    &format!("{:.6}", label.score),
                    &(rank + 1).to_string(),
                ])
                .map_err(csv_error)?;
        }
    }
    let bytes = writer
        .into_inner()
        .map_err(|e| csv_error(e.into_error().into()))?;
    write_file(path, &bytes)
}

fn escape_html(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
        .replace('\'', "&#39;")
}

/// A `file://` URL of an image, percent-encoding what a browser would misread.
fn file_url(path: &Path) -> String {
    let absolute = std::fs::canonicalize(path).unwrap_or_else(|_| path.to_path_buf());
    let mut url = String::from("file://");
    for byte in absolute.to_string_lossy().bytes() {
        match byte {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'/' | b'-' | b'_' | b'.' | b'~' => {
                url.push(byte as char)
            }
            _ => {
                let _ = write!(url, "%{byte:02X}");
            }
        }
    }
    url
}

/// Writes an HTML contact sheet: each image with its predicted labels and scores, and its
/// ground truth when known (correct predictions in bold, missed words struck through).
pub fn write_html(path: &Path, title: &str, annotations: &[ImageAnnotation]) -> Result<()> {
    let mut html = String::new();
    let _ = write!(
        html,
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\"><title>{0}</title>\n\
         <style>body{{font-family:sans-serif;margin:1em}}main{{display:flex;flex-wrap:wrap;gap:1em}}\
         figure{{width:220px;margin:0}}img{{width:220px;height:165px;object-fit:cover;background:#eee}}\
         figcaption{{font-size:13px}}.hit{{font-weight:bold;color:#063}}.miss{{color:#a00;text-decoration:line-through}}\
         .truth{{color:#555}}</style></head>\n<body><h1>{0}</h1>\n<main>\n",
        escape_html(title)
    );
    for annotation in annotations {
        let truth = annotation.truth.as_deref();
        let _ = write!(
            html,
            "<figure><img src=\"{}\" alt=\"{}\" loading=\"lazy\"><figcaption><div>",
            escape_html(&file_url(&annotation.image)),
            escape_html(&annotation.image.to_string_lossy())
        );
        for label in &annotation.labels {
            let class = match truth {
                Some(truth) if truth.contains(&label.label) => " class=\"hit\"",
                _ => "",
            };
            let _ = write!(
                html,
                "<span{class}>{} {:.2}</span> ",
                escape_html(&label.label),
                label.score
            );
        }
        html.push_str("</div>");
        if let Some(truth) = truth {
            html.push_str("<div class=\"truth\">truth: ");
            for word in truth {
                let found = annotation.labels.iter().any(|l| &l.label == word);
                let class = if found { "hit" } else { "miss" };
                let _ = write!(
                    html,
                    "<span class=\"{class}\">{}</span> ",
                    escape_html(word)
                );
            }
            html.push_str("</div>");
        }
        html.push_str("</figcaption></figure>\n");
    }
    html.push_str("</main></body></html>\n");
    write_file(path, html.as_bytes())
}
