//! One annotation file (`train.json` or `test.json`): samples as label indices.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use burn::tensor::{backend::Backend, Tensor, TensorData};
use serde::{Deserialize, Serialize};

use super::{DataError, Vocabulary};

/// One annotated image: its file name in `images/` and its labels as vocabulary columns.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AnnotationSample {
    /// The image's file name, relative to the data set's `images/` folder.
    pub image_name: String,
    /// Its labels, as column indices into the vocabulary, in file order, without repeats.
    /// May be empty: images with no label are valid.
    pub labels: Vec<usize>,
}

/// A parsed split: its samples and the vocabulary their labels index.
#[derive(Debug, Clone)]
pub struct AnnotationSplit {
    path: PathBuf,
    samples: Vec<AnnotationSample>,
    vocabulary: Arc<Vocabulary>,
}

/// The JSON file's shape.
#[derive(Deserialize)]
struct RawSplit<'a> {
    #[serde(borrow)]
    samples: Vec<RawSample<'a>>,
    #[serde(default)]
    labels: Option<Vec<String>>,
}

#[derive(Deserialize)]
struct RawSample<'a> {
    #[serde(borrow)]
    image_name: std::borrow::Cow<'a, str>,
    #[serde(borrow)]
    image_labels: Vec<std::borrow::Cow<'a, str>>,
}

#[derive(Serialize)]
struct OutSplit<'a> {
    samples: Vec<OutSample<'a>>,
    labels: &'a [String],
}

#[derive(Serialize)]
struct OutSample<'a> {
    image_name: &'a str,
    image_labels: Vec<&'a str>,
}

impl AnnotationSplit {
    /// Parses an annotation file's bytes against `vocabulary` (when given). `path` names the file
    /// in errors.
    ///
    /// Image names must stay inside the images folder: an empty name, an absolute one, one going
    /// up with `..` or holding a NUL byte is [`DataError::UnsafeImageName`].
    ///
    /// The file's `"labels"` list, when present, must equal the vocabulary; when no vocabulary is
    /// given, that list becomes the vocabulary (and must then be present).
    pub fn parse(
        bytes: &[u8],
        path: impl AsRef<Path>,
        vocabulary: Option<(Arc<Vocabulary>, &Path)>,
    ) -> Result<Self, DataError> {
        let path = path.as_ref();
        let raw: RawSplit = serde_json::from_slice(bytes).map_err(|e| json_error(path, &e))?;
        let vocabulary = match (vocabulary, raw.labels) {
            (Some((vocab, vocab_path)), Some(labels)) => {
                check_same_labels(&vocab, vocab_path, &labels, path)?;
                vocab
            }
            (Some((vocab, _)), None) => vocab,
            (None, Some(labels)) => Arc::new(Vocabulary::from_labels(labels, path)?),
            (None, None) => {
                return Err(DataError::MissingVocabulary {
                    path: path.to_path_buf(),
                })
            }
        };
        let mut samples = Vec::with_capacity(raw.samples.len());
        for (index, s) in raw.samples.into_iter().enumerate() {
            check_image_name(&s.image_name, path, index)?;
            let mut labels = Vec::with_capacity(s.image_labels.len());
            for label in &s.image_labels {
                let col = vocabulary
                    .index_of(label)
                    .ok_or_else(|| DataError::UnknownLabel {
                        path: path.to_path_buf(),
                        index,
                        image_name: s.image_name.to_string(),
                        label: label.to_string(),
                    })?;
                if !labels.contains(&col) {
                    labels.push(col);
                }
            }
            samples.push(AnnotationSample {
                image_name: s.image_name.into_owned(),
                labels,
            });
        }
        Ok(Self {
            path: path.to_path_buf(),
            samples,
            vocabulary,
        })
    }

    /// Reads and parses an annotation file (see [`parse`](Self::parse)).
    pub fn read(
        path: impl AsRef<Path>,
        vocabulary: Option<(Arc<Vocabulary>, &Path)>,
    ) -> Result<Self, DataError> {
        let path = path.as_ref();
        let bytes = std::fs::read(path).map_err(|e| DataError::read(path, e))?;
        Self::parse(&bytes, path, vocabulary)
    }

    /// A split from samples already in memory.
    pub fn new(
        path: impl Into<PathBuf>,
        samples: Vec<AnnotationSample>,
        vocabulary: Arc<Vocabulary>,
    ) -> Self {
        Self {
            path: path.into(),
            samples,
            vocabulary,
        }
    }

    /// Writes the split in the JSON format it is read from (with the `"labels"` list), through a
    /// temporary file renamed into place.
    pub fn write(&self, path: impl AsRef<Path>) -> Result<(), DataError> {
        let out = OutSplit {
            samples: self
                .samples
                .iter()
                .map(|s| OutSample {
                    image_name: &s.image_name,
                    image_labels: s
                        .labels
                        .iter()
                        .map(|&c| self.vocabulary.labels()[c].as_str())
                        .collect(),
                })
                .collect(),
            labels: self.vocabulary.labels(),
        };
        let bytes = serde_json::to_vec(&out).expect("serialising strings cannot fail");
        Ok(crate::fs::write_atomic(path.as_ref(), &bytes)?)
    }

    /// The annotation file this split was read from.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The samples, in file order.
    pub fn samples(&self) -> &[AnnotationSample] {
        &self.samples
    }

    /// The vocabulary the label indices refer to.
    pub fn vocabulary(&self) -> &Arc<Vocabulary> {
        &self.vocabulary
    }

    /// Number of samples.
    pub fn len(&self) -> usize {
        self.samples.len()
    }

    /// Whether the split has no sample.
    pub fn is_empty(&self) -> bool {
        self.samples.is_empty()
    }

    /// The multi-hot target of sample `index` (1.0 at its labels' columns), or `None` past the end.
    pub fn target(&self, index: usize) -> Option<Vec<f32>> {
        self.samples
            .get(index)
            .map(|s| multi_hot(&s.labels, self.vocabulary.len()))
    }

    /// All targets, row-major `[samples, labels]`.
    pub fn targets(&self) -> Vec<f32> {
        let c = self.vocabulary.len();
        let mut out = vec![0f32; self.samples.len() * c];
        for (row, s) in out.chunks_mut(c.max(1)).zip(&self.samples) {
            for &l in &s.labels {
                row[l] = 1.0;
            }
        }
        out
    }

    /// All targets as a `[samples, labels]` tensor, e.g. for the metrics of a whole split.
    pub fn targets_tensor<B: Backend>(&self, device: &B::Device) -> Tensor<B, 2> {
        let shape = [self.samples.len(), self.vocabulary.len()];
        Tensor::from_data(TensorData::new(self.targets(), shape), device)
    }
}

/// serde_json's error as [`DataError::Json`]: its message without the position, which the
/// error shows as `path:line:column`, and with a hint for a file that ends too early.
fn json_error(path: &Path, e: &serde_json::Error) -> DataError {
    let mut message = e.to_string();
    let position = format!(" at line {} column {}", e.line(), e.column());
    if let Some(stripped) = message.strip_suffix(&position) {
        message.truncate(stripped.len());
    }
    if e.is_eof() {
        message.push_str(" (the file is cut short: an interrupted download or copy? get it again)");
    }
    DataError::Json {
        path: path.to_path_buf(),
        line: e.line(),
        column: e.column(),
        message,
    }
}

/// Why `name` cannot be an image name, if it cannot: the name is joined to the images folder,
/// so anything that would lead out of it (or to no file at all) is refused before any file is
/// opened.
fn unsafe_image_name(name: &str) -> Option<&'static str> {
    use std::path::Component;
    if name.is_empty() {
        return Some("is empty");
    }
    if name.contains('\0') {
        return Some("holds a NUL byte");
    }
    let mut normal = false;
    for component in Path::new(name).components() {
        match component {
            Component::Normal(_) => normal = true,
            Component::CurDir => {}
            Component::ParentDir => return Some("goes up a folder with `..`"),
            Component::RootDir | Component::Prefix(_) => return Some("is an absolute path"),
        }
    }
    // Backslashes are separators on Windows: `..\x` must not pass on Linux and escape there.
    if name.split(['/', '\\']).any(|part| part == "..") {
        return Some("goes up a folder with `..`");
    }
    if !normal {
        return Some("names the images folder itself, not a file in it");
    }
    None
}

/// Checks sample `index`'s image name (see [`unsafe_image_name`]); `path` is the annotation
/// file, for the error.
pub(crate) fn check_image_name(name: &str, path: &Path, index: usize) -> Result<(), DataError> {
    match unsafe_image_name(name) {
        None => Ok(()),
        Some(reason) => Err(DataError::UnsafeImageName {
            path: path.to_path_buf(),
            index,
            image_name: name.to_string(),
            reason,
        }),
    }
}

/// A multi-hot row of `num_labels` columns with 1.0 at `labels`.
pub(crate) fn multi_hot(labels: &[usize], num_labels: usize) -> Vec<f32> {
    let mut row = vec![0f32; num_labels];
    for &l in labels {
        row[l] = 1.0;
    }
    row
}

fn check_same_labels(
    vocab: &Vocabulary,
    vocab_path: &Path,
    labels: &[String],
    path: &Path,
) -> Result<(), DataError> {
    let expected = vocab.labels();
    if expected == labels {
        return Ok(());
    }
    let position = expected
        .iter()
        .zip(labels)
        .position(|(a, b)| a != b)
        .unwrap_or(expected.len().min(labels.len()));
    Err(DataError::VocabularyMismatch {
        path: path.to_path_buf(),
        vocabulary: vocab_path.to_path_buf(),
        position: position + 1,
        expected: expected.get(position).cloned().unwrap_or_default(),
        found: labels.get(position).cloned().unwrap_or_default(),
    })
}
