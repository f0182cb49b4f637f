//! Annotating new images with a trained model: labels and scores per image, written as JSON,
//! CSV or an HTML contact sheet.
//!
//! ```no_run
//! use aia::annotate::{Annotator, ThresholdSource};
//! use aia::threshold::ThresholdSearch;
//! type B = burn::backend::Flex;
//! # fn main() -> aia::Result<()> {
//! let thresholds = ThresholdSource::Mcc(ThresholdSearch::Exact);
//! let annotator = Annotator::<B>::from_run("runs/corel".as_ref(), thresholds, &Default::default())?;
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
use crate::experiment::{
    load_best, open_data, Evaluation, ModelManifest, EVALUATION_FILE, MANIFEST_METADATA_KEY,
};
use crate::fs::FileError;
use crate::metrics::Thresholds;
use crate::model::TResNet;
use crate::threshold::ThresholdSearch;
use crate::train::TrainError;
use crate::Result;

/// Where an [`Annotator`]'s per-label thresholds come from.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum ThresholdSource {
    /// One given threshold for every label ([`Thresholds::Global`]).
    Global(f32),
    /// The thresholds chosen by MCC with this search, read from the run's `evaluation.json`
    /// (or those an exported model was saved with).
    Mcc(ThresholdSearch),
}

impl FromStr for ThresholdSource {
    type Err = String;

    /// `grid`, `exact` (the MCC searches), or a number in `[0, 1]` such as `0.5`.
    fn from_str(s: &str) -> std::result::Result<Self, Self::Err> {
        match s.parse::<ThresholdSearch>() {
            Ok(search) => Ok(Self::Mcc(search)),
            Err(_) => s
                .trim()
                .parse::<f32>()
                .ok()
                .filter(|t| (0.0..=1.0).contains(t))
                .map(Self::Global)
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
    /// Where the word's query looked, when the model has the attention head.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub attention: Option<AttentionMap>,
}

/// A label's attention over the last feature map (one cell per 32x32 pixels of the square
/// image the model saw), averaged over the heads; the weights sum to 1.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AttentionMap {
    /// Rows of the map.
    pub height: usize,
    /// Columns of the map.
    pub width: usize,
    /// The weights, row-major.
    pub weights: Vec<f32>,
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
    manifest: ModelManifest,
    thresholds: Vec<f32>,
    batcher: AnnotationBatcher,
    batch_size: usize,
    device: B::Device,
}

impl<B: Backend> Annotator<B> {
    /// An annotator over `model`, described by `manifest` (vocabulary, normalisation and image
    /// size must be the training ones), cutting at `thresholds`.
    pub fn new(
        model: TResNet<B>,
        manifest: ModelManifest,
        thresholds: &Thresholds,
        device: &B::Device,
    ) -> Result<Self> {
        crate::backend::check_device::<B>(device)?;
        let thresholds = thresholds.to_vec(manifest.labels.len())?;
        if model.num_classes() != manifest.labels.len() {
            return Err(crate::model::ModelError::InvalidInput(format!(
                "the model has {} outputs but the vocabulary {} labels",
                model.num_classes(),
                manifest.labels.len()
            ))
            .into());
        }
        let side = manifest.image_size;
        model.check_input(&[1, 3, side, side])?;
        let batcher = AnnotationBatcherConfig::new(manifest.normalization)
            .with_image_size(side)
            .init();
        Ok(Self {
            model,
            manifest,
            thresholds,
            batcher,
            batch_size: 16,
            device: device.clone(),
        })
    }

    /// The best model of a run made by [`experiment::train`](crate::experiment::train), with
    /// the thresholds of `source` (MCC ones need the run's `evaluation.json`, written by
    /// [`experiment::evaluate_run`](crate::experiment::evaluate_run)). Only the run folder is read: its
    /// [`MANIFEST_FILE`](crate::experiment::MANIFEST_FILE) holds the vocabulary and the images'
    /// preparation (a run written before that file existed re-opens its data set for them).
    pub fn from_run(run: &Path, source: ThresholdSource, device: &B::Device) -> Result<Self> {
        crate::backend::check_device::<B>(device)?;
        let (config, _, model) = load_best::<B>(run, device)?;
        let manifest = match ModelManifest::load(run)? {
            Some(manifest) => manifest,
            None => {
                let (source, folder) = open_data(&config)?;
                ModelManifest::of_experiment(&config, &source, &folder)
            }
        };
        let thresholds = run_thresholds(run, source)?;
        Self::new(model, manifest, &thresholds, device)
    }

    /// A model exported by [`export`](Self::export): one safetensors file, its manifest in the
    /// header. A [`Global`](ThresholdSource::Global) `source` replaces the file's thresholds;
    /// an [`Mcc`](ThresholdSource::Mcc) one takes those it was exported with.
    pub fn from_export(path: &Path, source: ThresholdSource, device: &B::Device) -> Result<Self> {
        crate::backend::check_device::<B>(device)?;
        let metadata = crate::model::safetensors_metadata(path)?;
        let json = metadata.get(MANIFEST_METADATA_KEY).ok_or_else(|| {
            TrainError::InvalidConfig(format!(
                "{}: not a model exported by aia (no `{MANIFEST_METADATA_KEY}` in its header)",
                path.display()
            ))
        })?;
        let manifest = ModelManifest::from_json(json.as_bytes(), path)?;
        crate::experiment::evaluate::check_weights_fit(&manifest.model, path)
            .map_err(|why| TrainError::InvalidConfig(format!("{}: {why}", path.display())))?;
        let thresholds = match (source, &manifest.thresholds) {
            (ThresholdSource::Global(t), _) => Thresholds::Global(t),
            (_, Some(t)) => Thresholds::PerLabel(t.clone()),
            (_, None) => Thresholds::Global(0.5),
        };
        let model = manifest.model.init::<B>(device).load_timm(path)?;
        Self::new(model, manifest, &thresholds, device)
    }

    /// Writes the model, its manifest and this annotator's thresholds as one safetensors file
    /// (weights under timm's key names, so PyTorch reads them too), for
    /// [`from_export`](Self::from_export) on another machine.
    pub fn export(&self, path: &Path) -> Result<()> {
        let manifest = ModelManifest {
            thresholds: Some(self.thresholds.clone()),
            ..self.manifest.clone()
        };
        let json = serde_json::to_string(&manifest).map_err(|source| TrainError::Json {
            path: path.to_path_buf(),
            source,
        })?;
        self.model
            .save_safetensors_with_metadata(path, &[(MANIFEST_METADATA_KEY, json.as_str())])?;
        Ok(())
    }

    /// What describes the model: data set, architecture, vocabulary, preparation.
    pub fn manifest(&self) -> &ModelManifest {
        &self.manifest
    }

    /// The vocabulary, in output order.
    pub fn labels(&self) -> &[String] {
        &self.manifest.labels
    }

    /// The per-label thresholds.
    pub fn thresholds(&self) -> &[f32] {
        &self.thresholds
    }

    /// Sigmoid scores `[images, labels]` (row-major) of the images at `paths`.
    ///
    /// Errors name the first file that is missing or cannot be decoded.
    pub fn scores(&self, paths: &[PathBuf]) -> Result<Vec<f32>> {
        let mut scores = Vec::with_capacity(paths.len() * self.manifest.labels.len());
        for (chunk_index, chunk) in paths.chunks(self.batch_size).enumerate() {
            scores.extend(self.outputs(chunk_index, chunk)?.0);
        }
        Ok(scores)
    }

    /// The labels of each image at `paths`: those scoring above their threshold, best first,
    /// each with its attention map when the model has the attention head.
    pub fn annotate(&self, paths: &[PathBuf]) -> Result<Vec<ImageAnnotation>> {
        let classes = self.manifest.labels.len().max(1);
        let side = self.manifest.image_size.div_ceil(32);
        let mut annotations = Vec::with_capacity(paths.len());
        for (chunk_index, chunk) in paths.chunks(self.batch_size).enumerate() {
            let (scores, attention) = self.outputs(chunk_index, chunk)?;
            for (row, (path, scores)) in chunk.iter().zip(scores.chunks_exact(classes)).enumerate()
            {
                let map = |label: usize| {
                    attention.as_ref().map(|a| {
                        let start = (row * classes + label) * side * side;
                        AttentionMap {
                            height: side,
                            width: side,
                            weights: a[start..start + side * side].to_vec(),
                        }
                    })
                };
                let mut labels: Vec<LabelScore> = (0..classes)
                    .filter(|&c| scores[c] > self.thresholds[c])
                    .map(|c| LabelScore {
                        label: self.manifest.labels[c].clone(),
                        score: scores[c],
                        attention: map(c),
                    })
                    .collect();
                labels.sort_by(|a, b| b.score.total_cmp(&a.score));
                annotations.push(ImageAnnotation {
                    image: path.clone(),
                    labels,
                    truth: None,
                });
            }
        }
        Ok(annotations)
    }

    /// Scores `[chunk, labels]` of one chunk of images, and with the attention head their
    /// attention `[chunk, labels, map pixels]`.
    fn outputs(
        &self,
        chunk_index: usize,
        chunk: &[PathBuf],
    ) -> Result<(Vec<f32>, Option<Vec<f32>>)> {
        let classes = self.manifest.labels.len();
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
        self.model.check_input(&batch.images.dims())?;
        let (logits, attention) = self.model.forward_with_attention(batch.images);
        let scores = crate::train::predict::to_f32(sigmoid(logits))?;
        let attention = attention.map(crate::train::predict::to_f32).transpose()?;
        Ok((scores, attention))
    }
}

/// A run's thresholds from `source`.
fn run_thresholds(run: &Path, source: ThresholdSource) -> Result<Thresholds> {
    let search = match source {
        ThresholdSource::Global(t) => return Ok(Thresholds::Global(t)),
        ThresholdSource::Mcc(search) => search,
    };
    let path = run.join(EVALUATION_FILE);
    let bytes = crate::fs::read(&path)?;
    let evaluation: Evaluation =
        serde_json::from_slice(&bytes).map_err(|source| TrainError::Json { path, source })?;
    Ok(match search {
        ThresholdSearch::Grid => evaluation.grid.to_thresholds(),
        ThresholdSearch::Exact => evaluation.exact.to_thresholds(),
    })
}

fn file_name(path: &Path) -> String {
    path.file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default()
}

/// The image files (JPEG, PNG) directly inside `dir`, sorted by name.
pub fn images_in(dir: &Path) -> Result<Vec<PathBuf>> {
    let io = |source| FileError::read(dir, source);
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
    Ok(crate::fs::write_atomic(path, bytes)?)
}

/// Writes the annotations as a JSON array.
pub fn write_json(path: &Path, annotations: &[ImageAnnotation]) -> Result<()> {
    Ok(crate::fs::write_json(path, &annotations)?)
}

/// Writes the annotations as CSV, one row per (image, label): `image,label,score,rank`.
pub fn write_csv(path: &Path, annotations: &[ImageAnnotation]) -> Result<()> {
    let mut writer = csv::Writer::from_writer(Vec::new());
    let csv_error = |e: csv::Error| FileError::write(path, std::io::Error::other(e));
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
/// ground truth when known (correct words in green, wrong ones in orange, missed ones struck
/// through). Labels with an [`AttentionMap`] show it over the image on hover or click.
pub fn write_html(path: &Path, title: &str, annotations: &[ImageAnnotation]) -> Result<()> {
    let mut html = String::new();
    let _ = write!(
        html,
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\"><title>{0}</title>\n\
         <style>{SHEET_STYLE}</style></head>\n<body><h1>{0}</h1>\n<main>\n",
        escape_html(title)
    );
    for annotation in annotations {
        write_figure(&mut html, annotation);
    }
    let _ = writeln!(html, "</main><script>{SHEET_SCRIPT}</script></body></html>");
    write_file(path, html.as_bytes())
}

/// The sheet's look: words the truth holds in green, others in orange, missed ones struck out
/// in red; the word whose attention map shows is underlined.
const SHEET_STYLE: &str = "body{font-family:sans-serif;margin:1em}\
main{display:flex;flex-wrap:wrap;gap:1em}figure{width:220px;margin:0}\
img{width:220px;height:165px;object-fit:cover;background:#eee;display:block}\
.pic{position:relative}.pic img{height:220px;object-fit:fill}\
.pic canvas{position:absolute;left:0;top:0;width:220px;height:220px;pointer-events:none}\
figcaption{font-size:13px}[data-map]{cursor:pointer}.on{text-decoration:underline}\
.hit{font-weight:bold;color:#063}.wrong{color:#b50}.miss{color:#a00;text-decoration:line-through}\
.truth{color:#555}";

/// Draws a word's attention map over its photo on hover or click (the first word's at load),
/// from the cells in its `data-map` (`width height w0 w1 ...`, scaled to a maximum of 1); the
/// browser's smoothing scales the map up to the photo.
const SHEET_SCRIPT: &str = "function showMap(s){var f=s.closest('figure'),\
c=f.querySelector('canvas'),v=s.dataset.map.split(' ').map(Number),w=v[0],h=v[1];\
c.width=w;c.height=h;var g=c.getContext('2d'),d=g.createImageData(w,h);\
for(var i=0;i<w*h;i++){var x=v[2+i];d.data[4*i]=255;d.data[4*i+1]=Math.round(220*(1-x));\
d.data[4*i+2]=0;d.data[4*i+3]=Math.round(190*x);}g.putImageData(d,0,0);\
f.querySelectorAll('.on').forEach(function(o){o.classList.remove('on')});s.classList.add('on');}\
document.querySelectorAll('[data-map]').forEach(function(s){\
s.addEventListener('mouseenter',function(){showMap(s)});\
s.addEventListener('click',function(){showMap(s)});});\
document.querySelectorAll('figure').forEach(function(f){\
var s=f.querySelector('[data-map]');if(s)showMap(s);});";

/// One photo of the sheet: the image (with a canvas for attention maps), the predicted words
/// and, when known, the truth.
fn write_figure(html: &mut String, annotation: &ImageAnnotation) {
    let truth = annotation.truth.as_deref();
    let with_maps = annotation.labels.iter().any(|l| l.attention.is_some());
    let image = format!(
        "<img src=\"{}\" alt=\"{}\" loading=\"lazy\">",
        escape_html(&file_url(&annotation.image)),
        escape_html(&annotation.image.to_string_lossy())
    );
    if with_maps {
        // The model saw the photo squashed to a square: so does the sheet, under the map.
        let _ = write!(
            html,
            "<figure><div class=\"pic\">{image}<canvas></canvas></div>"
        );
    } else {
        let _ = write!(html, "<figure>{image}");
    }
    html.push_str("<figcaption><div>");
    for label in &annotation.labels {
        let class = match truth {
            Some(truth) if truth.contains(&label.label) => " class=\"hit\"",
            Some(_) => " class=\"wrong\"",
            None => "",
        };
        let map = label
            .attention
            .as_ref()
            .map(map_attribute)
            .unwrap_or_default();
        let _ = write!(
            html,
            "<span{class}{map}>{} {:.2}</span> ",
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

/// ` data-map="width height w0 w1 ..."`, the weights scaled to a maximum of 1.
fn map_attribute(map: &AttentionMap) -> String {
    let max = map.weights.iter().copied().fold(0.0f32, f32::max);
    let scale = if max > 0.0 { 1.0 / max } else { 0.0 };
    let mut out = format!(" data-map=\"{} {}", map.width, map.height);
    for w in &map.weights {
        let _ = write!(out, " {:.2}", (w * scale).clamp(0.0, 1.0));
    }
    out.push('"');
    out
}
