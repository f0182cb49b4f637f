//! The ordered label list of a data set.

use std::collections::HashMap;
use std::path::Path;

use super::DataError;

/// A data set's labels, in output-column order, with a label → column index.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Vocabulary {
    labels: Vec<String>,
    index: HashMap<String, usize>,
}

impl Vocabulary {
    /// A vocabulary from labels in column order. `source` names where they come from, for the
    /// error on a duplicate or an empty list.
    pub fn from_labels(labels: Vec<String>, source: &Path) -> Result<Self, DataError> {
        if labels.is_empty() {
            return Err(DataError::EmptyVocabulary {
                path: source.to_path_buf(),
            });
        }
        let mut index = HashMap::with_capacity(labels.len());
        for (i, label) in labels.iter().enumerate() {
            if let Some(first) = index.insert(label.clone(), i) {
                return Err(DataError::DuplicateLabel {
                    path: source.to_path_buf(),
                    label: label.clone(),
                    first: first + 1,
                    second: i + 1,
                });
            }
        }
        Ok(Self { labels, index })
    }

    /// Parses a vocabulary file's text: one label per line, surrounding blanks trimmed, empty
    /// lines ignored.
    pub fn parse(text: &str, source: &Path) -> Result<Self, DataError> {
        let labels = text
            .lines()
            .map(str::trim)
            .filter(|l| !l.is_empty())
            .map(str::to_string)
            .collect();
        Self::from_labels(labels, source)
    }

    /// Reads a vocabulary file.
    pub fn read(path: impl AsRef<Path>) -> Result<Self, DataError> {
        let path = path.as_ref();
        let text = std::fs::read_to_string(path).map_err(|e| DataError::read(path, e))?;
        Self::parse(&text, path)
    }

    /// Writes the vocabulary, one label per line, through a temporary file renamed into place.
    pub fn write(&self, path: impl AsRef<Path>) -> Result<(), DataError> {
        let mut text = self.labels.join("\n");
        text.push('\n');
        Ok(crate::fs::write_atomic(path.as_ref(), text.as_bytes())?)
    }

    /// Number of labels.
    pub fn len(&self) -> usize {
        self.labels.len()
    }

    /// Whether there is no label (never true for a parsed vocabulary).
    pub fn is_empty(&self) -> bool {
        self.labels.is_empty()
    }

    /// The label of column `i`.
    pub fn label(&self, i: usize) -> Option<&str> {
        self.labels.get(i).map(String::as_str)
    }

    /// The column of `label`.
    pub fn index_of(&self, label: &str) -> Option<usize> {
        self.index.get(label).copied()
    }

    /// The labels in column order.
    pub fn labels(&self) -> &[String] {
        &self.labels
    }
}
