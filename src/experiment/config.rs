use std::fmt;
use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use burn::config::Config;

use crate::data::{synthetic::SyntheticConfig, DataSource};
use crate::loss::AsymmetricLossConfig;
use crate::model::TResNetConfig;
use crate::train::TrainConfig;

/// One experiment: which data, which network, which loss, which recipe.
///
/// The defaults are the paper's: TResNet-M with a Dropout(0.3) + Linear head, the `proposed`
/// loss, and [`TrainConfig`]'s recipe (Adam at 1e-4, one-cycle, 40 epochs of batch 32 at 448).
/// The number of classes is set from the data set's vocabulary when training starts.
///
/// ```
/// use aia::experiment::ExperimentConfig;
/// let config = ExperimentConfig::new("Corel-5k".into());
/// assert_eq!(config.train.loader.image_size, 448);
/// assert_eq!(config.model.dropout, 0.3);
/// ```
#[derive(Config, Debug)]
pub struct ExperimentConfig {
    /// The data: `Corel-5k`, `IAPR-TC-12`, `ESP-Game`, `Synthetic` or a folder (see
    /// [`DataSource`]).
    pub data: String,
    /// Where the named data sets live (`<root>/Corel-5k`, `<root>/Synthetic`...).
    #[config(default = "PathBuf::from(\"datasets\")")]
    pub data_root: PathBuf,
    /// How the synthetic set is generated, when `data` is `Synthetic` and it is not there yet.
    #[config(default = "SyntheticConfig::new()")]
    pub synthetic: SyntheticConfig,
    /// The network (its `num_classes` is replaced by the vocabulary's size).
    #[config(default = "TResNetConfig::m().with_dropout(0.3)")]
    pub model: TResNetConfig,
    /// The loss.
    #[config(default = "AsymmetricLossConfig::proposed()")]
    pub loss: AsymmetricLossConfig,
    /// The training recipe.
    #[config(default = "TrainConfig::new()")]
    pub train: TrainConfig,
    /// A timm checkpoint (`.safetensors`, `.pth`) to start the backbone from.
    #[config(default = "None")]
    pub weights: Option<PathBuf>,
    /// Drop unreadable images (with a warning and a count) instead of failing.
    #[config(default = false)]
    pub skip_bad_images: bool,
    /// Hold this fraction of the training split out (seeded by the recipe's seed, stratified
    /// over the labels) to pick the epoch and calibrate the thresholds, so that the test split
    /// is scored once ([`Protocol::HoldOut`]); `None` is the paper's protocol.
    #[config(default = "None")]
    pub validation: Option<f64>,
}

/// How a run picks its epoch and calibrates its thresholds, recorded with its results.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Protocol {
    /// The paper's: every epoch is scored on the test split, which picks the best one (and so
    /// flatters it); the thresholds are calibrated on the training split.
    #[default]
    Paper,
    /// A seeded, stratified hold-out of `fraction` of the training split picks the epoch and
    /// calibrates the thresholds; the model trains on the rest; the test split is scored once.
    HoldOut {
        /// The share of the training split held out.
        fraction: f64,
    },
}

impl fmt::Display for Protocol {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Paper => write!(
                f,
                "the paper's: epoch picked on the test split, thresholds calibrated on the \
                 training split"
            ),
            Self::HoldOut { fraction } => write!(
                f,
                "hold-out: {:.0}% of the training split picks the epoch and calibrates the \
                 thresholds; the test split is scored once",
                fraction * 100.0
            ),
        }
    }
}

impl ExperimentConfig {
    /// The parsed data source.
    pub fn source(&self) -> Result<DataSource, crate::data::DataError> {
        self.data.parse()
    }

    /// The protocol [`validation`](Self::validation) chooses.
    pub fn protocol(&self) -> Protocol {
        match self.validation {
            Some(fraction) => Protocol::HoldOut { fraction },
            None => Protocol::Paper,
        }
    }
}
