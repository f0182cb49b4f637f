//! What a trained model needs to annotate without its data set: the model's configuration, the
//! vocabulary, the images' preparation and, in an exported file, the thresholds.

use std::path::Path;

use serde::{Deserialize, Serialize};

use super::ExperimentConfig;
use crate::data::{AnnotationFolder, DataSource, Normalization};
use crate::fs::{read as read_file, write_json};
use crate::model::TResNetConfig;
use crate::train::TrainError;
use crate::Result;

/// The file of a run folder that holds its [`ModelManifest`].
pub const MANIFEST_FILE: &str = "model.json";

/// The safetensors header key under which an exported model keeps its [`ModelManifest`] (as JSON).
pub const MANIFEST_METADATA_KEY: &str = "aia.manifest";

/// Everything besides the weights that turns a trained model into an annotator, so that a run
/// folder (or an exported file) works on a machine without the data set it was trained on.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ModelManifest {
    /// The data set the model was trained on (for people reading the file).
    pub data: String,
    /// The architecture, with one output per word of `labels`.
    pub model: TResNetConfig,
    /// The vocabulary, in output order.
    pub labels: Vec<String>,
    /// The per-channel statistics the images were normalised with.
    pub normalization: Normalization,
    /// Side of the square images the model was trained on, in pixels.
    pub image_size: usize,
    /// Per-label thresholds, one per word (an exported model carries those it was exported
    /// with; a run folder keeps its thresholds in `evaluation.json`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub thresholds: Option<Vec<f32>>,
}

impl ModelManifest {
    /// The manifest of an experiment trained on `folder` (opened from `source`), before any
    /// thresholds are chosen.
    pub fn of_experiment(
        config: &ExperimentConfig,
        source: &DataSource,
        folder: &AnnotationFolder,
    ) -> Self {
        Self {
            data: config.data.clone(),
            model: config.model.clone(),
            labels: folder.vocabulary().labels().to_vec(),
            normalization: source.normalization(),
            image_size: config.train.loader.image_size,
            thresholds: None,
        }
    }

    /// Checks that the parts agree: one output, and at most one threshold, per word.
    pub fn validate(&self, origin: &Path) -> Result<()> {
        let invalid = |why: String| -> Result<()> {
            Err(TrainError::InvalidConfig(format!("{}: {why}", origin.display())).into())
        };
        self.model.validate().or_else(|e| invalid(e.to_string()))?;
        if self.model.num_classes != self.labels.len() {
            return invalid(format!(
                "the model has {} outputs but the vocabulary {} words",
                self.model.num_classes,
                self.labels.len()
            ));
        }
        if let Some(t) = &self.thresholds {
            if t.len() != self.labels.len() {
                return invalid(format!(
                    "{} thresholds for a vocabulary of {} words",
                    t.len(),
                    self.labels.len()
                ));
            }
        }
        if self.image_size == 0 || self.image_size > super::MAX_IMAGE_SIZE {
            return invalid(format!(
                "the image size {} is not in 1..={}",
                self.image_size,
                super::MAX_IMAGE_SIZE
            ));
        }
        Ok(())
    }

    /// Writes the manifest as `run`'s [`MANIFEST_FILE`] (atomically).
    pub fn save(&self, run: &Path) -> Result<()> {
        Ok(write_json(&run.join(MANIFEST_FILE), self)?)
    }

    /// Reads `run`'s [`MANIFEST_FILE`]; `None` for a run folder written before it existed.
    pub fn load(run: &Path) -> Result<Option<Self>> {
        let path = run.join(MANIFEST_FILE);
        if !path.is_file() {
            return Ok(None);
        }
        let manifest = Self::from_json(&read_file(&path)?, &path)?;
        Ok(Some(manifest))
    }

    /// Parses and validates a manifest read from `origin`.
    pub fn from_json(bytes: &[u8], origin: &Path) -> Result<Self> {
        let manifest: Self = serde_json::from_slice(bytes).map_err(|source| TrainError::Json {
            path: origin.to_path_buf(),
            source,
        })?;
        manifest.validate(origin)?;
        Ok(manifest)
    }
}
