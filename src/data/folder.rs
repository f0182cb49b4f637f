//! A data-set folder on disk, and the `--data` choice that names one.

use std::fmt;
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::sync::Arc;

use super::{AnnotationSplit, DataError, DatasetPreset, Normalization, Vocabulary};

/// An opened data-set folder: `images/`, `train.json`, `test.json` and a vocabulary file, with
/// both splits parsed and checked against the vocabulary.
///
/// The vocabulary is the folder's `*vocabulary.txt` file (there must be at most one); without
/// one, `train.json`'s `"labels"` list. When both exist they must agree, and so must
/// `test.json`'s list.
#[derive(Debug, Clone)]
pub struct AnnotationFolder {
    root: PathBuf,
    vocabulary_path: PathBuf,
    vocabulary: Arc<Vocabulary>,
    train: AnnotationSplit,
    test: AnnotationSplit,
}

impl AnnotationFolder {
    /// Opens and parses the folder `root`. Images are not read here (see
    /// [`AnnotationDataset::open`](super::AnnotationDataset::open)).
    pub fn open(root: impl AsRef<Path>) -> Result<Self, DataError> {
        let root = root.as_ref().to_path_buf();
        if !root.exists() {
            return Err(DataError::MissingFolder { path: root });
        }
        let train_path = root.join("train.json");
        let test_path = root.join("test.json");
        let (vocabulary_path, train, test) = match find_vocabulary(&root)? {
            Some(vocab_path) => {
                let vocab = Arc::new(Vocabulary::read(&vocab_path)?);
                let train = AnnotationSplit::read(&train_path, Some((vocab.clone(), &vocab_path)))?;
                let test = AnnotationSplit::read(&test_path, Some((vocab, &vocab_path)))?;
                (vocab_path, train, test)
            }
            None => {
                if !train_path.exists() {
                    return Err(DataError::read(
                        &train_path,
                        std::io::Error::from(std::io::ErrorKind::NotFound),
                    ));
                }
                let train = AnnotationSplit::read(&train_path, None).map_err(|e| match e {
                    DataError::MissingVocabulary { .. } => {
                        DataError::MissingVocabulary { path: root.clone() }
                    }
                    e => e,
                })?;
                let vocab = train.vocabulary().clone();
                let test = AnnotationSplit::read(&test_path, Some((vocab, &train_path)))?;
                (train_path.clone(), train, test)
            }
        };
        Ok(Self {
            root,
            vocabulary_path,
            vocabulary: train.vocabulary().clone(),
            train,
            test,
        })
    }

    /// The folder.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// The folder holding the image files, `<root>/images`.
    pub fn images_dir(&self) -> PathBuf {
        self.root.join("images")
    }

    /// The file the vocabulary came from.
    pub fn vocabulary_path(&self) -> &Path {
        &self.vocabulary_path
    }

    /// The vocabulary (output columns).
    pub fn vocabulary(&self) -> &Arc<Vocabulary> {
        &self.vocabulary
    }

    /// The training split.
    pub fn train(&self) -> &AnnotationSplit {
        &self.train
    }

    /// The test split.
    pub fn test(&self) -> &AnnotationSplit {
        &self.test
    }
}

/// The folder's vocabulary file: `vocabulary.txt` or `*_vocabulary.txt`, at most one.
fn find_vocabulary(root: &Path) -> Result<Option<PathBuf>, DataError> {
    let entries = std::fs::read_dir(root).map_err(|e| DataError::read(root, e))?;
    let mut found = Vec::new();
    for entry in entries {
        let entry = entry.map_err(|e| DataError::read(root, e))?;
        let name = entry.file_name();
        let name = name.to_string_lossy();
        if name.ends_with("vocabulary.txt") && !name.starts_with('.') {
            found.push(entry.path());
        }
    }
    found.sort();
    match found.len() {
        0 => Ok(None),
        1 => Ok(found.pop()),
        _ => Err(DataError::AmbiguousVocabulary {
            path: root.to_path_buf(),
            files: found,
        }),
    }
}

/// What a `--data` command-line value names: one of the presets, the synthetic set, or a folder.
///
/// ```
/// use aia::data::{DataSource, DatasetPreset};
/// let s: DataSource = "Corel-5k".parse().unwrap();
/// assert_eq!(s, DataSource::Preset(DatasetPreset::Corel5k));
/// assert_eq!("Synthetic".parse::<DataSource>().unwrap(), DataSource::Synthetic);
/// assert_eq!(
///     s.folder(std::path::Path::new("datasets")),
///     std::path::Path::new("datasets/Corel-5k")
/// );
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DataSource {
    /// A benchmark set, found at `<root>/<folder name>`.
    Preset(DatasetPreset),
    /// The synthetic set, at `<root>/Synthetic` (see [`synthetic`](super::synthetic)).
    Synthetic,
    /// Any folder laid out like the benchmark sets.
    Folder(PathBuf),
}

impl DataSource {
    /// The folder of the data set, presets and the synthetic set being looked up under `root`
    /// (usually `datasets`).
    pub fn folder(&self, root: &Path) -> PathBuf {
        match self {
            DataSource::Preset(p) => root.join(p.folder_name()),
            DataSource::Synthetic => root.join(super::synthetic::FOLDER_NAME),
            DataSource::Folder(path) => path.clone(),
        }
    }

    /// Opens the data set's folder under `root`; for [`DataSource::Synthetic`], first generates
    /// the default synthetic set there unless it is already present
    /// ([`SyntheticConfig::ensure`](super::synthetic::SyntheticConfig::ensure)).
    pub fn open(&self, root: &Path) -> Result<AnnotationFolder, DataError> {
        let dir = self.folder(root);
        match self {
            DataSource::Synthetic => super::synthetic::SyntheticConfig::new().ensure(dir),
            _ => AnnotationFolder::open(dir),
        }
    }

    /// The normalisation to use: the preset's, the synthetic set's, or ImageNet's for a folder
    /// (measure a folder's own with [`Normalization::measure`]).
    pub fn normalization(&self) -> Normalization {
        match self {
            DataSource::Preset(p) => p.normalization(),
            DataSource::Synthetic => super::synthetic::NORMALIZATION,
            DataSource::Folder(_) => Normalization::IMAGENET,
        }
    }
}

impl fmt::Display for DataSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DataSource::Preset(p) => write!(f, "{p}"),
            DataSource::Synthetic => f.write_str(super::synthetic::FOLDER_NAME),
            DataSource::Folder(path) => write!(f, "{}", path.display()),
        }
    }
}

impl FromStr for DataSource {
    type Err = DataError;

    /// A preset name (see [`DatasetPreset`]'s `FromStr`), `Synthetic` (any case), or else a
    /// path, which is taken as given (checked when the folder is opened). Only the empty string
    /// is refused.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        if s.is_empty() {
            return Err(DataError::UnknownDataSet(s.to_string()));
        }
        if let Ok(p) = s.parse::<DatasetPreset>() {
            return Ok(DataSource::Preset(p));
        }
        if s.eq_ignore_ascii_case(super::synthetic::FOLDER_NAME) {
            return Ok(DataSource::Synthetic);
        }
        Ok(DataSource::Folder(PathBuf::from(s)))
    }
}
